"""Epoch-dependent calibration bundles from stacked spectra (``nuskybgd calibrate``).

Input: a ``stack`` folder (``stack.json`` + one PHA per epoch x module x
detector) or a manifest (ECSV/CSV with columns ``file, epoch, module, det``
and optionally ``epoch_start, epoch_stop, exposure, area, module_area``)
for spectra whose headers cannot be trusted.

Each group is fitted by :func:`~nuskybgd.analysis.calibfit.fit_group`
(one task per group through :func:`~nuskybgd.analysis.executor.run_tasks`).
The results become, per epoch, a bundle in the ``ratios.json`` format:

- line energies ``linee`` of module m: the inverse-variance mean over its
  detectors of ``slope_k * linee_preset + offset_k`` (energies as recorded
  by the detectors, so that a fit with frozen shapes sees the lines where
  they are);
- ``ifactors[k]`` of every internal component: the fitted whole-detector
  norm converted to the per-area convention the fit uses
  (``norm_k * MODAREA / AREA_k`` for apec and lines, ``norm_k * 599.75 /
  AREA_k`` for intn; areas in DET1 pixels from the stack headers); a
  detector without a group keeps the preset value (listed in ``gain.json``);
  a norm fitted to 0 on some detectors only is written as
  :data:`IFACTOR_FLOOR` times the module's largest (logged);
- everything else (apbgd, fcxb, line widths, apec kT) from the presets;

plus ``gain.json`` (gain slope/offset with errors, line energies per
detector, cstat/dof, exposure). ``calibration.json`` indexes the epochs
(label, start, stop, files with sha256) and carries a version and the
software version; ``summary.ecsv`` is the table of every group and
``trends.png`` plots the calibrated quantities against time. Everything is
written in one transaction: a failed group or a lost worker leaves no bundle
behind.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import NuskybgdError
from ..constants import ARCMIN2_PIX
from ..calib.auxil import load_ratios
from ..calib.presets import component_presets, with_added_lines
from .calibfit import AUTO_BOOTSTRAP, AUTO_BOOTSTRAP_MAX_COUNTS, GroupSpectrum, bootstrap_replicas, fit_group

__all__ = [
    "CALIBRATION_FORMAT",
    "AUTO_BOOTSTRAP",
    "AUTO_BOOTSTRAP_MAX_COUNTS",
    "IFACTOR_FLOOR",
    "bootstrap_replicas",
    "floor_ifactors",
    "NOMINAL_DET_AREA",
    "CalibTask",
    "calibrate",
    "calibrate_group",
    "load_manifest",
    "load_stack_groups",
]

log = logging.getLogger("nuskybgd")

#: An ifactor fitted to 0 on some detectors of a module (a norm at its bound) is written as this
#: fraction of the module's largest for that component, so that the linked model's ratios stay finite.
IFACTOR_FLOOR = 1e-3

#: Default detector area when a manifest gives none: 32 x 32 raw pixels of 5 x 5 DET1 pixels.
NOMINAL_DET_AREA = 25600.0
#: ``format`` of calibration.json.
CALIBRATION_FORMAT = "nuskybgd-calibration-1"


@dataclass(frozen=True)
class CalibTask:
    """One group to fit (picklable unit of work).

    Attributes
    ----------
    name : str
        Group name (the spectrum's file name).
    pha, rmf : str
        Paths of the stacked spectrum and of its response.
    epoch, epoch_start, epoch_stop : str
        Epoch label and its ISO start and stop dates (empty when unknown).
    module : str
        ``"A"`` or ``"B"``.
    det : int
        Detector 0..3.
    mode : str
        ``"science"`` or ``"occultation"``.
    exposure : float
        Exposure, s.
    area, module_area : float
        Extraction area of the detector and of the whole module, DET1 pixels.
    caldb : str, optional
        CALDB used when stacking (``None``: the environment's).
    detabs_file : str, optional
        Detector absorption file overriding the CALDB's.
    emin, emax : float
        Noticed band, keV.
    albedo : bool
        Add an Earth albedo continuum (occulted data).
    fit_gain : bool
        Fit the gain slope and offset.
    bootstrap : int or "auto"
        Replicas whose gain fits give the gain errors (0: profile curvature;
        ``"auto"``: :data:`AUTO_BOOTSTRAP` replicas for groups with fewer than
        :data:`AUTO_BOOTSTRAP_MAX_COUNTS` counts in the band, else 0).
    add_lines : tuple of float
        Energies (keV) of Lorentz lines added to the bundle's intbgd model
        and fitted (see :func:`nuskybgd.calib.presets.with_added_lines`).
    """

    name: str
    pha: str
    rmf: str
    epoch: str
    epoch_start: str
    epoch_stop: str
    module: str
    det: int
    mode: str
    exposure: float
    area: float
    module_area: float
    caldb: str = None
    detabs_file: str = None
    emin: float = 3.0
    emax: float = 150.0
    albedo: bool = False
    fit_gain: bool = True
    bootstrap: object = "auto"
    add_lines: tuple = ()

    def __post_init__(self):
        # one form (a tuple of floats) whatever the caller gave: tasks compare and hash it
        object.__setattr__(self, "add_lines", tuple(float(e) for e in self.add_lines))


def _check_module_det(module, det, where):
    if module not in ("A", "B"):
        raise NuskybgdError(f"{where}: module '{module}' (use A or B)")
    if det not in (0, 1, 2, 3):
        raise NuskybgdError(f"{where}: detector {det} (use 0..3)")


def load_stack_groups(stackdir, rmf=None, emin=3.0, emax=150.0, albedo=False, fit_gain=True, detabs_file=None,
                      bootstrap="auto", add_lines=()):
    """Groups of a ``stack`` folder.

    Parameters
    ----------
    stackdir : str or os.PathLike
        Folder written by ``nuskybgd stack`` (with ``stack.json``).
    rmf : str, optional
        Response used for every spectrum (default each spectrum's RESPFILE).
    emin, emax : float
        Noticed band, keV.
    albedo : bool
        Add an Earth albedo continuum.
    fit_gain : bool
        Fit the gain slope and offset.
    bootstrap : int or "auto"
        Replicas whose gain fits give the gain errors (see :class:`CalibTask`).
    add_lines : sequence of float
        Energies (keV) of Lorentz lines added to the model and fitted.
    detabs_file : str, optional
        Detector absorption file overriding the CALDB's.

    Returns
    -------
    list of CalibTask
        One per group of ``stack.json``.

    Raises
    ------
    NuskybgdError
        Missing or damaged ``stack.json``, checksum mismatch, zero exposure.
    """
    bootstrap_replicas(bootstrap, 0.0)  # checked before any work
    stackdir = Path(stackdir)
    index_path = stackdir / "stack.json"
    if not index_path.exists():
        raise NuskybgdError(f"{index_path}: not found (run 'nuskybgd stack' first, or give --manifest)")
    try:
        index = json.loads(index_path.read_text())
        groups = index["groups"]
    except (ValueError, KeyError) as exc:
        raise NuskybgdError(f"{index_path}: not a stack index ({exc})") from None
    if not groups:
        raise NuskybgdError(f"{index_path}: no groups")
    mode = "science" if index.get("selection") == "science" else "occultation"
    tasks = []
    for g in groups:
        pha = stackdir / g["file"]
        if not pha.exists():
            raise NuskybgdError(f"{pha}: listed in stack.json but missing")
        if g.get("sha256") and _sha256(pha) != g["sha256"]:
            raise NuskybgdError(f"{pha}: checksum differs from stack.json (file changed after stacking)")
        if not g["exposure"] > 0:
            raise NuskybgdError(f"{pha}: group {g['epoch']} FPM{g['module']} DET{g['det']} has zero exposure")
        resp = rmf or _respfile(pha)
        tasks.append(CalibTask(name=pha.name, pha=str(pha), rmf=resp, epoch=g["epoch"], epoch_start=g["epoch_start"],
                               epoch_stop=g["epoch_stop"], module=g["module"], det=int(g["det"]), mode=mode,
                               exposure=float(g["exposure"]), area=float(g["area"]),
                               module_area=float(g["module_area"]), caldb=index.get("caldb"),
                               detabs_file=detabs_file, emin=emin, emax=emax, albedo=albedo, fit_gain=fit_gain,
                               bootstrap=bootstrap, add_lines=add_lines))
    return tasks


def _respfile(pha):
    from astropy.io import fits
    resp = str(fits.getheader(pha, "SPECTRUM").get("RESPFILE", "none")).strip()
    if resp.lower() in ("", "none"):
        raise NuskybgdError(f"{pha}: no RESPFILE; pass --rmf")
    p = Path(resp)
    if not p.is_absolute():
        p = Path(pha).parent / p
    if not p.exists():
        raise NuskybgdError(f"{pha}: RESPFILE {resp} not found; pass --rmf")
    return str(p)


def load_manifest(manifest, rmf, emin=3.0, emax=150.0, albedo=True, fit_gain=True, detabs_file=None,
                  bootstrap="auto", add_lines=()):
    """Groups listed in a manifest (spectra with meaningless headers).

    Parameters
    ----------
    manifest : str or os.PathLike
        ECSV or CSV table: ``file`` (relative to the manifest's folder or
        absolute), ``epoch``, ``module`` (A/B), ``det`` (0..3); optional
        ``epoch_start``, ``epoch_stop`` (ISO dates), ``exposure`` (s; default
        the file's EXPOSURE), ``area``, ``module_area`` (DET1 pixels; default
        :data:`NOMINAL_DET_AREA` and 4 times that).
    rmf : str
        Response used for every spectrum.
    emin, emax : float
        Noticed band, keV.
    albedo : bool
        Add an Earth albedo continuum (the default: manifests usually list
        occulted data).
    fit_gain : bool
        Fit the gain slope and offset.
    bootstrap : int or "auto"
        Replicas whose gain fits give the gain errors (see :class:`CalibTask`).
    add_lines : sequence of float
        Energies (keV) of Lorentz lines added to the model and fitted.
    detabs_file : str, optional
        Detector absorption file overriding the CALDB's.

    Returns
    -------
    list of CalibTask
        One per row of the manifest.

    Raises
    ------
    NuskybgdError
        Unreadable manifest, missing columns or files, bad module/detector,
        zero exposure.
    """
    bootstrap_replicas(bootstrap, 0.0)  # checked before any work
    from astropy.io import fits
    from astropy.table import Table
    manifest = Path(manifest)
    if not manifest.exists():
        raise NuskybgdError(f"{manifest}: manifest not found")
    try:
        fmt = "ascii.ecsv" if manifest.suffix == ".ecsv" else "ascii.csv"
        t = Table.read(manifest, format=fmt)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:  # astropy readers raise these
        raise NuskybgdError(f"{manifest}: cannot read the manifest ({exc})") from None
    missing = [c for c in ("file", "epoch", "module", "det") if c not in t.colnames]
    if missing:
        raise NuskybgdError(f"{manifest}: missing columns {', '.join(missing)}")
    if len(t) == 0:
        raise NuskybgdError(f"{manifest}: no rows")
    if not rmf:
        raise NuskybgdError(f"{manifest}: a manifest needs --rmf (one response for every spectrum)")
    tasks = []
    for i, row in enumerate(t):
        where = f"{manifest} row {i + 1}"
        pha = Path(str(row["file"]))
        if not pha.is_absolute():
            pha = manifest.parent / pha
        if not pha.exists():
            raise NuskybgdError(f"{where}: spectrum {pha} not found")
        module, det = str(row["module"]).strip().upper().replace("FPM", ""), int(row["det"])
        _check_module_det(module, det, where)
        expo = float(row["exposure"]) if "exposure" in t.colnames else float(fits.getheader(pha, 1)["EXPOSURE"])
        if not expo > 0:
            raise NuskybgdError(f"{where}: {pha.name} has zero exposure")
        area = float(row["area"]) if "area" in t.colnames else NOMINAL_DET_AREA
        marea = float(row["module_area"]) if "module_area" in t.colnames else 4 * NOMINAL_DET_AREA
        tasks.append(CalibTask(name=pha.name, pha=str(pha), rmf=str(rmf), epoch=str(row["epoch"]),
                               epoch_start=str(row["epoch_start"]) if "epoch_start" in t.colnames else "",
                               epoch_stop=str(row["epoch_stop"]) if "epoch_stop" in t.colnames else "",
                               module=module, det=det, mode="occultation", exposure=expo, area=area,
                               module_area=marea, detabs_file=detabs_file, emin=emin, emax=emax, albedo=albedo,
                               fit_gain=fit_gain, bootstrap=bootstrap,
                               add_lines=add_lines))
    keys = [(x.epoch, x.module, x.det) for x in tasks]
    if len(set(keys)) != len(keys):
        raise NuskybgdError(f"{manifest}: an (epoch, module, det) appears twice")
    return tasks


@lru_cache(maxsize=8)
def _rmf(path):
    from ..io.ogip import read_rmf
    return read_rmf(str(path))


def _read_counts(path):
    from ..io.ogip import read_pha
    pha = read_pha(path)
    counts = np.asarray(pha.counts, float)
    if counts.size != 4096:
        raise NuskybgdError(f"{path}: {counts.size} channels; 4096 expected")
    return counts


def calibrate_group(task):
    """Fit one group (unit of work).

    Parameters
    ----------
    task : CalibTask
        The group: spectrum, response and fit options.

    Returns
    -------
    dict
        Plain numbers (picklable, JSON-ready): norms and errors per
        component, gain slope and offset (keV) with errors and covariance,
        cstat, dof, bins, counts, exposure (s), areas (DET1 pixels) and
        fitted line energies (keV); see
        :class:`~nuskybgd.analysis.calibfit.GroupFit`.
    """
    counts = _read_counts(task.pha)
    spec = GroupSpectrum(name=task.name, counts=counts, exposure=task.exposure, module=task.module, det=task.det,
                         rmf=_rmf(task.rmf), mode=task.mode, area=task.area, module_area=task.module_area,
                         detabs_file=task.detabs_file, caldb=task.caldb)
    ratios = with_added_lines(load_ratios(), task.add_lines) if task.add_lines else None
    seed = zlib.crc32(f"{task.epoch}|{task.module}|{task.det}|{task.name}".encode("utf-8"))
    fit = fit_group(spec, presets=ratios, emin=task.emin, emax=task.emax, fit_gain=task.fit_gain, albedo=task.albedo,
                    bootstrap=task.bootstrap, seed=seed)
    return {
        "name": task.name, "epoch": task.epoch, "module": task.module, "det": task.det,
        "components": list(fit.components), "norms": [float(v) for v in fit.norms],
        "norm_errors": [float(v) for v in fit.norm_errors], "slope": fit.slope, "slope_error": fit.slope_error,
        "offset": fit.offset, "offset_error": fit.offset_error, "gain_error_method": fit.error_method,
        "gain_covariance": [[float(v) for v in r] for r in fit.gain_covariance],
        "cstat": fit.statistic, "dof": fit.dof, "n_bins": fit.n_bins, "counts": float(counts.sum()),
        "exposure": task.exposure, "area": task.area, "module_area": task.module_area,
        "line_energies": {k: [float(e), float(s)] for k, (e, s) in fit.line_energies.items()},
    }


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ifactor(key, norm, area, module_area):
    if key == "intn":
        return norm * ARCMIN2_PIX / area
    return norm * module_area / area


def epoch_ratios(base_ratios, fits_by_det, module):
    """The ratios.json entries of one module for one epoch.

    Parameters
    ----------
    base_ratios : dict
        Preset ratios.json (modified copy returned).
    fits_by_det : dict
        det -> result of :func:`calibrate_group`.
    module : str

    Returns
    -------
    (dict, list of int)
        Updated ratios and the detectors that kept preset values.
    """
    r = base_ratios
    intbgd = next(mdl for mdl in r["models"] if mdl["name"].endswith("intbgd"))
    intn = next(mdl for mdl in r["models"] if mdl["name"].endswith("intn"))
    kept = [k for k in range(4) if k not in fits_by_det]
    for name, comp in intbgd["components"].items():
        entry = comp[module]
        key = f"intbgd.{name}"
        if "linee" in entry:
            e, w = [], []
            for res in fits_by_det.values():
                val, err = res["line_energies"].get(key, (np.nan, np.nan))
                if np.isfinite(val):
                    e.append(val)
                    w.append(1.0 / err ** 2 if np.isfinite(err) and err > 0 else 1.0)
            if e:
                entry["linee"] = float(np.average(e, weights=w))
        for k, res in fits_by_det.items():
            if key in res["components"]:
                norm = res["norms"][res["components"].index(key)]
                entry["ifactors"][k] = float(_ifactor(key, norm, res["area"], res["module_area"]))
        if entry.get("added") and kept:
            # an added line has no preset on the detectors without a group: the apec's pattern scaled by
            # the line/apec ratio of the fitted detectors
            apec = intbgd["components"]["apec"][module]["ifactors"]
            ratio = [entry["ifactors"][k] / apec[k] for k in fits_by_det if apec[k] > 0]
            for k in kept:
                entry["ifactors"][k] = float(np.mean(ratio) * apec[k]) if ratio else entry["ifactors"][k]
    comp = next(iter(intn["components"].values()))[module]
    for k, res in fits_by_det.items():
        norm = res["norms"][res["components"].index("intn")]
        comp["ifactors"][k] = float(_ifactor("intn", norm, res["area"], res["module_area"]))
    floor_ifactors(r, module)
    return r, kept


def floor_ifactors(ratios, module):
    """Make every ifactor of one module positive, in place, so that the linked model stays finite.

    A norm fitted to its bound 0 on some detectors only is set to
    :data:`IFACTOR_FLOOR` times the module's largest for that component. A
    component at 0 on every detector (a line absent from the data) stays 0:
    the linked model ties such a component 1:1 between regions, at norm 0.
    (An added line of a module without groups keeps its starting ifactors,
    1e-3 x the apec's.)

    Parameters
    ----------
    ratios : dict
        Parsed ratios.json (modified).
    module : str
        ``"A"`` or ``"B"``.
    """
    intbgd = next(mdl for mdl in ratios["models"] if mdl["name"].endswith("intbgd"))
    intn = next(mdl for mdl in ratios["models"] if mdl["name"].endswith("intn"))
    floored = []
    for name, entries in list(intbgd["components"].items()) + [("intn", c) for c in intn["components"].values()]:
        ifac = entries[module]["ifactors"]
        top = max(ifac)
        low = [k for k, v in enumerate(ifac) if not v > 0]
        if top > 0 and low:
            # a norm fitted to its bound 0 on some detectors only: the linked model ties regions by
            # ifactor ratios, which a zero on the reference region would make infinite
            for k in low:
                ifac[k] = IFACTOR_FLOOR * top
            floored.append(f"{name} DET{','.join(map(str, low))}")
    if floored:
        log.info("FPM%s: ifactors fitted to 0 set to %g x the module's largest (%s)", module, IFACTOR_FLOOR,
                 "; ".join(floored))


def _decimal_year(iso):
    from astropy.time import Time
    return float(Time(iso, scale="utc").decimalyear)


def plot_trends(path, results, epochs):
    """Plot calibrated quantities against time: gain slope, line energies, ifactors, intn.

    Parameters
    ----------
    path : str or os.PathLike
        Output PNG (150 dpi).
    results : list of dict
        Results of :func:`calibrate_group`, one per group.
    epochs : dict
        Epoch label -> ``{"start": ISO date or None, "stop": ...}``; epochs
        without dates are placed at their rank.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def xval(lab):
        e = epochs[lab]
        if e["start"] and e["stop"]:
            return 0.5 * (_decimal_year(e["start"]) + _decimal_year(e["stop"]))
        return float(sorted(epochs).index(lab))

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    marks = {"A": "o", "B": "s"}
    lines = ["intbgd.lorentz_5", "intbgd.lorentz_8", "intbgd.lorentz_17", "intbgd.lorentz_24"]
    preset_e = {m: {f"intbgd.{ln.name}": float(ln.linee) for ln in component_presets(m).lines} for m in ("A", "B")}
    for (m, k), rs in _by_detector(results).items():
        rs = sorted(rs, key=lambda r: xval(r["epoch"]))
        x = np.array([xval(r["epoch"]) for r in rs])
        lab = f"FPM{m} DET{k}"
        ax = axes[0, 0]
        ax.errorbar(x, [r["slope"] for r in rs], yerr=[r["slope_error"] for r in rs], marker=marks[m], ls="-",
                    ms=4, label=lab)
        ax = axes[0, 1]
        for j, ln in enumerate(lines):
            y = [r["line_energies"].get(ln, (np.nan, np.nan)) for r in rs]
            ax.errorbar(x + 0.02 * k, [v[0] - preset_e[m][ln] for v in y], yerr=[v[1] for v in y], marker=marks[m],
                        ls="none", ms=3, color=f"C{j}",
                        label=f"{ln.split('.')[1]} ({preset_e[m][ln]:.1f} keV)" if (m, k) == ("A", 0) else None)
        ax = axes[1, 0]
        for j, key in enumerate(("intbgd.apec", "intbgd.lorentz_8")):
            y = [_ifactor(key, r["norms"][r["components"].index(key)], r["area"], r["module_area"]) for r in rs]
            ax.plot(x, y, marker=marks[m], ls="-", color=f"C{j}", ms=3,
                    label=key.split(".")[1] if (m, k) == ("A", 0) else None)
        ax = axes[1, 1]
        y = [_ifactor("intn", r["norms"][r["components"].index("intn")], r["area"], r["module_area"]) for r in rs]
        ax.plot(x, y, marker=marks[m], ls="-", ms=4, label=lab)
    axes[0, 0].set_ylabel("gain slope (E' = slope E + offset)")
    axes[0, 1].set_ylabel("recorded - preset line energy (keV)")
    axes[1, 0].set_ylabel("ifactor (per-area convention)")
    axes[1, 0].set_yscale("log")
    axes[1, 1].set_ylabel("intn ifactor")
    for ax in axes.ravel():
        ax.set_xlabel("epoch mid-time (year)" if all(e["start"] for e in epochs.values()) else "epoch index")
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("nuskybgd calibrate: calibrated quantities per epoch, module and detector")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=150, metadata={"Software": None})
    plt.close(fig)


def _by_detector(results):
    out = {}
    for r in results:
        out.setdefault((r["module"], r["det"]), []).append(r)
    return out


def calibrate(tasks, caldir, runner=None, clobber=False, version="1", plot=True):
    """Fit every group and write the calibration bundles.

    Parameters
    ----------
    tasks : list of CalibTask
        From :func:`load_stack_groups` or :func:`load_manifest`.
    caldir : str or os.PathLike
        Output folder.
    runner : callable, optional
        ``runner(func, items) -> list``; default serial.
    clobber : bool
    version : str
        Version label stored in calibration.json.
    plot : bool
        Write trends.png.

    Returns
    -------
    dict
        calibration.json content.
    """
    from astropy.table import Table

    from .. import __version__
    from ..io.output import atomic_outputs, check_outputs

    if not tasks:
        raise NuskybgdError("calibrate: no groups to fit")
    caldir = Path(caldir)
    epochs = {}
    for t in tasks:
        epochs.setdefault(t.epoch, {"start": t.epoch_start, "stop": t.epoch_stop})
    index_path = caldir / "calibration.json"
    bundle = {e: {"ratios": caldir / e / "ratios.json", "gain": caldir / e / "gain.json"} for e in epochs}
    all_paths = [index_path, caldir / "summary.ecsv"] + ([caldir / "trends.png"] if plot else [])
    for b in bundle.values():
        all_paths += [b["ratios"], b["gain"]]
    if caldir.exists():
        check_outputs([p for p in all_paths if p.parent == caldir or p.parent.exists()], clobber)
    if runner is None:
        def runner(func, items):
            return [func(x) for x in items]
    added = {t.add_lines for t in tasks}
    if len(added) > 1:
        raise NuskybgdError("calibrate: the groups do not all add the same lines")
    added = added.pop()
    base = with_added_lines(load_ratios(), added) if added else load_ratios()  # checked before any fit
    results = runner(calibrate_group, tasks)
    created = []
    for d in [caldir, *(caldir / e for e in epochs)]:
        if not d.exists():
            d.mkdir(parents=True)
            created.append(d)
    try:
        check_outputs(all_paths, clobber)
        rows = []
        index = {"format": CALIBRATION_FORMAT, "version": str(version), "software": f"nuskybgd {__version__}",
                 "gain_convention": "E_recorded = slope * E_true + offset (keV)",
                 "ifactor_convention": "apec/lines: norm_det * MODAREA / AREA_det; intn: norm_det * 599.75 / "
                                       "AREA_det (DET1 pixels)", "epochs": []}
        with atomic_outputs(all_paths, clobber) as out:
            for e, info in sorted(epochs.items(), key=lambda kv: (kv[1]["start"], kv[0])):
                ratios = copy.deepcopy(base)
                gain = {"epoch": e, "start": info["start"], "stop": info["stop"], "modules": {}}
                for m in ("A", "B"):
                    by_det = {r["det"]: r for r in results if r["epoch"] == e and r["module"] == m}
                    if not by_det:
                        continue
                    ratios, kept = epoch_ratios(ratios, by_det, m)
                    gain["modules"][m] = {"preset_detectors": kept, "detectors": {
                        f"DET{k}": {**{x: r[x] for x in ("slope", "slope_error", "offset", "offset_error",
                                                          "gain_error_method", "cstat", "dof", "exposure", "counts", "area",
                                                          "module_area", "line_energies", "name")},
                                    "norms": {c: [v, e] for c, v, e in zip(r["components"], r["norms"],
                                                                           r["norm_errors"])}}
                        for k, r in sorted(by_det.items())}}
                ratios["comment"] = f"nuskybgd calibrate: epoch {e} ({info['start']} - {info['stop']})"
                Path(out[bundle[e]["ratios"]]).write_text(json.dumps(ratios, indent=1) + "\n")
                Path(out[bundle[e]["gain"]]).write_text(json.dumps(gain, indent=1) + "\n")
                index["epochs"].append({
                    "epoch": e, "start": info["start"], "stop": info["stop"],
                    "files": {kind: {"path": str(p.relative_to(caldir)), "sha256": _sha256(out[p])}
                              for kind, p in bundle[e].items()}})
            for r in results:
                rows.append((r["epoch"], f"FPM{r['module']}", r["det"], r["name"], r["exposure"], r["counts"],
                             r["cstat"], r["dof"], r["cstat"] / r["dof"], r["slope"], r["slope_error"], r["offset"],
                             r["offset_error"], r["norms"][r["components"].index("intn")],
                             r["norm_errors"][r["components"].index("intn")],
                             r["norms"][r["components"].index("intbgd.apec")],
                             r["norm_errors"][r["components"].index("intbgd.apec")]))
            table = Table(rows=rows, names=("epoch", "module", "det", "file", "exposure", "counts", "cstat", "dof",
                                            "cstat_per_dof", "gain_slope", "gain_slope_err", "gain_offset",
                                            "gain_offset_err", "intn_norm", "intn_norm_err", "apec_norm",
                                            "apec_norm_err"))
            table.write(out[caldir / "summary.ecsv"], format="ascii.ecsv", overwrite=True)
            if plot:
                plot_trends(out[caldir / "trends.png"], results, epochs)
            Path(out[index_path]).write_text(json.dumps(index, indent=1) + "\n")
    except BaseException:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    log.info("calibrated %d groups into %d epoch bundles in %s", len(results), len(epochs), caldir)
    return index
