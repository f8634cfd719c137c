"""One predicted background, three fitters: per-channel agreement on the demo chain.

Simulates one observation (``nuskybgd demo``'s chain: simulate, images,
aspect, instrument maps, projbgd, three background regions per module,
extract, cstat fit), then runs ``spec``, ``simplify`` and ``spex`` on the
demo's source region of both modules and evaluates the region's background
three independent ways:

- SPEX: the ``.res`` sectors x ``.dat`` file models x exposure, read back
  with pyspextools (``tests/spex_reference.py``);
- XSPEC: the simplify XCM through XSPEC's compiled model functions
  (xspectrampoline; ``tests/xspec_reference.py``; apec counts from nuskybgd,
  XSPEC's apec needs AtomDB);
- Sherpa: the simplify ``_sherpa.py`` script run in a Sherpa session;

and compares each with spec's prediction (``bgd_src_*_bkg.pha``) channel by
channel. Writes ``benchmarks/results/three_fitters.json`` and a PNG.
Nothing is asserted (the test is tests/analysis/test_spex.py).

usage: python benchmarks/three_fitters.py [--seed 1] [--out benchmarks/results/three_fitters.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import runpy
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", HERE.parents[1] / "shared"))
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))
os.environ.setdefault("NUSKYBGD_APEC_TEMPLATE",
                      str(SHARED / "apec" / "nnapec_intbgd_kT1.14579_Z1.32692_nustar_bins.txt"))
os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' independent evaluators


def run(seed, work):
    """Chain, spec/simplify/spex on the demo source regions, and the three routes.

    Returns
    -------
    dict
        Module -> {"prediction", "spex", "xspec", "sherpa"} counts per channel, and "e_lo"/"e_hi".
    """
    from sherpa.astro import ui
    from spex_reference import spex_background_counts
    from xspec_reference import xspec_counts

    from nuskybgd.analysis.demo import DEMO_SOURCE_REGION
    from nuskybgd.analysis.simplify import run_simplify
    from nuskybgd.analysis.spec import run_spec
    from nuskybgd.analysis.spex import run_spex
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.io.xcm import read_xcm
    from nuskybgd.products.extract import extract_spectrum
    from nuskybgd.simulate.caldb import make_caldb
    from nuskybgd.simulate.observation import simulate_observation
    from nuskybgd.analysis import demo

    out = Path(work)
    caldb = out / "sim" / "caldb"
    caldb.parent.mkdir(parents=True, exist_ok=True)
    make_caldb(caldb, shared_caldb=SHARED / "caldb" / "nustar", progress=False)
    sim = simulate_observation(out / "sim", seed=seed, progress=False)
    images = demo.step_images(sim, out)
    aspects = demo.step_aspect(sim, out)
    imaps = demo.step_instrmap(sim, out)
    ap, det = demo.step_projbgd(images, imaps, aspects, out)
    regions = demo.step_regions(sim, out)
    spectra = demo.step_extract(sim, regions, out)
    info = demo.step_bgdinfo(spectra, regions, images, ap, det, out)
    fit = demo.step_fit(info, out, sim)
    regs, phas = [], []
    dx, dy, r = DEMO_SOURCE_REGION
    for m in "AB":
        cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
        reg = out / f"src{m}.reg"
        reg.write_text(f"# Region file format: DS9 version 4.1\nimage\ncircle({cx + dx:.2f},{cy + dy:.2f},{r:.2f})\n")
        res = extract_spectrum(sim.events[m], reg, outprefix=f"src{m}", outdir=out, grpmin=30, caldb=sim.caldb)
        regs.append(str(reg))
        phas.append(str(res.grouped))
    spec = run_spec(info, fit.paths["json"], regs, phas, savefile=str(out / "bgd_src"), plot=False, caldb=sim.caldb)
    run_simplify(info, out / "bgd_src.xcm", savefile=str(out / "bgd_only_src"))
    cal = Caldb(sim.caldb)
    spex = run_spex(info, fit.paths["json"], regs, phas, savefile=str(out / "bgd_src"), caldb=sim.caldb,
                    arffiles=[str(cal.query("SPECRESP", f"FPM{m}").path) for m in "AB"])
    st = read_xcm(out / "bgd_only_src.xcm")
    routes = {}
    for k, m in enumerate("AB"):
        s = spec["sources"][k]
        routes[m] = {"prediction": np.asarray(s["spectrum"], float),
                     "spex": spex_background_counts(spex["names"][k]),
                     "xspec": xspec_counts(st, k, out, s["counts"]["intbgd.apec"])}
    ui.clean()
    cwd = os.getcwd()
    os.chdir(out)
    try:
        runpy.run_path("bgd_only_src_sherpa.py")
        for k, m in enumerate("AB"):
            data = ui.get_data(k + 1)
            data.ungroup()
            data.notice()
            routes[m]["sherpa"] = np.asarray(data.eval_model(ui.get_model(k + 1)), float)
    finally:
        os.chdir(cwd)
        ui.clean()
    sec = spex["sectors"][0]
    routes["channel_energy"] = 0.5 * (sec.energ_lo + sec.energ_hi)[:routes["A"]["prediction"].size]
    return routes


def summarise(routes):
    """Max and median |relative difference| per module and route (channels with prediction > 1e-8 max)."""
    out = {}
    for m in "AB":
        pred = routes[m]["prediction"]
        keep = pred > 1e-8 * pred.max()
        for route in ("spex", "xspec", "sherpa"):
            d = np.abs(routes[m][route][keep] - pred[keep]) / pred[keep]
            out[f"{m}/{route}"] = {"max_rel": float(d.max()), "median_rel": float(np.median(d)),
                                   "channels": int(keep.sum()), "total_route": float(routes[m][route].sum()),
                                   "total_prediction": float(pred.sum())}
    return out


def plot(routes, summary, path, seed):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    e = routes["channel_energy"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1.3]})
    colours = {"spex": "C2", "xspec": "C0", "sherpa": "C3"}
    labels = {"spex": "SPEX .res x .dat (pyspextools read-back)", "xspec": "XSPEC functions, simplify XCM",
              "sherpa": "Sherpa, simplify script"}
    for j, m in enumerate("AB"):
        pred = routes[m]["prediction"]
        ax = axes[0, j]
        ax.plot(e, pred, color="k", lw=2.5, alpha=0.35, label="nuskybgd spec prediction")
        for route, c in colours.items():
            ax.plot(e, routes[m][route], color=c, lw=0.7, ls="--", label=labels[route])
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_ylabel("background counts / channel")
        ax.set_title(f"FPM{m}: demo source region, seed {seed}", fontsize=9)
        ax.legend(fontsize=7)
        ax = axes[1, j]
        keep = pred > 1e-8 * pred.max()
        for route, c in colours.items():
            d = np.abs(routes[m][route] - pred) / np.where(keep, pred, np.nan)
            ax.plot(e, np.maximum(d, 1e-17), color=c, lw=0.6,
                    label=f"{route}: max {summary[f'{m}/{route}']['max_rel']:.1e}")
        ax.axhline(1e-6, color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_ylim(1e-17, 1e-4)
        ax.set_xlabel("channel energy (keV)")
        ax.set_ylabel("|route - prediction| / prediction")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "three_fitters.json"))
    ap.add_argument("--keep", help="work folder to keep")
    args = ap.parse_args(argv)
    logging.getLogger("nuskybgd").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        routes = run(args.seed, work)
    summary = summarise(routes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seed": args.seed, "summary": summary}, indent=1) + "\n")
    plot(routes, summary, out.with_suffix(".png"), args.seed)
    for k, v in summary.items():
        print(f"{k:<10} max |rel diff| {v['max_rel']:.2e}  median {v['median_rel']:.2e}  over {v['channels']} channels; "
              f"total {v['total_route']:.4f} vs {v['total_prediction']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
