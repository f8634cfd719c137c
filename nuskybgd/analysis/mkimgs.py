"""Counts image of an event file in an energy band (``nuskybgd mkimgs``)."""

import logging

from ..io.events import read_events
from ..io.output import write_fits
from ..io.skyfiles import image_hdulist
from ..sky.images import counts_image

__all__ = ["make_counts_image"]

log = logging.getLogger("nuskybgd")


def make_counts_image(evtfile, emin, emax, out=None, root=None, clobber=False):
    """Counts image of the events in a band on the sky grid, written to a file.

    Parameters
    ----------
    evtfile : str or os.PathLike
        Event file (EVENTS with PI, X, Y).
    emin, emax : float
        Band, keV (E = 1.6 + 0.04 PI in [emin, emax)).
    out : str or os.PathLike, optional
        Output FITS image (default ``<root>.fits``, else
        ``im<A|B><emin>to<emax>keV.fits``).
    root : str, optional
        Output root name (the original's ``mkimgs evtfile outname ...``).
    clobber : bool
        Replace an existing output.

    Returns
    -------
    (numpy.ndarray, astropy.io.fits.Header, str)
        The image (counts per sky pixel), its header (celestial WCS, PA_PNT,
        CHANMIN/CHANMAX) and the file written.
    """
    ev = read_events(evtfile, columns=("PI", "X", "Y", "TIME"))
    img, header = counts_image(ev, emin, emax)
    out = str(out or (f"{root}.fits" if root else f"im{ev.module}{emin:g}to{emax:g}keV.fits"))
    write_fits(image_hdulist(img, header, history=[f"nuskybgd mkimgs {evtfile} {emin:g} {emax:g}"]),
               out, clobber=clobber)
    log.info("wrote %s: %d counts in %g-%g keV (PI %d-%d)", out, int(img.sum()), emin, emax,
             header["CHANMIN"], header["CHANMAX"])
    return img, header, out
