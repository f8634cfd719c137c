"""``nuskybgd mkinstrmap``: instrument map with bad pixels removed."""

SUMMARY = "instrument map (detector number per DET1 pixel) with bad pixels removed"

DESCRIPTION = """\
Instrument map of the event file's module (REFERENCE section 3): the CALDB
INSTRMAP, with each live DET1 pixel replaced by the number (1..4) of the
detector whose raw pixel most likely records it (CALDB PIXPOS, grade-weighted
PDFs), and 0 at bad pixels. Bad pixels come from the event file's BADPIX
extensions, the CALDB BADPIX file and the optional user files; a bad pixel is
applied when it is bad for more than 80% of its extension's TSTOP - TSTART
(always when those keywords are absent) or when BADFLAG's second-to-last bit
(on-board disabled) is set. Output: <prefix>newinstrmap<A|B>.fits, image
with EXTNAME INSTRMAP (the chipmap= of projbgd).

The CALDB is $CALDB (or --caldb); the event file's INSTRUME and DATE-OBS
select the files.

examples:
  nuskybgd mkinstrmap nu60001047002A01_cl.evt
      -> newinstrmapA.fits
  nuskybgd mkinstrmap A01_cl.evt usrbpix=nu60001047002A_hp.fits,mybad.fits prefix=out/
      -> out/newinstrmapA.fits
"""

LEGACY = {"usrbpix": "--usrbpix", "prefix": "--prefix", "caldb": "--caldb"}


def add_arguments(parser):
    """Arguments of ``nuskybgd mkinstrmap``."""
    parser.add_argument("evtfile", help="event file (INSTRUME, DATE-OBS and its BADPIX extensions are used)")
    parser.add_argument("--usrbpix", default=None,
                        help="extra bad-pixel files with BADPIX extensions, comma-separated")
    parser.add_argument("--prefix", default="",
                        help="prefix of the output name (a folder must end with '/')")
    parser.add_argument("--caldb", default=None, help="CALDB root (default $CALDB)")


def run(args):
    """Run ``nuskybgd mkinstrmap``."""
    from ..analysis.instrmap import make_instrument_map
    user = [p for p in (args.usrbpix or "").split(",") if p.strip()]
    make_instrument_map(args.evtfile, prefix=args.prefix, usrbpix=user, caldb=args.caldb, clobber=args.clobber)
    return 0
