"""``nuskybgd stack``: stacked whole-detector background spectra from an archive."""

SUMMARY = "stack an archive into whole-detector background spectra per epoch, module and detector"

DESCRIPTION = """\
Scan a folder tree of observations (NuSTARDAS cleaned event files
nu<obsid><A|B><01|02>_cl.evt), write the observation table and one stacked
whole-detector OGIP spectrum per epoch x module x detector:

  STACKDIR/observations.ecsv                obsid, module, mode, start/stop, exposure, counts, selection, areas
  STACKDIR/stack_<epoch>_FPM<m>_DET<k>.pha  summed counts and EXPOSURE, DETNAM, EPOCH/EPOCHBEG/EPOCHEND,
                                            AREA (DET1 pixels used), OBSLIST extension
  STACKDIR/stack.json                       groups, files and their sha256 (input of 'nuskybgd calibrate')

Selections: occultation (mode-02 events, every observation must have them)
or science (mode-01 events outside the source-exclusion regions --exclude,
a region file name looked up in each observation folder, or one path).
Epochs: year, quarter, or explicit boundaries (comma-separated dates).
The per-observation work runs on Dask (--workers, --scheduler) or in this
process (--serial); the spectra are identical either way.

examples:
  nuskybgd stack arch stacks
  nuskybgd stack arch stacks_q --epochs quarter --workers 2
  nuskybgd stack arch stacks_sci --selection science --exclude source.reg
  nuskybgd stack arch stacks_e --epochs 2013-01-01,2016-01-01,2021-01-01 --scheduler tcp://127.0.0.1:8786
"""

LEGACY = {}


def add_arguments(parser):
    """Arguments of ``nuskybgd stack``."""
    from ..analysis.executor import add_dask_arguments
    parser.add_argument("archive", help="folder tree of observations")
    parser.add_argument("stackdir", help="output folder")
    parser.add_argument("--epochs", default="year",
                        help="year, quarter, or comma-separated boundary dates (default year)")
    parser.add_argument("--selection", default="occultation", choices=["occultation", "science"],
                        help="occultation-mode events, or science-mode events outside --exclude (default occultation)")
    parser.add_argument("--exclude", default=None, metavar="REGION",
                        help="source-exclusion region file (science selection)")
    parser.add_argument("--caldb", default=None, help="CALDB root (default ARCHIVE/caldb, else $CALDB)")
    add_dask_arguments(parser)
    parser.add_argument("--clobber", action="store_true", help="overwrite existing output files")


def run(args):
    """Run ``nuskybgd stack``."""
    from ..analysis.executor import make_runner
    from ..analysis.stack import stack_archive
    runner = make_runner(args.serial, args.workers, args.scheduler, desc="stack")
    stack_archive(args.archive, args.stackdir, epochs=args.epochs, selection=args.selection, exclude=args.exclude,
                  caldb=args.caldb, runner=runner, clobber=args.clobber)
    return 0
