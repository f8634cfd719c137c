"""nuskybgd.Background: the Python API against the command-line fit and the spec/image workflows."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import nuskybgd
from nuskybgd.analysis.spec import run_spec
from nuskybgd.cli import main
from nuskybgd.errors import NuskybgdError
from nuskybgd.io.regions import region_mask
from nuskybgd.io.skyfiles import read_image
from nuskybgd.io.xcm import read_xcm


def _listing(folder):
    return sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in Path(folder).rglob("*"))


@pytest.fixture(scope="module")
def cli_fit(fit_chain, tmp_path_factory):
    """``nuskybgd fit`` on the chain's bgdinfo.json (the command line, as a user runs it)."""
    out = tmp_path_factory.mktemp("clifit")
    rc = main(["fit", str(fit_chain["info"]), "--savefile", str(out / "bgdparams"), "--no-plot",
               "--caldb", str(fit_chain["sim"].caldb)])
    assert rc == 0
    return json.loads((out / "bgdparams.json").read_text())


@pytest.fixture(scope="module")
def bg(fit_chain):
    before = _listing(fit_chain["out"])
    b = nuskybgd.Background.from_bgdinfo(fit_chain["info"], caldb=fit_chain["sim"].caldb)
    b.fit()
    assert _listing(fit_chain["out"]) == before, "fit() wrote files"
    return b


def test_api_fit_equals_cli_fit(bg, cli_fit):
    r = bg.result
    assert r.statistic_name == cli_fit["fit"]["statistic"] == "cstat"
    assert r.statistic == pytest.approx(cli_fit["fit"]["value"], rel=1e-12, abs=0)
    assert r.dof == cli_fit["fit"]["dof"] and r.n_bins == cli_fit["fit"]["n_bins"]
    free = [q for q in cli_fit["parameters"] if q["state"] == "free"]
    assert len(free) == len(r.parameters) > 0
    np.testing.assert_allclose(r.parameters.values, [q["value"] for q in free], rtol=1e-10)
    np.testing.assert_allclose(r.parameters.errors, [q["error"] for q in free], rtol=1e-8)


def test_fit_result_is_typed(bg):
    r = bg.result
    n = len(r.parameters)
    assert r.covariance.shape == (n, n)
    np.testing.assert_allclose(r.covariance, r.covariance.T, rtol=1e-9, atol=0)
    np.testing.assert_allclose(np.sqrt(np.diag(r.covariance)), r.parameters.errors, rtol=1e-6)
    assert all(name.split(":")[0] in ("apbgd", "intbgd", "fcxb", "intn") for name in r.parameters.names)
    assert "apbgd:1:cutoffpl.norm" in r.parameters.as_dict()
    assert r.converged and r.n_iter > 0


def test_explicit_constructor_same_fit(bg, fit_chain):
    info = bg.info
    b2 = nuskybgd.Background(info.bgfiles, info.regfiles, info.refimgf, info.bgdapfiles, info.bgddetfiles,
                             fcxb_links=info.fcxb_links, fix_line_ratios=info.intbgd_fix_line_ratios,
                             caldb=fit_chain["sim"].caldb)
    r2 = b2.fit()
    assert r2.statistic == pytest.approx(bg.result.statistic, rel=1e-12)
    np.testing.assert_allclose(r2.parameters.values, bg.result.parameters.values, rtol=1e-12)
    # another band and the chi statistic go through to the fit workflow
    r3 = b2.fit(statistic="chi", emin=5.0, emax=60.0)
    assert r3.statistic_name == "chi" and r3.n_bins < bg.result.n_bins


def test_predict_equals_spec_task(bg, fit_chain, tmp_path):
    reg, pha = fit_chain["source"]["A"]
    pred = bg.predict(reg, pha)
    bg.write(tmp_path / "fit")
    spec = run_spec(fit_chain["info"], tmp_path / "fit.json", [str(reg)], [str(pha)],
                    savefile=str(tmp_path / "bgd_src"), plot=False, caldb=fit_chain["sim"].caldb)
    s = spec["sources"][0]
    np.testing.assert_allclose(pred.spectrum, s["spectrum"], rtol=1e-10)
    assert pred.total == pytest.approx(s["total"], rel=1e-10) and pred.total > 0
    assert pred.total_error == pytest.approx(s["total_error"], rel=1e-6) and pred.total_error > 0
    for band in ("3-10", "10-30", "30-79"):
        assert pred.bands[band] == pytest.approx(s["bands"][band], rel=1e-10)
        assert pred.band_errors[band] == pytest.approx(s["band_errors"][band], rel=1e-6)
    assert pred.error_kind == "covariance" and pred.module == "A"
    assert set(pred.components) >= {"apbgd", "fcxb", "intn", "intbgd.apec"}


def test_images_sum_to_the_prediction(bg, fit_chain):
    imgs = bg.images(3.0, 79.0)
    reg, pha = fit_chain["source"]["A"]
    pred = bg.predict(reg, pha)
    _, hdr = read_image(fit_chain["images"]["A"], "reference image")
    mask = region_mask(reg, hdr, shape=imgs["A"]["total"].shape, header=hdr)
    expo_ratio = pred.exposure / imgs["A"]["exposure"]
    assert float(imgs["A"]["total"][mask].sum()) * expo_ratio == pytest.approx(pred.bands["3-79"], rel=2e-2)


def test_simplify_keeps_only_source_spectra(bg, fit_chain):
    regs = [fit_chain["source"][m][0] for m in ("A", "B")]
    phas = [fit_chain["source"][m][1] for m in ("A", "B")]
    st = bg.simplify(regs, phas)
    assert len(st.spectra) == 2
    assert not st.free_parameters()
    assert all(p.link is None for s in st.sources for p in s.params)


def test_write_and_no_overwrite(bg, tmp_path):
    with pytest.raises(NuskybgdError, match="does not exist"):
        bg.write(tmp_path / "out" / "bgd")
    (tmp_path / "out").mkdir()
    names = bg.write(tmp_path / "out" / "bgd")
    for k in ("xcm", "json", "sherpa", "png", "log"):
        assert Path(names[k]).is_file()
    st = read_xcm(names["xcm"])
    assert st.spectra[0].file == os.path.abspath(bg.info.bgfiles[0])  # outside the XCM folder: absolute
    before = Path(names["json"]).read_text()
    with pytest.raises(NuskybgdError, match="exist"):
        bg.write(tmp_path / "out" / "bgd")
    assert Path(names["json"]).read_text() == before


def test_errors(fit_chain, tmp_path):
    b = nuskybgd.Background.from_bgdinfo(fit_chain["info"], caldb=fit_chain["sim"].caldb)
    reg, pha = fit_chain["source"]["A"]
    with pytest.raises(NuskybgdError, match="not fitted"):
        b.predict(reg, pha)
    with pytest.raises(NuskybgdError, match="unknown option"):
        b.fit(colour="red")
    with pytest.raises(NuskybgdError, match="file not found"):
        nuskybgd.Background([tmp_path / "none.pha"], [reg], reg, {}, {})
    with pytest.raises(NuskybgdError, match="regions"):
        nuskybgd.Background([pha, pha], [reg], reg, {}, {})


def test_import_is_lazy():
    import subprocess
    import sys
    code = "import sys, nuskybgd; print('numpy' in sys.modules, 'sherpa' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(nuskybgd.__file__).parents[1])}).stdout
    assert out.split() == ["False", "False"]
    assert "Background" in dir(nuskybgd)
