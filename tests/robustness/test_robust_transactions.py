"""Output transactions: locks, staging, journal, recovery, kill tests."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nuskybgd.errors import NuskybgdError
from nuskybgd.io import output
from nuskybgd.io.output import STAGE_PREFIX, atomic_outputs, check_outputs, output_session, recover_folder, write_text

REPO = Path(__file__).resolve().parents[2]
N_FILES = 6

WRITER = r"""
import sys, time
from pathlib import Path
from nuskybgd.io.output import atomic_outputs
d, tag, n, pause = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
names = [d / f"f{i}.txt" for i in range(n)]
with atomic_outputs(names, clobber=True) as out:
    print("locked", flush=True)
    for p in names:
        time.sleep(pause)
        Path(out[p]).write_text(tag * 1000)
print("done", flush=True)
"""


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _writer(folder, tag, pause=0.0, n=N_FILES, **env):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(folder), tag, str(n), str(pause)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(**env), text=True)


def _state(folder, n=N_FILES):
    """'old', 'new' or a description of a mixed/incomplete set."""
    tags = []
    for i in range(n):
        p = folder / f"f{i}.txt"
        tags.append(p.read_text()[:1] if p.exists() else "-")
    if set(tags) == {"o"}:
        return "old"
    if set(tags) == {"n"}:
        return "new"
    return "".join(tags)


def _old_set(folder, n=N_FILES):
    for i in range(n):
        (folder / f"f{i}.txt").write_text("o" * 1000)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_same_file_spelled_differently(tmp_path):
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "sub", tmp_path / "link")
    spellings = [(tmp_path / "sub" / "x.fits", tmp_path / "sub" / ".." / "sub" / "x.fits"),
                 (tmp_path / "sub" / "x.fits", tmp_path / "link" / "x.fits"),
                 (tmp_path / "sub" / "x.fits", tmp_path / "sub" / "." / "x.fits")]
    for a, b in spellings:
        with pytest.raises(NuskybgdError, match="same output file is named twice"):
            check_outputs([a, b])
    assert _leftovers(tmp_path / "sub") == []


@pytest.mark.parametrize("kind, match", [
    ("dir", "is an existing directory"),
    ("fifo", "not a regular file"),
    ("parent_file", "is a file, not a folder"),
    ("missing_parent", "does not exist"),
    ("dangling", "dangling symbolic link"),
])
def test_bad_destinations(tmp_path, kind, match):
    p = tmp_path / "out.fits"
    if kind == "dir":
        p.mkdir()
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "parent_file":
        (tmp_path / "file").write_text("x")
        p = tmp_path / "file" / "out.fits"
    elif kind == "missing_parent":
        p = tmp_path / "nope" / "out.fits"
    elif kind == "dangling":
        os.symlink(tmp_path / "nowhere", p)
    with pytest.raises(NuskybgdError, match=match) as info:
        with atomic_outputs([tmp_path / "ok.txt", p], clobber=True) as out:
            out[tmp_path / "ok.txt"].write_text("x")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "ok.txt").exists()
    assert [n for n in _leftovers(tmp_path)] == []


def test_name_too_long(tmp_path):
    with pytest.raises(NuskybgdError, match="too long"):
        check_outputs([tmp_path / ("x" * 250)])


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    import errno
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old")

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(NuskybgdError, match=r"b\.txt: cannot write: no space left on device"):
        with atomic_outputs([a, b], clobber=True) as out:
            out[a].write_text("new")
            target = out[b]
            full(target)
    assert a.read_text() == "old" and not b.exists()
    assert _leftovers(tmp_path) == []


def test_non_ascii_names(tmp_path):
    d = tmp_path / "données_ü"
    d.mkdir()
    names = [d / "spéctrum.pha", d / "背景.xcm"]
    with atomic_outputs(names) as out:
        for p in names:
            out[p].write_text(p.name)
    assert [p.read_text() for p in names] == [p.name for p in names]
    assert _leftovers(d) == []


def test_locks_released_and_removed(tmp_path):
    a = tmp_path / "a.txt"
    with output_session():
        check_outputs([a])
        assert (tmp_path / ".a.txt.nuskybgd-lock").exists()
    assert _leftovers(tmp_path) == []
    write_text("x", a)
    assert _leftovers(tmp_path) == []


def test_second_writer_is_refused(tmp_path):
    proc = _writer(tmp_path, "n", pause=0.5)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(NuskybgdError, match=rf"already being written by PID {proc.pid}$"):
            check_outputs([tmp_path / "f3.txt"], clobber=True)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert _state(tmp_path) == "new"
    assert _leftovers(tmp_path) == []


def test_stale_lock_of_dead_process_is_recovered(tmp_path):
    # A lock file left by a killed process (its PID is gone, no flock held).
    (tmp_path / ".a.txt.nuskybgd-lock").write_text("999999999\n")
    write_text("x", tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text() == "x"
    assert _leftovers(tmp_path) == []


def test_old_version_tmp_files_cleaned(tmp_path):
    (tmp_path / ".a.txt.k3j_9x2q.tmp").write_text("junk")
    (tmp_path / ".unrelated.abcdefgh.tmp").write_text("keep")
    write_text("x", tmp_path / "a.txt")
    assert _leftovers(tmp_path) == [".unrelated.abcdefgh.tmp"]


def test_failure_inside_transaction_keeps_old_set(tmp_path):
    _old_set(tmp_path)
    names = [tmp_path / f"f{i}.txt" for i in range(N_FILES)]
    with pytest.raises(RuntimeError):
        with atomic_outputs(names, clobber=True) as out:
            for p in names[:3]:
                out[p].write_text("n" * 1000)
            raise RuntimeError("boom")
    assert _state(tmp_path) == "old"
    assert _leftovers(tmp_path) == []


def test_commit_hook_sees_every_rename(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(output, "commit_hook", lambda k, n: seen.append((k, n, _state(tmp_path, 3))))
    names = [tmp_path / f"f{i}.txt" for i in range(3)]
    _old_set(tmp_path, 3)
    with atomic_outputs(names, clobber=True) as out:
        for p in names:
            out[p].write_text("n")
    assert [s[:2] for s in seen] == [(0, 3), (1, 3), (2, 3)]
    assert [s[2] for s in seen] == ["old", "noo", "nno"]  # the window the kill tests aim at


def test_multi_folder_transaction_and_recovery(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "c"]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        (d / "x.txt").write_text("o")
    code = ("import sys; from pathlib import Path; from nuskybgd.io.output import atomic_outputs\n"
            "ds=[Path(a) for a in sys.argv[1:]]\n"
            "with atomic_outputs([d/'x.txt' for d in ds], clobber=True) as out:\n"
            "    [Path(out[d/'x.txt']).write_text('n') for d in ds]\n")
    for k in range(len(dirs)):
        for d in dirs:
            (d / "x.txt").write_text("o")
        r = subprocess.run([sys.executable, "-c", code, *map(str, dirs)], env=_env(NUSKYBGD_COMMIT_KILL_AFTER=k),
                           capture_output=True)
        assert r.returncode == -signal.SIGKILL
        # recovery from the folder of a secondary staging folder completes the whole commit
        recover_folder(dirs[-1])
        recover_folder(dirs[0])
        recover_folder(dirs[1])
        assert {(d / "x.txt").read_text() for d in dirs} == {"n"}, k
        assert all(not any(p.name.startswith(STAGE_PREFIX) for p in d.iterdir()) for d in dirs)


@pytest.mark.parametrize("k", range(N_FILES))
def test_kill_between_renames(tmp_path, k):
    """SIGKILL after k of the renames: the next run completes the commit (new set)."""
    _old_set(tmp_path)
    proc = _writer(tmp_path, "n", NUSKYBGD_COMMIT_KILL_AFTER=k)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = _state(tmp_path)
    assert before == "n" * k + "o" * (N_FILES - k) if k else before == "old"
    recover_folder(tmp_path)
    assert _state(tmp_path) == "new"
    assert [n for n in _leftovers(tmp_path) if n.startswith(STAGE_PREFIX)] == []


def _random_kill_trials(tmp_path, n_trials, seed):
    rng = random.Random(seed)
    outcomes = {"old": 0, "new": 0}
    for t in range(n_trials):
        folder = tmp_path / f"t{t}"
        folder.mkdir()
        _old_set(folder)
        proc = _writer(folder, "n", pause=0.004, NUSKYBGD_COMMIT_DELAY=0.004)
        assert proc.stdout.readline().strip() == "locked"
        time.sleep(rng.uniform(0.0, 0.06))  # somewhere in staging, journal or renames
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        recover_folder(folder)  # what the next run does first (the CLI: every folder it is given)
        state = _state(folder)
        assert state in ("old", "new"), (t, state)
        outcomes[state] += 1
        assert not any(n.startswith(STAGE_PREFIX) for n in _leftovers(folder))
    return outcomes


def test_random_kills(tmp_path):
    outcomes = _random_kill_trials(tmp_path, 20, seed=1)
    assert sum(outcomes.values()) == 20


@pytest.mark.slow
def test_random_kills_many(tmp_path):
    outcomes = _random_kill_trials(tmp_path, 100, seed=2)
    assert outcomes["old"] > 0 and outcomes["new"] > 0  # both sides of the commit point were hit


def test_cli_run_recovers_named_folders(tmp_path):
    """Any task naming a file of a folder finishes an interrupted commit there before reading."""
    _old_set(tmp_path)
    proc = _writer(tmp_path, "n", NUSKYBGD_COMMIT_KILL_AFTER=2)
    proc.communicate(timeout=60)
    assert _state(tmp_path) == "nnoooo"
    r = subprocess.run([sys.executable, "-m", "nuskybgd", "--log-level", "WARNING", "mkimgs",
                        str(tmp_path / "f0.txt"), "3", "20", "--out", str(tmp_path / "img.fits")],
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _state(tmp_path) == "new"


def _numba_uncachable_copy(tmp_path):
    """A copy of the package where numba can write no cache: every __pycache__ is a file, HOME unusable."""
    pkg = tmp_path / "pkg"
    shutil.copytree(REPO / "nuskybgd", pkg / "nuskybgd", ignore=shutil.ignore_patterns("__pycache__"))
    for d in [pkg / "nuskybgd", *[p for p in (pkg / "nuskybgd").rglob("*") if p.is_dir()]]:
        (d / "__pycache__").write_text("not a folder")
    (tmp_path / "homefile").write_text("not a folder")
    env = _env(HOME=tmp_path / "homefile" / "home", XDG_CACHE_HOME=tmp_path / "homefile" / "cache",
               PYTHONPATH=pkg, PYTHONDONTWRITEBYTECODE=1)
    env.pop("NUMBA_CACHE_DIR", None)
    return env


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["projbgd", "--help"]])
def test_numba_cache_unwritable_help(tmp_path, argv):
    env = _numba_uncachable_copy(tmp_path)
    r = subprocess.run([sys.executable, "-m", "nuskybgd", *argv], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-500:]


def test_numba_cache_unwritable_compute(tmp_path):
    env = _numba_uncachable_copy(tmp_path)
    r = subprocess.run([sys.executable, "-c", "import nuskybgd.fitting.engine, nuskybgd.sky.projection"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-500:]


def test_error_line_not_glued_to_progress_bar(monkeypatch, capsys):
    """A task failing while a tqdm bar is open: the error starts a line of its own, once prefixed."""
    import nuskybgd.tasks.mkimgs as task
    from nuskybgd.cli import main
    from tqdm import tqdm

    def run(args):
        bar = tqdm(total=10, desc="simulate", file=sys.stderr)
        bar.update(3)
        raise NuskybgdError("nuskybgd mkimgs: something went wrong")
    monkeypatch.setattr(task, "run", run)
    rc = main(["mkimgs", "x.evt", "3", "79"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.split("\n") if "error" in ln]
    assert lines == ["nuskybgd mkimgs: error: something went wrong"]


KILLED_REMOVAL = r"""
import os, shutil, signal, sys
from pathlib import Path
from nuskybgd.io import output

def killed_rmtree(path, ignore_errors=False):
    for p in sorted(Path(path).iterdir())[:int(sys.argv[2])]:
        p.unlink()  # part of the removal done, then the process is killed
    os.kill(os.getpid(), signal.SIGKILL)

output.shutil.rmtree = killed_rmtree
d = Path(sys.argv[1])
names = [d / f"f{i}.txt" for i in range(6)]
with output.atomic_outputs(names, clobber=True) as out:
    for p in names:
        Path(out[p]).write_text("n" * 1000)
"""


@pytest.mark.parametrize("removed", [0, 1, 2])
def test_kill_while_removing_stage(tmp_path, removed):
    """SIGKILL half-way through removing the staging folder: the next run removes what is left."""
    _old_set(tmp_path)
    r = subprocess.run([sys.executable, "-c", KILLED_REMOVAL, str(tmp_path), str(removed)], env=_env(),
                       capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert _state(tmp_path) == "new"
    left = [n for n in _leftovers(tmp_path) if n.startswith(STAGE_PREFIX)]
    assert len(left) == 1 and left[0].startswith(STAGE_PREFIX + "done-")
    done = recover_folder(tmp_path)
    assert any("removed finished staging folder" in d for d in done)
    assert [n for n in _leftovers(tmp_path) if n.startswith(STAGE_PREFIX)] == []


def test_stage_without_owner_of_dead_process_removed(tmp_path):
    """Killed between creating its staging folder and its owner lock: removed at once (creator dead),
    while a young one of a live process is left alone."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f"{STAGE_PREFIX}{dead_pid}-0123abcd").mkdir()
        (tmp_path / f"{STAGE_PREFIX}probe-{dead_pid}-89abcdef").mkdir()
        (tmp_path / f"{STAGE_PREFIX}{live.pid}-0123abcd").mkdir()
        young = tmp_path / f"{STAGE_PREFIX}{dead_pid}-fedcba98"
        old = time.time() - 10
        for p in tmp_path.iterdir():
            os.utime(p, (old, old))
        young.mkdir()  # a dead PID but 0 s old: another PID namespace may own it (2 s grace)
        done = recover_folder(tmp_path)
        assert len(done) == 2
        assert _leftovers(tmp_path) == sorted([f"{STAGE_PREFIX}{live.pid}-0123abcd", young.name])
    finally:
        live.kill()
        live.wait()


def test_exception_after_the_commit_point_completes_the_commit(tmp_path, monkeypatch):
    """Ctrl-C (or any exception) between renames, after the journal: the transaction finishes the renames
    instead of discarding the staged files (which would leave a mix)."""
    _old_set(tmp_path)

    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(output, "commit_hook", interrupt)
    names = [tmp_path / f"f{i}.txt" for i in range(N_FILES)]
    with pytest.raises(KeyboardInterrupt):
        with atomic_outputs(names, clobber=True) as out:
            for p in names:
                Path(out[p]).write_text("n" * 1000)
    assert _state(tmp_path) == "new"
    assert [n for n in _leftovers(tmp_path) if n.startswith(STAGE_PREFIX)] == []
