"""Group fit: gain remapping of templates and recovery of an injected gain."""

import numpy as np
import pytest

from nuskybgd.analysis.calibfit import (
    GroupSpectrum,
    apply_gain,
    cumulative_counts,
    fit_group,
    group_components,
    group_templates,
    remap_cumulative,
    warm_start,
)
from nuskybgd.errors import NuskybgdError
from nuskybgd.calib.caldb import Caldb
from nuskybgd.io.ogip import read_rmf
from nuskybgd.calib.presets import component_presets
from nuskybgd.fitting.engine import solve


def test_apply_gain_identity_and_conservation():
    rng = np.random.default_rng(0)
    t = rng.random((3, 4096))
    assert np.allclose(apply_gain(t, 1.0, 0.0), t)
    g = apply_gain(t, 0.99, 0.0)
    # Counts move down (slope < 1): true energies 1.6 .. 1.6/0.99 keV of channel 0 are recorded
    # below 1.6 keV and lost; nothing else is.
    lost = t[:, 0] * (1.6 / 0.99 - 1.6) / 0.04
    assert g.sum(axis=1) == pytest.approx(t.sum(axis=1) - lost, rel=1e-12)
    t[:, :5] = 0.0
    g = apply_gain(t, 1.01, 0.0)  # up: the top 1% of the last channels leaves the range
    assert np.all(g.sum(axis=1) < t.sum(axis=1))
    assert np.all(g.sum(axis=1) > t.sum(axis=1) - t[:, -42:].sum(axis=1))


def test_apply_gain_moves_a_line():
    t = np.zeros(4096)
    t[1000] = 10.0  # 41.6-41.64 keV
    g = apply_gain(t, 0.99, 0.05)
    lo, hi = 0.99 * 41.6 + 0.05, 0.99 * 41.64 + 0.05
    c_lo, c_hi = int((lo - 1.6) / 0.04), int((hi - 1.6) / 0.04)
    assert g.sum() == pytest.approx(10.0)
    assert set(np.flatnonzero(g)) <= {c_lo, c_hi}
    # Mean recorded energy is the mapped mean energy.
    e = 1.62 + 0.04 * np.arange(4096)
    assert np.sum(g * e) / 10.0 == pytest.approx(0.99 * 41.62 + 0.05, abs=0.02)


def _overlap_reference(t, slope, offset):
    """Counts uniform inside each nominal channel, summed over the overlap with each recorded channel."""
    n = t.size
    edges = 1.6 + 0.04 * np.arange(n + 1)
    pos = np.clip(((edges - offset) / slope - 1.6) / 0.04, 0.0, n)
    out = np.zeros(n)
    for j in range(n):
        for c in range(n):
            out[j] += max(0.0, min(pos[j + 1], c + 1) - max(pos[j], c)) * t[c]
    return out


def test_remap_cumulative_against_channel_overlaps():
    """The cumulative-count remap equals a direct overlap sum (independent reference), rows at once."""
    t = np.random.default_rng(3).random((3, 60))
    cum = cumulative_counts(t)
    for slope, offset in ((1.0, 0.0), (0.987, 0.13), (1.012, -0.4), (0.95, 0.02)):
        got = remap_cumulative(cum, slope, offset)
        for row, g in zip(t, got):
            np.testing.assert_allclose(g, _overlap_reference(row, slope, offset), rtol=1e-12, atol=1e-12)
        assert np.array_equal(got, apply_gain(t, slope, offset))


def _simulated_group(caldb_root, slope=0.992, seed=5):
    caldb = Caldb(caldb_root)
    rmf = read_rmf(str(caldb.rmf("FPMA", "DET1")))
    spec = GroupSpectrum("sim", np.zeros(4096), 2e6, "A", 1, rmf, caldb=caldb)
    p = component_presets("A")
    keys = group_components("occultation", p)
    T = group_templates(spec, p, keys)
    norms = np.array([p.apec.ifactors[1]] + [ln.ifactors[1] for ln in p.lines] + [p.intn.ifactors[1] * 0.05])
    spec.counts = np.random.default_rng(seed).poisson(norms @ apply_gain(T, slope, 0.0)).astype(float)
    return spec


@pytest.mark.parametrize("n", [-1, 1, 2, 2.5])
def test_bootstrap_count_checked(n):
    spec = GroupSpectrum("sim", np.ones(4096), 1e5, "A", 1, None)
    with pytest.raises(NuskybgdError, match="bootstrap"):
        fit_group(spec, bootstrap=n)


@pytest.mark.slow
def test_bootstrap_gain_errors(synthetic_caldb):
    """Replica fits give the gain covariance: reproducible with the seed, recorded as the method,
    of the size of the curvature errors on this high-count group (where both are valid)."""
    spec = _simulated_group(synthetic_caldb)
    curv = fit_group(spec)
    boot = fit_group(spec, bootstrap=4, seed=11)
    again = fit_group(spec, bootstrap=4, seed=11)
    other = fit_group(spec, bootstrap=4, seed=12)
    assert curv.error_method == "curvature" and boot.error_method == "bootstrap 4"
    assert (boot.slope, boot.offset) == (curv.slope, curv.offset)  # the best fit itself is unchanged
    assert np.array_equal(boot.gain_covariance, again.gain_covariance)
    assert not np.array_equal(boot.gain_covariance, other.gain_covariance)
    for b, c in ((boot.slope_error, curv.slope_error), (boot.offset_error, curv.offset_error)):
        assert np.isfinite(b) and 0.2 * c < b < 5 * c
    assert all(np.isfinite(e) and err > 0 for e, err in boot.line_energies.values())
    assert fit_group(spec, fit_gain=False, bootstrap=4).error_method == "fixed"


def test_fit_recovers_injected_gain(synthetic_caldb):
    """Poisson spectrum drawn from the model at slope 0.992, offset 0: the fit finds it within 4 sigma
    and the preset gain (slope 1) is far worse in cstat."""
    spec = _simulated_group(synthetic_caldb)
    fit = fit_group(spec)
    assert abs(fit.slope - 0.992) < 4 * fit.slope_error
    assert abs(fit.offset) < 4 * fit.offset_error
    fixed = fit_group(spec, fit_gain=False)
    assert fixed.statistic - fit.statistic > 25


def test_warm_start_does_not_leave_a_norm_stuck_at_zero():
    """Regression: the profile statistic of the gain fit restarted the norm solver from the previous
    gain's norms; one that was ~0 there stayed ~0 (solver stuck at the bound) even where its optimum
    is positive, so the profile depended on the evaluation order. From warm_start it matches a fresh
    start whichever norm was at zero."""
    rng = np.random.default_rng(1)
    x = np.arange(400)
    A = np.array([np.exp(-0.5 * ((x - c) / 6.0) ** 2) for c in (50, 120, 200, 260, 330)] + [np.full(400, 0.2)]).T
    d = rng.poisson(A @ np.array([3.0, 0.4, 2.0, 0.3, 1.5, 1.0])).astype(float)
    fresh = solve(A, np.zeros(400), d, np.full(6, 1e-3), statistic="cstat", tol=1e-6)
    for j in range(6):
        prev = fresh.theta.copy()
        prev[j] = 0.0
        res = solve(A, np.zeros(400), d, warm_start(prev), statistic="cstat", tol=1e-6)
        assert res.statistic == pytest.approx(fresh.statistic, abs=1e-3)
        assert res.theta[j] == pytest.approx(fresh.theta[j], rel=1e-3)
