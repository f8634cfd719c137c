"""XSPEC gain remapping and rebinning of tabulated spectra."""

import numpy as np
import pytest

from nuskybgd.errors import NuskybgdError
from nuskybgd.kernels.gain import check_gain, gain_energies, rebin_integrated
from nuskybgd.kernels.spectral import cutoffpl_integral

EDGES = 1.6 + 0.04 * np.arange(4097)
LO, HI = EDGES[:-1], EDGES[1:]


def test_gain_energies_follow_xspec_definition():
    lo, hi = gain_energies(LO, HI, 1.01, 0.2)
    assert lo == pytest.approx(LO / 1.01 - 0.2, rel=1e-15)
    assert hi == pytest.approx(HI / 1.01 - 0.2, rel=1e-15)
    lo1, hi1 = gain_energies(LO, HI)
    assert np.array_equal(lo1, LO) and np.array_equal(hi1, HI)


@pytest.mark.parametrize("slope, offset, what", [(0.79, 0.0, "slope"), (1.21, 0.0, "slope"),
                                                 (1.0, 2.5, "offset"), (1.0, -2.01, "offset"),
                                                 (float("nan"), 0.0, "slope")])
def test_gain_outside_limits_is_one_line_error(slope, offset, what):
    with pytest.raises(NuskybgdError, match=f"--gain: gain {what}") as exc:
        check_gain(slope, offset, "--gain")
    assert "\n" not in str(exc.value)


def test_rebin_exact_on_tabulated_edges():
    v = np.arange(1.0, 11.0)
    e = np.arange(11.0)
    out = rebin_integrated(e[:-1], e[1:], v, [0.0, 2.0, 3.5], [2.0, 3.5, 10.0])
    assert out == pytest.approx([3.0, 3.0 + 0.5 * 4.0, 0.5 * 4.0 + 5 + 6 + 7 + 8 + 9 + 10])
    assert rebin_integrated(e[:-1], e[1:], v, [-5.0, 10.0], [-1.0, 12.0]) == pytest.approx([0.0, 0.0])


def test_rebin_error_on_shifted_grid_is_below_1e4():
    """The error stated in rebin_integrated's notes, measured on a cutoffpl."""
    v = cutoffpl_integral(LO, HI, 1.29, 41.13)
    glo, ghi = gain_energies(LO, HI, 1.01, 0.2)
    exact = cutoffpl_integral(glo, ghi, 1.29, 41.13)
    got = rebin_integrated(LO, HI, v, glo, ghi)
    use = glo >= 3.0
    rel = np.abs(got[use] / exact[use] - 1)
    assert rel.max() < 1e-4
    assert rel.max() > 1e-6  # the approximation is not exact (the test can fail)
