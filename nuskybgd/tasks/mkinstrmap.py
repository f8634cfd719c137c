"""``nuskybgd mkinstrmap``: instrument map with bad pixels removed."""

SUMMARY = "instrument map (detector number per DET1 pixel) with bad pixels removed"

DESCRIPTION = """\
Instrument map of the event file's module (REFERENCE section 3): the CALDB
INSTRMAP, with each live DET1 pixel replaced by the number (1..4) of the
detector whose raw pixel most likely records it (CALDB PIXPOS, grade-weighted
PDFs), and 0 at bad pixels. Bad pixels come from the event file's BADPIX
extensions, the CALDB BADPIX file and the optional user files; a bad pixel is
applied when it is bad for more than 80% of its extension's TSTOP - TSTART
(always when those keywords are absent) or when BADFLAG's second-to-last bit
(on-board disabled) is set. Output: <prefix>newinstrmap<A|B>.fits, image
with EXTNAME INSTRMAP (the chipmap= of projbgd).

The CALDB is $CALDB (or --caldb); the event file's INSTRUME and DATE-OBS
select the files.

examples:
  nuskybgd mkinstrmap nu60001047002A01_cl.evt
      -> newinstrmapA.fits
  nuskybgd mkinstrmap A01_cl.evt usrbpix=nu60001047002A_hp.fits,mybad.fits prefix=out/
      -> out/newinstrmapA.fits
"""

LEGACY = {"usrbpix": "--usrbpix", "prefix": "--prefix", "caldb": "--caldb"}


def add_arguments(parser):
    """Arguments of ``nuskybgd mkinstrmap``."""
    parser.add_argument("evtfile", help="event file (INSTRUME, DATE-OBS and its BADPIX extensions are used)")
    parser.add_argument("--usrbpix", default=None,
                        help="extra bad-pixel files with BADPIX extensions, comma-separated")
    parser.add_argument("--prefix", default="",
                        help="prefix of the output name (a folder must end with '/')")
    parser.add_argument("--caldb", default=None, help="CALDB root (default $CALDB)")


def run(args):
    """Run ``nuskybgd mkinstrmap``."""
    import logging

    from astropy.io import fits

    from ..calib.caldb import Caldb
    from ..errors import NuskybgdError
    from ..io.events import read_badpix, read_events
    from ..io.fitsfile import fits_text
    from ..io.output import write_fits
    from ..io.skyfiles import read_instrmap, read_pixpos
    from ..sky.instrmap import bad_pixel_list, instrument_map, pixel_map
    log = logging.getLogger("nuskybgd")

    evt = args.evtfile
    ev = read_events(evt, columns=("TIME",))
    evhdr, module, tables = ev.header, ev.module, list(ev.badpix)
    date = evhdr.get("DATE-OBS")
    if not date:
        raise NuskybgdError(f"{evt}: keyword DATE-OBS missing (needed to select CALDB files)")
    out = f"{args.prefix}newinstrmap{module}.fits"
    user = [p for p in (args.usrbpix or "").split(",") if p.strip()]
    from ..io.output import check_outputs
    check_outputs([out], args.clobber)
    for p in user:
        tables += read_badpix(p.strip())
    cal = Caldb(args.caldb)
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
    write_fits(fits.HDUList([hdu]), out, clobber=args.clobber)
    counts = [int((result == d).sum()) for d in (1, 2, 3, 4)]
    log.info("wrote %s: %d bad raw pixels; DET0..DET3 cover %s DET1 pixels", out, len(bad), counts)
    return 0
