"""Fit of one stacked whole-detector spectrum: norms, detector gain and line energies.

This is the seam between ``calibrate`` and the fit engine. A group is the
stacked spectrum of one detector of one module over one epoch. Its model is
the internal background of that detector (apec + 29 Lorentz lines + intn;
optionally the aperture/albedo continuum and the fCXB for science-mode
stacks), each component folded once through the detector's response, with

- every norm free (>= 0), solved by the engine's convex Newton solver
  (:func:`nuskybgd.fitting.solver.solve`), and
- the detector gain free: an event of true energy E is recorded at
  ``E' = slope * E + offset`` (keV). The folded templates are remapped to
  that gain exactly for counts spread uniformly inside each PI channel
  (:func:`apply_gain`), which is how ``simulate-archive`` applies its
  injected gain drift.

The gain is fitted on the profile statistic (norms re-solved at each gain):
a coarse grid in slope, then Nelder-Mead in (slope, offset) from scipy, and
1-sigma errors from the curvature of the profile (finite differences,
``cov = 2 H^-1`` for cstat), or, with ``bootstrap=N``, from the scatter of
the gain fitted to N Poisson replicas of the best-fit model (parametric
bootstrap). The bootstrap is what a stack of a few 10^4 counts needs: there
the 31 profiled norms (overlapping lines, several near zero) make the gain
estimator scatter ~1.4-2x more than the curvature says (simulated replicas
of one 26 000-count group: slope scatter 0.0034-0.0049 against a curvature
error of 0.0024; with the norms held fixed, or with 30x the counts, the
curvature error is right). The calibrated line energies of the detector are
``slope * linee_preset + offset``, their errors propagated from the gain
covariance.

When the engine grows its own non-linear gain and line-energy parameters
(issue 10), :func:`fit_group` is the one function to switch over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize

from ..errors import NuskybgdError
from ..fitting.solver import cstat, solve
from ..models.background import component_templates
from ..calib.presets import component_presets

__all__ = [
    "CHANNEL_E0",
    "CHANNEL_WIDTH",
    "GroupFit",
    "GroupSpectrum",
    "WARM_START_FLOOR",
    "AUTO_BOOTSTRAP",
    "AUTO_BOOTSTRAP_MAX_COUNTS",
    "apply_gain",
    "bootstrap_replicas",
    "cumulative_counts",
    "remap_cumulative",
    "fit_group",
    "group_components",
    "warm_start",
]

log = logging.getLogger("nuskybgd")

#: Lower energy edge of PI channel 0, keV.
CHANNEL_E0 = 1.6
#: Width of a PI channel, keV.
CHANNEL_WIDTH = 0.04
#: Warm starts of the norm solver lift every norm to this fraction of the largest one.
WARM_START_FLOOR = 1e-3


@dataclass
class GroupSpectrum:
    """One stacked whole-detector spectrum and what is needed to model it.

    Attributes
    ----------
    name : str
        Label for messages (file name or group key).
    counts : ndarray of float, shape (n_chan,)
        Counts per PI channel (channel 0 first).
    exposure : float
        Summed exposure, s.
    module : str
        ``"A"`` or ``"B"``.
    det : int
        Detector 0..3.
    rmf : object
        The detector's response: a Sherpa DataRMF or ``(energ_lo, energ_hi, matrix)``.
    mode : str
        ``"occultation"`` (internal background only) or ``"science"``
        (aperture and fCXB components added).
    area : float
        Detector area that contributed, DET1 pixels (exposure-weighted mean).
    module_area : float
        Live area of the whole module, DET1 pixels.
    detabs_file : str, optional
        DETABS file for the aperture/albedo ARF when no CALDB is given.
    caldb : object, optional
        CALDB (root or :class:`~nuskybgd.caldb.Caldb`) for that ARF.
    """

    name: str
    counts: np.ndarray
    exposure: float
    module: str
    det: int
    rmf: object
    mode: str = "occultation"
    area: float = float("nan")
    module_area: float = float("nan")
    detabs_file: str = None
    caldb: object = None


@dataclass
class GroupFit:
    """Result of :func:`fit_group`.

    Attributes
    ----------
    components : list of str
        Template keys of the fitted norms (column order).
    norms, norm_errors : ndarray
        Fitted norms (photons/cm^2/s-type units of each component, i.e. the
        XSPEC norm of the whole-detector spectrum) and 1-sigma errors (at the
        best-fit gain).
    slope, offset : float
        Gain: ``E' = slope * E + offset`` (offset in keV).
    slope_error, offset_error : float
        1-sigma errors (NaN when the gain is fixed), from ``error_method``.
    gain_covariance : ndarray, shape (2, 2)
    statistic : float
        cstat at the best fit.
    dof : int
        Noticed channels minus free parameters.
    n_bins : int
    line_energies : dict
        Line template key -> (energy, error) in keV, as recorded by the detector.
    fit_gain : bool
    predicted : ndarray
        Predicted counts per channel at the best fit (all channels).
    noticed : ndarray of bool
        Channels used.
    error_method : str
        ``"curvature"`` (of the profile cstat), ``"bootstrap N"`` (scatter of
        N replica fits) or ``"fixed"`` (gain not fitted).
    """

    components: list
    norms: np.ndarray
    norm_errors: np.ndarray
    slope: float
    offset: float
    slope_error: float
    offset_error: float
    gain_covariance: np.ndarray
    statistic: float
    dof: int
    n_bins: int
    line_energies: dict
    fit_gain: bool
    predicted: np.ndarray = field(repr=False)
    noticed: np.ndarray = field(repr=False)
    error_method: str = "curvature"

    def norm(self, key):
        """Fitted norm of one component.

        Parameters
        ----------
        key : str
            Template key of the component (an entry of ``components``).

        Returns
        -------
        float
            The norm.
        """
        return float(self.norms[self.components.index(key)])

    def norm_error(self, key):
        """1-sigma error of one component's norm.

        Parameters
        ----------
        key : str
            Template key of the component (an entry of ``components``).

        Returns
        -------
        float
            The error (same units as the norm).
        """
        return float(self.norm_errors[self.components.index(key)])


def apply_gain(templates, slope, offset):
    """Remap per-channel counts to a detector gain ``E' = slope * E + offset``.

    Parameters
    ----------
    templates : ndarray, shape (n_comp, n_chan) or (n_chan,)
        Counts per PI channel at nominal gain (channel c covers
        1.6 + 0.04 c .. 1.64 + 0.04 c keV), spread uniformly inside each channel.
    slope : float
        Gain slope (> 0).
    offset : float
        Gain offset, keV.

    Returns
    -------
    ndarray, same shape
        Counts per channel at that gain. Counts moved below channel 0 or
        above the last channel are lost, as for real events.
    """
    t = np.asarray(templates, dtype=np.float64)
    one = t.ndim == 1
    out = remap_cumulative(cumulative_counts(np.atleast_2d(t)), slope, offset)
    return out[0] if one else out


def cumulative_counts(templates):
    """Cumulative counts at the channel edges, the input of :func:`remap_cumulative`.

    Parameters
    ----------
    templates : ndarray, shape (n_comp, n_chan)
        Counts per PI channel at nominal gain.

    Returns
    -------
    ndarray, shape (n_comp, n_chan + 1)
        0 at the lower edge of channel 0, then running sums.
    """
    t2 = np.asarray(templates, dtype=np.float64)
    cum = np.zeros((t2.shape[0], t2.shape[1] + 1))
    np.cumsum(t2, axis=1, out=cum[:, 1:])
    return cum


def remap_cumulative(cum, slope, offset):
    """:func:`apply_gain` on precomputed cumulative counts (a fit evaluates many gains).

    Parameters
    ----------
    cum : ndarray, shape (n_comp, n_chan + 1)
        From :func:`cumulative_counts`.
    slope, offset : float
        Gain, as in :func:`apply_gain` (offset in keV).

    Returns
    -------
    ndarray, shape (n_comp, n_chan)
        Counts per channel at that gain.
    """
    n = cum.shape[1] - 1
    edges = CHANNEL_E0 + CHANNEL_WIDTH * np.arange(n + 1)
    # Nominal-gain channel coordinate of each recorded channel edge.
    pos = ((edges - offset) / slope - CHANNEL_E0) / CHANNEL_WIDTH
    pos = np.clip(pos, 0.0, float(n))
    i = np.minimum(np.floor(pos).astype(np.int64), n - 1)
    frac = pos - i
    f = cum[:, i] + frac * (cum[:, i + 1] - cum[:, i])
    return np.diff(f, axis=1)


def warm_start(theta):
    """Start of the norm solver from the solution at the previous gain.

    Every norm is lifted to at least :data:`WARM_START_FLOOR` times the
    largest: the solver leaves a norm started at ~0 stuck there even where
    its optimum at the new gain is positive, so the profile statistic would
    depend on the gain evaluated before (by up to 1 in cstat on 26 000-count
    groups), which spoiled both the Nelder-Mead minimum and the curvature
    errors (slope pulls std 2.9 on 64 simulated groups).

    Parameters
    ----------
    theta : ndarray
        Norms at the previous gain (>= 0).

    Returns
    -------
    ndarray
    """
    theta = np.asarray(theta, float)
    return np.maximum(theta, WARM_START_FLOOR * max(float(np.max(theta)), 1e-12))


def group_components(mode, presets, albedo=False):
    """Template keys fitted for a group.

    Parameters
    ----------
    mode : {"occultation", "science"}
    presets : ComponentPresets
    albedo : bool
        Add the aperture-shaped continuum (Earth albedo of occulted data).

    Returns
    -------
    list of str
    """
    keys = ["intbgd.apec"] + [f"intbgd.{ln.name}" for ln in presets.lines] + ["intn"]
    if mode == "science":
        keys = ["apbgd"] + keys + ["fcxb"]
    elif albedo:
        keys = ["apbgd"] + keys
    elif mode != "occultation":
        raise NuskybgdError(f"unknown stack mode '{mode}' (occultation or science)")
    return keys


def group_templates(spec, presets, keys):
    """Counts per channel per unit norm of each component for a group (rows in ``keys`` order).

    Parameters
    ----------
    spec : GroupSpectrum
    presets : ComponentPresets
    keys : list of str
        Template keys (:func:`group_components`).

    Returns
    -------
    ndarray, shape (len(keys), n_chan)
        Exposure included, nominal gain.
    """
    frac = np.zeros(4)
    frac[spec.det] = 1.0
    kw = {}
    if spec.caldb is None:
        # component_templates folds the aperture shape too, which needs detector absorption.
        if spec.detabs_file is None:
            raise NuskybgdError(f"{spec.name}: no CALDB and no DETABS file for the detector absorption")
        kw["detabs_file"] = spec.detabs_file
    tm = component_templates(spec.rmf, spec.module, frac, spec.exposure, presets=presets, caldb=spec.caldb, **kw)
    if tm.first_channel not in (0,):
        raise NuskybgdError(f"{spec.name}: the response's first channel is {tm.first_channel}; 0 expected")
    return np.array([np.asarray(tm[k], float) for k in keys])


#: Replicas of ``bootstrap="auto"`` for a group with few counts.
AUTO_BOOTSTRAP = 10
#: Below this many counts in the band, ``bootstrap="auto"`` bootstraps the gain errors: on simulated
#: 26,000-count stacks the curvature errors are 1.4-2x too small; with 30x the counts they are right.
AUTO_BOOTSTRAP_MAX_COUNTS = 2e5


def bootstrap_replicas(bootstrap, counts, what="bootstrap"):
    """Number of replica fits for a group's gain errors.

    Parameters
    ----------
    bootstrap : int or "auto"
        A number (0: curvature errors) or ``"auto"``.
    counts : float
        Counts of the group in the fitted band.
    what : str
        Name of the setting in the error message (``--bootstrap``, a group).

    Returns
    -------
    int
        :data:`AUTO_BOOTSTRAP` for ``"auto"`` below
        :data:`AUTO_BOOTSTRAP_MAX_COUNTS` counts, 0 above; else ``bootstrap``.

    Raises
    ------
    NuskybgdError
        Neither ``"auto"`` nor 0 or an integer of at least 3.
    """
    if bootstrap == "auto":
        return AUTO_BOOTSTRAP if counts < AUTO_BOOTSTRAP_MAX_COUNTS else 0
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0 or \
            0 < bootstrap < 3:
        raise NuskybgdError(f"{what} {bootstrap!r}: use auto, 0 (curvature errors) or 3 or more replicas")
    return int(bootstrap)


def fit_group(spec, presets=None, emin=3.0, emax=150.0, fit_gain=True, albedo=False, slope_range=0.025,
              slope_step=0.0025, bootstrap=0, seed=0, progress=None):
    """Fit one stacked whole-detector spectrum.

    Parameters
    ----------
    spec : GroupSpectrum
    presets : ComponentPresets or dict, optional
        Shapes (line energies and widths, apec, intn); default the bundle's.
    emin, emax : float
        Noticed band, keV (whole channels inside it).
    fit_gain : bool
        Fit the gain (slope, offset); otherwise slope 1, offset 0.
    albedo : bool
        Add an aperture-shaped continuum for the Earth albedo of occulted data.
    slope_range, slope_step : float
        Coarse grid of slopes 1 +- range searched before the local fit (the
        profile has local minima where a line jumps to its neighbour).
    bootstrap : int or "auto"
        Number of Poisson replicas of the best-fit model whose gain fits give
        the gain covariance (0: curvature of the profile at the best fit;
        ``"auto"``: see :func:`bootstrap_replicas`).
    seed : int
        Seed of the replicas (the same seed gives the same errors).
    progress : callable, optional
        Called with no argument after each replica fit.

    Returns
    -------
    GroupFit

    Raises
    ------
    NuskybgdError
        Zero exposure, no counts in the band, response problems, a negative
        ``bootstrap``.
    """
    if not (np.isfinite(spec.exposure) and spec.exposure > 0):
        raise NuskybgdError(f"{spec.name}: exposure is {spec.exposure} s; a group needs positive exposure")
    bootstrap_replicas(bootstrap, 0.0, f"{spec.name}: bootstrap")  # checked before any work
    if presets is None or isinstance(presets, dict):
        presets = component_presets(spec.module, presets)
    keys = group_components(spec.mode, presets, albedo=albedo)
    T = group_templates(spec, presets, keys)
    d_all = np.asarray(spec.counts, float)
    if T.shape[1] != d_all.size:
        raise NuskybgdError(f"{spec.name}: {d_all.size} channels but the response has {T.shape[1]}")
    lo = CHANNEL_E0 + CHANNEL_WIDTH * np.arange(d_all.size)
    noticed = (lo >= emin - 1e-9) & (lo + CHANNEL_WIDTH <= emax + 1e-9)
    d = d_all[noticed]
    if d.sum() <= 0:
        raise NuskybgdError(f"{spec.name}: no counts between {emin} and {emax} keV")
    bootstrap = bootstrap_replicas(bootstrap, float(d.sum()))
    cum = cumulative_counts(T)
    prof = _GainProfile(cum, noticed, d, len(keys))

    if fit_gain:
        slope, offset = prof.search(slope_range, slope_step)
        cov = _profile_covariance(prof, slope, offset) if not bootstrap else np.full((2, 2), np.nan)
        method = "curvature"
    else:
        slope, offset = 1.0, 0.0
        cov = np.full((2, 2), np.nan)
        method = "fixed"
    res, tg = prof.inner(slope, offset)
    pred = res.theta @ tg
    if fit_gain and bootstrap:
        cov = _bootstrap_covariance(cum, noticed, pred, res.theta, bootstrap, seed, progress,
                                    (slope_range, slope_step))
        method = f"bootstrap {bootstrap}"
    stat = cstat(d, np.where(pred[noticed] > 0, pred[noticed], 1e-300))
    n_free = len(keys) + (2 if fit_gain else 0)
    line_e = {}
    for ln in presets.lines:
        e0 = float(ln.linee)
        e = slope * e0 + offset
        var = e0 * e0 * cov[0, 0] + cov[1, 1] + 2 * e0 * cov[0, 1]
        line_e[f"intbgd.{ln.name}"] = (e, float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else float("nan"))
    return GroupFit(components=keys, norms=np.asarray(res.theta, float), norm_errors=np.asarray(res.errors, float),
                    slope=slope, offset=offset, slope_error=float(np.sqrt(cov[0, 0])) if cov[0, 0] >= 0 else np.nan,
                    offset_error=float(np.sqrt(cov[1, 1])) if cov[1, 1] >= 0 else np.nan, gain_covariance=cov,
                    statistic=float(stat), dof=int(d.size - n_free), n_bins=int(d.size), line_energies=line_e,
                    fit_gain=bool(fit_gain), predicted=pred, noticed=noticed, error_method=method)


class _GainProfile:
    """The cstat of one spectrum with its norms re-solved at each gain (callable on ``(slope, offset)``)."""

    def __init__(self, cum, noticed, d, n_comp, theta=None):
        self.cum, self.noticed, self.d = cum, noticed, d
        self.theta = np.full(n_comp, 1e-3) if theta is None else np.asarray(theta, float).copy()

    def inner(self, slope, offset, tol=1e-8):
        tg = remap_cumulative(self.cum, slope, offset)
        A = tg[:, self.noticed].T
        res = solve(A, np.zeros(self.d.size), self.d, warm_start(self.theta), statistic="cstat", tol=tol)
        return res, tg

    def __call__(self, p, tol=1e-6):
        slope, offset = float(p[0]), float(p[1])
        if not 0.5 < slope < 1.5:
            return 1e300
        res, _ = self.inner(slope, offset, tol)
        if np.all(np.isfinite(res.theta)):
            self.theta = res.theta
        return res.statistic

    def minimize(self, start, step):
        """Nelder-Mead from ``start`` with a first simplex of size ``step`` (slope, offset)."""
        x0 = np.asarray(start, float)
        simplex = np.array([x0, x0 + [step[0], 0.0], x0 + [0.0, step[1]]])
        opt = scipy.optimize.minimize(self, x0, method="Nelder-Mead",
                                      options={"xatol": 1e-6, "fatol": 1e-3, "initial_simplex": simplex,
                                               "maxiter": 400})
        return float(opt.x[0]), float(opt.x[1])

    def search(self, slope_range, slope_step):
        """Coarse grid in slope (offset 0), then the local minimum."""
        grid = 1.0 + np.arange(-slope_range, slope_range + 0.5 * slope_step, slope_step)
        vals = [self((s, 0.0), tol=1e-3) for s in grid]
        best = float(grid[int(np.argmin(vals))])
        self.theta = self.inner(best, 0.0)[0].theta
        return self.minimize((best, 0.0), (slope_step, 0.05))


def _bootstrap_covariance(cum, noticed, pred, theta, n, seed, progress, grid):
    """Gain covariance from the fits of ``n`` Poisson replicas of the best-fit model.

    Each replica is fitted exactly like the data (coarse slope grid, then
    Nelder-Mead, norms re-solved at each gain), so the spread includes
    whatever the search itself adds (local minima of the profile).
    """
    rng = np.random.default_rng(seed)
    fits = []
    for _ in range(n):
        c = rng.poisson(np.clip(pred[noticed], 0, None)).astype(float)
        prof = _GainProfile(cum, noticed, c, theta.size, theta)
        fits.append(prof.search(*grid))
        if progress is not None:
            progress()
    return np.cov(np.asarray(fits).T, ddof=1)


def _profile_covariance(profile, slope, offset, h=(1e-3, 0.03), passes=3):
    """Covariance of (slope, offset) from the profile cstat curvature: 2 H^-1.

    The folded model is piecewise linear in the gain (counts move between
    channels), so the profile has kinks on the scale of a channel; a step
    much smaller than the 1-sigma scale would measure a kink, not the
    curvature. The steps are therefore enlarged to half the 1-sigma scale
    found in the previous pass (up to ``passes`` times).
    """
    x0 = np.array([slope, offset])
    f0 = profile(x0)
    h = np.array(h, float)
    cov = np.full((2, 2), np.nan)
    for _ in range(passes):
        H = np.zeros((2, 2))
        for i in range(2):
            e = np.zeros(2)
            e[i] = h[i]
            H[i, i] = (profile(x0 + e) - 2 * f0 + profile(x0 - e)) / h[i] ** 2
        e0 = np.array([h[0], 0.0])
        e1 = np.array([0.0, h[1]])
        H[0, 1] = H[1, 0] = (profile(x0 + e0 + e1) - profile(x0 + e0 - e1) - profile(x0 - e0 + e1)
                             + profile(x0 - e0 - e1)) / (4 * h[0] * h[1])
        try:
            c = 2.0 * np.linalg.inv(H)
        except np.linalg.LinAlgError:
            break
        if not (c[0, 0] > 0 and c[1, 1] > 0):
            break
        cov = c
        sig = np.sqrt(np.diag(c))
        if np.all(h >= 0.5 * sig):
            break
        h = np.maximum(h, 0.5 * sig)
    return cov
