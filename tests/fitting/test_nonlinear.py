"""Free shapes and gains (variable projection around the norm solver)."""

from types import SimpleNamespace

import numpy as np
import pytest

from nuskybgd.calib.auxil import load_ratios
from nuskybgd.errors import NuskybgdError
from nuskybgd.fitting.detectors import DETECTOR_AREA_PIX, detector_weights
from nuskybgd.fitting.engine import LinearModel, SpectrumData, solve
from nuskybgd.fitting.model import build_background_state
from nuskybgd.fitting.nonlinear import (
    NonlinearModel,
    SpectrumResponse,
    fit_nonlinear,
    gain_values,
)
from nuskybgd.fitting.thaw import apply_gain, apply_thaw, parse_thaw

# a coarse grid (0.16 keV) and a Gaussian RMF keep the folds cheap
EDGES = 1.6 + 0.16 * np.arange(1025)
LO, HI = EDGES[:-1], EDGES[1:]
MID = 0.5 * (LO + HI)


def gaussian_rmf(sigma=0.25):
    m = np.exp(-0.5 * ((MID[None, :] - MID[:, None]) / sigma) ** 2)
    m /= m.sum(axis=1, keepdims=True)
    return (LO, HI, m)


@pytest.fixture(scope="module")
def rmf():
    return gaussian_rmf()


def make(rmf, dets=("A0", "A1"), gain=None, thaw=(), exposure=2e6):
    ratios = load_ratios()
    specs, weights, responses, sds = [], [], [], []
    diag = (LO, HI, np.eye(LO.size))
    for name in dets:
        m, k = name[0], int(name[1])
        w = detector_weights(k)
        weights.append(w)
        specs.append({"file": name, "module": m, "rmf": "r", "apbgd_arf": "a", "fcxb_arf": "f", "diag_rmf": "d"})
        arf = SimpleNamespace(specresp=60.0 * np.exp(-MID / 60.0))
        farf = SimpleNamespace(specresp=30.0 * np.exp(-MID / 15.0))
        responses.append(SpectrumResponse(rmf, exposure, apbgd_arf=arf, fcxb_arf=farf, diag=diag))
        sds.append(SpectrumData(counts=np.zeros(LO.size), templates={}, ids=np.arange(LO.size),
                                noticed=(LO >= 3.0) & (HI <= 150.0), name=name))
    state = build_background_state(specs, weights, ratios,
                                   module_area={"A": [DETECTOR_AREA_PIX] * 4, "B": [DETECTOR_AREA_PIX] * 4})
    if gain:
        apply_gain(state, gain, [s["module"] for s in specs])
    if thaw:
        apply_thaw(state, parse_thaw(thaw))
    return state, sds, responses


def predicted(state, sds, responses):
    nm = NonlinearModel(state, sds, responses)
    nm.precise = True
    nm.refresh()
    lm = LinearModel(state, sds, allow_shapes=True)
    return [lm.predicted_counts(k) for k in range(len(sds))]


def test_injected_gain_and_line_energy_recovered(rmf):
    state, sds, resp = make(rmf, gain="fit", thaw="intbgd:lorentz_5.LineE,intbgd:lorentz_28.LineE")
    for e in state.spectra:
        e.gain[0].value, e.gain[1].value = 1.01, 0.2
    src = state.source("intbgd")
    i5 = src.labels.index("lorentz_5")
    p5 = src.params[next(j for j in range(src.npar) if src.par_components[j] == i5)]
    truth_e5 = p5.value + 0.15
    p5.value = truth_e5
    state.update_linked_values()
    rng = np.random.default_rng(3)
    for sd, mu in zip(sds, predicted(state, sds, resp)):
        sd.counts = rng.poisson(mu).astype(float)
    # the statistic at the truth, then fit from the nominal gain and preset energy
    truth_state = state.copy()
    for e in state.spectra:
        e.gain[0].value, e.gain[1].value = 1.0, 0.0
    p5.value = truth_e5 - 0.15
    res = fit_nonlinear(state, sds, resp)
    assert res.converged
    lab = dict(zip(res.labels, zip(res.values, res.errors)))
    for k in (1, 2):
        v, e = lab[f"gain:{k}.slope"]
        assert abs(v - 1.01) < 4 * e and e < 2e-3
        v, e = lab[f"gain:{k}.offset"]
        assert abs(v - 0.2) < 4 * e
    v, e = lab["intbgd:lorentz_5.LineE"]
    assert abs(v - truth_e5) < 4 * e
    # the fit reaches at least the statistic of the truth (profiled norms)
    t_sds = [SpectrumData(sd.counts, {}, sd.ids, sd.noticed, sd.name) for sd in sds]
    t_res = fit_nonlinear(truth_state, t_sds, resp, max_iter=0)
    assert res.statistic <= t_res.statistic + 1e-3
    assert state.info["fit"]["dof"] == res.dof == int(sum(sd.noticed.sum() for sd in sds)) - len(res.labels)


def test_derivatives_match_refolded_templates(rmf):
    state, sds, resp = make(rmf, dets=("A2",), gain="fit", thaw="intbgd:lorentz_14.LineE")
    for e in state.spectra:
        e.gain[0].value, e.gain[1].value = 1.004, 0.1
    state.update_linked_values()
    nm = NonlinearModel(state, sds, resp)
    nm.precise = True
    nm.refresh()
    (D, qs), = nm.derivatives()
    phi = nm.values()
    for j, q in enumerate(qs):
        # the same step as the model: the apec template (tabulated, rebinned
        # with a constant density per bin) has kinks, so other steps differ
        # by up to 1 % in a few bins near its strong lines
        h = nm.step(q, phi[q])
        mus = []
        for sgn in (1, -1):
            x = phi.copy()
            x[q] += sgn * h
            nm.set_values(x)
            nm.refresh()
            mus.append(LinearModel(state, sds, allow_shapes=True).predicted_counts(0))
        nm.set_values(phi)
        fd = (mus[0] - mus[1]) / (2 * h)
        big = np.abs(fd) > 1e-3 * np.abs(fd).max()
        assert D[big, j] == pytest.approx(fd[big], rel=2e-3, abs=1e-6 * np.abs(fd).max()), nm.labels[q]


def test_hard_limits_of_nonlinear_parameters_are_honoured(rmf):
    state, sds, resp = make(rmf, dets=("A0",), gain="fit")
    for e in state.spectra:
        e.gain[0].value, e.gain[1].value = 1.01, 0.0
    rng = np.random.default_rng(5)
    for sd, mu in zip(sds, predicted(state, sds, resp)):
        sd.counts = rng.poisson(mu).astype(float)
    state.spectra[0].gain[0].value = 1.0
    state.spectra[0].gain[0].hard_max = 1.004       # the truth (1.01) lies above
    state.spectra[0].gain[1].delta = -0.01          # offset frozen at 0
    fit_nonlinear(state, sds, resp)
    assert gain_values(state, 0)[0] == pytest.approx(1.004, abs=1e-12)


def test_norm_upper_limit_is_honoured():
    A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    d = np.array([10.0, 20.0, 30.0])
    free = solve(A, np.zeros(3), d, [1.0, 1.0])
    assert free.theta == pytest.approx([10.0, 20.0], rel=1e-6)
    capped = solve(A, np.zeros(3), d, [1.0, 1.0], upper=[np.inf, 12.0])
    assert capped.theta[1] == pytest.approx(12.0, abs=1e-12)
    assert capped.theta[0] > 10.0


def test_linked_gain_follows_its_module(rmf):
    state, sds, resp = make(rmf, dets=("A0", "A1", "B0"), gain="link")
    nm = NonlinearModel(state, sds, resp)
    assert nm.labels == ["gain:1.slope", "gain:1.offset", "gain:3.slope", "gain:3.offset"]
    state.spectra[0].gain[0].value = 1.02
    assert gain_values(state, 1) == (1.02, 0.0)
    assert gain_values(state, 2) == (1.0, 0.0)


def test_apec_kt_needs_atomdb(rmf, monkeypatch, tmp_path):
    monkeypatch.setenv("ATOMDB", str(tmp_path))
    monkeypatch.setenv("APECROOT", str(tmp_path))
    state, sds, resp = make(rmf, dets=("A0",), thaw="intbgd:apec.kT")
    with pytest.raises(NuskybgdError, match="nuskybgd atomdb download") as exc:
        NonlinearModel(state, sds, resp)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("item, msg", [("intbgd:lorentz_99.LineE", "no component 'lorentz_99'"),
                                       ("intbgd:lorentz_5.Sigma", "no parameter 'Sigma'"),
                                       ("sky:lorentz_5.LineE", "unknown source 'sky'"),
                                       ("lorentz_5.LineE", "is not SOURCE:COMPONENT.PARAM"),
                                       ("intbgd:lorentz_5.norm", "is a norm"),
                                       ("fcxb:cutoffpl.PhoIndex", "follows apbgd")])
def test_unknown_thaw_parameter(rmf, item, msg):
    with pytest.raises(NuskybgdError, match=msg) as exc:
        make(rmf, dets=("A0", "A1"), thaw=item)
    assert "\n" not in str(exc.value)


def test_short_thaw_form_frees_lines_above_energy(rmf):
    state, _, _ = make(rmf, dets=("A0",))
    done = apply_thaw(state, parse_thaw("LineE>100"))
    src = state.source("intbgd")
    energies = [src.params[src.index(1, 5 + 3 * k)].value for k in range(29)]
    assert len(done) == sum(e > 100 for e in energies) > 0
    assert all(lab.endswith(".LineE") for lab in done)


def test_derivatives_at_hard_limit_are_one_sided(rmf):
    """Thawed line widths at their hard minimum 0 (a zero-width line) and at their hard maximum: the
    numerical derivative steps inward only (a width < 0 is an error) and equals a one-sided difference."""
    state, sds, resp = make(rmf, dets=("A0",), thaw="intbgd:lorentz_5.Width,intbgd:lorentz_8.Width")
    nm = NonlinearModel(state, sds, resp)
    nm.precise = True
    lo, hi = nm.bounds()
    phi = nm.values()
    qw, qb = nm.labels.index("intbgd:lorentz_5.Width"), nm.labels.index("intbgd:lorentz_8.Width")
    phi[qw], phi[qb] = lo[qw], hi[qb]
    nm.set_values(phi)
    nm.refresh()
    (D, qs), = nm.derivatives()
    assert np.all(np.isfinite(D))
    for q in (qw, qb):
        h = nm.step(q, phi[q])
        mus = []
        inward = h if q == qw else -h
        for x_q in (phi[q] + inward, phi[q]):
            x = phi.copy()
            x[q] = x_q
            nm.set_values(x)
            nm.refresh()
            mus.append(LinearModel(state, sds, allow_shapes=True).predicted_counts(0))
        nm.set_values(phi)
        fd = (mus[0] - mus[1]) / inward
        j = qs.index(q)
        big = np.abs(fd) > 1e-3 * np.abs(fd).max()
        assert big.any()
        assert D[big, j] == pytest.approx(fd[big], rel=2e-3, abs=1e-6 * np.abs(fd).max()), nm.labels[q]
