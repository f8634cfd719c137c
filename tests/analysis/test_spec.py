"""End to end: simulate -> project -> extract -> fit -> spec, predicted vs actual background.

For >= 20 simulated observations without a point source, the background
predicted by ``spec`` in a source region (not used by the fit) is compared
with the events actually in that region, in 3-10, 10-30 and 30-79 keV, for
both modules. The pull (N - mu) / sqrt(mu + var(mu)) uses the prediction's
own variance from the fit covariance (the prediction is linear in the
fitted norms). Requirement: pull mean within +-0.3, standard deviation
0.7-1.3.

Kept small: 20 ks, three background regions per module, no bad pixels (so
the projections and RMFs of seed 0 serve every seed), per-seed spectra
binned directly from the simulated events with the seed-0 RMFs; the
simulator's calibration reads are memoised in-process (pure reads).
"""

import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

N_SEEDS = int(os.environ.get("NUSKYBGD_E2E_SEEDS", 20))
EXPOSURE = 20000.0
BANDS = ((3.0, 10.0), (10.0, 30.0), (30.0, 79.0))
SRC = (80.0, -80.0, 45.0)  # offset from the footprint centre (sky pixels) and radius


def _memoise(monkeypatch):
    """Cache RMF and PIXPOS reads and the pixel map (identical for every seed)."""
    import nuskybgd.io.ogip as ogip
    import nuskybgd.io.skyfiles as skyfiles
    import nuskybgd.sky.instrmap as instrmap
    pix_cache = {}
    orig_pix = skyfiles.read_pixpos
    orig_map = instrmap.pixel_map

    def read_pixpos(path, *a, **k):
        key = (str(path), a, tuple(sorted(k.items())))
        if key not in pix_cache:
            pix_cache[key] = orig_pix(path, *a, **k)
        return pix_cache[key]

    map_cache = {}

    def pixel_map(tables, *a, **k):
        key = id(tables)
        if key not in map_cache:
            map_cache[key] = (tables, orig_map(tables, *a, **k))
        return map_cache[key][1]

    patches = {ogip.read_rmf: functools.lru_cache(maxsize=64)(ogip.read_rmf), orig_pix: read_pixpos,
               orig_map: pixel_map}
    # the defining modules and every module that imported the names at its top
    for mod in [m for name, m in sys.modules.items() if name.startswith("nuskybgd")]:
        for attr in ("read_rmf", "read_pixpos", "pixel_map"):
            fn = getattr(mod, attr, None)
            if fn in patches:
                monkeypatch.setattr(mod, attr, patches[fn])


def _region_file(path, cx, cy, r):
    Path(path).write_text(f"# Region file format: DS9 version 4.1\nimage\ncircle({cx:.2f},{cy:.2f},{r:.2f})\n")
    return Path(path)


def _bin_events(evtfile, mask):
    from nuskybgd.io.events import read_events
    from nuskybgd.products.extract import events_in_mask, pha_counts
    ev = read_events(evtfile, columns=("PI", "X", "Y"))
    sel = events_in_mask(ev.columns["X"], ev.columns["Y"], mask)
    return pha_counts(ev.columns["PI"][sel])


def _predict_bands(setup, srcs, fit_state, presets, cache):
    """Band counts predicted for each source (list of arrays over BANDS)."""
    from nuskybgd.analysis.setup import spectrum_templates
    from nuskybgd.fitting.apply import (
        SourceSpectrum,
        add_source_spectra,
        group_component_counts,
    )
    from nuskybgd.sky.bgimage import band_channels
    ss = [SourceSpectrum(file=s["phafile"], module=s["module"], area=s["weights"].area, ap=s["weights"].ap)
          for s in srcs]
    st = add_source_spectra(fit_state, setup.modules, setup.weights, ss, presets,
                            fix_line_ratios=setup.info.intbgd_fix_line_ratios)
    out = []
    n_bg = len(setup.modules)
    for k, s in enumerate(srcs):
        t = spectrum_templates(s["pha"], s["module"], s["weights"].frac, cache)
        tot = sum(group_component_counts(st, n_bg + k + 1, t).values())
        rmf = s["pha"].get_rmf()
        out.append(np.array([tot[band_channels(rmf.e_min, rmf.e_max, a, b)].sum() for a, b in BANDS]))
    return out


@pytest.fixture(scope="module")
def pulls(tmp_path_factory):
    from nuskybgd.analysis.setup import load_setup, load_sources
    from nuskybgd.analysis.spec import run_spec
    from nuskybgd.calib.auxil import load_ratios
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.io.ogip import write_pha
    from nuskybgd.io.regions import region_mask
    from nuskybgd.products.extract import extract_spectrum
    from nuskybgd.simulate.observation import simulate_observation
    from nuskybgd.sky.images import pi_range
    from nuskybgd.analysis import demo
    from nuskybgd.analysis.fit import fit_background

    mp = pytest.MonkeyPatch()
    _memoise(mp)
    t0 = time.perf_counter()
    base = tmp_path_factory.mktemp("e2e")
    sim0 = simulate_observation(base / "sim0", seed=0, exposure=EXPOSURE, source=False, bad_pixels_per_det=0,
                                progress=False)
    mp.setenv("CALDB", str(sim0.caldb))
    images = demo.step_images(sim0, base)
    aspects = demo.step_aspect(sim0, base)
    imaps = demo.step_instrmap(sim0, base)
    ap, det = demo.step_projbgd(images, imaps, aspects, base)
    regions = demo.step_regions(sim0, base)
    from astropy.io import fits
    hdr = fits.getheader(images["A"])
    masks, rmfs, src_regs = {}, {}, {}
    for m in "AB":
        cx, cy = sim0.truth["modules"][m]["footprint_centre_xy_1based"]
        src_regs[m] = _region_file(base / f"src{m}.reg", cx + SRC[0], cy + SRC[1], SRC[2])
        for reg in regions[m] + [src_regs[m]]:
            masks[reg] = region_mask(reg, hdr, shape=(1000, 1000), header=hdr)
            res = extract_spectrum(sim0.events[m], reg, outprefix=reg.stem, outdir=base, grpmin=1,
                                   caldb=sim0.caldb)
            rmfs[reg] = (Path(res.rmf).resolve(), float(res.backscal))
    setup_s = time.perf_counter() - t0

    presets = load_ratios()
    rows = []
    timing = []  # per seed: simulate+bin, fit, spec, variance (s)
    for seed in range(1, N_SEEDS + 1):
        d = base / f"s{seed}"
        (d / "sim").mkdir(parents=True)
        os.symlink(sim0.caldb, d / "sim" / "caldb")
        tt = [time.perf_counter()]
        sim = simulate_observation(d / "sim", seed=seed, exposure=EXPOSURE, source=False, bad_pixels_per_det=0,
                                   progress=False)
        spectra = {}
        counts = {}
        for m in "AB":
            expo = sim.truth["modules"][m]["exposure"]
            spectra[m] = []
            for reg in regions[m] + [src_regs[m]]:
                c = _bin_events(sim.events[m], masks[reg])
                p = d / f"{reg.stem}.pha"
                write_pha(p, c, expo, rmfs[reg][1], header={"INSTRUME": f"FPM{m}", "RESPFILE": str(rmfs[reg][0]),
                                                   "DATE-OBS": sim.truth["date_obs"]})
                if reg == src_regs[m]:
                    counts[m] = c
                else:
                    spectra[m].append(p)
        tt.append(time.perf_counter())
        info = d / "bgdinfo.json"
        info.write_text(json.dumps({
            "bgfiles": [spectra[m][k].name for k in range(len(regions["A"])) for m in "AB"],
            "regfiles": [str(regions[m][k]) for k in range(len(regions["A"])) for m in "AB"],
            "refimgf": str(images["A"]), "bgdapfiles": {m: str(ap[m]) for m in "AB"},
            "bgddetfiles": {m: [str(x) for x in det[m]] for m in "AB"},
            "fcxb_config": {"links": [[2 * k + 1, 2 * k + 2] for k in range(len(regions["A"]))]},
            "intbgd_fix_line_ratios": True}))
        fit = fit_background(info, savefile=str(d / "bgdparams"), plot=False, caldb=Caldb(sim0.caldb))
        tt.append(time.perf_counter())
        setup = load_setup(info, d / "bgdparams.json")
        res = run_spec(info, d / "bgdparams.json", [str(src_regs["A"]), str(src_regs["B"])],
                       [str(d / "srcA.pha"), str(d / "srcB.pha")], savefile=str(d / "bgd_src"), plot=False,
                       setup=setup)
        tt.append(time.perf_counter())
        # variance of the prediction from the fit covariance (prediction linear in the free norms)
        srcs = load_sources(setup, [str(src_regs["A"]), str(src_regs["B"])],
                            [str(d / "srcA.pha"), str(d / "srcB.pha")])
        cache = {}
        st = setup.state
        base_pred = _predict_bands(setup, srcs, st, presets, cache)
        free = [(s.name, i) for s, i in fit.model.free]
        jac = np.zeros((len(srcs), len(BANDS), len(free)))
        for j, (name, i) in enumerate(free):
            p = st.source(name).params[i]
            step = max(abs(p.value), 1e-12)
            old = p.value
            p.value = old + step
            st.update_linked_values()
            pert = _predict_bands(setup, srcs, st, presets, cache)
            p.value = old
            st.update_linked_values()
            for k in range(len(srcs)):
                jac[k, :, j] = (pert[k] - base_pred[k]) / step
        cov = np.asarray(fit.result.covariance)
        tt.append(time.perf_counter())
        timing.append(np.diff(tt).tolist())
        for k, m in enumerate("AB"):
            for b, (lo, hi) in enumerate(BANDS):
                first, last = pi_range(lo, hi)
                n = float(counts[m][first:last + 1].sum())
                mu = res["sources"][k]["bands"][f"{lo:g}-{hi:g}"]
                assert mu == pytest.approx(base_pred[k][b], rel=1e-9)
                # the library's exact-Jacobian error agrees with this test's finite differences;
                # they differ by ~3e-5 relative here (~3e-8 in the small unit case of
                # test_prediction_errors.py), a gap not yet explained, hence rel=1e-3
                var_fd = float(jac[k, b] @ cov @ jac[k, b])
                sigma_lib = res["sources"][k]["band_errors"][f"{lo:g}-{hi:g}"]
                assert res["sources"][k]["error_kind"] == "covariance"
                assert sigma_lib == pytest.approx(var_fd ** 0.5, rel=1e-3)
                var_fit = sigma_lib ** 2
                rows.append({"seed": seed, "module": m, "band": f"{lo:g}-{hi:g}", "observed": n, "predicted": mu,
                             "sigma_fit": var_fit ** 0.5, "pull": (n - mu) / np.sqrt(mu + var_fit),
                             "pull_poisson_only": (n - mu) / np.sqrt(mu)})
    mp.undo()
    out = {"rows": rows, "setup_seconds": setup_s, "seed_seconds": timing, "total_seconds": time.perf_counter() - t0}
    (base / "pulls.json").write_text(json.dumps(out, indent=1))
    return out


@pytest.mark.parametrize("band", [f"{a:g}-{b:g}" for a, b in BANDS])
def test_predicted_background_matches_events(pulls, band):
    rows = [r for r in pulls["rows"] if r["band"] == band]
    assert len(rows) == 2 * N_SEEDS
    p = np.array([r["pull"] for r in rows])
    obs = sum(r["observed"] for r in rows)
    pred = sum(r["predicted"] for r in rows)
    print(f"\n{band} keV: {len(p)} pulls, mean {p.mean():+.3f}, std {p.std(ddof=1):.3f}; "
          f"observed {obs:.0f} vs predicted {pred:.1f} counts in total; mean counts/region {obs / len(p):.1f}; "
          f"mean fit sigma {np.mean([r['sigma_fit'] for r in rows]):.2f}; "
          f"runtime {pulls['total_seconds']:.0f} s")
    assert abs(p.mean()) <= 0.3
    assert 0.7 <= p.std(ddof=1) <= 1.3
