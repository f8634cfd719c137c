"""Background-only state of the source spectra (``nuskybgd simplify``)."""

import json
import logging
from pathlib import Path

from ..errors import NuskybgdError
from ..fitting.apply import simplify_state
from ..fitting.export import sherpa_script, state_to_json
from ..io.bgdinfo import load_bgdinfo
from ..io.ogip import read_pha
from ..io.output import atomic_outputs, check_outputs
from ..io.xcm import format_xcm
from .outputs import json_default, rebase_entry, simplify_savefile
from .setup import load_fit

__all__ = ["run_simplify"]

log = logging.getLogger("nuskybgd")


def run_simplify(bgdinfo, spec_file, savefile=None, clobber=False):
    """The ``simplify`` task.

    Parameters
    ----------
    bgdinfo : str or os.PathLike
        bgdinfo.json (gives the number of background spectra).
    spec_file : str or os.PathLike
        State written by ``spec`` (XCM or JSON); its first spectra must be
        bgdinfo's background spectra.
    savefile : str, optional
        Output NAME (default: :func:`simplify_savefile`).
    clobber : bool

    Returns
    -------
    dict
        ``files`` written and the simplified ``state``.
    """

    info = load_bgdinfo(bgdinfo, check_files=False)
    name = savefile or simplify_savefile(str(spec_file))
    if name.endswith(".xcm"):
        name = name[:-4]
    files = [f"{name}.xcm", f"{name}.json", f"{name}_sherpa.py"]
    check_outputs(files, clobber)
    state = load_fit(spec_file, info, extra_spectra_ok=True)
    simp = simplify_state(state, len(info.bgfiles))
    out_dir = Path(files[0]).parent
    simp.spectra = [rebase_entry(e, Path(spec_file).parent, out_dir) for e in simp.spectra]
    n_bg = len(info.bgfiles)
    mods = state.info.get("modules") or []
    wts = state.info.get("weights") or []
    simp.info["modules"] = list(mods[n_bg:])
    simp.info["weights"] = list(wts[n_bg:])
    exposures = None
    try:
        exposures = [float(read_pha(Path(out_dir) / e.file if not Path(e.file).is_absolute() else e.file).exposure)
                     for e in simp.spectra]
    except NuskybgdError as exc:
        log.warning("source spectra not readable (%s); Sherpa script without exposures", exc)
    with atomic_outputs(files, clobber) as out:
        Path(out[files[0]]).write_text(format_xcm(simp))
        Path(out[files[1]]).write_text(json.dumps(state_to_json(simp), indent=1, default=json_default))
        Path(out[files[2]]).write_text(sherpa_script(simp, exposures=exposures))
    return {"files": files, "state": simp}
