"""Response gain parameters in a fit state, and readable parameter labels.

Each spectrum may carry an XSPEC-style ``gain`` (slope, offset in keV, see
:mod:`nuskybgd.kernels.gain`); these helpers build the two parameters, link
them between spectra and follow links to the value in force.
"""

from __future__ import annotations

from ..errors import NuskybgdError
from ..io.state import Link, Param
from ..kernels.gain import check_gain

__all__ = ["GAIN_NAMES", "gain_link", "gain_params", "gain_values", "parameter_label", "resolve_gain"]

#: Names of the two gain parameters (XSPEC: slope, intercept in keV).
GAIN_NAMES = ("slope", "offset")
#: value, delta, hard_min, soft_min, soft_max, hard_max of the gain parameters.
_GAIN_DEFAULTS = {"slope": (1.0, 0.001, 0.8, 0.8, 1.2, 1.2), "offset": (0.0, 0.001, -2.0, -2.0, 2.0, 2.0)}


def gain_params(slope=1.0, offset=0.0, free=True):
    """The two gain parameters of one spectrum.

    Parameters
    ----------
    slope : float
        Gain slope (0.8..1.2).
    offset : float
        Gain offset, keV (-2..2).
    free : bool
        Fit them (XSPEC ``gain fit``) or keep them fixed.

    Returns
    -------
    list of Param
        ``[slope, offset]`` with XSPEC-style limits.

    Raises
    ------
    NuskybgdError
        Outside the hard limits.
    """
    slope, offset = check_gain(slope, offset)
    out = []
    for name, v in zip(GAIN_NAMES, (slope, offset)):
        _, d, lo, blo, bhi, hi = _GAIN_DEFAULTS[name]
        out.append(Param(float(v), d if free else -d, lo, blo, bhi, hi))
    return out


def gain_link(number, which):
    """Link to one gain parameter of another spectrum.

    Parameters
    ----------
    number : int
        Spectrum number (1-based) that holds the gain.
    which : int
        0 for the slope, 1 for the offset.

    Returns
    -------
    Link
        ``gain:<index>`` with factor 1, the index counting two parameters
        per spectrum.
    """
    return Link("gain", 2 * (int(number) - 1) + int(which) + 1, 1.0)


def resolve_gain(state, k, which):
    """Root of a gain parameter.

    Parameters
    ----------
    state : FitState
    k : int
        0-based spectrum index.
    which : int
        0 slope, 1 offset.

    Returns
    -------
    (int, int, float) or None
        Root spectrum index, root parameter (0/1) and link factor; ``None``
        when the spectrum has no gain.
    """
    seen = set()
    factor = 1.0
    while True:
        e = state.spectra[k]
        if e.gain is None:
            return None
        p = e.gain[which]
        if p.link is None:
            return k, which, factor
        if (k, which) in seen:
            raise NuskybgdError(f"gain links form a cycle at spectrum {e.number}")
        seen.add((k, which))
        lk = p.link
        if lk.source != "gain" or not 1 <= lk.index <= 2 * len(state.spectra):
            raise NuskybgdError(f"gain {GAIN_NAMES[which]} of spectrum {e.number} is linked to {lk.source}:"
                                f"{lk.index}, which is not a gain parameter of this fit")
        factor *= lk.factor
        k, which = divmod(lk.index - 1, 2)


def gain_values(state, k):
    """Gain in force for one spectrum, links followed.

    Parameters
    ----------
    state : FitState
        The fit state holding the spectra and their gains.
    k : int
        0-based spectrum index.

    Returns
    -------
    (float, float)
        Slope and offset (keV); ``(1, 0)`` when the spectrum has no gain.
    """
    out = []
    for w in (0, 1):
        r = resolve_gain(state, k, w)
        if r is None:
            return 1.0, 0.0
        kk, ww, f = r
        out.append(f * state.spectra[kk].gain[ww].value)
    return out[0], out[1]


def parameter_label(state, src, idx0):
    """Readable name of a model parameter.

    Parameters
    ----------
    state : FitState
        The fit state that holds ``src`` (the label depends on ``src``
        alone).
    src : Source
        The source holding the parameter.
    idx0 : int
        0-based parameter index over all data groups of ``src``.

    Returns
    -------
    str
        ``source:component.PARAM``, with ``@group`` appended for data
        groups after the first.
    """
    g, ip = divmod(idx0, src.npar)
    c = src.par_components[ip]
    comp = src.labels[c] if c >= 0 else "?"
    out = f"{src.name}:{comp}.{src.par_names[ip]}"
    return out if g == 0 else f"{out}@{g + 1}"

