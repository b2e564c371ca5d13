"""Checkpoint ports IFCNN, DenseFuse, DIDFuse, SeAFusion: strict loading, clear weight errors, parity with
the official outputs in ``shared/reference/outputs`` (PSNR >= 40 dB), batching."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusionbench.baselines.ports import densefuse, didfuse, ifcnn, seafusion
from fusionbench.baselines.ports._common import imageio_u8, minmax, truncate_u8
from fusionbench.errors import DataError, SizeMismatchError, UsageError, WeightsError
from fusionbench.io import read_image
from fusionbench.paths import data_dir
from fusionbench.weights import load_state_dict, resolve, sha256sum

MODULES = {"ifcnn": ifcnn, "densefuse": densefuse, "didfuse": didfuse, "seafusion": seafusion}
SMALL = ("RoadScene_FLIR_04269", "RoadScene_FLIR_04424")  # the two smallest reference pairs
from port_pairs import ALL  # noqa: E402  (the 12 IVIF reference pairs)

_FUSERS: dict = {}


def fuser(name, shared, **options):
    key = (name, tuple(sorted(options.items())))
    if key not in _FUSERS:
        info = MODULES[name].ENTRIES[0]
        w = {wf.name: shared / "weights" / name / wf.name for wf in info.weights}
        _FUSERS[key] = info.build(weights=w, device="cpu", task=info.tasks[0], **options)
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


def check_parity(name, stem, shared):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    a, b = pair(shared, stem)
    out = fuser(name, shared).fuse(a, b)
    ref = as_tensor(read_image(shared / "reference" / "outputs" / name / f"{stem}.png"))
    assert out.dtype == torch.uint8
    assert out.shape == ref.shape, f"{name} {stem}: shape {tuple(out.shape)} vs official {tuple(ref.shape)}"
    p = psnr(out, ref)
    assert p >= 40.0, f"{name} {stem}: PSNR {p:.2f} dB against the official output"
    return p


# ---------------------------------------------------------------- registry entries


@pytest.mark.parametrize("name", list(MODULES))
def test_entry_metadata(name):
    (info,) = MODULES[name].ENTRIES
    assert info.name == name and info.factory == f"fusionbench.baselines.ports.{name}:build"
    assert info.paper is not None and info.paper.year >= 2019 and info.paper.url
    assert "ivif" in info.tasks and info.colour and info.code.startswith("https://github.com/")
    for wf in info.weights:
        assert len(wf.sha256) == 64 and wf.url.startswith("https://github.com/") and wf.url.endswith("/" + wf.name)
        assert wf.origin.split("@")[0] in wf.url and wf.origin.split("@")[1] in wf.url


@pytest.mark.parametrize("name", list(MODULES))
def test_sha256_matches_shared_files(name, wenv):
    info = MODULES[name].ENTRIES[0]
    files = resolve(info, info.tasks[0])
    assert set(files) == {wf.name for wf in info.weights}
    for wf in info.weights:
        assert sha256sum(files[wf.name]) == wf.sha256
    for wf in getattr(MODULES[name], "OPTIONAL_WEIGHTS", ()) + ((densefuse.RGB_WEIGHTS,) if name == "densefuse" else ()):
        assert sha256sum(wenv / name / wf.name) == wf.sha256


# ---------------------------------------------------------------- loading


def _net(f):
    return f.net


@pytest.mark.parametrize("name", list(MODULES))
def test_strict_load_every_tensor(name, wenv):
    info = MODULES[name].ENTRIES[0]
    f = info.build(weights=resolve(info), device="cpu", task=info.tasks[0])
    own = _net(f).state_dict()
    n = 0
    for wf in info.weights:
        sd = load_state_dict(wenv / name / wf.name, key="weight" if name == "didfuse" else None)
        prefix = ""
        if name == "didfuse":
            prefix = "encoder." if wf.name.startswith("Encoder") else "decoder."
        for k, v in sd.items():
            assert torch.equal(own[prefix + k], v), k
            n += 1
    # every model tensor comes from a checkpoint (IFCNN's checkpoints lack BN's num_batches_tracked)
    assert n == len(own) - (2 if name == "ifcnn" else 0)


@pytest.mark.parametrize("name", list(MODULES))
def test_wrong_shape_checkpoint_one_error(name, wenv, tmp_path):
    info = MODULES[name].ENTRIES[0]
    wf = info.weights[0]
    sd = torch.load(wenv / name / wf.name, map_location="cpu", weights_only=True)
    inner = sd["weight"] if name == "didfuse" else sd
    key = next(k for k, v in inner.items() if v.ndim == 4)
    old = tuple(inner[key].shape)
    inner[key] = torch.zeros(old[0] + 1, *old[1:])
    bad = tmp_path / wf.name
    torch.save(sd, bad)
    weights = {w.name: wenv / name / w.name for w in info.weights}
    weights[wf.name] = bad
    with pytest.raises(WeightsError) as e:
        info.build(weights=weights, device="cpu", task=info.tasks[0])
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and key in msg
    assert f"expected {old}" in msg and f"found {(old[0] + 1, *old[1:])}" in msg


@pytest.mark.parametrize("name", list(MODULES))
def test_corrupt_or_foreign_checkpoint(name, wenv, tmp_path):
    info = MODULES[name].ENTRIES[0]
    wf = info.weights[0]
    weights = {w.name: wenv / name / w.name for w in info.weights}
    corrupt = tmp_path / wf.name
    corrupt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(WeightsError, match="truncated or damaged PyTorch archive"):
        info.build(weights={**weights, wf.name: corrupt}, device="cpu", task=info.tasks[0])
    other = "densefuse" if name != "densefuse" else "ifcnn"
    foreign = wenv / other / MODULES[other].ENTRIES[0].weights[0].name
    with pytest.raises(WeightsError, match="does not fit|expected a dict"):
        info.build(weights={**weights, wf.name: foreign}, device="cpu", task=info.tasks[0])


def test_missing_weight_path_is_weightserror():
    with pytest.raises(WeightsError, match="SeAFusion.pth"):
        seafusion.build(weights={}, device=torch.device("cpu"))


def test_bad_options_and_tasks(wenv):
    w = resolve(ifcnn.ENTRIES[0])
    with pytest.raises(UsageError, match="rule"):
        ifcnn.build(w, torch.device("cpu"), rule="median")
    with pytest.raises(UsageError, match="normalisation"):
        ifcnn.build(w, torch.device("cpu"), norm="zscore")
    with pytest.raises(UsageError, match="multi-exposure"):
        ifcnn.build(w, torch.device("cpu"), task="meif")
    with pytest.raises(UsageError, match="unknown option"):
        seafusion.build(resolve(seafusion.ENTRIES[0]), torch.device("cpu"), strength=2)
    with pytest.raises(UsageError, match="addition"):
        didfuse.build(resolve(didfuse.ENTRIES[0]), torch.device("cpu"), addition="max")


def test_bad_inputs(shared):
    f = fuser("densefuse", shared)
    a = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    with pytest.raises(SizeMismatchError):
        f.fuse(a, torch.zeros(1, 1, 16, 17, dtype=torch.uint8))
    with pytest.raises(DataError, match="uint8"):
        f.fuse(a.float(), a)
    with pytest.raises(DataError, match="N, 1\\|3, H, W"):
        f.fuse(a[0], a)


# ---------------------------------------------------------------- parity with the official outputs


@pytest.mark.parametrize("stem", SMALL)
@pytest.mark.parametrize("name", list(MODULES))
def test_parity_small(name, stem, shared):
    check_parity(name, stem, shared)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODULES))
def test_parity_all_pairs(name, shared):
    res = {stem: check_parity(name, stem, shared) for stem in ALL}
    assert min(res.values()) >= 40.0


def test_output_modes(shared):
    a, b = pair(shared, "RoadScene_FLIR_04269")
    a, b = a[..., 100:164, 200:296], b[..., 100:164, 200:296]
    assert fuser("ifcnn", shared).fuse(a, b).shape[1] == 1
    assert fuser("densefuse", shared).fuse(a, b).shape[1] == 1
    assert fuser("didfuse", shared).fuse(a, b).shape[1] == 1
    col = fuser("seafusion", shared).fuse(a, b)
    assert col.shape[1] == 3 and not torch.equal(col[:, 0], col[:, 2])  # the visible chroma is kept
    # grey visible -> equal channels
    grey = fuser("seafusion", shared).fuse(a, a)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])


def test_options_give_other_results(shared):
    a, b = pair(shared, "RoadScene_FLIR_04269")
    a, b = a[..., :96, :128], b[..., :96, :128]
    base = fuser("ifcnn", shared).fuse(a, b)
    for rule in ("mean", "sum"):
        o = fuser("ifcnn", shared, rule=rule).fuse(a, b)
        assert o.shape == base.shape and not torch.equal(o, base)
    info = ifcnn.ENTRIES[0]
    mf = info.build(weights={"IFCNN-MAX.pth": shared / "weights/ifcnn/IFCNN-MAX.pth"}, device="cpu", task="mfif")
    assert mf.fuse(a, b).shape[1] == 3
    rgb = fuser("densefuse", shared, model="rgb").fuse(a, b)
    assert rgb.shape == (1, 3, 96, 128)
    d0 = fuser("didfuse", shared).fuse(a, b)
    for mode in ("average", "l1_norm"):
        o = fuser("didfuse", shared, addition=mode).fuse(a, b)
        assert o.shape == d0.shape and not torch.equal(o, d0)


@pytest.mark.parametrize("name", list(MODULES))
def test_batch_equals_one_by_one(name, shared):
    """Two same-size pairs in one batch give the same images as one at a time (per-item statistics)."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    a1, b1 = pair(shared, "RoadScene_FLIR_04269")
    a2, b2 = pair(shared, "RoadScene_FLIR_04424")
    crop = (..., slice(40, 136), slice(60, 188))
    a1, b1, a2, b2 = a1[crop], b1[crop], a2[crop], b2[crop]
    b2 = (b2.float() * 0.6).to(torch.uint8)  # a different range, so that whole-image statistics differ
    f = fuser(name, shared)
    one = torch.cat([f.fuse(a1, b1), f.fuse(a2, b2)], 0)
    both = f.fuse(torch.cat([a1, a2], 0), torch.cat([b1, b2], 0))
    diff = (one.int() - both.int()).abs()
    # batched convolutions may round differently in the last float bit: at most 1 level on very few pixels
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3


# ---------------------------------------------------------------- results the authors published


def _published(name, task, a_dir, b_dir, fused_dir, stems, shared, **options):
    data = data_dir()
    if data is None or not (data / fused_dir).is_dir():
        pytest.skip(f"{fused_dir} not found under the shared data folder")
    info = MODULES[name].ENTRIES[0]
    w = {wf.name: shared / "weights" / name / wf.name for wf in info.weights}
    f = info.build(weights=w, device="cpu", task=task, **options)
    out = {}
    for stem in stems:
        a = as_tensor(read_image(next((data / a_dir).glob(stem + ".*"))))
        b = as_tensor(read_image(next((data / b_dir).glob(stem + ".*"))))
        ref = as_tensor(read_image(data / fused_dir / f"{stem}.png"))
        got = f.fuse(a, b)
        assert got.shape == ref.shape
        out[stem] = psnr(got, ref)
    return out


def test_ifcnn_norm_imagenet_reproduces_published_results(shared):
    """The authors' Results/IV and Results/MD were made with ImageNet normalisation (option norm=imagenet)."""
    iv = _published("ifcnn", "ivif", "ifcnn_iv/ir", "ifcnn_iv/vi", "ifcnn_iv/fused/IFCNN-MAX", ["Camp"], shared, norm="imagenet")
    md = _published(
        "ifcnn", "mif", "medical/ifcnn_md/src1", "medical/ifcnn_md/src2", "medical/ifcnn_md/fused/IFCNN-MAX", ["c01"],
        shared, norm="imagenet",
    )
    assert min(iv.values()) >= 40 and min(md.values()) >= 40


@pytest.mark.slow
def test_published_results_all(shared):
    data = data_dir()
    if data is None:
        pytest.skip("shared data folder not found")
    iv_stems = sorted(p.stem for p in (data / "ifcnn_iv/fused/IFCNN-MAX").glob("*.png"))
    md_stems = sorted(p.stem for p in (data / "medical/ifcnn_md/fused/IFCNN-MAX").glob("*.png"))
    res = {
        "ifcnn-iv": _published("ifcnn", "ivif", "ifcnn_iv/ir", "ifcnn_iv/vi", "ifcnn_iv/fused/IFCNN-MAX", iv_stems, shared, norm="imagenet"),
        "ifcnn-md": _published(
            "ifcnn", "mif", "medical/ifcnn_md/src1", "medical/ifcnn_md/src2", "medical/ifcnn_md/fused/IFCNN-MAX",
            md_stems, shared, norm="imagenet",
        ),
        # the authors' own TNO outputs (SeAFusion via Linfeng-Tang/Image-Fusion, DIDFuse via its repo)
        "seafusion-tno": _published("seafusion", "ivif", "tno/ir", "tno/vi", "tno/fused/SeAFusion", ["01", "02", "03"], shared),
        "didfuse-tno": _published("didfuse", "ivif", "tno/ir", "tno/vi", "tno/fused/DIDFuse", ["01", "02", "03"], shared),
    }
    for key, vals in res.items():
        assert min(vals.values()) >= 40, (key, vals)


# ---------------------------------------------------------------- helpers


def test_common_helpers():
    x = torch.tensor([[[[0.0, 0.3 / 255, 1.7 / 255, 1.0]]], [[[-1.0, 0.0, 1.0, 3.0]]]])
    y = imageio_u8(x)
    assert y[0].flatten().tolist() == [0, 0, 2, 255]  # in [0, 1]: x*255 + 0.499999999, truncated
    assert y[1].flatten().tolist() == [0, 64, 127, 255]  # otherwise min-max stretch first; 127.5 rounds down
    assert truncate_u8(torch.tensor([-3.0, 1.99, 254.9, 300.0])).tolist() == [0, 1, 254, 255]
    m = minmax(torch.stack([torch.arange(4.0).view(1, 2, 2), 10 + 2 * torch.arange(4.0).view(1, 2, 2)]))
    assert torch.allclose(m[0], m[1]) and float(m.max()) == 1.0


def test_restructured_forwards_equal_the_plain_formulas():
    """DenseFuse's padded-feature forward and SeAFusion's piecewise 1x1 convolutions compute the layer
    formulas of the papers (random weights, no checkpoint needed)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = densefuse.DenseFuseNet(1).eval()
    a, b = torch.rand(2, 1, 23, 31) * 255, torch.rand(2, 1, 23, 31) * 255
    with torch.no_grad():
        assert torch.equal(net(a, b), net.decode((net.encode(a) + net.encode(b)) / 2))
    blk = seafusion.RGBD(16, 32).eval()
    x = torch.randn(2, 16, 19, 27)
    with torch.no_grad():
        dense = blk.dense(x)  # cat(x, d1, d2)
        plain = F.leaky_relu(blk.convdown(dense) + blk.convup(blk.sobelconv(x)), 0.1)
        assert torch.allclose(blk(x), plain, atol=1e-5, rtol=1e-5)
        assert torch.allclose(blk(x.contiguous(memory_format=torch.channels_last)), plain, atol=1e-5, rtol=1e-5)
