"""Instrument map of an observation with bad pixels removed (``nuskybgd mkinstrmap``)."""

import logging

from astropy.io import fits

from ..calib.caldb import Caldb
from ..errors import NuskybgdError
from ..io.events import read_badpix, read_events
from ..io.fitsfile import fits_text
from ..io.output import check_outputs, write_fits
from ..io.skyfiles import read_instrmap, read_pixpos
from ..sky.instrmap import bad_pixel_list, instrument_map, pixel_map

__all__ = ["make_instrument_map"]

log = logging.getLogger("nuskybgd")


def make_instrument_map(evtfile, prefix="", usrbpix=(), caldb=None, clobber=False):
    """Instrument map of an event file's module, bad pixels removed, written to a file.

    Parameters
    ----------
    evtfile : str or os.PathLike
        Event file (INSTRUME, DATE-OBS and its BADPIX extensions are used).
    prefix : str
        Output name prefix (a folder must end with ``/``); the file is
        ``<prefix>newinstrmap<A|B>.fits``.
    usrbpix : sequence of str
        Extra bad-pixel files with BADPIX extensions.
    caldb : str, os.PathLike or Caldb, optional
        CALDB root (default ``$CALDB``).
    clobber : bool
        Replace an existing output.

    Returns
    -------
    (numpy.ndarray, str)
        The map (int16, 360 x 360 DET1 pixels; detector number + 1, 0 where
        not live or bad) and the file written.

    Raises
    ------
    NuskybgdError
        Unreadable inputs, no DATE-OBS, missing CALDB files, existing output.
    """
    ev = read_events(evtfile, columns=("TIME",))
    evhdr, module, tables = ev.header, ev.module, list(ev.badpix)
    date = evhdr.get("DATE-OBS")
    if not date:
        raise NuskybgdError(f"{evtfile}: keyword DATE-OBS missing (needed to select CALDB files)")
    out = f"{prefix}newinstrmap{module}.fits"
    check_outputs([out], clobber)
    for p in usrbpix:
        tables += read_badpix(str(p).strip())
    cal = caldb if isinstance(caldb, Caldb) else Caldb(caldb)
    inst = f"FPM{module}"
    imap_file = cal.query("INSTRMAP", inst, date=date)
    pixpos_file = cal.query("PIXPOS", inst, date=date)
    badpix_file = cal.query("BADPIX", inst, date=date)
    tables += read_badpix(badpix_file.path)
    kept = []
    for t in tables:
        if t.instrume and t.instrume.upper() not in (inst, "FPM"):
            log.warning("%s: BADPIX table of %s ignored for module %s", t.source, t.instrume, module)
            continue
        kept.append(t)
    log.info("INSTRMAP %s, PIXPOS %s, BADPIX %s", imap_file.path, pixpos_file.path, badpix_file.path)
    imap, imhdr = read_instrmap(imap_file.path, "CALDB INSTRMAP")
    pm = pixel_map(read_pixpos(pixpos_file.path))
    bad = bad_pixel_list(kept)
    result = instrument_map(imap, pm, bad)
    hdu = fits.PrimaryHDU(result)
    for k in ("TELESCOP", "INSTRUME", "DETNAM", "CCLS0001", "CCNM0001", "CVSD0001", "CVST0001", "FILENAME"):
        if k in imhdr:
            hdu.header[k] = (imhdr[k], imhdr.comments[k])
    hdu.header["EXTNAME"] = "INSTRMAP"
    hdu.header["INSTRUME"] = inst
    for k in ("OBS_ID", "DATE-OBS"):
        if k in evhdr:
            hdu.header[k] = evhdr[k]
    hdu.header["HISTORY"] = fits_text(
        f"Created from {imap_file.path.name}, {pixpos_file.path.name}, {badpix_file.path.name}")
    hdu.header["HISTORY"] = f"Bad pixels: {len(bad)} raw pixels from {len(kept)} BADPIX tables"
    hdu.header["COMMENT"] = "Values: detector number + 1 (1..4); 0 = not live or bad."
    write_fits(fits.HDUList([hdu]), out, clobber=clobber)
    counts = [int((result == d).sum()) for d in (1, 2, 3, 4)]
    log.info("wrote %s: %d bad raw pixels; DET0..DET3 cover %s DET1 pixels", out, len(bad), counts)
    return result, out
