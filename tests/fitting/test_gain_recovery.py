"""Injection-recovery of gain, line energies and norms on whole-detector spectra (slow).

A lighter version of ``benchmarks/gain_pulls.py``: 4 seeds of one FPMA DET0
spectrum (real det-3 RMF), gain (1.01, +0.2 keV), six line energies +0.1 keV.
"""

import numpy as np
import pytest

from nuskybgd.fitting.detectors import DetectorSpectrum, fit_detectors
from nuskybgd.fitting.engine import LinearModel
from nuskybgd.fitting.nonlinear import NonlinearModel, gain_values, parameter_label
from nuskybgd.io.ogip import read_rmf

LINES = ("intbgd:lorentz_5.LineE,intbgd:lorentz_8.LineE,intbgd:lorentz_12.LineE,intbgd:lorentz_14.LineE,"
         "intbgd:lorentz_28.LineE,intbgd:lorentz_30.LineE")


@pytest.mark.slow
def test_gain_and_line_pulls(shared):
    rmf = read_rmf(shared / "caldb" / "nustar" / "nuAdet3_20100101v002.rmf.gz")
    detabs = str(shared / "caldb" / "nustar" / "nuAdetabs20100101v002.fits")
    e_lo, e_hi = np.asarray(rmf.e_min, float), np.asarray(rmf.e_max, float)
    pulls = {"gain": [], "line": [], "norm": []}
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        spec = DetectorSpectrum(np.zeros(e_lo.size), 1.0e6, "A", 0, rmf, name="A0", e_lo=e_lo, e_hi=e_hi)
        sim = fit_detectors([spec], gain="fixed", gain_start=(1.01, 0.2), thaw=LINES, fit=False, detabs_file=detabs)
        st = sim.state
        for s, i in st.free_parameters():
            if s.par_names[i % s.npar] == "norm":
                s.params[i].value *= rng.uniform(0.8, 1.25)
            else:
                s.params[i].value += 0.1
        st.update_linked_values()
        nm = NonlinearModel(st, sim.spectra, sim.responses)
        nm.precise = True
        nm.refresh()
        spec.counts = rng.poisson(LinearModel(st, sim.spectra, allow_shapes=True).predicted_counts(0)).astype(float)
        truth = {parameter_label(st, s, i): s.params[i].value for s, i in st.free_parameters()}
        truth["gain:1.slope"], truth["gain:1.offset"] = gain_values(st, 0)
        fit = fit_detectors([spec], gain="fit", thaw=LINES, detabs_file=detabs)
        assert fit.state.info["fit"]["converged"]
        for lab, v, e in zip(fit.result.labels, fit.result.values, fit.result.errors):
            if lab in truth and np.isfinite(e) and e > 0:
                kind = "gain" if lab.startswith("gain") else "line" if lab.endswith("LineE") else "norm"
                if kind != "norm" or v > 3 * e:
                    pulls[kind].append((v - truth[lab]) / e)
    for kind, p in pulls.items():
        p = np.asarray(p)
        assert np.all(np.abs(p) < 4.5), (kind, p)
        assert abs(p.mean()) < 3 / np.sqrt(p.size) + 0.2, (kind, p.mean())
    assert len(pulls["gain"]) == 8 and len(pulls["line"]) == 24
