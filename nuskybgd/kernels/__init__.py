"""Pure numerical kernels (numpy/numba, no I/O): XSPEC-equivalent spectral integrals and RMF folding."""
