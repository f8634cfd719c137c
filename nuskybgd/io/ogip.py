"""OGIP spectra and responses: Sherpa data classes in memory, FITS on disk.

Reading goes through :mod:`sherpa.astro.io` (astropy backend) after the file
has been opened by :func:`nuskybgd.io.fitsfile.open_fits`, so that damaged
files give one-line errors. Sherpa's informational log messages are silenced
while reading. :func:`read_pha` does not load the files named by RESPFILE,
ANCRFILE and BACKFILE (unless asked); those keywords stay in ``pha.header``.

Writers produce OGIP type I PHA (OGIP/92-007), RMF and ARF (CAL/GEN/92-002)
files that astropy and Sherpa read back without warnings. All writes are
atomic and keep existing files unless ``clobber``.
"""

import logging
import math
import os
import re
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import NuskybgdError
from . import rmfcache
from .events import module_from_header
from .fitsfile import find_hdu, fits_text, header_file_path, open_fits
from .output import write_fits

__all__ = [
    "read_pha", "read_rmf", "read_arf", "rmf_matrix", "write_pha", "write_rmf",
    "write_arf", "spectrum_module", "check_spectrum_columns", "compress_matrix", "standard_energy_grid",
]

log = logging.getLogger("nuskybgd")

_RESPONSE_KEYS = ("RESPFILE", "ANCRFILE", "BACKFILE", "CORRFILE")


@contextmanager
def _quiet_sherpa():
    """Silence Sherpa's INFO messages (e.g. 'errors found but not used')."""
    loggers = [logging.getLogger(n) for n in ("sherpa", "sherpa.astro.io", "sherpa.astro.data")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, lev in zip(loggers, old):
            lg.setLevel(lev)


def _sherpa_error(path, what, exc):
    msg = " ".join(str(exc).split())
    return NuskybgdError(f"{path}: cannot read {what} ({msg})")


def read_pha(path, responses=False):
    """Read a type I PHA spectrum.

    Parameters
    ----------
    path : str or os.PathLike
        Spectrum file (SPECTRUM extension, CHANNEL and COUNTS or RATE).
    responses : bool
        Also load the RMF and ARF named by RESPFILE/ANCRFILE (relative to
        the spectrum's folder) and attach them. Backgrounds are never loaded.

    Returns
    -------
    sherpa.astro.data.DataPHA
        Counts per channel (counts), ``exposure`` (s), ``backscal``,
        ``areascal``, grouping/quality when present; ``header`` holds the
        SPECTRUM header keywords including RESPFILE, ANCRFILE, BACKFILE,
        EXPOSURE, BACKSCAL and AREASCAL.

    Raises
    ------
    NuskybgdError
        Unreadable file, no SPECTRUM extension, not a type I PHA.
    """
    from sherpa.astro import io as sio

    path = str(path)
    with open_fits(path, "spectrum") as hdul:
        try:
            spec = find_hdu(hdul, "SPECTRUM", path)
        except NuskybgdError:
            spec = next((h for h in hdul[1:] if hasattr(h, "columns")
                         and "CHANNEL" in [c.upper() for c in h.columns.names]), None)
            if spec is None:
                raise
        kept = {k: spec.header[k] for k in ("RESPFILE", "ANCRFILE", "BACKFILE", "CORRFILE",
                                              "EXPOSURE", "BACKSCAL", "AREASCAL") if k in spec.header}
        check_spectrum_columns(spec, path)
        # Hand Sherpa a copy without the ancillary file names, so that it
        # does not try to load them (and warn when they are absent).
        spec_copy = spec.copy()
        for k in _RESPONSE_KEYS:
            if k in spec_copy.header:
                spec_copy.header[k] = "none"
        work = fits.HDUList([fits.PrimaryHDU(header=hdul[0].header.copy()), spec_copy])
        try:
            with _quiet_sherpa():
                pha = sio.read_pha(work)
        except Exception as exc:  # Sherpa raises IOErr/DataErr/ValueError
            raise _sherpa_error(path, "spectrum", exc) from None
    if isinstance(pha, list):
        raise NuskybgdError(f"{path}: type II PHA file (several spectra); give one spectrum per file")
    pha.name = path
    for k, v in kept.items():
        pha.header[k] = v.strip() if isinstance(v, str) else v
    if responses:
        base = Path(path).parent
        rmf = arf = None
        rname = str(kept.get("RESPFILE", "none")).strip()
        aname = str(kept.get("ANCRFILE", "none")).strip()
        if rname.lower() not in ("", "none"):
            rmf = read_rmf(header_file_path(rname, base))
        if aname.lower() not in ("", "none"):
            arf = read_arf(header_file_path(aname, base))
        if rmf is not None or arf is not None:
            pha.set_response(arf, rmf)
    return pha


def check_spectrum_columns(spec, path):
    """OGIP checks of a SPECTRUM table: EXPOSURE, GROUPING and QUALITY values.

    Parameters
    ----------
    spec : astropy.io.fits.BinTableHDU
        The SPECTRUM extension.
    path : str
        File name for messages.

    Raises
    ------
    NuskybgdError
        EXPOSURE not a positive finite number of seconds, GROUPING values other
        than 1/-1/0, QUALITY values other than 0/1/2/5 (OGIP/92-007).
    """
    expo = spec.header.get("EXPOSURE")
    if expo is not None:
        try:
            ok = math.isfinite(float(expo)) and float(expo) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise NuskybgdError(f"{path}: EXPOSURE = {expo!r} is not a positive number of seconds")
    names = [c.upper() for c in spec.columns.names]
    for col, allowed in (("GROUPING", (1, -1, 0)), ("QUALITY", (0, 1, 2, 5))):
        if col in names:
            vals = np.asarray(spec.data[col])
            if vals.dtype.kind == "f" and not np.all(np.isfinite(vals)):
                raise NuskybgdError(f"{path}: {col} column holds NaN values")
            bad = ~np.isin(vals, allowed)
            if np.any(bad):
                k = int(np.argmax(bad))
                raise NuskybgdError(f"{path}: {col} = {vals.ravel()[k]!r} in row {k + 1} is not an OGIP value "
                                    f"({', '.join(map(str, allowed))})")
    if "GROUPING" in names:
        g = np.asarray(spec.data["GROUPING"]).ravel()
        if g.size and g[0] == -1:
            raise NuskybgdError(f"{path}: GROUPING starts with -1 (a group must start with 1)")


def read_rmf(path, cache=None):
    """Read an RMF (MATRIX or SPECRESP MATRIX extension plus EBOUNDS).

    Parameters
    ----------
    path : str or os.PathLike
        RMF file, plain or gzip.
    cache : bool, optional
        Use the verified on-disk cache (:mod:`nuskybgd.io.rmfcache`). None
        (default): yes for files of at least
        :data:`~nuskybgd.io.rmfcache.MIN_CACHED_BYTES` unless
        ``NUSKYBGD_RMF_CACHE=0``; True: for any size; False: never.

    Returns
    -------
    sherpa.astro.data.DataRMF
        Energy grid ``energ_lo``/``energ_hi`` (keV), channel bounds
        ``e_min``/``e_max`` (keV), compressed matrix; see :func:`rmf_matrix`
        for the dense form. A cached RMF has the same energies, channels,
        header and response, with exact zeros dropped from the groups.
    """
    path = str(path)
    digest = None
    if cache is None:
        try:
            cache = rmfcache.cache_enabled() and os.stat(path).st_size >= rmfcache.MIN_CACHED_BYTES
        except OSError:
            cache = False  # open_fits below names the problem
    if cache:
        try:  # regular files only: hashing a FIFO or a device would block or never end
            digest = rmfcache.file_sha256(path) if os.path.isfile(path) else None
        except OSError:
            digest = None
    if digest is not None:
        hit = rmfcache.load_entry(rmfcache.rmf_cache_dir(), digest)
        if hit is not None:
            from sherpa.astro.data import DataRMF

            rmf = DataRMF(path, hit["detchans"], hit["energ_lo"], hit["energ_hi"], hit["n_grp"], hit["f_chan"],
                          hit["n_chan"], hit["matrix"], offset=hit["offset"], e_min=hit.get("e_min"),
                          e_max=hit.get("e_max"), header=hit["header"], ethresh=hit["ethresh"])
            log.debug("%s: RMF read from the cache (sha256 %s)", path, digest[:12])
            return rmf
    from sherpa.astro import io as sio

    with open_fits(path, "RMF") as hdul:
        try:
            with _quiet_sherpa():
                rmf = sio.read_rmf(hdul)
        except Exception as exc:
            raise _sherpa_error(path, "RMF", exc) from None
    for name in ("energ_lo", "energ_hi", "e_min", "e_max", "matrix"):
        v = getattr(rmf, name, None)
        if v is not None and not np.all(np.isfinite(np.asarray(v, dtype=float))):
            what = "MATRIX" if name == "matrix" else name.upper()
            raise NuskybgdError(f"{path}: RMF {what} holds NaN or infinite values")
    rmf.name = path
    if digest is not None:
        try:
            where = rmfcache.store_entry(rmfcache.rmf_cache_dir(), digest, rmf)
            log.debug("%s: RMF stored in the cache (%s)", path, where)
        except (OSError, ValueError) as exc:
            log.debug("%s: RMF not cached (%s)", path, exc)
    return rmf


def read_arf(path):
    """Read an ARF (SPECRESP extension).

    Parameters
    ----------
    path : str or os.PathLike
        ARF file.

    Returns
    -------
    sherpa.astro.data.DataARF
        ``energ_lo``/``energ_hi`` (keV) and ``specresp`` (cm^2).
    """
    from sherpa.astro import io as sio

    path = str(path)
    with open_fits(path, "ARF") as hdul:
        hdul = _repair_arf_grid(hdul, path)
        try:
            with _quiet_sherpa():
                arf = sio.read_arf(hdul)
        except Exception as exc:
            raise _sherpa_error(path, "ARF", exc) from None
    for name in ("energ_lo", "energ_hi", "specresp"):
        v = np.asarray(getattr(arf, name), dtype=float)
        if not np.all(np.isfinite(v)):
            raise NuskybgdError(f"{path}: ARF {name.upper()} holds NaN or infinite values")
    if np.any(np.asarray(arf.specresp, dtype=float) < 0):
        raise NuskybgdError(f"{path}: ARF SPECRESP holds negative areas")
    arf.name = path
    return arf


def standard_energy_grid(n=4096):
    """The standard NuSTAR response energy grid.

    Parameters
    ----------
    n : int
        Number of bins.

    Returns
    -------
    energ_lo, energ_hi : ndarray of float64
        1.6 + 0.04 i and 1.64 + 0.04 i keV, i = 0..n-1 (float32 values, as
        stored in CALDB files, promoted to float64).
    """
    i = np.arange(n)
    lo = (1.6 + 0.04 * i).astype(np.float32).astype(np.float64)
    hi = (1.64 + 0.04 * i).astype(np.float32).astype(np.float64)
    return lo, hi


def _repair_arf_grid(hdul, path):
    """Replace an energy grid stored with too few digits by the standard grid.

    The calibration bundle's ``be.arf`` stores ENERG_LO/ENERG_HI rounded to
    three significant digits, so bins above 10 keV have zero or negative
    width while SPECRESP follows the standard 0.04 keV grid row by row.
    When the stored values agree with the standard grid to that rounding,
    the standard grid is used (with a log message); otherwise a
    non-increasing grid is an error.
    """
    try:
        hdu = find_hdu(hdul, "SPECRESP", path)
    except NuskybgdError:
        return hdul
    names = [c.upper() for c in hdu.columns.names]
    if "ENERG_LO" not in names or "ENERG_HI" not in names:
        return hdul
    lo = np.asarray(hdu.data["ENERG_LO"], dtype=np.float64)
    hi = np.asarray(hdu.data["ENERG_HI"], dtype=np.float64)
    if np.all(hi > lo) and np.all(np.diff(lo) > 0):
        return hdul
    slo, shi = standard_energy_grid(lo.size)
    if lo.size == 4096 and np.allclose(lo, slo, rtol=5e-3, atol=0) and np.allclose(hi, shi, rtol=5e-3, atol=0):
        logging.getLogger("nuskybgd").info(
            "%s: ARF energy columns are rounded (non-increasing bins); using the standard "
            "1.6-165.44 keV grid of 0.04 keV bins", path)
        new = hdu.copy()
        new.data["ENERG_LO"] = slo
        new.data["ENERG_HI"] = shi
        return fits.HDUList([fits.PrimaryHDU(header=hdul[0].header.copy()), new])
    raise NuskybgdError(f"{path}: ARF energy bins are not increasing (ENERG_HI <= ENERG_LO or unsorted)")


_DENSE_CACHE = {}


def _drop_cache(key):
    _DENSE_CACHE.pop(key, None)


def rmf_matrix(rmf):
    """Dense redistribution matrix of an RMF.

    Parameters
    ----------
    rmf : sherpa.astro.data.DataRMF
        The response.

    Returns
    -------
    ndarray of float64, shape (n_energy, n_chan)
        Probability that a photon of energy bin i is recorded in channel j
        (times the effective area for a full response), with column 0 for
        the first channel (``rmf.offset``). The array is cached for the
        object (read-only view); changing ``rmf.matrix`` invalidates it.
    """
    key = id(rmf)
    hit = _DENSE_CACHE.get(key)
    if hit is not None and hit[0]() is rmf and hit[1] is rmf.matrix:
        return hit[2]
    from sherpa.astro.instrument import rmf_to_matrix

    n_e = len(rmf.energ_lo)
    n_ch = int(rmf.detchans)
    n_grp = np.asarray(rmf.n_grp, dtype=np.int64)
    f_chan = np.asarray(rmf.f_chan, dtype=np.int64).ravel()
    n_chan = np.asarray(rmf.n_chan, dtype=np.int64).ravel()
    if n_grp.size != n_e or n_grp.sum() != f_chan.size or n_chan.sum() != np.asarray(rmf.matrix).size:
        raise NuskybgdError(f"{rmf.name}: inconsistent RMF groups (N_GRP/F_CHAN/N_CHAN/MATRIX)")
    starts = f_chan - int(rmf.offset)
    if starts.size and (starts.min() < 0 or (starts + n_chan).max() > n_ch):
        raise NuskybgdError(f"{rmf.name}: RMF groups run outside channels {int(rmf.offset)}.."
                            f"{int(rmf.offset) + n_ch - 1}")
    # Sherpa's own decoding: one slice copy per group.
    dense = np.asarray(rmf_to_matrix(rmf).matrix, dtype=np.float64)  # a fresh array: no aliasing
    dense.flags.writeable = False
    _DENSE_CACHE[key] = (weakref.ref(rmf), rmf.matrix, dense)
    weakref.finalize(rmf, _drop_cache, key)
    return dense


def spectrum_module(pha_or_header, path=None):
    """Module of a spectrum from its INSTRUME keyword.

    Parameters
    ----------
    pha_or_header : sherpa.astro.data.DataPHA or mapping
        A spectrum (its ``header``) or a header/dict.
    path : str, optional
        File name for the error message (default: the spectrum's name).

    Returns
    -------
    str
        ``"A"`` (FPMA) or ``"B"`` (FPMB).

    Raises
    ------
    NuskybgdError
        INSTRUME missing or not FPMA/FPMB.
    """
    header = getattr(pha_or_header, "header", pha_or_header)
    if path is None:
        path = getattr(pha_or_header, "name", None) or "spectrum"
    return module_from_header(header, path)


_STRUCTURAL = {"", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS", "SIMPLE",
               "EXTEND", "EXTNAME", "EXTVER", "CHECKSUM", "DATASUM", "END"}
_COLUMN_KEY = re.compile(r"^T[A-Z]{3,5}\d+$")  # TTYPEn, TFORMn, TLMINn, TCRVLn, ... of another table


def _apply_header(hdr, header, protected=()):
    """Copy caller cards into ``hdr``, except structural, column-numbered and protected ones."""
    if header is None:
        return
    cards = header.cards if isinstance(header, fits.Header) else header.items()
    for item in cards:
        if isinstance(item, fits.Card):
            key, value, comment = item.keyword, item.value, item.comment
        else:
            key, value = item
            comment = None
            if isinstance(value, tuple):
                value, comment = value
        key = str(key).upper()
        if isinstance(value, str):
            value = fits_text(value)  # file names in any encoding; headers are ASCII
        if isinstance(comment, str):
            comment = fits_text(comment)
        if key in ("COMMENT", "HISTORY"):
            hdr.add_comment(value) if key == "COMMENT" else hdr.add_history(value)
        elif key in _STRUCTURAL or key in protected or _COLUMN_KEY.match(key):
            continue
        else:
            hdr[key] = (value, comment) if comment else value


def write_pha(path, counts, exposure, backscal, header=None, grouping=None, quality=None,
              extra_hdus=(), clobber=False, areascal=1.0, first_channel=0):
    """Write a type I PHA spectrum (OGIP/92-007).

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    counts : array_like
        Counts per channel; integer-valued data are written as 32-bit
        integers, other values as float64 (e.g. model predictions).
    exposure : float
        Exposure, s.
    backscal : float
        Region scaling (BACKSCAL), dimensionless.
    header : mapping or astropy.io.fits.Header, optional
        Extra or overriding keywords for the SPECTRUM extension, e.g.
        ``{"INSTRUME": "FPMA", "RESPFILE": "src.rmf"}``. Values may be
        ``(value, comment)`` tuples.
    grouping, quality : array_like of int, optional
        OGIP GROUPING (1 starts a group, -1 continues) and QUALITY columns.
    extra_hdus : sequence of astropy.io.fits HDU
        Appended after SPECTRUM (e.g. GTI).
    clobber : bool
        Replace an existing file.
    areascal : float
        AREASCAL keyword.
    first_channel : int
        Number of the first channel (TLMIN1); NuSTAR uses 0.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0:
        raise NuskybgdError(f"{path}: counts must be a non-empty 1-D array")
    if not np.all(np.isfinite(counts)):
        raise NuskybgdError(f"{path}: counts contain NaN or infinite values")
    n = counts.size
    integral = np.all(counts == np.round(counts)) and np.all(np.abs(counts) < 2**31)
    cols = [
        fits.Column(name="CHANNEL", format="J", array=np.arange(first_channel, first_channel + n, dtype=np.int32)),
        fits.Column(name="COUNTS", format="J" if integral else "D", unit="count",
                    array=counts.astype(np.int32 if integral else np.float64)),
    ]
    for name, arr in (("GROUPING", grouping), ("QUALITY", quality)):
        if arr is not None:
            arr = np.asarray(arr)
            if arr.shape != (n,):
                raise NuskybgdError(f"{path}: {name} has {arr.size} values for {n} channels")
            cols.append(fits.Column(name=name, format="I", array=arr.astype(np.int16)))
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    h = hdu.header
    h["TLMIN1"] = (first_channel, "first channel")
    h["TLMAX1"] = (first_channel + n - 1, "last channel")
    defaults = [
        ("HDUCLASS", "OGIP", "format conforms to OGIP standard"),
        ("HDUCLAS1", "SPECTRUM", "PHA dataset (OGIP memo OGIP-92-007)"),
        ("HDUCLAS2", "TOTAL", "total (source + background) spectrum"),
        ("HDUCLAS3", "COUNT", "PHA data stored as counts"),
        ("HDUCLAS4", "TYPE:I", "single PHA dataset"),
        ("HDUVERS", "1.2.1", "version of format"),
        ("TELESCOP", "NuSTAR", "mission name"),
        ("INSTRUME", "FPMA", "instrument name"),
        ("FILTER", "NONE", "filter"),
        ("CHANTYPE", "PI", "channel type"),
        ("DETCHANS", n, "total number of channels"),
        ("EXPOSURE", float(exposure), "exposure time, s"),
        ("BACKSCAL", float(backscal), "background scaling factor"),
        ("AREASCAL", float(areascal), "area scaling factor"),
        ("CORRSCAL", 0.0, "correction scaling factor"),
        ("BACKFILE", "none", "background file"),
        ("CORRFILE", "none", "correction file"),
        ("RESPFILE", "none", "redistribution matrix file"),
        ("ANCRFILE", "none", "ancillary response file"),
        ("POISSERR", True, "Poisson errors apply"),
        ("SYS_ERR", 0.0, "no systematic error"),
        ("GROUPING", 0, "no grouping of the data"),
        ("QUALITY", 0, "all channels good"),
    ]
    for key, value, comment in defaults:
        if key in ("GROUPING", "QUALITY") and (grouping if key == "GROUPING" else quality) is not None:
            continue
        h[key] = (value, comment)
    _apply_header(h, header, protected=("HDUCLASS", "HDUCLAS1", "HDUCLAS3", "HDUCLAS4", "HDUVERS", "DETCHANS",
                                        "POISSERR" if integral else ""))
    # Keywords that describe the data must not be overridden by the caller.
    h["EXPOSURE"] = float(exposure)
    h["BACKSCAL"] = float(backscal)
    h["DETCHANS"] = n
    inst = str(h.get("INSTRUME", "")).strip().upper()
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = h.get("TELESCOP", "NuSTAR")
    prim.header["INSTRUME"] = inst
    hdul = fits.HDUList([prim, hdu, *extra_hdus])
    write_fits(hdul, path, clobber=clobber)
    return Path(path)


def compress_matrix(matrix, threshold=0.0):
    """OGIP compressed rows of a dense matrix.

    Parameters
    ----------
    matrix : array_like, shape (n_energy, n_chan)
        Dense response.
    threshold : float
        Elements ``<= threshold`` are dropped (LO_THRES).

    Returns
    -------
    n_grp : ndarray of int, shape (n_energy,)
    f_chan, n_chan : list of ndarray of int
        Per row: first channel (0-based index) and length of each group.
    values : list of ndarray of float32
        Per row: the kept elements, group after group.
    """
    m = np.asarray(matrix, dtype=np.float64)
    keep = m > threshold
    n_e, n_ch = m.shape
    padded = np.zeros((n_e, n_ch + 2), dtype=np.int8)
    padded[:, 1:-1] = keep
    d = np.diff(padded, axis=1)
    n_grp = np.zeros(n_e, dtype=np.int32)
    f_chan, n_chan, values = [], [], []
    for i in range(n_e):
        st = np.flatnonzero(d[i] == 1)
        en = np.flatnonzero(d[i] == -1)
        n_grp[i] = len(st)
        f_chan.append(st.astype(np.int32))
        n_chan.append((en - st).astype(np.int32))
        values.append(m[i, keep[i]].astype(np.float32))
    return n_grp, f_chan, n_chan, values


def write_rmf(path, energ_lo, energ_hi, matrix, e_min, e_max, header=None, clobber=False,
              ebounds_header=None, threshold=0.0, first_channel=0):
    """Write an RMF with compressed rows (OGIP CAL/GEN/92-002).

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    energ_lo, energ_hi : array_like, shape (n_energy,)
        Energy bin edges of the matrix rows, keV.
    matrix : array_like, shape (n_energy, n_chan)
        Redistribution probabilities (times area for a full response).
    e_min, e_max : array_like, shape (n_chan,)
        Nominal channel energy bounds, keV (EBOUNDS).
    header : mapping or astropy.io.fits.Header, optional
        Extra keywords for the MATRIX extension (e.g. INSTRUME, DETNAM,
        CALDB keywords).
    clobber : bool
        Replace an existing file.
    ebounds_header : mapping, optional
        Extra keywords for EBOUNDS (identification keywords of ``header``
        are copied there anyway).
    threshold : float
        Elements ``<= threshold`` are not stored (LO_THRES keyword).
    first_channel : int
        Number of the first channel (TLMIN of F_CHAN and CHANNEL); 0 for NuSTAR.

    Returns
    -------
    pathlib.Path
        The written file.

    Notes
    -----
    F_CHAN and N_CHAN are fixed-width columns of length max(N_GRP) (at
    least 1); MATRIX is a variable-length float32 column. Rows without
    elements have N_GRP = 0.
    """
    energ_lo = np.asarray(energ_lo, dtype=np.float64)
    energ_hi = np.asarray(energ_hi, dtype=np.float64)
    e_min = np.asarray(e_min, dtype=np.float64)
    e_max = np.asarray(e_max, dtype=np.float64)
    m = np.asarray(matrix)
    if m.shape != (energ_lo.size, e_min.size) or energ_hi.shape != energ_lo.shape or e_max.shape != e_min.shape:
        raise NuskybgdError(
            f"{path}: RMF shapes disagree (matrix {m.shape}, {energ_lo.size} energies, {e_min.size} channels)")
    if not np.all(np.isfinite(m)):
        raise NuskybgdError(f"{path}: RMF matrix contains NaN or infinite values")
    if np.any(energ_hi <= energ_lo) or np.any(e_max < e_min):
        raise NuskybgdError(f"{path}: RMF energy bins are not increasing")
    n_e, n_ch = m.shape
    n_grp, f_chan, n_chan, values = compress_matrix(m, threshold)
    width = max(1, int(n_grp.max()) if n_e else 1)
    fc = np.zeros((n_e, width), dtype=np.int32)
    nc = np.zeros((n_e, width), dtype=np.int32)
    for i in range(n_e):
        k = n_grp[i]
        fc[i, :k] = f_chan[i] + first_channel
        nc[i, :k] = n_chan[i]
    vl = np.empty(n_e, dtype=object)
    for i in range(n_e):
        vl[i] = values[i]
    cols = [
        fits.Column(name="ENERG_LO", format="E", unit="keV", array=energ_lo.astype(np.float32)),
        fits.Column(name="ENERG_HI", format="E", unit="keV", array=energ_hi.astype(np.float32)),
        fits.Column(name="N_GRP", format="I", array=n_grp.astype(np.int16)),
        fits.Column(name="F_CHAN", format=f"{width}J", array=fc if width > 1 else fc[:, 0]),
        fits.Column(name="N_CHAN", format=f"{width}J", array=nc if width > 1 else nc[:, 0]),
        fits.Column(name="MATRIX", format=f"PE({max(1, max((v.size for v in values), default=1))})", array=vl),
    ]
    mat = fits.BinTableHDU.from_columns(cols, name="MATRIX")
    h = mat.header
    full = bool(m.sum(axis=1).max() > 1.0 + 1e-6) if n_e else False
    for key, value, comment in [
        ("HDUCLASS", "OGIP", "format conforms to OGIP standard"),
        ("HDUCLAS1", "RESPONSE", "dataset relates to spectral response"),
        ("HDUCLAS2", "RSP_MATRIX", "dataset is a spectral response matrix"),
        ("HDUCLAS3", "FULL" if full else "REDIST", "includes effective area" if full else "redistribution only"),
        ("HDUVERS", "1.3.0", "version of format"),
        ("TELESCOP", "NuSTAR", "mission name"),
        ("INSTRUME", "FPMA", "instrument name"),
        ("FILTER", "NONE", "filter"),
        ("CHANTYPE", "PI", "channel type"),
        ("DETCHANS", n_ch, "total number of detector channels"),
        ("LO_THRES", float(threshold), "lower threshold of stored elements"),
    ]:
        h[key] = (value, comment)
    h["TLMIN4"] = (first_channel, "first channel")
    h["TLMAX4"] = (first_channel + n_ch - 1, "last channel")
    _apply_header(h, header, protected=("HDUCLASS", "HDUCLAS1", "HDUCLAS2", "HDUVERS", "DETCHANS"))
    h["DETCHANS"] = n_ch
    eb = fits.BinTableHDU.from_columns([
        fits.Column(name="CHANNEL", format="J", array=np.arange(first_channel, first_channel + n_ch, dtype=np.int32)),
        fits.Column(name="E_MIN", format="E", unit="keV", array=e_min.astype(np.float32)),
        fits.Column(name="E_MAX", format="E", unit="keV", array=e_max.astype(np.float32)),
    ], name="EBOUNDS")
    eh = eb.header
    for key in ("HDUCLASS", "TELESCOP", "INSTRUME", "FILTER", "CHANTYPE", "DETCHANS", "DETNAM"):
        if key in h:
            eh[key] = (h[key], h.comments[key])
    eh["HDUCLAS1"] = ("RESPONSE", "dataset relates to spectral response")
    eh["HDUCLAS2"] = ("EBOUNDS", "nominal channel energy bounds")
    eh["HDUVERS"] = ("1.2.0", "version of format")
    eh["TLMIN1"] = (first_channel, "first channel")
    eh["TLMAX1"] = (first_channel + n_ch - 1, "last channel")
    _apply_header(eh, ebounds_header, protected=("HDUCLASS", "HDUCLAS1", "HDUCLAS2", "HDUVERS", "DETCHANS"))
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = h.get("TELESCOP", "NuSTAR")
    prim.header["INSTRUME"] = h.get("INSTRUME", "FPMA")
    write_fits(fits.HDUList([prim, mat, eb]), path, clobber=clobber)
    return Path(path)


def write_arf(path, energ_lo, energ_hi, specresp, header=None, clobber=False):
    """Write an ARF (SPECRESP extension, OGIP CAL/GEN/92-002).

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    energ_lo, energ_hi : array_like
        Energy bin edges, keV.
    specresp : array_like
        Effective area, cm^2 (or a dimensionless transmission).
    header : mapping or astropy.io.fits.Header, optional
        Extra keywords for the SPECRESP extension.
    clobber : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    lo = np.asarray(energ_lo, dtype=np.float64)
    hi = np.asarray(energ_hi, dtype=np.float64)
    sr = np.asarray(specresp, dtype=np.float64)
    if lo.ndim != 1 or lo.shape != hi.shape or lo.shape != sr.shape or lo.size == 0:
        raise NuskybgdError(f"{path}: ARF arrays must be 1-D of equal length (got {lo.shape}, {hi.shape}, {sr.shape})")
    if not np.all(np.isfinite(sr)) or np.any(sr < 0):
        raise NuskybgdError(f"{path}: ARF SPECRESP contains NaN, infinite or negative values")
    if np.any(hi <= lo):
        raise NuskybgdError(f"{path}: ARF energy bins are not increasing")
    hdu = fits.BinTableHDU.from_columns([
        fits.Column(name="ENERG_LO", format="E", unit="keV", array=lo.astype(np.float32)),
        fits.Column(name="ENERG_HI", format="E", unit="keV", array=hi.astype(np.float32)),
        fits.Column(name="SPECRESP", format="E", unit="cm**2", array=sr.astype(np.float32)),
    ], name="SPECRESP")
    h = hdu.header
    for key, value, comment in [
        ("HDUCLASS", "OGIP", "format conforms to OGIP standard"),
        ("HDUCLAS1", "RESPONSE", "dataset relates to spectral response"),
        ("HDUCLAS2", "SPECRESP", "effective area"),
        ("HDUVERS", "1.1.0", "version of format"),
        ("TELESCOP", "NuSTAR", "mission name"),
        ("INSTRUME", "FPMA", "instrument name"),
        ("FILTER", "NONE", "filter"),
    ]:
        h[key] = (value, comment)
    _apply_header(h, header, protected=("HDUCLASS", "HDUCLAS1", "HDUCLAS2", "HDUVERS"))
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = h.get("TELESCOP", "NuSTAR")
    prim.header["INSTRUME"] = h.get("INSTRUME", "FPMA")
    write_fits(fits.HDUList([prim, hdu]), path, clobber=clobber)
    return Path(path)
