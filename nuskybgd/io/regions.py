"""DS9 region files as pixel masks on a reference image (REFERENCE section 5).

Parsing and pixel masks come from astropy ``regions``. A pixel belongs to a
shape when its centre is inside (``mode="center"``).

Rule: DS9's own -- a pixel is selected when it is inside at least one
include shape and outside every exclude shape, whatever the order of the
shapes in the file. (A file with exclude shapes only selects the whole image
minus the exclusions, as in DS9/funtools.) The original nuskybgd painted the
shapes in file order (include sets 1, exclude sets 0), so an exclusion listed
before an inclusion was overridden; when that rule would give a different
mask, a warning is logged.

Coordinate frames: fk5, fk4, icrs, galactic, ecliptic (through the image's
WCS), image (1-based DS9 pixels) and physical (converted with the image's
LTV/LTM keywords; physical = image when they are absent). Shapes: circle,
ellipse, box, polygon, annulus (and the other area shapes ``regions``
knows). Shapes without area (point, line, vector, text) are ignored with a
debug message; a zero-size shape (e.g. ``circle(..., 0")``, which DS9 users
keep as markers) is ignored with a warning.
"""

import copy
import logging
import re
import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ..errors import NuskybgdError
from .fitsfile import check_input_file
from .output import write_text

__all__ = ["RegionShape", "read_region_shapes", "shape_masks", "region_mask", "circle_regions", "format_regions",
           "write_regions", "write_circle_regions"]

log = logging.getLogger("nuskybgd")

_FRAMES = ("fk4", "fk5", "icrs", "galactic", "ecliptic", "image", "physical", "j2000", "b1950",
           "linear", "amplifier", "detector")
_FRAME_RE = re.compile(r"(?:^|;)\s*(" + "|".join(_FRAMES) + r"|wcs[a-z]?)\s*(?=;|$)", re.I)
_SIZE_ERR = re.compile(r"must be (a )?strictly positive", re.I)


class RegionShape:
    """One area shape of a region file.

    The parameters are kept as attributes of the same names.

    Parameters
    ----------
    region : regions.SkyRegion or regions.PixelRegion
        The shape (pixel regions in 0-based image pixels).
    include : bool
        False for an exclusion (``-shape``).
    physical : bool
        True for a pixel shape given in physical coordinates.
    line : int
        1-based line number in the file.
    text : str
        The line, for messages.
    """

    def __init__(self, region, include, physical, line, text):
        self.region = region
        self.include = include
        self.physical = physical
        self.line = line
        self.text = text

    def __repr__(self):
        sign = "" if self.include else "-"
        return f"RegionShape({sign}{type(self.region).__name__}, line {self.line})"


def _has_area(region):
    from regions import LineSkyRegion, LinePixelRegion, PointSkyRegion, PointPixelRegion  # local: costs 0.2-0.45 s
    from regions import TextSkyRegion, TextPixelRegion
    return not isinstance(region, (LineSkyRegion, LinePixelRegion, PointSkyRegion, PointPixelRegion,
                                   TextSkyRegion, TextPixelRegion))


def read_region_shapes(path):
    """Parse a DS9 region file into its area shapes, in file order.

    Parameters
    ----------
    path : str or os.PathLike
        DS9 region file.

    Returns
    -------
    list of RegionShape
        Area shapes with their include flag. Non-area shapes are dropped
        (debug message), zero-size shapes too (warning).

    Raises
    ------
    NuskybgdError
        Missing or unreadable file, a line ``regions`` cannot parse, or no
        area shape at all.
    """
    from regions import Regions  # local: regions costs 0.2-0.45 s at import
    path = str(path)
    check_input_file(path, "region file")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise NuskybgdError(f"{path}: cannot read region file ({exc})") from None
    shapes, glob, frame = [], [], None
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        low = line.lower()
        if low.startswith("global"):
            glob.append(line)
            continue
        if low.startswith("#") and not re.match(r"#\s*(text|vector|composite|ruler|compass|projection|"
                                                 r"segment|circle|ellipse|box|polygon|annulus|point|line)",
                                                 low):
            continue  # a plain comment
        body = line.split("#", 1)[0]
        frames = [m.group(1).lower() for m in _FRAME_RE.finditer(body)]
        is_physical = (frame == "physical" and not frames) or "physical" in frames
        send = _FRAME_RE.sub(lambda m: m.group(0).lower().replace("physical", "image"), line)
        prefix = "\n".join(glob + ([("image" if frame == "physical" else frame)] if frame else []))
        if frames:
            frame = frames[-1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                regs = Regions.parse(prefix + "\n" + send, format="ds9")
            except ValueError as exc:
                msg = " ".join(str(exc).split())
                if _SIZE_ERR.search(msg):
                    log.warning("%s:%d: zero-size shape ignored (%s): %s", path, n, msg, line[:80])
                    continue
                raise NuskybgdError(f"{path}:{n}: cannot parse region line ({msg})") from None
            except Exception as exc:  # regions raises several types for malformed input
                raise NuskybgdError(f"{path}:{n}: cannot parse region line "
                                    f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None
        for w in caught:
            log.debug("%s:%d: %s", path, n, " ".join(str(w.message).split()))
        for r in regs:
            if not _has_area(r):
                log.debug("%s:%d: %s has no area, ignored", path, n, type(r).__name__)
                continue
            include = bool(r.meta.get("include", True))
            from regions import PixelRegion  # local: the regions package costs 0.2-0.45 s at import
            shapes.append(RegionShape(r, include, is_physical and isinstance(r, PixelRegion), n, line))
    if not shapes:
        raise NuskybgdError(f"{path}: no area shape (circle, ellipse, box, polygon, annulus) in region file")
    return shapes


def _physical_transform(header):
    """(scale, ltv1, ltv2) with image = scale * physical + ltv; None if not isotropic."""
    if header is None:
        return 1.0, 0.0, 0.0
    m11 = float(header.get("LTM1_1", 1.0))
    m22 = float(header.get("LTM2_2", 1.0))
    m12 = float(header.get("LTM1_2", 0.0))
    m21 = float(header.get("LTM2_1", 0.0))
    if m12 != 0 or m21 != 0 or m11 != m22 or m11 <= 0:
        return None
    return m11, float(header.get("LTV1", 0.0)), float(header.get("LTV2", 0.0))


def _physical_to_image(region, transform):
    from regions import PixCoord  # local: the regions package costs 0.2-0.45 s at import
    scale, v1, v2 = transform
    if scale == 1.0 and v1 == 0.0 and v2 == 0.0:
        return region
    changes = {}
    for name in region._params:
        val = getattr(region, name)
        if isinstance(val, PixCoord):
            # DS9 pixels are 1-based: image_1 = scale * physical + ltv.
            changes[name] = PixCoord(scale * (val.x + 1) + v1 - 1, scale * (val.y + 1) + v2 - 1)
        elif name == "angle":
            continue
        else:
            changes[name] = val * scale
    return region.copy(**changes)


def _to_wcs(wcs_or_header, where="image"):
    if isinstance(wcs_or_header, fits.Header):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                return WCS(wcs_or_header, naxis=2), wcs_or_header
            except Exception as exc:  # astropy raises many types for bad WCS keywords
                raise NuskybgdError(f"{where}: invalid image WCS ({' '.join(str(exc).split())})") from None
    return wcs_or_header, None


def shape_masks(shapes, wcs, shape=(1000, 1000), header=None, path=None):
    """Pixel masks of region shapes on an image.

    Parameters
    ----------
    shapes : list of RegionShape
        From :func:`read_region_shapes`.
    wcs : astropy.wcs.WCS or None
        Celestial WCS of the image (needed for sky shapes).
    shape : tuple of int
        Image shape (ny, nx).
    header : astropy.io.fits.Header, optional
        Image header, for the LTV/LTM of physical coordinates.
    path : str, optional
        Region file name for messages.

    Returns
    -------
    masks : list of ndarray of bool
        One per shape, True where the pixel centre is inside.
    areas : list of int
        Number of pixel centres inside each shape on an unbounded grid
        (0 for a shape too small to hold a pixel centre).
    """
    from regions import PixelRegion  # local: the regions package costs 0.2-0.45 s at import
    where = path or "region"
    masks, areas = [], []
    transform = _physical_transform(header)
    for s in shapes:
        reg = s.region
        if isinstance(reg, PixelRegion):
            if s.physical:
                if transform is None:
                    raise NuskybgdError(f"{where}:{s.line}: physical coordinates with a rotated or "
                                        "anisotropic LTM are not supported")
                reg = _physical_to_image(reg, transform)
        else:
            if wcs is None or not getattr(wcs, "has_celestial", False):
                raise NuskybgdError(f"{where}:{s.line}: sky coordinates need an image with a celestial WCS")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    reg = reg.to_pixel(wcs)
            except Exception as exc:  # projection failures (e.g. far outside a TAN plane)
                log.debug("%s:%d: shape cannot be projected (%s)", where, s.line, exc)
                masks.append(np.zeros(shape, bool))
                areas.append(1)
                continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rm = reg.to_mask(mode="center")
                area = int(np.count_nonzero(rm.data))
                img = rm.to_image(shape)
        except Exception as exc:
            # regions' bounding-box mask fails for shapes far larger than the image (memory):
            # test the image's pixel centres directly instead
            log.debug("%s:%d: bounding-box mask failed (%s); testing pixel centres", where, s.line, exc)
            try:
                from regions import PixCoord  # local: the regions package costs 0.2-0.45 s at import
                yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    img = np.asarray(reg.contains(PixCoord(xx, yy)), bool).reshape(shape)
                area = int(np.count_nonzero(img)) or 1  # unbounded area unknown; not "zero"
            except Exception as exc2:
                log.debug("%s:%d: shape gives no mask (%s)", where, s.line, exc2)
                img, area = np.zeros(shape, bool), 0
            masks.append(img)
            areas.append(area)
            continue
        masks.append(np.zeros(shape, bool) if img is None else img.astype(bool))
        areas.append(area)
    return masks, areas


def region_mask(regfile, wcs, shape=(1000, 1000), header=None):
    """Boolean mask of a DS9 region file on a reference image (DS9 rule).

    Parameters
    ----------
    regfile : str or os.PathLike
        DS9 region file.
    wcs : astropy.wcs.WCS or astropy.io.fits.Header
        WCS of the reference image (a header gives both the WCS and the
        LTV/LTM keywords for physical coordinates).
    shape : tuple of int
        Image shape (ny, nx), pixels.
    header : astropy.io.fits.Header, optional
        Image header for LTV/LTM when ``wcs`` is a WCS.

    Returns
    -------
    ndarray of bool, shape ``shape``
        True for pixels (centres) inside any include shape and outside every
        exclude shape, indexed [y, x].

    Raises
    ------
    NuskybgdError
        Unreadable file, no area shape, every include shape outside the
        image, or a mask without any pixel (zero area).
    """
    path = str(regfile)
    w, hdr = _to_wcs(wcs, f"{path}: the image it is used on")
    header = header if header is not None else hdr
    shapes = read_region_shapes(path)
    masks, areas = shape_masks(shapes, w, shape, header=header, path=path)
    inc = [i for i, s in enumerate(shapes) if s.include]
    exc = [i for i, s in enumerate(shapes) if not s.include]
    for i in inc:
        if areas[i] == 0:
            log.warning("%s:%d: shape contains no pixel centre (zero area), ignored", path, shapes[i].line)
    if inc:
        union = np.zeros(shape, bool)
        for i in inc:
            union |= masks[i]
        if not union.any():
            if any(areas[i] > 0 for i in inc):
                raise NuskybgdError(f"{path}: region lies entirely outside the {shape[1]}x{shape[0]} "
                                    "reference image (wrong field or wrong image?)")
            raise NuskybgdError(f"{path}: region has zero area (no pixel centre inside any shape)")
    else:
        log.info("%s: only exclude shapes; selecting the whole image minus them (DS9 rule)", path)
        union = np.ones(shape, bool)
    excl = np.zeros(shape, bool)
    for i in exc:
        excl |= masks[i]
    mask = union & ~excl
    if not mask.any():
        raise NuskybgdError(f"{path}: region has zero area on the image (the exclusions remove every pixel)")
    # The original tool's rule: paint shapes in file order.
    painted = np.zeros(shape, bool)
    for i, s in enumerate(shapes):
        if s.include:
            painted |= masks[i]
        else:
            painted &= ~masks[i]
    if not inc:
        painted = None
    if painted is not None and not np.array_equal(painted, mask):
        ndiff = int(np.count_nonzero(painted != mask))
        log.warning("%s: shape order matters: the original nuskybgd (file order) would select %d pixel(s) "
                    "differently; using the DS9 rule (inside any include, outside every exclude)", path, ndiff)
    return mask


def circle_regions(circles, exclude=()):
    """Circles in DS9 image coordinates as astropy ``regions`` objects.

    Parameters
    ----------
    circles : iterable of (float, float, float)
        Included circles: centre x, y (1-based DS9 image pixels, i.e. FITS
        pixel coordinates) and radius (pixels).
    exclude : iterable of (float, float, float)
        Excluded circles, same convention.

    Returns
    -------
    regions.Regions
        ``CirclePixelRegion`` objects (0-based pixel coordinates, as
        ``regions`` stores them; ``meta["include"]`` False for exclusions).
    """
    from regions import CirclePixelRegion, PixCoord, Regions  # local: the regions package costs 0.2-0.45 s at import
    out = []
    for (x, y, r), include in [(c, True) for c in circles] + [(c, False) for c in exclude]:
        reg = CirclePixelRegion(PixCoord(float(x) - 1.0, float(y) - 1.0), float(r))
        if not include:
            reg.meta["include"] = False
        out.append(reg)
    return Regions(out)


def format_regions(regions, precision=None):
    """DS9 region file text of astropy ``regions`` objects.

    Parameters
    ----------
    regions : regions.Regions or iterable of regions.Region
        Pixel regions (written in the ``image`` frame, 1-based) or sky
        regions (written in their frame, e.g. ``fk5``).
    precision : int, optional
        Decimal places of coordinates and sizes (default 2 for pixel
        regions, in pixels; 8 for sky regions, in degrees).

    Returns
    -------
    str
        The file text: a DS9 4.1 header, then each shape as astropy
        ``regions``' DS9 writer serialises it (frame line when it changes);
        excluded shapes (``meta["include"]`` False) get DS9's ``-`` prefix
        instead of the ``# include=False`` property that ``regions`` writes.
    """
    from regions import PixelRegion, Regions  # local: the regions package costs 0.2-0.45 s at import
    lines = ["# Region file format: DS9 version 4.1"]
    frame = None
    for reg in regions:
        include = reg.meta.get("include", True) not in (False, 0, "0")
        one = copy.deepcopy(reg)
        one.meta.pop("include", None)
        prec = int(precision) if precision is not None else (2 if isinstance(one, PixelRegion) else 8)
        body = [ln for ln in Regions([one]).serialize(format="ds9", precision=prec).splitlines()
                if ln and not ln.startswith("#")]
        *frames, shape = body
        for f in frames:
            if f != frame:
                lines.append(f)
                frame = f
        lines.append(shape if include else "-" + shape)
    return "\n".join(lines) + "\n"


def write_regions(path, regions, precision=None, clobber=False):
    """Write a DS9 region file.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    regions : regions.Regions or iterable of regions.Region
        See :func:`format_regions`.
    precision : int, optional
        Decimal places (see :func:`format_regions`).
    clobber : bool
        Replace an existing file.

    Returns
    -------
    str
        The text written.

    Raises
    ------
    NuskybgdError
        When the file exists and ``clobber`` is false.
    """
    text = format_regions(regions, precision)
    write_text(text, path, clobber=clobber)
    return text


def write_circle_regions(path, circles, exclude=(), precision=2, clobber=False):
    """Write circles (DS9 image coordinates) to a DS9 region file.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    circles, exclude : iterable of (float, float, float)
        Included and excluded circles: x, y (1-based image pixels), radius
        (pixels); see :func:`circle_regions`.
    precision : int
        Decimal places.
    clobber : bool
        Replace an existing file.

    Returns
    -------
    str
        The text written.
    """
    return write_regions(path, circle_regions(circles, exclude), precision, clobber)
