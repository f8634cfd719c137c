"""calibrate: bundles per epoch, checksums, manifest input, nothing written on failure."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
from astropy.table import Table

from nuskybgd.analysis.calibrate import calibrate, load_manifest, load_stack_groups
from nuskybgd.analysis.stack import stack_archive
from nuskybgd.errors import NuskybgdError
from nuskybgd.calib.presets import component_presets


@pytest.fixture(scope="module")
def stack_dir(tiny_archive, tmp_path_factory):
    root, _ = tiny_archive
    out = tmp_path_factory.mktemp("stack") / "s"
    stack_archive(root, out)
    return out


def two_groups(stack_dir, fit_gain=False):
    """FPMA DET0 of both epochs (fixed gain keeps the fast suite fast)."""
    tasks = [t for t in load_stack_groups(stack_dir) if t.module == "A" and t.det == 0]
    assert len(tasks) == 2
    return [dataclasses.replace(t, fit_gain=fit_gain) for t in tasks]


def bundle_digest(caldir):
    """sha256 of every bundle file listed in calibration.json, plus the table."""
    index = json.loads((caldir / "calibration.json").read_text())
    out = {}
    for e in index["epochs"]:
        for f in e["files"].values():
            out[f["path"]] = hashlib.sha256((caldir / f["path"]).read_bytes()).hexdigest()
    out["summary.ecsv"] = hashlib.sha256((caldir / "summary.ecsv").read_bytes()).hexdigest()
    return out


def test_bundle_contents(stack_dir, tmp_path):
    tasks = two_groups(stack_dir)
    index = calibrate(tasks, tmp_path / "cal")
    cal = tmp_path / "cal"
    assert [e["epoch"] for e in index["epochs"]] == sorted(t.epoch for t in tasks)
    for e in index["epochs"]:
        assert e["start"] < e["stop"]
        for f in e["files"].values():
            assert hashlib.sha256((cal / f["path"]).read_bytes()).hexdigest() == f["sha256"]
        ratios = json.loads((cal / e["files"]["ratios"]["path"]).read_text())
        gain = json.loads((cal / e["files"]["gain"]["path"]).read_text())
        assert gain["modules"]["A"]["preset_detectors"] == [1, 2, 3]
        assert "B" not in gain["modules"]
        new, old = component_presets("A", ratios), component_presets("A")
        # Detector 0's ifactors come from the fit; the others keep the presets.
        assert new.apec.ifactors[0] != old.apec.ifactors[0]
        assert new.apec.ifactors[1:] == old.apec.ifactors[1:]
        assert component_presets("B", ratios) == component_presets("B")
    t = Table.read(cal / "summary.ecsv", format="ascii.ecsv")
    assert len(t) == 2 and np.all(t["dof"] > 3000) and np.all(t["cstat_per_dof"] > 0)
    assert (cal / "trends.png").stat().st_size > 10000


def test_gain_and_intn_recover_truth(tiny_archive, stack_dir, tmp_path):
    """Late epoch, gain fitted (errors by default: bootstrap for this few-count group): the whole-detector
    intn norm and the gain slope match the injected values within 4 sigma."""
    root, _ = tiny_archive
    tasks = two_groups(stack_dir, fit_gain=True)[1:]
    calibrate(tasks, tmp_path / "cal", plot=False)
    for t in tasks:
        gain = json.loads((tmp_path / "cal" / t.epoch / "gain.json").read_text())
        s = Table.read(tmp_path / "cal" / "summary.ecsv", format="ascii.ecsv")
        row = s[(s["epoch"] == t.epoch)][0]
        stack = json.loads((stack_dir / "stack.json").read_text())
        g = next(x for x in stack["groups"] if x["file"] == t.name)
        truth, slope = [], []
        for obsid in g["obsids"]:
            tr = json.loads((root / obsid / "truth.json").read_text())
            truth.append(tr["archive"]["occultation"]["A"]["whole_detector_norm"]["intn"][0])
            slope.append(tr["archive"]["epoch_truth"]["modules"]["A"]["gain_slope"][0])
        assert gain["modules"]["A"]["detectors"]["DET0"]["exposure"] == pytest.approx(g["exposure"])
        assert gain["modules"]["A"]["detectors"]["DET0"]["gain_error_method"] == "bootstrap 10"
        assert abs(row["intn_norm"] - np.mean(truth)) < 4 * row["intn_norm_err"]
        assert abs(row["gain_slope"] - np.mean(slope)) < 4 * row["gain_slope_err"]


def test_failure_leaves_no_bundle(stack_dir, tmp_path):
    tasks = two_groups(stack_dir)
    bad = tmp_path / "bad.pha"
    bad.write_bytes(b"not a FITS file")
    tasks[1] = dataclasses.replace(tasks[1], pha=str(bad))
    with pytest.raises(NuskybgdError):
        calibrate(tasks, tmp_path / "cal")
    assert not (tmp_path / "cal").exists()


def test_existing_bundle_kept(stack_dir, tmp_path):
    tasks = two_groups(stack_dir)[:1]
    calibrate(tasks, tmp_path / "cal", plot=False)
    before = bundle_digest(tmp_path / "cal")
    with pytest.raises(NuskybgdError, match="exists"):
        calibrate(tasks, tmp_path / "cal", plot=False)
    assert bundle_digest(tmp_path / "cal") == before


def test_zero_exposure_in_stack_index(stack_dir, tmp_path):
    import shutil
    copy = tmp_path / "s"
    shutil.copytree(stack_dir, copy)
    idx = json.loads((copy / "stack.json").read_text())
    idx["groups"][0]["exposure"] = 0.0
    (copy / "stack.json").write_text(json.dumps(idx))
    with pytest.raises(NuskybgdError, match="zero exposure"):
        load_stack_groups(copy)


def test_manifest_real_spectra(real, shared_caldb, tmp_path):
    """Two real stacked spectra through a manifest: fixed gain with albedo, bundle written."""
    man = tmp_path / "m.csv"
    files = [real / "stacked" / "epoch2_det0_FPMA.pha", real / "stacked" / "epoch14_det0_FPMA.pha"]
    man.write_text("file,epoch,module,det,epoch_start,epoch_stop\n"
                   f"{files[0]},epoch02,A,0,2013-01-01,2013-07-01\n"
                   f"{files[1]},epoch14,A,0,2019-01-01,2019-07-01\n")
    tasks = load_manifest(man, shared_caldb / "nuAdet3_20100101v002.rmf.gz", fit_gain=False,
                          detabs_file=str(shared_caldb / "nuAdetabs20100101v002.fits"))
    assert [t.albedo for t in tasks] == [True, True]
    index = calibrate(tasks, tmp_path / "cal", plot=False)
    assert [e["epoch"] for e in index["epochs"]] == ["epoch02", "epoch14"]
    t = Table.read(tmp_path / "cal" / "summary.ecsv", format="ascii.ecsv")
    # Frozen presets fit the late epoch worse than the early one (the gain has drifted).
    assert t["cstat_per_dof"][1] > t["cstat_per_dof"][0]


def test_manifest_errors(tmp_path, real, shared_caldb):
    man = tmp_path / "m.csv"
    man.write_text("file,epoch,module\nx.pha,1,A\n")
    with pytest.raises(NuskybgdError, match="missing columns det"):
        load_manifest(man, "r.rmf")
    man.write_text(f"file,epoch,module,det\n{real / 'stacked' / 'epoch2_det0_FPMA.pha'},1,C,0\n")
    with pytest.raises(NuskybgdError, match="module 'C'"):
        load_manifest(man, "r.rmf")


def test_ifactor_fitted_to_zero_on_some_detectors_is_floored():
    """A line fitted to 0 on two detectors only: written as IFACTOR_FLOOR x the largest (the linked
    model's ratios stay finite); a line at 0 on every detector stays 0 and links 1:1."""
    import copy

    from nuskybgd.analysis.calibrate import IFACTOR_FLOOR, epoch_ratios
    from nuskybgd.calib.auxil import load_ratios
    from nuskybgd.fitting.detectors import DETECTOR_AREA_PIX

    base = load_ratios()
    intbgd = next(m for m in base["models"] if m["name"].endswith("intbgd"))
    comps = ["intbgd.lorentz_11", "intbgd.lorentz_12", "intn"]
    fits = {}
    for k in range(4):
        norms = [0.0 if k in (0, 2) else 1e-4, 0.0, 1e-3]
        fits[k] = {"components": comps, "norms": norms, "line_energies": {}, "area": DETECTOR_AREA_PIX,
                   "module_area": 4 * DETECTOR_AREA_PIX}
    out, kept = epoch_ratios(copy.deepcopy(base), fits, "A")
    assert kept == []
    got = next(m for m in out["models"] if m["name"].endswith("intbgd"))["components"]
    ifac = got["lorentz_11"]["A"]["ifactors"]
    assert ifac[1] > 0 and ifac[1] == ifac[3]
    assert ifac[0] == ifac[2] == pytest.approx(IFACTOR_FLOOR * ifac[1])
    assert got["lorentz_12"]["A"]["ifactors"] == [0.0] * 4
    assert intbgd["components"]["lorentz_11"]["A"]["ifactors"] != ifac  # the base was not modified


def test_linked_presets_with_zero_reference():
    """build_background_state: a component at 0 on every region links 1:1; zero on the reference region
    only is a one-line error naming the component (never a ZeroDivisionError)."""
    import copy

    from nuskybgd.calib.auxil import load_ratios
    from nuskybgd.errors import NuskybgdError
    from nuskybgd.fitting.detectors import DETECTOR_AREA_PIX, detector_weights
    from nuskybgd.fitting.model import build_background_state

    ratios = load_ratios()
    specs = [{"file": f"s{k}", "module": "A", "rmf": "r", "apbgd_arf": "a", "fcxb_arf": "f", "diag_rmf": "d"}
             for k in range(2)]
    weights = [detector_weights(0), detector_weights(1)]
    area = {"A": [DETECTOR_AREA_PIX] * 4, "B": [DETECTOR_AREA_PIX] * 4}
    r = copy.deepcopy(ratios)
    comp = next(m for m in r["models"] if m["name"].endswith("intbgd"))["components"]["lorentz_11"]["A"]
    comp["ifactors"] = [0.0] * 4
    st = build_background_state(specs, weights, r, module_area=area)
    assert st.source("intbgd") is not None
    comp["ifactors"] = [0.0, 1.0, 1.0, 1.0]
    with pytest.raises(NuskybgdError, match="intbgd:lorentz_11: the presets .* reference spectrum 1"):
        build_background_state(specs, weights, r, module_area=area)


def test_bootstrap_recorded_in_gain_json(stack_dir, tmp_path):
    tasks = [dataclasses.replace(t, fit_gain=True, bootstrap=3) for t in two_groups(stack_dir)[:1]]
    index = calibrate(tasks, tmp_path / "cal", plot=False)
    gain = json.loads((tmp_path / "cal" / index["epochs"][0]["files"]["gain"]["path"]).read_text())
    det = gain["modules"]["A"]["detectors"]["DET0"]
    assert det["gain_error_method"] == "bootstrap 3"
    assert np.isfinite(det["slope_error"]) and det["slope_error"] > 0


@pytest.mark.parametrize("n", ["-2", "1"])
def test_cli_bootstrap_checked(stack_dir, tmp_path, n):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "nuskybgd", "calibrate", str(stack_dir), str(tmp_path / "cal"),
                        "--serial", "--bootstrap", n], capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--bootstrap" in lines[0]
    assert not (tmp_path / "cal").exists()


def test_added_lines_fitted_and_written(stack_dir, tmp_path):
    """--add-lines: the lines enter every group's model and the bundle (FPMA DET0 fitted, the simulated
    data have no such line; FPMB, without groups, keeps the starting ifactors, 1e-3 x the apec's)."""
    tasks = [dataclasses.replace(t, add_lines=(6.4, 7.472)) for t in two_groups(stack_dir)]
    index = calibrate(tasks, tmp_path / "cal", plot=False)
    ratios = json.loads((tmp_path / "cal" / index["epochs"][0]["files"]["ratios"]["path"]).read_text())
    comps = ratios["models"][1]["components"]
    for name, e in (("lorentz_31", 6.4), ("lorentz_32", 7.472)):
        assert comps[name]["A"]["linee"] == pytest.approx(e, abs=0.05)
        ifac = comps[name]["A"]["ifactors"]
        assert all(v >= 0 for v in ifac) and (max(ifac) == 0 or min(ifac) > 0)  # never a 0 beside a > 0
        apec = comps["apec"]["A"]["ifactors"]
        # DET1-3 had no group: the fitted line/apec ratio of DET0 times their apec ifactors
        assert [v / a for v, a in zip(ifac, apec)] == pytest.approx([ifac[0] / apec[0]] * 4, rel=1e-9, abs=1e-300)
        apec_b = component_presets("B").apec.ifactors
        assert comps[name]["B"]["ifactors"] == pytest.approx([1e-3 * v for v in apec_b], rel=1e-12)
    gain = json.loads((tmp_path / "cal" / index["epochs"][0]["files"]["gain"]["path"]).read_text())
    assert "intbgd.lorentz_31" in gain["modules"]["A"]["detectors"]["DET0"]["norms"]
    assert len(component_presets("A", ratios).lines) == len(component_presets("A").lines) + 2
    mixed = [tasks[0], dataclasses.replace(tasks[1], add_lines=())]
    with pytest.raises(NuskybgdError, match="same lines"):
        calibrate(mixed, tmp_path / "cal2", plot=False)


@pytest.mark.parametrize("value", ["abc", "6.4,200"])
def test_cli_add_lines_checked(stack_dir, tmp_path, value):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "nuskybgd", "calibrate", str(stack_dir), str(tmp_path / "cal"),
                        "--serial", f"--add-lines={value}"], capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--add-lines" in lines[0]
    assert not (tmp_path / "cal").exists()


def test_bootstrap_replicas_auto_and_checked():
    from nuskybgd.analysis.calibrate import AUTO_BOOTSTRAP, AUTO_BOOTSTRAP_MAX_COUNTS, bootstrap_replicas
    assert bootstrap_replicas("auto", 0.5 * AUTO_BOOTSTRAP_MAX_COUNTS) == AUTO_BOOTSTRAP
    assert bootstrap_replicas("auto", 2 * AUTO_BOOTSTRAP_MAX_COUNTS) == 0
    assert bootstrap_replicas(0, 10) == 0 and bootstrap_replicas(5, 10) == 5
    for bad in (-1, 1, 2, 2.5, "many", True):
        with pytest.raises(NuskybgdError, match="bootstrap"):
            bootstrap_replicas(bad, 10)
