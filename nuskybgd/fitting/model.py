"""The parameter table of the background model (REFERENCE section 6).

A :class:`FitState` mirrors what an XSPEC save file holds: spectra with their
data groups, extra-source responses and ARFs and ignored bins; model sources
(number, name, components) with one parameter list per data group; and each
parameter's value, step, limits, frozen flag or link. A link is a fixed
ratio to another parameter (``norm_r = ratio * norm_ref``), which is all the
background model needs and what :mod:`nuskybgd.io.xcm` reads and writes.

:func:`build_background_state` fills the table with the presets and ties of
the original tool: sources 2 apbgd (cutoffpl), 3 intbgd (apec + 29 lorentz),
4 fcxb (cutoffpl) and 5 intn (bknpower); the first spectrum of each module
is its reference spectrum.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import NuskybgdError

__all__ = [
    "Param", "Link", "Source", "SpectrumEntry", "FitState", "COMPONENT_PARAMS",
    "component_labels", "build_background_state", "FCXB_FACTOR", "APBGD_FACTOR",
    "ARCMIN2_PIX", "BACKGROUND_SOURCES", "norm_template_key",
]

#: apbgd reference norm per unit aperture-image sum (0.002353 / 32).
APBGD_FACTOR = 0.002353 / 32
#: fcxb norm per sky pixel: 0.002353 * 1.5 * (2.45810736 * 1000 / 3600)^2 / 1000^2.
FCXB_FACTOR = 0.002353 * 1.5 * (2.45810736 * 1000 / 3600) ** 2 / 1000 ** 2
#: Sky pixels per "arcmin^2" in the original's intn preset (1/599.75).
ARCMIN2_PIX = 599.75

#: XSPEC parameter names and default (value, delta, min, bottom, top, max)
#: of the components the background model and the real save files use.
COMPONENT_PARAMS = {
    "cutoffpl": [("PhoIndex", (1.0, 0.01, -3.0, -2.0, 9.0, 10.0)),
                 ("HighECut", (15.0, 0.01, 0.01, 1.0, 500.0, 500.0)),
                 ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "bknpower": [("PhoIndx1", (1.0, 0.01, -3.0, -2.0, 9.0, 10.0)),
                 ("BreakE", (5.0, 0.1, 0.0, 0.01, 1e6, 1e6)),
                 ("PhoIndx2", (2.0, 0.01, -3.0, -2.0, 9.0, 10.0)),
                 ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "lorentz": [("LineE", (6.5, 0.05, 0.0, 0.0, 1e6, 1e6)),
                ("Width", (0.1, 0.05, 0.0, 0.0, 10.0, 20.0)),
                ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "gaussian": [("LineE", (6.5, 0.05, 0.0, 0.0, 1e6, 1e6)),
                 ("Sigma", (0.1, 0.05, 0.0, 0.0, 10.0, 20.0)),
                 ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "apec": [("kT", (1.0, 0.01, 0.008, 0.008, 64.0, 64.0)),
             ("Abundanc", (1.0, -0.001, 0.0, 0.0, 5.0, 5.0)),
             ("Redshift", (0.0, -0.01, -0.999, -0.999, 10.0, 10.0)),
             ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "powerlaw": [("PhoIndex", (1.0, 0.01, -3.0, -2.0, 9.0, 10.0)),
                 ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "bbody": [("kT", (3.0, 0.01, 1e-4, 0.01, 100.0, 200.0)),
              ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "bremss": [("kT", (7.0, 0.01, 1e-4, 0.01, 100.0, 200.0)),
               ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "constant": [("factor", (1.0, 0.01, 0.0, 0.0, 1e10, 1e10))],
    "tbabs": [("nH", (1.0, 0.001, 0.0, 0.0, 1e5, 1e6))],
    "phabs": [("nH", (1.0, 0.001, 0.0, 0.0, 1e5, 1e6))],
}

#: The background sources of the original: (number, name, spectral model).
BACKGROUND_SOURCES = ((2, "apbgd"), (3, "intbgd"), (4, "fcxb"), (5, "intn"))

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
    link : Link or None
        Set when the parameter is tied to another one (the six numbers are then
        ignored except ``value``, kept as the current linked value).
    error : float or None
        1-sigma error after a fit (not part of an XCM file).
    """

    value: float
    delta: float = 0.01
    hard_min: float = 0.0
    soft_min: float = 0.0
    soft_max: float = 1e20
    hard_max: float = 1e24
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
        """The six numbers of the XCM line."""
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
        """0-based position in :attr:`params` of parameter ``ipar`` (1-based) of ``group``."""
        return (group - 1) * self.npar + ipar - 1

    def param(self, group, ipar):
        """Parameter ``ipar`` (1-based within a group) of data group ``group``."""
        return self.params[self.index(group, ipar)]

    def ref(self):
        """Name used in link expressions (``None`` for the unnamed model)."""
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
        """Find a source by name or number (KeyError if absent)."""
        for s in self.sources:
            if s.name == name_or_number or s.number == name_or_number:
                return s
        raise KeyError(name_or_number)

    def copy(self):
        """Deep copy."""
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
        """List of (Source, 0-based index) of the free parameters, file order."""
        return [(s, i) for s in self.sources for i, p in enumerate(s.params) if p.free]


def _param(defaults, value=None, frozen=None, delta=None):
    v, d, lo, blo, bhi, hi = defaults
    if value is not None:
        v = float(value)
    if delta is not None:
        d = delta
    if frozen is True:
        d = -abs(d) if d != 0 else -0.01
    elif frozen is False:
        d = abs(d) if d != 0 else 0.01
    return Param(float(v), float(d), float(lo), float(blo), float(bhi), float(hi))


def norm_template_key(source_name, labels, comp_index):
    """Template key of ``models.background.component_templates`` for a norm.

    Parameters
    ----------
    source_name : str
        ``apbgd``, ``intbgd``, ``fcxb`` or ``intn``.
    labels : list of str
        XSPEC component names of the source.
    comp_index : int
        0-based component position.

    Returns
    -------
    str or None
        ``apbgd``, ``intbgd.apec``, ``intbgd.lorentz_3``, ``fcxb``, ``intn``;
        ``None`` for sources outside the background model.
    """
    if source_name in ("apbgd", "fcxb", "intn"):
        return source_name
    if source_name == "intbgd":
        return f"intbgd.{labels[comp_index]}"
    return None


def build_background_state(spectra, weights, presets, fix_line_ratios=False, fcxb_links=(),
                           original_norms=False, module_area=None):
    """Fill the parameter table of REFERENCE section 6.

    Parameters
    ----------
    spectra : list of dict
        One per background spectrum, in bgdinfo order, with keys ``file``
        (spectrum path as it should appear in the XCM), ``module`` (``"A"``
        or ``"B"``), ``rmf`` (spectrum RMF path), ``apbgd_arf`` (custom ARF
        path), ``fcxb_arf``, ``diag_rmf``, and optionally ``ignore``
        (list of 1-based inclusive bin ranges).
    weights : list of Weights
        Region weights (``area[4]`` in sky pixels, ``ap`` aperture sum), same
        order.
    presets : dict
        The calibration bundle's ``ratios.json`` content.
    fix_line_ratios : bool
        Tie the reference spectrum's lines above 19.6 keV to the 19.6 keV line
        (``lorentz_5``) by their preset ratio.
    fcxb_links : iterable of (int, int)
        1-based spectrum numbers ``(i, j)``: fcxb norm of j = that of i.
    original_norms : bool
        Give the reference spectrum's intbgd norms the original's
        area-weighted *mean* ``sum_k area_k ifactor_k / sum_k area_k``, which
        does not scale with the region's area (REFERENCE section 10).
    module_area : dict, optional
        ``{"A": [A_0, A_1, A_2, A_3], "B": [...]}``: the sky area of each
        detector of the module (sum of its projected detector image, sky
        pixels). Unless ``original_norms``, every intbgd and intn norm is
        then ``sum_k (area_k / A_k) ifactor_k`` (the default since issue 10):
        the ifactors are read as the norms of one whole detector, so a
        region covering detector k entirely gets ``ifactor_k`` (the real
        stacked whole-detector spectra side with this reading). A single
        number per module (the module's total area) gives the previous
        convention: every intbgd norm is
        ``sum_k area_k ifactor_k / module_area``: the ifactors are read as
        the norms of the whole field of view (where this equals the
        original's mean), scaled by the fraction of it inside the region, so
        the reference norm scales with area exactly like the linked spectra.
        Without ``module_area`` the original convention is used. Only starting
        values differ: the links between spectra are the same ratios in both
        conventions, so fitted models are identical.

    Returns
    -------
    FitState
        Statistic ``cstat``, sources 2..5, presets, links and weights
        (``info["weights"]``, ``info["ref"]``).

    Raises
    ------
    NuskybgdError
        If a module's reference weights are zero.
    """
    n = len(spectra)
    if n == 0:
        raise NuskybgdError("no background spectra given")
    if len(weights) != n:
        raise NuskybgdError(f"{n} spectra but {len(weights)} region weights")
    comps = presets["models"]
    apb = comps[0]["components"]["cutoffpl"]
    intb = comps[1]["components"]
    line_names = [k for k in intb if k != "apec"]
    intn = comps[3]["components"]["bknpower"]

    ref = {}
    for i, s in enumerate(spectra):
        ref.setdefault(s["module"], i)
    area = [np.asarray(w.area, float) for w in weights]
    ap = [float(w.ap) for w in weights]
    for i, s in enumerate(spectra):
        if not np.sum(area[i]) > 0:
            raise NuskybgdError(f"{s['file']}: its region has zero area on every detector of module {s['module']}")
        if not ap[i] > 0:
            raise NuskybgdError(f"{s['file']}: its region has zero aperture-image weight")

    state = FitState(statistic="cstat")
    state.settings = ["method leven 30000 1e-4", "abund angr", "xsect vern", "xset delta 0.01",
                      "systematic 0"]
    state.trailer = ["bayes off"]
    for i, s in enumerate(spectra):
        e = SpectrumEntry(group=i + 1, number=i + 1, file=str(s["file"]))
        e.responses = {2: str(s["rmf"]), 3: str(s["rmf"]), 4: str(s["rmf"]), 5: str(s["diag_rmf"])}
        e.arfs = {2: str(s["apbgd_arf"]), 4: str(s["fcxb_arf"])}
        e.ignore = [tuple(r) for r in s.get("ignore", [])]
        state.spectra.append(e)

    def ifsum(i, ifac):
        return float(np.sum(area[i] * np.asarray(ifac, float)))

    if not original_norms and module_area is not None:
        for m in ref:
            if not (m in module_area and float(np.sum(module_area[m])) > 0):
                raise NuskybgdError(f"module {m}: total detector area on the sky is zero or unknown")

    per_det = {m: np.atleast_1d(np.asarray(module_area[m], float)) for m in ref} \
        if (module_area is not None and not original_norms) else {}
    per_det = {m: v for m, v in per_det.items() if v.size == 4}

    def det_sum(i, ifac):
        a_k = per_det[spectra[i]["module"]]
        use = a_k > 0
        return float(np.sum(area[i][use] / a_k[use] * np.asarray(ifac, float)[use]))

    def intbgd_norm(i, ifac):
        if original_norms or module_area is None:
            return ifsum(i, ifac) / float(np.sum(area[i]))
        if spectra[i]["module"] in per_det:
            return det_sum(i, ifac)
        return ifsum(i, ifac) / float(np.sum(module_area[spectra[i]["module"]]))

    def link_ratio(i, r, ifac):
        # norm_i / norm_ref: the section-6 ratio in every convention (spec,
        # image and the XCM rely on it); only the presets change
        return ifsum(i, ifac) / ifsum(r, ifac)

    def intn_norm(i, ifac):
        if spectra[i]["module"] in per_det:
            return det_sum(i, ifac)
        return ifsum(i, ifac) / ARCMIN2_PIX

    # --- source 2: apbgd (cutoffpl) ---
    src = Source.from_expression(2, "apbgd", "cutoffpl")
    d = dict(COMPONENT_PARAMS["cutoffpl"])
    for i, s in enumerate(spectra):
        m = s["module"]
        r = ref[m]
        if i == r:
            src.params += [_param(d["PhoIndex"], apb[m]["phoindex"], frozen=True),
                           _param(d["HighECut"], apb[m]["highecut"], frozen=True),
                           _param(d["norm"], APBGD_FACTOR * ap[i], frozen=False)]
        else:
            ratio = ap[i] / ap[r]
            src.params += [_linked(d["PhoIndex"], "apbgd", src.index(r + 1, 1) + 1, 1.0),
                           _linked(d["HighECut"], "apbgd", src.index(r + 1, 2) + 1, 1.0),
                           _linked(d["norm"], "apbgd", src.index(r + 1, 3) + 1, ratio)]
    state.sources.append(src)

    # --- source 3: intbgd (apec + 29 lorentz) ---
    src = Source.from_expression(3, "intbgd", " + ".join(["apec"] + ["lorentz"] * len(line_names)))
    da = dict(COMPONENT_PARAMS["apec"])
    dl = dict(COMPONENT_PARAMS["lorentz"])
    free_lines = {"lorentz", "lorentz_3", "lorentz_4", "lorentz_5"}
    for i, s in enumerate(spectra):
        m = s["module"]
        r = ref[m]
        pa = intb["apec"][m]
        if i == r:
            src.params += [_param(da["kT"], pa["kt"], frozen=True),
                           _param(da["Abundanc"], pa["abundanc"], frozen=True),
                           _param(da["Redshift"], pa["redshift"], frozen=True),
                           _param(da["norm"], intbgd_norm(i, pa["ifactors"]), frozen=False)]
            n5_index = None
            n5_value = None
            for name in line_names:
                pl = intb[name][m]
                norm = intbgd_norm(i, pl["ifactors"])
                src.params += [_param(dl["LineE"], pl["linee"], frozen=True),
                               _param(dl["Width"], pl["width"], frozen=True)]
                if fix_line_ratios and n5_index is not None and name not in free_lines:
                    src.params.append(_linked(dl["norm"], "intbgd", n5_index, norm / n5_value))
                else:
                    src.params.append(_param(dl["norm"], norm, frozen=False))
                if name == "lorentz_5":
                    n5_index, n5_value = len(src.params), norm
        else:
            base = src.index(r + 1, 1)  # 0-based start of the reference group
            ratio = link_ratio(i, r, pa["ifactors"])
            src.params += [_linked(da["kT"], "intbgd", base + 1, 1.0),
                           _linked(da["Abundanc"], "intbgd", base + 2, 1.0),
                           _linked(da["Redshift"], "intbgd", base + 3, 1.0),
                           _linked(da["norm"], "intbgd", base + 4, ratio)]
            for k, name in enumerate(line_names):
                pl = intb[name][m]
                j = base + 5 + 3 * k
                ratio = link_ratio(i, r, pl["ifactors"])
                src.params += [_linked(dl["LineE"], "intbgd", j, 1.0),
                               _linked(dl["Width"], "intbgd", j + 1, 1.0),
                               _linked(dl["norm"], "intbgd", j + 2, ratio)]
    state.sources.append(src)

    # --- source 4: fcxb (cutoffpl, shape tied to the module's apbgd) ---
    src = Source.from_expression(4, "fcxb", "cutoffpl")
    for i, s in enumerate(spectra):
        r = ref[s["module"]]
        src.params += [_linked(d["PhoIndex"], "apbgd", 3 * r + 1, 1.0),
                       _linked(d["HighECut"], "apbgd", 3 * r + 2, 1.0),
                       _param(d["norm"], FCXB_FACTOR * float(np.sum(area[i])), frozen=False)]
    for pair in fcxb_links:
        a, b = int(pair[0]), int(pair[1])
        if not (1 <= a <= n and 1 <= b <= n) or a == b:
            raise NuskybgdError(f"fcxb_config.links: [{a}, {b}] does not name two different spectra 1..{n}")
        p = src.params[3 * (b - 1) + 2]
        src.params[3 * (b - 1) + 2] = _linked(d["norm"], "fcxb", 3 * (a - 1) + 3, 1.0)
        src.params[3 * (b - 1) + 2].value = p.value
    state.sources.append(src)

    # --- source 5: intn (bknpower) ---
    src = Source.from_expression(5, "intn", "bknpower")
    db = dict(COMPONENT_PARAMS["bknpower"])
    for i, s in enumerate(spectra):
        m = s["module"]
        r = ref[m]
        pb = intn[m]
        src.params += [_param(db["PhoIndx1"], pb["phoindx1"], frozen=True),
                       _param(db["BreakE"], pb["breake"], frozen=True),
                       _param(db["PhoIndx2"], pb["phoindx2"], frozen=True)]
        if i == r:
            src.params.append(_param(db["norm"], intn_norm(i, pb["ifactors"]), frozen=False))
        else:
            ratio = link_ratio(i, r, pb["ifactors"])
            src.params.append(_linked(db["norm"], "intn", 4 * r + 4, ratio))
    state.sources.append(src)

    state.update_linked_values()
    state.info["ref"] = {m: i + 1 for m, i in ref.items()}
    state.info["modules"] = [s["module"] for s in spectra]
    state.info["weights"] = [{"area": [float(a) for a in area[i]], "ap": ap[i],
                              "frac": [float(a) for a in area[i] / np.sum(area[i])]} for i in range(n)]
    state.info["intbgd_norms"] = ("original: reference norm = sum_k area_k ifactor_k / sum_k area_k"
                                  if original_norms or module_area is None else
                                  "per-detector: norm = sum_k (area_k / A_k) ifactor_k, A_k = detector k's area"
                                  if per_det else
                                  "area-scaled: norm = sum_k area_k ifactor_k / module detector area")
    if module_area is not None:
        state.info["module_area"] = {m: (float(v) if np.ndim(v) == 0 else [float(x) for x in v])
                                     for m, v in module_area.items()}
    state.info["fix_line_ratios"] = bool(fix_line_ratios)
    return state


def _linked(defaults, source, index, factor):
    p = _param(defaults)
    p.link = Link(source, int(index), float(factor))
    return p
