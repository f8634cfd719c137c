"""One module per command-line task (see :mod:`nuskybgd.cli`)."""
