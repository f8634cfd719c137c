"""Calibration access: the NuSTAR CALDB, the nuskybgd calibration bundle and the component presets."""
