"""Synthetic NuSTAR observations in the NuSTARDAS layout (``nuskybgd simulate``).

The simulation draws events from the four-component background model of
REFERENCE section 6, placed on the sky with the same DET1 -> sky geometry
as ``projbgd`` (REFERENCE section 4), so that region weights computed by
``projbgd`` describe the simulated events up to that section's rounding.

Layout written under ``OUTDIR``::

    event_cl/nu<obsid>A01_cl.evt   EVENTS (+ GTI, 4 x BADPIX), both modules
    event_cl/nu<obsid>A01_gti.fits STDGTI
    event_cl/nu<obsid>A_det1.fits  DET1_REFPOINT (aspect track)
    caldb/                         CALDB tree with caldb.indx (make_caldb)
    truth.json                     every injected quantity

Background model, per live DET1 pixel p of detector k (instrument map value
k + 1), expected counts per PI channel for exposure T (s)::

    apbgd : f_ap    * 0.002353/32 * aperture[p] * S_ap,k
    intbgd: f_c     * ifactor_c[k] / N_live * S_c,k      (apec and 29 lines)
    fcxb  : f_fcxb  * 0.002353*1.5*(2.45810736*1000/3600)^2 / 1000^2 * S_fcxb,k
    intn  : f_intn  * ifactor_intn[k] / 599.75 * S_intn,k

where S_x,k is the counts per channel per unit norm of component x folded
through detector k's response (``component_templates`` with
``det_fractions`` one-hot on k and exposure T: apbgd through RMF_k x Be x
DETABS_k, intbgd through RMF_k only, fcxb through RMF_k x fcxb ARF, intn
through diag.rmf), ``aperture`` the module's DET1 aperture image
(``aperture_image``) and the f's the injected scale factors (truth.json).
``N_live`` is the number of live DET1 pixels of the module: the intbgd
presets are read as the norms of a spectrum of the whole field, because the
presets taken per pixel would give ~50 counts/s of lines per module, far
above what NuSTAR records (see REFERENCE section 10 on the mean-norm flaw).
A region r (mask M_r) therefore holds, in expectation, the norms
``f_ap * 0.002353/32 * ap_r``, ``f_c * sum_k area_r[k] ifactor_c[k] / N_live``,
``f_fcxb * 0.002353*1.5*(...)^2 * sum(area_r)/1000^2`` and
``f_intn * sum_k area_r[k] ifactor_intn[k] / 599.75`` (truth.json lists the
per-pixel norms ``per_pixel_norm`` so that no formula has to be repeated).

Geometry (0-based index coordinates, pixel centres at integers; event
columns are these + 1, see docs/DESIGN.md "Pixel conventions"): a sample of
the reference-point track with X_DET1, Y_DET1 is at the aspect position
``(ax, ay) = (X_DET1 - 0.5, Y_DET1 - 0.5)``, so that the aspect-histogram pixel
``floor(X_DET1)`` is centred on it. With ``a = -(PA_PNT + 1 deg)`` and the
nudge ``n = (2.7 cos(-a) - 0.8 sin(-a), 2.7 sin(-a) + 0.8 cos(-a))`` of
REFERENCE section 4, projbgd gives the sky pixel (x, y) the DET1 pixel
``350 + round(R (x - ax + n_x, y - ay + n_y))`` with the symmetric matrix
``R = [[-cos a, sin a], [sin a, cos a]]`` (R R = identity). The inverse used
here for an event at DET1 position d (pixel index plus uniform sub-pixel
jitter in [-0.5, 0.5)) is therefore ``sky = (ax, ay) + R (d - 350) - n``.
"""

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.time import Time
from tqdm import tqdm

from ..calib.caldb import Caldb
from ..calib.presets import component_presets
from ..constants import APBGD_FACTOR, ARCMIN2_PIX, FCXB_FACTOR, SKY_PIXEL_ARCSEC
from ..errors import NuskybgdError
from ..io.events import read_badpix, read_det1_refpoint, read_gti
from ..io.ogip import read_rmf
from ..io.output import atomic_outputs, check_outputs, os_error, output_session
from ..io.skyfiles import read_instrmap, read_pixpos
from ..models.background import component_templates
from ..sky.instrmap import bad_pixel_list, instrument_map, pixel_map
from ..sky.projection import aperture_image, aspect_nudge, det1_to_sky, rotation_angle
from .caldb import make_caldb
from .events import append_events, draw_bad_pixels, draw_categorical, dwell_times, gti_span, simulate_source
from .files import json_default, observation_header, write_det1_file, write_events_file, write_gti_file
from .plots import plot_overview

__all__ = [
    "SimulatedObs", "simulate_observation", "check_simulation_parameters", "plot_overview", "draw_categorical",
    "SKY_PIXEL_ARCSEC",
    "FCXB_NORM_PER_PIXEL", "APBGD_NORM_PER_APERTURE", "INTN_PIXELS_PER_UNIT",
]

log = logging.getLogger("nuskybgd")

#: Sky grid side, pixels.
SKY_SIZE = 1000
#: fCXB cutoffpl norm per sky pixel (REFERENCE section 6).
FCXB_NORM_PER_PIXEL = FCXB_FACTOR
#: apbgd cutoffpl norm per unit of aperture image (REFERENCE section 6).
APBGD_NORM_PER_APERTURE = APBGD_FACTOR
#: intn norm = sum(area * ifactor) / this (REFERENCE section 6).
INTN_PIXELS_PER_UNIT = ARCMIN2_PIX

_REAL_OBS = "obs_80415201001"
_REAL_STEM = "nu80415201001"


@dataclass
class SimulatedObs:
    """Files written by :func:`simulate_observation` and what was injected.

    Attributes
    ----------
    root : pathlib.Path
        OUTDIR.
    obsid : str
        Observation ID.
    events, gti, det1 : dict of str to pathlib.Path
        Per module ("A", "B"): cleaned event file, GTI file, DET1
        reference-point file.
    caldb : pathlib.Path
        CALDB root (set ``$CALDB`` to it).
    truth_path : pathlib.Path
        truth.json.
    truth : dict
        Its content.
    tags_path : pathlib.Path, optional
        ``.npz`` file with the injected component of every event, per
        module (see :meth:`event_components`).
    """

    root: Path
    obsid: str
    events: dict
    gti: dict
    det1: dict
    caldb: Path
    truth_path: Path
    truth: dict = field(repr=False)
    tags_path: Path = None

    def event_components(self, module):
        """Component index of each event of a module (see truth ``component_order``).

        Parameters
        ----------
        module : str
            ``"A"`` or ``"B"``.

        Returns
        -------
        ndarray of int16
            Index into ``truth["modules"][module]["component_order"]``, in
            event-file order; ``len(component_order)`` marks source events.
        """
        with np.load(self.tags_path) as z:
            return z[module]

    @property
    def event_cl(self):
        """Folder ``OUTDIR/event_cl``."""
        return self.root / "event_cl"

    def paths(self):
        """Every file written, the CALDB tree excluded.

        Returns
        -------
        list of pathlib.Path
            Truth, tags, event, GTI and DET1 files.
        """
        out = [self.truth_path] + ([self.tags_path] if self.tags_path else [])
        for m in sorted(self.events):
            out += [self.events[m], self.gti[m], self.det1[m]]
        return out


# --------------------------------------------------------------------------
# Building blocks with I/O
# --------------------------------------------------------------------------

def check_simulation_parameters(seed=0, obsid="60001001002", exposure=50000.0, pa_pnt=63.7, ra=150.1,
                                dec=2.2, source_rate=0.2, scale_spread=0.3, bad_pixels_per_det=3,
                                date_obs="2021-03-14T06:00:00"):
    """Check the parameters of :func:`simulate_observation` before anything is written.

    Parameters
    ----------
    seed : int
        Random seed, >= 0.
    obsid : str
        OBS_ID: 1-32 letters, digits, ``_`` or ``-`` (it becomes part of file names).
    exposure : float
        Exposure, s: finite, in (0, 1e7].
    pa_pnt : float
        Roll angle, degrees: finite.
    ra, dec : float
        Pointing, degrees: RA in [0, 360], Dec in [-90, 90].
    source_rate : float
        Source rate, counts/s: finite, in [0, 1e4].
    scale_spread : float
        In [0, 1).
    bad_pixels_per_det : int
        In [0, 1000].
    date_obs : str
        ISO date (UTC) after 2010-01-01.

    Raises
    ------
    NuskybgdError
        Naming the option and the value given.
    """
    def number(name, value, lo, hi, lo_open=False):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise NuskybgdError(f"{name} {value!r}: not a number") from None
        if not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
            rng = f"({lo:g}, {hi:g}]" if lo_open else f"[{lo:g}, {hi:g}]"
            raise NuskybgdError(f"{name} {v:g}: must be a finite number in {rng}")
        return v

    try:
        seed_ok = int(seed) == seed and int(seed) >= 0
    except (TypeError, ValueError, OverflowError):
        seed_ok = False
    if not seed_ok:
        raise NuskybgdError(f"--seed {seed!r}: must be an integer >= 0")
    if not isinstance(obsid, str) or not re.fullmatch(r"[0-9A-Za-z_-]{1,32}", obsid):
        raise NuskybgdError(f"--obsid {obsid!r}: must be 1-32 letters, digits, '_' or '-'")
    number("--exposure", exposure, 0.0, 1e7, lo_open=True)
    number("--pa-pnt", pa_pnt, -1e4, 1e4)
    number("--ra", ra, 0.0, 360.0)
    number("--dec", dec, -90.0, 90.0)
    number("--source-rate", source_rate, 0.0, 1e4)
    if not (0.0 <= float(scale_spread) < 1.0):
        raise NuskybgdError(f"scale_spread {scale_spread!r}: must be in [0, 1)")
    if int(bad_pixels_per_det) != bad_pixels_per_det or not 0 <= bad_pixels_per_det <= 1000:
        raise NuskybgdError(f"bad_pixels_per_det {bad_pixels_per_det!r}: must be an integer in [0, 1000]")
    try:
        ok = Time(date_obs, scale="utc") > Time("2010-01-01T00:00:00", scale="utc")
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise NuskybgdError(f"date_obs {date_obs!r}: must be an ISO date (UTC) after 2010-01-01")


def shared_root(shared=None):
    """The shared data folder holding ``real/obs_80415201001``.

    Parameters
    ----------
    shared : str or os.PathLike, optional
        Use this folder (returned as it is).

    Returns
    -------
    pathlib.Path
        ``shared``, else ``$NUSKYBGD_SHARED``, else a ``shared`` folder beside
        or inside the repository checkout that holds the real observation.

    Raises
    ------
    NuskybgdError
        When no such folder is found.
    """
    if shared is not None:
        return Path(shared)
    env = os.environ.get("NUSKYBGD_SHARED")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2]
    for cand in (here.parent / "shared", here / "shared"):
        if (cand / "real" / _REAL_OBS).is_dir():
            return cand
    raise NuskybgdError("simulate: cannot find the shared data folder with real/obs_80415201001 "
                        "(set NUSKYBGD_SHARED)")


def _load_track(shared, module):
    """Real GTI-restricted aspect track of obs 80415201001 (time, x, y) and its GTIs."""
    base = shared / "real" / _REAL_OBS
    t, x, y, _ = read_det1_refpoint(base / f"{_REAL_STEM}{module}_det1.fits")
    start, stop = read_gti(base / f"{_REAL_STEM}{module}06_gti.fits")
    order = np.argsort(t, kind="stable")
    return t[order], x[order], y[order], start, stop


@output_session()
def simulate_observation(outdir, seed=0, obsid="60001001002", exposure=50000.0, pa_pnt=63.7,
                         ra=150.1, dec=2.2, source=True, source_rate=0.2, source_offset=(60.0, -45.0),
                         scale_spread=0.3, bad_pixels_per_det=3, object_name="SIM_FIELD",
                         date_obs="2021-03-14T06:00:00", shared=None, clobber=False, progress=True,
                         plot=None):
    """Simulate a NuSTAR observation (both modules) in the NuSTARDAS layout.

    Parameters
    ----------
    outdir : str or os.PathLike
        Output folder (created if missing); files already there are kept
        unless ``clobber``.
    seed : int
        Random seed: the same seed gives identical files.
    obsid : str
        OBS_ID (11 digits).
    exposure : float
        Target exposure, s: the real 2.8 ks track of observation 80415201001
        is stretched in time to give this summed dwell inside the GTIs.
    pa_pnt : float
        Roll angle PA_PNT, degrees.
    ra, dec : float
        Nominal pointing (RA_NOM/DEC_NOM), degrees; the sky grid's reference
        pixel 500.5.
    source : bool
        Add one point source (power law, King-profile PSF).
    source_rate : float
        Source photon rate before the detector gaps, counts/s.
    source_offset : (float, float)
        Source position relative to the centre of the detectors' footprint,
        sky pixels (x, y).
    scale_spread : float
        Injected scale factors f are drawn uniformly in [1 - s, 1 + s].
    bad_pixels_per_det : int
        Bad raw pixels per detector (written to the BADPIX extensions).
    object_name : str
        OBJECT keyword.
    date_obs : str
        Start date (UTC); TSTART follows from it.
    shared : str or os.PathLike, optional
        Shared data folder (real aspect track, real CALDB pieces); default
        ``$NUSKYBGD_SHARED`` or ``../shared`` next to the repository.
    clobber : bool
        Replace existing files.
    progress : bool
        Show a progress bar on stderr.
    plot : str or os.PathLike, optional
        Write a quick-look PNG there: counts image of each module (log
        scale) with the point source marked, and the PI spectrum of each
        component summed over the field.

    Returns
    -------
    SimulatedObs
        Paths of everything written and the truth dictionary.

    Raises
    ------
    NuskybgdError
        Missing shared data, existing outputs without ``clobber``.
    """

    check_simulation_parameters(seed=seed, obsid=obsid, exposure=exposure, pa_pnt=pa_pnt, ra=ra, dec=dec,
                                source_rate=source_rate, scale_spread=scale_spread,
                                bad_pixels_per_det=bad_pixels_per_det, date_obs=date_obs)
    shared = shared_root(shared)
    for need in (shared / "real" / _REAL_OBS, shared / "caldb" / "nustar"):
        if not need.is_dir():
            raise NuskybgdError(f"{need}: shared data folder not found (give --shared or set NUSKYBGD_SHARED)")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise NuskybgdError(f"{outdir}: output folder is a file, not a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "event_cl").mkdir(exist_ok=True)
    except OSError as exc:
        raise os_error(exc, outdir, "create output folder") from None
    rng = np.random.default_rng(seed)
    modules = ("A", "B")
    ev_paths = {m: outdir / "event_cl" / f"nu{obsid}{m}01_cl.evt" for m in modules}
    gti_paths = {m: outdir / "event_cl" / f"nu{obsid}{m}01_gti.fits" for m in modules}
    det1_paths = {m: outdir / "event_cl" / f"nu{obsid}{m}_det1.fits" for m in modules}
    truth_path = outdir / "truth.json"
    check_outputs([*ev_paths.values(), *gti_paths.values(), *det1_paths.values(), truth_path,
                   outdir / "truth_events.npz", *([plot] if plot else [])], clobber)

    caldb_root = outdir / "caldb"
    # The CALDB is replaced file by file in its own transaction (never deleted first).
    if clobber or not (caldb_root / "data" / "nustar" / "fpm" / "caldb.indx").exists():
        make_caldb(caldb_root, shared_caldb=shared / "caldb" / "nustar", progress=progress, clobber=clobber)
    caldb = Caldb(caldb_root)

    tstart = float((Time(date_obs, scale="utc") - Time("2010-01-01T00:00:00", scale="utc")).sec)
    tstart = math.floor(tstart)
    truth = {
        "seed": int(seed), "obsid": obsid, "object": object_name, "pa_pnt": pa_pnt, "ra_nom": ra,
        "dec_nom": dec, "date_obs": date_obs, "sky_pixel_arcsec": SKY_PIXEL_ARCSEC,
        "geometry": {
            "aspect_position": "ax = X_DET1 - 0.5, ay = Y_DET1 - 0.5 (0-based sky index coordinates)",
            "det1_to_sky": "sky = (ax, ay) + R (d - 350) - nudge; R = [[-cos a, sin a], [sin a, cos a]], "
                           "a = -(PA_PNT + 1 deg); event X/Y = sky + 1",
            "nudge": list(aspect_nudge(rotation_angle(pa_pnt))),
        },
        "model": {
            "apbgd": "per live pixel norm f_ap * 0.002353/32 * aperture[p]",
            "intbgd": "per live pixel of detector k: f_c * ifactor_c[k] / n_live",
            "fcxb": "per live pixel: f_fcxb * 0.002353*1.5*(2.45810736*1000/3600)^2/1000^2",
            "intn": "per live pixel of detector k: f_intn * ifactor_intn[k] / 599.75",
            "region_norms": "norm_r = sum over the region's DET1 pixels of per_pixel_norm "
                            "(= sum_k area_r[k] * per_pixel_norm[k] for the detector-uniform components; "
                            "apbgd: f_ap * 0.002353/32 * ap_r)",
        },
        "modules": {},
    }

    # Time axis common to both modules: the real track stretched in time.
    tracks = {m: _load_track(shared, m) for m in modules}
    t_a, _, _, s_a, e_a = tracks["A"]
    real_exposure = dwell_times(t_a, s_a, e_a).sum()
    stretch = float(exposure) / real_exposure
    t0 = t_a[0]

    outputs = {}
    ebar = tqdm(total=len(modules) * 8, desc="simulate", unit="step", disable=not progress, leave=False)
    for m in modules:
        t_real, x_real, y_real, gs_real, ge_real = tracks[m]
        t = tstart + (t_real - t0) * stretch
        gs = tstart + (gs_real - t0) * stretch
        ge = tstart + (ge_real - t0) * stretch
        dwell = dwell_times(t, gs, ge)
        expo = float(dwell.sum())
        span = gti_span(t, dwell, gs, ge)

        # Instrument and pixel maps from the simulated CALDB; bad pixels drawn here.
        date = date_obs
        pix = caldb.query("PIXPOS", f"FPM{m}", date=date)
        pixmap = pixel_map(read_pixpos(pix.path))
        imap_file = caldb.query("INSTRMAP", f"FPM{m}", date=date)
        cal_imap, _ = read_instrmap(imap_file.path, "CALDB INSTRMAP")
        bad = draw_bad_pixels(rng, pixmap, bad_pixels_per_det)
        bad_set = {(k, p) for k in bad for p in bad[k]}
        # CALDB bad pixels are applied by mkinstrmap too: include them.
        bp = caldb.query("BADPIX", f"FPM{m}", date=date)
        bad_set |= bad_pixel_list(read_badpix(bp.path))
        imap = instrument_map(cal_imap, pixmap, bad_set)
        live = imap > 0
        n_live = int(live.sum())
        aperture = np.asarray(aperture_image(m), dtype=np.float64)
        ebar.update()

        # Place the track so that the detectors' footprint is centred on the sky grid.
        yy, xx = np.nonzero(live)
        fx, fy = det1_to_sky(xx.mean(), yy.mean(), 0.0, 0.0, pa_pnt)
        inside = dwell > 0
        mx = np.median(x_real[inside] - 0.5)
        my = np.median(y_real[inside] - 0.5)
        shift_x = round((SKY_SIZE - 1) / 2.0 - float(fx) - mx, 3)
        shift_y = round((SKY_SIZE - 1) / 2.0 - float(fy) - my, 3)
        x_det1 = x_real + shift_x
        y_det1 = y_real + shift_y
        footprint_centre = ((SKY_SIZE - 1) / 2.0, (SKY_SIZE - 1) / 2.0)

        # Templates per detector (counts per channel per unit norm for this exposure).
        presets = component_presets(m)
        rmfs = {}
        templates = {}
        for k in range(4):
            rmf_path = caldb.rmf(f"FPM{m}", f"DET{k}", date=date)
            rmfs[k] = read_rmf(str(rmf_path))
            frac = np.zeros(4)
            frac[k] = 1.0
            templates[k] = component_templates(rmfs[k], m, frac, expo, presets=presets, caldb=caldb, date=date)
        ebar.update()
        names = list(templates[0].keys())

        # Injected scale factors: lines above 19.6 keV share the 19.6 keV line's factor,
        # so the fit option that ties them by preset ratio stays unbiased.
        def draw_f():
            return float(rng.uniform(1 - scale_spread, 1 + scale_spread))
        f = {}
        high_lines = []
        for name in names:
            if name.startswith("intbgd.lorentz"):
                e0 = _line_energy(presets, name)
                if e0 is not None and e0 > 19.7:
                    high_lines.append(name)
                    continue
            f[name] = draw_f()
        anchor = min((n for n in names if n.startswith("intbgd.lorentz") and n not in high_lines),
                     key=lambda n: abs((_line_energy(presets, n) or 0) - 19.6464))
        for name in high_lines:
            f[name] = f[anchor]

        ifac = {name: _ifactors(presets, name) for name in names}
        det_mask = [imap == k + 1 for k in range(4)]
        npix = [int(mk.sum()) for mk in det_mask]
        per_pixel = {}
        for name in names:
            if name == "apbgd":
                per_pixel[name] = None  # follows the aperture image
            elif name == "fcxb":
                per_pixel[name] = [f[name] * FCXB_NORM_PER_PIXEL] * 4
            elif name == "intn":
                per_pixel[name] = [f[name] * ifac[name][k] / INTN_PIXELS_PER_UNIT for k in range(4)]
            else:
                per_pixel[name] = [f[name] * ifac[name][k] / n_live for k in range(4)]

        # Expected and drawn counts per (component, detector); then positions and channels.
        cols = {c: [] for c in ("TIME", "PI", "DET_ID", "RAWX", "RAWY", "GRADE", "DET1X", "DET1Y", "X", "Y")}
        comp_tag = []
        expected, drawn = {}, {}
        rowp = dwell / dwell.sum()
        for name in names:
            expected[name], drawn[name] = [0.0] * 4, [0] * 4
            for k in range(4):
                tmpl = np.clip(np.asarray(templates[k][name], dtype=np.float64), 0, None)
                if name == "apbgd":
                    spatial = np.where(det_mask[k], aperture, 0.0)
                    norm_sum = f[name] * APBGD_NORM_PER_APERTURE * spatial.sum()
                else:
                    spatial = det_mask[k].astype(np.float64)
                    norm_sum = per_pixel[name][k] * npix[k]
                mu = float(norm_sum * tmpl.sum())
                n = int(rng.poisson(mu)) if mu > 0 else 0
                expected[name][k], drawn[name][k] = mu, n
                if n == 0:
                    continue
                p = draw_categorical(rng, spatial, n)
                py, px = np.divmod(p, spatial.shape[1])
                chan = draw_categorical(rng, tmpl, n)
                rows = draw_categorical(rng, rowp, n)
                append_events(cols, rng, px, py, chan, rows, k, t, span, x_det1, y_det1, pixmap, pa_pnt)
                comp_tag.append(np.full(n, names.index(name), np.int16))
            ebar.update(0)
        ebar.update()

        # Point source (optional).
        src_truth = None
        if source:
            src_truth = simulate_source(rng, cols, comp_tag, m, source_rate, footprint_centre, source_offset,
                                         expo, t, dwell, span, x_det1, y_det1, pa_pnt, imap, pixmap, rmfs,
                                         len(names), caldb.query("SPECRESP", f"FPM{m}", date=date).path)
        ebar.update()

        data = {c: np.concatenate(v) if v else np.zeros(0) for c, v in cols.items()}
        tags = np.concatenate(comp_tag) if comp_tag else np.zeros(0, np.int16)
        order = np.argsort(data["TIME"], kind="stable")
        data = {c: v[order] for c, v in data.items()}
        tags = tags[order]
        off_grid = ~((data["X"] >= 0.5) & (data["X"] < SKY_SIZE + 0.5) & (data["Y"] >= 0.5)
                     & (data["Y"] < SKY_SIZE + 0.5))
        if off_grid.any():
            raise RuntimeError(f"{int(off_grid.sum())} simulated events fell off the sky grid")
        outputs[m] = dict(data=data, tags=tags, t=t, gs=gs, ge=ge, x_det1=x_det1, y_det1=y_det1, expo=expo,
                          bad=bad)

        truth["modules"][m] = {
            "instrume": f"FPM{m}",
            "exposure": expo,
            "ontime": float(np.sum(ge - gs)),
            "time_stretch": stretch,
            "n_live_pixels": n_live,
            "live_pixels_per_det": npix,
            "aperture_sum_per_det": [float(aperture[det_mask[k]].sum()) for k in range(4)],
            "track_shift_sky_pixels": [shift_x, shift_y],
            "aspect_median": [float(np.median(x_det1[dwell > 0])), float(np.median(y_det1[dwell > 0]))],
            "footprint_centre_xy_1based": [footprint_centre[0] + 1, footprint_centre[1] + 1],
            "bad_pixels": {f"DET{k}": [[p % 32, p // 32] for p in bad[k]] for k in range(4)},
            "scale_factors": f,
            "ifactors": {n: ifac[n] for n in names if ifac[n] is not None},
            "per_pixel_norm": {n: v for n, v in per_pixel.items() if v is not None},
            "apbgd_norm_per_aperture": f["apbgd"] * APBGD_NORM_PER_APERTURE,
            "expected_counts": expected,
            "drawn_counts": drawn,
            "component_order": names,
            "rmf": {f"DET{k}": str(Path(caldb.rmf(f"FPM{m}", f"DET{k}", date=date)).resolve()
                                   .relative_to(caldb_root.resolve())) for k in range(4)},
            "source": src_truth,
            "n_events": int(data["TIME"].size),
            "event_components": "truth_events.npz: array <module> = index into component_order "
                                "(len(component_order) = point source) of each event, in file order",
        }
        ebar.update()

    # Write all files (all-or-nothing).
    tags_path = outdir / "truth_events.npz"
    all_paths = [*ev_paths.values(), *gti_paths.values(), *det1_paths.values(), truth_path, tags_path]
    with atomic_outputs(all_paths, clobber) as out:
        for m in modules:
            o = outputs[m]
            hdr = observation_header(m, obsid, object_name, ra, dec, pa_pnt, o, date_obs)
            write_events_file(out[ev_paths[m]], hdr, o, ra, dec, m)
            write_gti_file(out[gti_paths[m]], hdr, o)
            write_det1_file(out[det1_paths[m]], hdr, o)
            ebar.update()
        Path(out[truth_path]).write_text(json.dumps(truth, indent=1, default=json_default))
        with open(out[tags_path], "wb") as fh:
            np.savez_compressed(fh, **{m: outputs[m]["tags"] for m in modules})
    ebar.close()
    if plot:
        plot_overview(outputs, truth, plot, clobber=clobber)
    log.info("simulated observation %s in %s: %s events", obsid, outdir,
             ", ".join(f"FPM{m} {truth['modules'][m]['n_events']}" for m in modules))
    return SimulatedObs(root=outdir, obsid=obsid, events=ev_paths, gti=gti_paths, det1=det1_paths,
                        caldb=caldb_root, truth_path=truth_path, truth=truth, tags_path=tags_path)


def _preset_of(presets, name):
    """Preset entry (object with ``ifactors``, maybe ``linee``) of a template key."""
    if name == "intbgd.apec":
        return presets.apec
    if name.startswith("intbgd."):
        return next((ln for ln in presets.lines if ln.name == name[len("intbgd."):]), None)
    if name == "intn":
        return presets.intn
    return None


def _line_energy(presets, name):
    e = _preset_of(presets, name)
    v = getattr(e, "linee", None)
    return float(v) if v is not None else None


def _ifactors(presets, name):
    e = _preset_of(presets, name)
    v = getattr(e, "ifactors", None)
    return [float(x) for x in v] if v is not None else None

