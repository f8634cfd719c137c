"""spec, simplify and image (tasks and workflows) on a synthetic field: files, CALDB RMFs, no fit."""

import numpy as np
import pytest

from nuskybgd.io.xcm import format_xcm, parse_xcm

from apply_states import param_value
from synthetic_field import BG_REGIONS, SRC_REGION, chdir, one_line_error, write_region


import json
from pathlib import Path

from astropy.io import fits

from nuskybgd.cli import main


def test_spec_outputs_and_counts(field, tmp_path):
    from nuskybgd.analysis.spec import run_spec
    from nuskybgd.io.ogip import read_pha
    d = field["dir"]
    with chdir(d):
        res = run_spec("bgdinfo.json", "fit.xcm", ["src.reg", "src.reg"], ["srcA.pha", "srcB.pha"],
                       savefile=str(tmp_path / "bgd_src"), realisations=3, seed=2)
    names = res["names"]
    for f in res["files"]:
        assert Path(f).is_file(), f
    assert names["bkg"] == [str(tmp_path / "bgd_src_1_bkg.pha"), str(tmp_path / "bgd_src_2_bkg.pha")]
    for k, r in enumerate(res["sources"]):
        pha = read_pha(names["bkg"][k])
        np.testing.assert_allclose(pha.counts, r["spectrum"], rtol=1e-12)
        assert pha.exposure == pytest.approx(field["expo"]) and pha.backscal == pytest.approx(1.0)
        assert r["total"] > 100
        reals = [read_pha(f).counts for f in names["realisations"][k]]
        assert all(np.all(x == np.round(x)) for x in reals)
        assert np.mean([x.sum() for x in reals]) == pytest.approx(r["total"], rel=5 * r["total"] ** -0.5)
    # the XCM reads back with 8 spectra and linked source groups
    st = parse_xcm(Path(names["xcm"]).read_text())
    assert len(st.spectra) == 8
    assert st.source("apbgd").param(7, 3).link is not None
    js = json.loads(Path(names["json"]).read_text())
    assert len(js["info"]["predicted_background"]) == 2
    compile(Path(names["sherpa"]).read_text(), names["sherpa"], "exec")


def test_image_sums_match_spec_counts(field, tmp_path):
    """Consistency: image sums over a region = spectral prediction in the band (1 %)."""
    from nuskybgd.analysis.images import compute_images
    from nuskybgd.analysis.setup import load_setup
    from nuskybgd.analysis.spec import run_spec
    from nuskybgd.io.regions import region_mask
    from nuskybgd.sky.bgimage import band_channels, region_sum
    d = field["dir"]
    regions = {"src": SRC_REGION, "bg1": BG_REGIONS[0], "edge": (560, 470, 40), "big": (500, 480, 150)}
    with chdir(d):
        setup = load_setup("bgdinfo.json", "fit.xcm")
        for name, c in regions.items():
            write_region(tmp_path / f"{name}.reg", [c])
        res = run_spec("bgdinfo.json", "fit.xcm", [str(tmp_path / f"{n}.reg") for n in regions for _ in "AB"],
                       [f"src{m}.pha" for _ in regions for m in "AB"], savefile=str(tmp_path / "bgd_x"),
                       setup=setup, plot=False)
        for a, b in [(3, 10), (10, 30), (30, 79)]:
            imgs = compute_images(setup, a, b)
            for k, (name, m) in enumerate([(n, m) for n in regions for m in "AB"]):
                mask = region_mask(tmp_path / f"{name}.reg", setup.header, shape=setup.shape, header=setup.header)
                r = res["sources"][k]
                rmf = setup.phas[0].get_rmf()
                sel = band_channels(rmf.e_min, rmf.e_max, a, b)
                for comp in ("apbgd", "intbgd", "fcxb", "intn"):
                    spectral = sum(v[sel].sum() for kk, v in r["counts"].items() if kk.split(".")[0] == comp)
                    ratio = region_sum(imgs[m][comp], mask) / spectral
                    if comp == "apbgd":
                        # per-pixel DETABS in the image vs the region's mean DETABS in the spectrum
                        assert ratio == pytest.approx(1, rel=1e-3), (name, m, comp, a)
                        # the original's image (bgdap * C_ref / ap_ref) is an approximation of the same
                        i = setup.ref_index(m)
                        orig = setup.ap[m] * imgs[m]["band_counts"]["apbgd"] / setup.weights[i].ap
                        assert region_sum(orig, mask) / spectral == pytest.approx(1, rel=1e-2), (name, m, a)
                    else:  # the same sums in another order
                        assert ratio == pytest.approx(1, rel=1e-9), (name, m, comp, a)
                assert region_sum(imgs[m]["total"], mask) == pytest.approx(r["spectrum"][sel].sum(), rel=1e-2)


def test_simplify_task(field, tmp_path, capsys):
    d = field["dir"]
    with chdir(d):
        rc = main(["spec", "bgdinfo.json", "fit.xcm", "src.reg", "srcA.pha", f"savefile={tmp_path / 'bgd_s'}"])
    assert rc == 0
    rc = main(["simplify", str(d / "bgdinfo.json"), str(tmp_path / "bgd_s.xcm"),
               f"savefile={tmp_path / 'bgd_only_s'}"])
    assert rc == 0, capsys.readouterr().err
    simp = parse_xcm((tmp_path / "bgd_only_s.xcm").read_text())
    full = parse_xcm((tmp_path / "bgd_s.xcm").read_text())
    assert len(simp.spectra) == 1
    assert (tmp_path / Path(simp.spectra[0].file)).resolve() == (d / "srcA.pha").resolve()
    for src in simp.sources:
        assert all(p.link is None and p.frozen for p in src.params)
        for ipar in range(1, src.npar + 1):
            assert src.param(1, ipar).value == pytest.approx(param_value(full, src.name, 7, ipar), rel=1e-5)
    assert (tmp_path / "bgd_only_s_sherpa.py").is_file()


@pytest.mark.parametrize("case", ["off_image", "outside_image", "count_mismatch", "fit_mismatch", "band",
                                  "zero_area_src", "image_fit_mismatch"])
def test_bad_input(field, tmp_path, capsys, case):
    d = field["dir"]
    out = tmp_path / "out"
    out.mkdir()
    with chdir(d):
        if case == "off_image":
            argv = ["spec", "bgdinfo.json", "fit.xcm", "off.reg", "srcA.pha", f"savefile={out / 'b'}"]
        elif case == "outside_image":
            write_region(tmp_path / "out.reg", [(1500, 1500, 30)])  # beyond the 1000x1000 projected images
            argv = ["spec", "bgdinfo.json", "fit.xcm", str(tmp_path / "out.reg"), "srcA.pha", f"savefile={out / 'b'}"]
        elif case == "zero_area_src":
            write_region(tmp_path / "z.reg", [(100, 100, 30)])  # on the image, off the detectors
            argv = ["spec", "bgdinfo.json", "fit.xcm", str(tmp_path / "z.reg"), "srcA.pha", f"savefile={out / 'b'}"]
        elif case == "count_mismatch":
            argv = ["spec", "bgdinfo.json", "fit.xcm", "src.reg,src.reg", "srcA.pha", f"savefile={out / 'b'}"]
        elif case == "fit_mismatch":
            info = json.loads(Path("bgdinfo.json").read_text())
            info["bgfiles"][0], info["bgfiles"][1] = info["bgfiles"][1], info["bgfiles"][0]
            Path(tmp_path / "swapped.json").write_text(json.dumps(
                {k: ([str(d / x) for x in v] if k in ("bgfiles", "regfiles") else v) for k, v in info.items()}
                | {"refimgf": str(d / "bgdapA.fits"),
                   "bgdapfiles": {m: str(d / f"bgdap{m}.fits") for m in "AB"},
                   "bgddetfiles": {m: [str(d / f"det{k}{m}im.fits") for k in range(4)] for m in "AB"}}))
            argv = ["spec", str(tmp_path / "swapped.json"), "fit.xcm", "src.reg", "srcA.pha", f"savefile={out / 'b'}"]
        elif case == "image_fit_mismatch":
            st = parse_xcm(Path("fit.xcm").read_text())
            for e in st.spectra:
                e.file = str(d / e.file)
            st.spectra[2].file = str(d / "bgd3A.pha")  # order differs from bgdinfo
            st.spectra[4].file = str(d / "bgd2A.pha")
            (tmp_path / "bad.xcm").write_text(format_xcm(st))
            argv = ["image", "bgdinfo.json", str(tmp_path / "bad.xcm"), "3", "10", f"prefix={out}/"]
        else:
            argv = ["image", "bgdinfo.json", "fit.xcm", "10", "3", f"prefix={out}/"]
        rc = main(argv)
    assert rc != 0
    msg = one_line_error(capsys)
    expect = {"off_image": "off.reg", "outside_image": "out.reg", "count_mismatch": "2 source regions but 1",
              "fit_mismatch": "spectrum 1", "band": "emin must be below emax", "zero_area_src": "zero area",
              "image_fit_mismatch": "spectrum 3"}[case]
    assert expect in msg, msg
    assert list(out.iterdir()) == []


def test_xcm_outputs_pass_xspec_evaluation(field, tmp_path):
    """spec and simplify XCMs, evaluated with XSPEC's compiled models through the files they name,
    reproduce the predicted background (the fit export's evaluator, tests/tasks/test_fit.py)."""
    pytest.importorskip("xspectrampoline")
    from xspec_reference import xspec_counts

    from nuskybgd.analysis.simplify import run_simplify
    from nuskybgd.analysis.spec import run_spec
    from nuskybgd.io.xcm import read_xcm
    d = field["dir"]
    with chdir(d):
        res = run_spec("bgdinfo.json", "fit.xcm", ["src.reg", "src.reg"], ["srcA.pha", "srcB.pha"],
                       savefile=str(tmp_path / "bgd_src"), plot=False)
        run_simplify("bgdinfo.json", str(tmp_path / "bgd_src.xcm"), savefile=str(tmp_path / "bgd_only_src"))
    worst = 0.0
    for name, first in (("bgd_src.xcm", 6), ("bgd_only_src.xcm", 0)):
        st = read_xcm(tmp_path / name)
        assert len(st.spectra) == first + 2
        for k in range(2):
            ours = res["sources"][k]["spectrum"]
            ref = xspec_counts(st, first + k, tmp_path, res["sources"][k]["counts"]["intbgd.apec"])
            keep = ours > 1e-8 * ours.max()
            worst = max(worst, float(np.max(np.abs(ref[keep] - ours[keep]) / ours[keep])))
    print(f"\nXSPEC-function evaluation of the spec/simplify XCMs: max relative difference {worst:.2e}")
    assert worst < 1e-5, worst


def test_image_task_files(field, tmp_path, capsys):
    d = field["dir"]
    with chdir(d):
        rc = main(["image", "bgdinfo.json", "fit.xcm", "3", "20", f"prefix={tmp_path}/x_"])
    assert rc == 0, capsys.readouterr().err
    for m in "AB":
        comps = {c: fits.getdata(tmp_path / f"x_bgd_{c}_{m}.fits") for c in ("apbgd", "intbgd", "fcxb", "intn")}
        total, h = fits.getdata(tmp_path / f"x_bgd_total_{m}.fits", header=True)
        np.testing.assert_allclose(total, sum(comps.values()), rtol=1e-6, atol=1e-12)
        assert h["E_MIN"] == 3 and h["E_MAX"] == 20 and h["INSTRUME"] == f"FPM{m}" and "CTYPE1" in h
        assert all(np.all(c >= 0) and c.sum() > 0 for c in comps.values())
        assert (tmp_path / f"x_bgd_{m}.png").stat().st_size > 1000
    for n in range(1, 7):
        img = fits.getdata(tmp_path / f"x_bgd_fcxb_{n}.fits")
        assert img.sum() > 0 and np.count_nonzero(img) < img.size / 10
    # existing outputs are kept (one-line error, exit != 0)
    before = (tmp_path / "x_bgd_total_A.fits").stat().st_mtime_ns
    with chdir(d):
        rc = main(["image", "bgdinfo.json", "fit.xcm", "3", "20", f"prefix={tmp_path}/x_"])
    assert rc != 0 and "exists" in one_line_error(capsys)
    assert (tmp_path / "x_bgd_total_A.fits").stat().st_mtime_ns == before


def test_simplify_sherpa_script_reproduces_background(field, tmp_path):
    """The simplified state's Sherpa script predicts the background PHA's counts."""
    import runpy

    from sherpa.astro import ui

    from nuskybgd.analysis.simplify import run_simplify
    from nuskybgd.analysis.spec import run_spec
    d = field["dir"]
    with chdir(d):
        res = run_spec("bgdinfo.json", "fit.xcm", ["src.reg", "src.reg"], ["srcA.pha", "srcB.pha"],
                       savefile=str(tmp_path / "bgd_src"), plot=False)
        run_simplify("bgdinfo.json", str(tmp_path / "bgd_src.xcm"), savefile=str(tmp_path / "bgd_only_src"))
    try:
        with chdir(tmp_path):
            runpy.run_path("bgd_only_src_sherpa.py")
            worst = 0.0
            for k in range(2):
                data = ui.get_data(k + 1)
                data.ungroup()
                data.notice()
                mc = data.eval_model(ui.get_model(k + 1))
                ref = res["sources"][k]["spectrum"]
                keep = ref > 1e-6 * ref.max()
                worst = max(worst, float(np.max(np.abs(mc[keep] - ref[keep]) / ref[keep])))
    finally:
        ui.clean()
    assert worst < 1e-6, worst
