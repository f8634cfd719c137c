"""absrmf: RMF rows times detector absorption."""

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.cli import main
from nuskybgd.errors import NuskybgdError
from nuskybgd.io.detabs import detabs_on_grid, read_detabs
from nuskybgd.products.absrmf import (
    absrmf_names,
    make_absrmf,
    scale_matrix_rows,
    weighted_detabs,
)


def _dense_from_file(path):
    """Dense matrix via Sherpa's own RMF reader (independent of our code)."""
    from sherpa.astro.io import read_rmf
    rmf = read_rmf(str(path))
    n_e = len(rmf.energ_lo)
    out = np.zeros((n_e, rmf.detchans))
    f_chan, n_chan, mat = np.asarray(rmf.f_chan), np.asarray(rmf.n_chan), np.asarray(rmf.matrix)
    n_grp = np.asarray(rmf.n_grp)
    off = int(rmf.offset)
    g = pos = 0
    for i in range(n_e):
        for _ in range(int(n_grp[i])):
            a = int(f_chan[g]) - off
            out[i, a:a + int(n_chan[g])] = mat[pos:pos + int(n_chan[g])]
            pos += int(n_chan[g])
            g += 1
    return out, np.asarray(rmf.energ_lo), np.asarray(rmf.energ_hi)


def _small_rmf(path, n_e=120, n_c=80, seed=0):
    """A compressed RMF (1 or 2 groups per row) on a 1.6 + 0.04 keV grid."""
    rng = np.random.default_rng(seed)
    elo = 1.6 + 0.04 * np.arange(n_e)
    ehi = elo + 0.04
    ngrp, fch, nch, mats = [], [], [], []
    for i in range(n_e):
        if i % 3 == 0:
            a, b = 2, 10 + i % 20
            c, d = 40, 55
            ngrp.append(2)
            fch.append([a, c])
            nch.append([b, d - c])
            mats.append(rng.uniform(0, 0.02, b + d - c).astype(np.float32))
        else:
            a, n = i % 30, 25
            ngrp.append(1)
            fch.append([a])
            nch.append([n])
            mats.append(rng.uniform(0, 0.04, n).astype(np.float32))
    cols = [fits.Column(name="ENERG_LO", format="E", unit="keV", array=elo),
            fits.Column(name="ENERG_HI", format="E", unit="keV", array=ehi),
            fits.Column(name="N_GRP", format="I", array=np.array(ngrp, np.int16)),
            fits.Column(name="F_CHAN", format="PJ()", array=np.array([np.array(x, np.int32) for x in fch], dtype=object)),
            fits.Column(name="N_CHAN", format="PJ()", array=np.array([np.array(x, np.int32) for x in nch], dtype=object)),
            fits.Column(name="MATRIX", format="PE()", array=np.array(mats, dtype=object))]
    mat = fits.BinTableHDU.from_columns(cols)
    mat.header.update(EXTNAME="MATRIX", HDUCLASS="OGIP", HDUCLAS1="RESPONSE", HDUCLAS2="RSP_MATRIX",
                      HDUVERS="1.3.0", CHANTYPE="PI", DETCHANS=n_c, TELESCOP="NuSTAR", INSTRUME="FPMA",
                      LO_THRES=0.0, TLMIN4=0, TLMAX4=n_c - 1)
    eb = fits.BinTableHDU.from_columns([
        fits.Column(name="CHANNEL", format="J", array=np.arange(n_c)),
        fits.Column(name="E_MIN", format="E", array=1.6 + 0.04 * np.arange(n_c)),
        fits.Column(name="E_MAX", format="E", array=1.64 + 0.04 * np.arange(n_c))])
    eb.header.update(EXTNAME="EBOUNDS", HDUCLASS="OGIP", HDUCLAS1="RESPONSE", HDUCLAS2="EBOUNDS",
                     HDUVERS="1.2.0", CHANTYPE="PI", DETCHANS=n_c, TELESCOP="NuSTAR", INSTRUME="FPMA")
    fits.HDUList([fits.PrimaryHDU(), mat, eb]).writeto(path)
    return path


def _evt(path, instrume="FPMA"):
    ev = fits.BinTableHDU.from_columns([fits.Column(name="PI", format="J", array=np.arange(3))])
    ev.header.update(EXTNAME="EVENTS", INSTRUME=instrume, TELESCOP="NuSTAR", **{"DATE-OBS": "2015-01-01T00:00:00"})
    fits.HDUList([fits.PrimaryHDU(), ev]).writeto(path)
    return path


@pytest.fixture
def small(tmp_path):
    return _small_rmf(tmp_path / "small.rmf"), _evt(tmp_path / "a.evt")


@pytest.mark.parametrize("det", [0, 1, 2, 3])
def test_per_detector_rows_scaled(tmp_path, small, shared_caldb, det):
    rmf, evt = small
    detabs = shared_caldb / "nuAdetabs20100101v002.fits"
    names = make_absrmf(evt, str(tmp_path / "det"), rmffile=str(rmf), detabsfile=str(detabs))
    assert names == [str(tmp_path / f"det{k}A.rmf") for k in range(4)]
    orig, elo, _ = _dense_from_file(rmf)
    new, elo2, _ = _dense_from_file(names[det])
    np.testing.assert_array_equal(elo, elo2)
    with fits.open(detabs) as h:
        ext = [x for x in h[1:] if x.header["DETNAM"] == f"DET{det}"][0]
        d = ext.data["DETABS"].astype(float)[: len(elo)]
    expected = (orig * d[:, None]).astype(np.float32).astype(float)
    np.testing.assert_allclose(new, expected, rtol=1e-12, atol=0)
    assert not np.allclose(new, orig)  # the absorption did something


def test_weighted_single_rmf(tmp_path, small, shared_caldb):
    rmf, evt = small
    detabs = shared_caldb / "nuAdetabs20100101v002.fits"
    fr = [1.0, 3.0, 0.0, 4.0]
    (name,) = make_absrmf(evt, str(tmp_path / "w_"), rmffile=str(rmf), detabsfile=str(detabs), fractions=fr)
    assert name.endswith("w_A.rmf")
    orig, elo, _ = _dense_from_file(rmf)
    new, _, _ = _dense_from_file(name)
    tabs = np.array([read_detabs(detabs, k)[2][: len(elo)] for k in range(4)])
    w = (np.array(fr)[:, None] * tabs).sum(0) / sum(fr)
    np.testing.assert_allclose(new, (orig * w[:, None]).astype(np.float32), rtol=1e-12)


def test_real_rmf_read_by_sherpa(tmp_path, shared_caldb, real):
    """Real CALDB RMF (det3, 4096x4096) x DET3 DETABS, read back by Sherpa."""
    rmf = shared_caldb / "nuAdet3_20100101v002.rmf.gz"
    detabs = shared_caldb / "nuAdetabs20100101v002.fits"
    evt = real / "events" / "nu90410111001A06_cl_sunpos.evt"
    (name,) = make_absrmf(evt, str(tmp_path / "r"), rmffile=str(rmf), detabsfile=str(detabs),
                          fractions=[0, 0, 0, 1])
    from sherpa.astro.io import read_rmf
    a, b = read_rmf(str(rmf)), read_rmf(name)
    d = read_detabs(detabs, 3)[2]
    # Each matrix row is the original row times DETABS(E) (float32 storage).
    rows_a = np.split(np.asarray(a.matrix, float), np.cumsum(np.asarray(a.n_chan))[:-1])
    rows_b = np.split(np.asarray(b.matrix, float), np.cumsum(np.asarray(b.n_chan))[:-1])
    assert len(rows_a) == len(rows_b) == 4096
    for i in (0, 100, 500, 2000, 4095):
        np.testing.assert_allclose(rows_b[i], (rows_a[i] * d[i]).astype(np.float32), rtol=1e-12)
    # Folding a flat spectrum: total probability per row scales with DETABS.
    np.testing.assert_allclose([r.sum() for r in rows_b[::97]],
                               [r.sum() * d[i * 97] for i, r in enumerate(rows_a[::97])], rtol=1e-6)


def test_kernels():
    lo = np.array([1.0, 2.0, 3.0])
    hi = lo + 1
    assert np.array_equal(detabs_on_grid(lo, hi, lo, hi, [0.1, 0.2, 0.3]), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(detabs_on_grid([1.25], [1.75], lo, hi, [0.1, 0.2, 0.3]), [0.1])
    np.testing.assert_allclose(detabs_on_grid([1.75], [2.25], lo, hi, [0.1, 0.2, 0.3]), [0.15])
    np.testing.assert_allclose(weighted_detabs([[1, 1], [0, 0], [0, 0], [0, 0]], [2, 0, 0, 2]), [0.5, 0.5])
    with pytest.raises(NuskybgdError):
        weighted_detabs(np.ones((4, 2)), [0, 0, 0, 0])
    m = scale_matrix_rows([np.ones(2), np.ones(3)], [2.0, 3.0])
    assert np.array_equal(m[1], [3, 3, 3])
    assert absrmf_names("x/", "B") == ["x/0B.rmf", "x/1B.rmf", "x/2B.rmf", "x/3B.rmf"]


def test_cli_and_bad_input(tmp_path, small, shared_caldb, capsys):
    rmf, evt = small
    detabs = shared_caldb / "nuAdetabs20100101v002.fits"
    rc = main(["absrmf", str(evt), str(tmp_path / "c"), f"rmffile={rmf}", f"detabsfile={detabs}"])
    assert rc == 0 and (tmp_path / "c3A.rmf").exists()
    # existing outputs are kept
    before = (tmp_path / "c0A.rmf").stat().st_mtime_ns
    rc = main(["absrmf", str(evt), str(tmp_path / "c"), f"rmffile={rmf}", f"detabsfile={detabs}"])
    err = capsys.readouterr().err
    assert rc != 0 and "exists" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "c0A.rmf").stat().st_mtime_ns == before
    # wrong module
    bad = _evt(tmp_path / "x.evt", instrume="XRT")
    rc = main(["absrmf", str(bad), str(tmp_path / "d"), f"rmffile={rmf}", f"detabsfile={detabs}"])
    err = capsys.readouterr().err
    assert rc != 0 and "INSTRUME" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("d*.rmf"))
    # missing DETABS file, not an RMF, bad fractions: no output
    for extra in ([f"rmffile={rmf}", f"detabsfile={tmp_path / 'none.fits'}"],
                  [f"rmffile={detabs}", f"detabsfile={detabs}"],
                  [f"rmffile={rmf}", f"detabsfile={detabs}", "--fractions", "1,2"]):
        rc = main(["absrmf", str(evt), str(tmp_path / "e")] + extra)
        err = capsys.readouterr().err
        assert rc != 0 and len(err.strip().splitlines()) == 1, err
        assert not list(tmp_path.glob("e*.rmf"))


def test_caldb_lookup(tmp_path, synthetic_caldb, monkeypatch):
    """rmffile=CALDB, detabsfile=CALDB: per-detector RMFs and DETABS from the index."""
    from nuskybgd.calib.caldb import Caldb
    monkeypatch.setenv("CALDB", str(synthetic_caldb))
    evt = _evt(tmp_path / "b.evt", instrume="FPMB")
    names = make_absrmf(evt, str(tmp_path / "cal"))
    assert [n.split("/")[-1] for n in names] == ["cal0B.rmf", "cal1B.rmf", "cal2B.rmf", "cal3B.rmf"]
    cal = Caldb(synthetic_caldb)
    for k in (0, 3):
        rmf_path = cal.rmf("FPMB", f"DET{k}", "2015-01-01T00:00:00")
        det_path = cal.query("DETABS", "FPMB", f"DET{k}", "2015-01-01T00:00:00").path
        orig, elo, ehi = _dense_from_file(rmf_path)
        new, _, _ = _dense_from_file(names[k])
        lo, hi, d = read_detabs(det_path, k)
        fac = detabs_on_grid(elo, ehi, lo, hi, d)
        assert np.ptp(fac) > 0.1
        np.testing.assert_allclose(new, (orig * fac[:, None]).astype(np.float32), rtol=1e-12, atol=0)


def test_caldb_weighted_sum_of_detector_rmfs(tmp_path, synthetic_caldb, monkeypatch):
    """--fractions with CALDB RMFs: sum_k f_k DETABS_k R_k / sum f."""
    from nuskybgd.calib.caldb import Caldb
    monkeypatch.setenv("CALDB", str(synthetic_caldb))
    evt = _evt(tmp_path / "a.evt")
    fr = np.array([2.0, 0.0, 1.0, 1.0])
    (name,) = make_absrmf(evt, str(tmp_path / "wsum_"), fractions=fr)
    cal = Caldb(synthetic_caldb)
    want = 0
    for k in range(4):
        if fr[k] == 0:
            continue
        m, elo, ehi = _dense_from_file(cal.rmf("FPMA", f"DET{k}", "2015-01-01T00:00:00"))
        lo, hi, d = read_detabs(cal.query("DETABS", "FPMA", f"DET{k}", "2015-01-01T00:00:00").path, k)
        want = want + fr[k] / fr.sum() * detabs_on_grid(elo, ehi, lo, hi, d)[:, None] * m
    got, _, _ = _dense_from_file(name)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)  # float32 storage
