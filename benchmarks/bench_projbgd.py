"""Benchmark: projbgd (exact sparse aspect convolution) vs the straightforward implementation.

Both run in this process on the real aspect files of observation
80415201001 (modules A and B), with instrument maps from the real PIXPOS and
an all-ones INSTRMAP (the real CALDB INSTRMAP is not available). The
straightforward implementation (``tests/sky_reference.py``) applies one
full-image bilinear circular shift per aspect-histogram pixel.

Figures written to ``benchmarks/results/projbgd.json``:
- cold: first call in a process with an empty numba cache (compilation included);
- warm: median of 5 later calls;
- task: the whole ``nuskybgd projbgd`` task (read inputs, project, write 5 files), warm;
- reference: one run of the straightforward implementation; ratio = reference / warm;
- accuracy: max relative difference per pixel >= 30 pixels from the edges, relative sum differences;
- memory: tracemalloc peak of one project_background call, and the process max RSS.
"""

import json
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", REPO.parent / "shared")).resolve()
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))
_cache = tempfile.mkdtemp(prefix="numba_cold_")
os.environ["NUMBA_CACHE_DIR"] = _cache  # empty cache: the first call compiles

sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402

from nuskybgd.cli import main as cli_main  # noqa: E402
from nuskybgd.io.events import read_det1_refpoint, read_gti  # noqa: E402
from nuskybgd.io.skyfiles import read_pixpos  # noqa: E402
from nuskybgd.sky import projection as P  # noqa: E402
from nuskybgd.sky.aspect import aspect_histogram, write_aspect_histogram  # noqa: E402
from nuskybgd.sky.instrmap import instrument_map, pixel_map  # noqa: E402
from sky_reference import reference_projection  # noqa: E402

OBS = SHARED / "real" / "obs_80415201001"


def max_rel(got, ref, margin=30):
    g = got[margin:-margin, margin:-margin]
    r = ref[margin:-margin, margin:-margin]
    rel = np.abs(g - r) / np.where(r == 0, np.inf, np.abs(r))
    rel[(r == 0) & (g != 0)] = np.inf
    return float(rel.max())


def inputs(m):
    t, x, y, h = read_det1_refpoint(OBS / f"nu80415201001{m}_det1.fits")
    hist = aspect_histogram(t, x, y, *read_gti(OBS / f"nu80415201001{m}06_gti.fits"), header=h)
    refimg = OBS / f"nu80415201001{m}06_chu2_S_cl_grade0_sk.img.gz"
    refh = fits.getheader(refimg)
    pm = pixel_map(read_pixpos(SHARED / "caldb" / "nustar" / f"nu{m}pixpos20100101v007.fits.gz"))
    imap = instrument_map(np.ones((360, 360)), pm)
    return hist, refimg, refh, imap


def bench_module(m, first):
    hist, refimg, refh, imap = inputs(m)
    ap = P.aperture_image(m)
    t0 = time.perf_counter()
    proj = P.project_background(refh, m, imap, hist, aperture=ap, progress=False)
    cold = time.perf_counter() - t0
    warm_runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        proj = P.project_background(refh, m, imap, hist, aperture=ap, progress=False)
        warm_runs.append(time.perf_counter() - t0)
    warm = statistics.median(warm_runs)
    tracemalloc.start()
    P.project_background(refh, m, imap, hist, aperture=ap, progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # whole task, files in and out
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        write_aspect_histogram(hist, d / "asp.fits")
        hdu = fits.PrimaryHDU(imap)
        hdu.header["EXTNAME"] = "INSTRMAP"
        hdu.writeto(d / "chip.fits")
        argv = ["--log-level", "WARNING", "projbgd", f"refimg={refimg}", f"out={d / 'bgdap.fits'}", f"mod={m}",
                "det=1234", f"chipmap={d / 'chip.fits'}", f"aspect={d / 'asp.fits'}", "--outdir", str(d),
                "--clobber"]
        task_runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            rc = cli_main(argv)
            task_runs.append(time.perf_counter() - t0)
            assert rc == 0
    print(f"module {m}: {int((hist.image > 0).sum())} aspect pixels; projbgd cold {cold:.3f} s "
          f"({'numba compile included' if first else 'kernel already compiled'}), warm {warm:.3f} s, "
          f"task {statistics.median(task_runs):.3f} s; running the reference ...", flush=True)
    t0 = time.perf_counter()
    rap, rdets = reference_projection(ap, imap, hist.image, hist.x_off, hist.y_off, refh["PA_PNT"])
    tref = time.perf_counter() - t0
    acc = {"aperture": max_rel(proj.aperture, rap)}
    sums = {"aperture": abs(proj.aperture.sum() - rap.sum()) / rap.sum()}
    for d in (1, 2, 3, 4):
        acc[f"det{d - 1}"] = max_rel(proj.detectors[d - 1], rdets[d])
        sums[f"det{d - 1}"] = abs(proj.detectors[d - 1].sum() - rdets[d].sum()) / rdets[d].sum()
    res = {
        "aspect_pixels": int((hist.image > 0).sum()),
        "cold_s": cold, "cold_includes_numba_compile": first,
        "warm_s": warm, "warm_runs_s": warm_runs,
        "task_warm_s": statistics.median(task_runs),
        "reference_s": tref, "speedup_vs_reference": tref / warm,
        "max_rel_diff_inner": acc, "rel_sum_diff": sums,
        "tracemalloc_peak_MB": peak / 2 ** 20,
    }
    print(f"module {m}: reference {tref:.2f} s -> speed-up x{tref / warm:.0f}; max rel diff "
          f"{max(acc.values()):.2e}; sum diff {max(sums.values()):.2e}; peak traced memory "
          f"{peak / 2 ** 20:.0f} MB", flush=True)
    return res


def main():
    results = {"machine_cpus": os.cpu_count()}
    for i, m in enumerate("AB"):
        results[m] = bench_module(m, first=(i == 0))
    results["max_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = HERE / "results" / "projbgd.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"process max RSS {results['max_rss_MB']:.0f} MB; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
