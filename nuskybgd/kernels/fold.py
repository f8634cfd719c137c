"""Folding spectra through a compressed OGIP redistribution matrix (numba)."""

import numpy as np

from .jit import njit

__all__ = ["fold_compressed"]


@njit(cache=True)
def fold_compressed(spectra_t, n_grp, f_chan, n_chan, values, n_out, offset):
    """Fold k spectra through a compressed OGIP matrix in one pass.

    Parameters
    ----------
    spectra_t : numpy.ndarray, shape (n_energy, k)
        The spectra as columns (photons x area x time per energy bin), C
        contiguous float64.
    n_grp : numpy.ndarray of int64, shape (n_energy,)
        Channel groups of each energy row (OGIP ``N_GRP``).
    f_chan, n_chan : numpy.ndarray of int64, shape (sum(n_grp),)
        First channel and length of each group (``F_CHAN``, ``N_CHAN``).
    values : numpy.ndarray of float64, shape (sum(n_chan),)
        Matrix elements of all groups in file order (``MATRIX`` flattened).
    n_out : int
        Number of output channels.
    offset : int
        Channel number of the first output channel (``TLMIN`` of F_CHAN).

    Returns
    -------
    numpy.ndarray, shape (n_out, k)
        Counts per channel of each spectrum.
    """
    k = spectra_t.shape[1]
    out = np.zeros((n_out, k))
    g = 0
    v = 0
    for i in range(spectra_t.shape[0]):
        s = spectra_t[i]
        for _ in range(n_grp[i]):
            c0 = f_chan[g] - offset
            n = n_chan[g]
            g += 1
            for j in range(n):
                val = values[v]
                v += 1
                row = out[c0 + j]
                for q in range(k):
                    row[q] += val * s[q]
    return out
