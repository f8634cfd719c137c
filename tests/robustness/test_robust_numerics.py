"""Zero- and low-count spectra: norms go to their bound with 90% upper limits, never '0 +- 0'."""

import numpy as np
import pytest

from nuskybgd.fitting.engine import UPPER_LIMIT_DELTA, solve, solve_blocks


def _templates(n=200, p=3, seed=0):
    rng = np.random.default_rng(seed)
    e = np.linspace(3, 100, n)
    cols = [np.exp(-e / 10), e ** -1.5, np.exp(-0.5 * ((e - 30) / 3) ** 2)][:p]
    return np.column_stack(cols) * (1 + 0.1 * rng.random((n, p)))


def test_zero_counts_go_to_zero_with_upper_limits():
    A = _templates()
    d = np.zeros(A.shape[0])
    res = solve(A, np.zeros_like(d), d, theta0=np.array([3.0, 2.0, 1.0]))
    assert res.converged
    assert np.all(res.theta == 0)  # not the starting values
    assert np.all(np.isnan(res.errors))  # undetermined, not 0
    # cstat = 2 sum(mu) is linear: the limit of norm j is DELTA / (2 sum_i A_ij)
    expect = UPPER_LIMIT_DELTA / (2 * A.sum(axis=0))
    assert np.allclose(res.upper_limits, expect, rtol=1e-6)
    assert res.statistic == 0.0


def test_zero_counts_in_some_blocks_only():
    A = _templates()
    rng = np.random.default_rng(3)
    d1 = rng.poisson(A @ np.array([50.0, 20.0, 10.0]))
    blocks = [(A, np.array([0, 1, 2]), np.zeros(len(d1)), d1.astype(float)),
              (A[:, :1] * 2, np.array([3]), np.zeros(len(d1)), np.zeros(len(d1)))]
    res = solve_blocks(blocks, 4, theta0=np.array([40.0, 25.0, 5.0, 7.0]))
    assert res.converged
    assert res.theta[3] == 0 and np.isnan(res.errors[3])
    assert res.upper_limits[3] == pytest.approx(UPPER_LIMIT_DELTA / (2 * 2 * A[:, 0].sum()), rel=1e-6)
    assert np.all(np.isfinite(res.errors[:3])) and np.all(res.errors[:3] > 0)


@pytest.mark.parametrize("seed", range(5))
def test_low_counts_bound_norms_have_upper_limits(seed):
    A = _templates(seed=seed)
    rng = np.random.default_rng(seed)
    d = rng.poisson(A @ np.array([0.5, 0.0, 0.0])).astype(float)  # a handful of counts
    res = solve(A, np.zeros_like(d), d, theta0=np.array([1.0, 1.0, 1.0]))
    assert res.converged
    for j in np.flatnonzero(res.at_bound):
        assert res.theta[j] == 0
        assert np.isfinite(res.upper_limits[j]) and res.upper_limits[j] > 0
        assert not (res.errors[j] == 0)  # never '0 +- 0'
        # the statistic really rises by DELTA at the limit
        x = res.theta.copy()
        x[j] = res.upper_limits[j]
        mu = A @ x
        c = 2 * np.sum(mu - d + np.where(d > 0, d * np.log(np.where(d > 0, d, 1) / mu), 0))
        assert c - res.statistic == pytest.approx(UPPER_LIMIT_DELTA, abs=1e-5)
    assert np.all(np.isnan(res.upper_limits[~res.at_bound]))


def test_zero_count_background_fit_reports_upper_limits():
    """The whole background model on spectra with zero counts: every free norm -> 0 with a limit."""
    from fit_synthetic import synthetic_problem

    from nuskybgd.fitting.engine import fit_state
    from nuskybgd.analysis.fit import parameter_table
    state, spectra, truth = synthetic_problem(n_regions=2, seed=1, fix_line_ratios=True)
    for sd in spectra:
        sd.counts = np.zeros_like(sd.counts)
    presets = [s.params[i].value for s, i in state.free_parameters()]
    _, res = fit_state(state, spectra, "cstat")
    assert res.converged
    values = [s.params[i].value for s, i in state.free_parameters()]
    assert all(v == 0 for v in values) and any(p > 0 for p in presets)  # not the presets
    assert all(s.params[i].error is None for s, i in state.free_parameters())  # undetermined, not 0
    limits = state.info["fit"]["upper_limits"]
    assert len(limits) == len(values) and all(u["value"] > 0 and np.isfinite(u["value"]) for u in limits)
    table = parameter_table(state)
    assert table.count("(90% upper limit)") == len(values)
