"""Pixel map, bad pixels and instrument map (REFERENCE section 3)."""

import numpy as np
import pytest

from nuskybgd.errors import NuskybgdError
from nuskybgd.io.events import BadPixTable, read_badpix
from nuskybgd.io.skyfiles import PixposTable, read_pixpos
from nuskybgd.sky.instrmap import (
    GRADE_WEIGHTS,
    bad_pixel_list,
    instrument_map,
    pixel_map,
)


def loop_pixel_map(tables):
    """The section-3 recipe with explicit loops (detector, RAWX, RAWY order)."""
    rawpix = np.full((360, 360), -1, np.int64)
    det = np.full((360, 360), -1, np.int64)
    best = np.zeros((360, 360))
    for tab in tables:
        key = tab.rawx * 32 + tab.rawy
        order = np.argsort(key, kind="stable")
        bounds = np.searchsorted(key[order], np.arange(1025))
        for ix in range(32):
            for iy in range(32):
                rows = order[bounds[ix * 32 + iy]:bounds[ix * 32 + iy + 1]]
                this = np.zeros((360, 360))
                for i in rows:
                    if tab.ref_det1x[i] == -1 or tab.grade[i] > 26 or np.isnan(tab.pdf[i]).any():
                        continue
                    rx, ry = tab.ref_det1x[i], tab.ref_det1y[i]
                    this[ry:ry + 7, rx:rx + 7] += tab.pdf[i] * GRADE_WEIGHTS[tab.grade[i]]
                better = this > best
                best[better] = this[better]
                rawpix[better] = ix + 32 * iy
                det[better] = tab.det
    return np.roll(rawpix, (-1, -1), (0, 1)), np.roll(det, (-1, -1), (0, 1))


@pytest.mark.slow
@pytest.mark.parametrize("module", ["A", "B"])
def test_pixel_map_matches_loop_recipe_on_real_pixpos(module, shared_caldb):
    tables = read_pixpos(shared_caldb / f"nu{module}pixpos20100101v007.fits.gz")
    assert [t.det for t in tables] == [0, 1, 2, 3]
    pm = pixel_map(tables)
    rawpix, det = loop_pixel_map(tables)
    np.testing.assert_array_equal(pm.det, det)
    np.testing.assert_array_equal(pm.rawpix, rawpix)
    # every detector covers about a quarter of DET1, 25 DET1 pixels per raw pixel
    counts = np.bincount(pm.det[pm.det >= 0])
    assert counts.shape == (4,) and np.all(counts > 20000)
    assert len(np.unique(pm.rawpix[pm.det == 0])) > 1000


def table(det, rows):
    """PixposTable from (rawx, rawy, grade, refx, refy, pdf) rows."""
    cols = list(zip(*rows))
    return PixposTable(det=det, rawx=np.array(cols[0]), rawy=np.array(cols[1]), grade=np.array(cols[2]),
                       ref_det1x=np.array(cols[3]), ref_det1y=np.array(cols[4]),
                       pdf=np.array(cols[5], dtype=np.float64))


def spot(r, c, v=1.0):
    p = np.zeros((7, 7))
    p[r, c] = v
    return p


def test_grade_weights_nan_and_unusable_rows():
    nanpdf = np.full((7, 7), np.nan)
    t = table(0, [
        (1, 0, 0, 10, 20, spot(0, 0, 0.5)),     # raw (1,0) at DET1 (10,20), weight 1 -> 0.5
        (2, 0, 1, 10, 20, spot(0, 0, 1.0)),     # raw (2,0): grade 1, weight 0.1249 -> loses
        (3, 0, 0, -1, -1, spot(0, 0, 9.0)),     # REF_DET1X = -1: ignored
        (4, 0, 27, 10, 20, spot(0, 0, 9.0)),    # grade 27: ignored
        (5, 0, 0, 10, 20, nanpdf),              # NaN PDF: ignored
        (2, 0, 2, 11, 20, spot(0, 0, 1.0)),     # raw (2,0) alone at (11,20)
    ])
    pm = pixel_map([t])
    # (-1, -1) shift: 1-based REF_DET1X/Y become 0-based indices
    assert pm.rawpix[19, 9] == 1 and pm.det[19, 9] == 0
    assert pm.rawpix[19, 10] == 2
    assert (pm.rawpix >= 0).sum() == 2


def test_ties_go_to_first_detector_then_lowest_rawx_rawy():
    a = table(2, [(5, 1, 0, 30, 30, spot(1, 1)), (3, 7, 0, 30, 30, spot(1, 1))])
    b = table(1, [(0, 0, 0, 30, 30, spot(1, 1))])
    pm = pixel_map([a, b])
    assert (pm.det[30, 30], pm.rawpix[30, 30]) == (2, 3 + 32 * 7)
    # sums of several rows of the same raw pixel beat one larger row
    c = table(0, [(0, 0, 0, 50, 50, spot(0, 0, 0.6)), (0, 0, 0, 50, 50, spot(0, 0, 0.6)),
                  (1, 0, 0, 50, 50, spot(0, 0, 1.1))])
    pm = pixel_map([c])
    assert pm.rawpix[49, 49] == 0


def test_circular_shift_wraps():
    t = table(3, [(0, 0, 0, 0, 0, spot(0, 0))])
    pm = pixel_map([t])
    assert pm.det[359, 359] == 3


def test_no_usable_rows_is_an_error():
    with pytest.raises(NuskybgdError, match="no usable row"):
        pixel_map([table(0, [(0, 0, 0, -1, -1, spot(0, 0))])])


def bp(det, rawx, rawy, time, time_stop, flag14=False, tstart=0.0, tstop=1000.0):
    n = len(rawx)
    flags = np.zeros((n, 16), bool)
    flags[:, 14] = flag14
    return BadPixTable(det=det, rawx=np.array(rawx), rawy=np.array(rawy), time=np.array(time, float),
                       time_stop=np.array(time_stop, float), badflag=flags, tstart=tstart, tstop=tstop,
                       source="test")


@pytest.mark.parametrize("duration,applied", [(790.0, False), (810.0, True), (800.0, False)])
def test_80_percent_rule(duration, applied):
    bad = bad_pixel_list([bp(1, [3], [4], [100.0], [100.0 + duration])])
    assert bad == ({(1, 3 + 32 * 4)} if applied else set())


def test_flag_bit_and_missing_tstart():
    assert bad_pixel_list([bp(2, [1], [1], [0.0], [1.0], flag14=True)]) == {(2, 33)}
    assert bad_pixel_list([bp(0, [31], [0], [0.0], [1.0], tstart=None, tstop=None)]) == {(0, 31)}
    flags_other = bp(0, [1], [1], [0.0], [1.0])
    flags_other.badflag[:, 15] = True  # last bit only: not the disabled-pixel bit
    assert bad_pixel_list([flags_other]) == set()


def test_real_bad_pixel_file(real):
    tables = read_badpix(real / "obs_80415201001" / "nu80415201001A_bp.fits")
    bad = bad_pixel_list(tables)
    # every row of this file spans the whole observation (CALDB rows start at TIME 0): all applied
    n_rows = sum(len(t.rawx) for t in tables)
    assert len(bad) == n_rows == 19
    assert sum(int(t.badflag[:, 14].sum()) for t in tables) == 12
    # with the time rule off (fraction > any span), only the disabled-pixel bit applies
    assert len(bad_pixel_list(tables, fraction=1e9)) == 12


def test_instrument_map_values_and_bad_pixels():
    rows0 = [(x, y, 0, 2 + 7 * x, 2 + 7 * y, np.full((7, 7), 0.1)) for x in range(4) for y in range(4)]
    rows1 = [(x, y, 0, 200 + 7 * x, 200 + 7 * y, np.full((7, 7), 0.1)) for x in range(4) for y in range(4)]
    pm = pixel_map([table(0, rows0), table(1, rows1)])
    caldb = np.ones((360, 360))
    caldb[200:205, 200:205] = 0
    out = instrument_map(caldb, pm, {(0, 1 + 32 * 2)})
    assert out.dtype == np.int16
    assert set(np.unique(out)) == {0, 1, 2}
    # raw pixel (1, 2) of DET0 covers DET1 [2+14-1 : +7, 2+7-1 : +7] after the shift: removed
    assert not out[15:22, 8:15].any()
    assert (out[1:8, 1:8] == 1).all()
    assert (out == 1).sum() == 15 * 49
    assert (out == 2).sum() == 16 * 49 - 25
    with pytest.raises(NuskybgdError, match="expected 360x360"):
        instrument_map(np.ones((10, 10)), pm)
    with pytest.raises(NuskybgdError, match="NaN"):
        instrument_map(np.full((360, 360), np.nan), pm)
