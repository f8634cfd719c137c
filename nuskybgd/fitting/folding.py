"""Photon spectra of the background components and their folding through the responses.

:class:`SpectrumResponse` holds one spectrum's RMF (dense, float64 and
float32), ARFs x exposure and ``diag.rmf``; :func:`fold_jobs` folds the
photon rows of several spectra with one matrix product per shared RMF.
Photon spectra come from nuskybgd's Sherpa model classes
(:func:`photon_spectrum`), several lorentz lines in one kernel call
(:func:`photon_spectra`), and analytic densities for derivatives with
respect to bin edges (:func:`photon_density`, :func:`edge_derivative`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import NuskybgdError
from ..io.ogip import rmf_matrix
from ..kernels import spectral as kernels
from ..kernels.gain import MIN_PHOTON_ENERGY
from ..models import basic
from ..models.responses import diag_rmf, energy_grid

__all__ = [
    "COMPONENT_CLASSES",
    "SpectrumResponse",
    "edge_derivative",
    "fold_jobs",
    "photon_density",
    "photon_spectra",
    "photon_spectrum",
]

#: Sherpa model class of each component type the nonlinear fit evaluates.
COMPONENT_CLASSES = {"cutoffpl": basic.cutoffpl, "bknpower": basic.bknpower, "lorentz": basic.lorentz,
                     "apec": basic.apec}
_INSTANCES = {}


def photon_spectrum(ctype, shape, lo, hi):
    """Photon spectrum of one component at norm 1 (nuskybgd's Sherpa model classes).

    Parameters
    ----------
    ctype : {"cutoffpl", "bknpower", "lorentz", "apec"}
    shape : sequence of float
        The component's parameters without the norm, XSPEC order.
    lo, hi : ndarray
        Energy bins (keV); bins entirely below ``MIN_PHOTON_ENERGY`` (0.1 keV,
        reachable only under a large negative gain offset) get 0.

    Returns
    -------
    ndarray
        Photons/cm^2/s per bin.
    """
    m = _INSTANCES.get(ctype)
    if m is None:
        m = _INSTANCES[ctype] = COMPONENT_CLASSES[ctype]()
        # Sherpa's evaluation cache hashes the 4096-bin grids on every call
        # (0.2 ms, more than a cutoffpl costs) and never hits here
        m.cache = 0
    ok = hi > MIN_PHOTON_ENERGY
    out = np.zeros(lo.size)
    if np.all(ok):
        out[:] = m.calc(list(shape) + [1.0], lo, hi)
    elif np.any(ok):
        out[ok] = m.calc(list(shape) + [1.0], np.maximum(lo[ok], MIN_PHOTON_ENERGY), hi[ok])
    return out


def photon_spectra(items, lo, hi):
    """Photon spectra of several components on one grid (lines in one kernel call).

    Parameters
    ----------
    items : list of (ctype, shape)
    lo, hi : ndarray
        Energy bins (keV).

    Returns
    -------
    list of ndarray
        One per item, as :func:`photon_spectrum`.
    """
    out = [None] * len(items)
    lines = [j for j, (c, _) in enumerate(items) if c == "lorentz"]
    if len(lines) > 1:
        # many lines: one vectorised call of the kernel behind basic.lorentz_lines
        ok = hi > MIN_PHOTON_ENERGY
        rows = np.zeros((len(lines), lo.size))
        rows[:, ok] = kernels.lorentz_lines(np.maximum(lo[ok], MIN_PHOTON_ENERGY), hi[ok],
                                            [items[j][1][0] for j in lines], [items[j][1][1] for j in lines])
        for r, j in enumerate(lines):
            out[j] = rows[r]
    memo = {}
    for j, (c, shape) in enumerate(items):
        if out[j] is None:
            key = (c, tuple(shape))
            if key not in memo:   # apbgd and fcxb share one cutoffpl shape
                memo[key] = photon_spectrum(c, shape, lo, hi)
            out[j] = memo[key]
    return out


def photon_density(ctype, shape, e):
    """Differential photon spectrum (photons/cm^2/s/keV at norm 1) at energies ``e``, or None.

    The derivative of a bin integral with respect to a bin edge is the
    density there, so shifts of the grid (gain) and of a line are
    differentiated analytically; ``None`` for apec (tabulated: finite
    differences are used).

    Parameters
    ----------
    ctype : str
    shape : sequence of float
    e : ndarray
        Energies (keV).

    Returns
    -------
    ndarray or None
    """
    e = np.maximum(np.asarray(e, float), MIN_PHOTON_ENERGY)
    if ctype == "cutoffpl":
        g, b = shape
        return e ** -g * np.exp(-e / b)
    if ctype == "bknpower":
        g1, eb, g2 = shape
        return np.where(e <= eb, e ** -g1, eb ** (g2 - g1) * e ** -g2)
    if ctype == "lorentz":
        e0, w = shape
        if w <= 0:
            return None
        x = 2.0 * (e - e0) / w
        return (2.0 / w) / (1.0 + x * x) / (0.5 * np.pi + np.arctan(2.0 * e0 / w))
    return None


def edge_derivative(ctype, shape, lo, hi, dlo, dhi):
    """Derivative of the bin integrals of a component when its bin edges move.

    Parameters
    ----------
    ctype : str
        Component type (``"cutoffpl"``, ``"bknpower"``, ``"lorentz"``, ``"apec"``).
    shape : sequence of float
        The component's parameters without the norm, XSPEC order.
    lo, hi : ndarray
        Energy bin edges (keV).
    dlo, dhi : ndarray
        Velocities of the lower and upper edges (keV per unit of the
        parameter being differentiated).

    Returns
    -------
    ndarray or None
        d(photons/cm^2/s per bin) per unit parameter at norm 1; ``None``
        when the component has no analytic density (apec).
    """
    f_hi = photon_density(ctype, shape, hi)
    if f_hi is None:
        return None
    out = f_hi * dhi - photon_density(ctype, shape, lo) * dlo
    out[hi <= MIN_PHOTON_ENERGY] = 0.0
    return out


def fold_jobs(responses, jobs, precise):
    """Fold photon rows of several spectra, one matrix product per shared RMF.

    Parameters
    ----------
    responses : list of SpectrumResponse
        One per spectrum.
    jobs : list of (int, array_like, array_like)
        ``(k, rmf_rows, diag_rows)``: spectrum index and the rows (photons x
        area x time per energy bin, i.e. counts per energy bin) folded
        through its RMF and through diag.rmf.
    precise : bool
        float64 products (else float32, for iterations).

    Returns
    -------
    dict
        ``k -> (rmf folded (n, n_chan), diag folded (m, n_chan))``, counts
        per channel.
    """
    groups = {}
    for k, rr, dr in jobs:
        groups.setdefault(id(responses[k].m64), []).append((k, rr, dr))
    out = {}
    for items in groups.values():
        r0 = responses[items[0][0]]
        rows = [np.asarray(rr, float).reshape(-1, r0.energ_lo.size) for _, rr, _ in items]
        allr = np.vstack(rows) if rows else np.zeros((0, r0.energ_lo.size))
        a, _ = r0.fold(allr, [], precise)
        start = 0
        for (k, rr, dr), rw in zip(items, rows):
            _, b = responses[k].fold([], np.asarray(dr, float).reshape(-1, r0.energ_lo.size), precise)
            out[k] = (a[start:start + len(rw)], b)
            start += len(rw)
    return out


def _dense(rmf):
    """Dense (n_energy, n_chan) float64 matrix and first channel of an RMF or tuple."""
    if hasattr(rmf, "apply_rmf"):
        return np.asarray(rmf_matrix(rmf)), int(getattr(rmf, "offset", 0))
    m = rmf[2]
    m = m.toarray() if hasattr(m, "toarray") else np.asarray(m, float)
    return np.asarray(m, float), 0


class SpectrumResponse:
    """The responses of one spectrum, ready for re-folding.

    Parameters
    ----------
    rmf : sherpa.astro.data.DataRMF or tuple
        The spectrum's RMF, or ``(energ_lo, energ_hi, matrix)``.
    exposure : float
        Seconds.
    apbgd_arf, fcxb_arf : DataARF or None
        ARFs of apbgd and fcxb on the RMF's energy grid (``None``: the
        component has no ARF; fcxb defaults to nothing here, pass the
        bundle's).
    diag : DataRMF or tuple, optional
        intn response (default the bundle's ``diag.rmf``).

    Notes
    -----
    The dense matrix is kept twice (float64 for final values, float32 for
    iterations): 2 x 100 MB for a 4096 x 4096 NuSTAR RMF, shared between
    spectra that use the same RMF object.
    """

    _MATRICES: ClassVar[dict] = {}

    def __init__(self, rmf, exposure, apbgd_arf=None, fcxb_arf=None, diag=None):
        self.energ_lo, self.energ_hi = energy_grid(rmf)
        self.exposure = float(exposure)
        if not (np.isfinite(self.exposure) and self.exposure > 0):
            raise NuskybgdError(f"exposure must be a positive number of seconds (got {exposure!r})")
        self.m64, self.m32, self.first_channel = self._matrices(rmf)
        n_e = self.energ_lo.size
        self.area = {None: np.full(n_e, self.exposure)}
        for name, arf in (("apbgd", apbgd_arf), ("fcxb", fcxb_arf)):
            if arf is not None:
                a = np.asarray(arf.specresp, float)
                if a.size != n_e:
                    raise NuskybgdError(f"{name} ARF has {a.size} energy bins, the RMF {n_e}")
                self.area[name] = a * self.exposure
        diag = diag_rmf() if diag is None else diag
        dm, _ = _dense(diag)
        if dm.shape[0] != n_e:
            raise NuskybgdError(f"diag.rmf has {dm.shape[0]} energy bins, the spectrum's RMF {n_e}")
        if dm.shape[1] != self.m64.shape[1]:
            raise NuskybgdError(f"diag.rmf has {dm.shape[1]} channels but the spectrum's RMF {self.m64.shape[1]}")
        self.diag_identity = dm.shape[0] == dm.shape[1] and np.array_equal(dm, np.eye(n_e))
        self.diag = None if self.diag_identity else dm
        self.n_chan = self.m64.shape[1]
        self.blocks = self._block_layout(self.m64)
        # channel energies (EBOUNDS) for the gain scan; the energy grid when they are unknown
        e_min = getattr(rmf, "e_min", None)
        if e_min is not None and len(e_min) == self.n_chan:
            self.chan_lo, self.chan_hi = np.asarray(e_min, float), np.asarray(rmf.e_max, float)
        elif self.n_chan == n_e:
            self.chan_lo, self.chan_hi = self.energ_lo, self.energ_hi
        else:
            self.chan_lo = self.chan_hi = None

    _LAYOUTS: ClassVar[dict] = {}

    @classmethod
    def _block_layout(cls, m, size=256):
        """(e0, e1, c0, c1): energy blocks and the channel range their rows touch."""
        hit = cls._LAYOUTS.get(id(m))
        if hit is not None and hit[0] is m:
            return hit[1]
        out = []
        nz = m != 0
        for e0 in range(0, m.shape[0], size):
            e1 = min(e0 + size, m.shape[0])
            cols = np.flatnonzero(nz[e0:e1].any(axis=0))
            if cols.size:
                out.append((e0, e1, int(cols[0]), int(cols[-1]) + 1))
        cls._LAYOUTS.clear()
        cls._LAYOUTS[id(m)] = (m, out)
        return out

    @classmethod
    def _matrices(cls, rmf):
        key = id(rmf)
        hit = cls._MATRICES.get(key)
        if hit is not None and hit[0] is rmf:
            return hit[1:]
        m64, first = _dense(rmf)
        m64 = np.ascontiguousarray(m64)
        out = (rmf, m64, np.ascontiguousarray(m64, dtype=np.float32), first)
        cls._MATRICES.clear()  # one RMF at a time (they are large)
        cls._MATRICES[key] = out
        return out[1:]

    def fold(self, rmf_rows, diag_rows, precise=True):
        """Counts per channel of photon rows (photons x area x time per energy bin).

        Parameters
        ----------
        rmf_rows, diag_rows : ndarray, shape (k, n_energy) or (0, n_energy)
            Rows folded through the RMF and through diag.rmf.
        precise : bool
            float64 product (else float32, for iterations).

        Returns
        -------
        (ndarray, ndarray)
            (k_rmf, n_chan) and (k_diag, n_chan).
        """
        if len(rmf_rows):
            rows = np.asarray(rmf_rows, float if precise else np.float32)
            m = self.m64 if precise else self.m32
            a = np.zeros((rows.shape[0], self.n_chan), rows.dtype)
            # energy blocks times only the channels they reach (NuSTAR RMFs are
            # nearly triangular: about half of a dense product is zeros)
            for e0, e1, c0, c1 in self.blocks:
                a[:, c0:c1] += rows[:, e0:e1] @ m[e0:e1, c0:c1]
            a = a.astype(float, copy=False)
        else:
            a = np.zeros((0, self.n_chan))
        if len(diag_rows):
            b = np.array(diag_rows, float) if self.diag_identity else np.asarray(diag_rows, float) @ self.diag
        else:
            b = np.zeros((0, self.n_chan))
        return a, b
