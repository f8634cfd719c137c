"""RMFs with detector absorption (``nuskybgd absrmf``).

NuSTAR's detector absorption (CALDB ``DETABS``, one table per detector) is
normally applied through the ARF. For background components that have no ARF
of their own (or when a user wants one response per detector), the
absorption can be folded into the redistribution matrix instead: every
matrix row (one input energy) is multiplied by the absorption at that
energy, ``R'(E, c) = DETABS(E) * R(E, c)``.

Kernels (:func:`detabs_on_grid`, :func:`weighted_detabs`,
:func:`scale_matrix_rows`) are pure numpy; :func:`read_detabs` and
:func:`make_absrmf` do the file work. Output names follow the original tool:
``OUTPREFIX + "<det><module>.rmf"`` (``bgd/det`` -> ``bgd/det0A.rmf`` ...
``bgd/det3A.rmf``), and ``OUTPREFIX + "<module>.rmf"`` for the
detector-fraction-weighted response.
"""

import logging
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..calib.caldb import Caldb
from ..errors import NuskybgdError
from ..io.detabs import detabs_on_grid, read_detabs
from ..io.events import module_from_header
from ..io.fitsfile import fits_text, open_fits
from ..io.ogip import read_rmf, rmf_matrix, write_rmf
from ..io.output import atomic_outputs, check_outputs, output_session

__all__ = [
    "weighted_detabs", "scale_matrix_rows",
    "absorbed_rmf_hdulist", "absrmf_names", "make_absrmf",
]

log = logging.getLogger("nuskybgd")


def weighted_detabs(tables, fractions):
    """Detector-fraction-weighted absorption.

    Parameters
    ----------
    tables : array_like, shape (4, n)
        Transmission of detectors 0..3 on a common energy grid.
    fractions : array_like, shape (4,)
        Non-negative weights (e.g. the area of a region on each detector);
        normalised to unit sum here.

    Returns
    -------
    numpy.ndarray, shape (n,)
        ``sum_k f_k tables[k] / sum_k f_k``.

    Raises
    ------
    NuskybgdError
        If the weights are not 4 finite non-negative numbers with a positive sum.
    """
    f = np.asarray(fractions, float).ravel()
    if f.size != 4 or not np.all(np.isfinite(f)) or np.any(f < 0) or f.sum() <= 0:
        raise NuskybgdError(f"detector fractions {list(f)}: need 4 finite values >= 0 with a positive sum")
    f = f / f.sum()
    return np.tensordot(f, np.asarray(tables, float), axes=1)


def scale_matrix_rows(matrix, factors):
    """Multiply each RMF matrix row by a factor.

    Parameters
    ----------
    matrix : sequence of array_like or numpy.ndarray
        The ``MATRIX`` column of an RMF: a 2-D array (fixed-length rows) or a
        sequence of 1-D arrays (variable-length rows of the compressed
        format). Values are probabilities per channel (dimensionless, or
        cm^2 for an RSP).
    factors : array_like, shape (n_rows,)
        One factor per row (transmission at the row's energy).

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        Same layout as the input, float32 like the OGIP files (rows scaled in
        float64, then rounded once).
    """
    factors = np.asarray(factors, float)
    if isinstance(matrix, np.ndarray) and matrix.ndim == 2:
        if matrix.shape[0] != factors.size:
            raise ValueError("one factor per matrix row needed")
        return (matrix.astype(float) * factors[:, None]).astype(np.float32)
    rows = list(matrix)
    if len(rows) != factors.size:
        raise ValueError("one factor per matrix row needed")
    return [(np.asarray(r, float) * f).astype(np.float32) for r, f in zip(rows, factors)]


def _matrix_hdu(hdul, path):
    for h in hdul[1:]:
        name = str(h.header.get("EXTNAME", "")).strip().upper()
        if name in ("MATRIX", "SPECRESP MATRIX"):
            return h
    raise NuskybgdError(f"{path}: no MATRIX or SPECRESP MATRIX extension (not an RMF)")


def absorbed_rmf_hdulist(rmf_hdul, factors, history=None, path="RMF"):
    """Copy of an RMF with every matrix row multiplied by a factor.

    Parameters
    ----------
    rmf_hdul : astropy.io.fits.HDUList
        The RMF as read (``MATRIX`` and ``EBOUNDS`` extensions); not modified.
    factors : array_like, shape (n_energy,)
        Transmission per matrix row (see :func:`detabs_on_grid`).
    history : list of str, optional
        HISTORY cards added to the matrix extension.
    path : str
        Name used in error messages.

    Returns
    -------
    astropy.io.fits.HDUList
        A new file content: all extensions copied, the matrix extension with
        scaled rows (compressed N_GRP/F_CHAN/N_CHAN layout kept as it is).
    """
    src = _matrix_hdu(rmf_hdul, path)
    idx = rmf_hdul.index_of(src)
    factors = np.asarray(factors, float)
    if src.data is None or len(src.data) != factors.size:
        raise NuskybgdError(f"{path}: matrix has {0 if src.data is None else len(src.data)} rows, "
                            f"absorption table has {factors.size} energies")
    mat = src
    scaled = scale_matrix_rows(mat.data["MATRIX"], factors)
    # Rebuild the matrix table from its columns (copying an HDU with
    # variable-length columns is not reliable in astropy), keeping the
    # compressed N_GRP/F_CHAN/N_CHAN layout as it is.
    cols = []
    for c in mat.columns:
        if c.name.upper() == "MATRIX":
            arr = np.array(scaled, dtype=object) if isinstance(scaled, list) else scaled
        elif c.format.startswith(("P", "Q")):
            arr = np.array([np.array(x) for x in mat.data[c.name]], dtype=object)
        else:
            arr = np.array(mat.data[c.name])
        cols.append(fits.Column(name=c.name, format=c.format, unit=c.unit, array=arr))
    hdr = mat.header.copy()
    new = fits.BinTableHDU.from_columns(cols, header=hdr)
    out = fits.HDUList([h.copy() if i != idx else new for i, h in enumerate(rmf_hdul)])
    mat = new
    for line in history or ():
        mat.header.add_history(fits_text(line))
    return out


def absrmf_names(outprefix, module, fractions=None):
    """Output file names of :func:`make_absrmf`.

    Parameters
    ----------
    outprefix : str
        Prefix (may contain a folder), as given by the user.
    module : {"A", "B"}
        Focal plane module.
    fractions : array_like or None
        When given, a single detector-fraction-weighted RMF is made.

    Returns
    -------
    list of str
        ``[OUTPREFIX + "0A.rmf", ..., OUTPREFIX + "3A.rmf"]`` or
        ``[OUTPREFIX + "A.rmf"]``.
    """
    if fractions is not None:
        return [f"{outprefix}{module}.rmf"]
    return [f"{outprefix}{k}{module}.rmf" for k in range(4)]


def _event_header(evtfile):
    with open_fits(evtfile, "event file") as hdul:
        hdr = None
        for h in hdul:
            if str(h.header.get("EXTNAME", "")).strip().upper() == "EVENTS":
                hdr = h.header
                break
        if hdr is None:
            raise NuskybgdError(f"{evtfile}: no EVENTS extension (not an event file)")
        module = module_from_header(hdr, evtfile, hdul[0].header)
        date = hdr.get("DATE-OBS", hdul[0].header.get("DATE-OBS"))
        return module, (str(date).strip() if date else None), hdr.copy()


def _caldb(caldb):
    if caldb is None:
        caldb = Caldb()
    return caldb


@output_session()
def make_absrmf(evtfile, outprefix, rmffile="CALDB", detabsfile="CALDB", fractions=None,
                caldb=None, clobber=False):
    """Write RMFs with detector absorption, one per detector (or one weighted).

    Parameters
    ----------
    evtfile : str or os.PathLike
        Event file; its ``INSTRUME`` (module) and ``DATE-OBS`` select the
        CALDB files.
    outprefix : str
        Output prefix: files ``OUTPREFIX<det><module>.rmf`` (see
        :func:`absrmf_names`). Its folder must exist.
    rmffile : str
        ``"CALDB"`` (the RMF of each detector from CALDB) or one RMF used for
        every detector.
    detabsfile : str
        ``"CALDB"`` or a DETABS file (one extension per detector).
    fractions : array_like of 4 floats, optional
        Detector weights (e.g. areas of a region on DET0..DET3). Then a single
        response ``sum_k f_k DETABS_k(E) R_k(E, c) / sum f`` is written; with
        one RMF for every detector this is ``R(E, c)`` times the weighted
        absorption.
    caldb : nuskybgd.calib.caldb.Caldb, optional
        CALDB to query (default: ``$CALDB``).
    clobber : bool
        Replace existing outputs.

    Returns
    -------
    list of str
        The files written.

    Raises
    ------
    NuskybgdError
        Bad event file, CALDB lookup failure, unreadable RMF/DETABS, grids
        that do not match, outputs that exist (without clobber). Nothing is
        written in that case.
    """
    module, date, _ = _event_header(evtfile)
    instrume = f"FPM{module}"
    names = absrmf_names(outprefix, module, fractions)
    check_outputs(names, clobber)  # fail before the slow reads

    dets = range(4)
    rmf_paths, detabs_src = [], []
    for k in dets:
        if str(rmffile).upper() == "CALDB":
            caldb = _caldb(caldb)
            p = caldb.rmf(instrume, f"DET{k}", date)
        else:
            p = rmffile
        rmf_paths.append(str(p))
        if str(detabsfile).upper() == "CALDB":
            caldb = _caldb(caldb)
            p = caldb.query("DETABS", instrume, f"DET{k}", date).path
        else:
            p = detabsfile
        detabs_src.append(str(p))
    for k in dets:
        log.info("DET%d: RMF %s, DETABS %s", k, rmf_paths[k], detabs_src[k])

    cache = {}

    def rmf(path):
        if path not in cache:
            hdul = open_fits(path, "RMF")
            mat = _matrix_hdu(hdul, path)
            cache[path] = (hdul, np.asarray(mat.data["ENERG_LO"], float), np.asarray(mat.data["ENERG_HI"], float))
        return cache[path]

    tables = []
    for k in dets:
        _, elo, ehi = rmf(rmf_paths[k])
        dlo, dhi, val = read_detabs(detabs_src[k], k)
        tables.append(detabs_on_grid(elo, ehi, dlo, dhi, val))

    try:
        with atomic_outputs(names, clobber) as out:
            if fractions is None:
                for k in dets:
                    hdul, _, _ = rmf(rmf_paths[k])
                    new = absorbed_rmf_hdulist(
                        hdul, tables[k], path=rmf_paths[k],
                        history=[f"nuskybgd absrmf: rows x DETABS of DET{k}",
                                 f"RMF {Path(rmf_paths[k]).name}; DETABS {Path(detabs_src[k]).name}"])
                    new.writeto(out[names[k]], checksum=True)
            else:
                fr = np.asarray(fractions, float)
                if len(set(rmf_paths)) == 1:
                    hdul, _, _ = rmf(rmf_paths[0])
                    new = absorbed_rmf_hdulist(
                        hdul, weighted_detabs(tables, fr), path=rmf_paths[0],
                        history=["nuskybgd absrmf: rows x weighted DETABS, fractions "
                                 + " ".join(f"{x:.8e}" for x in fr / fr.sum())])
                else:
                    new = None
                    _weighted_multi_rmf(rmf_paths, tables, fr, out[names[0]])
                if new is not None:
                    new.writeto(out[names[0]], checksum=True)
    finally:
        for hdul, _, _ in cache.values():
            hdul.close()
    return names


def _weighted_multi_rmf(paths, tables, fractions, path_out):
    """Write sum_k f_k DETABS_k R_k for different RMFs per detector (dense sum)."""
    f = np.asarray(fractions, float)
    if f.size != 4 or not np.all(np.isfinite(f)) or np.any(f < 0) or f.sum() <= 0:
        raise NuskybgdError(f"detector fractions {list(f)}: need 4 finite values >= 0 with a positive sum")
    f = f / f.sum()
    dense = base = None
    for k in range(4):
        if f[k] == 0:
            continue
        rmf = read_rmf(paths[k])
        m = rmf_matrix(rmf)
        if dense is not None and m.shape != dense.shape:
            raise NuskybgdError(f"{paths[k]}: matrix shape {m.shape} differs from the other detectors' {dense.shape}")
        term = f[k] * np.asarray(tables[k])[:, None] * m
        dense = term if dense is None else dense + term
        base = base or rmf
    hdr = {"TELESCOP": "NuSTAR", "INSTRUME": str(base.header.get("INSTRUME", "")) if hasattr(base, "header") else "",
           "HISTORY": "nuskybgd absrmf: sum_k f_k DETABS_k R_k, fractions " + " ".join(f"{x:.8e}" for x in f)}
    write_rmf(path_out, base.energ_lo, base.energ_hi, dense, base.e_min, base.e_max, header=hdr, clobber=True,
              first_channel=int(base.offset))
