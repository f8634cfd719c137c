"""Command that fills the AtomDB cache: ``python -m nuskybgd.models.atomdb download``.

Downloads the AtomDB release tarball (or the two FITS files from a folder
address), keeps ``apec_v<version>_coco.fits`` and ``apec_v<version>_line.fits``,
checks their sha256 and moves them into the cache that
:func:`nuskybgd.models.apec.find_atomdb` searches. Kept apart from
:mod:`nuskybgd.models.apec` so that ``python -m`` does not execute a module
the package has already imported.
"""

import argparse
import sys

from ..errors import NuskybgdError

__all__ = ["main"]


def main(argv=None):
    """``python -m nuskybgd.models.atomdb download [--version V] [--url U] [--dest D]``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a user error (one line on stderr).
    """
    from .apec import DEFAULT_ATOMDB_VERSION, atomdb_cache_dir, download_atomdb

    parser = argparse.ArgumentParser(prog="python -m nuskybgd.models.atomdb",
                                     description="Download AtomDB apec files (sha256-verified) into the cache.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("download", help="download AtomDB apec_v*_coco.fits and apec_v*_line.fits",
                       description="Example: python -m nuskybgd.models.atomdb download --version 3.1.2")
    p.add_argument("--version", default=DEFAULT_ATOMDB_VERSION, help="AtomDB version (default %(default)s)")
    p.add_argument("--url", default=None,
                   help="release tarball or folder address ending in / (default: AtomDB releases, "
                        "or $NUSKYBGD_ATOMDB_URL)")
    p.add_argument("--dest", default=None, help=f"cache folder (default {atomdb_cache_dir()})")
    args = parser.parse_args(argv)
    try:
        coco, line = download_atomdb(args.version, args.url, args.dest)
    except NuskybgdError as exc:
        print(f"nuskybgd: error: {exc}", file=sys.stderr)
        return 2
    print(f"AtomDB {args.version}: {coco} and {line}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
