"""From bgdinfo.json to what the engine needs: spectra, weights, responses, templates.

Steps (REFERENCE section 6): read each background spectrum (module from
INSTRUME, RMF from RESPFILE), the reference image (WCS), each region's mask,
the module's projected aperture and detector images, the region weights;
then the custom apbgd ARF of each spectrum (Be window x detector-fraction
weighted DETABS) and the folded templates of every norm-carrying component.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calib.auxil import load_ratios
from ..calib.presets import LinePreset, component_presets
from ..errors import NuskybgdError
from ..io.events import check_module
from ..io.fitsfile import header_file_path, not_a_file_reason
from ..io.ogip import read_pha, read_rmf, spectrum_module
from ..io.regions import region_mask
from ..io.skyfiles import read_image
from .data import SpectrumData, bin_mask_from_energy, group_ids
from .weights import region_weights

__all__ = ["LoadedSpectrum", "load_spectra", "compute_weights", "spectrum_data", "ignore_ranges",
           "shape_presets", "recorded_presets"]

log = logging.getLogger("nuskybgd")


@dataclass
class LoadedSpectrum:
    """One background spectrum with its response.

    Attributes
    ----------
    path : pathlib.Path
    pha : sherpa.astro.data.DataPHA
    module : str
        ``"A"`` or ``"B"``.
    rmf_path : pathlib.Path
    rmf : sherpa.astro.data.DataRMF
    counts : ndarray
        Counts per channel.
    exposure : float
        Seconds.
    grouping, quality : ndarray or None
    e_lo, e_hi : ndarray
        Channel energy bounds (keV, EBOUNDS of the RMF).
    """

    path: Path
    pha: object
    module: str
    rmf_path: Path
    rmf: object
    counts: np.ndarray
    exposure: float
    grouping: object
    quality: object
    e_lo: np.ndarray
    e_hi: np.ndarray


def load_spectra(paths, respfiles=None, modules=None):
    """Read background spectra and their RMFs.

    Parameters
    ----------
    paths : list of pathlib.Path
    respfiles : list of pathlib.Path, optional
        RMF of each spectrum (replaces RESPFILE; bgdinfo ``respfiles``).
    modules : list of str, optional
        Module of each spectrum (replaces INSTRUME; bgdinfo ``detectors``).

    Returns
    -------
    list of LoadedSpectrum

    Raises
    ------
    NuskybgdError
        Unreadable spectrum, INSTRUME not FPMA/FPMB, no RESPFILE, unreadable
        RMF, or channels that do not match the RMF.
    """
    out = []
    rmfs = {}
    for k, p in enumerate(paths):
        p = Path(p)
        pha = read_pha(p)
        module = modules[k] if modules is not None else spectrum_module(pha, str(p))
        if modules is not None:
            check_module(pha.header, module, p, "spectrum", f"bgdinfo detectors[{k}] is FPM{module}")
        if respfiles is not None:
            rpath = Path(respfiles[k])
            if not rpath.is_file():
                raise NuskybgdError(f"{p}: its RMF {rpath} (respfiles) {not_a_file_reason(rpath)}")
        else:
            rname = str(pha.header.get("RESPFILE", "none")).strip()
            if rname.lower() in ("", "none"):
                raise NuskybgdError(f"{p}: no RESPFILE keyword naming the spectrum's RMF")
            rpath = header_file_path(rname, p.parent)
            if not rpath.is_file():
                raise NuskybgdError(f"{p}: its RMF {rpath} (RESPFILE) {not_a_file_reason(rpath)}")
        # one object per RMF file: spectra sharing it share the folds
        key = str(rpath.resolve())
        rmf = rmfs.get(key)
        if rmf is None:
            rmf = rmfs[key] = read_rmf(rpath)
        check_module(getattr(rmf, "header", None), module, rpath, "RMF", f"RESPFILE of the FPM{module} spectrum {p}")
        counts = np.asarray(pha.counts, float)
        e_lo = np.asarray(rmf.e_min, float)
        e_hi = np.asarray(rmf.e_max, float)
        if e_lo.size != counts.size:
            raise NuskybgdError(f"{p}: {counts.size} channels but its RMF {rpath} has {e_lo.size}")
        if not np.all(np.isfinite(counts)) or np.any(counts < 0):
            raise NuskybgdError(f"{p}: counts contain NaN or negative values")
        expo = float(pha.exposure or 0)
        if not expo > 0:
            raise NuskybgdError(f"{p}: EXPOSURE is missing or not positive")
        grouping = None if pha.grouping is None else np.asarray(pha.grouping)
        quality = None if pha.quality is None else np.asarray(pha.quality)
        out.append(LoadedSpectrum(p, pha, module, rpath, rmf, counts, expo, grouping, quality, e_lo, e_hi))
    return out


def compute_weights(info, spectra):
    """Region weights of every background spectrum.

    Parameters
    ----------
    info : BgdInfo
    spectra : list of LoadedSpectrum

    Returns
    -------
    weights : list of Weights
    module_area : dict
        Module -> sky area of each of its four detectors (sum of each
        projected detector image), sky pixels.

    Raises
    ------
    NuskybgdError
        Missing images for a module, mismatched shapes, a region outside the
        image or with zero area on every detector.
    """
    ref, hdr = read_image(info.refimgf, "reference image")
    cache = {}

    def images(m):
        if m not in cache:
            if m not in info.bgdapfiles or m not in info.bgddetfiles:
                raise NuskybgdError(f"{info.path}: spectra of module {m} but no bgdapfiles.{m}/bgddetfiles.{m}")
            ap, aph = read_image(info.bgdapfiles[m], "aperture image")
            check_module(aph, m, info.bgdapfiles[m], "aperture image", f"bgdapfiles.{m} in {info.path}")
            dets = []
            for k, f in enumerate(info.bgddetfiles[m]):
                im, h = read_image(f, "detector image")
                check_module(h, m, f, "detector image", f"bgddetfiles.{m}[{k}] in {info.path}")
                dets.append(im)
            for f, im in zip([info.bgdapfiles[m]] + list(info.bgddetfiles[m]), [ap] + dets):
                if im.shape != ref.shape:
                    raise NuskybgdError(f"{f}: image shape {im.shape} differs from refimgf {ref.shape}")
            cache[m] = (ap, dets)
        return cache[m]

    out = []
    for s, reg in zip(spectra, info.regfiles):
        mask = region_mask(reg, hdr, shape=ref.shape, header=hdr)
        ap, dets = images(s.module)
        out.append(region_weights(mask, dets, ap, name=f"{reg} (module {s.module})"))
    module_area = {m: [float(np.sum(d)) for d in dets] for m, (ap, dets) in cache.items()}
    return out, module_area


def ignore_ranges(noticed):
    """XSPEC ignore ranges (1-based inclusive bins) of a noticed-bin mask.

    Parameters
    ----------
    noticed : ndarray of bool

    Returns
    -------
    list of (int, int)
    """
    bad = ~np.asarray(noticed, bool)
    out = []
    i, n = 0, bad.size
    while i < n:
        if bad[i]:
            j = i
            while j + 1 < n and bad[j + 1]:
                j += 1
            out.append((i + 1, j + 1))
            i = j + 1
        else:
            i += 1
    return out


def spectrum_data(s, templates, emin, emax):
    """Engine input of one spectrum.

    Parameters
    ----------
    s : LoadedSpectrum
    templates : dict
        Template key -> counts per channel per unit norm.
    emin, emax : float
        Noticed band, keV (bins wholly inside are kept).

    Returns
    -------
    SpectrumData

    Raises
    ------
    NuskybgdError
        When no bin is left in the band.
    """
    ids = group_ids(s.grouping, s.counts.size)
    noticed = bin_mask_from_energy(ids, s.e_lo, s.e_hi, emin, emax, s.quality)
    if not noticed.any():
        raise NuskybgdError(f"{s.path}: no bin between {emin} and {emax} keV")
    return SpectrumData(counts=s.counts, templates=templates, ids=ids, noticed=noticed, name=str(s.path))


def recorded_presets(state, where="fit"):
    """The ratios.json content a fitted state was made with.

    Parameters
    ----------
    state : FitState
        A fitted state (from the fit JSON, an XCM or memory).
    where : str
        Name of the fit file, for messages.

    Returns
    -------
    dict
        The presets recorded in the state (a fit with ``--calibration`` or
        ``--add-lines``), else those of the calibration bundle it names (a fit
        JSON written before the presets were recorded), else the shipped
        bundle's.

    Raises
    ------
    NuskybgdError
        The calibration bundle named by the state cannot be read.
    """
    info = state.info if isinstance(state.info, dict) else {}
    if isinstance(info.get("presets"), dict):
        return info["presets"]
    calib = info.get("calibration") if isinstance(info.get("calibration"), dict) else {}
    if calib.get("ratios"):
        try:
            return json.loads(Path(calib["ratios"]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NuskybgdError(f"{where}: fitted with the calibration bundle {calib['ratios']}, which cannot "
                                f"be read ({exc})") from None
    return load_ratios()


def shape_presets(state, group, module):
    """Presets of one module with the shape values of a state's data group.

    Parameters
    ----------
    state : FitState
    group : int
        Data group whose (frozen or linked) shape values are used.
    module : str

    Returns
    -------
    ComponentPresets
        The bundle presets with PhoIndex/HighECut of apbgd and fcxb, apec
        kT/Abundanc/Redshift, every line's LineE/Width and intn's indices and
        break replaced by the state's values, so that templates folded with
        them describe the state.
    """
    pre = component_presets(module, recorded_presets(state))

    def val(name, ipar):
        src = state.source(name)
        return float(src.param(group, ipar).value)

    n_state = sum(1 for c in state.source("intbgd").components if c.startswith("lorentz"))
    if n_state > len(pre.lines):
        # lines beyond the presets (added by an XSPEC user or --add-lines): shapes from the state, named as
        # XSPEC numbers components (apec is 1, the first lorentz 2)
        extra = tuple(LinePreset(f"lorentz_{k + 2}", 0.0, 0.0, (0.0, 0.0, 0.0, 0.0))
                      for k in range(len(pre.lines), n_state))
        pre = dataclasses.replace(pre, lines=pre.lines + extra)
    elif n_state < len(pre.lines):
        raise NuskybgdError(f"fit state: its intbgd model has {n_state} lines, the presets {len(pre.lines)}")

    apb = dataclasses.replace(pre.apbgd, phoindex=val("apbgd", 1), highecut=val("apbgd", 2))
    fc = dataclasses.replace(pre.fcxb, phoindex=val("fcxb", 1), highecut=val("fcxb", 2))
    apec = dataclasses.replace(pre.apec, kt=val("intbgd", 1), abundanc=val("intbgd", 2), redshift=val("intbgd", 3))
    lines = tuple(dataclasses.replace(ln, linee=val("intbgd", 5 + 3 * k), width=val("intbgd", 6 + 3 * k))
                  for k, ln in enumerate(pre.lines))
    intn = dataclasses.replace(pre.intn, phoindx1=val("intn", 1), breake=val("intn", 2), phoindx2=val("intn", 3))
    return dataclasses.replace(pre, apbgd=apb, fcxb=fc, apec=apec, lines=lines, intn=intn)
