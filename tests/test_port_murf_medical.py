"""MURF's medical networks (CT-MRI and PET-MRI, task ``mif``) from the official TensorFlow 1 checkpoints: the
variable mappings against the .npz copies read by TensorFlow, model choice, and parity with the official code's
outputs (``tests/data/murf_medical``, made by running the official test scripts; see its README)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fusionbench.baselines.ports import murf
from fusionbench.errors import UsageError, WeightsError
from fusionbench.tf_checkpoint import read_checkpoint

REF = Path(__file__).parent / "data" / "murf_medical"
CASES = {"ct-mri": ("CT-MRI", "mri_ct", "ct"), "pet-mri": ("PET-MRI", "mri_pet", "pet")}


def _weights(shared) -> dict:
    d = shared / "weights" / "murf"
    return {w.name: d / w.name for w in murf.ENTRIES[0].weights}


def _read(path: Path) -> torch.Tensor:
    from PIL import Image

    x = np.array(Image.open(path))
    return torch.from_numpy(x if x.ndim == 3 else x[..., None]).permute(2, 0, 1)[None]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def fuser(shared):
    return murf.build(_weights(shared), torch.device("cpu"), task="mif")


def test_entry_has_all_three_checkpoints():
    info = murf.ENTRIES[0]
    assert info.tasks == ("ivif", "mif")
    assert {w.name.split("/")[0] for w in info.weights_for("mif")} == {"CT-MRI", "PET-MRI"}
    assert {w.name.split("/")[0] for w in info.weights_for("ivif")} == {"RGB-IR"}


@pytest.mark.parametrize("model", ["ct-mri", "pet-mri"])
def test_mapping_equals_tensorflow_npz(shared, model):
    folder = CASES[model][0]
    prefix = shared / "weights" / "murf" / folder / "0000.ckpt"
    npz = np.load(shared / "weights" / "murf" / "npz_from_tensorflow" / f"MURF_{folder}_f2m_0000.npz")
    mapping = murf._variable_map(model)
    assert set(mapping) == set(npz.files) and len(mapping) == 74
    net = murf.load_tf_checkpoint(murf.new_net(model), prefix)
    state = net.state_dict()
    assert set(state) == {key for key, _ in mapping.values()}
    for tf_name, (key, kind) in mapping.items():
        arr = npz[tf_name]
        want = arr.transpose(3, 2, 0, 1) if kind == "conv" else arr.T if kind == "dense" else arr
        assert np.array_equal(state[key].numpy(), want), tf_name
    assert set(read_checkpoint(prefix)) == set(npz.files)


def test_a_checkpoint_of_another_model_is_refused(shared):
    w = shared / "weights" / "murf"
    for model, other in (("ct-mri", "PET-MRI"), ("pet-mri", "RGB-IR"), ("rgb-ir", "CT-MRI")):
        with pytest.raises(WeightsError) as e:
            murf.load_tf_checkpoint(murf.new_net(model), w / other / "0000.ckpt")
        assert "\n" not in str(e.value) and "MURF" in str(e.value)


def test_model_option(shared):
    with pytest.raises(UsageError, match="model 'pet-mri' is not one of auto, rgb-ir"):
        murf.build(_weights(shared), "cpu", task="ivif", model="pet-mri")
    f = murf.build(_weights(shared), "cpu", task="mif", model="ct-mri")
    assert set(f.nets) == {"ct-mri"} and f.size == murf.N_MEDICAL
    assert murf.build(_weights(shared), "cpu", task="ivif").size == murf.N_DEFAULT


@pytest.mark.parametrize("model", ["ct-mri", "pet-mri"])
def test_parity_with_official_outputs(shared, fuser, model):
    folder, sub, other = CASES[model]
    refs = sorted((REF / folder).glob("*.png"))
    assert len(refs) == 4
    data = shared / "data" / "medical" / sub
    a = torch.cat([_read(data / "mri" / r.name) for r in refs])
    b = torch.cat([_read(data / other / r.name) for r in refs])
    out = fuser.fuse(a, b)  # one batch of four: per-item statistics, same as one pair at a time
    assert out.dtype == torch.uint8 and out.shape[1] == (3 if model == "pet-mri" else 1)
    for i, r in enumerate(refs):
        ref = _read(r)[0].numpy()
        got = out[i].numpy()
        assert _psnr(got, ref) >= 40.0, r.name
        assert np.abs(got.astype(int) - ref).max() <= 1, r.name


def test_auto_choice_and_mixed_batch(shared, fuser):
    data = shared / "data" / "medical"
    mri_ct, ct = _read(data / "mri_ct" / "mri" / "11.png"), _read(data / "mri_ct" / "ct" / "11.png")
    mri_pet, pet = _read(data / "mri_pet" / "mri" / "11.png"), _read(data / "mri_pet" / "pet" / "11.png")
    mixed = fuser.fuse(torch.cat([mri_ct, mri_pet]), torch.cat([ct, pet]))
    assert mixed.shape == (2, 3, 256, 256)
    assert torch.equal(mixed[0], fuser.fuse(mri_ct, ct)[0].expand(3, -1, -1))
    assert torch.equal(mixed[1], fuser.fuse(mri_pet, pet)[0])
    # the official CT reading (PIL YCbCr -> F) is exact for a 1-channel file, but a grey image stored as RGB goes
    # YCbCr -> RGB -> F in Pillow and moves by up to one level: the port follows the file as stored
    grey = ct[:, :1].to(torch.float32)
    assert torch.equal(murf.pil_f_via_ycbcr(ct[:, :1]), grey)
    d = (murf.pil_f_via_ycbcr(ct) - grey).abs()
    assert 0 < float(d.max()) <= 1.0


def test_other_sizes_run_and_return_source_size(shared, fuser):
    data = shared / "data" / "medical" / "mri_spect"
    stem = sorted((data / "mri").glob("*.png"))[0].name
    a, b = _read(data / "mri" / stem)[..., :200, :232], _read(data / "spect" / stem)[..., :200, :232]
    out = fuser.fuse(a.contiguous(), b.contiguous())
    assert out.shape == (1, 3, 200, 232) and out.dtype == torch.uint8 and int(out.max()) == 255
