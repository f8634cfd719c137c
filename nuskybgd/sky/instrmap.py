"""Instrument map: which detector sees each DET1 pixel, bad pixels removed.

REFERENCE section 3. Pure kernels (no I/O): the PIXPOS tables, the CALDB
INSTRMAP image and the bad-pixel tables come in as arrays.

- :func:`pixel_map` assigns every DET1 pixel to the (detector, raw pixel)
  whose grade-weighted PIXPOS probability there is largest.
- :func:`bad_pixel_list` picks the bad pixels to apply (80 % of the
  extension's time span, no TSTART/TSTOP, or BADFLAG's second-to-last bit).
- :func:`instrument_map` combines them with the CALDB INSTRMAP into a map of
  detector number + 1 (1..4), 0 elsewhere.
"""

from dataclasses import dataclass

import numpy as np

from ..constants import DET1_SIZE
from ..errors import NuskybgdError

__all__ = [
    "GRADE_WEIGHTS", "PixelMap", "pixel_map",
    "bad_pixel_list", "instrument_map",
]

#: Relative frequency of event grades 0..26 (the original's weights, from an
#: NGC 253 observation); grades above 26 are not used.
GRADE_WEIGHTS = np.array([
    1.00000, 0.124902, 0.117130, 0.114720, 0.118038,
    0.0114296, 0.0101738, 0.0113617, 0.0122017, 0.0157910,
    0.0144079, 0.0145691, 0.0149934, 0.00165462, 0.00194312,
    0.00156128, 0.00143400, 0.00210433, 0.00180735, 0.00140006,
    0.00169704, 0.00189220, 0.00160371, 0.00150188, 0.00168007,
    0.000296983, 0.000364864,
])


@dataclass
class PixelMap:
    """Raw pixel and detector seen at each DET1 pixel.

    Attributes
    ----------
    rawpix : ndarray of int32, shape (360, 360)
        RAWX + 32 * RAWY, or -1 where no PIXPOS PDF reaches; indexed
        [DET1 y, DET1 x], 0-based.
    det : ndarray of int32, shape (360, 360)
        Detector 0..3, or -1.
    """

    rawpix: np.ndarray
    det: np.ndarray


def pixel_map(pixpos_tables, size=DET1_SIZE):
    """Assign every DET1 pixel to the raw pixel most likely to record it.

    Parameters
    ----------
    pixpos_tables : sequence of PixposTable
        The PIXPOS extensions of one module (normally DET0..DET3).
    size : int
        DET1 image size, pixels (360).

    Returns
    -------
    PixelMap
        For each (detector, raw pixel) the PDFs of its rows with
        REF_DET1X != -1, GRADE <= 26 and no NaN, weighted by
        :data:`GRADE_WEIGHTS`, are summed on the DET1 grid (1-based
        REF_DET1X/Y used as 0-based indices); each DET1 pixel goes to the
        largest positive sum (ties: the first detector in table order, then
        the lowest RAWX, then the lowest RAWY, as the original's loop order).
        Finally both maps are shifted circularly by (-1, -1) pixels, which
        turns the 1-based positions into 0-based indices.

    Raises
    ------
    NuskybgdError
        When a detector number is not 0..3 or no table has a usable row.
    """
    keys, pixs, vals = [], [], []
    rr, cc = np.mgrid[0:7, 0:7]
    for order, tab in enumerate(pixpos_tables):
        if not 0 <= int(tab.det) <= 3:
            raise NuskybgdError(f"PIXPOS table for detector {tab.det}: expected DET0..DET3")
        grade = np.asarray(tab.grade).astype(np.int64)
        refx = np.asarray(tab.ref_det1x).astype(np.int64)
        refy = np.asarray(tab.ref_det1y).astype(np.int64)
        pdf = np.asarray(tab.pdf, dtype=np.float64).reshape(-1, 7, 7)
        ok = (refx != -1) & (grade >= 0) & (grade <= 26) & ~np.isnan(pdf).any(axis=(1, 2))
        if not ok.any():
            continue
        rawx = np.asarray(tab.rawx).astype(np.int64)[ok]
        rawy = np.asarray(tab.rawy).astype(np.int64)[ok]
        w = GRADE_WEIGHTS[grade[ok]]
        px = refx[ok][:, None, None] + cc[None]
        py = refy[ok][:, None, None] + rr[None]
        v = pdf[ok] * w[:, None, None]
        # candidate key in the original's loop order: table, RAWX, RAWY
        key = (order * 32 + rawx) * 32 + rawy
        key = np.broadcast_to(key[:, None, None], v.shape)
        inside = (px >= 0) & (px < size) & (py >= 0) & (py < size)
        keys.append(key[inside])
        pixs.append((py * size + px)[inside])
        vals.append(v[inside])
    if not keys:
        raise NuskybgdError("PIXPOS tables hold no usable row (REF_DET1X != -1, GRADE <= 26, finite PDF)")
    key = np.concatenate(keys)
    pix = np.concatenate(pixs)
    val = np.concatenate(vals)
    # Sum the PDFs of each (candidate, DET1 pixel) pair.
    combo = key * (size * size) + pix
    uniq, inv = np.unique(combo, return_inverse=True)
    total = np.bincount(inv, weights=val)
    ukey, upix = uniq // (size * size), uniq % (size * size)
    positive = total > 0
    ukey, upix, total = ukey[positive], upix[positive], total[positive]
    # Per DET1 pixel: largest sum, ties to the smallest key (loop order).
    srt = np.lexsort((ukey, -total, upix))
    upix, ukey = upix[srt], ukey[srt]
    first = np.ones(upix.size, bool)
    first[1:] = upix[1:] != upix[:-1]
    upix, ukey = upix[first], ukey[first]
    order_idx = ukey // 1024
    dets = np.array([int(t.det) for t in pixpos_tables], dtype=np.int32)
    rawx = (ukey // 32) % 32
    rawy = ukey % 32
    rawpix = np.full(size * size, -1, np.int32)
    det = np.full(size * size, -1, np.int32)
    rawpix[upix] = rawx + 32 * rawy
    det[upix] = dets[order_idx]
    rawpix = np.roll(rawpix.reshape(size, size), (-1, -1), axis=(0, 1))
    det = np.roll(det.reshape(size, size), (-1, -1), axis=(0, 1))
    return PixelMap(rawpix=rawpix, det=det)


def bad_pixel_list(badpix_tables, fraction=0.8):
    """The (detector, raw pixel) pairs to remove from the instrument map.

    Parameters
    ----------
    badpix_tables : iterable of nuskybgd.io.events.BadPixTable
        Tables of one module (event file, CALDB and user files).
    fraction : float
        A pixel is applied when bad for more than this fraction of its
        extension's TSTOP - TSTART (0.8).

    Returns
    -------
    set of tuple (int, int)
        (detector 0..3, RAWX + 32 * RAWY). A row is applied when its
        extension has no TSTART/TSTOP, when TIME_STOP - TIME exceeds
        ``fraction`` of TSTOP - TSTART, or when the second-to-last BADFLAG
        bit (index 14 of 16, "on-board disabled pixel") is set.
    """
    bad = set()
    for tab in badpix_tables:
        rawx = np.asarray(tab.rawx).astype(np.int64)
        rawy = np.asarray(tab.rawy).astype(np.int64)
        if rawx.size == 0:
            continue
        flags = np.asarray(tab.badflag)
        if flags.ndim == 2 and flags.shape[0] == rawx.size and flags.shape[1] >= 2:
            flagged = flags[:, -2].astype(bool)
        else:  # integer flags, least significant bit last
            flagged = (flags.astype(np.int64).reshape(-1) & 2) != 0
        if tab.tstart is None or tab.tstop is None:
            applied = np.ones(rawx.size, bool)
        else:
            dt = np.asarray(tab.time_stop, np.float64) - np.asarray(tab.time, np.float64)
            applied = dt > fraction * (float(tab.tstop) - float(tab.tstart))
        applied |= flagged
        for x, y in zip(rawx[applied], rawy[applied]):
            if not (0 <= x < 32 and 0 <= y < 32):
                raise NuskybgdError(f"{tab.source}: bad pixel RAWX={x}, RAWY={y} outside 0..31")
            bad.add((int(tab.det), int(x + 32 * y)))
    return bad


def instrument_map(caldb_instrmap, pixmap, bad_pixels=()):
    """Instrument map of one module: detector number + 1 per DET1 pixel.

    Parameters
    ----------
    caldb_instrmap : array_like, shape (360, 360)
        CALDB INSTRMAP image (non-zero where the detectors are live).
    pixmap : PixelMap
        From :func:`pixel_map`.
    bad_pixels : iterable of tuple (int, int)
        (detector, RAWX + 32 * RAWY) pairs to remove (:func:`bad_pixel_list`).

    Returns
    -------
    ndarray of int16, shape (360, 360)
        Detector number + 1 (1..4) where the INSTRMAP is non-zero, the pixel
        is mapped to a raw pixel, and that raw pixel is not bad; 0 elsewhere.

    Raises
    ------
    NuskybgdError
        When the INSTRMAP has the wrong shape or non-finite values.
    """
    imap = np.asarray(caldb_instrmap)
    if imap.shape != pixmap.det.shape:
        raise NuskybgdError(f"INSTRMAP is {imap.shape[1] if imap.ndim == 2 else '?'}x"
                            f"{imap.shape[0] if imap.ndim else '?'}, expected {pixmap.det.shape[1]}x{pixmap.det.shape[0]}")
    if imap.dtype.kind == "f" and not np.all(np.isfinite(imap)):
        raise NuskybgdError("INSTRMAP holds NaN or infinite values")
    live = (imap != 0) & (pixmap.det >= 0)
    bad = np.zeros(imap.shape, bool)
    if bad_pixels:
        code = pixmap.det.astype(np.int64) * 1024 + pixmap.rawpix
        badcodes = np.array([d * 1024 + p for d, p in bad_pixels], dtype=np.int64)
        bad = np.isin(code, badcodes) & (pixmap.det >= 0)
    out = np.zeros(imap.shape, np.int16)
    keep = live & ~bad
    out[keep] = pixmap.det[keep] + 1
    return out
