"""Spectra as the fit sees them: channel grouping, noticed bins and folded templates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SpectrumData", "bin_mask_from_energy", "group_ids"]


def group_ids(grouping, n_chan):
    """Bin number (0-based) of every channel from an OGIP GROUPING column.

    Parameters
    ----------
    grouping : array of int or None
        1 starts a new bin, -1 continues the current one (0 is treated like 1).
        ``None`` means no grouping.
    n_chan : int
        Number of channels.

    Returns
    -------
    ndarray of int, shape (n_chan,)
    """
    if grouping is None:
        return np.arange(n_chan)
    g = np.asarray(grouping)
    if g.shape != (n_chan,):
        raise ValueError("grouping has the wrong length")
    start = g != -1
    start[0] = True
    return np.cumsum(start) - 1


def bin_mask_from_energy(ids, e_lo, e_hi, emin, emax, quality=None):
    """Bins kept by an energy selection.

    Parameters
    ----------
    ids : ndarray of int
        Bin of each channel (:func:`group_ids`).
    e_lo, e_hi : ndarray
        Channel energy bounds (keV, from EBOUNDS).
    emin, emax : float
        Band in keV.
    quality : ndarray, optional
        Channels with quality > 0 exclude their bin.

    Returns
    -------
    ndarray of bool, shape (n_bins,)
        A bin is kept when every channel in it lies inside [emin, emax]
        (to 1e-6 keV) and has good quality.
    """
    tol = 1e-6
    ok = (np.asarray(e_lo) >= emin - tol) & (np.asarray(e_hi) <= emax + tol)
    if quality is not None:
        ok &= np.asarray(quality) <= 0
    nb = int(ids[-1]) + 1
    bad = np.bincount(ids, weights=(~ok).astype(float), minlength=nb)
    return bad == 0


@dataclass
class SpectrumData:
    """What the engine needs of one spectrum.

    Attributes
    ----------
    counts : ndarray, shape (n_chan,)
        Observed counts per channel.
    templates : dict
        Template key -> ndarray (n_chan,) of predicted counts per unit norm
        (exposure included).
    ids : ndarray of int, shape (n_chan,)
        Bin of each channel (grouping).
    noticed : ndarray of bool, shape (n_bins,)
        Bins used in the fit.
    name : str
        For messages.
    """

    counts: np.ndarray
    templates: dict
    ids: np.ndarray
    noticed: np.ndarray
    name: str = ""

    @property
    def n_bins(self):
        """Number of bins after grouping."""
        return int(self.ids[-1]) + 1

    def group(self, x):
        """Sum a per-channel array into bins.

        Parameters
        ----------
        x : ndarray, shape (n_chan,)
            Values per channel (counts).

        Returns
        -------
        ndarray, shape (n_bins,)
            Sums per bin (grouping of this spectrum).
        """
        if self.ungrouped:
            # one channel per bin: the sums are the values themselves (bincount
            # adds each weight to 0.0, so this is bit for bit the same)
            return np.array(x, dtype=float)
        return np.bincount(self.ids, weights=x, minlength=self.n_bins)

    def noticed_bins(self, x):
        """Grouped values of the noticed bins (``group(x)[noticed]``), for rows.

        Parameters
        ----------
        x : ndarray, shape (n_chan,) or (n_chan, m)
            Values per channel; columns are grouped separately.

        Returns
        -------
        ndarray, shape (n_noticed,) or (n_noticed, m)
        """
        x = np.asarray(x)
        if self.ungrouped:
            return np.asarray(x[self.noticed], dtype=float)
        if x.ndim == 1:
            return self.group(x)[self.noticed]
        if x.shape[1] == 0:
            return np.zeros((int(np.count_nonzero(self.noticed)), 0))
        return np.column_stack([self.group(x[:, j])[self.noticed] for j in range(x.shape[1])])

    @property
    def ungrouped(self):
        """True when every channel is its own bin (``ids`` = 0, 1, 2, ...)."""
        ids = self.ids
        hit = self.__dict__.get("_ungrouped")
        if hit is None or hit[0] is not ids or hit[1] != ids.size:
            flag = bool(ids.size and ids[0] == 0 and np.all(np.diff(ids) == 1))
            hit = (ids, ids.size, flag)
            self.__dict__["_ungrouped"] = hit
        return hit[2]

