"""calibrate on the real stacked Earth-occulted spectra of ../shared/real/stacked.

Their headers are meaningless, so a manifest gives epoch, module and detector
(from the file names) and approximate epoch dates (consecutive half-years from
launch, 2012-06: epoch N covers 2012-06-13 + (N - 1) / 2 years .. + 1/2 year,
an assumption). Every spectrum uses the real FPMA DET3 RMF and the FPMA DETABS
(the only real ones). Writes benchmarks/results/calibrate_real/ (bundle,
summary.ecsv, trends.png) and calibrate_real.json (cstat/dof per group, with
the gain fitted and with the preset gain, and the wall time).

Run: PYTHONPATH=. python benchmarks/calibrate_real.py [--workers N]
"""

import argparse
import json
import os
import re
import shutil
import time
from pathlib import Path

from astropy.table import Table
from astropy.time import Time

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", HERE.parents[1] / "shared"))
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))
os.environ.setdefault("NUSKYBGD_APEC_TEMPLATE",
                      str(SHARED / "apec" / "nnapec_intbgd_kT1.14579_Z1.32692_nustar_bins.txt"))


def manifest(path):
    rows = []
    launch = Time("2012-06-13T00:00:00", scale="utc")
    for f in sorted((SHARED / "real" / "stacked").glob("epoch*_det*_FPM*.pha")):
        m = re.match(r"epoch(\d+)_det(\d)_FPM([AB])\.pha", f.name)
        n, det, mod = int(m.group(1)), int(m.group(2)), m.group(3)
        start = (launch + (n - 1) * 182.625).isot[:10]
        stop = (launch + n * 182.625).isot[:10]
        rows.append((str(f), f"epoch{n:02d}", mod, det, start, stop))
    t = Table(rows=rows, names=("file", "epoch", "module", "det", "epoch_start", "epoch_stop"))
    t.write(path, format="ascii.csv", overwrite=True)
    return path


def main():
    from nuskybgd.analysis.calibrate import calibrate, load_manifest
    from nuskybgd.analysis.executor import make_runner

    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--add-lines", action="store_true",
                    help="add Cr/Fe/Ni K-alpha lines (results in calibrate_real_kalpha*)")
    ap.add_argument("--gain-only", action="store_true", help="skip the preset-gain run")
    args = ap.parse_args()
    from nuskybgd.calib.presets import K_ALPHA_LINES
    added = K_ALPHA_LINES if args.add_lines else ()
    tag = "_kalpha" if args.add_lines else ""
    res = HERE / "results"
    man = manifest(res / "real_stacked_manifest.csv")
    rmf = SHARED / "caldb" / "nustar" / "nuAdet3_20100101v002.rmf.gz"
    detabs = str(SHARED / "caldb" / "nustar" / "nuAdetabs20100101v002.fits")
    out = {}
    for label, gain in (("gain_fitted", True), ("preset_gain", False))[:1 if args.gain_only else 2]:
        caldir = res / (("calibrate_real" if gain else "calibrate_real_preset_gain") + tag)
        if caldir.exists():
            shutil.rmtree(caldir)
        tasks = load_manifest(man, rmf, fit_gain=gain, detabs_file=detabs, add_lines=added)
        t0 = time.perf_counter()
        calibrate(tasks, caldir, runner=make_runner(workers=args.workers, desc=f"calibrate {label}"), plot=gain)
        wall = time.perf_counter() - t0
        s = Table.read(caldir / "summary.ecsv", format="ascii.ecsv")
        out[label] = {"wall_seconds": wall, "workers": args.workers, "groups": [
            {"epoch": r["epoch"], "module": r["module"], "det": int(r["det"]), "cstat": float(r["cstat"]),
             "dof": int(r["dof"]), "cstat_per_dof": float(r["cstat_per_dof"]), "gain_slope": float(r["gain_slope"]),
             "gain_slope_err": float(r["gain_slope_err"]), "gain_offset": float(r["gain_offset"]),
             "gain_offset_err": float(r["gain_offset_err"])} for r in s]}
        c = [g["cstat_per_dof"] for g in out[label]["groups"]]
        out[label]["cstat_per_dof_max"] = max(c)
        out[label]["n_groups_le_1.35"] = sum(x <= 1.35 for x in c)
        print(label, f"{wall:.0f} s", "max cstat/dof", max(c), "groups <= 1.35:", out[label]["n_groups_le_1.35"],
              "of", len(c))
    out["added_lines_kev"] = list(added)
    (res / f"calibrate_real{tag}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
