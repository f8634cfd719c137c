"""Read epoch calibration bundles written by ``nuskybgd calibrate``.

``CALDIR/calibration.json`` lists epochs (label, start, stop) and, per
epoch, ``ratios.json`` and ``gain.json`` with their sha256. :func:`select_bundle`
returns the bundle whose epoch contains a date, after checking the checksums.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from astropy.io import fits
from astropy.time import Time

from ..errors import NuskybgdError

__all__ = ["CalibrationBundle", "select_bundle", "read_calibration_index", "observation_date"]


@dataclass
class CalibrationBundle:
    """One epoch's bundle.

    Attributes
    ----------
    epoch, start, stop : str
        Label and UTC range (start inclusive, stop exclusive).
    ratios_path, gain_path : pathlib.Path
    ratios : dict
        The ratios.json content (presets).
    gain : dict
        The gain.json content.
    version : str
    """

    epoch: str
    start: str
    stop: str
    ratios_path: Path
    gain_path: Path
    ratios: dict = field(repr=False)
    gain: dict = field(repr=False)
    version: str = ""


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_calibration_index(caldir):
    """The ``calibration.json`` of a calibration folder.

    Parameters
    ----------
    caldir : str or os.PathLike
        Output folder of ``nuskybgd calibrate``.

    Returns
    -------
    dict
        The parsed index (it has at least an ``"epochs"`` entry).

    Raises
    ------
    NuskybgdError
        Missing or damaged index.
    """
    path = Path(caldir) / "calibration.json"
    if not path.exists():
        raise NuskybgdError(f"{path}: not found (is {caldir} the output of 'nuskybgd calibrate'?)")
    try:
        index = json.loads(path.read_text())
        index["epochs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NuskybgdError(f"{path}: not a calibration index ({exc})") from None
    return index


def _iso(date):
    try:
        return Time(str(date).strip(), scale="utc").isot
    except ValueError:
        raise NuskybgdError(f"date '{date}' is not an ISO date") from None


def select_bundle(caldir, date):
    """The bundle whose epoch contains ``date``.

    Parameters
    ----------
    caldir : str or os.PathLike
        Output folder of ``nuskybgd calibrate``.
    date : str
        Observation date (ISO, UTC), e.g. the spectrum's DATE-OBS.

    Returns
    -------
    CalibrationBundle

    Raises
    ------
    NuskybgdError
        No epoch contains the date (the covered range is named), epochs
        without dates, a file whose sha256 differs from the index.
    """
    caldir = Path(caldir)
    index = read_calibration_index(caldir)
    when = _iso(date)
    dated = [e for e in index["epochs"] if e.get("start") and e.get("stop")]
    if not dated:
        raise NuskybgdError(f"{caldir}/calibration.json: epochs have no dates; cannot pick one for {date}")
    hit = [e for e in dated if _iso(e["start"]) <= when < _iso(e["stop"])]
    if not hit:
        lo = min(_iso(e["start"]) for e in dated)[:10]
        hi = max(_iso(e["stop"]) for e in dated)[:10]
        raise NuskybgdError(f"{caldir}: no calibration epoch contains {date} (epochs cover {lo} .. {hi})")
    e = hit[0]
    paths = {}
    for kind in ("ratios", "gain"):
        f = e["files"][kind]
        p = caldir / f["path"]
        if not p.exists():
            raise NuskybgdError(f"{p}: listed in calibration.json but missing")
        if _sha256(p) != f["sha256"]:
            raise NuskybgdError(f"{p}: sha256 differs from calibration.json (modified or damaged bundle)")
        paths[kind] = p
    try:
        ratios = json.loads(paths["ratios"].read_text())
        gain = json.loads(paths["gain"].read_text())
    except ValueError as exc:
        raise NuskybgdError(f"{caldir}: bundle of epoch {e['epoch']} is not JSON ({exc})") from None
    return CalibrationBundle(epoch=e["epoch"], start=e["start"], stop=e["stop"], ratios_path=paths["ratios"],
                             gain_path=paths["gain"], ratios=ratios, gain=gain, version=str(index.get("version", "")))


def observation_date(paths):
    """Observation date of spectra: the DATE-OBS of the first file that has one.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Spectra (OGIP PHA, SPECTRUM extension or the first extension).

    Returns
    -------
    str
        ISO date (UTC).

    Raises
    ------
    NuskybgdError
        No file carries DATE-OBS.
    """
    for p in paths:
        try:
            with fits.open(p) as hdul:
                hdu = hdul["SPECTRUM"] if "SPECTRUM" in hdul else hdul[1]
                date = hdu.header.get("DATE-OBS") or hdul[0].header.get("DATE-OBS")
        except (OSError, IndexError, KeyError):
            continue
        if date and str(date).strip():
            return _iso(date)[:19]
    names = ", ".join(str(p) for p in list(paths)[:3])
    raise NuskybgdError(f"{names}: no DATE-OBS in the spectra; cannot pick a calibration epoch")
