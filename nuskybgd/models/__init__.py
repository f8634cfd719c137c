"""Spectral models of the NuSTAR background: XSPEC-equivalent kernels, Sherpa
model classes, the four components' responses and folded templates."""
