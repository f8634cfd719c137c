"""``nuskybgd calibrate``: epoch-dependent calibration bundles from stacked spectra."""

SUMMARY = "fit stacked spectra and write one calibration bundle (ratios.json, gain) per epoch"

DESCRIPTION = """\
Fit every stacked whole-detector spectrum of a 'nuskybgd stack' folder (or
of a manifest) with free norms of the internal background (apec, 29 lines, the lines of
--add-lines, intn) and a free detector gain (E' = slope E + offset), and write per epoch
a bundle in the ratios.json format (recorded line energies, per-detector
ifactors) plus the gain and line energies per detector:

  CALDIR/calibration.json       version, epochs (start, stop) and sha256 of every bundle file
  CALDIR/<epoch>/ratios.json    presets for 'nuskybgd fit --calibration CALDIR'
  CALDIR/<epoch>/gain.json      gain slope/offset, line energies, cstat/dof per detector
  CALDIR/summary.ecsv           one row per group
  CALDIR/trends.png             gain, line energies, ifactors, intn against time

Everything is written together or not at all. Spectra whose headers cannot
be trusted are given by a manifest (ECSV/CSV: file, epoch, module, det;
optional epoch_start, epoch_stop, exposure, area, module_area) with one
response (--rmf) for all; --albedo adds an aperture-shaped continuum for
the Earth albedo of occulted data (default on with --manifest).

examples:
  nuskybgd calibrate stacks cal
  nuskybgd calibrate stacks cal --workers 2
  nuskybgd calibrate - cal_real --manifest real.csv --rmf nuAdet3_20100101v002.rmf.gz --add-lines
  nuskybgd calibrate stacks cal --bootstrap 20    # gain errors from 20 replica fits per group
"""

LEGACY = {}


def add_arguments(parser):
    """Arguments of ``nuskybgd calibrate``."""
    from ..analysis.executor import add_dask_arguments
    parser.add_argument("stackdir", help="output of 'nuskybgd stack' ('-' with --manifest)")
    parser.add_argument("caldir", help="output folder of the bundles")
    parser.add_argument("--manifest", default=None, help="table of spectra (file, epoch, module, det, ...)")
    parser.add_argument("--rmf", default=None, help="response for every spectrum (default: each file's RESPFILE)")
    parser.add_argument("--detabs", default=None,
                        help="DETABS file for the albedo/aperture shape when there is no CALDB")
    parser.add_argument("--emin", type=float, default=3.0, help="lowest energy fitted, keV (default 3)")
    parser.add_argument("--emax", type=float, default=150.0, help="highest energy fitted, keV (default 150)")
    parser.add_argument("--albedo", default=None, action="store_true",
                        help="add an aperture-shaped continuum (Earth albedo); default on with --manifest")
    parser.add_argument("--no-albedo", dest="albedo", action="store_false", help="no albedo continuum")
    parser.add_argument("--fixed-gain", action="store_true", help="do not fit the gain (slope 1, offset 0)")
    parser.add_argument("--bootstrap", default="auto", metavar="N|auto",
                        help="gain errors from the fits of N Poisson replicas of each group's best fit "
                             "(parametric bootstrap; N >= 3, about N times the fit time; 0: curvature of the "
                             "profile); default auto: 10 replicas for groups under 2e5 counts, where the "
                             "curvature errors are too small, the curvature above")
    parser.add_argument("--add-lines", nargs="?", const="K-alpha", default=None, metavar="E1,E2,...",
                        help="add Lorentz lines (keV) to the intbgd model and fit them; without a value: Cr, "
                             "Fe and Ni K-alpha (5.411, 6.400, 7.472 keV), seen in late-epoch spectra; the bundle "
                             "then carries them for 'fit --calibration'")
    parser.add_argument("--version-label", default="1", help="version stored in calibration.json (default 1)")
    parser.add_argument("--no-plot", action="store_true", help="do not write trends.png")
    add_dask_arguments(parser)
    parser.add_argument("--clobber", action="store_true", help="overwrite existing output files")


def run(args):
    """Run ``nuskybgd calibrate``."""
    from ..analysis.calibrate import bootstrap_replicas, calibrate, load_manifest, load_stack_groups
    from ..analysis.executor import make_runner
    try:
        bootstrap = "auto" if args.bootstrap == "auto" else int(args.bootstrap)
    except ValueError:
        bootstrap = args.bootstrap
    bootstrap_replicas(bootstrap, 0.0, "--bootstrap")  # checked before the cluster starts
    from ..calib.presets import parse_added_lines
    add_lines = parse_added_lines(args.add_lines)
    # an external scheduler is checked before the stack is read (an unreachable one is reported at once)
    runner = make_runner(args.serial, args.workers, args.scheduler, desc="calibrate")
    if args.manifest:
        tasks = load_manifest(args.manifest, args.rmf, emin=args.emin, emax=args.emax,
                              albedo=True if args.albedo is None else args.albedo, fit_gain=not args.fixed_gain,
                              detabs_file=args.detabs, bootstrap=bootstrap,
                              add_lines=add_lines)
    else:
        tasks = load_stack_groups(args.stackdir, rmf=args.rmf, emin=args.emin, emax=args.emax,
                                  albedo=bool(args.albedo), fit_gain=not args.fixed_gain, detabs_file=args.detabs,
                                  bootstrap=bootstrap, add_lines=add_lines)
    calibrate(tasks, args.caldir, runner=runner, clobber=args.clobber, version=args.version_label,
              plot=not args.no_plot)
    return 0
