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


def _intbgd_lines(state):
    src = next(s for s in state.sources if s.name == "intbgd")
    return [c for c in src.components if c.startswith("lorentz")]


def test_added_lines_fit_and_spec(chain, tmp_path, capsys):
    """fit --add-lines: Cr/Fe/Ni K-alpha enter the model (32 lines), the JSON records the presets, and
    spec on that JSON links the source region with them; spec on the XCM (no presets) refuses."""
    from nuskybgd.analysis.setup import load_fit, state_presets
    from nuskybgd.analysis.spec import run_spec
    from nuskybgd.io.bgdinfo import load_bgdinfo

    rc = main(["fit", str(chain["info"]), "--savefile", str(tmp_path / "fk"), "--add-lines", "--no-plot",
               "--caldb", str(chain["caldb"].root)])
    assert rc == 0
    d = json.loads((tmp_path / "fk.json").read_text())
    assert d["info"]["added_lines"] == [5.411, 6.4, 7.472]
    info = load_bgdinfo(chain["info"])
    state = load_fit(tmp_path / "fk.json", info)
    lines = _intbgd_lines(state)
    assert len(lines) == 32
    assert "lorentz_33" in state_presets(state)["models"][1]["components"]
    base = fit_background(chain["info"], savefile=str(tmp_path / "f0"), caldb=chain["caldb"], plot=False)
    assert d["fit"]["value"] <= base.state.info["fit"]["value"] + 1e-6  # nested model: never worse
    reg, pha = chain["source"]["A"]
    res = run_spec(str(chain["info"]), str(tmp_path / "fk.json"), [str(reg)], [str(pha)],
                   savefile=str(tmp_path / "bgd_fk"), plot=False, caldb=chain["caldb"])
    assert "intbgd.lorentz_32" in res["sources"][0]["counts"]
    capsys.readouterr()
    rc = main(["spec", str(chain["info"]), str(tmp_path / "fk.xcm"), str(reg), str(pha),
               "--savefile", str(tmp_path / "bgd_x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "32 lines but the presets 29" in err[0]
    assert not list(tmp_path.glob("bgd_x*"))


def _state_of(d):
    from nuskybgd.fitting.export import state_from_json
    return state_from_json(d)


def test_spec_uses_the_calibration_presets(chain, tmp_path):
    """After fit --calibration the source region is linked with the bundle's ifactors, not the shipped ones."""
    from nuskybgd.analysis.setup import load_fit, state_presets
    from nuskybgd.analysis.spec import run_spec
    from nuskybgd.io.bgdinfo import load_bgdinfo

    cal = _caldir(tmp_path / "cal", [("all", "2013-01-01T00:00:00", "2023-01-01T00:00:00", 1.0)])
    rpath = cal / "all" / "ratios.json"
    r = json.loads(rpath.read_text())
    for comp in r["models"][1]["components"].values():
        for mod in comp.values():
            mod["ifactors"] = [v * f for v, f in zip(mod["ifactors"], (0.25, 1.0, 2.0, 4.0))]
    rpath.write_text(json.dumps(r))
    index = json.loads((cal / "calibration.json").read_text())
    index["epochs"][0]["files"]["ratios"]["sha256"] = hashlib.sha256(rpath.read_bytes()).hexdigest()
    (cal / "calibration.json").write_text(json.dumps(index))
    fit_background(chain["info"], savefile=str(tmp_path / "fc"), caldb=chain["caldb"], calibration=cal, plot=False)
    state = load_fit(tmp_path / "fc.json", load_bgdinfo(chain["info"]))
    assert state_presets(state) == r
    reg, pha = chain["source"]["A"]
    with_cal = run_spec(str(chain["info"]), str(tmp_path / "fc.json"), [str(reg)], [str(pha)],
                        savefile=str(tmp_path / "s1"), plot=False, caldb=chain["caldb"])
    d = json.loads((tmp_path / "fc.json").read_text())
    del d["info"]["presets"]
    assert state_presets(_state_of(d)) == r  # an older JSON: the bundle it names
    del d["info"]["calibration"]
    (tmp_path / "fc_shipped.json").write_text(json.dumps(d))
    shipped = run_spec(str(chain["info"]), str(tmp_path / "fc_shipped.json"), [str(reg)], [str(pha)],
                       savefile=str(tmp_path / "s2"), plot=False, caldb=chain["caldb"])
    a = with_cal["sources"][0]["counts"]["intbgd.apec"].sum()
    b = shipped["sources"][0]["counts"]["intbgd.apec"].sum()
    assert abs(a / b - 1) > 0.05
