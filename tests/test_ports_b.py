"""Checkpoint ports TarDAL, LRRNet, DATFuse: strict loading, clear weight errors, parity with the official
outputs in ``shared/reference/outputs`` (PSNR >= 40 dB on every reference pair), batching, option errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusionbench.baselines.ports import datfuse, lrrnet, tardal
from fusionbench.errors import SizeMismatchError, UsageError, WeightsError
from fusionbench.io import read_image
from fusionbench.weights import load_state_dict, resolve, sha256sum

MODULES = {"tardal": tardal, "lrrnet": lrrnet, "datfuse": datfuse}
# reference folder -> (module, build options)
VARIANTS = {
    "tardal": ("tardal", {}),
    "tardal_gray": ("tardal", {"color": False}),
    "tardal_pp": ("tardal", {"checkpoint": "tardal++"}),
    "lrrnet": ("lrrnet", {}),
    "datfuse": ("datfuse", {}),
}
SMALL = ("RoadScene_FLIR_04269",)  # the smallest reference pair (265 x 546)
from port_pairs import ALL  # noqa: E402  (the 12 IVIF reference pairs)

_FUSERS: dict = {}


def fuser(name, **options):
    """A fuser built through the registry's weight resolution (FUSIONBENCH_WEIGHTS set by ``wenv``)."""
    key = (name, tuple(sorted(options.items())))
    if key not in _FUSERS:
        info = MODULES[name].ENTRIES[0]
        _FUSERS[key] = info.build(weights=resolve(info), device="cpu", task="ivif", **options)
    return _FUSERS[key]


def as_tensor(arr):
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1)[None]


def pair(shared, stem):
    root = shared / "reference" / "outputs" / "inputs"
    ir = next((root / "ir").glob(stem + ".*"))
    vi = next((root / "vi").glob(stem + ".*"))
    return as_tensor(read_image(ir)), as_tensor(read_image(vi))


def psnr(x, y):
    mse = float(((x.double() - y.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def check_parity(variant, stem, shared):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    name, opts = VARIANTS[variant]
    a, b = pair(shared, stem)
    out = fuser(name, **opts).fuse(a, b)
    ref = as_tensor(read_image(shared / "reference" / "outputs" / variant / f"{stem}.png"))
    assert out.dtype == torch.uint8
    assert out.shape == ref.shape, f"{variant} {stem}: shape {tuple(out.shape)} vs official {tuple(ref.shape)}"
    p = psnr(out, ref)
    assert p >= 40.0, f"{variant} {stem}: PSNR {p:.2f} dB against the official output"


# ---------------------------------------------------------------- registry entries


@pytest.mark.parametrize("name", list(MODULES))
def test_entry_fields(name):
    (info,) = MODULES[name].ENTRIES
    assert info.name == name and info.factory == f"fusionbench.baselines.ports.{name}:build"
    assert info.paper is not None and info.paper.year >= 2022 and info.paper.url
    assert info.tasks == ("ivif",) and info.code.startswith("https://github.com/")
    for wf in info.weights:
        assert len(wf.sha256) == 64 and wf.url.startswith("https://github.com/") and "@" in wf.origin
        assert wf.licence


@pytest.mark.parametrize("name", list(MODULES))
def test_registered_and_sha256(name, shared):
    from fusionbench.registry import get_method

    info = get_method(name)
    assert info.display == MODULES[name].ENTRIES[0].display
    for wf in MODULES[name].ENTRIES[0].weights:
        assert sha256sum(shared / "weights" / name / wf.name) == wf.sha256
    if name == "tardal":
        for wf in tardal.ALL_WEIGHTS:
            assert sha256sum(shared / "weights" / "tardal" / wf.name) == wf.sha256


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize(
    "make,file",
    [
        (tardal.TarDALGenerator, "tardal/tardal.pt"),
        (tardal.TarDALGenerator, "tardal/tardal++.pt"),
        (lrrnet.LRRNet, f"lrrnet/{lrrnet.FILE[0]}"),
        (datfuse.DATFuseNet, f"datfuse/{datfuse.FILE[0]}"),
    ],
)
def test_strict_keys(make, file, shared):
    state = load_state_dict(shared / "weights" / file)
    net = make()
    own = net.state_dict()
    assert set(own) == set(state)
    assert all(own[k].shape == state[k].shape for k in own)
    net.load_state_dict(state, strict=True)


def test_wrong_checkpoint_names_shapes(shared, tmp_path):
    state = load_state_dict(shared / "weights" / "lrrnet" / lrrnet.FILE[0])
    state["get_ls1.conv_W00.conv2d.weight"] = state["get_ls1.conv_W00.conv2d.weight"][:128]
    bad = tmp_path / lrrnet.FILE[0]
    torch.save(state, bad)
    with pytest.raises(WeightsError) as e:
        lrrnet.build({lrrnet.FILE[0]: bad}, torch.device("cpu"))
    msg = str(e.value)
    assert "\n" not in msg and "expected (256, 1, 3, 3), found (128, 1, 3, 3)" in msg and str(bad) in msg


def test_other_methods_checkpoint(shared, tmp_path):
    with pytest.raises(WeightsError, match="missing keys .*unexpected keys"):
        lrrnet.build({lrrnet.FILE[0]: shared / "weights" / "tardal" / "tardal.pt"}, torch.device("cpu"))
    with pytest.raises(WeightsError, match="DATFuseNet"):
        datfuse.build({datfuse.FILE[0]: shared / "weights" / "lrrnet" / lrrnet.FILE[0]}, torch.device("cpu"))


def test_truncated_file(shared, tmp_path):
    data = (shared / "weights" / "tardal" / "tardal.pt").read_bytes()
    bad = tmp_path / "tardal.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or damaged PyTorch archive"):
        tardal.build({"tardal.pt": bad}, torch.device("cpu"))


def test_missing_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSIONBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("FUSIONBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match="model_10.pth not found"):
        resolve(datfuse.ENTRIES[0])
    with pytest.raises(WeightsError, match="no path given"):
        datfuse.build({}, torch.device("cpu"))


def test_optional_tardal_checkpoint_found_beside(shared, tmp_path, monkeypatch):
    """tardal+/tardal++ are looked up beside the resolved tardal.pt (and where resolve() looks)."""
    import shutil

    monkeypatch.setenv("FUSIONBENCH_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("FUSIONBENCH_CACHE", str(tmp_path / "cache"))
    wenv = shared / "weights"
    shutil.copy(wenv / "tardal" / "tardal.pt", tmp_path / "tardal.pt")
    with pytest.raises(WeightsError, match=r"tardal\+\+\.pt not found"):
        tardal.build({"tardal.pt": tmp_path / "tardal.pt"}, torch.device("cpu"), checkpoint="tardal++")
    shutil.copy(wenv / "tardal" / "tardal++.pt", tmp_path / "tardal++.pt")
    f = tardal.build({"tardal.pt": tmp_path / "tardal.pt"}, torch.device("cpu"), checkpoint="tardal++")
    assert not f.per_image_bn and f.tile_halo == 7


def test_bad_options(wenv):
    w = resolve(tardal.ENTRIES[0])
    with pytest.raises(UsageError, match="unknown checkpoint"):
        tardal.build(w, torch.device("cpu"), checkpoint="tardal3")
    with pytest.raises(UsageError, match="bn mode"):
        tardal.build(w, torch.device("cpu"), bn="train")
    with pytest.raises(UsageError, match="unknown option"):
        tardal.build(w, torch.device("cpu"), colour=True)
    with pytest.raises(UsageError, match="unsupported task"):
        lrrnet.build(resolve(lrrnet.ENTRIES[0]), torch.device("cpu"), task="mif")
    with pytest.raises(UsageError, match="unknown option"):
        datfuse.build(resolve(datfuse.ENTRIES[0]), torch.device("cpu"), window_size=2)


def test_size_mismatch(wenv):
    a = torch.zeros(1, 1, 20, 20, dtype=torch.uint8)
    with pytest.raises(SizeMismatchError):
        fuser("datfuse").fuse(a, torch.zeros(1, 3, 20, 21, dtype=torch.uint8))


# ---------------------------------------------------------------- numerics


@pytest.mark.parametrize("threads", [1, 2])
def test_lrrnet_fast_path_equals_convolutions(shared, threads):
    """The streamed evaluation (one or several row bands, one or two workers) equals the plain network."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    net = lrrnet.LRRNet()
    net.load_state_dict(load_state_dict(shared / "weights" / "lrrnet" / lrrnet.FILE[0]))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 61, 37, generator=g), torch.rand(2, 1, 61, 37, generator=g)
    with torch.inference_mode():
        ref = net(x, y)
        for band_bytes in (1 << 29, 37 * 256 * 4 * 40, 37 * 256 * 4 * 30):  # 1, 3 and 4 bands
            out = lrrnet._FastLRR(net, torch.device("cpu"), chunk=300, band_bytes=band_bytes)(x, y)
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert torch.get_num_threads() == threads  # the worker path restores the thread count
    torch.set_num_threads(saved)


def test_soft_threshold_negative_lambda():
    c = torch.tensor([[-2.0, -0.5, 0.0, 0.5, 2.0]]).t().repeat(1, 3)
    lam = torch.tensor([1.0, 0.0, -0.25])
    exp = torch.sign(c) * torch.clamp(c.abs() - lam, min=0)
    torch.testing.assert_close(lrrnet.soft_threshold(c, lam), exp)
    fast = lrrnet._soft_threshold_(c.clone(), lam)
    torch.testing.assert_close(fast, exp)


def test_tardal_cv2_ycrcb_roundtrip():
    """OpenCV uint8 YCrCb: grey stays grey, known values, and Y replacement of a grey image is exact."""
    grey = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    ycc = tardal.cv2_rgb_to_ycrcb_u8(grey)
    assert torch.equal(ycc[:, 0], grey[:, 0]) and (ycc[:, 1:] == 128).all()
    assert torch.equal(tardal.cv2_ycrcb_to_rgb_u8(ycc), grey)
    # pure red by OpenCV's 14-bit formula: Y = 76, Cr = 256 saturated to 255, Cb = 85
    red = torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    assert tardal.cv2_rgb_to_ycrcb_u8(red).flatten().tolist() == [76, 255, 85]


def _crops(shared, size=(72, 96)):
    h, w = size
    a1, b1 = pair(shared, "RoadScene_FLIR_04269")
    a2, b2 = pair(shared, "RoadScene_FLIR_00211")
    a = torch.cat([a1[..., 40 : 40 + h, 100 : 100 + w], a2[..., 60 : 60 + h, 200 : 200 + w]])
    b = torch.cat([b1[..., 40 : 40 + h, 100 : 100 + w], b2[..., 60 : 60 + h, 200 : 200 + w]])
    return a, b


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_batch_equals_one_by_one(variant, shared, wenv):
    name, opts = VARIANTS[variant]
    f = fuser(name, **opts)
    a, b = _crops(shared)
    batch = f.fuse(a, b)
    single = torch.cat([f.fuse(a[i : i + 1], b[i : i + 1]) for i in range(2)])
    assert batch.shape == single.shape == (2, 3 if name == "tardal" and opts.get("color", True) else 1, 72, 96)
    assert torch.equal(batch, single)


def test_tardal_per_image_bn_is_per_item(shared, wenv):
    """Train-mode BN statistics come from each image: a pair's result does not depend on its batch mates."""
    f = fuser("tardal", color=False)
    a, b = _crops(shared)
    alone = f.fuse(a[:1], b[:1])
    with_other = f.fuse(torch.cat([a[:1], 255 - a[1:]]), torch.cat([b[:1], b[1:] // 4]))[:1]
    assert torch.equal(alone, with_other)


# ---------------------------------------------------------------- parity with the official outputs


@pytest.mark.parametrize("stem", SMALL)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parity_small(variant, stem, shared, wenv):
    check_parity(variant, stem, shared)


@pytest.mark.slow
@pytest.mark.parametrize("stem", ALL)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parity_all(variant, stem, shared, wenv):
    check_parity(variant, stem, shared)
