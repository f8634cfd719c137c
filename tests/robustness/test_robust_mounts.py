"""Read-only and full file systems (real mounts: a read-only bind mount and a 64 kB tmpfs).

Needs mount privileges (root in a container); elsewhere the tests skip with that reason.
"""

import subprocess

import pytest

from nuskybgd.cli import main

from robustness.test_robust_cases import _fit_argv, snapshot


def _mount(args):
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    return r.returncode == 0


@pytest.fixture
def readonly_dir(tmp_path):
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    (src / "keep.txt").write_text("existing")
    if not (_mount(["--bind", str(src), str(ro)]) and _mount(["-o", "remount,ro,bind", str(ro)])):
        subprocess.run(["umount", str(ro)], capture_output=True)
        pytest.skip("needs mount privileges (read-only bind mount)")
    yield ro
    subprocess.run(["umount", str(ro)], check=True)


@pytest.fixture
def full_dir(tmp_path):
    d = tmp_path / "full"
    d.mkdir()
    if not _mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)]):
        pytest.skip("needs mount privileges (tmpfs)")
    (d / "keep.txt").write_text("existing")
    yield d
    subprocess.run(["umount", str(d)], check=True)


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_readonly_folder_fails_before_computing(chain, readonly_dir, tmp_path, capsys):
    before = snapshot(readonly_dir)
    (tmp_path / "work").mkdir()
    argv = _fit_argv(chain, tmp_path / "work")
    argv[argv.index("--savefile") + 1] = readonly_dir / "bg"
    rc, err = _run(argv, capsys)
    assert rc == 2 and len(err) == 1, err
    assert err[0] == (f"nuskybgd fit: error: {readonly_dir / 'bg.xcm'}: cannot write output: folder {readonly_dir} "
                      "is on a read-only file system")
    assert snapshot(readonly_dir) == before


def test_readonly_folder_mkimgs(chain, readonly_dir, capsys):
    before = snapshot(readonly_dir)
    rc, err = _run(["mkimgs", chain["evt"]["A"], "3", "79", "--out", readonly_dir / "im.fits"], capsys)
    assert rc == 2 and len(err) == 1 and "im.fits: cannot write output: folder" in err[0], err
    assert err[0].endswith("is on a read-only file system")
    assert snapshot(readonly_dir) == before


def test_disk_full_names_the_file(chain, full_dir, capsys):
    before = snapshot(full_dir)
    rc, err = _run(["mkimgs", chain["evt"]["A"], "3", "79", "--out", full_dir / "im.fits"], capsys)
    assert rc == 2 and len(err) == 1, err
    assert err[0] == f"nuskybgd mkimgs: error: {full_dir / 'im.fits'}: cannot write: no space left on device"
    assert snapshot(full_dir) == before  # staging folder removed, nothing else touched


def test_disk_full_multi_file(chain, full_dir, capsys):
    before = snapshot(full_dir)
    argv = ["projbgd", "--refimg", chain["img"]["A"], "--out", full_dir / "bgdapA.fits", "--mod", "A",
            "--det", "1234", "--chipmap", chain["imap"]["A"], "--aspect", chain["asp"]["A"], "--outdir", full_dir]
    rc, err = _run(argv, capsys)
    assert rc == 2 and len(err) == 1 and "no space left on device" in err[0], err
    assert snapshot(full_dir) == before
