"""Cost of one ReFusion meta-iteration (phases 1-3) against a plain supervised step of F and R.

* ``plain``: phase 3 alone on a batch (P evaluated under no_grad, F steps on L_f, R on L_r) - what a
  training loop without meta-learning does per batch;
* ``meta``: one full meta-iteration on the same batch shapes: phase 1 (differentiable inner step of F and
  R on a meta-train batch), phase 2 (L_r of F', R' on a meta-test batch, gradient to P, P steps) and
  phase 3. With ``meta.meta_every = k`` the amortised cost per iteration is ``plain + (meta - plain) / k``.

Default sizes: the official F, R, P (59,856 / 59,648 / 89,058 parameters; P symmetric, as in the default config: with
the swapped-input doubling one P pass serves both orders), batch 2 pairs (4 after the
swapped-input doubling, as in training), 96x96 crops, float32. Each mode runs in a fresh subprocess so its
peak memory is its own: peak resident set size above the process's RSS before the first step
(``resource.getrusage``; CPU) or ``torch.cuda.max_memory_allocated`` (CUDA). Times: median of the
timed rounds after warm-up rounds.

Run: ``python benchmarks/bench_refusion_meta.py [--crop 96] [--batch 2] [--threads 1] [--rounds 5]``, or
``pytest benchmarks/bench_refusion_meta.py --benchmark-only`` (the file is collected explicitly). Target:
ratio <= 4.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TARGET_RATIO = 4.0


def _rss_now_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def child(mode: str, crop: int, batch: int, threads: int, rounds: int, warmup: int, device: str) -> dict:
    import torch

    from fusionbench.refusion.meta import MetaLearner, MetaOptions, NormalizedSGD
    from fusionbench.refusion.nets import FusionNet, ProposalNet, ReconNet

    torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    F, R, P = FusionNet().to(dev), ReconNet().to(dev), ProposalNet(symmetric=True).to(dev)
    learner = MetaLearner(F, R, P, torch.optim.Adam(F.parameters(), 1e-4), torch.optim.Adam(R.parameters(), 1e-4),
                          NormalizedSGD(P.parameters(), 1e-4), MetaOptions(meta_every=1))
    g = torch.Generator().manual_seed(1)
    batches = [torch.rand(batch, 2, crop, crop, generator=g).to(dev) for _ in range(3)]

    def one():
        if mode == "plain":
            learner.fusion_phase(batches[0], 0.5)
        else:
            learner.step(0, batches[0], lambda: (batches[1], batches[2]), 0.5)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    base_rss = _rss_now_kb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        one()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        one()
        times.append(time.perf_counter() - t)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        mem_kind = "cuda max_memory_allocated"
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
        mem_kind = "peak RSS above pre-step RSS"
    return {"mode": mode, "median_s": statistics.median(times), "times_s": times, "peak_mb": peak_mb,
            "mem_kind": mem_kind}


def run(crop: int = 96, batch: int = 2, threads: int = 1, rounds: int = 5, warmup: int = 2,
        device: str = "cpu") -> dict:
    out = {}
    for mode in ("plain", "meta"):
        cmd = [sys.executable, __file__, "--_child", mode, "--crop", str(crop), "--batch", str(batch),
               "--threads", str(threads), "--rounds", str(rounds), "--warmup", str(warmup), "--device", device]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    ratio = out["meta"]["median_s"] / out["plain"]["median_s"]
    out["ratio"] = ratio
    out["setup"] = {"crop": crop, "batch_pairs": batch, "effective_batch": 2 * batch, "threads": threads,
                    "rounds": rounds, "warmup": warmup, "device": device}
    return out


def report(r: dict) -> str:
    p, m = r["plain"], r["meta"]
    s = r["setup"]
    lines = [
        f"ReFusion meta-iteration benchmark: {s['crop']}x{s['crop']} crops, {s['batch_pairs']} pairs "
        f"(x2 swapped), {s['threads']} thread(s), {s['device']}, median of {s['rounds']}",
        f"  plain step (phase 3)        : {p['median_s'] * 1000:8.0f} ms   peak {p['peak_mb']:7.1f} MB",
        f"  meta-iteration (phases 1-3) : {m['median_s'] * 1000:8.0f} ms   peak {m['peak_mb']:7.1f} MB",
        f"  ratio meta / plain          : {r['ratio']:.2f}x (target <= {TARGET_RATIO:g}x)",
    ]
    for k in (2, 5):
        lines.append(f"  amortised with meta_every={k}: {1 + (r['ratio'] - 1) / k:.2f}x")
    lines.append(f"  memory = {m['mem_kind']}")
    return "\n".join(lines)


def test_meta_iteration_ratio(benchmark):
    """pytest-benchmark entry: times the meta-iteration (benchmark stats) and a plain step in-process
    (1 thread, 96x96, 2 pairs) and records the ratio; peak memory comes from the standalone run."""
    import torch

    from fusionbench.refusion.meta import MetaLearner, MetaOptions, NormalizedSGD
    from fusionbench.refusion.nets import FusionNet, ProposalNet, ReconNet

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        F, R, P = FusionNet(), ReconNet(), ProposalNet(symmetric=True)
        learner = MetaLearner(F, R, P, torch.optim.Adam(F.parameters(), 1e-4), torch.optim.Adam(R.parameters(), 1e-4),
                              NormalizedSGD(P.parameters(), 1e-4), MetaOptions(meta_every=1))
        g = torch.Generator().manual_seed(1)
        x, xt, xs = (torch.rand(2, 2, 96, 96, generator=g) for _ in range(3))
        plain = []
        learner.fusion_phase(x, 0.5)
        for _ in range(3):
            t = time.perf_counter()
            learner.fusion_phase(x, 0.5)
            plain.append(time.perf_counter() - t)
        benchmark.pedantic(lambda: learner.step(0, x, lambda: (xt, xs), 0.5), rounds=3, warmup_rounds=1)
        ratio = benchmark.stats.stats.median / statistics.median(plain)
        benchmark.extra_info.update({"plain_median_s": statistics.median(plain), "ratio": ratio})
        print(f"\nmeta-iteration / plain step: {ratio:.2f}x (target <= {TARGET_RATIO:g}x)")
        assert ratio <= TARGET_RATIO * 1.25  # slack for a noisy shared machine
    finally:
        torch.set_num_threads(n)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="print the raw result as JSON too")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._child:
        print(json.dumps(child(a._child, a.crop, a.batch, a.threads, a.rounds, a.warmup, a.device)))
        return
    r = run(a.crop, a.batch, a.threads, a.rounds, a.warmup, a.device)
    print(report(r))
    if a.json:
        print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
