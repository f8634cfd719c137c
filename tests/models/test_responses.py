"""Responses of the background components: apbgd ARF, fCXB ARF, diag RMF."""

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.errors import NuskybgdError
from nuskybgd.models import responses

FRACTIONS = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 2.0],
    [0.1, 0.2, 0.3, 0.4],
    [120.0, 35.0, 0.0, 7.5],
]


@pytest.fixture(scope="module")
def detabs_file(shared_caldb):
    return shared_caldb / "nuAdetabs20100101v002.fits"


@pytest.fixture(scope="module")
def raw_tables(detabs_file, auxil_dir):
    """DETABS (4 detectors) and Be transmission read directly with astropy."""
    with fits.open(detabs_file) as h:
        det = {int(x.header["DETNAM"][-1]): np.asarray(x.data["DETABS"], float)
               for x in h[1:] if x.header.get("EXTNAME") == "DETABS"}
        lo = np.asarray(h[1].data["ENERG_LO"], float)
        hi = np.asarray(h[1].data["ENERG_HI"], float)
    with fits.open(auxil_dir / "be.arf") as h:
        be = np.asarray(h[1].data["SPECRESP"], float)
    return lo, hi, np.vstack([det[k] for k in range(4)]), be


@pytest.mark.parametrize("fractions", FRACTIONS)
def test_apbgd_arf_is_be_times_weighted_detabs(raw_tables, detabs_file, fractions, monkeypatch):
    monkeypatch.delenv("CALDB", raising=False)
    lo, hi, det, be = raw_tables
    arf = responses.apbgd_arf("A", fractions, detabs_file=detabs_file)
    f = np.asarray(fractions) / np.sum(fractions)
    expect = be * (f[0] * det[0] + f[1] * det[1] + f[2] * det[2] + f[3] * det[3])
    np.testing.assert_allclose(arf.specresp, expect, rtol=1e-12)
    np.testing.assert_array_equal(arf.energ_lo, lo)
    assert np.all(arf.specresp > 0) and np.all(arf.specresp < 1)


def test_apbgd_arf_from_caldb(synthetic_caldb, detabs_file, raw_tables):
    """CALDB route (DETABS per detector, BEABS) equals the explicit files."""
    from nuskybgd.calib.caldb import Caldb
    a = responses.apbgd_arf("A", FRACTIONS[2], caldb=Caldb(synthetic_caldb))
    b = responses.apbgd_arf("A", FRACTIONS[2], detabs_file=detabs_file)
    np.testing.assert_allclose(a.specresp, b.specresp, rtol=1e-6)
    # FPMB through the synthetic CALDB (its DETABS carries FPMA's values)
    c = responses.apbgd_arf("FPMB", FRACTIONS[2], caldb=str(synthetic_caldb))
    np.testing.assert_allclose(c.specresp, b.specresp, rtol=1e-6)


def test_apbgd_arf_on_rmf_grid(detabs_file, shared_caldb):
    from nuskybgd.io.ogip import read_rmf
    rmf = read_rmf(shared_caldb / "nuAdet3_20100101v002.rmf.gz")
    arf = responses.apbgd_arf("A", FRACTIONS[2], rmf=rmf, detabs_file=detabs_file)
    np.testing.assert_array_equal(arf.energ_lo, np.asarray(rmf.energ_lo, float))


def test_apbgd_arf_grid_mismatch(detabs_file):
    e = np.linspace(1.6, 165.44, 4097)
    with pytest.raises(NuskybgdError, match="share one energy grid"):
        responses.apbgd_arf("A", FRACTIONS[2], rmf=(e[:-1] + 0.01, e[1:] + 0.01), detabs_file=detabs_file)
    e = np.linspace(1.6, 165.44, 2049)
    with pytest.raises(NuskybgdError, match="4096 energy bins, but RMF has 2048"):
        responses.apbgd_arf("A", FRACTIONS[2], rmf=(e[:-1], e[1:]), detabs_file=detabs_file)


def test_be_grid_mismatch(tmp_path, detabs_file, auxil_dir):
    with fits.open(auxil_dir / "be.arf") as h:
        h[1].data["ENERG_LO"] = h[1].data["ENERG_LO"] + 0.02
        h.writeto(tmp_path / "be_shifted.arf")
    with pytest.raises(NuskybgdError, match="Be-window transmission: energy bin 0"):
        responses.apbgd_arf("A", FRACTIONS[2], detabs_file=detabs_file, be_file=tmp_path / "be_shifted.arf")


@pytest.mark.parametrize("fractions, match", [
    ([0, 0, 0, 0], "positive sum"),
    ([1, 2, 3], "need 4"),
    ([1, -1, 0, 1], ">= 0"),
    ([1, np.nan, 0, 1], "finite"),
])
def test_apbgd_arf_bad_fractions(detabs_file, fractions, match):
    with pytest.raises(NuskybgdError, match=match):
        responses.apbgd_arf("A", fractions, detabs_file=detabs_file)


def test_apbgd_arf_needs_caldb(monkeypatch):
    monkeypatch.delenv("CALDB", raising=False)
    with pytest.raises(NuskybgdError, match="needs a CALDB"):
        responses.apbgd_arf("A", FRACTIONS[0])
    with pytest.raises(NuskybgdError, match="module must be A or B"):
        responses.apbgd_arf("C", FRACTIONS[0])


def test_write_apbgd_arf(tmp_path, detabs_file):
    from nuskybgd.io.ogip import read_arf
    arf = responses.apbgd_arf("A", FRACTIONS[3], detabs_file=detabs_file)
    out = tmp_path / "apbgdA.arf"
    responses.write_apbgd_arf(out, arf, "A", FRACTIONS[3])
    with fits.open(out) as h:
        d = h["SPECRESP"].data
        np.testing.assert_allclose(d["SPECRESP"], arf.specresp, rtol=1e-7)
        np.testing.assert_allclose(d["ENERG_LO"], arf.energ_lo, rtol=1e-7)
        assert h["SPECRESP"].header["INSTRUME"] == "FPMA"
        assert h["SPECRESP"].header["HDUCLAS2"] == "SPECRESP"
        assert h["SPECRESP"].header["DETFRAC0"] == pytest.approx(120.0 / 162.5)
    back = read_arf(out)
    np.testing.assert_allclose(back.specresp, arf.specresp, rtol=1e-7)
    with pytest.raises(NuskybgdError, match="exists"):
        responses.write_apbgd_arf(out, arf, "A")


@pytest.mark.parametrize("module", ["A", "B"])
def test_fcxb_arf_is_bundle_file(module, auxil_dir, shared_caldb):
    from nuskybgd.io.ogip import read_rmf
    arf = responses.fcxb_arf(module)
    with fits.open(auxil_dir / f"fcxb{module}.arf") as h:
        np.testing.assert_array_equal(arf.specresp, np.asarray(h[1].data["SPECRESP"], float))
    responses.fcxb_arf(module, rmf=read_rmf(shared_caldb / "nuAdet3_20100101v002.rmf.gz"))
    e = np.linspace(3, 79, 101)
    with pytest.raises(NuskybgdError, match="share one energy grid"):
        responses.fcxb_arf(module, rmf=(e[:-1], e[1:]))


def test_diag_rmf_is_diagonal():
    from nuskybgd.io.ogip import rmf_matrix
    rmf = responses.diag_rmf()
    assert rmf.detchans == 4096
    m = rmf_matrix(rmf)
    np.testing.assert_array_equal(m, np.eye(4096))
    assert responses.diag_rmf() is rmf
