"""torchrun: ``eval`` and ``train refusion`` with 2 CPU processes (gloo) give what one process gives, record the
world size, and resume (also with another number of processes); :func:`fusionbench.distributed.shard`."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fusionbench import distributed as D

TINY = {"dim": 4, "num_blocks": 1, "heads": 2}
EXE = shutil.which("fusionbench")
needs_cli = pytest.mark.skipif(EXE is None or not torch.distributed.is_available(),
                               reason="needs the fusionbench command on PATH and torch.distributed")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _single(*args, timeout=600):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=_env(), timeout=timeout)


def _torchrun(n: int, *args, timeout=600):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "--no-python",
           EXE, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)


# ---------------------------------------------------------------- shard
def test_shard_covers_every_item_once_and_balances():
    items = [f"s{i:02d}" for i in range(23)]
    weights = [(i * 37) % 11 + 1 for i in range(23)]
    for world in (1, 2, 3, 5):
        parts = [D.shard(items, weights, rank=r, world_size=world) for r in range(world)]
        assert sorted(x for p in parts for x in p) == items
        for p in parts:  # original order kept within a rank
            assert p == sorted(p)
        loads = [sum(weights[items.index(x)] for x in p) for p in parts]
        assert max(loads) - min(loads) <= max(weights)  # greedy LPT: within one item of balance
        assert parts == [D.shard(items, weights, rank=r, world_size=world) for r in range(world)]  # deterministic


def test_single_process_helpers_are_no_ops():
    ctx = D.context()
    assert not ctx.distributed and ctx.is_main
    assert D.all_mean({"a": 1.5}) == {"a": 1.5} and D.gather_objects(3) == [3] and D.any_true(False) is False
    t = [torch.ones(2), None]
    assert D.mean_across_ranks(t)[0] is t[0] and D.mean_across_ranks(t)[1] is None


# ---------------------------------------------------------------- eval
@needs_cli
def test_eval_two_processes_equals_one(tmp_path):
    args = ("eval", "--methods", "average,max,lp", "--no-figures", "-q", "--device", "cpu")
    one = _single(*args, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = _torchrun(2, *args, "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    assert (tmp_path / "one" / "scores.csv").read_bytes() == (tmp_path / "two" / "scores.csv").read_bytes()
    prov = json.loads((tmp_path / "two" / "provenance.json").read_text())
    assert prov["world_size"] == 2
    per_rank = prov["pairs_fused_per_rank"]
    assert len(per_rank) == 2 and all(sum(r.values()) > 0 for r in per_rank)  # both ranks fused
    assert sum(r["sample/LP"] for r in per_rank) == 6  # the six sample pairs, split
    assert json.loads((tmp_path / "one" / "provenance.json").read_text())["world_size"] == 1
    # a rank's lost work is redone by a rerun: remove some outputs, rerun with 2 processes, same scores
    fused = tmp_path / "two" / "fused" / "sample" / "LP"
    for p in sorted(fused.glob("*.png"))[:3]:
        p.unlink()
    again = _torchrun(2, *args, "--out", tmp_path / "two")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "one" / "scores.csv").read_bytes() == (tmp_path / "two" / "scores.csv").read_bytes()
    redone = json.loads((tmp_path / "two" / "provenance.json").read_text())["pairs_fused_per_rank"]
    assert sum(r.get("sample/LP", 0) for r in redone) == 3 and sum(r.get("sample/Max", 0) for r in redone) == 0


@needs_cli
def test_fuse_two_processes_equals_one(tmp_path):
    from fusionbench.paths import PACKAGE_DIR

    sample = PACKAGE_DIR / "sample"
    # (torchrun's own parser takes -m and abbreviations such as --vi (--virtual-local-rank): long, distinct names)
    args = ("fuse", "--method", "lp", "--a", sample / "ir", "--b", sample / "vi", "--device", "cpu")
    one = _single(*args, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = _torchrun(2, *args, "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    a, b = sorted((tmp_path / "one").glob("*.png")), sorted((tmp_path / "two").glob("*.png"))
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 6
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert two.stderr.count("fused 6, kept 0 existing, failed 0") == 1  # rank 0 reports for both
    assert "2 processes fused" in two.stderr


# ---------------------------------------------------------------- train
def _pairs(root: Path, n: int = 10) -> Path:
    import numpy as np
    from PIL import Image

    g = np.random.default_rng(0)
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = g.integers(0, 256, (6, 7)).astype(np.float64)
        for sub, shift in (("ir", 0), ("vi", 40)):
            img = np.kron(base, np.ones((4, 4)))[:20, :24] + g.normal(0, 10, (20, 24)) + shift
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / sub / f"{i:03d}.png")
    return root


def _cfg(path: Path, **train) -> Path:
    cfg = {"data": {"crop": 16, "val_count": 2},
           "train": {"epochs": 2, "batch_size": 4, "lr": 5e-3, "num_threads": 1, "ckpt_every_steps": 1,
                     "scheduler": "step", "step_size": 1, "gamma": 0.5, **train},
           "meta": {"meta_every": 1},  # a second-order meta step at every iteration
           "model": {"fusion": TINY, "recon": TINY, "proposal": TINY}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _state(run: Path):
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    return ck, {f"{m}.{k}": v for m in "FRP" for k, v in ck[m].items()}


def _log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@needs_cli
def test_train_two_processes_equals_one_and_resumes_with_another_world_size(tmp_path):
    data, cfg = _pairs(tmp_path / "data"), _cfg(tmp_path / "cfg.yaml")
    common = ("train", "refusion", "--data", data, "--config", cfg, "--device", "cpu", "--quiet")
    one = _single(*common, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = _torchrun(2, *common, "--out", tmp_path / "two", "--max-steps", 2)
    assert two.returncode == 0, two.stderr
    assert two.stderr.count("stopped at --max-steps") == 1  # rank 0 alone reports
    assert yaml.safe_load((tmp_path / "two" / "config.yaml").read_text())["train"]["world_size"] == 2
    # the rest of the schedule in one process, from the 2-process checkpoint
    rest = _single("train", "refusion", "--out", tmp_path / "two", "--resume", "--device", "cpu", "--quiet")
    assert rest.returncode == 0, rest.stderr
    (ca, a), (cb, b) = _state(tmp_path / "one"), _state(tmp_path / "two")
    assert ca["step"] == cb["step"] == 4
    for k in a:  # F, R and P (the second-order meta-gradient) agree to float rounding
        assert (a[k] - b[k]).abs().max() <= 1e-5, k
    la, lb = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    for ra, rb in zip(la, lb):
        for key in ("L_f", "L_r", "outer_L_r"):
            assert abs(float(ra[key]) - float(rb[key])) <= 1e-5 * max(1.0, abs(float(ra[key]))), (key, ra["step"])


@needs_cli
def test_train_refuses_a_batch_that_does_not_split(tmp_path):
    data, cfg = _pairs(tmp_path / "data"), _cfg(tmp_path / "cfg.yaml", batch_size=3)
    r = _torchrun(2, "train", "refusion", "--data", data, "--config", cfg, "--out", tmp_path / "run", "--device",
                  "cpu", "--quiet")
    assert r.returncode != 0
    assert "Error: train.batch_size = 3 cannot be split over 2 processes" in r.stderr
    assert "fusionbench/" not in r.stderr.split("Error:")[0]  # (torchrun reports the failed workers; no traceback of ours)


@needs_cli
def test_train_killed_under_torchrun_resumes_to_the_same_result(tmp_path):
    """SIGKILL to the whole torchrun process group mid-run; --resume with 2 processes ends where one
    uninterrupted process ends."""
    import signal
    import time

    data, cfg = _pairs(tmp_path / "data"), _cfg(tmp_path / "cfg.yaml", epochs=4)
    common = ("train", "refusion", "--data", data, "--config", cfg, "--device", "cpu", "--quiet")
    one = _single(*common, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    run = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python", EXE,
           *map(str, common), "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                if torch.load(run / "checkpoint.pt", weights_only=False)["step"] >= 2:
                    break
            except (OSError, RuntimeError, EOFError, KeyError):
                pass
            time.sleep(0.05)
        killed = proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed, "the run ended before it could be killed"
    step_at_kill = torch.load(run / "checkpoint.pt", weights_only=False)["step"]
    assert 2 <= step_at_kill < 8
    rest = _torchrun(2, "train", "refusion", "--out", run, "--resume", "--device", "cpu", "--quiet")
    assert rest.returncode == 0, rest.stderr
    (ca, a), (cb, b) = _state(tmp_path / "one"), _state(run)
    assert ca["step"] == cb["step"] == 8
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-5, k
