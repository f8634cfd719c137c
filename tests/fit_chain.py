"""The simulated observation taken through the chain up to bgdinfo.json (session fixture ``fit_chain``).

Registered for every test by ``pytest_plugins`` in ``tests/conftest.py``:
counts images, aspect histograms, instrument maps, projections, the demo's
three background regions per module, their spectra and bgdinfo.json, plus a
source region (the demo's) with its spectrum for the prediction tests.
"""

import pytest

from nuskybgd.analysis import demo
from nuskybgd.calib.caldb import Caldb
from nuskybgd.io.regions import write_circle_regions
from nuskybgd.products.extract import extract_spectrum


@pytest.fixture(scope="session")
def fit_chain(simulated_obs, tmp_path_factory):
    """Images, projections, regions, spectra, bgdinfo.json and a source region of the simulated observation."""
    out = tmp_path_factory.mktemp("fitchain")
    sim = simulated_obs
    images = demo.step_images(sim, out)
    aspects = demo.step_aspect(sim, out)
    imaps = demo.step_instrmap(sim, out)
    ap, det = demo.step_projbgd(images, imaps, aspects, out)
    regions = demo.step_regions(sim, out)
    spectra = demo.step_extract(sim, regions, out)
    info = demo.step_bgdinfo(spectra, regions, images, ap, det, out)
    src = {}
    dx, dy, r = demo.DEMO_SOURCE_REGION
    for m in ("A", "B"):
        cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
        reg = out / f"src{m}.reg"
        write_circle_regions(reg, [(cx + dx, cy + dy, r)])
        res = extract_spectrum(sim.events[m], reg, outprefix=f"src{m}", outdir=out, grpmin=30, caldb=sim.caldb)
        src[m] = (reg, res.grouped)
    return dict(out=out, sim=sim, info=info, caldb=Caldb(sim.caldb), images=images, ap=ap, det=det,
                regions=regions, spectra=spectra, source=src)
