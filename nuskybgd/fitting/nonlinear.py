"""Free shapes and response gains: variable projection around the norm solver.

For fixed shape parameters and gains the background model is linear in its
norms and :func:`nuskybgd.fitting.engine.solve_blocks` finds the best norms
exactly (a convex problem). The few nonlinear parameters ``phi`` (line
energies and widths, apec kT/abundance, cutoffpl PhoIndex/HighECut, bknpower
indices and break, and the per-spectrum response gain slope/offset) are
fitted on the *profiled* statistic ``S(phi) = min_theta S(theta, phi)``
(variable projection) by a bounded Levenberg-Marquardt iteration:

* derivatives: ``d mu / d phi_q`` = sum over the components that ``phi_q``
  touches of ``norm_c x R^T (A_c x d s_c / d phi_q)``: the photon spectrum
  ``s_c`` is differentiated by central differences in energy space (cheap
  kernel calls) and the sum is folded once per parameter and spectrum (the
  fold is linear, so this equals differencing re-folded templates); a line
  energy re-folds one lorentz column only, a gain every column of its
  spectrum;
* the reduced Gauss-Newton matrix is the Schur complement
  ``H_pp - H_pt H_tt^-1 H_tp`` over the norms not held at a bound, with
  ``H = X^T diag(d2S/dmu2) X`` and ``X = [templates | d mu/d phi]``; its
  gradient is ``d S / d phi`` at the profiled norms (envelope theorem);
* steps are projected onto the hard limits (lower and upper) of every
  parameter; the damping follows Marquardt (``lambda x diag``).

Templates are folded with a float32 copy of the dense RMF while iterating
(the matrix is stored as float32 in OGIP files; sums in float32 differ by
~1e-7 relative), then once more in float64 at the solution, where the norms
are re-solved, the statistic is reported and the covariance of all free
parameters (norms and nonlinear) is ``2 H^-1`` of the full Gauss-Newton
matrix.

The response gain follows XSPEC's ``gain`` (see :mod:`nuskybgd.kernels.gain`):
every component of a spectrum is evaluated on the shifted energy bins
``E / slope - offset`` and folded with the unchanged ARF values and RMF rows
(``diag.rmf`` included).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from ..errors import NuskybgdError
from ..kernels.gain import MIN_PHOTON_ENERGY, check_gain, gain_energies
from ..models import basic
from ..kernels import spectral as kernels
from ..models.apec import DOWNLOAD_COMMAND, TemplateSpectrum, apec_source
from ..models.responses import diag_rmf, energy_grid
from .engine import LinearModel, solve_blocks, stat_parts
from ..io.state import Link, Param
from .model import norm_template_key

__all__ = [
    "GAIN_NAMES",
    "NonlinearFit",
    "NonlinearModel",
    "SpectrumResponse",
    "fit_nonlinear",
    "gain_link",
    "gain_params",
    "gain_values",
    "parameter_label",
    "photon_spectrum",
    "resolve_gain",
]

log = logging.getLogger("nuskybgd")

#: Names of the two gain parameters (XSPEC: slope, intercept in keV).
GAIN_NAMES = ("slope", "offset")
#: value, delta, hard_min, soft_min, soft_max, hard_max of the gain parameters.
_GAIN_DEFAULTS = {"slope": (1.0, 0.001, 0.8, 0.8, 1.2, 1.2), "offset": (0.0, 0.001, -2.0, -2.0, 2.0, 2.0)}

#: Component type and response of each template key kind.
_KIND = {"apbgd": ("cutoffpl", "rmf", "apbgd"), "fcxb": ("cutoffpl", "rmf", "fcxb"),
         "intn": ("bknpower", "diag", None)}

_CLASSES = {"cutoffpl": basic.cutoffpl, "bknpower": basic.bknpower, "lorentz": basic.lorentz,
            "apec": basic.apec}
_INSTANCES = {}


# --------------------------------------------------------------------------
# gain parameters in the state
# --------------------------------------------------------------------------

def gain_params(slope=1.0, offset=0.0, free=True):
    """The two gain parameters of one spectrum.

    Parameters
    ----------
    slope : float
        Gain slope (0.8..1.2).
    offset : float
        Gain offset, keV (-2..2).
    free : bool
        Fit them (XSPEC ``gain fit``) or keep them fixed.

    Returns
    -------
    list of Param
        ``[slope, offset]`` with XSPEC-style limits.

    Raises
    ------
    NuskybgdError
        Outside the hard limits.
    """
    slope, offset = check_gain(slope, offset)
    out = []
    for name, v in zip(GAIN_NAMES, (slope, offset)):
        _, d, lo, blo, bhi, hi = _GAIN_DEFAULTS[name]
        out.append(Param(float(v), d if free else -d, lo, blo, bhi, hi))
    return out


def gain_link(number, which):
    """Link to gain parameter ``which`` (0 slope, 1 offset) of spectrum ``number`` (1-based)."""
    return Link("gain", 2 * (int(number) - 1) + int(which) + 1, 1.0)


def resolve_gain(state, k, which):
    """Root of a gain parameter.

    Parameters
    ----------
    state : FitState
    k : int
        0-based spectrum index.
    which : int
        0 slope, 1 offset.

    Returns
    -------
    (int, int, float) or None
        Root spectrum index, root parameter (0/1) and link factor; ``None``
        when the spectrum has no gain.
    """
    seen = set()
    factor = 1.0
    while True:
        e = state.spectra[k]
        if e.gain is None:
            return None
        p = e.gain[which]
        if p.link is None:
            return k, which, factor
        if (k, which) in seen:
            raise NuskybgdError(f"gain links form a cycle at spectrum {e.number}")
        seen.add((k, which))
        lk = p.link
        if lk.source != "gain" or not 1 <= lk.index <= 2 * len(state.spectra):
            raise NuskybgdError(f"gain {GAIN_NAMES[which]} of spectrum {e.number} is linked to {lk.source}:"
                                f"{lk.index}, which is not a gain parameter of this fit")
        factor *= lk.factor
        k, which = divmod(lk.index - 1, 2)


def gain_values(state, k):
    """(slope, offset) in force for spectrum ``k`` (0-based), links followed; (1, 0) without gain."""
    out = []
    for w in (0, 1):
        r = resolve_gain(state, k, w)
        if r is None:
            return 1.0, 0.0
        kk, ww, f = r
        out.append(f * state.spectra[kk].gain[ww].value)
    return out[0], out[1]


def parameter_label(state, src, idx0):
    """Readable name ``source:component.PARAM`` (``@group`` for groups > 1) of a model parameter."""
    g, ip = divmod(idx0, src.npar)
    c = src.par_components[ip]
    comp = src.labels[c] if c >= 0 else "?"
    out = f"{src.name}:{comp}.{src.par_names[ip]}"
    return out if g == 0 else f"{out}@{g + 1}"


# --------------------------------------------------------------------------
# photon spectra and responses
# --------------------------------------------------------------------------

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
        m = _INSTANCES[ctype] = _CLASSES[ctype]()
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


def _edge_derivative(ctype, shape, lo, hi, dlo, dhi):
    """d(bin integrals) for edge velocities dlo, dhi (keV per unit parameter), or None."""
    f_hi = photon_density(ctype, shape, hi)
    if f_hi is None:
        return None
    out = f_hi * dhi - photon_density(ctype, shape, lo) * dlo
    out[hi <= MIN_PHOTON_ENERGY] = 0.0
    return out


def _fold_jobs(responses, jobs, precise):
    """Fold (k, rmf_rows, diag_rows) jobs, one matrix product per shared RMF.

    Returns
    -------
    dict
        k -> (rmf folded (n, n_chan), diag folded (m, n_chan)).
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
        from ..io.ogip import rmf_matrix
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


# --------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------

@dataclass
class _Comp:
    key: str
    ctype: str
    resp: str
    arf: object
    shape: list      # [(Source, idx0)]
    norm: tuple      # (Source, idx0)


def _components(state, k):
    e = state.spectra[k]
    g = e.group
    out = []
    for src in state.sources:
        labels = src.labels
        for ci, ctype in enumerate(src.components):
            key = norm_template_key(src.name, labels, ci)
            if key is None:
                raise NuskybgdError(f"model {src.name or src.number} ({src.expression}) is not part of the "
                                    "background model; the engine cannot evaluate it")
            idx = [src.index(g, ip + 1) for ip in range(src.npar) if src.par_components[ip] == ci]
            names = [src.par_names[i % src.npar] for i in idx]
            if "norm" not in names:
                raise NuskybgdError(f"model {src.name}: component {labels[ci]} has no norm")
            kind = _KIND.get(src.name, (ctype, "rmf", None))
            if src.name in _KIND and ctype != kind[0]:
                raise NuskybgdError(f"model {src.name}: component {ctype} where the background model has {kind[0]}")
            if ctype not in _CLASSES:
                raise NuskybgdError(f"model {src.name}: component {ctype} cannot be evaluated")
            shape = [(src, i) for i, n in zip(idx, names) if n != "norm"]
            out.append(_Comp(key, ctype, kind[1], kind[2], shape, (src, idx[names.index("norm")])))
    return out


class NonlinearModel:
    """Templates that follow the free shape parameters and gains of a state.

    Parameters
    ----------
    state : FitState
        Free norms, free shape parameters and gains (``SpectrumEntry.gain``).
    spectra : list of SpectrumData
        Counts, grouping and noticed bins; their ``templates`` are replaced
        by this model's folds.
    responses : list of SpectrumResponse
        One per spectrum.

    Attributes
    ----------
    params : list of tuple
        The nonlinear free parameters: ``("par", Source, idx0)`` or
        ``("gain", k, which)``.
    labels : list of str
        Their names (``intbgd:lorentz_5.LineE``, ``gain:3.slope``).
    """

    def __init__(self, state, spectra, responses):
        if not (len(spectra) == len(responses) == len(state.spectra)):
            raise NuskybgdError(f"the state has {len(state.spectra)} spectra but {len(spectra)} data and "
                                f"{len(responses)} responses were given")
        self.state, self.spectra, self.responses = state, spectra, responses
        self.params, self.labels = [], []
        for s, i in state.free_parameters():
            if s.par_names[i % s.npar] != "norm":
                self.params.append(("par", s, i))
                self.labels.append(parameter_label(state, s, i))
        for k, e in enumerate(state.spectra):
            if e.gain is not None:
                if len(e.gain) != 2:
                    raise NuskybgdError(f"spectrum {e.number}: a gain has two parameters (slope, offset)")
                for w in (0, 1):
                    if e.gain[w].free:
                        self.params.append(("gain", k, w))
                        self.labels.append(f"gain:{e.number}.{GAIN_NAMES[w]}")
        self.comps = [_components(state, k) for k in range(len(spectra))]
        index = {}
        for q, p in enumerate(self.params):
            index[(p[0], id(p[1]) if p[0] == "par" else p[1], p[2])] = q
        # dependencies: q -> list of (k, comp index or -1 for gain, position, factor)
        self.deps = [[] for _ in self.params]
        for k, comps in enumerate(self.comps):
            for c, comp in enumerate(comps):
                for pos, (src, i) in enumerate(comp.shape):
                    root, j, f = state.resolve(src, i)
                    q = index.get(("par", id(root), j))
                    if q is not None:
                        self.deps[q].append((k, c, pos, f))
                    if comp.ctype == "apec" and (root.params[j].free and pos < 3):
                        self._need_atomdb(root, j)
            for w in (0, 1):
                r = resolve_gain(state, k, w)
                if r is not None and state.spectra[r[0]].gain[r[1]].free:
                    self.deps[index[("gain", r[0], r[1])]].append((k, -1, w, r[2]))
        for q, lab in enumerate(self.labels):
            if not self.deps[q]:
                raise NuskybgdError(f"free parameter {lab} does not change any spectrum's model")
        self.precise = False
        self._cache = [{} for _ in spectra]
        for sd in spectra:
            sd.templates = dict(sd.templates) if sd.templates is not None else {}

    def _need_atomdb(self, src, j):
        if isinstance(apec_source(), TemplateSpectrum):
            raise NuskybgdError(
                f"{parameter_label(self.state, src, j)} is free, but apec has only a tabulated spectrum at one "
                f"kT/abundance (NUSKYBGD_APEC_TEMPLATE); freeing it needs AtomDB: run '{DOWNLOAD_COMMAND}'")

    # ---- values -------------------------------------------------------
    def _param(self, q):
        p = self.params[q]
        return p[1].params[p[2]] if p[0] == "par" else self.state.spectra[p[1]].gain[p[2]]

    def values(self):
        """Current values of the nonlinear parameters."""
        return np.array([self._param(q).value for q in range(len(self.params))], float)

    def bounds(self):
        """(hard_min, hard_max) arrays of the nonlinear parameters."""
        ps = [self._param(q) for q in range(len(self.params))]
        return np.array([p.hard_min for p in ps], float), np.array([p.hard_max for p in ps], float)

    def set_values(self, phi):
        """Write nonlinear values into the state and update linked values."""
        for q, v in enumerate(phi):
            self._param(q).value = float(v)
        self.state.update_linked_values()

    def _shape(self, comp):
        return tuple(float(src.params[i].value) for src, i in comp.shape)

    def _gain(self, k):
        return gain_values(self.state, k)

    # ---- templates ----------------------------------------------------
    def _rows(self, k, items, gain):
        """Photon rows (x area) of (comp, shape) items under ``gain``, split by response."""
        r = self.responses[k]
        lo, hi = gain_energies(r.energ_lo, r.energ_hi, *gain)
        rmf, diag = [], []
        spec = photon_spectra([(comp.ctype, shape) for comp, shape, _ in items], lo, hi)
        for (comp, shape, weight), sp in zip(items, spec):
            row = weight * sp * r.area[comp.arf]
            (diag if comp.resp == "diag" else rmf).append(row)
        return rmf, diag

    def refresh(self):
        """Re-fold the templates whose shape or gain changed; returns the number folded."""
        jobs, todos = [], {}
        for k, comps in enumerate(self.comps):
            gain = self._gain(k)
            todo = []
            for comp in comps:
                key = (self._shape(comp), gain, self.precise)
                if self._cache[k].get(comp.key, (None,))[0] != key:
                    todo.append((comp, key))
            if not todo:
                continue
            todo = [x for x in todo if x[0].resp != "diag"] + [x for x in todo if x[0].resp == "diag"]
            rr, dr = self._rows(k, [(c, key[0], 1.0) for c, key in todo], gain)
            jobs.append((k, rr, dr))
            todos[k] = todo
        folded = _fold_jobs(self.responses, jobs, self.precise)
        n = 0
        for k, todo in todos.items():
            a, b = folded[k]
            for (c, key), t in zip(todo, list(a) + list(b)):
                self._cache[k][c.key] = (key, t)
                self.spectra[k].templates[c.key] = t
            n += len(todo)
        return n

    def derivatives(self, step=None):
        """d(predicted counts per channel)/d phi at the current values (norms from the state).

        Returns
        -------
        list of (ndarray (n_chan, q_k), list of int)
            Per spectrum: derivative columns and the parameter indices they belong to.
        """
        phi = self.values()
        h = np.array([self.step(q, v) for q, v in enumerate(phi)]) if step is None else step
        per = [{} for _ in self.spectra]   # k -> q -> [rmf row, diag row]
        for q, deps in enumerate(self.deps):
            for k, c, pos, f in deps:
                r = self.responses[k]
                n_e = r.energ_lo.size
                acc = per[k].setdefault(q, [np.zeros(n_e), np.zeros(n_e)])
                gain = self._gain(k)
                comps = self.comps[k] if c < 0 else [self.comps[k][c]]
                comps = [cp for cp in comps if float(cp.norm[0].params[cp.norm[1]].value) != 0.0]
                if not comps:
                    continue
                lo, hi = gain_energies(r.energ_lo, r.energ_hi, *gain)
                rows = []
                if c < 0:
                    # edges E/slope - offset: d/d slope = -E/slope^2, d/d offset = -1
                    a_ = gain[0]
                    dlo = -r.energ_lo / a_ ** 2 * f if pos == 0 else np.full(lo.size, -f)
                    dhi = -r.energ_hi / a_ ** 2 * f if pos == 0 else np.full(lo.size, -f)
                    fd = []
                    lines = [cp for cp in comps if cp.ctype == "lorentz" and self._shape(cp)[1] > 0]
                    if lines:
                        # every line at once: densities at both edges, (n_lines, n_energy)
                        sh = np.array([self._shape(cp) for cp in lines])
                        e0, w = sh[:, :1], sh[:, 1:]
                        nrm = (2.0 / w) / (0.5 * np.pi + np.arctan(2.0 * e0 / w))
                        dens_hi = nrm / (1.0 + (2.0 * (np.maximum(hi, MIN_PHOTON_ENERGY) - e0) / w) ** 2)
                        dens_lo = nrm / (1.0 + (2.0 * (np.maximum(lo, MIN_PHOTON_ENERGY) - e0) / w) ** 2)
                        dl = dens_hi * dhi - dens_lo * dlo
                        dl[:, hi <= MIN_PHOTON_ENERGY] = 0.0
                        rows += list(zip(lines, dl))
                    line_ids = {id(cp) for cp in lines}
                    for cp in comps:
                        if id(cp) in line_ids:
                            continue
                        dv = _edge_derivative(cp.ctype, self._shape(cp), lo, hi, dlo, dhi)
                        if dv is None:
                            fd.append(cp)
                        else:
                            rows.append((cp, dv))
                    if fd:   # apec (tabulated): central differences
                        g1, g0 = list(gain), list(gain)
                        g1[pos] += f * h[q]
                        g0[pos] -= f * h[q]
                        items = [(cp.ctype, self._shape(cp)) for cp in fd]
                        s1 = photon_spectra(items, *gain_energies(r.energ_lo, r.energ_hi, *g1))
                        s0 = photon_spectra(items, *gain_energies(r.energ_lo, r.energ_hi, *g0))
                        rows += [(cp, (a1 - a0) / (2.0 * h[q])) for cp, a1, a0 in zip(fd, s1, s0)]
                else:
                    cp = comps[0]
                    shape = list(self._shape(cp))
                    dv = None
                    if cp.ctype == "lorentz" and pos == 0 and shape[1] > 0:
                        # a line moves over fixed edges; its normalisation over E > 0 changes slightly
                        e0, w = shape
                        dv = -_edge_derivative("lorentz", shape, lo, hi, np.ones(lo.size), np.ones(lo.size))
                        base = photon_spectrum("lorentz", shape, lo, hi)
                        dv -= base * (2.0 / w) / (1.0 + (2.0 * e0 / w) ** 2) / (0.5 * np.pi + np.arctan(2 * e0 / w))
                        dv *= f
                    if dv is None:
                        sh1, sh0 = list(shape), list(shape)
                        sh1[pos] += f * h[q]
                        sh0[pos] -= f * h[q]
                        dv = (photon_spectrum(cp.ctype, sh1, lo, hi) - photon_spectrum(cp.ctype, sh0, lo, hi)) \
                            / (2.0 * h[q])
                    rows.append((cp, dv))
                for cp, dv in rows:
                    norm = float(cp.norm[0].params[cp.norm[1]].value)
                    acc[1 if cp.resp == "diag" else 0] += norm * dv * r.area[cp.arf]
        jobs = []
        for k, d in enumerate(per):
            qs = sorted(d)
            if qs:
                jobs.append((k, np.array([d[q][0] for q in qs]), np.array([d[q][1] for q in qs])))
        # float32 products: the Jacobian steers the iteration and gives the
        # covariance; 1e-7 relative is far below what either needs
        folded = _fold_jobs(self.responses, jobs, False)
        out = []
        for k, d in enumerate(per):
            qs = sorted(d)
            if not qs:
                out.append((np.zeros((self.responses[k].n_chan, 0)), []))
                continue
            a, b = folded[k]
            out.append(((a + b).T.copy(), qs))
        return out

    def step(self, q, v):
        """Central-difference step of nonlinear parameter q at value v."""
        p = self.params[q]
        if p[0] == "gain":
            h = 1e-5 if p[2] == 0 else 1e-4
        else:
            h = max(1e-5 * abs(v), 1e-6)
        lo, hi = self.bounds()
        # keep both evaluations inside the hard limits where possible
        room = min(v - lo[q], hi[q] - v)
        if room > 0:
            h = min(h, 0.5 * room)
        return h


@dataclass
class NonlinearFit:
    """Outcome of :func:`fit_nonlinear`.

    Attributes
    ----------
    labels : list of str
        Every free parameter: norms first (``LinearModel.free`` order),
        then the nonlinear ones.
    values, errors : ndarray
        Best fit and 1-sigma errors (NaN when undetermined).
    covariance : ndarray
        Covariance of all free parameters (``2 H^-1``, Gauss-Newton).
    statistic : float
    dof : int
        Noticed bins minus free parameters.
    n_iter : int
        Levenberg-Marquardt iterations.
    n_eval : int
        Profiled-statistic evaluations (norm solves).
    converged : bool
    seconds : float
    history : list of float
        Statistic after each accepted step.
    linear : FitResult
        The final norm solve.
    model : LinearModel
        At the solution.
    """

    labels: list
    values: np.ndarray
    errors: np.ndarray
    covariance: np.ndarray
    statistic: float
    dof: int
    n_iter: int
    n_eval: int
    converged: bool
    seconds: float
    history: list = field(default_factory=list)
    linear: object = None
    model: object = None
    n_norms: int = 0


def _profile(nm, statistic, theta0):
    """Solve the norms for the current shapes; returns (LinearModel, FitResult, blocks)."""
    nm.refresh()
    lm = LinearModel(nm.state, nm.spectra, allow_shapes=True)
    blocks = lm.design_blocks()
    res = solve_blocks(blocks, lm.n_free, lm.theta() if theta0 is None else theta0, lower=lm.lower_bounds(),
                       upper=lm.upper_bounds(), statistic=statistic, tol=1e-9)
    for (s, i), v in zip(lm.free, res.theta):
        s.params[i].value = float(v)
    nm.state.update_linked_values()
    return lm, res, blocks


def scan_gain(nm, statistic, slopes=None, offsets=None):
    """Coarse start for free gains: one common trial gain for every spectrum.

    Parameters
    ----------
    nm : NonlinearModel
        With free gain parameters (their roots are set to the best trial).
    statistic : {"cstat", "chi"}
    slopes, offsets : sequence of float, optional
        First-stage grid (default slope 0.98..1.03 in steps of 0.0125,
        offset -0.4..0.6 keV in steps of 0.25); a second stage refines
        around the best point with half the steps.

    Returns
    -------
    (float, float, float)
        Best slope, offset and profiled statistic.

    Notes
    -----
    A gain moves line features by more than the detector resolution
    (slope 1.01 shifts a 144 keV line by 1.4 keV), so the profiled
    statistic has several minima; the scan puts the Levenberg-Marquardt
    start in the right one. Trial gains are applied in channel space (the
    folded templates at the current gain are integrated onto channels
    mapped by E / slope - offset, :func:`nuskybgd.kernels.gain.rebin_integrated`),
    which treats the RMF as locally shift-invariant and moves the ARF with
    the photons: adequate for a start, not for the fit.
    """
    from ..kernels.gain import rebin_integrated

    roots = sorted({(k, w) for q, p in enumerate(nm.params) if p[0] == "gain" for k, w in [(p[1], p[2])]})
    if not roots:
        return None
    nm.refresh()
    base = [dict(sd.templates) for sd in nm.spectra]
    g0 = [gain_values(nm.state, k) for k in range(len(nm.spectra))]
    slopes = np.arange(0.98, 1.0301, 0.0125) if slopes is None else np.asarray(slopes, float)
    offsets = np.arange(-0.4, 0.601, 0.25) if offsets is None else np.asarray(offsets, float)
    theta = None
    free_k = {k for k, _ in roots}

    def trial(a, b):
        nonlocal theta
        for k, (sd, r) in enumerate(zip(nm.spectra, nm.responses)):
            if r.chan_lo is None:
                raise NuskybgdError(f"{sd.name}: channel energies unknown; cannot scan the gain")
            a0, b0 = g0[k]
            # relative gain with respect to the folded templates' own gain
            lo = (r.chan_lo / a * a0) - (b - b0) * a0
            hi = (r.chan_hi / a * a0) - (b - b0) * a0
            for key, t in base[k].items():
                sd.templates[key] = rebin_integrated(r.chan_lo, r.chan_hi, t, lo, hi) if k in free_k else t
        lm = LinearModel(nm.state, nm.spectra, allow_shapes=True)
        res = solve_blocks(lm.design_blocks(), lm.n_free, lm.theta() if theta is None else theta,
                           lower=lm.lower_bounds(), upper=lm.upper_bounds(), statistic=statistic, tol=1e-6)
        theta = res.theta
        return res.statistic

    best = (np.inf, 1.0, 0.0)
    for a in slopes:
        for b in offsets:
            f = trial(a, b)
            if f < best[0]:
                best = (f, a, b)
    ds, do = 0.5 * np.diff(slopes[:2])[0] if slopes.size > 1 else 0.0, \
        0.5 * np.diff(offsets[:2])[0] if offsets.size > 1 else 0.0
    for a in (best[1] - ds, best[1], best[1] + ds):
        for b in (best[2] - do, best[2], best[2] + do):
            f = trial(a, b)
            if f < best[0]:
                best = (f, a, b)
    for k, sd in enumerate(nm.spectra):
        sd.templates.update(base[k])
    for k, w in roots:
        nm.state.spectra[k].gain[w].value = float(best[1 + w])
    nm.state.update_linked_values()
    return best[1], best[2], best[0]


def _gauss_newton(nm, lm, res, blocks, statistic, full=False):
    """Reduced (or full) Gauss-Newton matrix and gradient at the profiled norms."""
    p = lm.n_free
    q = len(nm.params)
    derivs = nm.derivatives()
    H = np.zeros((p + q, p + q))
    g = np.zeros(p + q)
    for (A, cols, b, d), (D, qs), sd in zip(blocks, derivs, nm.spectra):
        mu = A @ res.theta[cols] + b
        _, g1, g2 = stat_parts(statistic, d, np.where(mu > 0, mu, 1e-300))
        Db = np.column_stack([sd.group(D[:, j])[sd.noticed] for j in range(D.shape[1])]) if qs else \
            np.zeros((len(d), 0))
        X = np.hstack([A, Db])
        idx = np.concatenate([np.asarray(cols, int), p + np.asarray(qs, int)]).astype(int)
        H[np.ix_(idx, idx)] += X.T @ (X * g2[:, None])
        g[idx] += X.T @ g1
    if full:
        return H, g
    fr = ~res.at_bound & np.isfinite(res.errors)
    fr_idx = np.flatnonzero(fr)
    Hpp = H[p:, p:]
    Hpt = H[p:, :p][:, fr_idx]
    Htt = H[np.ix_(fr_idx, fr_idx)]
    if fr_idx.size:
        ridge = 1e-12 * np.max(np.abs(np.diag(Htt)))
        c = scipy.linalg.cho_factor(Htt + ridge * np.eye(fr_idx.size), check_finite=False)
        Hr = Hpp - Hpt @ scipy.linalg.cho_solve(c, Hpt.T, check_finite=False)
    else:
        Hr = Hpp
    return 0.5 * (Hr + Hr.T), g[p:]


def fit_nonlinear(state, spectra, responses, statistic="cstat", max_iter=60, tol=1e-3, progress=None,
                  gain_scan=False):
    """Fit norms, free shape parameters and gains of a state.

    Parameters
    ----------
    state : FitState
        Modified in place: every free value and error, linked values,
        ``info["fit"]`` (statistic, dof, iterations, time) and
        ``info["covariance_all"]`` (all free parameters, labels).
    spectra : list of SpectrumData
        Counts, grouping and noticed bins per spectrum (templates are
        computed here).
    responses : list of SpectrumResponse
    statistic : {"cstat", "chi"}
    max_iter : int
        Levenberg-Marquardt iterations.
    tol : float
        Stop when the Gauss-Newton step is expected to lower the statistic
        by less than ``tol`` (XSPEC's fit delta is 0.01).
    progress : callable, optional
        Called with (iteration, statistic) after each accepted step.
    gain_scan : bool
        Start free gains from a coarse grid scan (:func:`scan_gain`)
        instead of their current values.

    Returns
    -------
    NonlinearFit

    Raises
    ------
    NuskybgdError
        Bad gains, a free parameter that changes nothing, apec kT/abundance
        free without AtomDB.
    """
    # one BLAS thread: the products here are small or memory-bound, and a
    # multithreaded BLAS on a busy 2-core machine spins (measured: a 3675 x 41
    # Gram matrix 0.16 s with 2 threads at load 5, 0.001 s with one)
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_nonlinear(state, spectra, responses, statistic, max_iter, tol, progress, gain_scan)


def _fit_nonlinear(state, spectra, responses, statistic, max_iter, tol, progress, gain_scan):
    t0 = time.perf_counter()
    nm = NonlinearModel(state, spectra, responses)
    if gain_scan:
        scanned = scan_gain(nm, statistic)
        if scanned is not None:
            log.info("gain scan: start at slope %.4f, offset %.3f keV (%s %.2f)", scanned[0], scanned[1],
                     statistic, scanned[2])
    lo, hi = nm.bounds()
    phi = np.clip(nm.values(), lo, hi)
    nm.set_values(phi)
    lm, res, blocks = _profile(nm, statistic, None)
    f = res.statistic
    history = [f]
    n_eval = 1
    lam = 1e-3
    converged = not nm.params
    it = 0
    for it in range(1, max_iter + 1 if nm.params else 1):
        Hr, gp = _gauss_newton(nm, lm, res, blocks, statistic)
        at_lo = (phi <= lo) & (gp > 0)
        at_hi = (phi >= hi) & (gp < 0)
        act = ~(at_lo | at_hi)
        # expected decrease of an undamped Gauss-Newton step: stop when tiny
        if np.any(act):
            Ha = Hr[np.ix_(act, act)]
            try:
                gn = np.linalg.lstsq(Ha, gp[act], rcond=1e-12)[0]
                if 0.5 * float(gp[act] @ gn) < tol:
                    converged = True
                    break
            except np.linalg.LinAlgError:
                pass
        else:
            converged = True
            break
        accepted = False
        while lam < 1e12:
            step = np.zeros_like(phi)
            dg = np.diag(Ha).copy()
            dg[dg <= 0] = 1.0
            try:
                step[act] = -np.linalg.solve(Ha + lam * np.diag(dg), gp[act])
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            trial = np.clip(phi + step, lo, hi)
            saved = (lm, res, blocks)
            nm.set_values(trial)
            lm_n, res_n, blocks_n = _profile(nm, statistic, res.theta)
            n_eval += 1
            if res_n.statistic < f:
                phi, f = trial, res_n.statistic
                lm, res, blocks = lm_n, res_n, blocks_n
                history.append(f)
                lam = max(lam / 10, 1e-9)
                accepted = True
                if progress is not None:
                    progress(it, f)
                break
            nm.set_values(phi)
            lm, res, blocks = saved
            for (s_, i), v in zip(lm.free, res.theta):
                s_.params[i].value = float(v)
            state.update_linked_values()
            lam *= 10
        if not accepted:
            # no damped step lowers the statistic: at the minimum to the
            # precision of the float32 folds
            converged = True
            break
    # final: float64 folds, norms re-solved, covariance of everything
    nm.precise = True
    nm.set_values(phi)
    lm, res, blocks = _profile(nm, statistic, res.theta)
    H, _ = _gauss_newton(nm, lm, res, blocks, statistic, full=True)
    p, q = lm.n_free, len(nm.params)
    live = np.concatenate([np.isfinite(res.errors), np.ones(q, bool)])
    cov = np.full((p + q, p + q), np.nan)
    if np.any(live):
        Hl = H[np.ix_(live, live)]
        try:
            inv = np.linalg.inv(Hl)
        except np.linalg.LinAlgError:
            inv = np.linalg.pinv(Hl)
        cov[np.ix_(live, live)] = 2.0 * inv
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    err[~np.isfinite(np.diag(cov))] = np.nan
    values = np.concatenate([res.theta, phi])
    labels = [parameter_label(state, s, i) for s, i in lm.free] + list(nm.labels)
    for (s, i), e in zip(lm.free, err[:p]):
        s.params[i].error = None if not np.isfinite(e) else float(e)
    for qq, e in enumerate(err[p:]):
        nm._param(qq).error = None if not np.isfinite(e) else float(e)
    state.update_linked_values()
    n_bins = int(sum(np.count_nonzero(sd.noticed) for sd in spectra))
    dof = n_bins - p - q
    seconds = time.perf_counter() - t0
    state.statistic = statistic
    state.info["fit"] = {"statistic": statistic, "value": float(res.statistic), "n_bins": n_bins,
                         "n_free": p + q, "dof": int(dof), "fitted": True, "converged": bool(converged),
                         "iterations": int(it), "evaluations": int(n_eval), "seconds": seconds,
                         "nonlinear": list(nm.labels)}
    state.info["covariance_all"] = {"parameters": labels,
                                    "matrix": [[float(x) if np.isfinite(x) else None for x in row] for row in cov]}
    if not converged:
        log.warning("nonlinear fit did not converge in %d iterations", it)
    return NonlinearFit(labels=labels, values=values, errors=err, covariance=cov, statistic=float(res.statistic),
                        dof=int(dof), n_iter=int(it), n_eval=int(n_eval), converged=bool(converged),
                        seconds=seconds, history=history, linear=res, model=lm, n_norms=p)
