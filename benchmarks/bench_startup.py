"""Benchmark: start-up of the command line and the RMF cache.

Figures (medians of ``--runs`` runs, default 9; written to
``benchmarks/results/startup.json``):

- ``help``: wall time of the whole process ``python -m nuskybgd --help``;
- ``projbgd``: wall time of the whole process ``python -m nuskybgd projbgd``
  on the real aspect track of observation 80415201001 (module A, 4
  detectors, 5 output files), numba cache warm (one warm-up run first);
- ``python``: ``python -c pass``, the interpreter's own floor on this machine;
- every process figure also gives the CPU time (user + sys) of the child, a
  measure much less sensitive to other load on the machine than wall time;
- ``rmf_direct``: ``read_rmf(real RMF, cache=False)`` (the only path before
  the cache), in this process, Sherpa already imported;
- ``rmf_first``: the first read with an empty cache (read + store);
- ``rmf_cached``: later reads (hash the file, load and verify the entry).

``--baseline DIR`` also times ``--help`` and ``projbgd`` with the code in DIR
(e.g. ``git archive <commit> | tar -x -C DIR``) and reports the ratios.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", REPO.parent / "shared")).resolve()
OBS = SHARED / "real" / "obs_80415201001"
RMF = SHARED / "caldb" / "nustar" / "nuAdet3_20100101v002.rmf.gz"


def wall(cmd, env, runs, warmup=1, cwd=None):
    """Median wall time (s) of a command, after ``warmup`` untimed runs.

    Run from ``cwd`` (not the repository: ``python -m`` puts the current
    folder first on sys.path, which would shadow PYTHONPATH)."""
    times, cpu = [], []
    for i in range(warmup + runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        res = subprocess.run(cmd, env=env, cwd=cwd or tempfile.gettempdir(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        dt = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {res.stderr.strip()[-400:]}")
        if i >= warmup:
            times.append(dt)
            cpu.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    return {"median_s": statistics.median(times), "runs_s": times,
            "cpu_median_s": statistics.median(cpu), "cpu_runs_s": cpu}


def projbgd_inputs(folder):
    """Aspect histogram and instrument map of the real observation (module A)."""
    import numpy as np
    from astropy.io import fits

    from nuskybgd.io.events import read_det1_refpoint, read_gti
    from nuskybgd.io.skyfiles import read_pixpos
    from nuskybgd.sky.aspect import aspect_histogram, write_aspect_histogram
    from nuskybgd.sky.instrmap import instrument_map, pixel_map

    t, x, y, h = read_det1_refpoint(OBS / "nu80415201001A_det1.fits")
    hist = aspect_histogram(t, x, y, *read_gti(OBS / "nu80415201001A06_gti.fits"), header=h)
    write_aspect_histogram(hist, folder / "asp.fits")
    pm = pixel_map(read_pixpos(SHARED / "caldb" / "nustar" / "nuApixpos20100101v007.fits.gz"))
    hdu = fits.PrimaryHDU(instrument_map(np.ones((360, 360)), pm))
    hdu.header["EXTNAME"] = "INSTRMAP"
    hdu.writeto(folder / "chip.fits")
    return OBS / "nu80415201001A06_chu2_S_cl_grade0_sk.img.gz", folder / "asp.fits", folder / "chip.fits"


def cli_figures(code_dir, inputs, folder, runs):
    env = dict(os.environ, PYTHONPATH=str(code_dir), NUSKYBGD_AUXIL=str(SHARED / "nuskybgd-auxil"))
    py = sys.executable
    refimg, asp, chip = inputs
    out = {"help": wall([py, "-m", "nuskybgd", "--help"], env, runs)}
    argv = [py, "-m", "nuskybgd", "--log-level", "WARNING", "projbgd", f"refimg={refimg}",
            f"out={folder / 'bgdap.fits'}", "mod=A", "det=1234", f"chipmap={chip}", f"aspect={asp}",
            "--outdir", str(folder), "--clobber"]
    out["projbgd"] = wall(argv, env, runs)
    return out


def rmf_figures(runs):
    from nuskybgd.io.ogip import read_rmf

    def timed(fn):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w0, time.process_time() - c0

    read_rmf(RMF, cache=False)  # imports and page cache
    direct, first, cached = [], [], []
    for _ in range(runs):
        direct.append(timed(lambda: read_rmf(RMF, cache=False)))
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            os.environ["NUSKYBGD_CACHE"] = d
            first.append(timed(lambda: read_rmf(RMF, cache=True)))
            cached.append(timed(lambda: read_rmf(RMF, cache=True)))
    out = {}
    for k, v in (("rmf_direct", direct), ("rmf_first", first), ("rmf_cached", cached)):
        out[k] = {"median_s": statistics.median(w for w, _ in v), "runs_s": [w for w, _ in v],
                  "cpu_median_s": statistics.median(c for _, c in v), "cpu_runs_s": [c for _, c in v]}
    out["rmf_speedup_cached_vs_direct"] = out["rmf_direct"]["median_s"] / out["rmf_cached"]["median_s"]
    return out


def interleaved(code_dirs, inputs, folder, runs):
    """cli_figures of several code folders, one run of each in turn (medians over ``runs`` rounds)."""
    rounds = [[cli_figures(c, inputs, folder, 1) for c in code_dirs] for _ in range(runs)]
    out = []
    for j in range(len(code_dirs)):
        fig = {}
        for k in ("help", "projbgd"):
            w = [r[j][k]["runs_s"][0] for r in rounds]
            c = [r[j][k]["cpu_runs_s"][0] for r in rounds]
            fig[k] = {"median_s": statistics.median(w), "runs_s": w, "cpu_median_s": statistics.median(c),
                      "cpu_runs_s": c}
        out.append(fig)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--baseline", type=Path, default=None, help="folder with the code to compare with")
    ap.add_argument("--skip-rmf", action="store_true")
    ap.add_argument("--skip-cli", action="store_true")
    args = ap.parse_args(argv)
    res = {"machine_cpus": os.cpu_count(), "runs": args.runs,
           "load_average": os.getloadavg(), "python": {}}
    res["python"] = wall([sys.executable, "-c", "pass"], dict(os.environ), args.runs)
    print(f"python -c pass {res['python']['median_s']:.3f} s")
    if not args.skip_cli:
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            inputs = projbgd_inputs(folder)
            if args.baseline is None:
                res["now"] = cli_figures(REPO, inputs, folder, args.runs)
            else:
                # interleaved rounds (now, before, now, ...): this VM's timings drift by 30 % within minutes
                res["now"], res["before"] = interleaved([REPO, args.baseline.resolve()], inputs, folder, args.runs)
                res["ratio_before_over_now"] = {k: res["before"][k]["median_s"] / res["now"][k]["median_s"]
                                                for k in ("help", "projbgd")}
                res["cpu_ratio_before_over_now"] = {
                    k: res["before"][k]["cpu_median_s"] / res["now"][k]["cpu_median_s"] for k in ("help", "projbgd")}
        for k in ("help", "projbgd"):
            line = f"{k}: {res['now'][k]['median_s']:.3f} s wall, {res['now'][k]['cpu_median_s']:.3f} s CPU"
            if "before" in res:
                line += (f" (before {res['before'][k]['median_s']:.3f} s wall, "
                         f"{res['before'][k]['cpu_median_s']:.3f} s CPU; wall ratio "
                         f"x{res['ratio_before_over_now'][k]:.1f}, CPU ratio x{res['cpu_ratio_before_over_now'][k]:.1f})")
            print(line)
    if not args.skip_rmf:
        res.update(rmf_figures(args.runs))
        print(f"RMF direct {res['rmf_direct']['median_s']:.3f} s ({res['rmf_direct']['cpu_median_s']:.3f} CPU), "
              f"first (read + store) {res['rmf_first']['median_s']:.3f} s "
              f"({res['rmf_first']['cpu_median_s']:.3f} CPU), cached {res['rmf_cached']['median_s']:.3f} s "
              f"({res['rmf_cached']['cpu_median_s']:.3f} CPU), x{res['rmf_speedup_cached_vs_direct']:.0f}")
    res["load_average_end"] = os.getloadavg()
    out = HERE / "results" / "startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")
    if "before" in res and "rmf_cached" in res:
        plot(res, HERE / "results" / "startup.png")
    return 0


def plot(res, path):
    """Bar chart of the medians: before vs now (wall and CPU), RMF direct vs cached."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["--help", "projbgd"]
    x = range(len(labels))
    for off, (key, name) in enumerate((("before", "before"), ("now", "now"))):
        for kind, hatch in (("median_s", ""), ("cpu_median_s", "//")):
            vals = [res[key][k][kind] for k in ("help", "projbgd")]
            pos = [i + 0.2 * (2 * off + (kind != "median_s")) - 0.3 for i in x]
            axes[0].bar(pos, vals, width=0.18, hatch=hatch, color="C0" if key == "before" else "C1",
                        label=f"{name}, {'wall' if kind == 'median_s' else 'CPU'}")
    axes[0].axhline(0.25, color="k", ls=":", lw=1)
    axes[0].axhline(0.8, color="k", ls="--", lw=1)
    axes[0].set_xticks(list(x), labels)
    axes[0].set_ylabel("whole process, s (median)")
    axes[0].set_title(f"start-up, load average {res['load_average'][0]:.0f} on {res['machine_cpus']} CPUs")
    axes[0].legend(fontsize=8)
    names = ["direct (no cache)", "first (read + store)", "cached"]
    keys = ["rmf_direct", "rmf_first", "rmf_cached"]
    axes[1].bar([i - 0.2 for i in range(3)], [res[k]["median_s"] for k in keys], width=0.4, label="wall")
    axes[1].bar([i + 0.2 for i in range(3)], [res[k]["cpu_median_s"] for k in keys], width=0.4, label="CPU")
    axes[1].axhline(0.1, color="k", ls=":", lw=1)
    axes[1].set_yscale("log")
    axes[1].set_xticks(range(3), names)
    axes[1].set_ylabel("read_rmf of the real 25 MB gzipped RMF, s")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
