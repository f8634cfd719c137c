"""Sherpa model classes: XSPEC's ``cutoffpl``, ``bknpower``, ``lorentz`` and
``apec`` without XSPEC, plus folded models for fitting spectra.

Energy-space models (:class:`cutoffpl`, :class:`bknpower`, :class:`lorentz`,
:class:`apec`, :class:`lorentz_lines`) take bin edges in keV and return
photons/cm^2/s per bin, with XSPEC's parameter names, defaults, soft and hard
limits and units, generated from the one parameter table
:mod:`nuskybgd.parameters` (XSPEC 6.35 ``model.dat`` and save files; the fit
state uses the same table); ``norm`` is the XSPEC norm
(photons/keV/cm^2/s at 1 keV for the power laws, line flux for lorentz,
1e-14/(4 pi D^2) int n_e n_H dV for apec)::

    >>> m = cutoffpl()
    >>> m.PhoIndex = 1.29
    >>> m([3.0, 4.0], [4.0, 5.0])          # doctest: +SKIP

Called with one array, it is taken as contiguous bin edges and the last value
is 0 (the convention of Sherpa's XSPEC models).

Channel-space models for fitting a PHA spectrum (the exposure is applied
here, not by Sherpa):

* :class:`TemplateCountsModel`: sum of cached folded templates (see
  :func:`nuskybgd.models.background.component_templates`) times free norms;
  values are looked up by channel, so Sherpa's channel filtering works.
* :class:`FoldedModel`: any energy-space model evaluated on the full RMF
  energy grid, times an ARF and the exposure, folded through the RMF, then
  looked up by channel (for components whose shape is fitted).
"""

import numpy as np
from sherpa.models.basic import RegriddableModel1D
from sherpa.models.model import ArithmeticModel, CompositeModel, modelCacher1d
from sherpa.models.parameter import Parameter

from ..errors import NuskybgdError
from ..kernels import spectral as kernels
from ..parameters import NORM, component_parameters
from .apec import apec_spectrum
from .folding import fold_spectra, rmf_info
from .responses import check_same_grid

__all__ = ["cutoffpl", "bknpower", "lorentz", "apec", "lorentz_lines", "TemplateCountsModel",
           "FoldedModel", "parameter_name", "sherpa_parameters"]


def sherpa_parameters(modelname, component, frozen=None, prefix="", suffix=""):
    """Sherpa ``Parameter`` objects of a component, from the parameter table.

    Parameters
    ----------
    modelname : str
        Name of the Sherpa model instance.
    component : str
        Component type of :data:`nuskybgd.parameters.PARAMETERS`.
    frozen : mapping, optional
        Parameter name -> frozen flag overriding the table's default.
    prefix, suffix : str
        Added around each parameter name (``LineE`` -> ``LineE_lorentz_3``).

    Returns
    -------
    list of sherpa.models.parameter.Parameter
        Value, soft limits (``min``/``max``), hard limits, unit and frozen
        flag of every parameter, in XSPEC order.
    """
    frozen = frozen or {}
    out = []
    for spec in component_parameters(component):
        out.append(Parameter(modelname, f"{prefix}{spec.name}{suffix}", spec.value, spec.soft_min, spec.soft_max,
                             units=spec.units, frozen=frozen.get(spec.name, spec.frozen),
                             hard_min=spec.hard_min, hard_max=spec.hard_max))
    return out


class _XSAdditive(RegriddableModel1D):
    """Bin-integrated model: calc(p, lo, hi) -> norm x kernel(lo, hi, shape params).

    Subclasses name their XSPEC ``component``; the parameters come from the
    table (:func:`sherpa_parameters`), and ``_shape`` calls the kernel.
    """

    component = None

    def __init__(self, name=None):
        name = name or self.component
        pars = sherpa_parameters(name, self.component)
        for par in pars:
            setattr(self, par.name, par)
        super().__init__(name, tuple(pars))

    def _shape(self, pars, lo, hi):  # pragma: no cover - abstract
        raise NotImplementedError

    @modelCacher1d
    def calc(self, p, *args, **kwargs):
        if len(args) >= 2 and args[1] is not None:
            lo = np.asarray(args[0], float)
            hi = np.asarray(args[1], float)
            return p[-1] * self._shape(p[:-1], lo, hi)
        if len(args) < 1:
            raise NuskybgdError(f"{self.name}: needs energy bin edges (keV)")
        edges = np.asarray(args[0], float)
        out = np.zeros(edges.size)
        if edges.size > 1:
            out[:-1] = p[-1] * self._shape(p[:-1], edges[:-1], edges[1:])
        return out


class cutoffpl(_XSAdditive):
    r"""XSPEC ``cutoffpl``: power law with high-energy exponential cut-off.

    Parameters
    ----------
    name : str, optional
        Model name (default the component name).

    Attributes
    ----------
    PhoIndex
        Photon index (default 1, soft -2..9, hard -3..10).
    HighECut
        e-folding energy, keV (default 15, soft 1..500, hard 0.01..500).
    norm
        photons/keV/cm^2/s at 1 keV.

    Notes
    -----
    .. math:: A(E) = K E^{-\alpha} \exp(-E/\beta)

    integrated over each bin as XSPEC does it (see
    :func:`nuskybgd.kernels.spectral.cutoffpl_integral`).
    """

    component = "cutoffpl"

    def _shape(self, pars, lo, hi):
        return kernels.cutoffpl_integral(lo, hi, pars[0], pars[1])


class bknpower(_XSAdditive):
    r"""XSPEC ``bknpower``: broken power law.

    Parameters
    ----------
    name : str, optional
        Model name (default the component name).

    Attributes
    ----------
    PhoIndx1
        Photon index below BreakE (default 1, soft -2..9, hard -3..10).
    BreakE
        Break energy, keV (default 5, soft 0.01..1e6, hard 0..1e6).
    PhoIndx2
        Photon index above BreakE (default 2, soft -2..9, hard -3..10).
    norm
        photons/keV/cm^2/s at 1 keV.

    Notes
    -----
    .. math:: A(E) = K E^{-\Gamma_1} (E \le E_b),\quad K E_b^{\Gamma_2-\Gamma_1} E^{-\Gamma_2} (E > E_b)
    """

    component = "bknpower"

    def _shape(self, pars, lo, hi):
        return kernels.bknpower_integral(lo, hi, pars[0], pars[1], pars[2])


class lorentz(_XSAdditive):
    r"""XSPEC ``lorentz``: Lorentzian line normalised over E > 0.

    Parameters
    ----------
    name : str, optional
        Model name (default the component name).

    Attributes
    ----------
    LineE
        Line energy, keV (default 6.5, 0..1e6).
    Width
        FWHM, keV (default 0.1, soft 0..10, hard 0..20).
    norm
        Line flux, photons/cm^2/s (over E > 0).

    Notes
    -----
    Bin value ``K [atan(2(E_hi-E0)/W) - atan(2(E_lo-E0)/W)] / (pi/2 + atan(2 E0/W))``
    with XSPEC's far-wing truncation (Sherpa's ``Lorentz1D`` is normalised
    over all energies instead).
    """

    component = "lorentz"

    def _shape(self, pars, lo, hi):
        return kernels.lorentz_integral(lo, hi, pars[0], pars[1])


class apec(_XSAdditive):
    r"""XSPEC ``apec``: collisionally ionised plasma (AtomDB, else a template).

    Parameters
    ----------
    name : str, optional
        Model name (default the component name).

    Attributes
    ----------
    kT
        Temperature, keV (default 1, 0.008..64).
    Abundanc
        Metal abundance, solar (default 1, 0..5, frozen).
    Redshift
        Redshift (default 0, -0.999..10, frozen).
    norm
        1e-14 / (4 pi [D_A (1+z)]^2) int n_e n_H dV, cm^-5.

    Notes
    -----
    See :mod:`nuskybgd.models.apec` for the data sources (AtomDB files,
    ``$NUSKYBGD_APEC_TEMPLATE``) and the algorithm.
    """

    component = "apec"

    def _shape(self, pars, lo, hi):
        return apec_spectrum(lo, hi, pars[0], pars[1], pars[2])


def parameter_name(key):
    """Sherpa parameter name of a template key (``intbgd.lorentz_3`` -> ``intbgd_lorentz_3``).

    Parameters
    ----------
    key : str
        Template key of :func:`nuskybgd.models.background.component_templates`.

    Returns
    -------
    str
        A valid Sherpa parameter name.
    """
    return key.replace(".", "_")


class lorentz_lines(RegriddableModel1D):
    """Several XSPEC ``lorentz`` lines evaluated in one vectorised call.

    Parameters
    ----------
    lines : sequence of (name, linee, width)
        Line names (e.g. ``lorentz_3``), energies (keV) and FWHMs (keV);
        e.g. ``[(l.name, l.linee, l.width) for l in component_presets("A").lines]``.
    name : str
        Model name.

    Notes
    -----
    Parameters are ``LineE_<name>``, ``Width_<name>`` (frozen) and
    ``norm_<name>`` (line flux, photons/cm^2/s). The line shapes are cached
    per energy grid and line energies/widths, so a norm-only change costs one
    small matrix-vector product.
    """

    def __init__(self, lines, name="lorentz_lines"):
        lines = list(lines)
        if not lines:
            raise NuskybgdError("lorentz_lines: no lines given")
        self.line_names = [str(n) for n, _, _ in lines]
        pars = []
        for n, e, w in lines:
            pe, pw, pn = sherpa_parameters(name, "lorentz", frozen={"LineE": True, "Width": True}, suffix=f"_{n}")
            pe.val, pw.val = float(e), float(w)
            for p in (pe, pw, pn):
                setattr(self, p.name, p)
            pars += [pe, pw, pn]
        self._shape_key = None
        self._shapes = None
        super().__init__(name, tuple(pars))

    def calc(self, p, *args, **kwargs):
        """Sum of the lines on energy bins (Sherpa's model interface).

        Parameters
        ----------
        p : array_like
            ``LineE, Width, norm`` of every line, in line order (keV, keV,
            photons/cm^2/s).
        *args : array_like
            ``(lo, hi)`` bin edges (keV), or one array of edges (the last
            value of the result is then 0).
        **kwargs
            Ignored (Sherpa's interface).

        Returns
        -------
        ndarray
            photons/cm^2/s per bin.
        """
        p = np.asarray(p, float).reshape(-1, 3)
        if len(args) >= 2 and args[1] is not None:
            lo, hi = np.asarray(args[0], float), np.asarray(args[1], float)
            pad = False
        else:
            edges = np.asarray(args[0], float)
            lo, hi, pad = edges[:-1], edges[1:], True
        key = (lo.tobytes(), hi.tobytes(), p[:, 0].tobytes(), p[:, 1].tobytes())
        if key != self._shape_key:
            self._shapes = kernels.lorentz_lines(lo, hi, p[:, 0], p[:, 1])
            self._shape_key = key
        out = p[:, 2] @ self._shapes
        return np.append(out, 0.0) if pad else out

    def line_spectra(self, energ_lo, energ_hi):
        """Each line's spectrum at its current energy, width and norm.

        Parameters
        ----------
        energ_lo, energ_hi : array_like
            Energy bin edges (keV).

        Returns
        -------
        numpy.ndarray, shape (n_lines, n_bins)
            photons/cm^2/s per bin of every line; their sum is the model's
            value (``calc``).
        """
        lo, hi = np.asarray(energ_lo, float), np.asarray(energ_hi, float)
        p = np.asarray([par.val for par in self.pars], float).reshape(-1, 3)
        self.calc(p.ravel(), lo, hi)  # fills the shape cache
        return p[:, 2, None] * self._shapes


class TemplateCountsModel(ArithmeticModel):
    """Counts per channel = sum_k norm_k x template_k (exposure included).

    Parameters
    ----------
    templates : mapping
        key -> counts per channel per unit norm (e.g. the result of
        :func:`~nuskybgd.models.background.component_templates`).
    first_channel : int, optional
        Channel number of element 0 (default: ``templates.first_channel`` or 0).
    norms : mapping, optional
        Initial norm per key (default 1).
    name : str
        Model name.
    full_grid : bool
        Return every channel whatever channels are asked for (as Sherpa's
        response models do), so that the model can be added to a folded
        source model in ``set_full_model(id, rsp(src) + model)``; the
        dataset's ``apply_filter`` then filters and groups the sum.

    Notes
    -----
    One parameter per key (``.`` replaced by ``_``; see
    :func:`parameter_name`), limits of the table's ``norm`` (:data:`nuskybgd.parameters.NORM`). ``calc(p, channels)`` looks the
    values up by channel number, so it works on the noticed channels Sherpa
    passes during fits of a :class:`~sherpa.astro.data.DataPHA` used without
    a response. Use it with ``Fit(pha, model)`` on ungrouped or grouped data.
    """

    def __init__(self, templates, first_channel=None, norms=None, name="bkg", full_grid=False):
        keys = list(templates)
        if not keys:
            raise NuskybgdError("TemplateCountsModel: no templates given")
        mat = np.vstack([np.asarray(templates[k], float) for k in keys])
        if not np.all(np.isfinite(mat)):
            raise NuskybgdError("TemplateCountsModel: templates contain NaN or infinite values")
        self.keys = keys
        self.templates = mat
        self.first_channel = int(getattr(templates, "first_channel", 0) if first_channel is None else first_channel)
        self.full_grid = bool(full_grid)
        norms = norms or {}
        pars = []
        for k in keys:
            p = Parameter(name, parameter_name(k), float(norms.get(k, 1.0)), NORM.soft_min, NORM.soft_max,
                          hard_min=NORM.hard_min, hard_max=NORM.hard_max)
            setattr(self, p.name, p)
            pars.append(p)
        super().__init__(name, tuple(pars))

    def calc(self, p, *args, **kwargs):
        """Counts per channel (Sherpa's model interface).

        Parameters
        ----------
        p : array_like
            One norm per template.
        *args : array_like
            Optional channel numbers to return (default, or with
            ``full_grid``, every channel of the templates).
        **kwargs
            Ignored (Sherpa's interface).

        Returns
        -------
        ndarray
            Counts per channel.
        """
        total = np.asarray(p, float) @ self.templates
        if not args or self.full_grid:
            return total
        chan = np.asarray(args[0])
        idx = np.rint(chan).astype(np.int64) - self.first_channel
        if idx.size and (idx.min() < 0 or idx.max() >= total.size):
            raise NuskybgdError(f"{self.name}: channels {int(chan.min())}..{int(chan.max())} outside the templates' "
                                f"{self.first_channel}..{self.first_channel + total.size - 1}")
        return total[idx]


class FoldedModel(CompositeModel, ArithmeticModel):
    """An energy-space model through an RMF (and ARF), times the exposure.

    Parameters
    ----------
    model : sherpa.models.model.ArithmeticModel
        Source model on energy bins (keV), photons/cm^2/s per bin.
    rmf : sherpa.astro.data.DataRMF or tuple
        The response, or ``(energ_lo, energ_hi, matrix)``.
    arf : sherpa.astro.data.DataARF, optional
        Effective area (cm^2) or transmission on the RMF's energy grid.
    exposure : float
        Exposure time (s).
    name : str, optional
        Model name.

    Notes
    -----
    ``calc(p, channels)`` evaluates ``model`` on the full RMF energy grid
    (whatever channels Sherpa has noticed), applies ARF x exposure, folds
    once through the RMF and returns the values at the requested channel
    numbers. Unlike ``rmf(ARF1D(arf)(model))`` on a spectrum, it never picks
    up the spectrum's own ARF and never drops the exposure.
    """

    def __init__(self, model, rmf, arf=None, exposure=1.0, name=None):
        lo, hi, n_chan, first, _ = rmf_info(rmf)
        exposure = float(exposure)
        if not (np.isfinite(exposure) and exposure > 0):
            raise NuskybgdError(f"exposure must be a positive number of seconds (got {exposure!r})")
        if arf is not None:
            check_same_grid(arf.energ_lo, arf.energ_hi, lo, hi, f"ARF {getattr(arf, 'name', '')}".strip(), "the RMF")
            self._area = np.asarray(arf.specresp, float) * exposure
        else:
            self._area = np.full(lo.size, exposure)
        self.model = model
        self.rmf = rmf
        self.energ_lo, self.energ_hi = lo, hi
        self.first_channel = first
        self.n_chan = n_chan
        name = name or f"folded({model.name})"
        CompositeModel.__init__(self, name, (model,))

    def calc(self, p, *args, **kwargs):
        """Folded counts per channel (Sherpa's model interface).

        Parameters
        ----------
        p : array_like
            Parameters of the wrapped model.
        *args : array_like
            Optional channel numbers to return (default every channel of
            the RMF).
        **kwargs
            Ignored (Sherpa's interface).

        Returns
        -------
        ndarray
            Counts per channel (ARF x exposure and RMF applied).
        """
        src = np.asarray(self.model.calc(p, self.energ_lo, self.energ_hi), float) * self._area
        counts = fold_spectra(self.rmf, src[None, :])[0]
        if not args:
            return counts
        chan = np.asarray(args[0])
        idx = np.rint(chan).astype(np.int64) - self.first_channel
        if idx.size and (idx.min() < 0 or idx.max() >= counts.size):
            raise NuskybgdError(f"{self.name}: channels outside the RMF's {self.first_channel}.."
                                f"{self.first_channel + counts.size - 1}")
        return counts[idx]
