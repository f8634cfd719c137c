"""Atomic, clobber-aware output.

Outputs of a task are either all written or none: each file is first written
to a temporary name in its destination folder and renamed into place only
when every output of the task is complete. Existing files are kept unless
``clobber`` is true.
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import NuskybgdError

__all__ = ["check_outputs", "atomic_outputs", "write_fits", "write_text"]


def check_outputs(paths, clobber=False):
    """Refuse to overwrite existing files and to write into missing folders.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Files a task is about to write.
    clobber : bool
        When true, existing files may be replaced.

    Raises
    ------
    NuskybgdError
        If a file exists and ``clobber`` is false, or its folder does not exist.
    """
    seen = set()
    for p in map(Path, paths):
        if p in seen:
            raise NuskybgdError(f"{p}: the same output file is named twice")
        seen.add(p)
        if p.exists() and not clobber:
            raise NuskybgdError(f"{p}: output file exists (use --clobber or a '!' prefix to overwrite)")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise NuskybgdError(f"{p}: output folder {parent} does not exist")


class _Outputs:
    def __init__(self, paths, clobber):
        self.final = [Path(p) for p in paths]
        check_outputs(self.final, clobber)
        self.tmp = {}
        for p in self.final:
            fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
            os.close(fd)
            os.unlink(name)  # writers create the file themselves
            self.tmp[p] = Path(name)

    def __getitem__(self, path):
        """Temporary path to write for the final ``path``."""
        return self.tmp[Path(path)]

    def commit(self):
        for p in self.final:
            t = self.tmp[p]
            if not t.exists():
                raise NuskybgdError(f"{p}: internal error, output was not produced")
        for p in self.final:
            os.replace(self.tmp[p], p)

    def discard(self):
        for t in self.tmp.values():
            try:
                t.unlink()
            except FileNotFoundError:
                pass


@contextmanager
def atomic_outputs(paths, clobber=False):
    """Write several outputs all-or-nothing.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Final file names.
    clobber : bool
        Allow replacing existing files.

    Yields
    ------
    outputs
        Index it with a final path to get the temporary path to write.
        On normal exit every temporary file is renamed to its final name;
        on an exception all temporary files are removed and no final file
        is touched.

    Examples
    --------
    >>> with atomic_outputs(["a.fits", "b.fits"], clobber=True) as out:  # doctest: +SKIP
    ...     hdul_a.writeto(out["a.fits"])
    ...     hdul_b.writeto(out["b.fits"])
    """
    outs = _Outputs(list(paths), clobber)
    try:
        yield outs
    except BaseException:
        outs.discard()
        raise
    else:
        try:
            outs.commit()
        finally:
            outs.discard()


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
