"""SIGKILL real ``fit`` runs at random points: the outputs are the complete old set or the complete new set.

The transaction tests (``test_robust_transactions.py``) kill a small writer
that uses :func:`nuskybgd.io.output.atomic_outputs`; here whole ``nuskybgd fit``
processes (10 output files: XCM, JSON, Sherpa script, log and six ARFs) are killed. A first run writes the "old" set; a second run with
``--clobber`` is killed after a random delay drawn over its measured wall
time (so kills land in start-up, computing, staging and the commit). Then
the next run's recovery (:func:`~nuskybgd.io.output.recover_folder`) runs,
and every output must come from the same run: either all files keep the
old inodes (the commit never happened) or none do (it completed), every
file is there, no staging folder is left, and the next run is not blocked
by the lock files of the killed one.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nuskybgd.io.output import STAGE_PREFIX, recover_folder

REPO = Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _argv_fit(c, out):
    return ["fit", c["bgdinfo"], "--savefile", out / "bg", "--caldb", c["caldb"], "--no-plot"]


def _outputs_fit(out, c):
    n = len(c["bgdinfo_dict"]["bgfiles"])
    return [out / f"bg{s}" for s in (".xcm", ".json", "_sherpa.py", ".log")] + \
        [out / f"bg_apbgd{k + 1}.arf" for k in range(n)]


TASKS = {"fit": (_argv_fit, _outputs_fit)}  # projbgd: test_robust_cases.py::test_kill_projbgd_*


def _run(argv, clobber=False, **env):
    cmd = [sys.executable, "-m", "nuskybgd", "--log-level", "WARNING", *map(str, argv)]
    return subprocess.Popen(cmd + (["--clobber"] if clobber else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(_env(), **env), text=True)


def _inodes(paths):
    return [os.stat(p).st_ino if p.exists() else None for p in paths]


def _kill_trials(chain, tmp_path, task, n_trials, seed):
    argv_of, outputs_of = TASKS[task]
    rng = random.Random(seed)
    out = tmp_path / task
    out.mkdir()
    argv = argv_of(chain, out)
    paths = outputs_of(out, chain)
    t0 = time.perf_counter()
    first = _run(argv)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    wall = time.perf_counter() - t0
    outcomes = {"old": 0, "new": 0}
    for trial in range(n_trials):
        old = _inodes(paths)
        assert None not in old
        # 0.05 s before each rename widens the commit window (10 files: 0.5 s) so that kills also
        # land between the journal and the last rename; a kill after the run ended finds the new set
        proc = _run(argv, clobber=True, NUSKYBGD_COMMIT_DELAY="0.05")
        time.sleep(rng.uniform(0.3, 1.5) * wall)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        recover_folder(out)  # what the next task naming this folder does first
        new = _inodes(paths)
        assert None not in new, (trial, [str(p) for p, i in zip(paths, new) if i is None])
        kept = [a == b for a, b in zip(old, new)]
        assert all(kept) or not any(kept), (task, trial, kept)
        outcomes["old" if all(kept) else "new"] += 1
        assert not [p.name for p in out.iterdir() if p.name.startswith(STAGE_PREFIX)]
        if task == "fit":
            json.loads((out / "bg.json").read_text())  # the set on disk is readable
    last = _run(argv, clobber=True)  # lock files of killed runs do not block the next one
    assert last.wait(timeout=600) == 0, last.stderr.read()
    assert _inodes(paths) != new
    return outcomes


@pytest.mark.parametrize("task", sorted(TASKS))
def test_kill_real_task(chain, tmp_path, task):
    outcomes = _kill_trials(chain, tmp_path, task, 3, seed=7)
    assert sum(outcomes.values()) == 3


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_kill_real_task_many(chain, tmp_path, task):
    outcomes = _kill_trials(chain, tmp_path, task, 25, seed=11)
    # kills landed on both sides of the commit point
    assert outcomes["old"] > 0 and outcomes["new"] > 0, outcomes
