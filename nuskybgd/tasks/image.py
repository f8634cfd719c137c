"""``nuskybgd image``: background model images in an energy band."""

from ..errors import NuskybgdError

SUMMARY = "background model images in an energy band"

DESCRIPTION = """\
Spread the fitted background model over the sky (REFERENCE section 7): for
each module, the counts the fit predicts in the band for the reference
spectrum are distributed with the projected aperture and detector images.
The sum of an image over any region equals the counts the spectral model
predicts for that region (the spec task's background spectrum).

Outputs (counts per sky pixel for the reference spectrum's exposure, WCS of
the reference image):
  PREFIXbgd_apbgd_<m>.fits, PREFIXbgd_intbgd_<m>.fits, PREFIXbgd_fcxb_<m>.fits,
  PREFIXbgd_intn_<m>.fits, their sum PREFIXbgd_total_<m>.fits,
  PREFIXbgd_fcxb_<n>.fits for background spectrum n (its fitted fCXB inside
  its region), and a preview PREFIXbgd_<m>.png (beside the counts image of
  --evtfile for that module, when given).

FIT is the JSON written by 'nuskybgd fit' or an XCM file (XSPEC's, the
original tool's or ours) whose spectra are bgdinfo's, in order.

examples:
  nuskybgd image bgdinfo.json bgdparams.json 3 20
  nuskybgd image bgdinfo.json bgdparams.xcm 3 20 prefix=img/ --evtfile A01_cl.evt
"""

LEGACY = {"prefix": "--prefix"}


def add_arguments(parser):
    """Arguments of ``nuskybgd image``."""
    parser.add_argument("bgdinfo", help="bgdinfo.json of the fit")
    parser.add_argument("fit", help="fit result: NAME.json or an XCM file")
    parser.add_argument("emin", type=float, help="band lower bound, keV")
    parser.add_argument("emax", type=float, help="band upper bound, keV")
    parser.add_argument("--prefix", default="", help="prefix of the output files (may include a folder)")
    parser.add_argument("--evtfile", action="append", default=[],
                        help="event file whose counts image is shown beside the model (once per module)")


def run(args):
    """Run ``nuskybgd image``."""
    import logging
    import math
    log = logging.getLogger("nuskybgd")
    if not (math.isfinite(args.emin) and math.isfinite(args.emax)) or not args.emin < args.emax:
        raise NuskybgdError(f"energy band {args.emin:g}-{args.emax:g} keV: emin must be below emax")
    names = make_images(args.bgdinfo, args.fit, args.emin, args.emax, prefix=args.prefix,
                        evtfiles=args.evtfile, clobber=args.clobber)
    for n in names:
        log.info("wrote %s", n)
    return 0


def make_images(bgdinfo, fit, emin, emax, prefix="", evtfiles=(), clobber=False, setup=None, caldb=None):
    """Compute and write the model images (see the task description).

    Parameters
    ----------
    bgdinfo, fit : str or os.PathLike
        bgdinfo.json and the fit (JSON or XCM).
    emin, emax : float
        Band, keV.
    prefix : str
        Output prefix.
    evtfiles : sequence of str
        Event files for counts images in the preview.
    clobber : bool
        Replace existing outputs.
    setup : BackgroundSetup, optional
        Already loaded inputs (skips reading bgdinfo and the fit).
    caldb : str or Caldb, optional
        CALDB for the apbgd ARFs (default ``$CALDB``).

    Returns
    -------
    list of str
        Files written.
    """
    import numpy as np
    from ..fitting.apply import compute_images, load_setup
    from ..io.output import atomic_outputs
    from ..io.skyfiles import image_hdulist

    if not float(emin) < float(emax):
        raise NuskybgdError(f"energy band {emin:g}-{emax:g} keV: emin must be below emax")
    setup = setup or load_setup(bgdinfo, fit)
    images = compute_images(setup, emin, emax, caldb=caldb)
    counts = {}
    if evtfiles:
        from ..io.events import read_events
        from ..sky.images import counts_image
        for f in evtfiles:
            ev = read_events(f, columns=("PI", "X", "Y"))
            counts[ev.module] = counts_image(ev, emin, emax)[0]

    outputs = {}
    for m, imgs in images.items():
        for comp in ("apbgd", "intbgd", "fcxb", "intn", "total"):
            outputs[f"{prefix}bgd_{comp}_{m}.fits"] = (imgs[comp], m, comp)
        for r, img in imgs["fcxb_regions"].items():
            outputs[f"{prefix}bgd_fcxb_{r}.fits"] = (img, m, f"fcxb of background spectrum {r}")
    pngs = {m: f"{prefix}bgd_{m}.png" for m in images}
    header = setup.header
    with atomic_outputs(list(outputs) + list(pngs.values()), clobber) as out:
        for name, (img, m, comp) in outputs.items():
            hdr = header.copy()
            hdr["BUNIT"] = ("count", "model counts per pixel")
            hdr["E_MIN"] = (float(emin), "[keV] band lower bound")
            hdr["E_MAX"] = (float(emax), "[keV] band upper bound")
            hdr["INSTRUME"] = f"FPM{m}"
            hdr["EXPOSURE"] = (float(images[m]["exposure"]), "[s] exposure of the reference spectrum")
            hdr["BGDCOMP"] = (comp[:60], "nuskybgd background component")
            hdul = image_hdulist(np.asarray(img, float), hdr,
                                 history=[f"nuskybgd image: {comp}, {emin:g}-{emax:g} keV"])
            hdul.writeto(out[name], checksum=True)
        for m, name in pngs.items():
            _preview(out[name], images[m], counts.get(m), m, emin, emax)
    return list(outputs) + list(pngs.values())


def _preview(path, imgs, counts, module, emin, emax):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    total = imgs["total"]
    ys, xs = np.nonzero(total > 1e-3 * total.max()) if total.max() > 0 else (np.array([]), np.array([]))
    if ys.size:
        sl = (slice(max(ys.min() - 10, 0), ys.max() + 11), slice(max(xs.min() - 10, 0), xs.max() + 11))
    else:
        sl = (slice(None), slice(None))
    y0 = sl[0].start or 0
    x0 = sl[1].start or 0
    sub = total[sl]
    extent = (x0 + 0.5, x0 + sub.shape[1] + 0.5, y0 + 0.5, y0 + sub.shape[0] + 0.5)  # 1-based sky pixels
    ncol = 2 if counts is not None else 1
    fig, axes = plt.subplots(1, ncol, figsize=(5.2 * ncol, 4.6), squeeze=False)
    im = axes[0, 0].imshow(sub, origin="lower", cmap="viridis", extent=extent)
    axes[0, 0].set_title(f"FPM{module} background model {emin:g}-{emax:g} keV\n"
                         f"{total.sum():.0f} counts", fontsize=9)
    fig.colorbar(im, ax=axes[0, 0], label="counts / pixel")
    if counts is not None:
        from scipy.ndimage import uniform_filter
        sm = uniform_filter(np.asarray(counts, float), 9)[sl]
        im2 = axes[0, 1].imshow(sm, origin="lower", cmap="viridis", vmin=0, vmax=max(sub.max(), 1e-9),
                                extent=extent)
        axes[0, 1].set_title(f"counts (9x9 boxcar mean), {np.sum(counts):.0f} counts", fontsize=9)
        fig.colorbar(im2, ax=axes[0, 1], label="counts / pixel")
    for ax in axes.ravel():
        ax.set_xlabel("sky X (pixel)")
        ax.set_ylabel("sky Y (pixel)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
