"""The background model's fit state (REFERENCE section 6).

:func:`build_background_state` fills a :class:`~nuskybgd.io.state.FitState`
with the presets and ties of the original tool: sources 2 apbgd (cutoffpl),
3 intbgd (apec + 29 lorentz), 4 fcxb (cutoffpl) and 5 intn (bknpower); the
first spectrum of each module is its reference spectrum. The records
themselves (:class:`~nuskybgd.io.state.Param`, ``Link``, ``Source``,
``SpectrumEntry``, ``FitState``) live in :mod:`nuskybgd.io.state`, the
parameter table in :mod:`nuskybgd.parameters` and the normalisation
constants in :mod:`nuskybgd.constants`.
"""

from __future__ import annotations

import numpy as np

from ..constants import APBGD_FACTOR, ARCMIN2_PIX, FCXB_FACTOR
from ..errors import NuskybgdError
from ..io.state import FitState, Link, Param, Source, SpectrumEntry
from ..parameters import COMPONENT_PARAMS

__all__ = ["build_background_state", "BACKGROUND_SOURCES", "norm_template_key"]

#: The background sources of the original: (number, name, spectral model).
BACKGROUND_SOURCES = ((2, "apbgd"), (3, "intbgd"), (4, "fcxb"), (5, "intn"))


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

    def link_ratio(i, r, ifac, what):
        # norm_i / norm_ref: the section-6 ratio in every convention (spec,
        # image and the XCM rely on it); only the presets change
        num, den = ifsum(i, ifac), ifsum(r, ifac)
        if den > 0:
            return num / den
        if num == 0:
            return 1.0  # the presets hold this component at zero on both regions (e.g. an epoch's absent line)
        raise NuskybgdError(
            f"{what}: the presets (ifactors) give the reference spectrum {r + 1} of module {spectra[r]['module']} "
            f"zero and spectrum {i + 1} a positive norm, so the linked model cannot tie them; "
            f"fit with --free-detectors or use presets with non-zero ifactors on the reference region")

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
    # the original's free lines, and lines added to the shipped model (--add-lines), which have no preset ratio
    free_lines = {"lorentz", "lorentz_3", "lorentz_4", "lorentz_5"} | {
        n for n in line_names if any(isinstance(e, dict) and e.get("added") for e in intb[n].values())}
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
            ratio = link_ratio(i, r, pa["ifactors"], "intbgd:apec")
            src.params += [_linked(da["kT"], "intbgd", base + 1, 1.0),
                           _linked(da["Abundanc"], "intbgd", base + 2, 1.0),
                           _linked(da["Redshift"], "intbgd", base + 3, 1.0),
                           _linked(da["norm"], "intbgd", base + 4, ratio)]
            for k, name in enumerate(line_names):
                pl = intb[name][m]
                j = base + 5 + 3 * k
                ratio = link_ratio(i, r, pl["ifactors"], f"intbgd:{name}")
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
            ratio = link_ratio(i, r, pb["ifactors"], "intn:bknpower")
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
