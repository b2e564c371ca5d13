"""The TensorFlow tensor-bundle reader (fusionbench.tf_checkpoint), against TensorFlow's own reading of the same
checkpoints (the .npz copies in ../shared/weights/*/npz_from_tensorflow), and on damaged files."""
from __future__ import annotations

import numpy as np
import pytest

from fusionbench.errors import WeightsError
from fusionbench.paths import shared_dir
from fusionbench.tf_checkpoint import checkpoint_prefix, list_variables, read_checkpoint

CASES = [("sdnet/IR_VIS/IRVIS.model-10", "sdnet/npz_from_tensorflow/SDNet_IRVIS_model-10.npz"),
         ("sdnet/Medical/Medical.model-29", "sdnet/npz_from_tensorflow/SDNet_Medical_model-29.npz"),
         ("sdnet/Multi_exposure/MEF.model-11", "sdnet/npz_from_tensorflow/SDNet_MEF_model-11.npz"),
         ("sdnet/Multi_focus/MFF.model-19", "sdnet/npz_from_tensorflow/SDNet_MFF_model-19.npz"),
         ("murf/RGB-IR/0000.ckpt", "murf/npz_from_tensorflow/MURF_RGB-IR_f2m_finetuning_0000.npz"),
         ("murf/CT-MRI/0000.ckpt", "murf/npz_from_tensorflow/MURF_CT-MRI_f2m_0000.npz"),
         ("murf/PET-MRI/0000.ckpt", "murf/npz_from_tensorflow/MURF_PET-MRI_f2m_0000.npz")]


def _weights():
    s = shared_dir()
    if s is None or not (s / "weights" / "sdnet").is_dir():
        pytest.skip("../shared/weights not found: TensorFlow checkpoints not available")
    return s / "weights"


@pytest.mark.parametrize("ckpt, npz", CASES, ids=[c[0].split("/")[1] + "-" + c[0].split("/")[0] for c in CASES])
def test_reader_equals_tensorflow(ckpt, npz):
    w = _weights()
    got = read_checkpoint(w / ckpt)
    ref = np.load(w / npz)
    assert sorted(got) == sorted(ref.files)
    for k in ref.files:
        assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape, k
        assert np.array_equal(got[k], ref[k]), k
    shapes = list_variables(w / (ckpt + ".index"))
    assert {k: v[1] for k, v in shapes.items()} == {k: ref[k].shape for k in ref.files}


def test_prefix_forms(tmp_path):
    assert checkpoint_prefix("d/m.ckpt.index").as_posix() == "d/m.ckpt"
    assert checkpoint_prefix("d/m.ckpt.data-00000-of-00001").as_posix() == "d/m.ckpt"
    assert checkpoint_prefix("d/m.ckpt").as_posix() == "d/m.ckpt"


def test_damaged_files_give_one_line(tmp_path):
    w = _weights()
    src = w / "sdnet" / "IR_VIS"
    (tmp_path / "m.index").write_bytes((src / "IRVIS.model-10.index").read_bytes())
    with pytest.raises(WeightsError, match=r"m.data-00000-of-00001: no such file"):
        read_checkpoint(tmp_path / "m")
    data = (src / "IRVIS.model-10.data-00000-of-00001").read_bytes()
    (tmp_path / "m.data-00000-of-00001").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        read_checkpoint(tmp_path / "m")
    (tmp_path / "bad.index").write_bytes(b"not an index at all, definitely not one of those" * 2)
    with pytest.raises(WeightsError, match="bad table magic"):
        read_checkpoint(tmp_path / "bad")
    with pytest.raises(WeightsError, match="no such file"):
        read_checkpoint(tmp_path / "nothing")
    with pytest.raises(WeightsError, match="no tensor 'nope'"):
        read_checkpoint(src / "IRVIS.model-10", names=["nope"])
