"""Straightforward reference implementation of REFERENCE section 4 (projbgd).

Written directly from the text, with the obvious loops: the sky grid is
rotated with numpy, and the aspect smearing applies one full-image bilinear
circular shift (``scipy.ndimage.shift``, ``mode="grid-wrap"``, ``order=1``)
per aspect-histogram pixel. Used by ``tests/sky/test_projection.py`` and
``benchmarks/bench_projbgd.py`` as the reference to match and to beat.
"""

import numpy as np
from scipy import ndimage


def reference_projection(aperture, instrmap, hist_image, x_off, y_off, pa_pnt, detectors=(1, 2, 3, 4)):
    """Aperture and detector images of REFERENCE section 4, the slow way.

    Parameters
    ----------
    aperture : ndarray (360, 360)
        DET1 aperture image.
    instrmap : ndarray (360, 360)
        Detector number 1..4 per DET1 pixel, 0 elsewhere.
    hist_image : ndarray
        Aspect histogram, s.
    x_off, y_off : int
        Its offsets.
    pa_pnt : float
        PA_PNT, degrees.
    detectors : sequence of int
        Detectors 1..4.

    Returns
    -------
    ap : ndarray (1000, 1000)
    dets : dict int -> ndarray (1000, 1000)
    """
    E = hist_image.sum()
    j, i = np.unravel_index(np.argmax(hist_image), hist_image.shape)
    px, py = i + x_off, j + y_off
    pa = pa_pnt + 1.0
    a = -pa * np.pi / 180.0
    xg, yg = np.meshgrid(np.arange(1000), np.arange(1000))
    detx = (350 + np.around(-np.cos(a) * (xg - px) + np.sin(a) * (yg - py))).astype(int)
    dety = (350 + np.around(np.sin(a) * (xg - px) + np.cos(a) * (yg - py))).astype(int)
    nx = 2.7 * np.cos(-a) - 0.8 * np.sin(-a)
    ny = 2.7 * np.sin(-a) + 0.8 * np.cos(-a)
    ok = (detx >= 0) & (detx < 360) & (dety >= 0) & (dety < 360)
    dxc, dyc = np.clip(detx, 0, 359), np.clip(dety, 0, 359)
    val = instrmap[dyc, dxc]
    anymask = ok & np.isin(val, detectors)
    ap_sky = np.zeros((1000, 1000))
    ap_sky[anymask] = aperture[dyc, dxc][anymask] / E
    det_sky = {}
    for d in detectors:
        det_sky[d] = np.zeros((1000, 1000))
        det_sky[d][ok & (val == d)] = 1.0 / E
    ap = np.zeros((1000, 1000))
    dets = {d: np.zeros((1000, 1000)) for d in detectors}
    for jj, ii in zip(*np.nonzero(hist_image)):
        w = hist_image[jj, ii]
        sx = ii + x_off - px - nx
        sy = jj + y_off - py - ny
        ap += w * ndimage.shift(ap_sky, (sy, sx), order=1, mode="grid-wrap", prefilter=False)
        for d in detectors:
            dets[d] += w * ndimage.shift(det_sky[d], (sy, sx), order=1, mode="grid-wrap", prefilter=False)
    return ap, dets
