"""Real stacked NuSTAR background spectra: C-stat/dof with frozen shapes, gain, and line energies.

For every spectrum in ``../shared/real/stacked`` (4 epochs x 2 modules x 4
detectors, whole-detector, Earth-occulted, GRADE 0): a whole-detector fit
(:func:`nuskybgd.fitting.detectors.fit_detectors`, 3-150 keV, cstat) with

1. shapes frozen at the presets;
2. ``--gain fit`` (slope and offset free);
3. ``--gain fit`` and the six strong line energies thawed (19.6, 24.7, 28.5,
   30.9, 105.4, 144.6 keV = lorentz_5, _8, _12, _14, _28, _30);

4. as 3, plus what the epoch-10 spectra need (``X_THAW``, ``X_START``; see
   ``real_stacked_epoch10.py``): the apbgd/fcxb photon index, two lines
   moved (``newpar``) and thawed as Fe K-alpha (lorentz_4, 10.2 -> 6.5 keV)
   and Ni K-alpha (lorentz, 3.5 -> 7.7 keV) with their widths, the intn
   bknpower shape, and the lorentz_24/_25 energies;

then, per epoch and module, the joint fit of the four detectors with
``--gain fit``, the six line energies and ``--free-detectors intn,intbgd``
(and the linked fit, for the likelihood-ratio test), and fitted/preset
ratios of the intn and strong-line norms with the per-detector presets.

Every spectrum uses the real FPMA detector-3 RMF
(``caldb/nustar/nuAdet3_20100101v002.rmf.gz``) and the real FPMA DETABS for
the apbgd ARF, for both modules (the only real ones here: an approximation).

Writes ``benchmarks/results/real_stacked.json`` and ``real_stacked.png``.
Options: ``--quick`` fits one epoch only.
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
X_THAW = LINES + ",apbgd:cutoffpl.PhoIndex,intbgd:lorentz_4.LineE,intbgd:lorentz_4.Width,intbgd:lorentz.LineE," \
    "intbgd:lorentz.Width,intn:bknpower.PhoIndx1,intn:bknpower.BreakE,intn:bknpower.PhoIndx2," \
    "intbgd:lorentz_24.LineE,intbgd:lorentz_25.LineE"
#: Starting values (XSPEC newpar): lorentz_4 and lorentz moved to the Fe and Ni K-alpha lines of epoch 10.
X_START = {"intbgd:lorentz_4.LineE": 6.5, "intbgd:lorentz_4.norm": 1e-3, "intbgd:lorentz_4.Width": (0.3, 0.02),
           "intbgd:lorentz.LineE": 7.7, "intbgd:lorentz.norm": 1e-3, "intbgd:lorentz.Width": (0.3, 0.02),
           "intn:bknpower.BreakE": (124.0, 20.0)}
CONFIGS = (("frozen", {}), ("gain", {"gain": "fit"}), ("gain_lines", {"gain": "fit", "thaw": LINES}),
           ("gain_lines_x", {"gain": "fit", "thaw": X_THAW, "start": X_START}))
RMF = SHARED / "caldb" / "nustar" / "nuAdet3_20100101v002.rmf.gz"
DETABS = SHARED / "caldb" / "nustar" / "nuAdetabs20100101v002.fits"


def load(epoch, module, det, rmf):
    from nuskybgd.fitting.detectors import DetectorSpectrum
    from nuskybgd.io.ogip import read_pha

    path = SHARED / "real" / "stacked" / f"epoch{epoch}_det{det}_FPM{module}.pha"
    pha = read_pha(path)
    return DetectorSpectrum(np.asarray(pha.counts, float), float(pha.exposure), module, det, rmf,
                            name=path.name, e_lo=np.asarray(rmf.e_min, float), e_hi=np.asarray(rmf.e_max, float))


def main(argv):
    from tqdm import tqdm

    from nuskybgd.fitting.detectors import fit_detectors
    from nuskybgd.fitting.nonlinear import gain_values
    from nuskybgd.io.ogip import read_rmf

    quick = "--quick" in argv
    epochs = (14,) if quick else (2, 6, 10, 14)
    rmf = read_rmf(RMF)
    kw = {"detabs_file": str(DETABS)}
    rows, joint = [], []
    jobs = [(e, m, d) for e in epochs for m in "AB" for d in range(4)]
    for e, m, d in tqdm(jobs, desc="single spectra", file=sys.stderr):
        s = load(e, m, d, rmf)
        row = {"spectrum": s.name, "epoch": e, "module": m, "detector": d}
        for tag, opts in CONFIGS:
            t0 = time.perf_counter()
            f = fit_detectors([s], **opts, **kw)
            row[tag] = {"cstat": f.statistic, "dof": f.dof, "ratio": f.statistic / f.dof,
                        "seconds": time.perf_counter() - t0, "converged": bool(f.state.info["fit"]["converged"])}
            if opts.get("gain"):
                row[tag]["gain"] = list(gain_values(f.state, 0))
            if tag in ("gain_lines", "gain_lines_x"):
                row[tag]["line_energies"] = {lab: float(v) for lab, v in zip(f.result.labels, f.result.values)
                                             if lab.endswith("LineE")}
            if tag in ("frozen", "gain_lines"):
                # fitted/preset ratios with the per-detector presets
                pre, st = f.presets, f.state
                ratios = {}
                for name, comp in (("intn", "bknpower"), ("intbgd", "lorentz_5"), ("intbgd", "lorentz_30"),
                                   ("intbgd", "apec")):
                    src = st.source(name)
                    ci = src.labels.index(comp)
                    ip = next(i for i in range(src.npar) if src.par_components[i] == ci and src.par_names[i] == "norm")
                    ratios[f"{name}:{comp}"] = st.source(name).params[ip].value / pre.source(name).params[ip].value
                row["fitted_over_preset" if tag == "frozen" else "fitted_over_preset_gain_lines"] = ratios
        rows.append(row)
        tqdm.write(f"{s.name}: frozen {row['frozen']['ratio']:.3f} gain {row['gain']['ratio']:.3f} "
                   f"gain+lines {row['gain_lines']['ratio']:.3f} gain+lines+X {row['gain_lines_x']['ratio']:.3f}",
                   file=sys.stderr)
    for e in tqdm(epochs, desc="joint fits", file=sys.stderr):
        for m in "AB":
            specs = [load(e, m, d, rmf) for d in range(4)]
            t0 = time.perf_counter()
            linked = fit_detectors(specs, gain="fit", thaw=LINES, **kw)
            t1 = time.perf_counter()
            free = fit_detectors(specs, gain="fit", thaw=LINES, free_detectors=("intn", "intbgd"), **kw)
            t2 = time.perf_counter()
            free_x = fit_detectors(specs, gain="fit", thaw=X_THAW, start=X_START, free_detectors=("intn", "intbgd"),
                                   **kw)
            t3 = time.perf_counter()
            from scipy.stats import chi2
            d_stat, d_dof = linked.statistic - free.statistic, linked.dof - free.dof
            intn = [r for r in free.detectors if r["parameter"] == "intn:bknpower.norm"]
            joint.append({"epoch": e, "module": m,
                          "linked": {"cstat": linked.statistic, "dof": linked.dof,
                                     "ratio": linked.statistic / linked.dof, "seconds": t1 - t0},
                          "free_detectors": {"cstat": free.statistic, "dof": free.dof,
                                             "ratio": free.statistic / free.dof, "seconds": t2 - t1},
                          "free_detectors_x": {"cstat": free_x.statistic, "dof": free_x.dof,
                                               "ratio": free_x.statistic / free_x.dof, "seconds": t3 - t2},
                          "lrt": {"delta_cstat": d_stat, "delta_dof": d_dof, "p": float(chi2.sf(d_stat, d_dof))},
                          "intn_fitted_over_preset": [r["ratio"] for r in intn],
                          "constrained": [r["constrained"] for r in intn]})
            tqdm.write(f"epoch {e} FPM{m}: linked {linked.statistic / linked.dof:.3f} "
                       f"free-detectors {free.statistic / free.dof:.3f} "
                       f"free-detectors+X {free_x.statistic / free_x.dof:.3f}", file=sys.stderr)
    out = {"rmf": str(RMF.name), "detabs": str(DETABS.name), "band_kev": [3, 150], "statistic": "cstat",
           "note": "FPMA det-3 RMF and FPMA DETABS used for every spectrum (the only real ones available)",
           "lines": LINES.split(","), "x_thaw": X_THAW.split(","), "x_start": X_START, "spectra": rows, "joint": joint}
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    name = "real_stacked_quick" if quick else "real_stacked"
    (res / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    plot(out, res / f"{name}.png")
    return out


def plot(out, path):
    import matplotlib.pyplot as plt

    rows = out["spectra"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for tag, mk, lab in (("frozen", "o", "shapes frozen"), ("gain", "s", "--gain fit"),
                         ("gain_lines", "^", "--gain fit + 6 line energies"),
                         ("gain_lines_x", "v", "+ Fe/Ni lines, apbgd index, intn shape")):
        if all(tag in r for r in rows):
            ax.plot(x, [r[tag]["ratio"] for r in rows], mk, label=lab)
    ax.axhline(1.35, color="k", ls="--", lw=0.8, label="goal 1.35")
    ax.set_xticks(x)
    ax.set_xticklabels([f"e{r['epoch']}{r['module']}{r['detector']}" for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("C-stat / dof (3-150 keV)")
    ax.set_yscale("log")
    ax.set_title("real stacked whole-detector spectra (FPMA det-3 RMF for all)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
