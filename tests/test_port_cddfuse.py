"""CDDFuse native port (baselines/ports/cddfuse.py) against the official code run with fixed random weights
(shared/reference/random/cddfuse): strict loading of the official checkpoint container, every intermediate on a
64x80 crop (default suite), the post-processed PNGs of the three full pairs (slow), batch = items."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusionbench.baselines.ports import cddfuse
from fusionbench.errors import UsageError, WeightsError
from fusionbench.io import read_image

CROP = "crop_TNO_01_y200_x300_64x80"
PAIRS = ("RoadScene_FLIR_00211", "TNO_05", "TNO_01")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ref_dir(shared):
    d = shared / "reference" / "random" / "cddfuse"
    if not (d / "CDDFuse_random_seed0.pth").is_file():
        pytest.skip("shared/reference/random/cddfuse not found")
    return d


@pytest.fixture(scope="module")
def fuser(ref_dir):
    return cddfuse.build({"CDDFuse_IVF.pth": ref_dir / "CDDFuse_random_seed0.pth"}, CPU)


@pytest.fixture(scope="module")
def tensors(ref_dir):
    return torch.load(ref_dir / "reference_tensors.pt", map_location="cpu", weights_only=True)


def _u8(x: torch.Tensor) -> torch.Tensor:
    """A reference network input (rounded grey / 255) back to the uint8 image it came from."""
    u = (x * 255.0).round()
    assert torch.equal(u / 255.0, x)
    return u.to(torch.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _pair(shared, stem: str) -> tuple[torch.Tensor, torch.Tensor]:
    inp = shared / "reference" / "outputs" / "inputs"
    ir, vi = (read_image(next((inp / d).glob(f"{stem}.*"))) for d in ("ir", "vi"))
    return (torch.from_numpy(np.array(ir)).permute(2, 0, 1)[None],
            torch.from_numpy(np.array(vi)).permute(2, 0, 1)[None])


# ----------------------------------------------------------------------------------------------- entry and loading
def test_entry():
    (info,) = cddfuse.ENTRIES
    assert info.name == "cddfuse" and info.kind == "transformer" and info.tasks == ("ivif", "mif")
    assert info.factory == "fusionbench.baselines.ports.cddfuse:build"
    assert {w.task: w.name for w in info.weights} == {"ivif": "CDDFuse_IVF.pth", "mif": "CDDFuse_MIF.pth"}
    for w in info.weights:
        assert w.url == f"https://github.com/Zhaozixiang1228/MMIF-CDDFuse/raw/{cddfuse.COMMIT}/models/{w.name}"
        assert w.sha256 == "" and "not pinned" in w.note


def test_strict_load_of_the_official_container(ref_dir, fuser):
    ckpt = torch.load(ref_dir / "CDDFuse_random_seed0.pth", map_location="cpu", weights_only=True)
    assert set(ckpt) == set(cddfuse.PARTS)
    counts = {p: len(getattr(fuser.net, p).state_dict()) for p in cddfuse.PARTS}
    assert counts == {"DIDF_Encoder": 89, "DIDF_Decoder": 47, "BaseFuseLayer": 11, "DetailFuseLayer": 11}
    for part in cddfuse.PARTS:  # every tensor loaded, with the DataParallel prefix removed
        own = getattr(fuser.net, part).state_dict()
        assert all(k.startswith("module.") for k in ckpt[part])
        for k, v in ckpt[part].items():
            assert torch.equal(own[k[len("module."):]], v), (part, k)
    # the same container serves the MIF task (only the file name differs)
    f = cddfuse.build({"CDDFuse_MIF.pth": ref_dir / "CDDFuse_random_seed0.pth"}, CPU, task="mif")
    assert f.task == "mif"


def _broken(ref_dir, tmp_path, edit) -> str:
    ckpt = torch.load(ref_dir / "CDDFuse_random_seed0.pth", map_location="cpu", weights_only=True)
    edit(ckpt)
    p = tmp_path / "CDDFuse_IVF.pth"
    torch.save(ckpt, p)
    with pytest.raises(WeightsError) as e:
        cddfuse.build({"CDDFuse_IVF.pth": p}, CPU)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_checkpoints_give_one_line_errors(ref_dir, tmp_path):
    msg = _broken(ref_dir, tmp_path, lambda c: c["DIDF_Decoder"].pop("module.reduce_channel.weight"))
    assert "missing keys" in msg and "reduce_channel.weight" in msg
    key = "module.attn.qkv2.weight"

    def reshape(c):
        c["BaseFuseLayer"][key] = c["BaseFuseLayer"][key][:, :64]
    msg = _broken(ref_dir, tmp_path, reshape)
    assert "shape mismatch" in msg and "attn.qkv2.weight" in msg and "(192, 192, 3, 3)" in msg
    msg = _broken(ref_dir, tmp_path, lambda c: c.pop("DetailFuseLayer"))
    assert "DetailFuseLayer" in msg
    # three detail nodes where the fusion layer has one
    msg = _broken(ref_dir, tmp_path, lambda c: c.__setitem__("DetailFuseLayer", {
        k.replace("detailFeature.", ""): v for k, v in c["DIDF_Encoder"].items() if "detailFeature" in k}))
    assert "unexpected keys" in msg


def test_usage_errors(ref_dir):
    path = ref_dir / "CDDFuse_random_seed0.pth"
    with pytest.raises(UsageError, match="unsupported task"):
        cddfuse.build({"CDDFuse_IVF.pth": path}, CPU, task="mfif")
    with pytest.raises(UsageError, match="unknown option"):
        cddfuse.build({"CDDFuse_IVF.pth": path}, CPU, tile=256)
    with pytest.raises(WeightsError, match="CDDFuse_MIF.pth"):
        cddfuse.build({"CDDFuse_IVF.pth": path}, CPU, task="mif")


# ----------------------------------------------------------------------------------------------- numerics
def _check_close(got: dict, ref: dict, tol: float = 1e-5) -> dict:
    errs = {}
    for k in ("feature_V_B", "feature_V_D", "feature_V", "feature_I_B", "feature_I_D", "feature_I",
              "feature_F_B", "feature_F_D", "decoder_level0", "data_Fuse_raw"):
        assert got[k].shape == ref[k].shape, k
        err = (got[k].float() - ref[k]).abs().max().item()
        errs[k] = err
        assert err <= tol * max(1.0, ref[k].abs().max().item()), (k, err)
    return errs


def test_crop_every_intermediate(fuser, tensors):
    ref = tensors[CROP]
    with torch.inference_mode():
        plain = fuser.net.trace(ref["data_VIS"], ref["data_IR"])
        fast = fuser._fast.trace(cddfuse.cl(ref["data_VIS"]), cddfuse.cl(ref["data_IR"]))
    _check_close(plain, ref)
    _check_close(fast, ref)
    assert (fast["data_Fuse_raw"] - ref["data_Fuse_raw"]).abs().max() <= 1e-6


def test_crop_through_fuse(fuser, tensors):
    """uint8 in (IR first, a colour visible image is reduced to its rounded luma), the official postprocessing out."""
    ref = tensors[CROP]
    a, b = _u8(ref["data_IR"]), _u8(ref["data_VIS"])
    with torch.inference_mode():
        raw = fuser.raw(a, b.expand(-1, 3, -1, -1))
    assert (raw - ref["data_Fuse_raw"]).abs().max() <= 1e-6
    out = fuser.fuse(a, b)
    assert out.shape == (1, 1, 64, 80) and out.dtype == torch.uint8
    want = cddfuse.postprocess(ref["data_Fuse_raw"])
    assert (out.int() - want.int()).abs().max() <= 1
    assert out.min() == 0 and out.max() == 255  # min-max stretched


def test_postprocess_matches_imageio():
    util = pytest.importorskip("imageio.core.util")  # what imsave applies to a float array (imageio 2.x)

    g = torch.Generator().manual_seed(0)
    raw = torch.rand(2, 1, 23, 17, generator=g) * 0.3 + 0.45
    out = cddfuse.postprocess(raw)
    for i in range(2):
        x = raw[i:i + 1]
        fi = np.squeeze(((x - x.min()) / (x.max() - x.min()) * 255).numpy())  # test_IVF.py, float32
        assert np.array_equal(util.image_as_uint(fi, bitdepth=8), out[i, 0].numpy())


def test_mif_decoder_adds_no_input(ref_dir, fuser, tensors):
    """test_MIF.py with CDDFuse_MIF.pth: Decoder(None, ...), so logit(ivif) - logit(mif) is the visible (MRI) input."""
    ref = tensors[CROP]
    mif = cddfuse.build({"CDDFuse_MIF.pth": ref_dir / "CDDFuse_random_seed0.pth"}, CPU, task="mif")
    a, b = _u8(ref["data_IR"]), _u8(ref["data_VIS"])
    with torch.inference_mode():
        raw_mif, raw_ivf = mif.raw(a, b).double(), fuser.raw(a, b).double()
    diff = torch.logit(raw_ivf) - torch.logit(raw_mif)
    assert (diff - ref["data_VIS"].double()).abs().max() <= 1e-4
    assert mif.fuse(a, b).shape == (1, 1, 64, 80)


def test_batch_equals_items(fuser, tensors):
    ref = tensors[CROP]
    a, b = _u8(ref["data_IR"]), _u8(ref["data_VIS"])
    a2 = torch.cat([a[..., :48, :56], a[..., 16:, 24:]])
    b2 = torch.cat([b[..., :48, :56], b[..., 16:, 24:]])
    both = fuser.fuse(a2, b2)
    assert both.shape == (2, 1, 48, 56)
    assert torch.equal(both, torch.cat([fuser.fuse(a2[i:i + 1], b2[i:i + 1]) for i in range(2)]))
    assert not torch.equal(both[0], both[1])


def _full_pair(shared, ref_dir, fuser, tensors, stem):
    a, b = _pair(shared, stem)
    with torch.inference_mode():
        raw = fuser.raw(a, b)
    if stem in tensors:  # network inputs and the raw decoder output are stored for this pair
        vis, ir = fuser.inputs(a, b)
        assert (vis - tensors[stem]["data_VIS"]).abs().max() <= 1 / 255 + 1e-7  # JPEG: PIL vs cv2 decoder
        assert (ir - tensors[stem]["data_IR"]).abs().max() <= 1 / 255 + 1e-7
        if torch.equal(vis, tensors[stem]["data_VIS"]) and torch.equal(ir, tensors[stem]["data_IR"]):
            assert (raw - tensors[stem]["data_Fuse_raw"]).abs().max() <= 1e-5
    got = cddfuse.postprocess(raw)[0, 0].numpy()
    want = read_image(ref_dir / "outputs" / f"{stem}.png")[..., 0]
    assert got.shape == want.shape
    assert _psnr(got, want) >= 45.0, (stem, _psnr(got, want))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, stem


@pytest.mark.slow
@pytest.mark.parametrize("stem", PAIRS)
def test_full_pairs_match_the_official_pngs(shared, ref_dir, fuser, tensors, stem):
    _full_pair(shared, ref_dir, fuser, tensors, stem)
