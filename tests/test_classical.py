"""Classical baselines: shapes, devices, defining properties, batching, colour, and sanity against sources."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fusionbench.baselines.classical import ENTRIES, build
from fusionbench.baselines.classical import methods as M
from fusionbench.baselines.classical.filters import clipped_box_mean, guided_filter
from fusionbench.color import luma, rgb_to_ycrcb
from fusionbench.errors import DataError, SizeMismatchError, UsageError
from fusionbench.registry import get_method

NAMES = ["average", "max", "lp", "dwt", "gff", "adf"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one intra-op thread is fastest and immune to a busy machine's thread contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _smooth_pair(n=2, h=48, w=64, seed=0):
    """Two related grey uint8 images with structure (edges, blobs, noise)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy)
    a = base + 0.15 * (xx > 0.5).float() + 0.03 * torch.randn((n, 1, h, w), generator=g)
    b = 1.0 - base + 0.2 * ((xx - 0.3) ** 2 + (yy - 0.4) ** 2 < 0.03).float() + 0.03 * torch.randn((n, 1, h, w), generator=g)
    def to8(x):
        return (x.clamp(0, 1) * 255).round().to(torch.uint8)

    return to8(a), to8(b)


def _colour(n=2, h=48, w=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 3, h // 8, w // 8), generator=g)
    return (F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)


def test_entries_metadata():
    names = [e.name for e in ENTRIES]
    assert names == NAMES
    for e in ENTRIES:
        assert e.kind == "classical" and set(e.tasks) == {"ivif", "mif", "mfif", "meif"}
        assert e.factory == "fusionbench.baselines.classical:build" and e.weights == ()
        assert get_method(e.name) is not None
    assert get_method("choose-max").name == "max"
    for n in ("lp", "dwt", "gff", "adf"):
        assert get_method(n).paper is not None


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_device(name, device):  # device: the conftest fixture (pytest --device cpu,cuda)
    a, b = _smooth_pair()
    f = get_method(name).build(device=device)
    out = f.fuse(a.to(device), b.to(device))
    assert out.dtype == torch.uint8 and out.shape == (2, 1, 48, 64) and out.device.type == device.type
    rgb = _colour()
    out = f.fuse(a.to(device), rgb.to(device))
    assert out.shape == (2, 3, 48, 64) and out.dtype == torch.uint8
    # odd, non-dyadic size and a single-pixel-thin image still work
    a7, b7 = _smooth_pair(1, 37, 53)
    assert f.fuse(a7.to(device), b7.to(device)).shape == (1, 1, 37, 53)
    a3, b3 = _smooth_pair(1, 5, 9)
    assert f.fuse(a3.to(device), b3.to(device)).shape == (1, 1, 5, 9)


@pytest.mark.parametrize("name", NAMES)
def test_device_agrees_with_cpu(name, device):
    if device.type == "cpu":
        pytest.skip("compares another device (pytest --device cuda) with the CPU")
    a, b = _smooth_pair()
    cpu = get_method(name).build(device="cpu").fuse(a, b)
    other = get_method(name).build(device=device).fuse(a.to(device), b.to(device)).cpu()
    assert (cpu.int() - other.int()).abs().max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_identical_sources_give_the_source(name):
    """Every rule is a convex or reconstructing combination: fusing (x, x) returns x."""
    a, _ = _smooth_pair()
    f = get_method(name).build()
    out = f.fuse(a, a)
    assert (out.int() - a.int()).abs().max() <= (0 if name in ("average", "max") else 1)
    rgb = _colour()
    out = f.fuse(rgb, rgb)
    assert out.shape == rgb.shape and (out.int() - rgb.int()).abs().max() <= 2


def test_average_exact_and_max_exact():
    a, b = _smooth_pair()
    avg = build(method="average").fuse(a, b)
    assert ((avg.float() - (a.float() + b.float()) / 2).abs() <= 0.5).all()  # rounding of .5 may go either way
    assert torch.equal(build(method="max").fuse(a, b), torch.maximum(a, b))


def test_max_abs_rule_picks_larger_detail():
    ca = torch.tensor([[-3.0, 1.0], [0.5, -0.2]]).view(1, 1, 2, 2)
    cb = torch.tensor([[2.0, -4.0], [0.5, 0.1]]).view(1, 1, 2, 2)
    assert torch.equal(M.select_max_abs(ca, cb), torch.tensor([[-3.0, -4.0], [0.5, -0.2]]).view(1, 1, 2, 2))


@pytest.mark.parametrize("name", ["lp", "dwt"])
def test_multiscale_keeps_the_stronger_texture(name):
    """A fine checkerboard of amplitude 0.2 in a and 0.04 in b: the fused texture has a's amplitude."""
    h = w = 64
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cb = (((yy // 2) + (xx // 2)) % 2).float() * 2 - 1
    a = (0.5 + 0.2 * cb).view(1, 1, h, w)
    b = (0.5 + 0.04 * cb.roll(2, 1)).view(1, 1, h, w)
    out = M.laplacian_pyramid_fusion(a, b) if name == "lp" else M.dwt_fusion(a, b, window=1, consistency=False)
    core = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    amp = (out[core] - out[core].mean()).abs().mean()
    assert abs(amp - 0.2) < 0.03 and abs(out[core].mean() - 0.5) < 0.01


def test_pyramid_and_wavelet_reconstruct_exactly():
    x = torch.rand(2, 1, 37, 53, dtype=torch.float64)
    assert torch.allclose(M.collapse(M.laplacian_pyramid(x, 3)), x, atol=1e-12)
    for wav, taps in M.WAVELETS.items():
        h = torch.tensor(taps, dtype=torch.float64)
        assert abs(h.sum().item() - math.sqrt(2)) < 1e-9 and abs((h * h).sum().item() - 1) < 1e-9
        y = torch.rand(1, 1, 32, 48, dtype=torch.float64)
        assert torch.allclose(M.idwt2(*M.dwt2(y, h), h), y, atol=1e-10), wav
    # db4 high-pass partner has four vanishing moments
    g = M._qmf(torch.tensor(M.WAVELETS["db4"], dtype=torch.float64))
    k = torch.arange(8, dtype=torch.float64)
    assert all(abs((g * k**p).sum().item()) < 1e-8 for p in range(4))


def test_guided_filter_and_box_mean():
    x = torch.rand(1, 1, 9, 11, dtype=torch.float64)
    r = 2
    ref = torch.zeros_like(x)
    for i in range(9):
        for j in range(11):
            ref[..., i, j] = x[..., max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean()
    assert torch.allclose(clipped_box_mean(x, r), ref, atol=1e-12)
    # the guided filter of the guide itself with tiny eps is (nearly) the identity
    assert torch.allclose(guided_filter(x, x, 3, 1e-8), x, atol=1e-4)
    # and with huge eps it is the local mean of p
    p = torch.rand_like(x)
    assert torch.allclose(guided_filter(x, p, 2, 1e6), clipped_box_mean(clipped_box_mean(p, 2), 2), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_one_by_one(name):
    a, b = _smooth_pair(3, seed=4)
    rgb = _colour(3)
    f = get_method(name).build()
    for x, y in ((a, b), (a, rgb)):
        batch = f.fuse(x, y)
        single = torch.cat([f.fuse(x[i : i + 1], y[i : i + 1]) for i in range(3)])
        assert (batch.int() - single.int()).abs().max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_colour_of_visible_is_carried(name):
    a, _ = _smooth_pair()
    rgb = _colour()
    out = get_method(name).build().fuse(a, rgb)
    co = rgb_to_ycrcb(out.float() / 255, 0.5)[:, 1:]
    ci = rgb_to_ycrcb(rgb.float() / 255, 0.5)[:, 1:]
    # chroma survives up to the clamping of out-of-gamut pixels
    assert (co - ci).abs().mean() < 0.02
    # both grey -> grey out; grey stored as RGB counts as grey
    grey3 = a.expand(-1, 3, -1, -1).contiguous()
    assert get_method(name).build().fuse(grey3, a).shape[1] == 1


def test_both_colour_chroma_fused_by_saturation():
    a = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    a[:, 0] = 200  # saturated red
    a[:, 1:] = 40
    b = torch.full((1, 3, 8, 8), 128, dtype=torch.uint8)  # neutral grey stored as RGB -> treated as grey
    b[:, 2, 0, 0] = 129  # one pixel off-grey makes b colour
    out = build(method="average").fuse(a, b)
    cr_out = rgb_to_ycrcb(out.float() / 255, 0.5)[:, 1]
    cr_a = rgb_to_ycrcb(a.float() / 255, 0.5)[:, 1]
    assert torch.allclose(cr_out[..., 4, 4], cr_a[..., 4, 4], atol=0.01)  # the saturated source dominates


def _ssim(x, y):
    """Plain SSIM (Wang et al. 2004; 11x11 Gaussian, sigma 1.5) on [0, 1] (N, 1, H, W)."""
    r = torch.arange(11, dtype=x.dtype) - 5
    g = torch.exp(-r * r / (2 * 1.5**2))
    g = (g / g.sum())
    k = (g[:, None] * g[None, :]).view(1, 1, 11, 11)
    mu_x, mu_y = F.conv2d(x, k), F.conv2d(y, k)
    sxx = F.conv2d(x * x, k) - mu_x**2
    syy = F.conv2d(y * y, k) - mu_y**2
    sxy = F.conv2d(x * y, k) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))).mean()


@pytest.mark.parametrize("name", ["lp", "dwt", "gff", "adf"])
def test_sanity_against_sources_on_sample(name):
    """On a bundled TNO pair, the fused image is structurally closer to both sources than a flat image."""
    from fusionbench.data import open_dataset
    from fusionbench.io import read_image

    p = open_dataset("sample")["08"]
    a = torch.from_numpy(read_image(p.a).copy()).permute(2, 0, 1)[None]
    b = torch.from_numpy(read_image(p.b).copy()).permute(2, 0, 1)[None]
    out = get_method(name).build().fuse(a, b)
    assert out.shape == (1, 1, 256, 256)  # grey stored as RGB on both sides -> grey
    fa, fb, fo = (luma(x.float() / 255) for x in (a, b, out))
    flat = torch.full_like(fo, float(fo.mean()))
    s = _ssim(fo, fa) + _ssim(fo, fb)
    assert s > _ssim(flat, fa) + _ssim(flat, fb) + 0.5
    assert s > 0.9
    # and it is not simply one of the sources
    assert _ssim(fo, fa) < 0.99 and _ssim(fo, fb) < 0.99


def test_options_and_errors():
    f = get_method("lp").build(levels="2")  # CLI strings are coerced
    assert f.params == {"levels": 2} and f.tile_halo == 16
    assert get_method("adf").build().tile_halo is None
    assert get_method("gff").build().tile_halo == 2 * 45 + 7 + 15
    with pytest.raises(UsageError, match="unknown option"):
        get_method("gff").build(radius=3)
    with pytest.raises(UsageError, match="wavelet"):
        get_method("dwt").build(wavelet="sym9")
    f = get_method("average").build()
    a, b = _smooth_pair()
    with pytest.raises(SizeMismatchError):
        f.fuse(a, b[..., :-1])
    with pytest.raises(DataError):
        f.fuse(a.float(), b)


def test_tiled_core_matches_whole_image_for_local_methods():
    """The declared tile_halo is enough for the pixel and guided-filter methods."""
    from fusionbench.fusing import fuse_tiled

    a, b = _smooth_pair(1, 96, 128, seed=3)
    for name in ("average", "max", "gff"):
        f = get_method(name).build()
        whole = f.fuse(a, b)
        tiled = fuse_tiled(f, a, b, 40, f.tile_halo)
        assert (whole.int() - tiled.int()).abs().max() <= 1, name
