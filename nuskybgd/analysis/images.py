"""Background model images in an energy band (``nuskybgd image``).

:func:`compute_images` spreads the fitted model over the sky with the
projected aperture and detector images (pure arrays, kernels in
:mod:`nuskybgd.sky.bgimage`); :func:`make_images` also writes them.
"""

import numpy as np
from scipy.ndimage import uniform_filter

from ..errors import NuskybgdError
from ..fitting.apply import group_component_counts
from ..io.events import read_events
from ..io.output import atomic_outputs
from ..io.skyfiles import image_hdulist
from ..sky.bgimage import band_channels, module_images
from ..sky.images import counts_image
from .setup import load_setup, spectrum_templates, state_presets, state_shapes

__all__ = ["compute_images", "make_images", "preview_images"]


def _norm_value(state, name, group, ipar):
    src = state.source(name)
    root, j, f = state.resolve(src, src.index(group, ipar))
    return f * root.params[j].value

def _ifactors(presets, key, module):
    """Per-detector ifactors of a template key (``intbgd.<comp>`` or ``intn``)."""
    comps = presets["models"]
    if key == "intn":
        return np.asarray(comps[3]["components"]["bknpower"][module]["ifactors"], float)
    name = key.split(".", 1)[1]
    return np.asarray(comps[1]["components"][name][module]["ifactors"], float)

def compute_images(setup, emin, emax, presets=None, cache=None, caldb=None):
    """Background model images of every module in a band.

    Parameters
    ----------
    setup : BackgroundSetup
    emin, emax : float
        Band, keV (channels of :func:`nuskybgd.sky.bgimage.band_channels`).
    presets : dict, optional
        ``ratios.json`` content (default: the bundle's).
    cache : dict, optional
        Template memo shared with other calls.
    caldb : str or Caldb, optional
        CALDB for the apbgd ARFs (default ``$CALDB``).

    Returns
    -------
    dict
        Module -> dict with ``apbgd``, ``intbgd``, ``intn``, ``fcxb``,
        ``total`` images, ``fcxb_regions`` ({spectrum number: image}),
        ``exposure`` (s, reference spectrum) and ``band_counts`` (the
        reference spectrum's predicted counts per component in the band).
    """

    presets = presets or state_presets(setup.state)
    cache = {} if cache is None else cache
    state = setup.state
    out = {}
    for m in sorted(set(setup.modules)):
        i = setup.ref_index(m)
        pha = setup.phas[i]
        rmf = pha.get_rmf()
        sel = band_channels(rmf.e_min, rmf.e_max, emin, emax)
        w = setup.weights[i]
        shapes = state_shapes(state, i + 1, m)
        t_ref = spectrum_templates(pha, m, w.frac, cache, shapes, caldb)
        comp = {k: float(np.sum(v[sel])) for k, v in group_component_counts(state, i + 1, t_ref).items()}
        apnorm = _norm_value(state, "apbgd", i + 1, 3)
        c_k = []
        for k in range(4):
            onehot = np.zeros(4)
            onehot[k] = 1.0
            c_k.append(apnorm * float(np.sum(spectrum_templates(pha, m, onehot, cache, shapes, caldb)["apbgd"][sel])))
        ikeys = [k for k in comp if k.startswith("intbgd.")]
        fc_counts, fc_areas, fc_masks, fc_numbers = [], [], [], []
        for r, mr in enumerate(setup.modules):
            if mr != m:
                continue
            pr = setup.phas[r]
            rr = pr.get_rmf()
            sel_r = band_channels(rr.e_min, rr.e_max, emin, emax)
            t_r = spectrum_templates(pr, m, setup.weights[r].frac, cache, state_shapes(state, r + 1, m), caldb)
            fc_counts.append(_norm_value(state, "fcxb", r + 1, 3) * float(np.sum(t_r["fcxb"][sel_r])))
            fc_areas.append(setup.weights[r].total_area)
            fc_masks.append(setup.masks[r])
            fc_numbers.append(r + 1)
        imgs = module_images(
            setup.ap[m], setup.det[m], w.ap, w.area, c_k,
            [comp[k] for k in ikeys], [_ifactors(presets, k, m) for k in ikeys],
            comp["intn"], _ifactors(presets, "intn", m), fc_counts, fc_areas, fc_masks)
        imgs["fcxb_regions"] = dict(zip(fc_numbers, imgs["fcxb_regions"]))
        imgs["exposure"] = float(pha.exposure)
        imgs["band_counts"] = comp
        out[m] = imgs
    return out


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

    if not float(emin) < float(emax):
        raise NuskybgdError(f"energy band {emin:g}-{emax:g} keV: emin must be below emax")
    setup = setup or load_setup(bgdinfo, fit)
    images = compute_images(setup, emin, emax, caldb=caldb)
    counts = {}
    if evtfiles:
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
            preview_images(out[name], images[m], counts.get(m), m, emin, emax)
    return list(outputs) + list(pngs.values())


def preview_images(path, imgs, counts, module, emin, emax):
    """Write a PNG preview of a module's total model image (and counts image).

    Parameters
    ----------
    path : str or os.PathLike
        PNG file (150 dpi).
    imgs : dict
        One module's entry of :func:`compute_images` (``total`` is shown).
    counts : numpy.ndarray or None
        Counts image of the module's events in the band (counts per sky
        pixel), shown smoothed beside the model when given.
    module : str
        ``"A"`` or ``"B"``.
    emin, emax : float
        Band, keV (titles).
    """
    import matplotlib  # local: matplotlib.pyplot costs 0.5-1.5 s at import; only for plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        sm = uniform_filter(np.asarray(counts, float), 9)[sl]
        im2 = axes[0, 1].imshow(sm, origin="lower", cmap="viridis", vmin=0, vmax=max(sub.max(), 1e-9),
                                extent=extent)
        axes[0, 1].set_title(f"counts (9x9 boxcar mean), {np.sum(counts):.0f} counts", fontsize=9)
        fig.colorbar(im2, ax=axes[0, 1], label="counts / pixel")
    for ax in axes.ravel():
        ax.set_xlabel("sky X (pixel)")
        ax.set_ylabel("sky Y (pixel)")
    fig.tight_layout()
    fig.savefig(path, dpi=150, format="png")
    plt.close(fig)
