"""fit with --calibration vs the shipped presets on the late-epoch observation of a simulated archive.

  nuskybgd simulate-archive /tmp/arch50 --observations 50 --seed 12 --workers 2
  (stack + calibrate it, e.g. benchmarks/archive_recovery.py /tmp/arch50 /tmp/work50)
  PYTHONPATH=. python benchmarks/late_epoch_fit.py /tmp/arch50 /tmp/work50/cal /tmp/late

The last observation of the archive has a ready bgdinfo.json (three background
regions per module, 50 ks). Both fits use the same spectra and free
parameters; only the presets differ. Writes benchmarks/results/late_epoch_fit.json.
"""

import argparse
import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", HERE.parents[1] / "shared"))
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))
os.environ.setdefault("NUSKYBGD_APEC_TEMPLATE",
                      str(SHARED / "apec" / "nnapec_intbgd_kT1.14579_Z1.32692_nustar_bins.txt"))


def main():
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.analysis.fit import fit_background

    ap = argparse.ArgumentParser()
    ap.add_argument("archive")
    ap.add_argument("caldir")
    ap.add_argument("work")
    args = ap.parse_args()
    arch = Path(args.archive)
    index = json.loads((arch / "archive.json").read_text())
    obs = index["observations"][-1]["obsid"]
    info = arch / obs / "bgd" / "bgdinfo.json"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    caldb = Caldb(arch / "caldb")
    out = {"observation": obs, "date_obs": index["observations"][-1]["date_obs"]}
    for label, cal in (("default_presets", None), ("calibration", args.caldir)):
        res = fit_background(info, savefile=str(work / label), caldb=caldb, calibration=cal, plot=False, clobber=True)
        f = res.state.info["fit"]
        out[label] = {"cstat": f["value"], "dof": f["dof"], "n_bins": f["n_bins"], "n_free": f["n_free"],
                      "calibration": res.state.info.get("calibration")}
    out["delta_cstat_calibration_minus_default"] = out["calibration"]["cstat"] - out["default_presets"]["cstat"]
    (HERE / "results" / "late_epoch_fit.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
