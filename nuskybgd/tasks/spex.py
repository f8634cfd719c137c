"""``nuskybgd spex``: SPEX files with the modelled background of source spectra."""

from ..errors import NuskybgdError

SUMMARY = "SPEX spectrum, response and command file with the modelled background"

DESCRIPTION = """\
Write, for each source spectrum, the SPEX files that fit the source with the
fitted background model of its region (the 'spec' rescaling: REFERENCE
sections 6-7). The SPEX response has five sectors on the one spectrum:
1 the source (RMF x source ARF), 2 apbgd (RMF x apbgd ARF), 3 intbgd (RMF
only), 4 fcxb (RMF x fCXB ARF), 5 intn (diag.rmf). Each background sector
gets a frozen-shape 'file' model holding the component's photon spectrum
with the fitted norms (norm 1, frozen; thaw it to let it float).

The source ARF is --arf (comma-separated, one per spectrum) or the
spectrum's ANCRFILE.

Outputs (NAME = savefile, default bgd_<first source region stem>; with
several sources NAME_<region stem>_spex...):
  NAME_spex.spo            the source spectrum (SPEX format)
  NAME_spex.res            the five-sector response
  NAME_spex_<comp>.dat     file-model spectra: apbgd, intbgd, fcxb, intn
  NAME_spex.com            SPEX commands: data, sectors, background models;
                           run 'log exe NAME_spex' in SPEX, add the source
                           model to sector 1 and fit

examples:
  nuskybgd spex bgdinfo.json bgd.json src.reg srcA.pha --arf srcA.arf
  nuskybgd spex bgdinfo.json bgd.json src.reg,src.reg srcA.pha,srcB.pha --arf srcA.arf,srcB.arf savefile=bgd_src
"""

LEGACY = {"savefile": "--savefile"}


def add_arguments(parser):
    """Arguments of ``nuskybgd spex``."""
    parser.add_argument("bgdinfo", help="bgdinfo.json of the fit")
    parser.add_argument("fit", help="fit result: NAME.json or an XCM file")
    parser.add_argument("regfiles", help="source region file(s), comma-separated")
    parser.add_argument("phafiles", help="source spectrum file(s), comma-separated, same order")
    parser.add_argument("--arf", default=None, help="source ARF(s), comma-separated (default: ANCRFILE)")
    parser.add_argument("--savefile", default=None, help="output name (default bgd_<first region stem>)")
    parser.add_argument("--fcxb", choices=("fitted", "preset"), default="fitted",
                        help="fCXB norm of the source regions (as spec)")


def _split(text, what):
    items = [x.strip() for x in str(text).split(",")]
    if not items or any(not x for x in items):
        raise NuskybgdError(f"{what} {text!r}: empty entry in the comma-separated list")
    return items


def run(args):
    """Run ``nuskybgd spex``."""
    import logging

    from ..analysis.spex import run_spex
    log = logging.getLogger("nuskybgd")
    regs = _split(args.regfiles, "source regions")
    phas = _split(args.phafiles, "source spectra")
    arfs = _split(args.arf, "source ARFs") if args.arf else None
    res = run_spex(args.bgdinfo, args.fit, regs, phas, arffiles=arfs, savefile=args.savefile, fcxb=args.fcxb,
                   clobber=args.clobber)
    for f in res["files"]:
        log.info("wrote %s", f)
    return 0
