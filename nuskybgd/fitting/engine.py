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

Data containers live in :mod:`nuskybgd.fitting.data` and the solver in
:mod:`nuskybgd.fitting.solver`; this module sets up the problem
(:class:`LinearModel`) and runs it (:func:`fit_state`), and re-exports the
names used elsewhere.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import NuskybgdError
from .data import SpectrumData, bin_mask_from_energy, group_ids
from .model import norm_template_key
from .solver import UPPER_LIMIT_DELTA, FitResult, chi2_datavar, cstat, solve, solve_blocks, stat_parts

__all__ = [
    "UPPER_LIMIT_DELTA",
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
                t = sd.noticed_bins(sd.templates[key])
                if c >= 0:
                    a[:, c] += f * t
                else:
                    b += f * root.params[j].value * t
            rows_a.append(a)
            rows_b.append(b)
            rows_d.append(sd.noticed_bins(np.asarray(sd.counts, float)))
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
        out = []
        for sd, entries in zip(self.spectra, self.columns):
            keep = sd.noticed
            nb = int(np.count_nonzero(keep))
            # the columns this spectrum's components feed, in ascending order
            # (as design() with its all-zero columns dropped)
            used = sorted({c for _, c, _, _, _ in entries if c >= 0})
            pos = {c: j for j, c in enumerate(used)}
            a = np.zeros((nb, len(used)))
            b = np.zeros(nb)
            for key, c, f, root, j in entries:
                t = sd.noticed_bins(sd.templates[key])
                if c >= 0:
                    a[:, pos[c]] += f * t
                else:
                    b += f * root.params[j].value * t
            nz = np.any(a != 0, axis=0)
            cols = np.asarray(used, dtype=np.intp)[nz]
            out.append((np.ascontiguousarray(a[:, nz]), cols, b, sd.noticed_bins(np.asarray(sd.counts, float))))
        return out

    def theta(self):
        """Current values of the free parameters.

        Returns
        -------
        ndarray
            One value per entry of ``free`` (norms).
        """
        return np.array([s.params[i].value for s, i in self.free], float)

    def lower_bounds(self):
        """Hard minimum of each free parameter.

        Returns
        -------
        ndarray
            One bound per entry of ``free``.
        """
        return np.array([s.params[i].hard_min for s, i in self.free], float)

    def upper_bounds(self):
        """Hard maximum of each free parameter.

        Returns
        -------
        ndarray
            One bound per entry of ``free`` (``inf`` when unbounded).
        """
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
        """Total predicted counts per channel of one spectrum.

        Parameters
        ----------
        k : int
            0-based spectrum index.

        Returns
        -------
        ndarray, shape (n_chan,)
            Counts per channel (ungrouped), summed over components.
        """
        comps = self.component_counts(k)
        return np.sum(list(comps.values()), axis=0)


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
