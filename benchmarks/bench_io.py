"""I/O benchmarks: dense RMF decoding, RMF compression/writing, CALDB query, synthetic CALDB.

Reference implementations are the straightforward per-row loops. Figures go
to ``benchmarks/results/bench_io.json``; nothing is asserted.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import best_of

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", HERE.parents[1] / "shared"))
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))


def _best(fn, repeat=3):
    return best_of(fn, repeat)


def scatter_dense(rmf):
    """Reference: vectorised element-wise scatter (np.add.at) of all groups."""
    n_e, n_ch = len(rmf.energ_lo), int(rmf.detchans)
    n_grp = np.asarray(rmf.n_grp, np.int64)
    f = np.asarray(rmf.f_chan, np.int64).ravel() - int(rmf.offset)
    n = np.asarray(rmf.n_chan, np.int64).ravel()
    v = np.asarray(rmf.matrix, float).ravel()
    rows = np.repeat(np.repeat(np.arange(n_e), n_grp), n)
    cols = np.repeat(f - (np.cumsum(n) - n), n) + np.arange(v.size)
    out = np.zeros((n_e, n_ch))
    np.add.at(out, (rows, cols), v)
    return out


def loop_dense(rmf):
    """Reference: decode OGIP groups row by row."""
    n_e, n_ch = len(rmf.energ_lo), int(rmf.detchans)
    out = np.zeros((n_e, n_ch))
    g = k = 0
    for i in range(n_e):
        for _ in range(int(rmf.n_grp[i])):
            f = int(rmf.f_chan[g]) - int(rmf.offset)
            n = int(rmf.n_chan[g])
            out[i, f:f + n] = rmf.matrix[k:k + n]
            k += n
            g += 1
    return out


def loop_compress(m):
    """Reference: find non-zero runs element by element."""
    rows = []
    for row in m:
        groups, start = [], None
        for j, v in enumerate(row):
            if v > 0 and start is None:
                start = j
            elif v <= 0 and start is not None:
                groups.append((start, j - start))
                start = None
        if start is not None:
            groups.append((start, len(row) - start))
        rows.append(groups)
    return rows


def _plot(cal, real_rmf, real_dense, out):
    """Synthetic vs real RMF rows and the synthetic instrument maps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits

    from nuskybgd.io import ogip

    syn = ogip.rmf_matrix(ogip.read_rmf(cal.rmf("A", 3)))
    ch = 0.5 * (real_rmf.e_min + real_rmf.e_max)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    figs = {}
    for e, c in zip((6.0, 20.0, 68.0), ("C0", "C1", "C2")):
        i = np.searchsorted(real_rmf.energ_lo, e)
        axes[0].semilogy(ch, real_dense[i], color=c, lw=0.8, label=f"real DET3 {e:g} keV")
        axes[0].semilogy(ch, syn[i], color=c, ls="--", lw=0.8, label="synthetic")
        figs[f"peak_ratio_syn_over_real_{e:g}keV"] = float(syn[i].max() / real_dense[i].max())
    axes[0].set(xlim=(2, 75), ylim=(1e-7, 1), xlabel="channel energy (keV)", ylabel="probability per channel",
                title="FPMA DET3 RMF rows")
    axes[0].legend(fontsize=7)
    for ax, m in zip(axes[1:], "AB"):
        q = cal.query("INSTRMAP", m)
        with fits.open(q.path) as h:
            ax.imshow(h[q.extno].data, origin="lower", cmap="gray")
        ax.set(title=f"synthetic INSTRMAP FPM{m}", xlabel="DET1 x index", ylabel="DET1 y index")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return figs


def main():
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.io import ogip
    from nuskybgd.simulate.caldb import make_caldb

    res = {}
    real = SHARED / "caldb" / "nustar" / "nuAdet3_20100101v002.rmf.gz"
    t_read, rmf = _best(lambda: ogip.read_rmf(real), repeat=1)
    res["read_real_rmf_s"] = t_read

    def fresh_dense():
        ogip._DENSE_CACHE.clear()
        return ogip.rmf_matrix(rmf)

    t_fast, dense = _best(fresh_dense)
    t_ref, ref = _best(lambda: loop_dense(rmf), repeat=1)
    assert np.array_equal(dense, ref)
    t_sc, ref2 = _best(lambda: scatter_dense(rmf), repeat=1)
    assert np.array_equal(dense, ref2)
    res["rmf_matrix_scatter_s"] = t_sc
    t_cached, _ = _best(lambda: ogip.rmf_matrix(rmf), repeat=5)
    res.update(rmf_matrix_s=t_fast, rmf_matrix_loop_s=t_ref, rmf_matrix_speedup=t_ref / t_fast,
               rmf_matrix_cached_s=t_cached)

    sub = dense[::16]  # 256 rows keep the pure-Python reference short
    t_c, _ = _best(lambda: ogip.compress_matrix(sub))
    t_cref, _ = _best(lambda: loop_compress(sub), repeat=1)
    res.update(compress_256rows_s=t_c, compress_256rows_loop_s=t_cref, compress_speedup=t_cref / t_c)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_caldb(Path(tmp) / "caldb", progress=False)
        res["make_caldb_s"] = time.perf_counter() - t0
        res["make_caldb_mb"] = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 1e6
        cal = Caldb(Path(tmp) / "caldb")
        t_q, _ = _best(lambda: [cal.query("DETABS", m, d, "2018-01-01") for m in "AB" for d in range(4)], 5)
        res["caldb_query_ms"] = 1e3 * t_q / 8
        t_w, _ = _best(lambda: ogip.write_rmf(Path(tmp) / "w.rmf", rmf.energ_lo, rmf.energ_hi, dense,
                                              rmf.e_min, rmf.e_max, clobber=True), repeat=1)
        res["write_real_rmf_s"] = t_w
        res["write_real_rmf_mb"] = (Path(tmp) / "w.rmf").stat().st_size / 1e6
        res.update(_plot(cal, rmf, dense, HERE / "results" / "synthetic_caldb.png"))

    for k, v in res.items():
        print(f"{k:28s} {v:10.4g}")
    out = HERE / "results" / "bench_io.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
