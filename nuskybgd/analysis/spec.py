"""Background spectra of source regions (``nuskybgd spec``).

Each source spectrum joins the fitted state as a new data group tied to its
module's reference spectrum (:func:`nuskybgd.fitting.apply.add_source_spectra`);
the predicted background counts per channel, per band and their 1-sigma
errors from the fit covariance (:mod:`nuskybgd.fitting.uncertainty`) are
computed, and written on request.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calib.auxil import auxil_path
from ..errors import NuskybgdError
from ..fitting.apply import SourceSpectrum, add_source_spectra, group_component_counts
from ..fitting.data import bin_mask_from_energy, group_ids
from ..fitting.export import sherpa_script, state_to_json
from ..fitting.prepare import ignore_ranges
from ..fitting.uncertainty import (
    fit_covariance,
    prediction_jacobian,
    prediction_sigma,
    source_fcxb_coefficients,
)
from ..io.bgdinfo import BgdInfo, load_bgdinfo
from ..io.ogip import write_pha
from ..io.output import atomic_outputs, check_outputs
from ..io.xcm import format_xcm
from ..models.responses import apbgd_arf, write_apbgd_arf
from ..sky.bgimage import band_channels
from .outputs import (
    default_savefile,
    json_default,
    rebase_entry,
    relative_name,
    spec_outputs,
)
from .setup import load_setup, load_sources, spectrum_templates, state_presets, state_shapes

__all__ = ["BANDS", "SpecPrediction", "predict_sources", "run_spec", "plot_spec", "plot_source_spectrum", "bkg_error_keywords"]

log = logging.getLogger("nuskybgd")


@dataclass
class SpecPrediction:
    """Predicted background of source regions (see :func:`predict_sources`).

    Attributes
    ----------
    state : FitState
        Background and source spectra; source groups tied to the fit.
    results : list of dict
        Per source spectrum: the prediction and its errors.
    arfs : list of DataARF
        apbgd ARF of each source spectrum.
    """

    state: object
    results: list
    arfs: list


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


    if len(regfiles) != len(phafiles):
        raise NuskybgdError(f"{len(regfiles)} source regions but {len(phafiles)} source spectra")
    savefile = savefile or default_savefile(regfiles)
    if setup is None:
        info = bgdinfo if isinstance(bgdinfo, BgdInfo) else load_bgdinfo(bgdinfo)
        n_bg = len(info.bgfiles)
    else:
        n_bg = len(setup.modules)
    names = spec_outputs(savefile, regfiles, realisations, n_bg)
    all_files = [names["xcm"], names["json"], names["sherpa"]] + names["bkg"] + names["arfs"] \
        + [f for r in names["realisations"] for f in r] + ([names["png"]] if plot else [])
    check_outputs(all_files, clobber)
    setup = setup or load_setup(info, fit)
    srcs = load_sources(setup, regfiles, phafiles)
    out_dir = Path(names["xcm"]).parent if str(Path(names["xcm"]).parent) else Path(".")
    pred = predict_sources(setup, srcs, fit_dir=Path(fit).parent, out_dir=out_dir, arf_names=names["arfs"],
                           fcxb=fcxb, caldb=caldb, what=str(fit))
    state, results, arf_objs = pred.state, pred.results, pred.arfs
    for k, p in enumerate(state.info["predicted_background"]):
        p["bkg_file"] = names["bkg"][k]

    rng = np.random.default_rng(seed)
    exposures = [float(p.exposure) for p in setup.phas] + [float(s["pha"].exposure) for s in srcs]
    with atomic_outputs(all_files, clobber) as out:
        Path(out[names["xcm"]]).write_text(format_xcm(state))
        Path(out[names["json"]]).write_text(json.dumps(state_to_json(state), indent=1, default=json_default))
        Path(out[names["sherpa"]]).write_text(sherpa_script(state, exposures=exposures))
        for k, (s, r) in enumerate(zip(srcs, results)):
            write_apbgd_arf(out[names["arfs"][k]], arf_objs[k], s["module"], s["weights"].frac, clobber=True)
            hdr = _bkg_header(s["pha"], s["phafile"], s["regfile"])
            hdr.update(bkg_error_keywords(r["total"], r["total_error"], r["error_kind"]))
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

def predict_sources(setup, srcs, fit_dir=".", out_dir=".", arf_names=None, fcxb="fitted", caldb=None,
                    what="fit"):
    """Predicted background of source regions (in memory; nothing is written).

    Parameters
    ----------
    setup : BackgroundSetup
        Background spectra, weights and the fitted state.
    srcs : list of dict
        Source spectra and regions (:func:`~nuskybgd.analysis.setup.load_sources`).
    fit_dir, out_dir : str or os.PathLike
        Folder the fitted state's file names are relative to, and folder the
        new state's names will be relative to (the output XCM's).
    arf_names : list of str, optional
        apbgd ARF file of each source spectrum (default
        ``bgd_apbgd<n>.arf`` in ``out_dir``).
    fcxb : {"fitted", "preset"}
        fCXB norm of the source regions.
    caldb : str or Caldb, optional
        CALDB for the apbgd ARFs (default ``$CALDB``).
    what : str
        Name of the fit in warnings.

    Returns
    -------
    SpecPrediction
        ``state`` (background and source spectra), ``results`` (per source:
        ``counts`` per component and channel, ``spectrum`` (counts per
        channel), ``total``, ``bands`` {"3-10": counts, ...},
        ``total_error``, ``band_errors`` (1-sigma, counts), ``error_kind``,
        ``exposure`` (s), ``backscal``) and ``arfs`` (apbgd ARF of each
        source).
    """
    presets = state_presets(setup.state)
    out_dir = Path(out_dir)
    fit_dir = Path(fit_dir)
    n_bg = len(setup.modules)
    if arf_names is None:
        arf_names = [str(out_dir / f"bgd_apbgd{n_bg + k + 1}.arf") for k in range(len(srcs))]
    sources = []
    arf_objs = []
    for k, s in enumerate(srcs):
        m, pha, w = s["module"], s["pha"], s["weights"]
        rmf = pha.get_rmf()
        date = pha.header.get("DATE-OBS")
        arf = apbgd_arf(m, w.frac, caldb=caldb, rmf=rmf, date=date)
        arf_objs.append(arf)
        rmf_name = getattr(rmf, "name", None) or str(pha.header.get("RESPFILE"))
        responses = {2: relative_name(rmf_name, out_dir),
                     3: relative_name(rmf_name, out_dir),
                     4: relative_name(rmf_name, out_dir),
                     5: str(auxil_path("diag.rmf"))}
        arfs = {2: relative_name(arf_names[k], out_dir), 4: str(auxil_path(f"fcxb{m}.arf"))}
        sources.append(SourceSpectrum(file=relative_name(s["phafile"], out_dir), module=m,
                                      area=w.area, ap=w.ap, responses=responses, arfs=arfs,
                                      ignore=_source_ignore(pha, setup.state.info.get("band_kev") or (3.0, 150.0))))
    fit_state = copy.deepcopy(setup.state)
    fit_state.spectra = [rebase_entry(e, fit_dir, out_dir) for e in fit_state.spectra]
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
                    "errors, correlations ignored", what)
    elif cov_kind == "none":
        log.warning("%s: no covariance or parameter errors (XCM); prediction errors unknown (NaN)", what)
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
                        what, ", ".join(f"{a}:p{j + 1}" for a, j in missing))
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
                                           "error_kind": r["error_kind"], "bkg_file": None}
                                          for k, r in enumerate(results)]
    return SpecPrediction(state=state, results=results, arfs=arf_objs)


def _source_ignore(pha, band):
    """XSPEC ignore ranges of a source spectrum: bins not wholly inside the fit's band."""
    rmf = pha.get_rmf()
    n = len(pha.channel)
    grouping = None if pha.grouping is None else np.asarray(pha.grouping)
    quality = None if pha.quality is None else np.asarray(pha.quality)
    ids = group_ids(grouping, n)
    return ignore_ranges(bin_mask_from_energy(ids, np.asarray(rmf.e_min), np.asarray(rmf.e_max),
                                              float(band[0]), float(band[1]), quality))

def _num_or_none(x):
    return float(x) if np.isfinite(x) else None

def bkg_error_keywords(total, sigma, kind):
    """Header keywords recording the predicted background's fit uncertainty.

    The COUNTS column stays the prediction itself and POISSERR/SYS_ERR keep
    write_pha's defaults: the error of the prediction is one number fully
    correlated over channels (the fitted norms), not an independent
    per-channel systematic, so it is recorded, not folded into SYS_ERR.

    Parameters
    ----------
    total : float
        Predicted background counts over all channels.
    sigma : float
        1-sigma error of ``total`` from the fit, counts (NaN: unknown).
    kind : str
        Source of the error: ``"covariance"``, ``"diagonal"`` or ``"none"``.

    Returns
    -------
    dict
        Keyword -> (value, comment): BKGTOTAL, BKGERRTY, and BKGCERR,
        BKGFERR when the error is known and the total positive.
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
    import matplotlib  # local: matplotlib.pyplot costs 0.5-1.5 s at import; only for plots
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
    fig.savefig(path, dpi=150, format="png")
    plt.close(fig)

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
