"""The native CPU kernels of the cddfuse preset agree with the eager torch kernels.

Both paths are checked against the CDDFuse reference values in tests/test_metrics_cddfuse.py;
here the native path is compared with the eager one on synthetic images of awkward sizes, mixed
channel layouts and degenerate content.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fusionbench.metrics import _native, parse_metrics, score_batch
from fusionbench.metrics import cddfuse as C

pytestmark = pytest.mark.skipif(_native.library() is None, reason=f"native kernels: {_native.status()}")

ALL_NATIVE = ",".join(_native.CORE_SLOTS)


def _all_native(h, w):
    """Every native metric, less VIF at sizes where the evaluator's VIF is undefined (it raises there)."""
    from fusionbench.metrics.functional import vif_defined

    return ALL_NATIVE if vif_defined(h, w) else ",".join(m for m in _native.CORE_SLOTS if m != "VIF")


def _eager(f, a, b, spec, dtype=torch.float64):
    reqs = parse_metrics(spec, preset="cddfuse")
    f2, a2, b2 = (C.luma_rounded(t).to(dtype) for t in (f, a, b))
    return {r.label: r.implementation.fn(f2, a2, b2) for r in reqs}


def _native_scores(f, a, b, spec, dtype=torch.float64):
    return score_batch(f, a, b, spec, dtype=dtype)


def _images(n, c, h, w, kind, seed):
    g = torch.Generator().manual_seed(seed)
    if kind == "noise":
        return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    if kind == "smooth":
        base = torch.rand(n, c, max(2, h // 6), max(2, w // 6), generator=g) * 255
        up = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
        return (up + torch.randn(n, c, h, w, generator=g)).round().clamp(0, 255).to(torch.uint8)
    if kind == "flat":  # large flat areas: SSIM depends on float32 rounding there
        x = torch.full((n, c, h, w), 0, dtype=torch.uint8)
        x[..., : h // 2, :] = torch.randint(0, 256, (n, c, 1, 1), generator=g, dtype=torch.uint8)
        x[..., h // 2:, w // 3:] = 255
        return x
    raise ValueError(kind)


#: sha256 of ``np.round(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)).astype(np.uint8)`` for all 2^24 colours, the
#: colour with value v = R << 16 | G << 8 | B at position v of a float32 BGR image (opencv-python-headless
#: 5.1.0, default optimisations, x86-64 with AVX2/FMA): the CDDFuse evaluator's luma
OPENCV_LUMA_SHA256 = "b3d4434c569c6ba0d366f9ae652c8a3ee1188ef2df03ef2b9ff4fe27ff8a14ee"


def _every_colour():
    x = torch.arange(2 ** 24, dtype=torch.int64)
    return torch.stack([(x >> 16) & 255, (x >> 8) & 255, x & 255]).to(torch.uint8).view(1, 3, 4096, 4096)


def test_luma_is_opencvs_on_every_colour():
    import hashlib

    got = C.luma_rounded(_every_colour()).to(torch.uint8).numpy().tobytes()
    assert hashlib.sha256(got).hexdigest() == OPENCV_LUMA_SHA256
    # and the documented example of the optimised path: 100.50001 -> 101 where the plain sum gives 100.5 -> 100
    assert C.luma_rounded(torch.tensor([0, 138, 171], dtype=torch.uint8).view(1, 3, 1, 1)).item() == 101


def test_luma_matches_eager_on_every_colour():
    rgb = _every_colour()
    assert torch.equal(_native.luma(rgb).to(torch.float32), C.luma_rounded(rgb))


def test_first_pass_division_shortcut_is_exact():
    # scipy stores float32(double(s) / 7) for the integer window sums s of the first pass; the
    # kernel computes the correctly rounded float32 quotient (as the eager path's float32 division)
    s = np.arange(0, 7 * 255 * 255 + 1, dtype=np.float64)
    assert np.array_equal((s / 7).astype(np.float32), s.astype(np.float32) / np.float32(7))


def test_second_pass_division_by_one_multiplication_is_exact():
    # the horizontal pass rounds window sums t = m * 2^-26 (m < 2^45) as float32(t * RN64(1/7))
    # where scipy stores float32(t / 7); the kernel's comment proves they agree, checked here on
    # random sums of every magnitude and on the cases that could break it: sums that are exactly
    # 7 times a float32 midpoint, and their nearest neighbours on the 2^-26 grid
    rng = np.random.default_rng(0)
    inv7 = np.float64(1) / np.float64(7)
    m = np.concatenate([rng.integers(2 ** max(e - 1, 0), 2 ** e + 1, 50_000) for e in range(46)])
    t = m.astype(np.float64) * 2.0 ** -26
    assert np.array_equal((t * inv7).astype(np.float32), (t / 7).astype(np.float32))
    f = rng.uniform(0, 65025, 500_000).astype(np.float32)
    mid = (f.astype(np.float64) + np.nextafter(f, np.float32(np.inf)).astype(np.float64)) / 2
    t = 7 * mid
    t = t[t * 2.0 ** 26 == np.round(t * 2.0 ** 26)]  # on the grid of window sums
    assert len(t) > 400_000
    for k in (0, -1, 1, -2, 2):
        tk = t + k * 2.0 ** -26
        assert np.array_equal((tk * inv7).astype(np.float32), (tk / 7).astype(np.float32)), k


@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 17, 23), (2, 40, 31), (1, 64, 200)])
@pytest.mark.parametrize("kind", ["noise", "smooth", "flat"])
@pytest.mark.parametrize("chans", [(3, 1, 3), (1, 1, 1), (3, 3, 3)])
def test_native_matches_eager(shape, kind, chans):
    n, h, w = shape
    f, a, b = (_images(n, c, h, w, kind, seed) for c, seed in zip(chans, (1, 2, 3)))
    got = _native_scores(f, a, b, _all_native(h, w))
    want = _eager(f, a, b, _all_native(h, w))
    for k in want:
        g, e = got[k], want[k].to(torch.float64)
        assert torch.equal(torch.isinf(g), torch.isinf(e)), k
        fin = torch.isfinite(e)
        tol = 1e-12 if k == "SSIM" else 1e-8  # SSIM: the same float32 maps, summed in another order
        assert torch.allclose(g[fin], e[fin], rtol=tol, atol=1e-12), (k, g, e)


@pytest.mark.parametrize("w", [16, 17, 19, 21, 22, 29, 30, 37, 54, 55, 70, 71, 101, 646])
def test_native_ssim_every_segment_layout(w):
    # the SSIM kernel cuts each row into 8 interleaved segments of ceil((w - 6) / 8) columns;
    # widths around the multiples of 8 (and an odd number of columns per segment) hit its edges
    f, a, b = (_images(2, c, 19, w, "smooth", seed) for c, seed in ((3, 7), (1, 8), (3, 9)))
    got = _native_scores(f, a, b, "SSIM")["SSIM"]
    want = _eager(f, a, b, "SSIM")["SSIM"]
    assert torch.allclose(got, want, rtol=1e-12, atol=0), (got, want)


def test_float32_ag_square_roots():
    # float32 results: AG's per-pixel square roots are float32 (correctly rounded), so AG stays
    # within a few float32 ulps of the double value
    f, a, b = (_images(3, c, 48, 64, "noise", s) for c, s in ((3, 4), (1, 5), (3, 6)))
    ag64 = score_batch(f, a, b, "AG", dtype=torch.float64)["AG"]
    ag32 = score_batch(f, a, b, "AG", dtype=torch.float32)["AG"]
    assert ag32.dtype == torch.float32
    assert torch.allclose(ag32.double(), ag64, rtol=1e-7, atol=0)
    assert torch.allclose(ag64, _eager(f, a, b, "AG")["AG"].double(), rtol=1e-12, atol=0)


def test_constant_and_identical_images():
    f = torch.full((2, 1, 20, 20), 7, dtype=torch.uint8)
    got = _native_scores(f, f.clone(), torch.zeros_like(f), ALL_NATIVE)
    want = _eager(f, f.clone(), torch.zeros_like(f), ALL_NATIVE)
    for k in want:
        assert torch.allclose(got[k], want[k].to(torch.float64), rtol=1e-12, atol=1e-15), (k, got[k], want[k])


def test_float32_results_and_mixed_requests():
    f, a, b = (_images(2, c, 30, 30, "smooth", s) for c, s in ((3, 1), (1, 2), (3, 3)))
    spec = "EN,VIF,SSIM,Qabf,SSIM@vifb,MI"
    got = score_batch(f, a, b, spec, dtype=torch.float32)
    assert all(v.dtype == torch.float32 for v in got.values())
    assert list(got) == ["EN", "VIF", "SSIM", "Qabf", "SSIM@vifb", "MI"]
    want = _eager(f, a, b, "EN,VIF,SSIM,Qabf,MI", dtype=torch.float32)
    for k, v in want.items():
        assert torch.allclose(got[k], v.to(torch.float32), rtol=2e-6, atol=1e-6), k


def test_disabled_falls_back_to_eager(monkeypatch):
    f, a, b = (_images(2, c, 24, 24, "noise", s) for c, s in ((3, 1), (1, 2), (3, 3)))
    on = score_batch(f, a, b, ALL_NATIVE, dtype=torch.float64)
    monkeypatch.setenv("FUSIONBENCH_NATIVE", "0")
    assert _native.library() is None and not _native.usable(f, a, b)
    off = score_batch(f, a, b, ALL_NATIVE, dtype=torch.float64)
    for k in on:
        assert torch.allclose(on[k], off[k], rtol=1e-9, atol=1e-12), k


def test_channels_last_input_is_read_in_place():
    f, a, b = (_images(2, c, 45, 53, "smooth", s) for c, s in ((3, 1), (1, 2), (3, 3)))
    cl = [t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) for t in (f, a, b)]
    assert not cl[0].is_contiguous()
    assert torch.equal(_native.luma(cl[0]), _native.luma(f))
    got = score_batch(*cl, ALL_NATIVE, dtype=torch.float64)
    want = score_batch(f, a, b, ALL_NATIVE, dtype=torch.float64)
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_rgbx_view_is_read_in_place():
    f, a, b = (_images(2, c, 43, 50, "noise", s) for c, s in ((3, 1), (1, 2), (3, 3)))

    def rgbx(t):
        x = torch.full((t.shape[0], t.shape[2], t.shape[3], 4), 77, dtype=torch.uint8)
        x[..., :3] = t.permute(0, 2, 3, 1)
        return x.permute(0, 3, 1, 2)[:, :3]

    fx, bx = rgbx(f), rgbx(b)
    assert torch.equal(fx, f) and _native._u8(fx)[1] == -4
    got = score_batch(fx, a, bx, ALL_NATIVE + ",SSIM@vifb", dtype=torch.float64)
    want = score_batch(f, a, b, ALL_NATIVE + ",SSIM@vifb", dtype=torch.float64)
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_decode_matches_read_image(tmp_path):
    from PIL import Image

    from fusionbench.io import read_image
    from fusionbench.metrics.scoring import _decode

    g = np.random.default_rng(0)
    for mode, shape in (("RGB", (23, 31, 3)), ("L", (23, 31))):
        arr = g.integers(0, 256, shape).astype(np.uint8)
        for ext in ("png", "jpg"):
            p = tmp_path / f"{mode}.{ext}"
            Image.fromarray(arr, mode).save(p)
            got, want = _decode(p), read_image(p)
            assert np.array_equal(got[..., : want.shape[-1]], want) and got.shape[:2] == want.shape[:2]


def test_compile_failure_falls_back_to_eager(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSIONBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_status", "not loaded yet")
    assert _native.library() is None and _native.status().startswith("unavailable")
    f, a, b = (_images(1, c, 20, 20, "smooth", s) for c, s in ((3, 1), (1, 2), (3, 3)))
    out = score_batch(f, a, b, "EN,SSIM,VIF", dtype=torch.float64)
    want = _eager(f, a, b, "EN,SSIM,VIF")
    for k in want:
        assert torch.allclose(out[k], want[k], rtol=1e-12), k


def test_decode_of_an_image_in_several_memory_blocks(tmp_path):
    # Pillow holds images above its block size (16 MiB) in several blocks: no zero-copy view, the
    # already decoded pixels are copied the ordinary way (the file is not decoded twice)
    from PIL import Image

    from fusionbench.io import read_image
    from fusionbench.metrics.scoring import _decode

    arr = np.zeros((2100, 2100, 3), np.uint8)
    arr[::7, ::5] = (10, 200, 30)
    p = tmp_path / "big.png"
    Image.fromarray(arr).save(p, compress_level=1)
    got = _decode(p)
    assert np.array_equal(got[..., :3], read_image(p))


def test_parallel_scoring_matches_serial_and_restores_threads():
    # workers > 1: the calling thread and kept helper threads take chunks in turn
    f, a, b = (_images(12, c, 24, 24, "smooth", s) for c, s in ((3, 11), (1, 12), (3, 13)))
    n = torch.get_num_threads()
    serial = score_batch(f, a, b, ALL_NATIVE, dtype=torch.float64, chunk_pixels=24 * 24)
    for workers in (2, 3, 2):
        par = score_batch(f, a, b, ALL_NATIVE, dtype=torch.float64, chunk_pixels=24 * 24, workers=workers)
        assert all(torch.equal(par[k], serial[k]) for k in serial)
    assert torch.get_num_threads() == n


def test_parallel_scoring_reraises_a_chunk_failure(monkeypatch):
    from fusionbench.metrics import scoring

    calls = []

    def run(i, single):
        calls.append(i)
        if i == 3:
            raise RuntimeError("chunk 3 failed")
        return {"i": i}

    with pytest.raises(RuntimeError, match="chunk 3 failed"):
        scoring._run_parallel(run, list(range(6)), 2)
    assert 3 in calls
    assert scoring._run_parallel(lambda i, s: i * 2, [1, 2, 3], 3) == [2, 4, 6]


def test_a_folder_others_can_write_is_not_loaded_from(tmp_path):
    """The compiled library is only loaded from a folder and file of this user that no one else can write: a
    folder of another user (e.g. planted in a shared /tmp) is refused, the eager kernels run instead and
    status() says why; a lax folder of our own is made private and its library rebuilt."""
    import os
    import subprocess
    import sys

    planted = tmp_path / "cache"
    lib_dir = planted / "native"
    lib_dir.mkdir(parents=True)
    env = {**os.environ, "FUSIONBENCH_CACHE": str(planted)}
    code = "from fusionbench.metrics import _native; print(_native.status())"

    def status():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
        return out.stdout.strip() + out.stderr

    assert status() == "loaded"
    so = next(lib_dir.glob("fb_cddfuse_*.so"))
    lib_dir.chmod(0o777)
    so.write_bytes(b"tampered")  # someone wrote into our lax folder
    assert status() == "loaded" and (lib_dir.stat().st_mode & 0o777) == 0o700 and so.read_bytes() != b"tampered"
    # in a private folder, a library whose content differs from the hash recorded at build time is rebuilt
    good = so.read_bytes()
    so.write_bytes(good[:-16] + b"\0" * 16)
    assert status() == "loaded" and so.read_bytes() == good
    assert so.with_name(so.name + ".sha256").read_text().strip() == __import__("hashlib").sha256(good).hexdigest()
    if os.geteuid() == 0:  # can hand the folder to another user
        os.chown(lib_dir, 12345, 12345)
        assert "belongs to uid 12345, not to this user" in status()
