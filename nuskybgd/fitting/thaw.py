"""Freeing what XSPEC users thaw: shape parameters, response gains, per-detector norms.

These functions edit a background :class:`~nuskybgd.fitting.model.FitState`
(REFERENCE section 6) before a fit:

* :func:`apply_thaw` thaws named shape parameters (``--thaw``):
  ``SOURCE:COMPONENT.PARAM`` with the component names of ``ratios.json`` and
  the XCM (``intbgd:lorentz_5.LineE``, ``intbgd:apec.kT``,
  ``apbgd:cutoffpl.PhoIndex``, ``intn:bknpower.BreakE``) and XSPEC's
  parameter names; ``LineE>E`` is short for every intbgd line energy above
  E keV. The parameter is thawed where it is a root (each module's
  reference spectrum); the other spectra stay linked to it.
* :func:`apply_gain` gives every spectrum an XSPEC ``gain`` (``--gain
  fit``: free slope and offset per spectrum; ``--gain link``: one free
  gain per module, the other spectra of the module linked to it).
* :func:`apply_free_detectors` frees one norm per detector for the named
  components (``--free-detectors intn,intbgd``): a region's norm is
  ``sum_k (area_r[k] / A_k) n_k``; the detector norms ``n_k`` are carried by
  the first spectrum of the module lying on detector k.
* :func:`apply_start` sets starting values and limits (XSPEC ``newpar``):
  ``{"intbgd:lorentz_4.LineE": 6.5}`` moves a line before its energy is
  thawed; ``(value, min)`` or ``(value, min, max)`` also sets the limits.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import NuskybgdError
from ..io.state import Link
from .gains import gain_link, gain_params, parameter_label

__all__ = ["apply_free_detectors", "apply_gain", "apply_start", "apply_thaw", "detector_report", "parse_thaw"]

_ITEM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
_SHORT = re.compile(r"^(?:intbgd:)?LineE\s*>\s*([-+0-9.eE]+)$")


def parse_thaw(text):
    """Split a ``--thaw`` list.

    Parameters
    ----------
    text : str or sequence of str
        Comma-separated items ``SOURCE:COMPONENT.PARAM`` or ``LineE>E``.

    Returns
    -------
    list of str

    Raises
    ------
    NuskybgdError
        For an item of neither form.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for it in items:
        it = it.strip()
        if not it:
            continue
        if not (_ITEM.match(it) or _SHORT.match(it)):
            raise NuskybgdError(f"--thaw: '{it}' is not SOURCE:COMPONENT.PARAM (e.g. intbgd:lorentz_5.LineE) "
                                "or LineE>E")
        out.append(it)
    return out


def _targets(state, item):
    """(Source, idx0) of every parameter an item names, in every data group."""
    m = _SHORT.match(item)
    out = []
    if m:
        emin = float(m.group(1))
        src = state.source("intbgd")
        for i, p in enumerate(src.params):
            ip = i % src.npar
            if src.par_names[ip] == "LineE" and src.components[src.par_components[ip]] == "lorentz":
                root, j, _ = state.resolve(src, i)
                if root.params[j].value > emin:
                    out.append((src, i))
        if not out:
            raise NuskybgdError(f"--thaw: no intbgd line above {emin} keV")
        return out
    sname, comp, pname = _ITEM.match(item).groups()
    try:
        src = state.source(sname)
    except KeyError:
        names = ", ".join(s.name for s in state.sources if s.name)
        raise NuskybgdError(f"--thaw: unknown source '{sname}' in '{item}' (sources: {names})") from None
    labels = src.labels
    if comp not in labels:
        raise NuskybgdError(f"--thaw: source {sname} has no component '{comp}' in '{item}' "
                            f"(components: {', '.join(labels[:4])}{' ...' if len(labels) > 4 else ''})")
    ci = labels.index(comp)
    names = [src.par_names[ip] for ip in range(src.npar) if src.par_components[ip] == ci]
    if pname not in names:
        raise NuskybgdError(f"--thaw: component {sname}:{comp} has no parameter '{pname}' in '{item}' "
                            f"(parameters: {', '.join(names)})")
    ip = next(ip for ip in range(src.npar) if src.par_components[ip] == ci and src.par_names[ip] == pname)
    for g in range(1, state.n_groups + 1):
        out.append((src, src.index(g, ip + 1)))
    return out


def apply_thaw(state, items):
    """Thaw shape parameters of a state.

    Parameters
    ----------
    state : FitState
        Modified in place.
    items : sequence of str
        From :func:`parse_thaw`.

    Returns
    -------
    list of str
        Labels of the parameters now free (roots only).

    Raises
    ------
    NuskybgdError
        Unknown source, component or parameter; a norm (norms are free
        already); a parameter tied to another source (fcxb's shape follows
        apbgd: thaw ``apbgd:cutoffpl.PhoIndex``).
    """
    done = []
    for item in items:
        for src, i in _targets(state, item):
            if src.par_names[i % src.npar] == "norm":
                raise NuskybgdError(f"--thaw: '{item}' is a norm; norms are fitted already")
            p = src.params[i]
            if p.link is not None:
                root, j, _ = state.resolve(src, i)
                if root is not src:
                    raise NuskybgdError(f"--thaw: '{item}' of {src.name} follows {root.name}; thaw "
                                        f"{parameter_label(state, root, j).split('@')[0]} instead")
                continue
            if p.delta <= 0:
                p.delta = abs(p.delta) if p.delta != 0 else 0.01
            lab = parameter_label(state, src, i)
            if lab not in done:
                done.append(lab)
    return done


def apply_start(state, start):
    """Starting values (and limits) of named parameters, like XSPEC ``newpar``.

    Parameters
    ----------
    state : FitState
        Modified in place (every data group).
    start : dict
        ``SOURCE:COMPONENT.PARAM`` -> value, ``(value, min)`` or
        ``(value, min, max)`` (hard and soft limits).

    Returns
    -------
    list of str
        The items set.

    Raises
    ------
    NuskybgdError
        Unknown parameter (as :func:`apply_thaw`), a value outside its
        limits, or ``min >= max``.
    """
    done = []
    for item, spec in (start or {}).items():
        item = str(item).strip()
        if not _ITEM.match(item):
            raise NuskybgdError(f"start: '{item}' is not SOURCE:COMPONENT.PARAM (e.g. intbgd:lorentz_4.LineE)")
        vals = tuple(spec) if isinstance(spec, (tuple, list)) else (spec,)
        if not 1 <= len(vals) <= 3:
            raise NuskybgdError(f"start: '{item}': give value, (value, min) or (value, min, max)")
        value = float(vals[0])
        for src, i in _targets(state, item):
            p = src.params[i]
            lo = float(vals[1]) if len(vals) > 1 else p.hard_min
            hi = float(vals[2]) if len(vals) > 2 else p.hard_max
            if not lo < hi or not lo <= value <= hi:
                raise NuskybgdError(f"start: '{item}' = {value:g} with limits {lo:g}..{hi:g}")
            if len(vals) > 1:
                p.hard_min = lo
                p.soft_min = max(p.soft_min, lo)
            if len(vals) > 2:
                p.hard_max = hi
                p.soft_max = min(p.soft_max, hi)
            p.value = value
        done.append(item)
    return done


def apply_gain(state, mode, modules, start=(1.0, 0.0)):
    """Give every spectrum a response gain.

    Parameters
    ----------
    state : FitState
        Modified in place (``SpectrumEntry.gain``).
    mode : {"fit", "link", "fixed"}
        ``fit``: free slope and offset per spectrum; ``link``: free for the
        first spectrum of each module, the module's other spectra linked to
        it; ``fixed``: frozen at ``start``.
    modules : sequence of str
        Module of each spectrum.
    start : (float, float)
        Starting (or fixed) slope and offset (keV).

    Raises
    ------
    NuskybgdError
        Unknown mode, start outside 0.8..1.2 / -2..2 keV.
    """
    if mode not in ("fit", "link", "fixed"):
        raise NuskybgdError(f"--gain {mode}: use fit or link")
    first = {}
    for k, (e, m) in enumerate(zip(state.spectra, modules)):
        e.gain = gain_params(*start, free=mode != "fixed")
        if mode == "link":
            if m in first:
                e.gain[0].link = gain_link(first[m] + 1, 0)
                e.gain[1].link = gain_link(first[m] + 1, 1)
            else:
                first[m] = k


def apply_free_detectors(state, components, weights, modules):
    """One free norm per detector for the named components.

    Parameters
    ----------
    state : FitState
        A linked background state (modified in place).
    components : sequence of str
        ``intn`` and/or ``intbgd``.
    weights : list of Weights
        Region weights (``area[4]``) per spectrum.
    modules : sequence of str

    Returns
    -------
    dict
        ``{module: {detector: spectrum index carrying n_k}}``.

    Raises
    ------
    NuskybgdError
        Unknown component; a region lying on more than one detector (the
        detector norms are carried by single-detector spectra here: use
        whole-detector spectra, ``detectors`` in bgdinfo.json).
    """
    comps = [c.strip() for c in components if c.strip()]
    for c in comps:
        if c not in ("intn", "intbgd"):
            raise NuskybgdError(f"--free-detectors: unknown component '{c}' (use intn, intbgd)")
    carriers = {}
    for i, (w, m) in enumerate(zip(weights, modules)):
        dets = np.flatnonzero(np.asarray(w.area, float) > 0)
        if dets.size != 1:
            raise NuskybgdError(f"--free-detectors: spectrum {i + 1} covers detectors {list(dets)}; per-detector "
                                "norms need single-detector spectra (whole-detector spectra: 'detectors' in "
                                "bgdinfo.json)")
        carriers.setdefault(m, {}).setdefault(int(dets[0]), i)
    for name in comps:
        src = state.source(name)
        for i, (w, m) in enumerate(zip(weights, modules)):
            k = int(np.flatnonzero(np.asarray(w.area, float) > 0)[0])
            c = carriers[m][k]
            ref = state.info["ref"][m] - 1
            for ip in range(src.npar):
                if src.par_names[ip] != "norm":
                    continue
                idx = src.index(i + 1, ip + 1)
                ref_p = src.params[src.index(ref + 1, ip + 1)]
                p = src.params[idx]
                if i == c:
                    if ref_p.link is None:
                        p.link = None
                        p.delta = abs(ref_p.delta) if ref_p.delta != 0 else 0.01
                    else:
                        # tied line ratios (intbgd_fix_line_ratios): the same tie inside the detector
                        tgt = ref_p.link.index - 1 - src.index(ref + 1, 1)
                        p.link = Link(name, src.index(i + 1, 1) + tgt + 1, ref_p.link.factor)
                else:
                    ratio = float(w.area[k]) / float(weights[c].area[k])
                    p.link = Link(name, idx - src.index(i + 1, 1) + src.index(c + 1, 1) + 1, ratio)
    state.update_linked_values()
    state.info["free_detectors"] = {"components": comps,
                                    "carriers": {m: {str(k): i + 1 for k, i in d.items()} for m, d in carriers.items()}}
    return carriers


def detector_report(state, carriers, components, presets=None):
    """Per-detector norms after a fit with :func:`apply_free_detectors`.

    Parameters
    ----------
    state : FitState
    carriers : dict
        From :func:`apply_free_detectors`.
    components : sequence of str
    presets : FitState, optional
        The unfitted state (for fitted/preset ratios).

    Returns
    -------
    list of dict
        One per module, detector and component norm: module, detector,
        spectrum, parameter, value, error, preset, ratio, ``constrained``
        (error finite and value > 2 error).
    """
    rows = []
    for m, d in carriers.items():
        for k, i in sorted(d.items()):
            for name in components:
                src = state.source(name)
                labels = src.labels
                for ip in range(src.npar):
                    if src.par_names[ip] != "norm":
                        continue
                    idx = src.index(i + 1, ip + 1)
                    p = src.params[idx]
                    if p.link is not None:
                        continue
                    pre = presets.source(name).params[idx].value if presets is not None else None
                    err = p.error
                    rows.append({"module": m, "detector": k, "spectrum": i + 1,
                                 "parameter": f"{name}:{labels[src.par_components[ip]]}.norm",
                                 "value": p.value, "error": err, "preset": pre,
                                 "ratio": (p.value / pre) if pre else None,
                                 "constrained": bool(err is not None and np.isfinite(err) and p.value > 2 * err)})
    return rows
