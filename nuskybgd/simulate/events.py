"""Sampling kernels of the simulation: dwell times, categorical draws, point-source and background events."""

from pathlib import Path

import numpy as np

from ..io.ogip import read_arf, rmf_matrix
from ..sky.projection import aspect_nudge, det1_to_sky, rotation_angle, sky_to_det1

__all__ = ["draw_categorical", "dwell_times", "gti_span", "draw_bad_pixels", "powerlaw_flux", "append_events",
           "simulate_source"]


def draw_categorical(rng, weights, n):
    """Draw indices with probability proportional to non-negative weights.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator.
    weights : ndarray of float
        Non-negative weights (any shape; flattened).
    n : int
        Number of draws.

    Returns
    -------
    ndarray of int64
        Flat indices into ``weights``.
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    cdf = np.cumsum(w)
    if n == 0:
        return np.zeros(0, np.int64)
    if not cdf[-1] > 0:
        raise ValueError("all weights are zero")
    idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return np.minimum(idx, w.size - 1).astype(np.int64)


# --------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------


def dwell_times(t, start, stop):
    """Dwell time of each reference-point row inside the GTIs (REFERENCE section 2).

    Parameters
    ----------
    t : numpy.ndarray
        Row times, s (sorted).
    start, stop : numpy.ndarray
        GTI bounds, s.

    Returns
    -------
    numpy.ndarray
        Time to the next row, s; 0 for rows outside every GTI and the last row.
    """
    dwell = np.zeros(t.size)
    dwell[:-1] = np.diff(t)
    ok = np.zeros(t.size, bool)
    for s, e in zip(start, stop):
        ok |= (t >= s) & (t < e)
    return np.where(ok, dwell, 0.0)


def gti_span(t, dwell, start, stop):
    """Part of each row's dwell before the end of the GTI holding the row.

    Parameters
    ----------
    t, dwell : numpy.ndarray
        Row times and dwell times, s.
    start, stop : numpy.ndarray
        GTI bounds, s (sorted).

    Returns
    -------
    numpy.ndarray
        Seconds of each row's dwell inside its GTI.
    """
    i = np.clip(np.searchsorted(start, t, side="right") - 1, 0, len(start) - 1)
    return np.where(dwell > 0, np.minimum(dwell, stop[i] - t), 0.0)


def draw_bad_pixels(rng, pixmap, n_per_det):
    """A few random live raw pixels per detector, declared bad for the whole observation.

    Parameters
    ----------
    rng : numpy.random.Generator
    pixmap : PixelMap
        Raw pixel and detector of each DET1 pixel.
    n_per_det : int
        Bad pixels per detector.

    Returns
    -------
    dict
        Detector 0..3 -> sorted raw pixel numbers (rawx + 32 rawy).
    """
    bad = {}
    for k in range(4):
        raw = np.unique(pixmap.rawpix[(pixmap.det == k) & (pixmap.rawpix >= 0)])
        pick = rng.choice(raw, size=min(n_per_det, raw.size), replace=False) if raw.size else []
        bad[k] = sorted(int(p) for p in pick)
    return bad


def powerlaw_flux(elo, ehi, index):
    """Bin-integrated power law E^-index.

    Parameters
    ----------
    elo, ehi : numpy.ndarray
        Energy bin edges, keV.
    index : float
        Photon index.

    Returns
    -------
    numpy.ndarray
        Photons/cm^2/s per bin for norm 1 (photons/keV/cm^2/s at 1 keV).
    """
    if abs(index - 1.0) < 1e-12:
        return np.log(ehi / elo)
    return (ehi ** (1 - index) - elo ** (1 - index)) / (1 - index)


# --------------------------------------------------------------------------
# Main entry
# --------------------------------------------------------------------------


def append_events(cols, rng, px, py, chan, rows, det, t, span, x_det1, y_det1, pixmap, pa_pnt):
    """Turn (DET1 pixel, channel, track row) draws into event columns.

    Parameters
    ----------
    cols : dict
        Event columns being built (lists of arrays, appended to).
    rng : numpy.random.Generator
    px, py : numpy.ndarray of int
        DET1 pixel (0-based) of each event.
    chan : numpy.ndarray of int
        PI channel of each event.
    rows : numpy.ndarray of int
        Aspect-track row of each event.
    det : int
        Detector 0..3.
    t, span : numpy.ndarray
        Track row times and the part of each row's dwell inside its GTI, s:
        event times are uniform in ``[t, t + span)``, so every event lies
        inside a GTI.
    x_det1, y_det1 : numpy.ndarray
        Track (DET1 reference point on the sky grid, 1-based pixels).
    pixmap : PixelMap
        Raw pixel of each DET1 pixel.
    pa_pnt : float
        Roll angle, deg.
    """
    n = px.size
    jx = rng.random(n) - 0.5
    jy = rng.random(n) - 0.5
    ax = x_det1[rows] - 0.5
    ay = y_det1[rows] - 0.5
    sx, sy = det1_to_sky(px + jx, py + jy, ax, ay, pa_pnt)
    time = t[rows] + rng.random(n) * span[rows]
    raw = pixmap.rawpix[py, px]
    cols["TIME"].append(time)
    cols["PI"].append(chan.astype(np.int32))
    cols["DET_ID"].append(np.full(n, det, np.uint8))
    cols["RAWX"].append((raw % 32).astype(np.uint8))
    cols["RAWY"].append((raw // 32).astype(np.uint8))
    cols["GRADE"].append(np.zeros(n, np.int16))
    cols["DET1X"].append((px + 1).astype(np.int16))
    cols["DET1Y"].append((py + 1).astype(np.int16))
    cols["X"].append(sx + 1.0)
    cols["Y"].append(sy + 1.0)


def simulate_source(rng, cols, comp_tag, module, rate, centre, offset, expo, t, dwell, span, x_det1, y_det1,
                     pa_pnt, imap, pixmap, rmfs, tag, arf_path):
    """A point source: power law through RMF_k x (on-axis ARF), King-profile PSF.

    Parameters
    ----------
    rng : numpy.random.Generator
    cols : dict
        Event columns being built (appended to).
    comp_tag : list
        Component tag arrays (appended to, ``tag`` for source events).
    module : str
        ``"A"`` or ``"B"``.
    rate : float
        Photon rate before detector gaps, counts/s.
    centre, offset : (float, float)
        Footprint centre and source offset, 0-based sky pixels.
    expo : float
        Exposure, s.
    t, dwell, span : numpy.ndarray
        Track times, dwell times and their in-GTI parts, s.
    x_det1, y_det1 : numpy.ndarray
        Track positions, 1-based sky pixels.
    pa_pnt : float
        Roll angle, deg.
    imap : numpy.ndarray
        Instrument map (detector + 1 per DET1 pixel).
    pixmap : PixelMap
    rmfs : list of DataRMF
        RMF of detectors 0..3.
    tag : int
        Component tag of the source events.
    arf_path : str or os.PathLike
        On-axis ARF.

    Returns
    -------
    dict
        The source's truth record (position, index, photons, counts per
        detector, PSF parameters).
    """
    index, r_core, beta, r_max = 1.8, 4.0, 1.5, 150.0
    xs, ys = centre[0] + offset[0], centre[1] + offset[1]
    n_photons = int(rng.poisson(rate * expo))
    rows = draw_categorical(rng, dwell / dwell.sum(), n_photons)
    # King profile: enclosed fraction F(r) = 1 - (1 + r^2/rc^2)^(1 - beta).
    u = rng.random(n_photons) * (1 - (1 + (r_max / r_core) ** 2) ** (1 - beta))
    r = r_core * np.sqrt((1 - u) ** (1.0 / (1 - beta)) - 1)
    phi = rng.random(n_photons) * 2 * np.pi
    x = xs + r * np.cos(phi)
    y = ys + r * np.sin(phi)
    # projbgd's mapping (nudge included): the inverse of det1_to_sky.
    nx, ny = aspect_nudge(rotation_angle(pa_pnt))
    dx, dy = sky_to_det1(x + nx, y + ny, x_det1[rows] - 0.5, y_det1[rows] - 0.5, pa_pnt, rounded=False)
    ix = np.floor(dx + 0.5).astype(np.int64)
    iy = np.floor(dy + 0.5).astype(np.int64)
    on = (ix >= 0) & (ix < imap.shape[1]) & (iy >= 0) & (iy < imap.shape[0])
    det = np.full(n_photons, -1)
    det[on] = imap[iy[on], ix[on]] - 1
    keep = det >= 0
    arf = read_arf(str(arf_path))
    counts_per_det = [0] * 4
    for k in range(4):
        sel = np.flatnonzero(keep & (det == k))
        if sel.size == 0:
            continue
        rmf = rmfs[k]
        elo, ehi = np.asarray(rmf.energ_lo, float), np.asarray(rmf.energ_hi, float)
        area = np.interp(0.5 * (elo + ehi), 0.5 * (np.asarray(arf.energ_lo) + np.asarray(arf.energ_hi)),
                         np.asarray(arf.specresp, float), left=0.0, right=0.0)
        spec = powerlaw_flux(elo, ehi, index) * area
        folded = spec @ rmf_matrix(rmf)
        chan = draw_categorical(rng, np.clip(folded, 0, None), sel.size)
        n = sel.size
        cols["TIME"].append(t[rows[sel]] + rng.random(n) * span[rows[sel]])
        cols["PI"].append(chan.astype(np.int32))
        cols["DET_ID"].append(np.full(n, k, np.uint8))
        raw = pixmap.rawpix[iy[sel], ix[sel]]
        cols["RAWX"].append((raw % 32).astype(np.uint8))
        cols["RAWY"].append((raw // 32).astype(np.uint8))
        cols["GRADE"].append(np.zeros(n, np.int16))
        cols["DET1X"].append((ix[sel] + 1).astype(np.int16))
        cols["DET1Y"].append((iy[sel] + 1).astype(np.int16))
        cols["X"].append(x[sel] + 1.0)
        cols["Y"].append(y[sel] + 1.0)
        comp_tag.append(np.full(n, tag, np.int16))
        counts_per_det[k] = int(n)
    return {
        "x": xs + 1.0, "y": ys + 1.0, "xy_convention": "1-based event X/Y",
        "photon_index": index, "rate_before_gaps": rate, "n_photons": n_photons,
        "counts_per_det": counts_per_det, "psf": {"model": "King", "r_core_pix": r_core, "beta": beta,
                                                 "r_max_pix": r_max},
        "arf": Path(arf_path).name, "spectrum": "E^-index x ARF(E) folded through RMF_k, shape only",
    }
