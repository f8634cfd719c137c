"""Stack an archive of observations into whole-detector background spectra (``nuskybgd stack``).

Steps (gammapy's background-model maker does the same for Cherenkov data:
filter an observation table, group, write per-group products and a table of
what went in):

1. :func:`scan_archive` finds the cleaned event files of a folder tree
   (NuSTARDAS names ``nu<obsid><A|B><mode>_cl.evt[.gz]``, mode 01 science,
   02 Earth occultation).
2. :func:`spectra_of_observation` (one task per observation and module, run
   through :func:`~nuskybgd.analysis.executor.run_tasks`) histograms PI per
   detector for the selection:

   - ``occultation``: every event of the mode-02 file; the detector area used
     is the live area of each detector (CALDB instrument map without the
     CALDB and event-file bad pixels), in DET1 pixels;
   - ``science``: mode-01 events whose sky position lies outside the
     source-exclusion regions; the area used of detector k is the number of
     its live DET1 pixels whose sky position, with the aspect at the median
     of the DET1 reference-point track, lies outside the regions (aspect
     jitter ignored: an approximation, recorded in the header).
3. Observations are grouped by epoch (:func:`epoch_bins`: per year, per
   quarter, or explicit boundaries) x module x detector, the integer counts
   summed and the exposures added.
4. One OGIP PHA per group (:func:`stack_archive`) with INSTRUME, DETNAM,
   summed EXPOSURE, the epoch range (EPOCH, EPOCHBEG, EPOCHEND) and the data
   range (TSTART/TSTOP, DATE-OBS/DATE-END), the area used (AREA, MODAREA,
   DET1 pixels), SELECT, and an OBSLIST extension listing every observation;
   plus ``observations.ecsv`` (the observation table) and ``stack.json``
   (groups, files, sha256). All files are written together or not at all.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time, TimeDelta

from ..calib.caldb import Caldb
from ..errors import NuskybgdError
from ..io.events import read_badpix, read_det1_refpoint, read_events, sky_wcs
from ..io.ogip import write_pha
from ..io.output import atomic_outputs, check_outputs
from ..io.regions import region_mask
from ..io.skyfiles import read_instrmap, read_pixpos
from ..sky.instrmap import bad_pixel_list, instrument_map, pixel_map
from ..sky.projection import det1_to_sky

__all__ = [
    "N_CHANNELS",
    "SELECTIONS",
    "EventFileInfo",
    "ObservationSpectra",
    "StackTask",
    "assign_epochs",
    "epoch_bins",
    "scan_archive",
    "spectra_of_observation",
    "stack_archive",
]

log = logging.getLogger("nuskybgd")

#: Selections of ``stack``.
SELECTIONS = ("occultation", "science")
#: PI channels of a NuSTAR spectrum.
N_CHANNELS = 4096
MISSION_EPOCH = "2010-01-01T00:00:00"
_EVT = re.compile(r"^nu(\d{11})([AB])(0\d)_cl\.evt(\.gz)?$")
_MODE_OF = {"occultation": "02", "science": "01"}


@dataclass(frozen=True)
class EventFileInfo:
    """A cleaned event file found in the archive.

    Attributes
    ----------
    obsid : str
        Observation ID.
    module : str
        ``"A"`` or ``"B"``.
    mode : str
        Observing mode of the file name (``"01"`` science, ``"02"``
        occultation).
    path : str
        Path of the ``_cl.evt`` file.
    """

    obsid: str
    module: str
    mode: str
    path: str


@dataclass(frozen=True)
class StackTask:
    """One unit of work: the spectra of one observation and module.

    Attributes
    ----------
    obsid : str
        Observation ID.
    module : str
        ``"A"`` or ``"B"``.
    path : str
        Cleaned event file.
    selection : str
        ``"occultation"`` or ``"science"``.
    caldb : str, optional
        CALDB root (default the environment's).
    exclude : str, optional
        Source-exclusion region file (science selection).
    det1 : str, optional
        DET1 reference-point file (science selection: the area used).
    """

    obsid: str
    module: str
    path: str
    selection: str
    caldb: str = None
    exclude: str = None
    det1: str = None


@dataclass
class ObservationSpectra:
    """Per-detector PI histograms of one observation and module.

    Attributes
    ----------
    obsid : str
        Observation ID.
    module : str
        ``"A"`` or ``"B"``.
    mode : str
        Observing mode (``"01"`` science, ``"02"`` occultation).
    path : str
        Cleaned event file.
    selection : str
        ``"occultation"`` or ``"science"``.
    tstart, tstop : float
        Start and stop, NuSTAR mission time (s since 2010-01-01).
    exposure : float
        Exposure, s.
    counts : ndarray of int64, shape (4, 4096)
        PI histogram of each detector (0..3).
    area : ndarray, shape (4,)
        Detector area used, DET1 pixels.
    module_area : float
        Live area of the module, DET1 pixels.
    n_events_file : int
        Events in the file before any selection.
    """

    obsid: str
    module: str
    mode: str
    path: str
    selection: str
    tstart: float
    tstop: float
    exposure: float
    counts: np.ndarray = field(repr=False)
    area: np.ndarray
    module_area: float
    n_events_file: int


def mission_date(t):
    """UTC ISO date of a NuSTAR mission time.

    Parameters
    ----------
    t : float
        Mission time, s since 2010-01-01T00:00:00 UTC.

    Returns
    -------
    str
        ``YYYY-MM-DDThh:mm:ss`` (UTC).
    """
    return (Time(MISSION_EPOCH, scale="utc") + TimeDelta(float(t), format="sec")).utc.isot[:19]


def scan_archive(archive):
    """Find the cleaned event files under a folder.

    Parameters
    ----------
    archive : str or os.PathLike

    Returns
    -------
    dict
        obsid -> {(module, mode): path}.

    Raises
    ------
    NuskybgdError
        Missing folder, or no event file at all.
    """
    root = Path(archive)
    if not root.is_dir():
        raise NuskybgdError(f"{root}: archive folder not found")
    found = {}
    for p in sorted(root.rglob("nu*_cl.evt*")):
        m = _EVT.match(p.name)
        if not m or "caldb" in p.parts:
            continue
        obsid, module, mode = m.group(1), m.group(2), m.group(3)
        found.setdefault(obsid, {})[(module, mode)] = str(p)
    if not found:
        raise NuskybgdError(f"{root}: no cleaned event files (nu<obsid><A|B><01|02>_cl.evt) in the archive")
    return found


def epoch_bins(spec, t_min, t_max):
    """Epoch boundaries covering a time range.

    Parameters
    ----------
    spec : str
        ``year``, ``quarter``, or comma-separated ISO dates (explicit
        boundaries, increasing; epochs are the intervals between them).
    t_min, t_max : float
        Mission times (s) that must be covered (``year``/``quarter``).

    Returns
    -------
    list of (label, start_iso, stop_iso)
    """
    if spec in ("year", "quarter"):
        y0 = int(mission_date(t_min)[:4])
        y1 = int(mission_date(t_max)[:4])
        out = []
        for y in range(y0, y1 + 1):
            if spec == "year":
                out.append((f"{y}", f"{y}-01-01T00:00:00", f"{y + 1}-01-01T00:00:00"))
            else:
                for q in range(4):
                    m0 = 3 * q + 1
                    stop = f"{y}-{m0 + 3:02d}-01T00:00:00" if q < 3 else f"{y + 1}-01-01T00:00:00"
                    out.append((f"{y}Q{q + 1}", f"{y}-{m0:02d}-01T00:00:00", stop))
        return out
    parts = [s.strip() for s in str(spec).split(",") if s.strip()]
    if len(parts) < 2:
        raise NuskybgdError(f"--epochs {spec}: use year, quarter, or at least two comma-separated dates")
    try:
        times = [Time(p, scale="utc") for p in parts]
    except ValueError as exc:
        raise NuskybgdError(f"--epochs {spec}: {exc}") from None
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise NuskybgdError(f"--epochs {spec}: boundaries must increase")
    return [(f"E{i + 1:02d}", a.isot[:19], b.isot[:19]) for i, (a, b) in enumerate(itertools.pairwise(times))]


def _mission_time(iso):
    return float((Time(iso, scale="utc") - Time(MISSION_EPOCH, scale="utc")).sec)


def assign_epochs(tmid, bins):
    """Epoch label of each mission time.

    Parameters
    ----------
    tmid : sequence of float
        Mission times, s since 2010-01-01.
    bins : list of (str, str, str)
        ``(label, start_iso, stop_iso)`` as :func:`epoch_bins` returns
        (start included, stop excluded).

    Returns
    -------
    list of str or None
        Label per time; ``None`` outside every epoch.
    """
    edges = [(lab, _mission_time(a), _mission_time(b)) for lab, a, b in bins]
    out = []
    for t in tmid:
        out.append(next((lab for lab, a, b in edges if a <= t < b), None))
    return out


@lru_cache(maxsize=4)
def _caldb_maps(caldb_root, module):
    caldb = Caldb(caldb_root)
    pixmap = pixel_map(read_pixpos(caldb.query("PIXPOS", f"FPM{module}").path))
    cal_imap, _ = read_instrmap(caldb.query("INSTRMAP", f"FPM{module}").path, "CALDB INSTRMAP")
    bad = frozenset(bad_pixel_list(read_badpix(caldb.query("BADPIX", f"FPM{module}").path)))
    return pixmap, cal_imap, bad


def _instrument_map(task):
    """Live-detector map (det + 1, 0 dead) of the observation: CALDB map minus CALDB and event bad pixels."""
    if task.caldb is None:
        raise NuskybgdError(f"{task.path}: no CALDB for the detector areas (pass --caldb or set $CALDB)")
    pixmap, cal_imap, bad = _caldb_maps(str(task.caldb), task.module)
    try:
        ev_bad = bad_pixel_list(read_badpix(task.path))
    except NuskybgdError:
        ev_bad = set()
    return instrument_map(cal_imap, pixmap, set(bad) | set(ev_bad))


def spectra_of_observation(task):
    """Per-detector PI histograms of one observation and module (one unit of work).

    Parameters
    ----------
    task : StackTask

    Returns
    -------
    ObservationSpectra

    Raises
    ------
    NuskybgdError
        Unreadable files, events outside 0..4095 or detectors outside 0..3.
    """
    ev = read_events(task.path, columns=("PI", "DET_ID", "X", "Y") if task.selection == "science"
                     else ("PI", "DET_ID"))
    h = ev.header
    try:
        exposure = float(h["EXPOSURE"])
        tstart, tstop = float(h["TSTART"]), float(h["TSTOP"])
    except (KeyError, ValueError):
        raise NuskybgdError(f"{task.path}: EVENTS header lacks EXPOSURE/TSTART/TSTOP") from None
    pi = np.asarray(ev.columns["PI"], np.int64)
    det = np.asarray(ev.columns["DET_ID"], np.int64)
    if pi.size and (pi.min() < 0 or pi.max() >= N_CHANNELS or det.min() < 0 or det.max() > 3):
        raise NuskybgdError(f"{task.path}: PI outside 0..4095 or DET_ID outside 0..3")
    imap = _instrument_map(task)
    live = [imap == k + 1 for k in range(4)]
    area = np.array([float(np.count_nonzero(mk)) for mk in live])
    module_area = float(area.sum())
    keep = np.ones(pi.size, bool)
    if task.selection == "science":
        wcs = sky_wcs(h, task.path)
        mask = region_mask(task.exclude, wcs, shape=(1000, 1000))
        x = ev.columns["X"]
        y = ev.columns["Y"]
        ok = np.isfinite(x) & np.isfinite(y)
        ix = np.clip(np.floor(np.nan_to_num(x) - 0.5).astype(np.int64), 0, 999)
        iy = np.clip(np.floor(np.nan_to_num(y) - 0.5).astype(np.int64), 0, 999)
        keep = ok & ~mask[iy, ix]
        _, xd, yd, _ = read_det1_refpoint(task.det1)
        ax, ay = float(np.median(xd)) - 0.5, float(np.median(yd)) - 0.5
        pa = float(h.get("PA_PNT", 0.0))
        for k in range(4):
            py, px = np.nonzero(live[k])
            sx, sy = det1_to_sky(px.astype(float), py.astype(float), ax, ay, pa)
            jx = np.floor(sx + 0.5).astype(np.int64)
            jy = np.floor(sy + 0.5).astype(np.int64)
            on = (jx >= 0) & (jx < 1000) & (jy >= 0) & (jy < 1000)
            outside = on.copy()
            outside[on] = ~mask[jy[on], jx[on]]
            area[k] = float(np.count_nonzero(outside))
    counts = np.zeros((4, N_CHANNELS), np.int64)
    for k in range(4):
        sel = keep & (det == k)
        counts[k] = np.bincount(pi[sel], minlength=N_CHANNELS)
    return ObservationSpectra(obsid=task.obsid, module=task.module, mode=_MODE_OF[task.selection], path=task.path,
                              selection=task.selection, tstart=tstart, tstop=tstop, exposure=exposure,
                              counts=counts, area=area, module_area=module_area, n_events_file=int(pi.size))


def _default_caldb(archive, caldb):
    if caldb:
        return str(caldb)
    cand = Path(archive) / "caldb"
    if (cand / "data" / "nustar" / "fpm" / "caldb.indx").exists():
        return str(cand)
    return os.environ.get("CALDB")


def plan_tasks(archive, selection="occultation", exclude=None, caldb=None, modules=("A", "B")):
    """Units of work of a stack (one per observation and module).

    Parameters
    ----------
    archive : str or os.PathLike
        Folder with the observations (searched by :func:`scan_archive`).
    selection : {"occultation", "science"}
        Which events to stack: occultation-mode files, or science-mode
        files outside the source-exclusion regions.
    exclude : str, optional
        Source-exclusion region file, relative to each observation's folder
        or absolute (science selection only, required there).
    caldb : str, optional
        CALDB root (default: the archive's or the environment's).
    modules : sequence of str
        Modules to stack.

    Returns
    -------
    list of StackTask
        Sorted by observation, then module.

    Raises
    ------
    NuskybgdError
        Empty archive; an observation without the file the selection needs;
        science selection without exclusion regions.
    """
    if selection not in SELECTIONS:
        raise NuskybgdError(f"--selection {selection}: use one of {', '.join(SELECTIONS)}")
    found = scan_archive(archive)
    caldb = _default_caldb(archive, caldb)
    mode = _MODE_OF[selection]
    tasks = []
    for obsid in sorted(found):
        files = found[obsid]
        for m in modules:
            path = files.get((m, mode))
            if path is None:
                folder = Path(next(iter(files.values()))).parent
                raise NuskybgdError(f"{folder}: observation {obsid} has no {selection}-mode ({mode}) event file "
                                    f"for FPM{m} (nu{obsid}{m}{mode}_cl.evt)")
            reg = det1 = None
            if selection == "science":
                if not exclude:
                    raise NuskybgdError("--selection science needs --exclude REGION (source-exclusion regions)")
                obsdir = Path(path).parent.parent
                reg = obsdir / exclude if not Path(exclude).is_absolute() else Path(exclude)
                if not reg.exists() and Path(exclude).exists():
                    reg = Path(exclude)
                if not reg.exists():
                    raise NuskybgdError(f"{reg}: exclusion region file not found for observation {obsid}")
                det1 = Path(path).parent / f"nu{obsid}{m}_det1.fits"
                if not det1.exists():
                    raise NuskybgdError(f"{det1}: DET1 reference-point file not found (needed for the area used)")
            tasks.append(StackTask(obsid=obsid, module=m, path=path, selection=selection, caldb=caldb,
                                   exclude=None if reg is None else str(reg), det1=None if det1 is None else str(det1)))
    return tasks


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stack_archive(archive, stackdir, epochs="year", selection="occultation", exclude=None, caldb=None,
                  runner=None, clobber=False):
    """Stack an archive into per-(epoch, module, detector) spectra.

    Parameters
    ----------
    archive : str or os.PathLike
        Folder tree of observations.
    stackdir : str or os.PathLike
        Output folder (created).
    epochs : str
        ``year``, ``quarter`` or comma-separated boundary dates.
    selection : {"occultation", "science"}
    exclude : str, optional
        Source-exclusion region file (science selection): a name looked up in
        each observation's folder, or a path used for every observation.
    caldb : str, optional
        CALDB root (default ``ARCHIVE/caldb`` when present, else ``$CALDB``).
    runner : callable, optional
        ``runner(func, items) -> list``; default serial.
    clobber : bool

    Returns
    -------
    dict
        The ``stack.json`` content.

    Raises
    ------
    NuskybgdError
        See :func:`plan_tasks`; a group with zero exposure; observations
        outside every explicit epoch. Nothing is written then.
    """
    tasks = plan_tasks(archive, selection, exclude, caldb)
    stackdir = Path(stackdir)
    index_path = stackdir / "stack.json"
    table_path = stackdir / "observations.ecsv"
    if stackdir.exists():
        check_outputs([index_path, table_path], clobber)
    if runner is None:
        def runner(func, items):
            return [func(x) for x in items]
    results = runner(spectra_of_observation, tasks)
    tmid = [0.5 * (r.tstart + r.tstop) for r in results]
    bins = epoch_bins(epochs, min(tmid), max(tmid))
    labels = assign_epochs(tmid, bins)
    outside = [r.obsid for r, lab in zip(results, labels) if lab is None]
    if outside:
        raise NuskybgdError(f"--epochs {epochs}: observations {', '.join(sorted(set(outside))[:5])} fall outside "
                            "every epoch")
    bin_of = {lab: (a, b) for lab, a, b in bins}
    groups = {}
    for r, lab in zip(results, labels):
        for k in range(4):
            groups.setdefault((lab, r.module, k), []).append(r)
    ordered = sorted(groups, key=lambda g: ([b[0] for b in bins].index(g[0]), g[1], g[2]))
    for key in ordered:
        if sum(r.exposure for r in groups[key]) <= 0:
            lab, m, k = key
            raise NuskybgdError(f"group {lab} FPM{m} DET{k}: zero exposure (observations "
                                f"{', '.join(r.obsid for r in groups[key])}); check their EXPOSURE keywords")
    stackdir.mkdir(parents=True, exist_ok=True)
    names = {key: stackdir / f"stack_{key[0]}_FPM{key[1]}_DET{key[2]}.pha" for key in ordered}
    all_paths = [index_path, table_path, *names.values()]
    check_outputs(all_paths, clobber)

    rows = []
    for r, lab in zip(results, labels):
        rows.append((r.obsid, f"FPM{r.module}", r.mode, Path(r.path).name, r.tstart, r.tstop, mission_date(r.tstart),
                     r.exposure, int(r.counts.sum()), r.n_events_file, r.selection, lab,
                     *[float(a) for a in r.area]))
    table = Table(rows=rows, names=("obsid", "module", "mode", "file", "tstart", "tstop", "date_obs", "exposure",
                                    "counts", "events_in_file", "selection", "epoch", "area_det0", "area_det1",
                                    "area_det2", "area_det3"))
    table["tstart"].unit = table["tstop"].unit = table["exposure"].unit = "s"
    table.meta["comments"] = [f"nuskybgd stack of {Path(archive).resolve()}: selection {selection}, epochs {epochs}",
                              "area_detK: detector area used, DET1 pixels (0.12096 mm)"]
    index = {"format": "nuskybgd-stack-1", "archive": str(Path(archive).resolve()), "selection": selection,
             "epochs": epochs, "exclude": exclude, "caldb": tasks[0].caldb, "n_observations":
             len({r.obsid for r in results}), "epoch_bins": [list(b) for b in bins], "groups": []}
    with atomic_outputs(all_paths, clobber) as out:
        for key in ordered:
            lab, m, k = key
            rs = groups[key]
            counts = np.sum([r.counts[k] for r in rs], axis=0)
            expo = float(sum(r.exposure for r in rs))
            area = float(sum(r.exposure * r.area[k] for r in rs) / expo)
            modarea = float(sum(r.exposure * r.module_area for r in rs) / expo)
            t0, t1 = min(r.tstart for r in rs), max(r.tstop for r in rs)
            rmf = _response(tasks[0].caldb, m, k, mission_date(0.5 * (t0 + t1)))
            obs_hdu = fits.BinTableHDU.from_columns([
                fits.Column(name="OBSID", format="11A", array=[r.obsid for r in rs]),
                fits.Column(name="FILE", format="64A", array=[Path(r.path).name for r in rs]),
                fits.Column(name="TSTART", format="D", unit="s", array=[r.tstart for r in rs]),
                fits.Column(name="TSTOP", format="D", unit="s", array=[r.tstop for r in rs]),
                fits.Column(name="EXPOSURE", format="D", unit="s", array=[r.exposure for r in rs]),
                fits.Column(name="COUNTS", format="K", array=[int(r.counts[k].sum()) for r in rs]),
                fits.Column(name="AREA", format="D", unit="DET1 pixel", array=[float(r.area[k]) for r in rs]),
            ], name="OBSLIST")
            obs_hdu.header["INSTRUME"] = f"FPM{m}"
            obs_hdu.header["DETNAM"] = f"DET{k}"
            header = {
                "INSTRUME": f"FPM{m}", "DETNAM": (f"DET{k}", "whole detector"),
                "TSTART": (t0, "first observation start, mission time s"),
                "TSTOP": (t1, "last observation stop, mission time s"),
                "DATE-OBS": mission_date(t0), "DATE-END": mission_date(t1),
                "EPOCH": (lab, "epoch label"), "EPOCHBEG": (bin_of[lab][0], "epoch start (UTC)"),
                "EPOCHEND": (bin_of[lab][1], "epoch end (UTC, exclusive)"),
                "SELECT": (selection.upper(), "event selection"),
                "DATAMODE": (_MODE_OF[selection], "NuSTAR observing mode of the events"),
                "AREA": (area, "detector area used, DET1 pixels (exposure-weighted mean)"),
                "MODAREA": (modarea, "live area of the module, DET1 pixels"),
                "AREAMETH": ("LIVEMAP" if selection == "occultation" else "MEDIAN_ASPECT",
                             "how AREA was computed"),
                "NOBS": (len(rs), "observations stacked"), "RESPFILE": (rmf or "none", ""),
                "ORIGIN": "nuskybgd", "CREATOR": "nuskybgd stack",
            }
            write_pha(out[names[key]], counts, expo, 1.0, header=header, extra_hdus=[obs_hdu], clobber=True)
            index["groups"].append({"epoch": lab, "epoch_start": bin_of[lab][0], "epoch_stop": bin_of[lab][1],
                                    "module": m, "det": k, "file": names[key].name, "exposure": expo,
                                    "counts": int(counts.sum()), "n_obs": len(rs), "area": area,
                                    "module_area": modarea, "tstart": t0, "tstop": t1,
                                    "obsids": [r.obsid for r in rs]})
        table.write(out[table_path], format="ascii.ecsv", overwrite=True)
        for g in index["groups"]:
            g["sha256"] = _sha256(out[stackdir / g["file"]])
        Path(out[index_path]).write_text(json.dumps(index, indent=1) + "\n")
    log.info("stacked %d observations into %d groups in %s", index["n_observations"], len(ordered), stackdir)
    return index


def _response(caldb, module, det, date):
    if not caldb:
        return None
    try:
        return str(Path(Caldb(caldb).rmf(f"FPM{module}", f"DET{det}", date=date)).resolve())
    except NuskybgdError:
        return None
