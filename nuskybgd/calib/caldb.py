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
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NuskybgdError
from ..io.fitsfile import open_fits
from .cif import (
    CIF_COLUMNS,
    INDEX_RELPATH,
    cif_hdulist,
    folder_index,
    folder_index_cache_dir,
    index_entries_for_file,
    parse_date,
    write_caldb_index,
)

# Index writing and udcif-like indexing live in calib/cif.py; their names are
# re-exported here, where callers have always found them.
__all__ = [
    "INDEX_RELPATH", "CIF_COLUMNS", "CaldbFile", "Caldb", "write_caldb_index", "cif_hdulist",
    "index_entries_for_file", "folder_index", "folder_index_cache_dir", "parse_date",
]

_WILDCARD_DET = ("", "-", "NONE", "ANY")


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

        Parameters
        ----------
        cnam : str
            Calibration code name (CAL_CNAM), e.g. ``"PIXPOS"``.
        instrume : str
            ``"FPMA"``/``"FPMB"`` (or ``"A"``/``"B"``).
        detnam : str or int, optional
            ``"DET0"``..``"DET3"`` or 0..3; None matches any row.
        date : str, datetime or astropy.time.Time, optional
            Observation date (UTC); None means "now".
        expr : str, optional
            Boundary condition, e.g. ``"DEPTHCUT.eq.NOMINAL"``.

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
