"""``bgdinfo.json``: the list of background spectra, regions and projected images.

Format (REFERENCE section 6)::

    {
      "bgfiles":  ["bgd1A_sr_g30.pha", "bgd1B_sr_g30.pha", ...],
      "regfiles": ["bgd1A.reg", "bgd1B.reg", ...],
      "refimgf": "bgdapA.fits",
      "bgdapfiles": {"A": "bgdapA.fits", "B": "bgdapB.fits"},
      "bgddetfiles": {"A": ["det0Aim.fits", ..., "det3Aim.fits"],
                      "B": ["det0Bim.fits", ..., "det3Bim.fits"]},
      "fcxb_config": {"links": [[1, 2], [3, 4]]},
      "intbgd_fix_line_ratios": false
    }

Relative paths are relative to the JSON file's folder. ``fcxb_config`` and
``intbgd_fix_line_ratios`` are optional.

Whole-detector spectra (e.g. stacked Earth-occulted background) need no
regions or sky images: ``"detectors": ["A0", "A1", "B3", ...]`` (same order
as ``bgfiles``) names the module and detector of each spectrum (INSTRUME is
then ignored) and the weights are the whole detector; ``regfiles``,
``refimgf``, ``bgdapfiles`` and ``bgddetfiles`` may be left out. Any
bgdinfo.json may give ``"respfiles": [...]`` (same order) to replace each
spectrum's RESPFILE.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NuskybgdError
from .fitsfile import check_input_file, not_a_file_reason

__all__ = ["BgdInfo", "load_bgdinfo", "TEMPLATE"]

#: Example printed by ``nuskybgd fit --help``.
TEMPLATE = """{
    "bgfiles": ["bgd1A_sr_g30.pha", "bgd1B_sr_g30.pha",
                "bgd2A_sr_g30.pha", "bgd2B_sr_g30.pha"],
    "regfiles": ["bgd1A.reg", "bgd1B.reg", "bgd2A.reg", "bgd2B.reg"],
    "refimgf": "bgdapA.fits",
    "bgdapfiles": {"A": "bgdapA.fits", "B": "bgdapB.fits"},
    "bgddetfiles": {
        "A": ["det0Aim.fits", "det1Aim.fits", "det2Aim.fits", "det3Aim.fits"],
        "B": ["det0Bim.fits", "det1Bim.fits", "det2Bim.fits", "det3Bim.fits"]
    },
    "fcxb_config": {"links": [[1, 2], [3, 4]]},
    "intbgd_fix_line_ratios": false
}"""


@dataclass
class BgdInfo:
    """Content of a bgdinfo.json file, with paths resolved.

    Attributes
    ----------
    path : pathlib.Path
        The JSON file.
    bgfiles, regfiles : list of pathlib.Path
        Background spectra and their region files (same order).
    bgfiles_raw : list of str
        ``bgfiles`` as written in the JSON.
    refimgf : pathlib.Path
        Image giving the WCS of the masks.
    bgdapfiles : dict
        ``{"A": Path, "B": Path}`` aperture images.
    bgddetfiles : dict
        ``{"A": [4 Paths], "B": [4 Paths]}`` detector images.
    fcxb_links : list of (int, int)
        1-based spectrum pairs whose fcxb norms are tied.
    intbgd_fix_line_ratios : bool
    detectors : list of (str, int) or None
        Module and detector of each whole-detector spectrum.
    respfiles : list of pathlib.Path or None
        Response of each spectrum (replaces RESPFILE).
    """

    path: Path
    bgfiles: list
    regfiles: list
    refimgf: Path
    bgdapfiles: dict
    bgddetfiles: dict
    bgfiles_raw: list = field(default_factory=list)
    fcxb_links: list = field(default_factory=list)
    intbgd_fix_line_ratios: bool = False
    detectors: list | None = None
    respfiles: list | None = None

    @property
    def folder(self):
        """Folder that relative names are relative to."""
        return self.path.parent


#: Keys of a bgdinfo file (``_``-prefixed keys are comments and ignored).
KNOWN_KEYS = ("bgfiles", "regfiles", "refimgf", "bgdapfiles", "bgddetfiles", "fcxb_config",
              "intbgd_fix_line_ratios", "detectors", "respfiles")


def _check_keys(d, known, path, where):
    """Unknown keys are an error (a typo would otherwise be ignored), with a suggestion."""
    for key in d:
        if not isinstance(key, str) or key.startswith("_") or key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{where}{close[0]}'?" if close else f" (known: {', '.join(known)})"
        raise NuskybgdError(f"{path}: unknown key '{where}{key}'{hint}")


def _str_list(value, key, path, n=None):
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise NuskybgdError(f"{path}: '{key}' must be a list of file names")
    if n is not None and len(value) != n:
        raise NuskybgdError(f"{path}: '{key}' must list {n} files, not {len(value)}")
    return value


def load_bgdinfo(path, check_files=True):
    """Read and check a bgdinfo.json file.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file.
    check_files : bool
        Require every named file to exist.

    Returns
    -------
    BgdInfo

    Raises
    ------
    NuskybgdError
        One line naming the file and the entry: missing file, not JSON,
        missing key, bgfiles/regfiles of different lengths, missing A/B
        images, bad fcxb links, a named file that does not exist.
    """
    p = check_input_file(path, "bgdinfo file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise NuskybgdError(f"{p}: cannot read bgdinfo file: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise NuskybgdError(f"{p}: cannot read bgdinfo file ({exc.strerror or exc})") from None
    try:
        d = json.loads(text)
    except ValueError as exc:
        raise NuskybgdError(f"{p}: not valid JSON ({exc})") from None
    except RecursionError:
        raise NuskybgdError(f"{p}: not valid bgdinfo JSON (nested too deeply)") from None
    if not isinstance(d, dict):
        raise NuskybgdError(f"{p}: expected a JSON object (see 'nuskybgd fit --help')")
    _check_keys(d, KNOWN_KEYS, p, "")
    whole = "detectors" in d
    for key in ("bgfiles",) if whole else ("bgfiles", "regfiles", "refimgf", "bgdapfiles", "bgddetfiles"):
        if key not in d:
            raise NuskybgdError(f"{p}: missing '{key}' (see 'nuskybgd fit --help' for a template)")
    bg = _str_list(d["bgfiles"], "bgfiles", p)
    if not bg:
        raise NuskybgdError(f"{p}: 'bgfiles' is empty")
    detectors = None
    if whole:
        dl = d["detectors"]
        if not isinstance(dl, list) or not all(isinstance(x, str) for x in dl):
            raise NuskybgdError(f"{p}: 'detectors' must be a list like [\"A0\", \"B3\"]")
        if len(dl) != len(bg):
            raise NuskybgdError(f"{p}: 'bgfiles' has {len(bg)} entries but 'detectors' has {len(dl)}")
        detectors = []
        for k, x in enumerate(dl):
            t = x.strip().upper()
            if not (len(t) == 2 and t[0] in "AB" and t[1] in "0123"):
                raise NuskybgdError(f"{p}: detectors[{k}] = {x!r} is not a detector (A0..A3, B0..B3)")
            detectors.append((t[0], int(t[1])))
    reg = _str_list(d["regfiles"], "regfiles", p) if "regfiles" in d else []
    if reg and len(bg) != len(reg):
        raise NuskybgdError(f"{p}: 'bgfiles' has {len(bg)} entries but 'regfiles' has {len(reg)}")
    if not whole and (not isinstance(d["refimgf"], str) or not d["refimgf"]):
        raise NuskybgdError(f"{p}: 'refimgf' must be a file name")
    resp = None
    if "respfiles" in d:
        resp = _str_list(d["respfiles"], "respfiles", p)
        if len(resp) != len(bg):
            raise NuskybgdError(f"{p}: 'bgfiles' has {len(bg)} entries but 'respfiles' has {len(resp)}")
    ap, det = d.get("bgdapfiles", {}), d.get("bgddetfiles", {})
    if not isinstance(ap, dict) or not isinstance(det, dict):
        raise NuskybgdError(f"{p}: 'bgdapfiles' and 'bgddetfiles' must be objects with keys A and B")
    _check_keys(ap, ("A", "B"), p, "bgdapfiles.")
    _check_keys(det, ("A", "B"), p, "bgddetfiles.")
    base = p.parent

    def res(name):
        q = Path(name)
        return q if q.is_absolute() else base / q

    apfiles, detfiles = {}, {}
    for m in ("A", "B"):
        if m in ap:
            if not isinstance(ap[m], str):
                raise NuskybgdError(f"{p}: 'bgdapfiles.{m}' must be a file name")
            apfiles[m] = res(ap[m])
        if m in det:
            detfiles[m] = [res(x) for x in _str_list(det[m], f"bgddetfiles.{m}", p, 4)]
    links = []
    fc = d.get("fcxb_config", {}) or {}
    if not isinstance(fc, dict):
        raise NuskybgdError(f"{p}: 'fcxb_config' must be an object with 'links'")
    _check_keys(fc, ("links",), p, "fcxb_config.")
    raw_links = fc.get("links", []) or []
    if not isinstance(raw_links, list):
        raise NuskybgdError(f"{p}: 'fcxb_config.links' must be a list of spectrum-number pairs, "
                            f"e.g. [[1, 2], [3, 4]] (got {json.dumps(raw_links)[:40]})")
    for k, pair in enumerate(raw_links):
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
                or not all(1 <= x <= len(bg) for x in pair) or pair[0] == pair[1]):
            raise NuskybgdError(f"{p}: fcxb_config.links[{k}] = {pair!r} must be two different spectrum "
                                f"numbers 1..{len(bg)}")
        if any(b == pair[1] for _, b in links):
            raise NuskybgdError(f"{p}: fcxb_config.links[{k}] = {pair!r}: spectrum {pair[1]} is already linked "
                                f"(each spectrum's fCXB norm can be linked to one other only)")
        links.append((pair[0], pair[1]))
    target = dict((b, a) for a, b in links)
    for start in target:
        seen, s = {start}, target[start]
        while s in target:
            if s in seen:
                raise NuskybgdError(f"{p}: fcxb_config.links form a cycle through spectrum {s}")
            seen.add(s)
            s = target[s]
    fix = d.get("intbgd_fix_line_ratios", False)
    if not isinstance(fix, bool):
        raise NuskybgdError(f"{p}: 'intbgd_fix_line_ratios' must be true or false")
    refimg = d.get("refimgf")
    seen = {}
    for i, f in enumerate(bg if not whole else []):
        key = os.path.realpath(res(f))
        if key in seen:
            raise NuskybgdError(f"{p}: bgfiles[{i}] = {f} is the same spectrum as bgfiles[{seen[key]}] "
                                f"= {bg[seen[key]]} (each spectrum once)")
        seen[key] = i
    info = BgdInfo(path=p, bgfiles=[res(x) for x in bg], regfiles=[res(x) for x in reg],
                   refimgf=res(refimg) if isinstance(refimg, str) and refimg else None,
                   bgdapfiles=apfiles, bgddetfiles=detfiles,
                   bgfiles_raw=list(bg), fcxb_links=links, intbgd_fix_line_ratios=fix,
                   detectors=detectors, respfiles=[res(x) for x in resp] if resp else None)
    if check_files:
        named = ([("bgfiles", i, f) for i, f in enumerate(info.bgfiles)]
                 + [("regfiles", i, f) for i, f in enumerate(info.regfiles)]
                 + [("respfiles", i, f) for i, f in enumerate(info.respfiles or [])]
                 + ([("refimgf", None, info.refimgf)] if info.refimgf is not None else [])
                 + [(f"bgdapfiles.{m}", None, f) for m, f in apfiles.items()]
                 + [(f"bgddetfiles.{m}", i, f) for m, fs in detfiles.items() for i, f in enumerate(fs)])
        for key, i, f in named:
            if not f.is_file():
                entry = f"{key}[{i}]" if i is not None else key
                raise NuskybgdError(f"{p}: {entry} = {f} {not_a_file_reason(f)}")
    return info
