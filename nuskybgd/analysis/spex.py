"""SPEX export of the modelled background of source spectra (the ``spex`` task).

For each source spectrum the fitted background model of its region (the
``spec`` state: source groups tied to the background fit by the section-6
ratios) is written for SPEX:

- ``NAME_spex.spo``: the source spectrum (pyspextools ``pha_to_spo``);
- ``NAME_spex.res``: five sectors on region 1 -- the source (RMF x source
  ARF) and one per background component with its own response (apbgd:
  RMF x apbgd ARF; intbgd: RMF; fcxb: RMF x fCXB ARF; intn: diag.rmf);
- ``NAME_spex_<component>.dat``: the component's photon spectrum with the
  fitted norms (frozen shape) for SPEX's ``file`` model;
- ``NAME_spex.com``: SPEX commands that load the data, make the sectors and
  the frozen background models; the user adds the source model to sector 1.

Folding the ``.dat`` spectra through the ``.res`` sectors gives the
predicted background counts of ``spec`` (``NAME_bkg.pha``) channel by channel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NuskybgdError
from ..fitting.apply import SourceSpectrum, add_source_spectra
from ..fitting.prepare import shape_presets
from ..fitting.uncertainty import norm_components
from ..io.ogip import read_arf, rmf_matrix
from ..io.output import atomic_outputs, check_outputs
from ..io.spex import (
    SECTORS,
    file_model_points,
    format_file_model,
    response_component,
    spectrum_spo,
    spex_commands,
    write_spex,
)
from ..models.background import component_spectra
from ..models.responses import apbgd_arf, check_same_grid, diag_rmf, fcxb_arf
from .outputs import default_savefile
from .setup import load_setup, load_sources, state_presets

__all__ = ["SpexSectors", "background_sectors", "run_spex", "spex_outputs", "write_source_spex"]

log = logging.getLogger("nuskybgd")


@dataclass
class SpexSectors:
    """Responses and background spectra of one source spectrum's SPEX sectors.

    Attributes
    ----------
    energ_lo, energ_hi : ndarray
        Response energy grid (keV).
    rmf, diag : sherpa.astro.data.DataRMF
        The spectrum's RMF and the intn response (diag.rmf).
    areas : dict of str -> ndarray or None
        Sector name -> effective area per energy bin (cm^2) applied to the
        RMF; None for the RMF alone (intbgd); intn uses ``diag``.
    photons : dict of str -> ndarray
        Background sector -> photon flux per energy bin (photons/cm^2/s)
        with the fitted norms.
    exposure : float
        Source spectrum exposure (s).

    Notes
    -----
    Matrices are built one sector at a time (:meth:`matrix`): a real NuSTAR
    RMF is 4096 x 4096 (134 MB dense), so five at once would need 0.7 GB.
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    rmf: object
    diag: object
    areas: dict
    photons: dict
    exposure: float

    def matrix(self, sector):
        """Response of a sector.

        Parameters
        ----------
        sector : str
            Sector name (an entry of ``SECTORS``); ``"intn"`` uses diag.rmf.

        Returns
        -------
        ndarray, shape (n_energy, n_chan)
            RMF times the sector's ARF, cm^2 (the bare RMF for sectors
            without an ARF).
        """
        if sector == "intn":
            return rmf_matrix(self.diag)
        r = rmf_matrix(self.rmf)
        a = self.areas[sector]
        return r if a is None else r * a[:, None]

    def predicted_counts(self):
        """Background counts per channel: sum over sectors of photons x response x exposure.

        Returns
        -------
        ndarray, shape (n_chan,)
            Counts per channel.
        """
        r = rmf_matrix(self.rmf)
        total = rmf_matrix(self.diag).T @ self.photons["intn"]
        for s in SECTORS[1:-1]:
            a = self.areas[s]
            total = total + r.T @ (self.photons[s] * (1.0 if a is None else a))
        return total * self.exposure


def background_sectors(state, group, pha, module, frac, source_arf, shapes=None, caldb=None):
    """The SPEX sectors of a source spectrum.

    Parameters
    ----------
    state : FitState
        A state holding the source spectrum as data group ``group`` (the
        ``spec`` state).
    group : int
        1-based data group of the source spectrum.
    pha : sherpa.astro.data.DataPHA
        Source spectrum with its RMF.
    module : str
        ``"A"`` or ``"B"``.
    frac : array_like, shape (4,)
        Detector fractions of the source region (apbgd ARF weights).
    source_arf : sherpa.astro.data.DataARF
        Effective area of the source (cm^2) on the RMF's energy grid.
    shapes : ComponentPresets, optional
        Component shapes (default: the state's shapes of the group).
    caldb : str or Caldb, optional
        CALDB of the apbgd ARF.

    Returns
    -------
    SpexSectors
    """
    rmf = pha.get_rmf()
    if rmf is None:
        raise NuskybgdError(f"{pha.name}: no RMF to build the SPEX responses from")
    lo, hi = np.asarray(rmf.energ_lo, float), np.asarray(rmf.energ_hi, float)
    check_same_grid(source_arf.energ_lo, source_arf.energ_hi, lo, hi, f"source ARF {source_arf.name}",
                    "the spectrum's RMF")
    shapes = shapes or shape_presets(state, group, module)
    date = pha.header.get("DATE-OBS") if getattr(pha, "header", None) is not None else None
    diag = diag_rmf()
    check_same_grid(diag.energ_lo, diag.energ_hi, lo, hi, "diag.rmf", "the spectrum's RMF")
    if rmf_matrix(diag).shape[1] != rmf_matrix(rmf).shape[1]:
        raise NuskybgdError(f"{pha.name}: diag.rmf and the spectrum's RMF have different channel counts")
    areas = {"source": np.asarray(source_arf.specresp, float),
             "apbgd": np.asarray(apbgd_arf(module, frac, caldb=caldb, rmf=rmf, date=date).specresp, float),
             "intbgd": None,
             "fcxb": np.asarray(fcxb_arf(module, rmf=rmf).specresp, float)}
    spec = component_spectra(lo, hi, shapes)
    photons = {s: np.zeros(lo.size) for s in SECTORS[1:]}
    for src, ipar, key, unit in norm_components(state, spec):
        root, j, f = state.resolve(src, src.index(group, ipar))
        photons[key.split(".")[0]] += f * root.params[j].value * unit
    return SpexSectors(lo, hi, rmf, diag, areas, photons, float(pha.exposure))


def spex_outputs(savefile, regfiles):
    """Output names of the ``spex`` task.

    Parameters
    ----------
    savefile : str
        NAME (an ``.xcm`` suffix is dropped).
    regfiles : list of str
        Source regions (one per source spectrum).

    Returns
    -------
    list of dict
        Per source: ``base`` (NAME_spex or NAME_<stem>_spex), ``spo``,
        ``res``, ``com`` and ``dat`` {component: file}.
    """
    name = savefile.removesuffix(".xcm")
    stems = [Path(r).stem for r in regfiles]
    if len(regfiles) == 1:
        bases = [f"{name}_spex"]
    elif len(set(stems)) == len(stems):
        bases = [f"{name}_{s}_spex" for s in stems]
    else:
        bases = [f"{name}_{k + 1}_spex" for k in range(len(regfiles))]
    return [{"base": b, "spo": f"{b}.spo", "res": f"{b}.res", "com": f"{b}.com",
             "dat": {s: f"{b}_{s}.dat" for s in SECTORS[1:]}} for b in bases]


def write_source_spex(out, names, sectors, phafile, rmffile, comment=()):
    """Write one source spectrum's SPEX files.

    Parameters
    ----------
    out : mapping
        Final name -> temporary path (``atomic_outputs``).
    names : dict
        One entry of :func:`spex_outputs`.
    sectors : SpexSectors
    phafile, rmffile : str
        Source spectrum and its RMF (read by pyspextools for the ``.spo``).
    comment : iterable of str
        Comment lines of the ``.com`` file.
    """
    spo = spectrum_spo(phafile, rmffile)
    comps = [response_component(sectors.energ_lo, sectors.energ_hi, sectors.matrix(s)) for s in SECTORS]
    hist = [f"nuskybgd spex: sectors {', '.join(f'{k + 1} {s}' for k, s in enumerate(SECTORS))}"]
    write_spex(out[names["spo"]], out[names["res"]], spo, comps, history=hist)
    for s in SECTORS[1:]:
        e, v = file_model_points(sectors.energ_lo, sectors.energ_hi, sectors.photons[s])
        Path(out[names["dat"][s]]).write_text(format_file_model(e, v))
    base = Path(names["base"]).name
    text = spex_commands(base, SECTORS, {s: 1.0 for s in SECTORS[1:]},
                         {s: Path(names["dat"][s]).name for s in SECTORS[1:]}, comment=comment)
    Path(out[names["com"]]).write_text(text)


def _check_module(resp, what, module, phafile):
    """A response whose INSTRUME names the other module is an error (one line)."""
    inst = str((getattr(resp, "header", None) or {}).get("INSTRUME", "")).strip().upper()
    if inst in ("FPMA", "FPMB") and inst != f"FPM{module}":
        raise NuskybgdError(f"{phafile}: the spectrum is FPM{module} but its {what} {resp.name} is {inst}")


def _source_arf(pha, phafile, arf, module):
    """The source sector's ARF: explicit file > the PHA's ANCRFILE > error."""
    a = read_arf(arf) if arf else pha.get_arf()
    if a is None:
        raise NuskybgdError(f"{phafile}: no ARF for the source sector (ANCRFILE is NONE); give --arf FILE "
                            f"(e.g. nuproducts' ARF of the source)")
    _check_module(a, "ARF", module, phafile)
    _check_module(pha.get_rmf(), "RMF", module, phafile)
    return a


def run_spex(bgdinfo, fit, regfiles, phafiles, arffiles=None, savefile=None, fcxb="fitted", clobber=False,
             caldb=None):
    """The ``spex`` task: SPEX files with the modelled background of source spectra.

    Parameters
    ----------
    bgdinfo, fit : str or os.PathLike
        bgdinfo.json and the background fit (our JSON or an XCM).
    regfiles, phafiles : list of str
        Source regions and spectra (same length).
    arffiles : list of str, optional
        Source ARFs (default: each PHA's ANCRFILE).
    savefile : str, optional
        Output NAME (default ``bgd_<first region stem>``).
    fcxb : {"fitted", "preset"}
        fCXB norm rule of the source region (as ``spec``).
    clobber : bool
        Replace existing outputs.
    caldb : str or Caldb, optional
        CALDB for the apbgd ARF.

    Returns
    -------
    dict
        ``files`` written, ``names`` (:func:`spex_outputs`), ``sectors``
        (:class:`SpexSectors` per source) and ``state``.
    """
    if len(regfiles) != len(phafiles):
        raise NuskybgdError(f"{len(regfiles)} source regions but {len(phafiles)} source spectra")
    arffiles = list(arffiles or [None] * len(phafiles))
    if len(arffiles) != len(phafiles):
        raise NuskybgdError(f"{len(arffiles)} source ARFs but {len(phafiles)} source spectra")
    names = spex_outputs(savefile or default_savefile(regfiles), regfiles)
    files = [n[k] for n in names for k in ("spo", "res", "com")] + [f for n in names for f in n["dat"].values()]
    check_outputs(files, clobber)
    setup = load_setup(bgdinfo, fit)
    srcs = load_sources(setup, regfiles, phafiles)
    arfs = [_source_arf(s["pha"], s["phafile"], a, s["module"]) for s, a in zip(srcs, arffiles)]
    sources = [SourceSpectrum(file=s["phafile"], module=s["module"], area=s["weights"].area, ap=s["weights"].ap)
               for s in srcs]
    state = add_source_spectra(setup.state, setup.modules, setup.weights, sources, state_presets(setup.state),
                               fix_line_ratios=setup.info.intbgd_fix_line_ratios, fcxb=fcxb)
    n_bg = len(setup.modules)
    sectors = [background_sectors(state, n_bg + k + 1, s["pha"], s["module"], s["weights"].frac, a, caldb=caldb)
               for k, (s, a) in enumerate(zip(srcs, arfs))]
    with atomic_outputs(files, clobber) as out:
        for s, n, sec in zip(srcs, names, sectors):
            rmf = s["pha"].get_rmf()
            what = f"{Path(s['phafile']).name} in {Path(s['regfile']).name} (FPM{s['module']})"
            comment = [f"nuskybgd: modelled background of {what}, fit {Path(fit).name}",
                       f"predicted background: {float(np.sum(sec.predicted_counts())):.1f} counts",
                       f"in SPEX, from this folder: log exe {Path(n['base']).name}"]
            write_source_spex(out, n, sec, s["phafile"], rmf.name, comment=comment)
    return {"files": files, "names": names, "sectors": sectors, "state": state}
