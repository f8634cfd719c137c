"""Quick-look figure of a simulated observation."""

import numpy as np

from ..io.output import atomic_outputs

__all__ = ["plot_overview"]


def plot_overview(outputs, truth, path, clobber=False):
    """Quick-look figure of a simulation: sky counts images and spectra by component.

    Parameters
    ----------
    outputs : dict
        Per module: ``data`` (event columns) and ``tags`` (component index).
    truth : dict
        The truth dictionary (component names, source position).
    path : str or os.PathLike
        PNG file to write.
    clobber : bool
        Replace an existing file.
    """
    import matplotlib  # local: matplotlib.pyplot costs 0.5-1.5 s at import; only for plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mods = sorted(outputs)
    fig, axes = plt.subplots(2, len(mods), figsize=(6 * len(mods), 10))
    groups = {"apbgd": "apbgd", "fcxb": "fcxb", "intn": "intn"}
    for j, m in enumerate(mods):
        d, tags = outputs[m]["data"], outputs[m]["tags"]
        names = truth["modules"][m]["component_order"]
        img, _, _ = np.histogram2d(d["Y"], d["X"], bins=250, range=[[0.5, 1000.5], [0.5, 1000.5]])
        ax = axes[0, j]
        ax.imshow(np.log10(img + 1), origin="lower", extent=(0.5, 1000.5, 0.5, 1000.5), cmap="magma")
        src = truth["modules"][m]["source"]
        if src:
            ax.plot(src["x"], src["y"], "c+", ms=14)
        ax.set_title(f"FPM{m}: log10(counts + 1), 4x4-pixel bins")
        ax.set_xlabel("sky X (pixel)")
        ax.set_ylabel("sky Y (pixel)")
        ax = axes[1, j]
        energy = 1.62 + 0.04 * np.arange(4096)
        label_of = [groups.get(n, "intbgd") for n in names] + ["source"]
        for lab in ("apbgd", "intbgd", "fcxb", "intn", "source"):
            idx = [i for i, n in enumerate(label_of) if n == lab]
            sel = np.isin(tags, idx)
            if sel.any():
                c = np.bincount(d["PI"][sel].astype(np.int64) // 25, minlength=4096 // 25 + 1)
                ax.step(energy[::25][: c.size], c[: energy[::25].size], where="post", label=lab)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("energy (keV)")
        ax.set_ylabel("counts per 1 keV")
        ax.legend()
    fig.tight_layout()
    with atomic_outputs([path], clobber) as out:
        fig.savefig(out[path], format="png", dpi=150)
    plt.close(fig)
