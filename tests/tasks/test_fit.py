"""nuskybgd fit on a simulated observation: outputs, round trips, XSPEC and Sherpa equivalence, bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.cli import main
from nuskybgd.errors import NuskybgdError
from nuskybgd.fitting.engine import LinearModel
from nuskybgd.fitting.export import state_from_json
from nuskybgd.io.xcm import check_spectrum_order, format_xcm, read_xcm
from nuskybgd.analysis.fit import fit_background

pytest.importorskip("xspectrampoline")
from xspec_reference import xspec_counts  # noqa: E402


@pytest.fixture(scope="module")
def chain(fit_chain):
    """Images, projections, regions, spectra and bgdinfo.json of the simulated observation."""
    return fit_chain


@pytest.fixture(scope="module")
def fitted(chain):
    res = fit_background(chain["info"], savefile=str(chain["out"] / "bgd"), caldb=chain["caldb"])
    return res


def test_outputs_written(fitted):
    p = fitted.paths
    for k in ("xcm", "json", "sherpa", "png", "log"):
        assert Path(p[k]).is_file(), k
    assert len(p["arfs"]) == 6 and all(Path(a).is_file() for a in p["arfs"])
    assert fitted.result.converged
    d = json.loads(Path(p["json"]).read_text())
    assert d["fit"]["dof"] == d["fit"]["n_bins"] - d["fit"]["n_free"]
    assert {"nuskybgd", "numpy", "sherpa"} <= set(d["software"])
    assert d["spectra"][0]["weights"]["area"][0] > 0
    linked = [q for q in d["parameters"] if q["state"] == "linked" and q["name"] == "norm"]
    assert linked and all("ratio" in q["link"] for q in linked)
    text = Path(p["xcm"]).read_text()
    assert "model  2:apbgd cutoffpl" in text and "model  5:intn bknpower" in text
    assert "statistic cstat" in text and "ignore 1:" in text


def test_xcm_round_trip_identical_and_same_counts(fitted, tmp_path):
    text = Path(fitted.paths["xcm"]).read_text()
    st = read_xcm(fitted.paths["xcm"])
    assert format_xcm(st) == text
    again = tmp_path / "again.xcm"
    again.write_text(format_xcm(st))
    assert format_xcm(read_xcm(again)) == text
    m2 = LinearModel(st, fitted.model.spectra)
    for k in range(len(fitted.model.spectra)):
        a = fitted.model.predicted_counts(k)
        b = m2.predicted_counts(k)
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=0)


def test_json_round_trip(fitted):
    st = state_from_json(json.loads(Path(fitted.paths["json"]).read_text()))
    assert format_xcm(st) == Path(fitted.paths["xcm"]).read_text()
    errs = [p.error for s in st.sources for p in s.params if p.free]
    want = [p.error for s in fitted.state.sources for p in s.params if p.free]
    assert errs == want


def test_xspec_equivalence_of_the_export(fitted):
    path = Path(fitted.paths["xcm"])
    st = read_xcm(path)
    worst = 0.0
    for k in range(len(st.spectra)):
        comps = fitted.model.component_counts(k)
        ours = fitted.model.predicted_counts(k)
        ref = xspec_counts(st, k, path.parent, comps["intbgd.apec"])
        keep = ours > 1e-8 * ours.max()
        worst = max(worst, float(np.max(np.abs(ref[keep] - ours[keep]) / ours[keep])))
    assert worst < 1e-5, worst


def test_sherpa_script_reproduces_statistic(fitted):
    folder = Path(fitted.paths["xcm"]).parent
    env = dict(os.environ)
    r = subprocess.run([sys.executable, Path(fitted.paths["sherpa"]).name], cwd=folder, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("statistic")][-1]
    assert float(line.split()[1]) == pytest.approx(fitted.state.info["fit"]["value"], rel=1e-7)


def test_spectrum_order_check(fitted, chain):
    from nuskybgd.io.bgdinfo import load_bgdinfo
    info = load_bgdinfo(chain["info"])
    st = read_xcm(fitted.paths["xcm"])
    check_spectrum_order(st, info.bgfiles_raw, Path(fitted.paths["xcm"]).parent, info.folder)
    swapped = [info.bgfiles_raw[1], info.bgfiles_raw[0]] + info.bgfiles_raw[2:]
    with pytest.raises(NuskybgdError, match="spectrum 1 is bgd1A_sr_g30.pha"):
        check_spectrum_order(st, swapped, Path(fitted.paths["xcm"]).parent, info.folder)


def test_existing_outputs_kept(fitted, chain):
    before = {p: Path(p).stat().st_mtime_ns for p in [fitted.paths["xcm"], fitted.paths["json"]]}
    with pytest.raises(NuskybgdError, match="exists"):
        fit_background(chain["info"], savefile=str(chain["out"] / "bgd"), caldb=chain["caldb"])
    assert {p: Path(p).stat().st_mtime_ns for p in before} == before


def test_no_fit_writes_presets_and_chi(chain, fitted):
    pre = fit_background(chain["info"], savefile=str(chain["out"] / "pre.xcm"), no_fit=True,
                         caldb=chain["caldb"], plot=False)
    assert pre.result is None and pre.paths["png"] is None
    src = pre.state.source("apbgd")
    assert src.param(1, 3).value == pytest.approx(0.002353 / 32 * pre.weights[0].ap, rel=1e-12)
    chi = fit_background(chain["info"], savefile=str(chain["out"] / "chi"), statistic="chi",
                         caldb=chain["caldb"], plot=False)
    assert chi.result.converged and "statistic chi" in Path(chi.paths["xcm"]).read_text()
    # both statistics find compatible norms (within 3 sigma)
    for (s1, i1), (s2, i2) in zip(fitted.state.free_parameters(), chi.state.free_parameters()):
        p1, p2 = s1.params[i1], s2.params[i2]
        if p1.error and p2.error:
            assert abs(p1.value - p2.value) < 3 * max(p1.error, p2.error)


def _bad_run(tmp, argv, capsys):
    before = set(os.listdir(tmp))
    rc = main(["fit", *map(str, argv), "--savefile", str(tmp / "bad")])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1, err
    assert set(os.listdir(tmp)) == before  # no output
    return err


def _copy_chain(chain, tmp):
    for f in chain["out"].iterdir():
        if f.is_file():
            shutil.copy(f, tmp / f.name)
    return json.loads((tmp / "bgdinfo.json").read_text())


def test_bad_input_lengths_and_missing(chain, tmp_path, capsys):
    d = _copy_chain(chain, tmp_path)
    d["regfiles"] = d["regfiles"][:-1]
    (tmp_path / "bgdinfo.json").write_text(json.dumps(d))
    err = _bad_run(tmp_path, [tmp_path / "bgdinfo.json"], capsys)
    assert "'bgfiles' has 6 entries but 'regfiles' has 5" in err
    d = json.loads((chain["out"] / "bgdinfo.json").read_text())
    d["bgfiles"][2] = "nothere.pha"
    (tmp_path / "bgdinfo.json").write_text(json.dumps(d))
    err = _bad_run(tmp_path, [tmp_path / "bgdinfo.json"], capsys)
    assert "bgfiles[2]" in err and "nothere.pha" in err


def test_bad_input_instrume(chain, tmp_path, capsys):
    d = _copy_chain(chain, tmp_path)
    f = tmp_path / d["bgfiles"][3]
    with fits.open(f, mode="update") as h:
        for hdu in h:
            if "INSTRUME" in hdu.header:
                hdu.header["INSTRUME"] = "FPMC"
    err = _bad_run(tmp_path, [tmp_path / "bgdinfo.json", "--clobber"], capsys)
    assert d["bgfiles"][3] in err and "FPMC" in err


def test_bad_input_zero_area_region(chain, tmp_path, capsys):
    d = _copy_chain(chain, tmp_path)
    (tmp_path / d["regfiles"][4]).write_text("image\ncircle(40,40,10)\n")  # on the image, off the detectors
    err = _bad_run(tmp_path, [tmp_path / "bgdinfo.json"], capsys)
    assert d["regfiles"][4] in err and "zero area" in err


def test_help_prints_bgdinfo_template(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert '"bgddetfiles"' in out and '"fcxb_config"' in out and "intbgd_fix_line_ratios" in out


def test_legacy_savefile_argument(chain, capsys):
    rc = main(["fit", str(chain["info"]), f"savefile={chain['out'] / 'legacy.xcm'}", "--no-fit", "--no-plot",
               "--caldb", str(chain["sim"].caldb)])
    assert rc == 0, capsys.readouterr().err
    assert (chain["out"] / "legacy.xcm").is_file() and (chain["out"] / "legacy.json").is_file()
    assert not (chain["out"] / "legacy.xcm.xcm").exists()
