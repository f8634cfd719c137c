"""Tiny simulated archives and a Dask cluster started as subprocesses (shared by the archive tests)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_archive(root, caldb_root, n=2, seed=3, **kw):
    """An archive of ``n`` small observations in different years, reusing a synthetic CALDB."""
    from nuskybgd.simulate.archive import simulate_archive
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "caldb").symlink_to(Path(caldb_root).resolve(), target_is_directory=True)
    kw.setdefault("exposure", 1000.0)
    kw.setdefault("occ_exposure", 4000.0)
    kw.setdefault("start", "2014-01-01")
    kw.setdefault("stop", "2020-01-01")
    _index, results = simulate_archive(root, n, seed=seed, progress=False, **kw)
    return root, results


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (random free ports)."""

    def __init__(self, n_workers=1, env=None):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.update(env or {})
        self.procs = []
        self.n_workers = n_workers

    def start(self, timeout=60):
        """Start the scheduler and workers; wait until the workers are registered."""
        from distributed import Client
        py = sys.executable
        self.procs.append(subprocess.Popen(
            [py, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(self.n_workers):
            self.procs.append(subprocess.Popen(
                [py, "-m", "dask", "worker", self.address, "--nthreads", "1", "--no-dashboard",
                 "--host", "127.0.0.1"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        t0 = time.monotonic()
        while True:
            try:
                with Client(self.address, timeout="5s") as c:
                    c.wait_for_workers(self.n_workers, timeout=timeout)
                return self
            except (OSError, TimeoutError):
                if time.monotonic() - t0 > timeout:
                    self.stop()
                    raise
                time.sleep(0.5)

    def stop(self):
        """Terminate every process started here (workers first)."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
