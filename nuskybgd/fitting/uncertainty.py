"""1-sigma errors of predicted background counts (``spec``, demo).

The background predicted in a source region is linear in the fitted norms
(REFERENCE sections 6-7): every component norm of a source group is
``ratio * root`` with ``root`` a free or frozen parameter of the fit, and the
fCXB norm of a source region (``--fcxb fitted``) is
``sum(area_src) / sum_r sum(area_r) * sum_r norm_r`` over the module's
background regions. The counts in a channel selection are therefore

    mu = J @ theta + c,

``J[b, p]`` = sum over the components whose norm depends on free parameter
``p`` of ``d norm / d theta_p * sum(template[sel_b])``, exactly (no finite
differences), and ``sigma_b^2 = (J C J^T)_bb`` with ``C`` the covariance of
the free parameters from the fit (:mod:`nuskybgd.fitting.engine`, the
inverse Fisher matrix; stored in the fit JSON by
:func:`set_fit_covariance`). This is the error from the fitted norms only:
shapes, link ratios and response templates are taken as exact.

Without a covariance (a fit read from an XCM file, or a JSON written before
the covariance was stored) the per-parameter errors are used as a diagonal
covariance when every free parameter has one (correlations ignored: the
``kind`` is ``"diagonal"``); otherwise the error is unknown (NaN, ``kind``
``"none"``).
"""

from __future__ import annotations

import numpy as np

from ..constants import FCXB_FACTOR
from ..errors import NuskybgdError
from .model import norm_template_key

__all__ = ["set_fit_covariance", "fit_covariance", "source_fcxb_coefficients", "prediction_jacobian",
           "prediction_sigma"]

_BG_NAMES = ("apbgd", "intbgd", "fcxb", "intn")


def set_fit_covariance(state, free, covariance):
    """Store the covariance of the free parameters in ``state.info``.

    Parameters
    ----------
    state : FitState
        Modified in place: ``info["covariance"]`` = {``parameters``: list of
        {``source``: model name, ``index``: 1-based parameter number},
        ``matrix``: n x n list (units: products of the norms' units,
        photons/cm^2/s/keV at 1 keV squared); non-finite entries become
        ``None``}.
    free : list of (Source, int)
        The free parameters in the covariance's order
        (``LinearModel.free``).
    covariance : array_like, shape (n, n)

    Raises
    ------
    NuskybgdError
        If the covariance does not match the parameter list.
    """
    c = np.asarray(covariance, float)
    if c.shape != (len(free), len(free)):
        raise NuskybgdError(f"covariance of shape {c.shape} for {len(free)} free parameters")
    params = [{"source": s.name, "index": int(i) + 1} for s, i in free]
    matrix = [[float(x) if np.isfinite(x) else None for x in row] for row in c]
    state.info["covariance"] = {"parameters": params, "matrix": matrix}


def fit_covariance(state):
    """Covariance of the free parameters of a fitted state.

    Parameters
    ----------
    state : FitState
        From ``nuskybgd fit`` (``info["covariance"]``), or any state with
        per-parameter errors, or none.

    Returns
    -------
    params : list of (str, int)
        Model name and 0-based parameter position of each row.
    cov : ndarray, shape (n, n)
        Covariance (NaN entries: undetermined).
    kind : {"covariance", "diagonal", "none"}
        ``covariance``: the fit's full matrix; ``diagonal``: squares of the
        per-parameter errors (no covariance stored, correlations ignored);
        ``none``: neither is available (``cov`` is NaN on the diagonal).

    Raises
    ------
    NuskybgdError
        If a stored covariance is malformed or names a parameter the state
        does not have.
    """
    d = state.info.get("covariance")
    free = state.free_parameters()
    if d is not None:
        try:
            params = [(str(p["source"]), int(p["index"]) - 1) for p in d["parameters"]]
            m = np.array([[np.nan if x is None else float(x) for x in row] for row in d["matrix"]], float)
        except (KeyError, TypeError, ValueError) as exc:
            raise NuskybgdError(f"malformed covariance in the fit ({exc})") from None
        if m.shape != (len(params), len(params)):
            raise NuskybgdError(f"covariance of shape {m.shape} for {len(params)} parameters")
        names = {s.name for s in state.sources}
        for name, i in params:
            if name not in names or not 0 <= i < len(state.source(name).params):
                raise NuskybgdError(f"the covariance names parameter {name}:p{i + 1}, which the fit does not have")
        return params, m, "covariance"
    params = [(s.name, i) for s, i in free]
    errs = np.array([np.nan if s.params[i].error is None else float(s.params[i].error) for s, i in free])
    if errs.size and np.all(np.isfinite(errs)):
        return params, np.diag(errs ** 2), "diagonal"
    return params, np.diag(np.full(len(params), np.nan)), "none"


def source_fcxb_coefficients(state, modules, areas, module, src_area, mode="fitted"):
    """The fCXB norm of a source region as a linear function of root parameters.

    Parameters
    ----------
    state : FitState
        Background spectra first (groups 1..len(modules)).
    modules : list of str
        Module of each background spectrum.
    areas : list of array_like
        ``area_r[k]`` of each background spectrum (sky pixels).
    module : str
        The source spectrum's module.
    src_area : float
        ``sum(area_src)`` (sky pixels).
    mode : {"fitted", "preset"}
        As :func:`nuskybgd.fitting.apply.source_fcxb_norm`.

    Returns
    -------
    coeffs : dict of (str, int) -> float
        Root parameter (model name, 0-based position) -> d norm / d root.
    offset : float
        Constant part (the preset norm; 0 for ``fitted``).
    """
    if mode == "preset":
        return {}, FCXB_FACTOR * float(src_area)
    if mode != "fitted":
        raise NuskybgdError(f"--fcxb {mode!r}: expected 'fitted' or 'preset'")
    src = state.source("fcxb")
    rows = [i for i, m in enumerate(modules) if m == module]
    if not rows:
        raise NuskybgdError(f"no background spectrum of module {module} to take the fCXB from")
    total = float(sum(np.sum(areas[i]) for i in rows))
    if not total > 0:
        raise NuskybgdError("fcxb: background regions have zero total area")
    coeffs = {}
    for i in rows:
        root, j, f = state.resolve(src, src.index(i + 1, 3))
        key = (root.name, j)
        coeffs[key] = coeffs.get(key, 0.0) + f * float(src_area) / total
    return coeffs, 0.0


def norm_components(state, templates):
    """Norm-carrying components of the four background sources, with templates.

    Parameters
    ----------
    state : FitState
        The parameter table.
    templates : dict of str -> ndarray
        Counts per channel per unit norm, keyed like
        :func:`nuskybgd.fitting.model.norm_template_key`.

    Yields
    ------
    src : Source
        Background source (apbgd, intbgd, fcxb or intn).
    ipar : int
        1-based parameter number of the norm within one data group.
    key : str
        Template key (``apbgd``, ``intbgd.apec``, ``intbgd.lorentz_3``, ...).
    template : ndarray
        The template, as float64 counts per channel.

    Raises
    ------
    NuskybgdError
        When a component has no template.
    """
    for src in state.sources:
        if src.name not in _BG_NAMES:
            continue
        labels = src.labels
        for ipar, (pname, comp) in enumerate(zip(src.par_names, src.par_components), start=1):
            if pname.lower() != "norm":
                continue
            key = norm_template_key(src.name, labels, comp)
            if key not in templates:
                raise NuskybgdError(f"no response template for component {key}")
            yield src, ipar, key, np.asarray(templates[key], float)


def prediction_jacobian(state, group, templates, selections, params, fcxb=None):
    """Exact Jacobian of a group's predicted counts in channel selections.

    Parameters
    ----------
    state : FitState
        Background sources (other models are ignored).
    group : int
        Data group (1-based).
    templates : dict of str -> ndarray
        Counts per channel per unit norm of each component of the spectrum
        (``models.background.component_templates``).
    selections : list of array_like
        Channel selections (boolean masks or index arrays); one row each.
    params : list of (str, int)
        Model name and 0-based position of each column (the covariance's
        parameters, :func:`fit_covariance`).
    fcxb : (dict, float), optional
        The group's fCXB norm from :func:`source_fcxb_coefficients`, used
        instead of the state's own fcxb parameter (a source group's fcxb
        norm is derived from the background regions' norms).

    Returns
    -------
    J : ndarray, shape (n_sel, n_params)
        Counts per unit of each parameter.
    const : ndarray, shape (n_sel,)
        Counts from norms whose root is frozen (so ``mu = J @ theta + const``).
    missing : list of (str, int)
        Free roots the prediction depends on that are not in ``params``
        (their variance is unknown).
    """
    col = {p: k for k, p in enumerate(params)}
    J = np.zeros((len(selections), len(params)))
    const = np.zeros(len(selections))
    missing = []

    def add(root_key, root_param, coef, tsum):
        if root_param.free or root_key in col:
            k = col.get(root_key)
            if k is None:
                if root_key not in missing:
                    missing.append(root_key)
                return
            J[:, k] += coef * tsum
        else:
            const[:] += coef * root_param.value * tsum

    for src, ipar, key, t in norm_components(state, templates):
        tsum = np.array([float(np.sum(t[sel])) for sel in selections])
        if src.name == "fcxb" and fcxb is not None:
            coeffs, offset = fcxb
            const[:] += offset * tsum
            for (name, j), coef in coeffs.items():
                add((name, j), state.source(name).params[j], coef, tsum)
            continue
        root, j, f = state.resolve(src, src.index(group, ipar))
        add((root.name, j), root.params[j], f, tsum)
    return J, const, missing


def prediction_sigma(J, cov):
    """1-sigma errors of linear predictions: ``sqrt(diag(J C J^T))``.

    Parameters
    ----------
    J : ndarray, shape (n_sel, n_params)
        From :func:`prediction_jacobian` (counts per unit parameter).
    cov : ndarray, shape (n_params, n_params)
        Parameter covariance.

    Returns
    -------
    ndarray, shape (n_sel,)
        Counts. NaN when a parameter the prediction depends on has an
        undetermined (NaN) variance; columns of ``J`` that are zero do not
        propagate NaNs.
    """
    J = np.asarray(J, float)
    cov = np.asarray(cov, float)
    used = np.any(J != 0, axis=0)
    if not np.any(used):
        return np.zeros(J.shape[0])
    c = cov[np.ix_(used, used)]
    a = J[:, used]
    var = np.einsum("bi,ij,bj->b", a, c, a)
    return np.sqrt(np.clip(var, 0.0, None))
