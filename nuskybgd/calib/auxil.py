"""Access to the nuskybgd calibration bundle (the original tool's ``auxil/``).

Lookup order for every file:

1. the folder named by ``$NUSKYBGD_AUXIL``;
2. the user cache, ``$NUSKYBGD_CACHE`` or ``$XDG_CACHE_HOME/nuskybgd/auxil``
   (default ``~/.cache/nuskybgd/auxil``);
3. a download from the public upstream repository (NuSTAR/nuskybgd-py,
   folder ``auxil/``; base address overridable with ``$NUSKYBGD_AUXIL_URL``),
   verified against the sha256 sums below before it enters the cache.
"""

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

from ..errors import NuskybgdError

__all__ = [
    "BUNDLE_FILES", "UPSTREAM_URL", "cache_dir", "sha256_file", "auxil_path", "download_auxil",
    "load_ratios", "load_nomapbgdparams",
]

#: Upstream location of the bundle (raw files of NuSTAR/nuskybgd-py, auxil/).
UPSTREAM_URL = "https://raw.githubusercontent.com/NuSTAR/nuskybgd-py/master/auxil/"

#: sha256 of every bundle file, as distributed upstream.
BUNDLE_FILES = {
    "be.arf": "0b69561d4e3645d9c9ee5175f029a678cd40bf1a5a74e0d6df0db8f5b0358f75",
    "detA_det1.img.gz": "54f4a0dfce4fdc82c80bcd5a5b743367eea6349f00004820482685f84883a6e1",
    "detB_det1.img.gz": "c8f6e8533a478d5b361d7c569791d56309ad1d1e33d10622ca895fa36d594721",
    "diag.rmf": "c175c5c0ad05e03dd9967c8a513d2ef216c97f5c767846925a99e58322485c0b",
    "fcxbA.arf": "b8999442f171382e1e23ae03bd756026a7f1b28b9c7323623941c7addcf4a500",
    "fcxbB.arf": "f4bc1999ec609fb0cd94fa135e689be248816bd9bc4d0d7f10b78ce2096d71ff",
    "nomapbgdparams.dat": "aae0ae45b5e63a254b2afe570f11c14f87f210d0e40326f0b7d31c82a5e4d68a",
    "ratios.json": "ac50b1ac145dddedb5e1d4f53db33a78dd7df7fb82afbf36b461462c7f52034a",
    "template.arf": "18e90457718ef2ec5bb5d93cd7465a1f982298070c77f6527dd438b732ef5c74",
}


def cache_dir():
    """Folder of the user cache for the bundle.

    Returns
    -------
    pathlib.Path
        ``$NUSKYBGD_CACHE`` if set, else ``$XDG_CACHE_HOME/nuskybgd/auxil``
        (``~/.cache/nuskybgd/auxil`` by default). It may not exist yet.
    """
    if os.environ.get("NUSKYBGD_CACHE"):
        return Path(os.environ["NUSKYBGD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nuskybgd" / "auxil"


def sha256_file(path):
    """sha256 of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        Hexadecimal digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_auxil(name, base_url=None, dest_dir=None, progress=True):
    """Download one bundle file, verify its sha256 and store it in the cache.

    Parameters
    ----------
    name : str
        Bundle file name (a key of :data:`BUNDLE_FILES`).
    base_url : str, optional
        Folder address ending in ``/`` (``file://`` addresses work too).
        Defaults to ``$NUSKYBGD_AUXIL_URL`` or :data:`UPSTREAM_URL`.
    dest_dir : str or os.PathLike, optional
        Cache folder; defaults to :func:`cache_dir`.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    pathlib.Path
        The verified cached file.

    Raises
    ------
    NuskybgdError
        If the download fails or the checksum does not match; nothing is
        left in the cache in that case.
    """
    if name not in BUNDLE_FILES:
        raise NuskybgdError(f"{name}: not a file of the nuskybgd calibration bundle")
    base_url = base_url or os.environ.get("NUSKYBGD_AUXIL_URL") or UPSTREAM_URL
    if not base_url.endswith("/"):
        base_url += "/"
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir()
    url = base_url + name
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
    try:
        try:
            # Open the temporary file first so that its descriptor is closed when urlopen fails.
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                total = resp.headers.get("Content-Length")
                total = int(total) if total and total.isdigit() else None
                from tqdm.auto import tqdm  # local: tqdm.auto costs 0.03-0.1 s at import; only for the download bar
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}",
                          disable=not progress, leave=False) as bar:
                    for chunk in iter(lambda: resp.read(1 << 16), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise NuskybgdError(f"{url}: download failed ({exc})") from None
        digest = sha256_file(tmp)
        if digest != BUNDLE_FILES[name]:
            raise NuskybgdError(
                f"{url}: sha256 mismatch (got {digest[:12]}..., expected {BUNDLE_FILES[name][:12]}...); nothing cached")
        final = dest_dir / name
        os.replace(tmp, final)
        return final
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def auxil_path(name, download=True):
    """Locate a calibration-bundle file.

    Parameters
    ----------
    name : str
        File name inside the bundle, e.g. ``"ratios.json"``.
    download : bool
        Try the verified download when the file is in neither place.

    Returns
    -------
    pathlib.Path
        Path of an existing file.

    Raises
    ------
    NuskybgdError
        Naming the three places searched, when the file cannot be found.
    """
    env = os.environ.get("NUSKYBGD_AUXIL")
    if env:
        p = Path(env) / name
        if p.is_file():
            return p
    p = cache_dir() / name
    if p.is_file():
        return p
    if download and name in BUNDLE_FILES:
        try:
            return download_auxil(name)
        except NuskybgdError as exc:
            reason = str(exc)
    else:
        reason = "download not attempted"
    raise NuskybgdError(
        f"{name}: calibration bundle file not found in $NUSKYBGD_AUXIL ({env or 'unset'}), "
        f"the user cache ({cache_dir()}) or upstream ({reason}); set NUSKYBGD_AUXIL to a copy of nuskybgd-py/auxil")


@lru_cache(maxsize=None)
def _load_json(path):
    with open(path) as f:
        return json.load(f)


def load_ratios():
    """Read the bundle's ``ratios.json`` (presets of the four components).

    Returns
    -------
    dict
        The parsed JSON: ``models[0..3]`` for apbgd, intbgd, fcxb and intn.
    """
    p = auxil_path("ratios.json")
    try:
        return _load_json(str(p))
    except (ValueError, OSError) as exc:
        raise NuskybgdError(f"{p}: cannot read presets ({exc})") from None


def load_nomapbgdparams():
    """Read the bundle's ``nomapbgdparams.dat`` (aperture-image parameters).

    Returns
    -------
    dict
        ``{"A": {...}, "B": {...}}`` with keys ``norm``, ``const``,
        ``xshift_mm``, ``yshift_mm``, ``rotation``.
    """
    p = auxil_path("nomapbgdparams.dat")
    vals = []
    for line in Path(p).read_text().splitlines():
        s = line.split("#", 1)[0].strip()
        if s:
            try:
                vals.append(float(s))
            except ValueError:
                raise NuskybgdError(f"{p}: cannot parse line {line!r}") from None
    if len(vals) != 10:
        raise NuskybgdError(f"{p}: expected 10 numbers, found {len(vals)}")
    return {
        "A": dict(norm=vals[0], const=vals[2], xshift_mm=vals[4], yshift_mm=vals[5], rotation=vals[6]),
        "B": dict(norm=vals[1], const=vals[3], xshift_mm=vals[7], yshift_mm=vals[8], rotation=vals[9]),
    }
