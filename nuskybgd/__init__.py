"""nuskybgd: NuSTAR background modelling without HEASoft or XSPEC.

The package reproduces the method of Wik et al. (2014, ApJ 792, 48) and of the
original ``nuskybgd`` tool: project instrument maps onto the sky with the
pointing history, turn region files into per-component weights, fit the
four-component background model (apbgd, intbgd, fcxb, intn) and apply it to
source regions.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
