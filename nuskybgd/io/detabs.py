"""Reader of CALDB detector absorption tables (``DETABS``).

:func:`read_detabs` reads one detector's transmission table;
:func:`detabs_on_grid` puts it on a response's energy grid.
"""

import numpy as np
from astropy.io import fits

from ..errors import NuskybgdError
from .fitsfile import open_fits

__all__ = ["read_detabs", "detabs_on_grid"]


def detabs_on_grid(energ_lo, energ_hi, d_lo, d_hi, detabs):
    """Detector absorption on an RMF's energy grid.

    Parameters
    ----------
    energ_lo, energ_hi : array_like, shape (n,)
        RMF energy bin edges (keV).
    d_lo, d_hi : array_like, shape (m,)
        DETABS table energy bin edges (keV).
    detabs : array_like, shape (m,)
        Absorption (transmission, dimensionless, 0..1) per DETABS bin.

    Returns
    -------
    numpy.ndarray, shape (n,)
        The transmission for each RMF row, float64. When the two grids are
        the same (to 1e-5 keV) the table is taken as it is; otherwise it is
        interpolated linearly at the RMF bin centres (constant beyond the
        table's ends).
    """
    elo = np.asarray(energ_lo, float)
    ehi = np.asarray(energ_hi, float)
    dlo = np.asarray(d_lo, float)
    dhi = np.asarray(d_hi, float)
    val = np.asarray(detabs, float)
    if elo.shape == dlo.shape and np.allclose(elo, dlo, rtol=0, atol=1e-5) \
            and np.allclose(ehi, dhi, rtol=0, atol=1e-5):
        return val.copy()
    return np.interp(0.5 * (elo + ehi), 0.5 * (dlo + dhi), val)


def read_detabs(path, detector):
    """Read one detector's table from a CALDB DETABS file.

    Parameters
    ----------
    path : str or os.PathLike
        DETABS file (one ``DETABS`` extension per detector, keyword ``DETNAM``
        DET0..DET3; a file with a single DETABS extension is used for every
        detector).
    detector : int
        Detector 0..3.

    Returns
    -------
    tuple of numpy.ndarray
        ``(energ_lo, energ_hi, detabs)`` in keV, keV, transmission.

    Raises
    ------
    NuskybgdError
        Missing file, no DETABS extension, no extension for that detector,
        missing columns or non-finite values.
    """
    with open_fits(path, "DETABS file") as hdul:
        exts = [h for h in hdul[1:] if str(h.header.get("EXTNAME", "")).strip().upper() == "DETABS"
                or "DETABS" in getattr(h, "columns", fits.ColDefs([])).names]
        if not exts:
            raise NuskybgdError(f"{path}: no DETABS extension (not a CALDB detector absorption file)")
        want = f"DET{int(detector)}"
        match = [h for h in exts if str(h.header.get("DETNAM", "")).strip().upper() == want]
        if match:
            hdu = match[0]
        elif len(exts) == 1:
            hdu = exts[0]
        else:
            raise NuskybgdError(f"{path}: no DETABS extension with DETNAM = '{want}'")
        names = [n.upper() for n in hdu.columns.names]
        for col in ("ENERG_LO", "ENERG_HI", "DETABS"):
            if col not in names:
                raise NuskybgdError(f"{path}: DETABS extension for {want} lacks column {col}")
        lo = np.asarray(hdu.data["ENERG_LO"], float)
        hi = np.asarray(hdu.data["ENERG_HI"], float)
        val = np.asarray(hdu.data["DETABS"], float)
    if val.ndim != 1 or not np.all(np.isfinite(val)):
        raise NuskybgdError(f"{path}: DETABS of {want} has non-finite values")
    return lo, hi, val
