"""Workflows of the application layer: load inputs, run the model, write outputs on request.

No argument parsing here: the command-line tasks (:mod:`nuskybgd.tasks`) are
thin adapters over these functions.
"""
