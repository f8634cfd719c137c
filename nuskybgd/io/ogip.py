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
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import NuskybgdError
from . import rmfcache
from .events import module_from_header
from .fitsfile import find_hdu, header_file_path, open_fits
from .ogip_write import compress_matrix, write_arf, write_pha, write_rmf

# The writers live in io/ogip_write.py; their names are re-exported here.
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
    from sherpa.astro import io as sio  # local: ~0.16 s at import; the writers don't need it

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
                raise NuskybgdError(f"{path}: {col} = {vals.ravel()[k].item()!r} in row {k + 1} is not an OGIP value "
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
            from sherpa.astro.data import DataRMF  # local: Sherpa costs ~0.1 s at import; the writers don't need it

            rmf = DataRMF(path, hit["detchans"], hit["energ_lo"], hit["energ_hi"], hit["n_grp"], hit["f_chan"],
                          hit["n_chan"], hit["matrix"], offset=hit["offset"], e_min=hit.get("e_min"),
                          e_max=hit.get("e_max"), header=hit["header"], ethresh=hit["ethresh"])
            log.debug("%s: RMF read from the cache (sha256 %s)", path, digest[:12])
            return rmf
    from sherpa.astro import io as sio  # local: ~0.16 s at import; the writers don't need it

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
    from sherpa.astro import io as sio  # local: ~0.16 s at import; the writers don't need it

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
    from sherpa.astro.instrument import rmf_to_matrix  # local: Sherpa costs ~0.1 s at import; the writers don't need it

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
