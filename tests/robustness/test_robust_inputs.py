"""Legal but unusual input keeps working: non-ASCII paths, huge regions, gzip files."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd.cli import main
from nuskybgd.io.regions import region_mask

from robustness.test_robust_fuzz import HEADER


@pytest.mark.parametrize("text", ["image\ncircle(25,25,1e6)\n", "image\ncircle(25,25,1e9)\n",
                                  "image\nbox(25,25,1e7,1e7,0)\n", "fk5\ncircle(150.1,2.2,50d)\n"])
def test_region_larger_than_image(tmp_path, text):
    p = tmp_path / "big.reg"
    p.write_text(text)
    m = region_mask(p, HEADER, shape=(50, 50))
    assert m.all()  # every pixel, not "zero area"


def test_valid_gzip_reads(chain, tmp_path):
    from nuskybgd.io.events import read_events
    z = tmp_path / "e.evt.gz"
    z.write_bytes(gzip.compress(Path(chain["evt"]["A"]).read_bytes(), compresslevel=1))
    a = read_events(chain["evt"]["A"], columns=("PI",))
    b = read_events(z, columns=("PI",))
    assert np.array_equal(a.columns["PI"], b.columns["PI"])


def test_non_ascii_paths_work(chain, tmp_path, capsys, monkeypatch):
    """Every task on files whose names are not ASCII (FITS headers get percent-encoded names)."""
    monkeypatch.setenv("CALDB", str(chain["caldb"]))
    d = tmp_path / "données_ü" / "背景"
    d.mkdir(parents=True)
    c = chain
    evt = shutil.copy(c["evt"]["A"], d / "évts_A.evt")
    det1 = shutil.copy(c["det1"]["A"], d / "dét1.fits")
    gti = shutil.copy(c["gti"]["A"], d / "gtï.fits")
    reg = shutil.copy(c["reg"]["A"][0], d / "régïon.reg")
    caldb = str(c["caldb"])
    steps = [
        ["mkimgs", evt, "3", "79", "--out", d / "imâge.fits"],
        ["aspecthist", det1, "--gtifile", gti, "--out", d / "aspéct.fits"],
        ["mkinstrmap", evt, "--prefix", f"{d}/ïnstr_", "--caldb", caldb],
        ["projbgd", "--refimg", d / "imâge.fits", "--out", d / "bgdapÅ.fits", "--mod", "A", "--det", "1234",
         "--chipmap", d / "ïnstr_newinstrmapA.fits", "--aspect", d / "aspéct.fits", "--outdir", d],
        ["extract", evt, reg, "--outprefix", "spéc", "--outdir", d, "--caldb", caldb],
        ["absrmf", evt, d / "àbs_", "--fractions", "0.5,0.5,0,0"],
    ]
    for argv in steps:
        rc = main([str(a) for a in argv])
        assert rc == 0, (argv[0], capsys.readouterr().err)
    pha = d / "spéc_sr_g30.pha"
    assert fits.getheader(pha, 1)["RESPFILE"] == "sp%C3%A9c_sr.rmf"
    info = json.loads(json.dumps(c["bgdinfo_dict"]))
    info["bgfiles"] = [str(c["dir"] / f) for f in info["bgfiles"]]
    info["bgfiles"][0] = str(pha)
    info["regfiles"] = [str(c["dir"] / f) for f in info["regfiles"]]
    info["regfiles"][0] = str(reg)
    info["refimgf"] = str(d / "imâge.fits")
    info["bgdapfiles"] = {"A": str(d / "bgdapÅ.fits"), "B": str(c["ap"]["B"])}
    info["bgddetfiles"] = {"A": [str(d / f"det{k}Aim.fits") for k in range(4)],
                           "B": [str(p) for p in c["det"]["B"]]}
    (d / "bgdïnfo.json").write_text(json.dumps(info), encoding="utf-8")
    for argv in (["fit", d / "bgdïnfo.json", "--savefile", d / "bgdpärams", "--caldb", caldb, "--no-plot"],
                 ["spec", d / "bgdïnfo.json", d / "bgdpärams.json", reg, pha, "--savefile", d / "srç"],
                 ["image", d / "bgdïnfo.json", d / "bgdpärams.json", "3", "20", "--prefix", f"{d}/ïmg_"],
                 ["simplify", d / "bgdïnfo.json", d / "srç.xcm", "--savefile", d / "sïmp"]):
        rc = main([str(a) for a in argv])
        assert rc == 0, (argv[0], capsys.readouterr().err)
    assert (d / "bgdpärams.xcm").is_file() and (d / "srç_bkg.pha").is_file()
    assert not [p.name for p in d.iterdir() if p.name.startswith(".")]  # no staging or lock left
