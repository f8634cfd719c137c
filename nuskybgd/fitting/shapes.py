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
from .folding import COMPONENT_CLASSES, edge_derivative, fold_jobs, photon_spectra, photon_spectrum
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
        spec = photon_spectra([(comp.ctype, shape) for comp, shape, _ in items], lo, hi)
        for (comp, shape, weight), sp in zip(items, spec):
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
        folded = fold_jobs(self.responses, jobs, self.precise)
        n = 0
        for k, todo in todos.items():
            a, b = folded[k]
            for (c, key), t in zip(todo, list(a) + list(b)):
                self._cache[k][c.key] = (key, t)
                self.spectra[k].templates[c.key] = t
            n += len(todo)
        return n

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
                        dv = edge_derivative(cp.ctype, self._shape(cp), lo, hi, dlo, dhi)
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
                        dv = -edge_derivative("lorentz", shape, lo, hi, np.ones(lo.size), np.ones(lo.size))
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

