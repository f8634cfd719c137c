"""Presets from ratios.json and lines added to the intbgd model."""

import pytest

from nuskybgd.calib.auxil import load_ratios
from nuskybgd.calib.presets import ADDED_LINE_START, K_ALPHA_LINES, component_presets, with_added_lines
from nuskybgd.errors import NuskybgdError


def test_added_lines_named_after_xspec_numbering():
    base = load_ratios()
    ext = with_added_lines(base, K_ALPHA_LINES)
    names = list(ext["models"][1]["components"])
    assert names[-4:] == ["lorentz_30", "lorentz_31", "lorentz_32", "lorentz_33"]
    assert ext["models"][1]["formula"].endswith("+{l29}+{l30}+{l31}+{l32}")
    assert "lorentz_31" not in base["models"][1]["components"]  # the input is not modified
    for m in ("A", "B"):
        p = component_presets(m, ext)
        assert len(p.lines) == len(component_presets(m).lines) + 3
        assert [ln.linee for ln in p.lines[-3:]] == list(K_ALPHA_LINES)
        apec = component_presets(m).apec.ifactors
        for ln in p.lines[-3:]:  # start: the apec's detector pattern, scaled down
            assert list(ln.ifactors) == pytest.approx([ADDED_LINE_START * v for v in apec], rel=1e-12)
        assert all(c[m]["added"] for n, c in ext["models"][1]["components"].items()
                   if n in ("lorentz_31", "lorentz_32", "lorentz_33"))
    with pytest.raises(NuskybgdError, match="already has lorentz_32 at 6.4 keV"):
        with_added_lines(ext, [6.42])


@pytest.mark.parametrize("e", [0.0, -1.0, 170.0, float("nan")])
def test_added_line_outside_the_response(e):
    with pytest.raises(NuskybgdError, match="outside the response range"):
        with_added_lines(load_ratios(), [e])
