"""Run every ``benchmarks/bench_*.py`` script in turn and summarise.

Each script compares the project's implementation with a straightforward
reference implementation in the same process and writes its figures to
``benchmarks/results/<name>.json``. Timings are reported, never asserted.
"""

import json
import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
    """Run the benchmark scripts named on the command line (default: all).

    Parameters
    ----------
    argv : list of str, optional
        Substrings selecting scripts, e.g. ``["projbgd"]``.

    Returns
    -------
    int
        0 when every script ran, 1 otherwise.
    """
    argv = sys.argv[1:] if argv is None else argv
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(a in s.name for a in argv)]
    failed = []
    for script in scripts:
        print(f"=== {script.name}", flush=True)
        t0 = time.perf_counter()
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                failed.append(script.name)
        except Exception as exc:  # report and go on with the others
            print(f"{script.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(script.name)
        print(f"=== {script.name} done in {time.perf_counter() - t0:.1f} s", flush=True)
    summary = {}
    for res in sorted((HERE / "results").glob("*.json")):
        try:
            summary[res.stem] = json.loads(res.read_text())
        except ValueError:
            pass
    print(json.dumps(summary, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
