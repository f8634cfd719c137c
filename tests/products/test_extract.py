"""Tests of nuskybgd.products.extract (issue 6) on simulated observations."""

import copy
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from nuskybgd.errors import NuskybgdError
from nuskybgd.products.extract import (
    N_CHANNELS,
    detector_fractions,
    energy_band_channels,
    events_in_mask,
    extract_spectrum,
    group_min_counts,
    output_paths,
    pha_counts,
    weighted_rmf_matrix,
)

_REGION_DIR = Path(__file__).resolve().parents[3] / "shared" / "real" / "regions"
REAL_REGIONS = sorted(p.name for p in _REGION_DIR.glob("*.reg")) or [
    "KP15_all.reg", "Source_NE.reg", "Source_SW.reg", "bg_30001002001A.reg", "bg_30302006006B.reg",
    "bg_30302007004A.reg", "reg_fpma.reg", "reg_fpmb.reg", "testbox0.reg"]


# ---------------------------------------------------------------- helpers

def grppha_group_min(counts, grpmin):
    """Reference: grppha 'group min' by a plain loop (tail marked bad)."""
    n = len(counts)
    grouping = np.ones(n, int)
    quality = np.zeros(n, int)
    acc, start = 0, 0
    for i in range(n):
        if i > start:
            grouping[i] = -1
        acc += counts[i]
        if acc >= grpmin:
            acc, start = 0, i + 1
    if start < n:
        quality[start:] = 2
    return grouping, quality


def group_sums(counts, grouping):
    starts = np.flatnonzero(grouping == 1)
    return np.add.reduceat(counts, starts), starts


def write_circle(path, x, y, r, frame="image"):
    Path(path).write_text(f"# Region file format: DS9 version 4.1\n{frame}\ncircle({x},{y},{r})\n")
    return Path(path)


def recentre_region(src, dst, wcs, centre_xy):
    """Move every shape of a DS9 file so that their mean centre is at a sky pixel.

    Sky shapes are moved rigidly on the sphere (each centre or vertex keeps
    its separation and position angle from the mean centre); sizes and
    angles are kept. Returns the destination path.
    """
    from astropy.coordinates import SkyCoord
    from regions import Regions

    from nuskybgd.io.regions import read_region_shapes

    shapes = read_region_shapes(src)
    target = wcs.pixel_to_world(centre_xy[0] - 1, centre_xy[1] - 1)  # 1-based event pixel -> 0-based

    def points(reg):
        if hasattr(reg, "vertices"):
            return reg.vertices
        return reg.center

    pts = [points(s.region) for s in shapes]
    allpts = SkyCoord([p for pp in pts for p in np.atleast_1d(pp)])
    mean = SkyCoord(np.mean(allpts.cartesian.x), np.mean(allpts.cartesian.y), np.mean(allpts.cartesian.z),
                    representation_type="cartesian", frame=allpts.frame).spherical
    ref = SkyCoord(mean.lon, mean.lat, frame=allpts.frame)

    def move(c):
        c = c.transform_to(ref.frame)
        moved = target.transform_to(ref.frame).directional_offset_by(ref.position_angle(c), ref.separation(c))
        return SkyCoord(moved.ra, moved.dec, frame="icrs") if hasattr(moved, "ra") else moved

    out = []
    for s in shapes:
        r = copy.deepcopy(s.region)
        if hasattr(r, "vertices"):
            r.vertices = move(r.vertices)
        else:
            r.center = move(r.center)
        r.meta["include"] = s.include
        out.append(r)
    Regions(out).write(str(dst), format="ds9", overwrite=True)
    return Path(dst)


@pytest.fixture(scope="module")
def obs(simulated_obs):
    return simulated_obs


@pytest.fixture(scope="module")
def evt_a(obs):
    return obs.events["A"]


@pytest.fixture(scope="module")
def wcs_a(evt_a):
    from nuskybgd.io.events import read_events, sky_wcs
    return sky_wcs(read_events(evt_a))


@pytest.fixture
def caldb_env(obs, monkeypatch):
    monkeypatch.setenv("CALDB", str(obs.caldb))
    return obs.caldb


def centre_of(obs, m="A"):
    return obs.truth["modules"][m]["footprint_centre_xy_1based"]


# ---------------------------------------------------------------- kernels

@pytest.mark.parametrize("tail", ["bad", "merge"])
@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=300), grpmin=st.integers(1, 60))
def test_group_min_satisfies_minimum_and_covers_all(tail, counts, grpmin):
    counts = np.array(counts)
    grouping, quality = group_min_counts(counts, grpmin, tail=tail)
    assert grouping[0] == 1
    assert set(np.unique(grouping)) <= {1, -1}
    sums, starts = group_sums(counts, grouping)
    good = quality[starts] == 0
    assert np.all(sums[good] >= grpmin)
    # every channel in exactly one group; quality constant within a group
    ids = np.cumsum(grouping == 1) - 1
    assert ids.min() == 0 and ids.max() == len(starts) - 1
    for g in range(len(starts)):
        assert len(set(quality[ids == g])) == 1
    bad = ~good
    assert bad.sum() <= 1 and (not bad.any() or bad[-1])
    if bad.any():
        assert sums[-1] < grpmin
    if tail == "bad":
        ref_g, ref_q = grppha_group_min(counts, grpmin)
        np.testing.assert_array_equal(grouping, ref_g)
        np.testing.assert_array_equal(quality, ref_q)
    else:
        assert not bad.any() or len(starts) == 1


@pytest.mark.parametrize("elow,ehigh,first,last", [
    (None, None, 0, 4095), (3.0, 79.0, 35, 1934), (1.6, 165.44, 0, 4095), (10.02, 10.06, 211, 210 + 0),
])
def test_energy_band_channels(elow, ehigh, first, last):
    if last < first:
        with pytest.raises(NuskybgdError):
            energy_band_channels(elow, ehigh)
        return
    assert energy_band_channels(elow, ehigh) == (first, last)
    # nominal channel energies lie inside the band
    lo, hi = 1.6 + 0.04 * first, 1.64 + 0.04 * last
    assert elow is None or lo >= elow - 1e-9
    assert ehigh is None or hi <= ehigh + 1e-9


def test_group_band_quality_five():
    counts = np.full(100, 3)
    g, q = group_min_counts(counts, 10, first=20, last=79)
    assert np.all(q[:20] == 5) and np.all(q[80:] == 5)
    assert np.all(g[:20] == 1) and np.all(g[80:] == 1)
    sums, starts = group_sums(counts, g)
    inside = (starts >= 20) & (starts < 80) & (q[starts] == 0)
    assert np.all(sums[inside] >= 10)


def test_events_in_mask_pixel_convention():
    mask = np.zeros((10, 10), bool)
    mask[2, 3] = True  # pixel index x=3, y=2 spans X in [3.5, 4.5), Y in [2.5, 3.5)
    x = np.array([3.5, 4.49, 4.5, 3.49, 4.0, np.nan, 4.0])
    y = np.array([3.0, 3.0, 3.0, 3.0, 3.49, 3.0, 3.5])
    np.testing.assert_array_equal(events_in_mask(x, y, mask), [True, True, False, False, True, False, False])


def test_detector_fractions_and_weighted_rmf():
    f = detector_fractions(np.array([0, 0, 1, 3, 3, 3, 7]))
    np.testing.assert_allclose(f, [2 / 6, 1 / 6, 0, 3 / 6], rtol=0, atol=1e-15)
    with pytest.raises(NuskybgdError):
        detector_fractions(np.array([9, 9]))
    rng = np.random.default_rng(3)
    mats = [rng.random((5, 7)) for _ in range(4)]
    w = [0.1, 0.2, 0.0, 0.7]
    absn = [rng.random(5) for _ in range(4)]
    got = weighted_rmf_matrix([mats[0], mats[1], None, mats[3]], w, absn)
    ref = sum(w[k] * absn[k][:, None] * mats[k] for k in (0, 1, 3))
    np.testing.assert_allclose(got, ref, rtol=1e-15, atol=0)


def test_pha_counts_ignores_out_of_range():
    c = pha_counts(np.array([0, 0, 5, 4095, 4096, -1]))
    assert c.size == N_CHANNELS and c.sum() == 4 and c[0] == 2 and c[5] == 1 and c[4095] == 1


# ---------------------------------------------------------------- on the simulation

@pytest.fixture(scope="module")
def extracted(obs, tmp_path_factory):
    """One extraction (circle plus an excluded box) of FPMA; CALDB from the simulation."""
    d = tmp_path_factory.mktemp("extract")
    cx, cy = centre_of(obs)
    reg = d / "bgd1.reg"
    reg.write_text("# Region file format: DS9 version 4.1\nimage\n"
                   f"circle({cx - 30:.2f},{cy + 20:.2f},110)\n-box({cx - 40:.2f},{cy + 30:.2f},40,30,25)\n")
    res = extract_spectrum(obs.events["A"], reg, outprefix="bgd1A", outdir=d, grpmin=30, caldb=obs.caldb)
    return res, reg, d


def test_output_names_follow_original_layout(extracted):
    res, reg, d = extracted
    assert (res.pha, res.rmf, res.grouped) == output_paths("bgd1A", d, 30)
    assert res.pha.name == "bgd1A_sr.pha" and res.rmf.name == "bgd1A_sr.rmf" and res.grouped.name == "bgd1A_sr_g30.pha"
    for p in (res.pha, res.rmf, res.grouped):
        assert p.is_file()


def test_counts_equal_independent_selection(obs, extracted, wcs_a):
    res, reg, d = extracted
    from nuskybgd.io.regions import region_mask
    with fits.open(obs.events["A"]) as h:
        ev = h["EVENTS"].data
        x, y, pi = np.array(ev["X"], float), np.array(ev["Y"], float), np.array(ev["PI"])
    mask = region_mask(reg, wcs_a, (1000, 1000))
    ix = np.floor(x - 0.5).astype(int)
    iy = np.floor(y - 0.5).astype(int)
    inside = mask[iy, ix]
    ref, _ = np.histogram(pi[inside], bins=np.arange(N_CHANNELS + 1))
    with fits.open(res.pha) as h:
        counts = np.array(h["SPECTRUM"].data["COUNTS"])
        hdr = h["SPECTRUM"].header
    np.testing.assert_array_equal(counts, ref)
    assert counts.sum() == res.n_events > 100
    assert hdr["BACKSCAL"] == pytest.approx(mask.sum() / 1e6, rel=1e-12)
    with fits.open(obs.events["A"]) as h:
        assert hdr["EXPOSURE"] == pytest.approx(h["EVENTS"].header["EXPOSURE"], rel=1e-12)
        assert hdr["DATE-OBS"] == h["EVENTS"].header["DATE-OBS"]
    assert hdr["INSTRUME"] == "FPMA"
    assert hdr["RESPFILE"] == "bgd1A_sr.rmf"
    assert hdr["HDUCLAS1"] == "SPECTRUM" and hdr["ANCRFILE"] == "NONE"


def test_rmf_is_weighted_sum_of_caldb_rmfs(obs, extracted):
    res, reg, d = extracted
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.io.ogip import read_rmf, rmf_matrix
    with fits.open(obs.events["A"]) as h:
        ev = h["EVENTS"].data
        x, y, det = np.array(ev["X"], float), np.array(ev["Y"], float), np.array(ev["DET_ID"])
    from nuskybgd.io.events import read_events, sky_wcs
    from nuskybgd.io.regions import region_mask
    mask = region_mask(reg, sky_wcs(read_events(obs.events["A"])), (1000, 1000))
    inside = mask[np.floor(y - 0.5).astype(int), np.floor(x - 0.5).astype(int)]
    n = np.bincount(det[inside], minlength=4).astype(float)
    w = n / n.sum()
    np.testing.assert_allclose(res.det_fractions, w, rtol=0, atol=1e-15)
    hdr = fits.getheader(res.rmf, "MATRIX")
    np.testing.assert_allclose([hdr[f"DETFRAC{k}"] for k in range(4)], w, rtol=0, atol=1e-15)
    cal = Caldb(obs.caldb)
    mats = [rmf_matrix(read_rmf(cal.rmf("FPMA", f"DET{k}", date=hdr.get("DATE-OBS")))) for k in range(4)]
    ref = sum(w[k] * mats[k] for k in range(4))
    # in memory (float64): the kernel against the plain sum
    got64 = weighted_rmf_matrix(mats, w)
    assert np.max(np.abs(got64 - ref)) <= 1e-12
    # on disk: OGIP stores MATRIX as float32, so the file equals the float32 rounding of the sum
    got = rmf_matrix(read_rmf(res.rmf))
    np.testing.assert_array_equal(got, ref.astype(np.float32).astype(np.float64))
    assert np.max(np.abs(got - ref)) <= 1e-7 * ref.max()


def test_grouped_file(extracted):
    res, reg, d = extracted
    with fits.open(res.grouped) as h:
        data = h["SPECTRUM"].data
        counts, grouping, quality = (np.array(data[c]) for c in ("COUNTS", "GROUPING", "QUALITY"))
    assert grouping.size == N_CHANNELS and grouping[0] == 1
    sums, starts = group_sums(counts, grouping)
    good = quality[starts] == 0
    assert np.all(sums[good] >= 30)
    assert (~good).sum() <= 1
    ref_g, ref_q = grppha_group_min(counts, 30)
    np.testing.assert_array_equal(grouping, ref_g)
    np.testing.assert_array_equal(quality, ref_q)


def test_extension_records(extracted):
    res, reg, d = extracted
    with fits.open(res.pha) as h:
        names = [x.name for x in h]
        assert "REGION" in names and "GTI" in names
        lines = [s.strip() for s in h["REGION"].data["REGION"]]
        assert any(s.startswith("-box") for s in lines)
        assert len(h["GTI"].data) >= 1


def test_sherpa_and_astropy_read_without_warnings(extracted):
    res, reg, d = extracted
    from sherpa.astro import io as sio
    for p in (res.pha, res.rmf, res.grouped):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(p) as h:
                h.verify("exception")
                for hdu in h:
                    _ = hdu.data
        assert not caught, [str(w.message) for w in caught]
    logger = logging.getLogger("sherpa")
    records = []

    class Grab(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    hdl = Grab()
    logger.addHandler(hdl)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pha = sio.read_pha(str(res.grouped))
            rmf = sio.read_rmf(str(res.rmf))
            pha0 = sio.read_pha(str(res.pha))
    finally:
        logger.removeHandler(hdl)
    assert not records, records
    assert not caught, [str(w.message) for w in caught]
    assert pha.exposure > 0 and pha0.backscal == pytest.approx(res.backscal)
    assert pha.grouped and rmf.detchans == N_CHANNELS


def test_detabs_option(obs, extracted, tmp_path):
    res, reg, d = extracted
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.io.detabs import detabs_on_grid, read_detabs
    from nuskybgd.io.ogip import read_rmf, rmf_matrix
    r2 = extract_spectrum(obs.events["A"], reg, outprefix="abs", outdir=tmp_path, caldb=obs.caldb, detabs=True)
    cal = Caldb(obs.caldb)
    plain = [rmf_matrix(read_rmf(cal.rmf("FPMA", f"DET{k}"))) for k in range(4)]
    rmf0 = read_rmf(cal.rmf("FPMA", "DET0"))
    absn = []
    for k in range(4):
        lo, hi, v = read_detabs(cal.query("DETABS", "FPMA", detnam=f"DET{k}").path, k)
        absn.append(detabs_on_grid(rmf0.energ_lo, rmf0.energ_hi, lo, hi, v))
    ref = sum(r2.det_fractions[k] * absn[k][:, None] * plain[k] for k in range(4))
    got = rmf_matrix(read_rmf(r2.rmf))
    np.testing.assert_array_equal(got, ref.astype(np.float32).astype(np.float64))
    assert fits.getheader(r2.rmf, "MATRIX")["DETABS"] is True
    np.testing.assert_array_equal(r2.counts, res.counts)


def test_cli_legacy_arguments(obs, extracted, tmp_path, caldb_env):
    res, reg, d = extracted
    from nuskybgd.cli import main
    rc = main(["extract", str(obs.events["A"]), f"reg={reg}", "outprefix=cliA", f"outdir={tmp_path}",
               "grpmin=20", "attfile=none.fits"])
    assert rc == 0
    with fits.open(tmp_path / "cliA_sr.pha") as h:
        np.testing.assert_array_equal(np.array(h["SPECTRUM"].data["COUNTS"]), res.counts)
    assert (tmp_path / "cliA_sr_g20.pha").is_file() and (tmp_path / "cliA_sr.rmf").is_file()
    # existing outputs are kept without clobber; '!' overwrites
    rc = main(["extract", str(obs.events["A"]), str(reg), "--outprefix", "cliA", "--outdir", str(tmp_path),
               "--grpmin", "20"])
    assert rc != 0
    rc = main(["extract", str(obs.events["A"]), str(reg), "outprefix=!cliA", f"outdir={tmp_path}", "grpmin=20",
               "plot=yes"])
    assert rc == 0
    assert (tmp_path / "cliA_sr_g20.png").stat().st_size > 5000


@pytest.mark.parametrize("regname", REAL_REGIONS)
def test_real_regions_moved_onto_field(obs, wcs_a, regname, real, tmp_path):
    src = real / "regions" / regname
    moved = recentre_region(src, tmp_path / regname, wcs_a, centre_of(obs))
    res = extract_spectrum(obs.events["A"], moved, outprefix="r", outdir=tmp_path, caldb=obs.caldb)
    from nuskybgd.io.regions import region_mask
    mask = region_mask(moved, wcs_a, (1000, 1000))
    with fits.open(obs.events["A"]) as h:
        ev = h["EVENTS"].data
        x, y, pi = np.array(ev["X"], float), np.array(ev["Y"], float), np.array(ev["PI"])
    inside = mask[np.floor(y - 0.5).astype(int), np.floor(x - 0.5).astype(int)]
    np.testing.assert_array_equal(res.counts, np.bincount(pi[inside], minlength=N_CHANNELS))
    assert res.area_pixels == mask.sum() > 0


# ---------------------------------------------------------------- bad input

def _no_outputs(d, prefix):
    return not list(Path(d).glob(f"{prefix}_sr*")) and not list(Path(d).glob(f".{prefix}_sr*"))


def test_region_off_image(obs, tmp_path):
    reg = write_circle(tmp_path / "off.reg", 5000, 5000, 20)
    with pytest.raises(NuskybgdError) as e:
        extract_spectrum(obs.events["A"], reg, outprefix="off", outdir=tmp_path, caldb=obs.caldb)
    assert "off.reg" in str(e.value) and "\n" not in str(e.value)
    assert _no_outputs(tmp_path, "off")


def test_region_without_events(obs, tmp_path):
    reg = write_circle(tmp_path / "empty.reg", 20, 20, 5)  # on the grid, far from the detectors
    with pytest.raises(NuskybgdError, match="holds no event"):
        extract_spectrum(obs.events["A"], reg, outprefix="empty", outdir=tmp_path, caldb=obs.caldb)
    assert _no_outputs(tmp_path, "empty")


def test_event_file_without_sky_columns(obs, tmp_path):
    with fits.open(obs.events["A"]) as h:
        ev = h["EVENTS"]
        keep = [c for c in ev.columns if c.name not in ("X", "Y")]
        new = fits.BinTableHDU.from_columns(keep, header=None, name="EVENTS")
        for k in ("INSTRUME", "TELESCOP", "EXPOSURE", "DATE-OBS"):
            new.header[k] = ev.header[k]
        fits.HDUList([fits.PrimaryHDU(), new]).writeto(tmp_path / "nosky.evt")
    reg = write_circle(tmp_path / "c.reg", 500, 500, 50)
    with pytest.raises(NuskybgdError) as e:
        extract_spectrum(tmp_path / "nosky.evt", reg, outprefix="nosky", outdir=tmp_path, caldb=obs.caldb)
    assert "nosky.evt" in str(e.value) and "sky" in str(e.value)
    assert _no_outputs(tmp_path, "nosky")


def test_caldb_missing_rmf(obs, tmp_path):
    broken = tmp_path / "caldb"
    shutil.copytree(obs.caldb, broken)
    for p in broken.rglob("nuAdet*_*.rmf"):
        p.unlink()
    cx, cy = centre_of(obs)
    reg = write_circle(tmp_path / "c.reg", cx, cy, 80)
    with pytest.raises(NuskybgdError) as e:
        extract_spectrum(obs.events["A"], reg, outprefix="nocal", outdir=tmp_path, caldb=broken)
    assert "rmf" in str(e.value).lower() and "\n" not in str(e.value)
    assert _no_outputs(tmp_path, "nocal")


def test_cli_bad_input_exit_code(obs, tmp_path, capsys):
    from nuskybgd.cli import main
    reg = write_circle(tmp_path / "off.reg", 5000, 5000, 20)
    rc = main(["extract", str(obs.events["A"]), str(reg), "--outdir", str(tmp_path), "--caldb", str(obs.caldb)])
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]
    assert _no_outputs(tmp_path, "off")
