"""The profiled-norm solver: Poisson (or chi-square) fit of norms that enter linearly.

For predicted counts ``mu = A theta + b`` (one block per spectrum) the
statistic (XSPEC/Sherpa ``cstat``, or ``chi`` with data variance) is convex
in theta, so a projected Newton method with analytic gradient and Hessian
converges in a few iterations; bounds are handled by the active set of the
projection. 1-sigma errors come from the inverse Hessian at the optimum,
and norms at their lower bound get a 90% upper limit (statistic rise of
:data:`UPPER_LIMIT_DELTA`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.optimize
from threadpoolctl import ThreadpoolController

from ..errors import NuskybgdError
from ..kernels.jit import njit

__all__ = ["UPPER_LIMIT_DELTA", "FitResult", "chi2_datavar", "cstat", "one_blas_thread", "solve", "solve_blocks",
           "stat_parts"]

_CONTROLLER = []


def one_blas_thread():
    """Context manager limiting BLAS to one thread (threadpoolctl).

    Returns
    -------
    context manager
        ``ThreadpoolController.limit(limits=1, user_api="blas")`` of a
        controller made once (``threadpool_limits`` scans the loaded
        libraries on every call: 2 ms, several times per fit).
    """
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


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
    statistic_name : str
        ``"cstat"`` or ``"chi"``.
    seconds : float
        Wall time of the solve, s.
    history : list of float
        Statistic after each Newton step.
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
    with one_blas_thread():
        return _solve_blocks(blocks, p, theta0, lower, statistic, tol, max_iter, upper)


def _solve_blocks(blocks, p, theta0, lower, statistic, tol, max_iter, upper):
    t0 = time.perf_counter()
    lower = np.zeros(p) if lower is None else np.asarray(lower, float)
    upper = np.full(p, np.inf) if upper is None else np.asarray(upper, float)
    if np.any(upper < lower):
        raise NuskybgdError("a free parameter has its hard maximum below its hard minimum")
    theta = np.clip(np.asarray(theta0, float), lower, upper)
    live = np.zeros(p, bool)
    raw = []
    curvature = np.zeros(p)
    for A, cols, b, d in blocks:
        A = np.asarray(A, float)
        cols = np.asarray(cols, np.int64)
        nz = np.any(A != 0, axis=0) if A.size else np.zeros(len(cols), bool)
        A, cols = A[:, nz], cols[nz]
        live[cols] = True
        b, d = np.asarray(b, float), np.asarray(d, float)
        raw.append((A, cols, b, d))
        # diagonal of the Hessian at the start (unscaled units)
        mu = A @ theta[cols] + b
        if statistic == "cstat":
            mu = np.where(mu > 0, mu, 1e-300)
        _, _, g2 = stat_parts(statistic, d, mu)
        curvature[cols] += g2 @ (A * A)
    # Parameters are scaled by their start magnitude, but never below their
    # 1-sigma curvature scale: a norm that an earlier solve left at ~1e-20
    # (not at its bound) had a scaled curvature ~1e-33 of the others, the
    # ridge of the Newton system froze it there and the solve "converged"
    # 0.7 in C-stat above the optimum (benchmarks/bench_nonlinear.py, gain)
    sigma = np.where(curvature > 0, 1.0 / np.sqrt(np.where(curvature > 0, curvature, 1.0)), 0.0)
    scale = np.where(np.abs(theta) > 0, np.abs(theta), np.where(sigma > 0, sigma, 1.0))
    scale = np.where(np.isfinite(sigma) & (sigma > scale), sigma, scale)
    bl = [(np.ascontiguousarray(A * scale[cols]), cols, b, d) for A, cols, b, d in raw]
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
            # one BLAS thread (one_blas_thread around the solve): a few
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

