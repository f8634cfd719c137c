"""A compact NuSTAR CALDB for tests, simulations and demos.

:func:`make_caldb` writes ``root/data/nustar/fpm/{bcf,cpf}/...`` and the
index ``root/data/nustar/fpm/caldb.indx`` (see :mod:`nuskybgd.calib.caldb`). Real
CALDB files are copied where they exist (``shared_caldb``); the rest is
synthesised in the CALDB formats:

========= =========================================== ======================
CAL_CNAM  file (relative to ``data/nustar/fpm``)      origin
========= =========================================== ======================
PIXPOS    bcf/pixpos/nu{A,B}pixpos20100101v007.fits.gz real (copied)
INSTRMAP  bcf/instrmap/nu{A,B}instrmap20100101syn01   synthetic: 1 where the
          .fits                                        PIXPOS PDFs cover a
                                                       DET1 pixel
BADPIX    bcf/badpix/nu{A,B}badpix20100101syn01.fits  synthetic: a few bad
                                                       pixels per detector
DETABS    bcf/detabs/nuAdetabs20100101v002.fits       real (FPMA); FPMB is a
          bcf/detabs/nuBdetabs20100101syn01.fits      copy of FPMA's values
MATRIX,   cpf/rmf/nu{A,B}det{0..3}_20100101syn01.rmf  synthetic Gaussian RMF
EBOUNDS                                                on the real grid
GRPRMF    cpf/rmf/nu{A,B}grprmf20100101syn01.fits     synthetic, RMFFILE per
                                                       detector, nominal depth
                                                       cut
SPECRESP  cpf/arf/nuA20100101v006.arf                 real (FPMA); FPMB a
          cpf/arf/nuB20100101syn01.arf                copy with INSTRUME FPMB
BEABS     bcf/beabs/nuCbeabs20100101syn01.fits        Be transmission of the
                                                       bundle's ``be.arf``
========= =========================================== ======================

The synthetic RMF redistributes each energy bin into PI channels with a
Gaussian of FWHM sqrt(0.4^2 + (0.9^2 - 0.4^2) max(E - 10, 0) / 58) keV
(0.4 keV below 10 keV, 0.9 keV at 68 keV; NuSTAR's documented resolution),
times a per-detector factor (1.00, 1.02, 0.98, 1.01), cut at +-5 sigma. Each
row is scaled so that its sum equals the row sum of the real FPMA DET3 RMF
(the detection efficiency, including threshold and depth-cut losses).
"""

import datetime as _dt
import os
import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.special import ndtr

from ..calib.auxil import auxil_path
from ..calib.caldb import INDEX_RELPATH, cif_hdulist, index_entries_for_file
from ..errors import NuskybgdError
from ..io.fitsfile import open_fits
from ..io.ogip import read_arf, write_rmf
from ..io.output import atomic_outputs

__all__ = ["make_caldb", "default_shared_caldb", "rmf_fwhm", "gaussian_rmf", "instrmap_from_pixpos",
           "REAL_FILES", "RMF_DET_SCALE"]

#: Real CALDB files used (names inside ``shared_caldb``).
REAL_FILES = {
    "pixposA": "nuApixpos20100101v007.fits.gz",
    "pixposB": "nuBpixpos20100101v007.fits.gz",
    "detabsA": "nuAdetabs20100101v002.fits",
    "arfA": "nuA20100101v006.arf",
    "rmf": "nuAdet3_20100101v002.rmf.gz",
}

#: Per-detector factor on the synthetic RMF width (DET0..DET3).
RMF_DET_SCALE = (1.00, 1.02, 0.98, 1.01)

_FPM = Path("data") / "nustar" / "fpm"
_VSD, _VST = "2010-01-01", "00:00:00"


def default_shared_caldb():
    """Folder of the real CALDB pieces used by :func:`make_caldb`.

    Returns
    -------
    pathlib.Path or None
        ``$NUSKYBGD_SHARED/caldb/nustar`` if set, else ``../shared/caldb/nustar``
        next to the source tree, if it exists.
    """
    cands = []
    if os.environ.get("NUSKYBGD_SHARED"):
        cands.append(Path(os.environ["NUSKYBGD_SHARED"]) / "caldb" / "nustar")
    cands.append(Path(__file__).resolve().parents[3] / "shared" / "caldb" / "nustar")
    for c in cands:
        if c.is_dir():
            return c
    return None


def rmf_fwhm(energy, det_scale=1.0):
    """FWHM of the synthetic NuSTAR energy resolution.

    Parameters
    ----------
    energy : array_like
        Photon energy, keV.
    det_scale : float
        Multiplicative factor (per detector).

    Returns
    -------
    ndarray
        FWHM, keV: 0.4 below 10 keV, rising in quadrature to 0.9 at 68 keV.
    """
    e = np.asarray(energy, dtype=np.float64)
    return det_scale * np.sqrt(0.4**2 + (0.9**2 - 0.4**2) * np.clip(e - 10.0, 0.0, None) / 58.0)


def gaussian_rmf(energ_lo, energ_hi, e_min, e_max, row_sums, det_scale=1.0, nsigma=5.0):
    """Dense Gaussian redistribution matrix.

    Parameters
    ----------
    energ_lo, energ_hi : array_like, shape (n_energy,)
        Photon energy bins, keV.
    e_min, e_max : array_like, shape (n_chan,)
        Channel bounds, keV.
    row_sums : array_like, shape (n_energy,)
        Wanted sum of each row (detection efficiency).
    det_scale : float
        Factor on the FWHM.
    nsigma : float
        Rows are cut at +- nsigma standard deviations.

    Returns
    -------
    ndarray of float32, shape (n_energy, n_chan)
        Matrix; row i integrates a Gaussian centred on the bin centre over
        each channel, renormalised to ``row_sums[i]``.
    """
    elo = np.asarray(energ_lo, dtype=np.float64)
    ehi = np.asarray(energ_hi, dtype=np.float64)
    cmin = np.asarray(e_min, dtype=np.float64)
    cmax = np.asarray(e_max, dtype=np.float64)
    e = 0.5 * (elo + ehi)
    sigma = rmf_fwhm(e, det_scale) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    out = np.zeros((e.size, cmin.size), dtype=np.float32)
    lo_idx = np.searchsorted(cmax, e - nsigma * sigma, side="left")
    hi_idx = np.searchsorted(cmin, e + nsigma * sigma, side="right")
    sums = np.asarray(row_sums, dtype=np.float64)
    for i in range(e.size):
        a, b = lo_idx[i], min(hi_idx[i], cmin.size)
        if b <= a or sums[i] <= 0:
            continue
        g = ndtr((cmax[a:b] - e[i]) / sigma[i]) - ndtr((cmin[a:b] - e[i]) / sigma[i])
        tot = g.sum()
        if tot > 0:
            out[i, a:b] = (g * (sums[i] / tot)).astype(np.float32)
    return out


#: Grade weights of REFERENCE section 3 (grades 0..26).
GRADE_WEIGHTS = np.array([
    1.00000, 0.124902, 0.117130, 0.114720, 0.118038, 0.0114296, 0.0101738, 0.0113617, 0.0122017,
    0.0157910, 0.0144079, 0.0145691, 0.0149934, 0.00165462, 0.00194312, 0.00156128, 0.00143400,
    0.00210433, 0.00180735, 0.00140006, 0.00169704, 0.00189220, 0.00160371, 0.00150188, 0.00168007,
    0.000296983, 0.000364864])


def _pixpos_coverage(path):
    """Grade-weighted summed PDFs of all detectors on the 360x360 DET1 grid."""
    cov = np.zeros((360, 360))
    with open_fits(path, "CALDB PIXPOS file") as hdul:
        hdus = [h for h in hdul if str(h.header.get("EXTNAME", "")).strip().upper() == "PIXPOS"]
        if len(hdus) != 4:
            raise NuskybgdError(f"{path}: expected 4 PIXPOS extensions, found {len(hdus)}")
        dy, dx = np.mgrid[0:7, 0:7]
        for h in hdus:
            d = h.data
            pdf = np.asarray(d["PDF"], dtype=np.float64).reshape(-1, 7, 7)
            rx = np.asarray(d["REF_DET1X"], dtype=np.int64)
            ry = np.asarray(d["REF_DET1Y"], dtype=np.int64)
            grade = np.asarray(d["GRADE"], dtype=np.int64)
            ok = (grade >= 0) & (grade <= 26) & (rx >= 0) & (ry >= 0) & np.all(np.isfinite(pdf), axis=(1, 2))
            ok &= (rx + 7 <= 360) & (ry + 7 <= 360)
            w = GRADE_WEIGHTS[grade[ok]]
            yy = (ry[ok, None, None] + dy).ravel()
            xx = (rx[ok, None, None] + dx).ravel()
            np.add.at(cov, (yy, xx), (pdf[ok] * w[:, None, None]).ravel())
    return cov


def instrmap_from_pixpos(pixpos_path, fraction=0.02):
    """INSTRMAP image derived from PIXPOS coverage.

    Parameters
    ----------
    pixpos_path : str or os.PathLike
        CALDB PIXPOS file (4 extensions).
    fraction : float
        A DET1 pixel is on the detector when its grade-weighted summed PDF
        (grades 0..26, weights of REFERENCE section 3) exceeds ``fraction``
        times the median over covered pixels.

    Returns
    -------
    ndarray of int16, shape (360, 360)
        1 on the detectors, 0 elsewhere, indexed [y, x], shifted by
        (-1, -1) pixels like the pixel map of REFERENCE section 3.
    """
    cov = _pixpos_coverage(pixpos_path)
    med = np.median(cov[cov > 0])
    img = (cov > fraction * med).astype(np.int16)
    return np.roll(img, (-1, -1), axis=(0, 1))


def _caldb_keys(cnam, desc, clas="BCF", cbd=()):
    h = {"CCLS0001": clas, "CDTP0001": "DATA", "CCNM0001": cnam, "CVSD0001": _VSD,
         "CVST0001": _VST, "CDES0001": desc}
    for i, c in enumerate(cbd, 1):
        h[f"CBD{i}0001"] = c
    return h


def _instrmap_hdul(module, img):
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = "NuSTAR"
    prim.header["INSTRUME"] = f"FPM{module}"
    hdu = fits.ImageHDU(img, name="INSTRMAP")
    hdu.header["TELESCOP"] = "NuSTAR"
    hdu.header["INSTRUME"] = f"FPM{module}"
    hdu.header["DETNAM"] = "-"
    for k, v in _caldb_keys("INSTRMAP", f"SYNTHETIC FPM{module} instrument map from PIXPOS").items():
        hdu.header[k] = v
    hdu.header["COMMENT"] = "nuskybgd synthetic CALDB: 1 where the PIXPOS PDFs cover the pixel"
    return fits.HDUList([prim, hdu])


def _badpix_hdul(module, seed):
    rng = np.random.default_rng(seed)
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = "NuSTAR"
    prim.header["INSTRUME"] = f"FPM{module}"
    hdus = [prim]
    for det in range(4):
        n = 3 + det % 3
        flat = rng.choice(32 * 32, size=n, replace=False)
        rawx, rawy = (flat % 32).astype(np.uint8), (flat // 32).astype(np.uint8)
        flag = np.zeros((n, 16), dtype=bool)
        flag[:, 15] = True  # b0000000000000001: bad pixel from the on-ground CALDB file
        cols = [
            fits.Column(name="RAWX", format="1B", unit="pixel", array=rawx),
            fits.Column(name="RAWY", format="1B", unit="pixel", array=rawy),
            fits.Column(name="TIME", format="1D", unit="s", array=np.zeros(n)),
            fits.Column(name="TIME_STOP", format="1D", unit="s", array=np.full(n, 1.0e10)),
            fits.Column(name="BADFLAG", format="16X", array=flag),
        ]
        h = fits.BinTableHDU.from_columns(cols, name="BADPIX")
        h.header["EXTVER"] = det + 1
        h.header["DETNAM"] = f"DET{det}"
        h.header["TELESCOP"] = "NuSTAR"
        h.header["INSTRUME"] = f"FPM{module}"
        h.header["TLMIN1"], h.header["TLMAX1"] = 0, 31
        h.header["TLMIN2"], h.header["TLMAX2"] = 0, 31
        for k, v in _caldb_keys("BADPIX", f"SYNTHETIC FPM{module} bad pixels").items():
            h.header[k] = v
        hdus.append(h)
    return fits.HDUList(hdus)


def _relabelled_copy(src, module, desc):
    """A real FPMA file relabelled as FPMB (same data)."""
    with open_fits(src, "CALDB file") as hdul:
        out = fits.HDUList([h.copy() for h in hdul])
    for h in out:
        if "INSTRUME" in h.header:
            h.header["INSTRUME"] = f"FPM{module}"
        if "CDES0001" in h.header:
            h.header["CDES0001"] = desc
        for k in ("CHECKSUM", "DATASUM"):
            h.header.pop(k, None)
        h.header["COMMENT"] = "nuskybgd synthetic CALDB: data copied from the FPMA file"
    return out


def _beabs_hdul(be_arf):
    arf = read_arf(be_arf)  # repairs the bundle's rounded energy columns
    lo = np.asarray(arf.energ_lo, dtype=np.float32)
    hi = np.asarray(arf.energ_hi, dtype=np.float32)
    att = np.asarray(arf.specresp, dtype=np.float32)
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = "NuSTAR"
    prim.header["INSTRUME"] = "FPM"
    h = fits.BinTableHDU.from_columns([
        fits.Column(name="ENERG_LO", format="E", unit="keV", array=lo),
        fits.Column(name="ENERG_HI", format="E", unit="keV", array=hi),
        fits.Column(name="ATT", format="E", array=att),
    ], name="BEABS")
    h.header["TELESCOP"] = "NuSTAR"
    h.header["INSTRUME"] = "FPM"
    h.header["DETNAM"] = "-"
    for k, v in _caldb_keys("BEABS", "SYNTHETIC Be window transmission (nuskybgd be.arf)").items():
        h.header[k] = v
    return fits.HDUList([prim, h])


def _grprmf_hdul(module, rmf_names):
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = "NuSTAR"
    prim.header["INSTRUME"] = f"FPM{module}"
    hdus = [prim]
    for det, name in enumerate(rmf_names):
        h = fits.BinTableHDU.from_columns(
            [fits.Column(name="RMFFILE", format="60A", array=np.array([name]))], name="GRPRMF")
        h.header["EXTVER"] = det + 1
        h.header["DETNAM"] = f"DET{det}"
        h.header["TELESCOP"] = "NuSTAR"
        h.header["INSTRUME"] = f"FPM{module}"
        for k, v in _caldb_keys("GRPRMF", f"SYNTHETIC FPM{module} RMF list", clas="CPF",
                                cbd=("DEPTHCUT(NOMINAL)",)).items():
            h.header[k] = v
        hdus.append(h)
    return fits.HDUList(hdus)


def _real_rmf_grid(path):
    """Energy grid, EBOUNDS and row sums of a real RMF."""
    with open_fits(path, "CALDB RMF") as hdul:
        m = hdul["MATRIX"].data
        eb = hdul["EBOUNDS"].data
        elo = np.asarray(m["ENERG_LO"], dtype=np.float64)
        ehi = np.asarray(m["ENERG_HI"], dtype=np.float64)
        sums = np.array([float(np.sum(r)) for r in m["MATRIX"]])
        emin = np.asarray(eb["E_MIN"], dtype=np.float64)
        emax = np.asarray(eb["E_MAX"], dtype=np.float64)
    return elo, ehi, emin, emax, sums


def make_caldb(root, shared_caldb=None, clobber=False, cal_date=None, be_arf=None, progress=True):
    """Write a compact NuSTAR CALDB (both modules) with its index.

    Parameters
    ----------
    root : str or os.PathLike
        CALDB root to create (set ``$CALDB`` to it afterwards).
    shared_caldb : str or os.PathLike, optional
        Folder holding the real files of :data:`REAL_FILES`; default
        :func:`default_shared_caldb`.
    clobber : bool
        Replace existing files.
    cal_date : str, optional
        CAL_DATE of every index row (default today, UTC).
    be_arf : str or os.PathLike, optional
        Be-window transmission as an ARF; default the calibration bundle's
        ``be.arf``.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    pathlib.Path
        The index file ``root/data/nustar/fpm/caldb.indx``.

    Raises
    ------
    NuskybgdError
        Missing real files, existing outputs without ``clobber``.

    Notes
    -----
    About 15 MB on disk (PIXPOS 6.2 MB, 8 RMFs ~1.2 MB each). All files are
    written all-or-nothing.
    """
    from tqdm.auto import tqdm  # local: tqdm.auto costs 0.03-0.1 s at import; only when a synthetic CALDB is built


    root = Path(root)
    src = Path(shared_caldb) if shared_caldb is not None else default_shared_caldb()
    if src is None:
        raise NuskybgdError("no folder with the real NuSTAR CALDB pieces found; pass shared_caldb= "
                            f"(a folder holding {', '.join(REAL_FILES.values())}) or set $NUSKYBGD_SHARED")
    for name in REAL_FILES.values():
        if not (src / name).is_file():
            raise NuskybgdError(f"{src / name}: real CALDB file needed by make_caldb is missing")
    be_arf = Path(be_arf) if be_arf is not None else auxil_path("be.arf")
    cal_date = cal_date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    fpm = root / _FPM

    rmf_names = {m: [f"nu{m}det{d}_20100101syn01.rmf" for d in range(4)] for m in "AB"}
    plan = {}  # final path -> callable(tmp_path)
    for m in "AB":
        plan[fpm / "bcf" / "pixpos" / REAL_FILES[f"pixpos{m}"]] = ("copy", src / REAL_FILES[f"pixpos{m}"])
        plan[fpm / "bcf" / "instrmap" / f"nu{m}instrmap20100101syn01.fits"] = ("instrmap", m)
        plan[fpm / "bcf" / "badpix" / f"nu{m}badpix20100101syn01.fits"] = ("badpix", m)
        for d in range(4):
            plan[fpm / "cpf" / "rmf" / rmf_names[m][d]] = ("rmf", m, d)
        plan[fpm / "cpf" / "rmf" / f"nu{m}grprmf20100101syn01.fits"] = ("grprmf", m)
    plan[fpm / "bcf" / "detabs" / REAL_FILES["detabsA"]] = ("copy", src / REAL_FILES["detabsA"])
    plan[fpm / "bcf" / "detabs" / "nuBdetabs20100101syn01.fits"] = ("relabel", src / REAL_FILES["detabsA"], "B",
                                                                   "SYNTHETIC FPMB detector absorption (FPMA values)")
    plan[fpm / "cpf" / "arf" / REAL_FILES["arfA"]] = ("copy", src / REAL_FILES["arfA"])
    plan[fpm / "cpf" / "arf" / "nuB20100101syn01.arf"] = ("relabel", src / REAL_FILES["arfA"], "B",
                                                          "SYNTHETIC FPMB on-axis ARF (FPMA values)")
    plan[fpm / "bcf" / "beabs" / "nuCbeabs20100101syn01.fits"] = ("beabs",)
    index = root / INDEX_RELPATH

    for p in list(plan) + [index]:
        if p.exists() and not clobber:
            raise NuskybgdError(f"{p}: output file exists (use clobber to overwrite)")
    for p in list(plan) + [index]:
        p.parent.mkdir(parents=True, exist_ok=True)

    grid = None
    entries = []
    with atomic_outputs(list(plan) + [index], clobber=clobber) as out:
        bar = tqdm(total=len(plan) + 1, desc="synthetic CALDB", disable=not progress, leave=False)
        for final, job in plan.items():
            tmp = Path(out[final])
            kind = job[0]
            if kind == "copy":
                shutil.copyfile(job[1], tmp)
            elif kind == "instrmap":
                img = instrmap_from_pixpos(src / REAL_FILES[f"pixpos{job[1]}"])
                _instrmap_hdul(job[1], img).writeto(tmp, checksum=True)
            elif kind == "badpix":
                _badpix_hdul(job[1], seed=11 if job[1] == "A" else 12).writeto(tmp, checksum=True)
            elif kind == "relabel":
                _relabelled_copy(job[1], job[2], job[3]).writeto(tmp, checksum=True)
            elif kind == "beabs":
                _beabs_hdul(be_arf).writeto(tmp, checksum=True)
            elif kind == "grprmf":
                _grprmf_hdul(job[1], rmf_names[job[1]]).writeto(tmp, checksum=True)
            elif kind == "rmf":
                m, d = job[1], job[2]
                if grid is None:
                    grid = _real_rmf_grid(src / REAL_FILES["rmf"])
                elo, ehi, emin, emax, sums = grid
                mat = gaussian_rmf(elo, ehi, emin, emax, sums, det_scale=RMF_DET_SCALE[d])
                desc = f"SYNTHETIC NuSTAR FPM{m} DET{d} Gaussian response matrix"
                hdr = {"INSTRUME": f"FPM{m}", "DETNAM": f"DET{d}",
                       **_caldb_keys("MATRIX", desc, clas="CPF", cbd=("RAWX(0- 31)", "RAWY(0- 31)"))}
                ehdr = _caldb_keys("EBOUNDS", desc, clas="CPF", cbd=("RAWX(0- 31)", "RAWY(0- 31)"))
                write_rmf(tmp, elo, ehi, mat, emin, emax, header=hdr, ebounds_header=ehdr)
            for e in index_entries_for_file(root, tmp, cal_date=cal_date):
                e["CAL_FILE"] = final.name  # the staged file lives in a staging folder
                e["CAL_DIR"] = final.parent.resolve().relative_to(Path(root).resolve()).as_posix()
                entries.append(e)
            bar.update()
        cif_hdulist(entries, cal_date).writeto(out[index], checksum=True)
        bar.update()
        bar.close()
    return index
