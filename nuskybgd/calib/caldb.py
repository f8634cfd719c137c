"""NuSTAR calibration database (CALDB) look-up without HEASoft.

The index is the HEASARC calibration index file (CIF)
``$CALDB/data/nustar/fpm/caldb.indx``: a FITS table with one row per
calibration extension (columns TELESCOP, INSTRUME, DETNAM, FILTER, CAL_DEV,
CAL_DIR, CAL_FILE, CAL_CLAS, CAL_DTYP, CAL_CNAM, CAL_CBD, CAL_XNO, CAL_VSD,
CAL_VST, REF_TIME, CAL_QUAL, CAL_DATE, CAL_DESC). ``CAL_DIR`` is relative to
``$CALDB``.

Selection rules (those of HEASARC's ``quzcif``):

1. TELESCOP is NUSTAR; CAL_CNAM equals the requested code name; INSTRUME
   equals FPMA/FPMB (rows with the generic ``FPM`` match both modules);
2. CAL_QUAL == 0 (good quality);
3. DETNAM equals the requested detector (``DET0``..``DET3``); rows with
   DETNAM ``-``, ``NONE`` or blank match any detector;
4. boundary parameters in CAL_CBD (e.g. ``DEPTHCUT(NOMINAL)``,
   ``RAWX(0- 31)``) are matched against ``expr`` (``"DEPTHCUT.eq.NOMINAL"``);
   a row without that parameter passes. With no ``expr``, when several rows
   carry a ``DEPTHCUT(...)`` boundary the nominal depth cut is selected, as
   NuSTARDAS does (``depthcut=NOMINAL``);
5. valid-from (CAL_VSD + CAL_VST) <= the observation date;
6. the latest valid-from wins; ties go to the latest CAL_DATE, then to an
   exact DETNAM match over a wildcard, then to the later index row.

Code names (CAL_CNAM) used by NuSTARDAS and by the original nuskybgd
(NuSTAR/nuskybgd-py ``caldb.py``; IDL ``getcaldbfile.pro``):

======== ====================================================== ==========
CAL_CNAM content                                                per DETNAM
======== ====================================================== ==========
PIXPOS   raw pixel -> DET1 position PDFs (``bcf/pixpos``)        yes (4 ext)
INSTRMAP 360x360 DET1 instrument map (``bcf/instrmap``)          no
BADPIX   on-ground bad pixels (``bcf/badpix``)                   yes (4 ext)
DETABS   detector absorption per energy (``bcf/detabs``)         yes (4 ext)
MATRIX   RMF matrix (``cpf/rmf/nu{A,B}det{0..3}_*.rmf``);        yes
         EBOUNDS is its second extension (CAL_CNAM EBOUNDS)
GRPRMF   per-detector list of RMF files (column RMFFILE),         yes
         CAL_CBD ``DEPTHCUT(NOMINAL)`` / ``DEPTHCUT(DISABLED)``
SPECRESP on-axis effective area ARF (``cpf/arf``)                no
BEABS    Be-window transmission, INSTRUME ``FPM``, column ATT     no
TVIGNET  vignetting; GRPPSF PSF list; APERTURE aperture stop      no
======== ====================================================== ==========

(BEABS: the original asks ``getBEABS('FPM', date)`` and reads column
``ATT``; the code name is inferred from that method name.)
"""

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import NuskybgdError
from ..io.fitsfile import open_fits
from ..io.output import write_fits

__all__ = [
    "INDEX_RELPATH", "CIF_COLUMNS", "CaldbFile", "Caldb", "write_caldb_index",
    "index_entries_for_file", "folder_index", "folder_index_cache_dir", "parse_date",
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

_WILDCARD_DET = ("", "-", "NONE", "ANY")
_MJD_UNIX = 40587.0


@dataclass
class CaldbFile:
    """A selected calibration extension.

    Attributes
    ----------
    path : pathlib.Path
        Absolute file name.
    extno : int
        Extension number (CAL_XNO; 0 is the primary HDU).
    detnam : str
        DETNAM of the index row.
    entry : dict
        The whole index row (column name -> value).
    """

    path: Path
    extno: int
    detnam: str = "-"
    entry: dict = field(default_factory=dict, repr=False)

    def __fspath__(self):
        return str(self.path)


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


def _norm_instrume(instrume):
    s = str(instrume).strip().upper()
    if s in ("A", "FPMA"):
        return "FPMA"
    if s in ("B", "FPMB"):
        return "FPMB"
    if s == "FPM":
        return "FPM"
    raise NuskybgdError(f"CALDB query: instrument {instrume!r} is not FPMA/FPMB (or A/B)")


def _norm_detnam(detnam):
    if detnam is None:
        return None
    if isinstance(detnam, (int, np.integer)):
        if not 0 <= int(detnam) <= 3:
            raise NuskybgdError(f"CALDB query: detector {detnam} out of range 0..3")
        return f"DET{int(detnam)}"
    s = str(detnam).strip().upper()
    if re.fullmatch(r"[0-3]", s):
        return f"DET{s}"
    if s in _WILDCARD_DET:
        return None
    return s


_CBD = re.compile(r"^\s*([A-Za-z0-9_]+)\s*\((.*)\)\s*([A-Za-z0-9_*/]*)\s*$")


def _parse_cbd(strings):
    """Boundaries of one row: {PARAM: value string} (NONE entries skipped)."""
    out = {}
    for s in strings:
        s = str(s).strip()
        if not s or s.upper() == "NONE":
            continue
        m = _CBD.match(s)
        if m:
            out[m.group(1).upper()] = m.group(2).strip()
    return out


def _parse_expr(expr):
    """``"A.eq.x"``, ``"A=x"``, ``"A(x)"``; joined by ``.and.``/``&&``."""
    conds = []
    for part in re.split(r"\.and\.|&&", str(expr), flags=re.I):
        part = part.strip()
        if not part:
            continue
        m = (re.fullmatch(r"([A-Za-z0-9_]+)\s*(?:\.eq\.|==|=)\s*(.+)", part, re.I)
             or re.fullmatch(r"([A-Za-z0-9_]+)\s*\((.+)\)", part))
        if not m:
            raise NuskybgdError(f"CALDB query: cannot parse boundary expression {part!r} (use NAME.eq.VALUE)")
        conds.append((m.group(1).upper(), m.group(2).strip()))
    return conds


def _boundary_ok(value, wanted):
    """Does a CAL_CBD value (``NOMINAL``, ``0- 31``, ``6.4``) accept ``wanted``?"""
    v = value.replace(" ", "")
    w = wanted.replace(" ", "")
    m = re.fullmatch(r"([-+]?[\d.eE+]+)-([-+]?[\d.eE+]+)", v)
    if m:
        try:
            x = float(w)
        except ValueError:
            return False
        return float(m.group(1)) <= x <= float(m.group(2))
    try:
        return float(v) == float(w)
    except ValueError:
        return v.upper() == w.upper()


class Caldb:
    """A NuSTAR CALDB on disk.

    Parameters
    ----------
    root : str or os.PathLike, optional
        The CALDB root (the folder holding ``data/``); defaults to
        ``$CALDB``. A folder without ``data/nustar/fpm/caldb.indx`` is taken
        as a plain folder of CALDB files: the index is built in memory from
        the files' CALDB keywords (:func:`folder_index`, like ``udcif``),
        which is logged; ``in_memory`` is then True and ``index_path`` is
        the folder.

    Raises
    ------
    NuskybgdError
        When ``root`` is not given and ``$CALDB`` is unset, the index is
        unreadable, or a folder without index holds no CALDB file.
    """

    def __init__(self, root=None):
        if root is None:
            root = os.environ.get("CALDB")
            if not root:
                raise NuskybgdError(
                    "$CALDB is not set: point it at a CALDB holding data/nustar/fpm/caldb.indx or at a folder "
                    "of NuSTAR CALDB files (or run 'nuskybgd simulate' to make a synthetic one)")
        self.root = Path(root).absolute()
        self.index_path = self.root / INDEX_RELPATH
        #: True when the index was built in memory from a plain folder of files.
        self.in_memory = False
        if not self.index_path.is_file():
            if not self.root.is_dir():
                raise NuskybgdError(
                    f"{self.index_path}: NuSTAR CALDB index not found and {self.root} is not a folder "
                    "($CALDB or caldb=); install the NuSTAR CALDB there or set $CALDB")
            self.entries = [dict(r, _row=i) for i, r in enumerate(folder_index(self.root))]
            self.index_path = self.root
            self.in_memory = True
            return
        with open_fits(self.index_path, "CALDB index") as hdul:
            hdu = None
            for h in hdul[1:]:
                if hasattr(h, "columns") and "CAL_CNAM" in [c.upper() for c in h.columns.names]:
                    hdu = h
                    break
            if hdu is None:
                raise NuskybgdError(f"{self.index_path}: no CIF table (no CAL_CNAM column)")
            names = [c.upper() for c in hdu.columns.names]
            need = ("INSTRUME", "CAL_CNAM", "CAL_DIR", "CAL_FILE", "CAL_VSD", "CAL_VST")
            missing = [c for c in need if c not in names]
            if missing:
                raise NuskybgdError(f"{self.index_path}: CALDB index lacks column(s) {', '.join(missing)}")
            self.entries = [self._row(hdu.data, i, names) for i in range(len(hdu.data))]

    def _row(self, data, i, names):
        r = {}
        for n in names:
            v = data[n][i]
            if n == "CAL_CBD":
                v = [str(x).strip() for x in np.atleast_1d(v)]
            elif isinstance(v, (str, bytes, np.str_, np.bytes_)):
                v = v.decode() if isinstance(v, bytes) else str(v)
                v = v.strip()
            elif isinstance(v, np.generic):
                v = v.item()
            r[n] = v
        r.setdefault("TELESCOP", "NUSTAR")
        r.setdefault("DETNAM", "-")
        r.setdefault("CAL_QUAL", 0)
        r.setdefault("CAL_XNO", 1)
        r.setdefault("CAL_CBD", [])
        r.setdefault("CAL_DATE", "")
        r["_row"] = i
        return r

    def candidates(self, cnam, instrume, detnam=None, date=None, expr=None):
        """All index rows passing the selection rules, best first.

        Parameters are those of :meth:`query`.

        Returns
        -------
        list of dict
            Index rows (column -> value), sorted best first.
        """
        inst = _norm_instrume(instrume)
        det = _norm_detnam(detnam)
        cnam_u = str(cnam).strip().upper()
        when = parse_date(date, "observation date") if date is not None else None
        rows = []
        for r in self.entries:
            if str(r["TELESCOP"]).upper() not in ("NUSTAR", ""):
                continue
            if str(r["CAL_CNAM"]).upper() != cnam_u:
                continue
            ri = str(r["INSTRUME"]).upper()
            if not (ri == inst or (ri == "FPM" and inst in ("FPMA", "FPMB"))):
                continue
            try:
                if int(r["CAL_QUAL"]) != 0:
                    continue
            except (TypeError, ValueError):
                continue
            rd = str(r["DETNAM"]).strip().upper()
            if det is not None and rd not in _WILDCARD_DET and rd != det:
                continue
            rows.append(r)
        # Boundary parameters.
        conds = _parse_expr(expr) if expr else []
        if conds:
            kept = []
            for r in rows:
                b = _parse_cbd(r["CAL_CBD"])
                if all(p not in b or _boundary_ok(b[p], v) for p, v in conds):
                    kept.append(r)
            rows = kept
        else:
            depth = [r for r in rows if "DEPTHCUT" in _parse_cbd(r["CAL_CBD"])]
            if depth:
                nominal = [r for r in rows
                           if _parse_cbd(r["CAL_CBD"]).get("DEPTHCUT", "NOMINAL").upper() == "NOMINAL"]
                rows = nominal
        # Validity dates.
        dated = []
        for r in rows:
            vs = parse_date(f"{r['CAL_VSD']}T{r['CAL_VST'] or '00:00:00'}",
                            f"CAL_VSD/CAL_VST of {r['CAL_FILE']} in {self.index_path}")
            if when is not None and vs > when:
                continue
            cd = r["CAL_DATE"]
            try:
                cdate = parse_date(cd) if cd else _dt.datetime.min
            except NuskybgdError:
                cdate = _dt.datetime.min
            exact = str(r["DETNAM"]).strip().upper() not in _WILDCARD_DET
            dated.append(((vs, cdate, exact, r["_row"]), r))
        dated.sort(key=lambda t: t[0], reverse=True)
        return [r for _, r in dated]

    def query(self, cnam, instrume, detnam=None, date=None, expr=None):
        """Select one calibration extension.

        Parameters
        ----------
        cnam : str
            Calibration code name (CAL_CNAM), e.g. ``"PIXPOS"``.
        instrume : str
            ``"FPMA"``/``"FPMB"`` (or ``"A"``/``"B"``).
        detnam : str or int, optional
            ``"DET0"``..``"DET3"`` or 0..3; None matches any row (the file
            of the best row is returned with its lowest extension number).
        date : str, datetime or astropy.time.Time, optional
            Observation date (UTC), e.g. the event file's DATE-OBS. None
            means "now" (the latest valid file).
        expr : str, optional
            Boundary condition, e.g. ``"DEPTHCUT.eq.NOMINAL"``.

        Returns
        -------
        CaldbFile
            Absolute path and extension number.

        Raises
        ------
        NuskybgdError
            When nothing matches (naming cnam, instrument, detector, date and
            the index), or the selected file is missing.
        """
        rows = self.candidates(cnam, instrume, detnam, date, expr)
        if not rows:
            det = _norm_detnam(detnam) or "any detector"
            when = str(date) if date is not None else "any date"
            raise NuskybgdError(
                f"{self.index_path}: no CALDB file for CAL_CNAM={str(cnam).upper()} "
                f"INSTRUME={_norm_instrume(instrume)} DETNAM={det} date={when}"
                + (f" expr={expr}" if expr else "")
                + " (CAL_QUAL=0, valid-from <= date); update the CALDB or check $CALDB")
        best = rows[0]
        if detnam is None:
            same = [r for r in rows if r["CAL_DIR"] == best["CAL_DIR"] and r["CAL_FILE"] == best["CAL_FILE"]]
            best = min(same, key=lambda r: int(r["CAL_XNO"]))
        path = self.root / best["CAL_DIR"] / best["CAL_FILE"]
        if not path.is_file():
            raise NuskybgdError(
                f"{path}: CALDB file listed in {self.index_path} for {str(cnam).upper()} "
                f"{_norm_instrume(instrume)} is missing")
        return CaldbFile(path=path, extno=int(best["CAL_XNO"]), detnam=str(best["DETNAM"]),
                         entry={k: v for k, v in best.items() if not k.startswith("_")})

    def rmf(self, instrume, detnam, date=None, depthcut="NOMINAL"):
        """The RMF of one detector: via GRPRMF (as NuSTARDAS), else MATRIX.

        Parameters
        ----------
        instrume : str
            ``"FPMA"``/``"FPMB"`` (or ``"A"``/``"B"``).
        detnam : str or int
            Detector ``DET0``..``DET3`` or 0..3.
        date : str, optional
            Observation date.
        depthcut : str
            Depth-cut boundary of the GRPRMF row (``NOMINAL`` by default).

        Returns
        -------
        pathlib.Path
            The RMF file.
        """
        det = _norm_detnam(detnam)
        if det is None:
            raise NuskybgdError("CALDB RMF query needs a detector DET0..DET3")
        try:
            grp = self.query("GRPRMF", instrume, det, date, expr=f"DEPTHCUT.eq.{depthcut}")
        except NuskybgdError:
            return self.query("MATRIX", instrume, det, date).path
        with open_fits(grp.path, "CALDB GRPRMF file") as hdul:
            if grp.extno >= len(hdul) or "RMFFILE" not in [c.upper() for c in hdul[grp.extno].columns.names]:
                raise NuskybgdError(f"{grp.path}: extension {grp.extno} has no RMFFILE column")
            data = hdul[grp.extno].data
            if len(data) == 0:
                raise NuskybgdError(f"{grp.path}: extension {grp.extno} lists no RMF")
            name = str(data["RMFFILE"][0]).strip()
        path = grp.path.parent / name
        if not path.is_file():
            raise NuskybgdError(f"{path}: RMF listed in {grp.path} is missing")
        return path


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
