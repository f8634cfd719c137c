"""Synthetic background-fit problems for the fitting tests (no files needed).

Templates are smooth shapes on the NuSTAR channel grid scaled so that the
preset norms of REFERENCE section 6 predict a few thousand counts per
spectrum; they stand in for ``models.background.component_templates``.
"""

import json
from dataclasses import dataclass

import numpy as np

from nuskybgd.calib.auxil import load_ratios
from nuskybgd.fitting.engine import SpectrumData, group_ids
from nuskybgd.fitting.model import build_background_state

N_CHAN = 4096
E_LO = 1.6 + 0.04 * np.arange(N_CHAN)
E_HI = E_LO + 0.04
E_MID = 0.5 * (E_LO + E_HI)


@dataclass
class W:
    area: np.ndarray
    ap: float


def synthetic_templates(module, scale=1.0):
    """Counts per channel per unit norm for every template key."""
    pre = load_ratios()["models"]
    t = {}
    t["apbgd"] = scale * 8e4 * E_MID ** -1.29 * np.exp(-E_MID / 41.13) * 0.04 / 0.07
    t["intbgd.apec"] = scale * 3e3 * np.exp(-E_MID / 1.1) * 0.04
    for name, v in pre[1]["components"].items():
        if name == "apec":
            continue
        e0, w = v[module]["linee"], v[module]["width"]
        prof = (np.arctan(2 * (E_HI - e0) / w) - np.arctan(2 * (E_LO - e0) / w)) / np.pi
        t[f"intbgd.{name}"] = scale * 400.0 * prof * 30
    # the fcxb ARF (optics) falls steeply with energy, unlike the apbgd ARF
    t["fcxb"] = scale * 3e8 * E_MID ** -1.29 * np.exp(-E_MID / 41.13) * np.exp(-E_MID / 8.0) * 0.04
    t["intn"] = scale * 1e5 * np.where(E_MID < 124, E_MID ** 0.05, 124 ** 0.8 * E_MID ** -0.85 * 124 ** 0.05) * 0.04
    return t


def synthetic_problem(n_regions=3, seed=0, fix_line_ratios=False, fcxb_links=(), emin=3.0, emax=150.0,
                      group=None, scale=1.0, truth_factor=None):
    """State + spectra with Poisson counts drawn from the preset model.

    Returns (state, spectra, truth) where truth maps (source number, 0-based
    index) of each free parameter to its injected value.
    """
    rng = np.random.default_rng(seed)
    ratios = load_ratios()
    specs, weights = [], []
    for r in range(n_regions):
        for m in "AB":
            area = np.array([1500.0, 800.0, 0.0, 300.0]) * (1 + 0.3 * r) + (0 if m == "A" else 200.0)
            weights.append(W(area, 12.0 * (1 + 0.5 * r) * (1.1 if m == "B" else 1.0)))
            specs.append(dict(file=f"bgd{r}{m}.pha", module=m, rmf=f"bgd{r}{m}.rmf",
                              apbgd_arf=f"bgd{r}{m}_apbgd.arf", fcxb_arf=f"fcxb{m}.arf", diag_rmf="diag.rmf"))
    state = build_background_state(specs, weights, ratios, fix_line_ratios=fix_line_ratios,
                                   fcxb_links=fcxb_links, module_area={"A": 2600.0, "B": 3400.0})
    truth = {}
    frng = np.random.default_rng(seed + 1000)
    for s, i in state.free_parameters():
        f = truth_factor if truth_factor is not None else frng.uniform(0.7, 1.4)
        s.params[i].value *= f
        truth[(s.number, i)] = s.params[i].value
    state.update_linked_values()
    spectra = []
    from nuskybgd.fitting.engine import LinearModel, bin_mask_from_energy
    tmpl = {m: synthetic_templates(m, scale) for m in "AB"}
    for k, sp in enumerate(specs):
        spectra.append(SpectrumData(counts=np.zeros(N_CHAN), templates=tmpl[sp["module"]],
                                    ids=np.arange(N_CHAN), noticed=np.ones(N_CHAN, bool), name=sp["file"]))
    lm = LinearModel(state, spectra)
    for k, sd in enumerate(spectra):
        mu = lm.predicted_counts(k)
        sd.counts = rng.poisson(mu).astype(float)
        if group:
            grouping = np.full(N_CHAN, -1)
            grouping[::group] = 1
            sd.ids = group_ids(grouping, N_CHAN)
        sd.noticed = bin_mask_from_energy(sd.ids, E_LO, E_HI, emin, emax)
    # start the fit from the presets, not from the truth
    for s, i in state.free_parameters():
        s.params[i].value = truth[(s.number, i)] / (truth_factor if truth_factor is not None else 1.0)
    state.update_linked_values()
    return state, spectra, truth


def dumps(obj):
    return json.dumps(obj, indent=1, sort_keys=True, default=float)
