"""``nuskybgd atomdb download``: fill the AtomDB cache used by the apec model."""

SUMMARY = "download AtomDB apec files (sha256-verified) into the user cache"
DESCRIPTION = """Download AtomDB's apec continuum and line files, verify their sha256 sums
(as registered for AtomDB 3.1.2, 3.1.3 and 3.0.9) and store them in the
cache that the apec model searches after $ATOMDB and $APECROOT.

Examples:
  nuskybgd atomdb download
  nuskybgd atomdb download --version 3.1.3
  nuskybgd atomdb download --url file:///data/atomdb_v3.1.2.tar.bz2
"""


def add_arguments(parser):
    """Declare the task's arguments (see :mod:`nuskybgd.cli`)."""
    from ..models.apec import DEFAULT_ATOMDB_VERSION, atomdb_cache_dir
    parser.add_argument("command", choices=["download"], help="what to do")
    parser.add_argument("--version", default=DEFAULT_ATOMDB_VERSION, help="AtomDB version (default %(default)s)")
    parser.add_argument("--url", default=None,
                        help="release tarball, or folder address ending in / "
                             "(default: the AtomDB release address, or $NUSKYBGD_ATOMDB_URL)")
    parser.add_argument("--dest", default=None, help=f"cache folder (default {atomdb_cache_dir()})")


def run(args):
    """Download and verify the AtomDB files."""
    from ..models.apec import download_atomdb
    coco, line = download_atomdb(args.version, args.url, args.dest)
    print(f"AtomDB {args.version}: {coco} and {line}")
    return 0
