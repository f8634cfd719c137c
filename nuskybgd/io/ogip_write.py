"""OGIP writers: type I PHA (OGIP/92-007), RMF and ARF (CAL/GEN/92-002).

The files are read back by astropy and Sherpa without warnings; every write
is atomic and keeps an existing file unless ``clobber``. Split out of
:mod:`nuskybgd.io.ogip` (which re-exports these names) to keep both modules
short.
"""

import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import NuskybgdError
from .fitsfile import fits_text
from .output import write_fits

__all__ = ["write_pha", "write_rmf", "write_arf", "compress_matrix"]


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
