"""Run independent units of work serially or on a dask.distributed cluster.

``stack``, ``calibrate`` and ``simulate-archive`` map one function over
observations or groups with :func:`run_tasks`:

- ``serial=True``: in this process, in order (the reference for "identical
  results");
- default: a :class:`distributed.LocalCluster` of ``workers`` single-threaded
  worker processes (default: one per CPU of the machine);
- ``scheduler="tcp://host:port"``: an existing cluster (``dask scheduler`` /
  ``dask worker``); an address that does not answer is reported within
  :data:`CONNECT_TIMEOUT` seconds.

A progress bar (tqdm, stderr) counts finished tasks either way. Results come
back in the order of the inputs, whatever the order of completion, so the
outputs do not depend on scheduling. When a worker dies mid-task, the
scheduler moves its tasks to the surviving (or restarted) workers; a task that
still fails with ``KilledWorker`` is submitted again, up to ``resubmit``
times, so nothing is lost. Errors raised by the work itself (bad input)
propagate at once and cancel the rest.

Fault injection for tests: when ``$NUSKYBGD_FAULT_KILL_ONCE`` names a file
that does not exist yet, the first task to start creates it and kills its
own worker process (``os._exit``), exactly once per file.
"""

from __future__ import annotations

import logging
import os
import socket

from ..errors import NuskybgdError

__all__ = ["CONNECT_TIMEOUT", "add_dask_arguments", "connect", "default_workers", "make_runner", "probe_scheduler",
           "run_tasks"]

log = logging.getLogger("nuskybgd")

#: Seconds to wait for an external scheduler before giving up.
CONNECT_TIMEOUT = 5


def default_workers():
    """Worker processes of a local cluster: the CPUs available to this process.

    Returns
    -------
    int
        At least 1.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _fault_hook():
    marker = os.environ.get("NUSKYBGD_FAULT_KILL_ONCE")
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"killed worker pid {os.getpid()}\n".encode())
    os.close(fd)
    os._exit(17)


def _call(func, item):
    """Worker-side wrapper: fault hook, then the work."""
    _fault_hook()
    return func(item)


def connect(scheduler=None, workers=None):
    """A dask.distributed Client (and the LocalCluster it owns, or None).

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing scheduler (``tcp://127.0.0.1:8786``).
    workers : int, optional
        Local cluster size (default :func:`default_workers`).

    Returns
    -------
    (distributed.Client, distributed.LocalCluster or None)

    Raises
    ------
    NuskybgdError
        The scheduler does not answer within :data:`CONNECT_TIMEOUT` s.
    """
    import dask  # local: dask/distributed cost ~1 s at import; executor is loaded to build task parsers
    from distributed import Client, LocalCluster  # local: see dask above

    # The cluster's own chatter (worker start/stop) is not the user's business at INFO level.
    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))

    if scheduler:
        probe_scheduler(scheduler)
        try:
            with dask.config.set({"distributed.comm.timeouts.connect": f"{CONNECT_TIMEOUT}s"}):
                client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise NuskybgdError(f"--scheduler {scheduler}: no answer within {CONNECT_TIMEOUT} s "
                                f"({type(exc).__name__}); is 'dask scheduler' running there?") from None
        return client, None
    n = int(workers) if workers else default_workers()
    if n < 1:
        raise NuskybgdError(f"--workers must be >= 1 (got {n})")
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    return Client(cluster, set_as_default=False), cluster


def probe_scheduler(scheduler, timeout=CONNECT_TIMEOUT):
    """Fail fast when nothing listens at a TCP scheduler address.

    distributed's own connect retries a refused connection until its timeout;
    a plain TCP connection is refused at once, so an address where no
    scheduler runs is reported without waiting.

    Parameters
    ----------
    scheduler : str
        Scheduler address (``tcp://host:port``, ``tls://host:port`` or
        ``host:port``); other schemes are left to distributed.
    timeout : float
        Seconds to wait for the TCP connection.

    Raises
    ------
    NuskybgdError
        Malformed address, or no TCP answer.
    """
    from distributed.comm.addressing import parse_address, parse_host_port  # local: distributed costs ~1 s at import

    try:
        scheme, loc = parse_address(scheduler)
        if scheme not in ("tcp", "tls"):
            return
        host, port = parse_host_port(loc)
    except (ValueError, TypeError) as exc:
        raise NuskybgdError(f"--scheduler {scheduler}: not a scheduler address ({exc})") from None
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise NuskybgdError(f"--scheduler {scheduler}: no answer ({reason}); is 'dask scheduler' running "
                            f"there?") from None


def run_tasks(func, items, serial=False, workers=None, scheduler=None, desc="tasks", progress=True,
              resubmit=3, client=None):
    """Apply ``func`` to every item; results in input order.

    Parameters
    ----------
    func : callable
        Module-level function (pickled by reference for the workers).
    items : sequence
        Picklable inputs.
    serial : bool
        Run in this process.
    workers : int, optional
        Local cluster size.
    scheduler : str, optional
        External scheduler address.
    desc : str
        Progress-bar label.
    progress : bool
        Show the progress bar (stderr).
    resubmit : int
        Times a task lost with its worker is submitted again.
    client : distributed.Client, optional
        Use this client (not closed here).

    Returns
    -------
    list
        ``func(item)`` for every item, in order.

    Raises
    ------
    NuskybgdError
        Unreachable scheduler; a task lost more than ``resubmit`` times.
    Exception
        Whatever ``func`` raised (the first failure), after cancelling the rest.
    """
    from tqdm import tqdm  # local: executor is imported by task parsers (--help); the bar is needed only when tasks run

    items = list(items)
    bar = tqdm(total=len(items), desc=desc, unit="task", disable=not progress, leave=False)
    if serial:
        out = []
        for it in items:
            out.append(func(it))
            bar.update()
        bar.close()
        return out
    from distributed import as_completed  # local: distributed costs ~1 s at import
    from distributed.scheduler import KilledWorker  # local: distributed costs ~1 s at import

    own = client is None
    cluster = None
    if own:
        client, cluster = connect(scheduler, workers)
    try:
        futures = {}
        for i, it in enumerate(items):
            futures[client.submit(_call, func, it, pure=False, key=f"{desc}-{i}-{os.getpid()}-{id(items)}")] = i
        results = [None] * len(items)
        tries = [0] * len(items)
        pending = as_completed(list(futures), loop=client.loop)
        for fut in pending:
            i = futures.pop(fut)
            try:
                results[i] = fut.result()
            except KilledWorker:
                tries[i] += 1
                if tries[i] > resubmit:
                    raise NuskybgdError(f"{desc}: task {i} lost with its worker {tries[i]} times; giving up") \
                        from None
                log.warning("%s: task %d lost with its worker; submitting it again", desc, i)
                new = client.submit(_call, func, items[i], pure=False, key=f"{desc}-{i}-retry{tries[i]}-{os.getpid()}")
                futures[new] = i
                pending.add(new)
                continue
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
            bar.update()
        return results
    finally:
        bar.close()
        if own:
            client.close()
            if cluster is not None:
                cluster.close()



def make_runner(serial=False, workers=None, scheduler=None, desc="tasks", progress=True):
    """A ``runner(func, items) -> list`` for the analysis functions (see :func:`run_tasks`).

    The connection to an external scheduler is checked at once, so an address
    that does not answer is reported before any work starts.

    Parameters
    ----------
    serial : bool
        Run every unit of work in this process.
    workers : int, optional
        Local cluster size (default one worker per CPU).
    scheduler : str, optional
        Address of an external Dask scheduler.
    desc : str
        Progress-bar label.
    progress : bool
        Show the progress bar (stderr).

    Returns
    -------
    callable
        ``runner(func, items)``: :func:`run_tasks` with these options.
    """
    if not serial and scheduler:
        client, _ = connect(scheduler, workers)
        client.close()

    def runner(func, items):
        return run_tasks(func, items, serial=serial, workers=workers, scheduler=scheduler, desc=desc,
                         progress=progress)
    return runner


def add_dask_arguments(parser):
    """Add ``--workers``, ``--scheduler`` and ``--serial`` (shared by the tasks that use Dask).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The task's parser.
    """
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes of the local Dask cluster (default: one per CPU)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="use an existing Dask scheduler (e.g. tcp://127.0.0.1:8786) instead of a local cluster")
    parser.add_argument("--serial", action="store_true",
                        help="no Dask: run every unit of work in this process (the reference for identical results)")
