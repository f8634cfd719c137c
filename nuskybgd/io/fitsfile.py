"""Opening FITS files with one-line errors.

Every reader in :mod:`nuskybgd.io` opens files through :func:`open_fits`, so
a missing, non-FITS, truncated or damaged gzip file always gives the same
kind of message: ``<path>: cannot read <what>: <problem>``.
"""

import gzip
import os
import stat
import warnings
import zlib
from pathlib import Path
from urllib.parse import unquote_to_bytes

from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from ..errors import NuskybgdError

__all__ = ["open_fits", "find_hdu", "find_hdus", "header_value", "check_input_file", "fits_text",
           "header_file_path"]

_FITS_MAGIC = b"SIMPLE  ="
_GZIP_MAGIC = b"\x1f\x8b"


def _first_bytes(path, n=10):
    with open(path, "rb") as f:
        return f.read(n)


def _gzip_size(path):
    """Uncompressed size of a gzip file; None when the stream is incomplete."""
    n = 0
    try:
        with gzip.open(path, "rb") as g:
            for chunk in iter(lambda: g.read(1 << 22), b""):
                n += len(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return n


def _truncated_hdus(hdul, path, is_gzip):
    """Index of the first HDU whose data run past the end of the file, if any."""
    if is_gzip:
        # The gzip trailer holds the uncompressed size modulo 2**32: a cheap
        # check; decompress everything only when it disagrees.
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            isize = int.from_bytes(f.read(4), "little")
        last = hdul[-1].fileinfo()
        expected = last["datLoc"] + last["datSpan"]
        if isize == expected % 2**32:
            return None
        size = _gzip_size(path)
        if size is None:
            return len(hdul) - 1
    else:
        size = os.path.getsize(path)
    for i, hdu in enumerate(hdul):
        info = hdu.fileinfo()
        if info is None:
            continue
        end = info["datLoc"] + info["datSpan"]
        if end > size:
            return i
    return None


def check_input_file(path, what="file"):
    """Check that an input is a readable regular file, without opening it.

    The file type is looked at before any ``open``: a FIFO would block the
    reader forever and a device would be read without end.

    Parameters
    ----------
    path : str or os.PathLike
        The input.
    what : str
        What the file is for (messages).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    NuskybgdError
        Missing, a directory, a FIFO/device/socket, or not readable.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise NuskybgdError(f"{p}: {what} is a dangling symbolic link") from None
        raise NuskybgdError(f"{p}: {what} not found") from None
    except NotADirectoryError:
        raise NuskybgdError(f"{p}: {what} not found (a folder in its path is a file)") from None
    except PermissionError:
        raise NuskybgdError(f"{p}: cannot read {what}: permission denied") from None
    except (OSError, ValueError) as exc:
        raise NuskybgdError(f"{p}: cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise NuskybgdError(f"{p}: {what} expected, but this is a directory")
    if stat.S_ISFIFO(st.st_mode):
        raise NuskybgdError(f"{p}: {what} expected, but this is a FIFO (named pipe), not a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise NuskybgdError(f"{p}: {what} expected, but this is a device or socket, not a regular file")
    if not os.access(p, os.R_OK):
        raise NuskybgdError(f"{p}: cannot read {what}: permission denied")
    return p


def not_a_file_reason(path):
    """Why ``path``, which is not a regular file, cannot be read: for messages.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str
        ``"does not exist"``, ``"is a directory, not a file"`` or ``"is a FIFO,
        device or socket, not a regular file"``.
    """
    if os.path.isdir(path):
        return "is a directory, not a file"
    if os.path.exists(path):
        return "is a FIFO, device or socket, not a regular file"
    return "does not exist"


def fits_text(value):
    """ASCII form of a header string: non-ASCII characters percent-encoded (UTF-8).

    FITS headers hold printable ASCII only, but file names may be in any
    encoding; ``é`` becomes ``%C3%A9`` (as in URLs), and
    :func:`header_file_path` turns it back into the file name.

    Parameters
    ----------
    value : str

    Returns
    -------
    str
        ``value`` itself when it is printable ASCII.
    """
    value = str(value)
    if all(" " <= c <= "~" for c in value):
        return value
    raw = os.fsencode(value)
    return "".join(chr(b) if 32 <= b <= 126 and b != 0x25 else f"%{b:02X}" for b in raw)


def header_file_path(value, base):
    """Path of a file named in a header (RESPFILE, ANCRFILE, ...), relative to ``base``.

    Parameters
    ----------
    value : str
        Header value (possibly percent-encoded by :func:`fits_text`).
    base : str or os.PathLike
        Folder of the file whose header names it.

    Returns
    -------
    pathlib.Path
        The literal name if it exists, else the decoded one (if different).
    """
    def resolve(name):
        q = Path(name)
        return q if q.is_absolute() else Path(base) / q
    literal = resolve(value)
    if "%" in value and not literal.exists():
        decoded = resolve(os.fsdecode(unquote_to_bytes(value)))
        if decoded.exists():
            return decoded
    return literal


def open_fits(path, what="FITS file"):
    """Open a FITS file (plain or gzip-compressed) with clear errors.

    Parameters
    ----------
    path : str or os.PathLike
        File to open.
    what : str
        What the file is for, used in error messages (e.g. ``"event file"``).

    Returns
    -------
    astropy.io.fits.HDUList
        All HDUs with headers parsed. Use it as a context manager (or call
        ``close()``). Data of gzip files are read eagerly, so that damage is
        found here rather than later.

    Raises
    ------
    NuskybgdError
        One line naming the file and the problem: missing file, folder given,
        not a FITS file, damaged gzip stream, truncated file.
    """
    p = check_input_file(path, what)
    try:
        head = _first_bytes(p)
    except OSError as exc:
        raise NuskybgdError(f"{p}: cannot read {what} ({exc.strerror or exc})") from None
    is_gzip = head.startswith(_GZIP_MAGIC)
    if is_gzip:
        try:
            with gzip.open(p, "rb") as g:
                head = g.read(10)
                # astropy reads only what it needs and never reaches the CRC at the end of the
                # stream: read it all once so that a corrupted file is an error, not fewer events.
                while g.read(1 << 22):
                    pass
        except (OSError, EOFError, zlib.error) as exc:
            raise NuskybgdError(f"{p}: cannot read {what}: damaged gzip file ({' '.join(str(exc).split())})") from None
    if not head.startswith(_FITS_MAGIC):
        if len(head) == 0:
            raise NuskybgdError(f"{p}: cannot read {what}: file is empty")
        raise NuskybgdError(f"{p}: cannot read {what}: not a FITS file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AstropyUserWarning)
        try:
            # memmap=False: arrays handed out never refer to a file that was closed.
            hdul = fits.open(p, lazy_load_hdus=False, memmap=False)
        except (OSError, EOFError, zlib.error, ValueError, IndexError, TypeError) as exc:
            problem = "damaged gzip file" if is_gzip else "damaged or truncated FITS file"
            raise NuskybgdError(f"{p}: cannot read {what}: {problem} ({' '.join(str(exc).split())})") from None
    for w in caught:
        msg = str(w.message)
        if "truncated" in msg.lower():
            hdul.close()
            raise NuskybgdError(f"{p}: cannot read {what}: file is truncated")
    for w in caught:
        if not issubclass(w.category, AstropyUserWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for i, hdu in enumerate(hdul):
        for card in hdu.header.cards:
            try:
                card.value  # noqa: B018 - parsing the card is the check
            except (fits.VerifyError, ValueError) as exc:
                hdul.close()
                raise NuskybgdError(f"{p}: cannot read {what}: HDU {i} has an unparsable header card "
                                    f"{card.keyword} ({' '.join(str(exc).split())[:80]})") from None
    bad = _truncated_hdus(hdul, p, is_gzip)
    if bad is not None:
        hdul.close()
        raise NuskybgdError(f"{p}: cannot read {what}: file is truncated (HDU {bad} incomplete)")
    if is_gzip:
        # A gzip stream can only be checked by decompressing it all.
        try:
            for hdu in hdul:
                if hdu.header.get("NAXIS", 0) or hdu.header.get("PCOUNT", 0):
                    _ = hdu.data
        except (OSError, EOFError, zlib.error, ValueError, TypeError) as exc:
            hdul.close()
            raise NuskybgdError(
                f"{p}: cannot read {what}: damaged or truncated gzip file ({' '.join(str(exc).split())})") from None
    return hdul


def find_hdus(hdul, extname):
    """All HDUs whose EXTNAME contains ``extname`` (case-insensitive).

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        Open file.
    extname : str
        Substring to look for, e.g. ``"BADPIX"``.

    Returns
    -------
    list of astropy.io.fits hdu
        In file order; empty when none matches.
    """
    key = extname.upper()
    return [h for h in hdul if key in str(h.header.get("EXTNAME", "")).strip().upper()]


def find_hdu(hdul, extname, path=None):
    """The HDU with EXTNAME equal to ``extname`` (or the first of a list of names).

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        Open file.
    extname : str or sequence of str
        Wanted extension name; with several names, the first present wins
        (e.g. ``("STDGTI", "GTI")``). Comparison ignores case and spaces.
    path : str or os.PathLike, optional
        File name for the error message.

    Returns
    -------
    astropy.io.fits hdu
        The first matching HDU.

    Raises
    ------
    NuskybgdError
        When no HDU matches, naming the file, the wanted names and those present.
    """
    names = [extname] if isinstance(extname, str) else list(extname)
    present = [str(h.header.get("EXTNAME", "")).strip().upper() for h in hdul]
    for name in names:
        key = name.strip().upper()
        for h, n in zip(hdul, present):
            if n == key:
                return h
    where = path if path is not None else (hdul.filename() or "FITS file")
    have = ", ".join(n for n in present if n) or "none"
    raise NuskybgdError(f"{where}: no {' or '.join(names)} extension (extensions present: {have})")


def header_value(header, key, path=None, default=None, required=False):
    """A header keyword value, with a clear error when it is required and missing.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Header to read.
    key : str
        Keyword name.
    path : str or os.PathLike, optional
        File name for the error message.
    default : object
        Value when the keyword is absent and not required.
    required : bool
        Raise when the keyword is missing.

    Returns
    -------
    object
        The value (strings stripped).
    """
    if key in header:
        v = header[key]
        return v.strip() if isinstance(v, str) else v
    if required:
        raise NuskybgdError(f"{path or 'FITS header'}: keyword {key} missing")
    return default
