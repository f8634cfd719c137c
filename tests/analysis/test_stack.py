"""stack: observation table, grouping by epoch, honest headers, bad input leaves nothing behind."""

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from nuskybgd.analysis.stack import epoch_bins, scan_archive, stack_archive
from nuskybgd.cli import main
from nuskybgd.errors import NuskybgdError


@pytest.fixture(scope="module")
def stacked(tiny_archive, tmp_path_factory):
    root, _ = tiny_archive
    out = tmp_path_factory.mktemp("stack") / "s"
    return root, out, stack_archive(root, out)


def _events(path):
    with fits.open(path) as h:
        return h["EVENTS"].data["DET_ID"].copy(), h["EVENTS"].data["PI"].copy(), dict(h["EVENTS"].header)


def test_groups_sum_the_occultation_events(stacked):
    root, out, index = stacked
    found = scan_archive(root)
    assert len(index["groups"]) == 2 * 2 * 4  # two yearly epochs x two modules x four detectors
    for g in index["groups"]:
        pha = out / g["file"]
        with fits.open(pha) as h:
            spec, hdr, obs = h["SPECTRUM"].data, h["SPECTRUM"].header, h["OBSLIST"].data
            assert hdr["INSTRUME"] == f"FPM{g['module']}" and hdr["DETNAM"] == f"DET{g['det']}"
            assert hdr["EPOCH"] == g["epoch"] and hdr["EPOCHBEG"].startswith(g["epoch"])
            assert hdr["SELECT"] == "OCCULTATION" and hdr["DATAMODE"] == "02"
            expected = np.zeros(4096, np.int64)
            expo = 0.0
            for obsid in obs["OBSID"]:
                det, pi, evh = _events(found[obsid][(g["module"], "02")])
                expected += np.bincount(pi[det == g["det"]], minlength=4096)
                expo += evh["EXPOSURE"]
            assert np.array_equal(spec["COUNTS"], expected)
            assert hdr["EXPOSURE"] == pytest.approx(expo)
            assert hdr["AREA"] > 20000 and hdr["MODAREA"] > 3 * hdr["AREA"]
            assert hdr["NOBS"] == len(obs) == g["n_obs"]


def test_observation_table(stacked):
    _root, out, _index = stacked
    t = Table.read(out / "observations.ecsv", format="ascii.ecsv")
    assert len(t) == 4  # 2 observations x 2 modules
    assert set(t["mode"]) == {"02"} and set(t["selection"]) == {"occultation"}
    assert np.all(t["exposure"] > 0) and np.all(t["tstop"] > t["tstart"])
    assert np.all(t["counts"] == t["events_in_file"])


def test_science_selection_excludes_the_source(tiny_archive, tmp_path):
    root, _results = tiny_archive
    index = stack_archive(root, tmp_path / "sci", selection="science", exclude="source.reg")
    t = Table.read(tmp_path / "sci" / "observations.ecsv", format="ascii.ecsv")
    assert set(t["mode"]) == {"01"}
    assert np.all(t["counts"] < t["events_in_file"])  # the source circle removed events
    full = [float(x) for x in t[0]["area_det0", "area_det1", "area_det2", "area_det3"]]
    assert min(full) > 0
    with fits.open(tmp_path / "sci" / index["groups"][0]["file"]) as h:
        assert h["SPECTRUM"].header["AREAMETH"] == "MEDIAN_ASPECT"


def test_epoch_schemes():
    q = epoch_bins("quarter", 1.4e8, 1.5e8)
    assert all(lab[4] == "Q" for lab, _, _ in q)
    e = epoch_bins("2013-01-01,2016-01-01,2021-01-01", 0, 1)
    assert [x[0] for x in e] == ["E01", "E02"]
    with pytest.raises(NuskybgdError, match="increase"):
        epoch_bins("2016-01-01,2013-01-01", 0, 1)


def test_explicit_epochs(tiny_archive, tmp_path):
    root, _ = tiny_archive
    index = stack_archive(root, tmp_path / "e", epochs="2013-01-01,2021-01-01")
    assert {g["epoch"] for g in index["groups"]} == {"E01"}
    assert all(g["n_obs"] == 2 for g in index["groups"])


def test_empty_archive_is_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["stack", str(tmp_path / "empty"), str(tmp_path / "out"), "--serial"])
    err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert err.startswith("nuskybgd stack: error:")
    assert rc == 2 and "no cleaned event files" in err
    assert not (tmp_path / "out").exists()


def test_missing_occultation_file(tiny_archive, tmp_path, capsys):
    root, results = tiny_archive
    copy = tmp_path / "arch"
    shutil.copytree(root, copy, symlinks=True)
    obsid = results[0]["obsid"]
    (copy / obsid / "event_cl" / f"nu{obsid}B02_cl.evt").unlink()
    rc = main(["stack", str(copy), str(tmp_path / "out"), "--serial"])
    err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert rc == 2 and f"nu{obsid}B02_cl.evt" in err
    assert not (tmp_path / "out").exists()


def test_zero_exposure_group(tiny_archive, tmp_path, capsys):
    root, results = tiny_archive
    copy = tmp_path / "arch"
    shutil.copytree(root, copy, symlinks=True)
    obsid = results[0]["obsid"]
    for m in "AB":
        with fits.open(copy / obsid / "event_cl" / f"nu{obsid}{m}02_cl.evt", mode="update") as h:
            h["EVENTS"].header["EXPOSURE"] = 0.0
    rc = main(["stack", str(copy), str(tmp_path / "out"), "--serial"])
    err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert rc == 2 and "zero exposure" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_existing_outputs_kept_without_clobber(stacked):
    root, out, _index = stacked
    before = json.loads((out / "stack.json").read_text())
    with pytest.raises(NuskybgdError, match="exists"):
        stack_archive(root, out)
    assert json.loads((out / "stack.json").read_text()) == before
