"""DS9 region masks (REFERENCE section 5) on real files and hand-made cases."""

import logging

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from regions import PixCoord

from nuskybgd.errors import NuskybgdError
from nuskybgd.io.regions import read_region_shapes, region_mask

PIX_DEG = 2.45810736 / 3600.0
REAL_FILES = ["KP15_all.reg", "Source_NE.reg", "Source_SW.reg", "bg_30001002001A.reg",
              "bg_30302006006B.reg", "bg_30302007004A.reg", "reg_fpma.reg", "reg_fpmb.reg", "testbox0.reg"]


def sky_wcs(ra, dec, frame="icrs"):
    w = WCS(naxis=2)
    if frame == "galactic":
        w.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    else:
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [500.5, 500.5]
    w.wcs.cdelt = [-PIX_DEG, PIX_DEG]
    w.wcs.set()
    return w


def centre_of_shapes(shapes):
    ras, decs = [], []
    for s in shapes:
        r = s.region
        c = r.center if hasattr(r, "center") else r.vertices
        c = c.icrs
        ras.extend(np.atleast_1d(c.ra.deg))
        decs.extend(np.atleast_1d(c.dec.deg))
    return float(np.mean(ras)), float(np.mean(decs))


def contains_mask(shapes, wcs, shape=(1000, 1000)):
    """Independent path: regions' contains() on every pixel centre."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    pix = PixCoord(xx.ravel(), yy.ravel())
    inc = np.zeros(shape[0] * shape[1], bool)
    exc = np.zeros_like(inc)
    for s in shapes:
        reg = s.region.to_pixel(wcs) if hasattr(s.region, "to_pixel") else s.region
        m = reg.contains(pix)
        if s.include:
            inc |= m
        else:
            exc |= m
    return (inc & ~exc).reshape(shape)


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_region_files(real, name):
    path = real / "regions" / name
    shapes = read_region_shapes(path)
    wcs = sky_wcs(*centre_of_shapes(shapes))
    mask = region_mask(path, wcs)
    expected = contains_mask(shapes, wcs)
    # pixel centres exactly on an edge may go either way between the two paths
    assert np.count_nonzero(mask != expected) <= 0.002 * expected.sum() + 2
    assert mask.sum() > 100


def test_real_circle_area(real):
    path = real / "regions" / "reg_fpma.reg"
    shapes = read_region_shapes(path)
    wcs = sky_wcs(*centre_of_shapes(shapes))
    r_pix = 51.692 / 2.45810736
    area = region_mask(path, wcs).sum()
    assert area == pytest.approx(np.pi * r_pix ** 2, abs=2 * np.pi * r_pix)  # within one perimeter


def test_real_files_ignore_markers_and_non_area_shapes(real, caplog):
    with caplog.at_level(logging.DEBUG, logger="nuskybgd"):
        shapes = read_region_shapes(real / "regions" / "Source_NE.reg")
    # line, line, zero-radius circle dropped; the polygon kept
    assert [type(s.region).__name__ for s in shapes] == ["PolygonSkyRegion"]
    assert "zero-size shape ignored" in caplog.text
    assert "has no area" in caplog.text
    kp = read_region_shapes(real / "regions" / "KP15_all.reg")
    assert len(kp) == 8  # 2 circles, 4 polygons, 2 ellipses; lines, point, texts dropped


@pytest.mark.parametrize("name", ["reg_fpma.reg", "reg_fpmb.reg"])
def test_region_off_the_real_image(real, name):
    # these circles are ~0.9 deg from the 80415201001 pointing (41' field): entirely off
    hdr = fits.getheader(real / "obs_80415201001" / "nu80415201001A06_chu2_S_cl_grade0_sk.img.gz")
    with pytest.raises(NuskybgdError, match="entirely outside") as exc:
        region_mask(real / "regions" / name, hdr)
    assert name in str(exc.value)


def write(tmp_path, text, name="r.reg"):
    p = tmp_path / name
    p.write_text("# Region file format: DS9 version 4.1\n" + text)
    return p


def test_exclusion_before_inclusion(tmp_path, caplog):
    p = write(tmp_path, "image\n-circle(500,500,10)\ncircle(500,500,30)\n")
    with caplog.at_level(logging.WARNING, logger="nuskybgd"):
        mask = region_mask(p, sky_wcs(10, 10))
    assert not mask[499, 499]           # DS9 rule: the hole stays
    assert mask[499, 499 + 20]
    assert "shape order matters" in caplog.text
    caplog.clear()
    q = write(tmp_path, "image\ncircle(500,500,30)\n-circle(500,500,10)\n", "q.reg")
    with caplog.at_level(logging.WARNING, logger="nuskybgd"):
        assert np.array_equal(region_mask(q, sky_wcs(10, 10)), mask)
    assert "shape order matters" not in caplog.text


def test_image_coordinates_are_one_based(tmp_path):
    p = write(tmp_path, "image\nbox(11,21,3,5,0)\n")
    mask = region_mask(p, None, shape=(100, 100))
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (9, 11, 18, 22)


def test_partly_off_image(tmp_path):
    p = write(tmp_path, "image\nbox(1,50.5,40,10,0)\n")  # x from -19 to 21 (1-based)
    mask = region_mask(p, None, shape=(100, 100))
    ys, xs = np.nonzero(mask)
    assert xs.min() == 0 and xs.max() == 19 and mask.sum() == 20 * 10


@pytest.mark.parametrize("text,match", [
    ("image\ncircle(50.5,50.5,0.3)\n", "zero area"),
    ("image\ncircle(50,50,20)\n-box(50,50,60,60,0)\n", "zero area"),
    ("image\ncircle(5000,5000,20)\n", "entirely outside"),
    ("fk5\npoint(10,10)\nline(10,10,10.1,10.1)\n", "no area shape"),
    ("image\ncircle(50,50,abc)\n", r"r.reg:3: cannot parse"),
])
def test_errors(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(NuskybgdError, match=match) as exc:
        region_mask(p, sky_wcs(10, 10), shape=(100, 100))
    assert "\n" not in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(NuskybgdError, match="not found"):
        region_mask(tmp_path / "none.reg", None)


@pytest.mark.parametrize("frame", ["fk5", "icrs", "galactic"])
def test_sky_frames(tmp_path, frame):
    c = SkyCoord(150.0, 2.0, unit="deg", frame="icrs")
    lon, lat = (c.galactic.l.deg, c.galactic.b.deg) if frame == "galactic" else (150.0, 2.0)
    if frame == "fk5":
        lon, lat = c.fk5.ra.deg, c.fk5.dec.deg
    p = write(tmp_path, f"{frame}\ncircle({lon:.8f},{lat:.8f},60\")\n")
    mask = region_mask(p, sky_wcs(150.0, 2.0))
    r = 60 / 2.45810736
    assert mask.sum() == pytest.approx(np.pi * r * r, abs=2 * np.pi * r)
    ys, xs = np.nonzero(mask)
    assert xs.mean() == pytest.approx(499.5, abs=0.5) and ys.mean() == pytest.approx(499.5, abs=0.5)


def test_annulus_ellipse_polygon_areas(tmp_path):
    p = write(tmp_path, "image\nannulus(300,300,20,40)\n")
    assert region_mask(p, None).sum() == pytest.approx(np.pi * (40 ** 2 - 20 ** 2), abs=2 * np.pi * 60)
    q = write(tmp_path, "image\nellipse(600,600,50,20,30)\n", "q.reg")
    assert region_mask(q, None).sum() == pytest.approx(np.pi * 50 * 20, abs=2 * np.pi * 35)
    s = write(tmp_path, "image\npolygon(100,100,200,100,200,160,100,130)\n", "s.reg")
    shoelace = 0.5 * abs((100 * 100 - 200 * 100) + (200 * 160 - 200 * 100) + (200 * 130 - 100 * 160)
                         + (100 * 100 - 100 * 130))
    assert region_mask(s, None).sum() == pytest.approx(shoelace, abs=350)


def test_physical_uses_ltv(tmp_path):
    hdr = fits.Header()
    hdr["LTV1"], hdr["LTV2"], hdr["LTM1_1"], hdr["LTM2_2"] = -100.0, -200.0, 1.0, 1.0
    p = write(tmp_path, "physical\nbox(151,251,3,3,0)\n")
    mask = region_mask(p, None, shape=(100, 100), header=hdr)
    ys, xs = np.nonzero(mask)
    # image = physical + LTV: centre (51, 51) 1-based -> index 50
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (49, 51, 49, 51)
    # without LTV/LTM, physical equals image
    assert region_mask(p, None, shape=(300, 300)).sum() == 9


def test_exclude_only_selects_rest_of_image(tmp_path):
    p = write(tmp_path, "image\n-box(50.5,50.5,10,10,0)\n")
    mask = region_mask(p, None, shape=(100, 100))
    assert mask.sum() == 100 * 100 - 100


# ----------------------------------------------------------------------------
# writer (astropy regions' DS9 serialisation)
# ----------------------------------------------------------------------------

def test_written_circles_give_the_hand_written_masks(tmp_path):
    from nuskybgd.io.regions import write_circle_regions
    wcs = sky_wcs(150.0, 2.0)
    circles, exclude = [(400.25, 380.5, 60.0), (610.0, 380.0, 55.5)], [(405.0, 385.0, 12.0)]
    text = write_circle_regions(tmp_path / "w.reg", circles, exclude)
    assert text.splitlines()[:2] == ["# Region file format: DS9 version 4.1", "image"]
    assert "-circle(405.00,385.00,12.00)" in text
    hand = write(tmp_path, "image\n" + "".join(f"circle({x},{y},{r})\n" for x, y, r in circles)
                 + "".join(f"-circle({x},{y},{r})\n" for x, y, r in exclude), "h.reg")
    m_w = region_mask(tmp_path / "w.reg", wcs)
    m_h = region_mask(hand, wcs)
    assert m_w.sum() > 1000 and np.array_equal(m_w, m_h)
    with pytest.raises(NuskybgdError, match="exists"):
        write_circle_regions(tmp_path / "w.reg", circles)


def test_written_sky_and_box_regions_round_trip(tmp_path):
    import astropy.units as u
    from regions import RectanglePixelRegion, CircleSkyRegion

    from nuskybgd.io.regions import read_region_shapes, write_regions
    wcs = sky_wcs(150.0, 2.0)
    regs = [CircleSkyRegion(SkyCoord(150.0, 2.0, unit="deg"), 40 * u.arcsec),
            RectanglePixelRegion(PixCoord(499.0, 599.0), 80.0, 40.0, angle=30 * u.deg)]
    write_regions(tmp_path / "s.reg", regs)
    shapes = read_region_shapes(tmp_path / "s.reg")
    assert len(shapes) == 2
    mask = region_mask(tmp_path / "s.reg", wcs)
    # the circle: ~pi (40 / 2.458)^2 sky pixels; the box: 80 x 40
    assert mask.sum() == pytest.approx(np.pi * (40 / 2.45810736) ** 2 + 80 * 40, rel=0.03)
