"""Command-line tasks mkimgs, aspecthist, mkinstrmap, projbgd: outputs and bad input."""

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.cli import main
from nuskybgd.io.events import read_events, sky_wcs

OBS = "obs_80415201001"
SUNPOS = "events/nu90410111001A06_cl_sunpos.evt"


def run_cli(capsys, *argv):
    rc = main(list(map(str, argv)))
    err = capsys.readouterr().err
    return rc, err


def assert_one_line_error(rc, err, *words):
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], err


# ---------------------------------------------------------------- mkimgs

def synthetic_events(path, n=5000, seed=0, pa=True, grid=1000):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, grid + 0.5, n)
    y = rng.normal(500, 120, n)
    pi = rng.integers(0, 1000, n)
    cols = [fits.Column(name="TIME", format="D", array=np.sort(rng.uniform(0, 1000, n))),
            fits.Column(name="PI", format="J", array=pi),
            fits.Column(name="X", format="E", array=x), fits.Column(name="Y", format="E", array=y)]
    h = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    for n_, ax, crval, cdelt in ((3, "RA---TAN", 150.25, -6.828076e-4), (4, "DEC--TAN", 2.5, 6.828076e-4)):
        h.header[f"TCTYP{n_}"] = ax
        h.header[f"TCRVL{n_}"] = crval
        h.header[f"TCDLT{n_}"] = cdelt
        h.header[f"TCRPX{n_}"] = 500.5
        h.header[f"TCUNI{n_}"] = "deg"
        h.header[f"TLMIN{n_}"] = 1
        h.header[f"TLMAX{n_}"] = grid
    h.header["INSTRUME"] = "FPMB"
    h.header["TELESCOP"] = "NuSTAR"
    h.header["OBS_ID"] = "00000000001"
    if pa:
        h.header["PA_PNT"] = 123.4
    fits.HDUList([fits.PrimaryHDU(), h]).writeto(path)
    return x, y, pi


def test_mkimgs_counts_wcs_and_pa(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    x, y, pi = synthetic_events(tmp_path / "ev.fits")
    rc, err = run_cli(capsys, "mkimgs", "ev.fits", 3, 25)
    assert rc == 0, err
    with fits.open(tmp_path / "imB3to25keV.fits") as h:
        img, hdr = h[0].data, h[0].header
    assert img.shape == (1000, 1000)
    e = 1.6 + 0.04 * pi
    sel = (e >= 3 - 1e-9) & (e < 25 - 1e-9)
    ref, _, _ = np.histogram2d(np.floor(y[sel] - 0.5), np.floor(x[sel] - 0.5),
                               bins=[np.arange(1001), np.arange(1001)])
    np.testing.assert_array_equal(img, ref)
    assert (hdr["CHANMIN"], hdr["CHANMAX"]) == (35, 584)
    assert hdr["PA_PNT"] == 123.4
    assert hdr["CTYPE1"] == "RA---TAN" and hdr["CRPIX1"] == 500.5 and hdr["CRVAL2"] == 2.5
    # legacy form: mkimgs evtfile outname elow ehigh
    rc, err = run_cli(capsys, "mkimgs", "ev.fits", "im4to10", 4, 10)
    assert rc == 0 and (tmp_path / "im4to10.fits").exists()
    # an existing output is kept
    before = (tmp_path / "im4to10.fits").read_bytes()
    rc, err = run_cli(capsys, "mkimgs", "ev.fits", "im4to10", 4, 12)
    assert_one_line_error(rc, err, "exists")
    assert (tmp_path / "im4to10.fits").read_bytes() == before


def test_mkimgs_real_events(real, tmp_path, capsys):
    ev = read_events(real / SUNPOS)
    out = tmp_path / "sun.fits"
    rc, err = run_cli(capsys, "mkimgs", real / SUNPOS, 1.6, 79, "--out", out)
    assert rc == 0, err
    img = fits.getdata(out)
    w = sky_wcs(ev)
    assert img.shape == (w.pixel_shape[1], w.pixel_shape[0])
    pi = ev.columns["PI"]
    sel = (pi >= 0) & (pi <= 1934) & np.isfinite(ev.columns["X"])
    assert img.sum() == sel.sum() > 1000
    assert fits.getheader(out)["PA_PNT"] == -100.0


@pytest.mark.parametrize("case,words", [("nopa", ["PA_PNT"]), ("band", ["ELOW must be below"])])
def test_mkimgs_bad_input(tmp_path, monkeypatch, capsys, case, words):
    monkeypatch.chdir(tmp_path)
    synthetic_events(tmp_path / "ev.fits", pa=(case != "nopa"))
    band = (25, 3) if case == "band" else (3, 25)
    rc, err = run_cli(capsys, "mkimgs", "ev.fits", *band)
    assert_one_line_error(rc, err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev.fits"]


# ---------------------------------------------------------------- aspecthist

def test_aspecthist_cli(real, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    obs = real / OBS
    rc, err = run_cli(capsys, "aspecthist", obs / "nu80415201001A_det1.fits",
                      f"gtifile={obs / 'nu80415201001A06_gti.fits'}", "out=aspA.fits")
    assert rc == 0, err
    with fits.open(tmp_path / "aspA.fits") as h:
        hdr = h[0].header
        assert hdr["EXTNAME"] == "ASPECT_HISTOGRAM"
        assert hdr["EXPOSURE"] == pytest.approx(2765.0, abs=0.5)
        assert (hdr["X_OFF"], hdr["Y_OFF"]) == (257, 581)
        assert h[0].data.sum() == pytest.approx(hdr["EXPOSURE"], rel=1e-12)
    # default output name from INSTRUME
    rc, err = run_cli(capsys, "aspecthist", obs / "nu80415201001B_det1.fits",
                      "--gtifile", obs / "nu80415201001B06_gti.fits")
    assert rc == 0 and (tmp_path / "aspecthistB.fits").exists()


def test_aspecthist_no_exposure(real, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cols = [fits.Column(name="START", format="D", array=[1.0]), fits.Column(name="STOP", format="D", array=[2.0])]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="STDGTI")]).writeto("gti.fits")
    rc, err = run_cli(capsys, "aspecthist", real / OBS / "nu80415201001A_det1.fits", "gtifile=gti.fits",
                      "out=asp.fits")
    assert_one_line_error(rc, err, "no exposure")
    assert not (tmp_path / "asp.fits").exists()


# ---------------------------------------------------------------- mkinstrmap

def user_badpix(path, det, rawx, rawy):
    cols = [fits.Column(name="RAWX", format="B", array=[rawx]), fits.Column(name="RAWY", format="B", array=[rawy]),
            fits.Column(name="TIME", format="D", array=[0.0]), fits.Column(name="TIME_STOP", format="D", array=[1.0]),
            fits.Column(name="BADFLAG", format="16X", array=np.zeros((1, 16), bool))]
    h = fits.BinTableHDU.from_columns(cols, name="BADPIX")
    h.header["DETNAM"] = f"DET{det}"  # no TSTART/TSTOP: always applied
    fits.HDUList([fits.PrimaryHDU(), h]).writeto(path)


def test_mkinstrmap_cli(real, synthetic_caldb, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CALDB", str(synthetic_caldb))
    rc, err = run_cli(capsys, "mkinstrmap", real / SUNPOS, "prefix=plain_")
    assert rc == 0, err
    with fits.open(tmp_path / "plain_newinstrmapA.fits") as h:
        assert h[0].header["EXTNAME"] == "INSTRMAP"
        plain = h[0].data
    assert plain.shape == (360, 360)
    assert set(np.unique(plain)) == {0, 1, 2, 3, 4}
    for d in (1, 2, 3, 4):
        assert (plain == d).sum() > 15000
    # the real hot-pixel list: pixels hot for 600-1200 s of 5400 s (< 80%) are not applied
    hp = real / OBS / "nu80415201001A_hp.fits"
    rc, err = run_cli(capsys, "mkinstrmap", real / SUNPOS, f"usrbpix={hp}", "prefix=hp_")
    assert rc == 0, err
    np.testing.assert_array_equal(fits.getdata(tmp_path / "hp_newinstrmapA.fits"), plain)
    # a user bad pixel of DET2 removes ~25 DET1 pixels, all of detector 2
    user_badpix(tmp_path / "bad.fits", 2, 16, 16)
    rc, err = run_cli(capsys, "mkinstrmap", real / SUNPOS, f"usrbpix={hp},bad.fits", "--prefix", "user_")
    assert rc == 0, err
    imap = fits.getdata(tmp_path / "user_newinstrmapA.fits")
    removed = (plain > 0) & (imap == 0)
    assert 10 <= removed.sum() <= 40
    assert set(np.unique(plain[removed])) == {3}
    assert not ((plain == 0) & (imap > 0)).any()


def test_mkinstrmap_without_caldb(real, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CALDB", str(tmp_path / "nocaldb"))
    rc, err = run_cli(capsys, "mkinstrmap", real / SUNPOS)
    assert_one_line_error(rc, err, "CALDB")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- projbgd

@pytest.fixture(scope="module")
def proj_inputs(real, tmp_path_factory):
    """Aspect histogram and chipmap (real PIXPOS, all-ones INSTRMAP) for module A."""
    from nuskybgd.io.skyfiles import read_pixpos
    from nuskybgd.sky.instrmap import instrument_map, pixel_map
    d = tmp_path_factory.mktemp("projin")
    obs = real / OBS
    assert main(["aspecthist", str(obs / "nu80415201001A_det1.fits"),
                 f"gtifile={obs / 'nu80415201001A06_gti.fits'}", f"out={d / 'asp.fits'}"]) == 0
    pm = pixel_map(read_pixpos(real.parent / "caldb" / "nustar" / "nuApixpos20100101v007.fits.gz"))
    hdu = fits.PrimaryHDU(instrument_map(np.ones((360, 360)), pm))
    hdu.header["EXTNAME"] = "INSTRMAP"
    hdu.writeto(d / "chip.fits")
    refimg = obs / "nu80415201001A06_chu2_S_cl_grade0_sk.img.gz"
    assert "PA_PNT" in fits.getheader(refimg)
    return d, refimg


def test_projbgd_cli(proj_inputs, tmp_path, monkeypatch, capsys):
    d, refimg = proj_inputs
    monkeypatch.chdir(tmp_path)
    rc, err = run_cli(capsys, "projbgd", f"refimg={refimg}", "out=bgdapA.fits", "mod=A", "det=1234",
                      f"chipmap={d / 'chip.fits'}", f"aspect={d / 'asp.fits'}", "--plot", "projA.png")
    assert rc == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["bgdapA.fits", "det0Aim.fits", "det1Aim.fits", "det2Aim.fits", "det3Aim.fits", "projA.png"]
    ref = fits.getheader(refimg)
    with fits.open("bgdapA.fits") as h:
        assert h[0].data.shape == (1000, 1000)
        assert h[0].header["PA_PNT"] == ref["PA_PNT"] and h[0].header["CRVAL1"] == ref["CRVAL1"]
        ap = h[0].data
    # with the all-ones INSTRMAP every DET1 pixel of a detector projects with weight 1/E * E
    chip = fits.getdata(d / "chip.fits")
    dets = [fits.getdata(f"det{k}Aim.fits") for k in range(4)]
    assert all(im.min() >= 0 for im in dets) and ap.min() >= 0
    # detector images sum to about the DET1 pixel count or less (part of the field lies off the image)
    for k in range(4):
        assert 0 < dets[k].sum() <= (chip == k + 1).sum() * 1.01  # nearest-pixel rotation: +-1%
    # subset of detectors into --outdir; an existing file is kept unless --clobber
    (tmp_path / "sub").mkdir()
    rc, err = run_cli(capsys, "projbgd", "--refimg", refimg, "--out", "sub/ap.fits", "--mod", "A", "--det", "24",
                      "--chipmap", d / "chip.fits", "--aspect", d / "asp.fits", "--outdir", "sub")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["ap.fits", "det1Aim.fits", "det3Aim.fits"]
    np.testing.assert_allclose(fits.getdata("sub/det1Aim.fits"), dets[1], rtol=1e-12)
    rc, err = run_cli(capsys, "projbgd", "--refimg", refimg, "--out", "sub/ap.fits", "--mod", "A", "--det", "2",
                      "--chipmap", d / "chip.fits", "--aspect", d / "asp.fits", "--outdir", "sub")
    assert_one_line_error(rc, err, "exists")


def _bad_refimg(path, case, refimg):
    with fits.open(refimg) as h:
        data, hdr = h[0].data.astype(np.float32), h[0].header.copy()
    if case == "nopa":
        del hdr["PA_PNT"]
    elif case == "nowcs":
        for k in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2", "CRPIX1", "CRPIX2"):
            del hdr[k]
    elif case == "size":
        data = data[:500, :500]
    fits.PrimaryHDU(data, header=hdr).writeto(path)


@pytest.mark.parametrize("case,words", [
    ("nopa", ["PA_PNT"]), ("nowcs", ["celestial WCS"]), ("size", ["500x500", "1000x1000"]),
    ("noexp", ["no exposure"]), ("nochip", ["no INSTRMAP"]), ("module", ["unknown module"]),
    ("det", ["det="]),
])
def test_projbgd_bad_input(proj_inputs, tmp_path, monkeypatch, capsys, case, words):
    d, refimg = proj_inputs
    monkeypatch.chdir(tmp_path)
    ref, chip, asp, mod, det = str(refimg), str(d / "chip.fits"), str(d / "asp.fits"), "A", "1234"
    if case in ("nopa", "nowcs", "size"):
        ref = "ref.fits"
        _bad_refimg(ref, case, refimg)
    elif case == "noexp":
        asp = "asp0.fits"
        fits.PrimaryHDU(np.zeros((5, 5))).writeto(asp)
    elif case == "nochip":
        chip = "chip0.fits"
        fits.PrimaryHDU(np.ones((360, 360), np.int16)).writeto(chip)
    elif case == "module":
        mod = "C"
    elif case == "det":
        det = "5"
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, err = run_cli(capsys, "projbgd", f"refimg={ref}", "out=bgdap.fits", f"mod={mod}", f"det={det}",
                      f"chipmap={chip}", f"aspect={asp}")
    assert_one_line_error(rc, err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
