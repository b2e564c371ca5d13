"""Per-pair inference time of every native port (and ReFusion) at 480x640, against the official code.

The official code's times per pair on this CPU with 2 threads are read from
``shared/reference/outputs/README.md`` (they include reading both files, the official pre- and
post-processing, the forward pass and writing the output); ours are timed the same way: read the
MSRS pair 00710N, fuse, write a PNG. Run with ``pytest benchmarks/bench_ports.py --benchmark-only``.
"""
from __future__ import annotations

import re

import pytest
import torch

from fusionbench.fusing import PairJob, fuse_pairs
from fusionbench.paths import shared_dir

# registry name (+ options) -> row name in the official timing table
PORTS = {
    "ifcnn": "ifcnn (MAX)",
    "densefuse": "densefuse (gray, addition)",
    "didfuse": "didfuse",
    "seafusion": "seafusion",
    "tardal": "tardal (`tardal.pt`, `--color`, train-mode BN)",
    "lrrnet": "lrrnet",
    "datfuse": "datfuse",
    "refusion": "refusion_ivif",
}


def official_ms() -> dict[str, float]:
    sd = shared_dir()
    if sd is None:
        return {}
    text = (sd / "reference" / "outputs" / "README.md").read_text()
    out = {}
    for row in re.finditer(r"^\| ([^|]+?) \| (\d+) \|", text, re.M):
        out[row.group(1).strip()] = float(row.group(2))
    return out


@pytest.fixture(scope="module")
def pair():
    sd = shared_dir()
    if sd is None:
        pytest.skip("../shared not found: the 480x640 MSRS pair and the official timings live there")
    return sd / "data" / "msrs" / "ir" / "00710N.png", sd / "data" / "msrs" / "vi" / "00710N.png"


@pytest.mark.parametrize("name", list(PORTS))
def test_port_speed(benchmark, name, pair, tmp_path, monkeypatch):
    from fusionbench.registry import get_method
    from fusionbench.weights import resolve

    monkeypatch.setenv("FUSIONBENCH_WEIGHTS", str(shared_dir() / "weights"))
    try:
        info = get_method(name)
    except KeyError:
        pytest.skip(f"{name} is not registered")
    fuser = info.build(weights=resolve(info, "ivif"), device=torch.device("cpu"), task="ivif")
    job = PairJob("00710N", pair[0], pair[1], tmp_path / "out.png")

    def once():
        rep = fuse_pairs(fuser, [job], batch_size=1, is_done=lambda j: False, progress=False)
        assert rep.ok, rep.failed

    benchmark.pedantic(once, rounds=3, warmup_rounds=1, iterations=1)
    ours_ms = benchmark.stats.stats.median * 1000
    ref = official_ms().get(PORTS[name])
    benchmark.extra_info.update({"ours_ms": round(ours_ms, 1), "official_ms": ref,
                                 "speedup": round(ref / ours_ms, 2) if ref else None})
    if ref:
        print(f"\n{name}: {ours_ms:.0f} ms per pair, official {ref:.0f} ms, {ref / ours_ms:.2f}x")
