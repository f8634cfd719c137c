"""Counts images of event files on their sky grid (``mkimgs``)."""

import logging
import math

import numpy as np
from astropy.io import fits

from ..constants import PI_GAIN, PI_OFFSET
from ..errors import NuskybgdError
from ..io.events import sky_wcs

__all__ = ["pi_range", "counts_image", "COPY_KEYWORDS"]

log = logging.getLogger("nuskybgd")

#: Keywords copied from the EVENTS header into the image header.
COPY_KEYWORDS = (
    "TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "TARG_ID", "RA_OBJ", "DEC_OBJ", "RA_NOM", "DEC_NOM",
    "RA_PNT", "DEC_PNT", "PA_PNT", "EQUINOX", "RADESYS", "RADECSYS", "TIMESYS", "MJDREFI", "MJDREFF",
    "TSTART", "TSTOP", "DATE-OBS", "DATE-END", "ONTIME", "LIVETIME", "EXPOSURE", "DEADC",
)


def pi_range(emin, emax):
    """PI channels whose energy E = 1.6 + 0.04 PI lies in [emin, emax).

    Parameters
    ----------
    emin, emax : float
        Band, keV.

    Returns
    -------
    tuple of int
        (first, last) channel, inclusive; energies within 1e-6 channel of a
        bound count as on it (so 3-25 keV gives channels 35..584).

    Raises
    ------
    NuskybgdError
        When emax <= emin, a bound is not finite, or no channel is selected.
    """
    emin, emax = float(emin), float(emax)
    if not (math.isfinite(emin) and math.isfinite(emax)):
        raise NuskybgdError(f"energy band {emin}-{emax} keV: bounds must be finite numbers")
    if not emax > emin:
        raise NuskybgdError(f"energy band {emin}-{emax} keV: ELOW must be below EHIGH")
    lo = max(0, math.ceil((emin - PI_OFFSET) / PI_GAIN - 1e-6))
    hi = min(4095, math.ceil((emax - PI_OFFSET) / PI_GAIN - 1e-6) - 1)
    if hi < lo:
        raise NuskybgdError(f"energy band {emin}-{emax} keV holds no PI channel (1.6-165.44 keV, 0.04 keV steps)")
    return lo, hi


def counts_image(eventfile, emin, emax):
    """Counts image of an event file in an energy band, on its sky X/Y grid.

    Parameters
    ----------
    eventfile : nuskybgd.io.events.EventFile
        Events with PI, X and Y columns and the sky-axis keywords.
    emin, emax : float
        Energy band, keV (E = 1.6 + 0.04 PI; see :func:`pi_range`).

    Returns
    -------
    image : ndarray of int32, shape (ny, nx)
        Counts per sky pixel, indexed [y, x]; pixel i holds events with
        floor(X - 0.5) = i (1000x1000 for NuSTAR).
    header : astropy.io.fits.Header
        Celestial WCS of the grid, identification keywords and PA_PNT from
        the event header, the band (E_MIN, E_MAX keV; CHANMIN, CHANMAX).

    Raises
    ------
    NuskybgdError
        Missing PI/X/Y columns, no celestial sky WCS, PA_PNT missing.
    """
    path = eventfile.path
    for c in ("PI", "X", "Y"):
        if c not in eventfile.columns:
            raise NuskybgdError(f"{path}: EVENTS extension has no {c} column (needed for a sky image)")
    hdr_in = eventfile.header
    if "PA_PNT" not in hdr_in:
        raise NuskybgdError(f"{path}: keyword PA_PNT (roll angle) missing from the EVENTS header")
    wcs = sky_wcs(eventfile)
    if not wcs.has_celestial:
        raise NuskybgdError(f"{path}: sky X/Y axes have no celestial WCS (TCTYP {wcs.wcs.ctype[0]})")
    nx, ny = wcs.pixel_shape
    lo, hi = pi_range(emin, emax)
    pi = np.asarray(eventfile.columns["PI"])
    x = np.asarray(eventfile.columns["X"], dtype=np.float64)
    y = np.asarray(eventfile.columns["Y"], dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    if x.size and not finite.any():
        raise NuskybgdError(f"{path}: every event has a null (NaN) sky position X/Y: no sky image possible "
                            "(events not sky-projected?)")
    sel = (pi >= lo) & (pi <= hi) & finite
    ix = np.floor(x[sel] - 0.5).astype(np.int64)
    iy = np.floor(y[sel] - 0.5).astype(np.int64)
    on = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    if sel.any() and not on.any():
        raise NuskybgdError(f"{path}: every event in the band falls outside the {nx}x{ny} sky grid")
    if (~on).any():
        log.debug("%s: %d events in the band fall outside the %dx%d sky grid", path, int((~on).sum()), nx, ny)
    img = np.bincount(iy[on] * nx + ix[on], minlength=nx * ny).reshape(ny, nx).astype(np.int32)
    if (nx, ny) != (1000, 1000):
        log.warning("%s: sky grid is %dx%d, not the 1000x1000 NuSTAR grid (projbgd needs 1000x1000)",
                    path, nx, ny)
    header = fits.Header()
    for k in COPY_KEYWORDS:
        if k in hdr_in:
            header[k] = (hdr_in[k], hdr_in.comments[k])
    header.extend(wcs.to_header(), update=True)
    header["E_MIN"] = (float(emin), "[keV] lower energy of the band")
    header["E_MAX"] = (float(emax), "[keV] upper energy of the band")
    header["CHANTYPE"] = ("PI", "channel type")
    header["CHANMIN"] = (lo, "first PI channel (E = 1.6 + 0.04 PI keV)")
    header["CHANMAX"] = (hi, "last PI channel")
    header["BUNIT"] = ("count", "events per sky pixel")
    header["TOTCTS"] = (int(img.sum()), "total counts in the image")
    return img, header
