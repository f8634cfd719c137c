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

import numpy as np

from ..errors import NuskybgdError
from ..io.state import FitState, Link, Param, Source, SpectrumEntry

__all__ = ["state_to_json", "state_from_json", "sherpa_script", "plot_fit", "software_versions"]


def software_versions():
    """Versions of nuskybgd and the libraries the fit used.

    Returns
    -------
    dict
        Package name -> version string.
    """
    import astropy
    import scipy
    out = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
           "astropy": astropy.__version__}
    try:
        from .. import __version__
        out["nuskybgd"] = __version__
    except ImportError:  # pragma: no cover
        out["nuskybgd"] = "unknown"
    try:
        import sherpa
        out["sherpa"] = sherpa.__version__
    except ImportError:  # pragma: no cover
        pass
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
                                            ignore_bad=e.get("ignore_bad", False)))
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
                lines.append(f"m{src.number} = RSPModelPHA(arf, rmf, pha, expo * ({expr}))")
            else:
                lines.append(f"m{src.number} = RMFModelPHA(rmf, pha, expo * ({expr}))")
            terms.append(f"m{src.number}")
        lines.append(f"ui.set_full_model({n}, {' + '.join(terms)})")
        lines.append(f"pha.mask = bin_mask(pha, {[tuple(r) for r in s.ignore]!r})")
    lines += ["", "if __name__ == '__main__':",
              "    print('statistic', ui.calc_stat())"]
    return "\n".join(lines) + "\n"


def plot_fit(path, model, state, energies, labels=None):
    """Plot data, total model, each source, and residuals, per spectrum.

    Parameters
    ----------
    path : str or os.PathLike
        PNG file to write.
    model : LinearModel
        Evaluated at the state's current values.
    state : FitState
    energies : list of (ndarray, ndarray)
        Channel energy bounds (keV) of each spectrum.
    labels : list of str, optional
        Panel titles.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(model.spectra)
    ncol = 2 if n > 1 else 1
    nrow = (n + ncol - 1) // ncol
    fig = plt.figure(figsize=(7 * ncol, 4.2 * nrow))
    outer = fig.add_gridspec(nrow, ncol, hspace=0.35, wspace=0.25)
    colors = {"apbgd": "tab:orange", "intbgd": "tab:green", "fcxb": "tab:purple", "intn": "tab:brown"}
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
        keep = sd.noticed
        width = (bhi - blo)[keep]
        mid = 0.5 * (blo + bhi)[keep]
        d = sd.group(np.asarray(sd.counts, float))[keep]
        comps = model.component_counts(k)
        bysrc = {}
        for key, v in comps.items():
            bysrc.setdefault(key.split(".")[0], 0.0)
            bysrc[key.split(".")[0]] = bysrc[key.split(".")[0]] + v
        total = sum(bysrc.values())
        mt = sd.group(total)[keep]
        ax.errorbar(mid, d / width, yerr=np.sqrt(np.maximum(d, 1)) / width, fmt=".", ms=2, lw=0.5,
                    color="k", label="data")
        ax.step(mid, mt / width, where="mid", color="tab:red", lw=1, label="model")
        for name, v in bysrc.items():
            ax.step(mid, sd.group(v)[keep] / width, where="mid", lw=0.8, color=colors.get(name), label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        pos = d[d > 0] / width[d > 0]
        if pos.size:
            ax.set_ylim(0.3 * pos.min(), 3 * pos.max())
        ax.set_ylabel("counts / keV")
        ax.set_title(labels[k] if labels else sd.name, fontsize=9)
        ax.legend(fontsize=7, ncol=3)
        plt.setp(ax.get_xticklabels(), visible=False)
        res = (d - mt) / np.sqrt(np.maximum(mt, 1e-30))
        axr.step(mid, res, where="mid", color="k", lw=0.5)
        axr.axhline(0, color="tab:red", lw=0.8)
        axr.set_ylabel("(d-m)/sqrt(m)")
        axr.set_xlabel("energy (keV)")
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
