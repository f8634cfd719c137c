"""``python -m nuskybgd.models.atomdb download``: same as ``nuskybgd atomdb download``.

Kept for users who call the module directly; the task itself lives in
:mod:`nuskybgd.tasks.atomdb`.
"""

import sys

__all__ = ["main"]


def main(argv=None):
    """Run ``nuskybgd atomdb`` with the given arguments.

    Parameters
    ----------
    argv : list of str, optional
        Arguments after the module name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a user error (one line on stderr).
    """
    from ..cli import main as cli_main
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["atomdb", *argv])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
