"""Whole-detector spectra: the background fit from arrays, with gains and free shapes.

A whole-detector spectrum (one of DET0..DET3 of a module, e.g. the stacked
Earth-occulted spectra) needs no region, sky image or aspect: its weights are
the whole detector. :func:`fit_detectors` takes counts, exposures, modules,
detectors and RMFs (arrays and objects, no files) and returns the fitted
state; it is what ``nuskybgd fit`` runs for a bgdinfo.json with
``detectors``, and what ``nuskybgd calibrate`` calls.

Weights of detector k: ``area[k] = DETECTOR_AREA_PIX`` (the detector's 32 x
32 pixels of 0.6048 mm seen as 160 x 160 DET1 pixels of 0.12096 mm, one sky
pixel each in projbgd's model), 0 elsewhere, so the intbgd and intn presets
are ``ifactor_k`` (``sum_k (area_k / A_k) ifactor_k`` with ``A_k`` the
detector's own area). The aperture weight ``ap`` is 1 for every detector:
the apbgd norm starts at ``APBGD_FACTOR`` and the apbgd links between
detectors of a module are 1 (the aperture pattern across the detectors is
not modelled without sky images).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import chi2

from ..calib.auxil import load_ratios
from ..errors import NuskybgdError
from ..models.responses import apbgd_arf, energy_grid, fcxb_arf
from .data import SpectrumData, bin_mask_from_energy, group_ids
from .engine import fit_state
from .folding import SpectrumResponse
from .gains import gain_values
from .model import build_background_state
from .nonlinear import fit_nonlinear
from .prepare import ignore_ranges
from .profile import profile_intervals
from .shapes import NonlinearModel
from .thaw import (
    apply_free_detectors,
    apply_gain,
    apply_start,
    apply_thaw,
    detector_report,
    parse_thaw,
)
from .weights import Weights

__all__ = [
    "DETECTOR_AREA_PIX",
    "DetectorFit",
    "DetectorSpectrum",
    "detector_weights",
    "fit_detectors",
    "parse_detector",
    "run_fit",
    "setup_fit",
]

log = logging.getLogger("nuskybgd")

#: Sky pixels of one whole detector: (32 x 0.6048 mm / 0.12096 mm)^2.
DETECTOR_AREA_PIX = (32 * 0.6048 / 0.12096) ** 2


@dataclass
class DetectorSpectrum:
    """One whole-detector spectrum.

    Attributes
    ----------
    counts : ndarray
        Counts per channel.
    exposure : float
        Seconds.
    module : str
        ``"A"`` or ``"B"``.
    detector : int
        0..3.
    rmf : DataRMF or tuple
        Response (``(energ_lo, energ_hi, matrix)`` allowed).
    name : str
        For messages and the XCM (file name when the spectrum is a file).
    rmf_name : str
        Response file name for the XCM.
    grouping, quality : ndarray or None
    e_lo, e_hi : ndarray or None
        Channel energies (default the RMF's EBOUNDS, else the NuSTAR grid).
    """

    counts: np.ndarray
    exposure: float
    module: str
    detector: int
    rmf: object
    name: str = ""
    rmf_name: str = ""
    grouping: object = None
    quality: object = None
    e_lo: object = None
    e_hi: object = None


def parse_detector(text, where="detectors"):
    """Parse a detector name.

    Parameters
    ----------
    text : str
        ``"A0"`` .. ``"B3"`` (case and surrounding blanks ignored).
    where : str
        What is being parsed, for the error message.

    Returns
    -------
    (str, int)
        Module (``"A"`` or ``"B"``) and detector number (0..3).

    Raises
    ------
    NuskybgdError
        For anything else.
    """
    t = str(text).strip().upper()
    if len(t) == 2 and t[0] in "AB" and t[1] in "0123":
        return t[0], int(t[1])
    raise NuskybgdError(f"{where}: '{text}' is not a detector (A0..A3, B0..B3)")


def detector_weights(detector):
    """Weights of a whole detector (see the module notes).

    Parameters
    ----------
    detector : int
        0..3.

    Returns
    -------
    Weights
    """
    if detector not in (0, 1, 2, 3):
        raise NuskybgdError(f"detector {detector!r}: use 0..3")
    area = np.zeros(4)
    area[detector] = DETECTOR_AREA_PIX
    return Weights(area=area, ap=1.0)


@dataclass
class DetectorFit:
    """Result of :func:`fit_detectors` / :func:`run_fit`.

    Attributes
    ----------
    state : FitState
        Fitted values, errors, ``info["fit"]``.
    presets : FitState
        The state before the fit (presets).
    result : NonlinearFit or FitResult
    model : LinearModel
        At the solution (``component_counts``, ``predicted_counts``).
    spectra : list of SpectrumData
    responses : list of SpectrumResponse or None
    nonlinear : list of str
        Labels of the fitted nonlinear parameters.
    detectors : list of dict
        Per-detector norms (``--free-detectors``).
    """

    state: object
    presets: object
    result: object
    model: object
    spectra: list
    responses: list = None
    nonlinear: list = field(default_factory=list)
    detectors: list = field(default_factory=list)

    @property
    def statistic(self):
        """Statistic at the best fit."""
        return float(self.state.info["fit"]["value"])

    @property
    def dof(self):
        """Degrees of freedom."""
        return int(self.state.info["fit"]["dof"])


def setup_fit(specs, weights, module_area, responses, counts, *, ratios=None, gain=None, thaw=(),
              free_detectors=(), emin=3.0, emax=150.0, original_norms=False, fix_line_ratios=False,
              fcxb_links=(), gain_start=(1.0, 0.0), start=None):
    """State and engine inputs for a fit.

    Parameters
    ----------
    specs : list of dict
        As :func:`~nuskybgd.fitting.model.build_background_state` (``file``,
        ``module``, ``rmf``, ``apbgd_arf``, ``fcxb_arf``, ``diag_rmf``).
    weights : list of Weights
    module_area : dict
        Per-module detector areas ``[A_0..A_3]``.
    responses : list of SpectrumResponse
    counts : list of (counts, grouping, quality, e_lo, e_hi, name)
    ratios : dict, optional
        ``ratios.json`` (default the bundle's).
    gain : {None, "fit", "link", "fixed"}
    thaw : str or list of str
    free_detectors : sequence of str
    emin, emax : float
        Noticed band, keV.
    original_norms, fix_line_ratios, fcxb_links
        As :func:`~nuskybgd.fitting.model.build_background_state`.
    gain_start : (float, float)
        Starting slope and offset.
    start : dict, optional
        Starting values (and limits) of shape parameters, set last
        (:func:`~nuskybgd.fitting.thaw.apply_start`).

    Returns
    -------
    (FitState, list of SpectrumData, dict or None)
        State, engine inputs, detector carriers (``--free-detectors``).
    """

    ratios = load_ratios() if ratios is None else ratios
    state = build_background_state(specs, weights, ratios, fix_line_ratios=fix_line_ratios, fcxb_links=fcxb_links,
                                   original_norms=original_norms, module_area=module_area)
    modules = [s["module"] for s in specs]
    if gain:
        apply_gain(state, gain, modules, gain_start)
    items = parse_thaw(thaw) if thaw else []
    thawed = apply_thaw(state, items) if items else []
    carriers = apply_free_detectors(state, free_detectors, weights, modules) if free_detectors else None
    sds = []
    for k, (c, grouping, quality, e_lo, e_hi, name) in enumerate(counts):
        c = np.asarray(c, float)
        if not np.all(np.isfinite(c)) or np.any(c < 0):
            raise NuskybgdError(f"{name}: counts contain NaN or negative values")
        ids = group_ids(grouping, c.size)
        noticed = bin_mask_from_energy(ids, e_lo, e_hi, emin, emax, quality)
        if not noticed.any():
            raise NuskybgdError(f"{name}: no bin between {emin} and {emax} keV")
        sds.append(SpectrumData(counts=c, templates={}, ids=ids, noticed=noticed, name=str(name)))
        state.spectra[k].ignore = ignore_ranges(noticed)
    state.info["thawed"] = thawed
    if start:
        state.info["start"] = apply_start(state, start)
    return state, sds, carriers


def run_fit(state, sds, responses, statistic="cstat", fit=True, carriers=None, progress=None, gain_scan=False):
    """Fit (or evaluate) a prepared state with the nonlinear engine.

    Parameters
    ----------
    state : FitState
    sds : list of SpectrumData
    responses : list of SpectrumResponse
    statistic : {"cstat", "chi"}
    fit : bool
        False: evaluate the presets only.
    carriers : dict, optional
        From :func:`~nuskybgd.fitting.thaw.apply_free_detectors`.
    progress : callable, optional
    gain_scan : bool
        Start free gains from a coarse scan (:func:`~nuskybgd.fitting.nonlinear.scan_gain`).

    Returns
    -------
    DetectorFit
    """
    presets = state.copy()
    if fit:
        res = fit_nonlinear(state, sds, responses, statistic, progress=progress, gain_scan=gain_scan)
        model = res.model
        nl = res.labels[res.n_norms:]
    else:
        nm = NonlinearModel(state, sds, responses)
        nm.precise = True
        nm.refresh()
        model, res = fit_state(state, sds, statistic, fit=False, allow_shapes=True)
        nl = list(nm.labels)
    det = detector_report(state, carriers, state.info["free_detectors"]["components"], presets) \
        if carriers else []
    if det:
        state.info["detectors"] = det
    return DetectorFit(state=state, presets=presets, result=res, model=model, spectra=sds, responses=responses,
                       nonlinear=nl, detectors=det)


def fit_detectors(spectra, *, gain=None, thaw=(), free_detectors=(), emin=3.0, emax=150.0, statistic="cstat",
                  original_norms=False, fit=True, caldb=None, detabs_file=None, be_file=None, ratios=None,
                  gain_start=(1.0, 0.0), progress=None, gain_scan=None, start=None):
    """Fit the background model to whole-detector spectra.

    Parameters
    ----------
    spectra : list of DetectorSpectrum
        The first spectrum of each module is its reference.
    gain : {None, "fit", "link", "fixed"}
        Response gain: free per spectrum, one per module, or fixed at
        ``gain_start``.
    thaw : str or list of str
        Shape parameters to fit (``intbgd:lorentz_5.LineE``, ``LineE>19``).
    free_detectors : sequence of str
        ``intn``, ``intbgd``: one free norm per detector.
    emin, emax : float
        Noticed band, keV.
    statistic : {"cstat", "chi"}
    original_norms : bool
        The original tool's presets.
    fit : bool
        False: presets only.
    caldb, detabs_file, be_file
        Calibration for the apbgd ARFs (DETABS, Be window).
    ratios : dict, optional
        ``ratios.json`` content.
    gain_start : (float, float)
        Starting gain (slope, offset keV).
    progress : callable, optional
        Called with (iteration, statistic).
    gain_scan : bool, optional
        Start free gains from a coarse grid scan (default: when ``gain`` is
        ``fit`` or ``link``; the profiled statistic has several minima when
        lines are off by more than the resolution).
    start : dict, optional
        Starting values like XSPEC ``newpar``: ``{"intbgd:lorentz_4.LineE":
        6.5}``, or ``(value, min)`` / ``(value, min, max)`` to set limits
        too (:func:`~nuskybgd.fitting.thaw.apply_start`).

    Returns
    -------
    DetectorFit

    Raises
    ------
    NuskybgdError
        Bad detector names, exposures, gains, unknown ``thaw`` parameters.
    """

    if not spectra:
        raise NuskybgdError("no spectra given")
    specs, weights, responses, counts = [], [], [], []
    for s in spectra:
        if s.module not in ("A", "B"):
            raise NuskybgdError(f"{s.name}: module {s.module!r} (use A or B)")
        w = detector_weights(int(s.detector))
        lo, hi = energy_grid(s.rmf)
        arf = apbgd_arf(s.module, w.frac, caldb=caldb, rmf=(lo, hi), detabs_file=detabs_file, be_file=be_file)
        farf = fcxb_arf(s.module, rmf=(lo, hi))
        responses.append(SpectrumResponse(s.rmf, s.exposure, apbgd_arf=arf, fcxb_arf=farf))
        weights.append(w)
        specs.append({"file": s.name or f"spectrum{len(specs) + 1}", "module": s.module,
                          "rmf": s.rmf_name or "rmf", "apbgd_arf": "apbgd.arf", "fcxb_arf": f"fcxb{s.module}.arf",
                          "diag_rmf": "diag.rmf"})
        e_lo, e_hi = s.e_lo, s.e_hi
        if e_lo is None:
            if hasattr(s.rmf, "e_min") and s.rmf.e_min is not None:
                e_lo, e_hi = np.asarray(s.rmf.e_min, float), np.asarray(s.rmf.e_max, float)
            else:
                n = len(s.counts)
                e_lo = 1.6 + 0.04 * np.arange(n)
                e_hi = e_lo + 0.04
        counts.append((s.counts, s.grouping, s.quality, e_lo, e_hi, s.name))
    module_area = {m: [DETECTOR_AREA_PIX] * 4 for m in {s.module for s in spectra}}
    state, sds, carriers = setup_fit(specs, weights, module_area, responses, counts, ratios=ratios, gain=gain,
                                     thaw=thaw, free_detectors=free_detectors, emin=emin, emax=emax,
                                     original_norms=original_norms, gain_start=gain_start, start=start)
    state.info["detectors_of_spectra"] = [f"{s.module}{int(s.detector)}" for s in spectra]
    if gain_scan is None:
        gain_scan = gain in ("fit", "link")
    return run_fit(state, sds, responses, statistic, fit=fit, carriers=carriers, progress=progress,
                   gain_scan=gain_scan)


def fit_extended(specs, weights, module_area, spectra, arfs, ratios, info, *, statistic="cstat", fit=True,
                 emin=3.0, emax=150.0, original_norms=False, gain=None, thaw=None, free_detectors=None,
                 errors=None, progress=None, gain_start=None, start=None):
    """The ``nuskybgd fit`` run with gains, thawed shapes or per-detector norms.

    Parameters
    ----------
    specs, weights, module_area
        As :func:`setup_fit`.
    spectra : list of LoadedSpectrum
        Spectra with their RMFs.
    arfs : list of DataARF
        apbgd ARF of each spectrum.
    ratios : dict
        ``ratios.json``.
    info : BgdInfo
        For fCXB links and line-ratio ties.
    statistic, fit, emin, emax, original_norms, gain, thaw
        As :func:`fit_detectors`.
    free_detectors : str, optional
        Comma-separated components; the linked fit is run first for the
        likelihood-ratio test.
    errors : str, optional
        Parameters for profile intervals.
    progress : callable, optional
    gain_start : (float, float), optional
        Starting gain (slope, offset keV) of every spectrum: fixed without
        ``gain``, the start of the fit (no scan) with it.
    start : dict, optional
        Starting values and limits of named parameters, XSPEC ``newpar``
        (:func:`~nuskybgd.fitting.thaw.apply_start`).

    Returns
    -------
    (FitState, LinearModel, NonlinearFit or None, list of str)
        The state, the model at the solution, the fit, and lines for the log
        (detector norms, likelihood-ratio test, profile intervals); the same
        figures are in ``state.info``.
    """
    responses = [SpectrumResponse(s.rmf, s.exposure, apbgd_arf=a, fcxb_arf=fcxb_arf(s.module, rmf=s.rmf))
                 for s, a in zip(spectra, arfs)]
    counts = [(s.counts, s.grouping, s.quality, s.e_lo, s.e_hi, str(s.path)) for s in spectra]
    comps = [c.strip() for c in (free_detectors or "").split(",") if c.strip()]
    if gain_start is not None and not gain:
        gain = "fixed"
    scan = gain in ("fit", "link") and gain_start is None
    kw = {"ratios": ratios, "gain": gain, "thaw": thaw, "emin": emin, "emax": emax, "original_norms": original_norms,
          "fix_line_ratios": info.intbgd_fix_line_ratios, "fcxb_links": info.fcxb_links,
          "gain_start": (1.0, 0.0) if gain_start is None else tuple(gain_start), "start": start}
    extra = []
    linked = None
    if comps and fit:
        st, sds, _ = setup_fit(specs, weights, module_area, responses, counts, **kw)
        linked = run_fit(st, sds, responses, statistic, fit=True, progress=progress, gain_scan=scan)
    state, sds, carriers = setup_fit(specs, weights, module_area, responses, counts, free_detectors=comps, **kw)
    state.statistic = statistic
    res = run_fit(state, sds, responses, statistic, fit=fit, carriers=carriers, progress=progress,
                  gain_scan=scan)
    result = res.result if fit else None
    if res.nonlinear:
        extra.append("nonlinear parameters: " + ", ".join(res.nonlinear))
    for k, e in enumerate(state.spectra):
        if e.gain:
            a, b = gain_values(state, k)
            errs = [p.error for p in e.gain]
            tail = "" if e.gain[0].link is None else " (linked)"
            extra.append(f"gain of spectrum {e.number}: slope {a:.5f}"
                         + (f" +- {errs[0]:.5f}" if errs[0] is not None else "")
                         + f", offset {b:.4f}" + (f" +- {errs[1]:.4f}" if errs[1] is not None else "")
                         + f" keV{tail}")
    if linked is not None:
        d_stat = linked.statistic - res.statistic
        d_dof = linked.dof - res.dof
        p = float(chi2.sf(d_stat, d_dof)) if d_dof > 0 else float("nan")
        state.info["lrt_linked_vs_detectors"] = {"linked_statistic": linked.statistic, "linked_dof": linked.dof,
                                                 "detectors_statistic": res.statistic, "detectors_dof": res.dof,
                                                 "delta_statistic": d_stat, "delta_dof": d_dof, "p_value": p}
        extra.append(f"likelihood-ratio test, linked vs per-detector norms ({', '.join(comps)}): "
                     f"{statistic} {linked.statistic:.2f}/{linked.dof} -> {res.statistic:.2f}/{res.dof}, "
                     f"delta {d_stat:.2f} for {d_dof} dof, p = {p:.3g}")
    if res.detectors:
        extra.append("detector norms (module det spectrum parameter value error fitted/preset constrained):")
        for r in res.detectors:
            err = "-" if r["error"] is None else f"{r['error']:.4g}"
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
            extra.append(f"  {r['module']} {r['detector']} {r['spectrum']:>3} {r['parameter']:<26} "
                         f"{r['value']:.5g} {err} {ratio} {'yes' if r['constrained'] else 'no'}")
        free_dets = {(r["module"], r["detector"]) for r in res.detectors}
        missing = [f"{m}{k}" for m in sorted({m for m, _ in free_dets}) for k in range(4)
                   if (m, k) not in free_dets]
        if missing:
            extra.append(f"  detectors without data (norms not constrained): {', '.join(missing)}")
    if errors and fit:
        ivals = profile_intervals(state, sds, responses, result, errors, statistic)
        state.info["profile_errors"] = ivals
        extra.append("90% profile intervals (delta stat 2.706):")
        for r in ivals:
            extra.append(f"  {r['parameter']:<30} {r['value']:.6g}  {r['lower']:.6g} .. {r['upper']:.6g}  "
                         f"(-{r['minus']:.3g}, +{r['plus']:.3g}){' pegged at a limit' if r['pegged'] else ''}")
    return state, res.model, result, extra
