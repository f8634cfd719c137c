"""Three ways of handling the background of a faint source, by injection.

For seeds 1..N: simulate an observation without point source (both modules,
four background components), run the chain of ``nuskybgd demo`` (images,
aspect, instrument maps, projbgd, three background regions per module,
extract, bgdinfo, cstat fit), extract the FPMA spectrum of the demo's source
region (background events only) and add a power-law source (photon index
1.8) drawn through the region's RMF x the on-axis ARF x exposure, at two
strengths (about 100 and 2000 source counts in 3-79 keV). Then fit photon
index and norm in Sherpa (3-79 keV, ungrouped channels) three ways:

``fixed``
    cstat, the modelled background (``spec``'s prediction) held fixed.
``prior``
    cstat, the modelled background free within the errors of the
    background fit: background = prediction + sum_k z_k M_k, where M_k are
    the eigen-modes of the prediction's covariance (J C J^T, C the fit's
    covariance of the norms, J the exact per-channel Jacobian) and each z_k
    has a standard-normal prior (penalty sum z_k^2 added to cstat).
``wstat``
    W-stat with the background *measured* in the demo's first background
    region of the same module (circle r=50 at (-80, -80) from the field
    centre), scaled by the BACKSCAL (area) ratio: the classical way.

Per method and strength: bias (mean of fitted - true), scatter (standard
deviation), mean of Sherpa's covariance errors and the coverage of the
+-1 sigma interval (fraction of seeds with |fitted - true| <= error), for the
photon index and for the norm (relative).

Writes ``benchmarks/results/injection_background.json`` and a PNG next to it.
Nothing is asserted. With ``--keep DIR`` each seed's chain is cached
(``DIR/seedNNN/prediction.npz``), so variants rerun only the fits:
``--errors conf`` (profile intervals), ``--methods wstat --wstat-region 2``
(another off-source region), ``--wstat-group 5`` (W-stat spectra grouped to
at least 5 off-source counts per bin).

usage: python benchmarks/injection_background.py [--seeds 20] [--exposure 50000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", HERE.parents[1] / "shared"))
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))
os.environ.setdefault("NUSKYBGD_APEC_TEMPLATE",
                      str(SHARED / "apec" / "nnapec_intbgd_kT1.14579_Z1.32692_nustar_bins.txt"))
os.environ.setdefault("MPLBACKEND", "Agg")

GAMMA_TRUE = 1.8
#: Power-law pivot energy (keV): the norm is the photon flux density there, inside the band, so that it is
#: nearly uncorrelated with the index.
PIVOT = 10.0
BAND = (3.0, 79.0)
METHODS = ("fixed", "prior", "wstat")
#: Source region (offset from the field centre, radius; sky pixels): the demo's.
SOURCE_REGION = (-135.0, 0.0, 35.0)


def make_sherpa_classes():
    """Sherpa model and statistic used here (defined lazily: Sherpa import is slow)."""
    from sherpa.models.model import ArithmeticModel
    from sherpa.models.parameter import Parameter
    from sherpa.stats import CStat

    class BackgroundModes(ArithmeticModel):
        """Channel-space background: prediction + sum_k z_k mode_k (counts per channel)."""

        def __init__(self, base, modes, first_channel=0, name="bkg"):
            self.base = np.asarray(base, float)
            self.modes = np.asarray(modes, float).reshape(-1, self.base.size)
            self.first_channel = first_channel
            pars = []
            for k in range(self.modes.shape[0]):
                p = Parameter(name, f"z{k}", 0.0, -10.0, 10.0, -1e3, 1e3)
                setattr(self, p.name, p)
                pars.append(p)
            if not pars:  # Sherpa wants at least one parameter
                p = Parameter(name, "z0", 0.0, -10.0, 10.0, -1e3, 1e3, frozen=True)
                self.z0 = p
                pars.append(p)
                self.modes = np.zeros((1, self.base.size))
            super().__init__(name, tuple(pars))

        def calc(self, p, *args, **kwargs):
            total = self.base + np.asarray(p, float) @ self.modes
            idx = np.rint(np.asarray(args[0])).astype(np.int64) - self.first_channel
            return total[idx]

    class CStatPrior(CStat):
        """cstat + sum of squares of the thawed ``z`` parameters (standard-normal priors)."""

        def __init__(self, pars, name="cstat+prior"):
            self.prior_pars = list(pars)
            super().__init__(name=name)

        def calc_stat(self, data, model):
            stat, fvec = super().calc_stat(data, model)
            z = np.array([p.val for p in self.prior_pars if not p.frozen], float)
            return stat + float(np.sum(z * z)), np.append(fvec, z)

    return BackgroundModes, CStatPrior


def background_prediction(info, fit_json, regfile, phafile, caldb):
    """spec's prediction for the source region, its per-channel Jacobian and covariance modes.

    Returns
    -------
    dict
        ``pha`` (DataPHA with RMF), ``predicted`` (counts per channel),
        ``modes`` (k, n_chan) counts per unit standard deviation of each
        eigen-mode, ``sigma_total`` (1-sigma of the total predicted counts).
    """
    from nuskybgd.calib.auxil import load_ratios
    from nuskybgd.fitting.apply import SourceSpectrum, add_source_spectra, group_component_counts
    from nuskybgd.analysis.setup import load_setup, load_sources, spectrum_templates, state_shapes
    from nuskybgd.fitting.uncertainty import (
        fit_covariance,
        prediction_jacobian,
        source_fcxb_coefficients,
    )

    setup = load_setup(info, fit_json)
    s = load_sources(setup, [regfile], [phafile])[0]
    m, w = s["module"], s["weights"]
    state = add_source_spectra(setup.state, setup.modules, setup.weights,
                               [SourceSpectrum(file=str(phafile), module=m, area=w.area, ap=w.ap)], load_ratios(),
                               fix_line_ratios=setup.info.intbgd_fix_line_ratios)
    group = len(setup.modules) + 1
    t = spectrum_templates(s["pha"], m, w.frac, None, state_shapes(state, setup.ref_index(m) + 1, m), caldb)
    pred = sum(group_component_counts(state, group, t).values())
    params, cov, kind = fit_covariance(state)
    fc = source_fcxb_coefficients(state, setup.modules, [np.asarray(x.area, float) for x in setup.weights], m,
                                  float(np.sum(w.area)))
    n = pred.size
    J, const, missing = prediction_jacobian(state, group, t, [np.array([c]) for c in range(n)], params, fcxb=fc)
    theta = np.array([state.source(a).params[j].value for a, j in params])
    check = float(np.max(np.abs(J @ theta + const - pred)) / pred.max())
    used = np.any(J != 0, axis=0)
    lam, u = np.linalg.eigh(cov[np.ix_(used, used)])
    keep = lam > 1e-12 * lam.max()
    modes = (J[:, used] @ (u[:, keep] * np.sqrt(lam[keep]))).T
    return {"pha": s["pha"], "predicted": pred, "modes": modes, "cov_kind": kind, "missing": missing,
            "linear_check": check, "sigma_total": float(np.sqrt(np.sum(modes.sum(axis=1) ** 2)))}


def fit_three_ways(counts, pred, modes, bkg_counts, backscal_ratio, rmf, arf, exposure, first_channel, band_sel,
                   classes, per_ampl, errors="covar", methods=METHODS, wstat_group=0):
    """Fit photon index and norm three ways; returns {method: (gamma, err, ampl, err, stat)}."""
    from sherpa.astro.data import DataPHA
    from sherpa.estmethods import Confidence, Covariance
    from sherpa.fit import Fit
    from sherpa.models.basic import PowLaw1D
    from sherpa.optmethods import LevMar
    from sherpa.stats import CStat, WStat

    from nuskybgd.models.basic import FoldedModel

    BackgroundModes, CStatPrior = classes
    chan = np.arange(first_channel, first_channel + counts.size, dtype=float)
    lo_c, hi_c = chan[band_sel][0], chan[band_sel][-1]
    out = {}
    for method in methods:
        pl = PowLaw1D("pl")
        pl.ref = PIVOT
        pl.gamma = 2.0
        pl.gamma.min, pl.gamma.max = -1.0, 5.0
        bkg_guess = backscal_ratio * bkg_counts if method == "wstat" else pred
        excess = float(np.sum(counts[band_sel] - bkg_guess[band_sel]))
        pl.ampl = max(excess, 10.0) / float(per_ampl[band_sel].sum())
        src = FoldedModel(pl, rmf, arf, exposure)
        pha = DataPHA("src", chan, np.asarray(counts, float), exposure=exposure, backscal=1.0)
        if method == "wstat":
            bkg = DataPHA("bkg", chan, np.asarray(bkg_counts, float), exposure=exposure, backscal=1.0 / backscal_ratio)
            if wstat_group > 0:  # XSPEC's advice for W-stat: no background bin without counts
                bkg.group_counts(wstat_group)
                pha.grouping, pha.quality = bkg.grouping, bkg.quality
                pha.group()
            pha.set_background(bkg)
            pha.notice(lo_c, hi_c)
            bkg.notice(lo_c, hi_c)
            model, stat = src, WStat()
        else:
            pha.notice(lo_c, hi_c)
            bm = BackgroundModes(pred, modes if method == "prior" else np.zeros((0, pred.size)), first_channel)
            if method == "fixed":
                for p in bm.pars:
                    p.frozen = True
                stat = CStat()
            else:
                stat = CStatPrior(bm.pars)
            model = src + bm
        f = Fit(pha, model, stat, LevMar())
        try:
            r = f.fit()
            f.estmethod = Covariance() if errors == "covar" else Confidence()
            best = {"pl.gamma": float(pl.gamma.val), "pl.ampl": float(pl.ampl.val)}
            e = f.est_errors(parlist=(pl.gamma, pl.ampl))
            lims = {"pl.gamma": (pl.gamma.min, pl.gamma.max), "pl.ampl": (pl.ampl.min, pl.ampl.max)}
            lo, hi = {}, {}
            for name, a, b in zip(e.parnames, e.parmins, e.parmaxes):
                # None: the interval reaches the parameter's limit (conf) or is undefined (covar at a bound)
                lo[name] = float(a) if a is not None else float(lims[name][0] - best[name])
                hi[name] = float(b) if b is not None else float(lims[name][1] - best[name])
            out[method] = {"gamma": best["pl.gamma"], "gamma_err": 0.5 * (abs(lo["pl.gamma"]) + abs(hi["pl.gamma"])),
                           "gamma_lo": lo["pl.gamma"], "gamma_hi": hi["pl.gamma"],
                           "ampl": best["pl.ampl"], "ampl_err": 0.5 * (abs(lo["pl.ampl"]) + abs(hi["pl.ampl"])),
                           "ampl_lo": lo["pl.ampl"], "ampl_hi": hi["pl.ampl"],
                           "stat": float(r.statval), "ok": bool(r.succeeded), "errors": errors}
        except Exception as exc:  # noqa: BLE001  (a failed fit is a result too: counted, not hidden)
            out[method] = {"gamma": np.nan, "gamma_err": np.nan, "ampl": np.nan, "ampl_err": np.nan, "stat": np.nan, "ok": False,
                               "error": f"{type(exc).__name__}: {exc}"}
    return out


def run_seed(seed, work, exposure, caldb_dir, strengths, classes, errors="covar", methods=METHODS, wstat_region=1,
             wstat_group=0):
    """Chain for one seed, then the source injections; returns rows."""
    from nuskybgd.io.regions import write_circle_regions
    from sherpa.models.basic import PowLaw1D

    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.products.extract import extract_spectrum
    from nuskybgd.io.ogip import read_arf, read_pha, read_rmf
    from nuskybgd.models.basic import FoldedModel
    from nuskybgd.simulate.observation import simulate_observation
    from nuskybgd.sky.bgimage import band_channels
    from nuskybgd.analysis import demo

    out = Path(work) / f"seed{seed:03d}"
    cache = out / "prediction.npz"
    m = "A"
    if not cache.exists():
        (out / "sim").mkdir(parents=True, exist_ok=True)
        if not (out / "sim" / "caldb").exists():
            os.symlink(caldb_dir, out / "sim" / "caldb")
        sim = simulate_observation(out / "sim", seed=seed, exposure=exposure, source=False, progress=False)
        images = demo.step_images(sim, out)
        aspects = demo.step_aspect(sim, out)
        imaps = demo.step_instrmap(sim, out)
        ap, det = demo.step_projbgd(images, imaps, aspects, out)
        regions = demo.step_regions(sim, out)
        spectra = demo.step_extract(sim, regions, out)
        info = demo.step_bgdinfo(spectra, regions, images, ap, det, out)
        fit = demo.step_fit(info, out, sim)
        cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
        dx, dy, r = SOURCE_REGION
        reg = out / "srcA.reg"
        write_circle_regions(reg, [(cx + dx, cy + dy, r)], clobber=True)
        src = extract_spectrum(sim.events[m], reg, outprefix="srcA", outdir=out, grpmin=1, caldb=sim.caldb)
        pred = background_prediction(info, fit.paths["json"], reg, src.pha, Caldb(sim.caldb))
        pha = pred["pha"]
        # W-stat background: the demo's first background region of the module, scaled by area
        bgd = read_pha(spectra[m][0])
        np.savez(cache, bkg_events=np.asarray(pha.counts, float), predicted=pred["predicted"], modes=pred["modes"],
                 bgd=np.asarray(bgd.counts, float), bscale=float(np.atleast_1d(pha.backscal)[0])
                 / float(np.atleast_1d(bgd.backscal)[0]), linear_check=pred["linear_check"],
                 rmf=str(pha.get_rmf().name), arf=str(Caldb(sim.caldb).query("SPECRESP", f"FPM{m}").path),
                 exposure=float(pha.exposure))
    c = np.load(cache)
    rmf = read_rmf(str(c["rmf"]))
    arf = read_arf(str(c["arf"]))
    expo = float(c["exposure"])
    bkg_events = c["bkg_events"]
    bscale = float(c["bscale"])
    pred = {"predicted": c["predicted"], "modes": c["modes"], "linear_check": float(c["linear_check"])}
    bgd_counts = c["bgd"]
    if wstat_region != 1:  # another of the demo's background regions as the W-stat off-source spectrum
        other = read_pha(out / f"bgd{wstat_region}{m}_sr.pha")
        src_backscal = float(np.atleast_1d(read_pha(out / f"src{m}_sr.pha").backscal)[0])
        bgd_counts = np.asarray(other.counts, float)
        bscale = src_backscal / float(np.atleast_1d(other.backscal)[0])
    sel = band_channels(rmf.e_min, rmf.e_max, *BAND)
    unit = PowLaw1D("u")
    unit.gamma, unit.ampl, unit.ref = GAMMA_TRUE, 1.0, PIVOT
    per_ampl = FoldedModel(unit, rmf, arf, expo).calc([p.val for p in unit.pars])
    rows = []
    for target in strengths:
        ampl = target / float(per_ampl[sel].sum())
        rng = np.random.default_rng([seed, int(target)])
        src_counts = rng.poisson(ampl * per_ampl)
        counts = bkg_events + src_counts
        res = fit_three_ways(counts, pred["predicted"], pred["modes"], bgd_counts, bscale, rmf,
                             arf, expo, int(rmf.offset), sel, classes, per_ampl, errors, methods, wstat_group)
        for method, v in res.items():
            rows.append(dict(seed=seed, target_counts=target, method=method, ampl_true=ampl, gamma_true=GAMMA_TRUE,
                             source_counts=int(src_counts[sel].sum()), background_events=float(bkg_events[sel].sum()),
                             predicted_background=float(pred["predicted"][sel].sum()),
                             wstat_background_scaled=float(bgd_counts[sel].sum() * bscale),
                             n_modes=int(pred["modes"].shape[0]), linear_check=pred["linear_check"], **v))
    return rows


def _coverage(rows, q, dev, err, ok):
    """Fraction of fits whose interval holds the truth (asymmetric ``q_lo``/``q_hi`` when stored)."""
    if rows and f"{q}_lo" in rows[0]:
        scale = np.array([r["ampl_true"] if q == "ampl" else 1.0 for r in rows])
        lo = np.array([r[f"{q}_lo"] for r in rows]) / scale
        hi = np.array([r[f"{q}_hi"] for r in rows]) / scale
        return float(np.mean((-hi <= dev) & (dev <= -lo)))
    return float(np.mean(np.abs(dev[ok]) <= err[ok]))


def summarise(rows):
    """Bias, scatter, mean error and 68 % coverage per (target, method)."""
    out = {}
    for target in sorted({r["target_counts"] for r in rows}):
        for method in METHODS:
            if not any(r["method"] == method for r in rows):
                continue
            sel = [r for r in rows if r["target_counts"] == target and r["method"] == method and r["ok"]
                   and np.isfinite(r["gamma"])]
            n_fail = sum(1 for r in rows if r["target_counts"] == target and r["method"] == method) - len(sel)
            g = np.array([r["gamma"] - r["gamma_true"] for r in sel])
            ge = np.array([r["gamma_err"] for r in sel])
            a = np.array([r["ampl"] / r["ampl_true"] - 1 for r in sel])
            ae = np.array([r["ampl_err"] / r["ampl_true"] for r in sel])
            ok_g = np.isfinite(ge)
            ok_a = np.isfinite(ae)
            out[f"{target}/{method}"] = {
                "n": len(sel), "failed": n_fail,
                "norm_at_zero": int(sum(1 for r in sel if r["ampl"] <= 1e-3 * r["ampl_true"])),
                "gamma_median_bias": float(np.median(g)),
                "gamma_bias": float(g.mean()), "gamma_bias_sem": float(g.std(ddof=1) / np.sqrt(g.size)),
                "gamma_scatter": float(g.std(ddof=1)), "gamma_mean_error": float(np.mean(ge[ok_g])),
                "gamma_coverage": _coverage(sel, "gamma", g, ge, ok_g),
                "norm_bias": float(a.mean()), "norm_bias_sem": float(a.std(ddof=1) / np.sqrt(a.size)),
                "norm_scatter": float(a.std(ddof=1)), "norm_mean_error": float(np.mean(ae[ok_a])),
                "norm_coverage": _coverage(sel, "ampl", a, ae, ok_a)}
    return out


def report(res, file=sys.stdout):
    print(f"injection study: {res['n_seeds']} seeds, exposure {res['exposure']:g} s, FPMA, "
          f"photon index {GAMMA_TRUE}, {BAND[0]:g}-{BAND[1]:g} keV", file=file)
    print(f"{'counts':>6} {'method':<6} {'n':>3} {'N=0':>3} {'G bias':>14} {'G scatter':>9} {'G err':>6} {'G cov68':>7} "
          f"{'N bias':>14} {'N scatter':>9} {'N err':>6} {'N cov68':>7}", file=file)
    for key, s in res["summary"].items():
        t, m = key.split("/")
        print(f"{t:>6} {m:<6} {s['n']:>3} {s['norm_at_zero']:>3} {s['gamma_bias']:+7.3f}+-{s['gamma_bias_sem']:.3f} {s['gamma_scatter']:9.3f} "
              f"{s['gamma_mean_error']:6.3f} {s['gamma_coverage']:7.2f} {s['norm_bias']:+7.3f}+-{s['norm_bias_sem']:.3f} "
              f"{s['norm_scatter']:9.3f} {s['norm_mean_error']:6.3f} {s['norm_coverage']:7.2f}", file=file)


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = res["rows"]
    targets = sorted({r["target_counts"] for r in rows})
    fig, axes = plt.subplots(2, len(targets), figsize=(5.5 * len(targets), 7.5), squeeze=False)
    colours = {"fixed": "C0", "prior": "C2", "wstat": "C3"}
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    for j, target in enumerate(targets):
        for i, (q, lab) in enumerate((("gamma", "photon index - true"), ("norm", "norm / true - 1"))):
            ax = axes[i, j]
            for k, method in enumerate(methods):
                sel = [r for r in rows if r["target_counts"] == target and r["method"] == method and r["ok"]]
                if q == "gamma":
                    v = np.array([r["gamma"] - r["gamma_true"] for r in sel])
                    e = np.array([r["gamma_err"] for r in sel])
                else:
                    v = np.array([r["ampl"] / r["ampl_true"] - 1 for r in sel])
                    e = np.array([r["ampl_err"] / r["ampl_true"] for r in sel])
                x = k + np.linspace(-0.3, 0.3, max(len(v), 1))[:len(v)]
                ax.errorbar(x, v, yerr=e, fmt=".", color=colours[method], ms=3, lw=0.6, alpha=0.7)
                s = res["summary"][f"{target}/{method}"]
                b, sc = s[f"{q}_bias"], s[f"{q}_scatter"]
                ax.plot([k - 0.4, k + 0.4], [b, b], color="k", lw=1.5)
                ax.fill_between([k - 0.4, k + 0.4], b - sc, b + sc, color=colours[method], alpha=0.15)
            ax.axhline(0, color="grey", lw=0.8, ls="--")
            ax.set_xticks(range(len(methods)))
            ax.set_xticklabels([f"{m}\ncov68 {res['summary'][f'{target}/{m}'][f'{q}_coverage']:.2f}"
                                for m in methods], fontsize=8)
            ax.set_ylabel(lab)
            ax.set_title(f"~{target:g} source counts ({BAND[0]:g}-{BAND[1]:g} keV)", fontsize=9)
    fig.suptitle(f"faint source on the simulated background: {res['n_seeds']} seeds, {res['exposure']:g} s, "
                 "bar = bias, band = scatter", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--exposure", type=float, default=50000.0)
    ap.add_argument("--counts", default="100,2000", help="source counts targets, comma-separated")
    ap.add_argument("--out", default=str(HERE / "results" / "injection_background.json"))
    ap.add_argument("--keep", help="work folder to keep (default: a temporary folder)")
    ap.add_argument("--replot", help="recompute the summary and plot of an existing JSON")
    ap.add_argument("--methods", default=",".join(METHODS), help="methods to run, comma-separated")
    ap.add_argument("--wstat-region", type=int, choices=(1, 2, 3), default=1,
                    help="which demo background region is the W-stat off-source spectrum (needs cached chains)")
    ap.add_argument("--wstat-group", type=int, default=0,
                    help="group W-stat spectra to at least N off-source counts per bin (0: ungrouped)")
    ap.add_argument("--errors", choices=("covar", "conf"), default="covar",
                    help="Sherpa error method of the source parameters (conf: profile likelihood, slower)")
    args = ap.parse_args(argv)
    if args.replot:
        res = json.loads(Path(args.replot).read_text())
        res["summary"] = summarise(res["rows"])
        Path(args.replot).write_text(json.dumps(res, indent=1, default=float) + "\n")
        plot(res, Path(args.replot).with_suffix(".png"))
        report(res)
        return 0
    logging.getLogger("nuskybgd").setLevel(logging.WARNING)
    logging.getLogger("sherpa").setLevel(logging.WARNING)
    from tqdm import tqdm

    from nuskybgd.simulate.caldb import make_caldb

    classes = make_sherpa_classes()
    strengths = [float(x) for x in args.counts.split(",")]
    t0 = time.perf_counter()
    rows = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        caldb_dir = work / "caldb"
        if not (caldb_dir / "data" / "nustar" / "fpm" / "caldb.indx").exists():
            make_caldb(caldb_dir, shared_caldb=SHARED / "caldb" / "nustar", progress=False)
        for seed in tqdm(range(args.first_seed, args.first_seed + args.seeds), desc="injection seeds",
                         file=sys.stderr):
            rows += run_seed(seed, work, args.exposure, caldb_dir.resolve(), strengths, classes, args.errors,
                             tuple(args.methods.split(",")), args.wstat_region, args.wstat_group)
            partial = {"n_seeds": seed - args.first_seed + 1, "exposure": args.exposure, "rows": rows}
            out.with_suffix(".partial.json").write_text(json.dumps(partial, default=float) + "\n")
    res = {"n_seeds": args.seeds, "seeds": [args.first_seed, args.first_seed + args.seeds - 1],
               "exposure": args.exposure, "gamma_true": GAMMA_TRUE, "band_kev": list(BAND), "source_region": SOURCE_REGION,
               "methods": args.methods.split(","), "errors": args.errors, "wstat_region": args.wstat_region, "wstat_group": args.wstat_group, "seconds_total": time.perf_counter() - t0, "summary": summarise(rows), "rows": rows}
    out.write_text(json.dumps(res, indent=1, default=float) + "\n")
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    plot(res, out.with_suffix(".png"))
    report(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
