"""Atomic, clobber-aware outputs."""

import pytest

from nuskybgd.errors import NuskybgdError
from nuskybgd.io.output import atomic_outputs, check_outputs, write_text


def test_refuses_existing_without_clobber(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("old")
    with pytest.raises(NuskybgdError, match="exists"):
        write_text("new", f)
    assert f.read_text() == "old"
    write_text("new", f, clobber=True)
    assert f.read_text() == "new"


def test_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    with pytest.raises(RuntimeError):
        with atomic_outputs([a, b]) as out:
            out[a].write_text("A")
            raise RuntimeError("boom")
    assert not a.exists() and not b.exists()
    assert list(tmp_path.iterdir()) == []


def test_missing_output_counts_as_failure(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    with pytest.raises(NuskybgdError, match="not produced"):
        with atomic_outputs([a, b]) as out:
            out[a].write_text("A")
    assert not a.exists()


def test_missing_folder(tmp_path):
    with pytest.raises(NuskybgdError, match="does not exist"):
        check_outputs([tmp_path / "nope" / "x.fits"])
