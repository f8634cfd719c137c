"""``nuskybgd aspecthist``: aspect histogram from the DET1 reference-point file."""

SUMMARY = "aspect histogram from the DET1 reference-point file"

DESCRIPTION = """\
Histogram of where the DET1 reference point dwelt on the sky grid during the
good time intervals (REFERENCE section 2): every row of the DET1_REFPOINT
table whose TIME lies in a GTI (START <= t < STOP) adds its dwell time (time
to the next row) to pixel (floor(X_DET1), floor(Y_DET1)) of a 1000x1000
grid. The image is cropped to its non-zero pixels; X_OFF/Y_OFF hold the crop
offsets and EXPOSURE the total dwell time (s).

examples:
  nuskybgd aspecthist nu90201039002A_det1.fits gtifile=nu90201039002A01_gti.fits out=aspecthistA.fits
  nuskybgd aspecthist nu90201039002B_det1.fits --gtifile nu90201039002B01_gti.fits
      -> aspecthistB.fits (default name from INSTRUME)
"""

LEGACY = {"gtifile": "--gtifile", "out": "--out"}


def add_arguments(parser):
    """Arguments of ``nuskybgd aspecthist``."""
    parser.add_argument("det1file", help="DET1 reference-point file (nu<obsid><A|B>_det1.fits)")
    parser.add_argument("--gtifile", required=True, help="GTI file (STDGTI extension with START, STOP)")
    parser.add_argument("--out", default=None,
                        help="output FITS file (default aspecthist<A|B>.fits from INSTRUME)")


def run(args):
    """Run ``nuskybgd aspecthist``."""
    from ..analysis.aspecthist import make_aspect_histogram
    make_aspect_histogram(args.det1file, args.gtifile, out=args.out, clobber=args.clobber)
    return 0
