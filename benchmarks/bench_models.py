"""Background-model evaluation: 12 spectra x 4096 channels, real detector-3 RMF.

Two routes to the predicted counts of the four-component background model
(apbgd, intbgd = apec + 29 lines, fcxb, intn) of 12 spectra, for one set of
norms:

- naive (the straightforward Sherpa route, as XSPEC evaluates extra sources):
  per spectrum and evaluation, evaluate every component model (``cutoffpl``,
  ``apec``, 29 ``lorentz``, ``cutoffpl``, ``bknpower`` Sherpa models), then
  three RMF folds (apbgd with its ARF, intbgd, fcxb with its ARF) and one
  diag.rmf fold, times the exposure;
- templates (this project): the frozen shapes folded once per spectrum
  (``component_templates``, cached; the 32 RMF spectra in one pass over the
  compressed matrix, timed against 32 Sherpa ``rmf_fold`` calls), then each
  evaluation is one (33 norms) x (33 x 4096) product per spectrum.

The 12 spectra share the real FPMA detector-3 RMF but differ in detector
fractions and exposure, so each has its own templates. Also timed: the
spectral kernels on the NuSTAR grid (and XSPEC's compiled functions when
``xspectrampoline`` is installed), and the 29 lines in one call against 29
calls. Figures go to ``benchmarks/results/models.json`` and a plot of one
spectrum's templates to ``benchmarks/results/models_templates.png``.
Nothing is asserted.
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import best_of

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", HERE.parents[1] / "shared"))
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))
os.environ.setdefault("NUSKYBGD_APEC_TEMPLATE",
                      str(SHARED / "apec" / "nnapec_intbgd_kT1.14579_Z1.32692_nustar_bins.txt"))
os.environ.setdefault("MPLBACKEND", "Agg")

N_SPECTRA = 12


def _best(fn, repeat=5):
    return best_of(fn, repeat)


def main():
    from tqdm.auto import tqdm

    from nuskybgd.calib.presets import component_presets
    from nuskybgd.io.ogip import read_rmf
    from nuskybgd.kernels import spectral as kernels
    from nuskybgd.models import apec, bknpower, cutoffpl, lorentz
    from nuskybgd.models.background import component_templates
    from nuskybgd.models.responses import apbgd_arf, diag_rmf, fcxb_arf

    caldb = SHARED / "caldb" / "nustar"
    detabs = caldb / "nuAdetabs20100101v002.fits"
    t0 = time.perf_counter()
    rmf = read_rmf(caldb / "nuAdet3_20100101v002.rmf.gz")
    t_read = time.perf_counter() - t0
    diag = diag_rmf()
    p = component_presets("A")
    lo, hi = np.asarray(rmf.energ_lo, float), np.asarray(rmf.energ_hi, float)
    rng = np.random.default_rng(3)
    fractions = rng.uniform(0.0, 1.0, (N_SPECTRA, 4))
    exposures = rng.uniform(2e4, 1e5, N_SPECTRA)
    arfs = [apbgd_arf("A", f, rmf=rmf, detabs_file=detabs) for f in fractions]
    fx = fcxb_arf("A", rmf=rmf)
    keys = (["apbgd", "intbgd.apec"] + [f"intbgd.{n}" for n in p.line_names] + ["fcxb", "intn"])
    norms = [dict(zip(keys, rng.uniform(1e-4, 1e-2, len(keys)))) for _ in range(N_SPECTRA)]

    # --- templates: one-time folds (timed per spectrum), then norm-only evaluations
    templates = []
    t_setup = []
    for k in tqdm(range(N_SPECTRA), desc="fold templates", file=sys.stderr):
        t0 = time.perf_counter()
        templates.append(component_templates(rmf, "A", fractions[k], exposures[k], presets=p, apbgd_arf=arfs[k]))
        t_setup.append(time.perf_counter() - t0)
    mats = [t.matrix(keys) for t in templates]
    nvec = [np.array([n[k] for k in keys]) for n in norms]

    def template_eval():
        return [v @ m for v, m in zip(nvec, mats)]

    # --- naive route: component models (Sherpa classes) + 3 RMF folds + diag fold per spectrum
    ap, fc = cutoffpl("ap"), cutoffpl("fc")
    for m in (ap, fc):
        m.PhoIndex, m.HighECut = p.apbgd.phoindex, p.apbgd.highecut
    ape = apec("apec")
    ape.kT, ape.Abundanc, ape.Redshift = p.apec.kt, p.apec.abundanc, p.apec.redshift
    lines = []
    for x in p.lines:
        m = lorentz(x.name)
        m.LineE, m.Width = x.linee, x.width
        lines.append(m)
    bkn = bknpower("intn")
    bkn.PhoIndx1, bkn.BreakE, bkn.PhoIndx2 = p.intn.phoindx1, p.intn.breake, p.intn.phoindx2
    fx_resp = np.asarray(fx.specresp, float)

    def naive_eval():
        out = []
        for k in range(N_SPECTRA):
            n, e = norms[k], exposures[k]
            ap.norm, fc.norm, ape.norm, bkn.norm = n["apbgd"], n["fcxb"], n["intbgd.apec"], n["intn"]
            for m, x in zip(lines, p.lines):
                m.norm = n[f"intbgd.{x.name}"]
            c = rmf.apply_rmf(ap(lo, hi) * np.asarray(arfs[k].specresp, float) * e)
            intbgd = ape(lo, hi)
            for m in lines:
                intbgd = intbgd + m(lo, hi)
            c = c + rmf.apply_rmf(intbgd * e)
            c = c + rmf.apply_rmf(fc(lo, hi) * fx_resp * e)
            c = c + diag.apply_rmf(bkn(lo, hi) * e)
            out.append(c)
        return out

    t_tmpl, pred_t = _best(template_eval, repeat=20)
    # Sherpa models cache their last evaluation; change the norms each call so that the
    # naive route really evaluates (as in a fit, where some parameter changes every call).
    scale = iter(np.linspace(1.0, 1.001, 100))

    def naive_fresh():
        s = next(scale)
        for n in norms:
            for k in n:
                n[k] *= s
        return naive_eval()

    t_naive, _ = _best(naive_fresh, repeat=5)
    for k in range(N_SPECTRA):  # compare the two routes at the final norms
        nvec[k] = np.array([norms[k][key] for key in keys])
    pred_t = template_eval()
    pred_n = naive_eval()
    agree = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(pred_t, pred_n))

    # --- Sherpa model wrapper of the templates (what a Sherpa fit calls)
    from nuskybgd.models import TemplateCountsModel
    tcm = [TemplateCountsModel(t, norms=n) for t, n in zip(templates, norms)]
    chans = np.arange(4096.0)
    t_tcm, _ = _best(lambda: [m(chans) for m in tcm], repeat=20)

    # --- the one-time fold: 32 RMF spectra in one pass (numba) vs one Sherpa rmf_fold each
    from sherpa.astro.utils import rmf_fold

    from nuskybgd.models.background import component_spectra, fold_spectra
    spec = component_spectra(lo, hi, p)
    rows = np.vstack([spec[k] for k in keys[:-1]])
    t_fold_one_pass, _ = _best(lambda: fold_spectra(rmf, rows), repeat=3)
    t_fold_sherpa, _ = _best(lambda: [rmf_fold(r, rmf.n_grp, rmf.f_chan, rmf.n_chan, rmf.matrix, rmf.detchans,
                                                rmf.offset) for r in rows], repeat=3)

    # --- kernels on the NuSTAR grid
    lin = np.array([x.linee for x in p.lines])
    wid = np.array([x.width for x in p.lines])
    t_cpl, _ = _best(lambda: kernels.cutoffpl_integral(lo, hi, 1.29, 41.13), repeat=20)
    t_bkn, _ = _best(lambda: kernels.bknpower_integral(lo, hi, -0.05, 124.0, -0.85), repeat=20)
    t_lines1, _ = _best(lambda: kernels.lorentz_lines(lo, hi, lin, wid), repeat=20)
    t_lines29, _ = _best(lambda: [kernels.lorentz_integral(lo, hi, a, b) for a, b in zip(lin, wid)], repeat=20)
    xspec = {}
    try:
        import xspectrampoline as xs
        lib = xs.get_libraries()
        edges = np.concatenate([lo, hi[-1:]])
        out, err = np.zeros(lo.size), np.zeros(lo.size)
        fc_x = lib.get_model("C_cutoffPowerLaw")
        fl_x = lib.get_model("C_lorentzianLine")
        xspec["cutoffpl_ms"] = 1e3 * _best(lambda: fc_x(edges, np.array([1.29, 41.13]), out, err), 20)[0]
        xspec["29_lorentz_ms"] = 1e3 * _best(
            lambda: [fl_x(edges, np.array([a, b]), out, err) for a, b in zip(lin, wid)], 20)[0]
    except Exception as exc:  # xspectrampoline is optional
        xspec["unavailable"] = f"{type(exc).__name__}: {exc}"

    res = {
        "n_spectra": N_SPECTRA,
        "n_channels": int(rmf.detchans),
        "rmf_read_s": round(t_read, 3),
        "template_setup_s_per_spectrum": {"min": round(min(t_setup), 3), "max": round(max(t_setup), 3),
                                          "mean": round(float(np.mean(t_setup)), 3)},
        "setup_fold_32_spectra_one_pass_ms": round(1e3 * t_fold_one_pass, 1),
        "setup_fold_32_spectra_sherpa_rmf_fold_ms": round(1e3 * t_fold_sherpa, 1),
        "naive_eval_ms": round(1e3 * t_naive, 2),
        "template_eval_ms": round(1e3 * t_tmpl, 4),
        "speedup_norm_only": round(t_naive / t_tmpl, 1),
        "template_counts_model_eval_ms": round(1e3 * t_tcm, 4),
        "speedup_sherpa_wrapper": round(t_naive / t_tcm, 1),
        "max_rel_diff_routes": agree,
        "kernels_nustar_grid_ms": {
            "cutoffpl": round(1e3 * t_cpl, 3), "bknpower": round(1e3 * t_bkn, 3),
            "29_lines_one_call": round(1e3 * t_lines1, 3), "29_lines_29_calls": round(1e3 * t_lines29, 3),
        },
        "xspec_nustar_grid_ms": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in xspec.items()},
    }
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "models.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = templates[0]
    emid = 0.5 * (np.asarray(rmf.e_min, float) + np.asarray(rmf.e_max, float))
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label in (("apbgd", "apbgd (RMF x Be x DETABS)"), ("intbgd.apec", "intbgd apec (RMF)"),
                       ("fcxb", "fcxb (RMF x fcxb ARF)"), ("intn", "intn (diag.rmf)")):
        ax.plot(emid, t[key] * norms[0][key], label=label, lw=1)
    lines_sum = sum(t[f"intbgd.{n}"] * norms[0][f"intbgd.{n}"] for n in p.line_names)
    ax.plot(emid, lines_sum, label="intbgd 29 lines (RMF)", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="channel energy (keV)", ylabel="counts per channel",
           title=f"folded components, spectrum 1 of {N_SPECTRA} (random norms, exposure {exposures[0]:.0f} s)",
           ylim=(1e-4, None))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "models_templates.png", dpi=110)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
