"""Presets and Sherpa model classes."""

import numpy as np
import pytest

from nuskybgd.calib.presets import component_presets
from nuskybgd.errors import NuskybgdError


@pytest.mark.parametrize("module", ["A", "B", "fpma", "FPMB"])
def test_presets_from_ratios(module):
    from nuskybgd.calib.auxil import load_ratios
    raw = load_ratios()["models"]
    m = module[-1].upper()
    p = component_presets(module)
    assert p.module == m
    assert (p.apbgd.phoindex, p.apbgd.highecut) == (1.29, 41.13)
    assert p.fcxb == p.apbgd
    assert p.apec.kt == raw[1]["components"]["apec"][m]["kt"]
    assert p.apec.ifactors == tuple(raw[1]["components"]["apec"][m]["ifactors"])
    names = [n for n in raw[1]["components"] if n.startswith("lorentz")]
    assert p.line_names == tuple(names)
    assert len(p.lines) == 29 and p.lines[0].name == "lorentz" and p.lines[-1].name == "lorentz_30"
    for line in p.lines:
        e = raw[1]["components"][line.name][m]
        assert (line.linee, line.width, line.ifactors) == (e["linee"], e["width"], tuple(e["ifactors"]))
    b = raw[3]["components"]["bknpower"][m]
    assert (p.intn.phoindx1, p.intn.breake, p.intn.phoindx2) == (b["phoindx1"], b["breake"], b["phoindx2"])
    assert p.intn.ifactors == tuple(b["ifactors"])


def test_presets_bad_input():
    with pytest.raises(NuskybgdError, match="module must be A or B"):
        component_presets("C")
    with pytest.raises(NuskybgdError, match="missing preset"):
        component_presets("A", {"models": []})


# ---------------------------------------------------------------- Sherpa classes

from nuskybgd.kernels import spectral as kernels
from nuskybgd.models import (
    FoldedModel,
    TemplateCountsModel,
    apec,
    bknpower,
    cutoffpl,
    lorentz,
    lorentz_lines,
)


def _model_dat():
    """XSPEC's model.dat from the xspectrampoline package (parameter table)."""
    helpers = pytest.importorskip("xspectrampoline_helpers", reason="xspectrampoline not installable here")
    path = helpers._headas_path / "spectral" / "manager" / "model.dat"
    if not path.is_file():
        pytest.skip(f"{path} not in this xspectrampoline build")
    models = {}
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        parts = lines[i].split()
        if len(parts) >= 6 and parts[1].isdigit() and parts[5] in ("add", "mul", "con"):
            npar = int(parts[1])
            pars = []
            for line in lines[i + 1:i + 1 + npar]:
                t = line.replace('" "', '""').split()
                pars.append(t)
            models[parts[0]] = pars
            i += npar + 1
        else:
            i += 1
    return models


@pytest.mark.parametrize("cls, xsname", [(cutoffpl, "cutoffpl"), (bknpower, "bknpower"),
                                         (lorentz, "lorentz"), (apec, "apec")])
def test_parameters_match_xspec_model_dat(cls, xsname):
    spec = _model_dat()[xsname]
    m = cls()
    assert [p.name for p in m.pars] == [t[0] for t in spec] + ["norm"]
    for p, t in zip(m.pars, spec):
        unit = t[1].strip('"')
        value, hard_min, soft_min, soft_max, hard_max, delta = map(float, t[2:8])
        assert p.val == value, p.name
        assert (p.hard_min, p.min, p.max, p.hard_max) == (hard_min, soft_min, soft_max, hard_max), p.name
        assert p.units == unit, p.name
        assert p.frozen == (delta < 0), p.name
    assert m.norm.val == 1.0 and m.norm.min == 0.0 and not m.norm.frozen


def test_cutoffpl_usage_as_in_issue():
    m = cutoffpl()
    m.PhoIndex = 1.29
    m.HighECut = 41.13
    m.norm = 3.0
    lo, hi = np.array([3.0, 4.0, 10.0]), np.array([4.0, 5.0, 20.0])
    np.testing.assert_allclose(m(lo, hi), 3.0 * kernels.cutoffpl_integral(lo, hi, 1.29, 41.13), rtol=1e-14)
    edges = np.array([3.0, 4.0, 5.0])
    np.testing.assert_allclose(m(edges), np.append(m(edges[:-1], edges[1:]), 0.0), rtol=1e-14)


@pytest.mark.parametrize("cls, pars, kernel", [
    (bknpower, dict(PhoIndx1=-0.05, BreakE=124.0, PhoIndx2=-0.85),
     lambda lo, hi: kernels.bknpower_integral(lo, hi, -0.05, 124.0, -0.85)),
    (lorentz, dict(LineE=19.6464, Width=0.229493), lambda lo, hi: kernels.lorentz_integral(lo, hi, 19.6464, 0.229493)),
])
def test_models_are_norm_times_kernel(cls, pars, kernel):
    m = cls()
    for k, v in pars.items():
        setattr(m, k, v)
    e = np.linspace(3.0, 150.0, 500)
    m.norm = 2.5
    np.testing.assert_allclose(m(e[:-1], e[1:]), 2.5 * kernel(e[:-1], e[1:]), rtol=1e-14)


def test_models_match_xspec_through_sherpa():
    xs = pytest.importorskip("xspectrampoline", reason="xspectrampoline not installable here")
    lib = xs.get_libraries()
    e = np.geomspace(2.0, 160.0, 200)
    for cls, sym, pars in [(cutoffpl, "C_cutoffPowerLaw", [1.29, 41.13]),
                           (bknpower, "C_brokenPowerLaw", [-0.05, 124.0, -0.85]),
                           (lorentz, "C_lorentzianLine", [6.4, 0.5])]:
        m = cls()
        for p, v in zip(m.pars, pars):
            p.val = v
        m.norm = 7.0
        out, err = np.zeros(e.size - 1), np.zeros(e.size - 1)
        lib.get_model(sym)(e, np.array(pars, float), out, err)
        np.testing.assert_allclose(m(e[:-1], e[1:]), 7.0 * out, rtol=1e-6, err_msg=sym)


def test_apec_class_template_and_linear_norm(auxil_dir):
    from astropy.io import fits
    p = component_presets("A").apec
    with fits.open(auxil_dir / "diag.rmf") as h:
        lo = h["MATRIX"].data["ENERG_LO"].astype(float)
        hi = h["MATRIX"].data["ENERG_HI"].astype(float)
    m = apec()
    m.kT, m.Abundanc, m.Redshift = p.kt, p.abundanc, p.redshift
    one = m(lo, hi)
    m.norm = 0.37
    np.testing.assert_allclose(m(lo, hi), 0.37 * one, rtol=1e-14)
    assert one[(lo >= 3) & (hi <= 5)].sum() > 0
    m.kT = 2.0
    with pytest.raises(NuskybgdError, match="holds only"):
        m(lo, hi)


def test_lorentz_lines_one_call_equals_single_lines(monkeypatch):
    p = component_presets("B")
    lines = lorentz_lines([(x.name, x.linee, x.width) for x in p.lines])
    assert len(lines.pars) == 3 * 29
    e = np.linspace(3.0, 150.0, 800)
    norms = np.linspace(0.5, 3.0, 29)
    for n, v in zip(p.line_names, norms):
        getattr(lines, f"norm_{n}").val = v
    expect = sum(v * kernels.lorentz_integral(e[:-1], e[1:], x.linee, x.width) for v, x in zip(norms, p.lines))
    np.testing.assert_allclose(lines(e[:-1], e[1:]), expect, rtol=1e-12)
    calls = []
    orig = kernels.lorentz_lines
    monkeypatch.setattr(kernels, "lorentz_lines", lambda *a: calls.append(1) or orig(*a))
    lines.norm_lorentz_5 = 10.0  # norm-only change: cached shapes
    lines(e[:-1], e[1:])
    assert calls == []
    lines.LineE_lorentz_5 = 19.0  # shape change: one call for all lines
    lines(e[:-1], e[1:])
    assert calls == [1]


@pytest.fixture(scope="module")
def toy_templates():
    x = (np.arange(4096) + 0.5) * 0.04 + 1.6
    return {"apbgd": 50 * np.exp(-x / 10), "intbgd.lorentz_5": 5 * np.exp(-0.5 * ((x - 20) / 2) ** 2),
            "intn": np.full(4096, 0.3)}


def test_template_counts_model_looks_up_channels(toy_templates):
    m = TemplateCountsModel(toy_templates, norms={"apbgd": 2.0})
    assert [p.name for p in m.pars] == ["apbgd", "intbgd_lorentz_5", "intn"]
    full = 2.0 * toy_templates["apbgd"] + toy_templates["intbgd.lorentz_5"] + toy_templates["intn"]
    np.testing.assert_allclose(m(np.arange(4096.0)), full, rtol=1e-14)
    chans = np.array([7.0, 100.0, 4095.0])
    np.testing.assert_allclose(m(chans), full[[7, 100, 4095]], rtol=1e-14)
    with pytest.raises(NuskybgdError, match="outside"):
        m(np.array([4096.0]))
    m1 = TemplateCountsModel(toy_templates, first_channel=1)
    np.testing.assert_allclose(m1(np.array([1.0])), m(np.array([0.0])) - toy_templates["apbgd"][0], rtol=1e-14)


@pytest.mark.parametrize("seed", [1, 2])
def test_template_counts_model_fit_recovers_norms(toy_templates, seed):
    """Injection-recovery: Poisson counts from known norms, Cash fit on a channel subset."""
    from sherpa.astro.data import DataPHA
    from sherpa.fit import Fit
    from sherpa.optmethods import LevMar
    from sherpa.stats import Cash
    truth = {"apbgd": 2.0, "intbgd.lorentz_5": 0.7, "intn": 1.5}
    mu = sum(truth[k] * toy_templates[k] for k in truth)
    rng = np.random.default_rng(seed)
    pha = DataPHA("sim", np.arange(4096.0), rng.poisson(mu).astype(float), exposure=1000.0)
    pha.ignore(None, 100)
    pha.ignore(2000, None)
    m = TemplateCountsModel(toy_templates)
    fit = Fit(pha, m, stat=Cash(), method=LevMar())
    fit.fit()
    err = fit.est_errors()
    for p, lo, hi in zip(m.pars, err.parmins, err.parmaxes):
        t = truth[p.name.replace("intbgd_", "intbgd.")]
        assert abs(p.val - t) < 4 * max(abs(lo), abs(hi)), p.name


def test_folded_model_equals_template(shared_caldb, real):
    from nuskybgd.io.ogip import read_pha, read_rmf
    from nuskybgd.models.background import component_templates
    from nuskybgd.models.responses import apbgd_arf
    rmf = read_rmf(shared_caldb / "nuAdet3_20100101v002.rmf.gz")
    pha = read_pha(real / "spectra" / "nu30501003002B01_velax1_sr.pha")
    detabs = shared_caldb / "nuAdetabs20100101v002.fits"
    arf = apbgd_arf("A", [0.1, 0.2, 0.3, 0.4], rmf=rmf, detabs_file=detabs)
    src = cutoffpl()
    src.PhoIndex, src.HighECut, src.norm = 1.29, 41.13, 0.02
    folded = FoldedModel(src, rmf, arf, exposure=pha.exposure)
    t = component_templates(rmf, "A", [0.1, 0.2, 0.3, 0.4], pha.exposure, detabs_file=detabs)
    np.testing.assert_allclose(folded(np.arange(4096.0)), 0.02 * t["apbgd"], rtol=1e-12,
                               atol=1e-12 * t["apbgd"].max())
    # Sherpa passes only noticed channels during fits: values are looked up by channel
    pha.ignore(None, 35.0)
    pha.ignore(1935.0, None)
    chans = pha.get_indep(filter=True)[0]
    np.testing.assert_allclose(pha.eval_model_to_fit(folded), 0.02 * t["apbgd"][chans.astype(int)], rtol=1e-12)
    assert [p.fullname for p in folded.pars] == ["cutoffpl.PhoIndex", "cutoffpl.HighECut", "cutoffpl.norm"]
    with pytest.raises(NuskybgdError, match="exposure"):
        FoldedModel(src, rmf, arf, exposure=0)


def test_tabulated_apec_on_trimmed_grid(real):
    """Sherpa trims the energy grid to the noticed channels (diag.rmf): values are looked up by energy."""
    from nuskybgd.calib.auxil import auxil_path
    from nuskybgd.io.ogip import read_pha, read_rmf
    pha = read_pha(real / "spectra" / "nu30501003002B01_velax1_sr.pha")
    diag = read_rmf(auxil_path("diag.rmf"))
    pha.set_response(None, diag)
    p = component_presets("A").apec
    a = apec()
    a.kT, a.Abundanc, a.Redshift, a.norm = p.kt, p.abundanc, p.redshift, 2.0
    c = cutoffpl()
    c.PhoIndex, c.HighECut, c.norm = 1.29, 41.13, 0.01
    line = lorentz()
    line.LineE, line.Width, line.norm = 10.2026, 0.641196, 0.3
    full_model = pha.get_full_response()(a + c + line)
    every = pha.eval_model(full_model)
    pha.set_analysis("energy")
    pha.notice(3.0, 20.0)
    chans = pha.get_noticed_channels().astype(int)
    full_model.startup()  # as Fit.fit does: the response is trimmed to the noticed channels
    try:
        assert full_model.rmf._lo.size < 500  # a trimmed copy of the RMF
        got = pha.eval_model_to_fit(full_model)
    finally:
        full_model.teardown()
    # apec and cutoffpl are exact; the line's far-wing remainder depends on the grid (XSPEC's rule, <= 1e-6 of its flux)
    np.testing.assert_allclose(got, every[chans], rtol=0, atol=2e-6 * 0.3 + 1e-12 * every.max())
    wo_line = pha.get_full_response()(a + c)
    full = pha.eval_model(wo_line)
    wo_line.startup()
    try:
        trimmed = pha.eval_model_to_fit(wo_line)
    finally:
        wo_line.teardown()
    np.testing.assert_allclose(trimmed, full[chans], rtol=1e-13)
