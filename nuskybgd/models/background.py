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

With frozen shapes the model of a spectrum is ``sum_c norm_c T_c``: the folds
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
from ..kernels.fold import fold_compressed
from .apec import apec_spectrum
from .responses import apbgd_arf as make_apbgd_arf
from .responses import check_same_grid, diag_rmf, energy_grid
from .responses import fcxb_arf as bundle_fcxb_arf

__all__ = ["ComponentTemplates", "component_keys", "component_spectra", "fold_spectra",
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
    """
    lo, hi = kernels.check_energy_bins(energ_lo, energ_hi)
    out = {}
    out["apbgd"] = kernels.cutoffpl_integral(lo, hi, presets.apbgd.phoindex, presets.apbgd.highecut)
    a = presets.apec
    out["intbgd.apec"] = apec_spectrum(lo, hi, a.kt, a.abundanc, a.redshift)
    lines = kernels.lorentz_lines(lo, hi, [x.linee for x in presets.lines], [x.width for x in presets.lines])
    for name, row in zip(presets.line_names, lines):
        out[f"intbgd.{name}"] = row
    out["fcxb"] = kernels.cutoffpl_integral(lo, hi, presets.fcxb.phoindex, presets.fcxb.highecut)
    b = presets.intn
    out["intn"] = kernels.bknpower_integral(lo, hi, b.phoindx1, b.breake, b.phoindx2)
    return out


def fold_spectra(rmf, spectra):
    """Fold several spectra through one RMF.

    Parameters
    ----------
    rmf : DataRMF or tuple
        A Sherpa RMF (its compressed N_GRP/F_CHAN/N_CHAN/MATRIX arrays, all
        energies, whatever channels are noticed) or ``(energ_lo, energ_hi,
        matrix)`` with a dense or scipy-sparse matrix of shape
        (n_energy, n_chan).
    spectra : array_like, shape (k, n_energy)
        Photons (x area x time) per energy bin.

    Returns
    -------
    numpy.ndarray, shape (k, n_chan)
        Counts per channel.

    Notes
    -----
    For a DataRMF all k spectra are folded in one pass over the compressed
    matrix (a numba loop; Sherpa's ``rmf_fold`` folds one spectrum per pass,
    which is ~k times slower for the 32 spectra of the background model and
    gives the same sums to rounding).
    """
    spectra = np.atleast_2d(np.asarray(spectra, float))
    if hasattr(rmf, "apply_rmf"):
        n_e = len(rmf.energ_lo)
        if spectra.shape[1] != n_e:
            raise NuskybgdError(f"{rmf.name}: {n_e} energy bins, spectra have {spectra.shape[1]}")
        n_grp = np.asarray(rmf.n_grp, dtype=np.int64).ravel()
        f_chan = np.asarray(rmf.f_chan, dtype=np.int64).ravel()
        n_chan = np.asarray(rmf.n_chan, dtype=np.int64).ravel()
        values = np.asarray(rmf.matrix, dtype=float).ravel()
        n_out, offset = int(rmf.detchans), int(rmf.offset)
        if (n_grp.size != n_e or n_grp.sum() != f_chan.size or n_chan.size != f_chan.size
                or n_chan.sum() != values.size):
            raise NuskybgdError(f"{rmf.name}: inconsistent RMF groups (N_GRP/F_CHAN/N_CHAN/MATRIX)")
        if f_chan.size and (np.min(f_chan - offset) < 0 or np.max(f_chan - offset + n_chan) > n_out):
            raise NuskybgdError(f"{rmf.name}: RMF groups run outside channels {offset}..{offset + n_out - 1}")
        return fold_compressed(np.ascontiguousarray(spectra.T), n_grp, f_chan, n_chan, values, n_out, offset).T.copy()
    matrix = rmf[2]
    if matrix.shape[0] != spectra.shape[1]:
        raise NuskybgdError(f"RMF matrix has {matrix.shape[0]} energy rows, spectra have {spectra.shape[1]} bins")
    if hasattr(matrix, "tocsr"):
        return np.asarray((matrix.T @ spectra.T).T)
    return spectra @ np.asarray(matrix, float)


def rmf_info(rmf):
    """Energy grid, channel count and identity of an RMF.

    Parameters
    ----------
    rmf : sherpa.astro.data.DataRMF or tuple
        A Sherpa RMF or ``(energ_lo, energ_hi, matrix)`` with a 2-D
        ``(n_energy, n_chan)`` matrix (dense or scipy sparse).

    Returns
    -------
    tuple
        ``(energ_lo, energ_hi, n_chan, first_channel, identity)``: energy bin
        edges (keV), number of channels, first channel number and the object
        whose identity keys the template cache.

    Raises
    ------
    NuskybgdError
        For a malformed tuple or a matrix that does not match the grid.
    """
    lo, hi = energy_grid(rmf)
    if hasattr(rmf, "apply_rmf"):
        return lo, hi, int(rmf.detchans), int(getattr(rmf, "offset", 0)), rmf
    if len(rmf) != 3:
        raise NuskybgdError("RMF: give a Sherpa DataRMF or (energ_lo, energ_hi, matrix)")
    matrix = rmf[2]
    if getattr(matrix, "ndim", 0) != 2:
        raise NuskybgdError("RMF: the matrix must be 2-D (n_energy, n_chan)")
    if matrix.shape[0] != lo.size:
        raise NuskybgdError(f"RMF: matrix has {matrix.shape[0]} rows but the energy grid {lo.size} bins")
    return lo, hi, int(matrix.shape[1]), 0, matrix


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
