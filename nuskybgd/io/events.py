"""Event files, GTIs, bad-pixel lists and DET1 reference-point files.

Conventions (see ``docs/DESIGN.md``):

- Coordinate columns (DET1X, DET1Y, DET2X, DET2Y, X, Y) are returned as
  float64 1-based FITS pixel coordinates; rows whose value equals the
  column's TNULL (e.g. DET1X = -4095 for events without a DET1 position) are
  NaN, so histograms with an explicit range skip them. Other columns keep
  their file type; their null rows are listed in ``EventFile.nulls``.
- ``sky_wcs`` builds the celestial WCS of the sky X/Y grid from the X/Y
  column keywords (TCTYPn, TCRVLn, TCDLTn, TCRPXn, TCUNIn, TLMAXn). TCRVLn
  written as a string (some solar-pointing files do this) is accepted; the
  astropy warning about it is silenced because the value is read here from
  the raw header.
"""

import logging
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.io.fits.verify import VerifyWarning

from ..errors import NuskybgdError
from .fitsfile import find_hdu, find_hdus, open_fits

__all__ = [
    "EventFile", "BadPixTable", "EVENT_COLUMNS", "COORD_COLUMNS",
    "read_events", "sky_wcs", "read_gti", "read_badpix", "read_det1_refpoint",
    "module_from_header", "check_module"]

log = logging.getLogger("nuskybgd")

#: Columns read by :func:`read_events` (when present).
EVENT_COLUMNS = ("TIME", "PI", "DET_ID", "RAWX", "RAWY", "GRADE", "DET1X", "DET1Y", "X", "Y")

#: Columns converted to float64 with NaN for nulls.
COORD_COLUMNS = ("DET1X", "DET1Y", "DET2X", "DET2Y", "X", "Y")

#: Nominal NuSTAR sky pixel, degrees.


@dataclass
class BadPixTable:
    """One BADPIX extension (one detector).

    Attributes
    ----------
    det : int
        Detector 0..3 (from DETNAM ``DET0``..``DET3``).
    rawx, rawy : ndarray of int
        Raw pixel coordinates, 0..31.
    time, time_stop : ndarray of float
        Start and stop of each bad interval, s (mission time).
    badflag : ndarray of bool, shape (n, 16)
        BADFLAG bits in file order: index 0 is the leftmost character of
        the ``b0000000000000000`` notation, index 15 the least significant
        bit (index 14 is the "second-to-last bit": on-board disabled pixel).
    tstart, tstop : float or None
        Extension TSTART/TSTOP, s, or None when absent.
    source : str
        File the table came from.
    instrume : str or None
        INSTRUME of the extension (``FPMA``/``FPMB``) when present.
    """

    det: int
    rawx: np.ndarray
    rawy: np.ndarray
    time: np.ndarray
    time_stop: np.ndarray
    badflag: np.ndarray
    tstart: float = None
    tstop: float = None
    source: str = ""
    instrume: str = None


@dataclass
class EventFile:
    """A NuSTAR event list.

    Attributes
    ----------
    path : str
        File name.
    header : astropy.io.fits.Header
        Header of the EVENTS extension.
    columns : dict of str to ndarray
        Event columns present among :data:`EVENT_COLUMNS` (plus any extra
        requested); coordinate columns as float64 with NaN for nulls.
    gti : tuple of ndarray or None
        (start, stop) of the good time intervals, s, sorted by start; None
        when the file has no GTI extension.
    badpix : list of BadPixTable
        The file's BADPIX extensions (possibly empty).
    module : str
        ``"A"`` or ``"B"``.
    nulls : dict of str to ndarray of bool
        For non-coordinate columns with TNULL: rows holding the null value.
    """

    path: str
    header: object
    columns: dict
    gti: tuple
    badpix: list
    module: str
    nulls: dict = field(default_factory=dict)

    def __len__(self):
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @property
    def wcs(self):
        """Celestial WCS of the sky X/Y grid (see :func:`sky_wcs`)."""
        return sky_wcs(self)


def module_from_header(header, path, *more_headers):
    """Module letter from INSTRUME.

    Parameters
    ----------
    header : astropy.io.fits.Header
        First header to look in.
    path : str or os.PathLike
        File name for the error message.
    *more_headers : astropy.io.fits.Header
        Further headers (e.g. the primary) tried when INSTRUME is absent.

    Returns
    -------
    str
        ``"A"`` for FPMA, ``"B"`` for FPMB.

    Raises
    ------
    NuskybgdError
        When INSTRUME is missing or not FPMA/FPMB.
    """
    for h in (header, *more_headers):
        if h is not None and "INSTRUME" in h:
            inst = str(h["INSTRUME"]).strip().upper()
            if inst in ("FPMA", "FPMB"):
                return inst[-1]
            raise NuskybgdError(f"{path}: INSTRUME is {inst!r}, expected FPMA or FPMB (not a NuSTAR FPM file)")
    raise NuskybgdError(f"{path}: keyword INSTRUME missing, cannot tell FPMA from FPMB")


def check_module(header, module, path, what, expected_from):
    """Cross-check the module of a file against the module it is used for.

    Parameters
    ----------
    header : astropy.io.fits.Header or dict or None
        Header of the file (INSTRUME absent or not FPMA/FPMB: no check).
    module : str
        ``"A"`` or ``"B"``, the module the file is used for.
    path : str or os.PathLike
        The file (messages).
    what : str
        What the file is (messages), e.g. ``"instrument map"``.
    expected_from : str
        Where ``module`` comes from (messages), e.g. ``"--mod A"``.

    Raises
    ------
    NuskybgdError
        When the file is for the other module.
    """
    if header is None or "INSTRUME" not in header:
        return
    inst = header["INSTRUME"]
    inst = str(inst[0] if isinstance(inst, tuple) else inst).strip().upper()
    if inst in ("FPMA", "FPMB") and inst[-1] != module:
        raise NuskybgdError(f"{path}: {what} is for {inst} but used for FPM{module} ({expected_from})")


def _quiet_table(hdu):
    """Table data with astropy's warning about string TCRVLn silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*TCRVL.*", category=VerifyWarning)
        warnings.filterwarnings("ignore", message=r".*coord_ref_value.*", category=VerifyWarning)
        return hdu.data


def _column_numbers(header):
    """Map upper-case column name -> 1-based column number."""
    out = {}
    for key in header:
        m = re.fullmatch(r"TTYPE(\d+)", key)
        if m:
            out[str(header[key]).strip().upper()] = int(m.group(1))
    return out


def _column_array(data, name, header, colnum, path):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=VerifyWarning)
        arr = np.array(data[name])  # a copy: never a view into a memory-mapped file
    null = header.get(f"TNULL{colnum}") if colnum else None
    if name in COORD_COLUMNS:
        out = arr.astype(np.float64)
        if null is not None:
            out[arr == null] = np.nan
        return out, None
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    mask = (arr == null) if (null is not None and arr.dtype.kind in "iu") else None
    return arr, mask


def read_events(path, columns=EVENT_COLUMNS):
    """Read a NuSTAR event file.

    Parameters
    ----------
    path : str or os.PathLike
        Event file (plain or gzip), with an ``EVENTS`` extension.
    columns : sequence of str
        Columns to read when present (default :data:`EVENT_COLUMNS`).

    Returns
    -------
    EventFile
        Columns, GTIs, BADPIX tables and module.

    Raises
    ------
    NuskybgdError
        Unreadable file, no EVENTS extension, no TIME column, INSTRUME not
        FPMA/FPMB.
    """
    path = str(path)
    with open_fits(path, "event file") as hdul:
        ev = find_hdu(hdul, "EVENTS", path)
        header = ev.header.copy()
        module = module_from_header(header, path, hdul[0].header)
        data = _quiet_table(ev)
        colnums = _column_numbers(header)
        if "TIME" not in colnums:
            raise NuskybgdError(f"{path}: EVENTS extension has no TIME column")
        cols, nulls = {}, {}
        for name in columns:
            key = name.upper()
            if key in colnums:
                arr, mask = _column_array(data, key, header, colnums[key], path)
                cols[key] = arr
                if mask is not None and mask.any():
                    nulls[key] = mask
        gti_hdus = [h for h in hdul if str(h.header.get("EXTNAME", "")).strip().upper() in ("STDGTI", "GTI")]
        gti = _gti_from_hdu(gti_hdus[0], path) if gti_hdus else None
        badpix = _badpix_from_hdul(hdul, path)
    return EventFile(path=path, header=header, columns=cols, gti=gti, badpix=badpix,
                     module=module, nulls=nulls)


def _float_keyword(header, key, path):
    v = header[key]
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            raise NuskybgdError(f"{path}: keyword {key} = {v!r} is not a number") from None
    return float(v)


def _find_sky_axes(header):
    """Column numbers (nx, ny) of the sky X/Y axes in a header, or None."""
    colnums = _column_numbers(header)
    nx, ny = colnums.get("X"), colnums.get("Y")
    if nx and ny and f"TCTYP{nx}" in header and f"TCTYP{ny}" in header:
        return nx, ny
    # X/Y columns dropped (e.g. a TIME/PI-only copy) but their keywords kept.
    ra = dec = None
    for key in header:
        m = re.fullmatch(r"TCTYP(\d+)", key)
        if m:
            t = str(header[key]).strip().upper()
            if t.startswith(("RA--", "GLON", "ELON")) and ra is None:
                ra = int(m.group(1))
            elif t.startswith(("DEC-", "GLAT", "ELAT")) and dec is None:
                dec = int(m.group(1))
    if ra and dec:
        return ra, dec
    return None


def sky_wcs(header_or_eventfile, path=None):
    """Celestial WCS of the sky X/Y pixel grid of an event file.

    Parameters
    ----------
    header_or_eventfile : EventFile or astropy.io.fits.Header
        The EVENTS header (or the event file) holding the X/Y column
        keywords TCTYPn, TCRVLn (number or string), TCDLTn, TCRPXn, TCUNIn.
    path : str, optional
        File name for error messages (taken from the EventFile if given).

    Returns
    -------
    astropy.wcs.WCS
        Two-axis WCS whose FITS pixel coordinates are the event X/Y values
        (so image index i = floor(X - 0.5) has its centre at X = i + 1, and
        the image WCS uses CRPIX = TCRPXn). ``pixel_shape`` is (TLMAX of X,
        TLMAX of Y), 1000x1000 for NuSTAR.

    Raises
    ------
    NuskybgdError
        When no sky axis keywords are found or a value is not a number.

    Notes
    -----
    A pixel scale labelled ``deg`` but larger than 0.1 deg cannot be a
    NuSTAR sky pixel (2.458 arcsec); solar-coordinate files write arcsec
    there, so such a scale is read as arcsec and a warning is logged.
    """
    if isinstance(header_or_eventfile, EventFile):
        header = header_or_eventfile.header
        path = path or header_or_eventfile.path
    else:
        header = header_or_eventfile
    where = path or "event header"
    axes = _find_sky_axes(header)
    if axes is None:
        raise NuskybgdError(f"{where}: no sky X/Y column keywords (TCTYPn/TCRVLn/TCDLTn/TCRPXn)")
    from astropy.wcs import WCS  # local: astropy.wcs (with astropy.units) is 0.27 s of projbgd's start-up
    w = WCS(naxis=2)
    ctype, crval, cdelt, crpix, cunit, shape = [], [], [], [], [], []
    for n in axes:
        for k in ("TCTYP", "TCRVL", "TCDLT", "TCRPX"):
            if f"{k}{n}" not in header:
                raise NuskybgdError(f"{where}: keyword {k}{n} missing (sky axis {n})")
        ctype.append(str(header[f"TCTYP{n}"]).strip())
        crval.append(_float_keyword(header, f"TCRVL{n}", where))
        cdelt.append(_float_keyword(header, f"TCDLT{n}", where))
        crpix.append(_float_keyword(header, f"TCRPX{n}", where))
        unit = str(header.get(f"TCUNI{n}", "deg")).strip() or "deg"
        cunit.append(unit)
        shape.append(int(header.get(f"TLMAX{n}", 1000)))
    for i in range(2):
        if cunit[i].lower() in ("deg", "degree", "degrees") and abs(cdelt[i]) > 0.1:
            log.warning("%s: sky pixel scale %g deg is not plausible for NuSTAR; reading it as arcsec",
                        where, cdelt[i])
            cunit[i] = "arcsec"
    w.wcs.ctype = ctype
    w.wcs.crval = crval
    w.wcs.cdelt = cdelt
    w.wcs.crpix = crpix
    w.wcs.cunit = cunit
    radesys = header.get("RADESYS", header.get("RADECSYS"))
    if radesys:
        w.wcs.radesys = str(radesys).strip()
    if "EQUINOX" in header:
        w.wcs.equinox = float(header["EQUINOX"])
    w.wcs.set()
    w.pixel_shape = tuple(shape)
    return w


def _gti_from_hdu(hdu, path):
    names = [c.upper() for c in hdu.columns.names]
    if "START" not in names or "STOP" not in names:
        raise NuskybgdError(f"{path}: GTI extension {hdu.name} lacks START/STOP columns")
    start = np.array(hdu.data["START"], dtype=np.float64).ravel()
    stop = np.array(hdu.data["STOP"], dtype=np.float64).ravel()
    if np.any(~np.isfinite(start)) or np.any(~np.isfinite(stop)):
        raise NuskybgdError(f"{path}: GTI extension {hdu.name} holds non-finite times")
    if np.any(stop < start):
        raise NuskybgdError(f"{path}: GTI extension {hdu.name} has STOP < START")
    order = np.argsort(start, kind="stable")
    return start[order], stop[order]


def read_gti(path):
    """Good time intervals of a file (``STDGTI`` preferred, else ``GTI``).

    Parameters
    ----------
    path : str or os.PathLike
        GTI file or event file.

    Returns
    -------
    start, stop : ndarray of float64
        Interval bounds, s (mission time), sorted by start.

    Raises
    ------
    NuskybgdError
        No STDGTI/GTI extension, missing START/STOP, STOP < START.
    """
    path = str(path)
    with open_fits(path, "GTI file") as hdul:
        return _gti_from_hdu(find_hdu(hdul, ("STDGTI", "GTI"), path), path)


def _badflag_bits(col, n):
    arr = np.array(col)
    if arr.dtype == bool:
        bits = arr.reshape(n, -1)
    else:  # integer flag: expand to 16 bits, most significant first
        v = arr.astype(np.int64).reshape(n)
        bits = ((v[:, None] >> np.arange(15, -1, -1)) & 1).astype(bool)
    if bits.shape[1] < 16:
        bits = np.concatenate([np.zeros((n, 16 - bits.shape[1]), bool), bits], axis=1)
    return bits[:, -16:]


def _badpix_from_hdul(hdul, path):
    out = []
    for hdu in find_hdus(hdul, "BADPIX"):
        if not hasattr(hdu, "columns"):
            continue
        h = hdu.header
        detnam = str(h.get("DETNAM", "")).strip().upper()
        m = re.fullmatch(r"DET([0-3])", detnam)
        if not m:
            raise NuskybgdError(f"{path}: BADPIX extension {hdu.name},{h.get('EXTVER', 1)} has DETNAM {detnam or 'missing'}, expected DET0..DET3")
        names = [c.upper() for c in hdu.columns.names]
        for c in ("RAWX", "RAWY"):
            if c not in names:
                raise NuskybgdError(f"{path}: BADPIX extension for {detnam} lacks column {c}")
        d = hdu.data
        n = len(d) if d is not None else 0
        get = (lambda c, dt, fill: np.array(d[c], dtype=dt).ravel() if (n and c in names)
               else np.full(n, fill, dtype=dt))
        badflag = _badflag_bits(d["BADFLAG"], n) if (n and "BADFLAG" in names) else np.zeros((n, 16), bool)
        inst = h.get("INSTRUME")
        out.append(BadPixTable(
            det=int(m.group(1)),
            rawx=get("RAWX", np.int16, 0), rawy=get("RAWY", np.int16, 0),
            time=get("TIME", np.float64, -np.inf), time_stop=get("TIME_STOP", np.float64, np.inf),
            badflag=badflag,
            tstart=float(h["TSTART"]) if "TSTART" in h else None,
            tstop=float(h["TSTOP"]) if "TSTOP" in h else None,
            source=str(path),
            instrume=str(inst).strip() if inst is not None else None,
        ))
    return out


def read_badpix(path):
    """Bad-pixel tables of a file (every extension with BADPIX in EXTNAME).

    Parameters
    ----------
    path : str or os.PathLike
        Event file, NuSTARDAS ``_bp``/``_hp`` file, CALDB BADPIX file or user
        bad-pixel file.

    Returns
    -------
    list of BadPixTable
        One per extension, in file order.

    Raises
    ------
    NuskybgdError
        Unreadable file, no BADPIX extension, DETNAM not DET0..DET3.
    """
    path = str(path)
    with open_fits(path, "bad-pixel file") as hdul:
        tables = _badpix_from_hdul(hdul, path)
        if not find_hdus(hdul, "BADPIX"):
            raise NuskybgdError(f"{path}: no extension with BADPIX in its name")
    return tables


def read_det1_refpoint(path):
    """DET1 reference-point track (NuSTARDAS ``*_det1.fits``).

    Parameters
    ----------
    path : str or os.PathLike
        File with a ``DET1_REFPOINT`` extension, or any table with TIME,
        X_DET1 and Y_DET1 columns.

    Returns
    -------
    time : ndarray of float64
        s (mission time).
    x_det1, y_det1 : ndarray of float64
        Reference point in DET1 pixels.
    header : astropy.io.fits.Header
        Header of that extension.

    Raises
    ------
    NuskybgdError
        Unreadable file, no such extension, NaN values.
    """
    path = str(path)
    want = ("TIME", "X_DET1", "Y_DET1")
    with open_fits(path, "DET1 reference-point file") as hdul:
        hdu = None
        try:
            hdu = find_hdu(hdul, "DET1_REFPOINT", path)
        except NuskybgdError:
            for h in hdul[1:]:
                if hasattr(h, "columns") and all(c in [n.upper() for n in h.columns.names] for c in want):
                    hdu = h
                    break
            if hdu is None:
                raise NuskybgdError(f"{path}: no DET1_REFPOINT extension (nor a table with TIME, X_DET1, Y_DET1)") from None
        names = [n.upper() for n in hdu.columns.names]
        for c in want:
            if c not in names:
                raise NuskybgdError(f"{path}: extension {hdu.name} lacks column {c}")
        t, x, y = (np.array(hdu.data[c], dtype=np.float64).ravel() for c in want)
        header = hdu.header.copy()
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise NuskybgdError(f"{path}: DET1 reference-point table holds NaN or infinite values")
    return t, x, y, header
