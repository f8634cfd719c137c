"""apec: AtomDB reader on a synthetic AtomDB-format file pair, the template
fallback, source selection and the verified download."""

import hashlib
import importlib
import tarfile

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.errors import NuskybgdError

# the package attribute nuskybgd.models.apec is the Sherpa class; this is the module
apec = importlib.import_module("nuskybgd.models.apec")

HC = 12.39842
KT = (1.0, 2.0)
# Continuum per temperature index, per element: (a, b) of a + b E
# (photons cm^3 s^-1 keV^-1); linear, so centre x width is the exact integral.
CONT = {0: {1: (2.0, -0.1), 26: (1.0, 0.05), 11: (5.0, 0.0)},
        1: {1: (4.0, -0.2), 26: (3.0, 0.02), 11: (5.0, 0.0)}}
PSEUDO = {0: {26: (0.5, 0.0)}, 1: {26: (0.25, 0.0)}}
# Lines per temperature index: (energy keV, epsilon photons cm^3 s^-1, element)
LINES = {0: [(2.05, 1.0, 1), (3.5, 2.0, 26), (3.52, 0.5, 8), (4.99, 0.7, 11), (7.3, 0.1, 26)],
         1: [(2.05, 0.5, 1), (3.5, 4.0, 26), (3.52, 1.5, 8), (4.99, 0.7, 11), (7.3, 0.2, 26)]}
E_GRID = np.linspace(0.5, 12.0, 60)  # tabulation energies of the continuum (keV)


def _cocotable(i):
    rows = []
    for z in (1, 11, 26):
        a, b = CONT[i][z]
        pa = PSEUDO[i].get(z, (0.0, 0.0))[0]
        rows.append((z, 0, E_GRID, a + b * E_GRID, E_GRID, np.full(E_GRID.size, pa)))
        # an ion row (rmJ > 0) that must be ignored: element totals only
        rows.append((z, 1, E_GRID, np.full(E_GRID.size, 1e3), E_GRID, np.full(E_GRID.size, 1e3)))
    n = E_GRID.size
    cols = [
        fits.Column("Z", "J", array=[r[0] for r in rows]),
        fits.Column("rmJ", "J", array=[r[1] for r in rows]),
        fits.Column("N_Cont", "J", array=[n] * len(rows)),
        fits.Column("E_Cont", f"{n + 5}E", array=[np.concatenate([r[2], np.zeros(5)]) for r in rows]),
        fits.Column("Continuum", f"{n + 5}E", array=[np.concatenate([r[3], np.zeros(5)]) for r in rows]),
        fits.Column("N_Pseudo", "J", array=[n] * len(rows)),
        fits.Column("E_Pseudo", f"{n + 5}E", array=[np.concatenate([r[4], np.zeros(5)]) for r in rows]),
        fits.Column("Pseudo", f"{n + 5}E", array=[np.concatenate([r[5], np.zeros(5)]) for r in rows]),
    ]
    return fits.BinTableHDU.from_columns(cols, name="EMISSIVITY")


def _linetable(i):
    lines = LINES[i]
    cols = [
        fits.Column("Lambda", "E", array=[HC / e for e, _, _ in lines]),
        fits.Column("Lambda_Err", "E", array=[0.0] * len(lines)),
        fits.Column("Epsilon", "E", array=[eps for _, eps, _ in lines]),
        fits.Column("Epsilon_Err", "E", array=[0.0] * len(lines)),
        fits.Column("Element", "J", array=[z for _, _, z in lines]),
        fits.Column("Ion", "J", array=[1] * len(lines)),
    ]
    return fits.BinTableHDU.from_columns(cols, name="EMISSIVITY")


def _params():
    return fits.BinTableHDU.from_columns([fits.Column("kT", "E", array=list(KT)),
                                          fits.Column("EDensity", "E", array=[1.0, 1.0])],
                                         name="PARAMETERS")


@pytest.fixture
def atomdb_dir(tmp_path):
    """A synthetic AtomDB 9.9.9 apec file pair (two temperatures, five lines)."""
    d = tmp_path / "atomdb"
    d.mkdir()
    fits.HDUList([fits.PrimaryHDU(), _params(), _cocotable(0), _cocotable(1)]).writeto(d / "apec_v9.9.9_coco.fits")
    fits.HDUList([fits.PrimaryHDU(), _params(), _linetable(0), _linetable(1)]).writeto(d / "apec_v9.9.9_line.fits")
    return d


def expected(elo, ehi, kt, abund, z):
    """Independent evaluation of REFERENCE section 8 on the synthetic tables."""
    w = (kt - KT[0]) / (KT[1] - KT[0])
    lo, hi = elo * (1 + z), ehi * (1 + z)
    total = np.zeros(elo.size)
    centre = 0.5 * (lo + hi)
    tabulated = (centre >= E_GRID[0]) & (centre <= E_GRID[-1])  # zero outside the table
    for i, wi in ((0, 1 - w), (1, w)):
        s = np.zeros(elo.size)
        for el, (a, b) in CONT[i].items():
            if el == 11:
                continue  # Na is not an apec element
            scale = abund if el == 26 else 1.0
            s += scale * ((a + b * centre) * (hi - lo)) * tabulated
        s += abund * PSEUDO[i][26][0] * (hi - lo) * tabulated
        for e, eps, el in LINES[i]:
            if el == 11:
                continue
            scale = 1.0 if el == 1 else abund
            k = np.nonzero((lo <= e) & (e < hi))[0]
            s[k] += scale * eps
        total += wi * s
    return 1e14 / (1 + z) * total


@pytest.fixture
def tables(atomdb_dir):
    return apec.AtomDBTables(atomdb_dir / "apec_v9.9.9_coco.fits", atomdb_dir / "apec_v9.9.9_line.fits")


EDGES = np.arange(1.0, 10.0001, 0.25)


@pytest.mark.parametrize("kt", [1.0, 1.3, 1.5, 2.0])
@pytest.mark.parametrize("abund", [0.0, 0.3, 1.0, 2.5])
@pytest.mark.parametrize("z", [0.0, 0.05, 0.4])
def test_reader_matches_reference_semantics(tables, kt, abund, z):
    got = tables.spectrum(EDGES[:-1], EDGES[1:], kt, abund, z)
    np.testing.assert_allclose(got, expected(EDGES[:-1], EDGES[1:], kt, abund, z), rtol=1e-6, atol=0)


def test_temperature_interpolation_is_linear_in_kt(tables):
    s1 = tables.spectrum(EDGES[:-1], EDGES[1:], 1.0, 1.0, 0.0)
    s2 = tables.spectrum(EDGES[:-1], EDGES[1:], 2.0, 1.0, 0.0)
    s = tables.spectrum(EDGES[:-1], EDGES[1:], 1.25, 1.0, 0.0)
    np.testing.assert_allclose(s, 0.75 * s1 + 0.25 * s2, rtol=1e-12)
    assert not np.allclose(s1, s2)


def test_lines_binned_whole(tables):
    # 3.5 keV Fe line and 3.52 keV O line both in the 3.5-3.75 bin; continuum separately
    lo, hi = EDGES[:-1], EDGES[1:]
    with_lines = tables.spectrum(lo, hi, 1.0, 1.0, 0.0)
    k = np.nonzero(lo == 3.5)[0][0]
    cont = 1e14 * ((2.0 - 0.1 * 3.625) + (1.0 + 0.05 * 3.625) + 0.5) * 0.25
    assert with_lines[k] == pytest.approx(cont + 1e14 * (2.0 + 0.5), rel=1e-6)
    # the 2.05 keV H line: bin 2.0-2.25
    k = np.nonzero(lo == 2.0)[0][0]
    cont = 1e14 * ((2.0 - 0.1 * 2.125) + (1.0 + 0.05 * 2.125) + 0.5) * 0.25
    assert with_lines[k] == pytest.approx(cont + 1e14 * 1.0, rel=1e-6)


def test_abundance_scales_metals_only(tables):
    lo, hi = EDGES[:-1], EDGES[1:]
    s0 = tables.spectrum(lo, hi, 1.4, 0.0, 0.0)
    s1 = tables.spectrum(lo, hi, 1.4, 1.0, 0.0)
    s3 = tables.spectrum(lo, hi, 1.4, 3.0, 0.0)
    np.testing.assert_allclose(s3 - s0, 3.0 * (s1 - s0), rtol=1e-10)
    assert np.all(s0 > 0)  # H continuum does not scale


def test_redshift_factor(tables):
    lo, hi = EDGES[:-1], EDGES[1:]
    z = 0.2
    sz = tables.spectrum(lo, hi, 1.7, 0.8, z)
    s0 = tables.spectrum(lo * (1 + z), hi * (1 + z), 1.7, 0.8, 0.0)
    np.testing.assert_allclose(sz, s0 / (1 + z), rtol=1e-12)


def test_noncontiguous_bins(tables):
    take = np.array([0, 4, 5, 9, 30])
    lo, hi = EDGES[:-1], EDGES[1:]
    full = tables.spectrum(lo, hi, 1.2, 0.5, 0.0)
    np.testing.assert_allclose(tables.spectrum(lo[take], hi[take], 1.2, 0.5, 0.0), full[take], rtol=1e-12)


def test_kt_outside_table(tables):
    with pytest.raises(NuskybgdError, match="outside the tabulated range"):
        tables.spectrum(EDGES[:-1], EDGES[1:], 3.0, 1.0, 0.0)


def test_wrong_format_files(tmp_path, atomdb_dir):
    bad = tmp_path / "apec_v1.0.0_coco.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("X", "E", array=[1.0])])]).writeto(bad)
    with pytest.raises(NuskybgdError, match="not an AtomDB apec file"):
        apec.AtomDBTables(bad, atomdb_dir / "apec_v9.9.9_line.fits")
    # a line file used as a coco file
    with pytest.raises(NuskybgdError, match="no Z column"):
        apec.AtomDBTables(atomdb_dir / "apec_v9.9.9_line.fits", atomdb_dir / "apec_v9.9.9_line.fits")
    text = tmp_path / "apec_v1.0.1_line.fits"
    text.write_text("not fits")
    with pytest.raises(NuskybgdError, match="not a FITS file"):
        apec.AtomDBTables(atomdb_dir / "apec_v9.9.9_coco.fits", text)


# ---------------------------------------------------------------- source selection

@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for k in ("ATOMDB", "APECROOT", "NUSKYBGD_APEC_TEMPLATE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NUSKYBGD_CACHE", str(tmp_path / "cache"))
    return monkeypatch


def test_source_atomdb_env_first(clean_env, atomdb_dir, shared):
    clean_env.setenv("ATOMDB", str(atomdb_dir))
    clean_env.setenv("NUSKYBGD_APEC_TEMPLATE", str(next((shared / "apec").glob("*.txt"))))
    src = apec.apec_source()
    assert isinstance(src, apec.AtomDBTables)
    lo, hi = EDGES[:-1], EDGES[1:]
    np.testing.assert_allclose(apec.apec_spectrum(lo, hi, 1.5, 1.0, 0.0), expected(lo, hi, 1.5, 1.0, 0.0), rtol=1e-6)


def test_source_apecroot_file_root(clean_env, atomdb_dir):
    clean_env.setenv("APECROOT", str(atomdb_dir / "apec_v9.9.9"))
    assert apec.find_atomdb() == (atomdb_dir / "apec_v9.9.9_coco.fits", atomdb_dir / "apec_v9.9.9_line.fits")


def test_source_cache(clean_env, atomdb_dir, tmp_path):
    cache = apec.atomdb_cache_dir()
    cache.mkdir(parents=True)
    for f in atomdb_dir.iterdir():
        (cache / f.name).write_bytes(f.read_bytes())
    assert apec.find_atomdb()[0] == cache / "apec_v9.9.9_coco.fits"


def test_source_template_then_error(clean_env, shared):
    clean_env.setenv("NUSKYBGD_APEC_TEMPLATE", str(next((shared / "apec").glob("*.txt"))))
    assert isinstance(apec.apec_source(), apec.TemplateSpectrum)
    clean_env.delenv("NUSKYBGD_APEC_TEMPLATE")
    with pytest.raises(NuskybgdError, match="nuskybgd atomdb download"):
        apec.apec_source()


# ---------------------------------------------------------------- template

@pytest.fixture
def template(shared):
    return apec.TemplateSpectrum(next((shared / "apec").glob("*.txt")))


@pytest.fixture(scope="module")
def nustar_grid(auxil_dir):
    with fits.open(auxil_dir / "diag.rmf") as h:
        m = h["MATRIX"].data
        return m["ENERG_LO"].astype(float), m["ENERG_HI"].astype(float)


@pytest.mark.parametrize("band", [(3.0, 5.0), (3.0, 20.0)])
def test_template_band_sums(template, nustar_grid, shared, band):
    from nuskybgd.calib.presets import component_presets
    p = component_presets("A").apec
    lo, hi = nustar_grid
    s = apec.TemplateSpectrum(template.path).spectrum(lo, hi, p.kt, p.abundanc, p.redshift)
    raw = np.loadtxt(template.path)
    sel = (raw[:, 0] >= band[0] - 1e-6) & (raw[:, 1] <= band[1] + 1e-6)
    ours = s[(lo >= band[0] - 1e-6) & (hi <= band[1] + 1e-6)].sum()
    assert sel.sum() == round((band[1] - band[0]) / 0.04)
    assert ours == pytest.approx(raw[sel, 2].sum(), rel=1e-12)
    assert ours > 0


def test_template_lookup_by_energy(template, nustar_grid):
    lo, hi = nustar_grid
    p = template.params
    take = np.array([5, 100, 101, 1000])
    full = template.spectrum(lo, hi, p["kt"], p["abundanc"], p["redshift"])
    np.testing.assert_array_equal(template.spectrum(lo[take], hi[take], p["kt"], p["abundanc"], p["redshift"]),
                                  full[take])


def test_template_params_from_header(template):
    assert template.params == pytest.approx({"kt": 1.14579, "abundanc": 1.32692, "redshift": 0.0})


@pytest.mark.parametrize("kw", [dict(kt=2.0), dict(abundanc=1.0), dict(redshift=0.1)])
def test_template_other_parameters_rejected(template, nustar_grid, kw):
    p = dict(template.params)
    p.update(kw)
    lo, hi = nustar_grid
    with pytest.raises(NuskybgdError, match="holds only"):
        template.spectrum(lo, hi, p["kt"], p["abundanc"], p["redshift"])


def test_template_off_grid_integrated(template):
    """Bins that are not template bins get the tabulated spectrum integrated onto them."""
    p = template.params
    lo = template.elo[100:110]
    hi = template.ehi[100:110]
    exact = template.values[100:110]
    # a bin made of two template bins holds their sum; half bins split them evenly
    two = template.spectrum([lo[0]], [hi[1]], p["kt"], p["abundanc"], p["redshift"])
    assert two[0] == pytest.approx(exact[0] + exact[1], rel=1e-12)
    mid = 0.5 * (lo[3] + hi[3])
    half = template.spectrum([lo[3], mid], [mid, hi[3]], p["kt"], p["abundanc"], p["redshift"])
    assert half == pytest.approx([0.5 * exact[3]] * 2, rel=1e-12)
    # a shifted grid (gain 1.01, +0.2 keV) keeps the total inside the template range
    g_lo, g_hi = template.elo / 1.01 - 0.2, template.ehi / 1.01 - 0.2
    shifted = template.spectrum(g_lo, g_hi, p["kt"], p["abundanc"], p["redshift"])
    inside = g_lo >= template.elo[0]
    assert shifted[inside].sum() == pytest.approx(template.values[template.elo >= g_lo[inside][0]].sum()
                                                  + 0, rel=2e-2)
    assert np.all(shifted[g_hi <= template.elo[0]] == 0)


def test_template_bad_file(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("1 2\n3 4\n")
    with pytest.raises(NuskybgdError, match="3 columns"):
        apec.TemplateSpectrum(f)
    with pytest.raises(NuskybgdError, match="not found"):
        apec.TemplateSpectrum(tmp_path / "missing.txt")


# ---------------------------------------------------------------- download

def _tarball(tmp_path, atomdb_dir):
    tb = tmp_path / "atomdb_v9.9.9.tar.bz2"
    with tarfile.open(tb, "w:bz2") as tar:
        for f in atomdb_dir.iterdir():
            tar.add(f, arcname=f"atomdb_v9.9.9/{f.name}")
    return tb


def test_download_verified(tmp_path, atomdb_dir):
    tb = _tarball(tmp_path, atomdb_dir)
    hashes = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in atomdb_dir.iterdir()}
    dest = tmp_path / "cache"
    coco, line = apec.download_atomdb("9.9.9", url=tb.as_uri(), dest_dir=dest, progress=False, hashes=hashes)
    assert coco.read_bytes() == (atomdb_dir / "apec_v9.9.9_coco.fits").read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == ["apec_v9.9.9_coco.fits", "apec_v9.9.9_line.fits"]


def test_download_checksum_mismatch_caches_nothing(tmp_path, atomdb_dir):
    tb = _tarball(tmp_path, atomdb_dir)
    hashes = {f.name: "0" * 64 for f in atomdb_dir.iterdir()}
    dest = tmp_path / "cache"
    with pytest.raises(NuskybgdError, match="sha256"):
        apec.download_atomdb("9.9.9", url=tb.as_uri(), dest_dir=dest, progress=False, hashes=hashes)
    assert list(dest.iterdir()) == []


def test_download_unknown_version_and_bad_url(tmp_path):
    with pytest.raises(NuskybgdError, match="no known sha256"):
        apec.download_atomdb("0.0.1", dest_dir=tmp_path, progress=False)
    with pytest.raises(NuskybgdError, match="download failed"):
        apec.download_atomdb("3.1.2", url=(tmp_path / "nothing.tar.bz2").as_uri(), dest_dir=tmp_path / "c",
                             progress=False)


def test_download_command_line(tmp_path, atomdb_dir, capsys):
    from nuskybgd.cli import main
    tb = _tarball(tmp_path, atomdb_dir)
    # 9.9.9 has no registered sha256: the command refuses, exit status 2
    assert main(["atomdb", "download", "--version", "9.9.9", "--url", tb.as_uri(), "--dest", str(tmp_path / "c")]) == 2
    assert "no known sha256" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == []
