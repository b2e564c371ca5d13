"""ReFusion F inference at 480x640 on CPU, timed like the official measurement.

One timed call = read both files, the official protocol (Y, F, normalisation, colour), write the Gray
and the RGB file (the official loop writes both for this pair because the visible image has colour).
Model construction and checkpoint loading happen before timing; 1 warm-up, then 3 timed rounds, 2 threads.
Official code on this CPU: 10,372 ms per pair (median of 3; shared/reference/outputs/README.md).

Run: ``pytest benchmarks/bench_refusion_inference.py --benchmark-only`` (collect it explicitly; the file
name does not start with ``test_``). Weights: the official IVIF checkpoint when ../shared (or
$FUSIONBENCH_WEIGHTS) has it, else random weights (same cost). Input: msrs 00710N when present, else random.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fusionbench.errors import WeightsError
from fusionbench.io import read_image, write_image
from fusionbench.paths import data_dir, shared_dir
from fusionbench.refusion.nets import FusionNet
from fusionbench.refusion.official import ReFusionFuser
from fusionbench.registry import get_method
from fusionbench.weights import resolve

OFFICIAL_MS = 10_372.0  # official test.py loop body, 2 threads, same CPU


@pytest.fixture(scope="module")
def fuser():
    info = get_method("refusion")
    try:
        s = shared_dir()
        files = resolve(info, "ivif", (s / "weights") if s else None)
        return info.build(weights=files, task="ivif")
    except WeightsError:
        return ReFusionFuser(info, FusionNet().eval(), "ivif")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = data_dir()
    ir, vi = (d / "msrs" / "ir" / "00710N.png", d / "msrs" / "vi" / "00710N.png") if d else (None, None)
    if ir is None or not ir.is_file() or not vi.is_file():
        tmp = tmp_path_factory.mktemp("pair")
        g = np.random.default_rng(0)
        ir, vi = tmp / "ir.png", tmp / "vi.png"
        write_image(ir, g.integers(0, 256, (480, 640), dtype=np.uint8))
        write_image(vi, g.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    return Path(ir), Path(vi)


CPU_S: list[float] = []


def _one_pair(fz: ReFusionFuser, ir: Path, vi: Path, out: Path):
    t0 = time.process_time()
    a = torch.from_numpy(np.array(read_image(ir))).permute(2, 0, 1)[None].to(fz.device)
    b = torch.from_numpy(np.array(read_image(vi))).permute(2, 0, 1)[None].to(fz.device)
    res = fz.fuse_outputs(a, b)
    write_image(out / "Gray" / "00710N.png", res.gray[0].permute(1, 2, 0).cpu().numpy())
    if res.rgb is not None and bool(res.has_rgb[0]):
        write_image(out / "RGB" / "00710N.png", res.rgb[0].permute(1, 2, 0).cpu().numpy())
    CPU_S.append(time.process_time() - t0)
    return res


def test_refusion_inference_480x640(benchmark, fuser, pair, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ir, vi = pair
        res = benchmark.pedantic(_one_pair, args=(fuser, ir, vi, tmp_path), rounds=3, warmup_rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    assert res.gray.shape[-2:] == (480, 640)
    assert (tmp_path / "Gray" / "00710N.png").is_file()
    med_ms = statistics.median(benchmark.stats.stats.data) * 1000
    cpu_ms = statistics.median(CPU_S[-3:]) * 1000  # process CPU time (both threads): a load-independent hint
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    benchmark.extra_info.update(official_ms=OFFICIAL_MS, median_ms=round(med_ms, 1), cpu_ms=round(cpu_ms, 1),
                                speedup=round(OFFICIAL_MS / med_ms, 2), loadavg_1min=round(load, 2))
    print(f"\nReFusion 480x640 full pair: {med_ms:.0f} ms wall, {cpu_ms:.0f} ms CPU (official {OFFICIAL_MS:.0f} ms wall): "
          f"{OFFICIAL_MS / med_ms:.2f}x; 1-min load average {load:.2f} (2 cores; wall time grows sharply with load)")
