"""Background model images (``nuskybgd image``): pure kernels.

The fitted spectral model gives, for each component, the predicted counts
``C`` in an energy band for the module's reference spectrum (or, for the
fCXB, for each background spectrum). These kernels spread those counts over
the sky with the projected images of REFERENCE section 4 (aperture image
``bgdap`` and detector images ``det_k``; sky pixel arrays ``[y, x]``), so
that the sum of a component image over any region equals the counts the
spectral model predicts for that region (REFERENCE sections 6 and 7):

- apbgd: ``bgdap * sum_k w_k C_k / ap_ref`` with ``w_k = det_k / sum_j det_j``
  the detector share of each pixel and ``C_k`` the reference norm's counts
  through detector k's absorption (the original uses one ``C`` for all
  pixels, which is off by up to a few per cent below 10 keV for a region on
  other detectors than the reference region; with equal ``C_k`` this is the
  original's ``bgdap * C / ap_ref``);
- intbgd and intn, per component c: ``sum_k det_k * C_c * ifactor_c[k] /
  sum_j ifactor_c[j] area_ref[j]``;
- fcxb: per background spectrum r, ``C_r * (sum_k det_k) / sum(area_r)``
  inside its region; module image ``(sum_r C_r / sum_r sum(area_r)) *
  sum_k det_k``.

All images are counts per sky pixel for the reference spectrum's exposure.
"""

import numpy as np

from ..errors import NuskybgdError

__all__ = [
    "band_channels", "detector_shares", "apbgd_image", "detector_component_image",
    "fcxb_region_image", "fcxb_module_image", "region_sum", "module_images",
]


def band_channels(e_min, e_max, emin, emax):
    """Channels of an energy band.

    Parameters
    ----------
    e_min, e_max : array_like, shape (n_chan,)
        Channel energy bounds (keV), the RMF's EBOUNDS.
    emin, emax : float
        Band (keV).

    Returns
    -------
    numpy.ndarray of bool, shape (n_chan,)
        True for channels whose lower energy bound lies in ``[emin, emax)``
        (within 1e-6 keV), the rule of ``sky.images.pi_range`` for counts
        images, so that model and counts images cover the same channels.

    Raises
    ------
    NuskybgdError
        If ``emin >= emax``, either is not finite, or no channel is selected.
    """
    emin, emax = float(emin), float(emax)
    if not (np.isfinite(emin) and np.isfinite(emax)):
        raise NuskybgdError(f"energy band {emin}-{emax} keV: not finite")
    if emin >= emax:
        raise NuskybgdError(f"energy band {emin:g}-{emax:g} keV: emin must be below emax")
    lo = np.asarray(e_min, float)
    sel = (lo >= emin - 1e-6) & (lo < emax - 1e-6)
    if not sel.any():
        raise NuskybgdError(f"energy band {emin:g}-{emax:g} keV: no channel of the response falls in it")
    return sel


def detector_shares(det_images):
    """Share of each detector in every sky pixel.

    Parameters
    ----------
    det_images : array_like, shape (4, ny, nx)
        Projected detector images (exposure fraction of each detector per sky
        pixel, dimensionless).

    Returns
    -------
    numpy.ndarray, shape (4, ny, nx)
        ``det_k / sum_j det_j`` where the sum is positive, 0 elsewhere.
    """
    d = np.asarray(det_images, float)
    tot = d.sum(axis=0)
    out = np.zeros_like(d)
    np.divide(d, tot[None], out=out, where=tot[None] > 0)
    return out


def apbgd_image(bgdap, det_images, counts_per_det, ap_ref):
    """Aperture (stray-light) background image.

    Parameters
    ----------
    bgdap : array_like, shape (ny, nx)
        Projected aperture image (``bgdap{A,B}.fits``).
    det_images : array_like, shape (4, ny, nx)
        Projected detector images of the same module.
    counts_per_det : array_like, shape (4,) or float
        Counts in the band predicted for the reference spectrum's fitted apbgd
        norm, folded through detector k's absorption alone (counts). A single
        number applies to every detector (the original's image).
    ap_ref : float
        Aperture-image sum in the reference region (``ap_ref``).

    Returns
    -------
    numpy.ndarray, shape (ny, nx)
        Counts per pixel.
    """
    if not ap_ref > 0:
        raise NuskybgdError("apbgd image: the reference region has zero aperture weight")
    ap = np.asarray(bgdap, float)
    c = np.broadcast_to(np.asarray(counts_per_det, float), (4,))
    share = detector_shares(det_images)
    per_pix = np.tensordot(c, share, axes=1)
    # Pixels with aperture signal but no detector coverage take the mean.
    per_pix = np.where(share.sum(axis=0) > 0, per_pix, c.mean())
    return ap * per_pix / float(ap_ref)


def detector_component_image(det_images, counts, ifactors, area_ref):
    """Image of detector-bound components (intbgd lines and apec, intn).

    Parameters
    ----------
    det_images : array_like, shape (4, ny, nx)
        Projected detector images.
    counts : array_like, shape (n_comp,)
        Counts in the band of each component for the reference spectrum.
    ifactors : array_like, shape (n_comp, 4)
        Per-detector weights of each component (``ifactors`` of ratios.json).
    area_ref : array_like, shape (4,)
        Reference region's area on each detector (sky pixels).

    Returns
    -------
    numpy.ndarray, shape (ny, nx)
        ``sum_k det_k sum_c C_c ifactor_c[k] / sum_j ifactor_c[j] area_ref[j]``
        (counts per pixel).
    """
    c = np.atleast_1d(np.asarray(counts, float))
    ifac = np.atleast_2d(np.asarray(ifactors, float))
    area = np.asarray(area_ref, float)
    if ifac.shape != (c.size, 4):
        raise ValueError("ifactors must have shape (n_comp, 4)")
    denom = ifac @ area
    if np.any(denom <= 0):
        raise NuskybgdError("detector image: the reference region has zero weighted area for a component")
    per_det = (c[:, None] * ifac / denom[:, None]).sum(axis=0)  # counts per unit detector area
    return np.tensordot(per_det, np.asarray(det_images, float), axes=1)


def fcxb_region_image(mask, det_images, counts, area_total):
    """fCXB image of one background region.

    Parameters
    ----------
    mask : array_like of bool, shape (ny, nx)
        The region's mask.
    det_images : array_like, shape (4, ny, nx)
        Projected detector images.
    counts : float
        The region's fitted fCXB counts in the band.
    area_total : float
        ``sum(area_r)``, the region's area over all detectors (sky pixels).

    Returns
    -------
    numpy.ndarray, shape (ny, nx)
        ``counts * sum_k det_k / area_total`` inside the region, 0 outside; its
        sum over the region is ``counts``.
    """
    if not area_total > 0:
        raise NuskybgdError("fcxb image: region with zero area")
    exp = np.asarray(det_images, float).sum(axis=0)
    return np.where(np.asarray(mask, bool), exp * float(counts) / float(area_total), 0.0)


def fcxb_module_image(det_images, counts, areas):
    """fCXB image of a module from the fitted surface brightness.

    Parameters
    ----------
    det_images : array_like, shape (4, ny, nx)
        Projected detector images.
    counts : array_like, shape (n_reg,)
        fCXB counts in the band of each background spectrum of the module.
    areas : array_like, shape (n_reg,)
        ``sum(area_r)`` of those regions (sky pixels).

    Returns
    -------
    numpy.ndarray, shape (ny, nx)
        ``(sum_r C_r / sum_r area_r) * sum_k det_k`` (counts per pixel).
    """
    a = float(np.sum(areas))
    if not a > 0:
        raise NuskybgdError("fcxb image: background regions have zero total area")
    return np.asarray(det_images, float).sum(axis=0) * float(np.sum(counts)) / a


def region_sum(image, mask):
    """Sum of an image over a region mask (counts).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
    mask : array_like of bool, shape (ny, nx)

    Returns
    -------
    float
    """
    return float(np.sum(np.asarray(image, float)[np.asarray(mask, bool)]))


def module_images(bgdap, det_images, ap_ref, area_ref, apbgd_counts_per_det, intbgd_counts,
                  intbgd_ifactors, intn_counts, intn_ifactors, fcxb_counts, fcxb_areas, fcxb_masks):
    """All component images of one module.

    Parameters
    ----------
    bgdap : array_like, shape (ny, nx)
        Projected aperture image.
    det_images : array_like, shape (4, ny, nx)
        Projected detector images.
    ap_ref : float
        Aperture sum in the module's reference region.
    area_ref : array_like, shape (4,)
        Reference region's area per detector (sky pixels).
    apbgd_counts_per_det : array_like, shape (4,)
        Band counts of the fitted reference apbgd norm through each
        detector's absorption (see :func:`apbgd_image`).
    intbgd_counts : array_like, shape (n_comp,)
        Band counts of each intbgd component for the reference spectrum.
    intbgd_ifactors : array_like, shape (n_comp, 4)
        Their per-detector ifactors.
    intn_counts : float
        Band counts of intn for the reference spectrum.
    intn_ifactors : array_like, shape (4,)
        intn ifactors.
    fcxb_counts : array_like, shape (n_reg,)
        Band counts of the fitted fcxb of each background spectrum of the
        module.
    fcxb_areas : array_like, shape (n_reg,)
        Their ``sum(area_r)``.
    fcxb_masks : sequence of bool arrays
        Their region masks.

    Returns
    -------
    dict
        ``apbgd``, ``intbgd``, ``intn``, ``fcxb`` (module image from the mean
        surface brightness), ``total`` (sum of those four) and
        ``fcxb_regions`` (list of per-region images); counts per pixel.
    """
    out = {
        "apbgd": apbgd_image(bgdap, det_images, apbgd_counts_per_det, ap_ref),
        "intbgd": detector_component_image(det_images, intbgd_counts, intbgd_ifactors, area_ref),
        "intn": detector_component_image(det_images, [intn_counts], [intn_ifactors], area_ref),
        "fcxb": fcxb_module_image(det_images, fcxb_counts, fcxb_areas),
    }
    out["total"] = out["apbgd"] + out["intbgd"] + out["intn"] + out["fcxb"]
    out["fcxb_regions"] = [fcxb_region_image(m, det_images, c, a)
                           for m, c, a in zip(fcxb_masks, fcxb_counts, fcxb_areas)]
    return out
