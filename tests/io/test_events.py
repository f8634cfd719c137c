"""Event files, GTIs, bad pixels, DET1 reference points and the sky WCS."""

import logging
import warnings

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.constants import SKY_PIXEL_DEG
from nuskybgd.errors import NuskybgdError
from nuskybgd.io.events import (
    module_from_header,
    read_badpix,
    read_det1_refpoint,
    read_events,
    read_gti,
    sky_wcs,
)

SUN = "events/nu90410111001A06_cl_sunpos.evt"
CRAB = "events/nu10302001006A01_crab_time_pi.evt.gz"
OBS = "obs_80415201001"


def _raw(path, ext, col):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as h:
            return np.array(h[ext].data[col])


def test_solar_events_all_columns_no_warning(real):
    path = real / SUN
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the string-TCRVL VerifyWarning must be silenced
        ev = read_events(path)
    assert ev.module == "A"
    raw_det1x = _raw(path, "EVENTS", "DET1X")
    assert len(ev) == raw_det1x.size
    assert set(ev.columns) == {"TIME", "PI", "DET_ID", "RAWX", "RAWY", "GRADE", "DET1X", "DET1Y", "X", "Y"}
    null = raw_det1x == -4095
    assert null.sum() > 0
    assert ev.columns["DET1X"].dtype == np.float64
    np.testing.assert_array_equal(np.isnan(ev.columns["DET1X"]), null)
    np.testing.assert_array_equal(ev.columns["DET1X"][~null], raw_det1x[~null])
    # NaN-safe: a histogram with an explicit range ignores the null rows
    h, _ = np.histogram(ev.columns["DET1X"], bins=360, range=(0.5, 360.5))
    assert h.sum() == (~null).sum()
    np.testing.assert_array_equal(ev.columns["PI"], _raw(path, "EVENTS", "PI"))
    start, stop = ev.gti
    np.testing.assert_array_equal(start, _raw(path, "GTI", "START"))
    assert ev.badpix == []


def test_solar_sky_wcs_string_tcrvl(real, caplog):
    ev = read_events(real / SUN)
    with caplog.at_level(logging.WARNING, logger="nuskybgd"):
        w = sky_wcs(ev)
    # TCRVL13/14 are the strings '0.0'; the scale is labelled deg but is arcsec
    np.testing.assert_allclose(w.wcs.crval, [0.0, 0.0])
    np.testing.assert_allclose(w.wcs.crpix, [1500.0, 1500.0])
    np.testing.assert_allclose(w.wcs.cdelt, [-SKY_PIXEL_DEG, SKY_PIXEL_DEG], rtol=1e-12)
    assert w.pixel_shape == (3000, 3000)
    assert "arcsec" in caplog.text


def test_crab_events_badpix_gti_and_orphan_sky_keywords(real):
    path = real / CRAB
    ev = read_events(path)
    assert ev.module == "A"
    assert set(ev.columns) == {"TIME", "PI"}
    np.testing.assert_array_equal(ev.columns["TIME"], _raw(path, "EVENTS", "TIME"))
    start, stop = ev.gti
    assert start.size == _raw(path, "GTI", "START").size
    assert np.all(np.diff(start) > 0) and np.all(stop > start)
    assert [b.det for b in ev.badpix] == [0, 1, 2, 3]
    with fits.open(path) as h:
        bp = [x for x in h if x.name == "BADPIX"]
        for table, hdu in zip(ev.badpix, bp):
            np.testing.assert_array_equal(table.rawx, hdu.data["RAWX"])
            np.testing.assert_array_equal(table.time_stop, hdu.data["TIME_STOP"])
            np.testing.assert_array_equal(table.badflag, hdu.data["BADFLAG"])
            assert table.badflag.shape == (len(hdu.data), 16)
            assert table.tstart == hdu.header["TSTART"] and table.tstop == hdu.header["TSTOP"]
            assert table.source == str(path) and table.instrume == "FPMA"
    # X/Y columns were dropped but their keywords (column numbers 38/39) kept
    w = ev.wcs
    np.testing.assert_allclose(w.wcs.crval, [83.63303, 22.01447])
    np.testing.assert_allclose(w.wcs.crpix, [500.5, 500.5])
    assert w.pixel_shape == (1000, 1000)
    ra, dec = w.all_pix2world(500.5, 500.5, 1)
    np.testing.assert_allclose([ra, dec], [83.63303, 22.01447], atol=1e-10)
    # one pixel east along X decreases RA by ~ pixel / cos(dec)
    ra2, _ = w.all_pix2world(501.5, 500.5, 1)
    np.testing.assert_allclose((ra - ra2) * np.cos(np.radians(dec)), SKY_PIXEL_DEG, rtol=1e-6)


def test_sky_wcs_from_header_numeric_and_string_equal():
    h = fits.Header()
    for n, t, v, d in ((5, "RA---TAN", 150.0, -SKY_PIXEL_DEG), (6, "DEC--TAN", 2.2, SKY_PIXEL_DEG)):
        h[f"TTYPE{n}"] = "X" if n == 5 else "Y"
        h[f"TCTYP{n}"], h[f"TCRVL{n}"], h[f"TCDLT{n}"], h[f"TCRPX{n}"] = t, v, d, 500.5
        h[f"TLMAX{n}"] = 1000
    w1 = sky_wcs(h)
    h["TCRVL5"], h["TCRVL6"] = "150.0", " 2.2 "
    w2 = sky_wcs(h)
    pix = np.array([[1.0, 1.0], [1000.0, 1.0], [333.3, 777.7]])
    np.testing.assert_allclose(w1.all_pix2world(pix, 1), w2.all_pix2world(pix, 1), rtol=0, atol=1e-12)
    h["TCRVL5"] = "abc"
    with pytest.raises(NuskybgdError, match="TCRVL5"):
        sky_wcs(h, path="x.evt")
    with pytest.raises(NuskybgdError, match="no sky X/Y column keywords"):
        sky_wcs(fits.Header({"TTYPE1": "TIME"}), path="x.evt")


def test_read_gti_stdgti(real):
    path = real / OBS / "nu80415201001A06_gti.fits"
    start, stop = read_gti(path)
    np.testing.assert_array_equal(start, _raw(path, "STDGTI", "START"))
    np.testing.assert_array_equal(stop, _raw(path, "STDGTI", "STOP"))


def test_read_gti_from_event_file(real):
    start, stop = read_gti(real / CRAB)
    assert start.size == stop.size == _raw(real / CRAB, "GTI", "START").size


@pytest.mark.parametrize("name", ["nu80415201001A_bp.fits", "nu80415201001B_bp.fits",
                                  "nu80415201001A_hp.fits", "nu80415201001B_hp.fits"])
def test_read_badpix_files(real, name):
    path = real / OBS / name
    tables = read_badpix(path)
    with fits.open(path) as h:
        exts = [x for x in h if "BADPIX" in x.name]
        assert len(tables) == len(exts) == 4
        for t, x in zip(tables, exts):
            assert t.det == int(x.header["DETNAM"].strip()[-1])
            assert t.rawx.size == t.rawy.size == t.time.size == len(x.data)
            np.testing.assert_array_equal(t.rawy, x.data["RAWY"])
            assert t.tstart == x.header["TSTART"]


def test_read_badpix_without_badpix_extension(real):
    with pytest.raises(NuskybgdError, match="no extension with BADPIX"):
        read_badpix(real / OBS / "nu80415201001A06_gti.fits")


def test_read_det1_refpoint(real):
    path = real / OBS / "nu80415201001B_det1.fits"
    t, x, y, header = read_det1_refpoint(path)
    assert t.size == x.size == y.size == _raw(path, "DET1_REFPOINT", "TIME").size
    np.testing.assert_array_equal(x, _raw(path, "DET1_REFPOINT", "X_DET1"))
    assert header["INSTRUME"].strip() == "FPMB"
    assert module_from_header(header, path) == "B"


# ---- bad input ------------------------------------------------------------

def _event_file(path, instrume="FPMA", with_gti=True, pi_null=None, extra=None):
    n = 5
    cols = [fits.Column(name="TIME", format="D", array=np.arange(n, dtype=float)),
            fits.Column(name="PI", format="J", array=np.array([10, 20, -4095, 30, 40]), null=pi_null)]
    ev = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    if instrume is not None:
        ev.header["INSTRUME"] = instrume
    hdus = [fits.PrimaryHDU(), ev]
    if with_gti:
        hdus.append(fits.BinTableHDU.from_columns(
            [fits.Column(name="START", format="D", array=[2.0, 0.0]),
             fits.Column(name="STOP", format="D", array=[3.0, 1.0])], name="GTI"))
    if extra is not None:
        hdus.append(extra)
    fits.HDUList(hdus).writeto(path)
    return path


def test_pi_nulls_reported(tmp_path):
    ev = read_events(_event_file(tmp_path / "e.evt", pi_null=-4095))
    np.testing.assert_array_equal(ev.nulls["PI"], [False, False, True, False, False])
    np.testing.assert_array_equal(ev.gti[0], [0.0, 2.0])  # sorted by start


def test_no_gti_is_none(tmp_path):
    assert read_events(_event_file(tmp_path / "e.evt", with_gti=False)).gti is None


@pytest.mark.parametrize("instrume,match", [("XRT", "INSTRUME is 'XRT', expected FPMA or FPMB"),
                                            (None, "INSTRUME missing")])
def test_wrong_instrument(tmp_path, instrume, match):
    path = _event_file(tmp_path / "bad.evt", instrume=instrume)
    with pytest.raises(NuskybgdError, match=match) as exc:
        read_events(path)
    assert str(path) in str(exc.value)


def test_no_events_extension(real):
    with pytest.raises(NuskybgdError, match="no EVENTS extension"):
        read_events(real / OBS / "nu80415201001A06_gti.fits")


def test_missing_event_file(tmp_path):
    with pytest.raises(NuskybgdError, match="event file not found"):
        read_events(tmp_path / "none.evt")


def test_badpix_bad_detnam(tmp_path):
    bp = fits.BinTableHDU.from_columns([fits.Column(name="RAWX", format="B", array=[1]),
                                        fits.Column(name="RAWY", format="B", array=[2])], name="BADPIX")
    bp.header["DETNAM"] = "DET7"
    path = _event_file(tmp_path / "e.evt", extra=bp)
    with pytest.raises(NuskybgdError, match="DETNAM DET7, expected DET0..DET3"):
        read_events(path)


def test_gti_stop_before_start(tmp_path):
    path = tmp_path / "gti.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="START", format="D", array=[5.0]),
         fits.Column(name="STOP", format="D", array=[1.0])], name="STDGTI")]).writeto(path)
    with pytest.raises(NuskybgdError, match="STOP < START"):
        read_gti(path)


def test_refpoint_nan(tmp_path):
    path = tmp_path / "det1.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name=c, format="D", array=[1.0, np.nan]) for c in ("TIME", "X_DET1", "Y_DET1")],
        name="DET1_REFPOINT")]).writeto(path)
    with pytest.raises(NuskybgdError, match="NaN"):
        read_det1_refpoint(path)
