"""Readers and writers of the sky-product files.

CALDB PIXPOS and INSTRMAP files, instrument maps written by ``mkinstrmap``
(the ``chipmap=`` of ``projbgd``), reference sky images and the sky images
``projbgd`` and ``mkimgs`` write. Kernels in :mod:`nuskybgd.sky` never open
files; these functions do.
"""

import re
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from ..errors import NuskybgdError
from .fitsfile import find_hdu, find_hdus, fits_text, open_fits

__all__ = ["PixposTable", "read_pixpos", "read_instrmap", "read_image", "image_hdulist"]


@dataclass
class PixposTable:
    """One PIXPOS extension (one detector) as arrays.

    Attributes
    ----------
    det : int
        Detector 0..3.
    rawx, rawy : ndarray of int
        Raw pixel 0..31.
    grade : ndarray of int
        Event grade.
    ref_det1x, ref_det1y : ndarray of int
        DET1 position (1-based, as in the file) of the lower-left corner of
        the 7x7 PDF; -1 when the row has no calibration.
    pdf : ndarray of float, shape (n, 7, 7)
        Probability of DET1 pixel [ref_det1y + r, ref_det1x + c] at [r, c].
    """

    det: int
    rawx: np.ndarray
    rawy: np.ndarray
    grade: np.ndarray
    ref_det1x: np.ndarray
    ref_det1y: np.ndarray
    pdf: np.ndarray


def read_pixpos(path, extno=None):
    """PIXPOS tables of one module (one per detector).

    Parameters
    ----------
    path : str or os.PathLike
        CALDB PIXPOS file (``nu{A,B}pixpos*.fits[.gz]``).
    extno : int, optional
        Ignored unless the file holds other extensions too (every extension
        with PIXPOS in EXTNAME and a DETNAM is read).

    Returns
    -------
    list of PixposTable
        In file order.

    Raises
    ------
    NuskybgdError
        Unreadable file, no PIXPOS extension, missing columns or DETNAM.
    """
    path = str(path)
    out = []
    with open_fits(path, "PIXPOS file") as hdul:
        hdus = [h for h in find_hdus(hdul, "PIXPOS") if hasattr(h, "columns")]
        if not hdus:
            raise NuskybgdError(f"{path}: no PIXPOS extension")
        for h in hdus:
            detnam = str(h.header.get("DETNAM", "")).strip().upper()
            m = re.fullmatch(r"DET([0-3])", detnam)
            if not m:
                raise NuskybgdError(f"{path}: PIXPOS extension has DETNAM {detnam or 'missing'}, expected DET0..DET3")
            names = [c.upper() for c in h.columns.names]
            for c in ("RAWX", "RAWY", "GRADE", "REF_DET1X", "REF_DET1Y", "PDF"):
                if c not in names:
                    raise NuskybgdError(f"{path}: PIXPOS extension {detnam} lacks column {c}")
            d = h.data
            pdf = np.asarray(d["PDF"], dtype=np.float64)
            if pdf.size != len(d) * 49:
                raise NuskybgdError(f"{path}: PIXPOS extension {detnam}: PDF is not 7x7 per row")
            out.append(PixposTable(
                det=int(m.group(1)),
                rawx=np.asarray(d["RAWX"]).astype(np.int64), rawy=np.asarray(d["RAWY"]).astype(np.int64),
                grade=np.asarray(d["GRADE"]).astype(np.int64),
                ref_det1x=np.asarray(d["REF_DET1X"]).astype(np.int64),
                ref_det1y=np.asarray(d["REF_DET1Y"]).astype(np.int64),
                pdf=pdf.reshape(len(d), 7, 7)))
    return out


def read_instrmap(path, what="instrument map"):
    """The ``INSTRMAP`` image of a CALDB file or of a ``mkinstrmap`` output.

    Parameters
    ----------
    path : str or os.PathLike
        FITS file with an HDU whose EXTNAME is INSTRMAP (primary or extension).
    what : str
        Description for error messages.

    Returns
    -------
    image : ndarray, shape (360, 360)
        The map, indexed [DET1 y, DET1 x].
    header : astropy.io.fits.Header
        Its header.

    Raises
    ------
    NuskybgdError
        No INSTRMAP HDU, not a 360x360 image, non-finite values.
    """
    path = str(path)
    with open_fits(path, what) as hdul:
        hdu = find_hdu(hdul, "INSTRMAP", path)
        if hdu.data is None or np.ndim(hdu.data) != 2:
            raise NuskybgdError(f"{path}: INSTRMAP HDU holds no 2-D image")
        img = np.array(hdu.data)
        header = hdu.header.copy()
    if img.shape != (360, 360):
        raise NuskybgdError(f"{path}: INSTRMAP is {img.shape[1]}x{img.shape[0]}, expected 360x360")
    if img.dtype.kind == "f" and not np.all(np.isfinite(img)):
        raise NuskybgdError(f"{path}: INSTRMAP holds NaN or infinite values")
    if img.dtype.byteorder not in ("=", "|"):
        img = img.astype(img.dtype.newbyteorder("="))
    return img, header


def read_image(path, what="image"):
    """The first image HDU of a FITS file.

    Parameters
    ----------
    path : str or os.PathLike
        FITS image file.
    what : str
        Description for error messages.

    Returns
    -------
    data : ndarray of float64
        The image.
    header : astropy.io.fits.Header
        Its header.

    Raises
    ------
    NuskybgdError
        Unreadable file or no image HDU.
    """
    path = str(path)
    with open_fits(path, what) as hdul:
        for hdu in hdul:
            if hdu.is_image and hdu.data is not None and np.ndim(hdu.data) == 2:
                return np.asarray(hdu.data, dtype=np.float64), hdu.header.copy()
    raise NuskybgdError(f"{path}: no 2-D image in any HDU ({what} expected)")


def image_hdulist(image, header=None, history=()):
    """A primary-HDU FITS image carrying a copy of ``header``'s keywords.

    Parameters
    ----------
    image : ndarray
        Image data.
    header : astropy.io.fits.Header, optional
        Header to copy (structural keywords are rewritten for ``image``).
    history : iterable of str
        HISTORY lines to append.

    Returns
    -------
    astropy.io.fits.HDUList
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        hdr = fits.Header()
        if header is not None:
            skip = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "PCOUNT",
                    "GCOUNT", "CHECKSUM", "DATASUM", "BSCALE", "BZERO", "BLANK"}
            for card in header.cards:
                if card.keyword not in skip:
                    hdr.append(card, end=True)
        hdu = fits.PrimaryHDU(np.asarray(image), header=hdr)
        for line in history:
            hdu.header["HISTORY"] = fits_text(line)
    return fits.HDUList([hdu])
