"""Starting values and limits (XSPEC newpar): fitting.thaw.apply_start and fit_detectors(start=...)."""

import numpy as np
import pytest

from nuskybgd.errors import NuskybgdError
from nuskybgd.fitting.detectors import DetectorSpectrum, fit_detectors
from nuskybgd.fitting.thaw import apply_start, apply_thaw, parse_thaw

from .test_nonlinear import gaussian_rmf, make


def _param(state, item, group=1):
    sname, rest = item.split(":")
    comp, pname = rest.split(".")
    src = state.source(sname)
    ci = src.labels.index(comp)
    ip = next(i for i in range(src.npar) if src.par_components[i] == ci and src.par_names[i] == pname)
    return src.params[src.index(group, ip + 1)]


def test_start_sets_value_and_limits_in_every_group():
    state, _, _ = make(gaussian_rmf(), dets=("A0", "A1"))
    done = apply_start(state, {"intbgd:lorentz_4.LineE": 6.5, "intbgd:lorentz_4.Width": (0.3, 0.02),
                               "intn:bknpower.BreakE": (124.0, 20.0, 200.0)})
    assert done == ["intbgd:lorentz_4.LineE", "intbgd:lorentz_4.Width", "intn:bknpower.BreakE"]
    for g in (1, 2):
        assert _param(state, "intbgd:lorentz_4.LineE", g).value == 6.5
        w = _param(state, "intbgd:lorentz_4.Width", g)
        assert (w.value, w.hard_min) == (0.3, 0.02) and w.soft_min >= 0.02
        b = _param(state, "intn:bknpower.BreakE", g)
        assert (b.value, b.hard_min, b.hard_max) == (124.0, 20.0, 200.0) and b.soft_max <= 200.0


@pytest.mark.parametrize("start, msg", [({"lorentz_4.LineE": 6.5}, "not SOURCE:COMPONENT.PARAM"),
                                        ({"intbgd:lorentz_4.Sigma": 1.0}, "no parameter 'Sigma'"),
                                        ({"intbgd:lorentz_4.Width": (0.01, 0.02)}, "limits"),
                                        ({"intn:bknpower.BreakE": (50.0, 60.0, 40.0)}, "limits"),
                                        ({"intbgd:lorentz_4.LineE": (6.5, 1, 2, 3)}, "value, \\(value, min\\)")])
def test_bad_start(start, msg):
    state, _, _ = make(gaussian_rmf(), dets=("A0",))
    with pytest.raises(NuskybgdError, match=msg):
        apply_start(state, start)


def test_moved_line_recovered_by_fit_detectors(shared_caldb):
    """A line at 6.4 keV the presets lack: lorentz_4 (10.2 keV) moved there by start= and thawed finds it."""
    from nuskybgd.io.ogip import read_rmf

    rmf = read_rmf(shared_caldb / "nuAdet3_20100101v002.rmf.gz")
    lo, hi = np.asarray(rmf.e_min, float), np.asarray(rmf.e_max, float)
    kw = {"detabs_file": shared_caldb / "nuAdetabs20100101v002.fits"}
    blank = DetectorSpectrum(np.zeros(lo.size), 2e6, "A", 0, rmf, name="A0", e_lo=lo, e_hi=hi)
    truth = fit_detectors([blank], start={"intbgd:lorentz_4.LineE": 6.4, "intbgd:lorentz_4.norm": 5e-3},
                          fit=False, **kw)
    counts = np.random.default_rng(5).poisson(truth.model.predicted_counts(0)).astype(float)
    spec = DetectorSpectrum(counts, 2e6, "A", 0, rmf, name="A0", e_lo=lo, e_hi=hi)
    kw["thaw"] = "intbgd:lorentz_4.LineE"
    free = fit_detectors([spec], start={"intbgd:lorentz_4.LineE": 6.6, "intbgd:lorentz_4.norm": 1e-3}, **kw)
    stuck = fit_detectors([spec], **kw)
    lab = dict(zip(free.result.labels, free.result.values))
    assert abs(lab["intbgd:lorentz_4.LineE"] - 6.4) < 0.05
    assert free.state.info["start"] == ["intbgd:lorentz_4.LineE", "intbgd:lorentz_4.norm"]
    assert free.statistic < stuck.statistic - 100
    assert free.statistic / free.dof < 1.2


def test_apply_thaw_after_start_keeps_value():
    state, _, _ = make(gaussian_rmf(), dets=("A0",))
    apply_start(state, {"intbgd:lorentz.LineE": 7.7})
    apply_thaw(state, parse_thaw("intbgd:lorentz.LineE"))
    assert _param(state, "intbgd:lorentz.LineE").value == 7.7
