"""The application object: :class:`Background`, a fitted NuSTAR background model.

A :class:`Background` holds the background-region spectra, their regions and
the projected aperture and detector images (what bgdinfo.json lists). It
fits the four-component model (:meth:`Background.fit`), predicts the
background of source regions (:meth:`Background.predict`), makes model
images (:meth:`Background.images`) and the background-only state of source
spectra (:meth:`Background.simplify`). Nothing is written unless asked
(:meth:`Background.write`).

Example::

    import nuskybgd
    bg = nuskybgd.Background.from_bgdinfo("demo_out/bgdinfo.json", caldb="demo_out/sim/caldb")
    result = bg.fit()
    print(result.statistic, result.dof)
    pred = bg.predict("demo_out/srcA.reg", "demo_out/srcA_sr_g30.pha")
    print(pred.bands["3-10"], pred.band_errors["3-10"])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NuskybgdError
from ..fitting.apply import simplify_state
from ..fitting.uncertainty import fit_covariance
from ..io.bgdinfo import BgdInfo, load_bgdinfo
from .fit import prepare_fit, run_fit, write_fit
from .images import compute_images
from .setup import load_sources, setup_from_state
from .spec import predict_sources

__all__ = ["Background", "BackgroundFit", "Parameters", "Prediction"]

#: Options of :meth:`Background.fit` that go to :func:`~nuskybgd.analysis.fit.prepare_fit`.
_PREPARE_OPTIONS = ("emin", "emax", "original_norms", "detabs", "calibration", "add_lines")
#: Options of :meth:`Background.fit` that go to :func:`~nuskybgd.analysis.fit.run_fit`.
_RUN_OPTIONS = ("no_fit", "gain", "thaw", "free_detectors", "errors", "gain_start", "start")


@dataclass(frozen=True)
class Parameters:
    """Free parameters of a fit.

    Attributes
    ----------
    names : tuple of str
        ``<source>:<group>:<component>.<parameter>``, e.g.
        ``apbgd:1:cutoffpl.norm`` (group = 1-based spectrum number).
    values : numpy.ndarray
        Best-fit values (norms in XSPEC units: photons/keV/cm^2/s at 1 keV
        for cutoffpl/bknpower, photons/cm^2/s for lorentz, apec's norm).
    errors : numpy.ndarray
        1-sigma errors from the Fisher matrix (NaN when unknown).
    """

    names: tuple
    values: np.ndarray
    errors: np.ndarray

    def __len__(self):
        return len(self.names)

    def __iter__(self):
        return iter(zip(self.names, self.values, self.errors))

    def as_dict(self):
        """Parameters as a dict.

        Returns
        -------
        dict
            Name -> ``(value, error)``.
        """
        return {n: (float(v), float(e)) for n, v, e in self}


@dataclass(frozen=True)
class BackgroundFit:
    """Result of :meth:`Background.fit`.

    Attributes
    ----------
    statistic : float
        Value of the fit statistic at the best fit.
    dof : int
        Degrees of freedom (fitted bins minus free parameters).
    statistic_name : str
        ``"cstat"`` or ``"chi"``.
    n_bins : int
        Fitted (noticed) bins over all spectra.
    parameters : Parameters
        Free parameters, values and errors.
    covariance : numpy.ndarray
        Covariance matrix of the free parameters (n_free x n_free), in the
        order of ``parameters``.
    converged : bool
        The solver converged (True when only evaluated, ``no_fit``).
    n_iter : int
        Newton iterations.
    """

    statistic: float
    dof: int
    statistic_name: str
    n_bins: int
    parameters: Parameters
    covariance: np.ndarray
    converged: bool = True
    n_iter: int = 0


@dataclass(frozen=True)
class Prediction:
    """Predicted background of one source region (:meth:`Background.predict`).

    Attributes
    ----------
    spectrum : numpy.ndarray
        Predicted background counts per channel of the source spectrum.
    components : dict
        Component (``apbgd``, ``intbgd.apec``, ``intbgd.lorentz`` ...,
        ``fcxb``, ``intn``) -> counts per channel.
    total : float
        Total predicted counts.
    total_error : float
        1-sigma error of ``total`` from the fit covariance, counts.
    bands : dict
        Band ``"3-10"``, ``"10-30"``, ``"30-79"``, ``"3-79"`` (keV) -> counts.
    band_errors : dict
        Band -> 1-sigma error, counts.
    error_kind : str
        ``covariance``, ``diagonal`` or ``none``.
    exposure : float
        Exposure of the source spectrum, s.
    module : str
        ``"A"`` or ``"B"``.
    region, pha : str
        The source region and spectrum files.
    """

    spectrum: np.ndarray
    components: dict
    total: float
    total_error: float
    bands: dict
    band_errors: dict
    error_kind: str
    exposure: float
    module: str
    region: str
    pha: str


def _parameter_names(state, free):
    names = []
    for src, i in free:
        g, ip = divmod(i, src.npar)
        c = src.par_components[ip]
        comp = src.labels[c] if c >= 0 else ""
        names.append(f"{src.name}:{g + 1}:{comp}.{src.par_names[ip]}")
    return tuple(names)


class Background:
    """A NuSTAR background model of one observation: data, fit and predictions.

    Parameters
    ----------
    spectra : sequence of str or os.PathLike
        Background-region spectra (PHA with RESPFILE), any order of modules;
        the first spectrum of each module is its reference.
    regions : sequence of str or os.PathLike
        DS9 region file of each spectrum (same order).
    reference_image : str or os.PathLike
        Sky image giving the WCS of the regions (e.g. a counts image).
    aperture_images : dict
        Module (``"A"``/``"B"``) -> projected aperture image (projbgd).
    detector_images : dict
        Module -> the four projected detector images (DET0..DET3).
    fcxb_links : sequence of (int, int)
        1-based spectrum pairs whose fCXB norms are tied.
    fix_line_ratios : bool
        Tie the intbgd line norms to the apec norm by the preset ratios.
    caldb : str, os.PathLike or Caldb, optional
        CALDB for the apbgd ARFs (DETABS, Be window; default ``$CALDB``).

    Notes
    -----
    Files are read when needed and never written unless :meth:`write` is
    called. :meth:`from_bgdinfo` builds the object from a bgdinfo.json file.
    """

    def __init__(self, spectra, regions, reference_image, aperture_images, detector_images, fcxb_links=(),
                 fix_line_ratios=False, caldb=None, *, _info=None):
        if _info is None:
            spectra = [Path(p) for p in spectra]
            regions = [Path(p) for p in regions]
            if len(spectra) != len(regions) or not spectra:
                raise NuskybgdError(f"Background: {len(spectra)} spectra but {len(regions)} regions "
                                    "(one region per spectrum, at least one)")
            _info = BgdInfo(path=Path("<in memory>"), bgfiles=spectra, regfiles=regions,
                            refimgf=Path(reference_image),
                            bgdapfiles={str(m): Path(p) for m, p in dict(aperture_images).items()},
                            bgddetfiles={str(m): [Path(p) for p in v] for m, v in dict(detector_images).items()},
                            bgfiles_raw=[str(p) for p in spectra],
                            fcxb_links=[tuple(int(x) for x in pair) for pair in fcxb_links],
                            intbgd_fix_line_ratios=bool(fix_line_ratios))
            for p in [*_info.bgfiles, *_info.regfiles, _info.refimgf, *_info.bgdapfiles.values(),
                      *[q for v in _info.bgddetfiles.values() for q in v]]:
                if not p.is_file():
                    raise NuskybgdError(f"{p}: file not found")
        self.info = _info
        self.caldb = caldb
        self._problem = None
        self._outputs = None
        self._setup = None
        self._cache = {}

    def __repr__(self):
        state = "fitted" if self._outputs is not None else "not fitted"
        return f"<Background: {len(self.info.bgfiles)} spectra from {self.info.path}, {state}>"

    @classmethod
    def from_bgdinfo(cls, path, caldb=None):
        """Background model of the spectra, regions and images listed in a bgdinfo.json.

        Parameters
        ----------
        path : str or os.PathLike
            bgdinfo.json (relative paths inside are relative to its folder).
        caldb : str, os.PathLike or Caldb, optional
            CALDB for the apbgd ARFs (default ``$CALDB``).

        Returns
        -------
        Background

        Raises
        ------
        NuskybgdError
            Unreadable or invalid bgdinfo.json, missing files.
        """
        return cls(None, None, None, None, None, caldb=caldb, _info=load_bgdinfo(path))

    # --- fit -----------------------------------------------------------------

    def fit(self, statistic="cstat", **options):
        """Fit the background model to the background spectra (in memory).

        Parameters
        ----------
        statistic : {"cstat", "chi"}
            Poisson likelihood (C-statistic) or chi-square with the data
            variance.
        **options
            Passed to the fit workflow (:func:`nuskybgd.analysis.fit.prepare_fit`
            and :func:`~nuskybgd.analysis.fit.run_fit`): ``emin``, ``emax``
            (noticed band, keV; default 3-150), ``original_norms``,
            ``no_fit`` (evaluate the presets only).

        Returns
        -------
        BackgroundFit

        Raises
        ------
        NuskybgdError
            Bad options or inputs.
        """
        prep = {k: options.pop(k) for k in _PREPARE_OPTIONS if k in options}
        run = {k: options.pop(k) for k in _RUN_OPTIONS if k in options}
        if options:
            raise NuskybgdError(f"Background.fit: unknown option(s) {', '.join(sorted(options))} "
                                f"(known: {', '.join(_PREPARE_OPTIONS + _RUN_OPTIONS)})")
        self._problem = prepare_fit(self.info, statistic=statistic, caldb=self.caldb, **prep)
        self._outputs = run_fit(self._problem, statistic, **run)
        self._setup = None
        return self.result

    def _fitted(self):
        if self._outputs is None:
            raise NuskybgdError("Background: not fitted yet (call .fit() first)")
        return self._outputs

    @property
    def state(self):
        """The fitted state (:class:`~nuskybgd.io.state.FitState`): every parameter, link and spectrum."""
        return self._fitted().state

    @property
    def result(self):
        """The last fit's :class:`BackgroundFit`."""
        out = self._fitted()
        st = out.state
        fi = st.info["fit"]
        free = st.free_parameters()
        params, cov, _ = fit_covariance(st)
        if params is not None and len(params) == len(free):
            covariance = np.asarray(cov, float)
        else:
            covariance = np.full((len(free), len(free)), np.nan)
        values = np.array([s.params[i].value for s, i in free], float)
        errors = np.array([np.nan if s.params[i].error is None else s.params[i].error for s, i in free], float)
        res = out.result
        return BackgroundFit(statistic=float(fi["value"]), dof=int(fi["dof"]), statistic_name=str(fi["statistic"]),
                             n_bins=int(fi["n_bins"]), parameters=Parameters(_parameter_names(st, free), values,
                                                                             errors),
                             covariance=covariance, converged=True if res is None else bool(res.converged),
                             n_iter=0 if res is None else int(res.n_iter))

    # --- predictions ---------------------------------------------------------

    def _background_setup(self):
        if self._setup is None:
            self._setup = setup_from_state(self.info, self.state)
        return self._setup

    def _predict(self, regions, phas, fcxb):
        regions = [str(r) for r in ([regions] if isinstance(regions, (str, Path)) else regions)]
        phas = [str(p) for p in ([phas] if isinstance(phas, (str, Path)) else phas)]
        setup = self._background_setup()
        srcs = load_sources(setup, regions, phas)
        return srcs, predict_sources(setup, srcs, fcxb=fcxb, caldb=self.caldb, what="Background")

    def predict(self, region, pha, fcxb="fitted"):
        """Predicted background of a source region, with errors from the fit covariance.

        Parameters
        ----------
        region : str or os.PathLike
            DS9 region file of the source (WCS of the reference image).
        pha : str or os.PathLike
            Source spectrum (PHA with RESPFILE; its module's images must be
            known).
        fcxb : {"fitted", "preset"}
            fCXB norm of the source region: the fitted surface brightness of
            the module's background regions (default) or the original's
            preset.

        Returns
        -------
        Prediction

        Raises
        ------
        NuskybgdError
            Not fitted yet, unreadable files, a region off the images or with
            zero detector area.
        """
        srcs, pred = self._predict(region, pha, fcxb)
        r = pred.results[0]
        return Prediction(spectrum=np.asarray(r["spectrum"], float), components=dict(r["counts"]),
                          total=float(r["total"]), total_error=float(r["total_error"]), bands=dict(r["bands"]),
                          band_errors=dict(r["band_errors"]), error_kind=str(r["error_kind"]),
                          exposure=float(r["exposure"]), module=r["module"], region=str(region), pha=str(pha))

    def images(self, emin, emax):
        """Background model images of every module in a band.

        Parameters
        ----------
        emin, emax : float
            Band, keV.

        Returns
        -------
        dict
            Module -> dict of images (counts per sky pixel for the reference
            spectrum's exposure): ``apbgd``, ``intbgd``, ``fcxb``, ``intn``,
            ``total``, ``fcxb_regions`` ({spectrum number: image}), plus
            ``exposure`` (s) and ``band_counts`` (see
            :func:`nuskybgd.analysis.images.compute_images`).

        Raises
        ------
        NuskybgdError
            Not fitted yet or ``emin >= emax``.
        """
        if not float(emin) < float(emax):
            raise NuskybgdError(f"energy band {emin:g}-{emax:g} keV: emin must be below emax")
        return compute_images(self._background_setup(), emin, emax, cache=self._cache, caldb=self.caldb)

    def simplify(self, regions, phas, fcxb="fitted"):
        """Background-only state of source spectra (the ``simplify`` task, in memory).

        Parameters
        ----------
        regions, phas : sequence of str or os.PathLike
            Source regions and spectra (same length; one of each is enough).
        fcxb : {"fitted", "preset"}
            fCXB norm of the source regions.

        Returns
        -------
        FitState
            Only the source spectra, every background parameter frozen at
            its predicted value (links replaced by values): ready for a
            source model (XSPEC source 1).
        """
        _, pred = self._predict(regions, phas, fcxb)
        return simplify_state(pred.state, len(self.info.bgfiles))

    # --- output --------------------------------------------------------------

    def write(self, prefix, plot=True, clobber=False):
        """Write the fit: ``PREFIX.xcm``, ``.json``, ``_sherpa.py``, ``.png``, ``.log``, ``_apbgd<n>.arf``.

        Parameters
        ----------
        prefix : str or os.PathLike
            Output NAME (folder allowed), as ``nuskybgd fit --savefile``.
        plot : bool
            Write ``PREFIX.png``.
        clobber : bool
            Replace existing files.

        Returns
        -------
        dict
            Kind -> path of the files written (see
            :func:`nuskybgd.analysis.fit.output_names`).

        Raises
        ------
        NuskybgdError
            Not fitted yet, or existing files without ``clobber`` (nothing
            written).
        """
        out = self._fitted()
        state_before = copy.deepcopy(out.state.spectra)
        try:
            return write_fit(out, self._problem, str(prefix), plot=plot, clobber=clobber)
        except NuskybgdError:
            out.state.spectra = state_before
            raise
