"""Presets and Sherpa model classes."""

import numpy as np
import pytest

from nuskybgd.errors import NuskybgdError
from nuskybgd.models.presets import component_presets


@pytest.mark.parametrize("module", ["A", "B", "fpma", "FPMB"])
def test_presets_from_ratios(module):
    from nuskybgd.auxil import load_ratios
    raw = load_ratios()["models"]
    m = module[-1].upper()
    p = component_presets(module)
    assert p.module == m
    assert (p.apbgd.phoindex, p.apbgd.highecut) == (1.29, 41.13)
    assert p.fcxb == p.apbgd
    assert p.apec.kt == raw[1]["components"]["apec"][m]["kt"]
    assert p.apec.ifactors == tuple(raw[1]["components"]["apec"][m]["ifactors"])
    names = [n for n in raw[1]["components"] if n.startswith("lorentz")]
    assert p.line_names == tuple(names)
    assert len(p.lines) == 29 and p.lines[0].name == "lorentz" and p.lines[-1].name == "lorentz_30"
    for line in p.lines:
        e = raw[1]["components"][line.name][m]
        assert (line.linee, line.width, line.ifactors) == (e["linee"], e["width"], tuple(e["ifactors"]))
    b = raw[3]["components"]["bknpower"][m]
    assert (p.intn.phoindx1, p.intn.breake, p.intn.phoindx2) == (b["phoindx1"], b["breake"], b["phoindx2"])
    assert p.intn.ifactors == tuple(b["ifactors"])


def test_presets_bad_input():
    with pytest.raises(NuskybgdError, match="module must be A or B"):
        component_presets("C")
    with pytest.raises(NuskybgdError, match="missing preset"):
        component_presets("A", {"models": []})
