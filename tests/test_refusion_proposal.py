"""P's learning (issue 12): symmetry, the update rules, P's statistics and figures, the collapse guard,
the memory estimate and small datasets."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_refusion_train import TINY, TINY_R, _one_thread, _run, _write_pairs  # noqa: F401 (autouse fixture)

from fusionbench.refusion import config as C
from fusionbench.refusion.data import effective_val_count
from fusionbench.refusion.diagnostics import CollapseGuard, content_stats, proposal_stats
from fusionbench.refusion.memory import GB, estimate_peak
from fusionbench.refusion.meta import MetaLearner, MetaOptions, NormalizedSGD
from fusionbench.refusion.nets import FusionNet, ProposalNet, ReconNet


def _x(n=2, size=12, seed=0):
    return torch.rand(n, 2, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- symmetry
def test_symmetric_P_is_equivariant_to_input_order():
    torch.manual_seed(0)
    P = ProposalNet(**TINY, symmetric=True)
    x = _x()
    w, v = P(x)
    ws, vs = P(x.flip(1))
    assert torch.allclose(ws, w.flip(1), atol=1e-6) and torch.allclose(vs, v.flip(1), atol=1e-6)
    assert torch.allclose(w.sum(1), torch.ones_like(w[:, 0]), atol=1e-6)
    assert torch.allclose(v.sum(1), torch.ones_like(v[:, 0]), atol=1e-6)
    # the plain P is not equivariant (so the test above can fail)
    torch.manual_seed(0)
    P0 = ProposalNet(**TINY)
    w0, _ = P0(x)
    ws0, _ = P0(x.flip(1))
    assert (ws0 - w0.flip(1)).abs().max() > 1e-4
    # same parameters: a plain checkpoint loads into the symmetric net
    P.load_state_dict(P0.state_dict())
    assert torch.allclose(P(x)[0], 0.5 * (w0 + ws0.flip(1)), atol=1e-6)


def test_learner_proposes_swapped_half_without_a_second_pass():
    torch.manual_seed(0)
    F, R, P = FusionNet(**TINY), ReconNet(**TINY_R), ProposalNet(**TINY, symmetric=True)
    L = MetaLearner(F, R, P, None, None, None, MetaOptions(swap_inputs=True))
    x = _x()
    x_in = torch.cat([x, x.flip(1)])
    w, v = L._propose(x, x_in)
    w_ref, v_ref = P(x_in)
    assert torch.allclose(w, w_ref, atol=1e-6) and torch.allclose(v, v_ref, atol=1e-6)


# ---------------------------------------------------------------- update rules
def test_normalized_sgd_global_and_per_group():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([4.0, -2.0, 1.0]), torch.tensor([0.01, -0.02])
    NormalizedSGD([a, b], lr=0.1).step()
    assert torch.allclose(a.data, torch.tensor([-0.1, 0.05, -0.025]))
    assert torch.allclose(b.data, torch.tensor([-0.00025, 0.0005]))
    a.data.zero_(), b.data.zero_()
    NormalizedSGD([{"params": [a]}, {"params": [b]}], lr=0.1, per_group=True).step()
    assert torch.allclose(a.data, torch.tensor([-0.1, 0.05, -0.025]))
    assert torch.allclose(b.data, torch.tensor([-0.05, 0.1]))  # b's own largest entry moves by lr


def test_p_grad_outer_plus_inner_adds_the_first_order_term():
    x1, x2 = _x(seed=1), _x(seed=2)

    def grads(rule, first_order=False):
        torch.manual_seed(0)
        F, R, P = FusionNet(**TINY).double(), ReconNet(**TINY_R).double(), ProposalNet(**TINY, symmetric=True).double()
        L = MetaLearner(F, R, P, torch.optim.SGD(F.parameters(), 1e-2), torch.optim.SGD(R.parameters(), 1e-2),
                        None, MetaOptions(p_grad=rule, first_order=first_order))
        g, _ = L.meta_grads(x1.double(), x2.double(), 0.7)
        # the first-order term alone: dL_f/dP of the inner step
        x_in = torch.cat([x1, x1.flip(1)]).double()
        w, v = L._propose(x1.double(), x_in)
        from fusionbench.refusion.losses import fusion_loss
        lf = fusion_loss(F(x_in), x_in, w, v, 1.0, 0.7)[0]
        gi = torch.autograd.grad(lf, list(P.parameters()), allow_unused=True)
        return g, gi

    outer, inner = grads("outer")
    both, _ = grads("outer+inner")
    for o, i, b in zip(outer, inner, both):
        if b is None:
            continue
        assert torch.allclose(b, (0 if o is None else o) + (0 if i is None else i), atol=1e-10)
    # first order + inner: P still learns (from L_f only)
    fo, inner_fo = grads("outer+inner", first_order=True)
    for f, i in zip(fo, inner_fo):
        if f is not None:
            assert torch.allclose(f, i, atol=1e-10)
    with pytest.raises(ValueError, match="p_grad"):
        MetaLearner(*(None,) * 6, MetaOptions(p_grad="both"))


# ---------------------------------------------------------------- statistics and guard
def test_proposal_and_content_stats():
    w = torch.full((1, 2, 4, 4), 0.5)
    w[:, 0, :2] = 0.9
    w[:, 1] = 1 - w[:, 0]
    s = proposal_stats(w, w, w.flip(1), w.flip(1))
    assert s["w_a_mean"] == pytest.approx(0.7) and s["w_sel"] == pytest.approx(0.5)
    assert s["w_a_mean_swapped"] == pytest.approx(0.7) and s["w_a_std"] == pytest.approx(0.2)
    # a P that follows the input order: source a gets 0.9 first, 0.1 when second
    order = torch.stack([torch.full((4, 4), 0.9), torch.full((4, 4), 0.1)])[None]
    s = proposal_stats(order, order, order, order)
    assert s["w_a_mean"] == pytest.approx(0.9) and s["w_a_mean_swapped"] == pytest.approx(0.1)
    # content: a brighter than b everywhere; W favouring a -> w_brighter 1
    x = torch.stack([torch.full((8, 8), 0.8), torch.full((8, 8), 0.2)])[None]
    x[:, 0, :, 4:] = 0.1
    wa = torch.where(x[:, 0] > x[:, 1], 0.8, 0.2)
    w = torch.stack([wa, 1 - wa], 1)
    assert content_stats(w, w, x)["w_brighter"] == 1.0
    assert content_stats(w.flip(1), w, x)["w_brighter"] == 0.0


def _feed(guard, n, **vals):
    base = {"w_a_mean": 0.5, "w_a_mean_swapped": 0.5, "v_a_mean": 0.5, "v_a_mean_swapped": 0.5,
            "w_a_std": 0, "w_sel": 0, "w_sel_swapped": 0, "v_a_std": 0, "v_sel": 0, "v_sel_swapped": 0}
    out = None
    for _ in range(n):
        out = guard.update({**base, **vals})
    return out


def test_collapse_guard_names_what_collapsed():
    assert _feed(CollapseGuard(0.95, 0.5, 5), 50, w_a_mean=0.7, w_a_mean_swapped=0.7) is None
    msg = _feed(CollapseGuard(0.95, 0.5, 5), 5, w_a_mean=0.99, w_a_mean_swapped=0.99)
    assert "intensity weights W" in msg and "source a" in msg and "meta.p_lr" in msg
    msg = _feed(CollapseGuard(0.95, 0.5, 5), 5, v_a_mean=0.02, v_a_mean_swapped=0.02)
    assert "gradient weights V" in msg and "source b" in msg
    msg = _feed(CollapseGuard(0.95, 0.5, 5), 5, w_a_mean=0.87, w_a_mean_swapped=0.13)
    assert "input order" in msg and "model.proposal.symmetric" in msg
    assert _feed(CollapseGuard(0.95, 0.5, 5), 4, w_a_mean=0.99) is None  # window not full yet
    assert "\n" not in msg


# ---------------------------------------------------------------- trainer
def _cfg(tmp_path: Path, **changes) -> Path:
    cfg = {"data": {"crop": 16, "val_count": 2},
           "train": {"epochs": 2, "batch_size": 2, "lr": 5e-3, "num_threads": 1, "ckpt_every_steps": 0},
           "meta": {"meta_every": 1},
           "model": {"fusion": TINY, "recon": TINY_R, "proposal": TINY}}
    for k, v in changes.items():
        sec, key = k.split("__")
        cfg.setdefault(sec, {})[key] = v
    p = tmp_path / f"cfg_{len(list(tmp_path.glob('cfg_*')))}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture(scope="module")
def pairs8(tmp_path_factory):
    return _write_pairs(tmp_path_factory.mktemp("p8"), 8, size=(20, 24))


def test_P_is_visible_in_logs_and_figures(tmp_path, pairs8):
    r = _run("--data", pairs8, "--config", _cfg(tmp_path, train__scheduler="cosine"), "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    log = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    for k in ("w_a_mean", "w_a_std", "w_sel", "w_a_mean_swapped", "v_a_mean", "v_sel_swapped", "p_lr"):
        assert log[-1][k] != "", k
    # symmetric by default: the swapped statistics equal the plain ones
    assert float(log[-1]["w_a_mean"]) == pytest.approx(float(log[-1]["w_a_mean_swapped"]), abs=1e-6)
    val = list(csv.DictReader(open(tmp_path / "run" / "val.csv")))
    assert [v["epoch"] for v in val] == ["1", "2"]
    for k in ("w_a_mean", "v_a_std", "w_sel", "w_brighter", "v_stronger", "SF"):
        assert val[-1][k] != "", k
    figs = sorted((tmp_path / "run" / "figures").glob("proposal_epoch_*.png"))
    assert [f.name for f in figs] == ["proposal_epoch_001.png", "proposal_epoch_002.png"]
    assert figs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # P keeps a constant step size while F's decays (p_schedule: constant, cosine F)
    assert float(log[-1]["p_lr"]) == pytest.approx(float(log[0]["p_lr"]))
    assert float(log[-1]["lr"]) < float(log[0]["lr"])


def test_collapse_guard_stops_the_run(tmp_path, pairs8):
    # a threshold just above 1/2 is crossed by any P: the guard must stop the run with one line
    cfg = _cfg(tmp_path, meta__collapse_threshold=0.5000001, meta__collapse_window=2, validation__enabled=False)
    r = _run("--data", pairs8, "--config", cfg, "--out", tmp_path / "run")
    assert r.exit_code == 1
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and "P collapsed" in err[0] and "iteration 2" in err[0] and "Traceback" not in r.output
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    cfg = _cfg(tmp_path, meta__collapse_threshold=None, meta__collapse_window=2, validation__enabled=False)
    assert _run("--data", pairs8, "--config", cfg, "--out", tmp_path / "run2", "--max-steps", 3).exit_code == 0


def test_memory_refusal_is_one_line(tmp_path, pairs8):
    cfg = _cfg(tmp_path, train__max_memory_gb=0.1, data__crop=256)
    r = _run("--data", pairs8, "--config", cfg, "--out", tmp_path / "run")
    assert r.exit_code == 2, r.output
    assert "estimated peak memory" in r.output and "data.crop (256)" in r.output and "train.batch_size" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "run" / "checkpoint.pt").exists()


def test_default_config_fits_8_gb():
    cfg = C.load_config()
    assert estimate_peak(cfg, data_bytes=100 * 2**20, val_pixels=640 * 480) <= 8 * GB
    ours = C.load_config(C.DEFAULT_PATH.parent / "ours_cpu.yaml")
    assert estimate_peak(ours, data_bytes=100 * 2**20, val_pixels=640 * 480) <= 8 * GB


_PROBE = """
import sys, torch
torch.set_num_threads(1)
from fusionbench.refusion.nets import FusionNet, ReconNet, ProposalNet
from fusionbench.refusion.meta import MetaLearner, MetaOptions, NormalizedSGD
crop = int(sys.argv[1])
torch.manual_seed(0)
F, R, P = FusionNet(), ReconNet(), ProposalNet(symmetric=True)
L = MetaLearner(F, R, P, torch.optim.Adam(F.parameters()), torch.optim.Adam(R.parameters()),
                NormalizedSGD(P.parameters(), 1e-3), MetaOptions())
x = lambda: torch.rand(1, 2, crop, crop)
L.step(0, x(), lambda: (x(), x()), 0.5)
# VmHWM (this process's peak RSS), not ru_maxrss: Linux carries the forking parent's peak over exec
print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) * 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read the peak RSS")
def test_memory_estimate_within_25_percent_of_measured_peak():
    crop = 64
    out = subprocess.run([sys.executable, "-c", _PROBE, str(crop)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    measured = float(out.stdout.strip().splitlines()[-1])
    cfg = C.merge(C.load_config(), {"data": {"crop": crop}, "train": {"batch_size": 1}})
    est = estimate_peak(cfg)
    assert abs(est - measured) <= 0.25 * measured, (est / GB, measured / GB)


# ---------------------------------------------------------------- small datasets
def test_effective_val_count():
    assert effective_val_count(171, 10, 2) == (10, None)
    k, note = effective_val_count(8, 10, 2)
    assert k == 1 and "lowered to 1" in note
    assert effective_val_count(8, 2, 2) == (2, None)
    k, note = effective_val_count(2, 10, 2)
    assert k == 0 and "validation is off" in note


def test_small_dataset_trains_with_a_note(tmp_path):
    d = _write_pairs(tmp_path / "d", 8)
    cfg = _cfg(tmp_path)  # val_count 2 is kept
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "data": {"crop": 16, "val_count": 10}}))
    r = _run("--data", d, "--config", big, "--out", tmp_path / "run", "--max-steps", 2)
    assert r.exit_code == 0, r.output
    assert "data.val_count = 10 lowered to 1 for 8 pairs" in r.output
    assert "train 7" in r.output
    one = _write_pairs(tmp_path / "one", 1)
    r = _run("--data", one, "--config", cfg, "--out", tmp_path / "run1")
    assert r.exit_code == 1 and "1 pair is too few" in r.output


# ---------------------------------------------------------------- prior warm-up (explicit option)
def test_prior_warmup_moves_P_toward_brighter_and_stronger():
    from fusionbench.refusion.meta import prior_target

    torch.manual_seed(0)
    F, R, P = FusionNet(**TINY), ReconNet(**TINY_R), ProposalNet(**TINY, symmetric=True)
    L = MetaLearner(F, R, P, torch.optim.Adam(F.parameters(), 1e-3), torch.optim.Adam(R.parameters(), 1e-3),
                    NormalizedSGD(P.parameters(), 1e-3), MetaOptions(prior="brighter_stronger", prior_steps=30))
    x = torch.nn.functional.avg_pool2d(_x(2, 16, seed=3), 3, 1, 1)
    tw, tv = prior_target(x, "brighter_stronger")
    assert torch.allclose(tw.sum(1), torch.ones_like(tw[:, 0])) and ((tw[:, 0] > 0.5) == (x[:, 0] > x[:, 1])).all()

    def err():
        with torch.no_grad():
            w, v = P(x)
        return float(((w - tw) ** 2).mean() + ((v - tv) ** 2).mean())

    before, f0 = err(), {k: t.clone() for k, t in F.state_dict().items()}
    logs = [L.step(it, x, lambda: (x, x), 0.5) for it in range(30)]
    assert "prior_loss" in logs[0] and "outer_L_r" not in logs[0]
    assert err() < 0.9 * before
    with torch.no_grad():
        w, v = P(x)
    assert content_stats(w, v, x)["w_brighter"] > 0.8
    assert any(not torch.equal(f0[k], t) for k, t in F.state_dict().items())  # phase 3 still runs
    assert "outer_L_r" in L.step(30, x, lambda: (x, x), 0.5)  # then meta-learning takes over


def test_resume_equivalence_with_prior_and_per_net(tmp_path, pairs8):
    """N steps straight == N/2, stop, resume, N/2 with the new options (prior warm-up across the stop)."""
    cfg = _cfg(tmp_path, meta__prior="brighter_stronger", meta__prior_steps=3, meta__p_norm="per_net",
               validation__enabled=False)
    assert _run("--data", pairs8, "--config", cfg, "--out", tmp_path / "a", "--max-steps", 6).exit_code == 0
    assert _run("--data", pairs8, "--config", cfg, "--out", tmp_path / "b", "--max-steps", 2).exit_code == 0
    r = _run("--data", pairs8, "--out", tmp_path / "b", "--max-steps", 4, "--resume")
    assert r.exit_code == 0, r.output
    ca = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    cb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for m in "FRP":
        for k in ca[m]:
            assert (ca[m][k] - cb[m][k]).abs().max() <= 1e-6, (m, k)
    log = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert [bool(x["prior_loss"]) for x in log] == [True] * 3 + [False] * 3
    assert all(x["outer_L_r"] for x in log[3:])


def test_output_character_tells_blend_from_selection():
    from fusionbench.refusion.diagnostics import output_character

    x = _x(2, 16, seed=5)
    a, b = x[:, 0:1], x[:, 1:2]
    c = output_character(0.3 * a + 0.7 * b, x, 0.3 * a + 0.7 * b)
    assert c["alpha"] == pytest.approx(0.3) and c["mse_blend"] < 1e-12 and c["one_source"] < 0.2
    assert c["mse_swap"] == 0
    m = output_character(torch.maximum(a, b), x)
    assert m["mse_max"] == 0 and m["one_source"] == 1.0 and m["mse_blend"] > 1e-3


def test_validation_scores_reproduce_val_csv(tmp_path, pairs8, capsys):
    """`python -m fusionbench.refusion.diagnostics WEIGHTS --validation RUN` scores any F on a run's validation split
    as val.csv does: the exported final F gives val.csv's last metric row."""
    from fusionbench.refusion.diagnostics import _character_main
    from fusionbench.refusion.export import export

    cfg = _cfg(tmp_path, train__scheduler="cosine")
    assert _run("--data", pairs8, "--config", cfg, "--out", tmp_path / "run").exit_code == 0
    export(tmp_path / "run", tmp_path / "f.pt", validate=False)
    _character_main([str(tmp_path / "f.pt"), "--validation", str(tmp_path / "run")])
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    val = list(csv.DictReader(open(tmp_path / "run" / "val.csv")))[-1]
    assert len(rows) == 1 and rows[0]["pairs"] == "2"
    for k in ("EN", "SD", "SF", "AG", "SCD", "SSIM"):
        assert float(rows[0][k]) == pytest.approx(float(val[k]), rel=1e-5), k
