"""hypothesis fuzzers of the text readers: any exception other than NuskybgdError fails.

Readers: XCM (``parse_xcm``), link expressions (``parse_link``), DS9 regions
(``read_region_shapes`` + ``region_mask``), bgdinfo JSON (``load_bgdinfo``) and
the original tool's ``key=value`` arguments (``translate_legacy`` + argparse).
Each runs 2,000 examples in the normal suite and 10,000 under ``slow``.
"""

import json
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuskybgd.errors import NuskybgdError

N_FAST, N_SLOW = 2000, 10000
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", Path(__file__).resolve().parents[3] / "shared"))


def _settings(n):
    return settings(max_examples=n, deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck))


def _only_own_errors(fn, *args, **kw):
    """Run ``fn``; NuskybgdError (one line) is fine, anything else fails the test."""
    try:
        return fn(*args, **kw)
    except NuskybgdError as exc:
        assert "\n" not in str(exc)
        return None


# ------------------------------------------------------------------------------------------------ XCM
XCM_SEED = """statistic cstat
data 1:1 bgd1A.pha 2:2 bgd1B.pha
response 2:1 bgd1A.rmf
response 2:2 bgd1B.rmf
response 3:1 diag.rmf
ignore 1:1-30,4000-4096 2:1-10
ignore bad
method leven 1000 0.01
abund angr
xsect vern
model 2:apbgd cutoffpl
1.29 -0.01 -3 -2 9 10
24 -0.01 0.01 1 500 1000
0.001 0.01 0 0 1e+24 1e+24
=apbgd:p1
=apbgd:p2
= 0.5 * apbgd:p3
model 3:intbgd lorentz
19.7 -0.05 0 0 1e6 1e6
0.1 -0.01 0 0 10 20
0.3 0.01 0 0 1e24 1e24
=intbgd:p1*1.1
=p2
=intbgd:p3/2
bayes off
"""

_XCM_WORDS = ["statistic", "data", "response", "arf", "ignore", "model", "method", "abund", "xsect",
              "cosmo", "xset", "systematic", "bayes", "notice", "fit", "cstat", "chi", "bad", "**", "*",
              "1:1", "2:1", "0:1", "1:0", "-1:2", "3:2", "99999999999999999999:1", "2:apbgd", "0:x",
              "cutoffpl", "apec", "lorentz", "bknpower", "+", "*", "(", ")", "=", "=p1", "=apbgd:p3",
              "= 2 * p1", "=p0", "=p-1", "=x:p1", "nan", "inf", "-inf", "1e999", "-0", "0", "1", "2",
              "1-2", "5-3", "1-4096", "a.pha", "b.rmf", "#", "1.5e-3", "-1e24", "1e24", ":", "::", "p1",
              "model  1:m1 cutoffpl", "1,2", "1-", "-", "\t"]


def _gen_xcm(rng):
    """An XCM-like text from a seeded generator (one hypothesis draw per example keeps 2,000 fast)."""
    choice = rng.randrange(3)
    if choice == 0:  # mutate the seed: drop, duplicate, replace or splice lines
        lines = XCM_SEED.splitlines()
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(4)
            k = rng.randrange(len(lines)) if lines else 0
            if op == 0 and lines:
                del lines[k]
            elif op == 1 and lines:
                lines.insert(k, lines[k])
            elif op == 2:
                lines.insert(k, " ".join(rng.choices(_XCM_WORDS, k=rng.randint(1, 8))))
            elif lines:
                toks = lines[k].split()
                if toks:
                    toks[rng.randrange(len(toks))] = rng.choice(_XCM_WORDS)
                    lines[k] = " ".join(toks)
        return "\n".join(lines)
    if choice == 1:  # lines of XCM words
        return "\n".join(" ".join(rng.choices(_XCM_WORDS, k=rng.randint(0, 8))) for _ in range(rng.randint(0, 25)))
    return "".join(chr(rng.randrange(32, 0x2FF)) if rng.random() < 0.9 else rng.choice("\n\t=:*") for _ in
                   range(rng.randint(0, 200)))


def _seeded(gen):
    """Strategy: ``gen(random.Random(seed))`` for a drawn seed, or plain text."""
    return st.integers(0, 2 ** 63).map(lambda seed: gen(random.Random(seed))) | st.text(max_size=200)


def xcm_texts():
    return _seeded(_gen_xcm)


def _parse_xcm(text):
    from nuskybgd.io.xcm import parse_xcm
    state = _only_own_errors(parse_xcm, text, "fuzz.xcm")
    if state is not None:  # what was accepted can be written back and read again
        from nuskybgd.io.xcm import format_xcm
        _only_own_errors(lambda: parse_xcm(format_xcm(state), "again.xcm"))


@_settings(N_FAST)
@given(xcm_texts())
def test_fuzz_xcm(text):
    _parse_xcm(text)


@pytest.mark.slow
@_settings(N_SLOW)
@given(xcm_texts())
def test_fuzz_xcm_slow(text):
    _parse_xcm(text)


def test_xcm_seed_is_valid():
    from nuskybgd.io.xcm import parse_xcm
    state = parse_xcm(XCM_SEED, "seed.xcm")
    assert len(state.spectra) == 2 and len(state.sources) == 2


def test_xcm_data_group_zero():
    from nuskybgd.io.xcm import parse_xcm
    with pytest.raises(NuskybgdError, match="data group"):
        parse_xcm(XCM_SEED.replace("data 1:1 bgd1A.pha", "data 0:1 bgd1A.pha"), "g0.xcm")


# ---------------------------------------------------------------------------------------------- links
_LINK_PARTS = ["p1", "p3", "p0", "p-2", "apbgd:p3", "apbgd:3", "2:p1", "x:p", ":p1", "*", "/", "0", "0.0", "-1",
               "1e308", "1e309", "nan", "inf", "(", ")", " ", "+", "-", "p1e3", "p99999999999999999999"]


def link_texts():
    return _seeded(lambda rng: "".join(rng.choices(_LINK_PARTS, k=rng.randint(0, 8))))


def _parse_link(text):
    from nuskybgd.io.xcm import parse_link
    link = _only_own_errors(parse_link, text, "fuzz.xcm:1")
    if link is not None:
        import math
        assert math.isfinite(link.factor) and link.index >= 1


@_settings(N_FAST)
@given(link_texts())
def test_fuzz_link(text):
    _parse_link(text)


@pytest.mark.slow
@_settings(N_SLOW)
@given(link_texts())
def test_fuzz_link_slow(text):
    _parse_link(text)


# -------------------------------------------------------------------------------------------- regions
_REG_SHAPES = ["circle", "ellipse", "box", "polygon", "annulus", "point", "line", "text", "vector", "panda",
               "-circle", "+box", "# circle"]
_REG_FRAMES = ["image", "physical", "fk5", "icrs", "galactic", "ecliptic", "linear", "wcs", "fk4"]
_REG_NUMS = ["0", "1", "-1", "25", "25.5", "1e6", "1e30", "-1e30", "nan", "inf", "1\"", "2'", "3d", "10:00:00",
             "+02:00:00", "150.1", "2.2", "", "x", "1e-30", "0.0001"]


def _gen_region(rng):
    lines = []
    if rng.random() < 0.5:
        lines.append("# Region file format: DS9 version 4.1")
    for _ in range(rng.randint(0, 4)):
        if rng.random() < 0.25:
            lines.append(rng.choice(_REG_FRAMES))
        nums = rng.choices(_REG_NUMS, k=rng.randint(0, 8))
        sep = rng.choice([",", " ", ", "])
        tail = rng.choice(["", " # color=red", " #", " # text={a}", ")"])
        lines.append(f"{rng.choice(_REG_SHAPES)}({sep.join(nums)}){tail}")
    return "\n".join(lines)


def region_texts():
    return _seeded(_gen_region)


def _header():
    from astropy.io import fits
    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"] = h["NAXIS2"] = 50
    for k, v in (("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"), ("CRPIX1", 25.5), ("CRPIX2", 25.5),
                 ("CRVAL1", 150.1), ("CRVAL2", 2.2), ("CDELT1", -0.000682), ("CDELT2", 0.000682)):
        h[k] = v
    h["LTV1"], h["LTV2"], h["LTM1_1"], h["LTM2_2"] = 0.0, 0.0, 1.0, 1.0
    return h


HEADER = _header()


def _region(text, folder):
    from nuskybgd.io.regions import region_mask
    p = Path(folder) / "fuzz.reg"
    p.write_text(text, encoding="utf-8", errors="surrogateescape")
    mask = _only_own_errors(region_mask, p, HEADER, shape=(50, 50))
    if mask is not None:
        assert mask.shape == (50, 50) and mask.any()


@pytest.fixture(scope="module")
def reg_folder():
    with tempfile.TemporaryDirectory() as d:
        yield d


@_settings(N_FAST)
@given(text=region_texts())
def test_fuzz_region(reg_folder, text):
    _region(text, reg_folder)


@pytest.mark.slow
@_settings(N_SLOW)
@given(text=region_texts())
def test_fuzz_region_slow(reg_folder, text):
    _region(text, reg_folder)


# -------------------------------------------------------------------------------------------- bgdinfo
BGD_SEED = {
    "bgfiles": ["bgd1A.pha", "bgd1B.pha"], "regfiles": ["bgd1A.reg", "bgd1B.reg"], "refimgf": "bgdapA.fits",
    "bgdapfiles": {"A": "bgdapA.fits", "B": "bgdapB.fits"},
    "bgddetfiles": {"A": [f"det{k}Aim.fits" for k in range(4)], "B": [f"det{k}Bim.fits" for k in range(4)]},
    "fcxb_config": {"links": [[1, 2]]}, "intbgd_fix_line_ratios": False,
}

def _json_value(rng, depth=0):
    k = rng.randrange(8 if depth < 3 else 5)
    if k == 0:
        return None
    if k == 1:
        return rng.random() < 0.5
    if k == 2:
        return rng.choice([0, 1, 2, 5, -1, 10 ** 30, 1.5, float("nan"), float("inf")])
    if k in (3, 4):
        return rng.choice(["", "a.pha", "A", "B", "links", "x" * 300, "\u00e9.fits", "../x", "/dev/null"])
    if k in (5, 6):
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["A", "B", "links", "x", ""]): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _gen_bgdinfo(rng):
    kind = rng.randrange(3)
    if kind == 0:  # the seed with keys replaced, dropped, misspelt or retyped
        d = json.loads(json.dumps(BGD_SEED))
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(sorted(d) + ["intbgd_fix_line_ratio", "bgfile", "fcxb", "x"])
            if rng.random() < 0.3:
                d.pop(key, None)
            else:
                d[key] = _json_value(rng)
        return json.dumps(d)
    if kind == 1:  # deep nesting
        n = rng.choice([1, 10, 1000, 20000])
        return rng.choice(["[", "{\"a\":"]) * n + "]" * rng.randint(0, n)
    return json.dumps(_json_value(rng))


def bgdinfo_texts():
    return _seeded(_gen_bgdinfo)


def _bgdinfo(text, folder):
    from nuskybgd.io.bgdinfo import load_bgdinfo
    p = Path(folder) / "bgdinfo.json"
    p.write_text(text, encoding="utf-8", errors="surrogateescape")
    _only_own_errors(load_bgdinfo, p, check_files=False)


@_settings(N_FAST)
@given(text=bgdinfo_texts())
def test_fuzz_bgdinfo(reg_folder, text):
    _bgdinfo(text, reg_folder)


@pytest.mark.slow
@_settings(N_SLOW)
@given(text=bgdinfo_texts())
def test_fuzz_bgdinfo_slow(reg_folder, text):
    _bgdinfo(text, reg_folder)


def test_bgdinfo_seed_is_valid(reg_folder):
    from nuskybgd.io.bgdinfo import load_bgdinfo
    p = Path(reg_folder) / "seed.json"
    p.write_text(json.dumps(BGD_SEED))
    assert load_bgdinfo(p, check_files=False).fcxb_links == [(1, 2)]


# -------------------------------------------------------------------------------------- legacy parser
_LEGACY_TOKENS = ["bgdinfo=x.json", "savefile=bgd", "savefile=!bgd", "!bgd", "clobber=yes", "clobber=no",
                  "clobber=", "=x", "a=b=c", "statistic=cstat", "emin=3", "emax=", "plot=yes", "noplot=yes",
                  "--clobber", "--savefile", "--", "-", "x", "", "!", "key=\u00e9", "UPPER=1", "_=1",
                  "mod=A", "out=x.fits", "det=1234", "refimg=a.fits", "evtfile=e.evt", "--help=1",
                  "pa_pnt=nan", "exposure=-1", "ra=inf", "1e999", "\x00", "k\x00=v"]


def _gen_legacy(rng):
    from nuskybgd.cli import TASKS
    task = rng.choice([t for t in TASKS if t != "atomdb"])
    toks = [rng.choice(_LEGACY_TOKENS) if rng.random() < 0.8
            else "".join(chr(rng.randrange(32, 0x17F)) for _ in range(rng.randint(0, 10)))
            for _ in range(rng.randint(0, 6))]
    return task, toks


def legacy_argvs():
    return st.integers(0, 2 ** 63).map(lambda seed: _gen_legacy(random.Random(seed)))


_PARSER = {}


def _legacy(task, toks):
    from nuskybgd.cli import build_parser, translate_legacy
    if "p" not in _PARSER:
        _PARSER["p"] = build_parser()
    parser = _PARSER["p"]
    sub = parser._subparsers._group_actions[0].choices[task]
    out = _only_own_errors(translate_legacy, toks, sub, sub.get_default("_task_legacy"))
    if out is not None:
        assert all(isinstance(t, str) for t in out)
        assert out.count("--clobber") <= 1 + toks.count("--clobber")


@_settings(N_FAST)
@given(legacy_argvs())
def test_fuzz_legacy(args):
    _legacy(*args)


@pytest.mark.slow
@_settings(N_SLOW)
@given(legacy_argvs())
def test_fuzz_legacy_slow(args):
    _legacy(*args)
