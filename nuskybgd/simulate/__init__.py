"""Simulated NuSTAR observations (events, aspect, GTIs) and a synthetic CALDB."""
