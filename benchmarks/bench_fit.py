"""Fit benchmark: 12 spectra (6 regions x 2 modules), 4096 channels, ~70 free norms.

Problem: the background model of REFERENCE section 6 (every line free, no
fcxb links: 2 x 32 + 12 = 76 free norms), Poisson spectra drawn from it with
random scale factors, ungrouped, 3-150 keV noticed. Responses: the real
CALDB FPMA RMF (4096 x 4096) for every spectrum, apbgd ARFs from the real
FPMA DETABS and the bundle's Be window, the bundle's fCXB ARFs and diag.rmf.

Timed:
- nuskybgd: folding the templates (once per spectrum) and the linear
  Poisson solver (``fit_state``);
- Sherpa's LevMar (``ui.fit`` with ``cstat``) on the naive model: the same
  state rebuilt by the exported Sherpa script (nuskybgd's Sherpa model
  classes folded through the RMF/ARF files every evaluation), started from
  the presets.

Figures go to ``benchmarks/results/fit.json``; nothing is asserted.
Options: ``--no-sherpa`` skips the slow reference; ``--sherpa-maxfev N``
caps its function evaluations (default 20000; the JSON records whether it
converged).
"""

import json
import os
import runpy
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

N_REGIONS = 6
EXPOSURE = 100000.0


class _W:
    def __init__(self, area, ap):
        self.area = np.asarray(area, float)
        self.ap = float(ap)

    @property
    def frac(self):
        return self.area / self.area.sum()


def build_problem(folder, seed=0):
    """Write 12 spectra + ARFs into ``folder``; return (state, spectra data, truth, files)."""
    import gzip
    import shutil

    from nuskybgd.calib.auxil import auxil_path, load_ratios
    from nuskybgd.fitting.engine import LinearModel
    from nuskybgd.fitting.model import build_background_state
    from nuskybgd.fitting.prepare import LoadedSpectrum, ignore_ranges, spectrum_data
    from nuskybgd.io.ogip import read_rmf, write_pha
    from nuskybgd.models.background import clear_template_cache, component_templates
    from nuskybgd.models.responses import apbgd_arf, write_apbgd_arf

    rng = np.random.default_rng(seed)
    rmf_path = folder / "det3A.rmf"
    with gzip.open(SHARED / "caldb" / "nustar" / "nuAdet3_20100101v002.rmf.gz", "rb") as f, open(rmf_path, "wb") as g:
        shutil.copyfileobj(f, g)
    rmf = read_rmf(rmf_path)
    detabs = SHARED / "caldb" / "nustar" / "nuAdetabs20100101v002.fits"
    be = auxil_path("be.arf")
    weights, specs = [], []
    for r in range(N_REGIONS):
        for m in "AB":
            area = rng.uniform(0, 3000, 4) * (rng.uniform(size=4) > 0.3) + 50.0
            weights.append(_W(area, rng.uniform(5, 40)))
            specs.append(dict(file=f"bgd{r}{m}.pha", module=m, rmf=rmf_path.name, apbgd_arf=f"bgd{r}{m}_apbgd.arf",
                              fcxb_arf=str(auxil_path(f"fcxb{m}.arf")), diag_rmf=str(auxil_path("diag.rmf"))))
    state = build_background_state(specs, weights, load_ratios(), module_area={"A": 1.0e5, "B": 1.0e5})
    clear_template_cache()
    t0 = time.perf_counter()
    tmpl, arfs = [], []
    for s, w in zip(specs, weights):
        arf = apbgd_arf(s["module"], w.frac, rmf=rmf, detabs_file=detabs, be_file=be)
        arfs.append(arf)
        tmpl.append(component_templates(rmf, s["module"], w.frac, EXPOSURE, apbgd_arf=arf))
    t_templates = time.perf_counter() - t0
    # inject: every free norm scaled by a factor in [0.7, 1.3]
    truth = {}
    for s, i in state.free_parameters():
        s.params[i].value *= rng.uniform(0.7, 1.3)
        truth[(s.number, i)] = s.params[i].value
    state.update_linked_values()
    e_lo, e_hi = np.asarray(rmf.e_min, float), np.asarray(rmf.e_max, float)
    sds = []
    for k, (s, w) in enumerate(zip(specs, weights)):
        ls = LoadedSpectrum(folder / s["file"], None, s["module"], rmf_path, rmf, np.zeros(e_lo.size), EXPOSURE,
                            None, None, e_lo, e_hi)
        sds.append(spectrum_data(ls, tmpl[k], 3.0, 150.0))
    lm = LinearModel(state, sds)
    for k, (s, sd) in enumerate(zip(specs, sds)):
        sd.counts = rng.poisson(lm.predicted_counts(k)).astype(float)
        state.spectra[k].ignore = ignore_ranges(sd.noticed)
        write_pha(folder / s["file"], sd.counts, EXPOSURE, 1.0,
                  header={"INSTRUME": f"FPM{s['module']}", "RESPFILE": rmf_path.name, "TELESCOP": "NuSTAR"},
                  clobber=True)
        write_apbgd_arf(folder / s["apbgd_arf"], arfs[k], s["module"], weights[k].frac, clobber=True)
    return state, sds, truth, t_templates


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from nuskybgd.fitting.engine import fit_state
    from nuskybgd.fitting.export import sherpa_script

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_fit_") as tmp:
        folder = Path(tmp)
        state, sds, truth, t_tmpl = build_problem(folder)
        start = {(s.number, i): s.params[i].value / 1.0 for s, i in state.free_parameters()}
        # start the fit from the presets (truth / injected factor unknown to the fit): use 0.8 x truth
        for s, i in state.free_parameters():
            s.params[i].value = 0.8 * start[(s.number, i)]
        state.update_linked_values()
        preset_state = state.copy()
        n_bins = int(sum(sd.noticed.sum() for sd in sds))
        times = []
        for _ in range(3):
            st = preset_state.copy()
            t0 = time.perf_counter()
            model, res = fit_state(st, sds, "cstat")
            times.append(time.perf_counter() - t0)
        pulls = np.array([(s.params[i].value - truth[(s.number, i)]) / s.params[i].error
                          for s, i in st.free_parameters() if s.params[i].error])
        results["problem"] = {"spectra": len(sds), "channels_per_spectrum": 4096, "noticed_bins": n_bins,
                              "free_parameters": model.n_free, "band_kev": [3.0, 150.0], "exposure_s": EXPOSURE}
        results["nuskybgd"] = {"template_fold_s": t_tmpl, "fit_s_best_of_3": min(times),
                               "solver_s": res.seconds, "iterations": res.n_iter, "converged": res.converged,
                               "cstat": res.statistic, "dof": res.dof,
                               "pull_mean": float(pulls.mean()), "pull_std": float(pulls.std())}
        print(f"problem: {len(sds)} spectra, {n_bins} noticed bins, {model.n_free} free norms")
        print(f"nuskybgd: templates {t_tmpl:.2f} s (once); fit {min(times):.3f} s, {res.n_iter} Newton "
              f"iterations, cstat {res.statistic:.2f}; pulls mean {pulls.mean():+.2f} std {pulls.std():.2f}")

        if "--no-sherpa" not in argv:
            script = folder / "naive_sherpa.py"
            script.write_text(sherpa_script(preset_state))
            cwd = os.getcwd()
            os.chdir(folder)
            try:
                g = runpy.run_path(str(script), run_name="bench")
                ui = g["ui"]
                ui.set_method("levmar")
                maxfev = 20000
                if "--sherpa-maxfev" in argv:
                    maxfev = int(argv[argv.index("--sherpa-maxfev") + 1])
                ui.set_method_opt("maxfev", maxfev)
                ui.set_conf_opt("sigma", 1)
                import logging
                logging.getLogger("sherpa").setLevel(logging.WARNING)
                stat0 = ui.calc_stat()
                t0 = time.perf_counter()
                ui.fit()
                t_sherpa = time.perf_counter() - t0
                fr = ui.get_fit_results()
            finally:
                os.chdir(cwd)
            results["sherpa_levmar_naive"] = {"fit_s": t_sherpa, "nfev": int(fr.nfev), "cstat": float(fr.statval),
                                              "cstat_start": float(stat0), "succeeded": bool(fr.succeeded),
                                              "maxfev": maxfev, "seconds_per_evaluation": t_sherpa / max(fr.nfev, 1)}
            results["speedup"] = t_sherpa / min(times)
            results["cstat_difference_sherpa_minus_nuskybgd"] = float(fr.statval) - res.statistic
            print(f"Sherpa LevMar (naive model): {t_sherpa:.1f} s, {fr.nfev} evaluations, cstat {fr.statval:.2f} "
                  f"(nuskybgd {res.statistic:.2f}); nuskybgd is {t_sherpa / min(times):.0f}x faster")
    out = HERE / "results" / "fit.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
