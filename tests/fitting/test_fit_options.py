"""nuskybgd fit --gain / --thaw / --free-detectors / --errors on real whole-detector spectra, XCM/JSON/Sherpa export."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nuskybgd.cli import main
from nuskybgd.errors import NuskybgdError
from nuskybgd.fitting.export import state_from_json
from nuskybgd.fitting.nonlinear import gain_values
from nuskybgd.io.xcm import format_xcm, parse_xcm, read_xcm
from nuskybgd.analysis.fit import fit_background


@pytest.fixture(scope="module")
def stacked(shared, tmp_path_factory):
    """bgdinfo.json files for real stacked whole-detector spectra (read in place)."""
    out = tmp_path_factory.mktemp("stacked")
    S = shared / "real" / "stacked"
    rmf = str(shared / "caldb" / "nustar" / "nuAdet3_20100101v002.rmf.gz")

    def info(name, files, dets):
        p = out / name
        p.write_text(json.dumps({"bgfiles": [str(S / f) for f in files], "detectors": dets,
                                 "respfiles": [rmf] * len(files)}))
        return p

    return {"out": out, "detabs": str(shared / "caldb" / "nustar" / "nuAdetabs20100101v002.fits"),
                "one": info("one.json", ["epoch6_det0_FPMA.pha"], ["A0"]),
                "two": info("two.json", ["epoch6_det0_FPMA.pha", "epoch6_det1_FPMA.pha"], ["A0", "A1"]),
                "info": info}


@pytest.fixture(scope="module")
def gainfit(stacked):
    frozen = fit_background(stacked["one"], savefile=str(stacked["out"] / "frozen"), detabs=stacked["detabs"],
                            plot=False)
    fit = fit_background(stacked["one"], savefile=str(stacked["out"] / "gain"), detabs=stacked["detabs"],
                         gain="fit", thaw="intbgd:lorentz_5.LineE,intbgd:lorentz_30.LineE")
    return frozen, fit


def test_gain_and_line_energies_improve_a_real_spectrum(gainfit):
    frozen, fit = gainfit
    f0, f1 = frozen.state.info["fit"], fit.state.info["fit"]
    assert f1["converged"]
    assert f1["n_free"] == f0["n_free"] + 4
    # the real epoch-6 lines sit below the presets: the gain must bring C-stat/dof well down
    assert f1["value"] / f1["dof"] < 0.6 * f0["value"] / f0["dof"]
    slope, offset = gain_values(fit.state, 0)
    assert 0.98 < slope < 1.02 and -0.5 < offset < 0.5
    log = Path(fit.paths["log"]).read_text()
    assert "gain of spectrum 1: slope" in log and "Levenberg-Marquardt" in log


def test_xcm_holds_gain_and_thawed_energies(gainfit):
    _, fit = gainfit
    text = Path(fit.paths["xcm"]).read_text()
    assert "gain fit 2:1" in text and "gain fit 5:1" in text
    st = read_xcm(fit.paths["xcm"])
    assert st.spectra[0].gain is not None and st.spectra[0].gain[0].free and st.spectra[0].gain[1].free
    assert gain_values(st, 0) == pytest.approx(gain_values(fit.state, 0), rel=1e-12)
    src = st.source("intbgd")
    thawed = [src.par_names[i % src.npar] for i, p in enumerate(src.params) if p.free and
              src.par_names[i % src.npar] != "norm"]
    assert thawed == ["LineE", "LineE"]
    assert format_xcm(st) == text   # our own file round-trips to the same text


def test_json_round_trip_keeps_gain_and_covariance(gainfit):
    _, fit = gainfit
    d = json.loads(Path(fit.paths["json"]).read_text())
    assert d["spectra"][0]["gain"][0]["state"] == "free"
    assert len(d["info"]["covariance_all"]["parameters"]) == d["fit"]["n_free"]
    st = state_from_json(d)
    assert gain_values(st, 0) == pytest.approx(gain_values(fit.state, 0), rel=1e-15)
    assert st.spectra[0].gain[0].error == pytest.approx(fit.state.spectra[0].gain[0].error)


def test_sherpa_script_shifts_the_response_grids(gainfit):
    _, fit = gainfit
    script = Path(fit.paths["sherpa"])
    text = script.read_text()
    assert "Sherpa has no" in text and "rmf = shift_grid(rmf" in text
    env = dict(os.environ)
    r = subprocess.run([sys.executable, script.name], cwd=script.parent, env=env, capture_output=True, text=True,
                       check=False,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("statistic")][-1]
    assert float(line.split()[1]) == pytest.approx(fit.state.info["fit"]["value"], rel=1e-6)


def _bad(argv, folder, capsys):
    before = set(os.listdir(folder))
    rc = main(["fit", *map(str, argv), "--savefile", str(folder / "bad")])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1, err
    assert set(os.listdir(folder)) == before
    return err


def test_bad_detectors_in_bgdinfo(stacked, capsys, tmp_path):
    p = tmp_path / "b.json"
    d = json.loads(stacked["two"].read_text())
    p.write_text(json.dumps({**d, "detectors": ["A0"]}))
    assert "'bgfiles' has 2 entries but 'detectors' has 1" in _bad([p], tmp_path, capsys)
    p.write_text(json.dumps({**d, "detectors": ["A0", "C4"]}))
    assert "detectors[1] = 'C4' is not a detector" in _bad([p], tmp_path, capsys)


def test_unknown_thaw_parameter_cli(stacked, capsys, tmp_path):
    err = _bad([stacked["one"], "--thaw", "intbgd:lorentz_5.Energy", "--detabs", stacked["detabs"]], tmp_path,
               capsys)
    assert "no parameter 'Energy'" in err


def test_xcm_gain_errors():
    base = "statistic cstat\ndata 1:1 a.pha\nresponse 2:1 a.rmf\nmodel 2:apbgd cutoffpl\n1 -1\n15 -1\n1 1\n"
    st = parse_xcm(base + "gain 2:1 1.01 0.2\n")
    assert gain_values(st, 0) == (1.01, 0.2) and not st.spectra[0].gain[0].free
    with pytest.raises(NuskybgdError, match="x.xcm:8: gain on response 7:1, which does not exist"):
        parse_xcm(base + "gain 7:1 1.01 0.2\n", "x.xcm")
    with pytest.raises(NuskybgdError, match="gain slope 1.3 outside 0.8..1.2"):
        parse_xcm(base + "gain fit 2:1\n1.3 0.01\n0 0.01\n", "x.xcm")
    with pytest.raises(NuskybgdError, match="gain offset 2.5 keV outside"):
        parse_xcm(base + "gain 2:1 1.0 2.5\n", "x.xcm")
    with pytest.raises(NuskybgdError, match="gain on spectrum 3, which is not loaded"):
        parse_xcm(base + "gain 2:3 1.0 0.1\n", "x.xcm")


@pytest.mark.slow
def test_free_detectors_and_profile_errors(stacked):
    res = fit_background(stacked["two"], savefile=str(stacked["out"] / "freedet"), detabs=stacked["detabs"],
                         gain="link", free_detectors="intn,intbgd", errors="gain:1.offset", plot=False)
    info = res.state.info
    lrt = info["lrt_linked_vs_detectors"]
    assert lrt["delta_dof"] == 31  # apec + 29 lines + intn and lrt["delta_statistic"] >= -1e-3
    assert {r["detector"] for r in info["detectors"]} == {0, 1}
    (iv,) = info["profile_errors"]
    p = res.state.spectra[0].gain[1]
    # the profile interval brackets the best fit and is close to 1.645 sigma for a near-parabolic minimum
    assert iv["lower"] < p.value < iv["upper"]
    assert iv["plus"] == pytest.approx(1.645 * p.error, rel=0.3)
    assert iv["minus"] == pytest.approx(1.645 * p.error, rel=0.3)


@pytest.mark.parametrize("value, msg", [("1.5,0", "gain slope 1.5 outside 0.8..1.2"),
                                        ("1.0,2.5", "gain offset 2.5 keV outside"),
                                        ("1.0", "expected SLOPE,OFFSET")])
def test_gain_start_outside_limits_cli(stacked, capsys, tmp_path, value, msg):
    err = _bad([stacked["one"], "--gain", "fit", "--gain-start", value, "--detabs", stacked["detabs"]], tmp_path,
               capsys)
    assert "--gain-start" in err and msg in err


def test_start_cli_moves_a_line_and_writes_its_limits(stacked, capsys, tmp_path):
    """--start (XSPEC newpar) from the command line: the moved, thawed line ends near the real Fe K-alpha
    line of the epoch-10 spectrum, its limits are in the XCM, and the fit beats the unmoved one."""
    info = stacked["info"]("e10.json", ["epoch10_det0_FPMA.pha"], ["A0"])
    base = ["fit", str(info), "--detabs", stacked["detabs"], "--no-plot", "--gain", "fit",
            "--thaw", "intbgd:lorentz_4.LineE,intbgd:lorentz_4.Width"]
    assert main(base + ["--savefile", str(tmp_path / "plain")]) == 0
    assert main(base + ["--savefile", str(tmp_path / "moved"),
                        "--start", "intbgd:lorentz_4.LineE=6.5,intbgd:lorentz_4.Width=0.1:0.02"]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())["fit"]
    moved = json.loads((tmp_path / "moved.json").read_text())
    assert moved["fit"]["value"] < plain["value"] - 500   # the 6.4 keV line is worth > 1000 in C-stat
    st = read_xcm(tmp_path / "moved.xcm")
    src = st.source("intbgd")
    ci = src.labels.index("lorentz_4")
    e, w = (next(p for i, p in enumerate(src.params[:src.npar]) if src.par_components[i] == ci
                 and src.par_names[i] == n) for n in ("LineE", "Width"))
    slope, offset = gain_values(st, 0)
    assert 6.2 < slope * (e.value + offset) < 6.7          # channel energy of the moved line, keV
    assert w.hard_min == pytest.approx(0.02) and w.value >= 0.02


@pytest.mark.parametrize("value, msg", [("intbgd:lorentz_4.LineE", "expected SOURCE:COMPONENT.PARAM=VALUE"),
                                        ("intbgd:lorentz_4.LineE=x", "must be numbers"),
                                        ("intbgd:lorentz_4.LineE=1:2:3:4", "VALUE:MIN:MAX"),
                                        ("intbgd:lorentz_4.Sigma=1", "no parameter 'Sigma'"),
                                        ("intbgd:lorentz_4.Width=0.01:0.02", "limits")])
def test_start_bad_input_cli(stacked, capsys, tmp_path, value, msg):
    err = _bad([stacked["one"], "--start", value, "--detabs", stacked["detabs"]], tmp_path, capsys)
    assert msg in err
