"""``nuskybgd fit``: fit the background model to background-region spectra."""

from __future__ import annotations

import logging
import sys

from ..io.bgdinfo import TEMPLATE

SUMMARY = "fit the background model to background-region spectra"

DESCRIPTION = f"""\
Fit the four-component NuSTAR background model (apbgd, intbgd, fcxb, intn;
XSPEC sources 2-5) simultaneously to the spectra of background regions.
Region weights come from the region masks on the projected aperture and
detector images (nuskybgd projbgd); the first spectrum of each module is its
reference, and every other spectrum's norms are tied to it by fixed ratios.
The free parameters are norms, so the fit is a Poisson (cstat) or chi-square
likelihood solved by Newton iterations on folded templates; 1-sigma errors
come from the Fisher matrix.

Outputs (an existing file is an error unless --clobber):
  NAME.xcm          XSPEC save file (xspec> @NAME.xcm, from NAME's folder)
  NAME.json         every parameter (value, error, free/frozen/linked, link
                    ratio), statistic, dof, weights, software versions
  NAME_sherpa.py    script that rebuilds the fitted state in Sherpa
  NAME.png          data, model, components and residuals per spectrum
  NAME.log          summary of the run
  NAME_apbgd<n>.arf aperture-background ARF of spectrum n (named by the XCM)

Beyond the norms (XSPEC-style; fitted by variable projection: the norms are
solved exactly for every trial shape, a bounded Levenberg-Marquardt moves
the rest):
  --gain fit        a free response gain (slope, offset keV) per spectrum,
                    XSPEC's "gain fit": response energies E' = E/slope - offset
  --gain link       one free gain per module
  --gain-start S,O  starting gain (slope, offset keV) of every spectrum; fixed
                    at that value without --gain
  --start LIST      starting values and limits (XSPEC newpar) of named
                    parameters, SOURCE:COMPONENT.PARAM=VALUE[:MIN[:MAX]], e.g.
                    intbgd:lorentz_4.LineE=6.4,intbgd:lorentz_4.Width=0.3:0.02
  --thaw LIST       shape parameters to fit, SOURCE:COMPONENT.PARAM, e.g.
                    intbgd:lorentz_5.LineE,intbgd:lorentz_30.LineE; "LineE>19"
                    frees every line energy above 19 keV
  --free-detectors intn,intbgd
                    one free norm per detector for these components (regions
                    on one detector each, e.g. whole-detector spectra); the
                    log and JSON list the detector norms and the likelihood-
                    ratio test against the linked model
  --errors LIST     90 % profile intervals (delta stat 2.706) of the named
                    parameters (same names, or gain:N.slope / gain:N.offset)
Whole-detector spectra: give "detectors": ["A0", "A1", ...] in bgdinfo.json
instead of regions and images (and "respfiles" to replace RESPFILE).

--no-fit writes the presets (the original tool's behaviour).
--original-norms gives the reference spectrum's intbgd norms the original's
area-weighted mean (not scaled with area) and intn the original's
sum_k area_k ifactor_k / 599.75; by default every intbgd/intn norm is
sum_k (area_k / A_k) ifactor_k with A_k the area of detector k, so a whole
detector starts at ifactor_k.

bgdinfo.json template (paths relative to the JSON file's folder):
{TEMPLATE}

examples:
  nuskybgd fit bgdinfo.json
  nuskybgd fit bgdinfo.json savefile=bgdparams --statistic chi
  nuskybgd fit bgdinfo.json --savefile out/bgd --no-fit --clobber
  nuskybgd fit stacked.json --gain fit --thaw intbgd:lorentz_5.LineE,intbgd:lorentz_8.LineE
  nuskybgd fit stacked.json --gain fit --free-detectors intn,intbgd --errors gain:1.slope
"""

LEGACY = {"savefile": "--savefile"}

log = logging.getLogger("nuskybgd")


def add_arguments(parser):
    """Arguments of ``nuskybgd fit``."""
    parser.add_argument("bgdinfo", help="bgdinfo.json (see the template above)")
    parser.add_argument("--savefile", default="bgdparams",
                        help="output name NAME (folder allowed; .xcm suffix dropped; default bgdparams)")
    parser.add_argument("--statistic", default="cstat", choices=["cstat", "chi"],
                        help="fit statistic (default cstat; chi uses the data variance as the original)")
    parser.add_argument("--no-fit", action="store_true", help="write the presets without fitting")
    parser.add_argument("--emin", type=float, default=3.0, help="lowest energy noticed, keV (default 3)")
    parser.add_argument("--emax", type=float, default=150.0, help="highest energy noticed, keV (default 150)")
    parser.add_argument("--original-norms", action="store_true",
                        help="reference intbgd norms as the original (area-weighted mean)")
    parser.add_argument("--no-plot", action="store_true", help="do not write NAME.png")
    parser.add_argument("--caldb", default=None,
                        help="CALDB root for DETABS/Be window of the apbgd ARFs (default $CALDB)")
    parser.add_argument("--gain", choices=["fit", "link"], default=None,
                        help="fit a response gain per spectrum (fit) or per module (link)")
    parser.add_argument("--gain-start", default=None, metavar="SLOPE,OFFSET",
                        help="starting (or, without --gain, fixed) response gain of every spectrum")
    parser.add_argument("--start", default=None, metavar="LIST",
                        help="starting values and limits, like XSPEC newpar: "
                             "SOURCE:COMPONENT.PARAM=VALUE[:MIN[:MAX]],...")
    parser.add_argument("--thaw", default=None, metavar="LIST",
                        help="shape parameters to fit: SOURCE:COMPONENT.PARAM,... or LineE>E")
    parser.add_argument("--free-detectors", default=None, metavar="COMPONENTS",
                        help="one free norm per detector for intn and/or intbgd (comma-separated)")
    parser.add_argument("--errors", default=None, metavar="PARAMS",
                        help="90%% profile intervals of these parameters (comma-separated)")
    parser.add_argument("--detabs", default=None,
                        help="DETABS file for the apbgd ARFs (instead of a CALDB query)")
    parser.add_argument("--calibration", default=None, metavar="CALDIR",
                        help="presets from the epoch bundle of 'nuskybgd calibrate' whose epoch holds the "
                             "spectra's DATE-OBS (default: the shipped ratios.json)")
    parser.add_argument("--add-lines", nargs="?", const="K-alpha", default=None, metavar="E1,E2,...",
                        help="add Lorentz lines (keV) to the intbgd model, free norms linked between spectra "
                             "like the apec; without a value: Cr, Fe and Ni K-alpha (5.411, 6.400, 7.472 keV), "
                             "which late-epoch spectra show and the shipped presets lack")
    parser.add_argument("--clobber", action="store_true", help="overwrite existing output files")


def run(args):
    """Run ``nuskybgd fit``."""
    from ..analysis.fit import fit_background, parameter_table
    res = fit_background(args.bgdinfo, savefile=args.savefile, statistic=args.statistic, no_fit=args.no_fit,
                         emin=args.emin, emax=args.emax, original_norms=args.original_norms,
                         clobber=args.clobber, plot=not args.no_plot, caldb=args.caldb, gain=args.gain,
                         thaw=args.thaw, free_detectors=args.free_detectors, errors=args.errors,
                         detabs=args.detabs, calibration=args.calibration, gain_start=args.gain_start,
                         add_lines=args.add_lines,
                         start=args.start)
    print(parameter_table(res.state), file=sys.stdout)
    return 0
