"""``nuskybgd projbgd``: aperture and detector images projected onto the sky."""

SUMMARY = "project aperture and detector images onto the sky"

DESCRIPTION = """\
Project the aperture (stray-light) image and the detector masks of one module
onto the reference sky image (REFERENCE section 4): rotate the DET1 images by
the roll angle (PA_PNT + 1 deg) around the aspect-histogram peak, then smear
them by the aspect histogram (an exact circular convolution), all divided by
the total dwell time. Writes OUT (aperture image) and det<n><A|B>im.fits for
each requested detector n-1 (det=1234 -> det0..det3), in the current folder
or --outdir; every file carries the reference image's header.

The reference image must be 1000x1000 with a celestial WCS and PA_PNT (e.g.
from 'nuskybgd mkimgs'); chipmap= is the INSTRMAP from 'nuskybgd mkinstrmap'
and aspect= the histogram from 'nuskybgd aspecthist'.

examples:
  nuskybgd projbgd refimg=imA4to25keV.fits out=bgdapA.fits mod=A det=1234 \\
      chipmap=newinstrmapA.fits aspect=aspecthistA.fits
      -> bgdapA.fits, det0Aim.fits ... det3Aim.fits
  nuskybgd projbgd --refimg imB.fits --out bgd/bgdapB.fits --mod B --det 12 \\
      --chipmap newinstrmapB.fits --aspect aspecthistB.fits --outdir bgd --plot bgd/projB.png
"""

LEGACY = {"refimg": "--refimg", "out": "--out", "mod": "--mod", "det": "--det",
          "chipmap": "--chipmap", "aspect": "--aspect"}


def add_arguments(parser):
    """Arguments of ``nuskybgd projbgd``."""
    parser.add_argument("--refimg", required=True, help="reference sky image (1000x1000, WCS, PA_PNT)")
    parser.add_argument("--out", required=True, help="output aperture image (e.g. bgdapA.fits)")
    parser.add_argument("--mod", required=True, help="module, A or B")
    parser.add_argument("--det", default="1234", help="detectors to project, digits 1..4 (default 1234)")
    parser.add_argument("--chipmap", required=True, help="instrument map with an INSTRMAP image (mkinstrmap)")
    parser.add_argument("--aspect", required=True, help="aspect histogram (aspecthist)")
    parser.add_argument("--outdir", default=".", help="folder of the det<n><A|B>im.fits files (default .)")
    parser.add_argument("--plot", default=None, help="also save a PNG of the projected images")


def _detectors(text):
    from ..errors import NuskybgdError
    text = str(text).strip()
    if not text or any(c not in "1234" for c in text):
        raise NuskybgdError(f"det={text!r}: expected digits 1..4, e.g. det=1234")
    return tuple(sorted(set(int(c) for c in text)))


def _plot(proj, module, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
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
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def run(args):
    """Run ``nuskybgd projbgd``."""
    import logging
    import os
    import time

    import numpy as np

    from ..constants import module_letter
    from ..errors import NuskybgdError
    from ..io.events import check_module
    from ..io.output import atomic_outputs
    from ..io.skyfiles import image_hdulist, read_image, read_instrmap
    from ..sky.aspect import read_aspect_histogram
    from ..sky.projection import check_reference_header, project_background
    log = logging.getLogger("nuskybgd")
    module = module_letter(args.mod)
    dets = _detectors(args.det)
    _, refhdr = read_image(args.refimg, "reference image")
    check_reference_header(refhdr, args.refimg)
    check_module(refhdr, module, args.refimg, "reference image", f"--mod {module}")
    imap, imaphdr = read_instrmap(args.chipmap, "instrument map (chipmap)")
    check_module(imaphdr, module, args.chipmap, "instrument map", f"--mod {module}")
    hist = read_aspect_histogram(args.aspect)
    check_module(hist.header, module, args.aspect, "aspect histogram", f"--mod {module}")
    detfiles = {d: os.path.join(args.outdir, f"det{d - 1}{module}im.fits") for d in dets}
    outputs = [args.out, *detfiles.values()] + ([args.plot] if args.plot else [])
    from ..io.output import check_outputs
    check_outputs(outputs, args.clobber)
    t0 = time.perf_counter()
    proj = project_background(refhdr, module, imap, hist, detectors=dets, path=args.refimg)
    if not np.any(proj.aperture) or not any(np.any(proj.detectors[d - 1]) for d in dets):
        raise NuskybgdError(f"{args.aspect}: the aspect histogram puts the detectors off the "
                            f"{proj.aperture.shape[1]}x{proj.aperture.shape[0]} sky grid of {args.refimg} "
                            "(all-zero projection; wrong aspect file or reference image?)")
    log.info("projected module %s, detectors %s: %d aspect pixels, exposure %.1f s, peak (%d, %d), %.2f s",
             module, "".join(map(str, dets)), int((hist.image > 0).sum()), hist.exposure, *proj.peak,
             time.perf_counter() - t0)
    hist_line = (f"nuskybgd projbgd mod={module} det={''.join(map(str, dets))} chipmap={args.chipmap} "
                 f"aspect={args.aspect}")
    with atomic_outputs(outputs, clobber=args.clobber) as out:
        image_hdulist(proj.aperture, refhdr, history=[hist_line]).writeto(out[args.out], checksum=True)
        for d, name in detfiles.items():
            image_hdulist(proj.detectors[d - 1], refhdr,
                          history=[hist_line, f"detector mask DET{d - 1}"]).writeto(out[name], checksum=True)
        if args.plot:
            _plot(proj, module, out[args.plot])
    log.info("wrote %s", ", ".join(outputs))
    return 0
