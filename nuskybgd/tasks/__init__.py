"""One module per command-line task (see :mod:`nuskybgd.cli`).

Every task module follows one protocol, documented here once rather than in
each module:

``add_arguments(parser)``
    Add the task's options to ``parser`` (an :class:`argparse.ArgumentParser`
    made by :mod:`nuskybgd.cli`); returns nothing.
``run(args)``
    Run the task with the parsed options ``args`` (an
    :class:`argparse.Namespace`); returns the exit status (0 or ``None`` on
    success). Library errors are raised as
    :class:`~nuskybgd.errors.NuskybgdError` and turned into an error line
    and exit code by the command line.
"""
