"""The demo's workflow after the fit: spec, image and simplify on a source region."""

import sys
from pathlib import Path

import numpy as np

from ..calib.caldb import Caldb
from ..io.events import read_events
from ..io.output import atomic_outputs
from ..io.regions import region_mask
from ..products.extract import events_in_mask, extract_spectrum
from ..sky.images import pi_range
from .images import make_images
from .setup import load_setup_header
from .simplify import run_simplify
from .spec import BANDS, run_spec
from .spex import run_spex

__all__ = ["DEMO_SOURCE_REGION", "demo_apply", "print_demo_apply"]


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
            Path(o[p]).write_text("# Region file format: DS9 version 4.1\nimage\n"
                                  f"circle({cx + dx:.2f},{cy + dy:.2f},{r:.2f})\n")
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
