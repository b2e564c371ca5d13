"""Overhead of ``fusionbench eval`` beyond scoring, on a run whose fused outputs are cached (issue 6, item 8).

Run with ``pytest benchmarks/bench_eval.py --benchmark-only``. A dataset of ``N_PAIRS`` (default
1,000; ``FUSIONBENCH_BENCH_PAIRS`` overrides) 480x640 infrared-visible pairs is laid out as a
generic ``ir/`` + ``vi/`` folder with one method's outputs beside it (VIFB's images resized, or
smooth synthetic images when ../shared is absent; the 64 distinct triples are repeated under
distinct file names, so every file is read, hashed and scored for itself).

Timed, in the same process:

* ``score_files`` alone on the same 1,000 triples: the throughput of the metrics front end
  (what ``benchmarks/bench_metrics.py`` measures on its file scenario);
* ``fusionbench eval`` (in-process through click) on that dataset with the method's outputs already
  in the run folder's cache but no cached scores: dataset discovery, input hashing, cache checks,
  scoring, the per-image score cache, scores.csv, summary.csv, provenance.json and the three tables;
* the same eval once everything is cached (nothing to fuse or score).

Overhead = eval / score_files - 1; target < 10 %. Figures (matplotlib) are timed separately, they
are a report of the run rather than part of the evaluation loop.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fusionbench.cli.main import cli
from fusionbench.io import write_image
from fusionbench.metrics import parse_metrics
from fusionbench.metrics.scoring import score_files
from fusionbench.paths import shared_dir

N_PAIRS = int(os.environ.get("FUSIONBENCH_BENCH_PAIRS", "1000"))
N_DISTINCT = 64
H, W = 480, 640
CORE = "EN,SD,SF,AG,SCD,SSIM"
RESULTS: dict[str, float] = {}


def _distinct_triples(root: Path):
    """N_DISTINCT (fused, ir, vi) PNG triples at 480x640 written under ``root/base``."""
    from PIL import Image

    s = shared_dir()
    vifb = s / "data" / "vifb" if s else None
    base = root / "base"
    out = []
    if vifb is not None and (vifb / "fused").is_dir():
        methods = ["ADF", "CBF", "CNN", "GFF", "IFCNN", "MSVD", "SeAFusion", "U2Fusion"]
        stems = sorted(p.stem for p in (vifb / "vi").glob("*.jpg"))
        src = [(vifb / "fused" / m / f"{st}.jpg", vifb / "ir" / f"{st}.jpg", vifb / "vi" / f"{st}.jpg")
               for st in stems for m in methods][:N_DISTINCT]
        what = f"VIFB triples resized to {W}x{H}"
        for i, (fp, ap, bp) in enumerate(src):
            trip = []
            for role, p, mode in (("fused", fp, "L"), ("ir", ap, "L"), ("vi", bp, "RGB")):
                q = base / role / f"{i:03d}.png"
                write_image(q, np.asarray(Image.open(p).convert(mode).resize((W, H), Image.BICUBIC)))
                trip.append(q)
            out.append(trip)
    else:
        what = f"synthetic smooth {W}x{H} triples (../shared not found)"
        g = torch.Generator().manual_seed(0)
        for i in range(N_DISTINCT):
            trip = []
            for role, c in (("fused", 1), ("ir", 1), ("vi", 3)):
                lo = torch.rand(1, c, H // 8, W // 8, generator=g) * 255
                img = torch.nn.functional.interpolate(lo, size=(H, W), mode="bicubic", align_corners=False)
                img = img.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).squeeze(-1).numpy()
                q = base / role / f"{i:03d}.png"
                write_image(q, img)
                trip.append(q)
            out.append(trip)
    return what, out


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_eval")
    what, base = _distinct_triples(root)
    data, fused = root / "data", root / "outputs"
    for d in (data / "ir", data / "vi", fused):
        d.mkdir(parents=True)
    triples = []
    for i in range(N_PAIRS):
        stem = f"p{i:04d}"
        fp, ap, bp = base[i % len(base)]
        for src, dst in ((fp, fused / f"{stem}.png"), (ap, data / "ir" / f"{stem}.png"), (bp, data / "vi" / f"{stem}.png")):
            shutil.copyfile(src, dst)
        triples.append((stem, fused / f"{stem}.png", data / "ir" / f"{stem}.png", data / "vi" / f"{stem}.png"))
    run_dir = root / "run"
    args = ["eval", "--methods", "none-registered", "--data", str(data), "--results", f"Outputs={fused}",
            "--metrics", CORE, "--out", str(run_dir), "--device", "cpu", "-q", "--no-figures"]
    r = CliRunner().invoke(cli, args)  # first run: copies the outputs into the cache and scores them
    assert r.exit_code == 0, r.output
    return what, triples, run_dir, args


def _eval(args):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output


def test_score_files_alone(benchmark, layout):
    what, triples, _, _ = layout
    reqs = parse_metrics(CORE, preset="cddfuse")

    def run():
        res = list(score_files(triples, reqs, progress=False))
        assert len(res) == len(triples) and all(err is None for _, _, err in res)

    benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=0)
    RESULTS["score_files"] = benchmark.stats.stats.min
    benchmark.extra_info.update({"pairs": len(triples), "data": what,
                                 "images_per_s": round(len(triples) / benchmark.stats.stats.min, 2)})


def test_eval_cached_fusion(benchmark, layout):
    """Outputs cached, scores not: everything eval does besides fusing."""
    what, triples, run_dir, args = layout

    def setup():
        shutil.rmtree(run_dir / "scores", ignore_errors=True)

    benchmark.pedantic(lambda: _eval(args), setup=setup, rounds=2, iterations=1, warmup_rounds=0)
    RESULTS["eval"] = benchmark.stats.stats.min
    benchmark.extra_info.update({"pairs": len(triples), "data": what})


def test_eval_fully_cached(benchmark, layout):
    """Nothing to fuse or score: the cost of checking a 1,000-pair run is up to date."""
    _, triples, _, args = layout
    _eval(args)
    benchmark.pedantic(lambda: _eval(args), rounds=2, iterations=1, warmup_rounds=0)
    RESULTS["eval_cached"] = benchmark.stats.stats.min
    benchmark.extra_info.update({"pairs": len(triples)})


def test_figures(benchmark, layout):
    from fusionbench.runner.figures import write_figures

    _, _, run_dir, _ = layout
    benchmark.pedantic(lambda: write_figures(run_dir), rounds=1, iterations=1, warmup_rounds=0)
    RESULTS["figures"] = benchmark.stats.stats.min


@pytest.fixture(autouse=True, scope="module")
def _report(request):
    yield
    if "score_files" not in RESULTS or "eval" not in RESULTS:
        return
    s, e = RESULTS["score_files"], RESULTS["eval"]
    lines = ["", f"eval overhead on {N_PAIRS} cached pairs ({CORE}, cddfuse), best of 2:",
             f"  score_files alone        {s:7.2f} s  ({N_PAIRS / s:6.1f} img/s)",
             f"  eval, outputs cached     {e:7.2f} s  ({N_PAIRS / e:6.1f} img/s)   overhead {100 * (e / s - 1):+.1f} %"]
    if "eval_cached" in RESULTS:
        lines.append(f"  eval, everything cached  {RESULTS['eval_cached']:7.2f} s")
    if "figures" in RESULTS:
        lines.append(f"  figures (separate)       {RESULTS['figures']:7.2f} s")
    lines.append(f"  load average {os.getloadavg()[0]:.1f} at {time.strftime('%H:%M')}")
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is not None and capman is not None:
        with capman.global_and_fixture_disabled():
            tr.ensure_newline()
            for ln in lines:
                tr.write_line(ln)
