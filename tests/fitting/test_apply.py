"""spec/simplify state logic: source groups scaled from the fitted reference values."""

import numpy as np
import pytest

from nuskybgd.analysis.outputs import default_savefile, simplify_savefile
from nuskybgd.constants import FCXB_FACTOR
from nuskybgd.errors import NuskybgdError
from nuskybgd.fitting.apply import (
    add_source_spectra,
    fcxb_surface_brightness,
    group_component_counts,
    simplify_state,
)
from nuskybgd.io.xcm import format_xcm, parse_xcm

from apply_states import fitted_state, param_value, source_spectra


@pytest.mark.parametrize("seed,fix", [(0, False), (1, True), (2, False)])
def test_source_groups_scaled_by_section6_ratios(seed, fix):
    st, mods, weights, presets = fitted_state(seed, fix=fix)
    rng = np.random.default_rng(seed + 100)
    srcs = source_spectra(rng)
    out = add_source_spectra(st, mods, weights, srcs, presets, fix_line_ratios=fix)
    n_bg = len(mods)
    assert len(out.spectra) == n_bg + len(srcs)
    ref = {"A": 1, "B": 2}
    intb = presets["models"][1]["components"]
    for k, s in enumerate(srcs):
        g = n_bg + k + 1
        r = ref[s.module]
        wr = weights[r - 1]
        # apbgd
        assert param_value(out, "apbgd", g, 3) == pytest.approx(param_value(st, "apbgd", r, 3) * s.ap / wr.ap, rel=1e-12)
        # every intbgd norm
        names = ["apec"] + [x for x in intb if x != "apec"]
        for c, name in enumerate(names):
            ipar = 4 if c == 0 else 4 + 3 * c
            ifac = np.asarray(intb[name][s.module]["ifactors"])
            want = param_value(st, "intbgd", r, ipar) * (s.area @ ifac) / (wr.area @ ifac)
            assert param_value(out, "intbgd", g, ipar) == pytest.approx(want, rel=1e-12)
        ifac = np.asarray(presets["models"][3]["components"]["bknpower"][s.module]["ifactors"])
        assert param_value(out, "intn", g, 4) == pytest.approx(
            param_value(st, "intn", r, 4) * (s.area @ ifac) / (wr.area @ ifac), rel=1e-12)
        # fcxb: area-weighted mean fitted surface brightness of the module
        idx = [i for i, m in enumerate(mods) if m == s.module]
        sb = sum(param_value(st, "fcxb", i + 1, 3) for i in idx) / sum(weights[i].area.sum() for i in idx)
        p = out.source("fcxb").param(g, 3)
        assert p.free and p.value == pytest.approx(sb * s.area.sum(), rel=1e-12)
        assert not out.source("apbgd").param(g, 3).free  # linked
    # background groups untouched
    for name in ("apbgd", "intbgd", "fcxb", "intn"):
        a, b = st.source(name), out.source(name)
        for i in range(n_bg * a.npar):
            assert a.params[i].link == b.params[i].link and a.params[i].value == b.params[i].value
    # preset mode reproduces the original
    pre = add_source_spectra(st, mods, weights, srcs, presets, fcxb="preset")
    for k, s in enumerate(srcs):
        assert pre.source("fcxb").param(n_bg + k + 1, 3).value == pytest.approx(FCXB_FACTOR * s.area.sum())
    # XCM round trip keeps every value
    back = parse_xcm(format_xcm(out))
    for name in ("apbgd", "intbgd", "fcxb", "intn"):
        for g in range(1, len(out.spectra) + 1):
            for ipar in range(1, out.source(name).npar + 1):
                assert param_value(back, name, g, ipar) == pytest.approx(param_value(out, name, g, ipar), rel=1e-5)


def test_simplify_freezes_and_drops_background():
    st, mods, weights, presets = fitted_state(3, n=6)
    srcs = source_spectra(np.random.default_rng(5), ("B", "A"))
    out = add_source_spectra(st, mods, weights, srcs, presets)
    simp = simplify_state(out, len(mods))
    assert [e.file for e in simp.spectra] == [s.file for s in srcs]
    assert [(e.group, e.number) for e in simp.spectra] == [(1, 1), (2, 2)]
    for src in simp.sources:
        assert len(src.params) == 2 * src.npar
        for p in src.params:
            assert p.link is None and p.frozen
    for k in range(2):
        for name in ("apbgd", "intbgd", "fcxb", "intn"):
            for ipar in range(1, simp.source(name).npar + 1):
                assert simp.source(name).param(k + 1, ipar).value == pytest.approx(
                    param_value(out, name, len(mods) + k + 1, ipar), rel=1e-14)
    text = format_xcm(simp)
    assert "=" not in "".join(line for line in text.splitlines() if not line.startswith(("data", "response", "arf")))
    back = parse_xcm(text)
    assert len(back.spectra) == 2
    with pytest.raises(NuskybgdError):
        simplify_state(st, len(mods))


def test_component_counts_and_errors():
    st, mods, weights, presets = fitted_state(4)
    srcs = source_spectra(np.random.default_rng(1), ("A",))
    out = add_source_spectra(st, mods, weights, srcs, presets)
    keys = ["apbgd", "fcxb", "intn", "intbgd.apec"] + [f"intbgd.{k}" for k in presets["models"][1]["components"]
                                                      if k != "apec"]
    tmpl = {k: np.full(10, i + 1.0) for i, k in enumerate(keys)}
    counts = group_component_counts(out, len(mods) + 1, tmpl)
    assert set(counts) == set(keys)
    assert counts["apbgd"][0] == pytest.approx(param_value(out, "apbgd", len(mods) + 1, 3) * 1.0)
    with pytest.raises(NuskybgdError):
        group_component_counts(out, 1, {"apbgd": np.ones(3)})
    with pytest.raises(NuskybgdError, match="module B"):
        add_source_spectra(st, ["A"] * 4, weights, source_spectra(np.random.default_rng(1), ("B",)), presets)
    bad = source_spectra(np.random.default_rng(1), ("A",))
    bad[0].area = np.zeros(4)
    with pytest.raises(NuskybgdError, match="zero area"):
        add_source_spectra(st, mods, weights, bad, presets)
    assert fcxb_surface_brightness([1, 2], [10, 20]) == pytest.approx(0.1)
    assert default_savefile(["dir/src1.reg", "src2.reg"]) == "bgd_src1"
    assert simplify_savefile("x/bgd_src1.xcm") == "bgd_only_src1"
    assert simplify_savefile("fit.xcm") == "bgd_only_fit"
