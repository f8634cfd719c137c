"""open_fits / find_hdu: every real file opens; damaged files give one-line errors."""

import gzip
import warnings

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.errors import NuskybgdError
from nuskybgd.io.fitsfile import find_hdu, find_hdus, header_value, open_fits

REAL_FILES = [
    ("real", "events/nu90410111001A06_cl_sunpos.evt", 3),
    ("real", "events/nu10302001006A01_crab_time_pi.evt.gz", 7),
    ("real", "obs_80415201001/nu80415201001A06_chu2_S_cl_grade0_sk.img.gz", 2),
    ("real", "obs_80415201001/nu80415201001B06_chu2_S_cl_grade0_sk.img.gz", 2),
    ("real", "obs_80415201001/nu80415201001A06_gti.fits", 2),
    ("real", "obs_80415201001/nu80415201001B06_gti.fits", 2),
    ("real", "obs_80415201001/nu80415201001A_bp.fits", 5),
    ("real", "obs_80415201001/nu80415201001B_bp.fits", 5),
    ("real", "obs_80415201001/nu80415201001A_hp.fits", 5),
    ("real", "obs_80415201001/nu80415201001B_hp.fits", 5),
    ("real", "obs_80415201001/nu80415201001A_det1.fits", 2),
    ("real", "obs_80415201001/nu80415201001B_det1.fits", 2),
    ("real", "spectra/nu30501003002B01_velax1_sr.pha", None),
    ("real", "spectra/nu30501003002A01_sr.arf", 2),
    ("shared_caldb", "nuA20100101v006.arf", 2),
    ("shared_caldb", "nuAdet3_20100101v002.rmf.gz", 3),
    ("shared_caldb", "nuAdetabs20100101v002.fits", 5),
    ("shared_caldb", "nuApixpos20100101v007.fits.gz", 5),
    ("shared_caldb", "nuBpixpos20100101v007.fits.gz", 5),
    ("auxil_dir", "be.arf", 2),
    ("auxil_dir", "detA_det1.img.gz", 1),
    ("auxil_dir", "detB_det1.img.gz", 1),
    ("auxil_dir", "diag.rmf", None),
    ("auxil_dir", "fcxbA.arf", 2),
    ("auxil_dir", "fcxbB.arf", 2),
    ("auxil_dir", "template.arf", 2),
]


@pytest.mark.parametrize("fixture,rel,n_hdus", REAL_FILES, ids=[r for _, r, _ in REAL_FILES])
def test_real_files_open(request, fixture, rel, n_hdus):
    path = request.getfixturevalue(fixture) / rel
    with open_fits(path, "test file") as hdul:
        if n_hdus is not None:
            assert len(hdul) == n_hdus
        else:
            assert len(hdul) >= 2
        # every header parsed; data of the last HDU reachable
        assert all("NAXIS" in h.header for h in hdul)


@pytest.fixture
def det1_bytes(real):
    return (real / "obs_80415201001" / "nu80415201001A_det1.fits").read_bytes()


def _err(path, what="event file"):
    with pytest.raises(NuskybgdError) as exc:
        open_fits(path, what).close()
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_missing_file(tmp_path):
    assert "not found" in _err(tmp_path / "nope.evt")


def test_folder_given(tmp_path):
    assert "folder" in _err(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.fits"
    p.write_bytes(b"")
    assert "empty" in _err(p)


def test_not_fits(tmp_path):
    p = tmp_path / "notes.fits"
    p.write_text("region file, not FITS\n")
    assert "not a FITS file" in _err(p)


def test_gzip_of_text_is_not_fits(tmp_path):
    p = tmp_path / "text.fits.gz"
    p.write_bytes(gzip.compress(b"hello world" * 100))
    assert "not a FITS file" in _err(p)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.99])
def test_truncated_data(tmp_path, det1_bytes, fraction):
    p = tmp_path / "trunc.fits"
    p.write_bytes(det1_bytes[: int(len(det1_bytes) * fraction)])
    assert "truncated" in _err(p)


def test_truncated_header(tmp_path, det1_bytes):
    p = tmp_path / "trunchdr.fits"
    p.write_bytes(det1_bytes[:4000])  # inside the second header
    assert "truncated" in _err(p) or "damaged" in _err(p)


def test_truncated_gzip_stream(tmp_path, real):
    raw = (real / "events" / "nu10302001006A01_crab_time_pi.evt.gz").read_bytes()
    p = tmp_path / "trunc.evt.gz"
    p.write_bytes(raw[: len(raw) // 2])
    msg = _err(p)
    assert "truncated" in msg or "damaged" in msg


def test_gzip_of_truncated_fits(tmp_path, det1_bytes):
    p = tmp_path / "half.fits.gz"
    p.write_bytes(gzip.compress(det1_bytes[: len(det1_bytes) // 2]))
    assert "truncated" in _err(p)


def test_corrupted_gzip(tmp_path, real):
    raw = bytearray((real / "events" / "nu10302001006A01_crab_time_pi.evt.gz").read_bytes())
    raw[5000:5200] = b"\x00" * 200
    p = tmp_path / "bad.evt.gz"
    p.write_bytes(bytes(raw))
    msg = _err(p)
    assert "gzip" in msg


def test_find_hdu(real):
    path = real / "obs_80415201001" / "nu80415201001A06_gti.fits"
    with open_fits(path) as hdul:
        assert find_hdu(hdul, "stdgti", path).name == "STDGTI"
        assert find_hdu(hdul, ("GTI", "STDGTI"), path).name == "STDGTI"
        with pytest.raises(NuskybgdError, match=r"nu80415201001A06_gti.fits: no EVENTS extension \(extensions present: .*STDGTI"):
            find_hdu(hdul, "EVENTS", path)


def test_find_hdus_and_header_value(real):
    path = real / "events" / "nu10302001006A01_crab_time_pi.evt.gz"
    with open_fits(path) as hdul:
        bp = find_hdus(hdul, "BADPIX")
        assert [h.header["DETNAM"].strip() for h in bp] == ["DET0", "DET1", "DET2", "DET3"]
        h = hdul["EVENTS"].header
        assert header_value(h, "INSTRUME") == "FPMA"
        assert header_value(h, "NOSUCHKEY", default=3) == 3
        with pytest.raises(NuskybgdError, match="keyword NOSUCHKEY missing"):
            header_value(h, "NOSUCHKEY", path, required=True)


def test_written_file_roundtrip_no_warning(tmp_path):
    p = tmp_path / "img.fits.gz"
    fits.HDUList([fits.PrimaryHDU(np.arange(12.0).reshape(3, 4))]).writeto(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_fits(p) as hdul:
            np.testing.assert_array_equal(hdul[0].data, np.arange(12.0).reshape(3, 4))
