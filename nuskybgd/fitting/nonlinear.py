"""Free shapes and response gains: variable projection around the norm solver.

For fixed shape parameters and gains the background model is linear in its
norms and :func:`nuskybgd.fitting.solver.solve_blocks` finds the best norms
exactly (a convex problem). The few nonlinear parameters ``phi`` (line
energies and widths, apec kT/abundance, cutoffpl PhoIndex/HighECut, bknpower
indices and break, and the per-spectrum response gain slope/offset) are
fitted on the *profiled* statistic ``S(phi) = min_theta S(theta, phi)``
(variable projection) by a bounded Levenberg-Marquardt iteration:

* derivatives: ``d mu / d phi_q`` = sum over the components that ``phi_q``
  touches of ``norm_c x R^T (A_c x d s_c / d phi_q)``: the photon spectrum
  ``s_c`` is differentiated by central differences in energy space (cheap
  kernel calls) and the sum is folded once per parameter and spectrum (the
  fold is linear, so this equals differencing re-folded templates); a line
  energy re-folds one lorentz column only, a gain every column of its
  spectrum;
* the reduced Gauss-Newton matrix is the Schur complement
  ``H_pp - H_pt H_tt^-1 H_tp`` over the norms not held at a bound, with
  ``H = X^T diag(d2S/dmu2) X`` and ``X = [templates | d mu/d phi]``; its
  gradient is ``d S / d phi`` at the profiled norms (envelope theorem);
* steps are projected onto the hard limits (lower and upper) of every
  parameter; the damping follows Marquardt (``lambda x diag``).

Templates are folded with a float32 copy of the dense RMF while iterating
(the matrix is stored as float32 in OGIP files; sums in float32 differ by
~1e-7 relative), then once more in float64 at the solution, where the norms
are re-solved, the statistic is reported and the covariance of all free
parameters (norms and nonlinear) is ``2 H^-1`` of the full Gauss-Newton
matrix.

The response gain follows XSPEC's ``gain`` (see :mod:`nuskybgd.kernels.gain`):
every component of a spectrum is evaluated on the shifted energy bins
``E / slope - offset`` and folded with the unchanged ARF values and RMF rows
(``diag.rmf`` included).

The pieces live in :mod:`nuskybgd.fitting.gains` (gain parameters),
:mod:`nuskybgd.fitting.folding` (photon spectra, responses) and
:mod:`nuskybgd.fitting.shapes` (:class:`NonlinearModel`); this module is the
Levenberg-Marquardt driver and re-exports the names used elsewhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from ..errors import NuskybgdError
from ..kernels.gain import rebin_integrated
from .engine import LinearModel
from .folding import SpectrumResponse, photon_spectrum
from .gains import GAIN_NAMES, gain_link, gain_params, gain_values, parameter_label, resolve_gain
from .shapes import NonlinearModel
from .solver import one_blas_thread, solve_blocks, stat_parts

__all__ = [
    "GAIN_NAMES",
    "NonlinearFit",
    "NonlinearModel",
    "SpectrumResponse",
    "fit_nonlinear",
    "gain_link",
    "gain_params",
    "gain_values",
    "parameter_label",
    "photon_spectrum",
    "resolve_gain",
    "scan_gain",
]

log = logging.getLogger("nuskybgd")

@dataclass
class NonlinearFit:
    """Outcome of :func:`fit_nonlinear`.

    Attributes
    ----------
    labels : list of str
        Every free parameter: norms first (``LinearModel.free`` order),
        then the nonlinear ones.
    values, errors : ndarray
        Best fit and 1-sigma errors (NaN when undetermined).
    covariance : ndarray
        Covariance of all free parameters (``2 H^-1``, Gauss-Newton).
    statistic : float
    dof : int
        Noticed bins minus free parameters.
    n_iter : int
        Levenberg-Marquardt iterations.
    n_eval : int
        Profiled-statistic evaluations (norm solves).
    converged : bool
    seconds : float
    history : list of float
        Statistic after each accepted step.
    linear : FitResult
        The final norm solve.
    model : LinearModel
        At the solution.
    n_norms : int
        Number of free norms (the first ``n_norms`` entries of ``labels``).
    """

    labels: list
    values: np.ndarray
    errors: np.ndarray
    covariance: np.ndarray
    statistic: float
    dof: int
    n_iter: int
    n_eval: int
    converged: bool
    seconds: float
    history: list = field(default_factory=list)
    linear: object = None
    model: object = None
    n_norms: int = 0


def _profile(nm, statistic, theta0, lm=None):
    """Solve the norms for the current shapes; returns (LinearModel, FitResult, blocks).

    ``lm``: the LinearModel of an earlier call, reused (the free norms and
    links do not change during a fit; values are read when used).
    """
    nm.refresh()
    if lm is None:
        lm = LinearModel(nm.state, nm.spectra, allow_shapes=True)
    blocks = lm.design_blocks()
    res = solve_blocks(blocks, lm.n_free, lm.theta() if theta0 is None else theta0, lower=lm.lower_bounds(),
                       upper=lm.upper_bounds(), statistic=statistic, tol=1e-9)
    for (s, i), v in zip(lm.free, res.theta):
        s.params[i].value = float(v)
    nm.state.update_linked_values()
    return lm, res, blocks


def scan_gain(nm, statistic, slopes=None, offsets=None):
    """Coarse start for free gains: one common trial gain for every spectrum.

    Parameters
    ----------
    nm : NonlinearModel
        With free gain parameters (their roots are set to the best trial).
    statistic : {"cstat", "chi"}
    slopes, offsets : sequence of float, optional
        First-stage grid (default slope 0.98..1.03 in steps of 0.0125,
        offset -0.4..0.6 keV in steps of 0.25); a second stage refines
        around the best point with half the steps.

    Returns
    -------
    (float, float, float)
        Best slope, offset and profiled statistic.

    Notes
    -----
    A gain moves line features by more than the detector resolution
    (slope 1.01 shifts a 144 keV line by 1.4 keV), so the profiled
    statistic has several minima; the scan puts the Levenberg-Marquardt
    start in the right one. Trial gains are applied in channel space (the
    folded templates at the current gain are integrated onto channels
    mapped by E / slope - offset, :func:`nuskybgd.kernels.gain.rebin_integrated`),
    which treats the RMF as locally shift-invariant and moves the ARF with
    the photons: adequate for a start, not for the fit.
    """
    roots = sorted({(k, w) for q, p in enumerate(nm.params) if p[0] == "gain" for k, w in [(p[1], p[2])]})
    if not roots:
        return None
    nm.refresh()
    base = [dict(sd.templates) for sd in nm.spectra]
    g0 = [gain_values(nm.state, k) for k in range(len(nm.spectra))]
    slopes = np.arange(0.98, 1.0301, 0.0125) if slopes is None else np.asarray(slopes, float)
    offsets = np.arange(-0.4, 0.601, 0.25) if offsets is None else np.asarray(offsets, float)
    theta = None
    free_k = {k for k, _ in roots}

    def trial(a, b):
        nonlocal theta
        for k, (sd, r) in enumerate(zip(nm.spectra, nm.responses)):
            if r.chan_lo is None:
                raise NuskybgdError(f"{sd.name}: channel energies unknown; cannot scan the gain")
            a0, b0 = g0[k]
            # relative gain with respect to the folded templates' own gain
            lo = (r.chan_lo / a * a0) - (b - b0) * a0
            hi = (r.chan_hi / a * a0) - (b - b0) * a0
            for key, t in base[k].items():
                sd.templates[key] = rebin_integrated(r.chan_lo, r.chan_hi, t, lo, hi) if k in free_k else t
        lm = LinearModel(nm.state, nm.spectra, allow_shapes=True)
        res = solve_blocks(lm.design_blocks(), lm.n_free, lm.theta() if theta is None else theta,
                           lower=lm.lower_bounds(), upper=lm.upper_bounds(), statistic=statistic, tol=1e-6)
        theta = res.theta
        return res.statistic

    best = (np.inf, 1.0, 0.0)
    for a in slopes:
        for b in offsets:
            f = trial(a, b)
            if f < best[0]:
                best = (f, a, b)
    ds, do = 0.5 * np.diff(slopes[:2])[0] if slopes.size > 1 else 0.0, \
        0.5 * np.diff(offsets[:2])[0] if offsets.size > 1 else 0.0
    for a in (best[1] - ds, best[1], best[1] + ds):
        for b in (best[2] - do, best[2], best[2] + do):
            f = trial(a, b)
            if f < best[0]:
                best = (f, a, b)
    for k, sd in enumerate(nm.spectra):
        sd.templates.update(base[k])
    for k, w in roots:
        nm.state.spectra[k].gain[w].value = float(best[1 + w])
    nm.state.update_linked_values()
    return best[1], best[2], best[0]


def _gauss_newton(nm, lm, res, blocks, statistic, full=False, derivs=None):
    """Reduced (or full) Gauss-Newton matrix and gradient at the profiled norms.

    ``derivs``: :meth:`NonlinearModel.derivatives` when already known.
    """
    p = lm.n_free
    q = len(nm.params)
    derivs = nm.derivatives() if derivs is None else derivs
    H = np.zeros((p + q, p + q))
    g = np.zeros(p + q)
    for (A, cols, b, d), (D, qs), sd in zip(blocks, derivs, nm.spectra):
        mu = A @ res.theta[cols] + b
        _, g1, g2 = stat_parts(statistic, d, np.where(mu > 0, mu, 1e-300))
        Db = sd.noticed_bins(D) if qs else np.zeros((len(d), 0))
        X = np.hstack([A, Db])
        idx = np.concatenate([np.asarray(cols, int), p + np.asarray(qs, int)]).astype(int)
        H[np.ix_(idx, idx)] += X.T @ (X * g2[:, None])
        g[idx] += X.T @ g1
    if full:
        return H, g
    fr = ~res.at_bound & np.isfinite(res.errors)
    fr_idx = np.flatnonzero(fr)
    Hpp = H[p:, p:]
    Hpt = H[p:, :p][:, fr_idx]
    Htt = H[np.ix_(fr_idx, fr_idx)]
    if fr_idx.size:
        ridge = 1e-12 * np.max(np.abs(np.diag(Htt)))
        c = scipy.linalg.cho_factor(Htt + ridge * np.eye(fr_idx.size), check_finite=False)
        Hr = Hpp - Hpt @ scipy.linalg.cho_solve(c, Hpt.T, check_finite=False)
    else:
        Hr = Hpp
    return 0.5 * (Hr + Hr.T), g[p:]


def fit_nonlinear(state, spectra, responses, statistic="cstat", max_iter=60, tol=1e-3, progress=None,
                  gain_scan=False):
    """Fit norms, free shape parameters and gains of a state.

    Parameters
    ----------
    state : FitState
        Modified in place: every free value and error, linked values,
        ``info["fit"]`` (statistic, dof, iterations, time) and
        ``info["covariance_all"]`` (all free parameters, labels).
    spectra : list of SpectrumData
        Counts, grouping and noticed bins per spectrum (templates are
        computed here).
    responses : list of SpectrumResponse
    statistic : {"cstat", "chi"}
    max_iter : int
        Levenberg-Marquardt iterations.
    tol : float
        Stop when the Gauss-Newton step is expected to lower the statistic
        by less than ``tol`` (XSPEC's fit delta is 0.01).
    progress : callable, optional
        Called with (iteration, statistic) after each accepted step.
    gain_scan : bool
        Start free gains from a coarse grid scan (:func:`scan_gain`)
        instead of their current values.

    Returns
    -------
    NonlinearFit

    Raises
    ------
    NuskybgdError
        Bad gains, a free parameter that changes nothing, apec kT/abundance
        free without AtomDB.
    """
    # one BLAS thread: the products here are small or memory-bound, and a
    # multithreaded BLAS on a busy 2-core machine spins (measured: a 3675 x 41
    # Gram matrix 0.16 s with 2 threads at load 5, 0.001 s with one)
    with one_blas_thread():
        return _fit_nonlinear(state, spectra, responses, statistic, max_iter, tol, progress, gain_scan)


def _fit_nonlinear(state, spectra, responses, statistic, max_iter, tol, progress, gain_scan):
    t0 = time.perf_counter()
    nm = NonlinearModel(state, spectra, responses)
    if gain_scan:
        scanned = scan_gain(nm, statistic)
        if scanned is not None:
            log.info("gain scan: start at slope %.4f, offset %.3f keV (%s %.2f)", scanned[0], scanned[1],
                     statistic, scanned[2])
    lo, hi = nm.bounds()
    phi = np.clip(nm.values(), lo, hi)
    nm.set_values(phi)
    lm, res, blocks = _profile(nm, statistic, None)
    f = res.statistic
    history = [f]
    n_eval = 1
    lam = 1e-3
    converged = not nm.params
    last_derivs = None
    it = 0
    for it in range(1, max_iter + 1 if nm.params else 1):
        derivs = nm.derivatives()
        last_derivs = (phi.copy(), derivs)
        Hr, gp = _gauss_newton(nm, lm, res, blocks, statistic, derivs=derivs)
        at_lo = (phi <= lo) & (gp > 0)
        at_hi = (phi >= hi) & (gp < 0)
        act = ~(at_lo | at_hi)
        # expected decrease of an undamped Gauss-Newton step: stop when tiny
        if np.any(act):
            Ha = Hr[np.ix_(act, act)]
            try:
                gn = np.linalg.lstsq(Ha, gp[act], rcond=1e-12)[0]
                if 0.5 * float(gp[act] @ gn) < tol:
                    converged = True
                    break
            except np.linalg.LinAlgError:
                pass
        else:
            converged = True
            break
        accepted = False
        while lam < 1e12:
            step = np.zeros_like(phi)
            dg = np.diag(Ha).copy()
            dg[dg <= 0] = 1.0
            try:
                step[act] = -np.linalg.solve(Ha + lam * np.diag(dg), gp[act])
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            trial = np.clip(phi + step, lo, hi)
            saved = (lm, res, blocks)
            nm.set_values(trial)
            lm_n, res_n, blocks_n = _profile(nm, statistic, res.theta, lm)
            n_eval += 1
            if res_n.statistic < f:
                phi, f = trial, res_n.statistic
                lm, res, blocks = lm_n, res_n, blocks_n
                history.append(f)
                lam = max(lam / 10, 1e-9)
                accepted = True
                if progress is not None:
                    progress(it, f)
                break
            nm.set_values(phi)
            lm, res, blocks = saved
            for (s_, i), v in zip(lm.free, res.theta):
                s_.params[i].value = float(v)
            state.update_linked_values()
            lam *= 10
        if not accepted:
            # no damped step lowers the statistic: at the minimum to the
            # precision of the float32 folds
            converged = True
            break
    # final: float64 folds, norms re-solved, covariance of everything
    nm.precise = True
    nm.set_values(phi)
    lm, res, blocks = _profile(nm, statistic, res.theta, lm)
    # the Jacobian of the last iteration when it was taken at this phi (its
    # norms differ from the float64 re-solve by ~1e-7 relative, the precision
    # of its float32 folds)
    derivs = last_derivs[1] if last_derivs is not None and np.array_equal(last_derivs[0], phi) else None
    H, _ = _gauss_newton(nm, lm, res, blocks, statistic, full=True, derivs=derivs)
    p, q = lm.n_free, len(nm.params)
    live = np.concatenate([np.isfinite(res.errors), np.ones(q, bool)])
    cov = np.full((p + q, p + q), np.nan)
    if np.any(live):
        Hl = H[np.ix_(live, live)]
        try:
            inv = np.linalg.inv(Hl)
        except np.linalg.LinAlgError:
            inv = np.linalg.pinv(Hl)
        cov[np.ix_(live, live)] = 2.0 * inv
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    err[~np.isfinite(np.diag(cov))] = np.nan
    values = np.concatenate([res.theta, phi])
    labels = [parameter_label(state, s, i) for s, i in lm.free] + list(nm.labels)
    for (s, i), e in zip(lm.free, err[:p]):
        s.params[i].error = None if not np.isfinite(e) else float(e)
    for qq, e in enumerate(err[p:]):
        nm._param(qq).error = None if not np.isfinite(e) else float(e)
    state.update_linked_values()
    n_bins = int(sum(np.count_nonzero(sd.noticed) for sd in spectra))
    dof = n_bins - p - q
    seconds = time.perf_counter() - t0
    state.statistic = statistic
    state.info["fit"] = {"statistic": statistic, "value": float(res.statistic), "n_bins": n_bins,
                         "n_free": p + q, "dof": int(dof), "fitted": True, "converged": bool(converged),
                         "iterations": int(it), "evaluations": int(n_eval), "seconds": seconds,
                         "nonlinear": list(nm.labels)}
    state.info["covariance_all"] = {"parameters": labels,
                                    "matrix": [[float(x) if np.isfinite(x) else None for x in row] for row in cov]}
    if not converged:
        log.warning("nonlinear fit did not converge in %d iterations", it)
    return NonlinearFit(labels=labels, values=values, errors=err, covariance=cov, statistic=float(res.statistic),
                        dof=int(dof), n_iter=int(it), n_eval=int(n_eval), converged=bool(converged),
                        seconds=seconds, history=history, linear=res, model=lm, n_norms=p)
