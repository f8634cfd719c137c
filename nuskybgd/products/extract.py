"""Spectrum extraction without NuSTARDAS: events + region -> PHA, RMF, grouping.

Replaces the original tool's helper script (``getspecnoarf.py``, which ran
``nuproducts`` and ``grppha 'group min 30'``) with the same products and
names, so existing ``bgdinfo.json`` files keep working:

- ``<outdir>/<outprefix>_sr.pha``: OGIP type I spectrum, 4096 PI channels;
- ``<outdir>/<outprefix>_sr.rmf``: the CALDB RMFs of the module's four
  detectors averaged with weights = fraction of the region's events on each
  detector (``DET_ID``), as NuSTARDAS does; with ``detabs`` each detector's
  RMF is first multiplied by its CALDB detector absorption (like ``absrmf``);
- ``<outdir>/<outprefix>_sr_g<grpmin>.pha``: the same spectrum with a
  ``GROUPING`` column (at least ``grpmin`` counts per group, like grppha's
  ``group min``) and a ``QUALITY`` column.

Selection: an event is in the region when the sky pixel holding its X/Y
(image index ``floor(X - 0.5)``, ``floor(Y - 0.5)``, see ``docs/DESIGN.md``)
is set in the region mask made by :func:`nuskybgd.io.regions.region_mask`
on the event file's sky grid, the same mask code every other task uses.

Grouping rule (grppha ``group min``): channels are grouped left to right,
a group closing as soon as it holds ``grpmin`` counts. The trailing channels
that never reach ``grpmin`` form one last group with ``QUALITY = 2`` (bad),
as grppha does, so every channel belongs to exactly one group; with
``tail="merge"`` they are merged into the previous group instead. With an
energy band (``elow``/``ehigh``) only channels inside it are grouped; channels
outside are single-channel groups with ``QUALITY = 5`` (bad, set by user).

Empty selections are errors: a region that does not overlap the sky grid is
reported by the mask code, a region that overlaps it but holds no event of
the file is reported here; no file is written in either case.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..calib.caldb import Caldb
from ..constants import N_CHANNELS
from ..errors import NuskybgdError
from ..io.detabs import detabs_on_grid, read_detabs
from ..io.events import read_events, sky_wcs
from ..io.fitsfile import check_input_file, fits_text
from ..io.ogip import read_rmf, rmf_matrix, write_pha, write_rmf
from ..io.output import atomic_outputs, check_outputs, output_session
from ..io.regions import region_mask

__all__ = [
    "N_CHANNELS", "SKY_GRID", "ExtractResult", "events_in_mask", "pha_counts",
    "group_min_counts", "detector_fractions", "weighted_rmf_matrix", "energy_band_channels",
    "extract_spectrum", "output_paths", "plot_spectrum",
]

log = logging.getLogger("nuskybgd")

#: Number of NuSTAR PI channels (0..4095).

#: Side of the NuSTAR sky X/Y grid, pixels (the BACKSCAL denominator is its square).
SKY_GRID = 1000

#: Header keywords copied from the EVENTS header into the spectra.
_COPY_KEYS = ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "TARG_ID", "RA_OBJ", "DEC_OBJ",
              "RA_NOM", "DEC_NOM", "RA_PNT", "DEC_PNT", "PA_PNT", "EQUINOX", "RADECSYS",
              "TIMESYS", "MJDREFI", "MJDREFF", "TIMEUNIT", "TSTART", "TSTOP", "TELAPSE",
              "DATE-OBS", "DATE-END", "ONTIME", "LIVETIME", "DEADC")


# --------------------------------------------------------------------------
# Pure kernels
# --------------------------------------------------------------------------

def events_in_mask(x, y, mask):
    """Which events fall on a set pixel of a sky mask.

    Parameters
    ----------
    x, y : ndarray of float
        Sky X/Y of the events, 1-based FITS pixel coordinates (pixel
        centres at integers); NaN for events without a sky position.
    mask : ndarray of bool, shape (ny, nx)
        Region mask indexed ``[y, x]`` with 0-based pixel indices.

    Returns
    -------
    ndarray of bool
        True for events whose pixel ``(floor(Y - 0.5), floor(X - 0.5))``
        lies on the grid and is set in ``mask``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ny, nx = mask.shape
    with np.errstate(invalid="ignore"):
        fx = np.floor(x - 0.5)
        fy = np.floor(y - 0.5)
        ok = (fx >= 0) & (fx < nx) & (fy >= 0) & (fy < ny)  # NaN compares False
    sel = np.zeros(x.shape, dtype=bool)
    idx = np.flatnonzero(ok)
    sel[idx] = mask.ravel()[fy[idx].astype(np.intp) * nx + fx[idx].astype(np.intp)]
    return sel


def pha_counts(pi, n_channels=N_CHANNELS):
    """Counts per PI channel.

    Parameters
    ----------
    pi : ndarray of int
        PI channel of each selected event.
    n_channels : int
        Number of channels (4096 for NuSTAR).

    Returns
    -------
    ndarray of int64, shape (n_channels,)
        Counts per channel; events with PI outside 0..n_channels-1 are
        not counted.
    """
    pi = np.asarray(pi).astype(np.int64, copy=False)
    pi = pi[(pi >= 0) & (pi < n_channels)]
    return np.bincount(pi, minlength=n_channels).astype(np.int64)


def energy_band_channels(elow=None, ehigh=None, n_channels=N_CHANNELS):
    """Channels whose nominal energy range lies inside a band.

    Parameters
    ----------
    elow, ehigh : float or None
        Band limits, keV (None: no limit). NuSTAR PI channel c covers
        1.6 + 0.04 c .. 1.64 + 0.04 c keV.
    n_channels : int
        Number of channels.

    Returns
    -------
    (int, int)
        First and last channel (inclusive) of the band.

    Raises
    ------
    NuskybgdError
        When the band is empty or reversed.
    """
    first, last = 0, n_channels - 1
    if elow is not None:
        first = max(first, int(np.ceil(round((float(elow) - 1.6) / 0.04, 9))))
    if ehigh is not None:
        last = min(last, int(np.floor(round((float(ehigh) - 1.64) / 0.04, 9))))
    if last < first:
        raise NuskybgdError(f"energy band {elow}-{ehigh} keV holds no PI channel")
    return first, last


def group_min_counts(counts, grpmin, first=0, last=None, tail="bad"):
    """GROUPING and QUALITY columns for at least ``grpmin`` counts per group.

    Parameters
    ----------
    counts : ndarray of int, shape (n,)
        Counts per channel.
    grpmin : int
        Minimum counts per group (>= 1).
    first, last : int
        Channel range (inclusive) to group; channels outside are single
        groups with quality 5 (bad, set by user).
    tail : {"bad", "merge"}
        Trailing channels of the range that do not reach ``grpmin``: one
        group with quality 2 (grppha's behaviour) or merged into the
        previous group (when there is one; else kept as a bad group).

    Returns
    -------
    grouping : ndarray of int16
        OGIP GROUPING: 1 starts a group, -1 continues it.
    quality : ndarray of int16
        OGIP QUALITY: 0 good, 2 bad (incomplete trailing group), 5 outside
        the band.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = counts.size
    last = n - 1 if last is None else last
    grpmin = int(grpmin)
    if grpmin < 1:
        raise NuskybgdError(f"grpmin must be at least 1, got {grpmin}")
    if tail not in ("bad", "merge"):
        raise ValueError(f"tail must be 'bad' or 'merge', got {tail!r}")
    grouping = np.ones(n, dtype=np.int16)
    quality = np.zeros(n, dtype=np.int16)
    quality[:first] = 5
    quality[last + 1:] = 5
    c = counts[first:last + 1]
    if c.size == 0:
        return grouping, quality
    # A group closes at the first channel where the cumulative count reaches
    # (counts at the group's start) + grpmin: walk the cumulative sum with
    # searchsorted, one step per group.
    cum = np.cumsum(c)
    starts, base, complete = [0], 0, False
    while True:
        end = int(np.searchsorted(cum, base + grpmin, side="left"))  # last channel of this group
        if end >= c.size:
            break  # the group starting at starts[-1] never reaches grpmin
        base = cum[end]
        if end + 1 >= c.size:
            complete = True
            break
        starts.append(end + 1)
    g = np.full(c.size, -1, dtype=np.int16)
    q = np.zeros(c.size, dtype=np.int16)
    if not complete:
        if tail == "merge" and len(starts) > 1:
            starts.pop()  # the remainder continues the previous group
        else:
            q[starts[-1]:] = 2
    g[starts] = 1
    grouping[first:last + 1] = g
    quality[first:last + 1] = q
    return grouping, quality


def detector_fractions(det_id, n_det=4):
    """Fraction of events on each detector.

    Parameters
    ----------
    det_id : ndarray of int
        DET_ID (0..3) of the selected events.
    n_det : int
        Number of detectors.

    Returns
    -------
    ndarray of float64, shape (n_det,)
        Fractions summing to 1.

    Raises
    ------
    NuskybgdError
        When there is no event with a valid DET_ID.
    """
    d = np.asarray(det_id).astype(np.int64, copy=False)
    d = d[(d >= 0) & (d < n_det)]
    if d.size == 0:
        raise NuskybgdError("no selected event has a DET_ID in 0..3; cannot weight the detector RMFs")
    n = np.bincount(d, minlength=n_det).astype(np.float64)
    return n / n.sum()


def weighted_rmf_matrix(matrices, weights, absorption=None):
    """Weighted sum of detector response matrices.

    Parameters
    ----------
    matrices : sequence of ndarray, shape (n_energy, n_chan)
        Dense RMF matrices (probability per channel) of the detectors.
    weights : sequence of float
        Weight of each matrix (detector fractions); matrices with weight 0
        are skipped (they may be None).
    absorption : sequence of ndarray (n_energy,) or None, optional
        Transmission multiplying each matrix's rows (detector absorption).

    Returns
    -------
    ndarray of float64, shape (n_energy, n_chan)
        ``sum_k w_k * absorption_k[:, None] * M_k``.
    """
    out = scratch = None
    for k, (m, w) in enumerate(zip(matrices, weights)):
        if w == 0:
            continue
        scale = float(w)
        if absorption is not None:
            scale = float(w) * np.asarray(absorption[k], dtype=np.float64)[:, None]
        # in place: one output and one scratch array, whatever the number of detectors
        if out is None:
            out = np.multiply(m, scale, dtype=np.float64)
        else:
            scratch = np.multiply(m, scale, out=scratch, dtype=np.float64)
            out += scratch
    if out is None:
        raise ValueError("all RMF weights are zero")
    return out


# --------------------------------------------------------------------------
# I/O layer
# --------------------------------------------------------------------------

@dataclass
class ExtractResult:
    """What :func:`extract_spectrum` wrote and measured.

    Attributes
    ----------
    pha, rmf, grouped : pathlib.Path
        The three output files.
    counts : ndarray of int64
        Counts per PI channel.
    n_events : int
        Selected events.
    det_fractions : ndarray of float64
        RMF weights per detector (DET0..DET3).
    exposure : float
        EXPOSURE written, s.
    backscal : float
        Region area in sky pixels / 1000^2.
    area_pixels : int
        Region area in sky pixels.
    grouping, quality : ndarray of int16
        Columns of the grouped spectrum.
    """

    pha: Path
    rmf: Path
    grouped: Path
    counts: np.ndarray
    n_events: int
    det_fractions: np.ndarray
    exposure: float
    backscal: float
    area_pixels: int
    grouping: np.ndarray = field(repr=False, default=None)
    quality: np.ndarray = field(repr=False, default=None)


def output_paths(outprefix, outdir=".", grpmin=30):
    """File names of the three products (the original helper's layout).

    Parameters
    ----------
    outprefix : str
        Stem, e.g. ``bgd1A``.
    outdir : str or os.PathLike
        Output folder.
    grpmin : int
        Minimum counts per group (part of the grouped file's name).

    Returns
    -------
    (Path, Path, Path)
        ``<outdir>/<outprefix>_sr.pha``, ``..._sr.rmf``, ``..._sr_g<grpmin>.pha``.
    """
    d = Path(outdir)
    return (d / f"{outprefix}_sr.pha", d / f"{outprefix}_sr.rmf", d / f"{outprefix}_sr_g{int(grpmin)}.pha")


def _exposure(header, path):
    for key in ("EXPOSURE", "LIVETIME"):
        if key in header:
            try:
                v = float(header[key])
            except (TypeError, ValueError):
                raise NuskybgdError(f"{path}: keyword {key} = {header[key]!r} is not a number") from None
            if not np.isfinite(v) or v <= 0:
                raise NuskybgdError(f"{path}: keyword {key} = {v} is not a positive exposure")
            return v
    raise NuskybgdError(f"{path}: no EXPOSURE or LIVETIME keyword in the EVENTS header")


def _obs_date(header):
    d = str(header.get("DATE-OBS", "")).strip()
    return d or None


def _load_detector_rmfs(caldb, module, weights, date, detabs):
    """Dense RMF matrices (and absorption) of the detectors with weight > 0."""
    inst = f"FPM{module}"
    mats, absn, grid, ebounds = [None] * 4, [None] * 4 if detabs else None, None, None
    used = {}
    for k in range(4):
        if weights[k] == 0:
            continue
        try:
            path = caldb.rmf(inst, f"DET{k}", date=date)
        except NuskybgdError as exc:
            raise NuskybgdError(f"CALDB RMF of {inst} DET{k}: {exc}") from None
        rmf = read_rmf(path)
        m = rmf_matrix(rmf)
        e = (np.asarray(rmf.energ_lo, float), np.asarray(rmf.energ_hi, float))
        if grid is None:
            grid = e
            ebounds = (np.asarray(rmf.e_min, float), np.asarray(rmf.e_max, float))
        elif grid[0].shape != e[0].shape or not (np.allclose(grid[0], e[0]) and np.allclose(grid[1], e[1])):
            raise NuskybgdError(f"{path}: RMF energy grid differs from the other detectors' RMFs")
        mats[k] = m
        used[k] = path
        if detabs:
            absn[k] = _detabs_on_grid(caldb, module, k, date, grid)
    return mats, absn, grid, ebounds, used


def _detabs_on_grid(caldb, module, det, date, grid):
    """CALDB DETABS transmission of one detector on an RMF energy grid."""
    inst = f"FPM{module}"
    try:
        f = caldb.query("DETABS", inst, detnam=f"DET{det}", date=date)
    except NuskybgdError as exc:
        raise NuskybgdError(f"CALDB has no DETABS for {inst} DET{det}: {exc}") from None
    d_lo, d_hi, val = read_detabs(f.path, det)
    return detabs_on_grid(grid[0], grid[1], d_lo, d_hi, val)


def _region_hdu(regfile, n_pixels):
    lines = [fits_text(ln.rstrip("\n"))
             for ln in Path(regfile).read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [ln for ln in lines if ln.strip()] or [""]
    width = max(1, max(len(ln) for ln in lines))
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name="REGION", format=f"{width}A", array=np.array(lines))], name="REGION")
    hdu.header["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
    hdu.header["HDUCLAS1"] = ("REGION", "region used to select events")
    hdu.header["REGFILE"] = (fits_text(Path(regfile).name)[:68], "DS9 region file (text in column REGION)")
    hdu.header["NPIXSEL"] = (int(n_pixels), "sky pixels in the region mask")
    hdu.header["MTYPE1"] = ("pos", "DM keyword: descriptor name")
    hdu.header["MFORM1"] = ("X,Y", "DM keyword: column names")
    return hdu


def _gti_hdu(gti, header):
    start, stop = (np.asarray(a, float) for a in gti)
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name="START", format="D", unit="s", array=start),
         fits.Column(name="STOP", format="D", unit="s", array=stop)], name="GTI")
    hdu.header["HDUCLASS"] = "OGIP"
    hdu.header["HDUCLAS1"] = "GTI"
    hdu.header["HDUCLAS2"] = "STANDARD"
    for k in ("TELESCOP", "INSTRUME", "TIMESYS", "MJDREFI", "MJDREFF", "TIMEUNIT"):
        if k in header:
            hdu.header[k] = header[k]
    return hdu


def _spectrum_header(evhdr, rmf_name, outprefix, regfile, evtfile, weights, n_events):
    h = fits.Header()
    for k in _COPY_KEYS:
        if k in evhdr:
            h[k] = evhdr[k]
    h["FILTER"] = ("NONE", "filter")
    h["RESPFILE"] = (fits_text(rmf_name), "response matrix (detector-weighted CALDB RMFs)")
    h["ANCRFILE"] = ("NONE", "no ARF: background components carry their own")
    h["BACKFILE"] = ("NONE", "background file")
    h["CORRFILE"] = ("NONE", "correction file")
    h["CORRSCAL"] = (1.0, "correction scale")
    h["AREASCAL"] = (1.0, "area scaling factor")
    h["EVTFILE"] = (fits_text(Path(evtfile).name)[:68], "event file")
    h["REGFILE"] = (fits_text(Path(regfile).name)[:68], "DS9 region file")
    h["NEVENTS"] = (int(n_events), "events in the region")
    for k, w in enumerate(weights):
        h[f"DETFRAC{k}"] = (float(w), f"fraction of the region's events on DET{k}")
    h["CREATOR"] = ("nuskybgd extract", "program that wrote the file")
    return h


def plot_spectrum(result, path, title=None, clobber=False):
    """Plot an extracted spectrum (grouped counts per keV against energy).

    Parameters
    ----------
    result : ExtractResult
        Output of :func:`extract_spectrum`.
    path : str or os.PathLike
        PNG file to write.
    title : str, optional
        Figure title.
    clobber : bool
        Replace an existing file.
    """
    import matplotlib  # local: matplotlib.pyplot costs 0.5-1.5 s at import; only for plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(result.counts, float)
    starts = np.flatnonzero(result.grouping == 1)
    ends = np.r_[starts[1:], counts.size]
    sums = np.add.reduceat(counts, starts)
    good = result.quality[starts] == 0
    elo, ehi = 1.6 + 0.04 * starts, 1.6 + 0.04 * ends
    rate = sums / (ehi - elo)
    err = np.sqrt(sums) / (ehi - elo)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(0.5 * (elo + ehi)[good], rate[good], xerr=0.5 * (ehi - elo)[good], yerr=err[good], fmt=".",
                ms=3, lw=0.8, label=f"{result.n_events} events, groups >= {int(sums[good].min()) if good.any() else 0}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("counts per keV")
    ax.set_title(title or result.pha.name)
    ax.legend()
    fig.tight_layout()
    with atomic_outputs([path], clobber) as out:
        fig.savefig(out[path], format="png", dpi=90)
    plt.close(fig)


@output_session()
def extract_spectrum(eventfile, regfile, outprefix=None, outdir=".", grpmin=30, elow=None, ehigh=None,
                     detabs=False, caldb=None, tail="bad", clobber=False):
    """Extract the spectrum, RMF and grouped spectrum of a sky region.

    Parameters
    ----------
    eventfile : str or os.PathLike
        Cleaned event file with sky X/Y columns, PI and DET_ID.
    regfile : str or os.PathLike
        DS9 region file (any system the project's mask code accepts).
    outprefix : str, optional
        Output stem (default: the region file's stem).
    outdir : str or os.PathLike
        Output folder (must exist).
    grpmin : int
        Minimum counts per group of the grouped spectrum.
    elow, ehigh : float, optional
        Energy band, keV, over which channels are grouped; channels outside
        get quality 5. The ungrouped spectrum always holds all channels.
    detabs : bool
        Multiply each detector's RMF by its CALDB detector absorption
        before averaging (like the original's absrmf).
    caldb : str, os.PathLike or nuskybgd.calib.caldb.Caldb, optional
        CALDB root or object (default ``$CALDB``).
    tail : {"bad", "merge"}
        Treatment of the trailing channels below ``grpmin`` (see module notes).
    clobber : bool
        Replace existing outputs.

    Returns
    -------
    ExtractResult
        Paths written and the numbers behind them.

    Raises
    ------
    NuskybgdError
        Unreadable inputs, an event file without sky X/Y or PI, an empty or
        off-image region, a region without events, a CALDB without the
        needed RMF. Nothing is written then.
    """
    eventfile, regfile = Path(eventfile), Path(regfile)
    if outprefix is None:
        outprefix = regfile.stem
    paths = output_paths(outprefix, outdir, grpmin)
    check_input_file(eventfile, "event file")
    check_input_file(regfile, "region file")
    check_outputs(paths, clobber)  # fail before the slow part
    first, last = energy_band_channels(elow, ehigh)

    ev = read_events(eventfile, columns=("PI", "DET_ID", "X", "Y"))
    for col in ("X", "Y"):
        if col not in ev.columns:
            raise NuskybgdError(f"{eventfile}: EVENTS has no sky {col} column (run the NuSTARDAS pipeline "
                                f"with sky coordinates, or use a cleaned *_cl.evt file)")
    if "PI" not in ev.columns:
        raise NuskybgdError(f"{eventfile}: EVENTS has no PI column")
    if "DET_ID" not in ev.columns:
        raise NuskybgdError(f"{eventfile}: EVENTS has no DET_ID column (needed to weight the detector RMFs)")
    wcs = sky_wcs(ev)
    shape = (int(wcs.pixel_shape[1]), int(wcs.pixel_shape[0])) if wcs.pixel_shape else (SKY_GRID, SKY_GRID)
    mask = region_mask(regfile, wcs, shape)
    area = int(np.count_nonzero(mask))
    if area == 0:
        raise NuskybgdError(f"{regfile}: region covers no pixel of the sky grid of {eventfile.name}")
    sel = events_in_mask(ev.columns["X"], ev.columns["Y"], mask)
    n_sel = int(sel.sum())
    if n_sel == 0:
        raise NuskybgdError(f"{regfile}: region ({area} sky pixels) holds no event of {eventfile.name}")
    counts = pha_counts(ev.columns["PI"][sel])
    weights = detector_fractions(ev.columns["DET_ID"][sel])
    exposure = _exposure(ev.header, eventfile)
    backscal = area / float(SKY_GRID * SKY_GRID)
    grouping, quality = group_min_counts(counts, grpmin, first, last, tail=tail)

    if not isinstance(caldb, Caldb):
        caldb = Caldb(caldb)
    mats, absn, grid, ebounds, used = _load_detector_rmfs(caldb, ev.module, weights, _obs_date(ev.header), detabs)
    matrix = weighted_rmf_matrix(mats, weights, absn)
    del mats

    pha_path, rmf_path, grp_path = paths
    hdr = _spectrum_header(ev.header, rmf_path.name, outprefix, regfile, eventfile, weights, n_sel)
    hdr["GRPMIN"] = (int(grpmin), "minimum counts per group (grouped file)")
    rmf_hdr = fits.Header()
    for k in ("TELESCOP", "INSTRUME", "DATE-OBS"):
        if k in ev.header:
            rmf_hdr[k] = ev.header[k]
    rmf_hdr["DETNAM"] = ("MIXED", "detector-weighted average of DET0..DET3 RMFs")
    for k in range(4):
        rmf_hdr[f"DETFRAC{k}"] = (float(weights[k]), f"weight of DET{k} RMF")
        if k in used:
            rmf_hdr[f"RMFFILE{k}"] = (fits_text(Path(used[k]).name)[:68], f"CALDB RMF of DET{k}")
    rmf_hdr["DETABS"] = (bool(detabs), "detector absorption folded into the matrix")
    extra = (_region_hdu(regfile, area),) + ((_gti_hdu(ev.gti, ev.header),) if ev.gti is not None else ())
    with atomic_outputs(paths, clobber) as out:
        write_pha(out[pha_path], counts, exposure, backscal, header=hdr, extra_hdus=extra, clobber=True)
        write_pha(out[grp_path], counts, exposure, backscal, header=hdr, grouping=grouping,
                  quality=quality, extra_hdus=extra, clobber=True)
        write_rmf(out[rmf_path], grid[0], grid[1], matrix, ebounds[0], ebounds[1], header=rmf_hdr,
                  clobber=True)
    log.info("%s: %d events in %d sky pixels; detector fractions %s; wrote %s, %s, %s",
             regfile.name, n_sel, area, np.round(weights, 4).tolist(), *[p.name for p in paths])
    return ExtractResult(pha=pha_path, rmf=rmf_path, grouped=grp_path, counts=counts, n_events=n_sel,
                         det_fractions=weights, exposure=exposure, backscal=backscal, area_pixels=area,
                         grouping=grouping, quality=quality)
