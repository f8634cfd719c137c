"""Reading calibration bundles: epoch selection by date, checksums, clear errors."""

import hashlib
import json

import pytest

from nuskybgd.errors import NuskybgdError
from nuskybgd.io.calibration import select_bundle


def _bundle(root, epochs):
    root.mkdir()
    index = {"format": "nuskybgd-calibration-1", "version": "7", "epochs": []}
    for lab, start, stop in epochs:
        (root / lab).mkdir()
        files = {}
        for kind in ("ratios", "gain"):
            p = root / lab / f"{kind}.json"
            p.write_text(json.dumps({"epoch": lab, "kind": kind}))
            files[kind] = {"path": f"{lab}/{kind}.json", "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        index["epochs"].append({"epoch": lab, "start": start, "stop": stop, "files": files})
    (root / "calibration.json").write_text(json.dumps(index))
    return root


def test_epoch_containing_the_date(tmp_path):
    cal = _bundle(tmp_path / "cal", [("2014", "2014-01-01T00:00:00", "2015-01-01T00:00:00"),
                                     ("2015", "2015-01-01T00:00:00", "2016-01-01T00:00:00")])
    b = select_bundle(cal, "2015-03-04T05:06:07")
    assert b.epoch == "2015" and b.ratios == {"epoch": "2015", "kind": "ratios"} and b.version == "7"
    assert select_bundle(cal, "2014-12-31T23:59:59").epoch == "2014"
    assert select_bundle(cal, "2015-01-01T00:00:00").epoch == "2015"  # start inclusive


def test_date_outside_every_epoch(tmp_path):
    cal = _bundle(tmp_path / "cal", [("2014", "2014-01-01T00:00:00", "2015-01-01T00:00:00")])
    with pytest.raises(NuskybgdError, match=r"no calibration epoch contains 2016-01-01.*2014-01-01 \.\. 2015-01-01"):
        select_bundle(cal, "2016-01-01")


def test_modified_file_is_refused(tmp_path):
    cal = _bundle(tmp_path / "cal", [("2014", "2014-01-01T00:00:00", "2015-01-01T00:00:00")])
    (cal / "2014" / "ratios.json").write_text("{}")
    with pytest.raises(NuskybgdError, match="sha256 differs"):
        select_bundle(cal, "2014-06-01")


def test_not_a_calibration_folder(tmp_path):
    with pytest.raises(NuskybgdError, match="calibration.json: not found"):
        select_bundle(tmp_path, "2014-06-01")
    with pytest.raises(NuskybgdError, match="not an ISO date"):
        cal = _bundle(tmp_path / "cal", [("2014", "2014-01-01T00:00:00", "2015-01-01T00:00:00")])
        select_bundle(cal, "yesterday")


def test_observation_date(tmp_path):
    from nuskybgd.io.calibration import observation_date
    from nuskybgd.io.ogip import write_pha
    p = write_pha(tmp_path / "a.pha", [1, 2, 3], 10.0, 1.0, header={"DATE-OBS": "2019-05-06T07:08:09"})
    q = write_pha(tmp_path / "b.pha", [1, 2, 3], 10.0, 1.0)
    assert observation_date([q, p]) == "2019-05-06T07:08:09"
    with pytest.raises(NuskybgdError, match="no DATE-OBS"):
        observation_date([q])
