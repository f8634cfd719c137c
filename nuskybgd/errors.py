"""User-facing errors.

Every problem caused by the user's input is raised as :class:`NuskybgdError`
with a one-line message naming the file and the problem (and, where useful,
the remedy). The command line prints that line and exits non-zero.
"""

__all__ = ["NuskybgdError", "input_error"]


class NuskybgdError(Exception):
    """An error the user can fix; its message is a single line.

    Parameters
    ----------
    message : str
        What is wrong (whitespace, newlines included, is collapsed to single
        blanks).
    """

    exit_code = 2

    def __init__(self, message):
        # Collapse to one line: the CLI contract is one line per error.
        message = " ".join(str(message).split())
        super().__init__(message)


def input_error(path, problem, remedy=None):
    """Build a :class:`NuskybgdError` that names a file and its problem.

    Parameters
    ----------
    path : str or os.PathLike or None
        The offending file (or ``None`` when no file is involved).
    problem : str
        What is wrong, e.g. ``"no EVENTS extension"``.
    remedy : str, optional
        What the user can do about it.

    Returns
    -------
    NuskybgdError
        The error, ready to be raised.
    """
    msg = f"{path}: {problem}" if path is not None else str(problem)
    if remedy:
        msg += f" ({remedy})"
    return NuskybgdError(msg)
