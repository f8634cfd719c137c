"""CALDB index selection rules and the synthetic CALDB."""

import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.calib.caldb import (
    INDEX_RELPATH,
    Caldb,
    index_entries_for_file,
    parse_date,
    write_caldb_index,
)
from nuskybgd.errors import NuskybgdError
from nuskybgd.io.events import read_badpix
from nuskybgd.io.ogip import read_arf, read_rmf, rmf_matrix
from nuskybgd.simulate.caldb import RMF_DET_SCALE, make_caldb, rmf_fwhm

D = "data/nustar/fpm/bcf/test"


def _index(root, rows):
    """Write an index and an empty placeholder file for every row."""
    root = Path(root)
    for r in rows:
        p = root / r.get("CAL_DIR", D) / r["CAL_FILE"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    write_caldb_index(root, [{"CAL_DIR": D, "INSTRUME": "FPMA", "CAL_CNAM": "PIXPOS", **r} for r in rows])
    return Caldb(root)


def _name(c, *args, **kw):
    return c.query(*args, **kw).path.name


# ---- selection rules --------------------------------------------------------

@pytest.mark.parametrize("date,expected", [
    ("2014-06-01", "v1.fits"),
    ("2015-01-01T00:00:00", "v2.fits"),      # valid-from == date counts as valid
    ("2015-01-01T00:00:00.5", "v2.fits"),
    ("2014-12-31T23:59:59", "v1.fits"),
    ("2016-01-01", "v2.fits"),
    (None, "v2.fits"),                        # no date: latest valid file
])
def test_valid_from_date(tmp_path, date, expected):
    c = _index(tmp_path, [dict(CAL_FILE="v1.fits", CAL_VSD="2010-01-01"),
                          dict(CAL_FILE="v2.fits", CAL_VSD="2015-01-01")])
    assert _name(c, "PIXPOS", "FPMA", date=date) == expected


def test_valid_from_time_of_day(tmp_path):
    c = _index(tmp_path, [dict(CAL_FILE="early.fits", CAL_VSD="2010-01-01"),
                          dict(CAL_FILE="noon.fits", CAL_VSD="2018-09-28", CAL_VST="12:00:00")])
    assert _name(c, "PIXPOS", "A", date="2018-09-28T11:59:59") == "early.fits"
    assert _name(c, "PIXPOS", "A", date="2018-09-28T12:00:00") == "noon.fits"


def test_nothing_valid_yet(tmp_path):
    c = _index(tmp_path, [dict(CAL_FILE="v1.fits", CAL_VSD="2012-01-01")])
    with pytest.raises(NuskybgdError) as exc:
        c.query("PIXPOS", "FPMA", "DET2", date="2011-05-05")
    msg = str(exc.value)
    for part in ("CAL_CNAM=PIXPOS", "INSTRUME=FPMA", "DETNAM=DET2", "date=2011-05-05", str(c.index_path)):
        assert part in msg


@pytest.mark.parametrize("order", [0, 1])
def test_same_valid_from_latest_cal_date_wins(tmp_path, order):
    rows = [dict(CAL_FILE="old.fits", CAL_DATE="2013-02-01"), dict(CAL_FILE="new.fits", CAL_DATE="2019-07-10")]
    c = _index(tmp_path, rows if order == 0 else rows[::-1])
    assert _name(c, "PIXPOS", "FPMA", date="2020-01-01") == "new.fits"


def test_later_valid_from_beats_later_cal_date(tmp_path):
    c = _index(tmp_path, [dict(CAL_FILE="a.fits", CAL_VSD="2013-01-01", CAL_DATE="2013-01-01"),
                          dict(CAL_FILE="b.fits", CAL_VSD="2010-01-01", CAL_DATE="2020-01-01")])
    assert _name(c, "PIXPOS", "FPMA", date="2014-01-01") == "a.fits"


def test_old_cal_date_format(tmp_path):
    c = _index(tmp_path, [dict(CAL_FILE="a.fits", CAL_DATE="13/05/09"), dict(CAL_FILE="b.fits", CAL_DATE="12/01/01")])
    assert _name(c, "PIXPOS", "FPMA") == "a.fits"
    assert parse_date("13/05/09").year == 2013


def test_bad_quality_ignored(tmp_path):
    c = _index(tmp_path, [dict(CAL_FILE="good.fits", CAL_VSD="2010-01-01"),
                          dict(CAL_FILE="bad.fits", CAL_VSD="2016-01-01", CAL_QUAL=5)])
    assert _name(c, "PIXPOS", "FPMA", date="2017-01-01") == "good.fits"
    assert [r["CAL_FILE"] for r in c.candidates("PIXPOS", "FPMA")] == ["good.fits"]


def test_detnam_matching(tmp_path):
    rows = [dict(CAL_FILE="p.fits", DETNAM=f"DET{d}", CAL_XNO=d + 1) for d in range(4)]
    rows.append(dict(CAL_FILE="any.fits", DETNAM="-", CAL_CNAM="INSTRMAP"))
    rows.append(dict(CAL_FILE="x0.fits", DETNAM="DET0", CAL_CNAM="INSTRMAP"))
    c = _index(tmp_path, rows)
    for d in range(4):
        q = c.query("PIXPOS", "FPMA", f"DET{d}")
        assert (q.path.name, q.extno, q.detnam) == ("p.fits", d + 1, f"DET{d}")
        assert c.query("PIXPOS", "A", d).extno == d + 1
    # no detector asked: the file of the best row, lowest extension
    assert c.query("PIXPOS", "FPMA").extno == 1
    # '-' matches any detector; an exact DETNAM beats it when otherwise tied
    assert _name(c, "INSTRMAP", "FPMA", "DET2") == "any.fits"
    assert _name(c, "INSTRMAP", "FPMA", "DET0") == "x0.fits"
    with pytest.raises(NuskybgdError, match="out of range"):
        c.query("PIXPOS", "FPMA", 7)


def test_instrument_matching(tmp_path):
    c = _index(tmp_path, [dict(CAL_FILE="a.fits"), dict(CAL_FILE="b.fits", INSTRUME="FPMB"),
                          dict(CAL_FILE="c.fits", INSTRUME="FPM", CAL_CNAM="BEABS")])
    assert _name(c, "PIXPOS", "B") == "b.fits"
    assert _name(c, "pixpos", "fpma") == "a.fits"
    assert _name(c, "BEABS", "FPMA") == _name(c, "BEABS", "FPMB") == "c.fits"
    with pytest.raises(NuskybgdError, match="not FPMA/FPMB"):
        c.query("PIXPOS", "XRT")


def test_depth_cut_boundary(tmp_path):
    rows = [dict(CAL_FILE="grp_nom.fits", CAL_CNAM="GRPRMF", DETNAM="DET0", CAL_CBD=["DEPTHCUT(NOMINAL)"],
                 CAL_VSD="2010-01-01"),
            dict(CAL_FILE="grp_dis.fits", CAL_CNAM="GRPRMF", DETNAM="DET0", CAL_CBD=["DEPTHCUT(DISABLED)"],
                 CAL_VSD="2012-01-01"),
            dict(CAL_FILE="rmf.fits", CAL_CNAM="MATRIX", DETNAM="DET0", CAL_CBD=["RAWX(0- 31)", "RAWY(0- 31)"])]
    c = _index(tmp_path, rows)
    # the newer row has the depth cut disabled: the nominal one is chosen
    assert _name(c, "GRPRMF", "FPMA", "DET0") == "grp_nom.fits"
    assert _name(c, "GRPRMF", "FPMA", "DET0", expr="DEPTHCUT.eq.DISABLED") == "grp_dis.fits"
    assert _name(c, "GRPRMF", "FPMA", "DET0", expr="DEPTHCUT(NOMINAL)") == "grp_nom.fits"
    assert _name(c, "MATRIX", "FPMA", "DET0", expr="RAWX.eq.5.and.RAWY.eq.31") == "rmf.fits"
    with pytest.raises(NuskybgdError, match="expr=RAWX.eq.40"):
        c.query("MATRIX", "FPMA", "DET0", expr="RAWX.eq.40")
    with pytest.raises(NuskybgdError, match="cannot parse boundary"):
        c.query("MATRIX", "FPMA", "DET0", expr="RAWX >> 3")


def test_listed_file_missing(tmp_path):
    c = _index(tmp_path, [dict(CAL_FILE="a.fits")])
    (tmp_path / D / "a.fits").unlink()
    with pytest.raises(NuskybgdError, match=r"a.fits: CALDB file listed in .*caldb.indx for PIXPOS FPMA is missing"):
        c.query("PIXPOS", "FPMA")


def test_caldb_env(tmp_path, monkeypatch):
    monkeypatch.delenv("CALDB", raising=False)
    with pytest.raises(NuskybgdError, match=r"\$CALDB is not set"):
        Caldb()
    monkeypatch.setenv("CALDB", str(tmp_path))
    with pytest.raises(NuskybgdError) as exc:
        Caldb()
    assert str(tmp_path / INDEX_RELPATH) in str(exc.value) and "$CALDB" in str(exc.value)
    _index(tmp_path, [dict(CAL_FILE="a.fits")])
    assert Caldb().root == tmp_path


def test_index_not_fits(tmp_path):
    p = tmp_path / INDEX_RELPATH
    p.parent.mkdir(parents=True)
    p.write_text("not an index")
    with pytest.raises(NuskybgdError, match="caldb.indx: cannot read CALDB index: not a FITS file"):
        Caldb(tmp_path)


def test_write_index_columns_and_clobber(tmp_path):
    _index(tmp_path, [dict(CAL_FILE="a.fits")])
    with fits.open(tmp_path / INDEX_RELPATH) as h:
        cif = h["CIF"]
        assert cif.columns.names == ["TELESCOP", "INSTRUME", "DETNAM", "FILTER", "CAL_DEV", "CAL_DIR", "CAL_FILE",
                                     "CAL_CLAS", "CAL_DTYP", "CAL_CNAM", "CAL_CBD", "CAL_XNO", "CAL_VSD",
                                     "CAL_VST", "REF_TIME", "CAL_QUAL", "CAL_DATE", "CAL_DESC"]
        assert cif.data["CAL_CBD"].shape == (1, 9)
        assert cif.data["REF_TIME"][0] == 55197.0  # MJD of 2010-01-01
    with pytest.raises(NuskybgdError, match="exists"):
        write_caldb_index(tmp_path, [dict(INSTRUME="FPMA", CAL_CNAM="X", CAL_DIR=D, CAL_FILE="b.fits")])
    write_caldb_index(tmp_path, [dict(INSTRUME="FPMA", CAL_CNAM="X", CAL_DIR=D, CAL_FILE="b.fits")], clobber=True)
    assert Caldb(tmp_path).entries[0]["CAL_CNAM"] == "X"
    with pytest.raises(NuskybgdError, match="lacks CAL_FILE"):
        write_caldb_index(tmp_path, [dict(INSTRUME="FPMA", CAL_CNAM="X", CAL_DIR=D)], clobber=True)


def test_index_entries_from_real_file(tmp_path, shared_caldb):
    dest = tmp_path / "data/nustar/fpm/bcf/detabs"
    dest.mkdir(parents=True)
    f = dest / "nuAdetabs20100101v002.fits"
    f.write_bytes((shared_caldb / "nuAdetabs20100101v002.fits").read_bytes())
    rows = index_entries_for_file(tmp_path, f)
    assert [(r["CAL_CNAM"], r["DETNAM"], r["CAL_XNO"], r["INSTRUME"]) for r in rows] == [
        ("DETABS", f"DET{d}", d + 1, "FPMA") for d in range(4)]
    assert rows[0]["CAL_DIR"] == "data/nustar/fpm/bcf/detabs"
    with pytest.raises(NuskybgdError, match="not inside the CALDB root"):
        index_entries_for_file(tmp_path / "elsewhere", f)


# ---- synthetic CALDB --------------------------------------------------------

PIECES = [("PIXPOS", "PIXPOS", True), ("BADPIX", "BADPIX", True), ("DETABS", "DETABS", True),
          ("MATRIX", "MATRIX", True), ("EBOUNDS", "EBOUNDS", True), ("GRPRMF", "GRPRMF", True),
          ("INSTRMAP", "INSTRMAP", False), ("SPECRESP", "SPECRESP", False), ("BEABS", "BEABS", False)]


@pytest.fixture(scope="module")
def cdb(synthetic_caldb):
    return Caldb(synthetic_caldb)


@pytest.mark.parametrize("module", ["A", "B"])
@pytest.mark.parametrize("cnam,extname,per_det", PIECES, ids=[p[0] for p in PIECES])
def test_synthetic_caldb_every_piece(cdb, module, cnam, extname, per_det):
    dets = range(4) if per_det else [None]
    for det in dets:
        q = cdb.query(cnam, module, det, date="2018-09-28T18:48:57")
        with fits.open(q.path) as h:
            hdr = h[q.extno].header
            assert hdr["EXTNAME"].strip() == extname
            assert hdr["CCNM0001"].strip() == cnam
            inst = hdr["INSTRUME"].strip()
            assert inst == ("FPM" if cnam == "BEABS" else f"FPM{module}")
            if det is not None:
                assert hdr["DETNAM"].strip() == f"DET{det}"


def test_synthetic_instrmap(cdb, shared_caldb):
    for m in "AB":
        q = cdb.query("INSTRMAP", m)
        with fits.open(q.path) as h:
            img = h[q.extno].data
        assert img.shape == (360, 360)
        assert set(np.unique(img)) == {0, 1}
        # coverage derived independently from PIXPOS (grades 0..26, any PDF > 0)
        cov = np.zeros((360, 360), bool)
        with fits.open(shared_caldb / f"nu{m}pixpos20100101v007.fits.gz") as h:
            for ext in h[1:]:
                d = ext.data
                pdfs = np.asarray(d["PDF"]).reshape(len(d), 49)
                ok = (d["GRADE"] <= 26) & (d["REF_DET1X"] >= 0) & np.all(np.isfinite(pdfs), axis=1)
                for x, y, pdf in zip(d["REF_DET1X"][ok], d["REF_DET1Y"][ok], pdfs[ok]):
                    cov[y:y + 7, x:x + 7] |= pdf.reshape(7, 7) > 0
        cov = np.roll(cov, (-1, -1), axis=(0, 1))
        on = img.astype(bool)
        assert np.all(cov[on])                    # never on where no PDF reaches
        assert on.sum() > 0.97 * cov.sum()        # nearly all of the covered area
        assert 95000 < on.sum() < 115000          # four 32x32 detectors of ~5x5 DET1 pixels each


def test_synthetic_badpix(cdb):
    for m in "AB":
        tables = read_badpix(cdb.query("BADPIX", m, 0).path)
        assert [t.det for t in tables] == [0, 1, 2, 3]
        for t in tables:
            assert 3 <= t.rawx.size <= 5 and t.tstart is None and t.tstop is None
            assert np.all(t.badflag[:, 15]) and not np.any(t.badflag[:, :15])
            assert np.all((t.rawx < 32) & (t.rawy < 32))


def test_synthetic_detabs_arf_beabs(cdb, shared_caldb, auxil_dir):
    with fits.open(cdb.query("DETABS", "B", 2).path) as hb, fits.open(
            shared_caldb / "nuAdetabs20100101v002.fits") as ha:
        for d in range(4):
            np.testing.assert_array_equal(hb[d + 1].data["DETABS"], ha[d + 1].data["DETABS"])
    arf_b = read_arf(cdb.query("SPECRESP", "B").path)
    arf_a = read_arf(shared_caldb / "nuA20100101v006.arf")
    np.testing.assert_array_equal(arf_b.specresp, arf_a.specresp)
    with fits.open(cdb.query("BEABS", "A").path) as h:
        be = h["BEABS"].data
    ref = read_arf(auxil_dir / "be.arf")
    np.testing.assert_array_equal(be["ATT"], ref.specresp)
    np.testing.assert_array_equal(be["ENERG_LO"], ref.energ_lo.astype(np.float32))
    assert np.all(np.diff(be["ENERG_LO"]) > 0)


def test_synthetic_rmfs(cdb, shared_caldb):
    real = read_rmf(shared_caldb / "nuAdet3_20100101v002.rmf.gz")
    real_sums = rmf_matrix(real).sum(axis=1)
    for m in "AB":
        for d in range(4):
            path = cdb.rmf(m, d, date="2018-01-01")          # GRPRMF -> RMFFILE
            assert path == cdb.query("MATRIX", m, d).path
            assert path.stat().st_size < 2_500_000
            rmf = read_rmf(path)
            dense = rmf_matrix(rmf)
            np.testing.assert_array_equal(rmf.e_min, real.e_min)
            np.testing.assert_array_equal(rmf.energ_hi, real.energ_hi)
            np.testing.assert_allclose(dense.sum(axis=1), real_sums, rtol=2e-6, atol=1e-9)
            ch = 0.5 * (rmf.e_min + rmf.e_max)
            for energy in (6.0, 20.0, 68.0):
                i = np.searchsorted(rmf.energ_lo, energy)
                row = dense[i] / dense[i].sum()
                mean = (row * ch).sum()
                fwhm = 2.0 * np.sqrt(2.0 * np.log(2.0)) * np.sqrt((row * (ch - mean) ** 2).sum())
                e_mid = 0.5 * (rmf.energ_lo[i] + rmf.energ_hi[i])
                np.testing.assert_allclose(mean, e_mid, atol=0.002)
                # channel binning adds 0.04^2/12 keV^2 to the variance
                want = np.sqrt(rmf_fwhm(e_mid, RMF_DET_SCALE[d]) ** 2 + 8 * np.log(2) * 0.04**2 / 12)
                np.testing.assert_allclose(fwhm, want, rtol=0.01)


def test_synthetic_caldb_size(synthetic_caldb):
    total = sum(p.stat().st_size for p in Path(synthetic_caldb).rglob("*") if p.is_file())
    assert total < 50e6


def test_make_caldb_keeps_existing(synthetic_caldb, shared_caldb):
    index = Path(synthetic_caldb) / INDEX_RELPATH
    before = index.read_bytes()
    with pytest.raises(NuskybgdError, match="exists"):
        make_caldb(synthetic_caldb, shared_caldb=shared_caldb, progress=False)
    assert index.read_bytes() == before


def test_make_caldb_missing_real_files(tmp_path):
    with pytest.raises(NuskybgdError, match="real CALDB file needed by make_caldb is missing"):
        make_caldb(tmp_path / "c", shared_caldb=tmp_path, progress=False)
    assert not (tmp_path / "c" / INDEX_RELPATH).exists()


def test_plain_folder_without_index(shared_caldb, caplog):
    """A folder of real CALDB files without caldb.indx: index built in memory, and logged."""
    from nuskybgd.calib.cif import forget_folder_indexes
    forget_folder_indexes()  # as in a new process (another test may have indexed the folder already)
    with caplog.at_level(logging.INFO, logger="nuskybgd"):
        db = Caldb(shared_caldb)
    assert db.in_memory and db.index_path == Path(shared_caldb).absolute()
    assert "no caldb.indx" in caplog.text and "in memory" in caplog.text
    # 1 ARF + 2 RMF extensions + 4 DETABS + 2 x 4 PIXPOS
    assert len(db.entries) == 15
    pix = db.query("PIXPOS", "FPMB", "DET2", date="2020-05-01")
    assert pix.path.name == "nuBpixpos20100101v007.fits.gz" and pix.extno == 3
    det = db.query("DETABS", "A", 1)
    assert det.path.name == "nuAdetabs20100101v002.fits" and det.extno == 2
    assert db.query("SPECRESP", "FPMA").path.name == "nuA20100101v006.arf"
    assert db.rmf("FPMA", 3).name == "nuAdet3_20100101v002.rmf.gz"  # no GRPRMF: MATRIX
    with pytest.raises(NuskybgdError, match="no CALDB file for CAL_CNAM=DETABS INSTRUME=FPMB"):
        db.query("DETABS", "FPMB", 0)
    with pytest.raises(NuskybgdError, match="valid-from"):
        db.query("PIXPOS", "FPMA", 0, date="2009-01-01")


def test_plain_folder_from_environment(shared_caldb, monkeypatch):
    monkeypatch.setenv("CALDB", str(shared_caldb))
    assert Caldb().query("PIXPOS", "A", 0).extno == 1


def test_plain_folder_in_subfolders_and_junk_skipped(tmp_path, shared_caldb):
    sub = tmp_path / "bcf" / "detabs"
    sub.mkdir(parents=True)
    (sub / "detabs.fits").write_bytes((shared_caldb / "nuAdetabs20100101v002.fits").read_bytes())
    (tmp_path / "notes.txt").write_text("not FITS")
    fits.PrimaryHDU().writeto(tmp_path / "plain.fits")  # FITS without CALDB keywords
    db = Caldb(tmp_path)
    hit = db.query("DETABS", "FPMA", "DET3")
    assert hit.path == (sub / "detabs.fits").resolve() and hit.extno == 4
    assert hit.entry["CAL_DIR"] == "bcf/detabs"


def test_folder_without_calibration_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not FITS")
    with pytest.raises(NuskybgdError, match="no file with CALDB keywords"):
        Caldb(tmp_path)
    with pytest.raises(NuskybgdError, match="is not a folder"):
        Caldb(tmp_path / "missing")


def test_plain_folder_rows_kept_between_processes(tmp_path, shared_caldb, monkeypatch):
    """Rows of a plain folder are stored in the user cache; a changed file is read again, a damaged store rebuilt."""
    import os

    from nuskybgd.calib import caldb as C
    from nuskybgd.calib import cif

    monkeypatch.setenv("NUSKYBGD_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cal"
    folder.mkdir()
    det = folder / "detabs.fits"
    det.write_bytes((shared_caldb / "nuAdetabs20100101v002.fits").read_bytes())
    (folder / "notes.txt").write_text("not FITS")
    calls = []
    real = cif.index_entries_for_file
    monkeypatch.setattr(cif, "index_entries_for_file", lambda root, p: calls.append(Path(p).name) or real(root, p))

    def fresh():  # a new process: nothing in memory
        cif.forget_folder_indexes()
        return C.Caldb(folder)

    assert fresh().query("DETABS", "A", 2).extno == 3
    assert sorted(calls) == ["detabs.fits", "notes.txt"]
    (store,) = (tmp_path / "cache" / "caldb-index").glob("*.json")
    calls.clear()
    assert fresh().query("DETABS", "A", 2).extno == 3 and calls == []
    st = det.stat()
    os.utime(det, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # touched: read again
    fresh()
    assert calls == ["detabs.fits"]
    calls.clear()
    store.write_text("{damaged")
    assert fresh().query("DETABS", "A", 0).extno == 1
    assert sorted(calls) == ["detabs.fits", "notes.txt"]
