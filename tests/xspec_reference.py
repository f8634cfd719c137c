"""Counts per channel from XSPEC's compiled models (xspectrampoline) and the files an XCM names."""

import numpy as np
import xspectrampoline as xs

from nuskybgd.io.ogip import read_arf, read_pha, read_rmf, rmf_matrix
from nuskybgd.io.xcm import resolve_path

_LIB = xs.get_libraries()
XSPEC_MODELS = {c: _LIB.get_model(f) for c, f in (("cutoffpl", "C_cutoffPowerLaw"), ("bknpower", "C_brokenPowerLaw"),
                                                  ("lorentz", "C_lorentzianLine"))}


def xspec_counts(state, k, folder, apec_counts):
    """Counts per channel of spectrum k from XSPEC's compiled models and the files the XCM names."""
    e = state.spectra[k]
    expo = float(read_pha(resolve_path(e.file, folder)).exposure)
    total = np.array(apec_counts, float)
    for src in state.sources:
        rmf = read_rmf(resolve_path(e.responses[src.number], folder))
        matrix = rmf_matrix(rmf)
        lo, hi = np.asarray(rmf.energ_lo, float), np.asarray(rmf.energ_hi, float)
        assert np.all(lo[1:] == hi[:-1])
        edges = np.append(lo, hi[-1])
        arf = 1.0
        if src.number in e.arfs:
            arf = np.asarray(read_arf(resolve_path(e.arfs[src.number], folder)).specresp, float)
        photons = np.zeros(lo.size)
        for ci, comp in enumerate(src.components):
            idx = [i for i in range(src.npar) if src.par_components[i] == ci]
            vals = [src.param(e.group, i + 1).value for i in idx]
            if comp == "apec":
                continue  # from the engine (XSPEC's apec needs AtomDB)
            out = np.zeros(lo.size)
            err = np.zeros(lo.size)
            XSPEC_MODELS[comp](np.ascontiguousarray(edges), np.asarray(vals[:-1], float), out, err)
            photons += vals[-1] * out
        total += (photons * arf) @ matrix * expo
    return total
