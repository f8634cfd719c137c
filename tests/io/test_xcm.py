"""XCM reader/writer: real XSPEC save files, links, round trips, bad syntax."""

import numpy as np
import pytest
from fit_synthetic import synthetic_problem

from nuskybgd.errors import NuskybgdError
from nuskybgd.fitting.engine import LinearModel
from nuskybgd.io.state import Link
from nuskybgd.io.xcm import (
    check_spectrum_order,
    format_xcm,
    parse_link,
    parse_xcm,
    read_xcm,
    write_xcm,
)


@pytest.mark.parametrize("text, expected", [
    ("p2", Link(None, 2, 1.0)),
    (" apbgd:p3*0.42", Link("apbgd", 3, 0.42)),
    ("apbgd:p3 * 0.42", Link("apbgd", 3, 0.42)),
    ("1.2e-01 * apbgd:3", Link("apbgd", 3, 0.12)),
    ("apbgd:1", Link("apbgd", 1, 1.0)),
    ("0.5*p7", Link(None, 7, 0.5)),
    ("intbgd:p16/4", Link("intbgd", 16, 0.25)),
    ("4", Link(None, 4, 1.0)),
    ("2.0 * fcxb:p3 * 3", Link("fcxb", 3, 6.0)),
])
def test_parse_link(text, expected):
    got = parse_link(text)
    assert got.source == expected.source and got.index == expected.index
    assert got.factor == pytest.approx(expected.factor, rel=1e-15)


@pytest.mark.parametrize("text", ["p2 + 1", "sin(p2)", "p2*p3", "", "apbgd:p0", "0.5", "1/p2"])
def test_parse_link_rejects(text):
    with pytest.raises(NuskybgdError):
        parse_link(text, "f.xcm:3")


def test_real_epoch0(real):
    st = read_xcm(real / "xcm" / "epoch0_det3_FPMA.xcm")
    assert st.statistic == "cstat"
    assert [s.file for s in st.spectra] == ["epoch0_det3_FPMA_repro.pha"]
    assert st.spectra[0].responses == {2: "diag.rmf"}
    assert st.spectra[0].ignore == [(1, 2334), (4061, 4096)]
    src1, cont = st.sources
    assert src1.name is None and src1.number == 1 and src1.npar == 18
    assert src1.components == ["gaussian"] * 6
    assert cont.name == "cont" and cont.number == 2 and cont.components == ["bknpower"]
    p = src1.params[0]
    assert (p.value, p.delta, p.hard_min, p.soft_min, p.soft_max, p.hard_max) == (105.555, 0.1, 103, 103, 107, 107)
    assert src1.params[1].frozen and not src1.params[0].frozen
    assert cont.params[1].frozen and cont.params[1].value == 124
    assert cont.params[3].value == pytest.approx(0.000428284, rel=1e-12)
    assert "method leven 1000 0.01" in st.settings and "bayes off" in st.trailer


def test_real_all_years(real):
    st = read_xcm(real / "xcm" / "fpma_all_years.xcm")
    assert len(st.spectra) == 6 and st.n_groups == 6
    assert [s.group for s in st.spectra] == list(range(1, 7))
    for s in st.spectra:
        assert s.responses == {2: "diag.rmf"}
        assert s.ignore == [(1, 2460), (3710, 4096)]
    src1, cont = st.sources
    assert src1.npar == 9 and len(src1.params) == 54
    assert cont.npar == 4 and len(cont.params) == 24
    # group 2 of source 1: LineE free, Sigma linked to p2, norm free, ...
    g2 = src1.params[9:18]
    assert g2[0].link is None and g2[0].value == 144.582
    assert g2[1].link == Link(None, 2, 1.0)
    assert g2[1].value == src1.params[1].value  # linked value follows the target
    assert g2[3].link == Link(None, 4, 1.0) and g2[4].link == Link(None, 5, 1.0)
    assert cont.params[4 + 1].value == 124 and cont.params[4 + 1].frozen


@pytest.mark.parametrize("name", ["epoch0_det3_FPMA.xcm", "fpma_all_years.xcm"])
def test_real_rewrite_is_stable(real, name):
    st = read_xcm(real / "xcm" / name)
    text = format_xcm(st)
    st2 = parse_xcm(text)
    assert format_xcm(st2) == text
    for a, b in zip(st.sources, st2.sources):
        assert [p.numbers() for p in a.params] == [p.numbers() for p in b.params]
        assert [p.link for p in a.params] == [p.link for p in b.params]


def test_original_tool_syntax():
    text = """statistic chi
data 1:1 a.pha 2:2 b.pha
response  2:1 a.rmf
arf 2:1 be.arf
response 2:2 b.rmf
arf 2:2 be.arf
ignore 1-2:1-35,3711-4096
model  2:apbgd cutoffpl
1.29 -0.01
41.13 -0.01
7.3e-04 0.01
=apbgd:1
=apbgd:2
=4.2e-01 * apbgd:3
"""
    st = parse_xcm(text, "orig.xcm")
    src = st.source("apbgd")
    assert src.params[5].link == Link("apbgd", 3, 0.42)
    assert src.params[5].value == pytest.approx(0.42 * 7.3e-4)
    assert src.params[0].frozen and src.params[2].free
    assert src.params[0].hard_min == -3  # defaults of cutoffpl fill short lines
    assert st.spectra[1].ignore == [(1, 35), (3711, 4096)]
    assert st.spectra[0].arfs == {2: "be.arf"}


@pytest.mark.parametrize("text, line", [
    ("statistic cstat\ndata 1:1 a.pha\nfrobnicate 3\n", 3),
    ("data 1:1 a.pha\nmodel  2:x cutoffpl\n1 0.01\n= p1 + 2\n3 0.1\n", 4),
    ("data 1:1 a.pha\nignore 1:**-3.0\n", 2),
    ("data a.pha\n", 1),
    ("data 1:1 a.pha\nresponse 2:3 b.rmf\n", 2),
])
def test_unknown_syntax_one_line_error(tmp_path, text, line):
    f = tmp_path / "bad.xcm"
    f.write_text(text)
    with pytest.raises(NuskybgdError) as exc:
        read_xcm(f)
    msg = str(exc.value)
    assert "\n" not in msg and str(f) in msg
    assert f":{line}:" in msg


def test_parameter_count_mismatch(tmp_path):
    f = tmp_path / "bad.xcm"
    f.write_text("data 1:1 a.pha 2:2 b.pha\nmodel  2:x cutoffpl\n1\n2\n3\n")
    with pytest.raises(NuskybgdError, match="do not divide"):
        read_xcm(f)


def test_background_state_round_trip(tmp_path):
    state, spectra, _ = synthetic_problem(2, seed=3, fix_line_ratios=True, fcxb_links=[(1, 2)])
    for s, i in state.free_parameters():
        s.params[i].value *= 1.2345678901234567
    state.update_linked_values()
    f1 = tmp_path / "a.xcm"
    write_xcm(state, f1)
    st2 = read_xcm(f1)
    f2 = tmp_path / "b.xcm"
    write_xcm(st2, f2)
    assert f1.read_text() == f2.read_text()
    m1, m2 = LinearModel(state, spectra), LinearModel(st2, spectra)
    for k in range(len(spectra)):
        a, b = m1.predicted_counts(k), m2.predicted_counts(k)
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=0)
    with pytest.raises(NuskybgdError):
        write_xcm(st2, f2)  # exists, no clobber


def test_check_spectrum_order(tmp_path):
    st = parse_xcm("data 1:1 a.pha 2:2 b.pha\n")
    check_spectrum_order(st, ["a.pha", "b.pha"], tmp_path, tmp_path)
    with pytest.raises(NuskybgdError, match="spectrum 2 is b.pha"):
        check_spectrum_order(st, ["a.pha", "c.pha"], tmp_path, tmp_path)
    with pytest.raises(NuskybgdError, match="2 spectra"):
        check_spectrum_order(st, ["a.pha", "b.pha", "c.pha"], tmp_path, tmp_path)
