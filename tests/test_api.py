"""The public Python API (issue 14): README's examples as doctests, the input contract at every public entry
point (one exception type per problem), load_method."""
from __future__ import annotations

import doctest
from pathlib import Path

import pytest
import torch

import fusionbench
from fusionbench import functional as FB
from fusionbench.errors import (
    DataRangeError,
    DTypeError,
    ImageTooSmallError,
    InputError,
    MetricUndefinedError,
    ShapeError,
    SizeMismatchError,
    UnknownNameError,
    ValueRangeError,
    WeightsError,
)
from fusionbench.metrics import score_batch

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_section_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python"): text.index("## Metrics")]
    test = doctest.DocTestParser().get_doctest(section, {}, "README.md#python", str(ROOT / "README.md"), 0)
    assert len(test.examples) >= 10
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0


def _u8(*shape, seed=0):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_float_without_data_range_is_refused_everywhere():
    x = torch.rand(1, 1, 32, 32)
    for call in (lambda: fusionbench.score(x, x, x), lambda: score_batch(x, x, x, "EN"),
                 lambda: FB.en(x), lambda: fusionbench.load_method("average", device="cpu")(x, x)):
        with pytest.raises(DataRangeError, match="needs data_range"):
            call()


def test_float_with_data_range_scores_as_the_saved_image():
    x = torch.rand(2, 3, 44, 48, generator=torch.Generator().manual_seed(1))
    u8 = (x * 255).round().to(torch.uint8)
    for dr, scale in ((1.0, 1.0), (255.0, 255.0)):
        got = fusionbench.score(x * scale, x * scale, x.flip(-1) * scale, "all", data_range=dr)
        want = fusionbench.score(u8, u8, u8.flip(-1), "all")
        for k in want:
            torch.testing.assert_close(got[k], want[k], equal_nan=True)


@pytest.mark.parametrize("bad, exc, needle", [
    (torch.zeros(1, 2, 32, 32, dtype=torch.uint8), ShapeError, "C = 1 or 3"),
    (torch.zeros(2, 1, 1, 32, 32, dtype=torch.uint8), ShapeError, "got shape (2, 1, 1, 32, 32)"),
    (torch.zeros(1, 1, 0, 32, dtype=torch.uint8), ShapeError, "empty"),
    (torch.zeros(1, 1, 32, 32, dtype=torch.bool), DTypeError, "torch.bool"),
    ([[0, 1], [2, 3]], DTypeError, "expected a torch.Tensor"),
    (torch.full((1, 1, 32, 32), 300, dtype=torch.int32), ValueRangeError, "outside 0..255"),
    (torch.full((1, 1, 32, 32), 1.5), ValueRangeError, "outside [0, data_range=1]"),
    (torch.full((1, 1, 32, 32), float("nan")), ValueRangeError, "NaN"),
    (torch.zeros(1, 1, 8, 8, dtype=torch.uint8), ImageTooSmallError, "at least 16x16"),
    (torch.zeros(1, 1, 32, 33, dtype=torch.uint8), SizeMismatchError, "must share their size"),
])
def test_one_exception_type_per_problem(bad, exc, needle):
    good = torch.zeros(1, 1, 32, 32, dtype=torch.uint8) if not (isinstance(bad, torch.Tensor) and bad.ndim == 4
                                                                 and bad.shape[-1] == 8) else torch.zeros(1, 1, 8, 8,
                                                                                                        dtype=torch.uint8)
    with pytest.raises(exc) as e:
        fusionbench.score(bad, good, good, "EN", data_range=1.0)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, InputError)


def test_numpy_input_gets_a_hint():
    import numpy as np

    with pytest.raises(DTypeError, match="permute"):
        fusionbench.score(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8),
                          np.zeros((32, 32, 3), np.uint8))


def test_shapes_and_shared_sources():
    f = _u8(4, 3, 40, 48)
    a, b = _u8(1, 1, 40, 48, seed=1), _u8(40, 48, seed=2)  # N = 1 and (H, W): shared by the 4 fused images
    got = fusionbench.score(f, a, b, "EN,SSIM")
    want = fusionbench.score(f, a.expand(4, -1, -1, -1), b[None, None].expand(4, -1, -1, -1), "EN,SSIM")
    assert got["SSIM"].shape == (4,) and torch.equal(got["SSIM"], want["SSIM"])
    with pytest.raises(SizeMismatchError, match="holds 4 images but a holds 2"):
        fusionbench.score(f, _u8(2, 1, 40, 48), b)


def test_functional_matches_score_and_undefined_vif():
    f, a, b = _u8(2, 1, 48, 48), _u8(2, 1, 48, 48, seed=1), _u8(2, 1, 48, 48, seed=2)
    s = fusionbench.score(f, a, b, "all")
    for name in FB.__all__:
        fn = getattr(FB, name)
        label = {"qabf": "Qabf", "qcb": "Qcb", "qcv": "Qcv"}.get(name, name.upper())
        got = fn(f) if label in ("EN", "SD", "SF", "AG", "EI") else fn(f, a, b)
        torch.testing.assert_close(got, s[label])
    with pytest.raises(MetricUndefinedError):
        FB.vif(_u8(1, 1, 16, 40), _u8(1, 1, 16, 40), _u8(1, 1, 16, 40))


def test_load_method_contract_and_errors(tmp_path):
    avg = fusionbench.load_method("average", device="cpu")
    a, b = _u8(1, 1, 32, 32), _u8(1, 1, 32, 32, seed=1)
    assert torch.equal(avg(a, b), avg(a.float() / 255, b.float() / 255, data_range=1.0))
    with pytest.raises(ImageTooSmallError, match="at least 16x16"):
        avg(_u8(1, 1, 1, 1), _u8(1, 1, 1, 1))
    with pytest.raises(UnknownNameError, match="Did you mean"):
        fusionbench.load_method("gfff")
    bad = tmp_path / "ReFusion_IVIF.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError) as e:
        fusionbench.load_method("refusion", weights=str(bad), device="cpu")
    assert "weights_only" not in str(e.value) and str(bad) in str(e.value)


def test_top_level_exports():
    for name in ("score", "load_method", "read_tensor", "list_metrics", "list_methods", "functional", "errors"):
        assert getattr(fusionbench, name) is not None, name
    assert {m.name for m in fusionbench.list_metrics()} >= {"EN", "SSIM", "Qcb"}
