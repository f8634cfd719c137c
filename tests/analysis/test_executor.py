"""Dask execution: serial, local cluster and external scheduler give identical bundles; a worker
killed mid-run loses nothing; an unreachable scheduler is reported."""

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from archive_helpers import DaskProcesses, free_port

from nuskybgd.analysis.calibrate import calibrate, load_stack_groups
from nuskybgd.analysis.executor import CONNECT_TIMEOUT, make_runner, run_tasks
from nuskybgd.analysis.stack import stack_archive
from nuskybgd.errors import NuskybgdError


@pytest.fixture(scope="module")
def stack_dir(tiny_archive, tmp_path_factory):
    root, _ = tiny_archive
    out = tmp_path_factory.mktemp("stack") / "s"
    stack_archive(root, out)
    return out


@pytest.fixture(scope="module")
def external():
    """A scheduler and one worker started here as subprocesses on 127.0.0.1."""
    procs = DaskProcesses(n_workers=1).start()
    yield procs
    procs.stop()


def _tasks(stack_dir, fit_gain):
    tasks = [t for t in load_stack_groups(stack_dir) if t.det == 0 and t.module == "A"]
    return [dataclasses.replace(t, fit_gain=fit_gain, bootstrap=0) for t in tasks]


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in (".json", ".ecsv")}


def test_serial_local_external_identical(tiny_archive, stack_dir, external, tmp_path):
    """Same stack and same bundle (byte for byte) serially, on a local cluster and on the external one."""
    root, _ = tiny_archive
    outs = {}
    for name, runner in (("serial", make_runner(serial=True, progress=False)),
                         ("local", make_runner(workers=1, progress=False)),
                         ("external", make_runner(scheduler=external.address, progress=False))):
        stack_archive(root, tmp_path / f"stack_{name}", runner=runner)
        calibrate(_tasks(tmp_path / f"stack_{name}", fit_gain=False), tmp_path / f"cal_{name}", runner=runner,
                  plot=False)
        outs[name] = (_files(tmp_path / f"stack_{name}"), _files(tmp_path / f"cal_{name}"))
    ref_stack = {k: v for k, v in outs["serial"][0].items() if k != "stack.json"}
    for name in ("local", "external"):
        assert {k: v for k, v in outs[name][0].items() if k != "stack.json"} == ref_stack
        assert outs[name][1] == outs["serial"][1]


def test_unreachable_scheduler(tmp_path, monkeypatch):
    """Nothing listens at the address: refused by the TCP probe, before distributed's retrying connect."""
    import distributed

    def no_client(*a, **k):
        raise AssertionError("distributed.Client reached for a refused address")
    monkeypatch.setattr(distributed, "Client", no_client)
    address = f"tcp://127.0.0.1:{free_port()}"
    assert CONNECT_TIMEOUT < 10
    with pytest.raises(NuskybgdError, match=r"--scheduler tcp://127\.0\.0\.1:\d+: no answer \(Connection refused\)"):
        make_runner(scheduler=address)


@pytest.mark.parametrize("address, match", [("tcp://127.0.0.1", "missing port"), ("tcp://[::1:99", "not a scheduler")])
def test_malformed_scheduler_address(address, match):
    with pytest.raises(NuskybgdError, match=match):
        make_runner(scheduler=address)


@pytest.mark.parametrize("task", ["stack", "calibrate", "simulate-archive"])
def test_unreachable_scheduler_cli_within_10_s(tmp_path, task):
    """The whole command reports an unreachable scheduler in one line, before reading or writing anything."""
    address = f"tcp://127.0.0.1:{free_port()}"
    argv = {"stack": [str(tmp_path / "arch"), str(tmp_path / "st")],
            "calibrate": [str(tmp_path / "st"), str(tmp_path / "cal")],
            "simulate-archive": [str(tmp_path / "arch"), "--observations", "2"]}[task]
    (tmp_path / "arch").mkdir()
    (tmp_path / "st").mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "nuskybgd", task, *argv, "--scheduler", address],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--scheduler" in lines[0] and "no answer" in lines[0], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch", "st"] and not any((tmp_path / "st").iterdir())


def test_task_errors_propagate(external):
    """An error raised by the work reaches the caller; results come back in input order."""
    with pytest.raises(ValueError, match="math domain error"):
        run_tasks(math.sqrt, [4.0, -1.0, 9.0], scheduler=external.address, progress=False)
    assert run_tasks(math.sqrt, [16.0, 4.0, 9.0], scheduler=external.address, progress=False) == [4.0, 2.0, 3.0]


@pytest.mark.slow
def test_worker_killed_mid_run_loses_nothing(stack_dir, tmp_path):
    """The first task kills its worker (fault injection); the nanny restarts it, the task is run again,
    and the bundle (with the gain fitted) equals the serial one."""
    marker = tmp_path / "killed-once"
    procs = DaskProcesses(n_workers=1, env={"NUSKYBGD_FAULT_KILL_ONCE": str(marker)}).start()
    try:
        calibrate(_tasks(stack_dir, fit_gain=True), tmp_path / "cal_ext",
                  runner=make_runner(scheduler=procs.address, progress=False), plot=False)
    finally:
        procs.stop()
    assert marker.exists()
    calibrate(_tasks(stack_dir, fit_gain=True), tmp_path / "cal_serial", runner=make_runner(serial=True),
              plot=False)
    assert _files(tmp_path / "cal_ext") == _files(tmp_path / "cal_serial")
    assert os.environ.get("NUSKYBGD_FAULT_KILL_ONCE") is None
