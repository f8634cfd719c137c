"""Numbers of the NuSTAR instrument and of the original tool's presets.

One home for constants used by more than one module: the PI/energy grid,
pixel scales, the normalisation factors of the background presets
(REFERENCE section 6), and the one rule that names a focal-plane module.
"""

from .errors import NuskybgdError

__all__ = [
    "PI_OFFSET", "PI_GAIN", "N_CHANNELS", "SKY_PIXEL_ARCSEC", "SKY_PIXEL_DEG", "SKY_SHAPE",
    "DET1_PIXEL_MM", "DET1_SIZE", "APBGD_FACTOR", "FCXB_FACTOR", "ARCMIN2_PIX", "MODULES",
    "module_letter",
]

#: Energy of PI channel c: lower edge PI_OFFSET + PI_GAIN * c keV.
PI_OFFSET = 1.6
#: Width of a PI channel and of a standard response energy bin, keV.
PI_GAIN = 0.04
#: PI channels (0..4095) and bins of the standard response energy grid.
N_CHANNELS = 4096

#: Sky pixel size of the 1000 x 1000 sky grid, arcsec.
SKY_PIXEL_ARCSEC = 2.45810736
#: Sky pixel size, degrees.
SKY_PIXEL_DEG = SKY_PIXEL_ARCSEC / 3600.0
#: Shape of sky images (rows, columns).
SKY_SHAPE = (1000, 1000)
#: DET1 pixel size, mm.
DET1_PIXEL_MM = 0.12096
#: DET1 images are DET1_SIZE x DET1_SIZE pixels.
DET1_SIZE = 360

#: apbgd reference norm per unit aperture-image sum (0.002353 / 32).
APBGD_FACTOR = 0.002353 / 32
#: fcxb norm per sky pixel: 0.002353 * 1.5 * (2.45810736 * 1000 / 3600)^2 / 1000^2.
FCXB_FACTOR = 0.002353 * 1.5 * (SKY_PIXEL_ARCSEC * 1000 / 3600) ** 2 / 1000 ** 2
#: Sky pixels per "arcmin^2" in the original's intn preset (1/599.75).
ARCMIN2_PIX = 599.75

#: The two focal-plane modules.
MODULES = ("A", "B")


def module_letter(module):
    """The module letter of a module name.

    Parameters
    ----------
    module : str
        ``"A"``, ``"B"``, ``"FPMA"`` or ``"FPMB"`` (any case, surrounding
        blanks ignored).

    Returns
    -------
    str
        ``"A"`` or ``"B"``.

    Raises
    ------
    NuskybgdError
        For any other value.
    """
    m = str(module).strip().upper()
    if m in ("FPMA", "FPMB"):
        m = m[-1]
    if m not in MODULES:
        raise NuskybgdError(f"unknown module {module!r}: module must be A or B (FPMA/FPMB)")
    return m
