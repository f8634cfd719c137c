"""Projected aperture and detector images of one module (``nuskybgd projbgd``).

Imports are kept to what the projection needs: ``nuskybgd projbgd`` is timed
as a whole process (start-up budget of issue 11).
"""

import logging
import os
import time

import numpy as np

from ..constants import module_letter
from ..errors import NuskybgdError
from ..io.events import check_module
from ..io.output import atomic_outputs, check_outputs
from ..io.skyfiles import image_hdulist, read_image, read_instrmap
from ..sky.aspect import read_aspect_histogram
from ..sky.projection import check_reference_header, project_background

__all__ = ["parse_detectors", "projection_names", "make_projections", "plot_projection"]

log = logging.getLogger("nuskybgd")


def parse_detectors(text):
    """Detector numbers from a string of digits.

    Parameters
    ----------
    text : str or int
        Digits 1..4 (projbgd's ``det=1234``: detector number + 1).

    Returns
    -------
    tuple of int
        Sorted, unique detector numbers 1..4.

    Raises
    ------
    NuskybgdError
        For anything but digits 1..4.
    """
    text = str(text).strip()
    if not text or any(c not in "1234" for c in text):
        raise NuskybgdError(f"det={text!r}: expected digits 1..4, e.g. det=1234")
    return tuple(sorted(set(int(c) for c in text)))


def projection_names(module, detectors=(1, 2, 3, 4), outdir="."):
    """Names of the projected detector images.

    Parameters
    ----------
    module : str
        ``"A"`` or ``"B"``.
    detectors : sequence of int
        Detector numbers 1..4.
    outdir : str or os.PathLike
        Folder of the images.

    Returns
    -------
    dict
        Detector number -> ``outdir/det<n-1><module>im.fits``.
    """
    return {d: os.path.join(str(outdir), f"det{d - 1}{module}im.fits") for d in detectors}


def make_projections(refimg, module, chipmap, aspect, out, detectors=(1, 2, 3, 4), outdir=".", plot=None,
                     clobber=False):
    """Project the aperture image and detector masks of a module and write them.

    Parameters
    ----------
    refimg : str or os.PathLike
        Reference sky image (1000 x 1000 sky pixels, celestial WCS, PA_PNT).
    module : str
        ``"A"``/``"B"`` (or ``FPMA``/``FPMB``).
    chipmap : str or os.PathLike
        Instrument map (``nuskybgd mkinstrmap``).
    aspect : str or os.PathLike
        Aspect histogram (``nuskybgd aspecthist``).
    out : str or os.PathLike
        Output aperture image.
    detectors : sequence of int
        Detector numbers 1..4 to project.
    outdir : str or os.PathLike
        Folder of the ``det<n><module>im.fits`` images.
    plot : str or os.PathLike, optional
        Also write a PNG of the projected images.
    clobber : bool
        Replace existing outputs.

    Returns
    -------
    (Projection, list of str)
        The projection (:func:`nuskybgd.sky.projection.project_background`)
        and the files written.

    Raises
    ------
    NuskybgdError
        Bad inputs or existing outputs (nothing written then).
    """
    module = module_letter(module)
    dets = tuple(detectors)
    _, refhdr = read_image(refimg, "reference image")
    check_reference_header(refhdr, refimg)
    check_module(refhdr, module, refimg, "reference image", f"--mod {module}")
    imap, imaphdr = read_instrmap(chipmap, "instrument map (chipmap)")
    check_module(imaphdr, module, chipmap, "instrument map", f"--mod {module}")
    hist = read_aspect_histogram(aspect)
    check_module(hist.header, module, aspect, "aspect histogram", f"--mod {module}")
    detfiles = projection_names(module, dets, outdir)
    outputs = [str(out), *detfiles.values()] + ([str(plot)] if plot else [])
    check_outputs(outputs, clobber)
    t0 = time.perf_counter()
    proj = project_background(refhdr, module, imap, hist, detectors=dets, path=refimg)
    if not np.any(proj.aperture) or not any(np.any(proj.detectors[d - 1]) for d in dets):
        raise NuskybgdError(f"{aspect}: the aspect histogram puts the detectors off the "
                            f"{proj.aperture.shape[1]}x{proj.aperture.shape[0]} sky grid of {refimg} "
                            "(all-zero projection; wrong aspect file or reference image?)")
    log.info("projected module %s, detectors %s: %d aspect pixels, exposure %.1f s, peak (%d, %d), %.2f s",
             module, "".join(map(str, dets)), int((hist.image > 0).sum()), hist.exposure, *proj.peak,
             time.perf_counter() - t0)
    hist_line = (f"nuskybgd projbgd mod={module} det={''.join(map(str, dets))} chipmap={chipmap} "
                 f"aspect={aspect}")
    with atomic_outputs(outputs, clobber=clobber) as o:
        image_hdulist(proj.aperture, refhdr, history=[hist_line]).writeto(o[str(out)], checksum=True)
        for d, name in detfiles.items():
            image_hdulist(proj.detectors[d - 1], refhdr,
                          history=[hist_line, f"detector mask DET{d - 1}"]).writeto(o[name], checksum=True)
        if plot:
            plot_projection(proj, module, o[str(plot)])
    return proj, outputs


def plot_projection(proj, module, path):
    """PNG of a projection: aperture image and detector footprints.

    Parameters
    ----------
    proj : Projection
        From :func:`nuskybgd.sky.projection.project_background`.
    module : str
        ``"A"`` or ``"B"`` (title).
    path : str or os.PathLike
        PNG file (150 dpi).
    """
    import matplotlib  # local: matplotlib costs start-up time and is needed only with --plot
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    im = axes[0].imshow(proj.aperture, origin="lower", cmap="viridis")
    axes[0].set_title(f"aperture image, module {module}")
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    detsum = np.zeros_like(proj.aperture)
    for d in proj.detector_numbers:
        detsum += d * (proj.detectors[d - 1] > 0.5 * proj.detectors[d - 1].max())
    axes[1].imshow(np.ma.masked_equal(detsum, 0), origin="lower", cmap="tab10", vmin=0, vmax=10)
    axes[1].set_title("detector footprints (>50% of peak), 1..4")
    for ax in axes:
        ax.set_xlabel("sky x (pixel)")
        ax.set_ylabel("sky y (pixel)")
    fig.tight_layout()
    fig.savefig(path, dpi=150, format="png")
    plt.close(fig)
