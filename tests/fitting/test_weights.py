"""Region weights: detector areas, fractions and aperture sums."""

import numpy as np
import pytest

from nuskybgd.errors import NuskybgdError
from nuskybgd.fitting.weights import region_weights


def _images():
    y, x = np.mgrid[0:50, 0:60]
    dets = [((x < 30) & (y < 25)) * 1.0, ((x >= 30) & (y < 25)) * 0.5,
            ((x < 30) & (y >= 25)) * 1.0, ((x >= 30) & (y >= 25)) * 0.25]
    ap = 0.01 + 0.001 * x
    return dets, ap


def test_areas_fractions_aperture():
    dets, ap = _images()
    mask = np.zeros((50, 60), bool)
    mask[20:30, 25:35] = True  # 5x5 pixels on each quadrant
    w = region_weights(mask, dets, ap, name="r.reg")
    np.testing.assert_allclose(w.area, [25.0, 12.5, 25.0, 6.25], rtol=1e-15)
    np.testing.assert_allclose(w.frac, w.area / w.area.sum(), rtol=1e-15)
    assert w.ap == pytest.approx(np.sum(ap[20:30, 25:35]), rel=1e-14)
    assert w.total_area == pytest.approx(68.75)


def test_zero_area_is_an_error_naming_the_region():
    dets, ap = _images()
    dets = [d * 0 for d in dets]
    mask = np.ones((50, 60), bool)
    with pytest.raises(NuskybgdError, match="bgd9.reg.*zero area"):
        region_weights(mask, dets, ap, name="bgd9.reg")
    w = region_weights(mask, dets, ap)  # without a name: just report
    assert w.total_area == 0 and np.all(np.isnan(w.frac))


def test_shape_and_nan_errors():
    dets, ap = _images()
    with pytest.raises(NuskybgdError, match="shape"):
        region_weights(np.ones((10, 10), bool), dets, ap, name="r")
    dets[1] = dets[1].copy()
    dets[1][0, 0] = np.nan
    mask = np.zeros((50, 60), bool)
    mask[0, 0] = True
    with pytest.raises(NuskybgdError, match="NaN"):
        region_weights(mask, dets, ap, name="r")
