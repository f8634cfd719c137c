"""Aperture and detector images projected onto the sky (REFERENCE section 4).

Geometry (shared with the simulation): sky images are 1000x1000 pixels
indexed [y, x] (0-based); DET1 images 360x360 indexed [dety, detx]. One DET1
pixel maps to one sky pixel (the original's approximation: 2.54" vs 2.458").
With the position angle ``pa = PA_PNT + 1`` deg and ``a = -pa`` (radians),
the DET1 reference pixel (350, 350) at sky index position (px, py):

    detx - 350 = -cos(a) (x - px) + sin(a) (y - py)
    dety - 350 =  sin(a) (x - px) + cos(a) (y - py)

The matrix is symmetric and orthogonal (a reflection), so it is its own
inverse. Aspect smearing shifts the image made at the aspect-histogram peak
by (X - px - nx, Y - py - ny) for every aspect pixel (X, Y), with the
rotated nudge (nx, ny) of :func:`aspect_nudge`.

Speed: the smearing is a circular convolution with a kernel made of the
aspect weights splatted bilinearly (all aspect pixels share the same
fractional shift, so the kernel has about one tap per aspect pixel). It is
computed with numpy's FFT over the bounding box of the non-zero pixels
(no numba: importing it costs ~0.5 s of CPU time, most of the start-up
budget of ``nuskybgd projbgd``); pixels outside the exact support of the
convolution are exactly zero.
"""

import logging
import sys
from dataclasses import dataclass

import numpy as np

from ..calib.auxil import auxil_path, load_nomapbgdparams
from ..constants import DET1_PIXEL_MM, DET1_SIZE, module_letter
from ..errors import NuskybgdError
from ..io.fitsfile import open_fits

__all__ = [
    "SKY_SIZE", "DET1_PIXEL_MM", "DET1_REF", "NUDGE", "APERTURE_CROP",
    "Projection", "rotation_angle", "aspect_nudge", "sky_to_det1", "det1_to_sky",
    "aperture_image", "wrapped_bilinear_shift", "check_reference_header", "detector_masks", "rotate_to_sky",
    "aspect_kernel", "circular_convolve", "smear", "project_background",
]

log = logging.getLogger("nuskybgd")

#: Sky image size, pixels (1000x1000 of 2.45810736").
SKY_SIZE = 1000
#: DET1 pixel (x, y) that sits at the reference point (the aspect position).
DET1_REF = 350
#: Aspect-smearing nudge in DET1-aligned pixels (x, y), before rotation.
NUDGE = (2.7, 0.8)
#: Rows and columns of the bundle aperture image kept after the shift.
APERTURE_CROP = slice(108, 468)
#: Aperture scale factor per unit norm (10-15 keV counts per DET1 pixel).
APERTURE_SCALE = 3.1865e-5 * DET1_PIXEL_MM ** 2
#: Constant added to the aperture image.
APERTURE_FLOOR = 0.00495 * 0.7


@dataclass
class Projection:
    """Projected background images of one module, on the reference sky grid.

    Attributes
    ----------
    aperture : ndarray of float64, shape (1000, 1000)
        Aperture (stray-light) image, smeared by the aspect histogram and
        normalised by its exposure (per second of dwell).
    detectors : ndarray of float64, shape (4, 1000, 1000)
        Smeared, exposure-normalised mask of detectors DET0..DET3 (zeros for
        detectors not requested).
    detector_numbers : tuple of int
        Requested detectors, 1..4 (image ``detectors[n - 1]``).
    peak : tuple of int
        Sky pixel (x, y) of the aspect-histogram peak.
    angle : float
        Rotation angle a = -(PA_PNT + 1) deg, radians.
    """

    aperture: np.ndarray
    detectors: np.ndarray
    detector_numbers: tuple
    peak: tuple
    angle: float


def rotation_angle(pa_pnt):
    """Rotation angle of the DET1 -> sky mapping.

    Parameters
    ----------
    pa_pnt : float
        Roll angle ``PA_PNT`` of the observation, degrees.

    Returns
    -------
    float
        a = -(PA_PNT + 1 deg), radians.
    """
    return -(float(pa_pnt) + 1.0) * np.pi / 180.0


def aspect_nudge(angle):
    """The (2.7, 0.8)-pixel aspect nudge rotated by -a.

    Parameters
    ----------
    angle : float
        a of :func:`rotation_angle`, radians.

    Returns
    -------
    tuple of float
        (nx, ny), sky pixels.
    """
    nx = NUDGE[0] * np.cos(-angle) - NUDGE[1] * np.sin(-angle)
    ny = NUDGE[0] * np.sin(-angle) + NUDGE[1] * np.cos(-angle)
    return float(nx), float(ny)


def sky_to_det1(x, y, ref_x, ref_y, pa_pnt, rounded=True):
    """DET1 pixel seen at a sky pixel when the reference point is at (ref_x, ref_y).

    Parameters
    ----------
    x, y : array_like
        Sky pixel index coordinates (0-based, [y, x] order of the images).
    ref_x, ref_y : float
        Sky position of DET1 pixel (350, 350), same coordinates (projbgd
        uses the aspect-histogram peak).
    pa_pnt : float
        ``PA_PNT``, degrees.
    rounded : bool
        Round to integer DET1 indices (half to even, as projbgd does);
        otherwise return the exact rotated position.

    Returns
    -------
    detx, dety : ndarray
        DET1 index coordinates (0-based; int64 when ``rounded``).
    """
    a = rotation_angle(pa_pnt)
    dx = np.asarray(x, dtype=np.float64) - ref_x
    dy = np.asarray(y, dtype=np.float64) - ref_y
    u = -np.cos(a) * dx + np.sin(a) * dy
    v = np.sin(a) * dx + np.cos(a) * dy
    if rounded:
        return (DET1_REF + np.around(u)).astype(np.int64), (DET1_REF + np.around(v)).astype(np.int64)
    return DET1_REF + u, DET1_REF + v


def det1_to_sky(detx, dety, ref_x, ref_y, pa_pnt, nudge=True):
    """Sky position of a DET1 position, for a given reference-point position.

    The exact inverse of :func:`sky_to_det1` (unrounded), optionally with
    the aspect nudge that projbgd applies when it smears the images. An
    event at DET1 (detx, dety) recorded while the DET1 reference point was
    at sky (X_DET1, Y_DET1) lands, in projbgd's model, at
    ``det1_to_sky(detx, dety, X_DET1, Y_DET1, PA_PNT)``.

    Parameters
    ----------
    detx, dety : array_like
        DET1 index coordinates (0-based).
    ref_x, ref_y : array_like
        Sky position of DET1 pixel (350, 350) in the coordinates of the
        aspect histogram (floor(X_DET1) is its pixel index).
    pa_pnt : float
        ``PA_PNT``, degrees.
    nudge : bool
        Subtract the rotated (2.7, 0.8)-pixel nudge (:func:`aspect_nudge`),
        as projbgd does.

    Returns
    -------
    x, y : ndarray of float64
        Sky index coordinates (pixel index = floor(value) in projbgd's grid).

    Notes
    -----
    projbgd bins the reference point with floor(X_DET1) while event images
    bin X with floor(X - 0.5) (docs/DESIGN.md, pixel conventions). An event
    simulated at FITS sky coordinate ``X = x + 0.5`` (and ``Y = y + 0.5``)
    therefore falls in the sky-image pixel floor(x), the pixel where
    projbgd puts that DET1 position.
    """
    a = rotation_angle(pa_pnt)
    u = np.asarray(detx, dtype=np.float64) - DET1_REF
    v = np.asarray(dety, dtype=np.float64) - DET1_REF
    x = np.asarray(ref_x, dtype=np.float64) + (-np.cos(a) * u + np.sin(a) * v)
    y = np.asarray(ref_y, dtype=np.float64) + (np.sin(a) * u + np.cos(a) * v)
    if nudge:
        nx, ny = aspect_nudge(a)
        x, y = x - nx, y - ny
    return x, y


def aperture_image(module, bundle_image=None, params=None):
    """Aperture (stray-light) illumination on DET1 for one module.

    Parameters
    ----------
    module : str
        ``"A"`` or ``"B"``.
    bundle_image : ndarray, optional
        The bundle's ``det{A,B}_det1.img.gz`` image (read through
        :mod:`nuskybgd.calib.auxil` when omitted).
    params : dict, optional
        The module's entry of :func:`nuskybgd.calib.auxil.load_nomapbgdparams`.

    Returns
    -------
    ndarray of float64, shape (360, 360)
        rescale * T(image, xshift, yshift) + 0.00495 * 0.7, cropped to rows
        and columns 108..467; shifts are the bundle's mm values / 0.12096 mm,
        rescale = 3.1865e-5 * norm * 0.12096^2, T a circular bilinear shift.

    Raises
    ------
    NuskybgdError
        Unknown module, non-zero rotation (not used by the bundle), wrong
        image size.
    """
    module = module_letter(module)
    if params is None or bundle_image is None:
        if params is None:
            params = load_nomapbgdparams()[module]
        if bundle_image is None:
            p = auxil_path(f"det{module}_det1.img.gz")
            with open_fits(p, "aperture image") as hdul:
                if hdul[0].data is None:
                    raise NuskybgdError(f"{p}: no image in the primary HDU")
                bundle_image = np.array(hdul[0].data, dtype=np.float64)
    img = np.asarray(bundle_image, dtype=np.float64)
    if img.ndim != 2 or img.shape[0] < APERTURE_CROP.stop or img.shape[1] < APERTURE_CROP.stop:
        raise NuskybgdError(f"aperture image of module {module} is {img.shape}, expected at least 468x468")
    if float(params.get("rotation", 0.0)) != 0.0:
        raise NuskybgdError(f"nomapbgdparams: rotation {params['rotation']} for module {module} "
                            "is not supported (the bundle uses 0)")
    sx = float(params["xshift_mm"]) / DET1_PIXEL_MM
    sy = float(params["yshift_mm"]) / DET1_PIXEL_MM
    rescale = APERTURE_SCALE * float(params["norm"])
    shifted = wrapped_bilinear_shift(img, sy, sx)
    ap = rescale * shifted + APERTURE_FLOOR
    return np.ascontiguousarray(ap[APERTURE_CROP, APERTURE_CROP])


def wrapped_bilinear_shift(image, sy, sx):
    """Shift an image by a constant (sub-pixel) offset, bilinear, wrapping around.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Input image.
    sy, sx : float
        Shift along y and x, pixels: ``out(y, x) = image(y - sy, x - sx)``.

    Returns
    -------
    ndarray of float64, shape (ny, nx)
        The shifted image; the same as ``scipy.ndimage.shift(image, (sy,
        sx), order=1, mode="grid-wrap", prefilter=False)`` to rounding.

    Notes
    -----
    Written with numpy rolls instead of calling ``scipy.ndimage.shift``
    because importing ``scipy.ndimage`` costs ~0.15 s of CPU time, a fifth
    of the start-up budget of ``nuskybgd projbgd``; with one shift for all
    pixels, the bilinear weights are four constants.
    """
    img = np.asarray(image, dtype=np.float64)
    ky, kx = np.floor(-float(sy)), np.floor(-float(sx))
    ty, tx = -float(sy) - ky, -float(sx) - kx
    base = np.roll(img, (-int(ky), -int(kx)), axis=(0, 1))  # base[y, x] = img[y + ky, x + kx]
    right = np.roll(base, -1, axis=1)
    rows = (1.0 - tx) * base + tx * right
    return (1.0 - ty) * rows + ty * np.roll(rows, -1, axis=0)


#: Celestial axis pairs of a FITS WCS (longitude, latitude), the first four characters of CTYPE.
_PAIRS = (("RA--", "DEC-"), ("GLON", "GLAT"), ("ELON", "ELAT"), ("SLON", "SLAT"), ("HLON", "HLAT"))
_PROJECTIONS = {"AZP", "SZP", "TAN", "STG", "SIN", "ARC", "ZPN", "ZEA", "AIR", "CYP", "CEA", "CAR", "MER", "COP",
                "COE", "COD", "COO", "SFL", "PAR", "MOL", "AIT", "BON", "PCO", "TSC", "CSC", "QSC", "HPX", "XPH"}


def _check_celestial_keywords(header, where):
    """The celestial WCS keywords projbgd copies to its images: read here, not parsed by astropy.wcs.

    projbgd uses no WCS transformation, and importing astropy.wcs is a third
    of its start-up. Checked: a longitude/latitude CTYPE pair (upper case,
    one known projection on both axes), finite CRVAL/CRPIX, and a
    non-singular CD, or PC x CDELT, matrix.
    """
    types = [header.get(f"CTYPE{i}") for i in (1, 2)]
    if not all(isinstance(t, str) for t in types):
        raise NuskybgdError(f"{where}: no celestial WCS (CTYPE1/CTYPE2 must be sky coordinates, e.g. RA---TAN)")
    t1, t2 = (t.strip() for t in types)
    pair = (t1[:4], t2[:4])
    proj = {t1[5:8], t2[5:8]}
    if not (pair in _PAIRS or pair[::-1] in _PAIRS) or len(proj) != 1 or not proj <= _PROJECTIONS \
            or t1[4:5] != "-" or t2[4:5] != "-":
        raise NuskybgdError(f"{where}: no celestial WCS (CTYPE1/CTYPE2 = {types[0]!r}/{types[1]!r}; they must be "
                            "a longitude/latitude pair with one projection, e.g. RA---TAN/DEC--TAN)")

    def num(key, default=None):
        if key not in header:
            if default is None:
                raise NuskybgdError(f"{where}: invalid WCS (keyword {key} missing)")
            return default
        try:
            v = float(header[key])
        except (TypeError, ValueError):
            raise NuskybgdError(f"{where}: invalid WCS ({key} = {header[key]!r} is not a number)") from None
        if not np.isfinite(v):
            raise NuskybgdError(f"{where}: invalid WCS ({key} = {v})")
        return v

    for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"):
        num(key)
    if any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2)):
        m = np.array([[num(f"CD{i}_{j}", 0.0) for j in (1, 2)] for i in (1, 2)])
    else:
        pc = np.array([[num(f"PC{i}_{j}", float(i == j)) for j in (1, 2)] for i in (1, 2)])
        m = np.diag([num("CDELT1"), num("CDELT2")]) @ pc
    if np.linalg.det(m) == 0:
        raise NuskybgdError(f"{where}: invalid WCS (singular pixel-to-sky matrix)")


def check_reference_header(header, path=None):
    """Check a reference sky image header; return its PA_PNT.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Header of the reference image.
    path : str, optional
        File name for error messages.

    Returns
    -------
    float
        ``PA_PNT``, degrees.

    Raises
    ------
    NuskybgdError
        Image not 1000x1000, no celestial WCS, PA_PNT missing or not finite.
    """
    where = path or "reference image"
    n1, n2 = header.get("NAXIS1"), header.get("NAXIS2")
    if header.get("NAXIS", 2) != 2 or n1 != SKY_SIZE or n2 != SKY_SIZE:
        raise NuskybgdError(f"{where}: image is {n1}x{n2}, expected a {SKY_SIZE}x{SKY_SIZE} NuSTAR sky image")
    _check_celestial_keywords(header, where)
    if "PA_PNT" not in header:
        raise NuskybgdError(f"{where}: keyword PA_PNT (roll angle) missing; copy it from the event file header")
    try:
        pa = float(header["PA_PNT"])
    except (TypeError, ValueError):
        raise NuskybgdError(f"{where}: PA_PNT = {header['PA_PNT']!r} is not a number") from None
    if not np.isfinite(pa):
        raise NuskybgdError(f"{where}: PA_PNT is not finite")
    return pa


def detector_masks(instrmap, detectors=(1, 2, 3, 4)):
    """Boolean masks of the requested detectors on DET1.

    Parameters
    ----------
    instrmap : array_like, shape (360, 360)
        Instrument map (detector number 1..4, 0 elsewhere).
    detectors : sequence of int
        Detector numbers 1..4.

    Returns
    -------
    ndarray of bool, shape (len(detectors), 360, 360)

    Raises
    ------
    NuskybgdError
        Wrong shape, non-finite values or a detector number not 1..4.
    """
    imap = np.asarray(instrmap)
    if imap.shape != (DET1_SIZE, DET1_SIZE):
        raise NuskybgdError(f"instrument map is {imap.shape}, expected {DET1_SIZE}x{DET1_SIZE}")
    if imap.dtype.kind == "f" and not np.all(np.isfinite(imap)):
        raise NuskybgdError("instrument map holds NaN or infinite values")
    for d in detectors:
        if int(d) not in (1, 2, 3, 4):
            raise NuskybgdError(f"detector number {d}: expected 1..4")
    return np.stack([imap == int(d) for d in detectors])


def rotate_to_sky(aperture, masks, peak, pa_pnt, exposure, size=SKY_SIZE):
    """Place the aperture and detector masks on the sky at the aspect peak.

    Parameters
    ----------
    aperture : ndarray, shape (360, 360)
        Aperture image on DET1 (:func:`aperture_image`).
    masks : ndarray of bool, shape (n, 360, 360)
        Masks of the requested detectors (:func:`detector_masks`).
    peak : tuple of int
        Sky pixel (px, py) of the aspect-histogram peak.
    pa_pnt : float
        ``PA_PNT``, degrees.
    exposure : float
        Total aspect-histogram dwell time, s (the images are divided by it).
    size : int
        Sky image size, pixels.

    Returns
    -------
    ap_sky : ndarray of float64, shape (size, size)
        aperture[dety, detx] / exposure where the DET1 pixel is inside the
        image and any requested mask is set there, else 0.
    det_sky : ndarray of float64, shape (n, size, size)
        mask_k[dety, detx] / exposure.
    """
    px, py = peak
    yy, xx = np.mgrid[0:size, 0:size]
    detx, dety = sky_to_det1(xx, yy, px, py, pa_pnt)
    inside = (detx >= 0) & (detx < DET1_SIZE) & (dety >= 0) & (dety < DET1_SIZE)
    dx, dy = detx[inside], dety[inside]
    m = masks[:, dy, dx]
    ap_sky = np.zeros((size, size))
    det_sky = np.zeros((masks.shape[0], size, size))
    ap_sky[inside] = np.where(m.any(axis=0), aperture[dy, dx] / exposure, 0.0)
    for k in range(masks.shape[0]):
        det_sky[k][inside] = m[k] / exposure
    return ap_sky, det_sky


def aspect_kernel(hist_image, x_off, y_off, peak, nudge):
    """Taps of the aspect-smearing kernel (aspect weights splatted bilinearly).

    Parameters
    ----------
    hist_image : ndarray, shape (h, w)
        Aspect histogram, s.
    x_off, y_off : int
        Its offsets (image index + offset = sky pixel).
    peak : tuple of int
        Sky pixel (px, py) of the histogram maximum.
    nudge : tuple of float
        (nx, ny) of :func:`aspect_nudge`, sky pixels.

    Returns
    -------
    dy, dx : ndarray of int64
        Integer shifts of the taps, sky pixels.
    w : ndarray of float64
        Tap weights, s; they sum to the histogram total.

    Notes
    -----
    Aspect pixel (X, Y) shifts the image by (X - px - nx, Y - py - ny). As
    X - px is an integer, every shift has the same fractional part, so the
    bilinear split of all shifts lands on a common 2x2 pattern: one dense
    (h + 1) x (w + 1) kernel.
    """
    img = np.asarray(hist_image, dtype=np.float64)
    px, py = peak
    cx, cy = -float(nudge[0]), -float(nudge[1])
    mx, my = np.floor(cx), np.floor(cy)
    fx, fy = cx - mx, cy - my
    k = np.zeros((img.shape[0] + 1, img.shape[1] + 1))
    k[:-1, :-1] += img * ((1 - fy) * (1 - fx))
    k[:-1, 1:] += img * ((1 - fy) * fx)
    k[1:, :-1] += img * (fy * (1 - fx))
    k[1:, 1:] += img * (fy * fx)
    r, c = np.nonzero(k)
    dy = r + (int(y_off) - int(py) + int(my))
    dx = c + (int(x_off) - int(px) + int(mx))
    return dy.astype(np.int64), dx.astype(np.int64), k[r, c]


def _fft_size(n):
    """Smallest m >= n whose only prime factors are 2, 3 and 5 (fast FFT length)."""
    m = int(n)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _fold(a, ny, nx):
    """Wrap an array onto an (<= ny, <= nx) one by summing rows i, i + ny, ... (and columns)."""
    if a.shape[0] > ny:
        a = np.pad(a, ((0, -a.shape[0] % ny), (0, 0))).reshape(-1, ny, a.shape[1]).sum(axis=0)
    if a.shape[1] > nx:
        a = np.pad(a, ((0, 0), (0, -a.shape[1] % nx))).reshape(a.shape[0], -1, nx).sum(axis=1)
    return a


def circular_convolve(image, dy, dx, w):
    """Circular convolution of an image with a sparse kernel (numpy FFT).

    Parameters
    ----------
    image : ndarray of float64, shape (ny, nx)
        Input image (mostly zeros is fastest: only the bounding box of the
        non-zero pixels is transformed).
    dy, dx : ndarray of int
        Shifts of the kernel taps, pixels.
    w : ndarray of float64
        Tap weights.

    Returns
    -------
    ndarray of float64, shape (ny, nx)
        out[(y + dy) mod ny, (x + dx) mod nx] += w * image[y, x] summed over
        taps, i.e. the sum of w * (image shifted circularly by (dy, dx)).

    Notes
    -----
    The linear convolution of the bounding box with the kernel is computed
    by FFT and wrapped onto the grid. Pixels no tap reaches are exactly 0
    (support from the FFT of the 0/1 indicators, integer counts); with a
    non-negative image and weights the result is clipped at 0. Differences
    from the exact sum are round-off of the FFT, ~1e-15 of the image
    maximum (1e-10 relative at the faintest pixels of the real 80415201001
    projection).
    """
    src = np.asarray(image, dtype=np.float64)
    ny, nx = src.shape
    dy = np.asarray(dy, dtype=np.int64).ravel()
    dx = np.asarray(dx, dtype=np.int64).ravel()
    w = np.asarray(w, dtype=np.float64).ravel()
    out = np.zeros_like(src)
    nz = src != 0
    if w.size == 0 or not nz.any():
        return out
    rows, cols = np.flatnonzero(nz.any(axis=1)), np.flatnonzero(nz.any(axis=0))
    y0, x0 = rows[0], cols[0]
    blk, bnz = src[y0:rows[-1] + 1, x0:cols[-1] + 1], nz[y0:rows[-1] + 1, x0:cols[-1] + 1]
    ky0, kx0 = int(dy.min()), int(dx.min())
    kern = np.zeros((int(dy.max()) - ky0 + 1, int(dx.max()) - kx0 + 1))
    np.add.at(kern, (dy - ky0, dx - kx0), w)
    taps = np.zeros_like(kern)
    taps[dy[w != 0] - ky0, dx[w != 0] - kx0] = 1.0
    h, wd = blk.shape[0] + kern.shape[0] - 1, blk.shape[1] + kern.shape[1] - 1
    shape = (_fft_size(h), _fft_size(wd))
    lin = np.fft.irfft2(np.fft.rfft2(blk, shape) * np.fft.rfft2(kern, shape), shape)[:h, :wd]
    count = np.fft.irfft2(np.fft.rfft2(bnz.astype(np.float64), shape) * np.fft.rfft2(taps, shape), shape)[:h, :wd]
    lin, count = _fold(lin, ny, nx), _fold(count, ny, nx)
    if np.all(w >= 0) and not np.any(blk < 0):
        lin = np.maximum(lin, 0.0)
    yi = (np.arange(lin.shape[0]) + y0 + ky0) % ny
    xi = (np.arange(lin.shape[1]) + x0 + kx0) % nx
    out[np.ix_(yi, xi)] = np.where(count > 0.5, lin, 0.0)
    return out


def smear(images, hist, peak, nudge, progress=None):
    """Smear images by the aspect histogram (REFERENCE section 4, step 5).

    Parameters
    ----------
    images : sequence of ndarray, shape (1000, 1000)
        Images placed at the aspect peak (:func:`rotate_to_sky`).
    hist : nuskybgd.sky.aspect.AspectHistogram
        Aspect histogram.
    peak : tuple of int
        Sky pixel of the histogram maximum.
    nudge : tuple of float
        (nx, ny), sky pixels.
    progress : bool or None
        Show a progress bar on stderr (None: only on a terminal).

    Returns
    -------
    list of ndarray
        sum over aspect pixels of w * T(image, X - px - nx, Y - py - ny), T a
        circular bilinear shift, computed as one sparse convolution.
    """
    dy, dx, w = aspect_kernel(hist.image, hist.x_off, hist.y_off, peak, nudge)
    if progress or (progress is None and sys.stderr is not None and sys.stderr.isatty()):
        from tqdm.auto import tqdm  # local: importing tqdm.auto costs ~0.1 s of CPU, paid only with a bar
        images = tqdm(images, desc="aspect smearing", unit="image", leave=False)
    return [circular_convolve(img, dy, dx, w) for img in images]


def project_background(ref_header, module, instrmap, aspect, detectors=(1, 2, 3, 4),
                       aperture=None, path=None, progress=None):
    """Aperture and detector images of one module on the reference sky grid.

    Parameters
    ----------
    ref_header : astropy.io.fits.Header
        Header of the 1000x1000 reference sky image (WCS and PA_PNT).
    module : str
        ``"A"`` or ``"B"``.
    instrmap : array_like, shape (360, 360)
        Instrument map (detector number 1..4, 0 elsewhere).
    aspect : nuskybgd.sky.aspect.AspectHistogram
        Aspect histogram (dwell time, s).
    detectors : sequence of int
        Detector numbers 1..4 to project.
    aperture : ndarray, shape (360, 360), optional
        DET1 aperture image (default :func:`aperture_image` of ``module``).
    path : str, optional
        Reference image file name for error messages.
    progress : bool or None
        Progress bar on stderr (None: only on a terminal).

    Returns
    -------
    Projection
        Images in units of (aperture value or 1) per sky pixel, normalised
        so that smearing by the histogram does not scale them by the
        exposure.

    Raises
    ------
    NuskybgdError
        Unknown module, bad reference header, aspect histogram without
        exposure, bad instrument map, no detector requested.
    """
    module = module_letter(module)
    pa = check_reference_header(ref_header, path)
    dets = tuple(sorted(set(int(d) for d in detectors)))
    if not dets:
        raise NuskybgdError("no detector requested (use det=1234 or a subset)")
    masks = detector_masks(instrmap, dets)
    img = np.asarray(aspect.image, dtype=np.float64)
    if img.size == 0 or not np.all(np.isfinite(img)) or np.any(img < 0):
        raise NuskybgdError("aspect histogram holds no, negative or non-finite dwell times")
    exposure = float(img.sum())
    if not exposure > 0:
        raise NuskybgdError("aspect histogram has no exposure (all pixels zero)")
    if not masks.any():
        raise NuskybgdError(f"instrument map has no pixel of detector(s) {''.join(map(str, dets))}")
    if aperture is None:
        aperture = aperture_image(module)
    peak = aspect.peak
    a = rotation_angle(pa)
    nudge = aspect_nudge(a)
    ap_sky, det_sky = rotate_to_sky(aperture, masks, peak, pa, exposure)
    smeared = smear([ap_sky, *det_sky], aspect, peak, nudge, progress=progress)
    detimgs = np.zeros((4, SKY_SIZE, SKY_SIZE))
    for d, im in zip(dets, smeared[1:]):
        detimgs[d - 1] = im
    return Projection(aperture=smeared[0], detectors=detimgs, detector_numbers=dets, peak=peak, angle=a)
