"""projbgd kernels: geometry, aperture image, exact aspect smearing vs the slow reference."""

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage
from sky_reference import reference_projection

from nuskybgd.errors import NuskybgdError
from nuskybgd.io.events import read_det1_refpoint, read_gti
from nuskybgd.io.skyfiles import read_pixpos
from nuskybgd.sky import projection as P
from nuskybgd.sky.aspect import AspectHistogram, aspect_histogram
from nuskybgd.sky.instrmap import instrument_map, pixel_map

OBS = "obs_80415201001"


def ref_header(pa=-100.0, n=1000):
    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"] = n
    h["NAXIS2"] = n
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRPIX1"] = h["CRPIX2"] = 500.5
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CDELT1"], h["CDELT2"] = -6.828076e-4, 6.828076e-4
    if pa is not None:
        h["PA_PNT"] = pa
    return h


def toy_instrmap():
    m = np.zeros((360, 360), np.int16)
    m[20:180, 20:180] = 1
    m[20:180, 182:340] = 2
    m[182:340, 20:180] = 3
    m[182:340, 182:340] = 4
    m[100, 100] = 0  # a bad pixel
    return m


# ---------------------------------------------------------------- geometry

@pytest.mark.parametrize("pa", [-100.0, 0.0, 37.5, 179.0, 245.3])
def test_det1_to_sky_inverts_sky_to_det1(pa):
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 1000, 50), rng.uniform(0, 1000, 50)
    u, v = P.sky_to_det1(x, y, 480, 510, pa, rounded=False)
    xb, yb = P.det1_to_sky(u, v, 480, 510, pa, nudge=False)
    np.testing.assert_allclose(xb, x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(yb, y, rtol=0, atol=1e-9)
    nx, ny = P.aspect_nudge(P.rotation_angle(pa))
    xn, yn = P.det1_to_sky(u, v, 480, 510, pa, nudge=True)
    np.testing.assert_allclose(xn, x - nx, atol=1e-9)
    np.testing.assert_allclose(yn, y - ny, atol=1e-9)
    assert np.hypot(nx, ny) == pytest.approx(np.hypot(2.7, 0.8), rel=1e-12)


def test_reference_point_maps_to_det1_350():
    detx, dety = P.sky_to_det1(np.array([480]), np.array([510]), 480, 510, -100.0)
    assert (detx[0], dety[0]) == (350, 350)
    # PA_PNT = -1 deg: a = 0, x is mirrored, y kept
    detx, dety = P.sky_to_det1(np.array([481, 480]), np.array([510, 512]), 480, 510, -1.0)
    assert list(detx) == [349, 350] and list(dety) == [350, 352]


def test_rounding_is_half_to_even():
    # a = 0: u = -(x - px) exactly; half-integer sky positions give ties
    detx, _ = P.sky_to_det1(np.array([0.5, 1.5, 2.5]), np.zeros(3), 0, 0, -1.0)
    assert list(detx) == [350 + round(-0.5), 350 + round(-1.5), 350 + round(-2.5)] == [350, 348, 348]


# ---------------------------------------------------------------- aperture

@pytest.mark.parametrize("module", ["A", "B"])
def test_aperture_image_matches_original_recipe(module, auxil_dir):
    from nuskybgd.calib.auxil import load_nomapbgdparams
    raw = fits.getdata(auxil_dir / f"det{module}_det1.img.gz").astype(np.float64)
    par = load_nomapbgdparams()[module]
    # the original used mode='wrap'; inside the crop (108-pixel margin, shifts < 30) they agree
    shifted = ndimage.shift(raw, (par["yshift_mm"] / 0.12096, par["xshift_mm"] / 0.12096),
                            order=1, mode="wrap", prefilter=False)
    expected = (3.1865e-5 * par["norm"] * 0.12096 ** 2 * shifted + 0.00495 * 0.7)[108:468, 108:468]
    got = P.aperture_image(module)
    assert got.shape == (360, 360)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_aperture_shift_direction():
    img = np.zeros((576, 576))
    img[300, 290] = 1.0
    par = dict(norm=1.0, xshift_mm=2 * 0.12096, yshift_mm=-3 * 0.12096, rotation=0.0)
    ap = P.aperture_image("A", bundle_image=img, params=par)
    peak = np.unravel_index(np.argmax(ap), ap.shape)
    # output(y, x) = input(y - sy, x - sx): the spot moves by (+2, -3) in (x, y)
    assert peak == (300 - 3 - 108, 290 + 2 - 108)
    assert ap.min() == pytest.approx(0.00495 * 0.7, rel=1e-12)


# ---------------------------------------------------------------- convolution

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_circular_convolve_equals_sum_of_rolls(seed):
    rng = np.random.default_rng(seed)
    img = np.zeros((40, 50))
    img[5:30, 0:12] = rng.random((25, 12))   # touches the left edge: wraps
    img[38:40, 45:50] = rng.random((2, 5))   # corner
    ntap = 20
    dy = rng.integers(-45, 45, ntap)
    dx = rng.integers(-60, 60, ntap)
    w = rng.random(ntap)
    expected = sum(wi * np.roll(img, (a, b), axis=(0, 1)) for a, b, wi in zip(dy, dx, w))
    got = P.circular_convolve(img, dy, dx, w)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


def test_circular_convolve_support_exact():
    """Pixels no tap reaches are exactly 0; a non-negative result has no negative round-off."""
    img = np.zeros((30, 40))
    img[10:14, 38:40] = [[1.0, 1e-9], [3.0, 2.0], [0.5, 7.0], [1e3, 1.0]]
    dy, dx, w = np.array([0, 2, -3, 2]), np.array([0, 1, 5, 1]), np.array([1.0, 1e-6, 0.25, 2.0])
    got = P.circular_convolve(img, dy, dx, w)
    want = sum(wi * np.roll(img, (a, b), axis=(0, 1)) for a, b, wi in zip(dy, dx, w))
    np.testing.assert_array_equal(got == 0, want == 0)
    assert got.min() == 0.0
    # FFT round-off is absolute, ~1e-16 of the largest value: faint pixels keep fewer digits
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15 * want.max())
    np.testing.assert_array_equal(P.circular_convolve(np.zeros((5, 5)), dy, dx, w), 0.0)


@pytest.mark.parametrize("pa", [-100.0, 12.0, 200.0])
def test_small_projection_matches_reference(pa):
    hist = np.zeros((4, 5))
    hist[1, 2] = 30.0
    hist[0, 0] = 5.0
    hist[3, 4] = 12.5
    hist[2, 1] = 0.2
    ah = AspectHistogram(image=hist, x_off=498, y_off=501, exposure=hist.sum())
    imap = toy_instrmap()
    ap = np.linspace(1, 2, 360 * 360).reshape(360, 360)
    proj = P.project_background(ref_header(pa), "A", imap, ah, detectors=(1, 2, 4), aperture=ap, progress=False)
    rap, rdets = reference_projection(ap, imap, hist, 498, 501, pa, detectors=(1, 2, 4))
    np.testing.assert_allclose(proj.aperture, rap, rtol=1e-12, atol=1e-300)
    for d in (1, 2, 4):
        np.testing.assert_allclose(proj.detectors[d - 1], rdets[d], rtol=1e-12, atol=1e-300)
    assert not proj.detectors[2].any()
    assert proj.peak == (500, 502)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("case,match", [
    ("nopa", "PA_PNT"), ("size", "expected a 1000x1000"), ("nowcs", "celestial WCS"),
    ("module", "unknown module"), ("noexp", "no exposure"), ("nodet", "no pixel of detector"),
    ("strpa", "not a number"),
])
def test_bad_input(case, match):
    hist = AspectHistogram(image=np.ones((2, 2)), x_off=500, y_off=500, exposure=4.0)
    header, module, imap = ref_header(), "A", toy_instrmap()
    ap = np.ones((360, 360))
    if case == "nopa":
        header = ref_header(pa=None)
    elif case == "size":
        header = ref_header(n=500)
    elif case == "nowcs":
        for k in ("CTYPE1", "CTYPE2"):
            del header[k]
    elif case == "module":
        module = "C"
    elif case == "noexp":
        hist = AspectHistogram(image=np.zeros((2, 2)), x_off=500, y_off=500, exposure=0.0)
    elif case == "nodet":
        imap = np.zeros((360, 360), np.int16)
    elif case == "strpa":
        header["PA_PNT"] = "north"
    with pytest.raises(NuskybgdError, match=match) as exc:
        P.project_background(header, module, imap, hist, aperture=ap, progress=False)
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------- real aspect data

@pytest.fixture(scope="module", params=["A", "B"])
def real_case(request, real, shared_caldb):
    m = request.param
    obs = real / OBS
    t, x, y, h = read_det1_refpoint(obs / f"nu80415201001{m}_det1.fits")
    hist = aspect_histogram(t, x, y, *read_gti(obs / f"nu80415201001{m}06_gti.fits"), header=h)
    refh = fits.getheader(obs / f"nu80415201001{m}06_chu2_S_cl_grade0_sk.img.gz")
    pm = pixel_map(read_pixpos(shared_caldb / f"nu{m}pixpos20100101v007.fits.gz"))
    # the real CALDB INSTRMAP is not available: all-ones INSTRMAP
    imap = instrument_map(np.ones((360, 360)), pm)
    ap = P.aperture_image(m)
    proj = P.project_background(refh, m, imap, hist, progress=False)
    rap, rdets = reference_projection(ap, imap, hist.image, hist.x_off, hist.y_off, refh["PA_PNT"])
    return m, proj, rap, rdets, hist


def _max_rel(got, ref, margin=30):
    g = got[margin:-margin, margin:-margin]
    r = ref[margin:-margin, margin:-margin]
    both_zero = (g == 0) & (r == 0)
    rel = np.abs(g - r) / np.where(r == 0, np.inf, np.abs(r))
    rel[both_zero] = 0.0
    rel[(r == 0) & (g != 0)] = np.inf
    return float(rel.max())


@pytest.mark.slow
def test_real_projection_matches_reference_pixelwise(real_case):
    m, proj, rap, rdets, hist = real_case
    assert (hist.image > 0).sum() > 300
    assert _max_rel(proj.aperture, rap) < 1e-9
    for d in (1, 2, 3, 4):
        assert _max_rel(proj.detectors[d - 1], rdets[d]) < 1e-9
        assert proj.detectors[d - 1].any()


@pytest.mark.slow
def test_real_projection_sums(real_case):
    m, proj, rap, rdets, hist = real_case
    assert proj.aperture.sum() == pytest.approx(rap.sum(), rel=1e-9)
    for d in (1, 2, 3, 4):
        assert proj.detectors[d - 1].sum() == pytest.approx(rdets[d].sum(), rel=1e-9)


@pytest.mark.parametrize("sy, sx", [(0.0, 0.0), (2.3, -7.6), (-0.25, 0.5), (13.0, -4.0), (-590.7, 1201.2)])
def test_wrapped_bilinear_shift_equals_ndimage(sy, sx):
    img = np.random.default_rng(5).random((40, 57))
    want = ndimage.shift(img, (sy, sx), order=1, mode="grid-wrap", prefilter=False)
    np.testing.assert_allclose(P.wrapped_bilinear_shift(img, sy, sx), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("changes,match", [
    ({"CTYPE1": "ra---tan", "CTYPE2": "dec--tan"}, "celestial WCS"),
    ({"CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ"}, "celestial WCS"),
    ({"CTYPE2": "GLAT-TAN"}, "celestial WCS"),
    ({"CTYPE2": "DEC--SIN"}, "celestial WCS"),
    ({"CRVAL1": "inf"}, "invalid WCS"),
    ({"CRPIX2": "x"}, "not a number"),
    ({"CD1_1": 0.0, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 0.0}, "singular"),
])
def test_reference_wcs_keywords(changes, match):
    """The keyword check refuses what astropy.wcs refuses (or cannot use), without importing it."""
    header = ref_header()
    header.update(changes)
    with pytest.raises(NuskybgdError, match=match):
        P.check_reference_header(header, "ref.fits")


def test_reference_wcs_rotated_cd_matrix_accepted():
    header = ref_header()
    scale = header.get("CDELT1", -6.8e-4)
    for k in ("CDELT1", "CDELT2"):
        header.remove(k, ignore_missing=True)
    header.update({"CD1_1": 0.0, "CD1_2": abs(scale), "CD2_1": abs(scale), "CD2_2": 0.0})
    assert np.isfinite(P.check_reference_header(header, "ref.fits"))
