"""Fit the background model to background-region spectra (``nuskybgd fit``).

Three steps, usable on their own: :func:`prepare_fit` loads the spectra,
region (or detector) weights and apbgd ARFs; :func:`run_fit` builds the
model state and fits it (nothing is written); :func:`write_fit` writes the
outputs. :func:`fit_background` chains them as the command-line task does.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..calib.auxil import auxil_path, load_ratios
from ..calib.presets import parse_added_lines, with_added_lines
from ..errors import NuskybgdError
from ..fitting.detectors import DETECTOR_AREA_PIX, detector_weights, fit_extended
from ..fitting.engine import fit_state
from ..fitting.export import plot_fit, sherpa_script, state_to_json
from ..fitting.model import build_background_state
from ..fitting.prepare import compute_weights, ignore_ranges, load_spectra, spectrum_data
from ..fitting.uncertainty import set_fit_covariance
from ..io.bgdinfo import BgdInfo, load_bgdinfo
from ..io.calibration import observation_date, select_bundle
from ..io.output import atomic_outputs, check_outputs
from ..io.xcm import format_xcm
from ..kernels.gain import check_gain
from ..models.background import component_templates
from ..models.responses import apbgd_arf, write_apbgd_arf
from .outputs import relative_name

__all__ = ["FitProblem", "FitOutputs", "output_names", "parameter_table", "state_file_names", "prepare_fit",
           "run_fit", "fit_summary", "write_fit", "fit_background"]

log = logging.getLogger("nuskybgd")


@dataclass
class FitProblem:
    """Everything a background fit needs, loaded.

    Attributes
    ----------
    info : BgdInfo
        The background spectra, regions and projected images.
    spectra : list of LoadedSpectrum
        Background spectra with their RMFs.
    weights : list of Weights
        Region weights (detector areas in sky pixels, aperture sum).
    module_area : dict
        Module -> sky area of each detector (sky pixels).
    arfs : list of DataARF
        apbgd ARF of each spectrum.
    specs : list of dict
        File names of each spectrum for the state (:func:`state_file_names`).
    emin, emax : float
        Noticed band, keV.
    original_norms : bool
        Reference intbgd/intn norms as the original.
    caldb : str or Caldb or None
        CALDB of the apbgd ARFs.
    outdir : pathlib.Path
        Folder the state's file names are relative to.
    state : FitState or None
        The model, set by :func:`run_fit`.
    ratios : dict or None
        Component presets (``ratios.json`` content): the shipped bundle's, or
        the epoch bundle of ``calibration``.
    calibration : dict or None
        The epoch bundle used (``caldir``, ``epoch``, ``start``, ``stop``,
        ``version``, ``observation_date``, ``ratios``), recorded in the fit
        JSON; None for the shipped presets.
    added_lines : tuple of float
        Energies (keV) of the Lorentz lines added to the intbgd model.
    """

    info: BgdInfo
    spectra: list
    weights: list
    module_area: dict
    arfs: list
    specs: list
    emin: float
    emax: float
    original_norms: bool = False
    caldb: object = None
    outdir: Path = field(default_factory=lambda: Path("."))
    state: object = None
    ratios: dict | None = None
    calibration: dict | None = None
    added_lines: tuple = ()


@dataclass
class FitOutputs:
    """What :func:`fit_background` produced.

    Attributes
    ----------
    paths : dict or None
        Kind (``xcm``, ``json``, ``sherpa``, ``png``, ``log``, ``arfs``) ->
        path(s); None when nothing was written.
    state : FitState
    model : LinearModel
    result : FitResult or None
        None with ``no_fit``.
    spectra : list of LoadedSpectrum
    weights : list of Weights
    extra : list of str
        Log lines of the nonlinear fit (detector norms, likelihood-ratio
        test, profile intervals).
    nonlinear : bool
        Fitted by variable projection (gains, shapes, detector norms).
    """

    paths: dict | None
    state: object
    model: object
    result: object
    spectra: list
    weights: list
    extra: list = field(default_factory=list)
    nonlinear: bool = False


def output_names(savefile, n_spectra, plot=True):
    """Output files of a fit.

    Parameters
    ----------
    savefile : str
        NAME (a trailing ``.xcm`` is dropped).
    n_spectra : int
        Number of background spectra (one apbgd ARF each).
    plot : bool
        Include ``NAME.png``.

    Returns
    -------
    dict
        ``xcm``, ``json``, ``sherpa``, ``log``, ``png`` (or None), ``arfs``
        (list) -> pathlib.Path.

    Raises
    ------
    NuskybgdError
        For an empty name.
    """
    name = str(savefile).strip()
    if not name:
        raise NuskybgdError("--savefile: empty name")
    if name.endswith(".xcm"):
        name = name[:-4]
    base = Path(name)
    return {"xcm": base.with_name(base.name + ".xcm"), "json": base.with_name(base.name + ".json"),
            "sherpa": base.with_name(base.name + "_sherpa.py"), "log": base.with_name(base.name + ".log"),
            "png": base.with_name(base.name + ".png") if plot else None,
            "arfs": [base.with_name(f"{base.name}_apbgd{k + 1}.arf") for k in range(n_spectra)]}


def parameter_table(state):
    """Text table of the free parameters.

    Parameters
    ----------
    state : FitState

    Returns
    -------
    str
        One row per free parameter: source, group, parameter number, name,
        component, value and 1-sigma error.
    """
    rows = ["source    group  par  name        component      value          error"]
    limits = {(str(u["source"]), int(u["param"])): float(u["value"])
              for u in (state.info.get("fit") or {}).get("upper_limits") or []}
    for src in state.sources:
        labels = src.labels
        for i, p in enumerate(src.params):
            if not p.free:
                continue
            g, ip = divmod(i, src.npar)
            c = src.par_components[ip]
            err = f"{p.error:.6g}" if p.error is not None else "-"
            ul = limits.get((str(src.name or src.number), i + 1))
            if ul is not None:  # at its bound: the upper limit, not "0 +- 0"
                err = f"< {ul:.6g} (90% upper limit)" + (f", curvature {err}" if p.error is not None else "")
            rows.append(f"{src.name or '':<9} {g + 1:>5}  {i + 1:>3}  {src.par_names[ip]:<10}  "
                        f"{labels[c] if c >= 0 else '':<13} {p.value:<14.6g} {err}")
    return "\n".join(rows)


def state_file_names(spectra, arf_names, outdir):
    """File names an XCM written in ``outdir`` gives each background spectrum.

    Parameters
    ----------
    spectra : list of LoadedSpectrum
    arf_names : list of str or os.PathLike
        apbgd ARF of each spectrum.
    outdir : str or os.PathLike
        Folder of the XCM.

    Returns
    -------
    list of dict
        ``file``, ``module``, ``rmf``, ``apbgd_arf``, ``fcxb_arf``,
        ``diag_rmf``: relative to ``outdir`` when inside it, else absolute.
    """
    return [dict(file=relative_name(s.path, outdir), module=s.module, rmf=relative_name(s.rmf_path, outdir),
                 apbgd_arf=relative_name(arf_names[k], outdir),
                 fcxb_arf=relative_name(auxil_path(f"fcxb{s.module}.arf"), outdir),
                 diag_rmf=relative_name(auxil_path("diag.rmf"), outdir))
            for k, s in enumerate(spectra)]


def _name_entries(state, specs):
    for e, s in zip(state.spectra, specs):
        e.file = str(s["file"])
        e.responses = {2: str(s["rmf"]), 3: str(s["rmf"]), 4: str(s["rmf"]), 5: str(s["diag_rmf"])}
        e.arfs = {2: str(s["apbgd_arf"]), 4: str(s["fcxb_arf"])}


def prepare_fit(info, emin=3.0, emax=150.0, original_norms=False, statistic="cstat", caldb=None, outdir=".",
                arf_names=None, detabs=None, calibration=None, add_lines=None):
    """Load a background fit: spectra, region (or detector) weights and apbgd ARFs.

    Parameters
    ----------
    info : BgdInfo or str or os.PathLike
        bgdinfo (loaded or its JSON file); with ``detectors`` the spectra
        are whole-detector spectra and need no regions or images.
    emin, emax : float
        Noticed band, keV (bins wholly inside are fitted).
    original_norms : bool
        Reference intbgd norms as the original (see
        :func:`nuskybgd.fitting.model.build_background_state`).
    statistic : {"cstat", "chi"}
        Fit statistic (checked here).
    caldb : str or Caldb, optional
        CALDB for the apbgd ARFs (DETABS, Be window; default ``$CALDB``).
    outdir : str or os.PathLike
        Folder the state's file names are relative to (the XCM's folder).
    arf_names : list of str, optional
        apbgd ARF names (default ``bgdparams_apbgd<n>.arf`` in ``outdir``).
    detabs : str or os.PathLike, optional
        DETABS file for the apbgd ARFs instead of a CALDB query.
    calibration : str or os.PathLike, optional
        Folder of ``nuskybgd calibrate`` epoch bundles: the presets of the
        epoch holding the spectra's DATE-OBS replace the shipped ones.
    add_lines : str or sequence of float, optional
        Lorentz lines added to the intbgd model (keV; ``"K-alpha"``: Cr, Fe
        and Ni K-alpha), see :func:`nuskybgd.calib.presets.with_added_lines`.

    Returns
    -------
    FitProblem

    Raises
    ------
    NuskybgdError
        Bad band or statistic, unreadable inputs (see
        :func:`~nuskybgd.io.bgdinfo.load_bgdinfo`,
        :func:`~nuskybgd.fitting.prepare.load_spectra`).
    """
    if not emax > emin:
        raise NuskybgdError(f"--emin {emin} must be below --emax {emax}")
    if statistic not in ("cstat", "chi"):
        raise NuskybgdError(f"--statistic {statistic}: use cstat or chi")
    if not isinstance(info, BgdInfo):
        info = load_bgdinfo(info)
    outdir = Path(outdir)
    spectra = load_spectra(info.bgfiles, info.respfiles,
                           [m for m, _ in info.detectors] if info.detectors else None)
    if info.detectors:
        weights = [detector_weights(k) for _, k in info.detectors]
        module_area = {m: [DETECTOR_AREA_PIX] * 4 for m, _ in info.detectors}
    else:
        weights, module_area = compute_weights(info, spectra)
    if arf_names is None:
        arf_names = output_names(outdir / "bgdparams", len(spectra))["arfs"]
    ratios, calib = load_ratios(), None
    if calibration:
        # Epoch-dependent presets (nuskybgd calibrate): the bundle whose epoch holds the observation date.
        date = observation_date([s.path for s in spectra])
        bundle = select_bundle(calibration, date)
        ratios = bundle.ratios
        calib = {"caldir": str(calibration), "epoch": bundle.epoch, "start": bundle.start, "stop": bundle.stop,
                 "version": bundle.version, "observation_date": date, "ratios": str(bundle.ratios_path)}
    energies = parse_added_lines(add_lines)
    if energies:
        ratios = with_added_lines(ratios, energies)
    arfs = [apbgd_arf(s.module, w.frac, caldb=caldb, rmf=s.rmf, detabs_file=detabs) for s, w in zip(spectra, weights)]
    return FitProblem(info=info, spectra=spectra, weights=weights, module_area=module_area, arfs=arfs,
                      specs=state_file_names(spectra, arf_names, outdir), emin=float(emin), emax=float(emax),
                      original_norms=bool(original_norms), caldb=caldb, outdir=outdir, ratios=ratios,
                      calibration=calib, added_lines=energies)


def run_fit(problem, statistic="cstat", no_fit=False, gain=None, thaw=None, free_detectors=None, errors=None,
            gain_start=None, start=None):
    """Build the model state and fit it (in memory; nothing is written).

    Parameters
    ----------
    problem : FitProblem
        From :func:`prepare_fit`; ``problem.state`` is set here.
    statistic : {"cstat", "chi"}
        Fit statistic.
    no_fit : bool
        Only evaluate the statistic at the presets.
    gain : {None, "fit", "link"}
        Free response gain per spectrum / per module.
    thaw : str, optional
        Shape parameters to fit (``SOURCE:COMPONENT.PARAM,...`` or
        ``LineE>E``).
    free_detectors : str, optional
        ``intn,intbgd``: one free norm per detector (and the linked fit for
        the likelihood-ratio test).
    errors : str, optional
        Parameters for 90 % profile intervals.
    gain_start : str or (float, float), optional
        ``"SLOPE,OFFSET"`` or a pair (slope, offset keV): the starting gain
        of every spectrum; the gain stays fixed there without ``gain``.
    start : str or dict, optional
        Starting values and limits of named parameters (XSPEC ``newpar``):
        ``"SOURCE:COMPONENT.PARAM=VALUE[:MIN[:MAX]],..."`` or a dict, see
        :func:`parse_start`.

    Returns
    -------
    FitOutputs
        With ``paths`` None and ``extra`` (log lines of the nonlinear fit).

    Notes
    -----
    With only norms free the fit is linear in the parameters (Newton on
    folded templates, :func:`nuskybgd.fitting.engine.fit_state`); with
    gains, thawed shapes, per-detector norms, whole-detector spectra or
    profile errors it goes through :func:`nuskybgd.fitting.detectors.fit_extended`.
    """
    info, spectra, weights = problem.info, problem.spectra, problem.weights
    ratios = problem.ratios if problem.ratios is not None else load_ratios()
    if gain_start is not None:
        gain_start = parse_gain_start(gain_start)
    if isinstance(start, str):
        start = parse_start(start)
    nonlinear = bool(gain or thaw or free_detectors or info.detectors or errors or gain_start or start)
    extra = []
    if nonlinear:
        state, model, result, extra = fit_extended(
            problem.specs, weights, problem.module_area, spectra, problem.arfs, ratios, info, statistic=statistic,
            fit=not no_fit, emin=problem.emin, emax=problem.emax, original_norms=problem.original_norms, gain=gain,
            thaw=thaw, free_detectors=free_detectors, errors=errors, gain_start=gain_start, start=start)
    else:
        state = build_background_state(problem.specs, weights, ratios, fix_line_ratios=info.intbgd_fix_line_ratios,
                                       fcxb_links=info.fcxb_links, original_norms=problem.original_norms,
                                       module_area=problem.module_area)
        state.statistic = statistic
        sds = []
        for k, (s, w) in enumerate(zip(spectra, weights)):
            tmpl = component_templates(s.rmf, s.module, w.frac, s.exposure, presets=ratios, caldb=problem.caldb,
                                       apbgd_arf=problem.arfs[k])
            sd = spectrum_data(s, tmpl, problem.emin, problem.emax)
            state.spectra[k].ignore = ignore_ranges(sd.noticed)
            sds.append(sd)
        model, result = fit_state(state, sds, statistic, fit=not no_fit)
    if result is not None:
        set_fit_covariance(state, model.free, result.covariance if not nonlinear else
                           result.covariance[:result.n_norms, :result.n_norms])
    else:
        state.info.pop("covariance", None)
    state.info["band_kev"] = [problem.emin, problem.emax]
    state.info["bgdinfo"] = str(info.path)
    state.info["exposure"] = [s.exposure for s in spectra]
    if problem.calibration:
        state.info["calibration"] = dict(problem.calibration)
    if problem.calibration or problem.added_lines:
        # spec, image and spex must link source regions with the presets of the fit, not the shipped ones
        state.info["presets"] = ratios
        state.info["added_lines"] = list(problem.added_lines)
    problem.state = state
    return FitOutputs(paths=None, state=state, model=model, result=result, spectra=spectra, weights=weights,
                      extra=extra, nonlinear=nonlinear)


def fit_summary(outputs, problem, no_fit=False):
    """Lines of the fit's log: spectra, band, statistic and weights.

    Parameters
    ----------
    outputs : FitOutputs
    problem : FitProblem
    no_fit : bool
        The presets were only evaluated.

    Returns
    -------
    list of str
    """
    state, result, spectra = outputs.state, outputs.result, outputs.spectra
    fitinfo = state.info["fit"]
    statistic = state.statistic
    summary = [
        f"nuskybgd fit {problem.info.path}",
        f"spectra: {len(spectra)} ({', '.join(f'{s.path.name} [FPM{s.module}]' for s in spectra)})",
        f"band: {problem.emin}-{problem.emax} keV; statistic {statistic}; "
        + ("presets only (--no-fit)" if no_fit or result is None else
           f"fitted in {result.n_iter} {'Levenberg-Marquardt' if outputs.nonlinear else 'Newton'} iterations, "
           f"{result.seconds:.3f} s, converged={result.converged}"),
        f"{statistic} = {fitinfo['value']:.6g} for {fitinfo['dof']} dof "
        f"({fitinfo['n_bins']} bins, {fitinfo['n_free']} free parameters)",
        "region weights (detector areas DET0..DET3 in sky pixels, aperture sum):",
    ]
    c = problem.calibration
    if c:
        summary.insert(2, f"calibration: epoch {c['epoch']} ({c['start']} .. {c['stop']}) of {c['caldir']} "
                          f"(version {c['version']}) for observation date {c['observation_date']}: {c['ratios']}")
    for s, w in zip(spectra, outputs.weights):
        summary.append(f"  {s.path.name}: area {[round(float(a), 3) for a in w.area]} ap {w.ap:.6g}")
    summary.append(parameter_table(state))
    summary += list(outputs.extra)
    return summary


def write_fit(outputs, problem, savefile="bgdparams", plot=True, clobber=False, no_fit=False, t_start=None):
    """Write the outputs of a fit (XCM, JSON, Sherpa script, ARFs, plot, log).

    Parameters
    ----------
    outputs : FitOutputs
        From :func:`run_fit`; its ``paths`` are set here.
    problem : FitProblem
        From :func:`prepare_fit`.
    savefile : str
        Output NAME (folder allowed; ``.xcm`` dropped).
    plot : bool
        Write ``NAME.png``.
    clobber : bool
        Replace existing outputs.
    no_fit : bool
        The presets were only evaluated (log text).
    t_start : float, optional
        ``time.perf_counter()`` at the start (total time in the log).

    Returns
    -------
    dict
        The output names (:func:`output_names`).

    Raises
    ------
    NuskybgdError
        Existing outputs without ``clobber`` (nothing written).
    """
    spectra, weights, state = outputs.spectra, outputs.weights, outputs.state
    names = output_names(savefile, len(spectra), plot)
    all_paths = [names[k] for k in ("xcm", "json", "sherpa", "log", "png") if names[k] is not None] + names["arfs"]
    check_outputs(all_paths, clobber)
    outdir = names["xcm"].parent if str(names["xcm"].parent) else Path(".")
    # file names inside the XCM are relative to its folder (see analysis.outputs)
    _name_entries(state, state_file_names(spectra, names["arfs"], outdir))
    problem.outdir = outdir
    summary = fit_summary(outputs, problem, no_fit)
    text_log = "\n".join(summary) + "\n"
    with atomic_outputs(all_paths, clobber) as out:
        Path(out[names["xcm"]]).write_text(format_xcm(state))
        Path(out[names["json"]]).write_text(json.dumps(state_to_json(state), indent=1) + "\n")
        Path(out[names["sherpa"]]).write_text(sherpa_script(state))
        for k, (s, w, arf) in enumerate(zip(spectra, weights, problem.arfs)):
            write_apbgd_arf(out[names["arfs"][k]], arf, s.module, w.frac, clobber=True)
        if names["png"] is not None:
            dets = problem.info.detectors
            plot_fit(out[names["png"]], outputs.model, state, [(s.e_lo, s.e_hi) for s in spectra],
                     labels=[f"{s.path.name} (FPM{s.module}" + (f" DET{dets[k][1]})" if dets else ")")
                             for k, s in enumerate(spectra)])
        if t_start is not None:
            text_log += f"total time {time.perf_counter() - t_start:.2f} s\n"
        Path(out[names["log"]]).write_text(text_log)
    for line in summary[:5 if problem.calibration else 4]:
        log.info(line)
    log.info("wrote %s", ", ".join(str(p) for p in all_paths[:5]))
    outputs.paths = names
    return names


def fit_background(bgdinfo, savefile="bgdparams", statistic="cstat", no_fit=False, emin=3.0, emax=150.0,
                   original_norms=False, clobber=False, plot=True, caldb=None, gain=None, thaw=None,
                   free_detectors=None, errors=None, detabs=None, calibration=None, gain_start=None, start=None,
                   add_lines=None):
    """Fit the background model of a bgdinfo.json file and write the outputs.

    Parameters
    ----------
    bgdinfo : str or os.PathLike or BgdInfo
        bgdinfo.json.
    savefile : str
        Output name NAME.
    statistic : {"cstat", "chi"}
        Fit statistic.
    no_fit : bool
        Write the presets without fitting.
    emin, emax : float
        Noticed band, keV.
    original_norms : bool
        Reference intbgd norms as the original (see
        :func:`nuskybgd.fitting.model.build_background_state`).
    clobber : bool
        Replace existing outputs.
    plot : bool
        Write NAME.png.
    caldb : str or Caldb, optional
        CALDB for the apbgd ARFs (default ``$CALDB``).
    gain, thaw, free_detectors, errors, gain_start, start
        Nonlinear fit options, see :func:`run_fit`.
    detabs : str, optional
        DETABS file for the apbgd ARFs.
    calibration : str, optional
        Folder of epoch bundles (``nuskybgd calibrate``), see :func:`prepare_fit`.
    add_lines : str or sequence of float, optional
        Lorentz lines added to the intbgd model, see :func:`prepare_fit`.

    Returns
    -------
    FitOutputs

    Raises
    ------
    NuskybgdError
        Bad input (see :func:`~nuskybgd.io.bgdinfo.load_bgdinfo`,
        :func:`~nuskybgd.fitting.prepare.load_spectra`), existing outputs.
        Nothing is written in that case.
    """
    t_start = time.perf_counter()
    if not emax > emin:
        raise NuskybgdError(f"--emin {emin} must be below --emax {emax}")
    if statistic not in ("cstat", "chi"):
        raise NuskybgdError(f"--statistic {statistic}: use cstat or chi")
    if gain_start is not None:
        gain_start = parse_gain_start(gain_start)
    if isinstance(start, str):
        start = parse_start(start)
    add_lines = parse_added_lines(add_lines)  # checked before any work
    info = bgdinfo if isinstance(bgdinfo, BgdInfo) else load_bgdinfo(bgdinfo)
    names = output_names(savefile, len(info.bgfiles), plot)
    all_paths = [names[k] for k in ("xcm", "json", "sherpa", "log", "png") if names[k] is not None] + names["arfs"]
    check_outputs(all_paths, clobber)
    outdir = names["xcm"].parent if str(names["xcm"].parent) else Path(".")
    problem = prepare_fit(info, emin, emax, original_norms, statistic, caldb, outdir, names["arfs"], detabs,
                          calibration, add_lines)
    outputs = run_fit(problem, statistic, no_fit, gain=gain, thaw=thaw, free_detectors=free_detectors,
                      errors=errors, gain_start=gain_start, start=start)
    write_fit(outputs, problem, savefile, plot, clobber, no_fit, t_start)
    return outputs


def parse_gain_start(text):
    """Parse and check a starting response gain.

    Parameters
    ----------
    text : str or (float, float)
        ``"SLOPE,OFFSET"`` (slope dimensionless, offset keV) or a pair.

    Returns
    -------
    (float, float)
        Slope and offset (keV), within the gain limits.

    Raises
    ------
    NuskybgdError
        Not two numbers, or outside the limits of
        :func:`nuskybgd.kernels.gain.check_gain`.
    """
    if isinstance(text, str):
        parts = text.split(",")
        if len(parts) != 2:
            raise NuskybgdError(f"--gain-start {text}: expected SLOPE,OFFSET (e.g. 0.995,-0.1)")
        try:
            text = (float(parts[0]), float(parts[1]))
        except ValueError:
            raise NuskybgdError(f"--gain-start {text}: expected two numbers SLOPE,OFFSET") from None
    return check_gain(text[0], text[1], "--gain-start")


def parse_start(text):
    """Parse ``--start``: starting values and limits of named parameters (XSPEC ``newpar``).

    Parameters
    ----------
    text : str
        Comma-separated ``SOURCE:COMPONENT.PARAM=VALUE[:MIN[:MAX]]``, e.g.
        ``intbgd:lorentz_4.LineE=6.4,intbgd:lorentz_4.Width=0.3:0.02``
        (values and limits in the parameter's units, keV for energies).

    Returns
    -------
    dict
        Item -> value, ``(value, min)`` or ``(value, min, max)``, for
        :func:`nuskybgd.fitting.thaw.apply_start`.

    Raises
    ------
    NuskybgdError
        An entry without ``=``, or values that are not numbers.
    """
    out = {}
    for entry in (e.strip() for e in str(text).split(",")):
        if not entry:
            continue
        item, sep, vals = entry.partition("=")
        if not sep or not item.strip() or not vals.strip():
            raise NuskybgdError(f"--start {entry}: expected SOURCE:COMPONENT.PARAM=VALUE[:MIN[:MAX]] "
                                f"(e.g. intbgd:lorentz_4.LineE=6.4)")
        try:
            nums = tuple(float(v) for v in vals.split(":"))
        except ValueError:
            raise NuskybgdError(f"--start {entry}: VALUE[:MIN[:MAX]] must be numbers") from None
        if not 1 <= len(nums) <= 3 or not all(n == n and abs(n) != float("inf") for n in nums):
            raise NuskybgdError(f"--start {entry}: give VALUE, VALUE:MIN or VALUE:MIN:MAX (finite numbers)")
        out[item.strip()] = nums[0] if len(nums) == 1 else nums
    if not out:
        raise NuskybgdError("--start: no SOURCE:COMPONENT.PARAM=VALUE given")
    return out
