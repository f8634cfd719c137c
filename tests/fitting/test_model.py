"""Parameter table of REFERENCE section 6: presets, references and link ratios."""

import numpy as np
import pytest
from fit_synthetic import W

from nuskybgd.calib.auxil import load_ratios
from nuskybgd.constants import APBGD_FACTOR, FCXB_FACTOR
from nuskybgd.errors import NuskybgdError
from nuskybgd.fitting.model import build_background_state
from nuskybgd.io.state import component_labels
from nuskybgd.io.state import Link, Source

AREAS = [np.array([1000.0, 500.0, 0.0, 200.0]), np.array([0.0, 900.0, 300.0, 0.0]),
         np.array([400.0, 400.0, 400.0, 400.0]), np.array([10.0, 0.0, 0.0, 2000.0])]
APS = [10.0, 7.0, 20.0, 5.0]
MODS = ["A", "B", "A", "B"]


def _specs():
    return [dict(file=f"s{i}.pha", module=m, rmf=f"s{i}.rmf", apbgd_arf=f"s{i}_ap.arf",
                 fcxb_arf=f"fcxb{m}.arf", diag_rmf="diag.rmf") for i, m in enumerate(MODS)]


MODULE_AREA = {"A": 90000.0, "B": 85000.0}


def _state(**kw):
    kw.setdefault("module_area", MODULE_AREA)
    return build_background_state(_specs(), [W(a, ap) for a, ap in zip(AREAS, APS)], load_ratios(), **kw)


def test_component_labels():
    assert component_labels(["apec", "lorentz", "lorentz", "lorentz"]) == ["apec", "lorentz", "lorentz_3", "lorentz_4"]


def test_sources_and_counts():
    st = _state()
    assert [(s.number, s.name) for s in st.sources] == [(2, "apbgd"), (3, "intbgd"), (4, "fcxb"), (5, "intn")]
    assert st.source("intbgd").npar == 4 + 29 * 3
    assert st.source("intbgd").labels[-1] == "lorentz_30"
    assert st.info["ref"] == {"A": 1, "B": 2}
    # free: per module apbgd 1 + intbgd 30 + intn 1, plus fcxb per spectrum
    assert len(st.free_parameters()) == 2 * 32 + 4


def test_apbgd_presets_and_links():
    r = load_ratios()["models"][0]["components"]["cutoffpl"]
    src = _state().source("apbgd")
    assert src.param(1, 1).value == r["A"]["phoindex"] and src.param(1, 1).frozen
    assert src.param(1, 3).value == pytest.approx(APBGD_FACTOR * APS[0], rel=1e-14) and src.param(1, 3).free
    assert src.param(3, 3).link == Link("apbgd", 3, pytest.approx(APS[2] / APS[0], rel=1e-14))
    assert src.param(4, 3).link.index == 6 and src.param(4, 3).link.factor == pytest.approx(APS[3] / APS[1])
    assert src.param(4, 1).link == Link("apbgd", 4, 1.0)


@pytest.mark.parametrize("original", [False, True])
def test_intbgd_norms_and_ratios(original):
    pre = load_ratios()["models"][1]["components"]
    st = _state(original_norms=original)
    src = st.source("intbgd")
    for comp, ipar in (("apec", 4), ("lorentz", 7), ("lorentz_30", src.npar)):
        for mod, ref, other in (("A", 0, 2), ("B", 1, 3)):
            ifac = np.array(pre[comp][mod]["ifactors"])
            s_ref, s_other = np.sum(AREAS[ref] * ifac), np.sum(AREAS[other] * ifac)
            want = s_ref / AREAS[ref].sum() if original else s_ref / MODULE_AREA[mod]
            assert src.param(ref + 1, ipar).value == pytest.approx(want, rel=1e-13)
            lk = src.param(other + 1, ipar).link
            assert lk.source == "intbgd" and lk.index == ref * src.npar + ipar
            assert lk.factor == pytest.approx(s_other / s_ref, rel=1e-13)
            # linked value scales with area in both conventions only by the ratio
            assert src.param(other + 1, ipar).value == pytest.approx(want * s_other / s_ref, rel=1e-13)


def test_full_field_region_gets_the_original_norm():
    """A region covering the whole module: area-scaled norm = the original's mean."""
    pre = load_ratios()["models"][1]["components"]
    st = _state(module_area={"A": AREAS[0].sum(), "B": AREAS[1].sum()})
    ifac = np.array(pre["apec"]["A"]["ifactors"])
    assert st.source("intbgd").param(1, 4).value == pytest.approx(
        np.sum(AREAS[0] * ifac) / AREAS[0].sum(), rel=1e-14)


def test_fix_line_ratios():
    pre = load_ratios()["models"][1]["components"]
    src = _state(fix_line_ratios=True).source("intbgd")
    labels = src.labels

    def norm(c):  # 1-based index within a group of the norm of component position c >= 1
        return 3 * c + 4

    i5 = norm(labels.index("lorentz_5"))
    assert i5 == 16 and src.param(1, i5).free
    for name in ("lorentz", "lorentz_3", "lorentz_4"):
        assert src.param(1, norm(labels.index(name))).free
    lk = src.param(1, norm(labels.index("lorentz_12"))).link
    ifa = np.array(pre["lorentz_12"]["A"]["ifactors"])
    if5 = np.array(pre["lorentz_5"]["A"]["ifactors"])
    assert lk.source == "intbgd" and lk.index == i5
    assert lk.factor == pytest.approx(np.sum(AREAS[0] * ifa) / np.sum(AREAS[0] * if5), rel=1e-13)
    assert sum(p.free for p in src.params) == 2 * 5


def test_fcxb_and_intn():
    pre = load_ratios()["models"][3]["components"]["bknpower"]
    st = _state(fcxb_links=[(1, 2)])
    f = st.source("fcxb")
    assert f.param(1, 3).value == pytest.approx(FCXB_FACTOR * AREAS[0].sum(), rel=1e-14)
    assert f.param(2, 3).link == Link("fcxb", 3, 1.0)
    assert f.param(3, 3).free and f.param(4, 3).free
    assert f.param(4, 1).link == Link("apbgd", 4, 1.0)
    n = st.source("intn")
    assert n.param(1, 4).value == pytest.approx(np.sum(AREAS[0] * pre["A"]["ifactors"]) / 599.75, rel=1e-13)
    assert n.param(3, 1).frozen and n.param(3, 4).link.index == 4
    assert n.param(4, 4).link.factor == pytest.approx(
        np.sum(AREAS[3] * pre["B"]["ifactors"]) / np.sum(AREAS[1] * pre["B"]["ifactors"]), rel=1e-13)


def test_zero_area_region_is_an_error():
    areas = [a.copy() for a in AREAS]
    areas[2][:] = 0
    with pytest.raises(NuskybgdError, match="s2.pha.*zero area"):
        build_background_state(_specs(), [W(a, ap) for a, ap in zip(areas, APS)], load_ratios())


@pytest.mark.parametrize("links", [[(1, 5)], [(2, 2)]])
def test_bad_fcxb_links(links):
    with pytest.raises(NuskybgdError, match="fcxb_config.links"):
        _state(fcxb_links=links)


def test_link_cycle_detected():
    st = _state()
    src = st.source("apbgd")
    src.params[2].link = Link("apbgd", 9, 1.0)  # spectrum 3 links back to p3
    with pytest.raises(NuskybgdError, match="cycle"):
        st.resolve(src, 2)


def test_source_from_expression_unknown_component():
    s = Source.from_expression(1, None, "mystery + gaussian", npar=5)
    assert s.par_names == ["p1", "p2", "p3", "p4", "p5"]
    with pytest.raises(ValueError):
        Source.from_expression(1, None, "gaussian", npar=4)


def test_shape_presets_follow_the_state():
    from nuskybgd.calib.presets import component_presets
    from nuskybgd.fitting.prepare import shape_presets
    st = _state()
    assert shape_presets(st, 1, "A") == component_presets("A")
    st.source("intbgd").param(1, 5).value = 3.7  # LineE of the first line
    st.source("apbgd").param(2, 2).value = 50.0  # HighECut of module B's reference
    pa, pb = shape_presets(st, 1, "A"), shape_presets(st, 2, "B")
    assert pa.lines[0].linee == 3.7 and pa.lines[1] == component_presets("A").lines[1]
    assert pb.apbgd.highecut == 50.0
