"""``nuskybgd spec``: rescale the fitted background to source regions."""

from ..errors import NuskybgdError

SUMMARY = "rescale the fitted background to source regions"

DESCRIPTION = """\
Add source spectra to the fitted background state (REFERENCE section 7):
every background component of a source region is tied to the module's
reference spectrum by the ratios of REFERENCE section 6 (aperture sum for
apbgd; detector areas x ifactors for intbgd and intn); the fCXB norm is the
area-weighted mean of the fitted fCXB surface brightness of the module's
background regions times the source area (--fcxb preset: the original's
preset).

FIT is the JSON written by 'nuskybgd fit' or an XCM file (XSPEC's 'save
all', the original tool's or ours) whose first spectra are bgdinfo's
bgfiles, in order. Source regions and spectra are comma-separated lists of
the same length; each spectrum's RESPFILE gives its RMF.

Outputs (NAME = savefile, default bgd_<first source region stem>):
  NAME.xcm          XSPEC state: background and source spectra, background
                    parameters free (load with @NAME.xcm)
  NAME.json         the same state, machine-readable, with the predicted
                    background counts per source spectrum and band and
                    their 1-sigma errors from the fit covariance (exact:
                    the prediction is linear in the fitted norms; from the
                    per-parameter errors without correlations when FIT
                    has no covariance, NaN/null for an XCM without errors)
  NAME_sherpa.py    the same state in Sherpa
  NAME_bkg.pha      predicted background counts per channel of the source
                    spectrum (one source; else NAME_<region stem>_bkg.pha),
                    OGIP type I with the source's EXPOSURE and BACKSCAL:
                    usable as BACKFILE in XSPEC, Sherpa or any fitter;
                    header BKGTOTAL, BKGCERR, BKGFERR: total predicted
                    counts and their 1-sigma error (counts, fractional)
  NAME_bkg_NNN.pha  --realisations N Poisson realisations of it
  NAME_apbgd<n>.arf aperture-background ARF of spectrum n (a source spectrum)
  NAME.png          source spectra with the predicted background and its
                    components

examples:
  nuskybgd spec bgdinfo.json bgdparams.json src.reg srcA.pha
  nuskybgd spec bgdinfo.json bgdparams.xcm srcA.reg,srcB.reg srcA.pha,srcB.pha savefile=bgd_src
  nuskybgd spec bgdinfo.json fit.xcm src.reg src.pha --realisations 100 --seed 1
"""

LEGACY = {"savefile": "--savefile"}


#: Upper limit of --realisations (each one is a PHA file).
MAX_REALISATIONS = 10000


def add_arguments(parser):
    """Arguments of ``nuskybgd spec``."""
    parser.add_argument("bgdinfo", help="bgdinfo.json of the fit")
    parser.add_argument("fit", help="fit result: NAME.json or an XCM file")
    parser.add_argument("regfiles", help="source region file(s), comma-separated")
    parser.add_argument("phafiles", help="source spectrum file(s), comma-separated, same order")
    parser.add_argument("--savefile", default=None, help="output name (default bgd_<first region stem>)")
    parser.add_argument("--fcxb", choices=("fitted", "preset"), default="fitted",
                        help="fCXB norm of the source regions: fitted surface brightness (default) or "
                             "the original's preset")
    parser.add_argument("--realisations", type=int, default=0,
                        help="also write N Poisson realisations of each background spectrum")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the realisations")


def _split(text, what):
    items = [x.strip() for x in str(text).split(",")]
    if not items or any(not x for x in items):
        raise NuskybgdError(f"{what} {text!r}: empty entry in the comma-separated list")
    return items


def run(args):
    """Run ``nuskybgd spec``."""
    import logging

    from ..analysis.spec import run_spec
    log = logging.getLogger("nuskybgd")
    regs = _split(args.regfiles, "source regions")
    phas = _split(args.phafiles, "source spectra")
    if len(regs) != len(phas):
        raise NuskybgdError(f"{len(regs)} source regions but {len(phas)} source spectra; give one spectrum per region")
    if not 0 <= args.realisations <= MAX_REALISATIONS:
        raise NuskybgdError(f"--realisations {args.realisations}: must be in [0, {MAX_REALISATIONS}] "
                            "(one PHA file each)")
    result = run_spec(args.bgdinfo, args.fit, regs, phas, savefile=args.savefile, fcxb=args.fcxb,
                      realisations=args.realisations, seed=args.seed, clobber=args.clobber)
    for name in result["files"]:
        log.info("wrote %s", name)
    for s in result["sources"]:
        bands = ", ".join(f"{b} keV {v:.1f} +- {s['band_errors'].get(b, float('nan')):.1f}"
                          for b, v in s["bands"].items())
        log.info("%s: predicted background %.1f +- %.1f counts (1-sigma from the fit, %s); %s", s["file"],
                 s["total"], s["total_error"], s["error_kind"], bands)
    return 0
