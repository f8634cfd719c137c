"""Pure numerical kernels (numpy/numba, no I/O)."""
