"""``nuskybgd mkimgs``: counts image of an event file in an energy band."""

SUMMARY = "counts image of an event file in an energy band"

DESCRIPTION = """\
Counts image of the events with energy E = 1.6 + 0.04 PI keV in
[ELOW, EHIGH) on the event file's sky X/Y grid (1000x1000 for NuSTAR), with
the celestial WCS of that grid and PA_PNT copied from the event header, so
that it can serve as the reference image of projbgd and of region masks.

The original (mkimgs evtfile outname elow ehigh) is accepted too: with three
values after the event file, the first is the output root name.

examples:
  nuskybgd mkimgs nu60001047002A01_cl.evt 3 25
      -> imA3to25keV.fits
  nuskybgd mkimgs nu60001047002A01_cl.evt im3to25keV 3 25
      -> im3to25keV.fits
  nuskybgd mkimgs B01_cl.evt 4 25 --out refB.fits
"""

LEGACY = {"out": "--out"}


def add_arguments(parser):
    """Arguments of ``nuskybgd mkimgs``."""
    parser.add_argument("evtfile", help="event file (EVENTS with PI, X, Y)")
    parser.add_argument("band", nargs="+", metavar="[OUTNAME] ELOW EHIGH",
                        help="energy band in keV, optionally preceded by an output root name")
    parser.add_argument("--out", default=None, help="output FITS image (default im<A|B><ELOW>to<EHIGH>keV.fits)")


def _band(args):
    from ..errors import NuskybgdError
    vals = list(args.band)
    root = None
    if len(vals) == 3:
        root, vals = vals[0], vals[1:]
    if len(vals) != 2:
        raise NuskybgdError("mkimgs: expected EVTFILE [OUTNAME] ELOW EHIGH")
    try:
        emin, emax = float(vals[0]), float(vals[1])
    except ValueError:
        raise NuskybgdError(f"mkimgs: energies {vals[0]!r} {vals[1]!r} are not numbers (keV)") from None
    return root, emin, emax


def run(args):
    """Run ``nuskybgd mkimgs``."""
    from ..analysis.mkimgs import make_counts_image
    root, emin, emax = _band(args)
    make_counts_image(args.evtfile, emin, emax, out=args.out, root=root, clobber=args.clobber)
    return 0
