"""Nothing lost on a hard kill (issue 14): ``fuse``, ``eval`` and ``train refusion`` are killed with SIGKILL at
random moments (seeded), rerun to completion, and compared with an uninterrupted run: identical outputs,
scores and weights, and the rerun redoes at most the work that was in flight.

One seed per command runs in the default suite; ``-m slow`` runs four more each.
"""
from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_refusion_train import TINY, TINY_R, _write_pairs

from fusionbench.io import write_image

FAST_SEEDS = [0]
SLOW_SEEDS = [1, 2, 3, 4]
SEEDS = [pytest.param(s) for s in FAST_SEEDS] + [pytest.param(s, marks=pytest.mark.slow) for s in SLOW_SEEDS]

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "fusionbench.cli.main", *map(str, args)]


def _run(args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV)


def _kill_after(args, delay: float) -> bool:
    """Start ``args``, SIGKILL it after ``delay`` seconds; True when it was still running (really killed)."""
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        p.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return True


def _timed(args) -> float:
    t = time.monotonic()
    r = _run(args)
    assert r.returncode == 0, r.stderr
    return time.monotonic() - t


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fi")
    g = np.random.default_rng(0)
    for i in range(10):
        base = g.integers(0, 256, (25, 33, 1)).astype(np.float64)
        ir = np.kron(base, np.ones((8, 8, 1)))[:192, :256]
        write_image(root / "ir" / f"p{i:02d}.png", np.clip(ir + g.normal(0, 9, ir.shape), 0, 255).astype(np.uint8))
        write_image(root / "vi" / f"p{i:02d}.png", g.integers(0, 256, (192, 256, 3)).astype(np.uint8))
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.png"))}


@pytest.mark.parametrize("seed", SEEDS)
def test_fuse_survives_sigkill(tmp_path, pairs, seed):
    args = lambda out: _cli("fuse", "-m", "gff", "--ir", pairs / "ir", "--vi", pairs / "vi", "--out", out,  # noqa: E731
                            "--device", "cpu", "--batch-size", 1)
    t_clean = _timed(args(tmp_path / "clean"))
    rng = random.Random(seed)
    out = tmp_path / "killed"
    for _ in range(2):  # two kills at random moments, then a rerun to the end
        _kill_after(args(out), rng.uniform(0.2, t_clean))
    before = {n for n in _files(out) if not n.startswith(".")}  # (".p03.png.x1y2.png": a write cut short)
    r = _run(args(out))
    assert r.returncode == 0, r.stderr
    assert f"kept {len(before)} existing" in r.stderr  # only what was not finished is redone
    assert _files(out) == _files(tmp_path / "clean")  # and the temporaries of the killed run are gone


@pytest.mark.parametrize("seed", SEEDS)
def test_eval_survives_sigkill(tmp_path, pairs, seed):
    args = lambda out: _cli("eval", "--methods", "gff,lp", "--data", pairs, "--out", out, "--metrics",  # noqa: E731
                            "EN,SD,SSIM,Qabf", "--device", "cpu", "-q", "--no-figures", "--batch-size", 1)
    t_clean = _timed(args(tmp_path / "clean"))
    rng = random.Random(100 + seed)
    out = tmp_path / "killed"
    for _ in range(2):
        _kill_after(args(out), rng.uniform(0.2, t_clean))
    done = {p.stem for p in out.glob("fused/*/*/.cache/*.json")} if out.exists() else set()
    r = _run(args(out))
    assert r.returncode == 0, r.stderr

    def scores(run):
        with open(run / "scores.csv", newline="") as fh:
            return sorted(tuple(row.values()) for row in csv.DictReader(fh))

    assert scores(out) == scores(tmp_path / "clean")
    for m in ("GFF", "LP"):
        assert _files(out / "fused" / pairs.name / m) == _files(tmp_path / "clean" / "fused" / pairs.name / m)
    assert len(done) <= 20


def _train_cfg(path: Path) -> Path:
    cfg = {"data": {"crop": 16, "val_count": 2},
           "train": {"epochs": 4, "batch_size": 2, "lr": 5e-3, "num_threads": 1, "scheduler": "step", "step_size": 1,
                     "gamma": 0.5},
           "meta": {"meta_every": 2},
           "validation": {"enabled": False},
           "model": {"fusion": TINY, "recon": TINY_R, "proposal": TINY}}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("seed", SEEDS)
def test_train_survives_sigkill(tmp_path, seed):
    data = _write_pairs(tmp_path / "data", 8, size=(20, 24))
    cfg = _train_cfg(tmp_path / "cfg.yaml")
    args = lambda out, *extra: _cli("train", "refusion", "--data", data, "--config", cfg, "--out", out,  # noqa: E731
                                    "--device", "cpu", "--quiet", *extra)
    t_clean = _timed(args(tmp_path / "clean"))
    rng = random.Random(200 + seed)
    out = tmp_path / "killed"
    _kill_after(args(out), rng.uniform(0.5, t_clean))
    if (out / "checkpoint.pt").is_file():
        ck = torch.load(out / "checkpoint.pt", weights_only=False)
        with open(out / "log.csv", newline="") as fh:
            logged = max((int(r["step"]) for r in csv.DictReader(fh)), default=0)
        assert ck["step"] >= logged - 1  # at most the iteration in flight is redone
        r = _run(args(out, "--resume"))
    else:  # killed before its first checkpoint: a fresh start (a half-made run folder does not block it)
        r = _run(args(out))
    assert r.returncode == 0, r.stderr
    a = torch.load(tmp_path / "clean" / "checkpoint.pt", weights_only=False)
    b = torch.load(out / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"]
    for m in "FRP":
        for k in a[m]:
            assert torch.equal(a[m][k], b[m][k]), (m, k)
    with open(tmp_path / "clean" / "log.csv") as fa, open(out / "log.csv") as fb:
        la = [(r["step"], r["L_f"]) for r in csv.DictReader(fa)]
        lb = [(r["step"], r["L_f"]) for r in csv.DictReader(fb)]
    assert la == lb
