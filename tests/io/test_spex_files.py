"""nuskybgd.io.spex: response components, file-model spectra, command file, pyspextools round trip."""

import numpy as np
import pytest

from nuskybgd.errors import NuskybgdError
from nuskybgd.io.spex import (SECTORS, UNIT_FLUX_DISTANCE_M, file_model_points, format_file_model, read_file_model,
                              read_spex, response_component, spex_commands, write_spex)


def _grid(n=50):
    edges = 1.6 + 0.04 * np.arange(n + 1)
    return edges[:-1], edges[1:]


def _matrix(n=50, area=100.0):
    m = np.zeros((n, n))
    for i in range(n):
        for j, w in ((i - 1, 0.25), (i, 0.5), (i + 1, 0.25)):
            if 0 <= j < n:
                m[i, j] = w * area
    m[-3:] = 0.0  # energies above the channels: no group
    return m


def test_response_component_layout():
    lo, hi = _grid()
    m = _matrix()
    r = response_component(lo, hi, m)
    assert r.ncomp == 1 and int(r.nchan[0]) == 50 and int(r.neg[0]) == 47
    assert r.ic1[0] == 1 and r.ic2[0] == 2 and r.ic1[10] == 10 and r.ic2[10] == 12  # 1-based channels
    assert np.sum(r.nc) == r.resp.size
    np.testing.assert_allclose(r.resp.sum(), m.sum() * 1e-4)  # cm^2 -> m^2
    assert r.check() == 0
    # dense again = the input (m^2)
    back = np.zeros_like(m)
    k = 0
    for g in range(r.eg1.size):
        row = np.flatnonzero(np.isclose(lo, r.eg1[g]))[0]
        back[row, r.ic1[g] - 1:r.ic2[g]] = r.resp[k:k + r.nc[g]]
        k += r.nc[g]
    np.testing.assert_allclose(back, m * 1e-4)


@pytest.mark.parametrize("case", ["shape", "negative", "nan", "zero", "grid"])
def test_response_component_bad_input(case):
    lo, hi = _grid()
    m = _matrix()
    if case == "shape":
        m = m[:-1]
    elif case == "negative":
        m[5, 5] = -1
    elif case == "nan":
        m[5, 5] = np.nan
    elif case == "zero":
        m[:] = 0
    else:
        lo, hi = hi[::-1], lo[::-1]
    with pytest.raises(NuskybgdError, match="response"):
        response_component(lo, hi, m)


def test_file_model_points_units_and_floor(tmp_path):
    lo, hi = _grid()
    photons = np.linspace(1e-3, 2e-3, 50)  # photons/cm^2/s per bin
    photons[7] = 0.0
    e, s = file_model_points(lo, hi, photons)
    np.testing.assert_allclose(e, 0.5 * (lo + hi))
    ok = photons > 0
    np.testing.assert_allclose(s[ok] * (hi - lo)[ok], photons[ok] * 1e4)  # photons/m^2/s per bin
    assert 0 < s[7] <= 1e-30 * s.max() * 1.0000001
    (tmp_path / "m.dat").write_text(format_file_model(e, s))
    e2, s2 = read_file_model(tmp_path / "m.dat")
    assert np.array_equal(e2, e) and np.array_equal(s2, s)  # exact round trip
    assert 4 * np.pi * UNIT_FLUX_DISTANCE_M ** 2 == pytest.approx(1e44, rel=1e-12)


def test_file_model_bad_input(tmp_path):
    lo, hi = _grid()
    with pytest.raises(NuskybgdError, match="positive"):
        file_model_points(lo, hi, np.zeros(50))
    (tmp_path / "short.dat").write_text("3\n1 2\n2 3\n")
    with pytest.raises(NuskybgdError, match="3 points, found 2"):
        read_file_model(tmp_path / "short.dat")
    with pytest.raises(NuskybgdError, match="not found"):
        read_file_model(tmp_path / "missing.dat")


def test_write_spex_sectors_round_trip(tmp_path):
    from pyspextools.io.spo import Spo
    lo, hi = _grid()
    spo = Spo()
    spo.nchan = np.array([50])
    spo.nregion = 1
    spo.zero_spo(50)
    spo.echan1, spo.echan2 = lo.copy(), hi.copy()
    spo.tints[:] = 1e4
    spo.ochan[:] = 0.01
    spo.dochan[:] = 0.001
    spo.empty = False
    comps = [response_component(lo, hi, _matrix(area=a)) for a in (100.0, 50.0, 1.0, 20.0, 1.0)]
    write_spex(tmp_path / "x.spo", tmp_path / "x.res", spo, comps, history=["test"])
    spo2, res = read_spex(tmp_path / "x.spo", tmp_path / "x.res")
    assert spo2.nregion == 1 and res.nsector == 5 and res.nregion == 1 and res.ncomp == 5
    assert list(res.sector) == [1, 2, 3, 4, 5] and list(res.region) == [1] * 5
    np.testing.assert_allclose(res.return_region(2, 1).resp.sum(), comps[1].resp.sum())
    with pytest.raises(NuskybgdError, match="sector 2 response has 49 channels"):
        write_spex(tmp_path / "y.spo", tmp_path / "y.res", spo,
                   [comps[0], response_component(lo[:49], hi[:49], _matrix(49))])


def test_spex_commands():
    text = spex_commands("bgd_spex", SECTORS, {s: 1.0 for s in SECTORS[1:]},
                         {s: f"bgd_spex_{s}.dat" for s in SECTORS[1:]}, comment=["hello"])
    lines = text.splitlines()
    assert lines[0] == "# hello" and "data bgd_spex bgd_spex" in lines
    assert lines.count("sector new") == 4
    assert f"distance sector 2:5 {UNIT_FLUX_DISTANCE_M:.10e} m" in lines
    for k, s in enumerate(SECTORS[1:], start=2):
        assert f"comp {k} file" in lines and f"par {k} 1 file avalue bgd_spex_{s}.dat" in lines
        assert f"par {k} 1 norm status frozen" in lines
    assert not any(x.strip().startswith("comp 1") for x in lines)  # the source model is the user's
