"""Misuse and faults on the file system (issue 14): unwritable, read-only or full output locations give one
line naming the path, exit 1, in every command; files honour the umask; the main job leaves the tree clean."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_refusion_train import TINY, TINY_R, _write_pairs

from fusionbench.cli.main import cli
from fusionbench.io import atomic_path, write_image, write_text_atomic


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permission bits: use /sys then)."""
    if os.geteuid() == 0:
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys: no unwritable location to test with")
        return Path("/sys/fusionbench-test-out") / "sub"
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return d / "sub"


@pytest.fixture
def pairs(tmp_path):
    g = np.random.default_rng(0)
    for d in ("ir", "vi", "fu"):
        write_image(tmp_path / d / "x.png", g.integers(0, 256, (32, 40, 1)).astype(np.uint8))
    return tmp_path


def _one_line_error(r, needle: str):
    assert r.exit_code == 1, (r.exit_code, r.output)
    lines = r.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and needle in lines[-1], lines[-1]
    assert "Traceback" not in r.output and ".tmp" not in lines[-1]


def test_every_command_names_an_unwritable_output(tmp_path, pairs):
    bad = _unwritable(tmp_path)
    run = CliRunner().invoke
    _one_line_error(run(cli, ["score", "--ir", str(pairs / "ir"), "--vi", str(pairs / "vi"), "--fused",
                              str(pairs / "fu"), "--out", str(bad / "s.csv")]), str(bad.parent))
    _one_line_error(run(cli, ["fuse", "-m", "average", "--ir", str(pairs / "ir"), "--vi", str(pairs / "vi"),
                              "--out", str(bad)]), str(bad.parent))
    _one_line_error(run(cli, ["eval", "--methods", "average", "--data", str(pairs), "--out", str(bad), "-q",
                              "--no-figures"]), str(bad.parent))
    ok_run = tmp_path / "run"
    r = run(cli, ["eval", "--methods", "average", "--data", str(pairs), "--out", str(ok_run), "-q", "--no-figures",
                  "--metrics", "EN"])
    assert r.exit_code == 0, r.output
    _one_line_error(run(cli, ["table", str(ok_run), "--out", str(bad / "t.md")]), str(bad.parent))
    _one_line_error(run(cli, ["figures", str(ok_run), "--out", str(bad)]), str(bad.parent))
    data = _write_pairs(tmp_path / "tdata", 8, size=(20, 24))
    cfg = tmp_path / "cfg.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({"data": {"crop": 16, "val_count": 2}, "train": {"epochs": 1, "batch_size": 2},
                                   "model": {"fusion": TINY, "recon": TINY_R, "proposal": TINY}}))
    _one_line_error(run(cli, ["train", "refusion", "--data", str(data), "--config", str(cfg), "--out", str(bad),
                              "--quiet", "--device", "cpu"]), str(bad.parent))
    # a file where a folder is needed
    (tmp_path / "afile").write_text("x")
    _one_line_error(run(cli, ["fuse", "-m", "average", "--ir", str(pairs / "ir"), "--vi", str(pairs / "vi"),
                              "--out", str(tmp_path / "afile" / "o")]), "afile")


def test_a_full_disk_names_the_destination(tmp_path, monkeypatch):
    from fusionbench.errors import OutputError

    real = os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", src)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError) as e:
        write_text_atomic(tmp_path / "scores.csv", "a,b\n")
    assert str(e.value) == f"cannot write {tmp_path / 'scores.csv'}: no space left on device"
    monkeypatch.setattr(os, "replace", real)
    assert not list(tmp_path.glob(".scores.csv.*"))  # the temporary file is removed


def test_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        write_image(tmp_path / "b.png", np.zeros((4, 4, 1), np.uint8))
        with atomic_path(tmp_path / "c.bin") as tmp:
            tmp.write_bytes(b"1")
        for n in ("a.txt", "b.png", "c.bin"):
            assert stat.S_IMODE((tmp_path / n).stat().st_mode) == 0o644, n
        os.umask(0o077)
        write_text_atomic(tmp_path / "d.txt", "x")
        assert stat.S_IMODE((tmp_path / "d.txt").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_main_job_writes_outside_version_control(tmp_path, monkeypatch):
    """`fusionbench eval` with no --out writes runs/sample (ignored by git), not the committed results/."""
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["eval", "--methods", "average", "-q", "--no-figures", "--metrics", "EN"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "runs" / "sample" / "scores.csv").is_file() and not (tmp_path / "results").exists()
    root = Path(__file__).resolve().parents[1]
    assert "/runs/" in (root / ".gitignore").read_text().split()


def test_a_rerun_removes_the_temporaries_of_a_killed_run(tmp_path, pairs):
    out = tmp_path / "o"
    out.mkdir()
    (out / ".x.png.k1ll3d00.png").write_bytes(b"")  # what a kill between create and rename leaves
    r = CliRunner().invoke(cli, ["fuse", "-m", "average", "--ir", str(pairs / "ir"), "--vi", str(pairs / "vi"),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["x.png"]
