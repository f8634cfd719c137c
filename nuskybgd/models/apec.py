"""XSPEC's ``apec`` (collisionally ionised plasma) without XSPEC.

Three sources of the spectrum, tried in this order:

1. AtomDB emissivity files ``apec_v<version>_coco.fits`` and
   ``apec_v<version>_line.fits``, found in ``$ATOMDB``, in ``$APECROOT``
   (a folder, or a file root such as ``/data/apec_v3.1.2``), or in the user
   cache filled by ``nuskybgd atomdb download``
   (``$NUSKYBGD_CACHE/atomdb`` or ``$XDG_CACHE_HOME/nuskybgd/atomdb``).
   They are read with :class:`AtomDBTables`, which follows REFERENCE
   section 8.
2. A tabulated spectrum, ``$NUSKYBGD_APEC_TEMPLATE`` (text: ``E_lo E_hi
   photons/cm^2/s per bin`` at norm 1, ``#`` comments; kT, Abundanc and z in
   the first comment line as ``kT=<v> keV, Abundanc=<v>, z=<v>``). It is valid
   only at those parameters (by default the intbgd preset) and on its own
   energy bins, which are looked up by energy.
3. Otherwise :class:`~nuskybgd.errors.NuskybgdError` naming the download
   command.

The AtomDB reader computes, for the two tabulated temperatures bracketing kT
(linear weights in kT), the sum over the elements XSPEC's apec uses (H, He at
solar abundance; C, N, O, Ne, Mg, Al, Si, S, Ar, Ca, Fe, Ni times Abundanc;
the files' own Anders & Grevesse abundances, i.e. XSPEC's default ``angr``)
of the continuum and pseudo-continuum interpolated at the rest-frame bin
centres times the rest-frame bin width, plus every line with rest-frame energy
12.39842/lambda added whole to its bin; the result is multiplied by
1e14/(1+z). No thermal or velocity broadening (XSPEC's default).
"""

import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..calib.auxil import sha256_file
from ..calib.presets import component_presets
from ..errors import NuskybgdError
from ..kernels.gain import rebin_integrated
from ..kernels.spectral import check_energy_bins

__all__ = [
    "HC_KEV_ANGSTROM", "APEC_ELEMENTS", "METALS", "ATOMDB_SHA256", "ATOMDB_URL",
    "DEFAULT_ATOMDB_VERSION", "DOWNLOAD_COMMAND", "atomdb_cache_dir", "find_atomdb",
    "AtomDBTables", "TemplateSpectrum", "apec_source", "apec_spectrum", "download_atomdb",
]

log = logging.getLogger("nuskybgd")

#: h c in keV Angstrom (line energy = HC / lambda), as XSPEC uses it.
HC_KEV_ANGSTROM = 12.39842
#: Atomic numbers XSPEC's apec includes (its vapec element list).
APEC_ELEMENTS = (1, 2, 6, 7, 8, 10, 12, 13, 14, 16, 18, 20, 26, 28)
#: Elements scaled by Abundanc (C..Ni); H and He stay solar.
METALS = (6, 7, 8, 10, 12, 13, 14, 16, 18, 20, 26, 28)
#: XSPEC 6.35 reads AtomDB 3.1.2 by default.
DEFAULT_ATOMDB_VERSION = "3.1.2"
#: sha256 of the AtomDB files (as registered by PyPI soxs 5.3.0).
ATOMDB_SHA256 = {
    "apec_v3.1.2_coco.fits": "071138a66e0aafb11037e4d9dddf84df13df347adddc02bbc53c03463fd76b92",
    "apec_v3.1.2_line.fits": "33c3cde3d444ccaee5fab78ef9e31d1bbe4a45a0138595ebd4d4396c4f4b76be",
    "apec_v3.1.3_coco.fits": "ab4305ac323443c58a128f66dc6e33a63168136e7cdf38a181a3c2229d078eb7",
    "apec_v3.1.3_line.fits": "6d47d93b539142b3bd5c6e425f80f031f14dabdd2ab60c129bf650ac6ef06650",
    "apec_v3.0.9_coco.fits": "df8a288aa7e10fdacb2a4d9451609c02d4c99fa6e73c05d25e8e4266b73b74ab",
    "apec_v3.0.9_line.fits": "c89a77c2aa45cdc16167b8d8c754286800c7721e3190a38e638a50267246e4e9",
}
#: AtomDB release tarballs (``{version}`` is replaced); ``$NUSKYBGD_ATOMDB_URL`` overrides.
ATOMDB_URL = "https://hea-www.cfa.harvard.edu/AtomDB/releases/atomdb_v{version}.tar.bz2"
#: The one command that fills the cache.
DOWNLOAD_COMMAND = "nuskybgd atomdb download"

_VERSION_RE = re.compile(r"apec_v(\d+(?:\.\d+)*)_coco\.fits$")


# --------------------------------------------------------------------------
# locating the files
# --------------------------------------------------------------------------

def atomdb_cache_dir():
    """Folder of the user's AtomDB cache.

    Returns
    -------
    pathlib.Path
        ``$NUSKYBGD_CACHE/atomdb`` if ``NUSKYBGD_CACHE`` is set, else
        ``$XDG_CACHE_HOME/nuskybgd/atomdb`` (``~/.cache/nuskybgd/atomdb``).
    """
    if os.environ.get("NUSKYBGD_CACHE"):
        return Path(os.environ["NUSKYBGD_CACHE"]) / "atomdb"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nuskybgd" / "atomdb"


def _version_key(v):
    return tuple(int(x) for x in v.split("."))


def _pair_in_folder(folder):
    """Newest apec_v*_coco.fits with its line file in ``folder``, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for p in folder.glob("apec_v*_coco.fits"):
        m = _VERSION_RE.search(p.name)
        if m and (folder / f"apec_v{m.group(1)}_line.fits").is_file():
            found.append(m.group(1))
    if not found:
        return None
    v = max(found, key=_version_key)
    return folder / f"apec_v{v}_coco.fits", folder / f"apec_v{v}_line.fits"


def find_atomdb():
    """Locate the AtomDB apec files.

    Returns
    -------
    tuple of pathlib.Path or None
        ``(coco, line)`` from ``$ATOMDB``, ``$APECROOT`` (folder or file root)
        or the user cache (:func:`atomdb_cache_dir`), in that order; None when
        none holds both files. In a folder the highest version wins.
    """
    env = os.environ.get("ATOMDB")
    if env:
        pair = _pair_in_folder(env)
        if pair:
            return pair
    env = os.environ.get("APECROOT")
    if env:
        pair = _pair_in_folder(env)
        if pair:
            return pair
        coco, line = Path(env + "_coco.fits"), Path(env + "_line.fits")
        if coco.is_file() and line.is_file():
            return coco, line
    return _pair_in_folder(atomdb_cache_dir())


# --------------------------------------------------------------------------
# AtomDB reader
# --------------------------------------------------------------------------

def _column(table, name, path, hdu):
    try:
        return np.asarray(table[name])
    except (KeyError, ValueError):
        raise NuskybgdError(
            f"{path}: not an AtomDB apec file (HDU {hdu} has no {name} column)") from None


class AtomDBTables:
    """AtomDB apec emissivities (``*_coco.fits`` + ``*_line.fits``).

    Parameters
    ----------
    coco_path, line_path : str or os.PathLike
        The continuum and line files of one AtomDB version.

    Raises
    ------
    NuskybgdError
        When a file is missing or not in the AtomDB format (PARAMETERS table
        with kT; one table per temperature with the expected columns), or
        when the two files have different temperature lists.
    """

    def __init__(self, coco_path, line_path):
        from ..io.fitsfile import open_fits  # local: keeps astropy I/O (~0.5 s) out of models (atomdb --help)

        self.coco_path = Path(coco_path)
        self.line_path = Path(line_path)
        self.kt = {}
        self._coco = []
        self._line = []
        for path, kind in ((self.coco_path, "coco"), (self.line_path, "line")):
            with open_fits(path, f"AtomDB {kind} file") as hdul:
                if len(hdul) < 3 or not hasattr(hdul[1], "columns"):
                    raise NuskybgdError(f"{path}: not an AtomDB apec file (no PARAMETERS table "
                                        f"followed by one table per temperature)")
                kt = _column(hdul[1].data, "kT", path, 1).astype(float)
                ntemp = kt.size
                if ntemp < 1 or len(hdul) < ntemp + 2:
                    raise NuskybgdError(f"{path}: not an AtomDB apec file ({ntemp} temperatures in "
                                        f"PARAMETERS but {len(hdul) - 2} emissivity tables)")
                if np.any(np.diff(kt) <= 0) or not np.all(np.isfinite(kt)):
                    raise NuskybgdError(f"{path}: not an AtomDB apec file (kT values not increasing)")
                self.kt[kind] = kt
                for i in range(ntemp):
                    hdu = hdul[i + 2]
                    if not hasattr(hdu, "columns"):
                        raise NuskybgdError(f"{path}: not an AtomDB apec file (HDU {i + 2} is not a table)")
                    d = hdu.data
                    if kind == "coco":
                        self._coco.append(self._read_coco(d, path, i + 2))
                    else:
                        self._line.append(self._read_line(d, path, i + 2))
        if self.kt["coco"].size != self.kt["line"].size or not np.allclose(
                self.kt["coco"], self.kt["line"], rtol=1e-6):
            raise NuskybgdError(f"{self.coco_path}: temperatures differ from those of {self.line_path}")
        self.temperatures = self.kt["line"]
        self._parts_cache = {}

    @staticmethod
    def _read_coco(d, path, hdu):
        z = _column(d, "Z", path, hdu).astype(int)
        rmj = _column(d, "rmJ", path, hdu).astype(int)
        out = {}
        for kind in ("Cont", "Pseudo"):
            n = _column(d, f"N_{kind}", path, hdu).astype(int)
            e = _column(d, f"E_{kind}", path, hdu)
            v = _column(d, "Continuum" if kind == "Cont" else "Pseudo", path, hdu)
            out[kind] = (n, e, v)
        return z, rmj, out

    @staticmethod
    def _read_line(d, path, hdu):
        lam = _column(d, "Lambda", path, hdu).astype(float)
        eps = _column(d, "Epsilon", path, hdu).astype(float)
        elem = _column(d, "Element", path, hdu).astype(int)
        return lam, eps, elem

    def _parts(self, i, lo, hi):
        """(solar, metal) emissivity per rest-frame bin at temperature index i.

        ``solar`` holds H and He, ``metal`` the elements scaled by Abundanc;
        cached for the last few (temperature, grid) pairs, so that changing
        Abundanc or the norm costs no new interpolation.
        """
        key = (i, lo.tobytes(), hi.tobytes())
        hit = self._parts_cache.get(key)
        if hit is not None:
            return hit
        centre = 0.5 * (lo + hi)
        width = hi - lo
        solar = np.zeros(lo.size)
        metal = np.zeros(lo.size)
        z, rmj, parts = self._coco[i]
        for row in range(z.size):
            # element totals (rmJ == 0) of the elements apec includes
            if rmj[row] != 0 or z[row] not in APEC_ELEMENTS:
                continue
            target = metal if z[row] in METALS else solar
            for kind in ("Cont", "Pseudo"):
                n, e, v = parts[kind]
                k = int(n[row])
                if k <= 0:
                    continue
                ek = np.asarray(e[row][:k], dtype=float)
                vk = np.asarray(v[row][:k], dtype=float)
                target += np.interp(centre, ek, vk, left=0.0, right=0.0) * width
        lam, eps, elem = self._line[i]
        with np.errstate(divide="ignore"):
            energy = HC_KEV_ANGSTROM / lam
        edges = np.concatenate([lo, hi[-1:]])
        idx = np.searchsorted(edges, energy, side="right") - 1
        ok = (idx >= 0) & (idx < lo.size) & np.isfinite(energy)
        ok[ok] &= energy[ok] < hi[idx[ok]]  # inside the bin, not in a gap between bins
        for target, members in ((solar, (1, 2)), (metal, METALS)):
            sel = ok & np.isin(elem, members)
            target += np.bincount(idx[sel], weights=eps[sel], minlength=lo.size)
        if len(self._parts_cache) >= 8:
            self._parts_cache.pop(next(iter(self._parts_cache)))
        self._parts_cache[key] = (solar, metal)
        return solar, metal

    def _one_temperature(self, i, lo, hi, abundanc):
        """Emissivity per rest-frame bin at tabulated temperature index i."""
        solar, metal = self._parts(i, lo, hi)
        return solar + abundanc * metal

    def spectrum(self, elo, ehi, kt, abundanc, redshift):
        """apec at norm 1 on energy bins (photons/cm^2/s per bin).

        Parameters
        ----------
        elo, ehi : array_like
            Observed-frame bin edges (keV).
        kt : float
            Plasma temperature (keV), inside the tabulated range.
        abundanc : float
            Metal abundance relative to solar (Anders & Grevesse).
        redshift : float
            Redshift z (> -1).

        Returns
        -------
        numpy.ndarray
            Photons/cm^2/s per bin.
        """
        elo, ehi = check_energy_bins(elo, ehi, "apec energy grid")
        kt, abundanc, redshift = float(kt), float(abundanc), float(redshift)
        t = self.temperatures
        if not (t[0] <= kt <= t[-1]):
            raise NuskybgdError(f"{self.line_path}: kT = {kt:g} keV outside the tabulated range "
                                f"{t[0]:g}..{t[-1]:g} keV")
        if not redshift > -1:
            raise NuskybgdError(f"apec: redshift must be > -1 (got {redshift:g})")
        zf = 1.0 + redshift
        lo, hi = elo * zf, ehi * zf
        j = int(np.searchsorted(t, kt, side="right")) - 1
        j = min(max(j, 0), t.size - 2) if t.size > 1 else 0
        if t.size == 1:
            spec = self._one_temperature(0, lo, hi, abundanc)
        else:
            w = (kt - t[j]) / (t[j + 1] - t[j])
            spec = np.zeros(lo.size)
            if w < 1.0:
                spec += (1.0 - w) * self._one_temperature(j, lo, hi, abundanc)
            if w > 0.0:
                spec += w * self._one_temperature(j + 1, lo, hi, abundanc)
        return spec * 1e14 / zf


# --------------------------------------------------------------------------
# template
# --------------------------------------------------------------------------

_PARAM_RE = {
    "kt": re.compile(r"\bkT\s*=\s*([-+0-9.eE]+)"),
    "abundanc": re.compile(r"\bAbundanc\s*=\s*([-+0-9.eE]+)"),
    "redshift": re.compile(r"\bz\s*=\s*([-+0-9.eE]+)"),
}


class TemplateSpectrum:
    """A tabulated apec spectrum valid at one parameter set.

    Parameters
    ----------
    path : str or os.PathLike
        Text file: three columns ``E_lo E_hi value`` (keV, keV,
        photons/cm^2/s per bin at norm 1), ``#`` comments. The parameters are
        read from the comments (``kT=... Abundanc=... z=...``); when absent,
        the intbgd preset of ``ratios.json`` is assumed.

    Raises
    ------
    NuskybgdError
        When the file is missing, has rows of the wrong shape, NaNs or
        bins that do not increase.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise NuskybgdError(f"{self.path}: apec template (NUSKYBGD_APEC_TEMPLATE) not found")
        text = self.path.read_text(errors="replace")
        comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
        try:
            data = np.loadtxt(self.path, comments="#", ndmin=2)
        except ValueError as exc:
            raise NuskybgdError(f"{self.path}: cannot read apec template ({exc})") from None
        if data.shape[1] != 3 or data.shape[0] < 1:
            raise NuskybgdError(f"{self.path}: apec template needs 3 columns E_lo E_hi value")
        if not np.all(np.isfinite(data)):
            raise NuskybgdError(f"{self.path}: apec template contains NaN or infinite values")
        self.elo, self.ehi = check_energy_bins(data[:, 0], data[:, 1], str(self.path))
        self.values = data[:, 2]
        params = {}
        for key, rx in _PARAM_RE.items():
            m = rx.search(comments)
            if m:
                try:
                    params[key] = float(m.group(1))
                except ValueError:
                    pass
        if len(params) < 3:
            a = component_presets("A").apec
            params = {"kt": a.kt, "abundanc": a.abundanc, "redshift": a.redshift, **params}
        self.params = params
        self._centres = 0.5 * (self.elo + self.ehi)

    def spectrum(self, elo, ehi, kt, abundanc, redshift):
        """Template values on the requested bins (looked up by energy).

        Parameters
        ----------
        elo, ehi : array_like
            Bin edges (keV). Bins of the template (to 1e-5 keV + 1e-6 E;
            NuSTAR response grids are stored in float32) are looked up;
            other bins get the template integrated onto them
            (:func:`nuskybgd.kernels.gain.rebin_integrated`: constant density
            inside each tabulated bin, zero outside the tabulated range).
        kt, abundanc, redshift : float
            Must equal the template's parameters (relative 1e-5).

        Returns
        -------
        numpy.ndarray
            Photons/cm^2/s per bin at norm 1.
        """
        elo, ehi = check_energy_bins(elo, ehi, "apec energy grid")
        want = {"kt": float(kt), "abundanc": float(abundanc), "redshift": float(redshift)}
        for key, v in want.items():
            ref = self.params[key]
            if abs(v - ref) > 1e-5 * max(abs(ref), 1.0):
                raise NuskybgdError(
                    f"{self.path}: the apec template holds only kT={self.params['kt']:g}, "
                    f"Abundanc={self.params['abundanc']:g}, z={self.params['redshift']:g} "
                    f"({key} = {v:g} asked); install AtomDB with '{DOWNLOAD_COMMAND}' for other values")
        tol_lo = 1e-5 + 1e-6 * np.abs(elo)
        idx = np.searchsorted(self.elo, elo - tol_lo)
        idx = np.clip(idx, 0, self.elo.size - 1)
        ok = (np.abs(self.elo[idx] - elo) <= tol_lo) & (np.abs(self.ehi[idx] - ehi) <= 1e-5 + 1e-6 * np.abs(ehi))
        if np.all(ok):
            return self.values[idx].copy()
        # other bins (a shifted response grid under a gain, a coarser grid):
        # integrate the tabulated spectrum onto them (constant density inside
        # each tabulated bin; zero outside the template's range; error stated
        # in nuskybgd.kernels.gain.rebin_integrated)
        return rebin_integrated(self.elo, self.ehi, self.values, elo, ehi)


# --------------------------------------------------------------------------
# choosing a source
# --------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _load_atomdb(coco, line):
    return AtomDBTables(coco, line)


@lru_cache(maxsize=4)
def _load_template(path):
    return TemplateSpectrum(path)


def apec_source():
    """The apec source in use: AtomDB tables, else the template.

    Returns
    -------
    AtomDBTables or TemplateSpectrum
        Loaded once per file set and cached.

    Raises
    ------
    NuskybgdError
        When neither AtomDB files nor ``$NUSKYBGD_APEC_TEMPLATE`` exist; the
        message names the download command.
    """
    pair = find_atomdb()
    if pair is not None:
        return _load_atomdb(str(pair[0]), str(pair[1]))
    tmpl = os.environ.get("NUSKYBGD_APEC_TEMPLATE")
    if tmpl:
        return _load_template(str(Path(tmpl)))
    raise NuskybgdError(
        "apec: no AtomDB files (apec_v*_coco.fits, apec_v*_line.fits) in $ATOMDB, $APECROOT or "
        f"{atomdb_cache_dir()}, and NUSKYBGD_APEC_TEMPLATE is not set; run '{DOWNLOAD_COMMAND}'")


def apec_spectrum(elo, ehi, kt, abundanc, redshift):
    """XSPEC ``apec`` at norm 1 on energy bins.

    Parameters
    ----------
    elo, ehi : array_like
        Bin edges (keV), increasing.
    kt : float
        Temperature (keV).
    abundanc : float
        Metal abundance (solar units).
    redshift : float
        Redshift.

    Returns
    -------
    numpy.ndarray
        Photons/cm^2/s per bin, from AtomDB when available, else the template
        (see :func:`apec_source`).
    """
    return apec_source().spectrum(elo, ehi, kt, abundanc, redshift)


# --------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------

def download_atomdb(version=DEFAULT_ATOMDB_VERSION, url=None, dest_dir=None, progress=True, hashes=None):
    """Download the AtomDB apec files into the cache, verifying sha256.

    Parameters
    ----------
    version : str
        AtomDB version (``3.1.2`` is XSPEC 6.35's default).
    url : str, optional
        Release tarball (``.tar.bz2``/``.tar.gz``; ``file://`` works), or a
        folder address ending in ``/`` holding the two FITS files. Default:
        ``$NUSKYBGD_ATOMDB_URL`` or :data:`ATOMDB_URL`.
    dest_dir : str or os.PathLike, optional
        Cache folder (default :func:`atomdb_cache_dir`).
    progress : bool
        Progress bar on stderr.
    hashes : dict, optional
        sha256 per file name (default :data:`ATOMDB_SHA256`).

    Returns
    -------
    tuple of pathlib.Path
        The cached ``(coco, line)`` files.

    Raises
    ------
    NuskybgdError
        When the download fails, the files are not in the tarball, or a
        checksum differs (nothing enters the cache then).
    """
    from tqdm.auto import tqdm  # local: tqdm.auto costs 0.03-0.1 s at import; only for the download bar

    hashes = ATOMDB_SHA256 if hashes is None else hashes
    names = [f"apec_v{version}_coco.fits", f"apec_v{version}_line.fits"]
    for n in names:
        if n not in hashes:
            raise NuskybgdError(f"{n}: no known sha256 for AtomDB version {version} "
                                f"(known: {', '.join(sorted(hashes))})")
    url = url or os.environ.get("NUSKYBGD_ATOMDB_URL") or ATOMDB_URL
    url = url.replace("{version}", version)
    dest = Path(dest_dir) if dest_dir is not None else atomdb_cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".atomdb.", dir=dest))

    def fetch(address, target):
        try:
            with urllib.request.urlopen(address, timeout=120) as resp, open(target, "wb") as out:
                total = resp.headers.get("Content-Length")
                total = int(total) if total and total.isdigit() else None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {Path(target).name}",
                          disable=not progress, leave=False, file=sys.stderr) as bar:
                    for chunk in iter(lambda: resp.read(1 << 16), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise NuskybgdError(f"{address}: download failed ({exc})") from None

    try:
        got = {}
        if url.endswith("/"):
            for n in names:
                fetch(url + n, work / n)
                got[n] = work / n
        else:
            archive = work / "atomdb.tar"
            fetch(url, archive)
            try:
                with tarfile.open(archive, "r:*") as tar:
                    members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                    for n in names:
                        if n not in members:
                            raise NuskybgdError(f"{url}: {n} not in the archive")
                        src = tar.extractfile(members[n])
                        with open(work / n, "wb") as out:
                            shutil.copyfileobj(src, out, 1 << 20)
                        got[n] = work / n
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise NuskybgdError(f"{url}: not a readable tar archive ({exc})") from None
        for n in names:
            digest = sha256_file(got[n])
            if digest != hashes[n]:
                raise NuskybgdError(f"{url}: sha256 of {n} is {digest[:12]}..., expected "
                                    f"{hashes[n][:12]}...; nothing cached")
        for n in names:
            os.replace(got[n], dest / n)
        _load_atomdb.cache_clear()
        return dest / names[0], dest / names[1]
    finally:
        shutil.rmtree(work, ignore_errors=True)
