"""Folded templates of the four-component background model (REFERENCE section 6).

For one spectrum, :func:`component_templates` returns the predicted counts per
channel for unit norm of every norm-carrying component, each folded with its
own response and multiplied by the exposure:

========================= =============================== ======================
key                       spectral shape (frozen presets)  response
========================= =============================== ======================
``apbgd``                 cutoffpl                         RMF x apbgd ARF
``intbgd.apec``           apec                             RMF
``intbgd.lorentz`` ...    lorentz (29 lines)               RMF
``fcxb``                  cutoffpl (apbgd's shape)         RMF x fcxb ARF
``intn``                  bknpower                         diag.rmf
========================= =============================== ======================

The photon spectra are evaluated by the Sherpa classes of
:mod:`nuskybgd.models.basic` (their numba kernels do the work). With frozen
shapes the model of a spectrum is ``sum_c norm_c T_c``: the folds
are done once (all RMF components in one pass: the 29 lines come from one
vectorised kernel call) and cached per (RMF, module, detector fractions,
presets, responses); the exposure multiplies the cached per-second templates.
"""

import weakref
from collections import OrderedDict

import numpy as np

from ..calib.presets import ComponentPresets, component_presets
from ..errors import NuskybgdError
from ..kernels import spectral as kernels
from .basic import apec, bknpower, cutoffpl, lorentz_lines
from .folding import fold_spectra, rmf_info
from .responses import apbgd_arf as make_apbgd_arf
from .responses import check_same_grid, diag_rmf
from .responses import fcxb_arf as bundle_fcxb_arf

__all__ = ["ComponentTemplates", "component_keys", "component_spectra", "evaluate_model", "fold_spectra", "rmf_info",
           "component_templates", "clear_template_cache"]


class ComponentTemplates(dict):
    """``dict`` of key -> counts per channel per unit norm, with the channel grid.

    Attributes
    ----------
    first_channel : int
        Channel number of element 0 (the RMF's TLMIN/offset, 0 for NuSTAR).
    exposure : float
        Exposure (s) already applied.
    energ_lo, energ_hi : numpy.ndarray
        The RMF energy grid (keV) the models were evaluated on.
    """

    first_channel = 0
    exposure = 1.0
    energ_lo = None
    energ_hi = None

    def matrix(self, keys=None):
        """Templates stacked as rows.

        Parameters
        ----------
        keys : sequence of str, optional
            Row order (default: insertion order).

        Returns
        -------
        numpy.ndarray, shape (n_keys, n_chan)
            Counts per channel per unit norm.
        """
        keys = list(self) if keys is None else list(keys)
        return np.vstack([self[k] for k in keys])


def component_keys(presets):
    """Template keys in model order.

    Parameters
    ----------
    presets : ComponentPresets
        Presets of the module.

    Returns
    -------
    list of str
        ``apbgd``, ``intbgd.apec``, ``intbgd.<line name>`` x 29, ``fcxb``, ``intn``.
    """
    return (["apbgd", "intbgd.apec"] + [f"intbgd.{n}" for n in presets.line_names]
            + ["fcxb", "intn"])


def component_spectra(energ_lo, energ_hi, presets):
    """Photon spectra of the components for unit norm (before any response).

    Parameters
    ----------
    energ_lo, energ_hi : array_like
        Energy bin edges (keV).
    presets : ComponentPresets
        Shape parameters.

    Returns
    -------
    dict
        key -> photons/cm^2/s per bin (apbgd and fcxb are the same cutoffpl,
        intn is the bknpower), keys as :func:`component_keys`.

    Notes
    -----
    Every spectrum is the value of the Sherpa model class of the component
    (:mod:`nuskybgd.models.basic`: ``cutoffpl``, ``apec``, ``lorentz_lines``,
    ``bknpower``) with the preset shape and norm 1, so the folded templates
    are the Sherpa models the user gets, evaluated on the RMF's grid.
    """
    lo, hi = kernels.check_energy_bins(energ_lo, energ_hi)
    ap, fc, a, b = presets.apbgd, presets.fcxb, presets.apec, presets.intn
    out = {"apbgd": evaluate_model(cutoffpl("apbgd"), lo, hi, PhoIndex=ap.phoindex, HighECut=ap.highecut),
           "intbgd.apec": evaluate_model(apec("intbgd_apec"), lo, hi, kT=a.kt, Abundanc=a.abundanc,
                                         Redshift=a.redshift)}
    lines = lorentz_lines([(x.name, x.linee, x.width) for x in presets.lines], name="intbgd_lines")
    for name, row in zip(presets.line_names, lines.line_spectra(lo, hi)):
        out[f"intbgd.{name}"] = row
    out["fcxb"] = evaluate_model(cutoffpl("fcxb"), lo, hi, PhoIndex=fc.phoindex, HighECut=fc.highecut)
    out["intn"] = evaluate_model(bknpower("intn"), lo, hi, PhoIndx1=b.phoindx1, BreakE=b.breake,
                                 PhoIndx2=b.phoindx2)
    return out


def evaluate_model(model, energ_lo, energ_hi, **values):
    """Evaluate a Sherpa model on energy bins after setting some parameters.

    Parameters
    ----------
    model : sherpa.models.model.ArithmeticModel
        E.g. a :class:`~nuskybgd.models.basic.cutoffpl`.
    energ_lo, energ_hi : numpy.ndarray
        Bin edges (keV).
    **values : float
        Parameter name -> value (e.g. ``PhoIndex=1.29``).

    Returns
    -------
    numpy.ndarray
        photons/cm^2/s per bin (model's norm).

    Raises
    ------
    NuskybgdError
        A value outside the parameter's hard limits (nuskybgd.parameters);
        values between the soft and hard limits are accepted (as in XSPEC).
    """
    for name, value in values.items():
        par = getattr(model, name)
        value = float(value)
        if not par.hard_min <= value <= par.hard_max:
            raise NuskybgdError(f"{par.fullname} = {value:g}: outside its hard limits "
                                f"{par.hard_min:g}..{par.hard_max:g}")
        # XSPEC's soft limits only bound fits: a value between soft and hard
        # limits is legal, so widen Sherpa's min/max to take it.
        par.min, par.max = min(par.min, value), max(par.max, value)
        par.val = value
    return np.asarray(model(energ_lo, energ_hi), dtype=float)


_CACHE = OrderedDict()
_CACHE_SIZE = 64


def clear_template_cache():
    """Forget all cached folded templates."""
    _CACHE.clear()


def _response_id(obj):
    return None if obj is None else id(obj)


def component_templates(rmf, module, det_fractions, exposure, presets=None, caldb=None, *,
                        apbgd_arf=None, fcxb_arf=None, diag=None, date=None, detabs_file=None,
                        be_file=None):
    """Predicted counts per channel for unit norm of every background component.

    Parameters
    ----------
    rmf : sherpa.astro.data.DataRMF or tuple
        The spectrum's RMF, or ``(energ_lo, energ_hi, matrix)`` (keV, keV,
        dense or scipy-sparse (n_energy, n_chan) probabilities).
    module : str
        ``"A"`` or ``"B"``.
    det_fractions : array_like, shape (4,)
        Region area on DET0..DET3 (weights of the apbgd ARF's DETABS).
    exposure : float
        Exposure time (s), > 0.
    presets : ComponentPresets or dict, optional
        Shapes: a :class:`ComponentPresets`, or a parsed ``ratios.json``
        dict; default the bundle's presets for ``module``.
    caldb : nuskybgd.calib.caldb.Caldb or str, optional
        CALDB for DETABS/BEABS (default ``$CALDB``); not needed when
        ``apbgd_arf`` or ``detabs_file`` is given.
    apbgd_arf, fcxb_arf : DataARF, optional
        Ready-made ARFs (default: built by
        :func:`~nuskybgd.models.responses.apbgd_arf` and the bundle's fCXB ARF).
    diag : DataRMF or tuple, optional
        intn response (default: the bundle's ``diag.rmf``).
    date : str, optional
        Observation date for CALDB queries.
    detabs_file, be_file : str, optional
        Explicit calibration files for the apbgd ARF.

    Returns
    -------
    ComponentTemplates
        ``dict`` key -> counts per channel per unit norm (float64, n_chan),
        keys ``apbgd``, ``intbgd.apec``, ``intbgd.lorentz``,
        ``intbgd.lorentz_3`` ... ``intbgd.lorentz_30``, ``fcxb``, ``intn``.
        The arrays are fresh copies.

    Raises
    ------
    NuskybgdError
        Bad exposure or fractions, responses on different energy grids, a
        diag.rmf with another channel count, missing calibration.
    """
    exposure = float(exposure)
    if not (np.isfinite(exposure) and exposure > 0):
        raise NuskybgdError(f"exposure must be a positive number of seconds (got {exposure!r})")
    if presets is None:
        presets = component_presets(module)
    elif not isinstance(presets, ComponentPresets):
        presets = component_presets(module, presets)
    frac = np.asarray(det_fractions, float).ravel()
    if frac.size != 4 or not np.all(np.isfinite(frac)) or np.any(frac < 0) or frac.sum() <= 0:
        raise NuskybgdError(f"detector fractions {list(frac)}: need 4 finite values >= 0 with a positive sum")
    frac = frac / frac.sum()
    lo, hi, n_chan, first, ident = rmf_info(rmf)
    key = (id(ident), presets, tuple(np.round(frac, 12)), str(caldb), str(date), str(detabs_file), str(be_file),
           _response_id(apbgd_arf), _response_id(fcxb_arf), _response_id(diag))
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is ident:
        _CACHE.move_to_end(key)
        per_second = hit[1]
    else:
        per_second = _fold_all(rmf, lo, hi, n_chan, presets, frac, caldb, apbgd_arf, fcxb_arf, diag, date,
                               detabs_file, be_file)
        _CACHE[key] = (weakref.ref(ident), per_second)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    out = ComponentTemplates((k, v * exposure) for k, v in per_second.items())
    out.first_channel = first
    out.exposure = exposure
    out.energ_lo, out.energ_hi = lo, hi
    return out


def _fold_all(rmf, lo, hi, n_chan, presets, frac, caldb, apbgd_arf, fcxb_arf, diag, date, detabs_file, be_file):
    """Counts per second per unit norm of every component (uncached)."""
    module = presets.module
    if apbgd_arf is None:
        apbgd_arf = make_apbgd_arf(module, frac, caldb=caldb, rmf=(lo, hi), date=date,
                                   detabs_file=detabs_file, be_file=be_file)
    else:
        check_same_grid(apbgd_arf.energ_lo, apbgd_arf.energ_hi, lo, hi, "apbgd ARF", "the spectrum's RMF")
    if fcxb_arf is None:
        fcxb_arf = bundle_fcxb_arf(module, rmf=(lo, hi))
    else:
        check_same_grid(fcxb_arf.energ_lo, fcxb_arf.energ_hi, lo, hi, "fCXB ARF", "the spectrum's RMF")
    if diag is None:
        diag = diag_rmf()
    dlo, dhi, d_chan, _, _ = rmf_info(diag)
    check_same_grid(dlo, dhi, lo, hi, "diag.rmf", "the spectrum's RMF")
    if d_chan != n_chan:
        raise NuskybgdError(f"diag.rmf has {d_chan} channels but the spectrum's RMF {n_chan}; "
                            f"the intn component needs the standard NuSTAR channel grid")
    spec = component_spectra(lo, hi, presets)
    keys = component_keys(presets)
    rmf_keys = keys[:-1]
    rows = np.vstack([spec[k] for k in rmf_keys])
    rows[0] = rows[0] * np.asarray(apbgd_arf.specresp, float)
    rows[-1] = rows[-1] * np.asarray(fcxb_arf.specresp, float)
    folded = fold_spectra(rmf, rows)
    out = {k: folded[i] for i, k in enumerate(rmf_keys)}
    out["intn"] = fold_spectra(diag, spec["intn"][None, :])[0]
    for v in out.values():
        v.flags.writeable = False
    return out
