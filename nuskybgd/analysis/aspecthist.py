"""Aspect histogram of an observation (``nuskybgd aspecthist``)."""

import logging

from ..io.events import module_from_header, read_det1_refpoint, read_gti
from ..sky.aspect import aspect_histogram, write_aspect_histogram

__all__ = ["make_aspect_histogram"]

log = logging.getLogger("nuskybgd")


def make_aspect_histogram(det1file, gtifile, out=None, clobber=False):
    """Aspect histogram of the DET1 reference point during the GTIs, written to a file.

    Parameters
    ----------
    det1file : str or os.PathLike
        DET1 reference-point file (``nu<obsid><A|B>_det1.fits``).
    gtifile : str or os.PathLike
        GTI file (STDGTI, else GTI extension).
    out : str or os.PathLike, optional
        Output file (default ``aspecthist<A|B>.fits`` from INSTRUME).
    clobber : bool
        Replace an existing output.

    Returns
    -------
    (AspectHistogram, str)
        The histogram (dwell time in s per sky pixel) and the file written.
    """
    time, x, y, header = read_det1_refpoint(det1file)
    start, stop = read_gti(gtifile)
    if out is None:
        out = f"aspecthist{module_from_header(header, det1file)}.fits"
    hist = aspect_histogram(time, x, y, start, stop, header=header, path=det1file)
    write_aspect_histogram(hist, out, clobber=clobber,
                           history=[f"nuskybgd aspecthist {det1file} gtifile={gtifile}"])
    px, py = hist.peak
    log.info("wrote %s: %dx%d pixels from (%d, %d), exposure %.3f s in %.3f s of GTI, peak at (%d, %d)",
             out, hist.image.shape[1], hist.image.shape[0], hist.x_off, hist.y_off, hist.exposure,
             float((stop - start).sum()), px, py)
    return hist, str(out)
