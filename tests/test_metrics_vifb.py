"""Tests of the ``vifb`` metric preset (fusionbench.metrics.vifb).

* Parity with VIFB's MATLAB values (``shared/reference/vifb_matlab.csv``): every metric, method and
  image, at the 5 significant digits the reference was stored with. Needs ../shared.
* Analytic values on tiny images and properties (per-channel averaging, grey-as-RGB, constants,
  batch vs one-by-one, broadcast sources, symmetry in the sources), runnable from a fresh clone.

No VIFB image is committed (their licence is unclear), so there is no fresh-clone golden file
for this preset; the analytic tests stand in for it.
"""
from __future__ import annotations

import math

import pytest
import torch

from fusionbench.errors import DataError, SizeMismatchError
from fusionbench.metrics import _kernels_vifb as K
from fusionbench.metrics.vifb import (
    VIFB_HIGHER_IS_BETTER,
    VIFB_METRICS,
    VIFB_NOTES,
    average_gradient_vifb,
    cross_entropy_kl,
    edge_intensity,
    entropy,
    mutual_information_vifb,
    prepare_vifb,
    psnr_vifb,
    qabf,
    qcb,
    qcv,
    rmse_vifb,
    spatial_frequency_vifb,
    ssim_vifb,
    standard_deviation,
)
from fusionbench.paths import shared_dir

F64 = torch.float64
NAMES = ("EN", "SD", "SF", "AG", "EI", "CE", "MI", "PSNR", "RMSE", "SSIM", "Qabf", "Qcb", "Qcv")
VIFB_METHODS = ("ADF", "CBF", "GFF", "MSVD", "CNN", "IFCNN", "SeAFusion", "U2Fusion")


def _rand_u8(shape, seed, lo=0, hi=256):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi, shape, generator=g, dtype=torch.uint8)


def _smooth_u8(shape, seed):
    """Random but image-like (smooth + noise) uint8 content, so edge/contrast metrics are typical."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    base = torch.rand(n, c, h // 4 + 2, w // 4 + 2, generator=g, dtype=F64)
    up = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    noise = torch.rand(n, c, h, w, generator=g, dtype=F64) * 0.15
    return ((up * 0.85 + noise) * 255).round().clamp(0, 255).to(torch.uint8)


def _all(f, a, b):
    return {k: VIFB_METRICS[k](f, a, b) for k in NAMES}


# ---------------------------------------------------------------------------------------------
# parity with VIFB's MATLAB values
# ---------------------------------------------------------------------------------------------

def _reference_csv():
    s = shared_dir()
    if s is None:
        return None
    p = s / "reference" / "vifb_matlab.csv"
    return p if p.is_file() and (s / "data" / "vifb" / "fused").is_dir() else None


def _tol(ref: float) -> float:
    """Half a unit in the 5th significant digit, the rounding of the stored MATLAB values."""
    return 0.5 * 10 ** (math.floor(math.log10(abs(ref))) - 4)


# Images checked by default: every size class and all four single-channel-IR pairs (9 of 21,
# 936 of the 2184 reference values); the other 12 run with ``-m slow``.
CORE_IMAGES = ("carShadow", "fight", "manWalking", "peopleshadow", "running", "snow", "walking",
               "walking2", "walkingnight")


def _parity(images):
    """All metrics for the given images x every method, float64: {(method, image, metric): (ours, ref)}."""
    csv = _reference_csv()
    if csv is None:
        pytest.skip("../shared not found (needs shared/reference/vifb_matlab.csv and shared/data/vifb); "
                    "VIFB parity not checked")
    import pandas as pd

    from fusionbench.io import read_image

    ref = pd.read_csv(csv)
    assert set(ref.method) == set(VIFB_METHODS)
    assert set(ref.metric) == set(NAMES)
    images = [i for i in sorted(set(ref.image)) if i in CORE_IMAGES] if images == "core" else \
        [i for i in sorted(set(ref.image)) if i not in CORE_IMAGES]
    root = csv.parents[1] / "data" / "vifb"

    def load(p):
        return torch.from_numpy(read_image(p).copy()).permute(2, 0, 1)[None]

    out = {}
    for image in images:
        # all fused results of one image share its size: batches of 4 methods with the sources
        # broadcast (stride 0, processed once). 4 rather than 8 keeps each float64 temporary
        # under glibc's 32 MB mmap ceiling, which roughly halves the time spent in page faults.
        ir = load(root / "ir" / f"{image}.jpg")
        vi = load(root / "vi" / f"{image}.jpg")
        for group in (VIFB_METHODS[:4], VIFB_METHODS[4:]):
            fused = torch.cat([load(root / "fused" / m / f"{image}.jpg") for m in group])
            n = fused.shape[0]
            f, a, b = prepare_vifb(fused, ir.expand(n, -1, -1, -1), vi.expand(n, -1, -1, -1), dtype=F64)
            for name in NAMES:
                for m, v in zip(group, VIFB_METRICS[name](f, a, b).tolist()):
                    out[(m, image, name)] = v
    sel = ref[ref.image.isin(images)]
    assert len(sel) == len(images) * len(VIFB_METHODS) * len(NAMES)
    return {(r.method, r.image, r.metric): (out[(r.method, r.image, r.metric)], r.value) for r in sel.itertuples()}


@pytest.fixture(scope="module")
def parity_core():
    return _parity("core")


@pytest.fixture(scope="module")
def parity_rest():
    return _parity("rest")


def _check_method(rows, method, n_images):
    rows = {k: v for k, v in rows.items() if k[0] == method}
    assert len(rows) == n_images * len(NAMES)
    bad = []
    for (_, image, metric), (ours, ref) in sorted(rows.items()):
        if not abs(ours - ref) <= _tol(ref):
            bad.append(f"{image}/{metric}: ours {ours:.7g} MATLAB {ref:.5g} (rel {abs(ours - ref) / abs(ref):.2e})")
    assert not bad, f"{method}: {len(bad)} value(s) differ beyond the 5-digit rounding:\n" + "\n".join(bad)


@pytest.mark.shared
@pytest.mark.parametrize("method", VIFB_METHODS)
def test_parity_with_vifb_matlab(parity_core, method):
    _check_method(parity_core, method, len(CORE_IMAGES))


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("method", VIFB_METHODS)
def test_parity_with_vifb_matlab_other_images(parity_rest, method):
    _check_method(parity_rest, method, 21 - len(CORE_IMAGES))


# ---------------------------------------------------------------------------------------------
# API shape
# ---------------------------------------------------------------------------------------------

def test_tables_cover_every_metric():
    assert tuple(VIFB_METRICS) == NAMES
    assert set(VIFB_NOTES) == set(NAMES)
    assert all(v.startswith(("reference", "extension")) for v in VIFB_NOTES.values())
    lower = {k for k, v in VIFB_HIGHER_IS_BETTER.items() if not v}
    assert lower == {"CE", "RMSE", "Qcv"}


def test_prepare_colour_rules():
    rgb = _rand_u8((2, 3, 16, 20), 1)
    grey = _rand_u8((2, 1, 16, 20), 2)
    # fused RGB: a grey source is broadcast to three channels
    f, a, b = prepare_vifb(rgb, grey, rgb)
    assert f.dtype == F64 and a.shape == (2, 3, 16, 20) and torch.equal(a[:, 1], grey[:, 0].double())
    # fused grey: RGB sources go through MATLAB rgb2gray on uint8 (rounded)
    f, a, b = prepare_vifb(grey, rgb, grey, dtype=torch.float32)
    assert a.shape == (2, 1, 16, 20) and a.dtype == torch.float32
    w = (0.298936021293775, 0.587043074451121, 0.114020904255103)
    manual = (rgb[:, 0].double() * w[0] + rgb[:, 1].double() * w[1] + rgb[:, 2].double() * w[2] + 0.5).floor()
    assert torch.equal(a[:, 0].double(), manual)


def test_prepare_rejects_bad_shapes():
    f = _rand_u8((1, 3, 16, 16), 1)
    with pytest.raises(SizeMismatchError):
        prepare_vifb(f, _rand_u8((1, 3, 16, 17), 2), f)
    with pytest.raises(SizeMismatchError):
        prepare_vifb(f, f, _rand_u8((2, 3, 16, 16), 2))
    with pytest.raises(DataError):
        prepare_vifb(f, _rand_u8((1, 2, 16, 16), 2), f)
    with pytest.raises(DataError):
        ssim_vifb(*prepare_vifb(*[_rand_u8((1, 1, 8, 30), 3)] * 3))


# ---------------------------------------------------------------------------------------------
# analytic values
# ---------------------------------------------------------------------------------------------

def test_round_half_away_matches_matlab():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994, 254.5, 3.4999, -3.5000001], dtype=F64)
    assert K.round_half_away(x).tolist() == [1, 2, 3, -1, -3, 0, 255, 3, -4]
    # MI / normalize1 binning: (x - min) / (max - min) * 255 with ties
    img = torch.tensor([[0.0, 1.0, 2.0, 254.0]], dtype=F64)[None, None]
    assert K.stretch_255(img).flatten().tolist() == [0, 1, 2, 255]  # 1.0039.., 2.0078.. -> 1, 2
    img = torch.tensor([[10.0, 11.0, 12.0]], dtype=F64)[None, None]
    assert K.stretch_255(img).flatten().tolist() == [0, 128, 255]  # 127.5 -> 128 (half away)


def test_fused_only_metrics_by_hand():
    x = torch.tensor([[0, 0, 255, 255], [0, 0, 255, 255], [0, 0, 255, 255]], dtype=F64)[None, None]
    assert entropy(x).item() == pytest.approx(1.0)
    assert standard_deviation(x).item() == pytest.approx(127.5)
    # SF: one column step of 255 per row, sums divided by H*W = 12
    assert spatial_frequency_vifb(x).item() == pytest.approx(math.sqrt(3 * 255**2 / 12))
    # AG: gx = [0, 127.5, 127.5, 0] per row (central differences), gy = 0
    s = 2 * 127.5 / math.sqrt(2) * 3
    assert average_gradient_vifb(x).item() == pytest.approx(s / (2 * 3))
    # SF colour quirk: the seams between channels count, sums over H*3W
    rgb = torch.zeros(1, 3, 2, 2, dtype=F64)
    rgb[:, 1] = 10.0
    # X = [R|G|B] rows [0 0 10 10 0 0]: two seam steps per row, 2 rows, / (2 * 6)
    assert spatial_frequency_vifb(rgb).item() == pytest.approx(math.sqrt(2 * 2 * 10.0**2 / 12))


def test_edge_intensity_replicate_borders():
    x = torch.zeros(1, 1, 5, 5, dtype=F64)
    x[..., :, 3:] = 1.0  # vertical step between columns 2 and 3
    # replicate padding: no border artefacts, response 4 on the two columns next to the step
    assert edge_intensity(x).item() == pytest.approx(4 * 2 * 5 / 25)


def test_two_source_metrics_by_hand():
    g = _rand_u8((1, 1, 24, 24), 5).double()
    # fused equals both sources
    assert cross_entropy_kl(g, g, g).item() == 0.0
    assert ssim_vifb(g, g, g).item() == pytest.approx(2.0, abs=1e-12)  # SSIM summed over sources
    assert math.isinf(psnr_vifb(g, g, g).item()) and rmse_vifb(g, g, g).item() == 0.0
    # MI(F, F) = H(F) in nats after the min-max stretch (here the image spans 0..255 only approximately)
    lev = K.stretch_255(g).long()
    h = torch.bincount(lev.flatten(), minlength=256).double() / lev.numel()
    hf = -(h[h > 0] * h[h > 0].log()).sum().item()
    assert mutual_information_vifb(g, g, g).item() == pytest.approx(2 * hf)
    # RMSE / PSNR with VIFB's e = ||S - F|| / (H W)
    f = torch.zeros(1, 1, 4, 4, dtype=F64)
    a = torch.full_like(f, 2.0)
    b = torch.zeros_like(f)
    e = (math.sqrt(16 * 4.0) / 16 + 0.0) / 2
    assert rmse_vifb(f, a, b).item() == pytest.approx(e)
    assert psnr_vifb(f, a, b).item() == pytest.approx(20 * math.log10(255 / math.sqrt(e)))


def test_qcb_qcv_perfect_fusion():
    x = _smooth_u8((2, 3, 33, 47), 4).double()
    # identical images: every contrast is preserved (Q = 1) and no distortion is seen (Qcv = 0)
    torch.testing.assert_close(qcb(x, x, x), torch.ones(2, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(qcv(x, x, x), torch.zeros(2, dtype=F64), rtol=0, atol=1e-12)
    # a worse fusion (noise added) scores lower on Qcb and higher on Qcv
    noisy = (x + _rand_u8(x.shape, 5, 0, 60).double()).clamp(0, 255)
    assert (qcb(noisy, x, x) < 0.99).all() and (qcv(noisy, x, x) > 1.0).all()


def test_cross_entropy_skips_empty_bins():
    f = torch.tensor([[0, 0, 1, 1]], dtype=F64)[None, None]
    a = torch.tensor([[0, 0, 0, 2]], dtype=F64)[None, None]  # level 2 absent from f: skipped
    kl = 0.75 * math.log2(0.75 / 0.5)
    assert cross_entropy_kl(f, a, f).item() == pytest.approx(kl / 2)


def test_qabf_quirk_equal_strength_gives_g_not_one():
    # identical images: G = g_F where g_A == g_F (not 1), so with x255 scaling Qg saturates at Tg,
    # and Qabf = Tg * Qa(A=1); without scaling G = g_F can be small and Qabf drops.
    x = _smooth_u8((1, 1, 20, 20), 3).double()
    tg, ta = 0.9994, 0.9879
    qa1 = ta / (1 + math.exp(-22 * (1 - 0.8)))
    assert qabf(x, x, x).item() == pytest.approx(tg * qa1, rel=1e-12)
    x2 = torch.zeros(1, 1, 8, 8, dtype=F64)
    x2[..., 4:, :] = 0.1  # tiny steps: g = 0.4 on edge rows
    assert qabf(x2, x2, x2, scale=1.0).item() < 0.5 * qabf(x2, x2, x2).item()


# ---------------------------------------------------------------------------------------------
# MATLAB constructs used by Qcb / Qcv
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("h,w", [(6, 8), (7, 5)])
def test_freqspace_filter_equals_matlab_shift_form(h, w):
    x = _rand_u8((2, 1, h, w), 7).double()
    # literal MATLAB: ifft2(ifftshift(fftshift(fft2(x)) .* S)) on freqspace's meshgrid
    fu = (torch.arange(w, dtype=F64) - w // 2) * (2.0 / w) * (w / 8)
    fv = (torch.arange(h, dtype=F64) - h // 2) * (2.0 / h) * (h / 8)
    r = torch.sqrt(fu[None, :] ** 2 + fv[:, None] ** 2)
    s = 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))
    literal = torch.fft.ifft2(torch.fft.ifftshift(torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1)) * s,
                                                  dim=(-2, -1)))
    r2 = K.freqspace_radius(h, w, w / 8, h / 8)
    theta = 2.6 * (0.0192 + 0.144 * r2) * torch.exp(-((0.144 * r2) ** 1.1))
    ours = K.fft_filter_real(x, theta)
    assert literal.imag.abs().max() < 1e-9
    torch.testing.assert_close(ours, literal.real, rtol=0, atol=1e-10)


def test_gaussian_fft_equals_filter2_same():
    y = torch.randn(2, 3, 23, 40, dtype=F64, generator=torch.Generator().manual_seed(0))
    ax = torch.arange(-15, 16, dtype=F64)
    e = torch.exp(-(ax * ax) / 8)
    got = K.gaussian_same_fft(y, [(e, e / (8 * math.pi))])[0]
    want = K.sep_filter_same_zero(y, e.tolist(), (e / (8 * math.pi)).tolist())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # filter2 'same' is zero-padded correlation: compare with conv2d on an asymmetric kernel
    tv, th = [1.0, 2.0, 5.0], [0.5, -1.0, 3.0]
    k2 = torch.tensor(tv, dtype=F64)[:, None] * torch.tensor(th, dtype=F64)[None, :]
    ref = torch.nn.functional.conv2d(y.reshape(-1, 1, 23, 40), k2[None, None], padding=1).reshape(y.shape)
    torch.testing.assert_close(K.sep_filter_same_zero(y, tv, th), ref)


def test_block_sums_pad_partial_blocks_with_zeros():
    x = torch.arange(1 * 1 * 20 * 35, dtype=F64).reshape(1, 1, 20, 35)
    got = K.block_sums(x, 16)
    assert got.shape == (1, 1, 2, 3)
    for i in range(2):
        for j in range(3):
            assert got[0, 0, i, j] == x[0, 0, 16 * i:16 * i + 16, 16 * j:16 * j + 16].sum()


def test_fast_len():
    assert [K.fast_len(n) for n in (1, 7, 17, 475, 645, 1024)] == [1, 8, 18, 480, 648, 1024]


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------

def _sources(seed, n=2, h=37, w=45):
    f = _smooth_u8((n, 3, h, w), seed)
    a = _smooth_u8((n, 1, h, w), seed + 1)  # grey IR
    b = _smooth_u8((n, 3, h, w), seed + 2)  # colour VIS
    return f, a, b


def test_per_channel_average_equals_manual_average():
    f, a, b = prepare_vifb(*_sources(10))
    full = _all(f, a, b)
    per = [_all(f[:, k:k + 1], a[:, k:k + 1], b[:, k:k + 1]) for k in range(3)]
    for name in NAMES:
        if name == "SF":  # channels side by side, not averaged
            side = f.permute(0, 2, 1, 3).reshape(f.shape[0], 1, f.shape[2], -1)
            torch.testing.assert_close(full[name], spatial_frequency_vifb(side), rtol=1e-13, atol=0)
            continue
        manual = sum(p[name] for p in per) / 3
        torch.testing.assert_close(full[name], manual, rtol=1e-12, atol=1e-12, msg=name)


def test_grey_stored_as_rgb_matches_single_channel():
    g_f, g_a, g_b = (_smooth_u8((2, 1, 30, 41), s) for s in (20, 21, 22))
    rgb = [t.expand(-1, 3, -1, -1).contiguous() for t in (g_f, g_a, g_b)]
    one = _all(*prepare_vifb(g_f, g_a, g_b))
    three = _all(*prepare_vifb(*rgb))
    grey_fused = _all(*prepare_vifb(g_f, rgb[1], rgb[2]))  # rgb2gray of equal channels is exact
    for name in NAMES:
        torch.testing.assert_close(grey_fused[name], one[name], rtol=0, atol=0, msg=name)
        if name == "SF":
            continue  # the H x 3W layout adds two seams and divides by 3W: checked below
        torch.testing.assert_close(three[name], one[name], rtol=1e-12, atol=1e-12, msg=name)
    h, w = g_f.shape[-2:]
    x = g_f.double()[:, 0]
    rf = (x[..., 1:] - x[..., :-1]).square().sum((-2, -1))
    cf = (x[..., 1:, :] - x[..., :-1, :]).square().sum((-2, -1))
    seams = 2 * (x[..., 0] - x[..., -1]).square().sum(-1)
    want = ((3 * rf + 3 * cf + seams) / (h * 3 * w)).sqrt()
    torch.testing.assert_close(three["SF"], want, rtol=1e-13, atol=0)


def test_batch_equals_one_by_one_and_broadcast_sources():
    fu, ir, vi = _sources(30, n=3)
    f, a, b = prepare_vifb(fu, ir, vi)
    batch = _all(f, a, b)
    for i in range(3):
        single = _all(*prepare_vifb(fu[i:i + 1], ir[i:i + 1], vi[i:i + 1]))
        for name in NAMES:
            torch.testing.assert_close(batch[name][i:i + 1], single[name], rtol=1e-12, atol=1e-12, msg=name)
    # a source shared by the batch (stride-0 expand) gives the same as a materialised copy
    ir1, vi1 = ir[:1].expand(3, -1, -1, -1), vi[:1].expand(3, -1, -1, -1)
    shared = _all(*prepare_vifb(fu, ir1, vi1))
    copied = _all(*prepare_vifb(fu, ir1.contiguous(), vi1.contiguous()))
    for name in NAMES:
        torch.testing.assert_close(shared[name], copied[name], rtol=1e-12, atol=1e-12, msg=name)


def test_symmetric_in_the_two_sources():
    f, a, b = prepare_vifb(*_sources(40))
    ab, ba = _all(f, a, b), _all(f, b, a)
    for name in NAMES:
        torch.testing.assert_close(ab[name], ba[name], rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("fv,av,bv", [(0, 0, 0), (128, 128, 128), (0, 77, 200), (255, 0, None)])
def test_constant_images_never_nan(fv, av, bv):
    shape = (1, 3, 20, 24)
    f = torch.full(shape, fv, dtype=torch.uint8)
    a = torch.full((1, 1, 20, 24), av, dtype=torch.uint8)
    b = _smooth_u8(shape, 50) if bv is None else torch.full(shape, bv, dtype=torch.uint8)
    vals = _all(*prepare_vifb(f, a, b))
    for name, v in vals.items():
        assert not torch.isnan(v).any(), name
        if name != "PSNR":
            assert torch.isfinite(v).all(), name
    for name in ("EN", "SD", "SF", "AG", "EI", "MI"):
        if bv is not None:
            assert vals[name].item() == 0.0, name
    if bv is not None:
        # normalize1 maps constants to zeros: no contrast anywhere, preserved
        assert vals["Qcb"].item() == 1.0
        assert vals["Qcv"].item() >= 0.0
    if fv == av == bv == 0:
        # all-zero sources have no edge even with Qabf's zero padding: 0/0, defined as 0
        assert vals["Qabf"].item() == 0.0
    if fv == av == bv:
        assert vals["SSIM"].item() == pytest.approx(2.0) and math.isinf(vals["PSNR"].item())


def test_float32_close_to_float64():
    fu, ir, vi = _sources(60, n=2, h=48, w=64)
    d64 = _all(*prepare_vifb(fu, ir, vi, dtype=F64))
    d32 = _all(*prepare_vifb(fu, ir, vi, dtype=torch.float32))
    for name in NAMES:
        assert d32[name].dtype == torch.float32
        torch.testing.assert_close(d32[name].double(), d64[name], rtol=2e-4, atol=1e-6, msg=name)
