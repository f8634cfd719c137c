"""Shared fixtures: paths to ../shared (read in place, never copied)."""

import os
from pathlib import Path

import pytest

# Fixtures of the test helpers in tests/ (on the path, see pyproject.toml): the
# synthetic sky field of the workflow tests and the simulated chain up to bgdinfo.json.
pytest_plugins = ["synthetic_field", "fit_chain"]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NUSKYBGD_SHARED", REPO.parent / "shared")).resolve()

# Tests read the calibration bundle and the apec template in place.
os.environ.setdefault("NUSKYBGD_AUXIL", str(SHARED / "nuskybgd-auxil"))
os.environ.setdefault("NUSKYBGD_APEC_TEMPLATE",
                      str(SHARED / "apec" / "nnapec_intbgd_kT1.14579_Z1.32692_nustar_bins.txt"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared():
    """Path of the shared data folder (``../shared``)."""
    if not SHARED.is_dir():
        pytest.fail(f"shared data folder {SHARED} not found; set NUSKYBGD_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def real(shared):
    """Path of ``shared/real`` (real NuSTAR files)."""
    return shared / "real"


@pytest.fixture(scope="session")
def shared_caldb(shared):
    """Path of ``shared/caldb/nustar`` (real CALDB pieces, no index)."""
    return shared / "caldb" / "nustar"


@pytest.fixture(scope="session")
def auxil_dir(shared):
    """Path of the original calibration bundle."""
    return shared / "nuskybgd-auxil"


@pytest.fixture(scope="session")
def simulated_obs(tmp_path_factory):
    """A simulated observation (``nuskybgd simulate``), made once per session."""
    from nuskybgd.simulate.observation import simulate_observation
    out = tmp_path_factory.mktemp("simobs")
    return simulate_observation(out, seed=1)


@pytest.fixture(scope="session")
def synthetic_caldb(tmp_path_factory, shared_caldb):
    """Root of a synthetic NuSTAR CALDB (``nuskybgd.simulate.caldb.make_caldb``), made once per session.

    Use ``nuskybgd.calib.caldb.Caldb(synthetic_caldb)`` or set ``$CALDB`` to it
    (``monkeypatch.setenv("CALDB", str(synthetic_caldb))``).
    """
    from nuskybgd.simulate.caldb import make_caldb
    root = tmp_path_factory.mktemp("caldb")
    make_caldb(root, shared_caldb=shared_caldb, cal_date="2024-01-01", progress=False)
    return root


def pytest_sessionstart(session):
    """In CI the XSPEC reference library must be present.

    The XSPEC-parity tests skip (visibly) where ``xspectrampoline`` cannot be
    installed; in CI (``$CI`` set) such a skip would hide the parity checks,
    so its absence is an error there.
    """
    if os.environ.get("CI"):
        try:
            import xspectrampoline  # noqa: F401
        except ImportError as exc:  # pragma: no cover - only on a broken CI install
            raise pytest.UsageError(f"CI: xspectrampoline (XSPEC reference) is not importable: {exc}")


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory, synthetic_caldb):
    """A simulated archive of 2 small observations (2014-2019) sharing the synthetic CALDB.

    Returns (root, per-observation summaries). Tests must not modify it.
    """
    from archive_helpers import tiny_archive as make
    return make(tmp_path_factory.mktemp("archive") / "arch", synthetic_caldb)
