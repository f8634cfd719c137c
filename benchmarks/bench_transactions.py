"""Cost of the output transaction (io/output.py): locks, staging folder, fsync, journal, renames.

Writes the same FITS files (1000x1000 float32 images, 4 MB, as projbgd does) three ways:
plain ``writeto`` into the destination, the transaction without fsync (monkeypatched, to
separate the durability cost), and the full transaction; best of 5. Also times a
transaction of many small text files (the fit outputs). Results go to
``benchmarks/results/transactions.json``.

Run: ``PYTHONPATH=. python benchmarks/bench_transactions.py``
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of  # noqa: E402

from nuskybgd.io import output  # noqa: E402
from nuskybgd.io.output import atomic_outputs  # noqa: E402


def main():
    img = fits.HDUList([fits.PrimaryHDU(np.random.default_rng(0).random((1000, 1000), dtype=np.float32))])
    res = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        names = [d / f"det{k}Aim.fits" for k in range(5)]

        def plain():
            for p in names:
                img.writeto(p, overwrite=True, checksum=True)

        def transaction():
            with atomic_outputs(names, clobber=True) as out:
                for p in names:
                    img.writeto(out[p], checksum=True)

        res["plain_5x4MB_s"], _ = best_of(plain)
        res["transaction_5x4MB_s"], _ = best_of(transaction)
        keep = output._fsync_path
        output._fsync_path = lambda *a, **k: None
        try:
            res["transaction_nofsync_5x4MB_s"], _ = best_of(transaction)
        finally:
            output._fsync_path = keep
        small = [d / f"bg{k}.txt" for k in range(12)]

        def plain_small():
            for p in small:
                p.write_text("x" * 2000)

        def tx_small():
            with atomic_outputs(small, clobber=True) as out:
                for p in small:
                    out[p].write_text("x" * 2000)
        res["plain_12_small_s"], _ = best_of(plain_small)
        res["transaction_12_small_s"], _ = best_of(tx_small)
        output._fsync_path = lambda *a, **k: None
        try:
            res["transaction_nofsync_12_small_s"], _ = best_of(tx_small)
        finally:
            output._fsync_path = keep
    res["overhead_5x4MB_s"] = res["transaction_5x4MB_s"] - res["plain_5x4MB_s"]
    res["overhead_12_small_s"] = res["transaction_12_small_s"] - res["plain_12_small_s"]
    out = Path(__file__).resolve().parent / "results" / "transactions.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
