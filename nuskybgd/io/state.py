"""Records of a background fit: what an XSPEC save file holds.

A :class:`FitState` mirrors an XCM file: spectra with their data groups,
extra-source responses and ARFs and ignored bins; model sources (number,
name, components) with one parameter list per data group; and each
parameter's value, step, limits, frozen flag or link. A link is a fixed
ratio to another parameter (``norm_r = ratio * norm_ref``). The XCM reader
and writer (:mod:`nuskybgd.io.xcm`) and the JSON export own these records;
:mod:`nuskybgd.fitting.model` fills them with the background model.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from ..errors import NuskybgdError
from ..parameters import COMPONENT_PARAMS, NORM

__all__ = ["Param", "Link", "Source", "SpectrumEntry", "FitState", "component_labels"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Link:
    """A parameter tied to another one by a fixed ratio.

    Attributes
    ----------
    source : str or None
        Name of the model the target belongs to (``None``: the same, unnamed
        model, written ``pN``).
    index : int
        1-based parameter number of the target inside its model, counted over
        all data groups (XSPEC numbering: group g owns (g-1)*npar+1 .. g*npar).
    factor : float
        The fixed ratio: this parameter = factor * target.
    """

    source: str | None
    index: int
    factor: float = 1.0


@dataclass
class Param:
    """One XSPEC parameter line.

    Attributes
    ----------
    value, delta, hard_min, soft_min, soft_max, hard_max : float
        XSPEC's six numbers; a negative (or zero) ``delta`` means frozen.
        The defaults are those of an XSPEC norm
        (:data:`nuskybgd.parameters.NORM`).
    link : Link or None
        Set when the parameter is tied to another one (the six numbers are then
        ignored except ``value``, kept as the current linked value).
    error : float or None
        1-sigma error after a fit (not part of an XCM file).
    """

    value: float
    delta: float = NORM.delta
    hard_min: float = NORM.hard_min
    soft_min: float = NORM.soft_min
    soft_max: float = NORM.soft_max
    hard_max: float = NORM.hard_max
    link: Link | None = None
    error: float | None = None

    @property
    def frozen(self):
        """True for a frozen, unlinked parameter."""
        return self.link is None and self.delta <= 0

    @property
    def free(self):
        """True for a free (fitted), unlinked parameter."""
        return self.link is None and self.delta > 0

    def numbers(self):
        """The six numbers of the XCM line.

        Returns
        -------
        tuple of float
            ``(value, delta, hard_min, soft_min, soft_max, hard_max)``.
        """
        return (self.value, self.delta, self.hard_min, self.soft_min, self.soft_max, self.hard_max)


def component_labels(components):
    """XSPEC's names of the components of a model expression.

    Parameters
    ----------
    components : list of str
        Component types in expression order, e.g. ``["apec", "lorentz", "lorentz"]``.

    Returns
    -------
    list of str
        The first occurrence of a type keeps its name; later ones get the
        suffix ``_<position>`` (1-based position in the expression), so
        ``apec + lorentz + lorentz`` gives ``apec, lorentz, lorentz_3``.
    """
    seen, out = set(), []
    for pos, c in enumerate(components, start=1):
        out.append(c if c not in seen else f"{c}_{pos}")
        seen.add(c)
    return out


@dataclass
class Source:
    """A model source: XSPEC ``model <number>:<name> <expression>``.

    Attributes
    ----------
    number : int
        XSPEC source number (1 for the unnamed model).
    name : str or None
        Model name (``None`` for the unnamed source-1 model).
    expression : str
        The model expression as written, e.g. ``"apec + lorentz"``.
    components : list of str
        Component types in order.
    par_names : list of str
        Names of the ``npar`` parameters of one data group (``norm`` etc.).
    par_components : list of int
        Component position (0-based) of each parameter of a data group.
    params : list of Param
        ``npar * n_groups`` parameters, XSPEC order.
    """

    number: int
    name: str | None
    expression: str
    components: list
    par_names: list
    par_components: list
    params: list = field(default_factory=list)

    @property
    def npar(self):
        """Parameters per data group."""
        return len(self.par_names)

    @property
    def labels(self):
        """XSPEC component names (``lorentz_3`` ...)."""
        return component_labels(self.components)

    def index(self, group, ipar):
        """Position of a parameter in :attr:`params`.

        Parameters
        ----------
        group : int
            Data group, 1-based.
        ipar : int
            Parameter number within the group, 1-based.

        Returns
        -------
        int
            0-based index into :attr:`params`.
        """
        return (group - 1) * self.npar + ipar - 1

    def param(self, group, ipar):
        """One parameter of one data group.

        Parameters
        ----------
        group : int
            Data group, 1-based.
        ipar : int
            Parameter number within the group, 1-based.

        Returns
        -------
        Param
            The parameter (not a copy).
        """
        return self.params[self.index(group, ipar)]

    def ref(self):
        """Name used in link expressions.

        Returns
        -------
        str or None
            The source name; ``None`` for the unnamed model.
        """
        return self.name

    @classmethod
    def from_expression(cls, number, name, expression, npar=None):
        """Build an empty source from a model expression.

        Parameters
        ----------
        number : int
            Source number.
        name : str or None
            Model name.
        expression : str
            XSPEC model expression (``+``, ``*`` and parentheses allowed).
        npar : int, optional
            Parameters per group when some component is not in
            :data:`COMPONENT_PARAMS` (names become ``p1`` ...).

        Returns
        -------
        Source
        """
        comps = _NAME.findall(expression)
        names, pcomp = [], []
        known = all(c.lower() in COMPONENT_PARAMS for c in comps)
        if known:
            for i, c in enumerate(comps):
                for pname, _ in COMPONENT_PARAMS[c.lower()]:
                    names.append(pname)
                    pcomp.append(i)
            if npar is not None and npar != len(names):
                raise ValueError(f"expression {expression!r} has {len(names)} parameters per group, not {npar}")
        else:
            if npar is None:
                raise ValueError(f"unknown component in {expression!r}")
            names = [f"p{i + 1}" for i in range(npar)]
            pcomp = [-1] * npar
        expr = re.sub(r"\s*([+*()])\s*", lambda m: f" {m.group(1)} " if m.group(1) in "+*" else m.group(1),
                      expression.strip())
        return cls(number, name, " ".join(expr.split()), [c.lower() if known else c for c in comps],
                   names, pcomp)


@dataclass
class SpectrumEntry:
    """One spectrum of the state (XSPEC ``data <group>:<number> <file>``).

    Attributes
    ----------
    group, number : int
        Data group and spectrum number (1-based).
    file : str
        Spectrum file as written in the XCM.
    responses : dict
        Source number -> response file for sources other than 1 (or for 1 when
        given explicitly).
    arfs : dict
        Source number -> ARF file.
    ignore : list of (int, int)
        Ignored bin ranges (1-based, inclusive; bins are grouped channels).
    ignore_bad : bool
        ``ignore bad`` applies.
    gain : list of Param or None
        XSPEC ``gain`` of every response of this spectrum: ``[slope,
        offset]`` (offset in keV; see :mod:`nuskybgd.kernels.gain`), free,
        frozen or linked (``Link("gain", 2 (n - 1) + 1 or 2)`` names slope or
        offset of spectrum ``n``); ``None`` for the nominal response.
    """

    group: int
    number: int
    file: str
    responses: dict = field(default_factory=dict)
    arfs: dict = field(default_factory=dict)
    ignore: list = field(default_factory=list)
    ignore_bad: bool = False
    gain: list | None = None


@dataclass
class FitState:
    """The whole fit state (what an XCM file describes, plus fit results).

    Attributes
    ----------
    spectra : list of SpectrumEntry
        In spectrum-number order.
    sources : list of Source
        In the order of the file.
    settings : list of str
        Setting commands kept verbatim (``method ...``, ``abund angr`` ...).
    statistic : str
        ``cstat`` or ``chi``.
    trailer : list of str
        Commands after the models (``bayes off``).
    info : dict
        Extra information for the JSON output (weights, statistic, dof ...).
    """

    spectra: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    settings: list = field(default_factory=list)
    statistic: str = "cstat"
    trailer: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def n_groups(self):
        """Number of data groups."""
        return max((s.group for s in self.spectra), default=1)

    def source(self, name_or_number):
        """Find a source by name or number.

        Parameters
        ----------
        name_or_number : str or int
            Source name (e.g. ``"intbgd"``) or source number.

        Returns
        -------
        Source
            The first source that matches.

        Raises
        ------
        KeyError
            No such source.
        """
        for s in self.sources:
            if s.name == name_or_number or s.number == name_or_number:
                return s
        raise KeyError(name_or_number)

    def copy(self):
        """Deep copy.

        Returns
        -------
        FitState
            Independent of this state.
        """
        return copy.deepcopy(self)

    def resolve(self, source, idx0, _depth=0):
        """Follow links from a parameter to its free or frozen root.

        Parameters
        ----------
        source : Source
            The model of the parameter.
        idx0 : int
            0-based position in ``source.params``.

        Returns
        -------
        (Source, int, float)
            Root model, root 0-based position, and the product of the link
            factors (parameter value = factor * root value).

        Raises
        ------
        NuskybgdError
            For a link to a missing model or parameter, or a cycle.
        """
        factor = 1.0
        seen = set()
        while True:
            p = source.params[idx0]
            if p.link is None:
                return source, idx0, factor
            key = (source.number, idx0)
            if key in seen:
                raise NuskybgdError(f"parameter links form a cycle at {source.name or ''}:p{idx0 + 1}")
            seen.add(key)
            lk = p.link
            try:
                target = self.source(lk.source) if lk.source is not None else source
            except KeyError:
                raise NuskybgdError(f"parameter {source.name}:p{idx0 + 1} is linked to unknown model {lk.source!r}") from None
            if not 1 <= lk.index <= len(target.params):
                raise NuskybgdError(
                    f"parameter {source.name or ''}:p{idx0 + 1} is linked to {target.name or ''}:p{lk.index}, which does not exist")
            factor *= lk.factor
            source, idx0 = target, lk.index - 1

    def update_linked_values(self):
        """Set every linked parameter's value to factor * its root's value."""
        for s in self.sources:
            for i, p in enumerate(s.params):
                if p.link is not None:
                    root, j, f = self.resolve(s, i)
                    p.value = f * root.params[j].value
                    if root.params[j].error is not None:
                        p.error = abs(f) * root.params[j].error

    def free_parameters(self):
        """The free parameters, in file order.

        Returns
        -------
        list of (Source, int)
            Source and 0-based index into its ``params``.
        """
        return [(s, i) for s in self.sources for i, p in enumerate(s.params) if p.free]
