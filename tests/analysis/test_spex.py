"""SPEX export: files read back by pyspextools; one predicted background, three fitters.

The predicted background of a source region (``spec``) is reproduced channel
by channel (1e-6 relative) by three independent routes:

- SPEX: the ``.res`` sectors and the ``.dat`` file-model spectra, read back
  with pyspextools and folded here (file model: log E - log S interpolation
  evaluated at the response-bin centres, times the bin width);
- XSPEC: the ``simplify`` XCM evaluated with XSPEC's compiled model functions
  (``xspectrampoline``) through the response files it names;
- Sherpa: the ``simplify`` Sherpa script run in a Sherpa session.
"""

import os
import runpy
from pathlib import Path

import numpy as np
import pytest

from nuskybgd.cli import main

from spex_reference import sector_matrix, spex_background_counts
from synthetic_field import chdir, one_line_error



def _arf(m):
    from nuskybgd.calib.caldb import Caldb
    return str(Caldb(os.environ["CALDB"]).query("SPECRESP", f"FPM{m}").path)


@pytest.fixture(scope="module")
def exported(field, tmp_path_factory):
    """spec, simplify and spex on the same source region for both modules."""
    from nuskybgd.analysis.spex import run_spex
    from nuskybgd.analysis.simplify import run_simplify
    from nuskybgd.analysis.spec import run_spec
    out = tmp_path_factory.mktemp("spex")
    d = field["dir"]
    regs, phas = ["src.reg", "src.reg"], ["srcA.pha", "srcB.pha"]
    with chdir(d):
        spec = run_spec("bgdinfo.json", "fit.xcm", regs, phas, savefile=str(out / "bgd_src"), plot=False)
        run_simplify("bgdinfo.json", str(out / "bgd_src.xcm"), savefile=str(out / "bgd_only_src"))
        spex = run_spex("bgdinfo.json", "fit.xcm", regs, phas, arffiles=[_arf(m) for m in "AB"],
                        savefile=str(out / "bgd_src"))
    return {"out": out, "spec": spec, "spex": spex, "dir": d}


def test_pyspextools_reads_back_sectors(exported):
    from nuskybgd.io.spex import SECTORS, read_spex
    for n in exported["spex"]["names"]:
        spo, res = read_spex(n["spo"], n["res"])
        assert spo.nregion == 1 and int(spo.nchan[0]) == 4096
        assert res.nsector == 5 and res.nregion == 1 and res.ncomp == 5
        assert list(res.sector) == [1, 2, 3, 4, 5] and list(res.region) == [1] * 5
        assert all(int(c) == 4096 for c in res.nchan)
        # intn sector is the diagonal response: one channel per energy bin, 1e-4 m^2 (1 cm^2)
        _, _, m = sector_matrix(res, 5)
        assert np.count_nonzero(m) == m.shape[0]
        np.testing.assert_allclose(m[m > 0], 1e-4, rtol=1e-6)
        # source sector = RMF x ARF: its area exceeds the RMF-only intbgd sector's (1 cm^2 x RMF)
        assert sector_matrix(res, 1)[2].sum() > 10 * sector_matrix(res, 3)[2].sum()
        com = Path(n["com"]).read_text()
        assert f"data {Path(n['base']).name} {Path(n['base']).name}" in com
        assert com.count("sector new") == 4 and com.count("comp ") == 4 + 1  # 4 file models + example line
        for s in SECTORS[1:]:
            assert f"avalue {Path(n['dat'][s]).name}" in com


def test_spex_route_reproduces_prediction(exported):
    """Counts folded from the written .res and .dat files = spec's prediction, per channel (1e-6)."""
    from nuskybgd.io.ogip import read_pha
    from nuskybgd.io.spex import read_spex
    for k, n in enumerate(exported["spex"]["names"]):
        spo, _ = read_spex(n["spo"], n["res"])
        counts = spex_background_counts(n)
        ref = exported["spec"]["sources"][k]["spectrum"]
        keep = ref > 1e-8 * ref.max()
        worst = float(np.max(np.abs(counts[keep] - ref[keep]) / ref[keep]))
        assert worst < 1e-6, worst
        # the in-memory sectors (what the .com comment reports) give the same counts
        np.testing.assert_allclose(exported["spex"]["sectors"][k].predicted_counts()[keep], ref[keep], rtol=1e-10)
        # the .spo holds the source spectrum itself (rates x exposure = counts)
        pha = read_pha(exported["dir"] / ("srcA.pha", "srcB.pha")[k])
        np.testing.assert_allclose(np.asarray(spo.ochan) * np.asarray(spo.tints), pha.counts, rtol=1e-12, atol=1e-9)


def test_xspec_route_reproduces_prediction(exported):
    pytest.importorskip("xspectrampoline")
    from xspec_reference import xspec_counts

    from nuskybgd.io.xcm import read_xcm
    out = exported["out"]
    st = read_xcm(out / "bgd_only_src.xcm")
    for k in range(2):
        src = exported["spec"]["sources"][k]
        ref = src["spectrum"]
        xs = xspec_counts(st, k, out, src["counts"]["intbgd.apec"])
        keep = ref > 1e-8 * ref.max()
        worst = float(np.max(np.abs(xs[keep] - ref[keep]) / ref[keep]))
        assert worst < 1e-6, worst


def test_sherpa_route_reproduces_prediction(exported):
    from sherpa.astro import ui
    out = exported["out"]
    try:
        with chdir(out):
            runpy.run_path("bgd_only_src_sherpa.py")
            for k in range(2):
                data = ui.get_data(k + 1)
                data.ungroup()
                data.notice()
                mc = data.eval_model(ui.get_model(k + 1))
                ref = exported["spec"]["sources"][k]["spectrum"]
                keep = ref > 1e-8 * ref.max()
                worst = float(np.max(np.abs(mc[keep] - ref[keep]) / ref[keep]))
                assert worst < 1e-6, worst
    finally:
        ui.clean()



def test_sherpa_session_route_reproduces_prediction(exported):
    """H11b's session API: the source spectrum's full model with a zero source = spec's prediction, per channel."""
    from sherpa.astro.ui.utils import Session
    from sherpa.models.basic import PowLaw1D

    from nuskybgd.analysis.sherpa_session import add_background_model
    for k, m in enumerate("AB"):
        s = Session()
        s.load_pha(1, str(exported["dir"] / f"src{m}.pha"))
        src = PowLaw1D("p")
        src.ampl = 0.0
        add_background_model(exported["spec"]["names"]["bkg"][k], id=1, source_model=src, session=s)
        data = s.get_data(1)
        data.ungroup()
        data.notice()
        mc = data.eval_model(s.get_model(1))
        ref = exported["spec"]["sources"][k]["spectrum"]
        keep = ref > 1e-8 * ref.max()
        worst = float(np.max(np.abs(mc[keep] - ref[keep]) / ref[keep]))
        assert worst < 1e-6, worst

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide-fitting-your-source.md"


def _guide_sherpa_code():
    """The Python blocks of the guide's Sherpa section."""
    section = GUIDE.read_text().split("## 3. Sherpa", 1)[1].split("\n## ", 1)[0]
    return [b.split("```", 1)[0] for b in section.split("```python")[1:]]


def test_guide_has_two_sherpa_blocks():
    assert len(_guide_sherpa_code()) == 2


@pytest.mark.parametrize("block", [0, 1])
def test_guide_sherpa_part_fits_an_injected_source(field, exported, tmp_path, block):  # noqa: F811
    """The guide's Sherpa block, run as written, recovers an injected power law over the modelled background."""
    from sherpa.astro import ui
    from sherpa.models.basic import PowLaw1D

    from nuskybgd.analysis.simplify import run_simplify
    from nuskybgd.analysis.spec import run_spec
    from nuskybgd.io.ogip import read_arf, read_pha, read_rmf, write_pha
    from nuskybgd.models.basic import FoldedModel
    d = field["dir"]
    pha = read_pha(d / "srcA.pha")
    bkg = exported["spec"]["sources"][0]["spectrum"]
    rmf, arf = read_rmf(field["rmfs"]["A"]), read_arf(_arf("A"))
    pl = PowLaw1D("truth")
    pl.gamma, pl.ref, pl.ampl = 1.8, 10.0, 1.0
    unit = FoldedModel(pl, rmf, arf, pha.exposure).calc([p.val for p in pl.pars])
    band = slice(35, 1935)  # 3-79 keV
    ampl = 3000.0 / unit[band].sum()
    rng = np.random.default_rng(13)
    write_pha(tmp_path / "srcA.pha", rng.poisson(bkg + ampl * unit), pha.exposure, 1.0,
              header={"INSTRUME": "FPMA", "RESPFILE": str(field["rmfs"]["A"]), "DATE-OBS": "2021-03-14T06:00:00"})
    os.symlink(_arf("A"), tmp_path / "srcA.arf")
    with chdir(d):
        run_spec("bgdinfo.json", "fit.xcm", ["src.reg"], [str(tmp_path / "srcA.pha")],
                 savefile=str(tmp_path / "bgd_src"), plot=False)
    run_simplify(d / "bgdinfo.json", str(tmp_path / "bgd_src.xcm"), savefile=str(tmp_path / "bgd_only_src"))
    ns = {}
    try:
        with chdir(tmp_path):
            exec(compile(_guide_sherpa_code()[block], str(GUIDE), "exec"), ns)  # noqa: S102  (the guide's own code)
            res = ns["result"]
            gamma, ampl_fit = ns["src"].gamma.val, ns["src"].ampl.val
            # the background part of the model is still nuskybgd's prediction (frozen)
            ns["src"].ampl.val = 0.0
            data = ui.get_data(1)
            data.notice()
            np.testing.assert_allclose(data.eval_model(ui.get_model(1)), bkg, rtol=1e-6, atol=1e-9)
    finally:
        ui.clean()
    err = dict(zip(res.parnames, res.parmaxes))
    assert 0 < err["src.gamma"] < 0.2
    assert abs(gamma - 1.8) < 4 * err["src.gamma"], (gamma, err)
    assert abs(ampl_fit / ampl - 1) < 4 * err["src.ampl"] / ampl


@pytest.mark.parametrize("case", ["off_images", "off_detectors", "other_module_arf", "other_module_rmf", "exists"])
def test_spex_bad_input(field, tmp_path, capsys, case):  # noqa: F811
    """One line, non-zero exit, no output (an existing output is left untouched)."""
    from nuskybgd.io.ogip import read_pha, write_pha
    d = field["dir"]
    out = tmp_path / "out"
    out.mkdir()
    argv = ["spex", "bgdinfo.json", "fit.xcm", "src.reg", "srcA.pha", "--arf", _arf("A"), f"savefile={out / 'b'}"]
    before = {}
    if case == "off_images":  # beyond the 1000x1000 projected images
        argv[3] = str(tmp_path / "out.reg")
        (tmp_path / "out.reg").write_text("# Region file format: DS9 version 4.1\nimage\ncircle(1500,1500,30)\n")
    elif case == "off_detectors":  # on the images, off the detectors
        argv[3] = "off.reg"
    elif case == "other_module_arf":
        argv[4], argv[6] = "srcB.pha", _arf("A")
    elif case == "other_module_rmf":
        pha = read_pha(d / "srcB.pha")
        write_pha(tmp_path / "srcB_rmfA.pha", pha.counts, pha.exposure, 1.0,
                  header={"INSTRUME": "FPMB", "RESPFILE": str(field["rmfs"]["A"]), "DATE-OBS": "2021-03-14T06:00:00"})
        argv[4], argv[6] = str(tmp_path / "srcB_rmfA.pha"), _arf("B")
    else:
        with chdir(d):
            assert main(argv) == 0, capsys.readouterr().err
        capsys.readouterr()
        before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
        assert len(before) == 7
    with chdir(d):
        rc = main(argv)
    assert rc != 0
    msg = one_line_error(capsys)
    expect = {"off_images": "out.reg", "off_detectors": "off.reg", "other_module_arf": "is FPMB but its ARF",
              "other_module_rmf": "is FPMB but its RMF", "exists": "exists"}[case]
    assert expect in msg, msg
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
