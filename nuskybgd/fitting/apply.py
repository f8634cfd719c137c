"""Apply a fitted background model to source regions (``spec``, ``simplify``).

``spec`` (REFERENCE section 7): each source spectrum joins the fitted state
as a new data group whose background parameters are tied to the module's
reference spectrum by the same ratios as the background spectra (section 6):
apbgd by ``ap_src / ap_ref``, every intbgd component and intn by
``sum_k area_src[k] ifactor[k] / sum_k area_ref[k] ifactor[k]``. The fCXB
norm is the area-weighted mean of the fitted fCXB surface brightness over
the module's background regions times the source area,
``sum(area_src) * sum_r norm_r / sum_r sum(area_r)`` (``fcxb="preset"``
gives the original's preset ``FCXB_FACTOR * sum(area_src)`` instead).

The predicted background of a source spectrum is the sum over components of
norm x (counts per unit norm folded through the source's RMF, the
component's ARF with the source's detector fractions, and the source's
exposure); that is what ``bgd_<stem>_bkg.pha`` holds.

``simplify``: drop the background spectra from a spec state, replace every
link by its value and freeze every background parameter.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NuskybgdError
from .model import (BACKGROUND_SOURCES, FitState, SpectrumEntry,
                    build_background_state)
from .uncertainty import (fit_covariance, norm_components, prediction_jacobian, prediction_sigma,
                          source_fcxb_coefficients)

__all__ = [
    "SourceSpectrum", "fcxb_surface_brightness", "source_fcxb_norm", "add_source_spectra",
    "group_component_counts", "simplify_state", "default_savefile", "simplify_savefile",
]

log = logging.getLogger("nuskybgd")

_BG_NAMES = tuple(name for _, name in BACKGROUND_SOURCES)


@dataclass
class SourceSpectrum:
    """A source spectrum and its region, ready to join a fitted state.

    Attributes
    ----------
    file : str
        Spectrum path as written into the XCM.
    module : str
        ``"A"`` or ``"B"``.
    area : numpy.ndarray, shape (4,)
        Region area on each detector (sky pixels, from the projected
        detector images).
    ap : float
        Aperture-image sum in the region.
    responses : dict
        Source number -> response file (2..5, as for background spectra).
    arfs : dict
        Source number -> ARF file (2 apbgd, 4 fcxb).
    ignore : list of (int, int)
        Ignored bin ranges (1-based inclusive).
    extra : dict
        Anything the caller wants to keep (paths, PHA object, mask).
    """

    file: str
    module: str
    area: np.ndarray
    ap: float
    responses: dict = field(default_factory=dict)
    arfs: dict = field(default_factory=dict)
    ignore: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def frac(self):
        """Detector fractions ``area / sum(area)``."""
        a = np.asarray(self.area, float)
        return a / a.sum()


class _W:
    def __init__(self, area, ap):
        self.area = np.asarray(area, float)
        self.ap = float(ap)


def fcxb_surface_brightness(norms, areas):
    """Area-weighted mean fCXB surface brightness of background regions.

    Parameters
    ----------
    norms : array_like, shape (n,)
        Fitted fcxb norms of the regions (photons/cm^2/s/keV at 1 keV).
    areas : array_like, shape (n,)
        ``sum(area_r)`` of the regions (sky pixels).

    Returns
    -------
    float
        ``sum(norms) / sum(areas)``, the mean of ``norm_r / area_r`` weighted
        by ``area_r`` (norm per sky pixel).
    """
    a = float(np.sum(areas))
    if not a > 0:
        raise NuskybgdError("fcxb: background regions have zero total area")
    return float(np.sum(norms)) / a


def source_fcxb_norm(state, modules, areas, module, src_area, mode="fitted"):
    """fCXB norm of a source region.

    Parameters
    ----------
    state : FitState
        The fitted background state (background spectra only, or first).
    modules : list of str
        Module of each background spectrum.
    areas : list of array_like
        ``area_r[k]`` of each background spectrum (sky pixels).
    module : str
        The source spectrum's module.
    src_area : float
        ``sum(area_src)`` (sky pixels).
    mode : {"fitted", "preset"}
        ``fitted``: area-weighted mean fitted surface brightness of the
        module's background regions times ``src_area``; ``preset``: the
        original's ``FCXB_FACTOR * src_area``.

    Returns
    -------
    float
    """
    # one rule for the value and its error: the norm is linear in the fitted roots
    coeffs, offset = source_fcxb_coefficients(state, modules, areas, module, src_area, mode)
    return offset + sum(c * state.source(name).params[j].value for (name, j), c in coeffs.items())


def add_source_spectra(fit_state, bg_modules, bg_weights, sources, presets, fix_line_ratios=False,
                       fcxb="fitted"):
    """The fitted state with source spectra added (the ``spec`` state).

    Parameters
    ----------
    fit_state : FitState
        The fitted background model, its first spectra being bgdinfo's
        background spectra in order (sources apbgd, intbgd, fcxb, intn).
    bg_modules : list of str
        Module of each background spectrum.
    bg_weights : list
        Region weights of each background spectrum (objects with ``area[4]``
        and ``ap``).
    sources : list of SourceSpectrum
        Source spectra to add, in order; they become data groups
        ``n_bg + 1 ...``.
    presets : dict
        ``ratios.json`` content.
    fix_line_ratios : bool
        bgdinfo's ``intbgd_fix_line_ratios`` (only changes the reference
        spectrum's own ties, which are copied from the fit anyway).
    fcxb : {"fitted", "preset"}
        fCXB norm of the source groups (see :func:`source_fcxb_norm`).

    Returns
    -------
    FitState
        Background spectra with the fitted parameters and ties as in
        ``fit_state``; source groups linked to the reference spectra with the
        section 6 ratios, fCXB norms free at the scaled value. Models other
        than the four background sources are dropped (with a warning).

    Raises
    ------
    NuskybgdError
        If the fitted state lacks a background source, has a different
        number of parameters per group, or a source module has no
        background spectrum.
    """
    n_bg = len(bg_modules)
    if len(bg_weights) != n_bg:
        raise NuskybgdError(f"{n_bg} background spectra but {len(bg_weights)} region weights")
    if len(fit_state.spectra) < n_bg:
        raise NuskybgdError(f"the fit has {len(fit_state.spectra)} spectra, bgdinfo lists {n_bg}")
    if len(fit_state.spectra) > n_bg:
        log.warning("the fit has %d spectra, bgdinfo %d background spectra: spectra %d.. are dropped",
                    len(fit_state.spectra), n_bg, n_bg + 1)
    for s in sources:
        if s.module not in bg_modules:
            raise NuskybgdError(f"{s.file}: module {s.module} has no background spectrum in bgdinfo")
        if not np.sum(s.area) > 0:
            raise NuskybgdError(f"{s.file}: its region has zero area on every detector of module {s.module}")
        if not s.ap > 0:
            raise NuskybgdError(f"{s.file}: its region has zero aperture-image weight")
    names = {src.name for src in fit_state.sources}
    for name in _BG_NAMES:
        if name not in names:
            raise NuskybgdError(f"the fit has no model named {name!r} (not a nuskybgd background fit)")
    dropped = [src.name or str(src.number) for src in fit_state.sources if src.name not in _BG_NAMES]
    if dropped:
        log.warning("models %s of the fit are not part of the background and are dropped", ", ".join(dropped))

    dummy = []
    for i, m in enumerate(bg_modules):
        dummy.append({"file": fit_state.spectra[i].file, "module": m, "rmf": "", "apbgd_arf": "",
                      "fcxb_arf": "", "diag_rmf": ""})
    for s in sources:
        dummy.append({"file": s.file, "module": s.module, "rmf": "", "apbgd_arf": "", "fcxb_arf": "",
                      "diag_rmf": ""})
    weights = [_W(w.area, w.ap) for w in bg_weights] + [_W(s.area, s.ap) for s in sources]
    new = build_background_state(dummy, weights, presets, fix_line_ratios=fix_line_ratios)

    # Background spectra and their parameters exactly as fitted.
    new.spectra = [copy.deepcopy(e) for e in fit_state.spectra[:n_bg]]
    for k, s in enumerate(sources):
        new.spectra.append(SpectrumEntry(group=n_bg + k + 1, number=n_bg + k + 1, file=str(s.file),
                                         responses=dict(s.responses), arfs=dict(s.arfs),
                                         ignore=[tuple(r) for r in s.ignore]))
    for src in new.sources:
        fitted = fit_state.source(src.name)
        if fitted.npar != src.npar or fitted.components != src.components:
            raise NuskybgdError(f"model {src.name!r} of the fit is '{fitted.expression}', expected '{src.expression}'")
        npar = src.npar
        src.params[: n_bg * npar] = copy.deepcopy(fitted.params[: n_bg * npar])
    new.statistic = fit_state.statistic
    new.settings = list(fit_state.settings) or new.settings
    new.trailer = list(fit_state.trailer) or new.trailer

    bg_areas = [np.asarray(w.area, float) for w in bg_weights]
    fc = new.source("fcxb")
    for k, s in enumerate(sources):
        p = fc.param(n_bg + k + 1, 3)
        p.link = None
        p.value = source_fcxb_norm(fit_state, bg_modules, bg_areas, s.module, float(np.sum(s.area)), fcxb)
        p.delta = abs(p.delta) if p.delta else 0.01
    new.update_linked_values()
    info = dict(fit_state.info)
    info["n_background"] = n_bg
    info["sources"] = [{"file": s.file, "module": s.module, "area": [float(a) for a in s.area],
                        "ap": float(s.ap), "frac": [float(x) for x in s.frac]} for s in sources]
    info["fcxb_mode"] = fcxb
    new.info = info
    return new


def group_component_counts(state, group, templates):
    """Predicted counts per channel of each background component of a group.

    Parameters
    ----------
    state : FitState
        A state with the background sources.
    group : int
        Data group (1-based).
    templates : dict of str -> ndarray
        Counts per channel per unit norm of each component for that
        spectrum (``models.background.component_templates``).

    Returns
    -------
    dict of str -> ndarray
        ``norm * template`` for every norm-carrying component (keys as the
        templates: ``apbgd``, ``intbgd.apec``, ``intbgd.lorentz_3``, ...,
        ``fcxb``, ``intn``), counts per channel.
    """
    out = {}
    for src, ipar, key, t in norm_components(state, templates):
        root, j, f = state.resolve(src, src.index(group, ipar))
        out[key] = f * root.params[j].value * t
    return out


def simplify_state(state, n_bg):
    """Background-only state for the source spectra (``simplify``).

    Parameters
    ----------
    state : FitState
        A spec state: ``n_bg`` background spectra followed by source spectra.
    n_bg : int
        Number of background spectra (bgdinfo's ``bgfiles``).

    Returns
    -------
    FitState
        Only the source spectra (renumbered 1..n, data groups 1..n), every
        background parameter frozen at its current value (links replaced by
        values), other models dropped.

    Raises
    ------
    NuskybgdError
        If the state has no spectrum after the background ones.
    """
    n = len(state.spectra)
    if n <= n_bg:
        raise NuskybgdError(f"the state has {n} spectra, no source spectrum after the {n_bg} background spectra")
    st = state.copy()
    st.update_linked_values()
    groups = sorted({e.group for e in st.spectra[n_bg:]})
    if min(groups) <= max((e.group for e in st.spectra[:n_bg]), default=0):
        raise NuskybgdError("a source spectrum shares a data group with a background spectrum; cannot simplify")
    gmap = {g: i + 1 for i, g in enumerate(groups)}
    spectra = []
    for k, e in enumerate(st.spectra[n_bg:]):
        e = copy.deepcopy(e)
        e.number = k + 1
        e.group = gmap[e.group]
        spectra.append(e)
    sources = []
    for src in st.sources:
        if src.name not in _BG_NAMES:
            continue
        values = []
        for g in groups:
            for ipar in range(1, src.npar + 1):
                root, j, f = st.resolve(src, src.index(g, ipar))
                p = copy.deepcopy(src.param(g, ipar))
                p.link = None
                p.value = f * root.params[j].value
                p.error = None
                p.delta = -abs(p.delta) if p.delta else -0.01
                lo, hi = min(p.hard_min, p.value), max(p.hard_max, p.value)
                p.hard_min, p.hard_max = lo, hi
                p.soft_min, p.soft_max = min(p.soft_min, p.value), max(p.soft_max, p.value)
                values.append(p)
        src = copy.deepcopy(src)
        src.params = values
        sources.append(src)
    out = FitState(spectra=spectra, sources=sources, settings=list(st.settings), statistic=st.statistic,
                   trailer=list(st.trailer),
                   info={k: v for k, v in st.info.items() if k not in ("weights", "covariance")})
    out.info["simplified_from_groups"] = groups
    return out


def default_savefile(src_regfiles):
    """Default spec output name: ``bgd_<stem of the first source region>``.

    Parameters
    ----------
    src_regfiles : list of str

    Returns
    -------
    str
        Without extension, in the current folder (as the original).
    """
    return "bgd_" + Path(src_regfiles[0]).stem


def simplify_savefile(xcm):
    """Default simplify output name (the original's rule).

    Parameters
    ----------
    xcm : str
        The spec XCM file.

    Returns
    -------
    str
        ``bgd_`` replaced by ``bgd_only_`` in the file stem, or ``bgd_only_``
        prepended; without extension.
    """
    stem = Path(xcm).name
    if stem.endswith(".xcm"):
        stem = stem[:-4]
    return stem.replace("bgd_", "bgd_only_", 1) if "bgd_" in stem else "bgd_only_" + stem


def _display_bins(e_lo, e_hi, emin=3.0, emax=150.0, n=60):
    """Channel index groups on a log energy grid for display."""
    edges = np.geomspace(emin, emax, n + 1)
    c = 0.5 * (np.asarray(e_lo) + np.asarray(e_hi))
    idx = np.digitize(c, edges) - 1
    idx[(c < emin) | (c >= emax)] = -1
    return edges, idx


def plot_source_spectrum(ax, e_lo, e_hi, counts, components, exposure, title="", emin=3.0, emax=150.0):
    """Draw a source spectrum with the predicted background and components.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    e_lo, e_hi : array_like, shape (n_chan,)
        Channel energy bounds (keV).
    counts : array_like, shape (n_chan,)
        Observed counts of the source spectrum.
    components : dict of str -> ndarray
        Predicted background counts per channel of each component
        (:func:`group_component_counts`); intbgd parts are summed for display.
    exposure : float
        Exposure (s), to show counts/s/keV.
    title : str
    emin, emax : float
        Displayed band (keV).
    """
    edges, idx = _display_bins(e_lo, e_hi, emin, emax)
    ok = idx >= 0
    width = np.diff(edges)
    centre = np.sqrt(edges[:-1] * edges[1:])
    norm = 1.0 / (exposure * width)

    def binned(x):
        return np.bincount(idx[ok], weights=np.asarray(x, float)[ok], minlength=len(width))

    d = binned(counts)
    y = d * norm
    err = np.sqrt(np.maximum(d, 1)) * norm
    pos = d > 0
    ax.errorbar(centre[pos], y[pos], yerr=[np.minimum(err[pos], 0.95 * y[pos]), err[pos]], fmt=".", color="k",
                ms=3, lw=0.8, label="source spectrum")
    groups = {}
    for k, v in components.items():
        g = k.split(".")[0]
        groups[g] = groups.get(g, 0.0) + np.asarray(v, float)
    total = sum(groups.values())
    tb = binned(total) * norm
    ax.step(edges, np.append(tb, np.nan), where="post", color="k", lw=1.6, alpha=0.6,
            label="predicted background")
    colours = {"apbgd": "C0", "intbgd": "C2", "fcxb": "C1", "intn": "C3"}
    for k, v in sorted(groups.items()):
        ax.step(edges, np.append(binned(v) * norm, np.nan), where="post", lw=0.9, color=colours.get(k, "C4"),
                label=k)
    top = max(np.nanmax(tb), np.nanmax(y) if y.size else 0)
    if top > 0:
        ax.set_ylim(top * 1e-4, top * 3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(emin, emax)
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("counts / s / keV")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


# ----------------------------------------------------------------------------
# Loading what spec and image need (I/O; the kernels above stay pure)
# ----------------------------------------------------------------------------

@dataclass
class BackgroundSetup:
    """Everything about the background regions that spec and image need.

    Attributes
    ----------
    info : BgdInfo
        The parsed bgdinfo.json.
    state : FitState
        The fitted model (from our JSON or an XCM), spectra checked against
        bgdinfo.
    header : astropy.io.fits.Header
        Header of the reference image (WCS of the masks).
    shape : tuple of int
        Sky image shape (ny, nx).
    ap : dict
        Module -> projected aperture image.
    det : dict
        Module -> array (4, ny, nx) of projected detector images.
    modules : list of str
        Module of each background spectrum.
    masks : list of ndarray of bool
        Background region masks.
    weights : list of Weights
        Background region weights.
    phas : list of DataPHA
        Background spectra with their responses.
    """

    info: object
    state: FitState
    header: object
    shape: tuple
    ap: dict
    det: dict
    modules: list
    masks: list
    weights: list
    phas: list

    def ref_index(self, module):
        """0-based index of the module's reference spectrum."""
        try:
            return self.modules.index(module)
        except ValueError:
            raise NuskybgdError(f"{self.info.path}: no background spectrum of module {module}") from None


def load_fit(path, info, extra_spectra_ok=False):
    """Read a fitted state (our JSON or any XCM) and check it against bgdinfo.

    Parameters
    ----------
    path : str or os.PathLike
        ``NAME.json`` written by ``nuskybgd fit``, or an XCM file (XSPEC's
        ``save all``, the original tool's or ours).
    info : BgdInfo
    extra_spectra_ok : bool
        Spectra after bgdinfo's are expected (a spec state): no warning.

    Returns
    -------
    FitState

    Raises
    ------
    NuskybgdError
        Unreadable file, or spectra that do not match bgdinfo's bgfiles (the
        first mismatch is named).
    """
    from ..io.xcm import check_spectrum_order, read_xcm
    p = Path(path)
    if p.suffix.lower() == ".json":
        import json
        from .export import state_from_json
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise NuskybgdError(f"{p}: fit file not found") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise NuskybgdError(f"{p}: cannot read fit JSON ({exc})") from None
        state = state_from_json(d, str(p))
        base = p.parent
    else:
        state = read_xcm(p)
        base = p.parent
    check_spectrum_order(state, info.bgfiles_raw or [str(x) for x in info.bgfiles], base, info.folder,
                         xcm_path=str(p), bgdinfo_path=str(info.path))
    if len(state.spectra) != len(info.bgfiles) and not extra_spectra_ok:
        log.warning("%s: %d spectra, bgdinfo lists %d; only the first %d are used",
                    p, len(state.spectra), len(info.bgfiles), len(info.bgfiles))
    return state


def _read_image(path, what, shape=None):
    from ..io.fitsfile import open_fits
    with open_fits(path, what) as hdul:
        hdu = next((h for h in hdul if getattr(h, "data", None) is not None and np.ndim(h.data) == 2), None)
        if hdu is None:
            raise NuskybgdError(f"{path}: {what} has no 2-D image")
        data = np.asarray(hdu.data, float)
        header = hdu.header.copy()
    if shape is not None and data.shape != tuple(shape):
        raise NuskybgdError(f"{path}: {what} is {data.shape[1]}x{data.shape[0]}, "
                            f"the reference image is {shape[1]}x{shape[0]}")
    if not np.all(np.isfinite(data)):
        raise NuskybgdError(f"{path}: {what} contains NaN or infinite values")
    return data, header


def load_setup(bgdinfo_path, fit_path, modules_needed=None):
    """Read bgdinfo, the fit, the projected images and the background weights.

    Parameters
    ----------
    bgdinfo_path : str or os.PathLike
    fit_path : str or os.PathLike
    modules_needed : iterable of str, optional
        Modules whose images must exist (default: those of the background
        spectra).

    Returns
    -------
    BackgroundSetup
    """
    from ..io.ogip import read_pha, spectrum_module
    from ..io.regions import region_mask
    from .bgdinfo import load_bgdinfo
    from .weights import region_weights

    info = load_bgdinfo(bgdinfo_path)
    state = load_fit(fit_path, info)
    ref_img, header = _read_image(info.refimgf, "reference image")
    shape = ref_img.shape
    phas, modules = [], []
    for f in info.bgfiles:
        pha = read_pha(f, responses=True)
        phas.append(pha)
        modules.append(spectrum_module(pha, str(f)))
    need = set(modules) | set(modules_needed or ())
    ap, det = {}, {}
    for m in sorted(need):
        if m not in info.bgdapfiles or m not in info.bgddetfiles:
            raise NuskybgdError(f"{info.path}: no projected images of module {m} (bgdapfiles/bgddetfiles)")
        ap[m] = _read_image(info.bgdapfiles[m], f"aperture image of module {m}", shape)[0]
        det[m] = np.array([_read_image(f, f"detector image DET{k} of module {m}", shape)[0]
                           for k, f in enumerate(info.bgddetfiles[m])])
    masks, weights = [], []
    for f, r, m in zip(info.bgfiles, info.regfiles, modules):
        mask = region_mask(r, header, shape=shape, header=header)
        masks.append(mask)
        weights.append(region_weights(mask, list(det[m]), ap[m], name=str(r)))
    return BackgroundSetup(info=info, state=state, header=header, shape=shape, ap=ap, det=det,
                           modules=modules, masks=masks, weights=weights, phas=phas)


def spectrum_templates(pha, module, frac, cache=None, presets=None, caldb=None):
    """Counts per channel per unit norm of every component for a spectrum.

    Parameters
    ----------
    pha : sherpa.astro.data.DataPHA
        Spectrum with its RMF loaded.
    module : str
    frac : array_like, shape (4,)
        Detector fractions of the spectrum's region.
    cache : dict, optional
        Memo keyed by (RMF, module, fractions, exposure, shapes).
    presets : ComponentPresets, optional
        Component shapes (default: the bundle's presets; see
        :func:`nuskybgd.fitting.prepare.shape_presets` for a state's shapes).
    caldb : str or Caldb, optional
        CALDB of the apbgd ARF's DETABS and Be window (default ``$CALDB``).

    Returns
    -------
    dict of str -> ndarray
        ``models.background.component_templates`` for the spectrum.
    """
    from ..models.background import component_templates
    rmf = pha.get_rmf() if hasattr(pha, "get_rmf") else None
    if rmf is None:
        raise NuskybgdError(f"{pha.name}: no RMF (RESPFILE) to fold the background model through")
    date = pha.header.get("DATE-OBS") if getattr(pha, "header", None) is not None else None
    key = (id(rmf), module, tuple(np.round(np.asarray(frac, float), 12)), float(pha.exposure), presets,
           str(caldb), str(date))
    if cache is not None and key in cache:
        return cache[key][1]
    t = component_templates(rmf, module, np.asarray(frac, float), float(pha.exposure), presets=presets,
                            caldb=caldb, date=date)
    if cache is not None:
        cache[key] = (rmf, t)  # keep the RMF alive so that its id stays unique
    return t


def state_shapes(state, group, module):
    """Component shapes of a state's data group (frozen/linked shape values).

    Parameters
    ----------
    state : FitState
    group : int
    module : str

    Returns
    -------
    ComponentPresets
    """
    from .prepare import shape_presets
    return shape_presets(state, group, module)


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
    from ..auxil import load_ratios
    from ..sky.bgimage import band_channels, module_images

    presets = presets or load_ratios()
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


def _rebase(name, from_dir, to_dir):
    """A file name relative to ``from_dir`` rewritten relative to ``to_dir``."""
    q = Path(name)
    if q.is_absolute():
        return str(q)
    return _rel(Path(from_dir) / q, to_dir)


def _rel(path, to_dir):
    """``path`` relative to ``to_dir`` when inside it, else absolute (as ``nuskybgd fit`` writes)."""
    import os
    try:
        r = os.path.relpath(os.path.abspath(path), os.path.abspath(to_dir))
    except ValueError:
        return os.path.abspath(path)
    return os.path.abspath(path) if r.startswith("..") else r


def _rebase_entry(e, from_dir, to_dir):
    e = copy.deepcopy(e)
    e.file = _rebase(e.file, from_dir, to_dir)
    e.responses = {k: _rebase(v, from_dir, to_dir) for k, v in e.responses.items()}
    e.arfs = {k: _rebase(v, from_dir, to_dir) for k, v in e.arfs.items()}
    return e


def load_sources(setup, regfiles, phafiles):
    """Read source spectra and regions and compute their weights.

    Parameters
    ----------
    setup : BackgroundSetup
    regfiles, phafiles : list of str
        Same length.

    Returns
    -------
    list of dict
        ``pha`` (DataPHA with RMF), ``module``, ``mask``, ``weights``,
        ``regfile``, ``phafile``.

    Raises
    ------
    NuskybgdError
        Different list lengths, unreadable files, a spectrum without RMF,
        a region off the projected images or with zero detector area.
    """
    from ..io.ogip import read_pha, spectrum_module
    from ..io.regions import region_mask
    from .weights import region_weights
    if len(regfiles) != len(phafiles):
        raise NuskybgdError(f"{len(regfiles)} source regions but {len(phafiles)} source spectra")
    out = []
    for reg, phaf in zip(regfiles, phafiles):
        pha = read_pha(phaf, responses=True)
        if pha.get_rmf() is None:
            raise NuskybgdError(f"{phaf}: no RMF (RESPFILE keyword) to fold the background model through")
        m = spectrum_module(pha, str(phaf))
        if m not in setup.ap:
            raise NuskybgdError(f"{phaf}: module {m} has no projected images or background spectra in "
                                f"{setup.info.path}")
        mask = region_mask(reg, setup.header, shape=setup.shape, header=setup.header)
        w = region_weights(mask, list(setup.det[m]), setup.ap[m], name=str(reg))
        out.append({"pha": pha, "module": m, "mask": mask, "weights": w, "regfile": str(reg),
                    "phafile": str(phaf)})
    return out


def spec_outputs(savefile, regfiles, realisations=0, n_bg=0):
    """Output names of ``spec``.

    Parameters
    ----------
    savefile : str
        NAME (``.xcm`` suffix dropped).
    regfiles : list of str
    realisations : int
    n_bg : int
        Number of background spectra (source spectrum k is spectrum
        ``n_bg + k + 1`` of the state, which numbers its ARF).

    Returns
    -------
    dict
        ``xcm``, ``json``, ``sherpa``, ``png``, ``bkg`` (list per source),
        ``realisations`` (list of lists), ``arfs`` (list per source).
    """
    name = savefile[:-4] if savefile.endswith(".xcm") else savefile
    n = len(regfiles)
    stems = [Path(r).stem for r in regfiles]
    if n == 1:
        bases = [f"{name}_bkg"]
    elif len(set(stems)) == n:
        bases = [f"{name}_{s}_bkg" for s in stems]
    else:
        bases = [f"{name}_{k + 1}_bkg" for k in range(n)]
    return {"xcm": f"{name}.xcm", "json": f"{name}.json", "sherpa": f"{name}_sherpa.py", "png": f"{name}.png",
            "bkg": [f"{b}.pha" for b in bases],
            "realisations": [[f"{b}_{j + 1:03d}.pha" for j in range(realisations)] for b in bases],
            "arfs": [f"{name}_apbgd{n_bg + k + 1}.arf" for k in range(n)]}


BANDS = ((3.0, 10.0), (10.0, 30.0), (30.0, 79.0), (3.0, 79.0))


def run_spec(bgdinfo, fit, regfiles, phafiles, savefile=None, fcxb="fitted", realisations=0, seed=None,
             clobber=False, setup=None, plot=True, caldb=None):
    """The ``spec`` task: state with source spectra, predicted background spectra, plot.

    Parameters
    ----------
    bgdinfo, fit : str or os.PathLike
        bgdinfo.json and the fit (our JSON or an XCM).
    regfiles, phafiles : list of str
        Source regions and spectra (same length).
    savefile : str, optional
        Output NAME (default ``bgd_<first region stem>``).
    fcxb : {"fitted", "preset"}
    realisations : int
        Poisson realisations of each predicted background spectrum.
    seed : int, optional
        Seed of the realisations.
    clobber : bool
        Replace existing outputs.
    setup : BackgroundSetup, optional
        Already loaded inputs.
    plot : bool
        Write NAME.png.
    caldb : str or Caldb, optional
        CALDB for the apbgd ARFs (default ``$CALDB``).

    Returns
    -------
    dict
        ``files`` written, ``state`` (FitState), ``sources`` (per source:
        file, module, ``counts`` per channel of each component, ``total``
        counts, ``bands`` {"3-10": counts, ...}, ``total_error`` and
        ``band_errors`` {"3-10": counts}: 1-sigma errors of the predictions
        from the fit covariance, see :mod:`nuskybgd.fitting.uncertainty`;
        NaN when unknown; ``error_kind`` covariance, diagonal or none).
        ``NAME_bkg.pha`` holds the predicted counts; its header records
        BKGTOTAL, BKGCERR (1-sigma, counts), BKGFERR (fractional) and
        BKGERRTY; POISSERR and SYS_ERR are write_pha's defaults.
    """
    import json

    from ..auxil import auxil_path, load_ratios
    from ..io.ogip import write_pha
    from ..io.output import atomic_outputs, check_outputs
    from ..io.xcm import format_xcm
    from ..models.responses import apbgd_arf, write_apbgd_arf
    from ..sky.bgimage import band_channels
    from .export import sherpa_script, state_to_json

    if len(regfiles) != len(phafiles):
        raise NuskybgdError(f"{len(regfiles)} source regions but {len(phafiles)} source spectra")
    savefile = savefile or default_savefile(regfiles)
    if setup is None:
        from .bgdinfo import load_bgdinfo
        n_bg = len(load_bgdinfo(bgdinfo, check_files=False).bgfiles)
    else:
        n_bg = len(setup.modules)
    names = spec_outputs(savefile, regfiles, realisations, n_bg)
    all_files = [names["xcm"], names["json"], names["sherpa"]] + names["bkg"] + names["arfs"] \
        + [f for r in names["realisations"] for f in r] + ([names["png"]] if plot else [])
    check_outputs(all_files, clobber)
    setup = setup or load_setup(bgdinfo, fit)
    presets = load_ratios()
    srcs = load_sources(setup, regfiles, phafiles)
    out_dir = Path(names["xcm"]).parent if str(Path(names["xcm"]).parent) else Path(".")
    fit_dir = Path(fit).parent

    sources = []
    arf_objs = []
    for k, s in enumerate(srcs):
        m, pha, w = s["module"], s["pha"], s["weights"]
        rmf = pha.get_rmf()
        date = pha.header.get("DATE-OBS")
        arf = apbgd_arf(m, w.frac, caldb=caldb, rmf=rmf, date=date)
        arf_objs.append(arf)
        rmf_name = getattr(rmf, "name", None) or str(pha.header.get("RESPFILE"))
        responses = {2: _rel(rmf_name, out_dir),
                     3: _rel(rmf_name, out_dir),
                     4: _rel(rmf_name, out_dir),
                     5: str(auxil_path("diag.rmf"))}
        arfs = {2: _rel(names["arfs"][k], out_dir), 4: str(auxil_path(f"fcxb{m}.arf"))}
        sources.append(SourceSpectrum(file=_rel(s["phafile"], out_dir), module=m,
                                      area=w.area, ap=w.ap, responses=responses, arfs=arfs,
                                      ignore=_source_ignore(pha, setup.state.info.get("band_kev") or (3.0, 150.0))))
    fit_state = copy.deepcopy(setup.state)
    fit_state.spectra = [_rebase_entry(e, fit_dir, out_dir) for e in fit_state.spectra]
    state = add_source_spectra(fit_state, setup.modules, setup.weights, sources, presets,
                               fix_line_ratios=setup.info.intbgd_fix_line_ratios, fcxb=fcxb)
    state.info["modules"] = list(setup.modules) + [s.module for s in sources]
    state.info["weights"] = [{"area": [float(a) for a in w.area], "ap": float(w.ap),
                              "frac": [float(x) for x in w.frac]} for w in setup.weights] + \
        [{"area": [float(a) for a in s["weights"].area], "ap": float(s["weights"].ap),
          "frac": [float(x) for x in s["weights"].frac]} for s in srcs]

    # Predicted background counts of each source spectrum, with 1-sigma errors
    # from the fit covariance (the prediction is linear in the fitted norms).
    cov_params, cov, cov_kind = fit_covariance(setup.state)
    if cov_kind == "diagonal":
        log.warning("%s: no covariance stored (XCM or older JSON); prediction errors from the per-parameter "
                    "errors, correlations ignored", fit)
    elif cov_kind == "none":
        log.warning("%s: no covariance or parameter errors (XCM); prediction errors unknown (NaN)", fit)
    bg_areas = [np.asarray(w.area, float) for w in setup.weights]
    results = []
    cache = {}
    for k, s in enumerate(srcs):
        pha, m = s["pha"], s["module"]
        t = spectrum_templates(pha, m, s["weights"].frac, cache,
                               state_shapes(state, setup.ref_index(m) + 1, m), caldb)
        comps = group_component_counts(state, n_bg + k + 1, t)
        total = sum(comps.values())
        rmf = pha.get_rmf()
        sels = [band_channels(rmf.e_min, rmf.e_max, a, b) for a, b in BANDS] + [np.ones(len(total), bool)]
        bands = {f"{a:g}-{b:g}": float(np.sum(total[sel])) for (a, b), sel in zip(BANDS, sels)}
        fc = source_fcxb_coefficients(state, setup.modules, bg_areas, m, float(np.sum(s["weights"].area)), fcxb)
        jac, _, missing = prediction_jacobian(state, n_bg + k + 1, t, sels, cov_params, fcxb=fc)
        sig = prediction_sigma(jac, cov)
        if missing:
            log.warning("%s: free parameters %s have no covariance; prediction errors unknown (NaN)",
                        fit, ", ".join(f"{a}:p{j + 1}" for a, j in missing))
            sig[:] = np.nan
        band_err = {key: float(e) for key, e in zip(bands, sig[:-1])}
        results.append({"file": s["phafile"], "region": s["regfile"], "module": m, "counts": comps,
                        "total": float(np.sum(total)), "bands": bands, "spectrum": total,
                        "total_error": float(sig[-1]), "band_errors": band_err, "error_kind": cov_kind,
                        "exposure": float(pha.exposure), "backscal": float(np.atleast_1d(pha.backscal)[0])
                        if pha.backscal is not None else 1.0})
    state.info["predicted_background"] = [{"file": r["file"], "region": r["region"], "total_counts": r["total"],
                                           "total_counts_error": _num_or_none(r["total_error"]),
                                           "band_counts": r["bands"],
                                           "band_counts_error": {b: _num_or_none(e) for b, e in r["band_errors"].items()},
                                           "error_kind": r["error_kind"], "bkg_file": names["bkg"][k]}
                                          for k, r in enumerate(results)]

    rng = np.random.default_rng(seed)
    exposures = [float(p.exposure) for p in setup.phas] + [float(s["pha"].exposure) for s in srcs]
    with atomic_outputs(all_files, clobber) as out:
        Path(out[names["xcm"]]).write_text(format_xcm(state))
        Path(out[names["json"]]).write_text(json.dumps(state_to_json(state), indent=1, default=_json_default))
        Path(out[names["sherpa"]]).write_text(sherpa_script(state, exposures=exposures))
        for k, (s, r) in enumerate(zip(srcs, results)):
            write_apbgd_arf(out[names["arfs"][k]], arf_objs[k], s["module"], s["weights"].frac, clobber=True)
            hdr = _bkg_header(s["pha"], s["phafile"], s["regfile"])
            hdr.update(_bkg_error_keywords(r["total"], r["total_error"], r["error_kind"]))
            areascal = float(np.atleast_1d(s["pha"].areascal)[0]) if s["pha"].areascal is not None else 1.0
            write_pha(out[names["bkg"][k]], r["spectrum"], r["exposure"], r["backscal"], header=hdr,
                      clobber=True, areascal=areascal)
            for j, f in enumerate(names["realisations"][k]):
                h = dict(hdr)
                h["HISTORY"] = f"Poisson realisation {j + 1} of the predicted background (seed {seed})"
                write_pha(out[f], rng.poisson(r["spectrum"]), r["exposure"], r["backscal"], header=h,
                          clobber=True, areascal=areascal)
        if plot:
            plot_spec(out[names["png"]], srcs, results)
    return {"files": all_files, "state": state, "sources": results, "names": names}


def _source_ignore(pha, band):
    """XSPEC ignore ranges of a source spectrum: bins not wholly inside the fit's band."""
    from .engine import bin_mask_from_energy, group_ids
    from .prepare import ignore_ranges
    rmf = pha.get_rmf()
    n = len(pha.channel)
    grouping = None if pha.grouping is None else np.asarray(pha.grouping)
    quality = None if pha.quality is None else np.asarray(pha.quality)
    ids = group_ids(grouping, n)
    return ignore_ranges(bin_mask_from_energy(ids, np.asarray(rmf.e_min), np.asarray(rmf.e_max),
                                              float(band[0]), float(band[1]), quality))


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def _num_or_none(x):
    return float(x) if np.isfinite(x) else None


def _bkg_error_keywords(total, sigma, kind):
    """Header keywords recording the predicted background's fit uncertainty.

    The COUNTS column stays the prediction itself and POISSERR/SYS_ERR keep
    write_pha's defaults: the error of the prediction is one number fully
    correlated over channels (the fitted norms), not an independent
    per-channel systematic, so it is recorded, not folded into SYS_ERR.
    """
    h = {"BKGTOTAL": (float(total), "predicted background counts, all channels"),
         "BKGERRTY": (kind, "source of BKGFERR: covariance, diagonal or none")}
    if np.isfinite(sigma) and total > 0:
        h["BKGCERR"] = (float(sigma), "1-sigma error of BKGTOTAL from the fit (counts)")
        h["BKGFERR"] = (float(sigma / total), "fractional 1-sigma error of BKGTOTAL (fit)")
    return h


def _bkg_header(pha, phafile, regfile):
    h = {"HDUCLAS2": ("BKG", "model background spectrum"),
         "TELESCOP": "NuSTAR",
         "INSTRUME": str(pha.header.get("INSTRUME", "")).strip() or "FPMA",
         "HISTORY": f"nuskybgd spec: predicted background of {Path(phafile).name} in {Path(regfile).name}"}
    for key in ("OBJECT", "OBS_ID", "DATE-OBS", "DATE-END", "TSTART", "TSTOP", "RA_OBJ", "DEC_OBJ"):
        if key in pha.header:
            h[key] = pha.header[key]
    return h


def plot_spec(path, srcs, results):
    """Write the spec plot: each source spectrum with predicted background.

    Parameters
    ----------
    path : str or os.PathLike
        PNG file.
    srcs : list of dict
        From :func:`load_sources`.
    results : list of dict
        Per source: ``counts`` (component -> counts per channel), ``exposure``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(srcs)
    fig, axes = plt.subplots(n, 1, figsize=(7, 4.2 * n), squeeze=False)
    for ax, s, r in zip(axes[:, 0], srcs, results):
        rmf = s["pha"].get_rmf()
        plot_source_spectrum(ax, rmf.e_min, rmf.e_max, np.asarray(s["pha"].counts, float), r["counts"],
                             r["exposure"], title=f"{Path(s['phafile']).name} in {Path(s['regfile']).name} "
                                                  f"(FPM{s['module']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def run_simplify(bgdinfo, spec_file, savefile=None, clobber=False):
    """The ``simplify`` task.

    Parameters
    ----------
    bgdinfo : str or os.PathLike
        bgdinfo.json (gives the number of background spectra).
    spec_file : str or os.PathLike
        State written by ``spec`` (XCM or JSON); its first spectra must be
        bgdinfo's background spectra.
    savefile : str, optional
        Output NAME (default: :func:`simplify_savefile`).
    clobber : bool

    Returns
    -------
    dict
        ``files`` written and the simplified ``state``.
    """
    import json
    from ..io.output import atomic_outputs, check_outputs
    from ..io.xcm import format_xcm
    from .bgdinfo import load_bgdinfo
    from .export import sherpa_script, state_to_json

    info = load_bgdinfo(bgdinfo, check_files=False)
    name = savefile or simplify_savefile(str(spec_file))
    if name.endswith(".xcm"):
        name = name[:-4]
    files = [f"{name}.xcm", f"{name}.json", f"{name}_sherpa.py"]
    check_outputs(files, clobber)
    state = load_fit(spec_file, info, extra_spectra_ok=True)
    simp = simplify_state(state, len(info.bgfiles))
    out_dir = Path(files[0]).parent
    simp.spectra = [_rebase_entry(e, Path(spec_file).parent, out_dir) for e in simp.spectra]
    n_bg = len(info.bgfiles)
    mods = state.info.get("modules") or []
    wts = state.info.get("weights") or []
    simp.info["modules"] = list(mods[n_bg:])
    simp.info["weights"] = list(wts[n_bg:])
    exposures = None
    try:
        from ..io.ogip import read_pha
        exposures = [float(read_pha(Path(out_dir) / e.file if not Path(e.file).is_absolute() else e.file).exposure)
                     for e in simp.spectra]
    except NuskybgdError as exc:
        log.warning("source spectra not readable (%s); Sherpa script without exposures", exc)
    with atomic_outputs(files, clobber) as out:
        Path(out[files[0]]).write_text(format_xcm(simp))
        Path(out[files[1]]).write_text(json.dumps(state_to_json(simp), indent=1, default=_json_default))
        Path(out[files[2]]).write_text(sherpa_script(simp, exposures=exposures))
    return {"files": files, "state": simp}


#: Demo source region: offset from the detectors' footprint centre and radius (sky pixels).
DEMO_SOURCE_REGION = (-135.0, 0.0, 35.0)


def demo_apply(outdir, bgdinfo, fit, sim, clobber=False, bands=BANDS[:3]):
    """Demo steps after the fit: spec, image, simplify on a source region.

    A region away from the simulated point source is extracted for both
    modules; ``spec`` predicts its background, ``image`` makes the model
    images (3-79 keV) and ``simplify`` the background-only state. The
    predicted background is compared with the injected background events in
    the region (the simulation tags every event with its component).

    Parameters
    ----------
    outdir : str or os.PathLike
        Demo folder (holds bgdinfo.json and the fit).
    bgdinfo, fit : str or os.PathLike
        bgdinfo.json and the fit JSON.
    sim : nuskybgd.simulate.SimulatedObs
    clobber : bool
    bands : sequence of (float, float)
        Bands compared (keV).

    Returns
    -------
    list of dict
        Per module and band: ``predicted`` counts mu, ``sigma_fit`` (1-sigma
        error of mu from the fit covariance), ``injected_background`` events
        N, ``source_events``, ``pull`` ``(N - mu) / sqrt(mu + sigma_fit^2)``
        and ``pull_poisson_only`` ``(N - mu) / sqrt(mu)``.
    """
    from ..extract import events_in_mask, extract_spectrum
    from ..io.events import read_events
    from ..io.output import atomic_outputs
    from ..io.regions import region_mask
    from ..sky.images import pi_range
    from ..tasks.image import make_images

    out = Path(outdir)
    regs, phas = [], []
    dx, dy, r = DEMO_SOURCE_REGION
    reg_paths = {m: out / f"src{m}.reg" for m in ("A", "B")}
    with atomic_outputs(list(reg_paths.values()), clobber) as o:
        for m, p in reg_paths.items():
            cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
            Path(o[p]).write_text("# Region file format: DS9 version 4.1\nimage\n"
                                  f"circle({cx + dx:.2f},{cy + dy:.2f},{r:.2f})\n")
    for m in ("A", "B"):
        res = extract_spectrum(sim.events[m], reg_paths[m], outprefix=f"src{m}", outdir=out, grpmin=30,
                               caldb=sim.caldb, clobber=clobber)
        regs.append(str(reg_paths[m]))
        phas.append(str(res.grouped))
    spec = run_spec(bgdinfo, fit, regs, phas, savefile=str(out / "bgd_src"), clobber=clobber, caldb=sim.caldb)
    make_images(bgdinfo, fit, 3.0, 79.0, prefix=str(out) + "/img_", evtfiles=[str(sim.events[m]) for m in ("A", "B")],
                clobber=clobber, caldb=sim.caldb)
    run_simplify(bgdinfo, out / "bgd_src.xcm", savefile=str(out / "bgd_only_src"), clobber=clobber)

    rows = []
    for k, m in enumerate(("A", "B")):
        ev = read_events(sim.events[m], columns=("PI", "X", "Y"))
        hdr = load_setup_header(bgdinfo)
        mask = region_mask(reg_paths[m], hdr, shape=(hdr["NAXIS2"], hdr["NAXIS1"]), header=hdr)
        sel = events_in_mask(ev.columns["X"], ev.columns["Y"], mask)
        tags = sim.event_components(m)
        n_comp = len(sim.truth["modules"][m]["component_order"])
        bg = sel & (tags < n_comp)
        pi = ev.columns["PI"]
        for a, b in bands:
            first, last = pi_range(a, b)
            n = int(np.count_nonzero(bg & (pi >= first) & (pi <= last)))
            n_src = int(np.count_nonzero(sel & (tags >= n_comp) & (pi >= first) & (pi <= last)))
            mu = spec["sources"][k]["bands"][f"{a:g}-{b:g}"]
            sig = spec["sources"][k]["band_errors"][f"{a:g}-{b:g}"]
            var = mu + sig ** 2 if np.isfinite(sig) else mu
            rows.append({"module": m, "band": f"{a:g}-{b:g}", "predicted": mu, "sigma_fit": sig,
                         "injected_background": n, "source_events": n_src,
                         "pull": (n - mu) / np.sqrt(var) if var > 0 else float("nan"),
                         "pull_poisson_only": (n - mu) / np.sqrt(mu) if mu > 0 else float("nan")})
    return rows


def load_setup_header(bgdinfo):
    """Header (WCS) of bgdinfo's reference image.

    Parameters
    ----------
    bgdinfo : str or os.PathLike

    Returns
    -------
    astropy.io.fits.Header
    """
    from .bgdinfo import load_bgdinfo
    info = load_bgdinfo(bgdinfo, check_files=False)
    return _read_image(info.refimgf, "reference image")[1]


def print_demo_apply(rows, file=None):
    """Print the demo's predicted-vs-injected background table.

    Parameters
    ----------
    rows : list of dict
        From :func:`demo_apply`.
    file : file-like, optional
        Default ``sys.stdout``.
    """
    import sys
    file = file or sys.stdout
    print("background in the source region (spec prediction vs injected background events):", file=file)
    print(f"{'module':<6} {'band keV':<9} {'predicted +- sigma_fit':>22} {'injected':>9} {'pull':>6} "
          f"{'pull(Poisson)':>13} {'source ev.':>10}", file=file)
    for r in rows:
        pred = f"{r['predicted']:.1f} +- {r['sigma_fit']:.1f}"
        print(f"FPM{r['module']:<3} {r['band']:<9} {pred:>22} {r['injected_background']:>9d} "
              f"{r['pull']:>+6.2f} {r['pull_poisson_only']:>+13.2f} {r['source_events']:>10d}", file=file)
    print("pull = (injected - predicted) / sqrt(predicted + sigma_fit^2); pull(Poisson) = "
          "(injected - predicted) / sqrt(predicted); sigma_fit from the fit covariance", file=file)
