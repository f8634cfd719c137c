"""A synthetic sky field for the workflow tests: projected images, regions, CALDB RMFs, a fitted state.

The module-scoped fixture :func:`field` is registered for every test by
``pytest_plugins`` in ``tests/conftest.py``.
"""

import json
import os

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.calib.auxil import load_ratios
from nuskybgd.fitting.apply import group_component_counts
from nuskybgd.fitting.model import build_background_state
from nuskybgd.io.regions import write_circle_regions
from nuskybgd.io.xcm import format_xcm

NPIX = 1000


def field_header():
    h = fits.Header()
    h.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=500.5, CRPIX2=500.5, CRVAL1=150.0, CRVAL2=2.0,
             CDELT1=-2.45810736 / 3600, CDELT2=2.45810736 / 3600, CUNIT1="deg", CUNIT2="deg",
             RADESYS="FK5", EQUINOX=2000.0, PA_PNT=63.7, TELESCOP="NuSTAR")
    return h


def field_images():
    """Detector quadrants of a ~360-pixel footprint centred near (500, 480), smooth edges, gradient aperture."""
    y, x = np.mgrid[0:NPIX, 0:NPIX].astype(float)
    cx, cy = 505.0, 480.0
    s = 2.5
    fx = 1 / (1 + np.exp(-(x - cx) / s))
    fy = 1 / (1 + np.exp(-(y - cy) / s))
    edge = (1 / (1 + np.exp(-(x - (cx - 175)) / s)) * 1 / (1 + np.exp((x - (cx + 175)) / s))
            * 1 / (1 + np.exp(-(y - (cy - 175)) / s)) * 1 / (1 + np.exp((y - (cy + 175)) / s)))
    det = np.array([(1 - fx) * (1 - fy), fx * (1 - fy), fx * fy, (1 - fx) * fy]) * edge * 0.97
    ap = (1.0 + 1.2 * (x - cx + 175) / 350) * det.sum(0) * 2.4e-3
    return det, ap


BG_REGIONS = [(400, 380, 60), (610, 380, 55), (620, 590, 60)]
SRC_REGION = (420, 600, 50)


def write_region(path, circles, exclude=()):
    """DS9 region file of circles (x, y, r in 1-based image pixels); returns the path."""
    write_circle_regions(path, circles, exclude, precision=6, clobber=True)
    return path


@pytest.fixture(scope="module")
def field(tmp_path_factory, synthetic_caldb):
    """bgdinfo.json, background spectra drawn from the model, a 'fit' XCM and a source spectrum."""
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.fitting.weights import region_weights
    from nuskybgd.io.ogip import read_rmf, write_pha
    from nuskybgd.io.regions import region_mask
    from nuskybgd.models.background import component_templates

    old = os.environ.get("CALDB")
    os.environ["CALDB"] = str(synthetic_caldb)
    d = tmp_path_factory.mktemp("field")
    hdr = field_header()
    det, ap = field_images()
    for m in "AB":
        fits.PrimaryHDU(ap.astype(np.float32), header=hdr).writeto(d / f"bgdap{m}.fits")
        for k in range(4):
            fits.PrimaryHDU(det[k].astype(np.float32), header=hdr).writeto(d / f"det{k}{m}im.fits")
    det = np.array([fits.getdata(d / f"det{k}Aim.fits").astype(float) for k in range(4)])
    ap = fits.getdata(d / "bgdapA.fits").astype(float)
    cal = Caldb(synthetic_caldb)
    rmfs = {m: cal.rmf(f"FPM{m}", "DET0", "2021-01-01") for m in "AB"}
    presets = load_ratios()
    bgfiles, regfiles, specs, weights, masks = [], [], [], [], []
    for i, c in enumerate(BG_REGIONS):
        for m in "AB":
            reg = write_region(d / f"bgd{i + 1}{m}.reg", [c])
            mask = region_mask(reg, hdr, shape=(NPIX, NPIX), header=hdr)
            w = region_weights(mask, list(det), ap, name=str(reg))
            bgfiles.append(f"bgd{i + 1}{m}.pha")
            regfiles.append(reg.name)
            weights.append(w)
            masks.append(mask)
            specs.append({"file": f"bgd{i + 1}{m}.pha", "module": m, "rmf": str(rmfs[m]), "apbgd_arf": "x.arf",
                          "fcxb_arf": "y.arf", "diag_rmf": "diag.rmf"})
    st = build_background_state(specs, weights, presets)
    rng = np.random.default_rng(7)
    for s, i in st.free_parameters():
        s.params[i].value *= rng.uniform(0.7, 1.4)
    st.update_linked_values()
    expo = 4.0e4
    rmf_obj = {m: read_rmf(rmfs[m]) for m in "AB"}
    for g, (sp, w) in enumerate(zip(specs, weights), start=1):
        t = component_templates(rmf_obj[sp["module"]], sp["module"], w.frac, expo)
        mu = sum(group_component_counts(st, g, t).values())
        write_pha(d / sp["file"], rng.poisson(mu), expo, 1.0,
                  header={"INSTRUME": f"FPM{sp['module']}", "RESPFILE": str(rmfs[sp["module"]]),
                          "DATE-OBS": "2021-03-14T06:00:00"})
    (d / "fit.xcm").write_text(format_xcm(st))
    info = {"bgfiles": bgfiles, "regfiles": regfiles, "refimgf": "bgdapA.fits",
            "bgdapfiles": {"A": "bgdapA.fits", "B": "bgdapB.fits"},
            "bgddetfiles": {m: [f"det{k}{m}im.fits" for k in range(4)] for m in "AB"}}
    (d / "bgdinfo.json").write_text(json.dumps(info))
    # source spectra: background only, both modules, same region
    src_reg = write_region(d / "src.reg", [SRC_REGION])
    for m in "AB":
        mask = region_mask(src_reg, hdr, shape=(NPIX, NPIX), header=hdr)
        write_pha(d / f"src{m}.pha", rng.poisson(50 * np.ones(4096) / 4096), expo, 1.0,
                  header={"INSTRUME": f"FPM{m}", "RESPFILE": str(rmfs[m]), "DATE-OBS": "2021-03-14T06:00:00"})
    write_region(d / "off.reg", [(950, 950, 20)])
    yield {"dir": d, "state": st, "weights": weights, "masks": masks, "rmfs": rmfs, "det": det, "ap": ap,
           "expo": expo, "hdr": hdr}
    if old is None:
        os.environ.pop("CALDB", None)
    else:
        os.environ["CALDB"] = old


def chdir(path):
    class _C:
        def __enter__(self):
            self.old = os.getcwd()
            os.chdir(path)

        def __exit__(self, *a):
            os.chdir(self.old)
    return _C()


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]
