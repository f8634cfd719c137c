"""``nuskybgd simulate``: a synthetic NuSTARDAS-layout observation with its CALDB."""

SUMMARY = "make a synthetic NuSTARDAS-layout observation with its CALDB"

DESCRIPTION = """\
Write a simulated observation of both modules (FPMA, FPMB) in the NuSTARDAS
layout, drawn from the four-component background model (aperture stray
light, internal lines and continuum, focused CXB) with the projbgd geometry,
plus one point source unless --no-source:

  OUTDIR/event_cl/nu<obsid>{A,B}01_cl.evt   cleaned events (EVENTS, GTI, BADPIX)
  OUTDIR/event_cl/nu<obsid>{A,B}01_gti.fits good time intervals (STDGTI)
  OUTDIR/event_cl/nu<obsid>{A,B}_det1.fits  DET1 reference-point track
  OUTDIR/caldb/                             CALDB tree (set CALDB to it)
  OUTDIR/truth.json                         every injected quantity

The aspect track is the real one of observation 80415201001 stretched in
time to the requested exposure; the shared data folder is found through
$NUSKYBGD_SHARED or ../shared next to the repository.

examples:
  nuskybgd simulate sim --seed 1
  nuskybgd simulate sim2 --seed 7 --exposure 20000 --no-source
  export CALDB=$PWD/sim/caldb
"""

LEGACY = {}


def add_arguments(parser):
    """Arguments of ``nuskybgd simulate``."""
    parser.add_argument("outdir", help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--exposure", type=float, default=50000.0, help="exposure, s (default 50000)")
    parser.add_argument("--obsid", default="60001001002", help="OBS_ID (default 60001001002)")
    parser.add_argument("--pa-pnt", type=float, default=63.7, help="roll angle PA_PNT, degrees (default 63.7)")
    parser.add_argument("--ra", type=float, default=150.1, help="RA of the nominal pointing, deg (default 150.1)")
    parser.add_argument("--dec", type=float, default=2.2, help="Dec of the nominal pointing, deg (default 2.2)")
    parser.add_argument("--no-source", dest="source", action="store_false",
                        help="background only (default: one point source off the field centre)")
    parser.add_argument("--source-rate", type=float, default=0.2,
                        help="point-source photon rate before detector gaps, counts/s (default 0.2)")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="write a quick-look figure (counts images, spectra by component)")
    parser.add_argument("--shared", default=None, help="shared data folder (default $NUSKYBGD_SHARED or ../shared)")


def run(args):
    """Run ``nuskybgd simulate``."""
    import logging

    from ..simulate.observation import simulate_observation
    obs = simulate_observation(args.outdir, seed=args.seed, obsid=args.obsid, exposure=args.exposure,
                               pa_pnt=args.pa_pnt, ra=args.ra, dec=args.dec, source=args.source,
                               source_rate=args.source_rate, shared=args.shared, clobber=args.clobber,
                               plot=args.plot)
    log = logging.getLogger("nuskybgd")
    for p in obs.paths():
        log.info("wrote %s", p)
    log.info("CALDB: %s (export CALDB=%s)", obs.caldb, obs.caldb)
    return 0
