"""Responses of the four background components (REFERENCE section 6).

* apbgd: spectrum RMF x a custom ARF = Be-window transmission x
  sum_k frac_k DETABS_k (detector absorption of the detectors the region
  covers, weighted by the region's area on each);
* intbgd: spectrum RMF only;
* fcxb: spectrum RMF x bundle ``fcxb{A,B}.arf``;
* intn: bundle ``diag.rmf`` only.

ARFs are returned as Sherpa :class:`~sherpa.astro.data.DataARF` objects on
the RMF's energy grid; a grid that differs from the RMF's raises
:class:`~nuskybgd.errors.NuskybgdError` (no silent interpolation).
"""

import logging
import os
from functools import lru_cache

import numpy as np

from ..calib.auxil import auxil_path
from ..constants import module_letter
from ..errors import NuskybgdError
from ..kernels.spectral import check_energy_bins

__all__ = [
    "GRID_ATOL", "GRID_RTOL", "energy_grid", "check_same_grid", "be_transmission", "detabs_tables",
    "apbgd_specresp", "apbgd_arf", "write_apbgd_arf", "fcxb_arf", "diag_rmf",
]

log = logging.getLogger("nuskybgd")

#: Energy grids agree when every edge matches to GRID_ATOL + GRID_RTOL * E keV
#: (files store float32; the bundle's ARFs differ from the CALDB RMF by 2 ulp).
GRID_ATOL = 1e-5
GRID_RTOL = 1e-6


def energy_grid(rmf_or_grid, what="RMF"):
    """Energy bin edges of an RMF, ARF or explicit grid.

    Parameters
    ----------
    rmf_or_grid : DataRMF, DataARF, or tuple
        A Sherpa response, or ``(energ_lo, energ_hi)`` / ``(energ_lo,
        energ_hi, matrix)`` arrays (keV).
    what : str
        Name for error messages.

    Returns
    -------
    energ_lo, energ_hi : numpy.ndarray
        float64 bin edges (keV), validated (increasing, finite).
    """
    if hasattr(rmf_or_grid, "energ_lo"):
        lo, hi = rmf_or_grid.energ_lo, rmf_or_grid.energ_hi
        what = getattr(rmf_or_grid, "name", None) or what
    else:
        try:
            lo, hi = rmf_or_grid[0], rmf_or_grid[1]
        except (TypeError, IndexError):
            raise NuskybgdError(f"{what}: expected a Sherpa response or (energ_lo, energ_hi[, matrix])") from None
    return check_energy_bins(lo, hi, str(what))


def _round_significant(x, digits):
    x = np.asarray(x, float)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log10(np.abs(np.where(x == 0, 1.0, x))))
    f = 10.0 ** (digits - 1 - e)
    return np.round(x * f) / f


def check_same_grid(lo, hi, ref_lo, ref_hi, what, ref_what, significant=None):
    """Raise unless two energy grids agree to :data:`GRID_ATOL` + :data:`GRID_RTOL` * E keV.

    Parameters
    ----------
    lo, hi : array_like
        Grid to check (keV).
    ref_lo, ref_hi : array_like
        Reference grid (keV), e.g. the RMF's.
    what, ref_what : str
        Names of the two grids for the message.
    significant : int, optional
        Also accept edges equal to the reference edges rounded to this many
        significant digits (relative 1e-6). The bundle's ``be.arf`` stores
        the standard grid rounded to 3 digits (10.0, 10.0, 10.1, ...).

    Raises
    ------
    NuskybgdError
        When the bin counts or any edge differ.
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    ref_lo, ref_hi = np.asarray(ref_lo, float), np.asarray(ref_hi, float)
    if lo.shape != ref_lo.shape:
        raise NuskybgdError(f"{what}: {lo.size} energy bins, but {ref_what} has {ref_lo.size}; "
                            f"responses must share one energy grid")
    off = ((np.abs(lo - ref_lo) > GRID_ATOL + GRID_RTOL * np.abs(ref_lo))
           | (np.abs(hi - ref_hi) > GRID_ATOL + GRID_RTOL * np.abs(ref_hi)))
    if significant is not None and off.any():
        rlo, rhi = _round_significant(ref_lo, significant), _round_significant(ref_hi, significant)
        off &= ~((np.abs(lo - rlo) <= 1e-6 * np.abs(rlo)) & (np.abs(hi - rhi) <= 1e-6 * np.abs(rhi)))
    bad = np.nonzero(off)[0]
    if bad.size:
        i = bad[0]
        raise NuskybgdError(f"{what}: energy bin {i} is {lo[i]:g}-{hi[i]:g} keV, but {ref_what} has "
                            f"{ref_lo[i]:g}-{ref_hi[i]:g} keV; responses must share one energy grid")


def _caldb(caldb):
    if caldb is None:
        root = os.environ.get("CALDB")
        if not root:
            return None
        caldb = root
    if isinstance(caldb, (str, os.PathLike)):
        from ..calib.caldb import Caldb  # local: keeps astropy I/O (~0.5 s) out of models (atomdb --help)
        return Caldb(caldb)
    return caldb


@lru_cache(maxsize=16)
def _read_table(path, extno, column):
    from ..io.fitsfile import open_fits  # local: keeps astropy I/O (~0.5 s) out of models (atomdb --help)

    with open_fits(path, "response table") as hdul:
        if extno >= len(hdul) or not hasattr(hdul[extno], "columns"):
            raise NuskybgdError(f"{path}: extension {extno} is not a table")
        hdu = hdul[extno]
        names = [n.upper() for n in hdu.columns.names]
        for col in ("ENERG_LO", "ENERG_HI", column):
            if col not in names:
                raise NuskybgdError(f"{path}: extension {extno} lacks column {col}")
        lo = np.asarray(hdu.data["ENERG_LO"], float)
        hi = np.asarray(hdu.data["ENERG_HI"], float)
        val = np.asarray(hdu.data[column], float)
    if val.ndim != 1 or not np.all(np.isfinite(val)):
        raise NuskybgdError(f"{path}: column {column} has non-finite values")
    return lo, hi, val


def be_transmission(module, caldb=None, date=None, be_file=None):
    """Be-window transmission table.

    Parameters
    ----------
    module : str
        ``"A"`` or ``"B"``.
    caldb : nuskybgd.calib.caldb.Caldb or str or None
        CALDB (or its root); default ``$CALDB``. Its ``BEABS`` file (column
        ``ATT``) is used when present.
    date : str, optional
        Observation date for the CALDB query.
    be_file : str or os.PathLike, optional
        Explicit file: a CALDB BEABS file (column ATT) or an ARF (SPECRESP).

    Returns
    -------
    energ_lo, energ_hi, transmission : numpy.ndarray
        keV, keV, dimensionless. Without a CALDB BEABS file, the bundle's
        ``be.arf`` (as the original tool does).
    """
    if be_file is None:
        db = _caldb(caldb)
        if db is not None:
            try:
                f = db.query("BEABS", f"FPM{module}", date=date)
                return _read_table(str(f.path), max(int(f.extno), 1), "ATT")
            except NuskybgdError as exc:
                log.info("no CALDB Be-window file (%s); using the bundle's be.arf", exc)
        be_file = auxil_path("be.arf")
    path = str(be_file)
    from ..io.fitsfile import open_fits  # local: keeps astropy I/O (~0.5 s) out of models (atomdb --help)
    with open_fits(path, "Be-window transmission file") as hdul:
        for i, h in enumerate(hdul[1:], start=1):
            names = [n.upper() for n in getattr(h, "columns", None).names] if hasattr(h, "columns") else []
            if "ATT" in names:
                return _read_table(path, i, "ATT")
            if "SPECRESP" in names:
                return _read_table(path, i, "SPECRESP")
    raise NuskybgdError(f"{path}: no table with column ATT or SPECRESP (not a Be-window transmission file)")


def detabs_tables(module, caldb=None, date=None, detabs_file=None):
    """Detector absorption of detectors 0..3.

    Parameters
    ----------
    module : str
        ``"A"`` or ``"B"``.
    caldb : nuskybgd.calib.caldb.Caldb or str or None
        CALDB (default ``$CALDB``), queried for ``DETABS`` per detector.
    date : str, optional
        Observation date.
    detabs_file : str or os.PathLike, optional
        Explicit CALDB DETABS file (one extension per detector, DETNAM).

    Returns
    -------
    energ_lo, energ_hi : numpy.ndarray
        Grid of detector 0 (keV); the others must share it.
    tables : numpy.ndarray, shape (4, n)
        Transmission (dimensionless).

    Raises
    ------
    NuskybgdError
        Without a CALDB or file, or when the detectors' grids differ.
    """
    if detabs_file is not None:
        files = [detabs_file] * 4
    else:
        db = _caldb(caldb)
        if db is None:
            raise NuskybgdError(f"apbgd ARF of FPM{module}: detector absorption (DETABS) needs a CALDB; "
                                f"set $CALDB or pass caldb= / detabs_file=")
        files = [db.query("DETABS", f"FPM{module}", detnam=k, date=date).path for k in range(4)]
    tabs = []
    lo0 = hi0 = None
    for k, f in enumerate(files):
        lo, hi, val = _read_detabs(str(f), os.path.getmtime(f), k)
        if lo0 is None:
            lo0, hi0 = lo, hi
        else:
            check_same_grid(lo, hi, lo0, hi0, f"{f} (DET{k})", f"{files[0]} (DET0)")
        tabs.append(val)
    return lo0, hi0, np.vstack(tabs)


@lru_cache(maxsize=32)
def _read_detabs(path, mtime, detector):
    """``nuskybgd.io.detabs.read_detabs``, cached per file version and detector."""
    from ..io.detabs import read_detabs  # local: keeps astropy I/O (~0.5 s) out of models (atomdb --help)

    return read_detabs(path, detector)


def _fractions(det_fractions):
    f = np.asarray(det_fractions, float).ravel()
    if f.size != 4 or not np.all(np.isfinite(f)) or np.any(f < 0) or f.sum() <= 0:
        raise NuskybgdError(f"detector fractions {list(np.round(f, 6))}: need 4 finite values >= 0 "
                            f"with a positive sum (region area on DET0..DET3)")
    return f / f.sum()


def apbgd_specresp(be, detabs, det_fractions):
    """Kernel: Be transmission x detector-fraction-weighted DETABS.

    Parameters
    ----------
    be : array_like, shape (n,)
        Be-window transmission per energy bin.
    detabs : array_like, shape (4, n)
        Detector absorption of DET0..DET3 on the same bins.
    det_fractions : array_like, shape (4,)
        Region area on each detector (any units; normalised here).

    Returns
    -------
    numpy.ndarray, shape (n,)
        ``be * sum_k f_k detabs_k`` with ``sum_k f_k = 1`` (dimensionless).
    """
    f = _fractions(det_fractions)
    return np.asarray(be, float) * np.tensordot(f, np.asarray(detabs, float), axes=1)


def apbgd_arf(module, det_fractions, caldb=None, rmf=None, date=None, detabs_file=None, be_file=None):
    """The aperture-background ARF of one spectrum.

    Parameters
    ----------
    module : str
        ``"A"`` or ``"B"``.
    det_fractions : array_like, shape (4,)
        Region area on DET0..DET3 (normalised here).
    caldb : nuskybgd.calib.caldb.Caldb or str or None
        CALDB for DETABS and BEABS (default ``$CALDB``).
    rmf : DataRMF or tuple, optional
        The spectrum's RMF (or ``(energ_lo, energ_hi)``); the ARF must share
        its energy grid. Default: the DETABS grid.
    date : str, optional
        Observation date for the CALDB queries.
    detabs_file, be_file : str or os.PathLike, optional
        Explicit DETABS and Be-window files (override the CALDB).

    Returns
    -------
    sherpa.astro.data.DataARF
        ``specresp`` = Be x sum_k frac_k DETABS_k (dimensionless, no area).

    Raises
    ------
    NuskybgdError
        Missing calibration, bad fractions, or an energy grid differing from
        the RMF's.
    """
    from sherpa.astro.data import DataARF  # local: sherpa.astro.data costs ~0.1 s at import; only apbgd_arf needs it

    module = module_letter(module)
    dlo, dhi, tabs = detabs_tables(module, caldb, date, detabs_file)
    blo, bhi, be = be_transmission(module, caldb, date, be_file)
    # be.arf (and CALDB copies of it) hold the standard grid rounded to 3 digits
    check_same_grid(blo, bhi, dlo, dhi, "Be-window transmission", "DETABS", significant=3)
    lo, hi = dlo, dhi
    if rmf is not None:
        rlo, rhi = energy_grid(rmf)
        check_same_grid(dlo, dhi, rlo, rhi, "DETABS", f"RMF {getattr(rmf, 'name', '') or ''}".strip())
        lo, hi = rlo, rhi
    spec = apbgd_specresp(be, tabs, det_fractions)
    return DataARF(f"apbgd_FPM{module}", lo.copy(), hi.copy(), spec)


def write_apbgd_arf(path, arf, module, det_fractions=None, clobber=False):
    """Write an apbgd ARF as an OGIP ARF file.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    arf : sherpa.astro.data.DataARF
        From :func:`apbgd_arf`.
    module : str
        ``"A"`` or ``"B"`` (INSTRUME keyword).
    det_fractions : array_like, optional
        Recorded as keywords DETFRAC0..3.
    clobber : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The file written (atomically).
    """
    from ..io.ogip import write_arf  # local: keeps astropy I/O (~0.5 s) out of models (atomdb --help)

    module = module_letter(module)
    header = {"INSTRUME": f"FPM{module}", "COMMENT": "nuskybgd apbgd ARF: Be transmission x sum_k frac_k DETABS_k"}
    if det_fractions is not None:
        for k, f in enumerate(_fractions(det_fractions)):
            header[f"DETFRAC{k}"] = float(f)
    return write_arf(path, arf.energ_lo, arf.energ_hi, arf.specresp, header=header, clobber=clobber)


@lru_cache(maxsize=4)
def _bundle_arf(name):
    from ..io.ogip import read_arf  # local: keeps astropy I/O (~0.5 s) out of models (atomdb --help)
    return read_arf(auxil_path(name))


def fcxb_arf(module, rmf=None):
    """The fCXB ARF of a module (bundle ``fcxb{A,B}.arf``).

    Parameters
    ----------
    module : str
        ``"A"`` or ``"B"``.
    rmf : DataRMF or tuple, optional
        When given, the ARF's energy grid must equal the RMF's.

    Returns
    -------
    sherpa.astro.data.DataARF
        Effective area (cm^2) of the focused cosmic X-ray background.
    """
    module = module_letter(module)
    arf = _bundle_arf(f"fcxb{module}.arf")
    if rmf is not None:
        rlo, rhi = energy_grid(rmf)
        check_same_grid(arf.energ_lo, arf.energ_hi, rlo, rhi, str(arf.name), "the spectrum's RMF")
    return arf


@lru_cache(maxsize=1)
def _diag():
    from ..io.ogip import read_rmf  # local: keeps astropy I/O (~0.5 s) out of models (atomdb --help)
    return read_rmf(auxil_path("diag.rmf"))


def diag_rmf():
    """The bundle's diagonal RMF (intn response: no redistribution, no area).

    Returns
    -------
    sherpa.astro.data.DataRMF
        Read once and cached.
    """
    return _diag()

