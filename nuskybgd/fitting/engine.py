"""The fit: a Poisson (or chi-square) likelihood solver for norms that enter linearly.

Every free parameter of the background model is a normalisation, and every
other parameter is frozen or linked to a frozen one. Each spectrum's
predicted counts are therefore

    mu_s = sum_j theta_j * A_s[:, j] + b_s,

where column j sums ``ratio * T`` over the component norms linked to free
parameter j (``T`` = counts per channel per unit norm, folded once through
that component's response), and ``b_s`` collects components whose norm is
frozen. The statistic (XSPEC/Sherpa ``cstat``, or ``chi`` with data
variance) is convex in theta, so a projected Newton method with analytic
gradient and Hessian converges in a few iterations; bounds (norm >= its
hard minimum, 0 by default) are handled by the active set of the projection.
1-sigma errors come from the inverse Hessian (Fisher matrix) at the optimum.

Free shape parameters and response gains are fitted by
:mod:`nuskybgd.fitting.nonlinear` (variable projection: this solver profiles
the norms out for every trial shape); :class:`LinearModel` accepts them only
when asked (``allow_shapes=True``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.optimize
from threadpoolctl import threadpool_limits

from ..errors import NuskybgdError
from ..kernels.jit import njit
from .model import norm_template_key

__all__ = [
    "FitResult",
    "LinearModel",
    "SpectrumData",
    "bin_mask_from_energy",
    "chi2_datavar",
    "cstat",
    "fit_state",
    "group_ids",
    "solve",
    "solve_blocks",
    "stat_parts",
]

log = logging.getLogger("nuskybgd")


def group_ids(grouping, n_chan):
    """Bin number (0-based) of every channel from an OGIP GROUPING column.

    Parameters
    ----------
    grouping : array of int or None
        1 starts a new bin, -1 continues the current one (0 is treated like 1).
        ``None`` means no grouping.
    n_chan : int
        Number of channels.

    Returns
    -------
    ndarray of int, shape (n_chan,)
    """
    if grouping is None:
        return np.arange(n_chan)
    g = np.asarray(grouping)
    if g.shape != (n_chan,):
        raise ValueError("grouping has the wrong length")
    start = g != -1
    start[0] = True
    return np.cumsum(start) - 1


def bin_mask_from_energy(ids, e_lo, e_hi, emin, emax, quality=None):
    """Bins kept by an energy selection.

    Parameters
    ----------
    ids : ndarray of int
        Bin of each channel (:func:`group_ids`).
    e_lo, e_hi : ndarray
        Channel energy bounds (keV, from EBOUNDS).
    emin, emax : float
        Band in keV.
    quality : ndarray, optional
        Channels with quality > 0 exclude their bin.

    Returns
    -------
    ndarray of bool, shape (n_bins,)
        A bin is kept when every channel in it lies inside [emin, emax]
        (to 1e-6 keV) and has good quality.
    """
    tol = 1e-6
    ok = (np.asarray(e_lo) >= emin - tol) & (np.asarray(e_hi) <= emax + tol)
    if quality is not None:
        ok &= np.asarray(quality) <= 0
    nb = int(ids[-1]) + 1
    bad = np.bincount(ids, weights=(~ok).astype(float), minlength=nb)
    return bad == 0


@dataclass
class SpectrumData:
    """What the engine needs of one spectrum.

    Attributes
    ----------
    counts : ndarray, shape (n_chan,)
        Observed counts per channel.
    templates : dict
        Template key -> ndarray (n_chan,) of predicted counts per unit norm
        (exposure included).
    ids : ndarray of int, shape (n_chan,)
        Bin of each channel (grouping).
    noticed : ndarray of bool, shape (n_bins,)
        Bins used in the fit.
    name : str
        For messages.
    """

    counts: np.ndarray
    templates: dict
    ids: np.ndarray
    noticed: np.ndarray
    name: str = ""

    @property
    def n_bins(self):
        """Number of bins after grouping."""
        return int(self.ids[-1]) + 1

    def group(self, x):
        """Sum a per-channel array into bins."""
        return np.bincount(self.ids, weights=x, minlength=self.n_bins)


def cstat(d, mu):
    """Cash statistic of XSPEC and Sherpa (``cstat``), summed over bins.

    Parameters
    ----------
    d, mu : ndarray
        Observed and predicted counts per bin.

    Returns
    -------
    float
        2 * sum(mu - d + d ln(d / mu)), with d ln(d/mu) = 0 where d = 0.
    """
    d = np.asarray(d, float)
    mu = np.asarray(mu, float)
    pos = d > 0
    t = mu - d
    t[pos] += d[pos] * np.log(d[pos] / mu[pos])
    return 2.0 * float(np.sum(t))


def chi2_datavar(d, mu):
    """Chi-square with data variance (XSPEC ``chi``, standard weighting).

    Parameters
    ----------
    d, mu : ndarray
        Observed and predicted counts per bin.

    Returns
    -------
    float
        sum((d - mu)^2 / max(d, 1)): zero-count bins get variance 1, as in XSPEC
        and Sherpa's ``chi2xspecvar``.
    """
    d = np.asarray(d, float)
    return float(np.sum((d - mu) ** 2 / np.maximum(d, 1.0)))


class LinearModel:
    """Predicted counts as a linear function of the free parameters.

    Parameters
    ----------
    state : FitState
        The parameter table (values, free/frozen flags, links).
    spectra : list of SpectrumData
        One per spectrum of the state, in order.
    allow_shapes : bool
        Accept free shape parameters (their current values are in the
        templates; :mod:`nuskybgd.fitting.nonlinear` fits them). By default
        a free shape parameter is an error.

    Attributes
    ----------
    free : list of (Source, int)
        The free norms (column order).
    columns : list of list of (key, int column or -1, factor)
        Per spectrum, each norm-carrying component: template key, column of
        its free root parameter (-1 for a frozen root), and factor
        (norm = factor * root value).
    """

    def __init__(self, state, spectra, allow_shapes=False):
        if len(spectra) != len(state.spectra):
            raise NuskybgdError(f"the state has {len(state.spectra)} spectra but {len(spectra)} were loaded")
        self.state = state
        self.spectra = spectra
        # the linear parameters: free norms (free shapes are fixed here)
        self.free = [(s, i) for s, i in state.free_parameters() if s.par_names[i % s.npar] == "norm"]
        col = {(s.number, i): k for k, (s, i) in enumerate(self.free)}
        self.columns = []
        for e, sd in zip(state.spectra, spectra):
            g = e.group
            entries = []
            for src in state.sources:
                labels = src.labels
                for ipar in range(1, src.npar + 1):
                    idx0 = src.index(g, ipar)
                    root, j, f = state.resolve(src, idx0)
                    is_norm = src.par_names[ipar - 1] == "norm"
                    key = norm_template_key(src.name, labels, src.par_components[ipar - 1]) if is_norm else None
                    if not is_norm:
                        if root.params[j].free and not allow_shapes:
                            raise NuskybgdError(
                                f"parameter {src.name or ''}:p{idx0 + 1} ({src.par_names[ipar - 1]}) of spectrum "
                                f"{e.number} is free; only norms are linear (fit it with "
                                "nuskybgd.fitting.nonlinear, e.g. nuskybgd fit --thaw)")
                        continue
                    if key is None:
                        raise NuskybgdError(f"model {src.name or src.number} ({src.expression}) is not part of the "
                                            "background model; the engine cannot evaluate it")
                    if key not in sd.templates:
                        raise NuskybgdError(f"{sd.name}: no template for component {key}")
                    rp = root.params[j]
                    c = col.get((root.number, j), -1) if rp.free else -1
                    entries.append((key, c, f, root, j))
            self.columns.append(entries)
        self.n_free = len(self.free)

    def design(self):
        """Design matrix, offset and data of the noticed bins.

        Returns
        -------
        A : ndarray, shape (n_bins_total, n_free)
            Counts per bin per unit of each free parameter.
        b : ndarray, shape (n_bins_total,)
            Counts from components with frozen norms.
        d : ndarray, shape (n_bins_total,)
            Observed counts.
        slices : list of slice
            Rows of each spectrum.
        """
        rows_a, rows_b, rows_d, slices = [], [], [], []
        start = 0
        for sd, entries in zip(self.spectra, self.columns):
            keep = sd.noticed
            nb = int(np.count_nonzero(keep))
            a = np.zeros((nb, self.n_free))
            b = np.zeros(nb)
            for key, c, f, root, j in entries:
                t = sd.group(sd.templates[key])[keep]
                if c >= 0:
                    a[:, c] += f * t
                else:
                    b += f * root.params[j].value * t
            rows_a.append(a)
            rows_b.append(b)
            rows_d.append(sd.group(np.asarray(sd.counts, float))[keep])
            slices.append(slice(start, start + nb))
            start += nb
        return np.vstack(rows_a), np.concatenate(rows_b), np.concatenate(rows_d), slices

    def design_blocks(self):
        """Per-spectrum design blocks for :func:`solve_blocks`.

        Returns
        -------
        list of (A_k, cols_k, b_k, d_k)
            Only the columns of free parameters that act on spectrum k.
        """
        A, b, d, slices = self.design()
        out = []
        for sl in slices:
            a = A[sl]
            cols = np.flatnonzero(np.any(a != 0, axis=0))
            out.append((np.ascontiguousarray(a[:, cols]), cols, b[sl], d[sl]))
        return out

    def theta(self):
        """Current values of the free parameters."""
        return np.array([s.params[i].value for s, i in self.free], float)

    def lower_bounds(self):
        """Hard minimum of each free parameter."""
        return np.array([s.params[i].hard_min for s, i in self.free], float)

    def upper_bounds(self):
        """Hard maximum of each free parameter."""
        return np.array([s.params[i].hard_max for s, i in self.free], float)

    def component_counts(self, k):
        """Predicted counts per channel of each component of spectrum ``k``.

        Parameters
        ----------
        k : int
            0-based spectrum index.

        Returns
        -------
        dict
            Template key -> ndarray (n_chan,) at the state's current values.
        """
        sd = self.spectra[k]
        out = {}
        for key, c, f, root, j in self.columns[k]:
            out[key] = out.get(key, 0.0) + f * root.params[j].value * np.asarray(sd.templates[key], float)
        return out

    def predicted_counts(self, k):
        """Total predicted counts per channel of spectrum ``k`` (ungrouped)."""
        comps = self.component_counts(k)
        return np.sum(list(comps.values()), axis=0)


@dataclass
class FitResult:
    """Outcome of :func:`solve`.

    Attributes
    ----------
    theta, errors : ndarray
        Best-fit free parameters and 1-sigma errors (NaN when undetermined).
    covariance : ndarray
        Covariance of theta (inverse Fisher matrix of all live parameters,
        those at a bound included; see ``at_bound``).
    statistic : float
        Statistic at the best fit.
    dof : int
        Noticed bins minus free parameters.
    n_iter : int
        Newton iterations.
    converged : bool
    at_bound : ndarray of bool
        Parameters pinned at a bound (lower or upper).
    seconds : float
        Wall time of the solve.
    upper_limits : ndarray
        For parameters at their lower bound: the value where the statistic
        has risen by :data:`UPPER_LIMIT_DELTA` (2.706, a 90% upper limit as
        XSPEC's ``error`` command), the other parameters held at the best
        fit; NaN for the others. A parameter that no bin with counts depends
        on (e.g. every spectrum at zero counts) has no curvature: its error is
        NaN, not 0, and the upper limit is its only result.
    """

    theta: np.ndarray
    errors: np.ndarray
    covariance: np.ndarray
    statistic: float
    dof: int
    n_iter: int
    converged: bool
    at_bound: np.ndarray
    statistic_name: str = "cstat"
    seconds: float = 0.0
    history: list = field(default_factory=list)
    upper_limits: np.ndarray = None


@njit(cache=True, nogil=True)
def _matvec(A, x, cols, b, out):
    """out = A @ x[cols] + b (single thread)."""
    n, c = A.shape
    for i in range(n):
        acc = b[i]
        for a in range(c):
            acc += A[i, a] * x[cols[a]]
        out[i] = acc
    return out


def stat_parts(name, d, mu):
    """Statistic and its derivatives with respect to the predicted counts.

    Parameters
    ----------
    name : {"cstat", "chi"}
    d, mu : ndarray
        Observed and predicted counts per bin (mu > 0 for cstat).

    Returns
    -------
    (float, ndarray, ndarray)
        Value, d stat / d mu and d2 stat / d mu2 per bin.
    """
    if name == "cstat":
        pos = d > 0
        val = mu - d
        val[pos] += d[pos] * np.log(d[pos] / mu[pos])
        ratio = np.zeros_like(mu)  # d / mu, 0 in empty bins (also where mu = 0 there)
        ratio[pos] = d[pos] / mu[pos]
        return 2.0 * float(np.sum(val)), 2.0 * (1.0 - ratio), 2.0 * ratio / np.where(pos, mu, 1.0)
    if name == "chi":
        var = np.maximum(d, 1.0)
        r = (mu - d) / var
        return float(np.sum((mu - d) * r)), 2.0 * r, 2.0 / var
    raise NuskybgdError(f"unknown statistic '{name}' (use cstat or chi)")


def solve(A, b, d, theta0, lower=None, statistic="cstat", tol=1e-8, max_iter=200, upper=None):
    """Minimise the statistic of mu = A theta + b with lower <= theta <= upper.

    Parameters
    ----------
    A : ndarray, shape (n, p)
        Counts per bin per unit parameter (non-negative for norms).
    b : ndarray, shape (n,)
        Fixed counts per bin.
    d : ndarray, shape (n,)
        Observed counts per bin.
    theta0 : ndarray, shape (p,)
        Starting point (moved inside the bounds).
    lower : ndarray, optional
        Lower bounds (default 0).
    statistic : {"cstat", "chi"}
    tol : float
        Convergence when the statistic changes by less than ``tol`` (absolute)
        and the Newton decrement is below ``tol``.
    max_iter : int
    upper : ndarray, optional
        Upper bounds (default none).

    Returns
    -------
    FitResult

    Notes
    -----
    See :func:`solve_blocks`, which this calls with one block.
    """
    A = np.asarray(A, float)
    p = A.shape[1]
    return solve_blocks([(A, np.arange(p), np.asarray(b, float), np.asarray(d, float))], p, theta0,
                        lower=lower, statistic=statistic, tol=tol, max_iter=max_iter, upper=upper)


def solve_blocks(blocks, p, theta0, lower=None, statistic="cstat", tol=1e-8, max_iter=200, upper=None):
    """Minimise the statistic of a model made of blocks (one per spectrum).

    Parameters
    ----------
    blocks : list of (A_k, cols_k, b_k, d_k)
        ``A_k`` (n_k, c_k): counts per bin per unit of the free parameters
        ``cols_k`` (c_k distinct indices into theta) that act on block k;
        ``b_k`` fixed counts, ``d_k`` observed counts per bin.
    p : int
        Number of free parameters.
    theta0 : ndarray, shape (p,)
        Starting point (moved inside the bounds).
    lower : ndarray, optional
        Lower bounds (default 0).
    statistic : {"cstat", "chi"}
    tol : float
        Convergence when the statistic changes by less than ``tol`` (absolute)
        and the Newton decrement is below ``tol``.
    max_iter : int
    upper : ndarray, optional
        Upper bounds (hard maxima; default none).

    Returns
    -------
    FitResult

    Notes
    -----
    Parameters are scaled by their starting magnitude, so the Newton system
    is well conditioned whatever the units of the norms. Each spectrum only
    depends on its module's reference norms and its own fCXB norm, so the
    gradient and Hessian are accumulated block by block (about 12 x 33
    columns instead of 12 x 76). The active set holds parameters at their
    bound whose gradient points outward; the Newton step is taken on the
    others and projected onto the bounds (lower and upper), with backtracking until the
    statistic decreases and every bin with data keeps mu > 0. Parameters
    that no noticed bin depends on are left at their start value with NaN
    errors.
    """
    # one BLAS thread: the products are small, and a multithreaded BLAS on a
    # busy machine spins (10 s against 0.2 s for the benchmark fit at load 7
    # on 2 cores, with the previous numba kernel as the single-thread answer)
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve_blocks(blocks, p, theta0, lower, statistic, tol, max_iter, upper)


def _solve_blocks(blocks, p, theta0, lower, statistic, tol, max_iter, upper):
    t0 = time.perf_counter()
    lower = np.zeros(p) if lower is None else np.asarray(lower, float)
    upper = np.full(p, np.inf) if upper is None else np.asarray(upper, float)
    if np.any(upper < lower):
        raise NuskybgdError("a free parameter has its hard maximum below its hard minimum")
    theta = np.clip(np.asarray(theta0, float), lower, upper)
    scale = np.where(np.abs(theta) > 0, np.abs(theta), 1.0)
    live = np.zeros(p, bool)
    bl = []
    for A, cols, b, d in blocks:
        A = np.asarray(A, float)
        cols = np.asarray(cols, np.int64)
        nz = np.any(A != 0, axis=0) if A.size else np.zeros(len(cols), bool)
        A, cols = A[:, nz], cols[nz]
        live[cols] = True
        bl.append((np.ascontiguousarray(A * scale[cols]), cols, np.asarray(b, float), np.asarray(d, float)))
    dead = ~live
    d_all = np.concatenate([blk[3] for blk in bl]) if bl else np.zeros(0)
    x = theta / scale
    lo = lower / scale
    hi = upper / scale
    hi_f = np.where(np.isfinite(hi), hi, 0.0)

    def predict(xv):
        return np.concatenate([_matvec(A, xv, cols, b, np.empty(len(b))) for A, cols, b, _ in bl]) \
            if bl else np.zeros(0)

    def derivatives(g1, g2):
        grad = np.zeros(p)
        H = np.zeros((p, p))
        start = 0
        for A, cols, _, d in bl:
            n = len(d)
            # one BLAS thread (threadpool_limits around the solve): a few
            # thousand bins x ~33 columns per block
            H[np.ix_(cols, cols)] += A.T @ (A * g2[start:start + n, None])
            grad[cols] += A.T @ g1[start:start + n]
            start += n
        return grad, H

    mu = predict(x)
    if statistic == "cstat" and np.any((mu <= 0) & (d_all > 0)):
        x = np.where(dead, x, np.clip(np.maximum(x, lo + 1.0), lo, hi))
        mu = predict(x)
        if np.any((mu <= 0) & (d_all > 0)):
            raise NuskybgdError("the model predicts zero counts in bins with data and has no free "
                                "component there")
    f, g1, g2 = stat_parts(statistic, d_all, mu)
    history = [f]
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        grad, H = derivatives(g1, g2)
        # A parameter acting only on bins without counts has no curvature (cstat is linear
        # in it, slope > 0): its minimum is exactly its lower bound. Newton cannot move it.
        flat = live & (np.diag(H) <= 0) & (grad > 0) & (x > lo) & (lo >= 0)
        if np.any(flat):
            x = np.where(flat, lo, x)
            mu = predict(x)
            f, g1, g2 = stat_parts(statistic, d_all, mu)
            history.append(f)
            continue
        at_lo = ((x <= lo + 1e-12 * np.maximum(1.0, np.abs(lo))) & (grad > 0)) | \
            ((x >= hi - 1e-12 * np.maximum(1.0, np.abs(hi_f))) & (grad < 0))
        fr = live & ~at_lo
        step = np.zeros(p)
        if np.any(fr):
            Hf = H[np.ix_(fr, fr)]
            gf = grad[fr]
            ridge = 1e-12 * np.max(np.abs(np.diag(Hf))) if Hf.size else 0.0
            try:
                c = scipy.linalg.cho_factor(Hf + ridge * np.eye(Hf.shape[0]), check_finite=False)
                step[fr] = -scipy.linalg.cho_solve(c, gf, check_finite=False)
            except scipy.linalg.LinAlgError:
                step[fr] = -np.linalg.lstsq(Hf, gf, rcond=None)[0]
        decrement = float(-grad @ step)
        alpha = 1.0
        improved = False
        for _ in range(60):
            xn = np.clip(x + alpha * step, lo, hi)
            mun = predict(xn)
            if statistic == "cstat" and np.any((mun <= 0) & (d_all > 0)):
                alpha *= 0.5
                continue
            fn, g1n, g2n = stat_parts(statistic, d_all,
                                       np.where(mun > 0, mun, 1e-300) if statistic == "cstat" else mun)
            if fn <= f - 1e-4 * alpha * max(decrement, 0.0) or fn <= f:
                improved = True
                break
            alpha *= 0.5
        if not improved:
            converged = abs(decrement) < max(tol, 1e-10 * abs(f)) * 10
            break
        df = f - fn
        x, mu, f, g1, g2 = xn, mun, fn, g1n, g2n
        history.append(f)
        if df < tol and decrement < max(tol, 1e-12 * abs(f)) * 10:
            converged = True
            break
    # Errors from the curvature of every live parameter, including those that
    # ended at their bound (as XSPEC's and Sherpa's covariance do). Holding a
    # bound norm fixed instead understates the errors of the norms it trades
    # counts with: on 20 simulated demo chains the apbgd pulls had std 1.48
    # that way, 0.76 over the fits with no norm at a bound
    # (benchmarks/chain_pulls.py).
    grad, H = derivatives(g1, g2)
    at_lower = (x <= lo + 1e-9 * np.maximum(1.0, np.abs(lo))) & (grad > 0)
    at_lo = at_lower | ((x >= hi - 1e-9 * np.maximum(1.0, np.abs(hi_f))) & (grad < 0))
    flat = live & (np.diag(H) <= 0)
    fr = live & ~flat
    cov_s = np.zeros((p, p))
    if np.any(fr):
        Hf = H[np.ix_(fr, fr)]
        try:
            inv = np.linalg.inv(Hf)
        except np.linalg.LinAlgError:
            inv = np.linalg.pinv(Hf)
        # statistic = -2 ln L, so Fisher = H / 2 and cov = 2 H^-1
        cov_s[np.ix_(fr, fr)] = 2.0 * inv
    cov = cov_s * scale[:, None] * scale[None, :]
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    err[dead | flat] = np.nan
    ul = np.full(p, np.nan)
    for j in np.flatnonzero(at_lower & live):
        ul[j] = _upper_limit(lambda xv: stat_parts(statistic, d_all, predict(xv))[0], x, j, lo[j], f,
                             err[j] / scale[j] if np.isfinite(err[j]) and err[j] > 0 else 1.0) * scale[j]
    n = len(d_all)
    return FitResult(theta=x * scale, errors=err, covariance=cov, statistic=f,
                     dof=int(n - np.count_nonzero(live)), n_iter=it, converged=bool(converged), at_bound=at_lo,
                     statistic_name=statistic, seconds=time.perf_counter() - t0, history=history,
                     upper_limits=ul)


#: Rise of the statistic that defines the upper limit of a parameter at its bound (90%, as XSPEC's error).
UPPER_LIMIT_DELTA = 2.706


def _upper_limit(stat, x, j, lo, f0, step):
    """Value of x[j] above its bound ``lo`` where ``stat`` reaches f0 + UPPER_LIMIT_DELTA (others fixed)."""
    target = f0 + UPPER_LIMIT_DELTA

    def h(t):
        xv = x.copy()
        xv[j] = lo + t
        return stat(xv) - target
    a, b = 0.0, max(step, 1e-12)
    for _ in range(200):
        hb = h(b)
        if not np.isfinite(hb):
            return np.nan
        if hb > 0:
            break
        a, b = b, 2.0 * b
    else:
        return np.inf  # the statistic never rises: no constraint
    return lo + scipy.optimize.brentq(h, a, b, xtol=1e-10 * b, rtol=1e-8)


def fit_state(state, spectra, statistic=None, fit=True, allow_shapes=False):
    """Fit the free norms of a state to the spectra and store the results.

    Parameters
    ----------
    state : FitState
        Modified in place: free values, linked values, errors, and
        ``info["fit"]`` (statistic, dof, iterations, time).
    spectra : list of SpectrumData
    statistic : {"cstat", "chi"}, optional
        Default: ``state.statistic``.
    fit : bool
        When false, only evaluate the statistic at the current values.
    allow_shapes : bool
        Accept free shape parameters (held at their values; the templates
        must describe them: :mod:`nuskybgd.fitting.nonlinear`).

    Returns
    -------
    (LinearModel, FitResult or None)
    """
    statistic = statistic or state.statistic
    if statistic not in ("cstat", "chi"):
        raise NuskybgdError(f"statistic '{statistic}' is not supported (use cstat or chi)")
    model = LinearModel(state, spectra, allow_shapes=allow_shapes)
    A, b, d, _ = model.design()
    theta0 = model.theta()
    if fit:
        res = solve_blocks(model.design_blocks(), model.n_free, theta0, lower=model.lower_bounds(),
                           upper=model.upper_bounds(), statistic=statistic)
        limits = []
        for (s, i), v, e, u in zip(model.free, res.theta, res.errors, res.upper_limits):
            s.params[i].value = float(v)
            s.params[i].error = None if not np.isfinite(e) else float(e)
            if not np.isnan(u):
                limits.append({"source": s.name or s.number, "param": i + 1, "value": float(u),
                               "delta_statistic": UPPER_LIMIT_DELTA})
        if not res.converged:
            log.warning("fit did not converge in %d iterations", res.n_iter)
    else:
        res = None
    state.update_linked_values()
    mu = A @ model.theta() + b
    if statistic == "cstat":
        stat = cstat(d, np.where(mu > 0, mu, 1e-300))
    else:
        stat = chi2_datavar(d, mu)
    state.statistic = statistic
    state.info["fit"] = {
        "statistic": statistic, "value": stat, "n_bins": len(d), "n_free": model.n_free,
        "dof": int(len(d) - model.n_free), "fitted": bool(fit),
        "converged": None if res is None else res.converged,
        "iterations": None if res is None else res.n_iter,
        "seconds": None if res is None else res.seconds,
    }
    if res is not None:
        state.info["fit"]["upper_limits"] = limits
    return model, res
