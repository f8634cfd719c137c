"""Timing of stack and calibrate on 1 and 2 local Dask workers, 50 and 200 observations.

  PYTHONPATH=. python benchmarks/archive_scaling.py /tmp/arch50 /tmp/scaling

The 200-observation archive is the 50-observation one replicated 4 times
(symlinked event files under new obsids): simulating 200 observations takes
about an hour on the shared 2-core machine, and stack's work per observation
(read the events, histogram PI per detector, live-area map) does not depend
on what the events are. calibrate's work scales with the number of groups
(epochs x 2 modules x 4 detectors), not with observations: it is timed on the
8 groups of one epoch. Memory per worker: peak RSS of each worker process
(``resource.getrusage``) after the run. Writes benchmarks/results/archive_scaling.json.
"""

import argparse
import json
import os
import resource
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", HERE.parents[1] / "shared"))
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))
os.environ.setdefault("NUSKYBGD_APEC_TEMPLATE",
                      str(SHARED / "apec" / "nnapec_intbgd_kT1.14579_Z1.32692_nustar_bins.txt"))


def replicate(arch, out, times):
    """Archive of ``times`` x the observations of ``arch`` (symlinks, new obsids)."""
    if out.exists():
        return out
    out.mkdir(parents=True)
    (out / "caldb").symlink_to((arch / "caldb").resolve(), target_is_directory=True)
    for r in range(times):
        for obs in sorted(p for p in arch.iterdir() if p.is_dir() and p.name.isdigit()):
            new = f"{int(obs.name) + r * 10 ** 8:011d}"
            ev = out / new / "event_cl"
            ev.mkdir(parents=True)
            for f in (obs / "event_cl").iterdir():
                (ev / f.name.replace(obs.name, new)).symlink_to(f.resolve())
    return out


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(func, items, workers):
    from nuskybgd.analysis.executor import connect, run_tasks
    client, cluster = connect(None, workers)
    try:
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        out = run_tasks(func, items, client=client, desc=f"{func.__name__} x{workers}")
        wall = time.perf_counter() - t0
        load = (load0, os.getloadavg()[0])
        mem = client.run(peak_rss_mb)
    finally:
        client.close()
        cluster.close()
    return wall, sorted(mem.values()), out, load


def main():
    from nuskybgd.analysis.calibrate import calibrate_group, load_stack_groups
    from nuskybgd.analysis.stack import plan_tasks, spectra_of_observation, stack_archive

    ap = argparse.ArgumentParser()
    ap.add_argument("archive")
    ap.add_argument("work")
    args = ap.parse_args()
    arch, work = Path(args.archive), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    res = {"stack": {}, "calibrate": {}}
    for n, a in ((50, arch), (200, replicate(arch, work / "arch200", 4))):
        tasks = plan_tasks(a)
        for w in (1, 2):
            wall, mem, _, load = timed(spectra_of_observation, tasks, w)
            res["stack"][f"{n}obs_{w}workers"] = {"observations": n, "tasks": len(tasks), "workers": w,
                                                  "seconds": wall, "worker_peak_rss_mb": mem,
                                                  "load_average_1min_start_end": load}
            print(f"stack {n} obs, {w} workers: {wall:.1f} s, worker peak RSS {mem} MB")
    for n in (50, 200):
        s = res["stack"]
        s[f"{n}obs_ratio_1to2"] = s[f"{n}obs_1workers"]["seconds"] / s[f"{n}obs_2workers"]["seconds"]
    stackdir = work / "stack50"
    if not (stackdir / "stack.json").exists():
        stack_archive(arch, stackdir)
    groups = load_stack_groups(stackdir, bootstrap=0)  # the fit itself (bootstrap: x11 per group)
    epoch = groups[0].epoch
    sel = [g for g in groups if g.epoch == epoch]
    for w in (1, 2):
        wall, mem, _, load = timed(calibrate_group, sel, w)
        res["calibrate"][f"{w}workers"] = {"groups": len(sel), "epoch": epoch, "workers": w, "seconds": wall,
                                           "seconds_per_group": wall / len(sel), "worker_peak_rss_mb": mem,
                                           "load_average_1min_start_end": load}
        print(f"calibrate {len(sel)} groups, {w} workers: {wall:.1f} s, worker peak RSS {mem} MB")
    res["calibrate"]["ratio_1to2"] = res["calibrate"]["1workers"]["seconds"] / res["calibrate"]["2workers"]["seconds"]
    res["machine"] = {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                      "note": "2 CPUs shared with other jobs: the load averages (1, 5, 15 min) say how busy"}
    (HERE / "results" / "archive_scaling.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
