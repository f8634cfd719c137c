"""A complete small chain (images, projections, spectra, bgdinfo, fit) for the robustness cases."""

import json
from pathlib import Path

import pytest

from nuskybgd.cli import main

REGIONS = ((-80.0, -80.0, 50.0), (-80.0, 80.0, 50.0), (80.0, 80.0, 50.0))


def _run(argv):
    rc = main([str(a) for a in argv])
    if rc:
        raise RuntimeError(f"chain step failed: nuskybgd {' '.join(map(str, argv))}")


@pytest.fixture(scope="session")
def chain(simulated_obs, tmp_path_factory):
    """Every task's outputs on the simulated observation, in one read-only folder.

    Keys: ``dir``, ``sim``, ``evt``/``gti``/``det1``/``img``/``asp``/``imap``/``ap``
    (dicts per module), ``det`` (module -> 4 paths), ``reg``/``pha``/``rmf`` (module ->
    list), ``bgdinfo``, ``fit_json``, ``fit_xcm``, ``caldb``.
    """
    sim = simulated_obs
    d = tmp_path_factory.mktemp("robust_chain")
    c = {"dir": d, "sim": sim, "caldb": sim.caldb, "evt": dict(sim.events), "gti": dict(sim.gti),
         "det1": dict(sim.det1), "img": {}, "asp": {}, "imap": {}, "ap": {}, "det": {}, "reg": {}, "pha": {},
         "rmf": {}}
    for m in ("A", "B"):
        c["img"][m] = d / f"im{m}3to79keV.fits"
        _run(["mkimgs", sim.events[m], "3", "79", "--out", c["img"][m]])
        c["asp"][m] = d / f"aspecthist{m}.fits"
        _run(["aspecthist", sim.det1[m], "--gtifile", sim.gti[m], "--out", c["asp"][m]])
        _run(["mkinstrmap", sim.events[m], "--prefix", f"{d}/", "--caldb", sim.caldb])
        c["imap"][m] = d / f"newinstrmap{m}.fits"
        c["ap"][m] = d / f"bgdap{m}.fits"
        _run(["projbgd", "--refimg", c["img"][m], "--out", c["ap"][m], "--mod", m, "--det", "1234",
              "--chipmap", c["imap"][m], "--aspect", c["asp"][m], "--outdir", d])
        c["det"][m] = [d / f"det{k}{m}im.fits" for k in range(4)]
        cx, cy = sim.truth["modules"][m]["footprint_centre_xy_1based"]
        c["reg"][m], c["pha"][m], c["rmf"][m] = [], [], []
        for k, (dx, dy, r) in enumerate(REGIONS, start=1):
            reg = d / f"bgd{k}{m}.reg"
            reg.write_text(f"# Region file format: DS9 version 4.1\nimage\ncircle({cx + dx:.2f},{cy + dy:.2f},{r:.2f})\n")
            _run(["extract", sim.events[m], reg, "--outprefix", reg.stem, "--outdir", d, "--caldb", sim.caldb])
            c["reg"][m].append(reg)
            c["pha"][m].append(d / f"{reg.stem}_sr_g30.pha")
            c["rmf"][m].append(d / f"{reg.stem}_sr.rmf")
    bg, rg = [], []
    for k in range(len(REGIONS)):
        for m in ("A", "B"):
            bg.append(c["pha"][m][k].name)
            rg.append(c["reg"][m][k].name)
    info = {"bgfiles": bg, "regfiles": rg, "refimgf": c["img"]["A"].name,
            "bgdapfiles": {m: c["ap"][m].name for m in "AB"},
            "bgddetfiles": {m: [p.name for p in c["det"][m]] for m in "AB"},
            "fcxb_config": {"links": []}, "intbgd_fix_line_ratios": True}
    c["bgdinfo"] = d / "bgdinfo.json"
    c["bgdinfo"].write_text(json.dumps(info, indent=1))
    c["bgdinfo_dict"] = info
    _run(["fit", c["bgdinfo"], "--savefile", d / "bgdparams", "--caldb", sim.caldb, "--no-plot"])
    c["fit_json"] = d / "bgdparams.json"
    c["fit_xcm"] = d / "bgdparams.xcm"
    for p in (c["fit_json"], c["fit_xcm"]):
        assert Path(p).is_file()
    return c
