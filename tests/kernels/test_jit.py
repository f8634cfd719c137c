"""numba caching where no cache folder is writable (nuskybgd.kernels.jit)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nuskybgd
from nuskybgd.kernels import jit

PROBE = """
import numpy as np
import nuskybgd.fitting.solver as E
from numba.core import config
out = E._matvec(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([10.0, 20.0, 30.0]), np.array([2, 0]),
                np.array([0.5, 0.0]), np.zeros(2))
assert out[0] == 50.5 and out[1] == 130.0
print("CACHE_DIR=" + str(config.CACHE_DIR))
"""


@pytest.fixture()
def read_only_install(tmp_path):
    """A copy of the package whose __pycache__ folders cannot be made, and a home that cannot be written."""
    root = tmp_path / "site"
    shutil.copytree(Path(nuskybgd.__file__).parent, root / "nuskybgd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for d in [root / "nuskybgd", *(p for p in (root / "nuskybgd").rglob("*") if p.is_dir())]:
        (d / "__pycache__").write_text("a file where numba wants a folder")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "NUSKYBGD_CACHE")}
    env.update(PYTHONPATH=str(root), HOME=str(blocker / "home"), PYTHONDONTWRITEBYTECODE="1")
    return root, env, tmp_path


def _run(args, env, cwd):
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_no_writable_cache_does_not_break_import_or_help(read_only_install):
    root, env, tmp = read_only_install
    # numba by itself refuses to import such a module: the situation of issue 14
    probe = root / "nuskybgd" / "bare_numba.py"
    probe.write_text("import numba\n@numba.njit(cache=True)\ndef f(x):\n    return x\n")
    bare = _run([str(probe)], env, tmp)
    assert bare.returncode != 0 and "cannot cache function" in bare.stderr
    res = _run(["-m", "nuskybgd", "--help"], env, tmp)
    assert res.returncode == 0 and "projbgd" in res.stdout
    # the fallback folder in the temporary directory
    tmpdir = tmp / "tmp"
    tmpdir.mkdir()
    res = _run(["-c", PROBE], dict(env, TMPDIR=str(tmpdir)), tmp)
    assert res.returncode == 0, res.stderr
    assert f"CACHE_DIR={tmpdir}/nuskybgd-numba-" in res.stdout
    assert any(tmpdir.rglob("*.nbi"))  # the cache index was written there
    # $NUSKYBGD_CACHE wins
    res = _run(["-c", PROBE], dict(env, NUSKYBGD_CACHE=str(tmp / "user")), tmp)
    assert res.returncode == 0 and f"CACHE_DIR={tmp / 'user' / 'numba'}" in res.stdout


def test_nothing_writable_compiles_in_memory(read_only_install):
    root, env, tmp = read_only_install
    res = _run(["-c", PROBE], dict(env, NUSKYBGD_CACHE=str(tmp / "blocker" / "cache")), tmp)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "CACHE_DIR="


def test_njit_forms():
    @jit.njit
    def plain(x):
        return x + 1

    @jit.njit(cache=False, nogil=True)
    def opts(x):
        return 2 * x

    assert plain(1) == 2 and opts(np.float64(2.0)) == 4.0
