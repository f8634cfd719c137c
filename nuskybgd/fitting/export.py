"""Outputs of a fit: JSON summary, Sherpa script and plot (the XCM is in io/xcm).

- :func:`state_to_json` / :func:`state_from_json`: every parameter with
  value, error, free/frozen/linked state and link ratio; the covariance of
  the free parameters (``covariance``); statistic and dof;
  per-spectrum weights; software versions. The JSON round-trips the state.
- :func:`sherpa_script`: a Python script that loads the spectra and
  responses in Sherpa, builds the four background sources with nuskybgd's
  model classes, sets every value, freeze and link, and reports the
  statistic.
- :func:`plot_fit`: per spectrum, data, total model and each source, and
  residuals (matplotlib, Agg).
"""

from __future__ import annotations

import platform

import astropy
import numpy as np
import scipy
import sherpa

from .. import __version__
from ..errors import NuskybgdError
from ..io.state import FitState, Link, Param, Source, SpectrumEntry
from .gains import gain_values

__all__ = ["state_to_json", "state_from_json", "sherpa_script", "plot_fit", "software_versions",
           "display_groups"]


def software_versions():
    """Versions of nuskybgd and the libraries the fit used.

    Returns
    -------
    dict
        Package name -> version string.
    """
    out = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
           "astropy": astropy.__version__}
    out["nuskybgd"] = __version__
    out["sherpa"] = sherpa.__version__
    return out


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def state_to_json(state, versions=True):
    """Machine-readable summary of a fit state.

    Parameters
    ----------
    state : FitState
    versions : bool
        Include software versions.

    Returns
    -------
    dict
        ``statistic``, ``fit`` (value, dof, n_bins, converged ...),
        ``spectra`` (file, group, responses, ARFs, ignored bins, module,
        weights), ``sources`` (number, name, expression, components,
        parameter names) and ``parameters`` (one entry per parameter: source,
        group, index within the source, name, component, value, error,
        ``state`` free/frozen/linked, ``link`` {source, index, ratio}, the six
        XCM numbers), ``covariance`` (when the fit stored one: the free
        parameters as {source, index} and their covariance matrix, see
        :func:`nuskybgd.fitting.uncertainty.set_fit_covariance`),
        ``settings``, ``trailer``, ``info``.
    """
    info = dict(state.info)
    spectra = []
    weights = info.get("weights", [])
    modules = info.get("modules", [])
    for k, s in enumerate(state.spectra):
        e = {"number": s.number, "group": s.group, "file": s.file,
             "responses": {str(a): b for a, b in s.responses.items()},
             "arfs": {str(a): b for a, b in s.arfs.items()},
             "ignore": [list(r) for r in s.ignore], "ignore_bad": s.ignore_bad}
        if k < len(modules):
            e["module"] = modules[k]
        if k < len(weights):
            e["weights"] = weights[k]
        if s.gain:
            e["gain"] = [_gain_json(p, name) for p, name in zip(s.gain, ("slope", "offset"))]
        spectra.append(e)
    sources, params = [], []
    for src in state.sources:
        sources.append({"number": src.number, "name": src.name, "expression": src.expression,
                        "components": src.components, "labels": src.labels, "par_names": src.par_names,
                        "npar": src.npar})
        labels = src.labels
        for i, p in enumerate(src.params):
            g, ip = divmod(i, src.npar)
            c = src.par_components[ip]
            entry = {"source": src.name, "source_number": src.number, "index": i + 1, "group": g + 1,
                     "name": src.par_names[ip], "component": labels[c] if c >= 0 else None,
                     "value": float(p.value), "error": _num(p.error),
                     "state": "linked" if p.link is not None else ("free" if p.free else "frozen"),
                     "xcm": [float(x) for x in p.numbers()]}
            if p.link is not None:
                entry["link"] = {"source": p.link.source, "index": p.link.index, "ratio": float(p.link.factor)}
            params.append(entry)
    out = {"format": "nuskybgd-fit-1", "statistic": state.statistic, "fit": info.pop("fit", None),
           "spectra": spectra, "sources": sources, "parameters": params,
           "settings": list(state.settings), "trailer": list(state.trailer)}
    cov = info.pop("covariance", None)
    if cov is not None:
        out["covariance"] = cov
    for k in ("weights", "modules"):
        info.pop(k, None)
    out["info"] = info
    if versions:
        out["software"] = software_versions()
    return out


def _gain_json(p, name):
    out = {"name": name, "value": float(p.value), "error": _num(p.error),
           "state": "linked" if p.link is not None else ("free" if p.free else "frozen"),
           "xcm": [float(x) for x in p.numbers()]}
    if p.link is not None:
        out["link"] = {"source": p.link.source, "index": p.link.index, "ratio": float(p.link.factor)}
    return out


def _gain_from_json(entries):
    out = []
    for g in entries:
        par = Param(*g["xcm"])
        par.error = g.get("error")
        if g.get("link"):
            lk = g["link"]
            par.link = Link(lk["source"], int(lk["index"]), float(lk["ratio"]))
        out.append(par)
    if len(out) != 2:
        raise ValueError("a gain has two parameters (slope, offset)")
    return out


def state_from_json(d, path="JSON"):
    """Rebuild a :class:`FitState` from :func:`state_to_json` output.

    Parameters
    ----------
    d : dict
        Parsed JSON.
    path : str
        Name for error messages.

    Returns
    -------
    FitState

    Raises
    ------
    NuskybgdError
        When the JSON is not a nuskybgd fit file.
    """
    if not isinstance(d, dict) or d.get("format") != "nuskybgd-fit-1":
        raise NuskybgdError(f"{path}: not a nuskybgd fit JSON (format nuskybgd-fit-1)")
    try:
        st = FitState(statistic=d["statistic"], settings=list(d["settings"]), trailer=list(d["trailer"]))
        for e in d["spectra"]:
            st.spectra.append(SpectrumEntry(group=e["group"], number=e["number"], file=e["file"],
                                            responses={int(a): b for a, b in e["responses"].items()},
                                            arfs={int(a): b for a, b in e["arfs"].items()},
                                            ignore=[tuple(r) for r in e["ignore"]],
                                            ignore_bad=e.get("ignore_bad", False),
                                            gain=_gain_from_json(e["gain"]) if e.get("gain") else None))
        bysrc = {}
        for s in d["sources"]:
            src = Source.from_expression(s["number"], s["name"], s["expression"], s["npar"])
            src.par_names = list(s["par_names"])
            st.sources.append(src)
            bysrc[s["number"]] = src
        for p in d["parameters"]:
            par = Param(*p["xcm"])
            par.error = p.get("error")
            if p.get("link"):
                lk = p["link"]
                par.link = Link(lk["source"], int(lk["index"]), float(lk["ratio"]))
            bysrc[p["source_number"]].params.append(par)
        info = dict(d.get("info", {}))
        if d.get("fit") is not None:
            info["fit"] = d["fit"]
        if d.get("covariance") is not None:
            info["covariance"] = d["covariance"]
        info["modules"] = [e.get("module") for e in d["spectra"]]
        info["weights"] = [e.get("weights") for e in d["spectra"]]
        st.info = info
    except (KeyError, TypeError, ValueError) as exc:
        raise NuskybgdError(f"{path}: malformed nuskybgd fit JSON ({exc})") from None
    st.update_linked_values()
    return st


_SHERPA_CLASS = {"cutoffpl": "cutoffpl", "bknpower": "bknpower", "lorentz": "lorentz", "apec": "apec"}


def sherpa_script(state, exposures=None):
    """Python script that rebuilds the fitted state in Sherpa.

    Parameters
    ----------
    state : FitState
        Background sources only (components cutoffpl, bknpower, lorentz,
        apec).
    exposures : list of float, optional
        Exposure (s) per spectrum; used to scale components that have no
        ARF (Sherpa's RMF-only folding does not multiply by the exposure).

    Returns
    -------
    str
        The script. File names are those of the XCM (relative to its folder:
        run the script there).
    """
    lines = [
        '"""Rebuild the nuskybgd background fit in Sherpa (generated by nuskybgd fit).',
        "",
        "Run in the folder of this script: python NAME_sherpa.py",
        '"""',
        "",
        "from sherpa.astro import ui",
        "from sherpa.astro.instrument import RSPModelPHA, RMFModelPHA",
        "from sherpa.models.basic import Scale1D",
        "from nuskybgd.io.ogip import read_arf, read_rmf",
        "from nuskybgd.models.basic import apec, bknpower, cutoffpl, lorentz",
        "import numpy as np",
        "",
        "",
        "def bin_mask(pha, ignored):",
        "    \"\"\"Noticed bins (grouped channels): all but the 1-based inclusive ranges ignored.\"\"\"",
        "    nbins = len(pha.apply_grouping(np.asarray(pha.channel, float)))",
        "    mask = np.ones(nbins, bool)",
        "    for a, b in ignored:",
        "        mask[a - 1:b] = False",
        "    return mask",
        "",
        "",
        "def on_rmf_grid(arf, rmf):",
        "    \"\"\"The ARF on the RMF's energy grid (as XSPEC uses it; some ARFs store rounded edges).\"\"\"",
        "    from sherpa.astro.data import DataARF",
        "    if len(arf.energ_lo) != len(rmf.energ_lo) or np.max(np.abs(arf.energ_lo - rmf.energ_lo)) > 1e-3:",
        "        raise ValueError(f'{arf.name}: energy grid differs from {rmf.name}')",
        "    return DataARF(arf.name, np.array(rmf.energ_lo), np.array(rmf.energ_hi), np.array(arf.specresp))",
        "",
        "",
        "def shift_grid(resp, slope, offset):",
        "    \"\"\"XSPEC's gain: a new response whose energy bins are E / slope - offset (keV), values unchanged.",
        "",
        "    A new object (read_rmf may return a shared, cached one, and Sherpa keeps the grid in internal",
        "    data spaces: assigning energ_lo would not move them).",
        "    \"\"\"",
        "    from sherpa.astro.data import DataARF, DataRMF",
        "    lo = np.asarray(resp.energ_lo, float) / slope - offset",
        "    hi = np.asarray(resp.energ_hi, float) / slope - offset",
        "    if isinstance(resp, DataARF):",
        "        return DataARF(resp.name, lo, hi, np.asarray(resp.specresp, float))",
        "    return DataRMF(resp.name, resp.detchans, lo, hi, resp.n_grp, resp.f_chan, resp.n_chan, resp.matrix,",
        "                   offset=resp.offset, e_min=resp.e_min, e_max=resp.e_max, header=resp.header)",
        "",
        "ui.set_stat(%r)" % ("cstat" if state.statistic == "cstat" else "chi2xspecvar"),
        "",
        "# every model component, by (source name, data group, component position)",
        "comp = {}",
    ]
    for src in state.sources:
        for c in src.components:
            if c not in _SHERPA_CLASS:
                raise NuskybgdError(f"model {src.name}: component {c} has no Sherpa class in nuskybgd")
    for src in state.sources:
        labels = src.labels
        for g in range(1, state.n_groups + 1):
            for ci, c in enumerate(src.components):
                lines.append(f"comp[({src.name!r}, {g}, {ci})] = {_SHERPA_CLASS[c]}('{src.name}_{g}_{labels[ci]}')")
    lines += ["", "# parameter values, freezes and links (XSPEC numbering: group g owns (g-1)*npar+1 .. g*npar)",
              "par = {}"]
    for src in state.sources:
        for i, p in enumerate(src.params):
            g, ip = divmod(i, src.npar)
            ci = src.par_components[ip]
            k = sum(1 for j in range(ip) if src.par_components[j] == ci)
            lines.append(f"par[({src.name!r}, {i + 1})] = comp[({src.name!r}, {g + 1}, {ci})].pars[{k}]")
    lines.append("")
    for src in state.sources:
        for i, p in enumerate(src.params):
            key = f"par[({src.name!r}, {i + 1})]"
            if p.link is not None:
                tgt = p.link.source or src.name
                if p.link.factor == 1.0:
                    lines.append(f"{key}.link = par[({tgt!r}, {p.link.index})]")
                else:
                    lines.append(f"{key}.link = {p.link.factor!r} * par[({tgt!r}, {p.link.index})]")
            else:
                lines.append(f"{key}.val = {float(p.value)!r}")
                lines.append(f"{key}.frozen = {p.frozen}")
    lines += ["", "# data and one response per source"]
    for k, s in enumerate(state.spectra):
        n = s.number
        gain = gain_values(state, k) if s.gain else None
        if gain is not None:
            lines.append(f"# XSPEC gain of spectrum {n}: slope {gain[0]!r}, offset {gain[1]!r} keV. Sherpa has no")
            lines.append("# 'gain' command: the response energy grids are shifted instead (same model)")
        lines.append(f"ui.load_pha({n}, {s.file!r}, use_errors=False)")
        lines.append(f"pha = ui.get_data({n})")
        terms = []
        for src in state.sources:
            rmf = s.responses.get(src.number)
            if rmf is None:
                raise NuskybgdError(f"spectrum {n}: no response for source {src.number}")
            expr = " + ".join(f"comp[({src.name!r}, {s.group}, {ci})]" for ci in range(len(src.components)))
            lines.append(f"rmf = read_rmf({rmf!r})")
            # Sherpa's response models do not multiply by the exposure (its ui layer does)
            lines.append("expo = Scale1D('expo')")
            lines.append("expo.c0 = pha.exposure")
            lines.append("expo.c0.frozen = True")
            arf = s.arfs.get(src.number)
            if arf is not None:
                lines.append(f"arf = on_rmf_grid(read_arf({arf!r}), rmf)")
            if gain is not None:
                lines.append(f"rmf = shift_grid(rmf, {gain[0]!r}, {gain[1]!r})")
                if arf is not None:
                    lines.append(f"arf = shift_grid(arf, {gain[0]!r}, {gain[1]!r})")
            if arf is not None:
                lines.append(f"m{src.number} = RSPModelPHA(arf, rmf, pha, expo * ({expr}))")
            else:
                lines.append(f"m{src.number} = RMFModelPHA(rmf, pha, expo * ({expr}))")
            terms.append(f"m{src.number}")
        lines.append(f"ui.set_full_model({n}, {' + '.join(terms)})")
        lines.append(f"pha.mask = bin_mask(pha, {[tuple(r) for r in s.ignore]!r})")
    lines += ["", "if __name__ == '__main__':",
              "    print('statistic', ui.calc_stat())"]
    return "\n".join(lines) + "\n"


def display_groups(counts, min_sig=5.0, max_bins=20):
    """Display rebinning like XSPEC's ``setplot rebin <min_sig> <max_bins>``.

    Parameters
    ----------
    counts : ndarray
        Counts of consecutive plotted bins.
    min_sig : float
        Close a group once its counts reach significance ``min_sig``
        (``sqrt(sum) >= min_sig``).
    max_bins : int
        ... or once it holds ``max_bins`` bins.

    Returns
    -------
    ndarray of int
        Group number of every bin (consecutive bins share a group).
    """
    out = np.empty(len(counts), int)
    g, acc, n = 0, 0.0, 0
    for i, c in enumerate(np.asarray(counts, float)):
        out[i] = g
        acc += c
        n += 1
        if acc >= min_sig ** 2 or n >= max_bins:
            g, acc, n = g + 1, 0.0, 0
    if n == 0 and len(counts):
        pass
    return out


def plot_fit(path, model, state, energies, labels=None, rebin=(5.0, 20), band=(3.0, 150.0)):
    """Plot data, total model, each component group, and residuals, per spectrum.

    Parameters
    ----------
    path : str or os.PathLike
        PNG file to write (150 dpi).
    model : LinearModel
        Evaluated at the state's current values.
    state : FitState
        ``info["fit"]`` (statistic, dof) goes into the title.
    energies : list of (ndarray, ndarray)
        Channel energy bounds (keV) of each spectrum.
    labels : list of str, optional
        Panel titles.
    rebin : (float, int) or None
        Display rebinning (:func:`display_groups`): minimum significance and
        maximum number of bins per plotted point; the fit is not affected.
    band : (float, float)
        Energies (keV) over which every component must be visible: the y
        axis reaches down to the faintest component there.

    Notes
    -----
    Components: apbgd, intbgd apec, intbgd lines (sum of the lorentz
    lines), fcxb, intn; residuals (data - model) / sqrt(model) per plotted
    point.
    """
    import matplotlib  # local: matplotlib.pyplot costs 0.5-1.5 s at import; only for plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(model.spectra)
    ncol = 2 if n > 1 else 1
    nrow = (n + ncol - 1) // ncol
    fig = plt.figure(figsize=(7 * ncol, 4.6 * nrow))
    outer = fig.add_gridspec(nrow, ncol, hspace=0.4, wspace=0.25)
    colors = {"apbgd": "tab:orange", "intbgd apec": "tab:green", "intbgd lines": "tab:olive",
              "fcxb": "tab:purple", "intn": "tab:brown"}
    fit = state.info.get("fit") or {}
    stat_text = (f"{fit.get('statistic', '')} = {fit['value']:.1f} / {fit['dof']} dof "
                 f"({fit['value'] / fit['dof']:.3f})" if fit.get("value") is not None and fit.get("dof") else "")
    for k, sd in enumerate(model.spectra):
        r, c = divmod(k, ncol)
        inner = outer[r, c].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.0)
        ax = fig.add_subplot(inner[0])
        axr = fig.add_subplot(inner[1], sharex=ax)
        elo, ehi = energies[k]
        ids = sd.ids
        nb = sd.n_bins
        blo = np.full(nb, np.inf)
        bhi = np.full(nb, -np.inf)
        np.minimum.at(blo, ids, elo)
        np.maximum.at(bhi, ids, ehi)
        keep = np.flatnonzero(sd.noticed)
        d_b = sd.group(np.asarray(sd.counts, float))
        comps = model.component_counts(k)
        bysrc = {}
        for key, v in comps.items():
            name = key
            if key.startswith("intbgd."):
                name = "intbgd apec" if key == "intbgd.apec" else "intbgd lines"
            bysrc[name] = bysrc.get(name, 0.0) + sd.group(v)
        total = sum(bysrc.values())
        # display groups: consecutive noticed bins, merged to min_sig / max_bins
        runs = np.split(keep, np.flatnonzero(np.diff(keep) > 1) + 1) if keep.size else []
        gid = np.empty(keep.size, int)
        start, g0 = 0, 0
        for run in runs:
            gg = display_groups(d_b[run], *rebin) if rebin else np.arange(run.size)
            gid[start:start + run.size] = gg + g0
            g0 += int(gg.max()) + 1 if run.size else 0
            start += run.size
        ng = g0

        def agg(x):
            return np.bincount(gid, weights=np.asarray(x, float)[keep], minlength=ng)

        glo = np.full(ng, np.inf)
        ghi = np.full(ng, -np.inf)
        np.minimum.at(glo, gid, blo[keep])
        np.maximum.at(ghi, gid, bhi[keep])
        width = ghi - glo
        mid = 0.5 * (glo + ghi)
        d = agg(d_b)
        mt = agg(total)
        ax.errorbar(mid, d / width, xerr=0.5 * width, yerr=np.sqrt(np.maximum(d, 1)) / width, fmt=".", ms=2,
                    lw=0.5, color="k", label="data")
        ax.step(mid, mt / width, where="mid", color="tab:red", lw=1, label="model")
        inband = (glo >= band[0] - 1e-6) & (ghi <= band[1] + 1e-6)
        floor = []
        for name in ("apbgd", "intbgd apec", "intbgd lines", "fcxb", "intn"):
            if name not in bysrc:
                continue
            v = agg(bysrc[name]) / width
            ax.step(mid, v, where="mid", lw=0.8, color=colors.get(name), label=name)
            pos = v[inband & (v > 0)]
            if pos.size:
                floor.append(np.percentile(pos, 5))
        ax.set_xscale("log")
        ax.set_yscale("log")
        top = np.max(np.concatenate([d / width, mt / width])) if ng else 1.0
        dpos = (d / width)[inband & (d > 0)]
        # down to the faintest component, but not below 1e-3 of the faintest data
        # (a component falling by orders of magnitude would squash the plot)
        low = min(floor) if floor else top * 1e-4
        if dpos.size:
            low = max(low, 1e-3 * dpos.min())
        ax.set_ylim(0.5 * low, 2.0 * top)
        ax.set_xlim(band[0] * 0.95, band[1] * 1.05)
        ax.set_ylabel("counts / keV")
        title = labels[k] if labels else sd.name
        ax.set_title(f"{title}\n{stat_text}" if stat_text else title, fontsize=9)
        ax.legend(fontsize=7, ncol=3)
        plt.setp(ax.get_xticklabels(), visible=False)
        res = (d - mt) / np.sqrt(np.maximum(mt, 1e-30))
        axr.step(mid, res, where="mid", color="k", lw=0.5)
        axr.axhline(0, color="tab:red", lw=0.8)
        axr.set_ylabel("(d-m)/sqrt(m)")
        axr.set_xlabel("energy (keV)")
    fig.savefig(path, dpi=150, format="png")
    plt.close(fig)
