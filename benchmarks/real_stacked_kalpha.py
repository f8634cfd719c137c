"""Real stacked spectra with Cr, Fe and Ni K-alpha lines added to the model (``--add-lines``).

The shipped presets (fitted to early-mission data) have no line at 5.4, 6.4
or 7.5 keV; epoch-10 spectra carry them (see ``real_stacked_epoch10.py``).
For every spectrum of ``../shared/real/stacked`` this fits, like
``real_stacked.py`` (3-150 keV, cstat, real FPMA det-3 RMF and FPMA DETABS
for every spectrum):

- ``gain_lines_kalpha``: ``--gain fit``, the six strong line energies
  thawed and ``--add-lines`` (three lines at 5.411, 6.400, 7.472 keV, width
  0.05 keV, energies fixed, norms free): the model of the issue's third
  column plus the missing lines;
- ``gain_lines_kalpha_e``: the same with the three added energies thawed;

and per epoch and module the joint four-detector fit with
``--free-detectors intn,intbgd`` and the added lines. The same columns
without the added lines are in ``results/real_stacked.json``.

Writes ``benchmarks/results/real_stacked_kalpha.json``.
Run: PYTHONPATH=. python benchmarks/real_stacked_kalpha.py
"""

import json
import sys
import time

from real_stacked import DETABS, HERE, LINES, RMF, load

KE = ",".join(f"intbgd:lorentz_{n}.LineE" for n in (31, 32, 33))
CONFIGS = (("gain_lines_kalpha", {"gain": "fit", "thaw": LINES}),
           ("gain_lines_kalpha_e", {"gain": "fit", "thaw": LINES + "," + KE}))


def main():
    from tqdm import tqdm

    from nuskybgd.calib.auxil import load_ratios
    from nuskybgd.calib.presets import K_ALPHA_LINES, with_added_lines
    from nuskybgd.fitting.detectors import fit_detectors
    from nuskybgd.io.ogip import read_rmf

    rmf = read_rmf(RMF)
    ratios = with_added_lines(load_ratios(), K_ALPHA_LINES)
    kw = {"detabs_file": str(DETABS), "ratios": ratios}
    before = {r["spectrum"]: r for r in json.loads((HERE / "results" / "real_stacked.json").read_text())["spectra"]}
    rows, joint = [], []
    jobs = [(e, m, d) for e in (2, 6, 10, 14) for m in "AB" for d in range(4)]
    for e, m, d in tqdm(jobs, desc="single spectra", file=sys.stderr):
        s = load(e, m, d, rmf)
        row = {"spectrum": s.name, "epoch": e, "module": m, "detector": d,
               "gain_lines_without": before[s.name]["gain_lines"]["ratio"] if s.name in before else None}
        for tag, opts in CONFIGS:
            t0 = time.perf_counter()
            f = fit_detectors([s], **opts, **kw)
            row[tag] = {"cstat": f.statistic, "dof": f.dof, "ratio": f.statistic / f.dof,
                        "seconds": time.perf_counter() - t0, "converged": bool(f.state.info["fit"]["converged"]),
                        "added_line_energies": {lab: float(v) for lab, v in zip(f.result.labels, f.result.values)
                                                if any(f"lorentz_{n}.LineE" in lab for n in (31, 32, 33))}}
        rows.append(row)
        tqdm.write(f"{s.name}: gain+lines {row['gain_lines_without']:.3f} -> +K-alpha "
                   f"{row['gain_lines_kalpha']['ratio']:.3f}, energies free {row['gain_lines_kalpha_e']['ratio']:.3f}",
                   file=sys.stderr)
    for e in tqdm((2, 6, 10, 14), desc="joint fits", file=sys.stderr):
        for m in "AB":
            specs = [load(e, m, d, rmf) for d in range(4)]
            t0 = time.perf_counter()
            free = fit_detectors(specs, gain="fit", thaw=LINES, free_detectors=("intn", "intbgd"), **kw)
            joint.append({"epoch": e, "module": m, "free_detectors_kalpha": {
                "cstat": free.statistic, "dof": free.dof, "ratio": free.statistic / free.dof,
                "seconds": time.perf_counter() - t0}})
            tqdm.write(f"epoch {e} FPM{m}: free-detectors + K-alpha {free.statistic / free.dof:.3f}", file=sys.stderr)
    summary = {tag: {"max": max(r[tag]["ratio"] for r in rows),
                     "n_le_1.35": sum(r[tag]["ratio"] <= 1.35 for r in rows), "n": len(rows)}
               for tag, _ in CONFIGS}
    summary["free_detectors_kalpha"] = {"max": max(j["free_detectors_kalpha"]["ratio"] for j in joint),
                                        "n_le_1.35": sum(j["free_detectors_kalpha"]["ratio"] <= 1.35 for j in joint),
                                        "n": len(joint)}
    out = {"rmf": RMF.name, "detabs": DETABS.name, "band_kev": [3, 150], "statistic": "cstat",
           "added_lines_kev": list(K_ALPHA_LINES), "lines_thawed": LINES.split(","), "summary": summary,
           "spectra": rows, "joint": joint}
    (HERE / "results" / "real_stacked_kalpha.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
