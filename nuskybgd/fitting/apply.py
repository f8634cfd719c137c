"""Apply a fitted background model to source regions: the state logic of ``spec`` and ``simplify``.

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

Pure state logic only (no files): the workflows that load inputs and write
outputs are in :mod:`nuskybgd.analysis` (``spec``, ``simplify``, ``images``).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import NuskybgdError
from ..io.state import FitState, SpectrumEntry
from .model import BACKGROUND_SOURCES, build_background_state
from .uncertainty import norm_components, source_fcxb_coefficients

__all__ = [
    "SourceSpectrum", "fcxb_surface_brightness", "source_fcxb_norm", "add_source_spectra",
    "group_component_counts", "simplify_state",
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
