"""Background fit states and source spectra for the tests of spec's state logic."""

import numpy as np

from nuskybgd.calib.auxil import load_ratios
from nuskybgd.fitting.apply import SourceSpectrum
from nuskybgd.fitting.model import build_background_state


class W:
    def __init__(self, area, ap):
        self.area = np.asarray(area, float)
        self.ap = float(ap)


def fitted_state(seed=0, n=4, fix=False):
    """A background state with perturbed ('fitted') free parameters."""
    rng = np.random.default_rng(seed)
    presets = load_ratios()
    mods = ["A", "B"] * (n // 2)
    spectra = [{"file": f"bgd{i}{m}.pha", "module": m, "rmf": f"r{i}.rmf", "apbgd_arf": f"ap{i}.arf",
                "fcxb_arf": f"fcxb{m}.arf", "diag_rmf": "diag.rmf"} for i, m in enumerate(mods)]
    weights = [W(rng.uniform(0, 3000, 4) + 10, rng.uniform(5, 20)) for _ in mods]
    st = build_background_state(spectra, weights, presets, fix_line_ratios=fix)
    for s, i in st.free_parameters():
        s.params[i].value *= rng.uniform(0.5, 2.0)
    st.update_linked_values()
    return st, mods, weights, presets


def source_spectra(rng, mods=("A", "B", "A")):
    return [SourceSpectrum(file=f"src{k}{m}.pha", module=m, area=rng.uniform(0, 2000, 4) + 5,
                           ap=rng.uniform(1, 10), responses={2: "s.rmf", 3: "s.rmf", 4: "s.rmf", 5: "diag.rmf"},
                           arfs={2: "sap.arf", 4: f"fcxb{m}.arf"}) for k, m in enumerate(mods)]


def param_value(st, name, group, ipar):
    src = st.source(name)
    root, j, f = st.resolve(src, src.index(group, ipar))
    return f * root.params[j].value
