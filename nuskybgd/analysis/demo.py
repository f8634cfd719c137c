"""The demo: the whole chain on a simulated observation (``nuskybgd demo``).

Steps, each usable on its own: simulate an observation, make counts images,
aspect histograms, instrument maps and projections, write background
regions, extract their spectra, write bgdinfo.json, fit, and compare with
the injected truth; then spec, image and simplify on a source region
(:func:`demo_apply`). :func:`run_demo` runs them all.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..calib.auxil import auxil_path
from ..calib.caldb import Caldb
from ..errors import NuskybgdError
from ..io.events import read_events
from ..io.output import atomic_outputs, write_text
from ..io.regions import circle_regions, format_regions, region_mask
from ..models.apec import apec_source
from ..products.extract import events_in_mask, extract_spectrum
from ..simulate.observation import check_simulation_parameters, shared_root, simulate_observation
from ..sky.images import pi_range
from .aspecthist import make_aspect_histogram
from .fit import fit_background
from .images import make_images
from .instrmap import make_instrument_map
from .mkimgs import make_counts_image
from .projbgd import make_projections
from .setup import load_setup_header
from .simplify import run_simplify
from .spec import BANDS, run_spec
from .spex import run_spex

__all__ = ["REGIONS", "DEMO_SOURCE_REGION", "step_simulate", "step_images", "step_aspect", "step_instrmap",
           "step_projbgd", "step_regions", "step_extract", "step_bgdinfo", "step_fit", "injected_norms",
           "demo_environment", "demo_apply", "print_demo_apply", "print_injected_norms", "run_demo"]

log = logging.getLogger("nuskybgd")

#: Background regions: offsets (sky pixels) from the detectors' footprint centre and radius.
REGIONS = ((-80.0, -80.0, 50.0), (-80.0, 80.0, 50.0), (80.0, 80.0, 50.0))


def step_simulate(outdir, seed=1, exposure=50000.0, clobber=False):
    """Simulate the observation into ``outdir/sim``.

    Parameters
    ----------
    outdir : str or os.PathLike
        Output folder of the demo.
    seed : int
        Random seed of the simulation.
    exposure : float
        Exposure, s.
    clobber : bool
        Overwrite existing files.

    Returns
    -------
    nuskybgd.simulate.observation.SimulatedObs
    """
    sim_dir = Path(outdir) / "sim"
    return simulate_observation(sim_dir, seed=seed, exposure=exposure, clobber=clobber)


def step_images(sim, outdir, clobber=False):
    """Counts images 3-79 keV of both modules (the reference images).

    Parameters
    ----------
    sim : SimulatedObs
        The simulated observation.
    outdir : str or os.PathLike
        Output folder.
    clobber : bool
        Overwrite existing files.

    Returns
    -------
    dict
        Module (``"A"``, ``"B"``) -> path of its image.
    """
    out = {}
    for m, evt in sim.events.items():
        p = Path(outdir) / f"im{m}3to79keV.fits"
        make_counts_image(evt, 3.0, 79.0, out=p, clobber=clobber)
        out[m] = p
    return out


def step_aspect(sim, outdir, clobber=False):
    """Aspect histograms of both modules.

    Parameters
    ----------
    sim : SimulatedObs
        The simulated observation (DET1 aspect and GTIs).
    outdir : str or os.PathLike
        Output folder.
    clobber : bool
        Overwrite existing files.

    Returns
    -------
    dict
        Module -> path of its aspect histogram.
    """
    out = {}
    for m in sim.events:
        p = Path(outdir) / f"aspecthist{m}.fits"
        make_aspect_histogram(sim.det1[m], sim.gti[m], out=p, clobber=clobber)
        out[m] = p
    return out


def step_instrmap(sim, outdir, clobber=False):
    """Instrument maps with bad pixels of both modules.

    Parameters
    ----------
    sim : SimulatedObs
        The simulated observation (events and CALDB).
    outdir : str or os.PathLike
        Output folder.
    clobber : bool
        Overwrite existing files.

    Returns
    -------
    dict
        Module -> path of ``newinstrmap<module>.fits``.
    """
    out = {}
    for m, evt in sim.events.items():
        make_instrument_map(evt, prefix=str(Path(outdir)) + os.sep, caldb=sim.caldb, clobber=clobber)
        out[m] = Path(outdir) / f"newinstrmap{m}.fits"
    return out


def step_projbgd(images, instrmaps, aspects, outdir, clobber=False):
    """Projected aperture and detector images of both modules.

    Parameters
    ----------
    images : dict
        Module -> reference image path (:func:`step_images`).
    instrmaps : dict
        Module -> instrument map path (:func:`step_instrmap`).
    aspects : dict
        Module -> aspect histogram path (:func:`step_aspect`).
    outdir : str or os.PathLike
        Output folder.
    clobber : bool
        Overwrite existing files.

    Returns
    -------
    (dict, dict)
        Module -> aperture image path, and module -> the four detector
        image paths.
    """
    ap, det = {}, {}
    for m in images:
        p = Path(outdir) / f"bgdap{m}.fits"
        make_projections(images[m], m, instrmaps[m], aspects[m], p, detectors=(1, 2, 3, 4), outdir=outdir,
                         clobber=clobber)
        ap[m] = p
        det[m] = [Path(outdir) / f"det{k}{m}im.fits" for k in range(4)]
    return ap, det


def step_regions(sim, outdir, clobber=False):
    """Write the background region files (image coordinates).

    Parameters
    ----------
    sim : SimulatedObs
        The simulated observation (footprint centre per module).
    outdir : str or os.PathLike
        Output folder.
    clobber : bool
        Overwrite existing files.

    Returns
    -------
    dict
        Module -> list of region file paths.
    """
    out = {}
    paths = []
    texts = {}
    for m in sim.events:
        cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
        out[m] = []
        for k, (dx, dy, r) in enumerate(REGIONS, start=1):
            p = Path(outdir) / f"bgd{k}{m}.reg"
            texts[p] = format_regions(circle_regions([(cx + dx, cy + dy, r)]))
            out[m].append(p)
            paths.append(p)
    with atomic_outputs(paths, clobber) as o:
        for p, t in texts.items():
            Path(o[p]).write_text(t)
    return out


def step_extract(sim, regions, outdir, clobber=False):
    """Extract grouped spectra (at least 30 counts per bin).

    Parameters
    ----------
    sim : SimulatedObs
        The simulated observation (events and CALDB).
    regions : dict
        Module -> region file paths (:func:`step_regions`).
    outdir : str or os.PathLike
        Output folder.
    clobber : bool
        Overwrite existing files.

    Returns
    -------
    dict
        Module -> grouped spectrum paths, one per region.
    """
    out = {}
    for m, regs in regions.items():
        out[m] = []
        for reg in regs:
            res = extract_spectrum(sim.events[m], reg, outprefix=reg.stem, outdir=outdir, grpmin=30,
                                   caldb=sim.caldb, clobber=clobber)
            out[m].append(res.grouped)
    return out


def step_bgdinfo(spectra, regions, images, ap, det, outdir, clobber=False):
    """Write bgdinfo.json (spectra alternate A, B per region).

    The fcxb norms of A and B are left free: the simulation draws a separate
    fCXB scale factor per module, so tying them (``fcxb_config.links``) would
    bias the fit.

    Parameters
    ----------
    spectra : dict
        Module -> grouped spectrum paths (:func:`step_extract`).
    regions : dict
        Module -> region file paths (:func:`step_regions`).
    images : dict
        Module -> reference image path.
    ap : dict
        Module -> aperture image path (:func:`step_projbgd`).
    det : dict
        Module -> the four detector image paths.
    outdir : str or os.PathLike
        Output folder.
    clobber : bool
        Overwrite an existing bgdinfo.json.

    Returns
    -------
    pathlib.Path
        Path of bgdinfo.json.
    """
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
    """Fit the background model to the demo spectra.

    Parameters
    ----------
    bgdinfo : str or os.PathLike
        The bgdinfo.json of :func:`step_bgdinfo`.
    outdir : str or os.PathLike
        Output folder (``bgdparams`` files).
    sim : SimulatedObs
        The simulated observation (its CALDB).
    statistic : {"cstat", "chi"}
        Fit statistic.
    clobber : bool
        Overwrite existing outputs.

    Returns
    -------
    FitOutputs
        See :class:`~nuskybgd.analysis.fit.FitOutputs`.
    """
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
    try:
        apec_source()
    except NuskybgdError:
        tmpl = sorted((shared / "apec").glob("*.txt"))
        if tmpl:
            os.environ["NUSKYBGD_APEC_TEMPLATE"] = str(tmpl[0])
            log.info("demo: no AtomDB found; using the apec template %s", tmpl[0])


def print_injected_norms(rows, file=None):
    """Print the fitted norms against the injected ones.

    Parameters
    ----------
    rows : list of dict
        From :func:`injected_norms`.
    file : file-like, optional
        Default ``sys.stdout``.
    """
    file = file or sys.stdout
    print(f"{'source':<7} {'spec':>4} {'component':<11} {'injected':>12} {'fitted':>12} {'error':>11} {'pull':>6}",
          file=file)
    for r in rows:
        err = f"{r['error']:.4g}" if r["error"] else "-"
        pull = f"{r['pull']:+.2f}" if r["pull"] is not None else "-"
        print(f"{r['source']:<7} {r['group']:>4} {r['component']:<11} {r['injected']:>12.5g} {r['fitted']:>12.5g} "
              f"{err:>11} {pull:>6}", file=file)


#: Demo source region: offset from the detectors' footprint centre and radius (sky pixels).
DEMO_SOURCE_REGION = (-135.0, 0.0, 35.0)

def demo_apply(outdir, bgdinfo, fit, sim, clobber=False, bands=BANDS[:3]):
    """Demo steps after the fit: spec, image, simplify and spex on a source region.

    A region away from the simulated point source is extracted for both
    modules; ``spec`` predicts its background, ``image`` makes the model
    images (3-79 keV), ``simplify`` the background-only state and ``spex``
    the SPEX files (source sector with the CALDB on-axis ARF, the
    simulation's source response). The
    predicted background is compared with the injected background events in
    the region (the simulation tags every event with its component).

    Parameters
    ----------
    outdir : str or os.PathLike
        Demo folder (holds bgdinfo.json and the fit).
    bgdinfo, fit : str or os.PathLike
        bgdinfo.json and the fit JSON.
    sim : nuskybgd.simulate.observation.SimulatedObs
    clobber : bool
    bands : sequence of (float, float)
        Bands compared (keV).

    Returns
    -------
    list of dict
        Per module and band: ``predicted`` counts mu, ``sigma_fit`` (1-sigma
        error of mu from the fit covariance), ``injected_background`` events
        N, ``source_events``, ``pull`` ``(N - mu) / sqrt(mu + sigma_fit^2)``
        and ``pull_poisson_only`` ``(N - mu) / sqrt(mu)``.
    """

    out = Path(outdir)
    regs, phas = [], []
    dx, dy, r = DEMO_SOURCE_REGION
    reg_paths = {m: out / f"src{m}.reg" for m in ("A", "B")}
    with atomic_outputs(list(reg_paths.values()), clobber) as o:
        for m, p in reg_paths.items():
            cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
            Path(o[p]).write_text(format_regions(circle_regions([(cx + dx, cy + dy, r)])))
    for m in ("A", "B"):
        res = extract_spectrum(sim.events[m], reg_paths[m], outprefix=f"src{m}", outdir=out, grpmin=30,
                               caldb=sim.caldb, clobber=clobber)
        regs.append(str(reg_paths[m]))
        phas.append(str(res.grouped))
    spec = run_spec(bgdinfo, fit, regs, phas, savefile=str(out / "bgd_src"), clobber=clobber, caldb=sim.caldb)
    make_images(bgdinfo, fit, 3.0, 79.0, prefix=str(out) + "/img_", evtfiles=[str(sim.events[m]) for m in ("A", "B")],
                clobber=clobber, caldb=sim.caldb)
    run_simplify(bgdinfo, out / "bgd_src.xcm", savefile=str(out / "bgd_only_src"), clobber=clobber)
    cal = Caldb(sim.caldb)
    run_spex(bgdinfo, fit, regs, phas, arffiles=[str(cal.query("SPECRESP", f"FPM{m}").path) for m in ("A", "B")],
             savefile=str(out / "bgd_src"), clobber=clobber, caldb=sim.caldb)

    rows = []
    for k, m in enumerate(("A", "B")):
        ev = read_events(sim.events[m], columns=("PI", "X", "Y"))
        hdr = load_setup_header(bgdinfo)
        mask = region_mask(reg_paths[m], hdr, shape=(hdr["NAXIS2"], hdr["NAXIS1"]), header=hdr)
        sel = events_in_mask(ev.columns["X"], ev.columns["Y"], mask)
        tags = sim.event_components(m)
        n_comp = len(sim.truth["modules"][m]["component_order"])
        bg = sel & (tags < n_comp)
        pi = ev.columns["PI"]
        for a, b in bands:
            first, last = pi_range(a, b)
            n = int(np.count_nonzero(bg & (pi >= first) & (pi <= last)))
            n_src = int(np.count_nonzero(sel & (tags >= n_comp) & (pi >= first) & (pi <= last)))
            mu = spec["sources"][k]["bands"][f"{a:g}-{b:g}"]
            sig = spec["sources"][k]["band_errors"][f"{a:g}-{b:g}"]
            var = mu + sig ** 2 if np.isfinite(sig) else mu
            rows.append({"module": m, "band": f"{a:g}-{b:g}", "predicted": mu, "sigma_fit": sig,
                         "injected_background": n, "source_events": n_src,
                         "pull": (n - mu) / np.sqrt(var) if var > 0 else float("nan"),
                         "pull_poisson_only": (n - mu) / np.sqrt(mu) if mu > 0 else float("nan")})
    return rows

def print_demo_apply(rows, file=None):
    """Print the demo's predicted-vs-injected background table.

    Parameters
    ----------
    rows : list of dict
        From :func:`demo_apply`.
    file : file-like, optional
        Default ``sys.stdout``.
    """
    file = file or sys.stdout
    print("background in the source region (spec prediction vs injected background events):", file=file)
    print(f"{'module':<6} {'band keV':<9} {'predicted +- sigma_fit':>22} {'injected':>9} {'pull':>6} "
          f"{'pull(Poisson)':>13} {'source ev.':>10}", file=file)
    for r in rows:
        pred = f"{r['predicted']:.1f} +- {r['sigma_fit']:.1f}"
        print(f"FPM{r['module']:<3} {r['band']:<9} {pred:>22} {r['injected_background']:>9d} "
              f"{r['pull']:>+6.2f} {r['pull_poisson_only']:>+13.2f} {r['source_events']:>10d}", file=file)
    print("pull = (injected - predicted) / sqrt(predicted + sigma_fit^2); pull(Poisson) = "
          "(injected - predicted) / sqrt(predicted); sigma_fit from the fit covariance", file=file)


def run_demo(outdir, seed=1, exposure=50000.0, statistic="cstat", clobber=False, file=None):
    """Run the whole demo chain and print its tables.

    Parameters
    ----------
    outdir : str or os.PathLike
        Output folder (created).
    seed : int
        Random seed of the simulation.
    exposure : float
        Exposure, s.
    statistic : {"cstat", "chi"}
        Fit statistic.
    clobber : bool
        Replace existing outputs.
    file : file-like, optional
        Where the tables go (default ``sys.stdout``).

    Returns
    -------
    dict
        The summary written to ``outdir/demo_summary.json``: ``rows``
        (:func:`injected_norms`), pull mean and standard deviation,
        ``source_region`` (:func:`demo_apply`), ``steps_seconds``, ``fit``.
    """
    file = file or sys.stdout
    check_simulation_parameters(seed=seed, exposure=exposure)  # before anything is written
    demo_environment()
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise NuskybgdError(f"{out}: output folder is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps = []

    def mark(name):
        steps.append((name, time.perf_counter() - t0))
        log.info("demo: %s done (%.1f s)", name, steps[-1][1])

    sim = step_simulate(out, seed, exposure, clobber)
    mark("simulate")
    images = step_images(sim, out, clobber)
    aspects = step_aspect(sim, out, clobber)
    imaps = step_instrmap(sim, out, clobber)
    ap, det = step_projbgd(images, imaps, aspects, out, clobber)
    mark("images, aspect, instrument maps, projections")
    regions = step_regions(sim, out, clobber)
    spectra = step_extract(sim, regions, out, clobber)
    mark("regions and spectra")
    info = step_bgdinfo(spectra, regions, images, ap, det, out, clobber)
    fit = step_fit(info, out, sim, statistic, clobber)
    mark("fit")
    rows = injected_norms(fit, sim.truth)
    print_injected_norms(rows, file)
    pulls = np.array([r["pull"] for r in rows if r["pull"] is not None])
    fi = fit.state.info["fit"]
    print(f"{fi['statistic']} = {fi['value']:.1f} for {fi['dof']} dof; pulls: mean {pulls.mean():+.2f}, "
          f"std {pulls.std():.2f} over {pulls.size} norms; total {time.perf_counter() - t0:.1f} s", file=file)
    print("outputs: " + ", ".join(str(p) for k, p in fit.paths.items() if k != "arfs" and p is not None), file=file)
    # spec, image and simplify on a source region
    apply_rows = demo_apply(out, info, fit.paths["json"], sim, clobber)
    mark("spec, image, simplify, spex")
    print_demo_apply(apply_rows, file)
    summary = {"rows": rows, "pull_mean": float(pulls.mean()), "pull_std": float(pulls.std()),
               "source_region": apply_rows,
               "steps_seconds": steps, "fit": fi}
    write_text(json.dumps(summary, indent=1, default=float) + "\n", out / "demo_summary.json", clobber=True)
    file.flush()
    return summary
