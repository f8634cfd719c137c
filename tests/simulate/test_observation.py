"""Tests of nuskybgd.simulate.observation: format, CALDB, geometry and injected counts."""

import json
import warnings

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.errors import NuskybgdError

MODULES = ("A", "B")


@pytest.fixture(scope="module")
def obs(simulated_obs):
    return simulated_obs


def _events(path):
    with fits.open(path) as h:
        d = h["EVENTS"].data
        return {c: np.array(d[c]) for c in d.columns.names}, h["EVENTS"].header.copy()


@pytest.fixture(scope="module")
def maps(obs):
    """Instrument and pixel maps rebuilt the way mkinstrmap does (event + CALDB bad pixels)."""
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.io.events import read_badpix, read_events
    from nuskybgd.io.skyfiles import read_instrmap, read_pixpos
    from nuskybgd.sky.instrmap import bad_pixel_list, instrument_map, pixel_map
    cal = Caldb(obs.caldb)
    out = {}
    for m in MODULES:
        ev = read_events(obs.events[m], columns=("TIME",))
        date = ev.header["DATE-OBS"]
        pm = pixel_map(read_pixpos(cal.query("PIXPOS", f"FPM{m}", date=date).path))
        imap, _ = read_instrmap(cal.query("INSTRMAP", f"FPM{m}", date=date).path)
        tables = list(ev.badpix) + read_badpix(cal.query("BADPIX", f"FPM{m}", date=date).path)
        out[m] = (instrument_map(imap, pm, bad_pixel_list(tables)), pm)
    return out


@pytest.fixture(scope="module")
def projections(obs, maps):
    """projbgd images of both modules on the counts image of each module's events."""
    from nuskybgd.io.events import read_det1_refpoint, read_events, read_gti
    from nuskybgd.sky.aspect import aspect_histogram
    from nuskybgd.sky.images import counts_image
    from nuskybgd.sky.projection import project_background
    out = {}
    for m in MODULES:
        ev = read_events(obs.events[m])
        image, header = counts_image(ev, 1.6, 165.44)
        header = fits.PrimaryHDU(image, header=header).header  # adds NAXISn
        t, x, y, h = read_det1_refpoint(obs.det1[m])
        gs, ge = read_gti(obs.gti[m])
        hist = aspect_histogram(t, x, y, gs, ge, header=h)
        proj = project_background(header, m, maps[m][0], hist, progress=False)
        out[m] = (image, header, proj, hist)
    return out


# ---------------------------------------------------------------- layout and format

def test_layout_and_size(obs):
    root = obs.root
    for m in MODULES:
        assert obs.events[m] == root / "event_cl" / f"nu{obs.obsid}{m}01_cl.evt"
        assert obs.gti[m] == root / "event_cl" / f"nu{obs.obsid}{m}01_gti.fits"
        assert obs.det1[m] == root / "event_cl" / f"nu{obs.obsid}{m}_det1.fits"
        for p in (obs.events[m], obs.gti[m], obs.det1[m]):
            assert p.is_file()
    assert (root / "caldb" / "data" / "nustar" / "fpm" / "caldb.indx").is_file()
    assert json.loads(obs.truth_path.read_text()) == json.loads(json.dumps(obs.truth))
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 50e6, f"simulated observation is {total / 1e6:.1f} MB"


@pytest.mark.parametrize("m", MODULES)
def test_astropy_reads_without_warnings(obs, m):
    for p in (obs.events[m], obs.gti[m], obs.det1[m], *sorted((obs.caldb).rglob("*.fits")),
              *sorted((obs.caldb).rglob("*.rmf"))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(p, checksum=True) as h:
                h.verify("exception")
                for hdu in h:
                    _ = hdu.data
        assert not caught, (p, [str(w.message) for w in caught])


@pytest.mark.parametrize("m", MODULES)
def test_event_header_and_columns(obs, m):
    d, h = _events(obs.events[m])
    assert set(("TIME", "PI", "DET_ID", "RAWX", "RAWY", "GRADE", "DET1X", "DET1Y", "X", "Y")) <= set(d)
    for k in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "DATE-OBS", "DATE-END", "TSTART", "TSTOP",
              "EXPOSURE", "LIVETIME", "ONTIME", "RA_NOM", "DEC_NOM", "RA_PNT", "DEC_PNT", "PA_PNT"):
        assert k in h, k
    assert h["INSTRUME"] == f"FPM{m}" and h["TELESCOP"] == "NuSTAR"
    assert h["EXPOSURE"] == pytest.approx(obs.truth["modules"][m]["exposure"], rel=1e-12)
    names = [h[f"TTYPE{i}"] for i in range(1, h["TFIELDS"] + 1)]
    nx, ny = names.index("X") + 1, names.index("Y") + 1
    assert (h[f"TCTYP{nx}"], h[f"TCTYP{ny}"]) == ("RA---TAN", "DEC--TAN")
    assert h[f"TCDLT{nx}"] == pytest.approx(-2.45810736 / 3600) and h[f"TCDLT{ny}"] == pytest.approx(2.45810736 / 3600)
    assert h[f"TCRPX{nx}"] == 500.5 and h[f"TLMAX{nx}"] == 1000
    assert np.all(np.diff(d["TIME"]) >= 0)
    gti = fits.getdata(obs.events[m], "GTI")
    i = np.searchsorted(gti["START"], d["TIME"], side="right") - 1
    assert np.all(i >= 0) and np.all(d["TIME"] < gti["STOP"][i]), "events outside the GTIs"
    assert d["PI"].min() >= 0 and d["PI"].max() <= 4095
    assert set(np.unique(d["DET_ID"])) <= {0, 1, 2, 3}
    assert len(d["TIME"]) == obs.truth["modules"][m]["n_events"]


@pytest.mark.parametrize("m", MODULES)
def test_project_readers(obs, m):
    from nuskybgd.io.events import (
        read_badpix,
        read_det1_refpoint,
        read_events,
        read_gti,
        sky_wcs,
    )
    ev = read_events(obs.events[m])
    assert ev.module == m and len(ev) == obs.truth["modules"][m]["n_events"]
    w = sky_wcs(ev)
    assert w.pixel_shape == (1000, 1000)
    ra, dec = w.wcs.crval
    assert (ra, dec) == pytest.approx((obs.truth["ra_nom"], obs.truth["dec_nom"]))
    gs, ge = read_gti(obs.gti[m])
    np.testing.assert_array_equal(gs, ev.gti[0])
    assert np.sum(ge - gs) == pytest.approx(obs.truth["modules"][m]["ontime"])
    t, x, y, h = read_det1_refpoint(obs.det1[m])
    assert t.size == 27000 and np.all(np.isfinite(x))
    bp = read_badpix(obs.events[m])
    assert sorted(b.det for b in bp) == [0, 1, 2, 3]
    for b in bp:
        want = obs.truth["modules"][m]["bad_pixels"][f"DET{b.det}"]
        assert sorted(zip(b.rawx.tolist(), b.rawy.tolist())) == sorted(map(tuple, want))


def test_caldb_lookups(obs):
    from nuskybgd.calib.caldb import Caldb
    cal = Caldb(obs.caldb)
    for m in MODULES:
        date = fits.getheader(obs.events[m], "EVENTS")["DATE-OBS"]
        inst = f"FPM{m}"
        assert cal.query("PIXPOS", inst, "DET2", date).path.name == f"nu{m}pixpos20100101v007.fits.gz"
        assert "instrmap" in cal.query("INSTRMAP", inst, date=date).path.name
        assert "badpix" in cal.query("BADPIX", inst, "DET0", date).path.name
        assert "detabs" in cal.query("DETABS", inst, "DET3", date).path.name
        for k in range(4):
            rmf = cal.rmf(inst, f"DET{k}", date=date)
            assert rmf.name == f"nu{m}det{k}_20100101syn01.rmf"
            assert str(rmf.relative_to(obs.caldb)) == obs.truth["modules"][m]["rmf"][f"DET{k}"]
        assert cal.query("BEABS", inst, date=date).path.is_file()


# ---------------------------------------------------------------- geometry

@pytest.mark.parametrize("m", MODULES)
def test_det1_pixels_and_raw_pixels_consistent(obs, maps, m):
    imap, pm = maps[m]
    d, _ = _events(obs.events[m])
    ix, iy = d["DET1X"].astype(int) - 1, d["DET1Y"].astype(int) - 1
    # every event sits on a live pixel of its own detector (bad pixels excluded)
    np.testing.assert_array_equal(imap[iy, ix], d["DET_ID"].astype(int) + 1)
    np.testing.assert_array_equal(pm.rawpix[iy, ix], d["RAWX"].astype(int) + 32 * d["RAWY"].astype(int))


@pytest.mark.parametrize("m", MODULES)
def test_sky_positions_follow_det1_and_aspect(obs, m):
    """Inverting projbgd's mapping at the event's aspect sample gives back its DET1 pixel."""
    from nuskybgd.io.events import read_det1_refpoint
    from nuskybgd.sky.projection import aspect_nudge, rotation_angle, sky_to_det1
    d, h = _events(obs.events[m])
    t, x, y, _ = read_det1_refpoint(obs.det1[m])
    row = np.searchsorted(t, d["TIME"], side="right") - 1
    pa = h["PA_PNT"]
    nx, ny = aspect_nudge(rotation_angle(pa))
    sx, sy = d["X"].astype(float) - 1, d["Y"].astype(float) - 1
    u, v = sky_to_det1(sx + nx, sy + ny, x[row] - 0.5, y[row] - 0.5, pa, rounded=False)
    du = u - (d["DET1X"] - 1)
    dv = v - (d["DET1Y"] - 1)
    # float32 X/Y columns: 1e-4 pixel slack
    assert np.max(np.abs(du)) <= 0.5 + 1e-3 and np.max(np.abs(dv)) <= 0.5 + 1e-3
    # sub-pixel jitter is uniform: mean offset ~0, variance ~1/12 (background events)
    assert abs(np.mean(du)) < 0.01 and abs(np.var(du) - 1 / 12) < 0.005


@pytest.mark.parametrize("m", MODULES)
def test_events_land_on_projected_detectors(obs, projections, m):
    """Background events of detector k fall where projbgd's detector-k image is non-zero."""
    image, header, proj, hist = projections[m]
    d, _ = _events(obs.events[m])
    tags = obs.event_components(m)
    bgd = tags < len(obs.truth["modules"][m]["component_order"])
    ix = np.floor(d["X"] - 0.5).astype(int)
    iy = np.floor(d["Y"] - 0.5).astype(int)
    for k in range(4):
        sel = bgd & (d["DET_ID"] == k)
        on = proj.detectors[k][iy[sel], ix[sel]] > 0
        assert on.mean() > 0.995, (k, on.mean())
        # and the other detectors' images are (almost) empty there
        others = sum(proj.detectors[j] for j in range(4) if j != k)
        assert (others[iy[sel], ix[sel]] > 0.5).mean() < 0.02


@pytest.mark.parametrize("m", MODULES)
def test_counts_image_matches_projected_model(obs, projections, m):
    """The counts image of background events follows the section-6 model built from projbgd images."""
    image, header, proj, hist = projections[m]
    tr = obs.truth["modules"][m]
    d, _ = _events(obs.events[m])
    tags = obs.event_components(m)
    bgd = tags < len(tr["component_order"])
    ix = np.floor(d["X"][bgd] - 0.5).astype(int)
    iy = np.floor(d["Y"][bgd] - 0.5).astype(int)
    counts = np.zeros((1000, 1000))
    np.add.at(counts, (iy, ix), 1)
    # model: expected counts per detector spread uniformly (detector components) or with the aperture
    model = np.zeros((1000, 1000))
    for name, per_det in tr["expected_counts"].items():
        for k in range(4):
            if per_det[k] == 0:
                continue
            if name == "apbgd":
                # the aperture image is not split by detector: weight by detector k's coverage share
                img = proj.aperture * proj.detectors[k] / np.maximum(sum(proj.detectors), 1e-30)
            else:
                img = proj.detectors[k]
            model += per_det[k] * img / img.sum()
    # compare on 20x20-pixel blocks
    cb = counts.reshape(50, 20, 50, 20).sum(axis=(1, 3))
    mb = model.reshape(50, 20, 50, 20).sum(axis=(1, 3))
    use = mb > 20
    assert use.sum() > 100
    r = np.corrcoef(cb[use], mb[use])[0, 1]
    chi2 = np.sum((cb[use] - mb[use]) ** 2 / mb[use]) / use.sum()
    print(f"FPM{m}: {use.sum()} blocks, correlation {r:.4f}, chi2/block {chi2:.3f}")
    assert r > 0.9, r
    assert chi2 < 1.5, chi2
    assert cb.sum() == pytest.approx(mb.sum(), rel=5 * np.sqrt(mb.sum()) / mb.sum())


def test_detector_centroids_match_projection(obs, projections):
    """Sub-pixel check of the geometry: event centroids of each detector vs projbgd's detector images.

    Only the detector-uniform components (intbgd, fcxb, intn) are used; a
    one-pixel offset of the simulated sky positions fails this test.
    """
    diffs, ses = [], []
    for m in MODULES:
        image, header, proj, hist = projections[m]
        names = obs.truth["modules"][m]["component_order"]
        uniform = [i for i, n in enumerate(names) if n != "apbgd"]
        d, _ = _events(obs.events[m])
        tags = obs.event_components(m)
        yy, xx = np.mgrid[0:1000, 0:1000]
        for k in range(4):
            sel = np.isin(tags, uniform) & (d["DET_ID"] == k)
            w = proj.detectors[k]
            for ev, grid in ((d["X"][sel] - 1.0, xx), (d["Y"][sel] - 1.0, yy)):
                diffs.append(ev.mean() - np.sum(w * grid) / w.sum())
                ses.append(ev.std() / np.sqrt(ev.size))
    diffs, ses = np.array(diffs), np.array(ses)
    pooled = np.sum(diffs / ses ** 2) / np.sum(1 / ses ** 2)
    se = 1 / np.sqrt(np.sum(1 / ses ** 2))
    assert abs(pooled) < 4 * se + 0.05, (pooled, se)
    assert np.all(np.abs(diffs) < 5 * ses + 0.1), (diffs, ses)


@pytest.mark.parametrize("m", MODULES)
def test_region_weights_predict_region_counts(obs, projections, m, tmp_path):
    """Section-6 weights from projbgd images predict the counts of each component group in regions."""
    from nuskybgd.fitting.weights import region_weights
    from nuskybgd.io.events import read_events, sky_wcs
    from nuskybgd.io.regions import region_mask
    image, header, proj, hist = projections[m]
    tr = obs.truth["modules"][m]
    names = tr["component_order"]
    d, _ = _events(obs.events[m])
    tags = obs.event_components(m)
    wcs = sky_wcs(read_events(obs.events[m], columns=("TIME",)))
    ix = np.floor(d["X"] - 0.5).astype(int)
    iy = np.floor(d["Y"] - 0.5).astype(int)
    cx, cy = tr["footprint_centre_xy_1based"]
    groups = {"intn": ["intn"], "fcxb": ["fcxb"], "intbgd": [n for n in names if n.startswith("intbgd.")],
              "apbgd": ["apbgd"]}
    z = []
    for i, (dx, dy, r) in enumerate(((-80, -80, 50), (-80, 80, 50), (80, 80, 50), (0, 0, 40), (-120, 0, 30))):
        reg = tmp_path / f"r{i}.reg"
        reg.write_text(f"image\ncircle({cx + dx},{cy + dy},{r})\n")
        mask = region_mask(reg, wcs, (1000, 1000))
        w = region_weights(mask, list(proj.detectors), proj.aperture)
        inside = mask[iy, ix]
        for g, comps in groups.items():
            idx = [names.index(c) for c in comps]
            n = int(np.sum(inside & np.isin(tags, idx)))
            if g == "apbgd":
                # the aperture sum ap_r replaces the per-detector pixel counts
                per_ap = sum(tr["expected_counts"]["apbgd"]) / sum(tr["aperture_sum_per_det"])
                mu = per_ap * w.ap
            else:
                mu = sum(w.area[k] * sum(tr["expected_counts"][c][k] for c in comps) / tr["live_pixels_per_det"][k]
                         for k in range(4))
            z.append((n - mu) / np.sqrt(mu))
            assert abs(z[-1]) < 4.5, (i, g, n, mu)
    z = np.array(z)
    print(f"FPM{m} region z-scores:", np.round(z, 2))
    assert np.mean(z ** 2) < 2.0, z


# ---------------------------------------------------------------- injected counts

@pytest.mark.parametrize("m", MODULES)
def test_counts_per_component_within_poisson(obs, m):
    tr = obs.truth["modules"][m]
    names = tr["component_order"]
    tags = obs.event_components(m)
    d, _ = _events(obs.events[m])
    per = np.bincount(tags, minlength=len(names) + 1)
    for i, name in enumerate(names):
        mu = sum(tr["expected_counts"][name])
        n = per[i]
        assert n == sum(tr["drawn_counts"][name])
        assert abs(n - mu) <= 5 * np.sqrt(mu) + 3, (name, n, mu)
        for k in range(4):
            assert np.sum((tags == i) & (d["DET_ID"] == k)) == tr["drawn_counts"][name][k]
    total_mu = sum(sum(v) for v in tr["expected_counts"].values())
    assert abs(per[:-1].sum() - total_mu) <= 4 * np.sqrt(total_mu)
    src = tr["source"]
    assert per[-1] == sum(src["counts_per_det"])


@pytest.mark.parametrize("m", MODULES)
def test_spectrum_per_detector_follows_templates(obs, m):
    """PI histogram of each detector's background events vs the sum of the folded templates."""
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.io.ogip import read_rmf
    from nuskybgd.models.background import component_templates
    tr = obs.truth["modules"][m]
    tags = obs.event_components(m)
    d, h = _events(obs.events[m])
    cal = Caldb(obs.caldb)
    names = tr["component_order"]
    for k in (0, 3):
        rmf = read_rmf(cal.rmf(f"FPM{m}", f"DET{k}", date=h["DATE-OBS"]))
        frac = np.eye(4)[k]
        tmpl = component_templates(rmf, m, frac, tr["exposure"], caldb=cal, date=h["DATE-OBS"])
        model = np.zeros(4096)
        for name in names:
            t = np.clip(tmpl[name], 0, None)
            if t.sum() > 0:
                model += tr["expected_counts"][name][k] * t / t.sum()
        sel = (tags < len(names)) & (d["DET_ID"] == k)
        counts = np.bincount(d["PI"][sel], minlength=4096)
        edges = np.r_[0, 35, 85, 210, 335, 460, 585, 710, 960, 1460, 1960, 2960, 4096]
        cb = np.add.reduceat(counts, edges[:-1])
        mb = np.add.reduceat(model, edges[:-1])
        chi2 = np.sum((cb - mb) ** 2 / mb)
        assert chi2 < 3 * len(cb), (k, chi2, cb, mb.round())


def test_truth_scale_factors(obs):
    for m in MODULES:
        tr = obs.truth["modules"][m]
        f = tr["scale_factors"]
        assert set(f) == set(tr["component_order"])
        assert all(0.7 <= v <= 1.3 for v in f.values())
        # lines above 19.6 keV share the 19.6 keV line's factor
        assert f["intbgd.lorentz_30"] == f["intbgd.lorentz_5"]
        assert tr["per_pixel_norm"]["intn"][2] == pytest.approx(f["intn"] * tr["ifactors"]["intn"][2] / 599.75)


# ---------------------------------------------------------------- behaviour

def test_existing_outputs_kept(obs):
    from nuskybgd.simulate.observation import simulate_observation
    before = obs.events["A"].stat().st_mtime_ns
    with pytest.raises(NuskybgdError, match="exists"):
        simulate_observation(obs.root, seed=1)
    assert obs.events["A"].stat().st_mtime_ns == before


@pytest.mark.slow
def test_cli_seed_reproducible(tmp_path, monkeypatch):
    from nuskybgd.cli import main
    monkeypatch.chdir(tmp_path)  # relative OUTDIR
    for name in ("s1", "s2"):
        extra = ["--plot", "s1.png"] if name == "s1" else []
        assert main(["simulate", name, "--seed", "5", "--exposure", "3000", "--no-source", *extra]) == 0
    assert (tmp_path / "s1.png").stat().st_size > 10000
    a, _ = _events(tmp_path / "s1" / "event_cl" / "nu60001001002A01_cl.evt")
    b, _ = _events(tmp_path / "s2" / "event_cl" / "nu60001001002A01_cl.evt")
    for c in a:
        np.testing.assert_array_equal(a[c], b[c])
    t = json.loads((tmp_path / "s1" / "truth.json").read_text())
    assert t["modules"]["A"]["source"] is None and t["seed"] == 5
    assert t["modules"]["A"]["exposure"] == pytest.approx(3000)
