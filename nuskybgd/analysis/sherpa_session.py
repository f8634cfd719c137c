"""The modelled background of a source spectrum as a Sherpa model component.

The Sherpa counterpart of XSPEC's ``response 2:n`` (and of SPEX background
sectors): the background predicted by nuskybgd for a source region, already
folded through *its own* responses (RMF x apbgd ARF, RMF x fCXB ARF,
diag.rmf) and multiplied by the exposure, enters the source spectrum's
model in counts space, beside the source model folded through the source's
RMF x ARF. The source and the modelled background are then fitted jointly to
the source counts (cstat on unsubtracted counts), as the background model is
meant to be used::

    from sherpa.astro import ui
    from nuskybgd.analysis.sherpa_session import add_background_model

    ui.load_pha(1, "src_A.pha")             # RESPFILE / ANCRFILE of the source
    ui.set_source(1, ui.powlaw1d.p1)
    add_background_model("bgd_src_A_bkg.pha", id=1)   # from `nuskybgd spec`
    # or, from Python: add_background_model(bg.predict("src.reg", "src_A.pha"), id=1)
    # with bg = nuskybgd.Background.from_bgdinfo("bgdinfo.json"); bg.fit()
    ui.set_stat("cstat")
    ui.notice(3.0, 79.0)
    ui.fit(1)

``add_background_model`` replaces the dataset's model with the full model
``response(source) + background`` (``set_full_model``). The background
component is a :class:`~nuskybgd.models.basic.TemplateCountsModel`: one
frozen scale per background component (value 1 = the fitted, rescaled
prediction), so ``thaw(nbgd.intn)`` lets one component float. Do not
subtract a background from the dataset: the modelled background replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import NuskybgdError
from ..io.ogip import read_pha
from ..models.basic import TemplateCountsModel

__all__ = ["add_background_model", "background_counts_model"]


def _components(background):
    """(mapping key -> counts per channel, first channel) of any accepted input."""
    if isinstance(background, (str, Path)):
        pha = read_pha(background)
        counts = np.asarray(pha.counts, float)
        return {"background": counts}, int(np.asarray(pha.channel)[0])
    if isinstance(getattr(background, "components", None), Mapping):  # a Background.predict() result
        background = background.components
    first = getattr(background, "first_channel", None)
    if isinstance(background, Mapping):
        comps = {str(k): np.asarray(v, float) for k, v in background.items()}
    else:
        comps = {"background": np.asarray(background, float)}
    return comps, (0 if first is None else int(first))


def background_counts_model(background, name="nbgd", first_channel=None, frozen=True):
    """A channel-space Sherpa model holding a predicted background.

    Parameters
    ----------
    background : Prediction, mapping, array_like, str or os.PathLike
        Predicted background counts per channel of the source spectrum
        (exposure included): the result of
        :meth:`nuskybgd.Background.predict` (its per-component
        ``components``), a mapping component key -> counts (one scale
        parameter per component), one array of total counts, or the
        predicted background spectrum ``NAME_bkg.pha`` written by
        ``nuskybgd spec``.
    name : str
        Sherpa model name.
    first_channel : int, optional
        Channel number of element 0 (default: the PHA file's first channel,
        the mapping's ``first_channel`` attribute, else 0).
    frozen : bool
        Freeze the scale parameters (default; thaw one to let a component
        float).

    Returns
    -------
    nuskybgd.models.basic.TemplateCountsModel
        Counts per channel = sum_k scale_k x counts_k, scales 1.

    Raises
    ------
    NuskybgdError
        Empty input, arrays of different lengths, negative or non-finite
        counts.
    """
    comps, first = _components(background)
    if not comps:
        raise NuskybgdError("background model: no components given")
    sizes = {v.shape for v in comps.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise NuskybgdError(f"background model: components must be 1-D arrays of one length (got {sorted(sizes)})")
    for k, v in comps.items():
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise NuskybgdError(f"background model: component {k} has negative or non-finite counts")
    model = TemplateCountsModel(comps, first_channel=first if first_channel is None else first_channel, name=name,
                                full_grid=True)
    for p in model.pars:
        p.frozen = bool(frozen)
    return model


def add_background_model(background, id=None, source_model=None, session=None, name="nbgd", frozen=True):
    """Put a modelled background into a Sherpa session, in counts space.

    Parameters
    ----------
    background : mapping, array_like, str or os.PathLike
        The predicted background of the dataset's source region, counts per
        channel with the exposure applied (see
        :func:`background_counts_model`).
    id : int or str, optional
        Dataset identifier (default: the session's default id).
    source_model : sherpa.models.model.ArithmeticModel, optional
        Source model in photons/cm^2/s per bin (default: the dataset's
        current source, ``get_source(id)``).
    session : sherpa.astro.ui.utils.Session or module, optional
        The session (default :mod:`sherpa.astro.ui`).
    name : str
        Name of the background component.
    frozen : bool
        Freeze the background scales (default).

    Returns
    -------
    nuskybgd.models.basic.TemplateCountsModel
        The background component, now part of the dataset's full model
        ``get_response(id)(source_model) + background``.

    Raises
    ------
    NuskybgdError
        Bad background input, or a background whose channel count differs
        from the dataset's.
    """
    if session is None:
        from sherpa.astro import ui as session  # local: costs seconds at import and warns (DS9/XSPEC)
    if id is None:
        id = session.get_default_id()
    bkg = background_counts_model(background, name=name, frozen=frozen)
    data = session.get_data(id)
    n_chan = len(data.channel)
    if bkg.templates.shape[1] != n_chan:
        raise NuskybgdError(f"background model: {bkg.templates.shape[1]} channels, dataset {id} has {n_chan}")
    src = session.get_source(id) if source_model is None else source_model
    session.set_full_model(id, session.get_response(id)(src) + bkg)
    return bkg
