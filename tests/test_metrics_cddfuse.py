"""Parity of the ``cddfuse`` preset with the CDDFuse evaluator's values in ../shared/reference.

Every value of cddfuse_tno.csv (6 methods x 42 images x 12 metrics) and cddfuse_vifb.csv
(8 methods x 21 images x 12 metrics) must match to relative 1e-4 (absolute 1e-6 near zero) in
float64. One test per dataset and method, so a failure names them; the message lists the worst
values. Images are batched by size, as ``fusionbench score`` does.
"""
from __future__ import annotations

import functools
import os
from collections import defaultdict

import pytest
import torch

from fusionbench.io import read_image
from fusionbench.metrics import get_metric, parse_metrics, score_batch
from fusionbench.paths import shared_dir

RTOL, ATOL = 1e-4, 1e-6
WORKERS = min(4, os.cpu_count() or 1)
TNO_METHODS = ("DenseFuse", "FusionGAN", "IFCNN", "RFN-Nest", "SeAFusion", "U2Fusion")
VIFB_METHODS = ("ADF", "CBF", "CNN", "GFF", "IFCNN", "MSVD", "SeAFusion", "U2Fusion")
CASES = [("tno", m) for m in TNO_METHODS] + [("vifb", m) for m in VIFB_METHODS]


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_ops():
    """Parallelism comes from WORKERS threads over images; one intra-op thread each."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.cache
def _reference(dataset: str):
    import pandas as pd

    shared = shared_dir()
    if shared is None:
        pytest.skip("../shared not found (set FUSIONBENCH_SHARED): no CDDFuse reference values")
    path = shared / "reference" / f"cddfuse_{dataset}.csv"
    if not path.is_file() or not (shared / "data" / dataset).is_dir():
        pytest.skip(f"{path} or {shared / 'data' / dataset} not found in ../shared")
    return shared, pd.read_csv(path, dtype={"image": str})


def _tensor(path):
    return torch.from_numpy(read_image(path).copy()).permute(2, 0, 1)


def score_method(dataset: str, method: str, dtype=torch.float64):
    """{(image, metric name as in the CSV): value} for one method, scored in size batches."""
    shared, ref = _reference(dataset)
    sub = ref[ref["method"] == method]
    names = list(dict.fromkeys(sub["metric"]))
    requests = parse_metrics(names, preset="cddfuse")
    root = shared / "data" / dataset
    ext = ".png" if dataset == "tno" else ".jpg"
    groups = defaultdict(list)
    for stem in sorted(sub["image"].unique()):
        trip = tuple(_tensor(root / d / f"{stem}{ext}") for d in (f"fused/{method}", "ir", "vi"))
        groups[tuple(t.shape for t in trip)].append((stem, trip))
    out = {}
    for items in groups.values():
        f, a, b = (torch.stack([t[j] for _, t in items]) for j in range(3))
        vals = score_batch(f, a, b, requests, dtype=dtype, workers=WORKERS)
        for name, req in zip(names, requests):
            for i, (stem, _) in enumerate(items):
                out[(stem, name)] = vals[req.label][i].item()
    return sub, out


def relative_errors(sub, ours):
    rows = []
    for img, metric, value in sub[["image", "metric", "value"]].itertuples(index=False):
        got = ours[(img, metric)]
        rows.append((abs(got - value) / max(abs(value), 1e-12), abs(got - value), img, metric, got, value))
    return rows


@pytest.fixture(params=["native", "eager"])
def kernel_path(request, monkeypatch):
    """Run a test on the native CPU kernels (when they build here) and on the eager torch kernels."""
    from fusionbench.metrics import _native

    if request.param == "eager":
        monkeypatch.setenv("FUSIONBENCH_NATIVE", "0")
    elif _native.library() is None:
        pytest.skip(f"native kernels: {_native.status()}")
    return request.param


@pytest.mark.parametrize("dataset,method", CASES, ids=[f"{d}-{m}" for d, m in CASES])
def test_cddfuse_parity(dataset, method, kernel_path):
    sub, ours = score_method(dataset, method)
    assert len(ours) == len(sub)
    bad = [r for r in relative_errors(sub, ours) if r[1] > max(RTOL * abs(r[5]), ATOL)]
    bad.sort(reverse=True)
    msg = "; ".join(f"{img} {m}: ours {g!r} ref {v!r} (rel {rel:.2g})" for rel, _, img, m, g, v in bad[:8])
    assert not bad, f"{len(bad)} of {len(sub)} values off: {msg}"


def test_reference_metric_names_resolve():
    """The CSV's metric names (e.g. VIFF) are aliases the registry knows."""
    assert get_metric("VIFF").name == "VIF"
    assert [get_metric(n).name for n in ("EN", "SD", "SF", "AG", "MI", "SCD", "Qabf", "SSIM", "MSE", "CC", "PSNR")] == \
        ["EN", "SD", "SF", "AG", "MI", "SCD", "Qabf", "SSIM", "MSE", "CC", "PSNR"]


def test_float32_close_to_reference(kernel_path):
    """The float32 default stays within 1e-6 of the reference (SSIM and VIF are computed the
    reference's way whatever the dtype; the rest carries float32 rounding)."""
    for dataset, method in (("vifb", "SeAFusion"), ("tno", "DenseFuse")):
        sub, ours = score_method(dataset, method, dtype=torch.float32)
        worst = max(relative_errors(sub, ours))
        assert worst[0] < 1e-6 or worst[1] < 1e-6, worst
