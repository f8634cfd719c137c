"""Counts per channel of a SPEX background from the written files (read back with pyspextools).

An evaluator independent of nuskybgd's folding: the ``.res`` sectors are
expanded from pyspextools' response groups, SPEX's ``file`` model is
evaluated as its documentation says (linear interpolation in log E - log S,
zero outside the points) at the response-bin centres times the bin width,
and the sectors are summed and multiplied by the ``.spo`` exposure times.
"""

import numpy as np

from nuskybgd.io.spex import SECTORS, read_file_model, read_spex


def sector_matrix(res, sector):
    """Dense (group energies keV, matrix m^2) of one sector of a pyspextools Res."""
    r = res.return_region(sector, 1)
    n_chan = int(r.nchan[0])
    m = np.zeros((r.eg1.size, n_chan))
    k = 0
    for g in range(r.eg1.size):
        n = int(r.nc[g])
        m[g, r.ic1[g] - 1:r.ic1[g] - 1 + n] = r.resp[k:k + n]
        k += n
    return np.asarray(r.eg1, float), np.asarray(r.eg2, float), m


def file_model_flux(e_pts, s_pts, eg1, eg2):
    """Photons/m^2/s per response bin of a SPEX file model (log-log interpolation at bin centres)."""
    c = 0.5 * (eg1 + eg2)
    s = np.exp(np.interp(np.log(c), np.log(e_pts), np.log(s_pts), left=-np.inf, right=-np.inf))
    return s * (eg2 - eg1)


def spex_background_counts(names):
    """Background counts per channel of one ``spex`` output set (``analysis.spex.spex_outputs`` entry)."""
    spo, res = read_spex(names["spo"], names["res"])
    counts = np.zeros(int(spo.nchan[0]))
    for sector, name in enumerate(SECTORS[1:], start=2):
        eg1, eg2, m = sector_matrix(res, sector)
        e, s = read_file_model(names["dat"][name])
        counts += file_model_flux(e, s, eg1, eg2) @ m
    return counts * np.asarray(spo.tints, float)
