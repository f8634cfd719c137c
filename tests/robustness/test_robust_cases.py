"""Bad input to every task: one line naming the problem, exit code 2, output folder unchanged.

Each case builds its inputs in a private folder ``work`` (beside copies of
nothing: the shared chain is only read), snapshots ``work`` (names, sizes and
SHA-256 of every file, hidden ones included), runs ``nuskybgd TASK ...`` in
this process through :func:`nuskybgd.cli.main`, and checks the error line,
the exit code and the snapshot. A case taking longer than 120 s (e.g. a read
blocking on a FIFO) fails through SIGALRM instead of hanging the suite.
"""

import gzip
import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.cli import main

CASES = {}


def case(name, match, task=None, code=2):
    """Register ``fn(c, work) -> argv`` as a bad-input case expecting ``match`` in the error line."""
    def deco(fn):
        CASES[name] = (fn, match, code)
        return fn
    return deco


def snapshot(folder):
    out = {}
    for root, dirs, files in os.walk(folder):
        for n in dirs:
            out[os.path.relpath(os.path.join(root, n), folder) + "/"] = "dir"
        for n in files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
            else:
                out[os.path.relpath(p, folder)] = f"special {st.st_mode:o}"
    return out


def _timeout(signum, frame):
    raise TimeoutError("case took longer than 120 s (hang?)")


def _bgdinfo(c, work, **changes):
    """A bgdinfo.json in ``work`` with absolute names into the chain, then ``changes`` applied."""
    d = json.loads(json.dumps(c["bgdinfo_dict"]))
    base = c["dir"]
    d["bgfiles"] = [str(base / f) for f in d["bgfiles"]]
    d["regfiles"] = [str(base / f) for f in d["regfiles"]]
    d["refimgf"] = str(base / d["refimgf"])
    d["bgdapfiles"] = {m: str(base / f) for m, f in d["bgdapfiles"].items()}
    d["bgddetfiles"] = {m: [str(base / f) for f in fs] for m, fs in d["bgddetfiles"].items()}
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    p = work / "bgdinfo.json"
    p.write_text(json.dumps(d))
    return p


def _fit_argv(c, work, bgdinfo=None, *extra):
    return ["fit", bgdinfo or _bgdinfo(c, work), "--savefile", work / "out" / "bg", "--caldb", c["caldb"],
            "--no-fit", "--no-plot", *extra]


def _copy(src, dst):
    shutil.copyfile(src, dst)
    return Path(dst)


def _edit_fits(path, ext, fn):
    with fits.open(path, mode="update", checksum=False) as h:
        fn(h[ext])
        for hdu in h:
            hdu.header.remove("CHECKSUM", ignore_missing=True)
            hdu.header.remove("DATASUM", ignore_missing=True)


def _raw_card(path, key, value):
    """Replace the value field of header card ``key`` by raw text (e.g. NaN, illegal in FITS)."""
    data = bytearray(Path(path).read_bytes())
    k = data.find(key.encode().ljust(8) + b"= ")
    assert k >= 0
    data[k + 10:k + 80] = value.encode().rjust(20).ljust(70)
    Path(path).write_bytes(bytes(data))


def _pha_set(c, work, k, fn, name="bg.pha"):
    """Copy spectrum k (A1,B1,A2,...) and its RMF into work, edit it, and return a bgdinfo using it."""
    order = [(m, r) for r in range(3) for m in "AB"]
    m, r = order[k]
    pha = _copy(c["pha"][m][r], work / name)
    _copy(c["rmf"][m][r], work / Path(fits.getheader(pha, 1)["RESPFILE"]).name)
    fn(pha)
    d = json.loads(json.dumps(c["bgdinfo_dict"]))
    files = [str(c["dir"] / f) for f in d["bgfiles"]]
    files[k] = str(pha)
    return _bgdinfo(c, work, bgfiles=files)


# ---------------------------------------------------------------------------------------- simulate
@case("simulate-exposure-negative", r"--exposure -1: must be a finite number in \(0, 1e\+07\]")
def _(c, w):
    return ["simulate", w / "out", "--exposure", "-1"]


@case("simulate-exposure-zero", r"--exposure 0: must be")
def _(c, w):
    return ["simulate", w / "out", "--exposure", "0"]


@case("simulate-exposure-nan", r"--exposure nan: must be")
def _(c, w):
    return ["simulate", w / "out", "--exposure", "nan"]


@case("simulate-exposure-huge", r"--exposure 1e\+13: must be")
def _(c, w):
    return ["simulate", w / "out", "--exposure", "1e13"]


@case("simulate-pa-nan", r"--pa-pnt nan: must be")
def _(c, w):
    return ["simulate", w / "out", "--pa-pnt", "nan"]


@case("simulate-ra-inf", r"--ra inf: must be")
def _(c, w):
    return ["simulate", w / "out", "--ra", "inf"]


@case("simulate-dec-100", r"--dec 100: must be a finite number in \[-90, 90\]")
def _(c, w):
    return ["simulate", w / "out", "--dec", "100"]


@case("simulate-seed-negative", r"--seed -3: must be an integer >= 0")
def _(c, w):
    return ["simulate", w / "out", "--seed", "-3"]


@case("simulate-obsid-path", r"--obsid '\.\./x': must be")
def _(c, w):
    return ["simulate", w / "out", "--obsid", "../x"]


@case("simulate-clobber-bad-shared", r"/nonexistent/real/obs_80415201001: shared data folder not found")
def _(c, w):
    (w / "out" / "caldb" / "data").mkdir(parents=True)
    (w / "out" / "caldb" / "data" / "keep.fits").write_text("existing CALDB")
    (w / "out" / "truth.json").write_text("{}")
    return ["simulate", w / "out", "--clobber", "--shared", "/nonexistent"]


@case("simulate-outdir-is-file", r"outfile: output folder is a file")
def _(c, w):
    (w / "outfile").write_text("a file")
    return ["simulate", w / "outfile"]


@case("simulate-existing-outputs", r"output file exists")
def _(c, w):
    (w / "out" / "event_cl").mkdir(parents=True)
    (w / "out" / "event_cl" / "nu60001001002A01_cl.evt").write_text("old")
    return ["simulate", w / "out"]


# -------------------------------------------------------------------------------------------- demo
@case("demo-exposure-negative", r"--exposure -1: must be")
def _(c, w):
    return ["demo", w / "out", "--exposure", "-1"]


@case("demo-exposure-nan", r"--exposure nan: must be")
def _(c, w):
    return ["demo", w / "out", "--exposure", "nan"]


@case("demo-outdir-is-file", r"outfile: output folder is a file")
def _(c, w):
    (w / "outfile").write_text("a file")
    return ["demo", w / "outfile"]


# ------------------------------------------------------------------------------------------ mkimgs
@case("mkimgs-fifo", r"this is a FIFO")
def _(c, w):
    os.mkfifo(w / "evt.fifo")
    return ["mkimgs", w / "evt.fifo", "3", "79", "--out", w / "out" / "im.fits"]


@case("mkimgs-directory", r"this is a directory")
def _(c, w):
    (w / "evt.evt").mkdir()
    return ["mkimgs", w / "evt.evt", "3", "79", "--out", w / "out" / "im.fits"]


@case("mkimgs-device", r"/dev/null: .*device")
def _(c, w):
    return ["mkimgs", "/dev/null", "3", "79", "--out", w / "out" / "im.fits"]


@case("mkimgs-missing", r"nothere\.evt: .*not found")
def _(c, w):
    return ["mkimgs", w / "nothere.evt", "3", "79", "--out", w / "out" / "im.fits"]


@case("mkimgs-not-fits", r"not a FITS file")
def _(c, w):
    (w / "text.evt").write_text("hello\n" * 100)
    return ["mkimgs", w / "text.evt", "3", "79", "--out", w / "out" / "im.fits"]


@case("mkimgs-gzip-crc", r"damaged gzip file")
def _(c, w):
    raw = Path(c["evt"]["A"]).read_bytes()
    z = bytearray(gzip.compress(raw, compresslevel=1))
    z[-8] ^= 0xFF  # the stored CRC32: every byte decompresses, the check fails
    (w / "evt.evt.gz").write_bytes(bytes(z))
    return ["mkimgs", w / "evt.evt.gz", "3", "79", "--out", w / "out" / "im.fits"]


@case("mkimgs-gzip-truncated", r"damaged gzip file|truncated")
def _(c, w):
    z = gzip.compress(Path(c["evt"]["A"]).read_bytes(), compresslevel=1)
    (w / "evt.evt.gz").write_bytes(z[: len(z) // 2])
    return ["mkimgs", w / "evt.evt.gz", "3", "79", "--out", w / "out" / "im.fits"]


@case("mkimgs-band-reversed", r"")
def _(c, w):
    return ["mkimgs", c["evt"]["A"], "79", "3", "--out", w / "out" / "im.fits"]


@case("mkimgs-band-nan", r"")
def _(c, w):
    return ["mkimgs", c["evt"]["A"], "nan", "79", "--out", w / "out" / "im.fits"]


@case("mkimgs-out-is-directory", r"im\.fits: output is an existing directory")
def _(c, w):
    (w / "out" / "im.fits").mkdir()
    return ["mkimgs", c["evt"]["A"], "3", "79", "--out", w / "out" / "im.fits", "--clobber"]


@case("mkimgs-out-exists", r"im\.fits: output file exists")
def _(c, w):
    (w / "out" / "im.fits").write_text("old")
    return ["mkimgs", c["evt"]["A"], "3", "79", "--out", w / "out" / "im.fits"]


@case("mkimgs-out-folder-missing", r"output folder .*nope does not exist")
def _(c, w):
    return ["mkimgs", c["evt"]["A"], "3", "79", "--out", w / "out" / "nope" / "im.fits"]


@case("mkimgs-out-folder-is-file", r"is a file, not a folder")
def _(c, w):
    (w / "out" / "file").write_text("x")
    return ["mkimgs", c["evt"]["A"], "3", "79", "--out", w / "out" / "file" / "im.fits"]


@case("mkimgs-out-fifo", r"not a regular file")
def _(c, w):
    os.mkfifo(w / "out" / "im.fits")
    return ["mkimgs", c["evt"]["A"], "3", "79", "--out", w / "out" / "im.fits", "--clobber"]


@case("mkimgs-all-nan-sky", r"nan\.evt: every event has a null \(NaN\) sky position X/Y")
def _(c, w):
    p = _copy(c["evt"]["A"], w / "nan.evt")

    def f(h):
        h.data["X"][:] = -1 if h.data["X"].dtype.kind in "iu" else np.nan
        h.data["Y"][:] = -1 if h.data["Y"].dtype.kind in "iu" else np.nan
    _edit_fits(p, "EVENTS", f)
    return ["mkimgs", p, "3", "79", "--out", w / "out" / "im.fits"]


# -------------------------------------------------------------------------------------- aspecthist
@case("aspecthist-fifo", r"this is a FIFO")
def _(c, w):
    os.mkfifo(w / "det1.fifo")
    return ["aspecthist", w / "det1.fifo", "--gtifile", c["gti"]["A"], "--out", w / "out" / "asp.fits"]


@case("aspecthist-gti-missing", r"nogti\.fits: .*not found")
def _(c, w):
    return ["aspecthist", c["det1"]["A"], "--gtifile", w / "nogti.fits", "--out", w / "out" / "asp.fits"]


@case("aspecthist-gti-directory", r"this is a directory")
def _(c, w):
    (w / "gti").mkdir()
    return ["aspecthist", c["det1"]["A"], "--gtifile", w / "gti", "--out", w / "out" / "asp.fits"]


@case("aspecthist-out-is-directory", r"output is an existing directory")
def _(c, w):
    (w / "out" / "asp.fits").mkdir()
    return ["aspecthist", c["det1"]["A"], "--gtifile", c["gti"]["A"], "--out", w / "out" / "asp.fits", "--clobber"]


# ------------------------------------------------------------------------------------- mkinstrmap
@case("mkinstrmap-evt-directory", r"this is a directory")
def _(c, w):
    (w / "e.evt").mkdir()
    return ["mkinstrmap", w / "e.evt", "--prefix", f"{w / 'out'}/", "--caldb", c["caldb"]]


@case("mkinstrmap-prefix-missing-folder", r"does not exist")
def _(c, w):
    return ["mkinstrmap", c["evt"]["A"], "--prefix", f"{w / 'out' / 'nope'}/", "--caldb", c["caldb"]]


@case("mkinstrmap-caldb-missing", r"nocaldb")
def _(c, w):
    return ["mkinstrmap", c["evt"]["A"], "--prefix", f"{w / 'out'}/", "--caldb", w / "nocaldb"]


@case("mkinstrmap-usrbpix-garbage", r"ubp\.fits")
def _(c, w):
    (w / "ubp.fits").write_text("SIMPLE garbage")
    return ["mkinstrmap", c["evt"]["A"], "--prefix", f"{w / 'out'}/", "--caldb", c["caldb"], "--usrbpix",
            w / "ubp.fits"]


# ------------------------------------------------------------------------------------------ projbgd
def _projbgd(c, w, m="A", **kw):
    a = {"--refimg": c["img"][m], "--out": w / "out" / f"bgdap{m}.fits", "--mod": m, "--det": "1234",
         "--chipmap": c["imap"][m], "--aspect": c["asp"][m], "--outdir": w / "out"}
    a.update(kw)
    return ["projbgd", *[str(x) for kv in a.items() for x in kv]]


@case("projbgd-mod-C", r"")
def _(c, w):
    return _projbgd(c, w, **{"--mod": "C"})


@case("projbgd-det-5", r"")
def _(c, w):
    return _projbgd(c, w, **{"--det": "5"})


@case("projbgd-instrmap-module-mismatch", r"FPMB.*mod|mod.*FPMB|module")
def _(c, w):
    return _projbgd(c, w, **{"--chipmap": c["imap"]["B"]})


@case("projbgd-aspect-not-aspect", r"aspect")
def _(c, w):
    return _projbgd(c, w, **{"--aspect": c["img"]["A"]})


@case("projbgd-det-output-is-directory", r"det2Aim\.fits: output is an existing directory")
def _(c, w):
    for k in range(4):
        (w / "out" / f"det{k}Aim.fits").write_text(f"old {k}")
    (w / "out" / "bgdapA.fits").write_text("old ap")
    (w / "out" / "det2Aim.fits").unlink()
    (w / "out" / "det2Aim.fits").mkdir()
    return _projbgd(c, w) + ["--clobber"]


@case("projbgd-same-output-twice", r"same output file is named twice")
def _(c, w):
    (w / "out" / "sub").mkdir()
    return _projbgd(c, w, **{"--out": w / "out" / "sub" / ".." / "det0Aim.fits"})


@case("projbgd-aspect-off-grid", r"aspect")
def _(c, w):
    p = _copy(c["asp"]["A"], w / "asp.fits")

    def f(h):
        h.header["X_OFF"] = h.header.get("X_OFF", 0) + 100000
        h.header["Y_OFF"] = h.header.get("Y_OFF", 0) + 100000
    _edit_fits(p, 0, f)
    return _projbgd(c, w, **{"--aspect": p})


# ------------------------------------------------------------------------------------------ extract
def _extract(c, w, reg=None, *extra, m="A"):
    return ["extract", c["evt"][m], reg or c["reg"][m][0], "--outprefix", "src", "--outdir", w / "out",
            "--caldb", c["caldb"], *extra]


@case("extract-region-fifo", r"this is a FIFO")
def _(c, w):
    os.mkfifo(w / "r.reg")
    return _extract(c, w, w / "r.reg")


@case("extract-region-directory", r"this is a directory")
def _(c, w):
    (w / "r.reg").mkdir()
    return _extract(c, w, w / "r.reg")


@case("extract-region-off-image", r"r\.reg: region lies entirely outside")
def _(c, w):
    (w / "r.reg").write_text("image\ncircle(5000,5000,20)\n")
    return _extract(c, w, w / "r.reg")


@case("extract-region-garbage", r"r\.reg")
def _(c, w):
    (w / "r.reg").write_text("image\ncircle(1,2\n")
    return _extract(c, w, w / "r.reg")


@case("extract-grpmin-negative", r"grpmin")
def _(c, w):
    return _extract(c, w, None, "--grpmin", "-1")


@case("extract-energy-reversed", r"")
def _(c, w):
    return _extract(c, w, None, "--elow", "10", "--ehigh", "5")


@case("extract-outdir-missing", r"does not exist")
def _(c, w):
    return ["extract", c["evt"]["A"], c["reg"]["A"][0], "--outprefix", "src", "--outdir", w / "out" / "nope",
            "--caldb", c["caldb"]]


@case("extract-output-is-directory", r"src_sr\.rmf: output is an existing directory")
def _(c, w):
    (w / "out" / "src_sr.pha").write_text("old pha")
    (w / "out" / "src_sr.rmf").mkdir()
    return _extract(c, w, None, "--clobber")


@case("extract-gzip-crc", r"damaged gzip file")
def _(c, w):
    z = bytearray(gzip.compress(Path(c["evt"]["A"]).read_bytes(), compresslevel=1))
    z[-7] ^= 0x55
    (w / "e.evt.gz").write_bytes(bytes(z))
    return ["extract", w / "e.evt.gz", c["reg"]["A"][0], "--outprefix", "src", "--outdir", w / "out",
            "--caldb", c["caldb"]]


# ---------------------------------------------------------------------------------------------- fit
@case("fit-unknown-key", r"unknown key 'intbgd_fix_line_ratio'; did you mean 'intbgd_fix_line_ratios'\?")
def _(c, w):
    return _fit_argv(c, w, _bgdinfo(c, w, intbgd_fix_line_ratio=True))


@case("fit-fcxb-links-int", r"'fcxb_config\.links' must be a list")
def _(c, w):
    return _fit_argv(c, w, _bgdinfo(c, w, fcxb_config={"links": 5}))


@case("fit-fcxb-unknown-key", r"unknown key 'fcxb_config\.link'; did you mean 'fcxb_config\.links'")
def _(c, w):
    return _fit_argv(c, w, _bgdinfo(c, w, fcxb_config={"link": [[1, 2]]}))


@case("fit-nested-json", r"nested too deeply")
def _(c, w):
    (w / "bgdinfo.json").write_text("[" * 100000 + "]" * 100000)
    return _fit_argv(c, w, w / "bgdinfo.json")


@case("fit-bgdinfo-fifo", r"this is a FIFO")
def _(c, w):
    os.mkfifo(w / "bgdinfo.json")
    return _fit_argv(c, w, w / "bgdinfo.json")


@case("fit-bgdinfo-directory", r"this is a directory")
def _(c, w):
    (w / "bgdinfo.json").mkdir()
    return _fit_argv(c, w, w / "bgdinfo.json")


@case("fit-duplicate-spectrum", r"is the same spectrum as bgfiles\[0\]")
def _(c, w):
    files = [str(c["dir"] / f) for f in c["bgdinfo_dict"]["bgfiles"]]
    files[2] = str(c["dir"] / "." / Path(files[0]).name)
    return _fit_argv(c, w, _bgdinfo(c, w, bgfiles=files))


@case("fit-exposure-nan", r"bg\.pha: .*EXPOSURE")
def _(c, w):
    return _fit_argv(c, w, _pha_set(c, w, 0, lambda p: _raw_card(p, "EXPOSURE", "NaN")))


@case("fit-exposure-zero", r"bg\.pha: .*EXPOSURE")
def _(c, w):
    return _fit_argv(c, w, _pha_set(c, w, 0, lambda p: _edit_fits(p, 1, lambda h: h.header.set("EXPOSURE", 0.0))))


@case("fit-grouping-invalid", r"bg\.pha: GROUPING = 5 in row 11 is not an OGIP value")
def _(c, w):
    def f(p):
        def g(h):
            h.data["GROUPING"][10] = 5
        _edit_fits(p, 1, g)
    return _fit_argv(c, w, _pha_set(c, w, 0, f))


@case("fit-quality-invalid", r"bg\.pha: .*QUALITY")
def _(c, w):
    def f(p):
        def g(h):
            h.data["QUALITY"][10] = 7
        _edit_fits(p, 1, g)
    return _fit_argv(c, w, _pha_set(c, w, 0, f))


@case("fit-rmf-nan", r"\.rmf: .*(NaN|finite)")
def _(c, w):
    def f(p):
        rmf = w / Path(fits.getheader(p, 1)["RESPFILE"]).name
        with fits.open(rmf) as h:
            mat = h["MATRIX"]
            rows = [np.array(r, dtype=np.float32) for r in mat.data["MATRIX"]]
            rows[1000][:] = np.nan
            cols = [fits.Column(name=c.name, format=c.format, unit=c.unit,
                                array=rows if c.name == "MATRIX" else mat.data[c.name]) for c in mat.columns]
            new = fits.BinTableHDU.from_columns(cols, header=mat.header)
            out = fits.HDUList([x.copy() if x is not mat else new for x in h])
            out.writeto(rmf, overwrite=True)
    return _fit_argv(c, w, _pha_set(c, w, 0, f))


@case("fit-pha-module-vs-rmf", r"_sr\.rmf: RMF is for FPMA but used for FPMB \(RESPFILE of the FPMB spectrum .*bg\.pha\)")
def _(c, w):
    def f(p):
        _edit_fits(p, 1, lambda h: h.header.set("INSTRUME", "FPMB"))
    return _fit_argv(c, w, _pha_set(c, w, 0, f))


@case("fit-images-module-swap", r"bgddetfiles\.A.*FPMB|FPMB.*bgddetfiles\.A|module")
def _(c, w):
    d = c["bgdinfo_dict"]
    return _fit_argv(c, w, _bgdinfo(c, w, bgddetfiles={"A": [str(c["dir"] / f) for f in d["bgddetfiles"]["B"]],
                                                       "B": [str(c["dir"] / f) for f in d["bgddetfiles"]["B"]]}))


@case("fit-savefile-output-is-directory", r"bg_apbgd6\.arf: output is an existing directory")
def _(c, w):
    for n in ("bg.xcm", "bg.json", "bg_sherpa.py", "bg.log", "bg_apbgd1.arf"):
        (w / "out" / n).write_text("old " + n)
    (w / "out" / "bg_apbgd6.arf").mkdir()
    return _fit_argv(c, w, None, "--clobber")


@case("fit-savefile-folder-missing", r"does not exist")
def _(c, w):
    return ["fit", _bgdinfo(c, w), "--savefile", w / "out" / "nope" / "bg", "--no-fit", "--no-plot"]


@case("fit-emin-above-emax", r"--emin 10\.0 must be below --emax 5\.0")
def _(c, w):
    return _fit_argv(c, w, None, "--emin", "10", "--emax", "5")


@case("fit-emin-nan", r"--emin nan")
def _(c, w):
    return _fit_argv(c, w, None, "--emin", "nan")


@case("fit-legacy-unknown-key", r"^nuskybgd fit: error: unknown argument 'bgdinf='")
def _(c, w):
    return ["fit", "bgdinf=x.json", "savefile=" + str(w / "out" / "bg")]


@case("fit-region-off-image", r"\.reg: region lies entirely outside")
def _(c, w):
    (w / "off.reg").write_text("image\ncircle(5000,5000,20)\n")
    regs = [str(c["dir"] / f) for f in c["bgdinfo_dict"]["regfiles"]]
    regs[1] = str(w / "off.reg")
    return _fit_argv(c, w, _bgdinfo(c, w, regfiles=regs))


@case("fit-bgdinfo-entry-directory", r"bgdinfo\.json: regfiles\[1\] = .*adir is a directory, not a file")
def _(c, w):
    (w / "adir").mkdir()
    regs = [str(c["dir"] / f) for f in c["bgdinfo_dict"]["regfiles"]]
    regs[1] = str(w / "adir")
    return _fit_argv(c, w, _bgdinfo(c, w, regfiles=regs))


@case("fit-bgdinfo-entry-fifo", r"bgdinfo\.json: refimgf = .*im\.fits is a FIFO, device or socket, not a regular file")
def _(c, w):
    os.mkfifo(w / "im.fits")
    return _fit_argv(c, w, _bgdinfo(c, w, refimgf=str(w / "im.fits")))


@case("fit-respfile-directory", r"bg\.pha: its RMF .*_sr\.rmf \(RESPFILE\) is a directory, not a file")
def _(c, w):
    def f(p):
        rmf = w / Path(fits.getheader(p, 1)["RESPFILE"]).name
        rmf.unlink()
        rmf.mkdir()
    return _fit_argv(c, w, _pha_set(c, w, 0, f))


@case("fit-fcxb-links-cycle", r"bgdinfo\.json: fcxb_config\.links form a cycle through spectrum")
def _(c, w):
    return _fit_argv(c, w, _bgdinfo(c, w, fcxb_config={"links": [[1, 3], [3, 1]]}))


@case("fit-fcxb-links-target-twice", r"bgdinfo\.json: fcxb_config\.links\[1\] = \[2, 3\]: spectrum 3 is already linked")
def _(c, w):
    return _fit_argv(c, w, _bgdinfo(c, w, fcxb_config={"links": [[1, 3], [2, 3]]}))


@case("fit-detectors-vs-instrume", r"_sr_g30\.pha: spectrum is for FPMA but used for FPMB \(bgdinfo detectors\[0\] is FPMB\)")
def _(c, w):
    d = {"bgfiles": [str(c["pha"]["A"][0])], "detectors": ["B0"]}
    (w / "bgdinfo.json").write_text(json.dumps(d))
    return _fit_argv(c, w, w / "bgdinfo.json")


# --------------------------------------------------------------------------------------------- spec
def _spec(c, w, *extra, fit=None, reg=None, pha=None):
    return ["spec", c["bgdinfo"], fit or c["fit_json"], reg or c["reg"]["A"][0], pha or c["pha"]["A"][0],
            "--savefile", w / "out" / "src", *extra]


@case("spec-realisations-huge", r"--realisations 100000000: must be in \[0, 10000\]")
def _(c, w):
    return _spec(c, w, "--realisations", "100000000")


@case("spec-fit-not-json", r"fit\.json")
def _(c, w):
    (w / "fit.json").write_text("{not json")
    return _spec(c, w, fit=w / "fit.json")


@case("spec-xcm-group-zero", r"data group and spectrum numbers start at 1")
def _(c, w):
    text = Path(c["fit_xcm"]).read_text().replace("data 1:1 ", "data 0:1 ", 1)
    (w / "fit.xcm").write_text(text)
    return _spec(c, w, fit=w / "fit.xcm")


@case("spec-pha-missing", r"nothere\.pha")
def _(c, w):
    return _spec(c, w, pha=w / "nothere.pha")


@case("spec-pha-directory", r"this is a directory")
def _(c, w):
    (w / "src.pha").mkdir()
    return _spec(c, w, pha=w / "src.pha")


@case("spec-region-fifo", r"this is a FIFO")
def _(c, w):
    os.mkfifo(w / "src.reg")
    return _spec(c, w, reg=w / "src.reg")


@case("spec-source-rmf-other-module", r"src\.pha: the spectrum is FPMA but its RMF .*_sr\.rmf is FPMB")
def _(c, w):
    pha = _copy(c["pha"]["A"][0], w / "src.pha")
    _copy(c["rmf"]["B"][0], w / Path(fits.getheader(pha, 1)["RESPFILE"]).name)
    return _spec(c, w, pha=pha)


@case("spec-output-is-directory", r"src\.json: output is an existing directory")
def _(c, w):
    (w / "out" / "src.xcm").write_text("old")
    (w / "out" / "src.json").mkdir()
    return _spec(c, w, "--clobber")


# --------------------------------------------------------------------------------------------- spex
def _spex(c, w, *extra, fit=None, pha=None):
    return ["spex", c["bgdinfo"], fit or c["fit_json"], c["reg"]["A"][0], pha or c["pha"]["A"][0],
            "--savefile", w / "out" / "src", *extra]


@case("spex-fit-fifo", r"this is a FIFO")
def _(c, w):
    os.mkfifo(w / "fit.json")
    return _spex(c, w, fit=w / "fit.json")


@case("spex-pha-directory", r"this is a directory")
def _(c, w):
    (w / "src.pha").mkdir()
    return _spex(c, w, pha=w / "src.pha")


@case("spex-output-is-directory", r"src_spex\.res: output is an existing directory")
def _(c, w):
    (w / "out" / "src_spex.spo").write_text("old")
    (w / "out" / "src_spex.res").mkdir()
    return _spex(c, w, "--clobber")


# ----------------------------------------------------------------------------------------- simplify
@case("simplify-spec-directory", r"this is a directory")
def _(c, w):
    (w / "s.xcm").mkdir()
    return ["simplify", c["bgdinfo"], w / "s.xcm", "--savefile", w / "out" / "simp"]


@case("simplify-spec-garbage", r"s\.xcm")
def _(c, w):
    (w / "s.xcm").write_text("this is not an xcm\n")
    return ["simplify", c["bgdinfo"], w / "s.xcm", "--savefile", w / "out" / "simp"]


@case("simplify-bgdinfo-nested", r"nested too deeply")
def _(c, w):
    (w / "b.json").write_text("{\"a\":" * 50000 + "1" + "}" * 50000)
    return ["simplify", w / "b.json", c["fit_xcm"], "--savefile", w / "out" / "simp"]


# -------------------------------------------------------------------------------------------- image
@case("image-band-reversed", r"")
def _(c, w):
    return ["image", c["bgdinfo"], c["fit_json"], "10", "5", "--prefix", f"{w / 'out'}/"]


@case("image-band-nan", r"")
def _(c, w):
    return ["image", c["bgdinfo"], c["fit_json"], "nan", "20", "--prefix", f"{w / 'out'}/"]


@case("image-prefix-folder-missing", r"does not exist")
def _(c, w):
    return ["image", c["bgdinfo"], c["fit_json"], "3", "20", "--prefix", f"{w / 'out' / 'nope'}/"]


@case("image-fit-fifo", r"this is a FIFO")
def _(c, w):
    os.mkfifo(w / "fit.json")
    return ["image", c["bgdinfo"], w / "fit.json", "3", "20", "--prefix", f"{w / 'out'}/"]


# ------------------------------------------------------------------------------------------- absrmf
@case("absrmf-evt-fifo", r"this is a FIFO")
def _(c, w):
    os.mkfifo(w / "e.evt")
    return ["absrmf", w / "e.evt", w / "out" / "abs"]


@case("absrmf-fractions-garbage", r"fractions")
def _(c, w):
    return ["absrmf", c["evt"]["A"], w / "out" / "abs", "--fractions", "a,b,c,d"]


@case("absrmf-fractions-negative", r"fractions")
def _(c, w):
    return ["absrmf", c["evt"]["A"], w / "out" / "abs", "--fractions=-1,1,1,1"]


@case("absrmf-out-folder-missing", r"does not exist")
def _(c, w):
    return ["absrmf", c["evt"]["A"], w / "out" / "nope" / "abs"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, chain, tmp_path, capsys, monkeypatch):
    fn, match, code = CASES[name]
    monkeypatch.setenv("CALDB", str(chain["caldb"]))
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    argv = [str(a) for a in fn(chain, work)]
    before = snapshot(work)
    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(120)
    try:
        rc = main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "error" in ln]
    assert rc == code, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"nuskybgd {argv[0]}: error: "), err
    assert not lines[0].startswith(f"nuskybgd {argv[0]}: error: nuskybgd"), err  # no doubled prefix
    import re
    assert re.search(match, lines[0]), (match, lines[0])
    assert snapshot(work) == before, "the failing run changed the work folder"


def test_case_count():
    assert len(CASES) >= 60


def test_concurrent_writer_is_refused(chain, tmp_path, capsys):
    """A second fit with the same --savefile while the first runs: one line naming the PID, nothing written."""
    import subprocess
    import sys
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    argv = [str(a) for a in _fit_argv(chain, work)]
    repo = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from nuskybgd.io.output import check_outputs; "
         f"check_outputs([{str(work / 'out' / 'bg.json')!r}]); print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(work)
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2
        assert err.splitlines() == [f"nuskybgd fit: error: {work / 'out' / 'bg.json'}: output is already being "
                                    f"written by PID {holder.pid}"]
        assert snapshot(work) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # once the first writer is gone, the same run succeeds
    assert main(argv) == 0
    assert (work / "out" / "bg.json").is_file()
    assert not [p.name for p in (work / "out").iterdir() if p.name.startswith(".")]


def _projbgd_kill(chain, tmp_path, env_extra, kill_at=None):
    """Run projbgd (5 outputs) over an old set in a subprocess killed by the commit hook or at a time."""
    import subprocess
    import sys
    import time
    out = tmp_path / "out"
    out.mkdir()
    names = ["bgdapA.fits"] + [f"det{k}Aim.fits" for k in range(4)]
    for n in names:
        (out / n).write_text("old")
    argv = [sys.executable, "-m", "nuskybgd", "--log-level", "ERROR",
            *[str(a) for a in _projbgd(chain, tmp_path)[0:]], "--clobber"]
    argv[argv.index("--outdir") + 1] = str(out)
    argv[argv.index("--out") + 1] = str(out / "bgdapA.fits")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_extra}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kill_at is not None:
        time.sleep(kill_at)
        proc.kill()
    proc.communicate(timeout=600)
    from nuskybgd.io.output import recover_folder
    recover_folder(out)  # what the next run does first
    kinds = {"old" if (out / n).read_bytes() == b"old" else "new" for n in names}
    for n in names:
        if (out / n).read_bytes() != b"old":
            with fits.open(out / n, checksum=True) as h:  # complete, valid FITS
                assert h[0].data.shape == (1000, 1000)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".nuskybgd-stage")]
    return proc.returncode, kinds


@pytest.mark.parametrize("k", [2])
def test_kill_projbgd_between_renames(chain, tmp_path, k):
    rc, kinds = _projbgd_kill(chain, tmp_path, {"NUSKYBGD_COMMIT_KILL_AFTER": str(k)})
    assert rc == -signal.SIGKILL
    assert kinds == {"new"}  # journal written before the kill: the commit is completed


@pytest.mark.slow
@pytest.mark.parametrize("k", [0, 1, 3, 4])
def test_kill_projbgd_between_renames_all(chain, tmp_path, k):
    rc, kinds = _projbgd_kill(chain, tmp_path, {"NUSKYBGD_COMMIT_KILL_AFTER": str(k)})
    assert rc == -signal.SIGKILL and kinds == {"new"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_kill_projbgd_at_random_time(chain, tmp_path, seed):
    import random
    t = random.Random(seed).uniform(0.5, 8.0)
    rc, kinds = _projbgd_kill(chain, tmp_path, {"NUSKYBGD_COMMIT_DELAY": "0.2"}, kill_at=t)
    assert len(kinds) == 1  # all old or all new, never a mixture
