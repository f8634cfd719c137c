"""Folded component templates on the real detector-3 RMF and a real spectrum."""

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.calib.presets import component_presets
from nuskybgd.errors import NuskybgdError
from nuskybgd.kernels import spectral as kernels
from nuskybgd.models import background

FRACTIONS = np.array([0.1, 0.2, 0.3, 0.4])


def dense_rmf_from_fits(path):
    """Dense (n_energy, n_chan) matrix built directly from the FITS columns."""
    with fits.open(path) as h:
        m = h["MATRIX"].data
        n_chan = int(h["EBOUNDS"].header["NAXIS2"])
        tlmin = int(h["MATRIX"].header.get("TLMIN4", 0))
        dense = np.zeros((len(m), n_chan))
        for i, row in enumerate(m):
            fch = np.atleast_1d(row["F_CHAN"])
            nch = np.atleast_1d(row["N_CHAN"])
            vals = np.asarray(row["MATRIX"], float)
            k = 0
            for g in range(int(row["N_GRP"])):
                a = int(fch[g]) - tlmin
                dense[i, a:a + int(nch[g])] = vals[k:k + int(nch[g])]
                k += int(nch[g])
        lo = np.asarray(m["ENERG_LO"], float)
        hi = np.asarray(m["ENERG_HI"], float)
    return lo, hi, dense


@pytest.fixture(scope="module")
def rmf_path(shared_caldb):
    return shared_caldb / "nuAdet3_20100101v002.rmf.gz"


@pytest.fixture(scope="module")
def dense(rmf_path):
    return dense_rmf_from_fits(rmf_path)


@pytest.fixture(scope="module")
def rmf(rmf_path):
    from nuskybgd.io.ogip import read_rmf
    return read_rmf(rmf_path)


@pytest.fixture(scope="module")
def exposure(real):
    with fits.open(real / "spectra" / "nu30501003002B01_velax1_sr.pha") as h:
        return float(h["SPECTRUM"].header["EXPOSURE"])


@pytest.fixture(scope="module")
def detabs_file(shared_caldb):
    return shared_caldb / "nuAdetabs20100101v002.fits"


@pytest.fixture(scope="module")
def templates(rmf, exposure, detabs_file):
    return background.component_templates(rmf, "A", FRACTIONS, exposure, detabs_file=detabs_file)


@pytest.fixture(scope="module")
def independent(dense, exposure, detabs_file, auxil_dir):
    """RMF matrix x ARF x model x exposure, every piece read with astropy."""
    lo, hi, m = dense
    p = component_presets("A")
    with fits.open(detabs_file) as h:
        det = np.vstack([np.asarray(x.data["DETABS"], float) for x in h[1:5]])
    with fits.open(auxil_dir / "be.arf") as h:
        be = np.asarray(h[1].data["SPECRESP"], float)
    with fits.open(auxil_dir / "fcxbA.arf") as h:
        fcxb = np.asarray(h[1].data["SPECRESP"], float)
    with fits.open(auxil_dir / "diag.rmf") as h:
        diag = np.zeros((4096, 4096))
        d = h["MATRIX"].data
        for i, row in enumerate(d):
            diag[i, int(np.atleast_1d(row["F_CHAN"])[0])] = np.atleast_1d(np.asarray(row["MATRIX"], float))[0]
    f = FRACTIONS / FRACTIONS.sum()
    ap_arf = be * (f @ det)
    cpl = kernels.cutoffpl_integral(lo, hi, 1.29, 41.13)
    from nuskybgd.models.apec import apec_spectrum
    out = {
        "apbgd": (cpl * ap_arf) @ m * exposure,
        "intbgd.apec": apec_spectrum(lo, hi, p.apec.kt, p.apec.abundanc, p.apec.redshift) @ m * exposure,
        "fcxb": (cpl * fcxb) @ m * exposure,
        "intn": kernels.bknpower_integral(lo, hi, -0.05, 124.0, -0.85) @ diag * exposure,
    }
    for line in p.lines:
        out[f"intbgd.{line.name}"] = kernels.lorentz_integral(lo, hi, line.linee, line.width) @ m * exposure
    return out


def test_keys_in_model_order(templates):
    p = component_presets("A")
    assert list(templates) == (["apbgd", "intbgd.apec"] + [f"intbgd.{n}" for n in p.line_names]
                               + ["fcxb", "intn"])
    assert len(templates) == 33
    assert all(v.shape == (4096,) for v in templates.values())
    assert templates.first_channel == 0


def test_folding_equals_dense_matrix_product(templates, independent):
    for key, expect in independent.items():
        got = templates[key]
        scale = np.abs(expect).max()
        assert scale > 0
        np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-10 * scale, err_msg=key)


def test_explicit_arrays_equal_datarmf(dense, templates, exposure, detabs_file):
    t = background.component_templates(dense, "A", FRACTIONS, exposure, detabs_file=detabs_file)
    for k in templates:
        np.testing.assert_allclose(t[k], templates[k], rtol=1e-12, atol=1e-12 * templates[k].max())
    import scipy.sparse as sp
    sparse = (dense[0], dense[1], sp.csr_matrix(dense[2]))
    t = background.component_templates(sparse, "A", FRACTIONS, exposure, detabs_file=detabs_file)
    np.testing.assert_allclose(t["apbgd"], templates["apbgd"], rtol=1e-12)


def test_cached_and_linear_in_exposure(rmf, exposure, detabs_file, templates, monkeypatch):
    calls = []
    orig = background.component_spectra
    monkeypatch.setattr(background, "component_spectra", lambda *a, **k: calls.append(1) or orig(*a, **k))
    t2 = background.component_templates(rmf, "A", FRACTIONS, 2 * exposure, detabs_file=detabs_file)
    assert calls == []  # served from the cache: no model evaluation, no fold
    for k in templates:
        np.testing.assert_allclose(t2[k], 2 * templates[k], rtol=1e-15)
    t2["apbgd"][:] = 0  # callers get copies
    t3 = background.component_templates(rmf, "A", 2 * FRACTIONS, exposure, detabs_file=detabs_file)
    np.testing.assert_array_equal(t3["apbgd"], templates["apbgd"])  # fractions are normalised
    background.component_templates(rmf, "A", [1, 0, 0, 0], exposure, detabs_file=detabs_file)
    assert calls == [1]


def test_intn_is_diagonal_and_intbgd_has_no_arf(templates, exposure, dense):
    lo, hi, _ = dense
    np.testing.assert_allclose(templates["intn"], kernels.bknpower_integral(lo, hi, -0.05, 124.0, -0.85) * exposure,
                               rtol=1e-12)
    # intbgd lines carry no area: the folded line sums to its flux inside the grid times the RMF's
    # total redistribution probability (<= 1), far more than apbgd-like ARF-weighted values would
    p = component_presets("A").lines[3]
    line = kernels.lorentz_integral(lo, hi, p.linee, p.width)
    assert templates["intbgd.lorentz_5"].sum() == pytest.approx((line @ dense[2]).sum() * exposure, rel=1e-10)


def test_presets_as_raw_ratios(rmf, exposure, detabs_file, templates):
    from nuskybgd.calib.auxil import load_ratios
    t = background.component_templates(rmf, "A", FRACTIONS, exposure, presets=load_ratios(),
                                        detabs_file=detabs_file)
    np.testing.assert_array_equal(t["fcxb"], templates["fcxb"])


@pytest.mark.parametrize("exposure_bad", [0.0, -5.0, np.nan])
def test_bad_exposure(rmf, exposure_bad, detabs_file):
    with pytest.raises(NuskybgdError, match="exposure"):
        background.component_templates(rmf, "A", FRACTIONS, exposure_bad, detabs_file=detabs_file)


def test_bad_fractions(rmf, detabs_file):
    with pytest.raises(NuskybgdError, match="detector fractions"):
        background.component_templates(rmf, "A", [0, 0, 0, 0], 10.0, detabs_file=detabs_file)


def test_response_grid_mismatch(dense, detabs_file):
    from sherpa.astro.data import DataARF
    lo, hi, m = dense
    bad = DataARF("shifted", lo + 0.01, hi + 0.01, np.ones(lo.size))
    with pytest.raises(NuskybgdError, match="share one energy grid"):
        background.component_templates(dense, "A", FRACTIONS, 10.0, detabs_file=detabs_file, apbgd_arf=bad)
    with pytest.raises(NuskybgdError, match="share one energy grid"):
        background.component_templates(dense, "A", FRACTIONS, 10.0, detabs_file=detabs_file, fcxb_arf=bad)
    with pytest.raises(NuskybgdError, match="channels"):
        background.component_templates(dense, "A", FRACTIONS, 10.0, detabs_file=detabs_file,
                                        diag=(lo, hi, np.eye(lo.size)[:, :100]))
    with pytest.raises(NuskybgdError, match="rows"):
        background.component_templates((lo, hi, m[:10]), "A", FRACTIONS, 10.0, detabs_file=detabs_file)
    with pytest.raises(NuskybgdError, match="not increasing"):
        background.component_templates((hi, lo, m), "A", FRACTIONS, 10.0, detabs_file=detabs_file)


def test_fold_spectra_equals_sherpa_rmf_fold(rmf):
    from sherpa.astro.utils import rmf_fold
    rng = np.random.default_rng(5)
    spectra = rng.uniform(0, 1, (5, len(rmf.energ_lo)))
    ours = background.fold_spectra(rmf, spectra)
    for s, row in zip(spectra, ours):
        ref = rmf_fold(s, rmf.n_grp, rmf.f_chan, rmf.n_chan, rmf.matrix, rmf.detchans, rmf.offset)
        np.testing.assert_allclose(row, ref, rtol=1e-12, atol=1e-12 * ref.max())


def test_fold_spectra_ignores_notice_filter(auxil_dir):
    """A DataRMF noticed by Sherpa still folds the full energy grid."""
    from nuskybgd.io.ogip import read_rmf
    r = read_rmf(auxil_dir / "diag.rmf")
    s = np.arange(1.0, len(r.energ_lo) + 1.0)[None, :]
    full = background.fold_spectra(r, s)
    r.notice(np.arange(100, 200))
    assert 90 < len(r._lo) < 110
    np.testing.assert_array_equal(background.fold_spectra(r, s), full)
    np.testing.assert_array_equal(full[0], s[0])


def test_fold_spectra_bad_rmf(rmf_path):
    from nuskybgd.io.ogip import read_rmf
    r = read_rmf(rmf_path)
    r.n_chan = np.asarray(r.n_chan).copy()
    r.n_chan[0] += 1
    with pytest.raises(NuskybgdError, match="inconsistent RMF groups"):
        background.fold_spectra(r, np.ones((1, len(r.energ_lo))))
    with pytest.raises(NuskybgdError, match="energy bins"):
        background.fold_spectra(r, np.ones((1, 10)))
