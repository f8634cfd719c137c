"""Loading what the workflows need: bgdinfo, the fit, projected images, weights.

Readers of the inputs of ``spec``, ``image`` and ``simplify`` (and of the
:class:`nuskybgd.Background` object): the fitted state (our JSON or any XCM,
checked against bgdinfo), the reference image, projected aperture and
detector images, background spectra with their responses and the region
weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NuskybgdError
from ..fitting.export import state_from_json
from ..fitting.prepare import recorded_presets, shape_presets
from ..fitting.weights import region_weights
from ..io.bgdinfo import BgdInfo, load_bgdinfo
from ..io.fitsfile import check_input_file, open_fits
from ..io.ogip import read_pha, spectrum_module
from ..io.regions import region_mask
from ..io.state import FitState
from ..io.xcm import check_spectrum_order, read_xcm
from ..models.background import component_templates

__all__ = ["BackgroundSetup", "load_fit", "read_image", "load_setup", "setup_from_state", "spectrum_templates", "state_shapes",
           "load_sources", "load_setup_header", "state_presets"]

log = logging.getLogger("nuskybgd")


@dataclass
class BackgroundSetup:
    """Everything about the background regions that spec and image need.

    Attributes
    ----------
    info : BgdInfo
        The parsed bgdinfo.json.
    state : FitState
        The fitted model (from our JSON or an XCM), spectra checked against
        bgdinfo.
    header : astropy.io.fits.Header
        Header of the reference image (WCS of the masks).
    shape : tuple of int
        Sky image shape (ny, nx).
    ap : dict
        Module -> projected aperture image.
    det : dict
        Module -> array (4, ny, nx) of projected detector images.
    modules : list of str
        Module of each background spectrum.
    masks : list of ndarray of bool
        Background region masks.
    weights : list of Weights
        Background region weights.
    phas : list of DataPHA
        Background spectra with their responses.
    """

    info: object
    state: FitState
    header: object
    shape: tuple
    ap: dict
    det: dict
    modules: list
    masks: list
    weights: list
    phas: list

    def ref_index(self, module):
        """0-based index of the module's reference spectrum.

        Parameters
        ----------
        module : str
            ``"A"`` or ``"B"``.

        Returns
        -------
        int
            Index into the bgdinfo spectra.

        Raises
        ------
        NuskybgdError
            The bgdinfo has no spectrum of that module.
        """
        try:
            return self.modules.index(module)
        except ValueError:
            raise NuskybgdError(f"{self.info.path}: no background spectrum of module {module}") from None

def load_fit(path, info, extra_spectra_ok=False):
    """Read a fitted state (our JSON or any XCM) and check it against bgdinfo.

    Parameters
    ----------
    path : str or os.PathLike
        ``NAME.json`` written by ``nuskybgd fit``, or an XCM file (XSPEC's
        ``save all``, the original tool's or ours).
    info : BgdInfo
    extra_spectra_ok : bool
        Spectra after bgdinfo's are expected (a spec state): no warning.

    Returns
    -------
    FitState

    Raises
    ------
    NuskybgdError
        Unreadable file, or spectra that do not match bgdinfo's bgfiles (the
        first mismatch is named).
    """
    p = Path(path)
    if p.suffix.lower() == ".json":
        check_input_file(p, "fit file")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except RecursionError:
            raise NuskybgdError(f"{p}: cannot read fit JSON (nested too deeply)") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise NuskybgdError(f"{p}: cannot read fit JSON ({exc})") from None
        state = state_from_json(d, str(p))
        base = p.parent
    else:
        state = read_xcm(p)
        base = p.parent
    check_spectrum_order(state, info.bgfiles_raw or [str(x) for x in info.bgfiles], base, info.folder,
                         xcm_path=str(p), bgdinfo_path=str(info.path))
    if len(state.spectra) != len(info.bgfiles) and not extra_spectra_ok:
        log.warning("%s: %d spectra, bgdinfo lists %d; only the first %d are used",
                    p, len(state.spectra), len(info.bgfiles), len(info.bgfiles))
    return state

def state_presets(state, where="fit"):
    """The component presets (ratios.json content) a fitted state was made with.

    A fit with ``--calibration`` or ``--add-lines`` records them in its JSON
    (``info.presets``); any other state used the shipped bundle's.

    Parameters
    ----------
    state : FitState
        A fitted state (from the fit JSON, an XCM or memory).
    where : str
        Name of the fit file, for messages.

    Returns
    -------
    dict
        ratios.json content: recorded in the state, else the calibration
        bundle it names, else the shipped bundle's.

    Raises
    ------
    NuskybgdError
        The state's intbgd source has another number of lines than the
        presets (e.g. an XCM of a fit with added lines).
    """
    presets = recorded_presets(state, where)
    try:
        n_lines = sum(1 for k in presets["models"][1]["components"] if k.startswith("lorentz"))
    except (KeyError, IndexError, TypeError):
        raise NuskybgdError(f"{where}: recorded presets have no intbgd model") from None
    src = next((s for s in state.sources if s.name == "intbgd"), None)
    if src is not None:
        have = sum(1 for c in src.components if c.startswith("lorentz"))
        if have != n_lines:
            raise NuskybgdError(f"{where}: its intbgd model has {have} lines but the presets {n_lines}; use the "
                                "fit's JSON (it records the presets of --calibration/--add-lines)")
    return presets


def read_image(path, what, shape=None):
    """Read the first 2-D image of a FITS file.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file.
    what : str
        What the file is (for error messages), e.g. ``"aperture image"``.
    shape : tuple of int, optional
        Required ``(ny, nx)`` in pixels (the reference image's).

    Returns
    -------
    (ndarray, astropy.io.fits.Header)
        Image (float) and a copy of its header.

    Raises
    ------
    NuskybgdError
        No 2-D image, a different shape, or NaN/infinite pixels.
    """
    with open_fits(path, what) as hdul:
        hdu = next((h for h in hdul if getattr(h, "data", None) is not None and np.ndim(h.data) == 2), None)
        if hdu is None:
            raise NuskybgdError(f"{path}: {what} has no 2-D image")
        data = np.asarray(hdu.data, float)
        header = hdu.header.copy()
    if shape is not None and data.shape != tuple(shape):
        raise NuskybgdError(f"{path}: {what} is {data.shape[1]}x{data.shape[0]}, "
                            f"the reference image is {shape[1]}x{shape[0]}")
    if not np.all(np.isfinite(data)):
        raise NuskybgdError(f"{path}: {what} contains NaN or infinite values")
    return data, header

def load_setup(bgdinfo_path, fit_path, modules_needed=None):
    """Read bgdinfo, the fit, the projected images and the background weights.

    Parameters
    ----------
    bgdinfo_path : str or os.PathLike or BgdInfo
        bgdinfo.json (or its content, already loaded).
    fit_path : str or os.PathLike
        The fit: our JSON or any XCM.
    modules_needed : iterable of str, optional
        Modules whose images must exist (default: those of the background
        spectra).

    Returns
    -------
    BackgroundSetup
    """
    info = bgdinfo_path if isinstance(bgdinfo_path, BgdInfo) else load_bgdinfo(bgdinfo_path)
    return setup_from_state(info, load_fit(fit_path, info), modules_needed)


def setup_from_state(info, state, modules_needed=None):
    """Read the projected images, background spectra and weights for a fitted state.

    Parameters
    ----------
    info : BgdInfo
        The background spectra, regions and projected images.
    state : FitState
        The fitted model (its first spectra are ``info``'s).
    modules_needed : iterable of str, optional
        Modules whose images must exist (default: those of the background
        spectra).

    Returns
    -------
    BackgroundSetup

    Raises
    ------
    NuskybgdError
        Unreadable images or spectra, images of other shapes, regions off
        the images.
    """
    ref_img, header = read_image(info.refimgf, "reference image")
    shape = ref_img.shape
    phas, modules = [], []
    for f in info.bgfiles:
        pha = read_pha(f, responses=True)
        phas.append(pha)
        modules.append(spectrum_module(pha, str(f)))
    need = set(modules) | set(modules_needed or ())
    ap, det = {}, {}
    for m in sorted(need):
        if m not in info.bgdapfiles or m not in info.bgddetfiles:
            raise NuskybgdError(f"{info.path}: no projected images of module {m} (bgdapfiles/bgddetfiles)")
        ap[m] = read_image(info.bgdapfiles[m], f"aperture image of module {m}", shape)[0]
        det[m] = np.array([read_image(f, f"detector image DET{k} of module {m}", shape)[0]
                           for k, f in enumerate(info.bgddetfiles[m])])
    masks, weights = [], []
    for f, r, m in zip(info.bgfiles, info.regfiles, modules):
        mask = region_mask(r, header, shape=shape, header=header)
        masks.append(mask)
        weights.append(region_weights(mask, list(det[m]), ap[m], name=str(r)))
    return BackgroundSetup(info=info, state=state, header=header, shape=shape, ap=ap, det=det,
                           modules=modules, masks=masks, weights=weights, phas=phas)

def spectrum_templates(pha, module, frac, cache=None, presets=None, caldb=None):
    """Counts per channel per unit norm of every component for a spectrum.

    Parameters
    ----------
    pha : sherpa.astro.data.DataPHA
        Spectrum with its RMF loaded.
    module : str
    frac : array_like, shape (4,)
        Detector fractions of the spectrum's region.
    cache : dict, optional
        Memo keyed by (RMF, module, fractions, exposure, shapes).
    presets : ComponentPresets, optional
        Component shapes (default: the bundle's presets; see
        :func:`nuskybgd.fitting.prepare.shape_presets` for a state's shapes).
    caldb : str or Caldb, optional
        CALDB of the apbgd ARF's DETABS and Be window (default ``$CALDB``).

    Returns
    -------
    dict of str -> ndarray
        ``models.background.component_templates`` for the spectrum.
    """
    rmf = pha.get_rmf() if hasattr(pha, "get_rmf") else None
    if rmf is None:
        raise NuskybgdError(f"{pha.name}: no RMF (RESPFILE) to fold the background model through")
    date = pha.header.get("DATE-OBS") if getattr(pha, "header", None) is not None else None
    key = (id(rmf), module, tuple(np.round(np.asarray(frac, float), 12)), float(pha.exposure), presets,
           str(caldb), str(date))
    if cache is not None and key in cache:
        return cache[key][1]
    t = component_templates(rmf, module, np.asarray(frac, float), float(pha.exposure), presets=presets,
                            caldb=caldb, date=date)
    if cache is not None:
        cache[key] = (rmf, t)  # keep the RMF alive so that its id stays unique
    return t

def state_shapes(state, group, module):
    """Component shapes of a state's data group (frozen/linked shape values).

    Parameters
    ----------
    state : FitState
    group : int
    module : str

    Returns
    -------
    ComponentPresets
    """
    return shape_presets(state, group, module)

def load_sources(setup, regfiles, phafiles):
    """Read source spectra and regions and compute their weights.

    Parameters
    ----------
    setup : BackgroundSetup
    regfiles, phafiles : list of str
        Same length.

    Returns
    -------
    list of dict
        ``pha`` (DataPHA with RMF), ``module``, ``mask``, ``weights``,
        ``regfile``, ``phafile``.

    Raises
    ------
    NuskybgdError
        Different list lengths, unreadable files, a spectrum without RMF,
        a region off the projected images or with zero detector area.
    """
    if len(regfiles) != len(phafiles):
        raise NuskybgdError(f"{len(regfiles)} source regions but {len(phafiles)} source spectra")
    out = []
    for reg, phaf in zip(regfiles, phafiles):
        pha = read_pha(phaf, responses=True)
        if pha.get_rmf() is None:
            raise NuskybgdError(f"{phaf}: no RMF (RESPFILE keyword) to fold the background model through")
        m = spectrum_module(pha, str(phaf))
        rmf = pha.get_rmf()
        inst = str((getattr(rmf, "header", None) or {}).get("INSTRUME", "")).strip().upper()
        if inst in ("FPMA", "FPMB") and inst != f"FPM{m}":
            raise NuskybgdError(f"{phaf}: the spectrum is FPM{m} but its RMF {rmf.name} is {inst}")
        if m not in setup.ap:
            raise NuskybgdError(f"{phaf}: module {m} has no projected images or background spectra in "
                                f"{setup.info.path}")
        mask = region_mask(reg, setup.header, shape=setup.shape, header=setup.header)
        w = region_weights(mask, list(setup.det[m]), setup.ap[m], name=str(reg))
        out.append({"pha": pha, "module": m, "mask": mask, "weights": w, "regfile": str(reg),
                    "phafile": str(phaf)})
    return out

def load_setup_header(bgdinfo):
    """Header (WCS) of bgdinfo's reference image.

    Parameters
    ----------
    bgdinfo : str or os.PathLike

    Returns
    -------
    astropy.io.fits.Header
    """
    info = load_bgdinfo(bgdinfo, check_files=False)
    return read_image(info.refimgf, "reference image")[1]
