"""Injection-recovery of gain, line energies and norms (whole-detector fits), >= 20 seeds.

Per seed: two whole-detector spectra (FPMA DET0 and DET1, 1 Ms each, the real
FPMA det-3 RMF and DETABS) drawn from the background model with

* a response gain of slope 1.01 and offset +0.2 keV on both spectra,
* the six strong line energies (lorentz_5, _8, _12, _14, _28, _30) shifted
  by +0.1 keV from the presets,
* every free norm scaled by U(0.8, 1.25),

then ``fit_detectors(gain="fit", thaw=<the six lines>)`` from the nominal
gain (1, 0) and the preset energies (the default gain scan picks the start).
Pulls ``(fit - truth) / error`` of the four gain parameters, the six line
energies and every norm with value > 3 error.

Writes ``benchmarks/results/gain_pulls.json`` and ``gain_pulls.png``.
Usage: ``python benchmarks/gain_pulls.py [n_seeds]`` (default 20).
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", HERE.parents[1] / "shared"))
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))
os.environ.setdefault("NUSKYBGD_APEC_TEMPLATE",
                      str(SHARED / "apec" / "nnapec_intbgd_kT1.14579_Z1.32692_nustar_bins.txt"))
os.environ.setdefault("MPLBACKEND", "Agg")

LINES = "intbgd:lorentz_5.LineE,intbgd:lorentz_8.LineE,intbgd:lorentz_12.LineE,intbgd:lorentz_14.LineE," \
        "intbgd:lorentz_28.LineE,intbgd:lorentz_30.LineE"
RMF = SHARED / "caldb" / "nustar" / "nuAdet3_20100101v002.rmf.gz"
DETABS = SHARED / "caldb" / "nustar" / "nuAdetabs20100101v002.fits"
GAIN = (1.01, 0.2)
SHIFT = 0.1


def one_seed(seed, rmf, dets=(0, 1), exposure=1.0e6, gain=GAIN, shift=SHIFT, lines=LINES):
    """Truth and fit of one seed; returns a dict of pulls by kind."""
    from nuskybgd.fitting.detectors import DetectorSpectrum, fit_detectors
    from nuskybgd.fitting.engine import LinearModel
    from nuskybgd.fitting.nonlinear import NonlinearModel, gain_values

    rng = np.random.default_rng(seed)
    e_lo, e_hi = np.asarray(rmf.e_min, float), np.asarray(rmf.e_max, float)
    specs = [DetectorSpectrum(np.zeros(e_lo.size), exposure, "A", d, rmf, name=f"A{d}", e_lo=e_lo, e_hi=e_hi)
             for d in dets]
    sim = fit_detectors(specs, gain="fixed", gain_start=gain, thaw=lines, fit=False, detabs_file=str(DETABS))
    st = sim.state
    for s, i in st.free_parameters():
        if s.par_names[i % s.npar] == "norm":
            s.params[i].value *= rng.uniform(0.8, 1.25)
        else:
            s.params[i].value += shift
    st.update_linked_values()
    nm = NonlinearModel(st, sim.spectra, sim.responses)
    nm.precise = True
    nm.refresh()
    lm = LinearModel(st, sim.spectra, allow_shapes=True)
    for k, s in enumerate(specs):
        s.counts = rng.poisson(lm.predicted_counts(k)).astype(float)
    truth = {}
    from nuskybgd.fitting.nonlinear import parameter_label
    for s, i in st.free_parameters():
        truth[parameter_label(st, s, i)] = s.params[i].value
    for k in range(len(specs)):
        truth[f"gain:{k + 1}.slope"], truth[f"gain:{k + 1}.offset"] = gain_values(st, k)
    fit = fit_detectors(specs, gain="fit", thaw=lines, detabs_file=str(DETABS))
    out = {"gain": [], "line": [], "norm": [], "cstat": fit.statistic, "dof": fit.dof,
           "converged": bool(fit.state.info["fit"]["converged"]), "seconds": fit.result.seconds}
    for lab, v, e in zip(fit.result.labels, fit.result.values, fit.result.errors):
        if lab not in truth or not np.isfinite(e) or e <= 0:
            continue
        pull = float((v - truth[lab]) / e)
        if lab.startswith("gain:"):
            out["gain"].append(pull)
        elif lab.endswith(".LineE"):
            out["line"].append(pull)
        elif v > 3 * e:
            out["norm"].append(pull)
    return out


def main(argv):
    from tqdm import tqdm

    from nuskybgd.io.ogip import read_rmf

    n = int(argv[0]) if argv else 20
    rmf = read_rmf(RMF)
    runs = []
    t0 = time.perf_counter()
    for seed in tqdm(range(n), desc="seeds", file=sys.stderr):
        runs.append(one_seed(seed, rmf))
    summary = {}
    for kind in ("gain", "line", "norm"):
        p = np.concatenate([r[kind] for r in runs])
        summary[kind] = {"n": int(p.size), "mean": float(p.mean()), "std": float(p.std(ddof=1)),
                         "max_abs": float(np.abs(p).max())}
    out = {"seeds": n, "injected_gain": list(GAIN), "line_shift_kev": SHIFT, "lines": LINES.split(","),
           "spectra": "FPMA DET0 + DET1 whole detectors, 1 Ms each, real FPMA det-3 RMF and DETABS",
           "summary": summary, "all_converged": all(r["converged"] for r in runs),
           "fit_seconds_mean": float(np.mean([r["seconds"] for r in runs])),
           "wall_seconds": time.perf_counter() - t0, "runs": runs}
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    (res / "gain_pulls.json").write_text(json.dumps(out, indent=1) + "\n")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    x = np.linspace(-4, 4, 200)
    for ax, kind in zip(axes, ("gain", "line", "norm")):
        p = np.concatenate([r[kind] for r in runs])
        ax.hist(p, bins=np.linspace(-4, 4, 25), density=True, color="tab:blue", alpha=0.7)
        ax.plot(x, np.exp(-0.5 * x ** 2) / np.sqrt(2 * np.pi), "k-", lw=1)
        s = summary[kind]
        ax.set_title(f"{kind}: n={s['n']} mean {s['mean']:+.2f} std {s['std']:.2f}", fontsize=9)
        ax.set_xlabel("pull (fit - truth) / error")
    fig.suptitle(f"injection-recovery, gain {GAIN}, lines +{SHIFT} keV, {n} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(res / "gain_pulls.png", dpi=150)
    plt.close(fig)
    print(json.dumps(summary, indent=1))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
