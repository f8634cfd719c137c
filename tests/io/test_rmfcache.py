"""The verified RMF cache (nuskybgd.io.rmfcache, read_rmf(cache=...))."""

import json
import logging

import numpy as np
import pytest

from nuskybgd.io import rmfcache
from nuskybgd.io.ogip import read_rmf, rmf_matrix, write_rmf


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("NUSKYBGD_CACHE", str(root))
    monkeypatch.delenv("NUSKYBGD_RMF_CACHE", raising=False)
    return root / "rmf"


@pytest.fixture(scope="module")
def real_rmf_path(shared_caldb):
    return shared_caldb / "nuAdet3_20100101v002.rmf.gz"


@pytest.fixture(scope="module")
def real_rmf_direct(real_rmf_path):
    return read_rmf(real_rmf_path, cache=False)


def _entries(root):
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def _same_response(a, b):
    assert a.detchans == b.detchans and a.offset == b.offset and a.ethresh == b.ethresh
    for k in ("energ_lo", "energ_hi", "e_min", "e_max"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert a.header == b.header
    np.testing.assert_array_equal(rmf_matrix(a), rmf_matrix(b))
    x = np.random.default_rng(3).random(len(a.energ_lo))
    np.testing.assert_array_equal(a.apply_rmf(x), b.apply_rmf(x))


def test_real_rmf_cached_read_equals_direct_read(cache, real_rmf_path, real_rmf_direct):
    first = read_rmf(real_rmf_path)  # large file: cached by default
    entries = _entries(cache)
    assert len(entries) == 1
    assert entries[0].name.startswith(rmfcache.file_sha256(real_rmf_path))
    second = read_rmf(real_rmf_path)
    assert second.name == str(real_rmf_path)
    # zeros dropped: fewer stored elements, same response
    assert second.matrix.size == np.count_nonzero(real_rmf_direct.matrix) < real_rmf_direct.matrix.size
    _same_response(first, real_rmf_direct)
    _same_response(second, real_rmf_direct)


def _small_rmf(path, seed=0, n=40):
    rng = np.random.default_rng(seed)
    lo = 1.6 + 0.04 * np.arange(n)
    m = np.zeros((n, n))
    for i in range(n):
        w = rng.integers(1, 6)
        m[i, max(0, i - w):i + w] = rng.random(min(n, i + w) - max(0, i - w))
    m[5, 2:9] = 0.5
    m[5, 5] = 0.0  # an interior zero splits a group
    m[9] = 0.0  # an empty row
    write_rmf(path, lo, lo + 0.04, m.astype(np.float32), lo, lo + 0.04, clobber=True)
    return m.astype(np.float32).astype(float)


def test_small_rmf_not_cached_by_default_but_on_request(cache, tmp_path):
    dense = _small_rmf(tmp_path / "a.rmf")
    read_rmf(tmp_path / "a.rmf")
    assert _entries(cache) == []
    r1 = read_rmf(tmp_path / "a.rmf", cache=True)
    r2 = read_rmf(tmp_path / "a.rmf", cache=True)
    assert len(_entries(cache)) == 1
    np.testing.assert_array_equal(rmf_matrix(r2), dense)
    assert r2.n_grp[9] == 0 and r2.n_grp[5] == 2
    _same_response(r1, r2)


def test_cache_off_by_environment(cache, tmp_path, monkeypatch, real_rmf_path):
    monkeypatch.setenv("NUSKYBGD_RMF_CACHE", "0")
    _small_rmf(tmp_path / "a.rmf")
    read_rmf(tmp_path / "a.rmf")
    read_rmf(real_rmf_path)
    assert _entries(cache) == []


def test_changed_file_gets_a_new_entry(cache, tmp_path):
    path = tmp_path / "a.rmf"
    _small_rmf(path, seed=0)
    read_rmf(path, cache=True)
    dense = _small_rmf(path, seed=1)  # rewritten in place
    again = read_rmf(path, cache=True)
    np.testing.assert_array_equal(rmf_matrix(again), dense)
    assert len(_entries(cache)) == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest", "dtype"])
def test_damaged_entry_is_detected_and_rebuilt(cache, tmp_path, damage, caplog):
    path = tmp_path / "a.rmf"
    dense = _small_rmf(path)
    read_rmf(path, cache=True)
    (entry,) = _entries(cache)
    npy = entry / "matrix.npy"
    if damage == "flip":
        raw = bytearray(npy.read_bytes())
        raw[-3] ^= 0x40
        npy.write_bytes(bytes(raw))
    elif damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-8])
    elif damage == "delete":
        npy.unlink()
    elif damage == "manifest":
        (entry / "meta.json").write_text("{not json")
    else:  # a well-formed array of the wrong type
        np.save(npy, np.load(npy).astype(np.float64))
        meta = json.loads((entry / "meta.json").read_text())
        assert meta["arrays"]["matrix"]["dtype"] != "<f8"
    with caplog.at_level(logging.WARNING, logger="nuskybgd"):
        rebuilt = read_rmf(path, cache=True)
    assert "damaged" in caplog.text
    np.testing.assert_array_equal(rmf_matrix(rebuilt), dense)
    # the entry was rebuilt and is good again
    (entry2,) = _entries(cache)
    assert rmfcache.load_entry(cache, entry2.name.split(".")[0]) is not None


def test_unwritable_cache_falls_back_to_a_direct_read(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NUSKYBGD_CACHE", str(blocker))
    path = tmp_path / "a.rmf"
    dense = _small_rmf(path)
    np.testing.assert_array_equal(rmf_matrix(read_rmf(path, cache=True)), dense)


def test_no_partial_entry_left_when_writing_fails(cache, tmp_path, monkeypatch):
    path = tmp_path / "a.rmf"
    _small_rmf(path)

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(rmfcache.os, "rename", fail)
    read_rmf(path, cache=True)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_compress_groups_keeps_every_nonzero_element():
    rng = np.random.default_rng(7)
    dense = rng.random((30, 25)) * (rng.random((30, 25)) < 0.3)
    dense[4] = 0
    # one full-row group per energy, as CALDB files store them
    n_grp, f_chan, n_chan, values = rmfcache.compress_groups(np.ones(30), np.zeros(30), np.full(30, 25),
                                                             dense.ravel())
    rebuilt = np.zeros_like(dense)
    g = v = 0
    for i in range(30):
        for _ in range(int(n_grp[i])):
            c0, n = int(f_chan[g]), int(n_chan[g])
            rebuilt[i, c0:c0 + n] = values[v:v + n]
            g += 1
            v += n
    np.testing.assert_array_equal(rebuilt, dense)
    assert values.size == np.count_nonzero(dense) and np.all(values != 0)
    with pytest.raises(ValueError):
        rmfcache.compress_groups([1], [0], [3], [1.0, 2.0])


def test_fifo_is_not_hashed(cache, tmp_path):
    """cache=True on a FIFO must not block in the hash: the reader's own checks answer."""
    import os

    from nuskybgd.errors import NuskybgdError

    fifo = tmp_path / "pipe.rmf"
    os.mkfifo(fifo)
    with pytest.raises(NuskybgdError):
        read_rmf(fifo, cache=True)
