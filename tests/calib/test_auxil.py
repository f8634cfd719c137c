"""Calibration bundle access: lookup order env -> cache -> verified download."""

import hashlib
import os
from pathlib import Path

import pytest

from nuskybgd.calib import auxil
from nuskybgd.calib.auxil import (
    BUNDLE_FILES,
    auxil_path,
    cache_dir,
    download_auxil,
    load_nomapbgdparams,
    load_ratios,
)
from nuskybgd.errors import NuskybgdError


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No bundle anywhere: empty env folder, empty cache, unreachable upstream."""
    env = tmp_path / "env"
    cache = tmp_path / "cache"
    env.mkdir()
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(env))
    monkeypatch.setenv("NUSKYBGD_CACHE", str(cache))
    monkeypatch.setenv("NUSKYBGD_AUXIL_URL", (tmp_path / "no-such-server").as_uri() + "/")
    auxil._load_json.cache_clear()
    yield dict(env=env, cache=cache, root=tmp_path)
    auxil._load_json.cache_clear()


def _open_fds():
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def test_bundle_checksums_match_shared_copy(auxil_dir):
    for name, digest in BUNDLE_FILES.items():
        assert hashlib.sha256((auxil_dir / name).read_bytes()).hexdigest() == digest, name


def test_env_first(isolated, auxil_dir, monkeypatch):
    isolated["cache"].mkdir()
    (isolated["cache"] / "ratios.json").write_text("{}")
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(auxil_dir))
    assert auxil_path("ratios.json") == auxil_dir / "ratios.json"


def test_cache_second(isolated):
    isolated["cache"].mkdir()
    (isolated["cache"] / "be.arf").write_bytes(b"cached")
    # the env folder lacks the file and the upstream is unreachable: the cache answers
    assert auxil_path("be.arf") == isolated["cache"] / "be.arf"


def test_download_third_then_cached(isolated, auxil_dir, monkeypatch):
    monkeypatch.setenv("NUSKYBGD_AUXIL_URL", auxil_dir.as_uri() + "/")
    p = auxil_path("nomapbgdparams.dat")
    assert p == isolated["cache"] / "nomapbgdparams.dat"
    assert p.read_bytes() == (auxil_dir / "nomapbgdparams.dat").read_bytes()
    # now cached: found without any upstream
    monkeypatch.setenv("NUSKYBGD_AUXIL_URL", (isolated["root"] / "gone").as_uri() + "/")
    assert auxil_path("nomapbgdparams.dat") == p
    assert load_nomapbgdparams()["A"]["norm"] == pytest.approx(0.32)


def test_download_corrupted_file_not_cached(isolated, auxil_dir, monkeypatch):
    server = isolated["root"] / "server"
    server.mkdir()
    data = bytearray((auxil_dir / "ratios.json").read_bytes())
    data[100] ^= 0x01
    (server / "ratios.json").write_bytes(bytes(data))
    monkeypatch.setenv("NUSKYBGD_AUXIL_URL", server.as_uri() + "/")
    with pytest.raises(NuskybgdError, match="sha256 mismatch .* nothing cached"):
        download_auxil("ratios.json", progress=False)
    assert not list(isolated["cache"].iterdir())  # no file, no partial download
    with pytest.raises(NuskybgdError, match="sha256 mismatch"):
        auxil_path("ratios.json")
    assert not list(isolated["cache"].iterdir())


def test_nothing_found_names_three_places(isolated):
    with pytest.raises(NuskybgdError) as exc:
        auxil_path("diag.rmf")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("diag.rmf:")
    assert str(isolated["env"]) in msg                      # $NUSKYBGD_AUXIL
    assert str(isolated["cache"]) in msg                    # user cache
    assert "upstream" in msg and "download failed" in msg   # the download attempt
    assert "NUSKYBGD_AUXIL" in msg                          # the remedy


def test_failed_download_leaves_nothing(isolated):
    before = _open_fds()
    for _ in range(5):
        with pytest.raises(NuskybgdError, match="download failed"):
            download_auxil("be.arf", progress=False)
    assert not list(isolated["cache"].iterdir())
    assert _open_fds() == before  # the temporary file's descriptor is closed


def test_unknown_name(isolated):
    with pytest.raises(NuskybgdError, match="not a file of the nuskybgd calibration bundle"):
        download_auxil("secret.txt")
    with pytest.raises(NuskybgdError, match="download not attempted"):
        auxil_path("secret.txt")


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("NUSKYBGD_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("NUSKYBGD_CACHE")
    assert cache_dir() == tmp_path / "x" / "nuskybgd" / "auxil"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "nuskybgd" / "auxil"


def test_load_nomapbgdparams_matches_file(auxil_dir):
    vals = [float(line.split("#", 1)[0]) for line in (auxil_dir / "nomapbgdparams.dat").read_text().splitlines()
            if line.split("#", 1)[0].strip()]
    p = load_nomapbgdparams()
    assert [p["A"]["norm"], p["B"]["norm"], p["A"]["const"], p["B"]["const"], p["A"]["xshift_mm"],
            p["A"]["yshift_mm"], p["A"]["rotation"], p["B"]["xshift_mm"], p["B"]["yshift_mm"],
            p["B"]["rotation"]] == vals


@pytest.mark.parametrize("text,match", [("0.32\n0.32\n", "expected 10 numbers, found 2"),
                                        ("0.32\nabc\n", "cannot parse line 'abc'")])
def test_load_nomapbgdparams_bad(isolated, text, match):
    (isolated["env"] / "nomapbgdparams.dat").write_text(text)
    with pytest.raises(NuskybgdError, match=match):
        load_nomapbgdparams()


def test_load_ratios(auxil_dir):
    r = load_ratios()
    assert len(r["models"]) == 4


def test_load_ratios_bad_json(isolated):
    (isolated["env"] / "ratios.json").write_text("{not json")
    with pytest.raises(NuskybgdError, match="ratios.json: cannot read presets"):
        load_ratios()
