"""The modelled background in a Sherpa session (nuskybgd.analysis.sherpa_session)."""

import numpy as np
import pytest
from sherpa.astro.data import DataARF, DataPHA, DataRMF
from sherpa.astro.ui.utils import Session
from sherpa.models.basic import PowLaw1D

from nuskybgd.analysis.sherpa_session import add_background_model, background_counts_model
from nuskybgd.errors import NuskybgdError
from nuskybgd.io.ogip import write_pha
from nuskybgd.models.basic import FoldedModel

N = 200


def _small_response():
    edges = 1.6 + 0.04 * np.arange(N + 1)
    lo, hi = edges[:-1], edges[1:]
    # a 3-channel-wide redistribution, one group per energy
    mat = np.zeros((N, N))
    for i in range(N):
        for j, w in ((i - 1, 0.2), (i, 0.6), (i + 1, 0.2)):
            if 0 <= j < N:
                mat[i, j] = w
    n_grp = np.ones(N, np.uint64)
    f_chan = np.array([max(i - 1, 0) for i in range(N)], np.uint64)
    n_chan = np.array([min(i + 1, N - 1) - max(i - 1, 0) + 1 for i in range(N)], np.uint64)
    values = np.concatenate([mat[i, int(f_chan[i]):int(f_chan[i] + n_chan[i])] for i in range(N)])
    rmf = DataRMF("rmf", N, lo, hi, n_grp, f_chan, n_chan, values, offset=0, e_min=lo, e_max=hi)
    arf = DataARF("arf", lo, hi, 300.0 * np.exp(-lo / 20.0))
    return rmf, arf


def _session(counts, rmf, arf, exposure=1e4, grouping=None):
    s = Session()
    counts = np.asarray(counts, float)
    pha = DataPHA("src", np.arange(counts.size), counts, exposure=exposure)
    s.set_data(1, pha)
    s.set_rmf(1, rmf)
    s.set_arf(1, arf)
    if grouping is not None:
        s.set_grouping(1, grouping)
        s.group(1)
    s.set_analysis(1, "energy")
    return s


@pytest.mark.parametrize("grouped", [False, True])
def test_full_model_is_folded_source_plus_background_counts(grouped):
    rmf, arf = _small_response()
    rng = np.random.default_rng(0)
    comps = {"apbgd": rng.random(N) * 3, "intn": np.linspace(1, 2, N)}
    grouping = np.where(np.arange(N) % 4 == 0, 1, -1) if grouped else None
    s = _session(rng.poisson(5, N), rmf, arf, grouping=grouping)
    s.notice_id(1, 2.0, 8.0)
    src = PowLaw1D("p1")
    src.gamma, src.ampl = 1.7, 2e-3
    bkg = add_background_model(comps, id=1, source_model=src, session=s, name="nbgd")
    assert [p.name for p in bkg.pars] == ["apbgd", "intn"] and all(p.frozen for p in bkg.pars)
    data = s.get_data(1)
    got = data.eval_model_to_fit(s.get_model(1))
    folded = FoldedModel(src, rmf, arf, exposure=1e4).calc([p.val for p in src.pars])
    want = data.apply_filter(folded + comps["apbgd"] + comps["intn"])
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # a thawed component scales its counts
    bkg.intn.val = 2.0
    got2 = data.eval_model_to_fit(s.get_model(1))
    np.testing.assert_allclose(got2 - got, data.apply_filter(comps["intn"]), rtol=1e-10)


def test_background_from_spec_pha_file(tmp_path):
    rmf, arf = _small_response()
    counts = np.linspace(0.5, 3.0, N)
    write_pha(tmp_path / "bgd_bkg.pha", counts, 1e4, 1.0)
    s = _session(np.ones(N), rmf, arf)
    src = PowLaw1D("p1")
    s.set_source(1, src)
    bkg = add_background_model(tmp_path / "bgd_bkg.pha", id=1, session=s)
    assert [p.name for p in bkg.pars] == ["background"]
    np.testing.assert_allclose(bkg.calc([1.0]), counts)
    assert "p1" in s.get_model(1).name and "nbgd" in s.get_model(1).name


def test_background_from_a_prediction_object():
    """Anything with a ``components`` mapping (nuskybgd.Background.predict's result) is taken per component."""
    from types import SimpleNamespace

    rmf, arf = _small_response()
    s = _session(np.ones(N), rmf, arf)
    pred = SimpleNamespace(components={"apbgd": np.full(N, 0.5), "intn": np.full(N, 0.25)}, spectrum=np.full(N, 0.75))
    bkg = add_background_model(pred, id=1, source_model=PowLaw1D("p1"), session=s)
    assert [p.name for p in bkg.pars] == ["apbgd", "intn"]
    np.testing.assert_allclose(bkg.calc([1.0, 1.0]), pred.spectrum)


def test_bad_background_inputs():
    rmf, arf = _small_response()
    s = _session(np.ones(N), rmf, arf)
    src = PowLaw1D("p1")
    with pytest.raises(NuskybgdError, match="channels, dataset 1 has 200"):
        add_background_model(np.ones(N + 1), id=1, source_model=src, session=s)
    with pytest.raises(NuskybgdError, match="negative or non-finite"):
        background_counts_model({"a": np.full(N, np.nan)})
    with pytest.raises(NuskybgdError, match="one length"):
        background_counts_model({"a": np.ones(3), "b": np.ones(4)})
    with pytest.raises(NuskybgdError, match="no components"):
        background_counts_model({})


# ----------------------------------------------------------------- joint-fit pulls

GAMMA_TRUE = 1.8
SRC_COUNTS = 3000.0      # source counts in 3-79 keV
BKG_COUNTS = {"apbgd": 800.0, "intbgd": 900.0, "fcxb": 150.0, "intn": 300.0}  # in the source region, 3-79 keV
AREA_RATIO = 4.0         # background region / source region
EXPOSURE = 5e4
N_SEEDS = 100          # sigma of a mean pull: 0.1, so the +-0.2 bound is a 2-sigma test


@pytest.fixture(scope="module")
def joint_setup(shared_caldb):
    from nuskybgd.calib.caldb import Caldb
    from nuskybgd.io.ogip import read_arf, read_rmf
    from nuskybgd.models.background import component_templates
    from nuskybgd.calib.presets import component_presets

    rmf = read_rmf(shared_caldb / "nuAdet3_20100101v002.rmf.gz")
    arf = read_arf(shared_caldb / "nuA20100101v006.arf")
    # templates of the four components for a region on DET3, with the
    # responses of each component; DETABS from the real CALDB folder (no index)
    tpl = component_templates(rmf, "A", [0, 0, 0, 1], EXPOSURE, caldb=Caldb(shared_caldb))
    pre = component_presets("A")
    ifac = {"intbgd.apec": pre.apec.ifactors[3], **{f"intbgd.{ln.name}": ln.ifactors[3] for ln in pre.lines}}
    band = (rmf.e_min >= 3.0) & (rmf.e_max <= 79.0)
    groups = {"apbgd": ["apbgd"], "intbgd": list(ifac), "fcxb": ["fcxb"], "intn": ["intn"]}
    shapes = {g: sum(ifac.get(k, 1.0) * tpl[k] for k in keys) for g, keys in groups.items()}
    bkg = {g: shapes[g] * BKG_COUNTS[g] / shapes[g][band].sum() for g in shapes}
    src = PowLaw1D("truth")
    src.gamma = GAMMA_TRUE
    unit = FoldedModel(src, rmf, arf, exposure=EXPOSURE).calc([p.val for p in src.pars])
    ampl = SRC_COUNTS / unit[band].sum()
    return dict(rmf=rmf, arf=arf, bkg=bkg, source=unit * ampl, ampl=ampl, band=band)


def _one_seed(setup, seed):
    """Fit the background region (4 norms), rescale, then fit source + modelled background jointly."""
    from sherpa.fit import Fit
    from sherpa.optmethods import NelderMead
    from sherpa.stats import CStat

    from nuskybgd.models.basic import TemplateCountsModel

    rng = np.random.default_rng(seed)
    bkg, n = setup["bkg"], len(setup["source"])
    truth_bkg = sum(bkg.values())
    # 1. the background fit: Poisson counts of a region AREA_RATIO times larger
    bpha = DataPHA("bkgreg", np.arange(n), rng.poisson(AREA_RATIO * truth_bkg).astype(float), exposure=EXPOSURE)
    bpha.mask = setup["band"]
    bmodel = TemplateCountsModel({g: AREA_RATIO * v for g, v in bkg.items()}, name="bfit")
    Fit(bpha, bmodel, CStat(), NelderMead()).fit()
    # 2. the fitted background rescaled to the source region, per component
    modelled = {g: p.val * bkg[g] for g, p in zip(bkg, bmodel.pars)}
    # 3. the source spectrum and the joint fit in a Sherpa session
    s = _session(rng.poisson(truth_bkg + setup["source"]), setup["rmf"], setup["arf"], exposure=EXPOSURE)
    s.notice_id(1, 3.0, 79.0)
    src = PowLaw1D("p1")
    src.gamma, src.ampl = 2.2, 0.5 * setup["ampl"]
    add_background_model(modelled, id=1, source_model=src, session=s)
    s.set_stat("cstat")
    s.set_method("levmar")
    s.fit(1)
    s.covar(1)
    cov = s.get_covar_results()
    err = dict(zip(cov.parnames, cov.parmaxes))
    return ((src.gamma.val - GAMMA_TRUE) / err["p1.gamma"], (src.ampl.val - setup["ampl"]) / err["p1.ampl"])


@pytest.mark.slow
def test_joint_fit_recovers_source_with_unbiased_pulls(joint_setup, capsys):
    import logging

    logging.getLogger("sherpa").setLevel(logging.WARNING)
    pulls = np.array([_one_seed(joint_setup, seed) for seed in range(N_SEEDS)])
    mean, std = pulls.mean(axis=0), pulls.std(axis=0, ddof=1)
    with capsys.disabled():
        print(f"\njoint fit over {N_SEEDS} seeds: gamma pull mean {mean[0]:+.3f} std {std[0]:.3f}; "
              f"norm pull mean {mean[1]:+.3f} std {std[1]:.3f}")
    assert np.all(np.abs(mean) < 0.2), mean
    assert np.all((std > 0.8) & (std < 1.2)), std
