"""``nuskybgd simulate-archive``: a multi-year simulated archive with epoch-dependent background."""

SUMMARY = "simulate an archive of observations over several years (epoch-dependent background)"

DESCRIPTION = """\
Write N small simulated observations spread over several years in the
NuSTARDAS layout, each with science-mode (01) and Earth-occultation-mode (02)
cleaned event files of both modules, its truth.json, and one CALDB for the
whole archive. The injected background changes with time: detector gain
drift, activation-line strengths and per-detector levels (see truth.json
and archive.json). The last observation also gets a ready bgdinfo.json
(regions, images, spectra) in OUTDIR/<obsid>/bgd/, so that
'nuskybgd fit' can be run on it.

  OUTDIR/archive.json, OUTDIR/caldb/
  OUTDIR/<obsid>/event_cl/nu<obsid>{A,B}{01,02}_cl.evt, ..._gti.fits, ..._det1.fits
  OUTDIR/<obsid>/truth.json, OUTDIR/<obsid>/source.reg (exclusion circle)

Observations are simulated in parallel through Dask (--workers, --scheduler)
or in this process (--serial).

examples:
  nuskybgd simulate-archive arch --observations 50 --seed 1
  nuskybgd simulate-archive arch --observations 8 --seed 2 --serial --no-bgdinfo
"""

LEGACY = {}


def add_arguments(parser):
    """Arguments of ``nuskybgd simulate-archive``."""
    from ..analysis.executor import add_dask_arguments
    parser.add_argument("outdir", help="archive folder (created)")
    parser.add_argument("--observations", type=int, default=50, help="number of observations (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--start", default="2013-01-01", help="first date, UTC (default 2013-01-01)")
    parser.add_argument("--stop", default="2021-01-01", help="last date, UTC (default 2021-01-01)")
    parser.add_argument("--exposure", type=float, default=5000.0,
                        help="science-mode exposure per observation, s (default 5000)")
    parser.add_argument("--occ-exposure", type=float, default=20000.0,
                        help="occultation-mode exposure per observation, s (default 20000)")
    parser.add_argument("--bgdinfo-exposure", type=float, default=50000.0,
                        help="science exposure of the observation with the ready bgdinfo.json, s (default 50000)")
    parser.add_argument("--no-bgdinfo", action="store_true", help="do not prepare the ready bgdinfo.json")
    parser.add_argument("--shared", default=None, help="shared data folder (default $NUSKYBGD_SHARED or ../shared)")
    add_dask_arguments(parser)
    parser.add_argument("--clobber", action="store_true", help="replace an existing archive")


def prepare_bgdinfo(archive, obsid, clobber=False):
    """Prepare the background inputs of one archive observation.

    Images, aspect histograms, instrument maps, projected images, regions,
    spectra and bgdinfo.json (the demo's steps), in ``ARCHIVE/<obsid>/bgd``.

    Parameters
    ----------
    archive : str or os.PathLike
        Archive folder written by ``nuskybgd simulate-archive``.
    obsid : str
        Observation ID (a subfolder of ``archive``).
    clobber : bool
        Overwrite existing files.

    Returns
    -------
    pathlib.Path
        bgdinfo.json.
    """
    import json
    from pathlib import Path

    from ..simulate.observation import SimulatedObs
    from ..analysis import demo

    root = Path(archive) / obsid
    ev = root / "event_cl"
    sim = SimulatedObs(root=root, obsid=obsid, events={m: ev / f"nu{obsid}{m}01_cl.evt" for m in "AB"},
                       gti={m: ev / f"nu{obsid}{m}01_gti.fits" for m in "AB"},
                       det1={m: ev / f"nu{obsid}{m}_det1.fits" for m in "AB"}, caldb=Path(archive) / "caldb",
                       truth_path=root / "truth.json", truth=json.loads((root / "truth.json").read_text()))
    out = root / "bgd"
    out.mkdir(exist_ok=True)
    images = demo.step_images(sim, out, clobber)
    aspects = demo.step_aspect(sim, out, clobber)
    imaps = demo.step_instrmap(sim, out, clobber)
    ap, det = demo.step_projbgd(images, imaps, aspects, out, clobber)
    regions = demo.step_regions(sim, out, clobber)
    spectra = demo.step_extract(sim, regions, out, clobber)
    return demo.step_bgdinfo(spectra, regions, images, ap, det, out, clobber)


def run(args):
    """Run ``nuskybgd simulate-archive``."""
    import logging

    from ..analysis.executor import make_runner
    from ..simulate.archive import simulate_archive

    log = logging.getLogger("nuskybgd")
    runner = make_runner(args.serial, args.workers, args.scheduler, desc="simulate-archive")
    index, results = simulate_archive(args.outdir, args.observations, seed=args.seed, start=args.start,
                                      stop=args.stop, exposure=args.exposure, occ_exposure=args.occ_exposure,
                                      shared=args.shared, clobber=args.clobber, runner=runner,
                                      last_exposure=None if args.no_bgdinfo else args.bgdinfo_exposure)
    log.info("wrote %d observations and %s", len(results), index)
    if not args.no_bgdinfo:
        path = prepare_bgdinfo(args.outdir, results[-1]["obsid"], clobber=args.clobber)
        log.info("ready for a fit: nuskybgd fit %s", path)
    return 0
