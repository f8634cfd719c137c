"""bgdinfo.json loading: paths, options, one-line errors naming the entry."""

import json

import pytest

from nuskybgd.errors import NuskybgdError
from nuskybgd.io.bgdinfo import TEMPLATE, load_bgdinfo

FILES = ["s1.pha", "s2.pha", "r1.reg", "r2.reg", "apA.fits", "apB.fits"] + \
    [f"det{k}{m}.fits" for m in "AB" for k in range(4)]


def _info(**over):
    d = {"bgfiles": ["s1.pha", "s2.pha"], "regfiles": ["r1.reg", "r2.reg"], "refimgf": "apA.fits",
         "bgdapfiles": {"A": "apA.fits", "B": "apB.fits"},
         "bgddetfiles": {m: [f"det{k}{m}.fits" for k in range(4)] for m in "AB"}}
    d.update(over)
    return d


@pytest.fixture
def folder(tmp_path):
    for f in FILES:
        (tmp_path / f).write_text("x")
    return tmp_path


def _write(folder, d):
    p = folder / "bgdinfo.json"
    p.write_text(json.dumps(d) if not isinstance(d, str) else d)
    return p


def test_template_is_valid_json():
    d = json.loads(TEMPLATE)
    assert len(d["bgfiles"]) == len(d["regfiles"]) and set(d["bgddetfiles"]) == {"A", "B"}


def test_paths_resolved_relative_to_json(folder, tmp_path_factory):
    p = _write(folder, _info(fcxb_config={"links": [[1, 2]]}, intbgd_fix_line_ratios=True))
    info = load_bgdinfo(p)
    assert info.bgfiles == [folder / "s1.pha", folder / "s2.pha"]
    assert info.bgddetfiles["B"][3] == folder / "det3B.fits"
    assert info.fcxb_links == [(1, 2)] and info.intbgd_fix_line_ratios is True
    assert info.bgfiles_raw == ["s1.pha", "s2.pha"]


def test_defaults(folder):
    info = load_bgdinfo(_write(folder, _info()))
    assert info.fcxb_links == [] and info.intbgd_fix_line_ratios is False


@pytest.mark.parametrize("over, match", [
    ({"regfiles": ["r1.reg"]}, "'bgfiles' has 2 entries but 'regfiles' has 1"),
    ({"bgfiles": ["s1.pha", "missing.pha"]}, r"bgfiles\[1\] = .*missing.pha does not exist"),
    ({"regfiles": ["r1.reg", "nope.reg"]}, r"regfiles\[1\]"),
    ({"bgddetfiles": {"A": ["det0A.fits"], "B": []}}, "bgddetfiles.A' must list 4 files"),
    ({"fcxb_config": {"links": [[1, 3]]}}, r"fcxb_config.links\[0\]"),
    ({"intbgd_fix_line_ratios": "yes"}, "true or false"),
    ({"bgfiles": []}, "'bgfiles' is empty"),
    ({"refimgf": 3}, "'refimgf' must be a file name"),
])
def test_bad_entries(folder, over, match):
    p = _write(folder, _info(**over))
    with pytest.raises(NuskybgdError, match=match) as exc:
        load_bgdinfo(p)
    assert str(p) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_key(folder):
    d = _info()
    del d["refimgf"]
    with pytest.raises(NuskybgdError, match="missing 'refimgf'"):
        load_bgdinfo(_write(folder, d))


def test_not_json_and_missing_file(folder):
    with pytest.raises(NuskybgdError, match="not valid JSON"):
        load_bgdinfo(_write(folder, "{oops"))
    with pytest.raises(NuskybgdError, match="not found"):
        load_bgdinfo(folder / "absent.json")
