"""Folding spectra through an RMF, and the grid of an RMF.

Shared by the Sherpa classes (:class:`nuskybgd.models.basic.FoldedModel`)
and the folded templates (:mod:`nuskybgd.models.background`).
"""

import numpy as np

from ..errors import NuskybgdError
from ..kernels.fold import fold_compressed
from .responses import energy_grid

__all__ = ["fold_spectra", "rmf_info"]


def fold_spectra(rmf, spectra):
    """Fold several spectra through one RMF.

    Parameters
    ----------
    rmf : DataRMF or tuple
        A Sherpa RMF (its compressed N_GRP/F_CHAN/N_CHAN/MATRIX arrays, all
        energies, whatever channels are noticed) or ``(energ_lo, energ_hi,
        matrix)`` with a dense or scipy-sparse matrix of shape
        (n_energy, n_chan).
    spectra : array_like, shape (k, n_energy)
        Photons (x area x time) per energy bin.

    Returns
    -------
    numpy.ndarray, shape (k, n_chan)
        Counts per channel.

    Notes
    -----
    For a DataRMF all k spectra are folded in one pass over the compressed
    matrix (a numba loop; Sherpa's ``rmf_fold`` folds one spectrum per pass,
    which is ~k times slower for the 32 spectra of the background model and
    gives the same sums to rounding).
    """
    spectra = np.atleast_2d(np.asarray(spectra, float))
    if hasattr(rmf, "apply_rmf"):
        n_e = len(rmf.energ_lo)
        if spectra.shape[1] != n_e:
            raise NuskybgdError(f"{rmf.name}: {n_e} energy bins, spectra have {spectra.shape[1]}")
        n_grp = np.asarray(rmf.n_grp, dtype=np.int64).ravel()
        f_chan = np.asarray(rmf.f_chan, dtype=np.int64).ravel()
        n_chan = np.asarray(rmf.n_chan, dtype=np.int64).ravel()
        values = np.asarray(rmf.matrix, dtype=float).ravel()
        n_out, offset = int(rmf.detchans), int(rmf.offset)
        if (n_grp.size != n_e or n_grp.sum() != f_chan.size or n_chan.size != f_chan.size
                or n_chan.sum() != values.size):
            raise NuskybgdError(f"{rmf.name}: inconsistent RMF groups (N_GRP/F_CHAN/N_CHAN/MATRIX)")
        if f_chan.size and (np.min(f_chan - offset) < 0 or np.max(f_chan - offset + n_chan) > n_out):
            raise NuskybgdError(f"{rmf.name}: RMF groups run outside channels {offset}..{offset + n_out - 1}")
        return fold_compressed(np.ascontiguousarray(spectra.T), n_grp, f_chan, n_chan, values, n_out, offset).T.copy()
    matrix = rmf[2]
    if matrix.shape[0] != spectra.shape[1]:
        raise NuskybgdError(f"RMF matrix has {matrix.shape[0]} energy rows, spectra have {spectra.shape[1]} bins")
    if hasattr(matrix, "tocsr"):
        return np.asarray((matrix.T @ spectra.T).T)
    return spectra @ np.asarray(matrix, float)


def rmf_info(rmf):
    """Energy grid, channel count and identity of an RMF.

    Parameters
    ----------
    rmf : sherpa.astro.data.DataRMF or tuple
        A Sherpa RMF or ``(energ_lo, energ_hi, matrix)`` with a 2-D
        ``(n_energy, n_chan)`` matrix (dense or scipy sparse).

    Returns
    -------
    tuple
        ``(energ_lo, energ_hi, n_chan, first_channel, identity)``: energy bin
        edges (keV), number of channels, first channel number and the object
        whose identity keys the template cache.

    Raises
    ------
    NuskybgdError
        For a malformed tuple or a matrix that does not match the grid.
    """
    lo, hi = energy_grid(rmf)
    if hasattr(rmf, "apply_rmf"):
        return lo, hi, int(rmf.detchans), int(getattr(rmf, "offset", 0)), rmf
    if len(rmf) != 3:
        raise NuskybgdError("RMF: give a Sherpa DataRMF or (energ_lo, energ_hi, matrix)")
    matrix = rmf[2]
    if getattr(matrix, "ndim", 0) != 2:
        raise NuskybgdError("RMF: the matrix must be 2-D (n_energy, n_chan)")
    if matrix.shape[0] != lo.size:
        raise NuskybgdError(f"RMF: matrix has {matrix.shape[0]} rows but the energy grid {lo.size} bins")
    return lo, hi, int(matrix.shape[1]), 0, matrix
