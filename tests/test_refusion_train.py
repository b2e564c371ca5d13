"""ReFusion meta-training: the three phases, the meta-gradient, data, the trainer CLI, resume, errors."""
from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from fusionbench.refusion import config as C
from fusionbench.refusion.cli import train_refusion
from fusionbench.refusion.data import CropSampler, find_layout, load_pairs, read_exclude, split_pairs
from fusionbench.refusion.meta import MetaLearner, MetaOptions
from fusionbench.refusion.nets import FusionNet, ProposalNet, ReconNet


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: the CI/dev machines are small and shared; OpenMP threads oversubscribe them badly."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = {"dim": 4, "num_blocks": 1, "heads": 2}
TINY_R = {"dim": 4, "num_blocks": 1, "heads": 2}


def _nets(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return FusionNet(**TINY).to(dtype), ReconNet(**TINY_R).to(dtype), ProposalNet(**TINY).to(dtype)


def _learner(F, R, P, lr=1e-3, **opts):
    return MetaLearner(F, R, P, torch.optim.Adam(F.parameters(), lr), torch.optim.Adam(R.parameters(), lr),
                       torch.optim.Adam(P.parameters(), lr), MetaOptions(**opts))


def _snap(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _changed(before, m):
    return [k for k, v in m.state_dict().items() if not torch.equal(before[k], v)]


# ---------------------------------------------------------------- phases
def test_phase2_changes_only_P_and_phase3_only_F_R():
    F, R, P = _nets()
    L = _learner(F, R, P)
    g = torch.Generator().manual_seed(0)
    x1, x2, x3 = (torch.rand(2, 2, 12, 12, generator=g) for _ in range(3))
    sf, sr, sp = _snap(F), _snap(R), _snap(P)
    logs = L.meta_phase(x1, x2, c_grad=0.5)
    assert logs["p_grad_norm"] > 0
    assert _changed(sf, F) == [] and _changed(sr, R) == []
    assert len(_changed(sp, P)) == len(sp)  # every P tensor moved (Adam)
    assert all(p.grad is None for p in [*F.parameters(), *R.parameters()])
    assert not L.opt_f.state and not L.opt_r.state  # F's and R's optimisers untouched
    sf, sr, sp = _snap(F), _snap(R), _snap(P)
    L.fusion_phase(x3, c_grad=0.5)
    assert _changed(sp, P) == []
    assert len(_changed(sf, F)) == len(sf) and len(_changed(sr, R)) == len(sr)
    assert not L.opt_p.state or all(v["step"] == 1 for v in L.opt_p.state.values())


def test_first_order_gives_P_no_gradient():
    F, R, P = _nets()
    x1, x2 = torch.rand(1, 2, 10, 10), torch.rand(1, 2, 10, 10)
    grads, _ = _learner(F, R, P, first_order=True).meta_grads(x1, x2, 1.0)
    assert all(g is None for g in grads)
    sp = _snap(P)
    _learner(F, R, P, first_order=True).meta_phase(x1, x2, 1.0)
    assert _changed(sp, P) == []
    grads, _ = _learner(F, R, P, first_order=False).meta_grads(x1, x2, 1.0)
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("inner_loss", ["separate", "joint"])
def test_meta_gradient_matches_finite_differences(inner_loss):
    """dL_outer/dP from phases 1-2 equals a central finite difference (float64, 8x8, tiny nets)."""
    F, R, P = _nets(torch.float64, seed=3)
    L = _learner(F, R, P, inner_lr=0.5, inner_loss=inner_loss, swap_inputs=True)
    g = torch.Generator().manual_seed(5)
    x1 = torch.rand(1, 2, 8, 8, generator=g, dtype=torch.float64)
    x2 = torch.rand(1, 2, 8, 8, generator=g, dtype=torch.float64)
    grads, _ = L.meta_grads(x1, x2, c_grad=0.8)
    params = list(P.parameters())
    d = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    analytic = sum(float((gr * di).sum()) for gr, di in zip(grads, d))

    def outer():
        ff, fr, _ = L.inner_step(x1, 0.8)
        return float(L.outer_loss(x2, ff, fr).detach())

    eps = 1e-5
    with torch.no_grad():
        for p, di in zip(params, d):
            p.add_(eps * di)
    up = outer()
    with torch.no_grad():
        for p, di in zip(params, d):
            p.sub_(2 * eps * di)
    down = outer()
    with torch.no_grad():
        for p, di in zip(params, d):
            p.add_(eps * di)
    numeric = (up - down) / (2 * eps)
    assert abs(analytic) > 1e-8
    assert numeric == pytest.approx(analytic, rel=1e-4, abs=1e-10)
    # and per-parameter for a few single entries of P
    for name, p, gr in list(zip(dict(P.named_parameters()), params, grads))[:: max(len(params) // 4, 1)]:
        idx = tuple(int(torch.randint(0, s, (1,), generator=g)) for s in p.shape)
        with torch.no_grad():
            p[idx] += eps
        up = outer()
        with torch.no_grad():
            p[idx] -= 2 * eps
        down = outer()
        with torch.no_grad():
            p[idx] += eps
        assert (up - down) / (2 * eps) == pytest.approx(float(gr[idx]), rel=1e-3, abs=1e-9), name


def test_few_steps_lower_losses():
    F, R, P = _nets(seed=1)
    L = _learner(F, R, P, lr=1e-2, meta_every=2)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 2, 16, 16, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # smoother, image-like
    first = L.step(0, x, lambda: (x, x), c_grad=0.5)
    for it in range(1, 25):
        last = L.step(it, x, lambda: (x, x), c_grad=0.5)
    assert last["L_f"] < 0.7 * first["L_f"]
    assert last["L_r"] < 0.7 * first["L_r"]


# ---------------------------------------------------------------- data
def _write_pairs(root: Path, n: int, size=(20, 24), layout=("ir", "vi"), seed=0, colour_b=True):
    rng = np.random.default_rng(seed)
    (root / layout[0]).mkdir(parents=True, exist_ok=True)
    (root / layout[1]).mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n):
        yy, xx = np.mgrid[0:h, 0:w]
        base = (127 + 100 * np.sin(xx / (2 + i % 3) + i) * np.cos(yy / 3)).clip(0, 255)
        a = (base + rng.normal(0, 10, base.shape)).clip(0, 255).astype(np.uint8)
        b = (255 - base + rng.normal(0, 10, base.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(a).save(root / layout[0] / f"p{i:02d}.png")
        bimg = np.stack([b, (b * 0.8).astype(np.uint8), b // 2], -1) if colour_b else b
        Image.fromarray(bimg).save(root / layout[1] / f"p{i:02d}.png")
    return root


@pytest.mark.parametrize("layout", [("ir", "vi"), ("infrared", "visible"), ("cropinfrared", "crop_LR_visible"),
                                    ("A", "B")])
def test_layouts(tmp_path, layout):
    _write_pairs(tmp_path, 2, layout=layout)
    fa, fb = find_layout(tmp_path)
    assert (fa.name, fb.name) == layout
    pairs, _, _ = load_pairs(tmp_path)
    assert [p.stem for p in pairs] == ["p00", "p01"]
    assert pairs[0].luma.shape == (2, 20, 24) and pairs[0].luma.dtype == torch.uint8


def test_layout_under_train_and_luma_convention(tmp_path):
    _write_pairs(tmp_path / "train", 2)
    pairs, (fa, _), _ = load_pairs(tmp_path)
    assert fa == tmp_path / "train" / "ir"
    rgb = np.asarray(Image.open(tmp_path / "train" / "vi" / "p01.png")).astype(np.int64)
    want = (rgb[..., 0] * 4899 + rgb[..., 1] * 9617 + rgb[..., 2] * 1868 + 8192) >> 14  # cv2 BGR2GRAY
    assert np.array_equal(pairs[1].luma[1].numpy(), want)


def test_exclude_lists(tmp_path):
    _write_pairs(tmp_path, 4)
    (tmp_path / "subsets").mkdir()
    (tmp_path / "subsets" / "cddfuse_test50.txt").write_text("# test\np01\np03.png\n")
    assert read_exclude(tmp_path, "auto") == {"p01", "p03"}
    pairs, _, excluded = load_pairs(tmp_path, exclude="auto")
    assert [p.stem for p in pairs] == ["p00", "p02"] and excluded == 2
    (tmp_path / "x.csv").write_text("cddfuse_stem,tno_stem\n9,p02\n")
    assert read_exclude(tmp_path, ["x.csv"]) == {"p02"}
    assert len(load_pairs(tmp_path, exclude=None)[0]) == 4


def test_splits_deterministic_and_disjoint():
    val, train, mtr, mts = split_pairs(30, 5, 0.5, seed=7)
    assert (val, train, mtr, mts) == split_pairs(30, 5, 0.5, seed=7)
    assert len(val) == 5 and len(train) == 25 and set(val).isdisjoint(train)
    assert set(mtr) | set(mts) == set(train) and set(mtr).isdisjoint(mts)
    assert split_pairs(30, 5, 0.5, seed=8)[0] != val


def test_crop_sampler_pads_and_is_reproducible(tmp_path):
    _write_pairs(tmp_path, 3, size=(10, 7))
    pairs, _, _ = load_pairs(tmp_path)
    s1 = CropSampler(pairs, [0, 1, 2], crop=16, batch_size=2, seed=3)
    b = s1.next()
    assert b.shape == (2, 2, 16, 16) and b.dtype == torch.float32 and 0 <= float(b.min()) and float(b.max()) <= 1
    state = s1.state_dict()
    nxt = [s1.next() for _ in range(3)]
    s2 = CropSampler(pairs, [0, 1, 2], crop=16, batch_size=2, seed=99)
    s2.load_state_dict(state)
    for t in nxt:
        assert torch.equal(s2.next(), t)


@pytest.mark.shared
def test_default_data_excludes_roadscene_test50():
    from fusionbench.paths import data_dir

    d = data_dir()
    if d is None or not (d / "roadscene").is_dir():
        pytest.skip("../shared not found")
    test50 = read_exclude(d / "roadscene", "auto")
    assert len(test50) == 50
    from fusionbench.refusion.data import build_dataset

    ds = build_dataset(C.load_config())
    stems = {p.stem for p in ds.pairs}
    assert len(stems) == 171 and not stems & test50
    assert len(ds.val) == 10 and len(ds.train) == 161


# ---------------------------------------------------------------- trainer / CLI
def _tiny_cfg(tmp_path: Path, **changes) -> Path:
    cfg = {
        "data": {"crop": 16, "val_count": 2},
        "train": {"epochs": 3, "batch_size": 2, "lr": 5e-3, "num_threads": 1, "ckpt_every_steps": 0,
                  "scheduler": "step", "step_size": 1, "gamma": 0.5},
        "meta": {"meta_every": 2},
        "model": {"fusion": TINY, "recon": TINY_R, "proposal": TINY},
    }
    for k, v in changes.items():
        sec, key = k.split("__")
        cfg.setdefault(sec, {})[key] = v
    p = tmp_path / f"cfg_{len(list(tmp_path.glob('cfg_*')))}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _run(*args):
    r = CliRunner().invoke(train_refusion, [str(a) for a in args] + ["--quiet", "--device", "cpu"])
    return r


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return _write_pairs(tmp_path_factory.mktemp("tinydata"), 8, size=(20, 24))


def _params(run: Path):
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    return ck, {f"{m}.{k}": v for m in "FRP" for k, v in ck[m].items()}


def test_resume_equivalence(tmp_path, tiny_data):
    cfg = _tiny_cfg(tmp_path)
    # 6 training pairs / batch 2 = 3 iterations per epoch; stop at 4 = mid-epoch 2, after a validation
    r = _run("--data", tiny_data, "--config", cfg, "--out", tmp_path / "straight", "--max-steps", 8)
    assert r.exit_code == 0, r.output
    r = _run("--data", tiny_data, "--config", cfg, "--out", tmp_path / "split", "--max-steps", 4)
    assert r.exit_code == 0, r.output
    assert _params(tmp_path / "split")[0]["step"] == 4
    r = _run("--data", tiny_data, "--out", tmp_path / "split", "--max-steps", 4, "--resume")
    assert r.exit_code == 0, r.output
    (ca, a), (cb, b) = _params(tmp_path / "straight"), _params(tmp_path / "split")
    assert ca["step"] == cb["step"] == 8
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-6, k
    assert ca["opt_f"]["state"][0]["step"] == cb["opt_f"]["state"][0]["step"]
    la = list(csv.DictReader(open(tmp_path / "straight" / "log.csv")))
    lb = list(csv.DictReader(open(tmp_path / "split" / "log.csv")))
    assert [r["step"] for r in lb] == [str(i) for i in range(1, 9)]
    for ra, rb in zip(la, lb):
        assert ra["L_f"] == rb["L_f"] and ra["outer_L_r"] == rb["outer_L_r"]
    assert (ra["inner_L_f"] != "") == (int(ra["step"]) % 2 == 1)  # meta on iterations 0, 2, ... (1-based odd)
    va = list(csv.DictReader(open(tmp_path / "straight" / "val.csv")))
    assert [v["epoch"] for v in va] == ["1", "2"] and float(va[0]["val_L_f"]) > 0
    assert (tmp_path / "straight" / "epochs" / "epoch_002.pt").is_file()
    assert float(la[-1]["lr"]) == pytest.approx(5e-3 * 0.25)  # StepLR per epoch


def test_ctrl_c_saves_and_resumes(tmp_path, tiny_data, monkeypatch):
    cfg = _tiny_cfg(tmp_path, validation__enabled=False)
    from fusionbench.refusion import meta

    orig = meta.MetaLearner.step
    calls = {"n": 0}

    def step(self, it, *a, **k):
        out = orig(self, it, *a, **k)
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(meta.MetaLearner, "step", step)
    r = _run("--data", tiny_data, "--config", cfg, "--out", tmp_path / "run")
    assert r.exit_code == 130, r.output
    ck, _ = _params(tmp_path / "run")
    assert ck["step"] == 2
    monkeypatch.setattr(meta.MetaLearner, "step", orig)
    r = _run("--data", tiny_data, "--out", tmp_path / "run", "--resume", "--max-steps", 2)
    assert r.exit_code == 0, r.output
    r = _run("--data", tiny_data, "--config", cfg, "--out", tmp_path / "ref", "--max-steps", 4)
    a, b = _params(tmp_path / "run")[1], _params(tmp_path / "ref")[1]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_export(tmp_path, tiny_data):
    from fusionbench.refusion.export import export

    cfg = _tiny_cfg(tmp_path, validation__enabled=False)
    assert _run("--data", tiny_data, "--config", cfg, "--out", tmp_path / "run", "--max-steps", 2).exit_code == 0
    meta = export(tmp_path / "run", tmp_path / "w" / "f.pt", validate=False)
    sd = torch.load(tmp_path / "w" / "f.pt", weights_only=True)
    net = FusionNet(**TINY)
    net.load_state_dict(sd)  # strict
    side = json.loads((tmp_path / "w" / "f.json").read_text())
    from fusionbench.weights import sha256sum

    assert side["sha256"] == sha256sum(tmp_path / "w" / "f.pt") == meta["sha256"]
    assert side["steps"] == 2 and side["config"]["model"]["fusion"] == TINY and side["date"]


# ---------------------------------------------------------------- errors
def test_error_no_pairs(tmp_path):
    (tmp_path / "d" / "ir").mkdir(parents=True)
    (tmp_path / "d" / "vi").mkdir()
    r = _run("--data", tmp_path / "d", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "no images" in r.output and "Traceback" not in r.output
    (tmp_path / "e").mkdir()
    r = _run("--data", tmp_path / "e", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "no image pairs found" in r.output


def test_error_mismatched_pairs(tmp_path):
    d = _write_pairs(tmp_path / "d", 3)
    Image.fromarray(np.zeros((30, 24), np.uint8)).save(d / "ir" / "p01.png")
    r = _run("--data", d, "--out", tmp_path / "o", "--config", _tiny_cfg(tmp_path))
    assert r.exit_code == 1 and "p01" in r.output and "24x30" in r.output and "24x20" in r.output
    (d / "vi" / "p02.png").unlink()
    r = _run("--data", d, "--out", tmp_path / "o", "--config", _tiny_cfg(tmp_path))
    assert r.exit_code == 1 and "no counterpart" in r.output and "p02" in r.output


def test_error_unknown_config_key(tmp_path, tiny_data):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  learning_rate: 0.1\n")
    r = _run("--data", tiny_data, "--config", p, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "train.learning_rate" in r.output and "Did you mean" in r.output
    p.write_text("meta:\n  p_optimizer: sgd\n")
    r = _run("--data", tiny_data, "--config", p, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "normalized_sgd" in r.output
    p.write_text("trainn: {}\n")
    r = _run("--data", tiny_data, "--config", p, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "train" in r.output


def test_error_resume_other_config(tmp_path, tiny_data):
    cfg = _tiny_cfg(tmp_path, validation__enabled=False)
    assert _run("--data", tiny_data, "--config", cfg, "--out", tmp_path / "run", "--max-steps", 1).exit_code == 0
    other = _tiny_cfg(tmp_path, validation__enabled=False, train__lr=1e-2)
    r = _run("--data", tiny_data, "--config", other, "--out", tmp_path / "run", "--resume")
    assert r.exit_code == 1 and "another config" in r.output and "train.lr" in r.output
    r = _run("--data", tiny_data, "--out", tmp_path / "run", "--resume", "--epochs", 7)
    assert r.exit_code == 1 and "train.epochs" in r.output
    r = _run("--data", tiny_data, "--config", cfg, "--out", tmp_path / "run")
    assert r.exit_code == 2 and "--resume" in r.output
    r = _run("--data", tiny_data, "--out", tmp_path / "nothing", "--resume")
    assert r.exit_code == 1 and "no checkpoint" in r.output


def test_default_config_is_complete_and_documented():
    cfg = C.load_config()
    text = C.DEFAULT_PATH.read_text()
    for vals in cfg.values():
        for k in vals:
            assert f"{k}:" in text
    ours = C.load_config(C.DEFAULT_PATH.parent / "ours_cpu.yaml")
    assert ours["data"]["crop"] <= 128 and ours["meta"]["meta_every"] >= 1
    assert C.fingerprint(cfg) != C.fingerprint(ours)
    assert C.fingerprint(C.apply_overrides(cfg, train__max_steps=5)) == C.fingerprint(cfg)


def test_max_steps_is_per_invocation(tmp_path, tiny_data):
    """--max-steps is not stored in the run: a plain --resume afterwards trains to the end of the schedule."""
    cfg = _tiny_cfg(tmp_path, validation__enabled=False)  # 3 epochs x 3 iterations
    assert _run("--data", tiny_data, "--config", cfg, "--out", tmp_path / "run", "--max-steps", 2).exit_code == 0
    assert "max_steps: null" in (tmp_path / "run" / "config.yaml").read_text()
    r = _run("--data", tiny_data, "--out", tmp_path / "run", "--resume")
    assert r.exit_code == 0, r.output
    assert _params(tmp_path / "run")[0]["step"] == 9
