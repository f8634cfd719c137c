"""Linear-norm solver: statistics, bounds, errors, injection-recovery."""

import numpy as np
import pytest

from fit_synthetic import N_CHAN, synthetic_problem
from nuskybgd.errors import NuskybgdError
from nuskybgd.fitting.engine import (LinearModel, bin_mask_from_energy, chi2_datavar, cstat,
                                     fit_state, group_ids, solve)


def test_group_ids():
    g = np.array([1, -1, -1, 1, 1, -1])
    np.testing.assert_array_equal(group_ids(g, 6), [0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(group_ids(None, 3), [0, 1, 2])


def test_bin_mask_from_energy():
    elo = 1.6 + 0.04 * np.arange(10)
    ids = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 4])
    m = bin_mask_from_energy(ids, elo, elo + 0.04, 1.68, 1.88)
    np.testing.assert_array_equal(m, [False, True, True, False, False])
    q = np.zeros(10)
    q[3] = 2
    m = bin_mask_from_energy(ids, elo, elo + 0.04, 0, 99, quality=q)
    np.testing.assert_array_equal(m, [True, False, True, True, True])


@pytest.mark.parametrize("d, mu, want", [
    ([0, 1, 5], [0.5, 1.0, 4.0], 2 * (0.5 + 0 + (-1 + 5 * np.log(5 / 4)))),
    ([10], [10.0], 0.0),
])
def test_cstat_values(d, mu, want):
    assert cstat(np.array(d, float), np.array(mu, float)) == pytest.approx(want, rel=1e-14)


def test_cstat_matches_sherpa():
    from sherpa.stats import _statfcts
    rng = np.random.default_rng(1)
    mu = rng.uniform(0.1, 20, 300)
    d = rng.poisson(mu).astype(float)
    s = _statfcts.calc_cstat_stat(d, mu, np.ones_like(d), 1e-25)[0]
    assert cstat(d, mu) == pytest.approx(s, rel=1e-12)


def test_chi2_datavar_matches_sherpa_xspecvar():
    """Data variance; zero-count bins get variance 1 like Sherpa's chi2xspecvar (XSPEC's rule)."""
    from sherpa.stats import _statfcts
    rng = np.random.default_rng(2)
    mu = rng.uniform(0.5, 90, 300)
    d = rng.poisson(mu).astype(float)
    err = _statfcts.calc_chi2xspecvar_errors(d)
    s = np.sum((d - mu) ** 2 / err ** 2)
    assert chi2_datavar(d, mu) == pytest.approx(s, rel=1e-12)


def _numeric_min(A, b, d, theta, stat):
    from scipy.optimize import minimize

    def f(x):
        mu = A @ x + b
        if np.any(mu <= 0):
            return 1e30
        return cstat(d, mu) if stat == "cstat" else chi2_datavar(d, mu)
    r = minimize(f, theta, method="L-BFGS-B", bounds=[(0, None)] * len(theta),
                 options=dict(ftol=1e-15, gtol=1e-12, maxiter=20000))
    return r.x, r.fun


@pytest.mark.parametrize("stat", ["cstat", "chi"])
def test_solve_small_problem_matches_scipy(stat):
    rng = np.random.default_rng(5)
    x = np.linspace(0, 1, 200)
    A = np.stack([np.exp(-x / 0.3), 1 + 0 * x, np.exp(-(x - 0.5) ** 2 / 0.01)], axis=1) * 40
    truth = np.array([1.0, 0.5, 0.3])
    d = rng.poisson(A @ truth + 2.0).astype(float)
    res = solve(A, np.full(200, 2.0), d, np.ones(3), statistic=stat)
    xs, fs = _numeric_min(A, np.full(200, 2.0), d, np.ones(3), stat)
    assert res.converged and res.n_iter < 20
    assert res.statistic <= fs + 1e-7
    np.testing.assert_allclose(res.theta, xs, rtol=1e-4)


def test_solve_errors_match_numeric_hessian():
    rng = np.random.default_rng(7)
    A = rng.uniform(1, 10, (500, 4))
    d = rng.poisson(A @ np.array([1.0, 2.0, 0.5, 1.5])).astype(float)
    res = solve(A, np.zeros(500), d, np.ones(4))
    h = 1e-4
    H = np.zeros((4, 4))
    f0 = lambda t: cstat(d, A @ t)
    for i in range(4):
        for j in range(4):
            ei, ej = np.eye(4)[i] * h, np.eye(4)[j] * h
            H[i, j] = (f0(res.theta + ei + ej) - f0(res.theta + ei - ej) - f0(res.theta - ei + ej)
                       + f0(res.theta - ei - ej)) / (4 * h * h)
    cov = 2 * np.linalg.inv(H)
    np.testing.assert_allclose(res.errors, np.sqrt(np.diag(cov)), rtol=1e-4)


def test_lower_bound_is_respected():
    x = np.linspace(0, 1, 100)
    A = np.stack([np.ones(100), x], axis=1) * 20
    d = np.random.default_rng(3).poisson(A @ [1.0, 0.0] + 0.0).astype(float)
    d[50:] = np.maximum(d[50:] - 8, 0)  # falling spectrum: the slope wants to be negative
    res = solve(A, np.zeros(100), d, np.ones(2))
    assert res.theta[1] == 0 and res.at_bound[1]
    assert res.converged
    # errors come from the curvature of both parameters, the bound one included
    # (cstat Hessian 2 sum d A A^T / mu^2, covariance 2 H^-1); holding the
    # bound norm fixed would understate the other norm's error
    mu = A @ res.theta
    cov = np.linalg.inv((A * (d / mu**2)[:, None]).T @ A)
    np.testing.assert_allclose(res.errors, np.sqrt(np.diag(cov)), rtol=1e-6)
    assert res.errors[0] > 1.05 * np.sqrt(1.0 / ((A[:, 0] ** 2 * d / mu**2).sum()))


def test_dead_column_keeps_start_value():
    A = np.zeros((50, 2))
    A[:, 0] = 10
    d = np.full(50, 10.0)
    res = solve(A, np.zeros(50), d, np.array([0.5, 3.0]))
    assert res.theta[0] == pytest.approx(1.0, rel=1e-8) and res.theta[1] == 3.0
    assert np.isnan(res.errors[1])


def test_free_shape_parameter_rejected():
    st, spectra, _ = synthetic_problem(1, seed=0)
    st.source("intbgd").params[4].delta = 0.05  # LineE of the first line of spectrum 1
    with pytest.raises(NuskybgdError, match="LineE.*free"):
        LinearModel(st, spectra)


def test_fit_state_updates_linked_values_and_info():
    st, spectra, truth = synthetic_problem(2, seed=11, scale=30)
    model, res = fit_state(st, spectra, "cstat")
    assert res.converged
    assert st.info["fit"]["dof"] == st.info["fit"]["n_bins"] - len(st.free_parameters())
    src = st.source("apbgd")
    lk = src.params[8].link  # spectrum 3 (module A) linked to spectrum 1
    assert src.params[8].value == pytest.approx(lk.factor * src.params[2].value, rel=1e-14)
    # the statistic stored equals the solver's
    assert st.info["fit"]["value"] == pytest.approx(res.statistic, rel=1e-12)


def test_grouped_and_chi_fits_recover_truth():
    st, spectra, truth = synthetic_problem(2, seed=4, scale=100, group=8)
    _, res = fit_state(st, spectra, "chi")
    assert res.converged
    pulls = [(s.params[i].value - truth[(s.number, i)]) / s.params[i].error
             for s, i in st.free_parameters() if s.params[i].error]
    assert abs(np.mean(pulls)) < 0.5 and 0.5 < np.std(pulls) < 1.5


def test_injection_recovery_pulls_20_seeds():
    """Fitted norms agree with the injected ones within their errors (>= 20 seeds)."""
    pulls, bounded = [], 0
    for seed in range(20):
        st, spectra, truth = synthetic_problem(3, seed=seed, scale=100)
        _, res = fit_state(st, spectra, "cstat")
        assert res.converged
        for s, i in st.free_parameters():
            p = s.params[i]
            if not p.error:
                bounded += 1
                continue
            pulls.append((p.value - truth[(s.number, i)]) / p.error)
    pulls = np.array(pulls)
    assert len(pulls) >= 20 * 60 and bounded < 10
    assert abs(pulls.mean()) < 0.3
    assert 0.7 < pulls.std() < 1.3


def test_benchmark_size_converges_quickly():
    st, spectra, _ = synthetic_problem(6, seed=2)
    assert len(spectra) == 12 and N_CHAN == 4096
    _, res = fit_state(st, spectra, "cstat")
    assert res.converged and res.n_iter < 30 and len(res.theta) >= 70


def test_errors_match_sherpa_covariance():
    """Same linear model in Sherpa (FixedTableModel norms, cstat, LevMar, covariance)."""
    from sherpa.data import Data1D
    from sherpa.estmethods import Covariance
    from sherpa.fit import Fit
    from sherpa.models.basic import FixedTableModel
    from sherpa.optmethods import LevMar
    from sherpa.stats import CStat

    rng = np.random.default_rng(9)
    x = np.arange(300.0)
    shapes = [np.exp(-x / 60) * 30, np.full(300, 5.0), 40 * np.exp(-(x - 150) ** 2 / 200)]
    A = np.stack(shapes, axis=1)
    d = rng.poisson(A @ np.array([1.0, 0.8, 0.5])).astype(float)
    ours = solve(A, np.zeros(300), d, np.ones(3))
    comps = []
    for k, s in enumerate(shapes):
        t = FixedTableModel(f"t{k}")
        t.load(s)
        t.ampl = 1.0
        comps.append(t)
    model = comps[0] + comps[1] + comps[2]
    fit = Fit(Data1D("d", x, d), model, CStat(), LevMar(), Covariance())
    fit.fit()
    np.testing.assert_allclose([c.ampl.val for c in comps], ours.theta, rtol=1e-4)
    est = fit.est_errors()
    np.testing.assert_allclose(est.parmaxes, ours.errors, rtol=2e-2)
    assert fit.calc_stat() == pytest.approx(ours.statistic, rel=1e-9)


def test_solve_blocks_frees_a_norm_started_near_zero():
    # a norm left at ~1e-20 by an earlier solve (not at its bound) must still
    # reach its optimum: scaling by the start value alone froze it there
    rng = np.random.default_rng(3)
    n = 400
    e = np.linspace(3, 80, n)
    A = np.column_stack([1e3 * e ** -1.3, 50.0 * np.exp(-0.5 * ((e - 30) / 2.0) ** 2),
                         20.0 * np.exp(-0.5 * ((e - 50) / 3.0) ** 2)])
    truth = np.array([1.0, 1.0, 1.0])
    d = rng.poisson(A @ truth).astype(float)
    ref = solve(A, np.zeros(n), d, truth, statistic="cstat", tol=1e-10)
    stuck = solve(A, np.zeros(n), d, np.array([1.0, 1.0, 1e-20]), statistic="cstat", tol=1e-10)
    assert ref.theta[2] > 0.5
    assert stuck.statistic == pytest.approx(ref.statistic, abs=1e-6)
    np.testing.assert_allclose(stuck.theta, ref.theta, rtol=1e-5)
