"""Official ReFusion weights: strict loading, the inference protocol, parity with the official outputs,
the registry entries and ``refusion-ours`` loading.

Parity tests compare against ``shared/reference/outputs/refusion_*`` (official code, CPU, OpenCV decoding);
they skip when ../shared is absent. The big TNO pairs run only with ``-m slow``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fusionbench.errors import DataError, SizeMismatchError, UsageError, WeightsError
from fusionbench.io import read_image
from fusionbench.paths import shared_dir
from fusionbench.refusion import official
from fusionbench.refusion.nets import FusionNet
from fusionbench.refusion.official import ReFusionFuser, imageio_to_uint8, load_official, run_protocol
from fusionbench.registry import get_method
from fusionbench.weights import resolve, sha256sum

TASKS = ("ivif", "mif", "mfif", "meif")


@pytest.fixture(autouse=True, scope="module")
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_refusion_nets: avoids OpenMP spin-waiting on a busy machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def shared():
    s = shared_dir()
    if s is None or not (s / "weights" / "refusion").is_dir() or not (s / "reference" / "outputs").is_dir():
        pytest.skip("official ReFusion weights / reference outputs: ../shared not found")
    return s


def _tensor(path) -> torch.Tensor:
    return torch.from_numpy(np.array(read_image(path))).permute(2, 0, 1)[None]


def _psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(((x.astype(np.float64) - y.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


# ----------------------------------------------------------------------------- protocol pieces


def _imageio_ref(x: np.ndarray) -> np.ndarray:
    """imageio 2.26 image_as_uint(float, bitdepth=8), written out with numpy."""
    mi, ma = np.nanmin(x), np.nanmax(x)
    if mi >= 0 and ma <= 1:
        y = x.astype(np.float64) * 255 + 0.499999999
    elif ma == mi:
        return x.astype(np.uint8)
    else:
        y = (x.astype(np.float64) - mi) / (ma - mi) * 255 + 0.499999999
    return y.astype(np.uint8)


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (255.0, 0.0), (300.0, -20.0), (0.0, 7.0)])
def test_imageio_to_uint8_matches_numpy(scale, offset):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 9, 11, generator=g) * scale + offset
    got = imageio_to_uint8(x)
    for i in range(2):
        assert np.array_equal(got[i].numpy(), _imageio_ref(x[i].numpy())), i


class _PixelNet(nn.Module):
    """Per-pixel stand-in for F (batching cannot change its values): sigmoid(w . [y1, y2] + b)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([3.0, -2.0]).view(1, 2, 1, 1))
            self.conv.bias.fill_(0.2)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


def _protocol_ref(raw: np.ndarray, a: np.ndarray, b: np.ndarray):
    """The official post-processing in numpy (float32 like the official code), one pair.

    raw: network output (H, W) float32; a, b: (H, W, 3) float32 RGB 0..255. Returns (gray, rgb or None).
    """
    out = (raw - raw.min()) / (raw.max() - raw.min()) * np.float32(255)
    gray = _imageio_ref(out)

    def ycrcb(x):
        y = x[..., 0] * np.float32(0.299) + x[..., 1] * np.float32(0.587) + x[..., 2] * np.float32(0.114)
        return y, (x[..., 0] - y) * np.float32(0.713) + np.float32(0.5), (x[..., 2] - y) * np.float32(0.564) + np.float32(0.5)

    grey = [bool((x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all()) for x in (a, b)]
    if all(grey):
        return gray, None
    _, cra, cba = ycrcb(a)
    _, crb, cbb = ycrcb(b)
    if grey[0]:
        cr, cb = crb, cbb
    elif grey[1]:
        cr, cb = cra, cba
    else:
        def fuse(c1, c2):
            w1, w2 = np.abs(c1 - np.float32(0.5)), np.abs(c2 - np.float32(0.5))
            return (c1 * w1 + c2 * w2) / (w1 + w2 + np.float32(1e-4))

        cr, cb = fuse(cra, crb), fuse(cba, cbb)
    r = out + np.float32(1.403) * (cr - np.float32(0.5))
    g = out - np.float32(0.714) * (cr - np.float32(0.5)) - np.float32(0.344) * (cb - np.float32(0.5))
    bl = out + np.float32(1.773) * (cb - np.float32(0.5))
    rgb = np.clip(np.stack([r, g, bl], -1), 0, 255)
    return gray, _imageio_ref(rgb)


def _pairs(h=12, w=14):
    g = torch.Generator().manual_seed(7)
    grey1 = torch.randint(0, 256, (1, 1, h, w), generator=g, dtype=torch.uint8)
    grey3 = torch.randint(0, 256, (1, 1, h, w), generator=g, dtype=torch.uint8).expand(-1, 3, -1, -1).contiguous()
    col1 = torch.randint(0, 256, (1, 3, h, w), generator=g, dtype=torch.uint8)
    col2 = torch.randint(0, 256, (1, 3, h, w), generator=g, dtype=torch.uint8)
    # (a, b): both grey (1-ch + equal 3-ch), colour b only, colour a only, both colour
    return [(grey1, grey3), (grey1, col1), (col2, grey3), (col1, col2)]


@pytest.mark.parametrize("k", range(4))
def test_protocol_matches_numpy_reference(k):
    net = _PixelNet()
    a, b = _pairs()[k]
    with torch.inference_mode():
        res = run_protocol(net, a, b)
        af = a.float().expand(-1, 3, -1, -1)
        bf = b.float().expand(-1, 3, -1, -1)
        ya = af[:, 0:1] * 0.299 + af[:, 1:2] * 0.587 + af[:, 2:3] * 0.114
        yb = bf[:, 0:1] * 0.299 + bf[:, 1:2] * 0.587 + bf[:, 2:3] * 0.114
        raw = net(torch.cat([ya / 255, yb / 255], 1))[0, 0].numpy()
    gray, rgb = _protocol_ref(raw, af[0].permute(1, 2, 0).numpy(), bf[0].permute(1, 2, 0).numpy())
    assert np.abs(res.gray[0, 0].numpy().astype(int) - gray).max() <= 1
    assert (res.gray[0, 0].numpy() != gray).mean() < 0.01
    assert bool(res.has_rgb[0]) == (rgb is not None)
    if rgb is None:
        assert res.rgb is None
    else:
        got = res.rgb[0].permute(1, 2, 0).numpy().astype(int)
        assert np.abs(got - rgb).max() <= 1 and (got != rgb).mean() < 0.01


def test_mixed_batch_equals_items_and_output_modes():
    net = _PixelNet()
    pairs = _pairs()
    to3 = lambda t: t.expand(-1, 3, -1, -1)  # noqa: E731
    a = torch.cat([to3(p[0]) for p in pairs])
    b = torch.cat([to3(p[1]) for p in pairs])
    info = get_method("refusion")
    batch = ReFusionFuser(info, net, "ivif").fuse(a, b)
    assert batch.shape == (4, 3, 12, 14) and batch.dtype == torch.uint8
    for i, (pa, pb) in enumerate(pairs):
        item = ReFusionFuser(info, net, "ivif").fuse(pa, pb)
        assert item.shape[1] == (1 if i == 0 else 3)
        assert torch.equal(batch[i : i + 1], item.expand(-1, 3, -1, -1)), i
    gray = ReFusionFuser(info, net, "ivif", output="gray").fuse(a, b)
    assert gray.shape == (4, 1, 12, 14)
    assert torch.equal(gray[0:1], ReFusionFuser(info, net, "ivif").fuse(*pairs[0]))
    # the grey-only pair: auto returns 1 channel, rgb 3 equal channels
    assert ReFusionFuser(info, net, "ivif", output="rgb").fuse(*pairs[0]).shape == (1, 3, 12, 14)


def test_bad_inputs_and_options():
    info = get_method("refusion")
    fz = ReFusionFuser(info, _PixelNet(), "ivif")
    a = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(DataError, match="uint8"):
        fz.fuse(a.float(), a)
    with pytest.raises(SizeMismatchError):
        fz.fuse(a, torch.zeros(1, 1, 8, 9, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"\(N, 1\|3, H, W\)"):
        fz.fuse(a[:, :, 0], a)
    with pytest.raises(UsageError, match="output"):
        ReFusionFuser(info, _PixelNet(), "ivif", output="colour")
    with pytest.raises(UsageError, match="task"):
        official.build(weights={}, device=torch.device("cpu"), task="xyz")
    with pytest.raises(UsageError, match="option"):
        official.build(weights={}, device=torch.device("cpu"), task="ivif", colour=True)


def test_layouts_agree_to_one_grey_level():
    """channels_last (the default, faster on CPU) and nchw (the official summation order) give the same image
    up to a one-level rounding flip on a few pixels; a wrong layout name is a usage error."""
    info = get_method("refusion")
    torch.manual_seed(0)
    net = FusionNet().eval()
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (2, 1, 40, 52), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 256, (2, 3, 40, 52), generator=g, dtype=torch.uint8)
    outs = {}
    for layout in ("nchw", "channels_last"):
        net_copy = FusionNet().eval()
        net_copy.load_state_dict(net.state_dict())
        outs[layout] = ReFusionFuser(info, net_copy, "ivif", layout=layout).fuse(a, b)
    d = (outs["nchw"].int() - outs["channels_last"].int()).abs()
    assert outs["nchw"].shape == outs["channels_last"].shape == (2, 3, 40, 52)
    assert d.max() <= 1 and (d > 0).float().mean() < 0.01
    with pytest.raises(UsageError, match="layout"):
        ReFusionFuser(info, FusionNet(), "ivif", layout="nhwc")


def test_constant_output_does_not_crash():
    class Const(_PixelNet):
        def forward(self, x):
            return torch.full_like(x[:, :1], 0.5)

    out = ReFusionFuser(get_method("refusion"), Const(), "ivif").fuse(
        torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    assert out.shape == (1, 1, 4, 4) and (out == 0).all()


# ----------------------------------------------------------------------------- registry entries


def test_entries():
    m = get_method("refusion")
    assert m.kind == "meta" and m.tasks == TASKS and m.factory == "fusionbench.refusion.official:build"
    assert m.paper.year == 2024 and "2312.07943" in m.paper.url
    for t in TASKS:
        (wf,) = m.weights_for(t)
        assert wf.name == f"ReFusion_{t.upper()}.pth" and len(wf.sha256) == 64
        assert wf.url == f"https://github.com/HaowenBai/ReFusion/raw/main/models/{wf.name}"
        assert "no LICENSE" in wf.licence and wf.origin.endswith("@54b7334")
    o = get_method("refusion-ours")
    assert o.display == "ReFusion (ours)" and o.tasks == ("ivif",) and o.factory == "fusionbench.refusion.ours:build"
    assert o.weights[0].bundled == "fusionbench.refusion:weights/refusion_ours_ivif.pt"


def test_official_sha256_matches_manifest(shared):
    m = get_method("refusion")
    for t in TASKS:
        files = resolve(m, t, shared / "weights")
        (wf,) = m.weights_for(t)
        assert sha256sum(files[wf.name]) == wf.sha256


@pytest.mark.parametrize("task", TASKS)
def test_official_checkpoints_load_strict(shared, task):
    net = load_official(task, override=shared / "weights")
    assert isinstance(net, FusionNet) and not net.training
    assert sum(p.numel() for p in net.parameters()) == 59_856
    # trained temperatures stay near 1 (docs/REFUSION.md §1.3): a sanity check that keys did not swap
    temps = torch.cat([p.detach().flatten() for n, p in net.named_parameters() if "temperature" in n])
    assert 0.8 < float(temps.min()) and float(temps.max()) < 1.2


def test_corrupted_duplicate_raises(shared, tmp_path):
    sd = torch.load(shared / "weights" / "refusion" / "ReFusion_IVIF.pth", map_location="cpu", weights_only=True)
    sd["FM.project_E.conv.weight"] = sd["FM.project_E.conv.weight"] * 2
    p = tmp_path / "ReFusion_IVIF.pth"
    torch.save(sd, p)
    with pytest.raises(WeightsError, match="FM.project_E.conv.weight"):
        official.build(weights={"ReFusion_IVIF.pth": p}, device=torch.device("cpu"), task="ivif")


# ----------------------------------------------------------------------------- parity

# (task, folder a, folder b, file, [(reference folder, which output)])
PAIRS_FAST = [
    ("mif", "ct", "mri", "MRI_CT_11.png", [("refusion_mif", "gray")]),
    ("ivif", "ir", "vi", "RoadScene_FLIR_04424.jpg", [("refusion_ivif", "gray"), ("refusion_ivif_rgb", "rgb")]),
    ("ivif", "ir", "vi", "RoadScene_FLIR_00211.jpg", [("refusion_ivif", "gray"), ("refusion_ivif_rgb", "rgb")]),
]
PAIRS_ALL = (
    [("mif", "ct", "mri", f"MRI_CT_{i}.png", [("refusion_mif", "gray")]) for i in (11, 12, 13, 14)]
    + [("ivif", "ir", "vi", f"TNO_0{i}.png", [("refusion_ivif", "gray")]) for i in range(1, 7)]
    + [
        ("ivif", "ir", "vi", f"RoadScene_FLIR_{n}.jpg", [("refusion_ivif", "gray"), ("refusion_ivif_rgb", "rgb")])
        for n in ("00211", "00977", "01130", "04269", "04424", "04484")
    ]
)

_FUSERS: dict = {}


def _fuser(shared, task):
    if task not in _FUSERS:
        m = get_method("refusion")
        _FUSERS[task] = m.build(weights=resolve(m, task, shared / "weights"), task=task)
    return _FUSERS[task]


def _check_pair(shared, task, da, db, name, refs):
    root = shared / "reference" / "outputs"
    a, b = _tensor(root / "inputs" / da / name), _tensor(root / "inputs" / db / name)
    res = _fuser(shared, task).fuse_outputs(a, b)
    stem = name.rsplit(".", 1)[0]
    for folder, which in refs:
        ref = read_image(root / folder / f"{stem}.png")
        got = (res.gray if which == "gray" else res.rgb)[0].permute(1, 2, 0).numpy()
        assert got.shape == ref.shape, (folder, stem)
        diff = np.abs(got.astype(int) - ref)
        psnr = _psnr(got, ref)
        assert psnr >= 45, f"{folder}/{stem}: PSNR {psnr:.2f} dB"
        # what we actually see: at most one grey level on well under 1% of the pixels
        assert diff.max() <= 1 and (diff > 0).mean() < 0.005, f"{folder}/{stem}: max {diff.max()}, {(diff > 0).mean():.4%}"
    # the protocol's colour decision: RGB file only where the official script wrote one
    assert bool(res.has_rgb[0]) == any(w == "rgb" for _, w in refs)


@pytest.mark.parametrize("task,da,db,name,refs", PAIRS_FAST, ids=[p[3] for p in PAIRS_FAST])
def test_parity_fast(shared, task, da, db, name, refs):
    _check_pair(shared, task, da, db, name, refs)


@pytest.mark.slow
@pytest.mark.parametrize("task,da,db,name,refs", PAIRS_ALL, ids=[p[3] for p in PAIRS_ALL])
def test_parity_all(request, shared, task, da, db, name, refs):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow: all 16 reference pairs incl. the 768x576 TNO images; run with -m slow")
    _check_pair(shared, task, da, db, name, refs)


def test_fuse_auto_returns_rgb_for_colour_pair(shared):
    root = shared / "reference" / "outputs"
    name = "RoadScene_FLIR_04424"
    # a crop is enough to check the dispatch (parity on the full images is checked above)
    a = _tensor(root / "inputs/ir" / f"{name}.jpg")[..., :64, :80]
    b = _tensor(root / "inputs/vi" / f"{name}.jpg")[..., :64, :80]
    m = get_method("refusion")
    files = resolve(m, "ivif", shared / "weights")
    fz = m.build(weights=files, task="ivif")
    assert fz.info is m and fz.tile_halo is None and fz.output == "auto"
    auto = fz.fuse(a, b)
    both = fz.fuse_outputs(a, b)
    gray = ReFusionFuser(m, fz.net, "ivif", output="gray").fuse(a, b)
    assert auto.shape == (1, 3, 64, 80) and gray.shape == (1, 1, 64, 80)
    assert torch.equal(auto, both.rgb) and torch.equal(gray, both.gray)
    # a grey pair through the same fuser: one channel
    assert fz.fuse(a, a).shape == (1, 1, 64, 80)


# ----------------------------------------------------------------------------- refusion-ours


def test_ours_loads_plain_and_wrapped_state(tmp_path):
    from fusionbench.refusion import ours

    net = FusionNet()
    torch.save({"F": net.state_dict(), "step": 3}, tmp_path / "wrapped.pt")
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    a = torch.randint(0, 256, (1, 1, 16, 16), dtype=torch.uint8)
    b = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    outs = []
    for f in ("wrapped.pt", "bare.pt"):
        fz = ours.build(weights={"refusion_ours_ivif.pt": tmp_path / f}, device=torch.device("cpu"), task="ivif")
        assert fz.info.name == "refusion-ours" and fz.tile_halo is None
        outs.append(fz.fuse(a, b))
    assert outs[0].shape == (1, 3, 16, 16) and torch.equal(outs[0], outs[1])
    with pytest.raises(UsageError):
        ours.build(weights={}, device=torch.device("cpu"), task="mif")
    torch.save({"F": {"nope": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="bad.pt"):
        ours.build(weights={"refusion_ours_ivif.pt": tmp_path / "bad.pt"}, device=torch.device("cpu"))


def test_ours_missing_bundled_weights_message(monkeypatch):
    from fusionbench.refusion import ours

    def gone(*a, **k):
        raise WeightsError("not found")

    monkeypatch.setattr(ours, "resolve", gone)  # as if the package data had not been installed
    with pytest.raises(WeightsError, match="missing from this installation"):
        ours.build(weights={}, device=torch.device("cpu"), task="ivif")


def test_ours_bundled_sha256_checked(monkeypatch):
    import dataclasses

    from fusionbench.refusion import entry, ours

    if not (entry.WEIGHTS_DIR / entry.OURS_FILE).is_file() or not entry.OURS.weights[0].sha256:
        pytest.skip("no trained weights bundled yet")
    fz = ours.build(weights={}, device=torch.device("cpu"), task="ivif")
    assert fz.info.name == "refusion-ours"
    wrong = dataclasses.replace(entry.OURS.weights[0], sha256="0" * 64)
    monkeypatch.setattr(entry, "OURS", dataclasses.replace(entry.OURS, weights=(wrong,)))
    with pytest.raises(WeightsError, match="sha256"):
        ours.build(weights={}, device=torch.device("cpu"), task="ivif")
