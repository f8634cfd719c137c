"""Templates that follow free shape parameters and gains, with their derivatives.

:class:`NonlinearModel` maps the free nonlinear parameters of a state (line
energies and widths, apec kT/abundance, cutoffpl and bknpower shapes,
response gains) to the components they touch, re-folds only the templates
whose shape or gain changed, and differentiates the predicted counts per
channel with respect to each parameter (analytic edge derivatives where the
density is known, central differences otherwise). The Levenberg-Marquardt
driver is :func:`nuskybgd.fitting.nonlinear.fit_nonlinear`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NuskybgdError
from ..kernels.gain import MIN_PHOTON_ENERGY, gain_energies
from ..models.apec import DOWNLOAD_COMMAND, TemplateSpectrum, apec_source
from .folding import COMPONENT_CLASSES, fold_jobs, photon_density, photon_spectra, photon_spectrum
from .gains import GAIN_NAMES, gain_values, parameter_label, resolve_gain
from .model import norm_template_key

__all__ = ["NonlinearModel"]

#: Component type and response of each template key kind.
_KIND = {"apbgd": ("cutoffpl", "rmf", "apbgd"), "fcxb": ("cutoffpl", "rmf", "fcxb"),
         "intn": ("bknpower", "diag", None)}


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
            if ctype not in COMPONENT_CLASSES:
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
        self._photons = [{} for _ in spectra]
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
        """Current values of the nonlinear parameters.

        Returns
        -------
        ndarray
            One value per entry of ``params``.
        """
        return np.array([self._param(q).value for q in range(len(self.params))], float)

    def bounds(self):
        """Hard limits of the nonlinear parameters.

        Returns
        -------
        (ndarray, ndarray)
            Hard minima and hard maxima, one per entry of ``params``.
        """
        ps = [self._param(q) for q in range(len(self.params))]
        return np.array([p.hard_min for p in ps], float), np.array([p.hard_max for p in ps], float)

    def set_values(self, phi):
        """Write nonlinear values into the state and update linked values.

        Parameters
        ----------
        phi : sequence of float
            One value per entry of ``params``.
        """
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
        # photon spectra at the same shape and gain are reused (the float64
        # re-fold at the solution repeats the last float32 one)
        spec = [None] * len(items)
        for j, (comp, shape, _) in enumerate(items):
            hit = self._photons[k].get(comp.key)
            if hit is not None and hit[0] == (shape, gain):
                spec[j] = hit[1]
        todo = [j for j, sp in enumerate(spec) if sp is None]
        if todo:
            new = photon_spectra([(items[j][0].ctype, items[j][1]) for j in todo], lo, hi)
            for j, sp in zip(todo, new):
                spec[j] = sp
        for (comp, shape, weight), sp in zip(items, spec):
            # kept for derivatives() (a line's own spectrum) and the next refresh
            self._photons[k][comp.key] = ((shape, gain), sp)
            row = weight * sp * r.area[comp.arf]
            (diag if comp.resp == "diag" else rmf).append(row)
        return rmf, diag

    def refresh(self):
        """Re-fold the templates whose shape or gain changed.

        Returns
        -------
        int
            Number of templates folded (0 when nothing changed).
        """
        todos = {}
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
            todos[k] = (todo, gain)

        jobs = [(k, *self._rows(k, [(c, key[0], 1.0) for c, key in todo], gain)) for k, (todo, gain) in todos.items()]
        folded = fold_jobs(self.responses, jobs, self.precise)
        n = 0
        for k, (todo, _) in todos.items():
            a, b = folded[k]
            for (c, key), t in zip(todo, list(a) + list(b)):
                self._cache[k][c.key] = (key, t)
                self.spectra[k].templates[c.key] = t
            n += len(todo)
        return n

    def _photon(self, k, comp, shape, gain, lo, hi):
        """Photon spectrum of one component (from the last refresh when it matches)."""
        hit = self._photons[k].get(comp.key)
        if hit is not None and hit[0] == (shape, gain):
            return hit[1]
        return photon_spectrum(comp.ctype, shape, lo, hi)

    def derivatives(self, step=None):
        """Derivatives of the predicted counts per channel with respect to the nonlinear parameters.

        Evaluated at the current values, with the norms taken from the state.

        Parameters
        ----------
        step : ndarray, optional
            Central-difference steps, one per parameter (default
            :meth:`step` of each); used only where no analytic derivative
            exists (apec).

        Returns
        -------
        list of (ndarray (n_chan, q_k), list of int)
            Per spectrum: derivative columns and the parameter indices they belong to.

        Notes
        -----
        Per spectrum, the densities at the shifted bin edges of every
        component with an analytic density are computed once and summed
        with their norms and areas: a gain moves every edge at the same
        velocity whatever the component, so each gain column is
        ``sum_c (n_c A_c f_c(E_hi)) dE_hi - sum_c (n_c A_c f_c(E_lo)) dE_lo``.
        """
        phi = self.values()
        b_lo, b_hi = self.bounds()
        if step is None:
            h = np.array([self._step(q, v, b_lo, b_hi) for q, v in enumerate(phi)])
        else:
            h = np.asarray(step, dtype=float)
        # one-sided differences at a hard limit: never evaluate outside it
        # (e.g. a line width or a break energy that ran to its minimum)
        up = np.where(phi + h <= b_hi, h, 0.0)
        down = np.where(phi - h >= b_lo, h, 0.0)
        both = (up == 0.0) & (down == 0.0)
        up[both], down[both] = h[both], h[both]   # limits closer than h on both sides: central
        h = (up, down)
        by_k = [[] for _ in self.spectra]
        for q, deps in enumerate(self.deps):
            for k, c, pos, f in deps:
                by_k[k].append((q, c, pos, f))
        per = [{} for _ in self.spectra]   # k -> q -> [rmf row, diag row]
        for k, items in enumerate(by_k):
            if items:
                self._spectrum_derivatives(k, items, h, per[k])
        jobs = []
        for k, d in enumerate(per):
            qs = sorted(d)
            if qs:
                jobs.append((k, np.array([d[q][0] for q in qs]), np.array([d[q][1] for q in qs])))
        # float32 products: the Jacobian steers the iteration and gives the
        # covariance; 1e-7 relative is far below what either needs
        folded = fold_jobs(self.responses, jobs, False)
        out = []
        for k, d in enumerate(per):
            qs = sorted(d)
            if not qs:
                out.append((np.zeros((self.responses[k].n_chan, 0)), []))
                continue
            a, b = folded[k]
            out.append(((a + b).T.copy(), qs))
        return out

    def _spectrum_derivatives(self, k, items, h, acc_k):
        """Photon-space derivative rows of spectrum ``k`` for its (q, comp, pos, factor) items."""
        r = self.responses[k]
        n_e = r.energ_lo.size
        comps = self.comps[k]
        gain = self._gain(k)
        lo, hi = gain_energies(r.energ_lo, r.energ_hi, *gain)
        shapes = [self._shape(cp) for cp in comps]
        norms = [float(cp.norm[0].params[cp.norm[1]].value) for cp in comps]
        live = [ci for ci in range(len(comps)) if norms[ci] != 0.0]
        below = hi <= MIN_PHOTON_ENERGY
        contiguous = bool(np.array_equal(lo[1:], hi[:-1]))
        cache = {}

        def line_densities():
            # lines of non-zero width and norm: densities at both edges, (n_lines, n_energy)
            if "lines" not in cache:
                idx = [ci for ci in live if comps[ci].ctype == "lorentz" and shapes[ci][1] > 0]
                if idx:
                    sh = np.array([shapes[ci] for ci in idx])
                    e0, w = sh[:, :1], sh[:, 1:]
                    nrm = (2.0 / w) / (0.5 * np.pi + np.arctan(2.0 * e0 / w))
                    if contiguous:
                        # shared edges: one evaluation per edge
                        edges = np.concatenate([lo[:1], hi])
                        d_e = nrm / (1.0 + (2.0 * (np.maximum(edges, MIN_PHOTON_ENERGY) - e0) / w) ** 2)
                        d_hi, d_lo = d_e[:, 1:], d_e[:, :-1]
                    else:
                        d_hi = nrm / (1.0 + (2.0 * (np.maximum(hi, MIN_PHOTON_ENERGY) - e0) / w) ** 2)
                        d_lo = nrm / (1.0 + (2.0 * (np.maximum(lo, MIN_PHOTON_ENERGY) - e0) / w) ** 2)
                else:
                    d_hi = d_lo = np.zeros((0, n_e))
                cache["lines"] = ({ci: j for j, ci in enumerate(idx)}, d_hi, d_lo)
            return cache["lines"]

        def weighted_densities():
            # sum over components with a density of norm x area x density at
            # both edges, per response; the others (apec) for differences
            if "weighted" not in cache:
                where, d_hi, d_lo = line_densities()
                wh = [np.zeros(n_e), np.zeros(n_e)]
                wl = [np.zeros(n_e), np.zeros(n_e)]
                groups = {}
                for ci, jl in where.items():
                    groups.setdefault((comps[ci].resp, comps[ci].arf), []).append((ci, jl))
                for (resp, arf), mem in groups.items():
                    nl = np.zeros(d_hi.shape[0])
                    for ci, jl in mem:
                        nl[jl] = norms[ci]
                    j = 1 if resp == "diag" else 0
                    wh[j] += (nl @ d_hi) * r.area[arf]
                    wl[j] += (nl @ d_lo) * r.area[arf]
                fd = []
                for ci in live:
                    if ci in where:
                        continue
                    cp = comps[ci]
                    f_hi = photon_density(cp.ctype, shapes[ci], hi)
                    if f_hi is None:
                        fd.append(ci)
                        continue
                    f_lo = photon_density(cp.ctype, shapes[ci], lo)
                    j = 1 if cp.resp == "diag" else 0
                    wgt = norms[ci] * r.area[cp.arf]
                    wh[j] += wgt * f_hi
                    wl[j] += wgt * f_lo
                cache["weighted"] = (wh, wl, fd)
            return cache["weighted"]

        for q, c, pos, f in items:
            acc = acc_k.setdefault(q, [np.zeros(n_e), np.zeros(n_e)])
            if c < 0:
                if not live:
                    continue
                # edges E/slope - offset: d/d slope = -E/slope^2, d/d offset = -1
                a_ = gain[0]
                dlo = -r.energ_lo / a_ ** 2 * f if pos == 0 else np.full(n_e, -f)
                dhi = -r.energ_hi / a_ ** 2 * f if pos == 0 else np.full(n_e, -f)
                wh, wl, fd = weighted_densities()
                for j in (0, 1):
                    dv = wh[j] * dhi - wl[j] * dlo
                    dv[below] = 0.0
                    acc[j] += dv
                if fd:   # apec (tabulated), zero-width lines: central differences
                    g1, g0 = list(gain), list(gain)
                    g1[pos] += f * h[0][q]
                    g0[pos] -= f * h[1][q]
                    sel = [comps[ci] for ci in fd]
                    its = [(cp.ctype, shapes[ci]) for cp, ci in zip(sel, fd)]
                    s1 = photon_spectra(its, *gain_energies(r.energ_lo, r.energ_hi, *g1))
                    s0 = photon_spectra(its, *gain_energies(r.energ_lo, r.energ_hi, *g0))
                    for cp, ci, a1, a0 in zip(sel, fd, s1, s0):
                        acc[1 if cp.resp == "diag" else 0] += norms[ci] * ((a1 - a0) / (h[0][q] + h[1][q])) \
                            * r.area[cp.arf]
                continue
            if norms[c] == 0.0:
                continue
            cp = comps[c]
            shape = list(shapes[c])
            dv = None
            if cp.ctype == "lorentz" and pos == 0 and shape[1] > 0:
                # a line moves over fixed edges; its normalisation over E > 0 changes slightly
                e0, w = shape
                where, d_hi, d_lo = line_densities()
                dv = -(d_hi[where[c]] - d_lo[where[c]])
                dv[below] = 0.0
                base = self._photon(k, cp, shapes[c], gain, lo, hi)
                dv -= base * (2.0 / w) / (1.0 + (2.0 * e0 / w) ** 2) / (0.5 * np.pi + np.arctan(2 * e0 / w))
                dv *= f
            if dv is None:
                sh1, sh0 = list(shape), list(shape)
                sh1[pos] += f * h[0][q]
                sh0[pos] -= f * h[1][q]
                dv = (photon_spectrum(cp.ctype, sh1, lo, hi) - photon_spectrum(cp.ctype, sh0, lo, hi)) \
                    / (h[0][q] + h[1][q])
            acc[1 if cp.resp == "diag" else 0] += norms[c] * dv * r.area[cp.arf]

    def step(self, q, v):
        """Central-difference step of one nonlinear parameter.

        Parameters
        ----------
        q : int
            Index into ``params``.
        v : float
            Value of the parameter.

        Returns
        -------
        float
            Step, in the parameter's units (keV for line energies and gain
            offsets), kept inside the hard limits where possible.
        """
        lo, hi = self.bounds()
        return self._step(q, v, lo, hi)

    def _step(self, q, v, lo, hi):
        p = self.params[q]
        if p[0] == "gain":
            h = 1e-5 if p[2] == 0 else 1e-4
        else:
            h = max(1e-5 * abs(v), 1e-6)
        # keep both evaluations inside the hard limits where possible
        room = min(v - lo[q], hi[q] - v)
        if room > 0:
            h = min(h, 0.5 * room)
        return h

