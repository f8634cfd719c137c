"""nuskybgd fit --calibration: the epoch bundle holding the observation date supplies the presets."""

import copy
import hashlib
import json
import logging

import pytest

from nuskybgd.calib.auxil import load_ratios
from nuskybgd.cli import main
from nuskybgd.analysis.fit import fit_background


@pytest.fixture(scope="module")
def chain(fit_chain):
    """The session's fit chain (tests/fit_chain.py) and the observation date."""
    return dict(fit_chain, date=fit_chain["sim"].truth["date_obs"])


def _caldir(root, epochs):
    """A calibration folder; each epoch's ratios.json has every line energy scaled by its factor."""
    root.mkdir()
    base = load_ratios()
    index = {"format": "nuskybgd-calibration-1", "version": "t1", "epochs": []}
    for lab, start, stop, factor in epochs:
        r = copy.deepcopy(base)
        intbgd = next(m for m in r["models"] if m["name"].endswith("intbgd"))
        for comp in intbgd["components"].values():
            for mod in comp.values():
                if "linee" in mod:
                    mod["linee"] *= factor
        (root / lab).mkdir()
        files = {}
        for kind, content in (("ratios", r), ("gain", {"epoch": lab})):
            p = root / lab / f"{kind}.json"
            p.write_text(json.dumps(content))
            files[kind] = {"path": f"{lab}/{kind}.json", "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        index["epochs"].append({"epoch": lab, "start": start, "stop": stop, "files": files})
    (root / "calibration.json").write_text(json.dumps(index))
    return root


def test_bundle_of_the_observation_epoch_is_used(chain, tmp_path, caplog):
    cal = _caldir(tmp_path / "cal", [("early", "2013-01-01T00:00:00", "2020-01-01T00:00:00", 1.0),
                                     ("late", "2020-01-01T00:00:00", "2023-01-01T00:00:00", 0.99)])
    with caplog.at_level(logging.INFO, logger="nuskybgd"):
        res = fit_background(chain["info"], savefile=str(tmp_path / "withcal"), caldb=chain["caldb"],
                             calibration=cal, plot=False)
    assert chain["date"].startswith("2021")
    assert res.state.info["calibration"]["epoch"] == "late"
    assert any("calibration: epoch late" in r.getMessage() for r in caplog.records)
    assert "calibration: epoch late" in (tmp_path / "withcal.log").read_text()
    # The XCM carries the bundle's line energies (19.6464 keV x 0.99), not the shipped ones.
    xcm = (tmp_path / "withcal.xcm").read_text()
    assert "19.4499" in xcm and "19.6464" not in xcm
    ref = fit_background(chain["info"], savefile=str(tmp_path / "nocal"), caldb=chain["caldb"], plot=False)
    assert res.state.info["fit"]["value"] != ref.state.info["fit"]["value"]
    # The early bundle equals the shipped presets: same statistic as without --calibration.
    cal2 = _caldir(tmp_path / "cal2", [("early", "2013-01-01T00:00:00", "2023-01-01T00:00:00", 1.0)])
    same = fit_background(chain["info"], savefile=str(tmp_path / "same"), caldb=chain["caldb"], calibration=cal2,
                          plot=False)
    assert same.state.info["fit"]["value"] == pytest.approx(ref.state.info["fit"]["value"], rel=1e-10)


def test_no_epoch_for_the_date(chain, tmp_path, capsys):
    cal = _caldir(tmp_path / "cal", [("old", "2013-01-01T00:00:00", "2014-01-01T00:00:00", 1.0)])
    rc = main(["fit", str(chain["info"]), "--savefile", str(tmp_path / "x"), "--calibration", str(cal),
               "--caldb", str(chain["caldb"].root)])
    err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert rc == 2 and "no calibration epoch contains" in err
    assert not list(tmp_path.glob("x*"))
