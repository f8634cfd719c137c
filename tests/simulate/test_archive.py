"""simulate-archive: layout, epoch truth, both modes, gain applied to events."""

import json

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.simulate.archive import epoch_truth, gain_channels, mission_years, plan_archive
from nuskybgd.errors import NuskybgdError
from nuskybgd.calib.presets import component_presets


def test_layout_and_truth(tiny_archive):
    root, results = tiny_archive
    index = json.loads((root / "archive.json").read_text())
    assert index["n_observations"] == 2 and [o["obsid"] for o in index["observations"]] == \
        [r["obsid"] for r in results]
    for r in results:
        ev = root / r["obsid"] / "event_cl"
        for m in "AB":
            for mode in ("01", "02"):
                assert (ev / f"nu{r['obsid']}{m}{mode}_cl.evt").exists()
            assert (ev / f"nu{r['obsid']}{m}_det1.fits").exists()
        truth = json.loads((root / r["obsid"] / "truth.json").read_text())
        et = truth["archive"]["epoch_truth"]
        assert et["date"] == r["date_obs"]
        assert et["tau_years"] == pytest.approx(mission_years(r["date_obs"]))
        assert (root / r["obsid"] / "source.reg").read_text().count("circle(") == 1


def test_occultation_counts_follow_truth(tiny_archive):
    """Events per detector in the mode-02 file are the drawn counts, and the drawn counts are
    Poisson around the expectation (5 sigma)."""
    root, results = tiny_archive
    for r in results:
        truth = json.loads((root / r["obsid"] / "truth.json").read_text())
        for m in "AB":
            occ = truth["archive"]["occultation"][m]
            with fits.open(root / r["obsid"] / "event_cl" / f"nu{r['obsid']}{m}02_cl.evt") as h:
                det = h["EVENTS"].data["DET_ID"]
                assert h["EVENTS"].header["EXPOSURE"] == pytest.approx(occ["exposure"])
            per_det = np.bincount(det, minlength=4)
            exp = np.sum([v for v in occ["expected_counts"].values()], axis=0)
            drawn = np.sum([v for v in occ["drawn_counts"].values()], axis=0)
            # Events pushed off the channel range by the gain are lost: a few at most.
            assert np.all(per_det <= drawn) and np.all(drawn - per_det <= 0.01 * drawn + 5)
            assert np.all(np.abs(drawn - exp) < 5 * np.sqrt(exp) + 1)


def test_gain_drift_moves_lines_down():
    """Truth model: gain slope < 1 and decreasing with time; multipliers within (0, 1]."""
    pres = {m: component_presets(m) for m in "AB"}
    early, late = epoch_truth("2013-06-01T00:00:00", pres), epoch_truth("2020-06-01T00:00:00", pres)
    for m in "AB":
        assert all(a > b for a, b in zip(early["modules"][m]["gain_slope"], late["modules"][m]["gain_slope"]))
        assert all(0 < v <= 1 for v in late["modules"][m]["component_multiplier"].values())
    with pytest.raises(NuskybgdError, match="outside"):
        epoch_truth("2030-01-01T00:00:00", pres)


def test_gain_channels_scale_energies():
    """Recorded energies are slope x true energy + offset (uniform inside channels: means agree to 1e-3)."""
    rng = np.random.default_rng(2)
    chan = rng.integers(100, 3000, 200000)
    rec, ok = gain_channels(rng, chan, 0.985, 0.03)
    assert ok.all()
    e_true = 1.62 + 0.04 * chan
    e_rec = 1.62 + 0.04 * rec
    assert np.mean(e_rec) == pytest.approx(0.985 * np.mean(e_true) + 0.03, rel=1e-3)
    # A single channel spreads over the channels its mapped interval touches, no further.
    one, _ = gain_channels(rng, np.full(1000, 2000), 0.985, 0.0)
    lo, hi = 0.985 * (1.6 + 0.04 * 2000), 0.985 * (1.64 + 0.04 * 2000)
    assert set(np.unique(one)) <= set(range(int((lo - 1.6) / 0.04), int((hi - 1.6) / 0.04) + 1))


def test_plan_is_deterministic_and_checks_n(tmp_path):
    a = plan_archive(tmp_path, 5, seed=4)
    b = plan_archive(tmp_path, 5, seed=4)
    assert a == b
    assert len({p.obsid for p in a}) == 5
    assert [p.date_obs for p in a] == sorted(p.date_obs for p in a)
    with pytest.raises(NuskybgdError, match="observations"):
        plan_archive(tmp_path, 0)
