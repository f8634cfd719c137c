"""spec/simplify state logic: source groups scaled from the fitted reference values."""

import numpy as np
import pytest

from nuskybgd.auxil import load_ratios
from nuskybgd.errors import NuskybgdError
from nuskybgd.fitting.apply import (SourceSpectrum, add_source_spectra, default_savefile,
                                    fcxb_surface_brightness, group_component_counts, simplify_savefile,
                                    simplify_state)
from nuskybgd.fitting.model import FCXB_FACTOR, build_background_state
from nuskybgd.io.xcm import format_xcm, parse_xcm


class W:
    def __init__(self, area, ap):
        self.area = np.asarray(area, float)
        self.ap = float(ap)


def _fitted(seed=0, n=4, fix=False):
    """A background state with perturbed ('fitted') free parameters."""
    rng = np.random.default_rng(seed)
    presets = load_ratios()
    mods = ["A", "B"] * (n // 2)
    spectra = [{"file": f"bgd{i}{m}.pha", "module": m, "rmf": f"r{i}.rmf", "apbgd_arf": f"ap{i}.arf",
                "fcxb_arf": f"fcxb{m}.arf", "diag_rmf": "diag.rmf"} for i, m in enumerate(mods)]
    weights = [W(rng.uniform(0, 3000, 4) + 10, rng.uniform(5, 20)) for _ in mods]
    st = build_background_state(spectra, weights, presets, fix_line_ratios=fix)
    for s, i in st.free_parameters():
        s.params[i].value *= rng.uniform(0.5, 2.0)
    st.update_linked_values()
    return st, mods, weights, presets


def _sources(rng, mods=("A", "B", "A")):
    return [SourceSpectrum(file=f"src{k}{m}.pha", module=m, area=rng.uniform(0, 2000, 4) + 5,
                           ap=rng.uniform(1, 10), responses={2: "s.rmf", 3: "s.rmf", 4: "s.rmf", 5: "diag.rmf"},
                           arfs={2: "sap.arf", 4: f"fcxb{m}.arf"}) for k, m in enumerate(mods)]


def _value(st, name, group, ipar):
    src = st.source(name)
    root, j, f = st.resolve(src, src.index(group, ipar))
    return f * root.params[j].value


@pytest.mark.parametrize("seed,fix", [(0, False), (1, True), (2, False)])
def test_source_groups_scaled_by_section6_ratios(seed, fix):
    st, mods, weights, presets = _fitted(seed, fix=fix)
    rng = np.random.default_rng(seed + 100)
    srcs = _sources(rng)
    out = add_source_spectra(st, mods, weights, srcs, presets, fix_line_ratios=fix)
    n_bg = len(mods)
    assert len(out.spectra) == n_bg + len(srcs)
    ref = {"A": 1, "B": 2}
    intb = presets["models"][1]["components"]
    for k, s in enumerate(srcs):
        g = n_bg + k + 1
        r = ref[s.module]
        wr = weights[r - 1]
        # apbgd
        assert _value(out, "apbgd", g, 3) == pytest.approx(_value(st, "apbgd", r, 3) * s.ap / wr.ap, rel=1e-12)
        # every intbgd norm
        src = out.source("intbgd")
        names = ["apec"] + [x for x in intb if x != "apec"]
        for c, name in enumerate(names):
            ipar = 4 if c == 0 else 4 + 3 * c
            ifac = np.asarray(intb[name][s.module]["ifactors"])
            want = _value(st, "intbgd", r, ipar) * (s.area @ ifac) / (wr.area @ ifac)
            assert _value(out, "intbgd", g, ipar) == pytest.approx(want, rel=1e-12)
        ifac = np.asarray(presets["models"][3]["components"]["bknpower"][s.module]["ifactors"])
        assert _value(out, "intn", g, 4) == pytest.approx(
            _value(st, "intn", r, 4) * (s.area @ ifac) / (wr.area @ ifac), rel=1e-12)
        # fcxb: area-weighted mean fitted surface brightness of the module
        idx = [i for i, m in enumerate(mods) if m == s.module]
        sb = sum(_value(st, "fcxb", i + 1, 3) for i in idx) / sum(weights[i].area.sum() for i in idx)
        p = out.source("fcxb").param(g, 3)
        assert p.free and p.value == pytest.approx(sb * s.area.sum(), rel=1e-12)
        assert not out.source("apbgd").param(g, 3).free  # linked
    # background groups untouched
    for name in ("apbgd", "intbgd", "fcxb", "intn"):
        a, b = st.source(name), out.source(name)
        for i in range(n_bg * a.npar):
            assert a.params[i].link == b.params[i].link and a.params[i].value == b.params[i].value
    # preset mode reproduces the original
    pre = add_source_spectra(st, mods, weights, srcs, presets, fcxb="preset")
    for k, s in enumerate(srcs):
        assert pre.source("fcxb").param(n_bg + k + 1, 3).value == pytest.approx(FCXB_FACTOR * s.area.sum())
    # XCM round trip keeps every value
    back = parse_xcm(format_xcm(out))
    for name in ("apbgd", "intbgd", "fcxb", "intn"):
        for g in range(1, len(out.spectra) + 1):
            for ipar in range(1, out.source(name).npar + 1):
                assert _value(back, name, g, ipar) == pytest.approx(_value(out, name, g, ipar), rel=1e-5)


def test_simplify_freezes_and_drops_background():
    st, mods, weights, presets = _fitted(3, n=6)
    srcs = _sources(np.random.default_rng(5), ("B", "A"))
    out = add_source_spectra(st, mods, weights, srcs, presets)
    simp = simplify_state(out, len(mods))
    assert [e.file for e in simp.spectra] == [s.file for s in srcs]
    assert [(e.group, e.number) for e in simp.spectra] == [(1, 1), (2, 2)]
    for src in simp.sources:
        assert len(src.params) == 2 * src.npar
        for p in src.params:
            assert p.link is None and p.frozen
    for k in range(2):
        for name in ("apbgd", "intbgd", "fcxb", "intn"):
            for ipar in range(1, simp.source(name).npar + 1):
                assert simp.source(name).param(k + 1, ipar).value == pytest.approx(
                    _value(out, name, len(mods) + k + 1, ipar), rel=1e-14)
    text = format_xcm(simp)
    assert "=" not in "".join(line for line in text.splitlines() if not line.startswith(("data", "response", "arf")))
    back = parse_xcm(text)
    assert len(back.spectra) == 2
    with pytest.raises(NuskybgdError):
        simplify_state(st, len(mods))


def test_component_counts_and_errors():
    st, mods, weights, presets = _fitted(4)
    srcs = _sources(np.random.default_rng(1), ("A",))
    out = add_source_spectra(st, mods, weights, srcs, presets)
    keys = ["apbgd", "fcxb", "intn", "intbgd.apec"] + [f"intbgd.{k}" for k in presets["models"][1]["components"]
                                                      if k != "apec"]
    tmpl = {k: np.full(10, i + 1.0) for i, k in enumerate(keys)}
    counts = group_component_counts(out, len(mods) + 1, tmpl)
    assert set(counts) == set(keys)
    assert counts["apbgd"][0] == pytest.approx(_value(out, "apbgd", len(mods) + 1, 3) * 1.0)
    with pytest.raises(NuskybgdError):
        group_component_counts(out, 1, {"apbgd": np.ones(3)})
    with pytest.raises(NuskybgdError, match="module B"):
        add_source_spectra(st, ["A"] * 4, weights, _sources(np.random.default_rng(1), ("B",)), presets)
    bad = _sources(np.random.default_rng(1), ("A",))
    bad[0].area = np.zeros(4)
    with pytest.raises(NuskybgdError, match="zero area"):
        add_source_spectra(st, mods, weights, bad, presets)
    assert fcxb_surface_brightness([1, 2], [10, 20]) == pytest.approx(0.1)
    assert default_savefile(["dir/src1.reg", "src2.reg"]) == "bgd_src1"
    assert simplify_savefile("x/bgd_src1.xcm") == "bgd_only_src1"
    assert simplify_savefile("fit.xcm") == "bgd_only_fit"


# ----------------------------------------------------------------------------
# spec / simplify / image on a synthetic field (files, CALDB RMFs, no fit)
# ----------------------------------------------------------------------------

import json
import os
from pathlib import Path

from astropy.io import fits

from nuskybgd.cli import main

NPIX = 1000
RATIOS = []


def _header():
    h = fits.Header()
    h.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=500.5, CRPIX2=500.5, CRVAL1=150.0, CRVAL2=2.0,
             CDELT1=-2.45810736 / 3600, CDELT2=2.45810736 / 3600, CUNIT1="deg", CUNIT2="deg",
             RADESYS="FK5", EQUINOX=2000.0, PA_PNT=63.7, TELESCOP="NuSTAR")
    return h


def _images():
    """Detector quadrants of a ~360-pixel footprint centred near (500, 480), smooth edges, gradient aperture."""
    y, x = np.mgrid[0:NPIX, 0:NPIX].astype(float)
    cx, cy = 505.0, 480.0
    s = 2.5
    fx = 1 / (1 + np.exp(-(x - cx) / s))
    fy = 1 / (1 + np.exp(-(y - cy) / s))
    edge = (1 / (1 + np.exp(-(x - (cx - 175)) / s)) * 1 / (1 + np.exp((x - (cx + 175)) / s))
            * 1 / (1 + np.exp(-(y - (cy - 175)) / s)) * 1 / (1 + np.exp((y - (cy + 175)) / s)))
    det = np.array([(1 - fx) * (1 - fy), fx * (1 - fy), fx * fy, (1 - fx) * fy]) * edge * 0.97
    ap = (1.0 + 1.2 * (x - cx + 175) / 350) * det.sum(0) * 2.4e-3
    return det, ap


BG_REGIONS = [(400, 380, 60), (610, 380, 55), (620, 590, 60)]
SRC_REGION = (420, 600, 50)


def _write_reg(path, circles, exclude=()):
    lines = ["# Region file format: DS9 version 4.1", "image"]
    lines += [f"circle({x},{y},{r})" for x, y, r in circles]
    lines += [f"-circle({x},{y},{r})" for x, y, r in exclude]
    Path(path).write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def field(tmp_path_factory, synthetic_caldb):
    """bgdinfo.json, background spectra drawn from the model, a 'fit' XCM and a source spectrum."""
    from nuskybgd.caldb import Caldb
    from nuskybgd.fitting.weights import region_weights
    from nuskybgd.io.ogip import read_rmf, write_pha
    from nuskybgd.io.regions import region_mask
    from nuskybgd.models.background import component_templates

    old = os.environ.get("CALDB")
    os.environ["CALDB"] = str(synthetic_caldb)
    d = tmp_path_factory.mktemp("field")
    hdr = _header()
    det, ap = _images()
    for m in "AB":
        fits.PrimaryHDU(ap.astype(np.float32), header=hdr).writeto(d / f"bgdap{m}.fits")
        for k in range(4):
            fits.PrimaryHDU(det[k].astype(np.float32), header=hdr).writeto(d / f"det{k}{m}im.fits")
    det = np.array([fits.getdata(d / f"det{k}Aim.fits").astype(float) for k in range(4)])
    ap = fits.getdata(d / "bgdapA.fits").astype(float)
    cal = Caldb(synthetic_caldb)
    rmfs = {m: cal.rmf(f"FPM{m}", "DET0", "2021-01-01") for m in "AB"}
    presets = load_ratios()
    bgfiles, regfiles, specs, weights, masks = [], [], [], [], []
    for i, c in enumerate(BG_REGIONS):
        for m in "AB":
            reg = _write_reg(d / f"bgd{i + 1}{m}.reg", [c])
            mask = region_mask(reg, hdr, shape=(NPIX, NPIX), header=hdr)
            w = region_weights(mask, list(det), ap, name=str(reg))
            bgfiles.append(f"bgd{i + 1}{m}.pha")
            regfiles.append(reg.name)
            weights.append(w)
            masks.append(mask)
            specs.append({"file": f"bgd{i + 1}{m}.pha", "module": m, "rmf": str(rmfs[m]), "apbgd_arf": "x.arf",
                          "fcxb_arf": "y.arf", "diag_rmf": "diag.rmf"})
    st = build_background_state(specs, weights, presets)
    rng = np.random.default_rng(7)
    for s, i in st.free_parameters():
        s.params[i].value *= rng.uniform(0.7, 1.4)
    st.update_linked_values()
    expo = 4.0e4
    rmf_obj = {m: read_rmf(rmfs[m]) for m in "AB"}
    for g, (sp, w) in enumerate(zip(specs, weights), start=1):
        t = component_templates(rmf_obj[sp["module"]], sp["module"], w.frac, expo)
        mu = sum(group_component_counts(st, g, t).values())
        write_pha(d / sp["file"], rng.poisson(mu), expo, 1.0,
                  header={"INSTRUME": f"FPM{sp['module']}", "RESPFILE": str(rmfs[sp["module"]]),
                          "DATE-OBS": "2021-03-14T06:00:00"})
    (d / "fit.xcm").write_text(format_xcm(st))
    info = {"bgfiles": bgfiles, "regfiles": regfiles, "refimgf": "bgdapA.fits",
            "bgdapfiles": {"A": "bgdapA.fits", "B": "bgdapB.fits"},
            "bgddetfiles": {m: [f"det{k}{m}im.fits" for k in range(4)] for m in "AB"}}
    (d / "bgdinfo.json").write_text(json.dumps(info))
    # source spectra: background only, both modules, same region
    src_reg = _write_reg(d / "src.reg", [SRC_REGION])
    for m in "AB":
        mask = region_mask(src_reg, hdr, shape=(NPIX, NPIX), header=hdr)
        write_pha(d / f"src{m}.pha", rng.poisson(50 * np.ones(4096) / 4096), expo, 1.0,
                  header={"INSTRUME": f"FPM{m}", "RESPFILE": str(rmfs[m]), "DATE-OBS": "2021-03-14T06:00:00"})
    _write_reg(d / "off.reg", [(950, 950, 20)])
    yield {"dir": d, "state": st, "weights": weights, "masks": masks, "rmfs": rmfs, "det": det, "ap": ap,
           "expo": expo, "hdr": hdr}
    if old is None:
        os.environ.pop("CALDB", None)
    else:
        os.environ["CALDB"] = old


def _chdir(path):
    class _C:
        def __enter__(self):
            self.old = os.getcwd()
            os.chdir(path)

        def __exit__(self, *a):
            os.chdir(self.old)
    return _C()


def test_spec_outputs_and_counts(field, tmp_path):
    from nuskybgd.fitting.apply import run_spec
    from nuskybgd.io.ogip import read_pha
    d = field["dir"]
    with _chdir(d):
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
    from nuskybgd.fitting.apply import compute_images, load_setup, run_spec
    from nuskybgd.io.regions import region_mask
    from nuskybgd.sky.bgimage import band_channels, region_sum
    d = field["dir"]
    regions = {"src": SRC_REGION, "bg1": BG_REGIONS[0], "edge": (560, 470, 40), "big": (500, 480, 150)}
    with _chdir(d):
        setup = load_setup("bgdinfo.json", "fit.xcm")
        for name, c in regions.items():
            _write_reg(tmp_path / f"{name}.reg", [c])
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
                    RATIOS.append((name, m, comp, a, ratio))
                    if comp == "apbgd":  # the original's image: bgdap * C_ref / ap_ref
                        i = setup.ref_index(m)
                        orig = setup.ap[m] * imgs[m]["band_counts"]["apbgd"] / setup.weights[i].ap
                        RATIOS.append((name, m, "apbgd_original", a, region_sum(orig, mask) / spectral))
                    assert ratio == pytest.approx(1, rel=1e-2), (name, m, comp, a)
                assert region_sum(imgs[m]["total"], mask) == pytest.approx(r["spectrum"][sel].sum(), rel=1e-2)


def test_simplify_task(field, tmp_path, capsys):
    d = field["dir"]
    with _chdir(d):
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
            assert src.param(1, ipar).value == pytest.approx(_value(full, src.name, 7, ipar), rel=1e-5)
    assert (tmp_path / "bgd_only_s_sherpa.py").is_file()


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("case", ["off_image", "outside_image", "count_mismatch", "fit_mismatch", "band",
                                  "zero_area_src", "image_fit_mismatch"])
def test_bad_input(field, tmp_path, capsys, case):
    d = field["dir"]
    out = tmp_path / "out"
    out.mkdir()
    with _chdir(d):
        if case == "off_image":
            argv = ["spec", "bgdinfo.json", "fit.xcm", "off.reg", "srcA.pha", f"savefile={out / 'b'}"]
        elif case == "outside_image":
            _write_reg(tmp_path / "out.reg", [(1500, 1500, 30)])  # beyond the 1000x1000 projected images
            argv = ["spec", "bgdinfo.json", "fit.xcm", str(tmp_path / "out.reg"), "srcA.pha", f"savefile={out / 'b'}"]
        elif case == "zero_area_src":
            _write_reg(tmp_path / "z.reg", [(100, 100, 30)])  # on the image, off the detectors
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
    msg = _one_line_error(capsys)
    expect = {"off_image": "off.reg", "outside_image": "out.reg", "count_mismatch": "2 source regions but 1",
              "fit_mismatch": "spectrum 1", "band": "emin must be below emax", "zero_area_src": "zero area",
              "image_fit_mismatch": "spectrum 3"}[case]
    assert expect in msg, msg
    assert list(out.iterdir()) == []


def test_zz_report_ratios():
    """Prints the image/spectrum ratios measured above (for the report)."""
    if RATIOS:
        r = np.array([x[-1] for x in RATIOS if x[2] != "apbgd_original"])
        print(f"\nimage/spectral ratio: n={r.size} min={r.min():.5f} max={r.max():.5f}")
        for comp in ("apbgd", "intbgd", "fcxb", "intn", "apbgd_original"):
            rr = np.array([x[-1] for x in RATIOS if x[2] == comp])
            print(f"  {comp}: max |ratio-1| = {np.abs(rr - 1).max():.2e}")


def test_xcm_outputs_pass_xspec_evaluation(field, tmp_path):
    """spec and simplify XCMs, evaluated with XSPEC's compiled models through the files they name,
    reproduce the predicted background (the fit export's evaluator, tests/test_fit_task.py)."""
    pytest.importorskip("xspectrampoline")
    from test_fit_task import _xspec_counts

    from nuskybgd.fitting.apply import run_simplify, run_spec
    from nuskybgd.io.xcm import read_xcm
    d = field["dir"]
    with _chdir(d):
        res = run_spec("bgdinfo.json", "fit.xcm", ["src.reg", "src.reg"], ["srcA.pha", "srcB.pha"],
                       savefile=str(tmp_path / "bgd_src"), plot=False)
        run_simplify("bgdinfo.json", str(tmp_path / "bgd_src.xcm"), savefile=str(tmp_path / "bgd_only_src"))
    worst = 0.0
    for name, first in (("bgd_src.xcm", 6), ("bgd_only_src.xcm", 0)):
        st = read_xcm(tmp_path / name)
        assert len(st.spectra) == first + 2
        for k in range(2):
            ours = res["sources"][k]["spectrum"]
            ref = _xspec_counts(st, first + k, tmp_path, res["sources"][k]["counts"]["intbgd.apec"])
            keep = ours > 1e-8 * ours.max()
            worst = max(worst, float(np.max(np.abs(ref[keep] - ours[keep]) / ours[keep])))
    print(f"\nXSPEC-function evaluation of the spec/simplify XCMs: max relative difference {worst:.2e}")
    assert worst < 1e-5, worst


def test_image_task_files(field, tmp_path, capsys):
    d = field["dir"]
    with _chdir(d):
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
    with _chdir(d):
        rc = main(["image", "bgdinfo.json", "fit.xcm", "3", "20", f"prefix={tmp_path}/x_"])
    assert rc != 0 and "exists" in _one_line_error(capsys)
    assert (tmp_path / "x_bgd_total_A.fits").stat().st_mtime_ns == before


def test_simplify_sherpa_script_reproduces_background(field, tmp_path):
    """The simplified state's Sherpa script predicts the background PHA's counts."""
    import runpy

    from sherpa.astro import ui

    from nuskybgd.fitting.apply import run_simplify, run_spec
    d = field["dir"]
    with _chdir(d):
        res = run_spec("bgdinfo.json", "fit.xcm", ["src.reg", "src.reg"], ["srcA.pha", "srcB.pha"],
                       savefile=str(tmp_path / "bgd_src"), plot=False)
        run_simplify("bgdinfo.json", str(tmp_path / "bgd_src.xcm"), savefile=str(tmp_path / "bgd_only_src"))
    try:
        with _chdir(tmp_path):
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
