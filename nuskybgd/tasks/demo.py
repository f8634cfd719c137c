"""``nuskybgd demo``: the whole chain on a simulated observation."""

SUMMARY = "run the whole chain on a simulated observation"

DESCRIPTION = """\
Simulate an observation (both modules, four background components and a
point source; truth.json holds the injected values), then run mkimgs,
aspecthist, mkinstrmap and projbgd, write three background regions per
module away from the source, extract their spectra, write bgdinfo.json and
fit. Prints the fitted norms against the injected ones and leaves the fit
outputs (bgdparams.xcm/.json/_sherpa.py/.png/.log) in OUTDIR. Then spec,
image, simplify and spex on a source region of each module (bgd_src.*,
img_*, bgd_only_src.*, SPEX files bgd_src_src{A,B}_spex.spo/.res/.com/
_<component>.dat).

examples:
  nuskybgd demo demo_out
  nuskybgd demo demo_out --seed 3 --clobber
"""


def add_arguments(parser):
    """Arguments of ``nuskybgd demo``."""
    parser.add_argument("outdir", help="output folder (created)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the simulation (default 1)")
    parser.add_argument("--exposure", type=float, default=50000.0, help="exposure, s (default 50000)")
    parser.add_argument("--statistic", default="cstat", choices=["cstat", "chi"], help="fit statistic")
    parser.add_argument("--clobber", action="store_true", help="overwrite existing output files")


def run(args):
    """Run ``nuskybgd demo``."""
    from ..analysis.demo import run_demo
    run_demo(args.outdir, seed=args.seed, exposure=args.exposure, statistic=args.statistic, clobber=args.clobber)
    return 0
