"""XSPEC-style profile intervals (``error`` command) of fitted parameters.

For a parameter p with best fit p0 and statistic S0, the interval ends are the
values where the statistic minimised over every other free parameter
(norms, shapes, gains) reaches ``S0 + delta`` (2.706: 90 % for one
parameter, XSPEC's default). Each trial value is a full refit with p frozen,
started from the best fit; the ends are bracketed from the covariance error
and found with Brent's method (``scipy.optimize.brentq``).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import brentq

from ..errors import NuskybgdError
from .data import SpectrumData
from .nonlinear import fit_nonlinear

__all__ = ["match_labels", "profile_intervals"]

log = logging.getLogger("nuskybgd")


def match_labels(names, labels):
    """Labels of a fit named by a ``--errors`` list.

    Parameters
    ----------
    names : str or sequence of str
        Comma-separated names: a full label (``intbgd:lorentz_5.LineE@3``,
        ``gain:2.slope``) or one without ``@group`` (all groups).
    labels : list of str
        Labels of the fit's free parameters.

    Returns
    -------
    list of int
        Indices into ``labels``.

    Raises
    ------
    NuskybgdError
        A name that matches no free parameter.
    """
    items = [x.strip() for x in (names.split(",") if isinstance(names, str) else names) if x.strip()]
    out = []
    for it in items:
        hits = [i for i, lab in enumerate(labels) if lab == it or lab.split("@")[0] == it]
        if not hits:
            raise NuskybgdError(f"--errors: '{it}' is not a free parameter of this fit "
                                f"(e.g. {', '.join(labels[-3:])})")
        out += [h for h in hits if h not in out]
    return out


def _param_of(state, label):
    """The Param object behind a label."""
    if label.startswith("gain:"):
        num, which = label[5:].split(".")
        return state.spectra[int(num) - 1].gain[0 if which == "slope" else 1]
    head, _, grp = label.partition("@")
    sname, rest = head.split(":", 1)
    comp, pname = rest.rsplit(".", 1)
    src = state.source(sname)
    g = int(grp) if grp else 1
    ci = src.labels.index(comp)
    ip = next(i for i in range(src.npar) if src.par_components[i] == ci and src.par_names[i] == pname)
    return src.params[src.index(g, ip + 1)]


def profile_intervals(state, spectra, responses, fit, names, statistic="cstat", delta=2.706, progress=None):
    """Profile intervals of named parameters.

    Parameters
    ----------
    state : FitState
        At the best fit (not modified).
    spectra : list of SpectrumData
    responses : list of SpectrumResponse
    fit : NonlinearFit
        The best fit (labels, values, errors, statistic).
    names : str or list of str
        See :func:`match_labels`.
    statistic : {"cstat", "chi"}
    delta : float
        Statistic increase (2.706: 90 %, 1.0: 68 %).
    progress : callable, optional
        Called with a message per trial fit.

    Returns
    -------
    list of dict
        ``parameter``, ``value``, ``lower``, ``upper`` (interval ends),
        ``minus``, ``plus`` (distances), ``pegged`` (an end reached a hard
        limit), ``delta``.
    """
    idx = match_labels(names, fit.labels)
    out = []
    s0 = fit.statistic
    for i in idx:
        lab = fit.labels[i]
        v0 = float(fit.values[i])
        sig = float(fit.errors[i]) if np.isfinite(fit.errors[i]) and fit.errors[i] > 0 else abs(v0) * 0.01 or 0.01
        par0 = _param_of(state, lab)
        lo_lim, hi_lim = par0.hard_min, par0.hard_max

        def excess(v, lab=lab):
            st = state.copy()
            p = _param_of(st, lab)
            p.value = float(v)
            p.delta = -abs(p.delta) if p.delta != 0 else -0.01
            st.update_linked_values()
            sds = [SpectrumData(sd.counts, {}, sd.ids, sd.noticed, sd.name) for sd in spectra]
            r = fit_nonlinear(st, sds, responses, statistic)
            if progress is not None:
                progress(f"{lab} = {v:.6g}: {statistic} {r.statistic:.4f}")
            return r.statistic - s0 - delta

        ends = {}
        pegged = False
        for sgn in (-1, 1):
            limit = lo_lim if sgn < 0 else hi_lim
            inside, step = v0, 1.645 * sig
            end = None
            for _ in range(10):
                trial = v0 + sgn * step
                if (sgn < 0 and trial <= limit) or (sgn > 0 and trial >= limit):
                    trial = limit
                e = excess(trial)
                if e > 0:
                    end = brentq(excess, min(inside, trial), max(inside, trial), xtol=0.01 * sig, maxiter=30)
                    break
                if trial == limit:
                    end, pegged = limit, True
                    break
                inside, step = trial, 2 * step
            ends[sgn] = end if end is not None else np.nan
        out.append({"parameter": lab, "value": v0, "lower": ends[-1], "upper": ends[1],
                    "minus": v0 - ends[-1], "plus": ends[1] - v0, "pegged": pegged, "delta": delta})
    return out
