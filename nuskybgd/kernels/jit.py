"""numba's ``njit`` with an on-disk cache that never stops an import.

``numba.njit(cache=True)`` raises ``RuntimeError: cannot cache function ...:
no locator available`` at decoration time, i.e. when the module is
imported, if neither the package's ``__pycache__`` nor the user-wide cache
(``$NUMBA_CACHE_DIR``, else ``~/.cache/numba``) can be written: a read-only
installation with no writable home made every task fail, even ``--help``
(issue 14). :func:`njit` catches that error, points numba at a writable
folder (``$NUSKYBGD_CACHE/numba``, else ``<tmp>/nuskybgd-numba-<uid>``) and
decorates again; if that fails too, the function is compiled without a
cache (in memory, once per process).
"""

import logging
import os
import tempfile
from pathlib import Path

import numba
from numba.core import config

__all__ = ["njit", "fallback_cache_dir"]

log = logging.getLogger("nuskybgd")


def fallback_cache_dir():
    """Folder numba's cache is moved to when the default ones are not writable.

    Returns
    -------
    pathlib.Path
        ``$NUSKYBGD_CACHE/numba`` when ``NUSKYBGD_CACHE`` is set, else
        ``nuskybgd-numba-<uid>`` in the system's temporary folder.
    """
    if os.environ.get("NUSKYBGD_CACHE"):
        return Path(os.environ["NUSKYBGD_CACHE"]) / "numba"
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"nuskybgd-numba-{uid}"


def _writable(folder):
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        return True
    except OSError:
        return False


def _decorate(func, options):
    try:
        return numba.njit(**options)(func)
    except RuntimeError as exc:
        if not options.get("cache") or "cannot cache" not in str(exc):
            raise
    folder = fallback_cache_dir()
    if not config.CACHE_DIR and _writable(folder):
        config.CACHE_DIR = str(folder)
        log.debug("numba cannot write its default caches: using %s", folder)
        try:
            return numba.njit(**options)(func)
        except RuntimeError:
            pass
    log.debug("numba cache unavailable for %s: compiling in memory", func.__qualname__)
    return numba.njit(**dict(options, cache=False))(func)


def njit(func=None, **options):
    """``numba.njit`` that falls back to another cache folder, then to no cache.

    Parameters
    ----------
    func : callable, optional
        The function (when used as ``@njit`` without arguments).
    **options
        numba options (``cache``, ``nogil``, ...).

    Returns
    -------
    numba dispatcher or decorator
        As ``numba.njit``.
    """
    if func is not None:
        return _decorate(func, options)
    return lambda f: _decorate(f, options)
