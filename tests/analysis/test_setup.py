"""Presets of a fitted state (state_presets): recorded, from the calibration bundle, or shipped."""

import json

import pytest

from nuskybgd.analysis.setup import state_presets
from nuskybgd.calib.auxil import load_ratios
from nuskybgd.errors import NuskybgdError
from nuskybgd.io.state import FitState


def _state(info):
    st = FitState()
    st.info = info
    return st


def test_recorded_bundle_and_shipped(tmp_path):
    shipped = load_ratios()
    assert state_presets(_state({})) == shipped
    rec = json.loads(json.dumps(shipped))
    rec["comment"] = "recorded"
    assert state_presets(_state({"presets": rec}))["comment"] == "recorded"
    bundle = tmp_path / "ratios.json"
    rec["comment"] = "bundle"
    bundle.write_text(json.dumps(rec))
    # a --calibration fit JSON written before the presets were recorded: the bundle file it names
    assert state_presets(_state({"calibration": {"ratios": str(bundle)}}))["comment"] == "bundle"
    with pytest.raises(NuskybgdError, match="cannot be read"):
        state_presets(_state({"calibration": {"ratios": str(tmp_path / "gone.json")}}), "fit.json")
