"""Command-line interface: ``nuskybgd TASK [options]``.

The only module that parses arguments. Each task lives in
``nuskybgd/tasks/<task>.py`` and provides ``SUMMARY`` (one line),
``add_arguments(parser)`` and ``run(args)``; optionally ``DESCRIPTION``
(shown by ``nuskybgd TASK --help``, with examples) and ``LEGACY`` (a mapping
from the original tool's ``key=value`` names to option strings).

For drop-in use every task also accepts the original's ``key=value``
arguments (``savefile=bgd`` becomes ``--savefile bgd``) and the ``!name``
prefix, which means "overwrite" (same as ``--clobber``).

Start-up: task modules are imported lazily. ``nuskybgd --help`` imports no
task at all (the one-line summaries are :data:`SUMMARIES`), and ``nuskybgd
TASK ...`` imports only that task, so numpy, astropy, Sherpa and numba are
loaded only by the tasks that use them. This module must therefore import
nothing heavier than the standard library.
"""

import argparse
import importlib
import re
import sys

from . import __version__
from .errors import NuskybgdError

__all__ = ["SUMMARIES", "TASKS", "build_parser", "error_line", "main", "translate_legacy"]

#: Task names in the order shown by ``nuskybgd --help``.
TASKS = (
    "simulate", "mkimgs", "aspecthist", "mkinstrmap", "projbgd", "extract",
    "fit", "spec", "simplify", "spex", "image", "absrmf", "demo", "atomdb",
    "simulate-archive", "stack", "calibrate",
)

#: One-line summary of every task (``nuskybgd --help``), kept here so that the
#: top-level help imports no task module; a task's own ``SUMMARY`` must equal it.
SUMMARIES = {
    "simulate": "make a synthetic NuSTARDAS-layout observation with its CALDB",
    "mkimgs": "counts image of an event file in an energy band",
    "aspecthist": "aspect histogram from the DET1 reference-point file",
    "mkinstrmap": "instrument map (detector number per DET1 pixel) with bad pixels removed",
    "projbgd": "project aperture and detector images onto the sky",
    "extract": "extract a spectrum, RMF and grouped spectrum for a region",
    "fit": "fit the background model to background-region spectra",
    "spec": "rescale the fitted background to source regions",
    "simplify": "background-only XSPEC state for the source spectra",
    "spex": "SPEX spectrum, response and command file with the modelled background",
    "image": "background model images in an energy band",
    "absrmf": "RMFs with detector absorption, one per detector",
    "demo": "run the whole chain on a simulated observation",
    "atomdb": "download AtomDB apec files (sha256-verified) into the user cache",
    "simulate-archive": "simulate an archive of observations over several years (epoch-dependent background)",
    "stack": "stack an archive into whole-detector background spectra per epoch, module and detector",
    "calibrate": "fit stacked spectra and write one calibration bundle (ratios.json, gain) per epoch",
}

_LEGACY_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)


def _load_task(name):
    module = name.replace("-", "_")  # task simulate-archive lives in tasks/simulate_archive.py
    try:
        return importlib.import_module(f"nuskybgd.tasks.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"nuskybgd.tasks.{module}":
            return None
        raise


def _not_implemented(name):
    def run(args):
        raise NuskybgdError("not implemented yet")
    return run


def build_parser(tasks=None):
    """Build the argument parser with one subcommand per task.

    Parameters
    ----------
    tasks : iterable of str, optional
        Tasks whose modules are imported and whose options are added (None:
        every task). The others get a placeholder subparser that carries only
        their summary, enough for ``nuskybgd --help``.

    Returns
    -------
    argparse.ArgumentParser
        The top-level parser; each loaded subparser carries ``_task_run`` and
        ``_task_legacy`` defaults.
    """
    load = set(TASKS if tasks is None else tasks)
    parser = argparse.ArgumentParser(
        prog="nuskybgd",
        description="NuSTAR background modelling without HEASoft or XSPEC.",
        epilog="Run 'nuskybgd TASK --help' for a task's options and examples. "
               "Original-style key=value arguments and the '!' overwrite prefix are accepted.",
    )
    parser.add_argument("--version", action="version", version=f"nuskybgd {__version__}")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="verbosity of messages on stderr (default INFO)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="task", metavar="TASK")
    for name in TASKS:
        summary = SUMMARIES[name]
        if name not in load:
            sub.add_parser(name, help=summary, description=summary)
            continue
        mod = _load_task(name)
        if mod is None:
            summary += " (not implemented yet)"
        p = sub.add_parser(name, help=summary, description=getattr(mod, "DESCRIPTION", summary),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if mod is not None:
            mod.add_arguments(p)
            p.set_defaults(_task_run=mod.run, _task_legacy=getattr(mod, "LEGACY", {}))
        else:
            p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            p.set_defaults(_task_run=_not_implemented(name), _task_legacy=None)
        if not any("--clobber" in a.option_strings for a in p._actions):
            p.add_argument("--clobber", action="store_true", help="overwrite existing output files")
    return parser


def _option_strings(subparser):
    opts = {}
    for action in subparser._actions:
        for s in action.option_strings:
            opts[s] = action
    return opts


def translate_legacy(argv, subparser, legacy=None):
    """Turn the original tool's ``key=value`` arguments into options.

    Parameters
    ----------
    argv : list of str
        Arguments after the task name.
    subparser : argparse.ArgumentParser
        The task's parser (its option strings define the accepted keys).
    legacy : dict, optional
        Extra mapping ``key -> option string`` for keys whose modern option
        has another name.

    Returns
    -------
    list of str
        Arguments in the modern form. A value (or positional argument)
        starting with ``!`` loses the ``!`` and adds ``--clobber``.

    Raises
    ------
    NuskybgdError
        For a ``key=value`` whose key the task does not know.
    """
    legacy = legacy or {}
    opts = _option_strings(subparser)
    out, clobber = [], False
    it = iter(argv)
    expects_value = False
    for tok in it:
        if tok == "--":
            out.append(tok)
            out.extend(it)
            break
        if expects_value:  # the value of a modern option is taken as it is
            out.append(tok)
            expects_value = False
            continue
        if tok.startswith("-"):
            action = opts.get(tok)
            expects_value = action is not None and action.nargs != 0
            out.append(tok)
            continue
        m = _LEGACY_KEY.match(tok)
        if m:
            key, value = m.group(1), m.group(2)
            opt = legacy.get(key) or legacy.get(key.lower())
            if opt is None:
                for cand in (f"--{key}", f"--{key.lower()}", f"--{key.replace('_', '-')}",
                             f"--{key.lower().replace('_', '-')}"):
                    if cand in opts:
                        opt = cand
                        break
            if opt is None:
                raise NuskybgdError(f"{subparser.prog}: unknown argument '{key}=' (see --help)")
            if value.startswith("!") and len(value) > 1:
                value, clobber = value[1:], True
            if opt == "--clobber":
                clobber = clobber or value.strip().lower() in ("yes", "y", "true", "1")
                continue
            action = opts.get(opt)
            if action is not None and action.nargs == 0:  # flags: key=yes/no
                if value.strip().lower() in ("yes", "y", "true", "1"):
                    out.append(opt)
                continue
            out.extend([opt, value])
        elif tok.startswith("!") and len(tok) > 1:
            out.append(tok[1:])
            clobber = True
        else:
            out.append(tok)
    if clobber and "--clobber" not in out:
        out.append("--clobber")
    return out


def main(argv=None):
    """Entry point of the ``nuskybgd`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0 on success, 2 for input errors, 1 for internal errors.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # Split global options from the task and its arguments; load only that task.
    task_idx = next((i for i, a in enumerate(argv) if a in TASKS), None)
    parser = build_parser(() if task_idx is None else (argv[task_idx],))
    debug = "--debug" in argv[: task_idx if task_idx is not None else len(argv)]
    try:
        if task_idx is not None:
            sub = parser._subparsers._group_actions[0].choices[argv[task_idx]]
            legacy = sub.get_default("_task_legacy")
            if legacy is not None:  # None: a task not built yet takes anything
                argv = argv[: task_idx + 1] + translate_legacy(argv[task_idx + 1:], sub, legacy)
        args = parser.parse_args(argv)
        if args.task is None:
            parser.print_help(sys.stderr)
            return 2
        import logging  # here, not at the top: 10-15 ms of `nuskybgd --help` (python -X importtime)

        logging.basicConfig(level=getattr(logging, args.log_level), format="nuskybgd: %(message)s",
                            stream=sys.stderr)
        from .io.output import output_session
        _recover_argument_folders(args)
        with output_session():  # output locks end with the task
            rc = args._task_run(args)
        return int(rc or 0)
    except NuskybgdError as exc:
        if debug:
            raise
        _close_progress_bars()
        task = argv[task_idx] if task_idx is not None else ""
        print(error_line(task, exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        _close_progress_bars()
        print("nuskybgd: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if debug:
            raise
        _close_progress_bars()
        task = argv[task_idx] if task_idx is not None else ""
        print(error_line(task, "out of memory (reduce the size of the request)"), file=sys.stderr)
        return 2
    except Exception as exc:  # pragma: no cover - unexpected failures stay one line too
        if debug:
            raise
        _close_progress_bars()
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"nuskybgd: internal error: {msg} (rerun with --debug for a traceback)", file=sys.stderr)
        return 1


def _recover_argument_folders(args):
    """Finish or undo interrupted output transactions in the folders named on the command line.

    A run killed during its commit leaves a journal; the next run of any
    task that names a file of that folder completes (or discards) it before
    reading anything, so no run ever sees a mixture of old and new files.
    """
    import logging
    import os
    from pathlib import Path

    from .io.output import STAGE_PREFIX, recover_folder
    values = []
    for v in vars(args).values():
        values.extend(v if isinstance(v, (list, tuple)) else [v])
    seen = set()
    for v in values:
        if not isinstance(v, (str, os.PathLike)) or not str(v) or "\0" in str(v):
            continue
        try:
            p = Path(v)
            folder = p if p.is_dir() else p.parent
            if folder in seen or not folder.is_dir():
                continue
            seen.add(folder)
            if any(e.name.startswith(STAGE_PREFIX) for e in os.scandir(folder)):
                for line in recover_folder(folder):
                    logging.getLogger("nuskybgd").info("%s: %s", folder, line)
        except (OSError, ValueError):
            continue


def error_line(task, exc):
    """The one line printed for a user error: ``nuskybgd TASK: error: MESSAGE``.

    Parameters
    ----------
    task : str
        Task name ("" before a task is known).
    exc : Exception or str
        The error; a message that already starts with ``nuskybgd TASK:`` (an
        argparse-style program prefix) is not prefixed twice.

    Returns
    -------
    str
        One line.
    """
    msg = " ".join(str(exc).split())
    prefix = f"nuskybgd {task}".strip()
    for p in (f"{prefix}: error:", f"{prefix}:", "nuskybgd:", f"{task}:" if task else "nuskybgd:"):
        if msg.startswith(p):
            msg = msg[len(p):].lstrip()
            break
    return f"{prefix}: error: {msg}"


def _close_progress_bars():
    """Close open tqdm bars so that an error line starts on a line of its own."""
    tqdm_mod = sys.modules.get("tqdm")
    bars = list(getattr(getattr(tqdm_mod, "tqdm", None), "_instances", []) or [])
    for bar in bars:
        try:
            bar.leave = False
            bar.close()
        except Exception:  # pragma: no cover - a broken bar must not hide the error
            pass
    if bars:
        try:
            sys.stderr.write("\n")  # the error line must not continue a bar's line
            sys.stderr.flush()
        except (OSError, ValueError):  # pragma: no cover
            pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
