"""OGIP PHA/RMF/ARF: write -> read round trips, real files, bad input."""

import logging
import warnings

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.errors import NuskybgdError
from nuskybgd.io.ogip import (
    compress_matrix, read_arf, read_pha, read_rmf, rmf_matrix, spectrum_module, standard_energy_grid,
    write_arf, write_pha, write_rmf,
)

VELA = "spectra/nu30501003002B01_velax1_sr.pha"


@pytest.fixture
def no_warnings(caplog):
    """Fail on any Python warning or Sherpa/astropy log record at WARNING or above."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.INFO):
            yield
    bad = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith(("sherpa", "astropy"))]
    assert not bad, [r.getMessage() for r in bad]


def _astropy_clean(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path) as h:
            h.verify("exception")
            for hdu in h[1:]:
                _ = hdu.data
                assert hdu.header["DATASUM"]  # write_fits adds checksums


def _decode_rows(f_chan, n_chan, matrix, n_grp, n_e, n_ch, offset=0):
    """Independent dense decoding of OGIP rows (loop form)."""
    out = np.zeros((n_e, n_ch))
    for i in range(n_e):
        fc = np.atleast_1d(f_chan[i])[: n_grp[i]]
        nc = np.atleast_1d(n_chan[i])[: n_grp[i]]
        vals = np.atleast_1d(np.asarray(matrix[i], dtype=float))
        k = 0
        for f, n in zip(fc, nc):
            out[i, f - offset:f - offset + n] = vals[k:k + n]
            k += n
    return out


# ---- PHA -------------------------------------------------------------------

@pytest.mark.parametrize("integral", [True, False])
def test_pha_roundtrip(tmp_path, no_warnings, integral):
    rng = np.random.default_rng(3)
    n = 4096
    counts = rng.poisson(3.0, n) if integral else rng.gamma(2.0, 1.5, n)
    grouping = np.where(np.arange(n) % 3 == 0, 1, -1)
    quality = np.where(np.arange(n) < 35, 1, 0)
    gti = fits.BinTableHDU.from_columns([fits.Column(name="START", format="D", array=[1.0]),
                                         fits.Column(name="STOP", format="D", array=[9.0])], name="GTI")
    hdr = {"INSTRUME": "FPMB", "RESPFILE": "src.rmf", "ANCRFILE": "src.arf", "BACKFILE": "bkg.pha",
           "OBJECT": ("Vela X-1", "target"), "DATE-OBS": "2019-05-01T00:00:00", "HDUCLAS2": "BKG"}
    path = write_pha(tmp_path / "s.pha", counts, 12345.5, 0.0123, header=hdr, grouping=grouping,
                     quality=quality, extra_hdus=[gti], areascal=0.9)
    _astropy_clean(path)
    pha = read_pha(path)
    if integral:
        np.testing.assert_array_equal(pha.counts, counts)
    else:
        np.testing.assert_array_equal(pha.counts, counts.astype(np.float64))
    np.testing.assert_array_equal(pha.channel, np.arange(n))
    np.testing.assert_array_equal(pha.grouping, grouping)
    np.testing.assert_array_equal(pha.quality, quality)
    assert pha.exposure == 12345.5 and pha.backscal == 0.0123 and pha.areascal == 0.9
    for k in ("RESPFILE", "ANCRFILE", "BACKFILE", "OBJECT", "DATE-OBS", "HDUCLAS2"):
        want = hdr[k][0] if isinstance(hdr[k], tuple) else hdr[k]
        assert pha.header[k] == want
    assert spectrum_module(pha) == "B"
    assert pha.get_background() is None and pha.get_response() == (None, None)
    with fits.open(path) as h:
        sh = h["SPECTRUM"].header
        assert (sh["TLMIN1"], sh["TLMAX1"], sh["DETCHANS"]) == (0, n - 1, n)
        assert (sh["HDUCLASS"], sh["HDUCLAS1"], sh["HDUCLAS3"]) == ("OGIP", "SPECTRUM", "COUNT")
        assert sh["POISSERR"] is True and sh["CORRSCAL"] == 0.0 and sh["TELESCOP"] == "NuSTAR"
        assert h["SPECTRUM"].columns["COUNTS"].format == ("J" if integral else "D")
        np.testing.assert_array_equal(h["GTI"].data["STOP"], [9.0])


def test_pha_header_from_event_file(tmp_path, real, no_warnings):
    # An EVENTS header as the caller's cards: identification keywords are
    # copied, structure and column keywords of the event table are not.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(real / "events" / "nu90410111001A06_cl_sunpos.evt") as h:
            evh = h["EVENTS"].header.copy()
    path = write_pha(tmp_path / "s.pha", np.arange(4096) % 7, 100.0, 0.5, header=evh)
    _astropy_clean(path)
    with fits.open(path) as h:
        sh = h[1].header
        assert sh["EXTNAME"] == "SPECTRUM" and sh["HDUCLAS1"] == "SPECTRUM" and sh["HDUCLASS"] == "OGIP"
        assert sh["TLMIN1"] == 0 and sh["TLMAX1"] == 4095 and "TCRVL13" not in sh and "TTYPE9" not in sh
        assert sh["OBJECT"] == evh["OBJECT"] and sh["DATE-OBS"] == evh["DATE-OBS"]
        assert sh["EXPOSURE"] == 100.0 and sh["TFIELDS"] == 2
    pha = read_pha(path)
    assert spectrum_module(pha) == "A" and pha.exposure == 100.0


def test_pha_with_responses(tmp_path, no_warnings):
    n = 20
    lo = np.linspace(1.6, 2.4, n + 1)
    write_rmf(tmp_path / "r.rmf", lo[:-1], lo[1:], np.eye(n) * 0.9, lo[:-1], lo[1:], header={"INSTRUME": "FPMA"})
    write_arf(tmp_path / "r.arf", lo[:-1], lo[1:], np.full(n, 300.0), header={"INSTRUME": "FPMA"})
    write_pha(tmp_path / "s.pha", np.arange(n), 100.0, 1.0,
              header={"INSTRUME": "FPMA", "RESPFILE": "r.rmf", "ANCRFILE": "r.arf"})
    pha = read_pha(tmp_path / "s.pha", responses=True)
    arf, rmf = pha.get_response()
    np.testing.assert_allclose(arf.specresp, 300.0)
    np.testing.assert_allclose(rmf_matrix(rmf), np.eye(n) * np.float32(0.9))


def test_pha_clobber(tmp_path):
    p = tmp_path / "s.pha"
    write_pha(p, [1, 2, 3], 10.0, 1.0, header={"INSTRUME": "FPMA"})
    with pytest.raises(NuskybgdError, match="exists"):
        write_pha(p, [4, 5, 6], 10.0, 1.0)
    np.testing.assert_array_equal(read_pha(p).counts, [1, 2, 3])
    write_pha(p, [4, 5, 6], 10.0, 1.0, clobber=True)
    np.testing.assert_array_equal(read_pha(p).counts, [4, 5, 6])


@pytest.mark.parametrize("kwargs,match", [
    (dict(counts=[1.0, np.nan]), "NaN"),
    (dict(counts=[]), "non-empty"),
    (dict(counts=[1, 2, 3], grouping=[1, -1]), "GROUPING has 2 values for 3 channels"),
])
def test_write_pha_bad_input(tmp_path, kwargs, match):
    p = tmp_path / "bad.pha"
    args = dict(counts=[1, 2, 3], exposure=1.0, backscal=1.0)
    args.update(kwargs)
    with pytest.raises(NuskybgdError, match=match):
        write_pha(p, **args)
    assert not p.exists()


def test_real_vela_pha(real, no_warnings):
    path = real / VELA
    pha = read_pha(path)
    with fits.open(path) as h:
        sp = h["SPECTRUM"]
        np.testing.assert_array_equal(pha.counts, sp.data["COUNTS"])
        assert pha.exposure == sp.header["EXPOSURE"]
        assert pha.backscal == sp.header["BACKSCAL"]
        assert pha.header["RESPFILE"] == sp.header["RESPFILE"].strip()
        assert pha.header["ANCRFILE"] == sp.header["ANCRFILE"].strip()
    assert pha.channel.size == 4096
    assert spectrum_module(pha) == "B"


def test_spectrum_module_errors(tmp_path):
    p = write_pha(tmp_path / "x.pha", [1, 2], 1.0, 1.0, header={"INSTRUME": "XRT"})
    with pytest.raises(NuskybgdError, match=r"x.pha: INSTRUME is 'XRT'"):
        spectrum_module(read_pha(p))
    assert spectrum_module({"INSTRUME": "FPMA"}, "h") == "A"
    with pytest.raises(NuskybgdError, match="hdr: keyword INSTRUME missing"):
        spectrum_module({}, "hdr")


def test_read_pha_not_a_spectrum(real):
    with pytest.raises(NuskybgdError, match="no SPECTRUM extension"):
        read_pha(real / "obs_80415201001" / "nu80415201001A06_gti.fits")


# ---- RMF -------------------------------------------------------------------

def _random_rmf(rng, n_e=60, n_ch=50):
    m = rng.random((n_e, n_ch))
    m[m < 0.7] = 0.0          # several groups per row
    m[7] = 0.0                # an empty row
    m[8, :] = 0.0
    m[8, 0] = m[8, -1] = 0.5  # groups at both ends
    m = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0) * 0.95
    return m.astype(np.float32).astype(np.float64)


def test_rmf_roundtrip(tmp_path, no_warnings):
    rng = np.random.default_rng(7)
    n_e, n_ch = 60, 50
    m = _random_rmf(rng, n_e, n_ch)
    elo = np.linspace(1.6, 4.0, n_e + 1)
    cb = np.linspace(1.6, 3.6, n_ch + 1)
    path = write_rmf(tmp_path / "t.rmf", elo[:-1], elo[1:], m, cb[:-1], cb[1:],
                     header={"INSTRUME": "FPMB", "DETNAM": "DET2", "CCNM0001": "MATRIX"},
                     ebounds_header={"CCNM0001": "EBOUNDS"})
    _astropy_clean(path)
    rmf = read_rmf(path)
    dense = rmf_matrix(rmf)
    np.testing.assert_array_equal(dense, m)
    assert rmf_matrix(rmf) is dense and not dense.flags.writeable
    np.testing.assert_allclose(rmf.energ_lo, elo[:-1].astype(np.float32))
    np.testing.assert_allclose(rmf.e_max, cb[1:].astype(np.float32))
    x = rng.random(n_e)
    np.testing.assert_allclose(rmf.apply_rmf(x), x @ m, rtol=1e-12, atol=1e-15)
    with fits.open(path) as h:
        mh, eh = h["MATRIX"].header, h["EBOUNDS"].header
        assert (mh["HDUCLAS3"], mh["DETCHANS"], mh["TLMIN4"], mh["DETNAM"]) == ("REDIST", n_ch, 0, "DET2")
        assert (eh["INSTRUME"], eh["DETNAM"], eh["CCNM0001"], eh["HDUCLAS2"]) == ("FPMB", "DET2", "EBOUNDS", "EBOUNDS")
        assert h["MATRIX"].data["N_GRP"][7] == 0
        # independent decoding of the stored rows
        d = h["MATRIX"].data
        np.testing.assert_array_equal(
            _decode_rows(d["F_CHAN"], d["N_CHAN"], d["MATRIX"], d["N_GRP"], n_e, n_ch), m)


def test_rmf_threshold_and_first_channel(tmp_path, no_warnings):
    m = np.array([[0.1, 1e-9, 0.2], [0.0, 0.5, 0.5]])
    e = np.array([1.0, 2.0, 3.0, 4.0])
    path = write_rmf(tmp_path / "t.rmf", [1.0, 2.0], [2.0, 3.0], m, e[:-1], e[1:], threshold=1e-6,
                     first_channel=1)
    rmf = read_rmf(path)
    assert rmf.offset == 1
    np.testing.assert_allclose(rmf_matrix(rmf), [[0.1, 0.0, 0.2], [0.0, 0.5, 0.5]], rtol=1e-7)
    n_grp, fc, nc, vals = compress_matrix(m, 1e-6)
    np.testing.assert_array_equal(n_grp, [2, 1])
    np.testing.assert_array_equal(fc[0], [0, 2])
    np.testing.assert_array_equal(nc[1], [2])


def test_real_rmf_gzip_dense(shared_caldb, no_warnings):
    path = shared_caldb / "nuAdet3_20100101v002.rmf.gz"
    rmf = read_rmf(path)
    dense = rmf_matrix(rmf)
    assert dense.shape == (4096, 4096)
    with fits.open(path) as h:
        d = h["MATRIX"].data
        rows = [0, 100, 1000, 2500, 4095]
        ref = _decode_rows(d["F_CHAN"][rows], d["N_CHAN"][rows], [d["MATRIX"][i] for i in rows],
                           d["N_GRP"][rows], len(rows), 4096)
        np.testing.assert_array_equal(dense[rows], ref)
        np.testing.assert_allclose(dense.sum(axis=1), [np.sum(r, dtype=np.float64) for r in d["MATRIX"]],
                                   rtol=1e-12)
        np.testing.assert_array_equal(rmf.e_min, h["EBOUNDS"].data["E_MIN"])


def test_real_diag_rmf(auxil_dir, no_warnings):
    rmf = read_rmf(auxil_dir / "diag.rmf")
    dense = rmf_matrix(rmf)
    with fits.open(auxil_dir / "diag.rmf") as h:
        d = h["MATRIX"].data
        ref = _decode_rows(d["F_CHAN"], d["N_CHAN"], d["MATRIX"], d["N_GRP"], len(d), dense.shape[1],
                           offset=rmf.offset)
    np.testing.assert_array_equal(dense, ref)


@pytest.mark.parametrize("kwargs,match", [
    (dict(matrix=np.zeros((3, 5))), "shapes disagree"),
    (dict(matrix=np.full((2, 3), np.nan)), "NaN"),
    (dict(energ_hi=[1.0, 2.0]), "not increasing"),
])
def test_write_rmf_bad_input(tmp_path, kwargs, match):
    args = dict(energ_lo=[1.0, 2.0], energ_hi=[2.0, 3.0], matrix=np.eye(2, 3), e_min=[1.0, 2.0, 3.0],
                e_max=[2.0, 3.0, 4.0])
    args.update(kwargs)
    with pytest.raises(NuskybgdError, match=match):
        write_rmf(tmp_path / "bad.rmf", **args)
    assert not (tmp_path / "bad.rmf").exists()


def test_read_rmf_bad_file(real):
    with pytest.raises(NuskybgdError, match=r"nu30501003002A01_sr.arf: cannot read RMF"):
        read_rmf(real / "spectra" / "nu30501003002A01_sr.arf")


# ---- ARF -------------------------------------------------------------------

def test_arf_roundtrip(tmp_path, no_warnings):
    lo = np.arange(1.6, 165.44, 0.04)
    sr = np.linspace(0.0, 400.0, lo.size)
    path = write_arf(tmp_path / "a.arf", lo, lo + 0.04, sr, header={"INSTRUME": "FPMB", "EXPOSURE": 10.0})
    _astropy_clean(path)
    arf = read_arf(path)
    np.testing.assert_array_equal(arf.specresp, sr.astype(np.float32))
    np.testing.assert_array_equal(arf.energ_lo, lo.astype(np.float32))
    assert arf.header["INSTRUME"] == "FPMB"


@pytest.mark.parametrize("name", ["spectra/nu30501003002A01_sr.arf"])
def test_real_arfs(real, shared_caldb, auxil_dir, name, no_warnings):
    paths = [real / name, shared_caldb / "nuA20100101v006.arf"] + [
        auxil_dir / f for f in ("fcxbA.arf", "fcxbB.arf", "template.arf")]
    for p in paths:
        arf = read_arf(p)
        with fits.open(p) as h:
            np.testing.assert_array_equal(arf.specresp, h["SPECRESP"].data["SPECRESP"])


def test_bundle_be_arf_rounded_grid_repaired(auxil_dir, no_warnings):
    # The bundle's be.arf stores ENERG_LO/HI rounded to 3 significant digits
    # (zero-width bins above 10 keV); SPECRESP follows the standard grid.
    arf = read_arf(auxil_dir / "be.arf")
    lo, hi = standard_energy_grid()
    np.testing.assert_array_equal(arf.energ_lo, lo)
    np.testing.assert_array_equal(arf.energ_hi, hi)
    with fits.open(auxil_dir / "be.arf") as h:
        d = h["SPECRESP"].data
        np.testing.assert_array_equal(arf.specresp, d["SPECRESP"])
        np.testing.assert_allclose(d["ENERG_LO"], lo, rtol=5e-3)
    # the standard grid equals the real CALDB ARF's
    with fits.open(auxil_dir / "template.arf") as h:
        np.testing.assert_allclose(h["SPECRESP"].data["ENERG_LO"], lo, rtol=2.5e-7)  # float32 ulp


def test_unrepairable_arf_grid(tmp_path):
    p = tmp_path / "bad.arf"
    hdu = fits.BinTableHDU.from_columns([
        fits.Column(name="ENERG_LO", format="E", array=[1.0, 3.0, 2.0]),
        fits.Column(name="ENERG_HI", format="E", array=[3.0, 2.0, 4.0]),
        fits.Column(name="SPECRESP", format="E", array=[1.0, 1.0, 1.0])], name="SPECRESP")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(p)
    with pytest.raises(NuskybgdError, match="bad.arf: ARF energy bins are not increasing"):
        read_arf(p)


def test_write_arf_bad_input(tmp_path):
    with pytest.raises(NuskybgdError, match="negative"):
        write_arf(tmp_path / "a.arf", [1.0], [2.0], [-1.0])
    with pytest.raises(NuskybgdError, match="equal length"):
        write_arf(tmp_path / "a.arf", [1.0, 2.0], [2.0], [1.0])
