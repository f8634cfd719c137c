"""Injection-recovery of the whole chain: simulate -> projbgd -> extract -> fit.

For seeds 1..N, simulate an observation (both modules, four background
components, by default no point source), run the chain of ``nuskybgd demo``
as library calls (mkimgs, aspecthist, mkinstrmap, projbgd, three background
regions per module, extract, bgdinfo.json, fit with cstat) and collect, for
every free norm, the pull ``(fitted - injected) / error``; the injected value
of a region's norm is the sum over the region's projected detector areas of
truth.json's per-pixel norms (``nuskybgd.tasks.demo.injected_norms``).

Components: ``apbgd``, ``intbgd.apec``, ``intbgd.lines`` (free lines with at
least ``--min-line-counts`` expected counts in the reference spectrum),
``fcxb``, ``intn``; each per module and pooled.

A second, sharper diagnostic needs no fit: per region and component, the
number of simulated events of that component inside the region (tagged in
``truth_events.npz``) against the model's expected counts, i.e. the injected
region norm times the sum of the component's template (the response the fit
uses). Their ratio and z-score are stored per region, component and seed.

Writes ``benchmarks/results/chain_pulls.json`` (or ``--out``) and a PNG of
the pull histograms next to it. Nothing is asserted.

usage: python benchmarks/chain_pulls.py [--seeds 20] [--exposure 30000]
       [--source] [--out benchmarks/results/chain_pulls.json] [--tag before]
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

GROUPS = ("apbgd", "intbgd.apec", "intbgd.lines", "fcxb", "intn")
#: Energy bands (keV) of the tagged-event comparison.
BANDS = ((3, 5), (5, 8), (8, 12), (12, 20), (20, 40), (40, 80), (80, 150))


def band_channels(elo, ehi):
    """PI channels with 1.6 + 0.04 c in [elo, ehi)."""
    c = np.arange(4096)
    e = 1.6 + 0.04 * c
    return (e >= elo - 1e-9) & (e < ehi - 1e-9)


def group_of(key):
    """Pull group of a template key."""
    if key.startswith("intbgd.lorentz"):
        return "intbgd.lines"
    return key


def quadrant_regions(sim, outdir):
    """Four boxes tiling the detectors' footprint (170 x 170 sky pixels each). Returns {module: [paths]}."""
    from regions import RectanglePixelRegion, PixCoord

    from nuskybgd.io.regions import write_regions
    out = {}
    for m in sim.events:
        cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
        out[m] = []
        for k, (dx, dy) in enumerate(((-85, -85), (-85, 85), (85, 85), (85, -85)), start=1):
            p = Path(outdir) / f"quad{k}{m}.reg"
            write_regions(p, [RectanglePixelRegion(PixCoord(cx + dx - 1, cy + dy - 1), 170, 170)], clobber=True)
            out[m].append(p)
    return out


def run_seed(seed, workdir, exposure, source, caldb_dir, region_set="demo"):
    """Run the chain for one seed; return (pull rows, tagged-event rows, seconds per step)."""
    from nuskybgd.io.events import read_events, sky_wcs
    from nuskybgd.io.regions import region_mask
    from nuskybgd.products.extract import events_in_mask
    from nuskybgd.simulate.observation import simulate_observation
    from nuskybgd.analysis import demo

    out = Path(workdir) / f"seed{seed:03d}"
    (out / "sim").mkdir(parents=True, exist_ok=True)
    if caldb_dir is not None and not (out / "sim" / "caldb").exists():
        os.symlink(caldb_dir, out / "sim" / "caldb")
    t = [time.perf_counter()]
    sim = simulate_observation(out / "sim", seed=seed, exposure=exposure, source=source, progress=False)
    t.append(time.perf_counter())
    images = demo.step_images(sim, out)
    aspects = demo.step_aspect(sim, out)
    imaps = demo.step_instrmap(sim, out)
    ap, det = demo.step_projbgd(images, imaps, aspects, out)
    t.append(time.perf_counter())
    regions = demo.step_regions(sim, out) if region_set == "demo" else quadrant_regions(sim, out)
    spectra = demo.step_extract(sim, regions, out)
    t.append(time.perf_counter())
    info = demo.step_bgdinfo(spectra, regions, images, ap, det, out)
    fit = demo.step_fit(info, out, sim)
    t.append(time.perf_counter())
    rows = demo.injected_norms(fit, sim.truth)

    # expected counts per spectrum and component: reference-norm template sums
    model = fit.model
    noticed_counts = {}
    for k in range(len(fit.spectra)):
        sd = model.spectra[k]
        noticed_counts[k] = {key: float(np.sum(sd.group(np.asarray(tm, float))[sd.noticed]))
                             for key, tm in sd.templates.items()}
    for r in rows:
        r["seed"] = seed
        r["module"] = fit.spectra[r["group"] - 1].module
        r["group_name"] = group_of(r["key"])
        r["expected_counts"] = r["injected"] * noticed_counts[r["group"] - 1][r["key"]]

    # tagged events per region and component vs injected norm x template sum (all channels)
    tagged = []
    ev_cache = {}
    for k, s in enumerate(fit.spectra):
        m = s.module
        if m not in ev_cache:
            ev = read_events(sim.events[m], columns=("PI", "X", "Y"))
            ev_cache[m] = (ev, sky_wcs(ev), sim.event_components(m))
        ev, wcs, tags = ev_cache[m]
        reg = regions[m][[Path(p).name for p in spectra[m]].index(s.path.name)]
        mask = region_mask(reg, wcs, (1000, 1000))
        sel = events_in_mask(ev.columns["X"], ev.columns["Y"], mask)
        tm = sim.truth["modules"][m]
        names = tm["component_order"]
        w = fit.weights[k]
        counts = np.bincount(tags[sel], minlength=len(names) + 1)
        pi = np.asarray(ev.columns["PI"], np.int64)
        sd = model.spectra[k]
        for i, key in enumerate(names):
            hist = np.bincount(pi[sel & (tags == i)], minlength=4096)[:4096]
            if key == "apbgd":
                inj = tm["apbgd_norm_per_aperture"] * w.ap
            else:
                inj = float(np.sum(np.asarray(w.area) * np.asarray(tm["per_pixel_norm"][key])))
            tmpl = np.zeros(4096)
            tt = np.asarray(sd.templates[key], float)
            f0 = int(getattr(sd.templates, "first_channel", 0) or 0)
            tmpl[f0:f0 + tt.size] = tt
            mu = inj * float(np.sum(tmpl))
            tagged.append(dict(seed=seed, spectrum=k + 1, module=m, key=key, group_name=group_of(key),
                               observed=int(counts[i]), expected=mu,
                               observed_bands=[int(hist[band_channels(*b)].sum()) for b in BANDS],
                               expected_bands=[float(inj * tmpl[band_channels(*b)].sum()) for b in BANDS],
                               z=(counts[i] - mu) / np.sqrt(mu) if mu > 0 else None))
    steps = dict(simulate=t[1] - t[0], projbgd=t[2] - t[1], extract=t[3] - t[2], fit=t[4] - t[3])
    return rows, tagged, steps


def bound_fits(rows):
    """(seed, module) of fits where a free apbgd, fcxb, intn or apec norm ended at its lower bound 0."""
    return {(r["seed"], r["module"]) for r in rows
            if r["fitted"] <= 0 and (r["source"] != "intbgd" or r["key"] == "intbgd.apec")}


def summarise(rows, min_snr, skip=()):
    """Mean, std and count of pulls per group and per (group, module); ``skip``: (seed, module) left out."""
    skip = set(skip)
    rows = [r for r in rows if (r["seed"], r["module"]) not in skip]
    out = {}
    for g in GROUPS:
        for mod in ("A", "B", "both"):
            p = [r["pull"] for r in rows if r["group_name"] == g and r["pull"] is not None
                 and (mod == "both" or r["module"] == mod)
                 and (not g.startswith("intbgd") or r["injected"] >= min_snr * r["error"])]
            p = np.asarray(p, float)
            out[f"{g}/{mod}"] = dict(n=int(p.size), mean=float(p.mean()) if p.size else None,
                                     std=float(p.std(ddof=1)) if p.size > 1 else None,
                                     sem=float(p.std(ddof=1) / np.sqrt(p.size)) if p.size > 1 else None)
    return out


def summarise_tagged(tagged):
    """Observed/expected ratio of tagged counts, pooled over seeds and regions, per group and module.

    ``bands``: per energy band of :data:`BANDS`, pooled observed, expected, ratio and z.
    """
    out = {}
    for g in GROUPS:
        for mod in ("A", "B"):
            sel = [t for t in tagged if t["group_name"] == g and t["module"] == mod]
            o = float(sum(t["observed"] for t in sel))
            e = float(sum(t["expected"] for t in sel))
            z = np.array([t["z"] for t in sel if t["z"] is not None and t["expected"] > 100], float)
            ob = np.sum([t["observed_bands"] for t in sel], axis=0)
            eb = np.sum([t["expected_bands"] for t in sel], axis=0)
            bands = [dict(band=list(b), observed=float(x), expected=float(y), ratio=float(x / y) if y > 0 else None,
                          z=float((x - y) / np.sqrt(y)) if y > 0 else None) for b, x, y in zip(BANDS, ob, eb)]
            out[f"{g}/{mod}"] = dict(observed=o, expected=e, ratio=o / e if e > 0 else None, bands=bands,
                                     z_pooled=(o - e) / np.sqrt(e) if e > 0 else None,
                                     z_mean=float(z.mean()) if z.size else None,
                                     z_std=float(z.std(ddof=1)) if z.size > 1 else None, n=int(z.size))
    return out


def plot(rows, summary, path, min_snr, title):
    """Pull histograms per component group (both modules), unit Gaussian overlaid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(GROUPS), figsize=(4 * len(GROUPS), 3.6), sharey=False)
    x = np.linspace(-5, 5, 201)
    for ax, g in zip(axes, GROUPS):
        for mod, col in (("A", "C0"), ("B", "C1")):
            p = np.array([r["pull"] for r in rows if r["group_name"] == g and r["module"] == mod
                          and r["pull"] is not None
                          and (not g.startswith("intbgd") or r["injected"] >= min_snr * r["error"])], float)
            if p.size:
                ax.hist(np.clip(p, -5, 5), bins=np.linspace(-5, 5, 21), histtype="step", color=col,
                        label=f"FPM{mod} (n={p.size})")
        s = summary[f"{g}/both"]
        n = s["n"]
        if n:
            ax.plot(x, n * 0.5 * np.exp(-0.5 * x ** 2) / np.sqrt(2 * np.pi) / 2, "k:", label="N(0,1), per module")
            ax.set_title(f"{g}: mean {s['mean']:+.2f}, std {s['std']:.2f}")
        else:
            ax.set_title(f"{g}: no norm with injected/error >= {min_snr:g}", fontsize=8)
        ax.set_xlabel("pull (fitted - injected) / error")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--exposure", type=float, default=30000.0)
    ap.add_argument("--source", action="store_true", help="include the point source")
    ap.add_argument("--min-snr", type=float, default=3.0,
                    help="count an intbgd norm's pull only when injected / error reaches this")
    ap.add_argument("--regions", choices=["demo", "quadrants"], default="demo",
                    help="demo: the three r=50 circles of nuskybgd demo; quadrants: four boxes tiling the field")
    ap.add_argument("--out", default=str(HERE / "results" / "chain_pulls.json"))
    ap.add_argument("--tag", default="", help="label stored in the JSON and the plot title")
    ap.add_argument("--keep", help="work folder to keep (default: a temporary folder)")
    ap.add_argument("--replot", help="recompute summaries and the plot of an existing JSON (no runs)")
    args = ap.parse_args(argv)
    if args.replot:
        res = json.loads(Path(args.replot).read_text())
        res["tag"] = args.tag or res.get("tag", "")
        res["summary"] = summarise(res["rows"], res["min_snr"])
        res["fits_with_norm_at_bound"] = sorted(bound_fits(res["rows"]))
        res["summary_off_bound"] = summarise(res["rows"], res["min_snr"], res["fits_with_norm_at_bound"])
        Path(args.replot).write_text(json.dumps(res, indent=1, default=float) + "\n")
        plot(res["rows"], res["summary"], Path(args.replot).with_suffix(".png"), res["min_snr"],
             f"chain pulls {res['tag']} seeds {res['seeds']}, exposure {res['exposure']:g} s, "
             f"source={res['source']}, regions {res.get('regions', 'demo')}")
        report(res)
        return 0
    logging.getLogger("nuskybgd").setLevel(logging.WARNING)
    from tqdm import tqdm

    from nuskybgd.simulate.caldb import make_caldb

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        caldb_dir = work / "caldb"
        if not (caldb_dir / "data" / "nustar" / "fpm" / "caldb.indx").exists():
            make_caldb(caldb_dir, shared_caldb=SHARED / "caldb" / "nustar", progress=False)
        rows, tagged, steps = [], [], []
        for seed in tqdm(range(args.first_seed, args.first_seed + args.seeds), desc="chain seeds", file=sys.stderr):
            r, tg, st = run_seed(seed, work, args.exposure, args.source, caldb_dir.resolve(), args.regions)
            rows += r
            tagged += tg
            steps.append(st)
    total = time.perf_counter() - t0
    summary = summarise(rows, args.min_snr)
    bound = sorted(bound_fits(rows))
    summary_off = summarise(rows, args.min_snr, bound)
    tsum = summarise_tagged(tagged)
    res = dict(tag=args.tag, regions=args.regions, seeds=[args.first_seed, args.first_seed + args.seeds - 1], exposure=args.exposure,
               source=args.source, min_snr=args.min_snr, seconds_total=total,
               seconds_per_step_mean={k: float(np.mean([s[k] for s in steps])) for k in steps[0]},
               summary=summary, fits_with_norm_at_bound=bound, summary_off_bound=summary_off,
               tagged_summary=tsum, rows=rows, tagged=tagged)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=float) + "\n")
    plot(rows, summary, out.with_suffix(".png"), args.min_snr,
         f"chain pulls {args.tag} seeds {res['seeds']}, exposure {args.exposure:g} s, "
         f"source={args.source}, regions {args.regions}")
    report(res)
    return 0


def report(res):
    """Print the summaries of a result dictionary."""
    summary, tsum, summary_off = res["summary"], res["tagged_summary"], res["summary_off_bound"]
    print(f"{len(res['fits_with_norm_at_bound'])} module fits with a norm at its bound 0")
    print(f"{'group':<18} {'n':>4} {'mean':>7} {'std':>6} | off-bound {'n':>4} {'mean':>7} {'std':>6} | "
          "tagged obs/exp (pooled z)")
    for g in GROUPS:
        for mod in ("A", "B", "both"):
            s, so = summary[f"{g}/{mod}"], summary_off[f"{g}/{mod}"]
            tz = tsum.get(f"{g}/{mod}")
            extra = f"   {tz['ratio']:.4f} ({tz['z_pooled']:+.1f})" if tz and tz["ratio"] else ""

            def fmt(x):
                return (f"{x['n']:>4} {x['mean']:+7.2f} " + (f"{x['std']:6.2f}" if x["std"] is not None else "     -")
                        if x["n"] else f"{0:>4} {'-':>7} {'-':>6}")
            if s["n"]:
                print(f"{g + '/' + mod:<18} {fmt(s)} |           {fmt(so)} |{extra}")
    print("tagged counts per band, z = (observed - expected) / sqrt(expected), pooled over seeds and regions:")
    print(f"{'group':<18} " + " ".join(f"{a:>3}-{b:<3}" for a, b in BANDS))
    for key, v in tsum.items():
        if "bands" not in v:
            continue
        print(f"{key:<18} " + " ".join(f"{b['z']:+7.1f}" if b["z"] is not None else "      -" for b in v["bands"]))
    print(f"total {res['seconds_total']:.0f} s; per seed {json.dumps(res['seconds_per_step_mean'])}")


if __name__ == "__main__":
    sys.exit(main())
