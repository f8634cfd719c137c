"""Output transactions: locked, staged, all-or-nothing, clobber-aware.

Every output of a task goes through one transaction (:func:`atomic_outputs`):

1. **Check** (before any computation, also available alone as
   :func:`check_outputs`): each destination's folder exists, is a folder and is
   writable; a destination that exists is a regular file (not a directory,
   FIFO or device) and is replaced only with ``clobber``; the same file may not
   be named twice, however it is spelled (``a/x``, ``./a/../a/x``, a symlinked
   folder).
2. **Lock**: each destination has a lock file ``.NAME.nuskybgd-lock`` beside
   it, held with ``fcntl.flock`` and carrying the owner's PID. A second writer
   of the same output fails at once with "already being written by PID n".
   The kernel drops the lock when its process dies, so a killed run never
   blocks the next one. Locks taken by :func:`check_outputs` are kept by the
   process until the transaction on those files ends (or the CLI task ends).
3. **Stage**: the task writes every file into a private staging folder
   ``.nuskybgd-stage-PID-XXXX`` in the destination's folder (same file
   system, so the final move is a rename).
4. **Commit**: when every file is complete (and synced), a journal listing
   ``(staged, final)`` pairs is written atomically into the primary staging
   folder: that is the commit point. Then the files are renamed into place
   and the staging folders removed.
5. **Recovery**: before a transaction touches a folder it looks for staging
   folders of dead processes (their owner lock is free). A staging folder
   whose transaction has a journal is rolled forward (the remaining renames
   are done); one without is removed. A killed run therefore leaves either
   the complete old set or the complete new set, never a mixture (staging
   folders are renamed ``.nuskybgd-stage-done-*`` before removal). Hidden
   ``.NAME.xxxxxxxx.tmp`` files of older versions are removed as well.

For kill tests the window between renames can be widened or hit exactly:
``NUSKYBGD_COMMIT_DELAY=s`` sleeps ``s`` seconds before each rename and
``NUSKYBGD_COMMIT_KILL_AFTER=k`` sends SIGKILL to the process itself after
``k`` renames (``0``: right after the journal is written). The module
attribute :data:`commit_hook` (``None`` or ``callable(done, total)``) is
called at the same points.
"""

import atexit
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import stat
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import NuskybgdError

__all__ = ["check_outputs", "atomic_outputs", "write_fits", "write_text", "output_session",
           "recover_folder", "check_writable_path", "os_error"]

STAGE_PREFIX = ".nuskybgd-stage-"
LOCK_SUFFIX = ".nuskybgd-lock"
_JOURNAL = "JOURNAL"
_PRIMARY = "PRIMARY"
_OWNER = "OWNER"
_DONE = STAGE_PREFIX + "done-"  # a finished staging folder being removed (always garbage)
_OLD_TMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")

#: ``None`` or ``callable(done, total)``, called before each rename of a commit (tests).
commit_hook = None

# Process-wide registry: canonical final path -> _Lock held by this process.
_HELD = {}
# Staging folders owned by this process (canonical str paths).
_ACTIVE_STAGES = set()


def os_error(exc, path, doing="write"):
    """Turn an ``OSError`` into a one-line :class:`NuskybgdError` naming the file.

    Parameters
    ----------
    exc : OSError
        The error raised by the operating system.
    path : str or os.PathLike
        The file the user knows (final name, not a staging name).
    doing : str
        What was being done (``"write"``, ``"read"``).

    Returns
    -------
    NuskybgdError
    """
    reason = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EISDIR: "is a directory",
        errno.ENOTDIR: "a folder in the path is not a folder",
        errno.ENAMETOOLONG: "file name too long",
        errno.EFBIG: "file too large",
        errno.EIO: "input/output error",
        errno.ENOENT: "no such file or folder",
    }.get(exc.errno, exc.strerror or str(exc))
    return NuskybgdError(f"{path}: cannot {doing}: {reason}")


def _canon(path):
    """Canonical spelling of an output path: real parent folder + name."""
    p = Path(os.fspath(path))
    parent = p.parent if str(p.parent) else Path(".")
    return Path(os.path.realpath(parent)) / p.name


def _display_parent(p):
    return p.parent if str(p.parent) else Path(".")


def check_writable_path(p, clobber=False):
    """Check one destination before any computation (see :func:`check_outputs`).

    Parameters
    ----------
    p : str or os.PathLike
        Destination file.
    clobber : bool
        When true, an existing regular file may be replaced.

    Raises
    ------
    NuskybgdError
        One line naming the file and the problem.
    """
    p = Path(os.fspath(p))
    if not p.name or p.name in (".", ".."):
        raise NuskybgdError(f"{p}: output name is a folder, not a file name")
    if len(os.fsencode(p.name)) > 255 - len(LOCK_SUFFIX) - 1:
        raise NuskybgdError(f"{p}: output file name too long ({len(os.fsencode(p.name))} bytes)")
    parent = _display_parent(p)
    try:
        pst = os.stat(parent)
    except FileNotFoundError:
        raise NuskybgdError(f"{p}: output folder {parent} does not exist") from None
    except NotADirectoryError:
        raise NuskybgdError(f"{p}: a folder in the path {parent} is a file, not a folder") from None
    except OSError as exc:
        raise os_error(exc, parent, "use output folder") from None
    if not stat.S_ISDIR(pst.st_mode):
        raise NuskybgdError(f"{p}: output folder {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        try:
            readonly = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
        except OSError:
            readonly = False
        if readonly:
            raise NuskybgdError(f"{p}: cannot write output: folder {parent} is on a read-only file system")
        raise NuskybgdError(f"{p}: output folder {parent} is not writable (permission denied)")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise NuskybgdError(f"{p}: output is a dangling symbolic link") from None
        return
    except OSError as exc:
        raise os_error(exc, p, "check output") from None
    if stat.S_ISDIR(st.st_mode):
        raise NuskybgdError(f"{p}: output is an existing directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise NuskybgdError(f"{p}: output exists and is not a regular file (FIFO, device or socket)")
    if not clobber:
        raise NuskybgdError(f"{p}: output file exists (use --clobber or a '!' prefix to overwrite)")


# ----------------------------------------------------------------------------------------------- locks
class _Lock:
    """An exclusive ``flock`` on ``.NAME.nuskybgd-lock`` beside an output."""

    def __init__(self, final):
        self.final = final
        self.path = final.parent / f".{final.name}{LOCK_SUFFIX}"
        self.fd = None

    def acquire(self, shown):
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise os_error(exc, shown, "lock output") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                finally:
                    os.close(fd)
                raise NuskybgdError(f"{shown}: output is already being written by PID {pid}") from None
            try:  # the file may have been unlinked by its previous owner meanwhile
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self.fd = fd
                return self
            os.close(fd)
        raise NuskybgdError(f"{shown}: could not lock the output (lock file keeps changing)")

    def release(self):
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # unlink while holding: waiters re-check the inode
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _lock_outputs(finals, shown):
    """Lock every canonical path in ``finals`` (already held ones are kept)."""
    new = []
    try:
        for c in sorted(finals):
            if c in _HELD:
                continue
            lock = _Lock(c).acquire(shown[c])
            _HELD[c] = lock
            new.append(c)
    except BaseException:
        for c in new:
            _HELD.pop(c).release()
        raise
    return new


def _release(finals):
    for c in finals:
        lock = _HELD.pop(c, None)
        if lock is not None:
            lock.release()


def release_all():
    """Release every output lock held by this process (also run at interpreter exit)."""
    _release(list(_HELD))


atexit.register(release_all)


@contextmanager
def output_session():
    """Scope of one task: locks still held at the end are released.

    The CLI runs every task inside it, so that outputs locked by
    :func:`check_outputs` before a computation that then fails are unlocked.
    Library entry points use it as a decorator (``@output_session()``).
    """
    before = set(_HELD)
    try:
        yield
    finally:
        _release([c for c in list(_HELD) if c not in before])


# ------------------------------------------------------------------------------------------- recovery
_STAGE_PID = re.compile(r"(\d+)-[0-9a-f]{8}$")


def _pid_alive(name):
    """Whether the process named in a staging folder's name (``...PID-XXXXXXXX``) may still run."""
    m = _STAGE_PID.search(name)
    pid = int(m.group(1)) if m else os.getpid()
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):
        return True  # exists (owned by someone else), or not a PID of this system
    return True


def _try_owner_lock(stage):
    """Return an fd holding the stage's owner lock, or None if its owner is alive."""
    try:
        fd = os.open(stage / _OWNER, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        # Being created (owner lock not yet made): garbage once its creator (PID in the name) is
        # dead, or when old (the PID may have been reused).
        try:
            age = time.time() - os.stat(stage).st_mtime
        except OSError:
            return None
        # a few seconds' grace: the PID may belong to another PID namespace sharing this folder
        return -1 if age > 60 or (age > 2 and not _pid_alive(stage.name)) else None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _read_journal(stage):
    try:
        data = json.loads((stage / _JOURNAL).read_text(encoding="utf-8"))
        return [(Path(s), Path(f)) for s, f in data["files"]], [Path(s) for s in data["stages"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove_stage(stage):
    """Remove a finished staging folder, renamed (atomically) to ``.nuskybgd-stage-done-*`` first:
    a kill during the removal leaves a folder whose name says it is garbage."""
    stage = Path(stage)
    dead = stage
    if not stage.name.startswith(_DONE):
        dead = stage.parent / f"{_DONE}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.rename(stage, dead)
        except FileNotFoundError:
            return
        except OSError:
            dead = stage
    shutil.rmtree(dead, ignore_errors=True)


def _roll_forward(journal):
    files, stages = journal
    for staged, final in files:
        if os.path.lexists(staged):
            os.replace(staged, final)
    for s in stages[1:] + stages[:1]:  # primary (first) removed last
        _remove_stage(s)


def recover_folder(folder):
    """Finish or undo the interrupted transactions of dead processes in ``folder``.

    Parameters
    ----------
    folder : str or os.PathLike
        A destination folder.

    Returns
    -------
    list of str
        What was done, one line per staging folder (for logs and tests).
    """
    folder = Path(folder)
    done = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(STAGE_PREFIX)]
    except OSError:
        return done
    for e in entries:
        stage = Path(e.path)
        if str(stage) in _ACTIVE_STAGES or not e.is_dir(follow_symlinks=False):
            continue
        if e.name.startswith(_DONE):  # committed or discarded; its owner was removing it
            shutil.rmtree(stage, ignore_errors=True)
            done.append(f"removed finished staging folder {stage.name}")
            continue
        fd = _try_owner_lock(stage)
        if fd is None:
            continue
        try:
            journal = _read_journal(stage)
            if journal is None and (stage / _PRIMARY).exists():
                try:
                    primary = Path((stage / _PRIMARY).read_text(encoding="utf-8").strip())
                except (OSError, ValueError):
                    primary = None
                if primary is not None and primary.is_dir():
                    journal = _read_journal(primary)
            if journal is not None:
                finals = {_canon(f) for _, f in journal[0]}
                shown = {c: c for c in finals}
                try:
                    new = _lock_outputs(finals, shown)
                except NuskybgdError:
                    continue  # a live writer owns the outputs: leave it alone
                try:
                    _roll_forward(journal)
                finally:
                    _release(new)
                done.append(f"completed interrupted commit of {len(journal[0])} files ({stage.name})")
            else:
                _remove_stage(stage)
                done.append(f"removed unfinished staging folder {stage.name}")
        finally:
            if fd >= 0:
                os.close(fd)
    return done


def _clean_old_tmp(folder, names):
    """Remove ``.NAME.xxxxxxxx.tmp`` left by killed runs of older versions."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for e in entries:
        m = _OLD_TMP.match(e.name)
        if m and m.group("name") in names and e.is_file(follow_symlinks=False):
            try:
                os.unlink(e.path)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------- transaction
def _prepare(paths, clobber):
    """Check, recover and lock; return (finals, shown, newly locked)."""
    finals, shown = [], {}
    for p in paths:
        p = Path(os.fspath(p))
        c = _canon(p)
        if c in shown:
            other = shown[c]
            same = f"{other}" if str(other) == str(p) else f"{other} and {p}"
            raise NuskybgdError(f"{same}: the same output file is named twice")
        shown[c] = p
        finals.append(c)
    folders = {}
    for c in finals:
        check_writable_path(shown[c], clobber=True)  # folder and file type first
        folders.setdefault(c.parent, set()).add(c.name)
    for folder, names in folders.items():
        recover_folder(folder)
        _clean_old_tmp(folder, names)
    new = _lock_outputs(finals, shown)
    try:
        for c in finals:
            check_writable_path(shown[c], clobber)
            _probe_folder(c.parent, shown[c])
    except BaseException:
        _release(new)
        raise
    return finals, shown, new


_PROBED = set()


def _probe_folder(folder, shown):
    """Really create (and remove) a staging folder: permissions, read-only or full file systems."""
    if folder in _PROBED:
        return
    name = folder / f"{STAGE_PREFIX}probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.mkdir(name)
        os.rmdir(name)
    except OSError as exc:
        raise os_error(exc, shown, "write output") from None
    _PROBED.add(folder)


def check_outputs(paths, clobber=False):
    """Check and lock outputs before the computation that produces them.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Files a task is about to write.
    clobber : bool
        When true, existing files may be replaced.

    Raises
    ------
    NuskybgdError
        If a file exists and ``clobber`` is false, is a directory or special
        file, its folder is missing, not a folder or not writable, the same
        file is named twice, or another process is writing it.

    Notes
    -----
    The locks stay with this process until :func:`atomic_outputs` on the same
    files ends, or the enclosing :func:`output_session` ends.
    """
    paths = list(paths)
    if _inside_active_stage(paths):
        return
    _prepare(paths, clobber)


def _inside_active_stage(paths):
    """True when every path lies in a staging folder of this process (nested writers)."""
    if not _ACTIVE_STAGES or not paths:
        return False
    return all(str(_canon(p).parent) in _ACTIVE_STAGES for p in paths)


class _Passthrough:
    def __getitem__(self, path):
        return Path(path)


def _fsync_path(path, directory=False):
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Transaction:
    """Staging folders, journal and commit of one set of outputs."""

    def __init__(self, paths, clobber):
        self.finals, self.shown, self.new_locks = _prepare(paths, clobber)
        self.stages = {}  # folder -> staging folder
        self.owner_fds = []
        self.last = None
        self.journal = None  # (files, stages) once the commit point is passed
        try:
            for c in self.finals:
                if c.parent not in self.stages:
                    self._make_stage(c.parent)
        except BaseException:
            self.discard()
            raise

    def _make_stage(self, folder):
        name = folder / f"{STAGE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(name, 0o700)
            fd = os.open(name / _OWNER, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.owner_fds.append(fd)
            if self.stages:  # secondary: point to the primary (journal holder)
                primary = next(iter(self.stages.values()))
                (name / _PRIMARY).write_text(str(primary), encoding="utf-8")
        except OSError as exc:
            raise os_error(exc, self.shown[next(c for c in self.finals if c.parent == folder)],
                           "write output") from None
        self.stages[folder] = name
        _ACTIVE_STAGES.add(str(name))

    def __getitem__(self, path):
        c = _canon(path)
        if c not in self.shown:
            raise KeyError(path)
        self.last = self.shown[c]
        return self.stages[c.parent] / c.name

    def staged(self, c):
        return self.stages[c.parent] / c.name

    def commit(self):
        for c in self.finals:
            s = self.staged(c)
            if not s.is_file():
                raise NuskybgdError(f"{self.shown[c]}: internal error, output was not produced")
        for c in self.finals:
            _fsync_path(self.staged(c))
        stages = list(self.stages.values())
        primary = stages[0]
        journal = {"version": 1, "files": [[str(self.staged(c)), str(c)] for c in self.finals],
                   "stages": [str(s) for s in stages]}
        tmp = primary / (_JOURNAL + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(journal, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, primary / _JOURNAL)  # the commit point
            self.journal = ([(self.staged(c), c) for c in self.finals], stages)
            _fsync_path(primary, directory=True)
        except OSError as exc:
            raise os_error(exc, self.shown[self.finals[0]], "write output") from None
        delay = float(os.environ.get("NUSKYBGD_COMMIT_DELAY") or 0)
        kill_after = os.environ.get("NUSKYBGD_COMMIT_KILL_AFTER")
        kill_after = int(kill_after) if kill_after not in (None, "") else None
        n = len(self.finals)
        for k, c in enumerate(self.finals):
            if commit_hook is not None:
                commit_hook(k, n)
            if kill_after is not None and k == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            if delay > 0:
                time.sleep(delay)
            os.replace(self.staged(c), c)
        for folder in self.stages:
            _fsync_path(folder, directory=True)

    def discard(self):
        if self.journal is not None:
            try:  # past the commit point (an exception or Ctrl-C during the renames): finish them
                _roll_forward(self.journal)
            except OSError:
                pass  # left to the next run's recovery (the journal is still there)
        for s in list(self.stages.values())[1:] + list(self.stages.values())[:1]:
            if os.path.exists(s):
                _remove_stage(s)
            _ACTIVE_STAGES.discard(str(s))
        for fd in self.owner_fds:
            os.close(fd)
        self.owner_fds = []
        self.stages = {}
        _release(self.finals)


@contextmanager
def atomic_outputs(paths, clobber=False):
    """Write several outputs as one transaction (see the module docstring).

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Final file names.
    clobber : bool
        Allow replacing existing files.

    Yields
    ------
    outputs
        Index it with a final path to get the staging path to write.
        On normal exit every staged file is moved to its final name (all or
        none, also when the process is killed); on an exception the staging
        folders are removed and no final file is touched.

    Raises
    ------
    NuskybgdError
        Bad destinations (see :func:`check_outputs`), another writer, or an
        operating-system error while writing (disk full, permissions), named
        by the final file.

    Examples
    --------
    >>> with atomic_outputs(["a.fits", "b.fits"], clobber=True) as out:  # doctest: +SKIP
    ...     hdul_a.writeto(out["a.fits"])
    ...     hdul_b.writeto(out["b.fits"])
    """
    paths = list(paths)
    if _inside_active_stage(paths):  # a writer called inside another transaction
        yield _Passthrough()
        return
    tx = _Transaction(paths, clobber)
    try:
        try:
            yield tx
        except OSError as exc:
            if exc.errno is None and "space on disk" in str(exc):  # astropy's own check, no errno
                exc = OSError(errno.ENOSPC, str(exc))
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                             errno.EFBIG, errno.EIO):
                raise os_error(exc, tx.last or tx.shown[tx.finals[0]]) from None
            raise
        try:
            tx.commit()
        except OSError as exc:
            raise os_error(exc, tx.last or tx.shown[tx.finals[0]]) from None
    finally:
        tx.discard()


def write_fits(hdulist, path, clobber=False):
    """Write one FITS file atomically (see :func:`atomic_outputs`).

    Parameters
    ----------
    hdulist : astropy.io.fits.HDUList
        The file content.
    path : str or os.PathLike
        Destination.
    clobber : bool
        Allow replacing an existing file.
    """
    with atomic_outputs([path], clobber) as out:
        hdulist.writeto(out[path], checksum=True)


def write_text(text, path, clobber=False):
    """Write one text file atomically (see :func:`atomic_outputs`).

    Parameters
    ----------
    text : str
        The file content.
    path : str or os.PathLike
        Destination.
    clobber : bool
        Allow replacing an existing file.
    """
    with atomic_outputs([path], clobber) as out:
        Path(out[path]).write_text(text)
