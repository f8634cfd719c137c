"""The parameter table of the spectral components: the single source of truth.

One entry per XSPEC component type: its parameters in XSPEC order, each with
the default value, step (``delta``; negative = frozen by default), hard and
soft limits and unit, as XSPEC 6.35's ``model.dat`` and its save files give
them. Everything else is generated from here:

* the Sherpa classes of :mod:`nuskybgd.models.basic` (``cutoffpl``,
  ``bknpower``, ``lorentz``, ``apec``, ``lorentz_lines`` and the norms of
  ``TemplateCountsModel``) build their ``Parameter`` objects with
  :func:`component_parameters`;
* the fit state (:class:`nuskybgd.io.state.Param` defaults,
  :mod:`nuskybgd.fitting.model`) and the XCM reader and writer
  (:mod:`nuskybgd.io.xcm`) take names and the six XSPEC numbers from
  :data:`COMPONENT_PARAMS`, a view of the same table.

The tests check that the three agree for every parameter.
"""

from dataclasses import dataclass

__all__ = ["ParameterSpec", "PARAMETERS", "COMPONENT_PARAMS", "NORM", "component_parameters"]


@dataclass(frozen=True)
class ParameterSpec:
    """Default and limits of one XSPEC parameter.

    Attributes
    ----------
    name : str
        XSPEC parameter name (``PhoIndex``, ``norm`` ...).
    value : float
        Default value.
    delta : float
        Fit step; negative: frozen by default (XSPEC's convention).
    hard_min, soft_min, soft_max, hard_max : float
        XSPEC's ``min``, ``bot``, ``top``, ``max``.
    units : str
        Unit (``keV``; empty for dimensionless parameters and norms, whose
        unit depends on the model: see the Sherpa classes).
    """

    name: str
    value: float
    delta: float
    hard_min: float
    soft_min: float
    soft_max: float
    hard_max: float
    units: str = ""

    @property
    def frozen(self):
        """True when XSPEC freezes the parameter by default (negative delta)."""
        return self.delta < 0

    def numbers(self):
        """The six numbers of an XCM parameter line.

        Returns
        -------
        tuple of float
            ``(value, delta, hard_min, soft_min, soft_max, hard_max)``.
        """
        return (self.value, self.delta, self.hard_min, self.soft_min, self.soft_max, self.hard_max)


def _p(name, value, delta, hard_min, soft_min, soft_max, hard_max, units=""):
    return ParameterSpec(name, float(value), float(delta), float(hard_min), float(soft_min), float(soft_max),
                         float(hard_max), units)


#: XSPEC's additive normalisation (as its save files write it: 1 0.01 0 0 1e20 1e24).
NORM = _p("norm", 1.0, 0.01, 0.0, 0.0, 1e20, 1e24)

#: component type -> its parameters in XSPEC order.
PARAMETERS = {
    "cutoffpl": (_p("PhoIndex", 1.0, 0.01, -3.0, -2.0, 9.0, 10.0),
                 _p("HighECut", 15.0, 0.01, 0.01, 1.0, 500.0, 500.0, "keV"),
                 NORM),
    "bknpower": (_p("PhoIndx1", 1.0, 0.01, -3.0, -2.0, 9.0, 10.0),
                 _p("BreakE", 5.0, 0.1, 0.0, 0.01, 1e6, 1e6, "keV"),
                 _p("PhoIndx2", 2.0, 0.01, -3.0, -2.0, 9.0, 10.0),
                 NORM),
    "lorentz": (_p("LineE", 6.5, 0.05, 0.0, 0.0, 1e6, 1e6, "keV"),
                _p("Width", 0.1, 0.05, 0.0, 0.0, 10.0, 20.0, "keV"),
                NORM),
    "gaussian": (_p("LineE", 6.5, 0.05, 0.0, 0.0, 1e6, 1e6, "keV"),
                 _p("Sigma", 0.1, 0.05, 0.0, 0.0, 10.0, 20.0, "keV"),
                 NORM),
    "apec": (_p("kT", 1.0, 0.01, 0.008, 0.008, 64.0, 64.0, "keV"),
             _p("Abundanc", 1.0, -0.001, 0.0, 0.0, 5.0, 5.0),
             _p("Redshift", 0.0, -0.01, -0.999, -0.999, 10.0, 10.0),
             NORM),
    "powerlaw": (_p("PhoIndex", 1.0, 0.01, -3.0, -2.0, 9.0, 10.0),
                 NORM),
    "bbody": (_p("kT", 3.0, 0.01, 1e-4, 0.01, 100.0, 200.0, "keV"),
              NORM),
    "bremss": (_p("kT", 7.0, 0.01, 1e-4, 0.01, 100.0, 200.0, "keV"),
               NORM),
    "constant": (_p("factor", 1.0, 0.01, 0.0, 0.0, 1e10, 1e10),),
    "tbabs": (_p("nH", 1.0, 0.001, 0.0, 0.0, 1e5, 1e6, "10^22 atoms/cm^2"),),
    "phabs": (_p("nH", 1.0, 0.001, 0.0, 0.0, 1e5, 1e6, "10^22 atoms/cm^2"),),
}

#: XSPEC parameter names and default (value, delta, min, bottom, top, max):
#: the view of :data:`PARAMETERS` used by the fit state and the XCM files.
COMPONENT_PARAMS = {c: [(p.name, p.numbers()) for p in ps] for c, ps in PARAMETERS.items()}


def component_parameters(component):
    """Parameters of a component type.

    Parameters
    ----------
    component : str
        XSPEC component name (case-insensitive), e.g. ``"cutoffpl"``.

    Returns
    -------
    tuple of ParameterSpec
        In XSPEC order.

    Raises
    ------
    KeyError
        For a component not in the table.
    """
    return PARAMETERS[str(component).lower()]
