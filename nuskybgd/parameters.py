"""The parameter table of the background model's spectral components.

One entry per XSPEC component type: its parameter names in XSPEC order and
the default ``(value, delta, hard_min, soft_min, soft_max, hard_max)``, as an
XSPEC save file writes them. :class:`nuskybgd.io.state.Source` and the XCM
reader take names and defaults from here.
"""

__all__ = ["COMPONENT_PARAMS"]

#: XSPEC parameter names and default (value, delta, min, bottom, top, max)
#: of the components the background model and the real save files use.
COMPONENT_PARAMS = {
    "cutoffpl": [("PhoIndex", (1.0, 0.01, -3.0, -2.0, 9.0, 10.0)),
                 ("HighECut", (15.0, 0.01, 0.01, 1.0, 500.0, 500.0)),
                 ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "bknpower": [("PhoIndx1", (1.0, 0.01, -3.0, -2.0, 9.0, 10.0)),
                 ("BreakE", (5.0, 0.1, 0.0, 0.01, 1e6, 1e6)),
                 ("PhoIndx2", (2.0, 0.01, -3.0, -2.0, 9.0, 10.0)),
                 ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "lorentz": [("LineE", (6.5, 0.05, 0.0, 0.0, 1e6, 1e6)),
                ("Width", (0.1, 0.05, 0.0, 0.0, 10.0, 20.0)),
                ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "gaussian": [("LineE", (6.5, 0.05, 0.0, 0.0, 1e6, 1e6)),
                 ("Sigma", (0.1, 0.05, 0.0, 0.0, 10.0, 20.0)),
                 ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "apec": [("kT", (1.0, 0.01, 0.008, 0.008, 64.0, 64.0)),
             ("Abundanc", (1.0, -0.001, 0.0, 0.0, 5.0, 5.0)),
             ("Redshift", (0.0, -0.01, -0.999, -0.999, 10.0, 10.0)),
             ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "powerlaw": [("PhoIndex", (1.0, 0.01, -3.0, -2.0, 9.0, 10.0)),
                 ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "bbody": [("kT", (3.0, 0.01, 1e-4, 0.01, 100.0, 200.0)),
              ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "bremss": [("kT", (7.0, 0.01, 1e-4, 0.01, 100.0, 200.0)),
               ("norm", (1.0, 0.01, 0.0, 0.0, 1e20, 1e24))],
    "constant": [("factor", (1.0, 0.01, 0.0, 0.0, 1e10, 1e10))],
    "tbabs": [("nH", (1.0, 0.001, 0.0, 0.0, 1e5, 1e6))],
    "phabs": [("nH", (1.0, 0.001, 0.0, 0.0, 1e5, 1e6))],
}
