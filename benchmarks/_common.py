"""Helpers shared by the benchmark scripts."""

import time

__all__ = ["best_of"]


def best_of(fn, repeat=5):
    """Best wall time of several calls.

    Parameters
    ----------
    fn : callable
        Called with no arguments.
    repeat : int
        Number of calls.

    Returns
    -------
    seconds : float
        Shortest wall time of one call (s).
    result : object
        What the last call returned.
    """
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out
