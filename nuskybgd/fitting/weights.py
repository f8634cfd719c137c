"""Region weights on the projected background images (REFERENCE section 6).

For a region mask M on the sky grid of module m:
``area[k] = sum(M * det_sky_k)`` (k = 0..3, sky pixels of detector k seen
through the aspect), ``frac = area / sum(area)`` and ``ap = sum(M * bgdap)``
(aperture-image sum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NuskybgdError

__all__ = ["Weights", "region_weights"]


@dataclass
class Weights:
    """Weights of one region.

    Attributes
    ----------
    area : ndarray, shape (4,)
        Detector areas inside the region, sky pixels (exposure-weighted).
    ap : float
        Sum of the aperture image inside the region.
    """

    area: np.ndarray
    ap: float

    @property
    def frac(self):
        """Detector fractions ``area / sum(area)`` (NaN when the area is zero)."""
        tot = float(np.sum(self.area))
        return self.area / tot if tot > 0 else np.full(4, np.nan)

    @property
    def total_area(self):
        """Total area, sky pixels."""
        return float(np.sum(self.area))


def region_weights(mask, det_images, ap_image, name=None):
    """Detector areas and aperture sum of a region.

    Parameters
    ----------
    mask : ndarray of bool, shape (ny, nx)
        Region mask on the sky grid.
    det_images : sequence of 4 ndarrays, shape (ny, nx)
        Projected detector images DET0..DET3 of the region's module.
    ap_image : ndarray, shape (ny, nx)
        Projected aperture image of the module.
    name : str, optional
        Region name for error messages; when given, a region with zero area
        on every detector raises an error.

    Returns
    -------
    Weights

    Raises
    ------
    NuskybgdError
        Mismatched image shapes, non-finite images, or (with ``name``) a
        region that covers no detector.
    """
    m = np.asarray(mask, bool)
    if len(det_images) != 4:
        raise NuskybgdError(f"{name or 'region'}: need 4 detector images, got {len(det_images)}")
    for im in list(det_images) + [ap_image]:
        if np.shape(im) != m.shape:
            raise NuskybgdError(f"{name or 'region'}: mask shape {m.shape} differs from image shape {np.shape(im)}")
    area = np.array([float(np.sum(np.asarray(im, float)[m])) for im in det_images])
    ap = float(np.sum(np.asarray(ap_image, float)[m]))
    if not (np.all(np.isfinite(area)) and np.isfinite(ap)):
        raise NuskybgdError(f"{name or 'region'}: projected images contain NaN or infinite values inside the region")
    if name is not None and not area.sum() > 0:
        raise NuskybgdError(f"{name}: region has zero area on every detector (is it inside the field of view?)")
    return Weights(area=area, ap=ap)
