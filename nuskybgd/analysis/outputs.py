"""Output file names of the workflows and how file names are written into states.

File names inside XCMs are relative to the XCM's folder when inside it, else
absolute (as ``nuskybgd fit`` writes them).
"""

import copy
import os
from pathlib import Path

import numpy as np

__all__ = ["default_savefile", "simplify_savefile", "spec_outputs", "rebase_name", "relative_name",
           "rebase_entry", "json_default"]


def default_savefile(src_regfiles):
    """Default spec output name: ``bgd_<stem of the first source region>``.

    Parameters
    ----------
    src_regfiles : list of str

    Returns
    -------
    str
        Without extension, in the current folder (as the original).
    """
    return "bgd_" + Path(src_regfiles[0]).stem

def simplify_savefile(xcm):
    """Default simplify output name (the original's rule).

    Parameters
    ----------
    xcm : str
        The spec XCM file.

    Returns
    -------
    str
        ``bgd_`` replaced by ``bgd_only_`` in the file stem, or ``bgd_only_``
        prepended; without extension.
    """
    stem = Path(xcm).name
    if stem.endswith(".xcm"):
        stem = stem[:-4]
    return stem.replace("bgd_", "bgd_only_", 1) if "bgd_" in stem else "bgd_only_" + stem

def spec_outputs(savefile, regfiles, realisations=0, n_bg=0):
    """Output names of ``spec``.

    Parameters
    ----------
    savefile : str
        NAME (``.xcm`` suffix dropped).
    regfiles : list of str
    realisations : int
    n_bg : int
        Number of background spectra (source spectrum k is spectrum
        ``n_bg + k + 1`` of the state, which numbers its ARF).

    Returns
    -------
    dict
        ``xcm``, ``json``, ``sherpa``, ``png``, ``bkg`` (list per source),
        ``realisations`` (list of lists), ``arfs`` (list per source).
    """
    name = savefile[:-4] if savefile.endswith(".xcm") else savefile
    n = len(regfiles)
    stems = [Path(r).stem for r in regfiles]
    if n == 1:
        bases = [f"{name}_bkg"]
    elif len(set(stems)) == n:
        bases = [f"{name}_{s}_bkg" for s in stems]
    else:
        bases = [f"{name}_{k + 1}_bkg" for k in range(n)]
    return {"xcm": f"{name}.xcm", "json": f"{name}.json", "sherpa": f"{name}_sherpa.py", "png": f"{name}.png",
            "bkg": [f"{b}.pha" for b in bases],
            "realisations": [[f"{b}_{j + 1:03d}.pha" for j in range(realisations)] for b in bases],
            "arfs": [f"{name}_apbgd{n_bg + k + 1}.arf" for k in range(n)]}

def rebase_name(name, from_dir, to_dir):
    """Rewrite a file name relative to one folder as relative to another.

    Parameters
    ----------
    name : str or os.PathLike
        File name, relative to ``from_dir`` (absolute names are kept).
    from_dir, to_dir : str or os.PathLike
        The folder ``name`` is relative to, and the folder of the file that
        will record it.

    Returns
    -------
    str
        Relative to ``to_dir`` when inside it, else absolute.
    """
    q = Path(name)
    if q.is_absolute():
        return str(q)
    return relative_name(Path(from_dir) / q, to_dir)

def relative_name(path, to_dir):
    """A path as ``nuskybgd fit`` records it.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    to_dir : str or os.PathLike
        Folder of the file that records ``path``.

    Returns
    -------
    str
        ``path`` relative to ``to_dir`` when inside it, else absolute.
    """
    try:
        r = os.path.relpath(os.path.abspath(path), os.path.abspath(to_dir))
    except ValueError:
        return os.path.abspath(path)
    return os.path.abspath(path) if r.startswith("..") else r

def rebase_entry(e, from_dir, to_dir):
    """Copy of a spectrum entry with its file names rebased (:func:`rebase_name`).

    Parameters
    ----------
    e : SpectrumEntry
        Entry whose spectrum, response and ARF names are relative to
        ``from_dir``; not modified.
    from_dir, to_dir : str or os.PathLike
        Old and new reference folders.

    Returns
    -------
    SpectrumEntry
        The rebased copy.
    """
    e = copy.deepcopy(e)
    e.file = rebase_name(e.file, from_dir, to_dir)
    e.responses = {k: rebase_name(v, from_dir, to_dir) for k, v in e.responses.items()}
    e.arfs = {k: rebase_name(v, from_dir, to_dir) for k, v in e.arfs.items()}
    return e

def json_default(o):
    """JSON fallback encoder (``json.dumps(..., default=json_default)``).

    Parameters
    ----------
    o : object
        A value the json module cannot encode.

    Returns
    -------
    object
        A list for arrays, a Python number for numpy scalars, else ``str(o)``.
    """
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
