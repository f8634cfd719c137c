"""Presets of the four background components, from the bundle's ``ratios.json``.

The bundle stores, per module (A/B), the frozen shape parameters of each
component and per-detector weights (``ifactors``, DET0..DET3) of every
norm-carrying component; see REFERENCE section 1 and 6.
"""

import copy
import re
from dataclasses import dataclass

from ..constants import module_letter
from ..errors import NuskybgdError
from .auxil import load_ratios

__all__ = ["ApbgdPreset", "ApecPreset", "LinePreset", "IntnPreset", "ComponentPresets",
           "component_presets", "with_added_lines", "parse_added_lines", "K_ALPHA_LINES", "ADDED_LINE_WIDTH",
           "ADDED_LINE_START"]

#: Fluorescence lines absent from the original bundle but seen in late-epoch
#: stacked spectra (Cr, Fe and Ni K-alpha, keV; X-ray data booklet energies).
K_ALPHA_LINES = (5.411, 6.400, 7.472)
#: Lorentz FWHM given to added lines, keV (unresolved: the RMF gives the width).
ADDED_LINE_WIDTH = 0.05
#: Starting ifactors of an added line: this fraction of the module's apec ifactors (same detector pattern).
ADDED_LINE_START = 1e-3


@dataclass(frozen=True)
class ApbgdPreset:
    """Aperture background shape (``cutoffpl``); the fCXB shares it.

    Attributes
    ----------
    phoindex : float
        Photon index.
    highecut : float
        e-folding energy of the cutoff, keV.
    """

    phoindex: float
    highecut: float  #: keV


@dataclass(frozen=True)
class ApecPreset:
    """Internal apec continuum of intbgd.

    Attributes
    ----------
    kt : float
        Plasma temperature, keV.
    abundanc : float
        Metal abundance (solar units).
    redshift : float
        Redshift.
    ifactors : tuple of float
        Per-detector weights DET0..DET3.
    """

    kt: float  #: keV
    abundanc: float
    redshift: float
    ifactors: tuple  #: per-detector weights DET0..DET3


@dataclass(frozen=True)
class LinePreset:
    """One internal Lorentzian line of intbgd.

    Attributes
    ----------
    name : str
        XSPEC component name: lorentz, lorentz_3 ... lorentz_30.
    linee : float
        Line energy, keV.
    width : float
        FWHM, keV.
    ifactors : tuple of float
        Per-detector weights DET0..DET3.
    """

    name: str  #: XSPEC component name: lorentz, lorentz_3 ... lorentz_30
    linee: float  #: keV
    width: float  #: FWHM, keV
    ifactors: tuple


@dataclass(frozen=True)
class IntnPreset:
    """Internal continuum (``bknpower``) folded through the diagonal RMF.

    Attributes
    ----------
    phoindx1 : float
        Photon index below the break.
    breake : float
        Break energy, keV.
    phoindx2 : float
        Photon index above the break.
    ifactors : tuple of float
        Per-detector weights DET0..DET3.
    """

    phoindx1: float
    breake: float  #: keV
    phoindx2: float
    ifactors: tuple


@dataclass(frozen=True)
class ComponentPresets:
    """Presets of one module.

    Attributes
    ----------
    module : str
        ``"A"`` or ``"B"``.
    apbgd : ApbgdPreset
        cutoffpl shape of the aperture background.
    apec : ApecPreset
        apec of intbgd.
    lines : tuple of LinePreset
        The 29 Lorentzian lines in ratios.json order.
    fcxb : ApbgdPreset
        cutoffpl shape of the fCXB (linked to apbgd in the original).
    intn : IntnPreset
        bknpower of the internal continuum.
    """

    module: str
    apbgd: ApbgdPreset
    apec: ApecPreset
    lines: tuple
    fcxb: ApbgdPreset
    intn: IntnPreset

    @property
    def line_names(self):
        """Names of the lines (``lorentz``, ``lorentz_3``, ...)."""
        return tuple(line.name for line in self.lines)


def _num(value, what, where):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise NuskybgdError(f"{where}: {what} is not a number ({value!r})") from None
    if v != v:
        raise NuskybgdError(f"{where}: {what} is NaN")
    return v


def _ifactors(entry, what, where):
    f = entry.get("ifactors")
    if not isinstance(f, (list, tuple)) or len(f) != 4:
        raise NuskybgdError(f"{where}: {what} needs 4 ifactors (DET0..DET3)")
    return tuple(_num(x, f"{what} ifactor", where) for x in f)


def component_presets(module, ratios=None):
    """Presets of the four components for one module.

    Parameters
    ----------
    module : str
        ``"A"`` or ``"B"`` (``"FPMA"``/``"FPMB"`` accepted).
    ratios : dict, optional
        Parsed ``ratios.json``; default: the bundle's
        (:func:`nuskybgd.calib.auxil.load_ratios`).

    Returns
    -------
    ComponentPresets
        apbgd (PhoIndex, HighECut in keV), intbgd apec (kT keV, Abundanc,
        Redshift, ifactors[4]) and 29 lines (name, LineE keV, Width keV,
        ifactors[4]) in file order, fcxb (apbgd's shape) and intn (PhoIndx1,
        BreakE keV, PhoIndx2, ifactors[4]).

    Raises
    ------
    NuskybgdError
        For a module other than A/B or a ratios.json lacking an entry.
    """
    m = module_letter(module)
    where = "ratios.json"
    if ratios is None:
        ratios = load_ratios()
    try:
        models = ratios["models"]
        cpl = models[0]["components"]["cutoffpl"][m]
        intbgd = models[1]["components"]
        bkn = models[3]["components"]["bknpower"][m]
        apec = intbgd["apec"][m]
    except (KeyError, IndexError, TypeError) as exc:
        raise NuskybgdError(f"{where}: missing preset entry {exc} for module {m}") from None
    apbgd = ApbgdPreset(_num(cpl.get("phoindex"), "apbgd phoindex", where),
                        _num(cpl.get("highecut"), "apbgd highecut", where))
    lines = []
    for name, comp in intbgd.items():
        if not name.startswith("lorentz"):
            continue
        try:
            e = comp[m]
        except (KeyError, TypeError):
            raise NuskybgdError(f"{where}: line {name} has no module {m} entry") from None
        lines.append(LinePreset(name, _num(e.get("linee"), f"{name} linee", where),
                                _num(e.get("width"), f"{name} width", where),
                                _ifactors(e, name, where)))
    if not lines:
        raise NuskybgdError(f"{where}: no lorentz lines in the intbgd entry")
    return ComponentPresets(
        module=m,
        apbgd=apbgd,
        apec=ApecPreset(_num(apec.get("kt"), "apec kt", where), _num(apec.get("abundanc"), "apec abundanc", where),
                        _num(apec.get("redshift"), "apec redshift", where), _ifactors(apec, "apec", where)),
        lines=tuple(lines),
        fcxb=apbgd,
        intn=IntnPreset(_num(bkn.get("phoindx1"), "intn phoindx1", where), _num(bkn.get("breake"), "intn breake", where),
                        _num(bkn.get("phoindx2"), "intn phoindx2", where), _ifactors(bkn, "intn", where)),
    )


def with_added_lines(ratios, energies, width=ADDED_LINE_WIDTH):
    """A copy of a parsed ``ratios.json`` with extra intbgd Lorentz lines.

    The new lines are named as XSPEC numbers components (``lorentz_31``,
    ``lorentz_32``, ... after the last one). Their starting ifactors are
    :data:`ADDED_LINE_START` times the module's apec ifactors (so detectors
    and regions link like the apec continuum): they are meant to be fitted
    (``nuskybgd fit --add-lines``, ``nuskybgd calibrate --add-lines``, which
    writes the fitted ifactors into the bundle). Each entry carries
    ``"added": true``: its norm stays free when the other lines are tied to
    lorentz_5 (``intbgd_fix_line_ratios``).

    Parameters
    ----------
    ratios : dict
        Parsed ratios.json (not modified).
    energies : sequence of float
        Line energies, keV (0 < E < 165).
    width : float
        Lorentz FWHM of every added line, keV.

    Returns
    -------
    dict
        The extended copy.

    Raises
    ------
    NuskybgdError
        An energy outside the response range or within 0.05 keV of a line
        the model already has, or a ratios.json without an intbgd model.
    """
    out = copy.deepcopy(ratios)
    try:
        intbgd = out["models"][1]
        comps = intbgd["components"]
    except (KeyError, IndexError, TypeError):
        raise NuskybgdError("ratios.json: no intbgd model to add lines to") from None
    numbers = [2 if n == "lorentz" else int(m.group(1))
               for n in comps for m in [re.fullmatch(r"lorentz(?:_(\d+))?", n)] if m]
    nxt = max(numbers, default=1) + 1
    for e in energies:
        e = float(e)
        if not 0.0 < e < 165.0:
            raise NuskybgdError(f"added line at {e} keV: outside the response range (0-165 keV)")
        for name, c in comps.items():
            for m in ("A", "B"):
                old = c.get(m, {}).get("linee") if isinstance(c, dict) else None
                if isinstance(old, (int, float)) and abs(float(old) - e) < 0.05:
                    raise NuskybgdError(f"added line at {e} keV: the model already has {name} at {old} keV "
                                        f"(FPM{m})")
        try:
            start = {m: [ADDED_LINE_START * float(v) for v in comps["apec"][m]["ifactors"]] for m in ("A", "B")}
        except (KeyError, TypeError, ValueError):
            raise NuskybgdError("ratios.json: no apec ifactors to start added lines from") from None
        comps[f"lorentz_{nxt}"] = {m: {"linee": e, "width": float(width), "ifactors": start[m], "added": True}
                                   for m in ("A", "B")}
        if isinstance(intbgd.get("formula"), str):
            intbgd["formula"] += f"+{{l{nxt - 1}}}"
        nxt += 1
    return out


def parse_added_lines(text):
    """Parse the value of ``--add-lines`` (or ``add_lines=``).

    Parameters
    ----------
    text : str or sequence of float or None
        ``None`` (no lines), ``"K-alpha"`` (:data:`K_ALPHA_LINES`),
        comma-separated energies in keV, or the energies themselves.

    Returns
    -------
    tuple of float
        Energies, keV.

    Raises
    ------
    NuskybgdError
        Not numbers, or outside 0-165 keV.
    """
    if text is None:
        return ()
    if text == "K-alpha":
        return K_ALPHA_LINES
    try:
        out = tuple(float(x) for x in (str(text).split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        raise NuskybgdError(f"--add-lines {text}: give energies in keV, e.g. 6.4,7.47") from None
    if not all(0.0 < e < 165.0 for e in out):
        raise NuskybgdError(f"--add-lines {text}: energies must lie between 0 and 165 keV")
    return out
