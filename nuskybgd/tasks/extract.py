"""``nuskybgd extract``: spectrum, RMF and grouped spectrum of a sky region."""

SUMMARY = "extract a spectrum, RMF and grouped spectrum for a region"

DESCRIPTION = """\
Select the events of EVT whose sky X/Y pixel lies in the DS9 region REG
(DS9 rule: inside an include shape and outside every exclude shape) and
write, like the original's getspecnoarf.py (nuproducts + grppha):

  OUTDIR/OUTPREFIX_sr.pha       spectrum, 4096 PI channels, EXPOSURE from the
                                event file, BACKSCAL = region pixels / 1000^2
  OUTDIR/OUTPREFIX_sr.rmf       CALDB RMFs of DET0..3 averaged with the
                                fraction of the region's events on each
                                detector (DETFRAC0..3 keywords)
  OUTDIR/OUTPREFIX_sr_g30.pha   grouped: >= GRPMIN counts per group; the
                                trailing channels below GRPMIN form one group
                                with QUALITY 2 (as grppha) or, with
                                --tail merge, join the previous group

--elow/--ehigh (keV) limit the grouping to a band; channels outside get
QUALITY 5. --detabs folds the CALDB detector absorption into each detector's
RMF before averaging (like absrmf). The CALDB is $CALDB unless --caldb.
A region off the sky grid or without events is an error (nothing written).

examples:
  nuskybgd extract nu60001001002A01_cl.evt bgd1.reg --outprefix bgd1A --outdir bgd
  nuskybgd extract nu60001001002A01_cl.evt reg=bgd1.reg outprefix=bgd1A outdir=bgd
  nuskybgd extract evtB.evt src.reg --grpmin 20 --elow 3 --ehigh 79
"""

LEGACY = {"reg": "--reg", "indir": "--indir", "attfile": "--attfile"}


def add_arguments(parser):
    """Arguments of ``nuskybgd extract``."""
    parser.add_argument("evtfile", help="cleaned event file (sky X/Y, PI, DET_ID)")
    parser.add_argument("regfile", nargs="?", default=None, help="DS9 region file (or reg=FILE)")
    parser.add_argument("--reg", dest="reg_opt", default=None, help=argparse_suppress())
    parser.add_argument("--outprefix", default=None, help="output stem (default: region file stem)")
    parser.add_argument("--outdir", default=".", help="output folder (default .)")
    parser.add_argument("--grpmin", type=int, default=30, help="minimum counts per group (default 30)")
    parser.add_argument("--elow", type=float, default=None, help="lower energy of the grouped band, keV")
    parser.add_argument("--ehigh", type=float, default=None, help="upper energy of the grouped band, keV")
    parser.add_argument("--tail", choices=("bad", "merge"), default="bad",
                        help="trailing channels below grpmin: own group with QUALITY 2 (bad, default) "
                             "or merged into the previous group")
    parser.add_argument("--detabs", action="store_true", help="fold detector absorption into the RMF")
    parser.add_argument("--caldb", default=None, help="CALDB root (default $CALDB)")
    parser.add_argument("--plot", action="store_true",
                        help="also write OUTDIR/OUTPREFIX_sr_g<GRPMIN>.png (grouped spectrum)")
    parser.add_argument("--indir", default=None, help=argparse_suppress())
    parser.add_argument("--attfile", default=None, help=argparse_suppress())


def argparse_suppress():
    """Help text that hides an option (original-tool keys accepted and ignored).

    Returns
    -------
    str
        :data:`argparse.SUPPRESS`.
    """
    import argparse
    return argparse.SUPPRESS


def run(args):
    """Run ``nuskybgd extract``."""
    import logging
    from pathlib import Path

    from ..errors import NuskybgdError
    from ..products.extract import extract_spectrum
    reg = args.regfile or args.reg_opt
    if reg is None:
        raise NuskybgdError("extract: no region file given (REG or reg=FILE)")
    evt = args.evtfile
    if args.indir and not Path(evt).is_absolute() and not Path(evt).exists():
        evt = str(Path(args.indir) / evt)
    res = extract_spectrum(evt, reg, outprefix=args.outprefix, outdir=args.outdir, grpmin=args.grpmin,
                           elow=args.elow, ehigh=args.ehigh, detabs=args.detabs, caldb=args.caldb,
                           tail=args.tail, clobber=args.clobber)
    log = logging.getLogger("nuskybgd")
    for p in (res.pha, res.rmf, res.grouped):
        log.info("wrote %s", p)
    if args.plot:
        from ..products.extract import plot_spectrum
        png = res.grouped.with_suffix(".png")
        plot_spectrum(res, png, clobber=args.clobber)
        log.info("wrote %s", png)
    return 0
