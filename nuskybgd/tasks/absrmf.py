"""``nuskybgd absrmf``: RMFs with detector absorption, one per detector."""

import math

from ..errors import NuskybgdError

SUMMARY = "RMFs with detector absorption, one per detector"

DESCRIPTION = """\
Multiply every row of the response matrix by the detector absorption
(CALDB DETABS) at its energy, for each detector of the event file's module:
OUTPREFIX<det><module>.rmf (det 0..3). With --fractions f0,f1,f2,f3 a single
response weighted by those detector fractions is written instead
(OUTPREFIX<module>.rmf): sum_k f_k DETABS_k(E) R_k(E, c).

The event file gives INSTRUME (FPMA/FPMB) and DATE-OBS for the CALDB lookup
($CALDB). rmffile= and detabsfile= replace the CALDB files.

examples:
  nuskybgd absrmf nu60001047002A01_cl.evt rmf/det
      -> rmf/det0A.rmf ... rmf/det3A.rmf
  nuskybgd absrmf A01_cl.evt out_ rmffile=my.rmf detabsfile=nuAdetabs.fits
  nuskybgd absrmf A01_cl.evt src_ --fractions 0.5,0.5,0,0
"""

LEGACY = {"rmffile": "--rmffile", "detabsfile": "--detabsfile"}


def add_arguments(parser):
    """Arguments of ``nuskybgd absrmf``."""
    parser.add_argument("evtfile", help="event file (INSTRUME and DATE-OBS are read)")
    parser.add_argument("outprefix", help="prefix of the output files (may include a folder)")
    parser.add_argument("--rmffile", default="CALDB", help="RMF to absorb, or CALDB (default)")
    parser.add_argument("--detabsfile", default="CALDB", help="DETABS file, or CALDB (default)")
    parser.add_argument("--fractions", default=None,
                        help="comma-separated weights of DET0..DET3: write one weighted RMF")


def _fractions(text):
    if text is None:
        return None
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        raise NuskybgdError(f"--fractions {text!r}: expected 4 comma-separated numbers") from None
    if len(vals) != 4:
        raise NuskybgdError(f"--fractions {text!r}: expected 4 comma-separated numbers, got {len(vals)}")
    if not all(math.isfinite(v) and v >= 0 for v in vals) or not sum(vals) > 0:
        raise NuskybgdError(f"--fractions {text!r}: detector fractions must be finite, >= 0, not all 0")
    return vals


def run(args):
    """Run ``nuskybgd absrmf``."""
    import logging

    from ..products.absrmf import make_absrmf
    names = make_absrmf(args.evtfile, args.outprefix, rmffile=args.rmffile,
                        detabsfile=args.detabsfile, fractions=_fractions(args.fractions),
                        clobber=args.clobber)
    log = logging.getLogger("nuskybgd")
    for n in names:
        log.info("wrote %s", n)
    return 0
