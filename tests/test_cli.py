"""Command-line layer: task list, legacy key=value arguments, error contract."""

import argparse

import pytest

from nuskybgd import cli
from nuskybgd.errors import NuskybgdError


def _parser():
    p = argparse.ArgumentParser(prog="nuskybgd t")
    p.add_argument("infile")
    p.add_argument("--savefile")
    p.add_argument("--grpmin", type=int)
    p.add_argument("--no-fit", action="store_true")
    p.add_argument("--clobber", action="store_true")
    return p


@pytest.mark.parametrize("argv, expected", [
    (["a.json", "savefile=bgd"], ["a.json", "--savefile", "bgd"]),
    (["a.json", "savefile=!bgd"], ["a.json", "--savefile", "bgd", "--clobber"]),
    (["!a.json"], ["a.json", "--clobber"]),
    (["a.json", "grpmin=30"], ["a.json", "--grpmin", "30"]),
    (["a.json", "no_fit=yes"], ["a.json", "--no-fit"]),
    (["a.json", "no_fit=no"], ["a.json"]),
    (["a.json", "clobber=yes"], ["a.json", "--clobber"]),
    (["a.json", "--savefile", "x=y"], ["a.json", "--savefile", "x=y"]),
    (["--", "k=v"], ["--", "k=v"]),
])
def test_translate_legacy(argv, expected):
    assert cli.translate_legacy(argv, _parser()) == expected


def test_translate_legacy_mapping_and_unknown():
    p = _parser()
    assert cli.translate_legacy(["x", "out=f"], p, {"out": "--savefile"}) == ["x", "--savefile", "f"]
    with pytest.raises(NuskybgdError, match="unknown argument 'bogus='"):
        cli.translate_legacy(["x", "bogus=1"], p)


def test_every_task_has_help(capsys):
    for task in cli.TASKS:
        with pytest.raises(SystemExit) as e:
            cli.main([task, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert f"nuskybgd {task}" in out


def test_top_level_help_lists_tasks(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for task in ("aspecthist", "mkinstrmap", "projbgd", "fit", "spec", "simplify", "image", "absrmf"):
        assert task in out


def test_no_task_is_an_error():
    assert cli.main([]) == 2


def test_summaries_match_task_modules():
    """The top-level help's summaries (cli.SUMMARIES) are each task's SUMMARY."""
    import importlib

    assert set(cli.SUMMARIES) == set(cli.TASKS)
    for task in cli.TASKS:
        mod = importlib.import_module(f"nuskybgd.tasks.{task.replace('-', '_')}")
        assert getattr(mod, "SUMMARY", cli.SUMMARIES[task]) == cli.SUMMARIES[task], task


_PROBE = """
import sys
from nuskybgd import cli
try:
    cli.main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("numpy", "scipy", "astropy", "sherpa", "numba", "matplotlib") if m in sys.modules)
tasks = sorted(m for m in sys.modules if m.startswith("nuskybgd.tasks."))
print(repr((heavy, tasks)), file=sys.stderr)
"""


def _loaded_after(argv):
    import ast
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(cli.__file__).resolve().parents[1]))
    res = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], capture_output=True, text=True,
                         env=env, timeout=120)
    return ast.literal_eval(res.stderr.strip().splitlines()[-1])


def test_top_level_help_imports_no_task_and_no_heavy_package():
    heavy, tasks = _loaded_after(["--help"])
    assert heavy == [] and tasks == []


def test_task_help_imports_only_that_task():
    heavy, tasks = _loaded_after(["projbgd", "--help"])
    assert tasks == ["nuskybgd.tasks.projbgd"]
    assert "sherpa" not in heavy and "numba" not in heavy and "matplotlib" not in heavy
