"""Spectral models of the NuSTAR background: XSPEC-equivalent kernels, Sherpa
model classes, the four components' responses and folded templates.

``nuskybgd.models.cutoffpl``, ``bknpower``, ``lorentz``, ``apec``,
``lorentz_lines``, ``TemplateCountsModel`` and ``FoldedModel`` are the Sherpa
classes of :mod:`nuskybgd.models.basic`. Note that the package attribute
``apec`` is the Sherpa class; the module of the same name is reached with
``from nuskybgd.models.apec import apec_spectrum`` (or
``importlib.import_module("nuskybgd.models.apec")``).
"""

# Import order matters: loading basic imports the submodule ``apec``, which
# binds the package attribute ``apec`` to that module; the line below rebinds
# it to the Sherpa class.
from .basic import (  # noqa: E402
    FoldedModel,
    TemplateCountsModel,
    apec,
    bknpower,
    cutoffpl,
    lorentz,
    lorentz_lines,
)

__all__ = ["cutoffpl", "bknpower", "lorentz", "apec", "lorentz_lines", "TemplateCountsModel", "FoldedModel"]
