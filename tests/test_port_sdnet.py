"""SDNet from the official TensorFlow checkpoints (issue 15): registry entry, loading every task's checkpoint
without TensorFlow, parity >= 40 dB with the official code's outputs on the 12 IVIF reference pairs (two in the
default suite, all twelve with -m slow), through ``fusionbench fuse`` as a user runs it."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from port_pairs import ALL

from fusionbench.cli.main import cli
from fusionbench.errors import UsageError, WeightsError
from fusionbench.io import read_image
from fusionbench.registry import get_method
from fusionbench.weights import resolve, sha256sum

FAST = ("RoadScene_FLIR_04269", "TNO_06")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def test_entry_is_runnable_with_every_task():
    info = get_method("sdnet")
    assert info.factory == "fusionbench.baselines.ports.sdnet:build" and set(info.tasks) == {"ivif", "mif", "meif", "mfif"}
    assert len(info.weights) == 8 and all(w.url.startswith("https://github.com/HaoZhang1018/SDNet/raw/") for w in info.weights)
    assert all(w.licence.startswith("MIT") and len(w.sha256) == 64 for w in info.weights)


@pytest.mark.parametrize("task", ["ivif", "mif", "meif", "mfif"])
def test_every_task_checkpoint_loads_and_matches_its_sha256(wenv, task):
    info = get_method("sdnet")
    paths = resolve(info, task)
    for w in info.weights_for(task):
        assert sha256sum(paths[w.name]) == w.sha256, w.name
    f = info.build(weights=paths, device="cpu", task=task)
    a = torch.randint(0, 256, (2, 1, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = f.fuse(a, a.flip(-1))
    assert out.shape == (2, 1, 20, 24) and out.dtype == torch.uint8
    assert torch.equal(out[1:], f.fuse(a[1:], a.flip(-1)[1:]))  # a batch = its items


def _parity(shared, tmp_path, stems):
    inp, ref = shared / "reference" / "outputs" / "inputs", shared / "reference" / "outputs" / "sdnet"
    for d in ("ir", "vi"):
        (tmp_path / d).mkdir()
        for s in stems:
            src = next((inp / d).glob(f"{s}.*"))
            (tmp_path / d / src.name).write_bytes(src.read_bytes())
    r = CliRunner().invoke(cli, ["fuse", "-m", "sdnet", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"),
                                 "--out", str(tmp_path / "out"), "--device", "cpu", "--weights",
                                 str(shared / "weights")])
    assert r.exit_code == 0, r.output
    for s in stems:
        got, want = read_image(tmp_path / "out" / f"{s}.png"), read_image(ref / f"{s}.png")
        assert got.shape == want.shape
        assert _psnr(got, want) >= 40.0, (s, _psnr(got, want))
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, s


def test_parity_with_the_official_code(shared, tmp_path):
    _parity(shared, tmp_path, FAST)


@pytest.mark.slow
def test_parity_with_the_official_code_all_pairs(shared, tmp_path):
    _parity(shared, tmp_path, ALL)


def test_errors(wenv, tmp_path):
    info = get_method("sdnet")
    with pytest.raises(UsageError, match="unsupported task"):
        info.build(weights={}, device="cpu", task="xyz")
    paths = resolve(info, "ivif")
    bad = tmp_path / "IRVIS.model-10.index"
    bad.write_bytes(b"x" * 100)
    with pytest.raises(WeightsError, match="are not the two files of one checkpoint"):
        info.build(weights={**paths, "IR_VIS/IRVIS.model-10.index": bad}, device="cpu", task="ivif")
    data = tmp_path / "IRVIS.model-10.data-00000-of-00001"
    data.write_bytes(paths["IR_VIS/IRVIS.model-10.data-00000-of-00001"].read_bytes())
    with pytest.raises(WeightsError, match="bad table magic"):
        info.build(weights={"IR_VIS/IRVIS.model-10.index": bad, "IR_VIS/IRVIS.model-10.data-00000-of-00001": data},
                   device="cpu", task="ivif")
    from fusionbench.baselines.ports.sdnet import SDNetFusion, load_tf_checkpoint

    with pytest.raises(WeightsError, match="no tensor 'fusion_model/"):  # a MURF checkpoint is not an SDNet one
        load_tf_checkpoint(SDNetFusion(), wenv / "murf" / "RGB-IR" / "0000.ckpt")
