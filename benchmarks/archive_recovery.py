"""Injection-recovery on a simulated archive: stack + calibrate, pulls of every calibrated quantity.

Usage (the archive is made first with the CLI, e.g. 50 observations):

  nuskybgd simulate-archive /tmp/arch50 --observations 50 --seed 12 --workers 2
  PYTHONPATH=. python benchmarks/archive_recovery.py /tmp/arch50 /tmp/work50 --workers 2

Truth of a group (epoch x module x detector) = mean over its observations
(equal occultation exposures) of the injected gain slope (offset 0) and of
the whole-detector norms in truth.json. Pull = (fitted - truth) / fitted
1-sigma error. Writes benchmarks/results/archive_recovery.json and .png.
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", HERE.parents[1] / "shared"))
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))
os.environ.setdefault("NUSKYBGD_APEC_TEMPLATE",
                      str(SHARED / "apec" / "nnapec_intbgd_kT1.14579_Z1.32692_nustar_bins.txt"))

QUANTITIES = ["gain_slope", "gain_offset", "intn", "intbgd.apec", "line_energy_19.6keV"]


def pulls(archive, stackdir, caldir, n_lines=6):
    stack = json.loads((stackdir / "stack.json").read_text())
    cal = json.loads((caldir / "calibration.json").read_text())
    truths = {}
    out = {}
    # The strongest lines by injected counts (whole archive, occultation mode).
    first = json.loads((archive / stack["groups"][0]["obsids"][0] / "truth.json").read_text())
    counts = {k: sum(v) for k, v in first["archive"]["occultation"]["A"]["expected_counts"].items()
              if k.startswith("intbgd.lorentz")}
    strong = sorted(counts, key=counts.get, reverse=True)[:n_lines]
    qs = QUANTITIES + strong
    for q in qs:
        out[q] = []
    for e in cal["epochs"]:
        gain = json.loads((caldir / e["files"]["gain"]["path"]).read_text())
        for m, mod in gain["modules"].items():
            for detname, d in mod["detectors"].items():
                k = int(detname[3:])
                g = next(x for x in stack["groups"] if x["file"] == d["name"])
                slope, norms = [], {}
                for obsid in g["obsids"]:
                    if obsid not in truths:
                        truths[obsid] = json.loads((archive / obsid / "truth.json").read_text())["archive"]
                    tr = truths[obsid]
                    slope.append(tr["epoch_truth"]["modules"][m]["gain_slope"][k])
                    for key, v in tr["occultation"][m]["whole_detector_norm"].items():
                        norms.setdefault(key, []).append(v[k])
                t_slope = float(np.mean(slope))
                out["gain_slope"].append((d["slope"] - t_slope) / d["slope_error"])
                out["gain_offset"].append(d["offset"] / d["offset_error"])
                e0 = 19.6464
                le, le_err = d["line_energies"]["intbgd.lorentz_5"]
                out["line_energy_19.6keV"].append((le - t_slope * e0) / le_err)
                for key in ["intn", "intbgd.apec", *strong]:
                    v, err = d["norms"][key]
                    out[key].append((v - float(np.mean(norms[key]))) / err)
    summary = {q: {"n": len(v), "mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)),
                   "median": float(np.median(v))} for q, v in out.items()}
    return out, summary


def plot(out, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    qs = list(out)
    n = len(qs)
    cols = 4
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows))
    x = np.linspace(-4, 4, 200)
    for ax, q in zip(axes.ravel(), qs):
        v = np.asarray(out[q])
        ax.hist(v, bins=np.linspace(-4, 4, 17), density=True, alpha=0.7)
        ax.plot(x, np.exp(-x * x / 2) / np.sqrt(2 * np.pi), "k-")
        ax.set_title(f"{q}: mean {v.mean():.2f}, std {v.std(ddof=1):.2f} (n={v.size})", fontsize=8)
        ax.set_xlabel("pull")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main():
    from nuskybgd.analysis.calibrate import calibrate, load_stack_groups
    from nuskybgd.analysis.executor import make_runner
    from nuskybgd.analysis.stack import stack_archive

    ap = argparse.ArgumentParser()
    ap.add_argument("archive")
    ap.add_argument("work")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", default="year")
    ap.add_argument("--bootstrap", default="auto", help="replicas for the gain errors (0: curvature; default auto)")
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. _curvature)")
    args = ap.parse_args()
    archive, work = Path(args.archive), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runner = make_runner(workers=args.workers)
    b = args.bootstrap if args.bootstrap == "auto" else int(args.bootstrap)
    t0 = time.perf_counter()
    stack_archive(archive, work / "stack", epochs=args.epochs, runner=runner, clobber=True)
    t_stack = time.perf_counter() - t0
    t0 = time.perf_counter()
    calibrate(load_stack_groups(work / "stack", bootstrap=b), work / "cal", runner=runner, clobber=True)
    t_cal = time.perf_counter() - t0
    out, summary = pulls(archive, work / "stack", work / "cal")
    n_obs = json.loads((work / "stack" / "stack.json").read_text())["n_observations"]
    res = {"archive": str(archive), "n_observations": n_obs, "epochs": args.epochs, "workers": args.workers,
           "bootstrap": args.bootstrap,
           "stack_seconds": t_stack, "calibrate_seconds": t_cal, "pulls": summary,
           "pull_values": {q: [float(x) for x in v] for q, v in out.items()}}
    (HERE / "results" / f"archive_recovery{args.tag}.json").write_text(json.dumps(res, indent=1) + "\n")
    plot(out, HERE / "results" / f"archive_recovery{args.tag}.png")
    for q, s in summary.items():
        print(f"{q:24s} n={s['n']:3d} mean {s['mean']:+.2f} std {s['std']:.2f}")


if __name__ == "__main__":
    main()
