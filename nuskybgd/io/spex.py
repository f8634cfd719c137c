"""SPEX spectra (``.spo``), responses (``.res``), file-model spectra and command files.

SPEX fits a spectrum with *sectors*: each sector has its own model and its
own response, and the folded sectors are added in the *region* (spectrum)
they point to. pyspextools (the SPEX team's Python package) shows the way for
a background that must not see the mirror's effective area: read the source
spectrum twice and give the second sector a response without ARF. nuskybgd's
background needs four such sectors, one per component, each with its own
response (REFERENCE section 6):

====== ========= =======================================
sector component response
====== ========= =======================================
1      source    RMF x source ARF
2      apbgd     RMF x apbgd ARF (Be window x DETABS)
3      intbgd    RMF only
4      fcxb      RMF x fCXB ARF
5      intn      diag.rmf (no redistribution, no area)
====== ========= =======================================

The files are written with pyspextools' classes: :class:`pyspextools.io.spo.Spo`
(made by :func:`pyspextools.io.convert.pha_to_spo` from the OGIP spectrum
read by :class:`pyspextools.io.pha.Pha`) and :class:`pyspextools.io.res.Res`
(one response component per sector, joined with ``Res.append_component``).

Hand-written part, and why: the response components are filled from the
dense response matrices nuskybgd already holds (:func:`response_component`)
instead of :func:`pyspextools.io.convert.rmf_to_res`, because pyspextools'
RMF reader fails on the calibration bundle's ``diag.rmf`` (scalar MATRIX
column: ``IndexError``) and the apbgd ARF exists only in memory until spec
writes it. The result is the same layout ``rmf_to_res`` writes (one group
per energy bin, channels 1-based, response in m^2).

Background spectra for SPEX's ``file`` model: the model reads ``n`` lines of
(energy keV, spectrum in 1e44 photons/s/keV at the source) and scales by
``norm``. The observed photon flux is ``spectrum * 1e44 / (4 pi d^2)`` per
m^2; at the distance :data:`UNIT_FLUX_DISTANCE_M` (4 pi d^2 = 1e44 m^2) the
file's numbers are the photon flux density at the telescope, photons/m^2/s/keV.
The points are the response's energy-bin centres and the bin-averaged flux
density (the format of SPEX's own ``sector adump``), so a midpoint-rule
evaluation of the file model returns the bin fluxes exactly.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from pathlib import Path

import numpy as np
from pyspextools.io.convert import pha_to_spo
from pyspextools.io.pha import Pha
from pyspextools.io.res import Res
from pyspextools.io.rmf import Rmf
from pyspextools.io.spo import Spo

from ..errors import NuskybgdError

__all__ = [
    "FILE_MODEL_FLOOR",
    "SECTORS",
    "UNIT_FLUX_DISTANCE_M",
    "file_model_points",
    "format_file_model",
    "read_file_model",
    "read_spex",
    "response_component",
    "spectrum_spo",
    "spex_commands",
    "write_spex",
]

#: Sector names in file order (sector number = index + 1).
SECTORS = ("source", "apbgd", "intbgd", "fcxb", "intn")

#: Distance (m) at which 4 pi d^2 = 1e44 m^2: a file-model spectrum in 1e44
#: photons/s/keV then equals the photon flux density at the telescope in
#: photons/m^2/s/keV.
UNIT_FLUX_DISTANCE_M = math.sqrt(1e44 / (4 * math.pi))

#: SPEX's file model needs strictly positive values (it interpolates in
#: log E - log S): bins without flux get this fraction of the spectrum's maximum.
FILE_MODEL_FLOOR = 1e-30


@contextlib.contextmanager
def _quiet(what):
    """Capture pyspextools' printed messages; name them in the error if it fails."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield buf
    except NuskybgdError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:  # pyspextools on bad input
        text = " ".join(buf.getvalue().split())[-200:]
        raise NuskybgdError(f"{what}: pyspextools failed ({type(exc).__name__}: {exc}) {text}".strip()) from None


def response_component(energ_lo, energ_hi, matrix):
    """One SPEX response component (a pyspextools ``Res``) from a dense matrix.

    Parameters
    ----------
    energ_lo, energ_hi : array_like, shape (n_energy,)
        Energy bin edges of the response (keV), increasing.
    matrix : array_like or scipy.sparse matrix, shape (n_energy, n_chan)
        Effective area times redistribution, cm^2 (an RMF times an ARF; an
        RMF alone for components folded without ARF, as XSPEC does).
        Column ``i`` is the spectrum's ``i``-th channel, SPEX channel
        ``i + 1`` (SPEX channels are 1-based whatever the OGIP TLMIN).

    Returns
    -------
    pyspextools.io.res.Res
        One component, sector 1, region 1; one group per energy bin with a
        non-zero row, spanning its first to last non-zero channel; response
        in m^2 (cm^2 x 1e-4), as ``pyspextools.io.convert.rmf_to_res`` writes.

    Raises
    ------
    NuskybgdError
        Shapes that do not match, a non-increasing energy grid, negative or
        non-finite matrix elements, or an all-zero matrix.
    """
    lo = np.asarray(energ_lo, float).ravel()
    hi = np.asarray(energ_hi, float).ravel()
    m = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix, float)
    if m.ndim != 2 or m.shape[0] != lo.size or hi.size != lo.size:
        raise NuskybgdError(f"response: matrix shape {m.shape} does not match {lo.size} energy bins")
    if not (np.all(hi > lo) and np.all(lo[1:] >= hi[:-1] - 1e-9 * hi[:-1]) and lo[0] > 0):
        raise NuskybgdError("response: energy bins must be positive and increasing")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise NuskybgdError("response: matrix has negative or non-finite elements")
    nz = m > 0
    rows = np.flatnonzero(nz.any(axis=1))
    if rows.size == 0:
        raise NuskybgdError("response: the matrix is zero everywhere")
    n_chan = m.shape[1]
    first = np.argmax(nz[rows], axis=1)
    last = n_chan - 1 - np.argmax(nz[rows, ::-1], axis=1)
    nc = last - first + 1
    cols = first[:, None] + np.arange(nc.max())[None, :]
    take = np.arange(nc.max())[None, :] < nc[:, None]
    values = m[rows[:, None], np.minimum(cols, n_chan - 1)][take]

    res = Res()
    res.nchan = np.array([n_chan], dtype=int)
    res.neg = np.array([rows.size], dtype=int)
    res.sector = np.array([1], dtype=int)
    res.region = np.array([1], dtype=int)
    res.nsector, res.nregion, res.ncomp = 1, 1, 1
    res.eg1, res.eg2 = lo[rows].copy(), hi[rows].copy()
    res.ic1 = (first + 1).astype(int)
    res.ic2 = (last + 1).astype(int)
    res.nc = nc.astype(int)
    res.resp = values * 1e-4
    res.empty = False
    return res


def spectrum_spo(phafile, rmffile, grouping=True):
    """The SPEX spectrum of an OGIP PHA file (pyspextools ``pha_to_spo``).

    Parameters
    ----------
    phafile : str or os.PathLike
        OGIP type-I spectrum (counts or rate).
    rmffile : str or os.PathLike
        Its RMF (only the EBOUNDS channel energies are read).
    grouping : bool
        Keep the PHA's GROUPING as SPEX first/last bin flags.

    Returns
    -------
    pyspextools.io.spo.Spo
        One region; channels with QUALITY != 0 are marked unused.

    Raises
    ------
    NuskybgdError
        Unreadable files (one line naming the file).
    """
    for p, what in ((phafile, "spectrum"), (rmffile, "RMF")):
        if not Path(p).is_file():
            raise NuskybgdError(f"{p}: {what} not found")
    with _quiet(str(phafile)):
        pha = Pha()
        if pha.read(str(phafile)) != 0:
            raise NuskybgdError(f"{phafile}: pyspextools cannot read the spectrum")
    with _quiet(str(rmffile)):
        rmf = Rmf()
        rmf.ebounds.read(str(rmffile))
    if rmf.ebounds.NumberChannels != pha.DetChans:
        raise NuskybgdError(f"{phafile}: {pha.DetChans} channels, its RMF {rmffile} has {rmf.ebounds.NumberChannels}")
    with _quiet(str(phafile)):
        spo = pha_to_spo(pha, rmf, save_grouping=grouping)
    if isinstance(spo, int):
        raise NuskybgdError(f"{phafile}: pyspextools could not convert the spectrum to SPEX format")
    return spo


def write_spex(spofile, resfile, spo, components, history=None):
    """Write a SPEX spectrum and a multi-sector response (pyspextools writers).

    Parameters
    ----------
    spofile, resfile : str or os.PathLike
        Output files (written as named; callers use temporary names of
        :func:`nuskybgd.io.output.atomic_outputs`).
    spo : pyspextools.io.spo.Spo
        The spectrum (one region).
    components : list of pyspextools.io.res.Res
        One response component per sector, in sector order (see
        :data:`SECTORS`); all point to region 1.
    history : list of str, optional
        HISTORY lines of both files.

    Raises
    ------
    NuskybgdError
        Components with a channel count other than the spectrum's, or a
        pyspextools consistency check that fails.
    """
    if not components:
        raise NuskybgdError(f"{resfile}: no response components")
    n_chan = int(np.sum(spo.nchan))
    for k, c in enumerate(components, start=1):
        if int(c.nchan[0]) != n_chan:
            raise NuskybgdError(f"{resfile}: sector {k} response has {int(c.nchan[0])} channels, "
                                f"the spectrum {n_chan}")
    res = copy.deepcopy(components[0])
    res.sector = np.array([1], dtype=int)
    res.region = np.array([1], dtype=int)
    with _quiet(str(resfile)):
        for k, c in enumerate(components[1:], start=2):
            res.append_component(c, iregion=1, isector=k)
        res.nsector = len(components)
        res.nregion = 1
        if res.check() != 0:
            raise NuskybgdError(f"{resfile}: the response fails pyspextools' consistency check")
        if spo.write_file(str(spofile), overwrite=True, history=history) != 0:
            raise NuskybgdError(f"{spofile}: pyspextools could not write the spectrum")
        if res.write_file(str(resfile), overwrite=True, history=history) != 0:
            raise NuskybgdError(f"{resfile}: pyspextools could not write the response")


def read_spex(spofile, resfile):
    """Read a SPEX spectrum and response back with pyspextools.

    Parameters
    ----------
    spofile, resfile : str or os.PathLike

    Returns
    -------
    (pyspextools.io.spo.Spo, pyspextools.io.res.Res)
    """
    for p in (spofile, resfile):
        if not Path(p).is_file():
            raise NuskybgdError(f"{p}: SPEX file not found")
    with _quiet(str(spofile)):
        spo = Spo()
        spo.read_file(str(spofile))
    with _quiet(str(resfile)):
        res = Res()
        res.read_file(str(resfile))
    return spo, res


def file_model_points(energ_lo, energ_hi, photons):
    """Points of a SPEX ``file`` model for a binned photon spectrum.

    Parameters
    ----------
    energ_lo, energ_hi : array_like, shape (n,)
        Energy bins (keV).
    photons : array_like, shape (n,)
        Photon flux per bin, photons/cm^2/s (XSPEC's model unit).

    Returns
    -------
    energy : ndarray
        Bin centres (keV).
    spectrum : ndarray
        Bin-averaged flux density in photons/m^2/s/keV, i.e. the file
        model's 1e44 photons/s/keV at the distance
        :data:`UNIT_FLUX_DISTANCE_M`; values <= 0 replaced by
        ``FILE_MODEL_FLOOR * max`` (the model needs positive values).
    """
    lo = np.asarray(energ_lo, float)
    hi = np.asarray(energ_hi, float)
    s = np.asarray(photons, float) * 1e4 / (hi - lo)
    if not np.all(np.isfinite(s)) or not np.any(s > 0):
        raise NuskybgdError("file model: the spectrum must be finite with some positive flux")
    s = np.where(s > 0, s, FILE_MODEL_FLOOR * s.max())
    return 0.5 * (lo + hi), s


def format_file_model(energy, spectrum):
    """Text of a SPEX ``file`` model: the number of points, then energy and spectrum per line.

    Parameters
    ----------
    energy, spectrum : array_like
        From :func:`file_model_points`.

    Returns
    -------
    str
    """
    lines = [str(len(energy))]
    lines += [f"{e:.17g} {s:.17g}" for e, s in zip(energy, spectrum)]  # exact float64 round trip
    return "\n".join(lines) + "\n"


def read_file_model(path):
    """Read a SPEX ``file`` model spectrum.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    energy, spectrum : ndarray
        keV and 1e44 photons/s/keV.

    Raises
    ------
    NuskybgdError
        Missing file, or a point count that differs from the first line.
    """
    try:
        text = Path(path).read_text().split("\n", 1)
        n = int(text[0])
        data = np.loadtxt(io.StringIO(text[1]), ndmin=2)
    except FileNotFoundError:
        raise NuskybgdError(f"{path}: file model not found") from None
    except (ValueError, IndexError, OSError) as exc:
        raise NuskybgdError(f"{path}: not a SPEX file-model spectrum ({exc})") from None
    if data.shape != (n, 2):
        raise NuskybgdError(f"{path}: first line says {n} points, found {data.shape[0]}")
    return data[:, 0], data[:, 1]


def spex_commands(name, sectors, norms, files, comment=()):
    """A SPEX command file (``.com``) that loads the data and the background sectors.

    Parameters
    ----------
    name : str
        The ``.res``/``.spo`` name without extension, as SPEX's ``data``
        command wants it (relative to where SPEX runs the file).
    sectors : list of str
        Sector names in order; the first is the source sector.
    norms : dict of str -> float
        ``norm`` of each background sector's file model (1 when the file
        holds the fitted spectrum).
    files : dict of str -> str
        File-model spectrum of each background sector.
    comment : iterable of str
        Extra comment lines at the top.

    Returns
    -------
    str
        Commands: ``data``, one ``sector new`` per background sector, the
        unit-flux distance for the background sectors, a frozen ``file``
        component per background sector with its norm, and a comment
        saying where the source model goes.
    """
    n = len(sectors)
    out = [f"# {c}" for c in comment]
    out += ["# sectors: " + ", ".join(f"{k + 1} {s}" for k, s in enumerate(sectors)),
            f"data {name} {name}"]
    out += ["sector new"] * (n - 1)
    out.append(f"distance sector 2:{n} {UNIT_FLUX_DISTANCE_M:.10e} m")
    for k, s in enumerate(sectors[1:], start=2):
        out += [f"# {s}: frozen-shape spectrum, fitted norm (file: photons/m^2/s/keV at the telescope)",
                f"comp {k} file",
                f"par {k} 1 file avalue {files[s]}",
                f"par {k} 1 norm value {norms[s]:.10g}",
                f"par {k} 1 norm status frozen"]
    # no 'calc' here: sector 1 has no model until the user adds the source
    out += ["# add the source model to sector 1, e.g.:",
            "#   comp 1 pow",
            "#   fit",
            "# thaw a background norm to let it float: par 2 1 norm status thawn"]
    return "\n".join(out) + "\n"
