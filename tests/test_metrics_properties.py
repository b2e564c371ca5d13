"""Property tests (hypothesis) and registry behaviour of the metrics.

* a batch scores the same as its items one by one;
* SSIM of an image with itself is the preset's maximum (2: a sum over the two sources);
* EN of a constant image is 0;
* metrics that are symmetric in the two sources are;
* constant images never give NaN.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusionbench.errors import UnknownNameError, UsageError
from fusionbench.metrics import (
    DEFAULT_PRESET,
    PRESETS,
    get_metric,
    get_preset,
    list_metrics,
    parse_metrics,
    score_batch,
)
from fusionbench.metrics import functional as FM


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_ops():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AVAILABLE = [p for p in PRESETS if get_preset(p).available]


def _images(seed: int, n: int, c: int, h: int, w: int, kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "noise":
        return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    if kind == "smooth":  # low-frequency content with flat patches, like real images
        base = torch.rand(n, c, h // 4 + 1, w // 4 + 1, generator=g) * 255
        up = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
        return up.round().clamp(0, 255).to(torch.uint8)
    levels = torch.randint(0, 256, (n, 1, 1, 1), generator=g)
    return levels.expand(n, c, h, w).to(torch.uint8).contiguous()  # constant per image


shapes = st.tuples(st.integers(1, 3), st.sampled_from([1, 3]), st.integers(16, 40), st.integers(16, 40))
kinds = st.sampled_from(["noise", "smooth", "constant"])


def _all(preset, h=None, w=None):
    """Every metric of the preset; without VIF at sizes where the evaluator's VIF is undefined (it raises there,
    see test_vif_small_sizes_follow_the_evaluator)."""
    reqs = parse_metrics("all", preset=preset)
    if h is not None and not FM.vif_defined(h, w):
        reqs = [r for r in reqs if r.metric.name != "VIF"]
    return reqs


@pytest.mark.parametrize("preset", AVAILABLE)
@SETTINGS
@given(seed=st.integers(0, 2 ** 31 - 1), shape=shapes, kf=kinds, ka=kinds, kb=kinds, ca=st.sampled_from([1, 3]))
def test_batch_equals_items(preset, seed, shape, kf, ka, kb, ca):
    n, c, h, w = shape
    f = _images(seed, n, c, h, w, kf)
    a = _images(seed + 1, n, ca, h, w, ka)
    b = _images(seed + 2, n, 3, h, w, kb)
    reqs = _all(preset, h, w)
    whole = score_batch(f, a, b, reqs, dtype=torch.float64)
    for i in range(n):
        one = score_batch(f[i: i + 1], a[i: i + 1], b[i: i + 1], reqs, dtype=torch.float64)
        for k, v in one.items():
            torch.testing.assert_close(whole[k][i: i + 1], v, rtol=1e-9, atol=1e-10, equal_nan=False,
                                       msg=lambda m, k=k: f"{preset} {k}: {m}")


@pytest.mark.parametrize("preset", AVAILABLE)
@SETTINGS
@given(seed=st.integers(0, 2 ** 31 - 1), shape=shapes, kind=kinds)
def test_ssim_of_itself_is_the_maximum(preset, seed, shape, kind):
    n, c, h, w = shape
    x = _images(seed, n, c, h, w, kind)
    for dtype in (torch.float32, torch.float64):
        s = score_batch(x, x, x, "SSIM", dtype=dtype, preset=preset)["SSIM"]
        torch.testing.assert_close(s, torch.full_like(s, 2.0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("preset", AVAILABLE)
@SETTINGS
@given(seed=st.integers(0, 2 ** 31 - 1), shape=shapes)
def test_entropy_of_constant_is_zero(preset, seed, shape):
    n, c, h, w = shape
    x = _images(seed, n, c, h, w, "constant")
    y = _images(seed + 1, n, c, h, w, "noise")
    en = score_batch(x, y, y, "EN", dtype=torch.float64, preset=preset)["EN"]
    assert torch.equal(en, torch.zeros_like(en)), en
    assert not torch.signbit(en).any()  # +0.0, not -0.0


@pytest.mark.parametrize("preset", AVAILABLE)
@SETTINGS
@given(seed=st.integers(0, 2 ** 31 - 1), shape=shapes, ka=kinds, kb=kinds)
def test_two_source_metrics_are_symmetric(preset, seed, shape, ka, kb):
    n, c, h, w = shape
    f = _images(seed, n, c, h, w, "smooth")
    a = _images(seed + 1, n, c, h, w, ka)
    b = _images(seed + 2, n, c, h, w, kb)
    reqs = [r for r in _all(preset, h, w) if r.metric.needs_sources]
    ab = score_batch(f, a, b, reqs, dtype=torch.float64)
    ba = score_batch(f, b, a, reqs, dtype=torch.float64)
    for k in ab:
        torch.testing.assert_close(ab[k], ba[k], rtol=1e-9, atol=1e-10, msg=lambda m, k=k: f"{preset} {k}: {m}")


@pytest.mark.parametrize("preset", AVAILABLE)
@SETTINGS
@given(seed=st.integers(0, 2 ** 31 - 1), shape=shapes, which=st.sampled_from(["f", "a", "b", "all", "ab"]),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_constant_images_never_nan(preset, seed, shape, which, dtype):
    n, c, h, w = shape
    f, a, b = (_images(seed + i, n, c, h, w, "constant" if (r in which or which == "all") else "smooth")
               for i, r in enumerate("fab"))
    out = score_batch(f, a, b, _all(preset, h, w), dtype=dtype)
    for k, v in out.items():
        assert not torch.isnan(v).any(), f"{preset} {k} gives NaN for constant {which}: {v}"
        if not k.startswith("PSNR"):
            assert torch.isfinite(v).all(), f"{preset} {k} is infinite for constant {which}: {v}"


@SETTINGS
@given(seed=st.integers(0, 2 ** 31 - 1), shape=shapes, kind=st.sampled_from(["noise", "smooth"]))
def test_float32_close_to_float64(seed, shape, kind):
    n, c, h, w = shape
    f, a, b = (_images(seed + i, n, c, h, w, kind) for i in range(3))
    reqs = _all("cddfuse", h, w)
    lo = score_batch(f, a, b, reqs, dtype=torch.float32)
    hi = score_batch(f, a, b, reqs, dtype=torch.float64)
    for k in lo:
        assert lo[k].dtype == torch.float32 and hi[k].dtype == torch.float64
        torch.testing.assert_close(lo[k].double(), hi[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_documented_degenerate_values():
    x = torch.full((1, 1, 48, 48), 100, dtype=torch.uint8)
    y = _images(3, 1, 1, 48, 48, "smooth")
    out = score_batch(y, x, x, "SCD,CC,VIF,Qabf,MI", dtype=torch.float64)
    assert out["SCD"].item() == 0.0 and out["CC"].item() == 0.0 and out["MI"].item() == 0.0
    assert out["VIF"].item() == 2.0  # each constant source contributes 1
    # zero padding gives a constant non-zero image border gradients; an all-zero one has none
    zero = torch.zeros_like(x)
    assert score_batch(y, zero, zero, "Qabf", dtype=torch.float64)["Qabf"].item() == 0.0
    same = score_batch(x, x, x, "PSNR,MSE", dtype=torch.float64)
    assert same["PSNR"].item() == math.inf and same["MSE"].item() == 0.0


def test_functional_api_matches_preset():
    f, a, b = (_images(s, 2, 1, 44, 50, "smooth") for s in range(3))
    out = score_batch(f, a, b, "EN,SD,SF,AG,SCD,MI,CC,MSE,PSNR,VIF,Qabf", dtype=torch.float64)
    ff, fa, fb = (t.double() for t in (f, a, b))
    for name, fn in [("EN", lambda: FM.entropy(ff)), ("SD", lambda: FM.standard_deviation(ff)),
                     ("SF", lambda: FM.spatial_frequency(ff)), ("AG", lambda: FM.average_gradient(ff)),
                     ("SCD", lambda: FM.scd(ff, fa, fb)), ("MI", lambda: FM.mutual_information(ff, fa, fb)),
                     ("CC", lambda: FM.correlation_coefficient(ff, fa, fb)), ("MSE", lambda: FM.mse(ff, fa, fb)),
                     ("PSNR", lambda: FM.psnr(ff, fa, fb)), ("VIF", lambda: FM.vif(ff, fa, fb)),
                     ("Qabf", lambda: FM.qabf(ff, fa, fb))]:
        torch.testing.assert_close(fn(), out[name], rtol=1e-12, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")
    # native float64 SSIM is within float32 noise of the skimage-float32 emulation the preset uses
    native = FM.ssim(ff, fa, fb)
    emulated = FM.ssim(ff, fa, fb, emulate="skimage-float32")
    torch.testing.assert_close(native, emulated, rtol=1e-3, atol=1e-3)


def test_functional_checks_inputs():
    with pytest.raises(ValueError, match="N, C, H, W"):
        FM.entropy(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="shape"):
        FM.mse(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="at least 7x7"):
        FM.ssim(*(torch.zeros(1, 1, 5, 5),) * 3)


# ------------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------------
def test_registry_lookup_and_aliases():
    assert get_metric("viff") is get_metric("VIF") is get_metric("VIFp")
    assert get_metric("QAB/F").name == "Qabf" and get_metric("q_abf").name == "Qabf"
    assert get_metric("scd").name == "SCD" and get_metric("Mutual_Information").name == "MI"
    info = get_metric("SSIM")
    assert info.higher_is_better and info.needs_sources and info.description
    assert not get_metric("EN").needs_sources and not get_metric("MSE").higher_is_better
    assert {m.name for m in list_metrics()} >= {"EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR",
                                                 "MSE", "RMSE", "CC"}
    assert DEFAULT_PRESET == "cddfuse" and PRESETS == ("cddfuse", "vifb")
    for m in list_metrics("cddfuse"):
        fid = m.presets["cddfuse"].fidelity
        assert fid == "reference" or fid.startswith("extension: "), (m.name, fid)


def test_unknown_metric_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean: SSIM") as e:
        get_metric("SSMI")
    assert e.value.exit_code == 2


def test_parse_metrics_labels_and_presets():
    reqs = parse_metrics("EN, ssim@vifb,SSIM,en", preset="cddfuse") if "vifb" in AVAILABLE else \
        parse_metrics("EN,SSIM,en", preset="cddfuse")
    labels = [r.label for r in reqs]
    assert labels[0] == "EN" and "SSIM" in labels and labels.count("EN") == 1
    if "vifb" in AVAILABLE:
        assert "SSIM@vifb" in labels
        v = parse_metrics("SSIM,SSIM@cddfuse", preset="vifb")
        assert [r.label for r in v] == ["SSIM", "SSIM@cddfuse"] and v[0].preset == "vifb"
        assert len(parse_metrics("all@vifb")) == len(list_metrics("vifb"))
    assert [r.label for r in parse_metrics("all")] == [m.name for m in list_metrics("cddfuse")]
    assert [r.label for r in parse_metrics(["EN,SD", "SF"])] == ["EN", "SD", "SF"]
    with pytest.raises(UnknownNameError, match="preset"):
        parse_metrics("EN@cdfuse")
    with pytest.raises(UsageError, match="no metrics"):
        parse_metrics(" , ")
