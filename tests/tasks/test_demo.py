"""End to end: ``nuskybgd demo`` on a simulated observation (slow)."""

import json

import numpy as np
import pytest

from nuskybgd.cli import main


@pytest.mark.slow
def test_demo_runs_and_recovers_injected_norms(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", str(out), "--seed", "5"])
    text = capsys.readouterr().out
    assert rc == 0
    for name in ("bgdparams.xcm", "bgdparams.json", "bgdparams_sherpa.py", "bgdparams.png", "bgdparams.log",
                 "bgdinfo.json", "sim/truth.json", "demo_summary.json"):
        assert (out / name).is_file(), name
    assert "injected" in text and "fitted" in text
    # the SPEX files of the source regions: five sectors on one spectrum, read back by pyspextools
    from nuskybgd.io.spex import read_spex
    for m in "AB":
        base = out / f"bgd_src_src{m}_spex"
        spo, res = read_spex(f"{base}.spo", f"{base}.res")
        assert spo.nregion == 1 and res.nsector == 5 and list(res.region) == [1] * 5
        assert all((out / f"{base.name}_{c}.dat").is_file() for c in ("apbgd", "intbgd", "fcxb", "intn"))
        assert f"data {base.name} {base.name}" in (out / f"{base.name}.com").read_text()
    summary = json.loads((out / "demo_summary.json").read_text())
    pulls = np.array([r["pull"] for r in summary["rows"] if r["pull"] is not None])
    assert pulls.size >= 12
    # a single observation: loose bounds on the pull distribution
    assert abs(pulls.mean()) < 1.0 and 0.3 < pulls.std() < 2.0
    # rerunning without --clobber refuses to overwrite
    assert main(["demo", str(out), "--seed", "5"]) != 0
