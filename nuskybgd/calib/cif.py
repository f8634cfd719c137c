"""CALDB index files (CIF): writing them, and indexing files the way ``udcif`` does.

* :func:`write_caldb_index` / :func:`cif_hdulist`: a ``caldb.indx`` from rows;
* :func:`index_entries_for_file`: the rows of one calibration file from its
  CALDB header keywords (CCNM0001, CBDn0001, CVSD0001 ...), like HEASARC's
  ``udcif``;
* :func:`folder_index`: the rows of every file of a plain folder of CALDB
  files without ``caldb.indx`` (used by :class:`nuskybgd.calib.caldb.Caldb`),
  kept between runs in the user cache.
"""

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import NuskybgdError
from ..io.fitsfile import open_fits
from ..io.output import write_fits

__all__ = [
    "INDEX_RELPATH", "CIF_COLUMNS", "parse_date", "write_caldb_index", "cif_hdulist",
    "index_entries_for_file", "folder_index", "folder_index_cache_dir", "forget_folder_indexes",
]

log = logging.getLogger("nuskybgd")

#: Location of the NuSTAR FPM index inside ``$CALDB``.
INDEX_RELPATH = Path("data") / "nustar" / "fpm" / "caldb.indx"

#: CIF columns and FITS formats (CAL_CBD holds up to 9 strings of 70 chars).
CIF_COLUMNS = (
    ("TELESCOP", "10A"), ("INSTRUME", "10A"), ("DETNAM", "20A"), ("FILTER", "10A"),
    ("CAL_DEV", "20A"), ("CAL_DIR", "70A"), ("CAL_FILE", "40A"), ("CAL_CLAS", "3A"),
    ("CAL_DTYP", "4A"), ("CAL_CNAM", "20A"), ("CAL_CBD", "630A"), ("CAL_XNO", "I"),
    ("CAL_VSD", "10A"), ("CAL_VST", "8A"), ("REF_TIME", "D"), ("CAL_QUAL", "I"),
    ("CAL_DATE", "10A"), ("CAL_DESC", "70A"),
)

_MJD_UNIX = 40587.0


def parse_date(date, what="date"):
    """Parse a date given as text, datetime or astropy Time.

    Parameters
    ----------
    date : str, datetime.datetime, datetime.date or astropy.time.Time
        ``YYYY-MM-DD``, ``YYYY-MM-DDThh:mm:ss[.s]``, ``YYYY-MM-DD hh:mm:ss`` or
        the old CIF form ``DD/MM/YY`` / ``YY/MM/DD``.
    what : str
        Name used in error messages.

    Returns
    -------
    datetime.datetime
        Naive UTC date-time.
    """
    if isinstance(date, _dt.datetime):
        return date.replace(tzinfo=None)
    if isinstance(date, _dt.date):
        return _dt.datetime(date.year, date.month, date.day)
    if hasattr(date, "to_datetime"):
        return date.to_datetime()
    s = str(date).strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d",
                "%Y-%m-%dT%H:%M"):
        try:
            return _dt.datetime.strptime(s, fmt)
        except ValueError:
            pass
    m = re.fullmatch(r"(\d\d)/(\d\d)/(\d\d)", s)
    if m:  # CAL_DATE of old indexes: YY/MM/DD (dd/mm/yy before 1999 is not used by NuSTAR)
        a, b, c = (int(x) for x in m.groups())
        try:
            return _dt.datetime(2000 + a if a < 70 else 1900 + a, b, c)
        except ValueError:
            pass
    raise NuskybgdError(f"cannot parse {what} {s!r} (expected YYYY-MM-DD or YYYY-MM-DDThh:mm:ss)")


def _mjd(d):
    return _MJD_UNIX + (d - _dt.datetime(1970, 1, 1)).total_seconds() / 86400.0


def _cbd_list(cbd):
    if cbd is None:
        cbd = []
    if isinstance(cbd, str):
        cbd = [cbd]
    cbd = [str(c) for c in cbd][:9]
    return cbd + ["NONE"] * (9 - len(cbd))


def write_caldb_index(root, entries, clobber=False):
    """Write ``root/data/nustar/fpm/caldb.indx`` from a list of rows.

    Parameters
    ----------
    root : str or os.PathLike
        CALDB root.
    entries : iterable of dict
        One dict per calibration extension with at least ``INSTRUME``,
        ``CAL_CNAM``, ``CAL_DIR`` (relative to ``root``) and ``CAL_FILE``.
        Missing columns default to TELESCOP ``NUSTAR``, DETNAM ``-``, FILTER
        ``NONE``, CAL_DEV ``ONLINE``, CAL_CLAS ``BCF``, CAL_DTYP ``DATA``,
        CAL_CBD none, CAL_XNO 1, CAL_VSD ``2010-01-01``, CAL_VST
        ``00:00:00``, REF_TIME (MJD of valid-from), CAL_QUAL 0, CAL_DATE
        today, CAL_DESC blank.
    clobber : bool
        Replace an existing index.

    Returns
    -------
    pathlib.Path
        The index file.
    """
    root = Path(root)
    path = root / INDEX_RELPATH
    path.parent.mkdir(parents=True, exist_ok=True)
    write_fits(cif_hdulist(entries, path=path), path, clobber=clobber)
    return path


def cif_hdulist(entries, cal_date=None, path=None):
    """HDUList of a CALDB index (CIF) table.

    Parameters
    ----------
    entries : iterable of dict
        Index rows (keys as in :func:`write_caldb_index`; INSTRUME, CAL_CNAM,
        CAL_DIR and CAL_FILE are required).
    cal_date : str, optional
        CAL_DATE of every row (``YYYY-MM-DD``; default today, UTC).
    path : str, optional
        File name used in error messages.

    Returns
    -------
    astropy.io.fits.HDUList
        Primary HDU and the ``CIF`` binary table.

    Raises
    ------
    NuskybgdError
        When an entry lacks a required key.
    """
    today = cal_date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    where = path or "CALDB index"
    rows = []
    for e in entries:
        e = {k.upper(): v for k, v in dict(e).items()}
        for k in ("INSTRUME", "CAL_CNAM", "CAL_DIR", "CAL_FILE"):
            if k not in e:
                raise NuskybgdError(f"{where}: CALDB index entry lacks {k}: {e}")
        vsd = str(e.get("CAL_VSD", "2010-01-01"))
        vst = str(e.get("CAL_VST", "00:00:00"))
        row = {
            "TELESCOP": e.get("TELESCOP", "NUSTAR"), "INSTRUME": e["INSTRUME"],
            "DETNAM": e.get("DETNAM", "-"), "FILTER": e.get("FILTER", "NONE"),
            "CAL_DEV": e.get("CAL_DEV", "ONLINE"), "CAL_DIR": str(e["CAL_DIR"]),
            "CAL_FILE": str(e["CAL_FILE"]), "CAL_CLAS": e.get("CAL_CLAS", "BCF"),
            "CAL_DTYP": e.get("CAL_DTYP", "DATA"), "CAL_CNAM": e["CAL_CNAM"],
            "CAL_CBD": _cbd_list(e.get("CAL_CBD")), "CAL_XNO": int(e.get("CAL_XNO", 1)),
            "CAL_VSD": vsd, "CAL_VST": vst,
            "REF_TIME": float(e.get("REF_TIME", _mjd(parse_date(f"{vsd}T{vst}")))),
            "CAL_QUAL": int(e.get("CAL_QUAL", 0)), "CAL_DATE": str(e.get("CAL_DATE", today)),
            "CAL_DESC": str(e.get("CAL_DESC", "")),
        }
        rows.append(row)
    cols = []
    for name, fmt in CIF_COLUMNS:
        vals = [r[name] for r in rows]
        if name == "CAL_CBD":
            arr = np.array(vals, dtype="U70").reshape(len(rows), 9) if rows else np.zeros((0, 9), "U70")
            cols.append(fits.Column(name=name, format=fmt, dim="(70,9)", array=arr))
        else:
            cols.append(fits.Column(name=name, format=fmt, array=np.array(vals) if rows else None))
    hdu = fits.BinTableHDU.from_columns(cols, name="CIF")
    hdu.header["CIFVERSN"] = ("1992a", "Version of CIF format")
    hdu.header["TELESCOP"] = "NuSTAR"
    hdul = fits.HDUList([fits.PrimaryHDU(), hdu])
    return hdul


def index_entries_for_file(root, path, cal_date=None):
    """Index rows for a calibration file from its CALDB header keywords.

    Like HEASARC's ``udcif``: every HDU with ``CCNM0001`` gives one row, with
    CAL_CNAM from CCNM0001, CAL_CLAS from CCLS0001, CAL_DTYP from CDTP0001,
    CAL_VSD/CAL_VST from CVSD0001/CVST0001, CAL_CBD from CBDn0001, CAL_DESC
    from CDES0001, INSTRUME/DETNAM/FILTER from the header.

    Parameters
    ----------
    root : str or os.PathLike
        CALDB root (CAL_DIR is made relative to it).
    path : str or os.PathLike
        Calibration file inside ``root``.
    cal_date : str, optional
        CAL_DATE for the rows (default today).

    Returns
    -------
    list of dict
        Rows for :func:`write_caldb_index`.
    """
    root = Path(root).resolve()
    path = Path(path).resolve()
    try:
        rel = path.parent.relative_to(root)
    except ValueError:
        raise NuskybgdError(f"{path}: calibration file is not inside the CALDB root {root}") from None
    rows = []
    with open_fits(path, "CALDB file") as hdul:
        prim = hdul[0].header
        for i, h in enumerate(hdul):
            hd = h.header
            if "CCNM0001" not in hd:
                continue
            cbd = [str(hd[f"CBD{k}0001"]) for k in range(1, 10) if f"CBD{k}0001" in hd]
            row = {
                "TELESCOP": str(hd.get("TELESCOP", prim.get("TELESCOP", "NuSTAR"))).upper(),
                "INSTRUME": str(hd.get("INSTRUME", prim.get("INSTRUME", ""))).strip().upper(),
                "DETNAM": str(hd.get("DETNAM", "-")).strip() or "-",
                "FILTER": str(hd.get("FILTER", "NONE")).strip() or "NONE",
                "CAL_DIR": rel.as_posix(), "CAL_FILE": path.name,
                "CAL_CLAS": str(hd.get("CCLS0001", "BCF")).strip(),
                "CAL_DTYP": str(hd.get("CDTP0001", "DATA")).strip(),
                "CAL_CNAM": str(hd["CCNM0001"]).strip(),
                "CAL_CBD": cbd, "CAL_XNO": i,
                "CAL_VSD": str(hd.get("CVSD0001", "2010-01-01")).strip(),
                "CAL_VST": str(hd.get("CVST0001", "00:00:00")).strip(),
                "CAL_DESC": str(hd.get("CDES0001", "")).strip()[:70],
            }
            if cal_date:
                row["CAL_DATE"] = cal_date
            rows.append(row)
    if not rows:
        raise NuskybgdError(f"{path}: no CALDB keywords (CCNM0001) in any extension")
    return rows


_FOLDER_INDEX = {}
_INDEX_CACHE_VERSION = 1


def folder_index_cache_dir():
    """Folder where the rows of indexed CALDB folders are kept between runs.

    Returns
    -------
    pathlib.Path
        ``$NUSKYBGD_CACHE/caldb-index``, else
        ``$XDG_CACHE_HOME/nuskybgd/caldb-index`` (``~/.cache/...``).
    """
    if os.environ.get("NUSKYBGD_CACHE"):
        return Path(os.environ["NUSKYBGD_CACHE"]) / "caldb-index"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nuskybgd" / "caldb-index"


def _stored_rows(path):
    try:
        data = json.loads(path.read_text())
        if data.get("version") == _INDEX_CACHE_VERSION and isinstance(data.get("files"), dict):
            return data["files"]
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _store_rows(path, root, files):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            json.dump({"version": _INDEX_CACHE_VERSION, "root": str(root), "files": files}, f)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("CALDB folder index not stored in %s (%s)", path, exc)


def folder_index(root):
    """Index rows of a folder of CALDB files that has no ``caldb.indx``.

    Every regular file below ``root`` (hidden files and folders skipped) is
    opened, and each HDU carrying ``CCNM0001`` becomes one row, as HEASARC's
    ``udcif`` would write it (:func:`index_entries_for_file`). Files that are
    not FITS, or carry no CALDB keywords, are skipped.

    Reading the headers of gzipped files means inflating them (1.3 s of CPU
    for the five files of ``shared/caldb/nustar``, most of it the 25 MB RMF),
    so the rows of each file are kept in the process and in
    :func:`folder_index_cache_dir`, keyed by the file's size, modification and
    change times and inode: a file that is rewritten, replaced or touched is
    read again (these rows come from headers only, so the file system's own
    record of a change is enough; no content hash).

    Parameters
    ----------
    root : str or os.PathLike
        The folder (e.g. a download of a few NuSTAR CALDB files).

    Returns
    -------
    list of dict
        Index rows (CIF columns; CAL_DIR relative to ``root``), with the
        defaults of :func:`write_caldb_index` for the columns the headers do
        not give.

    Raises
    ------
    NuskybgdError
        When no file in the folder carries CALDB keywords.
    """
    root = Path(root).resolve()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name == INDEX_RELPATH.name:
                continue
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except OSError:
                continue
            if p.is_file():
                files.append((p, [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]))
    key = (str(root), tuple((str(p), tuple(k)) for p, k in files))
    hit = _FOLDER_INDEX.get(key)
    if hit is not None:
        return [dict(r) for r in hit]
    store_path = folder_index_cache_dir() / f"{hashlib.sha256(str(root).encode()).hexdigest()[:32]}.json"
    stored = _stored_rows(store_path)
    kept, rows, used, skipped, read = {}, [], 0, [], 0
    for p, stamp in files:
        rel = p.relative_to(root).as_posix()
        old = stored.get(rel)
        if old is not None and old.get("stamp") == stamp:
            found = [dict(r) for r in old["rows"]]
        else:
            read += 1
            try:
                found = index_entries_for_file(root, p)
            except NuskybgdError as exc:
                log.debug("CALDB folder %s: skipping %s (%s)", root, p.name, exc)
                found = []
        kept[rel] = {"stamp": stamp, "rows": found}
        if not found:
            skipped.append(p.name)
            continue
        used += 1
        for r in found:
            r.setdefault("CAL_DATE", "")
            r.setdefault("CAL_QUAL", 0)
            r.setdefault("CAL_DEV", "ONLINE")
            rows.append(r)
    if not rows:
        raise NuskybgdError(
            f"{root}: no NuSTAR CALDB index ({root / INDEX_RELPATH}) and no file with CALDB keywords "
            f"(CCNM0001) in the folder; set $CALDB to a CALDB or a folder of CALDB files")
    if read or set(kept) != set(stored):
        _store_rows(store_path, root, kept)
    log.info("CALDB %s has no caldb.indx: index built in memory from the CCNM/CBD/CVSD keywords of %d files "
             "(%d calibration extensions%s; %d files read, the others' rows from %s)", root, used, len(rows),
             f"; {len(skipped)} other files skipped" if skipped else "", read, store_path.parent)
    _FOLDER_INDEX[key] = [dict(r) for r in rows]
    return rows


def forget_folder_indexes():
    """Forget the folder indexes kept in this process (the user cache stays)."""
    _FOLDER_INDEX.clear()
