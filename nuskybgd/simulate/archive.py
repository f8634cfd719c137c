"""A simulated multi-year archive with epoch-dependent background (``nuskybgd simulate-archive``).

Every observation is small (a few ks of science mode, tens of ks of
Earth-occultation mode) and written in the NuSTARDAS layout::

    OUTDIR/archive.json                        list of observations, truth model, seed
    OUTDIR/caldb/                              one CALDB for the whole archive
    OUTDIR/<obsid>/event_cl/nu<obsid>{A,B}01_cl.evt   science mode (mode 01)
    OUTDIR/<obsid>/event_cl/nu<obsid>{A,B}02_cl.evt   Earth occultation (mode 02)
    OUTDIR/<obsid>/event_cl/nu<obsid>{A,B}01_gti.fits, nu<obsid>{A,B}_det1.fits
    OUTDIR/<obsid>/source.reg                  fk5 exclusion circle around the point source
    OUTDIR/<obsid>/truth.json                  everything injected

Injected truth, a function of the observation date only (tau = years since
2012-07-01, :data:`MISSION_START`):

- gain of detector k of module m: an event of true energy E is recorded at
  ``E' = slope * E`` with ``slope = 1 - (GAIN_DRIFT[m] + 0.0002 k) * tau``
  (offset 0), applied to every event of both modes (uniform position inside
  the PI channel, as :func:`nuskybgd.analysis.calibfit.apply_gain` assumes);
- internal line strengths: line i (ratios.json order) grows as
  ``0.5 + 0.05 tau`` (activation, odd i) or fades as ``1 - 0.04 tau``
  (even i); the apec continuum is 0.9 of its preset, intn 1 - 0.003 tau;
- per-detector levels: every internal component of detector k is scaled by
  ``1 - 0.005 (k + 1) tau``.

Multipliers never exceed 1 for tau <= 10, so the science-mode file is made by
:func:`nuskybgd.simulate.observation.simulate_observation` (all scale factors 1) and
Poisson-thinned per event with the multiplier of its component and detector
(thinning a Poisson process keeps it Poisson with the scaled mean); the
gain is then applied to every event. The occultation file holds only the
internal background (no aperture, no CXB: the Earth blocks them), drawn from
the same per-detector templates with the same multipliers and gain.

Whole-detector norms (what ``calibrate`` fits on a stack of detector k):
intbgd component c ``ifactor_c[k] * npix_k / n_live * mult``; intn
``ifactor[k] * npix_k / 599.75 * mult`` (the simulation's per-pixel model,
see :mod:`nuskybgd.simulate.observation`), with ``npix_k`` live DET1 pixels of detector k
and ``n_live`` of the module; truth.json lists them as
``occultation.<module>.whole_detector_norm``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time, TimeDelta

from ..calib.caldb import Caldb
from ..calib.presets import component_presets
from ..constants import ARCMIN2_PIX
from ..errors import NuskybgdError
from ..io.events import read_badpix, sky_wcs
from ..io.ogip import read_rmf
from ..io.output import atomic_outputs, write_text
from ..io.skyfiles import read_instrmap, read_pixpos
from ..models.background import component_templates
from ..sky.instrmap import bad_pixel_list, instrument_map, pixel_map
from ..sky.projection import det1_to_sky
from .caldb import make_caldb
from .observation import draw_categorical, simulate_observation

__all__ = [
    "GAIN_DRIFT",
    "MISSION_START",
    "ObservationPlan",
    "epoch_truth",
    "mission_years",
    "plan_archive",
    "shared_folder",
    "simulate_archive",
    "simulate_archive_observation",
    "whole_detector_norms",
]

log = logging.getLogger("nuskybgd")

#: Start of the epoch clock (NuSTAR launch month), UTC.
MISSION_START = "2012-07-01T00:00:00"
#: Gain-slope drift per year of detector 0 of each module.
GAIN_DRIFT = {"A": 0.0012, "B": 0.0010}
#: NuSTAR mission time zero (MJDREF), UTC.
MISSION_EPOCH = "2010-01-01T00:00:00"


def shared_folder(shared=None):
    """The shared data folder: ``shared``, else ``$NUSKYBGD_SHARED``, else ``../shared`` next to the repository.

    Parameters
    ----------
    shared : str or os.PathLike, optional
        Folder given by the user (``--shared``).

    Returns
    -------
    pathlib.Path
        The first candidate that holds ``real/obs_80415201001``.

    Raises
    ------
    NuskybgdError
        When none holds ``real/obs_80415201001`` (the aspect track the simulation reuses).
    """
    cands = [Path(shared)] if shared is not None else []
    if os.environ.get("NUSKYBGD_SHARED"):
        cands.append(Path(os.environ["NUSKYBGD_SHARED"]))
    here = Path(__file__).resolve().parents[1]
    cands += [here.parent / "shared", here / "shared"]
    for c in cands:
        if (c / "real" / "obs_80415201001").is_dir():
            return c
    raise NuskybgdError("simulate-archive: cannot find the shared data folder with real/obs_80415201001 "
                        "(set NUSKYBGD_SHARED or pass --shared)")


def mission_years(date):
    """Years (of 365.25 days) from :data:`MISSION_START` to a date.

    Parameters
    ----------
    date : str
        ISO date (UTC).

    Returns
    -------
    float
        Years, negative before the mission start.
    """
    return float((Time(date, scale="utc") - Time(MISSION_START, scale="utc")).jd / 365.25)


def epoch_truth(date, presets_by_module):
    """Injected gain and multipliers at a date.

    Parameters
    ----------
    date : str
        ISO date (UTC).
    presets_by_module : dict
        Module -> :class:`~nuskybgd.models.presets.ComponentPresets` (line order).

    Returns
    -------
    dict
        ``tau_years`` and, per module, ``gain_slope`` [4], ``gain_offset`` [4]
        (keV), ``detector_level`` [4] and ``component_multiplier`` {template
        key: value}.
    """
    tau = mission_years(date)
    out = {"tau_years": tau, "date": date, "modules": {}}
    for m, presets in presets_by_module.items():
        mult = {"intbgd.apec": 0.9, "intn": 1.0 - 0.003 * tau}
        for i, ln in enumerate(presets.lines):
            mult[f"intbgd.{ln.name}"] = 0.5 + 0.05 * tau if i % 2 else 1.0 - 0.04 * tau
        if any(not 0 < v <= 1 for v in mult.values()):
            raise NuskybgdError(f"simulate-archive: date {date} is outside the truth model's 10 years")
        out["modules"][m] = {
            "gain_slope": [1.0 - (GAIN_DRIFT[m] + 0.0002 * k) * tau for k in range(4)],
            "gain_offset": [0.0] * 4,
            "detector_level": [1.0 - 0.005 * (k + 1) * tau for k in range(4)],
            "component_multiplier": mult,
        }
    return out


@dataclass(frozen=True)
class ObservationPlan:
    """What to simulate for one observation (picklable: a unit of work).

    Attributes
    ----------
    root : str
        Archive folder.
    obsid : str
    date_obs : str
        Start date (UTC).
    seed : int
    exposure : float
        Science-mode exposure, s.
    occ_exposure : float
        Occultation-mode exposure, s.
    occultation : bool
        Write the mode-02 file.
    shared : str or None
        Shared data folder.
    pa_pnt : float
        Roll, degrees.
    """

    root: str
    obsid: str
    date_obs: str
    seed: int
    exposure: float
    occ_exposure: float
    occultation: bool = True
    shared: str = None
    pa_pnt: float = 63.7

    @property
    def folder(self):
        """Observation folder."""
        return Path(self.root) / self.obsid


def plan_archive(outdir, n_observations, seed=0, start="2013-01-01", stop="2021-01-01", exposure=5000.0,
                 occ_exposure=20000.0, shared=None, missing_occultation=(), last_exposure=None):
    """Dates, obsids and seeds of an archive (deterministic in ``seed``).

    Parameters
    ----------
    outdir : str or os.PathLike
    n_observations : int
        >= 1.
    seed : int
    start, stop : str
        Date range (UTC); observations are spread evenly with a random jitter
        of up to a quarter of the spacing.
    exposure, occ_exposure : float
        Science and occultation exposures per observation, s.
    shared : str, optional
    missing_occultation : iterable of int
        Indices of observations written without their mode-02 file (bad-input tests).
    last_exposure : float, optional
        Science exposure of the last observation (the one that gets a ready
        bgdinfo.json), s; default ``exposure``.

    Returns
    -------
    list of ObservationPlan
    """
    n = int(n_observations)
    if n < 1:
        raise NuskybgdError(f"simulate-archive: --observations must be >= 1 (got {n})")
    rng = np.random.default_rng(seed)
    t0, t1 = Time(start, scale="utc"), Time(stop, scale="utc")
    span = (t1 - t0).jd
    step = span / n
    plans = []
    for i in range(n):
        jd = t0.jd + (i + 0.5) * step + rng.uniform(-0.25, 0.25) * step
        date = Time(jd, format="jd", scale="utc").isot[:19]
        plans.append(ObservationPlan(root=str(outdir), obsid=f"6{i + 1:07d}001", date_obs=date,
                                     seed=int(rng.integers(0, 2 ** 31 - 1)),
                                     exposure=float(last_exposure if (last_exposure and i == n - 1) else exposure),
                                     occ_exposure=float(occ_exposure), occultation=i not in set(missing_occultation),
                                     shared=None if shared is None else str(shared)))
    return plans


@lru_cache(maxsize=4)
def _module_setup(caldb_root, module):
    """Instrument map, pixel map and unit templates (1 s) per detector of a module (cached per process)."""
    caldb = Caldb(caldb_root)
    pixmap = pixel_map(read_pixpos(caldb.query("PIXPOS", f"FPM{module}").path))
    cal_imap, _ = read_instrmap(caldb.query("INSTRMAP", f"FPM{module}").path, "CALDB INSTRMAP")
    bad = bad_pixel_list(read_badpix(caldb.query("BADPIX", f"FPM{module}").path))
    imap = instrument_map(cal_imap, pixmap, bad)
    presets = component_presets(module)
    templates = []
    for k in range(4):
        rmf = read_rmf(str(caldb.rmf(f"FPM{module}", f"DET{k}")))
        frac = np.zeros(4)
        frac[k] = 1.0
        templates.append(component_templates(rmf, module, frac, 1.0, presets=presets, caldb=caldb))
    return imap, pixmap, presets, templates


def whole_detector_norms(presets, npix, n_live, truth_module):
    """Whole-detector norms of the internal components (see the module docstring).

    Parameters
    ----------
    presets : ComponentPresets
        Presets of the module (``ifactors`` of apec, lines and intn).
    npix : sequence of int
        Live pixels of each detector DET0..DET3 (instrument-map pixels).
    n_live : int
        Live pixels of the module (sum of ``npix``).
    truth_module : dict
        Injected truth of the module: ``component_multiplier`` (template
        key -> value) and ``detector_level`` (4 values).

    Returns
    -------
    dict
        Template key -> list of 4 norms.
    """
    mult = truth_module["component_multiplier"]
    lev = truth_module["detector_level"]
    out = {}
    for key, m in mult.items():
        if key == "intn":
            ifac = presets.intn.ifactors
            out[key] = [ifac[k] * npix[k] / ARCMIN2_PIX * m * lev[k] for k in range(4)]
        else:
            entry = presets.apec if key == "intbgd.apec" else next(
                ln for ln in presets.lines if f"intbgd.{ln.name}" == key)
            out[key] = [entry.ifactors[k] * npix[k] / n_live * m * lev[k] for k in range(4)]
    return out


def gain_channels(rng, chan, slope, offset, n_chan=4096):
    """Recorded PI channels of events drawn in nominal channels (uniform inside each channel).

    Parameters
    ----------
    rng : numpy.random.Generator
    chan : ndarray of int
        Channels at nominal gain.
    slope, offset : float
        Gain ``E' = slope * E + offset`` (offset in keV).
    n_chan : int

    Returns
    -------
    (ndarray of int64, ndarray of bool)
        Recorded channels and whether each lies inside 0..n_chan-1.
    """
    e = 1.6 + 0.04 * (chan + rng.random(chan.size))
    c = np.floor((slope * e + offset - 1.6) / 0.04).astype(np.int64)
    return c, (c >= 0) & (c < n_chan)


def _copy_cards(src, dst, skip=("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT",
                                  "TFIELDS", "EXTNAME", "CHECKSUM", "DATASUM")):
    for card in src.cards:
        k = card.keyword
        if k in skip or k.startswith(("TTYPE", "TFORM", "TUNIT", "TNULL", "TSCAL", "TZERO", "TDIM")) or not k:
            continue
        if k in ("COMMENT", "HISTORY"):
            continue
        dst[k] = (card.value, card.comment)


def _finish_science(tmp_ev, final_ev, rng, tags, names, truth_mod, npix_unused=None):
    """Thin the science events by component/detector multipliers and apply the gain; write the final file."""
    with fits.open(tmp_ev) as hdul:
        hdus = [h.copy() for h in hdul]
    ev = next(h for h in hdus if h.name == "EVENTS")
    d = ev.data
    det = np.asarray(d["DET_ID"], np.int64)
    mult_c = truth_mod["component_multiplier"]
    lev = np.asarray(truth_mod["detector_level"])
    comp_mult = np.array([mult_c.get(n, 1.0) for n in names] + [1.0])  # last: point source
    internal = np.array([n in mult_c for n in names] + [False])
    m = comp_mult[tags] * np.where(internal[tags], lev[det], 1.0)
    keep = rng.random(det.size) < m
    pi = np.asarray(d["PI"], np.int64)
    slope = np.asarray(truth_mod["gain_slope"])[det]
    offset = np.asarray(truth_mod["gain_offset"])[det]
    e = 1.6 + 0.04 * (pi + rng.random(pi.size))
    newpi = np.floor((slope * e + offset - 1.6) / 0.04).astype(np.int64)
    keep &= (newpi >= 0) & (newpi < 4096)
    data = d[keep]
    data["PI"][:] = newpi[keep]
    ev.data = data
    ev.header["HISTORY"] = "nuskybgd simulate-archive: thinned by epoch multipliers, gain applied"
    fits.HDUList(hdus).writeto(final_ev, checksum=True)
    return tags[keep]


def _write_occultation(path, sci_header, gti_template, rng, plan, module, truth_mod, occ_norms, setup):
    """Mode-02 event file: internal background only, with the epoch's gain."""
    imap, pixmap, _presets, templates = setup
    tstart = float(sci_header["TSTOP"]) + 100.0
    tstop = tstart + plan.occ_exposure
    cols = {c: [] for c in ("TIME", "PI", "DET_ID", "RAWX", "RAWY", "GRADE", "DET1X", "DET1Y", "X", "Y")}
    expected, drawn = {}, {}
    for key, norms in occ_norms.items():
        expected[key], drawn[key] = [0.0] * 4, [0] * 4
        for k in range(4):
            tmpl = np.clip(np.asarray(templates[k][key], float), 0, None) * plan.occ_exposure
            mu = float(norms[k] * tmpl.sum())
            n = int(rng.poisson(mu)) if mu > 0 else 0
            expected[key][k], drawn[key][k] = mu, n
            if n == 0:
                continue
            chan = draw_categorical(rng, tmpl, n)
            pi, ok = gain_channels(rng, chan, truth_mod["gain_slope"][k], truth_mod["gain_offset"][k])
            live = np.flatnonzero((imap == k + 1).ravel())
            p = live[draw_categorical(rng, np.ones(live.size), n)]
            py, px = np.divmod(p, imap.shape[1])
            pi, py, px = pi[ok], py[ok], px[ok]
            n = pi.size
            raw = pixmap.rawpix[py, px]
            sx, sy = det1_to_sky(px + rng.random(n) - 0.5, py + rng.random(n) - 0.5, 499.5, 499.5,
                                 float(sci_header["PA_PNT"]))
            cols["TIME"].append(tstart + rng.random(n) * plan.occ_exposure)
            cols["PI"].append(pi.astype(np.int32))
            cols["DET_ID"].append(np.full(n, k, np.uint8))
            cols["RAWX"].append((raw % 32).astype(np.uint8))
            cols["RAWY"].append((raw // 32).astype(np.uint8))
            cols["GRADE"].append(np.zeros(n, np.int16))
            cols["DET1X"].append((px + 1).astype(np.int16))
            cols["DET1Y"].append((py + 1).astype(np.int16))
            cols["X"].append((np.clip(sx, 0, 999) + 1).astype(np.float32))
            cols["Y"].append((np.clip(sy, 0, 999) + 1).astype(np.float32))
    data = {c: np.concatenate(v) for c, v in cols.items()}
    order = np.argsort(data["TIME"], kind="stable")
    fmt = {"TIME": "D", "PI": "J", "DET_ID": "B", "RAWX": "B", "RAWY": "B", "GRADE": "I", "DET1X": "I",
           "DET1Y": "I", "X": "E", "Y": "E"}
    hdu = fits.BinTableHDU.from_columns([fits.Column(name=c, format=fmt[c], array=data[c][order])
                                         for c in fmt], name="EVENTS")
    _copy_cards(sci_header, hdu.header)
    date = (Time(MISSION_EPOCH, scale="utc") + TimeDelta(tstart, format="sec")).utc.isot[:19]
    date_end = (Time(MISSION_EPOCH, scale="utc") + TimeDelta(tstop, format="sec")).utc.isot[:19]
    for k, v in (("TSTART", tstart), ("TSTOP", tstop), ("TELAPSE", tstop - tstart), ("ONTIME", plan.occ_exposure),
                 ("LIVETIME", plan.occ_exposure), ("EXPOSURE", plan.occ_exposure), ("DEADC", 1.0),
                 ("DATE-OBS", date), ("DATE-END", date_end)):
        hdu.header[k] = v
    hdu.header["HISTORY"] = "nuskybgd simulate-archive: Earth-occultation mode (02), internal background only"
    gti = fits.BinTableHDU.from_columns(
        [fits.Column(name="START", format="D", unit="s", array=np.array([tstart])),
         fits.Column(name="STOP", format="D", unit="s", array=np.array([tstop]))], name="GTI")
    _copy_cards(gti_template, gti.header)
    gti.header["TSTART"], gti.header["TSTOP"] = tstart, tstop
    prim = fits.PrimaryHDU()
    for k in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT"):
        prim.header[k] = sci_header[k]
    prim.header["DATE-OBS"] = date
    fits.HDUList([prim, hdu, gti]).writeto(path, checksum=True)
    return {"exposure": plan.occ_exposure, "tstart": tstart, "tstop": tstop, "expected_counts": expected,
            "drawn_counts": drawn, "n_events": int(data["TIME"].size)}


def _source_region(path, sci_header, truth_mod):
    src = truth_mod.get("source")
    if not src:
        return None
    w = sky_wcs(sci_header)
    ra, dec = w.all_pix2world([[src["x"], src["y"]]], 1)[0]
    Path(path).write_text("# Region file format: DS9 version 4.1\n# point source of the simulation (exclude)\n"
                          f"fk5\ncircle({ra:.6f},{dec:.6f},90\")\n")
    return [float(ra), float(dec)]


def simulate_archive_observation(plan, clobber=False):
    """Simulate one observation of an archive (both modes, both modules).

    Parameters
    ----------
    plan : ObservationPlan
    clobber : bool
        Replace an existing observation folder.

    Returns
    -------
    dict
        Summary: obsid, date, files, exposures, event counts.
    """
    folder = plan.folder
    if folder.exists():
        if not clobber:
            raise NuskybgdError(f"{folder}: exists (use --clobber to replace)")
        shutil.rmtree(folder)
    caldb_root = Path(plan.root) / "caldb"
    tmp = Path(plan.root) / f".tmp_{plan.obsid}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        (tmp / "caldb").symlink_to(caldb_root.resolve(), target_is_directory=True)
        sim = simulate_observation(tmp, seed=plan.seed, obsid=plan.obsid, exposure=plan.exposure,
                                   pa_pnt=plan.pa_pnt, scale_spread=0.0, date_obs=plan.date_obs,
                                   object_name=f"ARCHIVE_{plan.obsid}", shared=plan.shared, progress=False)
        rng = np.random.default_rng(plan.seed + 1)
        setups = {m: _module_setup(str(caldb_root.resolve()), m) for m in ("A", "B")}
        truth = sim.truth
        epoch = epoch_truth(plan.date_obs, {m: setups[m][2] for m in setups})
        truth["archive"] = {"epoch_truth": epoch, "occultation": {}, "science_thinning":
                            "science events kept with probability component_multiplier x detector_level "
                            "(internal components only); gain applied to every event"}
        (tmp / "event_cl" / "final").mkdir()
        files = {}
        for m in ("A", "B"):
            tm = epoch["modules"][m]
            names = truth["modules"][m]["component_order"]
            final = tmp / "event_cl" / "final" / f"nu{plan.obsid}{m}01_cl.evt"
            _finish_science(sim.events[m], final, rng, sim.event_components(m), names, tm)
            files[f"{m}01"] = final
            sci_header = fits.getheader(final, "EVENTS")
            gti_hdr = fits.getheader(final, "GTI")
            ppn = truth["modules"][m]["per_pixel_norm"]
            for key, mult in tm["component_multiplier"].items():
                ppn[key] = [v * mult * tm["detector_level"][k] for k, v in enumerate(ppn[key])]
            imap, _, presets, _ = setups[m]
            npix = [int(np.count_nonzero(imap == k + 1)) for k in range(4)]
            n_live = int(sum(npix))
            occ_norms = whole_detector_norms(presets, npix, n_live, tm)
            occ = {"whole_detector_norm": occ_norms, "live_pixels_per_det": npix, "n_live_pixels": n_live}
            if plan.occultation:
                p = tmp / "event_cl" / "final" / f"nu{plan.obsid}{m}02_cl.evt"
                occ.update(_write_occultation(p, sci_header, gti_hdr, rng, plan, m, tm, occ_norms, setups[m]))
                files[f"{m}02"] = p
            truth["archive"]["occultation"][m] = occ
            if m == "A":
                truth["archive"]["source_radec"] = _source_region(tmp / "source.reg", sci_header,
                                                                  truth["modules"][m])
        truth.pop("event_components", None)
        # Move everything into place at once.
        folder.mkdir(parents=True)
        (folder / "event_cl").mkdir()
        finals = []
        for m in ("A", "B"):
            for src in (sim.gti[m], sim.det1[m]):
                shutil.copy2(src, folder / "event_cl" / Path(src).name)
        for f in files.values():
            os.replace(f, folder / "event_cl" / f.name)
            finals.append(folder / "event_cl" / f.name)
        if (tmp / "source.reg").exists():
            os.replace(tmp / "source.reg", folder / "source.reg")
        with atomic_outputs([folder / "truth.json"], clobber=True) as out:
            Path(out[folder / "truth.json"]).write_text(json.dumps(truth, indent=1, default=_json_default))
    except BaseException:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"obsid": plan.obsid, "date_obs": plan.date_obs, "folder": plan.obsid,
            "occultation": plan.occultation, "science_exposure": plan.exposure,
            "occultation_exposure": plan.occ_exposure if plan.occultation else 0.0,
            "files": sorted(str(p.relative_to(Path(plan.root))) for p in finals)}


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def simulate_archive(outdir, n_observations, seed=0, start="2013-01-01", stop="2021-01-01", exposure=5000.0,
                     occ_exposure=20000.0, shared=None, clobber=False, runner=None, missing_occultation=(),
                     progress=True, last_exposure=None):
    """Simulate an archive of observations (see the module docstring).

    Parameters
    ----------
    outdir : str or os.PathLike
        Archive folder (created; must be empty or missing unless ``clobber``).
    n_observations : int
    seed : int
    start, stop : str
        Date range, UTC.
    exposure, occ_exposure : float
        Science and occultation exposure per observation, s.
    shared : str, optional
        Shared data folder.
    clobber : bool
    runner : callable, optional
        ``runner(func, items) -> list`` (e.g. a Dask map); default serial.
    missing_occultation : iterable of int
        Observations written without a mode-02 file.
    progress : bool
    last_exposure : float, optional
        Science exposure of the last observation, s.

    Returns
    -------
    (pathlib.Path, list of dict)
        ``archive.json`` and the per-observation summaries.
    """
    outdir = Path(outdir)
    index = outdir / "archive.json"
    if index.exists() and not clobber:
        raise NuskybgdError(f"{index}: exists (use --clobber to replace the archive)")
    outdir.mkdir(parents=True, exist_ok=True)
    shared_root = shared_folder(shared)
    caldb_root = outdir / "caldb"
    if not (caldb_root / "data" / "nustar" / "fpm" / "caldb.indx").exists():
        make_caldb(caldb_root, shared_caldb=shared_root / "caldb" / "nustar", progress=progress)
    plans = plan_archive(outdir, n_observations, seed=seed, start=start, stop=stop, exposure=exposure,
                         occ_exposure=occ_exposure, shared=shared_root, missing_occultation=missing_occultation,
                         last_exposure=last_exposure)
    if runner is None:
        def runner(func, items):
            return [func(x) for x in items]
    results = runner(functools.partial(simulate_archive_observation, clobber=clobber), plans)
    doc = {
        "format": "nuskybgd-archive-1", "seed": int(seed), "n_observations": len(plans),
        "start": start, "stop": stop, "mission_start": MISSION_START, "caldb": "caldb",
        "truth_model": __doc__.split("Injected truth", 1)[1].split("Whole-detector", 1)[0].strip(),
        "observations": results,
    }
    write_text(json.dumps(doc, indent=1) + "\n", index, clobber=True)
    return index, results
