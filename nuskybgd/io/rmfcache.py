"""A verified on-disk cache of large RMFs.

Reading a real NuSTAR RMF (4096 energies x 4096 channels, 25 MB gzipped,
64 MB of float32 matrix values) through astropy and Sherpa takes 1-2 s on
every run: the gzip stream is inflated and every variable-length MATRIX row
is converted. The cache keeps the compressed matrix of such a file as
``.npy`` arrays so that later reads take a few tens of milliseconds.

Key and verification (what is trusted, and why)
-----------------------------------------------
* The entry of a file is named by the **sha256 of the whole file**. Hashing
  the real 25 MB gzipped RMF costs ~15 ms (about 1.2 ms per MB), a small
  price next to the read it saves, and it makes the cache content-addressed:
  an edited or replaced file (even one with the same size and mtime) never
  meets a stale entry, and copies of one file share one entry. A key of
  size + mtime + partial hashes would save those milliseconds but can be
  fooled by a rewrite that keeps both.
* Every array of an entry is listed in its ``meta.json`` with its dtype,
  shape and sha256; a read recomputes the sha256 of every array and
  rejects the entry on any mismatch, missing file or unreadable manifest.
  A rejected entry is deleted and rebuilt from the RMF, never used.
* Entries are written into a temporary folder inside the cache and renamed
  into place in one step (``os.rename`` of a folder is atomic on POSIX), so
  a reader sees a complete entry or none; a concurrent writer of the same
  entry simply loses the race.

Storage
-------
The matrix is stored in OGIP compressed form with exact zeros dropped (the
real RMF stores 16.8 M elements of which 7.0 M are non-zero); element values
are kept as float32 when that is exact (the file's MATRIX column is float32,
so it always is for OGIP files) and float64 otherwise. Dropping zeros
changes the grouping arrays (N_GRP/F_CHAN/N_CHAN) but not the response: the
dense matrix and every folded spectrum are identical.

The cache folder is ``$NUSKYBGD_CACHE/rmf`` if ``NUSKYBGD_CACHE`` is set,
else ``$XDG_CACHE_HOME/nuskybgd/rmf`` (``~/.cache/nuskybgd/rmf``).
``NUSKYBGD_RMF_CACHE=0`` turns the cache off. When the folder cannot be
written the RMF is simply read without the cache (logged at DEBUG level).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["CACHE_VERSION", "MIN_CACHED_BYTES", "rmf_cache_dir", "cache_enabled", "file_sha256",
           "compress_groups", "load_entry", "store_entry"]

#: Format version of an entry (part of its folder name).
CACHE_VERSION = 1
#: Files smaller than this (bytes) are read directly: they are fast already.
MIN_CACHED_BYTES = 4 * 2 ** 20

_ARRAYS = ("energ_lo", "energ_hi", "n_grp", "f_chan", "n_chan", "matrix", "e_min", "e_max")
log = logging.getLogger("nuskybgd")


def rmf_cache_dir():
    """Folder of the RMF cache.

    Returns
    -------
    pathlib.Path
        ``$NUSKYBGD_CACHE/rmf``, else ``$XDG_CACHE_HOME/nuskybgd/rmf``
        (``~/.cache/nuskybgd/rmf`` by default). It may not exist yet.
    """
    if os.environ.get("NUSKYBGD_CACHE"):
        return Path(os.environ["NUSKYBGD_CACHE"]) / "rmf"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nuskybgd" / "rmf"


def cache_enabled():
    """False when ``NUSKYBGD_RMF_CACHE`` is ``0``, ``no``, ``off`` or ``false``.

    Returns
    -------
    bool
        Whether :func:`nuskybgd.io.ogip.read_rmf` uses the cache by default.
    """
    return os.environ.get("NUSKYBGD_RMF_CACHE", "1").strip().lower() not in ("0", "no", "off", "false")


def file_sha256(path, chunk=1 << 22):
    """sha256 of a whole file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    chunk : int
        Read size (bytes).

    Returns
    -------
    str
        Hexadecimal digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def compress_groups(n_grp, f_chan, n_chan, matrix):
    """Regroup an OGIP compressed matrix without its exact zeros.

    Parameters
    ----------
    n_grp : array_like, shape (n_energy,)
        Groups per energy row.
    f_chan, n_chan : array_like, shape (n_groups,)
        First channel and channel count of each group (flattened over rows).
    matrix : array_like, shape (sum(n_chan),)
        Element values, row by row and group by group.

    Returns
    -------
    n_grp, f_chan, n_chan : numpy.ndarray of uint64
        The new grouping: runs of consecutive channels with non-zero values.
    values : numpy.ndarray of float64
        The non-zero values in the same order.

    Raises
    ------
    ValueError
        When the grouping arrays do not add up.
    """
    n_grp = np.asarray(n_grp, np.int64).ravel()
    f_chan = np.asarray(f_chan, np.int64).ravel()
    n_chan = np.asarray(n_chan, np.int64).ravel()
    values = np.asarray(matrix, float).ravel()
    if n_grp.sum() != f_chan.size or n_chan.size != f_chan.size or n_chan.sum() != values.size:
        raise ValueError("inconsistent RMF groups (N_GRP/F_CHAN/N_CHAN/MATRIX)")
    group_row = np.repeat(np.arange(n_grp.size, dtype=np.int64), n_grp)
    group_start = np.cumsum(n_chan) - n_chan
    elem_group = np.repeat(np.arange(n_chan.size, dtype=np.int64), n_chan)
    keep = np.flatnonzero(values != 0)
    g = elem_group[keep]
    del elem_group
    chan = f_chan[g] + (keep - group_start[g])
    row = group_row[g]
    new = np.ones(keep.size, bool)
    if keep.size:
        new[1:] = (row[1:] != row[:-1]) | (chan[1:] != chan[:-1] + 1)
    starts = np.flatnonzero(new)
    out_n_chan = np.diff(np.append(starts, keep.size))
    out_n_grp = np.bincount(row[starts], minlength=n_grp.size)
    return (out_n_grp.astype(np.uint64), chan[starts].astype(np.uint64), out_n_chan.astype(np.uint64),
            values[keep])


def _entry_dir(root, digest):
    return Path(root) / f"{digest}.v{CACHE_VERSION}"


def _json_value(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return str(v)


def store_entry(root, digest, rmf):
    """Write the cache entry of an RMF (atomically).

    Parameters
    ----------
    root : str or os.PathLike
        Cache folder (created if needed).
    digest : str
        sha256 of the RMF file (:func:`file_sha256`).
    rmf : sherpa.astro.data.DataRMF
        The RMF as read from the file.

    Returns
    -------
    pathlib.Path
        The entry folder.

    Raises
    ------
    OSError
        When the cache cannot be written.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = _entry_dir(root, digest)
    n_grp, f_chan, n_chan, values = compress_groups(rmf.n_grp, rmf.f_chan, rmf.n_chan, rmf.matrix)
    v32 = values.astype(np.float32)
    if np.array_equal(v32.astype(np.float64), values):
        values = v32
    arrays = {"energ_lo": np.asarray(rmf.energ_lo, float), "energ_hi": np.asarray(rmf.energ_hi, float),
              "n_grp": n_grp, "f_chan": f_chan, "n_chan": n_chan, "matrix": values}
    for k in ("e_min", "e_max"):
        v = getattr(rmf, k, None)
        if v is not None:
            arrays[k] = np.asarray(v, float)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}.", dir=root))
    try:
        manifest = {"version": CACHE_VERSION, "source_sha256": digest, "detchans": int(rmf.detchans),
                    "offset": int(rmf.offset), "ethresh": rmf.ethresh,
                    "header": {str(k): _json_value(v) for k, v in (rmf.header or {}).items()},
                    "arrays": {}}
        for k, a in arrays.items():
            a = np.ascontiguousarray(a)
            np.save(tmp / f"{k}.npy", a, allow_pickle=False)
            manifest["arrays"][k] = {"dtype": a.dtype.str, "shape": list(a.shape),
                                     "sha256": hashlib.sha256(a.data).hexdigest()}
        (tmp / "meta.json").write_text(json.dumps(manifest))
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process stored it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_entry(root, digest):
    """Read and verify a cache entry.

    Parameters
    ----------
    root : str or os.PathLike
        Cache folder.
    digest : str
        sha256 of the RMF file.

    Returns
    -------
    dict or None
        ``detchans``, ``offset``, ``ethresh``, ``header`` and the arrays
        (``energ_lo``, ``energ_hi``, ``n_grp``, ``f_chan``, ``n_chan``,
        ``matrix`` as float64, ``e_min``, ``e_max``); None when there is no
        entry. A damaged entry (missing or extra-short file, checksum,
        dtype or shape mismatch, unreadable manifest) is deleted and None
        is returned.
    """
    entry = _entry_dir(root, digest)
    if not entry.is_dir():
        return None
    try:
        manifest = json.loads((entry / "meta.json").read_text())
        if manifest.get("version") != CACHE_VERSION or manifest.get("source_sha256") != digest:
            raise ValueError("manifest does not match the entry")
        out = {k: manifest[k] for k in ("detchans", "offset", "ethresh", "header")}
        for k, spec in manifest["arrays"].items():
            if k not in _ARRAYS:
                raise ValueError(f"unexpected array {k}")
            a = np.load(entry / f"{k}.npy", allow_pickle=False)
            if a.dtype.str != spec["dtype"] or list(a.shape) != spec["shape"]:
                raise ValueError(f"{k}.npy: dtype/shape differ from the manifest")
            if hashlib.sha256(np.ascontiguousarray(a).data).hexdigest() != spec["sha256"]:
                raise ValueError(f"{k}.npy: checksum mismatch")
            out[k] = a
        for k in ("energ_lo", "energ_hi", "n_grp", "f_chan", "n_chan", "matrix"):
            if k not in out:
                raise ValueError(f"{k}.npy missing")
        out["matrix"] = out["matrix"].astype(np.float64)
        return out
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        log.warning("RMF cache entry %s is damaged (%s): rebuilding it", entry, exc)
        shutil.rmtree(entry, ignore_errors=True)
        return None
