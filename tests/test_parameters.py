"""One parameter table (nuskybgd.parameters): the Sherpa classes, the fit state and the templates agree with it."""

import numpy as np
import pytest

from nuskybgd import parameters as P
from nuskybgd.calib.auxil import load_ratios
from nuskybgd.calib.presets import component_presets
from nuskybgd.fitting.model import build_background_state
from nuskybgd.io.ogip import standard_energy_grid
from nuskybgd.io.state import Param
from nuskybgd.models import basic
from nuskybgd.models.background import component_spectra, component_templates, evaluate_model
from nuskybgd.models.responses import apbgd_arf, diag_rmf, fcxb_arf

SHERPA_CLASSES = {"cutoffpl": basic.cutoffpl, "bknpower": basic.bknpower, "lorentz": basic.lorentz,
                  "apec": basic.apec}


def _agrees(par, spec, name=None, frozen=None):
    assert par.name == (name or spec.name)
    assert (par.val, par.min, par.max, par.hard_min, par.hard_max) == \
        (spec.value, spec.soft_min, spec.soft_max, spec.hard_min, spec.hard_max), par.fullname
    assert par.units == spec.units, par.fullname
    assert par.frozen == (spec.frozen if frozen is None else frozen), par.fullname


def test_table_is_consistent():
    assert set(P.COMPONENT_PARAMS) == set(P.PARAMETERS)
    for comp, specs in P.PARAMETERS.items():
        assert [n for n, _ in P.COMPONENT_PARAMS[comp]] == [s.name for s in specs]
        for s in specs:
            assert s.hard_min <= s.soft_min <= s.value <= s.soft_max <= s.hard_max, (comp, s)
            assert dict(P.COMPONENT_PARAMS[comp])[s.name] == s.numbers()
    assert P.component_parameters("CutoffPL") is P.PARAMETERS["cutoffpl"]
    with pytest.raises(KeyError):
        P.component_parameters("nosuchmodel")


@pytest.mark.parametrize("comp", sorted(SHERPA_CLASSES))
def test_sherpa_classes_follow_the_table(comp):
    model = SHERPA_CLASSES[comp]()
    specs = P.component_parameters(comp)
    assert model.name == comp
    assert [p.name for p in model.pars] == [s.name for s in specs]
    for par, spec in zip(model.pars, specs):
        _agrees(par, spec)


def test_lorentz_lines_and_template_norms_follow_the_table():
    lines = basic.lorentz_lines([("lorentz_3", 6.4, 0.2), ("lorentz_4", 10.0, 0.3)])
    spec = {s.name: s for s in P.component_parameters("lorentz")}
    for i, n in enumerate(("lorentz_3", "lorentz_4")):
        e, w, k = lines.pars[3 * i:3 * i + 3]
        for par, s in ((e, spec["LineE"]), (w, spec["Width"])):
            assert par.name == f"{s.name}_{n}" and par.frozen  # shapes frozen: one kernel call per norm change
            assert (par.min, par.max, par.hard_min, par.hard_max, par.units) == \
                (s.soft_min, s.soft_max, s.hard_min, s.hard_max, s.units)
        assert (e.val, w.val) == ((6.4, 0.2) if i == 0 else (10.0, 0.3))
        _agrees(k, P.NORM, name=f"norm_{n}")
    tcm = basic.TemplateCountsModel({"apbgd": np.ones(4), "intbgd.lorentz_3": np.ones(4)})
    assert [p.name for p in tcm.pars] == ["apbgd", "intbgd_lorentz_3"]
    for par in tcm.pars:
        _agrees(par, P.NORM, name=par.name)


class _W:
    def __init__(self, area, ap):
        self.area, self.ap = np.asarray(area, float), float(ap)


def test_fit_state_follows_the_table():
    assert Param(2.0).numbers()[1:] == P.NORM.numbers()[1:]
    specs = [{"file": f"s{i}.pha", "module": m, "rmf": "r.rmf", "apbgd_arf": None, "fcxb_arf": None,
              "diag_rmf": None} for i, m in enumerate("AAB")]
    weights = [_W([100.0, 50.0, 0.0, 10.0], 3.0), _W([80.0, 20.0, 5.0, 0.0], 2.0), _W([0, 40.0, 60.0, 9.0], 1.5)]
    state = build_background_state(specs, weights, load_ratios())
    checked = set()
    for src in state.sources:
        for j, par in enumerate(src.params):
            k = j % src.npar
            comp = src.components[src.par_components[k]].lower()
            spec = {s.name: s for s in P.component_parameters(comp)}[src.par_names[k]]
            # limits and step size from the table; value and frozen flag are the model's
            assert par.numbers()[2:] == spec.numbers()[2:], (src.name, spec.name)
            assert abs(par.delta) == abs(spec.delta), (src.name, spec.name)
            checked.add((comp, spec.name))
    assert checked == {(c, s.name) for c in ("cutoffpl", "apec", "lorentz", "bknpower")
                       for s in P.component_parameters(c)}


def test_evaluate_model_limits():
    from nuskybgd.errors import NuskybgdError

    lo, hi = standard_energy_grid(50)
    m = basic.cutoffpl()
    # between the soft (9) and hard (10) maximum: legal, as in XSPEC
    got = evaluate_model(m, lo, hi, PhoIndex=9.5)
    ref = basic.cutoffpl()
    ref.PhoIndex.max = 10.0
    ref.PhoIndex = 9.5
    np.testing.assert_array_equal(got, ref(lo, hi))
    assert m.PhoIndex.val == 9.5 and m.PhoIndex.max == 9.5
    with pytest.raises(NuskybgdError, match="PhoIndex = 11: outside its hard limits -3..10"):
        evaluate_model(m, lo, hi, PhoIndex=11)


def test_component_spectra_are_the_sherpa_models():
    lo, hi = standard_energy_grid()
    pre = component_presets("A")
    spec = component_spectra(lo, hi, pre)
    cp = basic.cutoffpl()
    cp.PhoIndex, cp.HighECut = pre.apbgd.phoindex, pre.apbgd.highecut
    np.testing.assert_array_equal(spec["apbgd"], cp(lo, hi))
    ap = basic.apec()
    ap.kT, ap.Abundanc, ap.Redshift = pre.apec.kt, pre.apec.abundanc, pre.apec.redshift
    np.testing.assert_array_equal(spec["intbgd.apec"], ap(lo, hi))
    bk = basic.bknpower()
    bk.PhoIndx1, bk.BreakE, bk.PhoIndx2 = pre.intn.phoindx1, pre.intn.breake, pre.intn.phoindx2
    np.testing.assert_array_equal(spec["intn"], bk(lo, hi))
    for line in pre.lines:
        lz = basic.lorentz()
        lz.LineE, lz.Width = line.linee, line.width
        np.testing.assert_allclose(spec[f"intbgd.{line.name}"], lz(lo, hi), rtol=1e-12, atol=1e-300)
    lines = basic.lorentz_lines([(x.name, x.linee, x.width) for x in pre.lines])
    np.testing.assert_allclose(sum(spec[f"intbgd.{x.name}"] for x in pre.lines), lines(lo, hi), rtol=1e-12)


def test_templates_equal_sherpa_models_folded_by_sherpa(shared_caldb):
    """A template = exposure x Sherpa's own fold (rmf.apply_rmf) of the Sherpa model x its ARF."""
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.io.ogip import read_rmf

    rmf = read_rmf(shared_caldb / "nuAdet3_20100101v002.rmf.gz")
    lo, hi = np.asarray(rmf.energ_lo), np.asarray(rmf.energ_hi)
    pre = component_presets("A")
    frac = [0.0, 0.0, 0.2, 0.8]
    caldb = Caldb(shared_caldb)
    tpl = component_templates(rmf, "A", frac, 1e4, caldb=caldb)
    ap_arf = apbgd_arf("A", frac, caldb=caldb, rmf=(lo, hi))
    fc_arf = fcxb_arf("A", rmf=(lo, hi))
    diag = diag_rmf()
    cp = basic.cutoffpl()
    cp.PhoIndex, cp.HighECut = pre.apbgd.phoindex, pre.apbgd.highecut
    want = 1e4 * rmf.apply_rmf(cp(lo, hi) * ap_arf.specresp)
    np.testing.assert_allclose(tpl["apbgd"], want, rtol=1e-9, atol=1e-12 * want.max())
    want = 1e4 * rmf.apply_rmf(cp(lo, hi) * fc_arf.specresp)
    np.testing.assert_allclose(tpl["fcxb"], want, rtol=1e-9, atol=1e-12 * want.max())
    lz = basic.lorentz()
    lz.LineE, lz.Width = pre.lines[2].linee, pre.lines[2].width
    want = 1e4 * rmf.apply_rmf(lz(lo, hi))
    np.testing.assert_allclose(tpl[f"intbgd.{pre.lines[2].name}"], want, rtol=1e-9, atol=1e-12 * want.max())
    bk = basic.bknpower()
    bk.PhoIndx1, bk.BreakE, bk.PhoIndx2 = pre.intn.phoindx1, pre.intn.breake, pre.intn.phoindx2
    want = 1e4 * diag.apply_rmf(bk(lo, hi))
    np.testing.assert_allclose(tpl["intn"], want, rtol=1e-9, atol=1e-12 * want.max())
