"""``nuskybgd projbgd``: aperture and detector images projected onto the sky."""

SUMMARY = "project aperture and detector images onto the sky"

DESCRIPTION = """\
Project the aperture (stray-light) image and the detector masks of one module
onto the reference sky image (REFERENCE section 4): rotate the DET1 images by
the roll angle (PA_PNT + 1 deg) around the aspect-histogram peak, then smear
them by the aspect histogram (an exact circular convolution), all divided by
the total dwell time. Writes OUT (aperture image) and det<n><A|B>im.fits for
each requested detector n-1 (det=1234 -> det0..det3), in the current folder
or --outdir; every file carries the reference image's header.

The reference image must be 1000x1000 with a celestial WCS and PA_PNT (e.g.
from 'nuskybgd mkimgs'); chipmap= is the INSTRMAP from 'nuskybgd mkinstrmap'
and aspect= the histogram from 'nuskybgd aspecthist'.

examples:
  nuskybgd projbgd refimg=imA4to25keV.fits out=bgdapA.fits mod=A det=1234 \\
      chipmap=newinstrmapA.fits aspect=aspecthistA.fits
      -> bgdapA.fits, det0Aim.fits ... det3Aim.fits
  nuskybgd projbgd --refimg imB.fits --out bgd/bgdapB.fits --mod B --det 12 \\
      --chipmap newinstrmapB.fits --aspect aspecthistB.fits --outdir bgd --plot bgd/projB.png
"""

LEGACY = {"refimg": "--refimg", "out": "--out", "mod": "--mod", "det": "--det",
          "chipmap": "--chipmap", "aspect": "--aspect"}


def add_arguments(parser):
    """Arguments of ``nuskybgd projbgd``."""
    parser.add_argument("--refimg", required=True, help="reference sky image (1000x1000, WCS, PA_PNT)")
    parser.add_argument("--out", required=True, help="output aperture image (e.g. bgdapA.fits)")
    parser.add_argument("--mod", required=True, help="module, A or B")
    parser.add_argument("--det", default="1234", help="detectors to project, digits 1..4 (default 1234)")
    parser.add_argument("--chipmap", required=True, help="instrument map with an INSTRMAP image (mkinstrmap)")
    parser.add_argument("--aspect", required=True, help="aspect histogram (aspecthist)")
    parser.add_argument("--outdir", default=".", help="folder of the det<n><A|B>im.fits files (default .)")
    parser.add_argument("--plot", default=None, help="also save a PNG of the projected images")


def run(args):
    """Run ``nuskybgd projbgd``."""
    import logging

    from ..analysis.projbgd import make_projections, parse_detectors
    _, outputs = make_projections(args.refimg, args.mod, args.chipmap, args.aspect, args.out,
                                  detectors=parse_detectors(args.det), outdir=args.outdir, plot=args.plot,
                                  clobber=args.clobber)
    logging.getLogger("nuskybgd").info("wrote %s", ", ".join(outputs))
    return 0
