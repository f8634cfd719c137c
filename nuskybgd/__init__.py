"""nuskybgd: NuSTAR background modelling without HEASoft or XSPEC.

The package reproduces the method of Wik et al. (2014, ApJ 792, 48) and of the
original ``nuskybgd`` tool: project instrument maps onto the sky with the
pointing history, turn region files into per-component weights, fit the
four-component background model (apbgd, intbgd, fcxb, intn) and apply it to
source regions.

From Python, :class:`nuskybgd.Background` is the entry point::

    import nuskybgd
    bg = nuskybgd.Background.from_bgdinfo("bgdinfo.json")
    result = bg.fit()
    prediction = bg.predict("src.reg", "src.pha")

``Background`` is imported on first use, so that ``import nuskybgd`` (and
``nuskybgd --help``) stays cheap.
"""

import importlib

__version__ = "0.1.0"

__all__ = ["__version__", "Background", "BackgroundFit", "Prediction"]

_LAZY = {"Background": "nuskybgd.analysis.background", "BackgroundFit": "nuskybgd.analysis.background",
         "Prediction": "nuskybgd.analysis.background"}


def __getattr__(name):
    """Import the public API on first use (PEP 562).

    Parameters
    ----------
    name : str
        Attribute of the package.

    Returns
    -------
    object
        ``Background``, ``BackgroundFit`` or ``Prediction``.

    Raises
    ------
    AttributeError
        For any other name.
    """
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nuskybgd' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
