"""docs/tutorial.py runs end to end on a simulated observation and its numbers make sense (slow)."""

import runpy
from pathlib import Path

import numpy as np
import pytest

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.py"


@pytest.mark.slow
def test_tutorial_runs_end_to_end(tmp_path, capsys):
    ns = runpy.run_path(str(TUTORIAL), run_name="tutorial")
    res = ns["main"](tmp_path / "tut")
    out = capsys.readouterr().out
    r, pred = res["result"], res["prediction"]
    assert r.dof > 100 and r.converged
    # a good fit: C-stat within 5 sigma of its expectation (~dof)
    assert abs(r.statistic - r.dof) < 5 * np.sqrt(2 * r.dof)
    # the prediction agrees with the background events the simulation put in the region
    var = pred.bands["3-79"] + pred.band_errors["3-79"] ** 2
    assert abs(res["injected"] - pred.bands["3-79"]) < 4 * np.sqrt(var)
    assert res["images"]["A"]["total"].sum() > 0
    assert all(Path(res["files"][k]).is_file() for k in ("xcm", "json", "sherpa", "png"))
    assert "C-stat" in out and "injected background" in out
