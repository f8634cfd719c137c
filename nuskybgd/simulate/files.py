"""Writers of the simulated observation's files (events, GTI, DET1 track, BADPIX), NuSTARDAS layout."""

import numpy as np
from astropy.io import fits
from astropy.time import Time, TimeDelta

from ..constants import SKY_PIXEL_ARCSEC

__all__ = ["badpix_hdus", "gti_hdu", "mission_date", "observation_header", "apply_cards", "write_events_file",
           "write_gti_file", "write_det1_file", "json_default"]

#: Sky grid side, pixels.
SKY_SIZE = 1000


def badpix_hdus(bad, module, tstart, tstop):
    """BADPIX extensions (one per detector) of a simulated event file.

    Parameters
    ----------
    bad : dict
        Detector 0..3 -> raw pixel numbers (rawx + 32 rawy) flagged bad.
    module : str
        ``"A"`` or ``"B"``.
    tstart, tstop : float
        Validity of the flags, s (mission time).

    Returns
    -------
    list of astropy.io.fits.BinTableHDU
    """
    hdus = []
    for k in range(4):
        raw = np.array(bad[k], dtype=np.int64)
        n = raw.size
        flags = np.zeros((n, 16), dtype=bool)
        flags[:, -1] = True  # bit 0: bad pixel from the on-ground list
        cols = [fits.Column(name="RAWX", format="B", unit="pixel", array=(raw % 32).astype(np.uint8)),
                fits.Column(name="RAWY", format="B", unit="pixel", array=(raw // 32).astype(np.uint8)),
                fits.Column(name="TIME", format="D", unit="s", array=np.full(n, tstart)),
                fits.Column(name="TIME_STOP", format="D", unit="s", array=np.full(n, tstop)),
                fits.Column(name="BADFLAG", format="16X", array=flags)]
        h = fits.BinTableHDU.from_columns(cols, name="BADPIX")
        h.header["EXTVER"] = k + 1
        h.header["HDUCLASS"] = "OGIP"
        h.header["HDUCLAS1"] = "BADPIX"
        h.header["TELESCOP"] = "NuSTAR"
        h.header["INSTRUME"] = f"FPM{module}"
        h.header["DETNAM"] = f"DET{k}"
        h.header["TSTART"] = tstart
        h.header["TSTOP"] = tstop
        hdus.append(h)
    return hdus


def gti_hdu(start, stop, header_cards, extname):
    """A GTI extension.

    Parameters
    ----------
    start, stop : array_like
        Interval bounds, s (mission time).
    header_cards : dict
        Keywords copied into the header.
    extname : str
        ``GTI`` or ``STDGTI``.

    Returns
    -------
    astropy.io.fits.BinTableHDU
    """
    h = fits.BinTableHDU.from_columns(
        [fits.Column(name="START", format="D", unit="s", array=np.asarray(start, float)),
         fits.Column(name="STOP", format="D", unit="s", array=np.asarray(stop, float))], name=extname)
    h.header["HDUCLASS"] = "OGIP"
    h.header["HDUCLAS1"] = "GTI"
    h.header["HDUCLAS2"] = "STANDARD"
    for k, v in header_cards.items():
        h.header[k] = v
    return h


def mission_date(t):
    """UTC date of a NuSTAR mission time.

    Parameters
    ----------
    t : float
        Seconds since 2010-01-01T00:00:00 UTC.

    Returns
    -------
    str
        ``YYYY-MM-DDThh:mm:ss``.
    """
    # NuSTAR mission time: seconds since 2010-01-01T00:00:00 UTC (MJDREF in TT).
    return (Time("2010-01-01T00:00:00", scale="utc") + TimeDelta(float(t), format="sec")).utc.isot[:19]


def observation_header(module, obsid, object_name, ra, dec, pa_pnt, o, date_obs):
    """Observation keywords of every simulated file of a module.

    Parameters
    ----------
    module : str
        ``"A"`` or ``"B"``.
    obsid, object_name : str
        OBS_ID and OBJECT.
    ra, dec : float
        Pointing, deg.
    pa_pnt : float
        Roll angle, deg.
    o : dict
        The module's simulation (``t`` track times, ``gs``/``ge`` GTIs, s;
        ``expo`` exposure, s).
    date_obs : str
        Unused (the date follows from TSTART).

    Returns
    -------
    dict
        Keyword -> value.
    """
    tstart, tstop = float(o["t"][0]), float(o["t"][-1])
    return {
        "TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}", "OBS_ID": obsid, "OBJECT": object_name,
        "TARG_ID": 0, "RA_OBJ": ra, "DEC_OBJ": dec, "RA_NOM": ra, "DEC_NOM": dec, "RA_PNT": ra, "DEC_PNT": dec,
        "PA_PNT": float(pa_pnt), "EQUINOX": 2000.0, "RADECSYS": "FK5", "TIMESYS": "TT", "MJDREFI": 55197,
        "MJDREFF": 7.6601852e-04, "TIMEUNIT": "s", "TIMEREF": "LOCAL", "TASSIGN": "SATELLITE",
        "TSTART": tstart, "TSTOP": tstop, "TELAPSE": tstop - tstart,
        "DATE-OBS": mission_date(tstart), "DATE-END": mission_date(tstop),
        "ONTIME": float(np.sum(o["ge"] - o["gs"])), "LIVETIME": o["expo"], "EXPOSURE": o["expo"],
        "DEADC": o["expo"] / float(np.sum(o["ge"] - o["gs"])),
        "ORIGIN": "nuskybgd", "CREATOR": "nuskybgd simulate",
    }


def apply_cards(header, cards):
    """Set keywords in a header.

    Parameters
    ----------
    header : astropy.io.fits.Header
    cards : dict
        Keyword -> value (or (value, comment)).
    """
    for k, v in cards.items():
        header[k] = v


def write_events_file(path, cards, o, ra, dec, module):
    """Write a simulated event file (EVENTS, GTI and BADPIX extensions).

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    cards : dict
        Observation keywords (:func:`observation_header`).
    o : dict
        The module's simulation (``data`` event columns, GTIs, ``bad`` pixels).
    ra, dec : float
        Sky reference of the X/Y columns, deg.
    module : str
        ``"A"`` or ``"B"``.
    """
    d = o["data"]
    scale = SKY_PIXEL_ARCSEC / 3600.0
    cols = [
        fits.Column(name="TIME", format="D", unit="s", array=d["TIME"]),
        fits.Column(name="PI", format="J", unit="chan", array=d["PI"].astype(np.int32)),
        fits.Column(name="DET_ID", format="B", array=d["DET_ID"].astype(np.uint8)),
        fits.Column(name="RAWX", format="B", unit="pixel", array=d["RAWX"].astype(np.uint8)),
        fits.Column(name="RAWY", format="B", unit="pixel", array=d["RAWY"].astype(np.uint8)),
        fits.Column(name="GRADE", format="I", array=d["GRADE"].astype(np.int16)),
        fits.Column(name="DET1X", format="I", unit="pixel", array=d["DET1X"].astype(np.int16)),
        fits.Column(name="DET1Y", format="I", unit="pixel", array=d["DET1Y"].astype(np.int16)),
        fits.Column(name="X", format="E", unit="pixel", array=d["X"].astype(np.float32)),
        fits.Column(name="Y", format="E", unit="pixel", array=d["Y"].astype(np.float32)),
    ]
    ev = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    h = ev.header
    h["TLMIN2"], h["TLMAX2"] = 0, 4095
    h["TLMIN3"], h["TLMAX3"] = 0, 3
    h["TLMIN4"], h["TLMAX4"] = 0, 31
    h["TLMIN5"], h["TLMAX5"] = 0, 31
    h["TLMIN6"], h["TLMAX6"] = 0, 32
    for n, ctype in ((7, "DET1X"), (8, "DET1Y")):
        h[f"TLMIN{n}"], h[f"TLMAX{n}"] = 1, 360
        h[f"TCTYP{n}"], h[f"TCUNI{n}"], h[f"TCDLT{n}"] = ctype, "mm", 0.12096
    for n, ctype, crval, cdelt in ((9, "RA---TAN", ra, -scale), (10, "DEC--TAN", dec, scale)):
        h[f"TLMIN{n}"], h[f"TLMAX{n}"] = 1, SKY_SIZE
        h[f"TCTYP{n}"] = (ctype, "projection")
        h[f"TCRPX{n}"] = (500.5, "reference pixel (1-based)")
        h[f"TCRVL{n}"] = (float(crval), "[deg] sky coordinate at the reference pixel")
        h[f"TCDLT{n}"] = (cdelt, "[deg] pixel size (2.45810736 arcsec)")
        h[f"TCUNI{n}"] = ("deg", "unit of TCRVL and TCDLT")
    h["HDUCLASS"] = ("OGIP", "format conforms to OGIP standards")
    h["HDUCLAS1"] = ("EVENTS", "event extension")
    h["HDUCLAS2"] = ("ALL", "")
    apply_cards(h, cards)
    h["TSORTKEY"] = "TIME"
    prim = fits.PrimaryHDU()
    apply_cards(prim.header, {k: cards[k] for k in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "DATE-OBS")})
    gti = gti_hdu(o["gs"], o["ge"], {k: cards[k] for k in ("TELESCOP", "INSTRUME", "TSTART", "TSTOP",
                                                           "TIMESYS", "MJDREFI", "MJDREFF")}, "GTI")
    bad = badpix_hdus(o["bad"], module, cards["TSTART"], cards["TSTOP"])
    fits.HDUList([prim, ev, gti, *bad]).writeto(path, checksum=True)


def write_gti_file(path, cards, o):
    """Write a simulated GTI file (STDGTI extension).

    Parameters
    ----------
    path : str or os.PathLike
    cards : dict
        Observation keywords.
    o : dict
        The module's simulation (``gs``, ``ge``: GTI bounds, s).
    """
    prim = fits.PrimaryHDU()
    apply_cards(prim.header, {k: cards[k] for k in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT")})
    g = gti_hdu(o["gs"], o["ge"], {k: cards[k] for k in ("TELESCOP", "INSTRUME", "OBS_ID", "TSTART", "TSTOP",
                                                         "TIMESYS", "MJDREFI", "MJDREFF", "DATE-OBS",
                                                         "DATE-END")}, "STDGTI")
    fits.HDUList([prim, g]).writeto(path, checksum=True)


def write_det1_file(path, cards, o):
    """Write a simulated DET1 reference-point file (``_det1.fits``).

    Parameters
    ----------
    path : str or os.PathLike
    cards : dict
        Observation keywords.
    o : dict
        The module's simulation (``t``, ``x_det1``, ``y_det1`` of the track).
    """
    cols = [fits.Column(name="TIME", format="1D", unit="s", array=o["t"]),
            fits.Column(name="X_DET1", format="1D", unit="pixel", array=o["x_det1"]),
            fits.Column(name="Y_DET1", format="1D", unit="pixel", array=o["y_det1"])]
    h = fits.BinTableHDU.from_columns(cols, name="DET1_REFPOINT")
    apply_cards(h.header, {k: cards[k] for k in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "TARG_ID", "RA_OBJ",
                                            "DEC_OBJ", "RA_NOM", "DEC_NOM", "RA_PNT", "DEC_PNT", "PA_PNT",
                                            "TIMESYS", "MJDREFI", "MJDREFF", "TIMEUNIT", "TSTART", "TSTOP",
                                            "DATE-OBS", "DATE-END")})
    h.header["HDUCLASS"] = "OGIP"
    h.header["HDUCLAS1"] = "TEMPORALDATA"
    prim = fits.PrimaryHDU()
    apply_cards(prim.header, {k: cards[k] for k in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT")})
    fits.HDUList([prim, h]).writeto(path, checksum=True)


def json_default(o):
    """JSON encoding of numpy scalars and arrays (``json.dumps(default=...)``).

    Parameters
    ----------
    o : object

    Returns
    -------
    int, float or list

    Raises
    ------
    TypeError
        For other objects.
    """
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)
