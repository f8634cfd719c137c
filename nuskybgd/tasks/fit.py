"""``nuskybgd fit``: fit the background model to background-region spectra."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import NuskybgdError
from ..io.bgdinfo import TEMPLATE

SUMMARY = "fit the background model to background-region spectra"

DESCRIPTION = f"""\
Fit the four-component NuSTAR background model (apbgd, intbgd, fcxb, intn;
XSPEC sources 2-5) simultaneously to the spectra of background regions.
Region weights come from the region masks on the projected aperture and
detector images (nuskybgd projbgd); the first spectrum of each module is its
reference, and every other spectrum's norms are tied to it by fixed ratios.
The free parameters are norms, so the fit is a Poisson (cstat) or chi-square
likelihood solved by Newton iterations on folded templates; 1-sigma errors
come from the Fisher matrix.

Outputs (an existing file is an error unless --clobber):
  NAME.xcm          XSPEC save file (xspec> @NAME.xcm, from NAME's folder)
  NAME.json         every parameter (value, error, free/frozen/linked, link
                    ratio), statistic, dof, weights, software versions
  NAME_sherpa.py    script that rebuilds the fitted state in Sherpa
  NAME.png          data, model, components and residuals per spectrum
  NAME.log          summary of the run
  NAME_apbgd<n>.arf aperture-background ARF of spectrum n (named by the XCM)

Beyond the norms (XSPEC-style; fitted by variable projection: the norms are
solved exactly for every trial shape, a bounded Levenberg-Marquardt moves
the rest):
  --gain fit        a free response gain (slope, offset keV) per spectrum,
                    XSPEC's "gain fit": response energies E' = E/slope - offset
  --gain link       one free gain per module
  --gain-start S,O  starting gain (slope, offset keV) of every spectrum; fixed
                    at that value without --gain
  --thaw LIST       shape parameters to fit, SOURCE:COMPONENT.PARAM, e.g.
                    intbgd:lorentz_5.LineE,intbgd:lorentz_30.LineE; "LineE>19"
                    frees every line energy above 19 keV
  --free-detectors intn,intbgd
                    one free norm per detector for these components (regions
                    on one detector each, e.g. whole-detector spectra); the
                    log and JSON list the detector norms and the likelihood-
                    ratio test against the linked model
  --errors LIST     90 % profile intervals (delta stat 2.706) of the named
                    parameters (same names, or gain:N.slope / gain:N.offset)
Whole-detector spectra: give "detectors": ["A0", "A1", ...] in bgdinfo.json
instead of regions and images (and "respfiles" to replace RESPFILE).

--no-fit writes the presets (the original tool's behaviour).
--original-norms gives the reference spectrum's intbgd norms the original's
area-weighted mean (not scaled with area) and intn the original's
sum_k area_k ifactor_k / 599.75; by default every intbgd/intn norm is
sum_k (area_k / A_k) ifactor_k with A_k the area of detector k, so a whole
detector starts at ifactor_k.

bgdinfo.json template (paths relative to the JSON file's folder):
{TEMPLATE}

examples:
  nuskybgd fit bgdinfo.json
  nuskybgd fit bgdinfo.json savefile=bgdparams --statistic chi
  nuskybgd fit bgdinfo.json --savefile out/bgd --no-fit --clobber
  nuskybgd fit stacked.json --gain fit --thaw intbgd:lorentz_5.LineE,intbgd:lorentz_8.LineE
  nuskybgd fit stacked.json --gain fit --free-detectors intn,intbgd --errors gain:1.slope
"""

LEGACY = {"savefile": "--savefile"}

log = logging.getLogger("nuskybgd")


def add_arguments(parser):
    """Arguments of ``nuskybgd fit``."""
    parser.add_argument("bgdinfo", help="bgdinfo.json (see the template above)")
    parser.add_argument("--savefile", default="bgdparams",
                        help="output name NAME (folder allowed; .xcm suffix dropped; default bgdparams)")
    parser.add_argument("--statistic", default="cstat", choices=["cstat", "chi"],
                        help="fit statistic (default cstat; chi uses the data variance as the original)")
    parser.add_argument("--no-fit", action="store_true", help="write the presets without fitting")
    parser.add_argument("--emin", type=float, default=3.0, help="lowest energy noticed, keV (default 3)")
    parser.add_argument("--emax", type=float, default=150.0, help="highest energy noticed, keV (default 150)")
    parser.add_argument("--original-norms", action="store_true",
                        help="reference intbgd norms as the original (area-weighted mean)")
    parser.add_argument("--no-plot", action="store_true", help="do not write NAME.png")
    parser.add_argument("--caldb", default=None,
                        help="CALDB root for DETABS/Be window of the apbgd ARFs (default $CALDB)")
    parser.add_argument("--gain", choices=["fit", "link"], default=None,
                        help="fit a response gain per spectrum (fit) or per module (link)")
    parser.add_argument("--gain-start", default=None, metavar="SLOPE,OFFSET",
                        help="starting (or, without --gain, fixed) response gain of every spectrum")
    parser.add_argument("--thaw", default=None, metavar="LIST",
                        help="shape parameters to fit: SOURCE:COMPONENT.PARAM,... or LineE>E")
    parser.add_argument("--free-detectors", default=None, metavar="COMPONENTS",
                        help="one free norm per detector for intn and/or intbgd (comma-separated)")
    parser.add_argument("--errors", default=None, metavar="PARAMS",
                        help="90%% profile intervals of these parameters (comma-separated)")
    parser.add_argument("--detabs", default=None,
                        help="DETABS file for the apbgd ARFs (instead of a CALDB query)")
    parser.add_argument("--calibration", default=None, metavar="CALDIR",
                        help="presets from the epoch bundle of 'nuskybgd calibrate' whose epoch holds the "
                             "spectra's DATE-OBS (default: the shipped ratios.json)")
    parser.add_argument("--clobber", action="store_true", help="overwrite existing output files")


@dataclass
class FitOutputs:
    """What :func:`fit_background` produced.

    Attributes
    ----------
    paths : dict
        Kind (``xcm``, ``json``, ``sherpa``, ``png``, ``log``, ``arfs``) ->
        path(s).
    state : FitState
    model : LinearModel
    result : FitResult or None
    spectra : list of LoadedSpectrum
    weights : list of Weights
    """

    paths: dict
    state: object
    model: object
    result: object
    spectra: list
    weights: list


def output_names(savefile, n_spectra, plot=True):
    """Output files of a fit.

    Parameters
    ----------
    savefile : str
        NAME (a trailing ``.xcm`` is dropped).
    n_spectra : int
    plot : bool

    Returns
    -------
    dict
        ``xcm``, ``json``, ``sherpa``, ``log``, ``png`` (or None), ``arfs``
        (list) -> pathlib.Path.
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


def _rel(path, folder):
    """Name relative to the output folder when the file is inside it, else absolute."""
    try:
        r = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    except ValueError:  # other drive (Windows)
        return os.path.abspath(path)
    return os.path.abspath(path) if r.startswith("..") else r


def parameter_table(state):
    """Text table of the free parameters and linked norms of the reference spectra.

    Parameters
    ----------
    state : FitState

    Returns
    -------
    str
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


def fit_background(bgdinfo, savefile="bgdparams", statistic="cstat", no_fit=False, emin=3.0, emax=150.0,
                   original_norms=False, clobber=False, plot=True, caldb=None, gain=None, thaw=None,
                   free_detectors=None, errors=None, detabs=None, calibration=None, gain_start=None):
    """Fit the background model of a bgdinfo.json file and write the outputs.

    Parameters
    ----------
    bgdinfo : str or os.PathLike
        bgdinfo.json.
    savefile : str
        Output name NAME.
    statistic : {"cstat", "chi"}
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
    gain : {None, "fit", "link"}
        Response gain per spectrum / per module.
    thaw : str, optional
        Shape parameters to fit (``--thaw``).
    free_detectors : str, optional
        ``intn,intbgd``: per-detector norms (and the linked fit for the
        likelihood-ratio test).
    errors : str, optional
        Parameters for profile intervals (``--errors``).
    detabs : str, optional
        DETABS file for the apbgd ARFs.
    gain_start : str or (float, float), optional
        ``"SLOPE,OFFSET"``: starting gain (fixed without ``gain``).

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
    from ..calib.auxil import auxil_path, load_ratios
    from ..fitting.engine import fit_state
    from ..fitting.export import plot_fit, sherpa_script, state_to_json
    from ..fitting.model import build_background_state
    from ..fitting.detectors import DETECTOR_AREA_PIX, detector_weights, fit_extended
    from ..fitting.prepare import compute_weights, ignore_ranges, load_spectra, spectrum_data
    from ..fitting.uncertainty import set_fit_covariance
    from ..io.bgdinfo import load_bgdinfo
    from ..io.output import atomic_outputs, check_outputs
    from ..io.xcm import format_xcm
    from ..models.background import component_templates
    from ..models.responses import apbgd_arf, write_apbgd_arf

    t_start = time.perf_counter()
    if not emax > emin:
        raise NuskybgdError(f"--emin {emin} must be below --emax {emax}")
    if statistic not in ("cstat", "chi"):
        raise NuskybgdError(f"--statistic {statistic}: use cstat or chi")
    info = load_bgdinfo(bgdinfo)
    names = output_names(savefile, len(info.bgfiles), plot)
    all_paths = [names[k] for k in ("xcm", "json", "sherpa", "log", "png") if names[k] is not None] + names["arfs"]
    check_outputs(all_paths, clobber)
    outdir = names["xcm"].parent if str(names["xcm"].parent) else Path(".")

    spectra = load_spectra(info.bgfiles, info.respfiles,
                           [m for m, _ in info.detectors] if info.detectors else None)
    if info.detectors:
        weights = [detector_weights(k) for _, k in info.detectors]
        module_area = {m: [DETECTOR_AREA_PIX] * 4 for m, _ in info.detectors}
    else:
        weights, module_area = compute_weights(info, spectra)
    ratios = load_ratios()
    calib_note = None
    if calibration:
        # Epoch-dependent presets (nuskybgd calibrate): the bundle whose epoch holds the observation date.
        from ..io.calibration import observation_date, select_bundle
        date = observation_date([s.path for s in spectra])
        bundle = select_bundle(calibration, date)
        ratios = bundle.ratios
        calib_note = (f"calibration: epoch {bundle.epoch} ({bundle.start} .. {bundle.stop}) of {calibration} "
                      f"(version {bundle.version}) for observation date {date}: {bundle.ratios_path}")
    if gain_start is not None:
        gain_start = parse_gain_start(gain_start)
    nonlinear = bool(gain or thaw or free_detectors or info.detectors or errors or gain_start)
    specs, arfs = [], []
    for k, (s, w) in enumerate(zip(spectra, weights)):
        arf = apbgd_arf(s.module, w.frac, caldb=caldb, rmf=s.rmf, detabs_file=detabs)
        arfs.append(arf)
        specs.append(dict(file=_rel(s.path, outdir), module=s.module, rmf=_rel(s.rmf_path, outdir),
                          apbgd_arf=_rel(names["arfs"][k], outdir),
                          fcxb_arf=_rel(auxil_path(f"fcxb{s.module}.arf"), outdir),
                          diag_rmf=_rel(auxil_path("diag.rmf"), outdir)))
    extra = []
    if nonlinear:
        state, model, result, extra = fit_extended(
            specs, weights, module_area, spectra, arfs, ratios, info, statistic=statistic, fit=not no_fit,
            emin=emin, emax=emax, original_norms=original_norms, gain=gain, thaw=thaw,
            free_detectors=free_detectors, errors=errors, gain_start=gain_start)
    else:
        state = build_background_state(specs, weights, ratios, fix_line_ratios=info.intbgd_fix_line_ratios,
                                       fcxb_links=info.fcxb_links, original_norms=original_norms,
                                       module_area=module_area)
        state.statistic = statistic
        sds = []
        for k, (s, w) in enumerate(zip(spectra, weights)):
            tmpl = component_templates(s.rmf, s.module, w.frac, s.exposure, presets=ratios, caldb=caldb,
                                       apbgd_arf=arfs[k])
            sd = spectrum_data(s, tmpl, emin, emax)
            state.spectra[k].ignore = ignore_ranges(sd.noticed)
            sds.append(sd)
        model, result = fit_state(state, sds, statistic, fit=not no_fit)
    if result is not None:
        set_fit_covariance(state, model.free, result.covariance if not nonlinear else
                           result.covariance[:result.n_norms, :result.n_norms])
    else:
        state.info.pop("covariance", None)
    state.info["band_kev"] = [emin, emax]
    state.info["bgdinfo"] = str(info.path)
    state.info["exposure"] = [s.exposure for s in spectra]
    if calib_note:
        state.info["calibration"] = {"caldir": str(calibration), "epoch": bundle.epoch, "start": bundle.start,
                                     "stop": bundle.stop, "version": bundle.version, "observation_date": date,
                                     "ratios": str(bundle.ratios_path)}

    fitinfo = state.info["fit"]
    summary = [
        f"nuskybgd fit {info.path}",
        f"spectra: {len(spectra)} ({', '.join(f'{s.path.name} [FPM{s.module}]' for s in spectra)})",
        f"band: {emin}-{emax} keV; statistic {statistic}; "
        + ("presets only (--no-fit)" if no_fit else
           f"fitted in {result.n_iter} {'Levenberg-Marquardt' if nonlinear else 'Newton'} iterations, "
           f"{result.seconds:.3f} s, converged={result.converged}"),
        f"{statistic} = {fitinfo['value']:.6g} for {fitinfo['dof']} dof "
        f"({fitinfo['n_bins']} bins, {fitinfo['n_free']} free parameters)",
        "region weights (detector areas DET0..DET3 in sky pixels, aperture sum):",
    ]
    if calib_note:
        summary.insert(2, calib_note)
    for s, w in zip(spectra, weights):
        summary.append(f"  {s.path.name}: area {[round(float(a), 3) for a in w.area]} ap {w.ap:.6g}")
    summary.append(parameter_table(state))
    summary += extra
    text_log = "\n".join(summary) + "\n"

    with atomic_outputs(all_paths, clobber) as out:
        Path(out[names["xcm"]]).write_text(format_xcm(state))
        Path(out[names["json"]]).write_text(json.dumps(state_to_json(state), indent=1) + "\n")
        Path(out[names["sherpa"]]).write_text(sherpa_script(state))
        for k, (s, w, arf) in enumerate(zip(spectra, weights, arfs)):
            write_apbgd_arf(out[names["arfs"][k]], arf, s.module, w.frac, clobber=True)
        if names["png"] is not None:
            plot_fit(out[names["png"]], model, state, [(s.e_lo, s.e_hi) for s in spectra],
                     labels=[f"{s.path.name} (FPM{s.module}"
                             + (f" DET{info.detectors[k][1]})" if info.detectors else ")")
                             for k, s in enumerate(spectra)])
        text_log += f"total time {time.perf_counter() - t_start:.2f} s\n"
        Path(out[names["log"]]).write_text(text_log)
    for line in summary[:5 if calib_note else 4]:
        log.info(line)
    log.info("wrote %s", ", ".join(str(p) for p in all_paths[:5]))
    return FitOutputs(paths=names, state=state, model=model, result=result, spectra=spectra, weights=weights)


def parse_gain_start(text):
    """``"SLOPE,OFFSET"`` (or a pair) -> (slope, offset keV), checked against the gain limits."""
    from ..kernels.gain import check_gain

    if isinstance(text, str):
        parts = text.split(",")
        if len(parts) != 2:
            raise NuskybgdError(f"--gain-start {text}: expected SLOPE,OFFSET (e.g. 0.995,-0.1)")
        try:
            text = (float(parts[0]), float(parts[1]))
        except ValueError:
            raise NuskybgdError(f"--gain-start {text}: expected two numbers SLOPE,OFFSET") from None
    return check_gain(text[0], text[1], "--gain-start")


def run(args):
    """Run ``nuskybgd fit``."""
    res = fit_background(args.bgdinfo, savefile=args.savefile, statistic=args.statistic, no_fit=args.no_fit,
                         emin=args.emin, emax=args.emax, original_norms=args.original_norms,
                         clobber=args.clobber, plot=not args.no_plot, caldb=args.caldb, gain=args.gain,
                         thaw=args.thaw, free_detectors=args.free_detectors, errors=args.errors,
                         detabs=args.detabs, calibration=args.calibration, gain_start=args.gain_start)
    print(parameter_table(res.state), file=sys.stdout)
    return 0
