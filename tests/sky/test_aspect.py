"""Aspect histogram (REFERENCE section 2) on real and hand-made tracks."""

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.errors import NuskybgdError
from nuskybgd.io.events import read_det1_refpoint, read_gti
from nuskybgd.sky.aspect import (aspect_histogram, gti_mask, read_aspect_histogram,
                                 write_aspect_histogram)

OBS = "obs_80415201001"


def slow_histogram(t, x, y, start, stop):
    """Row-by-row reference: dict of pixel -> dwell time."""
    order = np.argsort(t, kind="stable")
    t, x, y = t[order], x[order], y[order]
    acc = {}
    for i in range(len(t) - 1):
        if any(s <= t[i] < e for s, e in zip(start, stop)):
            key = (int(np.floor(x[i])), int(np.floor(y[i])))
            acc[key] = acc.get(key, 0.0) + (t[i + 1] - t[i])
    return acc


@pytest.mark.parametrize("module,gti_total", [("A", 2765.0), ("B", 2766.0)])
def test_real_aspect_histogram(real, module, gti_total):
    obs = real / OBS
    t, x, y, h = read_det1_refpoint(obs / f"nu80415201001{module}_det1.fits")
    start, stop = read_gti(obs / f"nu80415201001{module}06_gti.fits")
    hist = aspect_histogram(t, x, y, start, stop, header=h)
    ref = slow_histogram(t, x, y, start, stop)
    # exposure = dwell time inside the GTIs = GTI length to the 0.2 s sampling
    assert hist.exposure == pytest.approx(sum(ref.values()), rel=1e-12)
    assert hist.exposure == pytest.approx(float((stop - start).sum()), abs=0.5)
    assert hist.exposure == pytest.approx(gti_total, abs=0.5)
    xs = [k[0] for k in ref]
    ys = [k[1] for k in ref]
    assert (hist.x_off, hist.y_off) == (min(xs), min(ys))
    assert hist.image.shape == (max(ys) - min(ys) + 1, max(xs) - min(xs) + 1)
    assert int((hist.image > 0).sum()) == len(ref)
    for (px, py), w in ref.items():
        assert hist.image[py - hist.y_off, px - hist.x_off] == pytest.approx(w, rel=1e-12)
    best = max(ref.values())
    peaks = [k for k, v in ref.items() if v == best]
    assert hist.peak in peaks
    assert hist.header["INSTRUME"][0] == f"FPM{module}"


def test_bounding_box_flaw_fixed():
    # The original's "if x < min elif x > max" leaves x_max at 0 when the
    # first point is the largest: 500 then 400.
    t = np.array([0.0, 1.0, 2.0])
    x = np.array([500.2, 400.7, 450.0])
    y = np.array([600.5, 300.1, 450.0])
    hist = aspect_histogram(t, x, y, [0.0], [10.0])
    assert (hist.x_off, hist.y_off) == (400, 300)
    assert hist.image.shape == (301, 101)
    assert hist.image[300, 100] == 1.0 and hist.image[0, 0] == 1.0
    assert hist.exposure == 2.0


def test_gti_boundaries_and_overlap():
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    inside = gti_mask(t, [1.0, 2.5, 5.0], [3.0, 4.0, 6.0])
    # START <= t < STOP; [1,3) and [2.5,4) overlap
    assert list(inside) == [False, True, True, True, False, True, False]
    # GTIs in any order
    assert list(gti_mask(t, [5.0, 1.0, 2.5], [6.0, 3.0, 4.0])) == list(inside)


def test_unsorted_rows_and_last_row():
    t = np.array([3.0, 0.0, 2.0, 1.0])
    x = np.array([9.5, 5.5, 7.5, 6.5])
    hist = aspect_histogram(t, x, x, [0.0], [100.0])
    # sorted: 0,1,2,3 -> rows at x 5,6,7 get 1 s each; the last row (x=9) gets nothing
    assert hist.exposure == 3.0
    assert hist.x_off == 5 and hist.image.shape == (3, 3)


@pytest.mark.parametrize("case", ["outside", "empty_gti"])
def test_no_exposure_is_an_error(case):
    t = np.arange(10.0)
    x = np.full(10, 500.0)
    start, stop = ([100.0], [200.0]) if case == "outside" else ([], [])
    with pytest.raises(NuskybgdError, match="no exposure"):
        aspect_histogram(t, x, x, start, stop)


def test_off_grid_points_are_an_error():
    t = np.arange(5.0)
    x = np.array([500.0, 500.0, -3.0, 500.0, 500.0])
    with pytest.raises(NuskybgdError, match="outside the 1000x1000"):
        aspect_histogram(t, x, np.full(5, 500.0), [0.0], [10.0])


def test_write_read_round_trip(tmp_path):
    t = np.linspace(0, 10, 51)
    x = 400 + 3 * np.sin(t)
    y = 420 + 2 * np.cos(t)
    hist = aspect_histogram(t, x, y, [0.0], [10.0])
    p = tmp_path / "asp.fits"
    write_aspect_histogram(hist, p)
    back = read_aspect_histogram(p)
    np.testing.assert_array_equal(back.image, hist.image)
    assert (back.x_off, back.y_off, back.peak) == (hist.x_off, hist.y_off, hist.peak)
    assert back.exposure == pytest.approx(10.0, rel=1e-12)
    with fits.open(p) as h:
        assert h[0].header["EXTNAME"] == "ASPECT_HISTOGRAM"
        assert h[0].header["EXPOSURE"] == pytest.approx(10.0)
    with pytest.raises(NuskybgdError, match="exists"):
        write_aspect_histogram(hist, p)


def test_read_without_offsets_and_empty(tmp_path):
    p = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.array([[0.0, 2.0], [1.0, 0.0]])).writeto(p)
    h = read_aspect_histogram(p)
    assert (h.x_off, h.y_off, h.peak, h.exposure) == (0, 0, (1, 0), 3.0)
    q = tmp_path / "zero.fits"
    fits.PrimaryHDU(np.zeros((3, 3))).writeto(q)
    with pytest.raises(NuskybgdError, match="no exposure"):
        read_aspect_histogram(q)
