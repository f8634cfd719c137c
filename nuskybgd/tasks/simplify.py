"""``nuskybgd simplify``: background-only XSPEC state for the source spectra."""

SUMMARY = "background-only XSPEC state for the source spectra"

DESCRIPTION = """\
Remove the background-region spectra from the state written by 'nuskybgd
spec', replace every parameter link by its value and freeze every
background parameter, keeping only the source spectra with their
background model: ready for the user's source model (source 1).

Outputs (NAME = savefile, default: 'bgd_' -> 'bgd_only_' in the input name,
else 'bgd_only_' + input name):
  NAME.xcm        loadable in XSPEC with @NAME.xcm
  NAME.json       the same state, machine-readable
  NAME_sherpa.py  the same state in Sherpa

examples:
  nuskybgd simplify bgdinfo.json bgd_src.xcm           -> bgd_only_src.xcm
  nuskybgd simplify bgdinfo.json bgd_src.json savefile=src_bgdonly
"""

LEGACY = {"savefile": "--savefile"}


def add_arguments(parser):
    """Arguments of ``nuskybgd simplify``."""
    parser.add_argument("bgdinfo", help="bgdinfo.json of the fit")
    parser.add_argument("specfile", help="state written by 'nuskybgd spec' (XCM or JSON)")
    parser.add_argument("--savefile", default=None, help="output name (default bgd_only_<stem>)")


def run(args):
    """Run ``nuskybgd simplify``."""
    import logging

    from ..analysis.simplify import run_simplify
    res = run_simplify(args.bgdinfo, args.specfile, savefile=args.savefile, clobber=args.clobber)
    for f in res["files"]:
        logging.getLogger("nuskybgd").info("wrote %s", f)
    return 0
