"""Aspect histogram: where the DET1 reference point dwelt during good time.

REFERENCE section 2. The DET1 reference-point track (``*_det1.fits``) gives,
every ~0.2 s, the sky X/Y position of DET1 pixel (350, 350). Each row whose
time lies in a good time interval contributes its dwell time (time to the
next row) to the histogram pixel (floor(X_DET1), floor(Y_DET1)) of a
1000x1000 grid; the histogram is cropped to its non-zero bounding box.

Unlike the original, the bounding box is computed from every non-zero pixel
(the original's ``if ... elif`` update could miss a maximum).
"""

from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits

from ..errors import NuskybgdError
from ..io.fitsfile import find_hdu, fits_text, open_fits
from ..io.output import write_fits

__all__ = [
    "AspectHistogram", "gti_mask", "aspect_histogram", "write_aspect_histogram",
    "read_aspect_histogram", "ASPECT_GRID", "IDENT_KEYWORDS",
]

#: Size of the (square) sky grid the aspect histogram is binned on, pixels.
ASPECT_GRID = 1000

#: Identification keywords copied from the reference-point extension.
IDENT_KEYWORDS = (
    "TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "TARG_ID", "RA_OBJ", "DEC_OBJ",
    "RA_NOM", "DEC_NOM", "RA_PNT", "DEC_PNT", "TIMESYS", "MJDREFI", "MJDREFF",
    "CLOCKAPP", "TSTART", "TSTOP", "DATE-OBS", "DATE-END",
)


@dataclass
class AspectHistogram:
    """Cropped aspect histogram.

    Attributes
    ----------
    image : ndarray of float64, shape (ny, nx)
        Dwell time per sky pixel, s; indexed [y, x].
    x_off, y_off : int
        Offsets of the crop: image index + offset = floor(X_DET1) (sky pixel
        index of the 1000x1000 grid).
    exposure : float
        Total dwell time, s (sum of ``image``).
    header : dict
        Identification keywords (``IDENT_KEYWORDS``) with (value, comment).
    """

    image: np.ndarray
    x_off: int
    y_off: int
    exposure: float
    header: dict = field(default_factory=dict)

    @property
    def peak(self):
        """Sky pixel (x, y) of the largest dwell time (first in row-major order).

        Returns
        -------
        tuple of int
            (x, y) = array index of the maximum + (x_off, y_off).
        """
        j, i = np.unravel_index(int(np.argmax(self.image)), self.image.shape)
        return int(i) + int(self.x_off), int(j) + int(self.y_off)


def gti_mask(time, gti_start, gti_stop):
    """Which times lie in a good time interval (START <= t < STOP).

    Parameters
    ----------
    time : array_like of float
        Times, s.
    gti_start, gti_stop : array_like of float
        Interval bounds, s, in any order; intervals may overlap.

    Returns
    -------
    ndarray of bool
        True where ``time`` is inside at least one interval.
    """
    t = np.asarray(time, dtype=np.float64)
    start = np.asarray(gti_start, dtype=np.float64).ravel()
    stop = np.asarray(gti_stop, dtype=np.float64).ravel()
    if start.size == 0:
        return np.zeros(t.shape, bool)
    order = np.argsort(start, kind="stable")
    start, stop = start[order], stop[order]
    reach = np.maximum.accumulate(stop)  # furthest STOP among intervals started so far
    idx = np.searchsorted(start, t, side="right") - 1
    inside = idx >= 0
    inside[inside] = t[inside] < reach[idx[inside]]
    return inside


def aspect_histogram(time, x_det1, y_det1, gti_start, gti_stop, grid=ASPECT_GRID, header=None, path=None):
    """Aspect histogram of the DET1 reference point over the good time.

    Parameters
    ----------
    time : array_like of float
        Times of the reference-point rows, s (any order; sorted here).
    x_det1, y_det1 : array_like of float
        Sky position of the DET1 reference point, sky pixels.
    gti_start, gti_stop : array_like of float
        Good time intervals, s.
    grid : int
        Size of the square histogram grid, sky pixels (1000).
    header : astropy.io.fits.Header, optional
        Reference-point extension header; its identification keywords are
        kept in the result.
    path : str, optional
        File name for error messages.

    Returns
    -------
    AspectHistogram
        Cropped histogram, offsets and total exposure (s).

    Raises
    ------
    NuskybgdError
        When no dwell time falls inside the GTIs, or kept rows fall outside
        the ``grid`` x ``grid`` sky grid.
    """
    where = path or "aspect data"
    t = np.asarray(time, dtype=np.float64).ravel()
    x = np.asarray(x_det1, dtype=np.float64).ravel()
    y = np.asarray(y_det1, dtype=np.float64).ravel()
    if not (t.size == x.size == y.size):
        raise NuskybgdError(f"{where}: TIME, X_DET1 and Y_DET1 have different lengths")
    order = np.argsort(t, kind="stable")
    t, x, y = t[order], x[order], y[order]
    keep = gti_mask(t, gti_start, gti_stop)
    dwell = np.zeros_like(t)
    dwell[:-1] = np.diff(t)
    keep[-1:] = False  # the last row has no successor, hence no dwell time
    keep &= dwell > 0
    if not keep.any():
        raise NuskybgdError(f"{where}: no reference-point dwell time inside the good time intervals "
                            "(aspect histogram would have no exposure)")
    ix = np.floor(x[keep]).astype(np.int64)
    iy = np.floor(y[keep]).astype(np.int64)
    off = (ix < 0) | (ix >= grid) | (iy < 0) | (iy >= grid)
    if off.any():
        raise NuskybgdError(f"{where}: {int(off.sum())} reference points inside the GTIs fall outside "
                            f"the {grid}x{grid} sky grid (e.g. X_DET1={x[keep][off][0]:.1f}, "
                            f"Y_DET1={y[keep][off][0]:.1f})")
    full = np.bincount(iy * grid + ix, weights=dwell[keep], minlength=grid * grid).reshape(grid, grid)
    cols = np.flatnonzero(full.any(axis=0))
    rows = np.flatnonzero(full.any(axis=1))
    x0, x1, y0, y1 = cols[0], cols[-1], rows[0], rows[-1]
    image = full[y0:y1 + 1, x0:x1 + 1].copy()
    ident = {}
    if header is not None:
        for k in IDENT_KEYWORDS:
            if k in header:
                ident[k] = (header[k], header.comments[k])
    return AspectHistogram(image=image, x_off=int(x0), y_off=int(y0), exposure=float(image.sum()), header=ident)


def aspect_hdulist(hist, history=None):
    """FITS form of an aspect histogram (primary image, EXTNAME ASPECT_HISTOGRAM).

    Parameters
    ----------
    hist : AspectHistogram
        The histogram.
    history : list of str, optional
        HISTORY lines to add.

    Returns
    -------
    astropy.io.fits.HDUList
    """
    hdu = fits.PrimaryHDU(np.asarray(hist.image, dtype=np.float64))
    h = hdu.header
    h["EXTNAME"] = "ASPECT_HISTOGRAM"
    h["X_OFF"] = (int(hist.x_off), "x offset in pixels (add to image x index)")
    h["Y_OFF"] = (int(hist.y_off), "y offset in pixels (add to image y index)")
    h["EXPOSURE"] = (float(hist.exposure), "[s] total dwell time in GTIs")
    h["BUNIT"] = ("s", "dwell time per pixel")
    for k, (v, c) in hist.header.items():
        h[k] = (v, c)
    h["COMMENT"] = "Add X_OFF/Y_OFF to image indices to get floor(X_DET1)/floor(Y_DET1)."
    for line in history or ():
        h["HISTORY"] = fits_text(line)
    return fits.HDUList([hdu])


def write_aspect_histogram(hist, path, clobber=False, history=None):
    """Write an aspect histogram FITS file (atomically).

    Parameters
    ----------
    hist : AspectHistogram
        The histogram.
    path : str or os.PathLike
        Output file.
    clobber : bool
        Overwrite an existing file.
    history : list of str, optional
        HISTORY lines.
    """
    write_fits(aspect_hdulist(hist, history), path, clobber=clobber)


def read_aspect_histogram(path):
    """Read an aspect histogram written by ``aspecthist`` (or the original tool).

    Parameters
    ----------
    path : str or os.PathLike
        FITS file whose ``ASPECT_HISTOGRAM`` HDU (or primary HDU) holds the
        image; ``X_OFF``/``Y_OFF`` default to 0 when absent.

    Returns
    -------
    AspectHistogram
        With ``exposure`` = sum of the image, s.

    Raises
    ------
    NuskybgdError
        No image, non-finite or negative values, or no exposure.
    """
    path = str(path)
    with open_fits(path, "aspect histogram") as hdul:
        try:
            hdu = find_hdu(hdul, "ASPECT_HISTOGRAM", path)
        except NuskybgdError:
            hdu = hdul[0]
        if hdu.data is None or np.ndim(hdu.data) != 2:
            raise NuskybgdError(f"{path}: no 2-D aspect histogram image")
        hdr = hdu.header
        if str(hdr.get("CTYPE1", "")).upper().startswith(("RA", "GLON", "ELON")):
            raise NuskybgdError(f"{path}: a sky image (CTYPE1 {hdr['CTYPE1']}), not an aspect histogram "
                                "(made by 'nuskybgd aspecthist')")
        img = np.asarray(hdu.data, dtype=np.float64)
        try:
            x_off = int(hdr.get("X_OFF", 0))
            y_off = int(hdr.get("Y_OFF", 0))
        except (TypeError, ValueError):
            raise NuskybgdError(f"{path}: X_OFF/Y_OFF are not integers") from None
        ident = {k: (hdr[k], hdr.comments[k]) for k in IDENT_KEYWORDS if k in hdr}
    if not np.all(np.isfinite(img)):
        raise NuskybgdError(f"{path}: aspect histogram holds NaN or infinite values")
    if np.any(img < 0):
        raise NuskybgdError(f"{path}: aspect histogram holds negative dwell times")
    total = float(img.sum())
    if not total > 0:
        raise NuskybgdError(f"{path}: aspect histogram has no exposure (all pixels zero)")
    return AspectHistogram(image=img, x_off=x_off, y_off=y_off, exposure=total, header=ident)
