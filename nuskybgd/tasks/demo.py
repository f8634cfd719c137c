"""``nuskybgd demo``: the whole chain on a simulated observation."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import NuskybgdError

SUMMARY = "run the whole chain on a simulated observation"

DESCRIPTION = """\
Simulate an observation (both modules, four background components and a
point source; truth.json holds the injected values), then run mkimgs,
aspecthist, mkinstrmap and projbgd, write three background regions per
module away from the source, extract their spectra, write bgdinfo.json and
fit. Prints the fitted norms against the injected ones and leaves the fit
outputs (bgdparams.xcm/.json/_sherpa.py/.png/.log) in OUTDIR. Then spec,
image, simplify and spex on a source region of each module (bgd_src.*,
img_*, bgd_only_src.*, SPEX files bgd_src_src{A,B}_spex.spo/.res/.com/
_<component>.dat).

examples:
  nuskybgd demo demo_out
  nuskybgd demo demo_out --seed 3 --clobber
"""

log = logging.getLogger("nuskybgd")

#: Background regions: offsets (sky pixels) from the detectors' footprint centre and radius.
REGIONS = ((-80.0, -80.0, 50.0), (-80.0, 80.0, 50.0), (80.0, 80.0, 50.0))


def add_arguments(parser):
    """Arguments of ``nuskybgd demo``."""
    parser.add_argument("outdir", help="output folder (created)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the simulation (default 1)")
    parser.add_argument("--exposure", type=float, default=50000.0, help="exposure, s (default 50000)")
    parser.add_argument("--statistic", default="cstat", choices=["cstat", "chi"], help="fit statistic")
    parser.add_argument("--clobber", action="store_true", help="overwrite existing output files")


def _task(name, argv):
    """Run a task in this process (its library code, exceptions propagate)."""
    mod = importlib.import_module(f"nuskybgd.tasks.{name}")
    parser = argparse.ArgumentParser(prog=f"nuskybgd {name}")
    mod.add_arguments(parser)
    if not any("--clobber" in a.option_strings for a in parser._actions):
        parser.add_argument("--clobber", action="store_true")
    args = parser.parse_args([*map(str, argv)])
    rc = mod.run(args)
    if rc:
        raise NuskybgdError(f"demo: step {name} failed (exit {rc})")


def step_simulate(outdir, seed=1, exposure=50000.0, clobber=False):
    """Simulate the observation into ``outdir/sim``.

    Returns
    -------
    nuskybgd.simulate.observation.SimulatedObs
    """
    from ..simulate.observation import simulate_observation
    sim_dir = Path(outdir) / "sim"
    return simulate_observation(sim_dir, seed=seed, exposure=exposure, clobber=clobber)


def step_images(sim, outdir, clobber=False):
    """Counts images 3-79 keV of both modules (reference images). Returns {module: path}."""
    out = {}
    for m, evt in sim.events.items():
        p = Path(outdir) / f"im{m}3to79keV.fits"
        _task("mkimgs", [evt, "3", "79", "--out", p] + (["--clobber"] if clobber else []))
        out[m] = p
    return out


def step_aspect(sim, outdir, clobber=False):
    """Aspect histograms. Returns {module: path}."""
    out = {}
    for m in sim.events:
        p = Path(outdir) / f"aspecthist{m}.fits"
        _task("aspecthist", [sim.det1[m], "--gtifile", sim.gti[m], "--out", p] + (["--clobber"] if clobber else []))
        out[m] = p
    return out


def step_instrmap(sim, outdir, clobber=False):
    """Instrument maps with bad pixels. Returns {module: path}."""
    out = {}
    for m, evt in sim.events.items():
        _task("mkinstrmap", [evt, "--prefix", str(Path(outdir)) + os.sep, "--caldb", sim.caldb]
              + (["--clobber"] if clobber else []))
        out[m] = Path(outdir) / f"newinstrmap{m}.fits"
    return out


def step_projbgd(images, instrmaps, aspects, outdir, clobber=False):
    """Projected aperture and detector images. Returns (bgdap {m: path}, det {m: [4 paths]})."""
    ap, det = {}, {}
    for m in images:
        p = Path(outdir) / f"bgdap{m}.fits"
        _task("projbgd", ["--refimg", images[m], "--out", p, "--mod", m, "--det", "1234",
                          "--chipmap", instrmaps[m], "--aspect", aspects[m], "--outdir", outdir]
              + (["--clobber"] if clobber else []))
        ap[m] = p
        det[m] = [Path(outdir) / f"det{k}{m}im.fits" for k in range(4)]
    return ap, det


def step_regions(sim, outdir, clobber=False):
    """Write the background region files (image coordinates). Returns {module: [paths]}."""
    from ..io.output import atomic_outputs
    out = {}
    paths = []
    texts = {}
    for m in sim.events:
        cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
        out[m] = []
        for k, (dx, dy, r) in enumerate(REGIONS, start=1):
            p = Path(outdir) / f"bgd{k}{m}.reg"
            texts[p] = ("# Region file format: DS9 version 4.1\nimage\n"
                        f"circle({cx + dx:.2f},{cy + dy:.2f},{r:.2f})\n")
            out[m].append(p)
            paths.append(p)
    with atomic_outputs(paths, clobber) as o:
        for p, t in texts.items():
            Path(o[p]).write_text(t)
    return out


def step_extract(sim, regions, outdir, clobber=False):
    """Extract grouped spectra (30 counts per bin). Returns {module: [grouped pha paths]}."""
    from ..products.extract import extract_spectrum
    out = {}
    for m, regs in regions.items():
        out[m] = []
        for reg in regs:
            res = extract_spectrum(sim.events[m], reg, outprefix=reg.stem, outdir=outdir, grpmin=30,
                                   caldb=sim.caldb, clobber=clobber)
            out[m].append(res.grouped)
    return out


def step_bgdinfo(spectra, regions, images, ap, det, outdir, clobber=False):
    """Write bgdinfo.json (spectra alternate A, B per region). Returns its path.

    The fcxb norms of A and B are left free: the simulation draws a separate
    fCXB scale factor per module, so tying them (``fcxb_config.links``) would
    bias the fit.
    """
    from ..io.output import write_text
    n = len(regions["A"])
    bg, reg = [], []
    for k in range(n):
        for m in ("A", "B"):
            bg.append(Path(spectra[m][k]).name)
            reg.append(Path(regions[m][k]).name)
    info = {"bgfiles": bg, "regfiles": reg, "refimgf": Path(images["A"]).name,
            "bgdapfiles": {m: Path(ap[m]).name for m in ("A", "B")},
            "bgddetfiles": {m: [Path(p).name for p in det[m]] for m in ("A", "B")},
            "fcxb_config": {"links": []}, "intbgd_fix_line_ratios": True}
    path = Path(outdir) / "bgdinfo.json"
    write_text(json.dumps(info, indent=2) + "\n", path, clobber=clobber)
    return path


def step_fit(bgdinfo, outdir, sim, statistic="cstat", clobber=False):
    """Fit; returns the :class:`~nuskybgd.tasks.fit.FitOutputs`."""
    from ..calib.caldb import Caldb
    from .fit import fit_background
    return fit_background(bgdinfo, savefile=str(Path(outdir) / "bgdparams"), statistic=statistic,
                          clobber=clobber, caldb=Caldb(sim.caldb))


def injected_norms(fit, truth):
    """Injected value of every free parameter of the fit.

    Parameters
    ----------
    fit : FitOutputs
    truth : dict
        truth.json of the simulation.

    Returns
    -------
    list of dict
        source, group, name, component, fitted, error, injected, preset
        (value before the fit), pull.
    """
    st = fit.state
    rows = []
    for src in st.sources:
        labels = src.labels
        for i, p in enumerate(src.params):
            if not p.free:
                continue
            g, ip = divmod(i, src.npar)
            comp = labels[src.par_components[ip]]
            w = fit.weights[g]
            m = fit.spectra[g].module
            tm = truth["modules"][m]
            if src.name == "apbgd":
                inj = tm["apbgd_norm_per_aperture"] * w.ap
                key = "apbgd"
            else:
                key = f"intbgd.{comp}" if src.name == "intbgd" else src.name
                inj = float(np.sum(np.asarray(w.area) * np.asarray(tm["per_pixel_norm"][key])))
            rows.append(dict(source=src.name, group=g + 1, name=src.par_names[ip], component=comp, key=key,
                             fitted=p.value, error=p.error, injected=inj,
                             pull=(p.value - inj) / p.error if p.error else None))
    return rows


def demo_environment():
    """Point the demo at the shared data when nothing else is configured.

    The demo observation is built from the shared data folder (real aspect
    track and CALDB pieces), so when neither ``$NUSKYBGD_AUXIL`` nor the
    user cache holds the calibration bundle, and no AtomDB or apec template
    is configured, the copies in that folder are used (and said so).
    """
    from ..calib.auxil import auxil_path
    from ..simulate.observation import shared_root
    try:
        shared = shared_root()
    except NuskybgdError:
        return  # simulate will say what is missing
    try:
        auxil_path("ratios.json", download=False)
    except NuskybgdError:
        if (shared / "nuskybgd-auxil" / "ratios.json").is_file():
            os.environ["NUSKYBGD_AUXIL"] = str(shared / "nuskybgd-auxil")
            log.info("demo: using the calibration bundle in %s", os.environ["NUSKYBGD_AUXIL"])
    from ..models.apec import apec_source
    try:
        apec_source()
    except NuskybgdError:
        tmpl = sorted((shared / "apec").glob("*.txt"))
        if tmpl:
            os.environ["NUSKYBGD_APEC_TEMPLATE"] = str(tmpl[0])
            log.info("demo: no AtomDB found; using the apec template %s", tmpl[0])


def run(args):
    """Run ``nuskybgd demo``."""
    import time

    from ..simulate.observation import check_simulation_parameters
    check_simulation_parameters(seed=args.seed, exposure=args.exposure)  # before anything is written
    demo_environment()
    out = Path(args.outdir)
    if out.exists() and not out.is_dir():
        raise NuskybgdError(f"{out}: output folder is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps = []

    def mark(name):
        steps.append((name, time.perf_counter() - t0))
        log.info("demo: %s done (%.1f s)", name, steps[-1][1])

    sim = step_simulate(out, args.seed, args.exposure, args.clobber)
    mark("simulate")
    images = step_images(sim, out, args.clobber)
    aspects = step_aspect(sim, out, args.clobber)
    imaps = step_instrmap(sim, out, args.clobber)
    ap, det = step_projbgd(images, imaps, aspects, out, args.clobber)
    mark("images, aspect, instrument maps, projections")
    regions = step_regions(sim, out, args.clobber)
    spectra = step_extract(sim, regions, out, args.clobber)
    mark("regions and spectra")
    info = step_bgdinfo(spectra, regions, images, ap, det, out, args.clobber)
    fit = step_fit(info, out, sim, args.statistic, args.clobber)
    mark("fit")
    rows = injected_norms(fit, sim.truth)
    print(f"{'source':<7} {'spec':>4} {'component':<11} {'injected':>12} {'fitted':>12} {'error':>11} {'pull':>6}")
    for r in rows:
        err = f"{r['error']:.4g}" if r["error"] else "-"
        pull = f"{r['pull']:+.2f}" if r["pull"] is not None else "-"
        print(f"{r['source']:<7} {r['group']:>4} {r['component']:<11} {r['injected']:>12.5g} {r['fitted']:>12.5g} "
              f"{err:>11} {pull:>6}")
    pulls = np.array([r["pull"] for r in rows if r["pull"] is not None])
    fi = fit.state.info["fit"]
    print(f"{fi['statistic']} = {fi['value']:.1f} for {fi['dof']} dof; pulls: mean {pulls.mean():+.2f}, "
          f"std {pulls.std():.2f} over {pulls.size} norms; total {time.perf_counter() - t0:.1f} s")
    print("outputs: " + ", ".join(str(p) for k, p in fit.paths.items() if k != "arfs" and p is not None))
    # spec, image and simplify on a source region (nuskybgd.fitting.apply)
    from ..analysis.demo import demo_apply, print_demo_apply
    apply_rows = demo_apply(out, info, fit.paths["json"], sim, args.clobber)
    mark("spec, image, simplify, spex")
    print_demo_apply(apply_rows)
    summary = {"rows": rows, "pull_mean": float(pulls.mean()), "pull_std": float(pulls.std()),
               "source_region": apply_rows,
               "steps_seconds": steps, "fit": fi}
    from ..io.output import write_text
    write_text(json.dumps(summary, indent=1, default=float) + "\n", out / "demo_summary.json", clobber=True)
    sys.stdout.flush()
    return 0
