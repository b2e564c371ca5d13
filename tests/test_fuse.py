"""fusionbench fuse and the fuse engine: batching, resume, failures, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fusionbench.cli.main import cli
from fusionbench.io import read_image, write_image


@pytest.fixture(autouse=True)
def fake_methods(fake_registry):
    return fake_registry


def make_pairs(root, sizes=((16, 20), (16, 20), (24, 18)), rgb_b=False):
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        write_image(root / "ir" / f"p{i}.png", rng.integers(0, 256, (h, w), dtype=np.uint8))
        vi = rng.integers(0, 256, (h, w, 3) if rgb_b else (h, w), dtype=np.uint8)
        write_image(root / "vi" / f"p{i}.png", vi)
    return root / "ir", root / "vi"


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def test_fuse_writes_every_pair_and_resumes(tmp_path):
    ir, vi = make_pairs(tmp_path, rgb_b=True)
    out = tmp_path / "out"
    r = run("fuse", "-m", "fake-mean", "--ir", ir, "--vi", vi, "--out", out, "--batch-size", 2, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    a, b = read_image(ir / "p0.png"), read_image(vi / "p0.png")
    expect = np.round((a.astype(float).mean(2) + b.astype(float).mean(2)) / 2)
    np.testing.assert_array_equal(read_image(out / "p0.png")[..., 0], expect)
    mtime = (out / "p1.png").stat().st_mtime_ns
    r = run("fuse", "-m", "fake-mean", "--ir", ir, "--vi", vi, "--out", out)
    assert r.exit_code == 0 and "kept 3 existing" in r.output
    assert (out / "p1.png").stat().st_mtime_ns == mtime


def test_unknown_method_suggests(tmp_path):
    ir, vi = make_pairs(tmp_path)
    r = run("fuse", "-m", "fake-maen", "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "Did you mean: fake-mean" in r.output
    assert "Traceback" not in r.output


def test_missing_weights_names_file_and_where(tmp_path):
    ir, vi = make_pairs(tmp_path)
    r = run("fuse", "-m", "fake-weighted", "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert r.exit_code == 1
    assert "fake.pt not found" in r.output and "FUSIONBENCH_WEIGHTS" in r.output


def test_wrong_checkpoint_names_shapes(tmp_path):
    ir, vi = make_pairs(tmp_path)
    ck = tmp_path / "w" / "fake-weighted" / "fake.pt"
    ck.parent.mkdir(parents=True)
    torch.save({"weight": torch.zeros(1, 3, 1, 1)}, ck)
    r = run("fuse", "-m", "fake-weighted", "--ir", ir, "--vi", vi, "--out", tmp_path / "o", "--weights", tmp_path / "w")
    assert r.exit_code == 1
    assert "expected (1, 2, 1, 1), found (1, 3, 1, 1)" in r.output
    ck.write_bytes(b"not a checkpoint")
    r = run("fuse", "-m", "fake-weighted", "--ir", ir, "--vi", vi, "--out", tmp_path / "o", "--weights", tmp_path / "w")
    assert r.exit_code == 1 and "not a PyTorch checkpoint (it starts with 'not a ch')" in r.output and "weights_only" not in r.output


def test_size_mismatch_and_failure_reported_rest_written(tmp_path):
    ir, vi = make_pairs(tmp_path)
    write_image(vi / "p2.png", np.zeros((5, 5), np.uint8))  # now 18x24 vs 5x5
    r = run("fuse", "-m", "fake-mean", "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert r.exit_code == 1
    assert "size mismatch" in r.output and "p2" in r.output and "18x24" in r.output
    assert (tmp_path / "o" / "p0.png").is_file() and (tmp_path / "o" / "p1.png").is_file()


def test_method_failing_on_one_image_goes_on(tmp_path):
    ir, vi = make_pairs(tmp_path)
    write_image(ir / "p1.png", np.full((16, 20), 7, np.uint8))
    r = run("fuse", "-m", "fake-mean", "--ir", ir, "--vi", vi, "--out", tmp_path / "o", "-o", "fail_on_value=7", "--batch-size", 4)
    assert r.exit_code == 1, r.output
    assert "failed p1" in r.output and "synthetic failure" in r.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["p0.png", "p2.png"]


def test_corrupt_image_named(tmp_path):
    ir, vi = make_pairs(tmp_path)
    (ir / "p0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    r = run("fuse", "-m", "fake-mean", "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert r.exit_code == 1 and "p0.png" in r.output and "Traceback" not in r.output


def test_missing_counterpart_listed_and_skip(tmp_path):
    ir, vi = make_pairs(tmp_path)
    (vi / "p1.png").unlink()
    r = run("fuse", "-m", "fake-mean", "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert r.exit_code == 1 and "p1" in r.output and "--skip-missing" in r.output
    r = run("fuse", "-m", "fake-mean", "--ir", ir, "--vi", vi, "--out", tmp_path / "o", "--skip-missing")
    assert r.exit_code == 0 and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["p0.png", "p2.png"]


def test_bad_paths_are_usage_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("fuse", "-m", "fake-mean", "--ir", tmp_path / "nope", "--vi", tmp_path / "empty", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "no such folder" in r.output
    ir, _ = make_pairs(tmp_path)
    r = run("fuse", "-m", "fake-mean", "--ir", ir, "--vi", tmp_path / "empty", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "no images" in r.output


def test_sixteen_bit_input_is_scaled(tmp_path):
    from PIL import Image

    ir, vi = make_pairs(tmp_path, sizes=((16, 16),))
    Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(ir / "p0.png")
    assert read_image(ir / "p0.png").max() == 255
    r = run("fuse", "-m", "fake-mean", "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output


def test_tiled_equals_whole(tmp_path, fake_methods):
    from fusionbench.fusing import fuse_tiled

    f = fake_methods.MeanFuser(fake_methods.MEAN, torch.device("cpu"))
    a = torch.randint(0, 256, (2, 1, 37, 41), dtype=torch.uint8)
    b = torch.randint(0, 256, (2, 3, 37, 41), dtype=torch.uint8)
    torch.testing.assert_close(fuse_tiled(f, a, b, tile=16, halo=4), f.fuse(a, b))


def test_weights_download_file_url(tmp_path, monkeypatch, fake_methods):
    import dataclasses
    import hashlib

    from fusionbench.errors import WeightsError
    from fusionbench.weights import download, resolve

    src = tmp_path / "src.pt"
    torch.save({"weight": torch.ones(1, 2, 1, 1)}, src)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    info = dataclasses.replace(fake_methods.WEIGHTED, weights=(dataclasses.replace(fake_methods.WEIGHTED.weights[0], url=src.as_uri(), sha256=sha),))
    [p] = download(info)
    assert p.read_bytes() == src.read_bytes() and resolve(info)["fake.pt"] == p
    bad = dataclasses.replace(info, name="fake-bad", weights=(dataclasses.replace(info.weights[0], sha256="1" * 64),))
    with pytest.raises(WeightsError, match="expected 1111"):
        download(bad)
    assert not (p.parent.parent / "fake-bad" / "fake.pt").exists()


def test_tiny_images_refused_and_constant_sources_noted(tmp_path):
    ir, vi = make_pairs(tmp_path, sizes=((1, 1), (32, 32)))
    write_image(ir / "p1.png", np.zeros((32, 32), np.uint8))
    write_image(vi / "p1.png", np.full((32, 32), 9, np.uint8))
    r = run("fuse", "-m", "fake-mean", "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert r.exit_code == 1
    assert "failed p0: p0.png: 1x1 pixels is below the 16x16 FakeMean is run on" in r.output
    assert "note: both sources constant" in r.output and (tmp_path / "o" / "p1.png").is_file()
