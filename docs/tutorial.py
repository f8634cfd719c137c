"""nuskybgd tutorial: the background of a NuSTAR observation, from Python.

Run it as ``python docs/tutorial.py [OUTDIR]`` (default ``tutorial_out``); the
test suite runs it too (``tests/analysis/test_tutorial.py``). It needs the
calibration bundle and an apec template or AtomDB, as the demo does
(``NUSKYBGD_AUXIL``, ``NUSKYBGD_APEC_TEMPLATE``; see the README).

The steps:

1. simulate an observation (events of both focal-plane modules with the four
   background components and a point source, GTIs, the aspect track and a
   small CALDB); with real data, start at step 2 with your event files;
2. make the sky products the background model needs: a counts image (the
   WCS of the regions), aspect histograms, instrument maps and the projected
   aperture and detector images;
3. choose background regions away from the source and extract their spectra;
4. fit the background model with :class:`nuskybgd.Background`;
5. predict the background in a source region and compare it with the
   background events the simulation put there;
6. make background model images and write the fit for XSPEC and Sherpa.

Nothing is written to disk by :class:`nuskybgd.Background` unless
:meth:`~nuskybgd.Background.write` is called; steps 1-3 write the usual
FITS products.
"""

import sys
from pathlib import Path

import numpy as np

import nuskybgd
from nuskybgd.analysis.aspecthist import make_aspect_histogram
from nuskybgd.analysis.instrmap import make_instrument_map
from nuskybgd.analysis.mkimgs import make_counts_image
from nuskybgd.analysis.projbgd import make_projections
from nuskybgd.io.events import read_events
from nuskybgd.io.regions import region_mask, write_circle_regions
from nuskybgd.io.skyfiles import read_image
from nuskybgd.products.extract import events_in_mask, extract_spectrum
from nuskybgd.simulate.observation import simulate_observation
from nuskybgd.sky.images import pi_range


def main(outdir="tutorial_out", seed=3, exposure=30000.0):
    """Run the tutorial in ``outdir``; return what it computed (for the tests)."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)

    # 1. A simulated observation: sim.events[m], sim.gti[m], sim.det1[m] are
    #    the files of module m ("A", "B"); sim.caldb a CALDB folder; sim.truth
    #    what was injected.
    sim = simulate_observation(out / "sim", seed=seed, exposure=exposure, clobber=True)

    # 2. Sky products of each module.
    images, ap, det = {}, {}, {}
    for m in ("A", "B"):
        _, _, images[m] = make_counts_image(sim.events[m], 3.0, 79.0, out=out / f"im{m}.fits", clobber=True)
        _, aspect = make_aspect_histogram(sim.det1[m], sim.gti[m], out=out / f"aspect{m}.fits", clobber=True)
        _, instrmap = make_instrument_map(sim.events[m], prefix=f"{out}/", caldb=sim.caldb, clobber=True)
        ap[m] = out / f"bgdap{m}.fits"
        make_projections(images[m], m, instrmap, aspect, ap[m], outdir=out, clobber=True)
        det[m] = [out / f"det{k}{m}im.fits" for k in range(4)]

    # 3. Three background regions per module (DS9 image coordinates, around
    #    the centre of the detectors' footprint) and their spectra (grouped
    #    to 30 counts per bin, with RMFs from the CALDB).
    spectra, regions = [], []
    for k, (dx, dy) in enumerate(((-80, -80), (-80, 80), (80, 80)), start=1):
        for m in ("A", "B"):
            cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
            reg = out / f"bgd{k}{m}.reg"
            write_circle_regions(reg, [(cx + dx, cy + dy, 50.0)], clobber=True)
            res = extract_spectrum(sim.events[m], reg, outprefix=f"bgd{k}{m}", outdir=out, grpmin=30,
                                   caldb=sim.caldb, clobber=True)
            spectra.append(res.grouped)
            regions.append(reg)

    # 4. The background model, fitted (C-statistic, 3-150 keV). The same
    #    object can be made from a bgdinfo.json: Background.from_bgdinfo(path).
    bg = nuskybgd.Background(spectra, regions, images["A"], ap, det, caldb=sim.caldb)
    result = bg.fit(statistic="cstat")
    print(f"C-stat {result.statistic:.1f} for {result.dof} dof; {len(result.parameters)} free norms")
    for name, value, error in list(result.parameters)[:4]:
        print(f"  {name:<28} {value:.4g} +- {error:.2g}")

    # 5. The background of a source region: counts per channel of the source
    #    spectrum, per band, and their 1-sigma errors from the fit covariance.
    m = "A"
    cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
    src_reg = out / "srcA.reg"
    write_circle_regions(src_reg, [(cx - 135.0, cy, 35.0)], clobber=True)
    src = extract_spectrum(sim.events[m], src_reg, outprefix="srcA", outdir=out, grpmin=30, caldb=sim.caldb,
                           clobber=True)
    pred = bg.predict(src_reg, src.grouped)
    #    The simulation tags every event with its component, so the background
    #    events actually in the region can be counted.
    ev = read_events(sim.events[m], columns=("PI", "X", "Y"))
    ref = read_image(images[m], "reference image")[1]
    mask = region_mask(src_reg, ref, shape=(ref["NAXIS2"], ref["NAXIS1"]), header=ref)
    inside = events_in_mask(ev.columns["X"], ev.columns["Y"], mask)
    is_background = sim.event_components(m) < len(sim.truth["modules"][m]["component_order"])
    first, last = pi_range(3.0, 79.0)
    in_band = (ev.columns["PI"] >= first) & (ev.columns["PI"] <= last)
    injected = int(np.count_nonzero(inside & is_background & in_band))
    mu, sigma = pred.bands["3-79"], pred.band_errors["3-79"]
    print(f"source region, 3-79 keV: predicted {mu:.1f} +- {sigma:.1f} (fit), injected background {injected}")

    # 6. Model images (counts per sky pixel) and the written fit: XCM for
    #    XSPEC (@bgdparams.xcm), a Sherpa script, JSON, a plot and a log.
    imgs = bg.images(3.0, 20.0)
    print(f"model image FPMA 3-20 keV: {imgs['A']['total'].sum():.0f} counts")
    files = bg.write(out / "bgdparams", clobber=True)
    print("wrote", ", ".join(str(files[k]) for k in ("xcm", "json", "sherpa", "png")))
    return {"result": result, "prediction": pred, "injected": injected, "images": imgs, "files": files}


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tutorial_out")
