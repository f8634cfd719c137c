"""``nuskybgd image``: background model images in an energy band."""

from ..errors import NuskybgdError

SUMMARY = "background model images in an energy band"

DESCRIPTION = """\
Spread the fitted background model over the sky (REFERENCE section 7): for
each module, the counts the fit predicts in the band for the reference
spectrum are distributed with the projected aperture and detector images.
The sum of an image over any region equals the counts the spectral model
predicts for that region (the spec task's background spectrum).

Outputs (counts per sky pixel for the reference spectrum's exposure, WCS of
the reference image):
  PREFIXbgd_apbgd_<m>.fits, PREFIXbgd_intbgd_<m>.fits, PREFIXbgd_fcxb_<m>.fits,
  PREFIXbgd_intn_<m>.fits, their sum PREFIXbgd_total_<m>.fits,
  PREFIXbgd_fcxb_<n>.fits for background spectrum n (its fitted fCXB inside
  its region), and a preview PREFIXbgd_<m>.png (beside the counts image of
  --evtfile for that module, when given).

FIT is the JSON written by 'nuskybgd fit' or an XCM file (XSPEC's, the
original tool's or ours) whose spectra are bgdinfo's, in order.

examples:
  nuskybgd image bgdinfo.json bgdparams.json 3 20
  nuskybgd image bgdinfo.json bgdparams.xcm 3 20 prefix=img/ --evtfile A01_cl.evt
"""

LEGACY = {"prefix": "--prefix"}


def add_arguments(parser):
    """Arguments of ``nuskybgd image``."""
    parser.add_argument("bgdinfo", help="bgdinfo.json of the fit")
    parser.add_argument("fit", help="fit result: NAME.json or an XCM file")
    parser.add_argument("emin", type=float, help="band lower bound, keV")
    parser.add_argument("emax", type=float, help="band upper bound, keV")
    parser.add_argument("--prefix", default="", help="prefix of the output files (may include a folder)")
    parser.add_argument("--evtfile", action="append", default=[],
                        help="event file whose counts image is shown beside the model (once per module)")


def run(args):
    """Run ``nuskybgd image``."""
    import logging
    import math

    from ..analysis.images import make_images
    log = logging.getLogger("nuskybgd")
    if not (math.isfinite(args.emin) and math.isfinite(args.emax)) or not args.emin < args.emax:
        raise NuskybgdError(f"energy band {args.emin:g}-{args.emax:g} keV: emin must be below emax")
    names = make_images(args.bgdinfo, args.fit, args.emin, args.emax, prefix=args.prefix,
                        evtfiles=args.evtfile, clobber=args.clobber)
    for n in names:
        log.info("wrote %s", n)
    return 0
