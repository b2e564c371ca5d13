"""The ReFusion trainer: data, the meta-iteration loop, logging, validation, checkpoints, resume.

Run directory (``--out RUN_DIR``):

* ``config.yaml`` - the effective configuration;
* ``log.csv`` - one row per iteration with every loss (phase 3: ``L_f``, ``L_f_int``, ``L_f_grad``,
  ``L_r``, ``L_r_int``, ``L_r_grad``; phases 1-2 when they ran: ``inner_L_f``, ``inner_L_r``,
  ``outer_L_r``, ``p_grad_norm``), the learning rate and ``c_grad``;
* ``val.csv`` - per validated epoch: mean L_f / L_r and the metric scores on the held-out split
  (full images, the official inference post-processing: min-max normalisation, x255, rounding);
* ``checkpoint.pt`` - the resume point (per epoch, every ``train.ckpt_every_steps`` iterations, at
  ``--max-steps`` and on Ctrl-C), written atomically; ``epochs/epoch_NNN.pt`` per epoch.

A checkpoint holds F, R, P, the three optimisers and schedulers, the iteration and epoch, every RNG
state (torch CPU/CUDA, numpy, python, the three samplers' generators with their permutations) and
the config, so ``--resume`` continues bit-for-bit on the same device and thread count.
"""
from __future__ import annotations

import csv
import random
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fusionbench.errors import FusionBenchError, UsageError
from fusionbench.io import atomic_path, ensure_dir, remove_stale_temps, write_text_atomic

from . import config as C
from .data import CropSampler, Dataset, build_dataset
from .diagnostics import STAT_FIELDS, CollapseGuard, ProposalCollapsed, content_stats, plot_proposals, proposal_stats
from .losses import LossWeights, c_grad_at, fusion_loss, recon_loss
from .memory import check_memory
from .meta import MetaLearner, MetaOptions, NormalizedSGD
from .nets import FusionNet, ProposalNet, ReconNet

__all__ = ["Trainer", "train", "validate", "build_models", "CheckpointError", "LOG_FIELDS", "load_checkpoint"]

LOG_FIELDS = ["step", "epoch", "lr", "p_lr", "c_grad", "L_f", "L_f_int", "L_f_grad", "L_r", "L_r_int", "L_r_grad",
              "inner_L_f", "inner_L_r", "outer_L_r", "p_grad_norm", "prior_loss", *STAT_FIELDS, "seconds"]
CKPT_FORMAT = "fusionbench-refusion-train/1"


class CheckpointError(FusionBenchError):
    """A checkpoint cannot be resumed (other config, corrupt, missing)."""


def build_models(cfg: dict, device=None):
    """F, R, P from ``cfg['model']`` (constructor keyword arguments), on ``device``."""
    out = []
    for key, cls in (("fusion", FusionNet), ("recon", ReconNet), ("proposal", ProposalNet)):
        try:
            m = cls(**cfg["model"][key])
        except TypeError as e:
            raise UsageError(f"model.{key}: {e}") from None
        out.append(m.to(device) if device is not None else m)
    return tuple(out)


def _scheduler(opt, cfg, follow: bool = True):
    t = cfg["train"]
    if not follow:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    if t["scheduler"] == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=t["step_size"], gamma=t["gamma"])
    if t["scheduler"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(t["epochs"], 1), eta_min=t["min_lr"])
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)


def load_checkpoint(path: Path, device="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a corrupt file for the user
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.__class__.__name__}: {e})") from None
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{path}: not a fusionbench ReFusion training checkpoint")
    return ck


class _CsvLog:
    """Append-only CSV; on resume, rows beyond the checkpoint's step are dropped (they are redone)."""

    def __init__(self, path: Path, fields: list[str], keep_until_step: int | None):
        self.path, self.fields = path, fields
        rows = []
        if keep_until_step is not None and path.is_file():
            with open(path, newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("step") and int(r["step"]) <= keep_until_step]
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
        self.fh = open(path, "a", newline="", encoding="utf-8")
        self.w = csv.DictWriter(self.fh, fieldnames=fields, extrasaction="ignore")
        self.rows = rows

    def write(self, row: dict) -> None:
        self.w.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


@dataclass
class TrainResult:
    out: Path
    step: int
    epoch: int
    stopped: str  # "done", "max_steps", "interrupted"
    last_val: dict | None


class Trainer:
    """Builds everything from a config and runs the loop. ``Trainer(cfg, out, device).run(resume)``."""

    def __init__(self, cfg: dict, out: str | Path, device: torch.device | str = "cpu", progress: bool = True):
        from fusionbench import distributed as D

        self.cfg, self.out = cfg, Path(out)
        self.device = torch.device(device)
        self.ctx = D.init(self.device)  # under torchrun: join the process group (no-op in one process)
        self.main = self.ctx.is_main
        self.progress = progress and self.main
        t = cfg["train"]
        if int(t["batch_size"]) % self.ctx.world_size:
            raise UsageError(f"train.batch_size = {t['batch_size']} cannot be split over {self.ctx.world_size} "
                             f"processes: use a batch size divisible by the number of processes (it is the global "
                             f"batch; each process takes an equal slice)")
        cfg["train"]["world_size"] = self.ctx.world_size  # recorded in config.yaml; not part of the run identity
        if t["num_threads"]:
            torch.set_num_threads(int(t["num_threads"]))
        self.data: Dataset = build_dataset(cfg)
        self.memory = check_memory(cfg, self.data, self.device)
        seed = int(t["seed"])
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        self.F, self.R, self.P = build_models(cfg, self.device)
        m = cfg["meta"]
        self.opt_f = torch.optim.Adam(self.F.parameters(), lr=t["lr"], eps=t["adam_eps"], weight_decay=t["weight_decay"])
        self.opt_r = torch.optim.Adam(self.R.parameters(), lr=t["lr"], eps=t["adam_eps"], weight_decay=t["weight_decay"])
        p_lr = m["p_lr"] if m["p_lr"] is not None else t["lr"]
        if m["p_optimizer"] == "adam":
            self.opt_p = torch.optim.Adam(self.P.parameters(), lr=p_lr, eps=m["p_adam_eps"])
        elif m["p_norm"] == "per_net":
            groups = [{"params": list(self.P.pn_int.parameters())}, {"params": list(self.P.pn_grad.parameters())}]
            self.opt_p = NormalizedSGD(groups, lr=p_lr, per_group=True)
        else:
            self.opt_p = NormalizedSGD(self.P.parameters(), lr=p_lr)
        self.sched = [_scheduler(self.opt_f, cfg), _scheduler(self.opt_r, cfg),
                      _scheduler(self.opt_p, cfg, follow=m["p_schedule"] == "follow")]
        d = cfg["data"]
        bs, crop = t["batch_size"], d["crop"]
        self.train_s = CropSampler(self.data.pairs, self.data.train, crop, bs, seed * 1000 + 1, d["repeats"])
        self.meta_tr = self.meta_ts = None
        if m["enabled"]:
            self.meta_tr = CropSampler(self.data.pairs, self.data.meta_train, crop, bs, seed * 1000 + 2)
            self.meta_ts = CropSampler(self.data.pairs, self.data.meta_test, crop, bs, seed * 1000 + 3)
        opts = MetaOptions(enabled=m["enabled"], meta_every=m["meta_every"], first_order=m["first_order"],
                           inner_lr=m["inner_lr"], inner_loss=m["inner_loss"], swap_inputs=t["swap_inputs"],
                           recon_through_fused=t["recon_through_fused"], p_grad=m["p_grad"],
                           prior=m["prior"], prior_steps=m["prior_steps"])
        L = cfg["loss"]
        self.weights = LossWeights(L["c_int"], L["c_grad"], L["c_grad_ramp"], L["c_r_int"], L["c_r_grad"])
        self.learner = MetaLearner(self.F, self.R, self.P, self.opt_f, self.opt_r, self.opt_p, opts, self.weights,
                                   distributed=self.ctx.distributed)
        self.steps_per_epoch = self.train_s.steps_per_epoch
        self.total_steps = t["epochs"] * self.steps_per_epoch
        if t["max_steps"] is not None:
            self.total_steps = min(self.total_steps, int(t["max_steps"]))
        self.guard = None
        if m["enabled"] and m["collapse_threshold"] is not None:
            self.guard = CollapseGuard(m["collapse_threshold"], m["collapse_order_gap"], m["collapse_window"])
        self.step = 0
        self.last_val: dict | None = None
        self._stop = False

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        s = {
            "format": CKPT_FORMAT,
            "config": self.cfg,
            "fingerprint": C.fingerprint(self.cfg),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "F": self.F.state_dict(), "R": self.R.state_dict(), "P": self.P.state_dict(),
            "opt_f": self.opt_f.state_dict(), "opt_r": self.opt_r.state_dict(), "opt_p": self.opt_p.state_dict(),
            "opt_prior": self.learner.opt_prior.state_dict() if self.learner.opt_prior else None,
            "sched": [s.state_dict() for s in self.sched],
            "samplers": {"train": self.train_s.state_dict(),
                         "meta_train": self.meta_tr.state_dict() if self.meta_tr else None,
                         "meta_test": self.meta_ts.state_dict() if self.meta_ts else None},
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "last_val": self.last_val,
            "guard": self.guard.state_dict() if self.guard else None,
            "time": time.time(),
        }
        return s

    def load_state_dict(self, ck: dict, source: str = "checkpoint") -> None:
        # keys added to the config schema after the checkpoint was written take their defaults
        stored = C.merge(C.default_config(), ck["config"], f"{source} (stored config)")
        if C.fingerprint(stored) != C.fingerprint(self.cfg):
            changes = C.diff(stored, self.cfg)
            shown = "; ".join(changes[:4]) + (f" (+{len(changes) - 4} more)" if len(changes) > 4 else "")
            raise CheckpointError(f"{source} was written with another config ({shown}); resume with the "
                                  f"same config or start a new --out folder")
        if ck["steps_per_epoch"] != self.steps_per_epoch:
            raise CheckpointError(f"{source}: the training data changed ({ck['steps_per_epoch']} steps per epoch "
                                  f"then, {self.steps_per_epoch} now)")
        self.F.load_state_dict(ck["F"])
        self.R.load_state_dict(ck["R"])
        self.P.load_state_dict(ck["P"])
        self.opt_f.load_state_dict(ck["opt_f"])
        self.opt_r.load_state_dict(ck["opt_r"])
        self.opt_p.load_state_dict(ck["opt_p"])
        if self.learner.opt_prior is not None and ck.get("opt_prior"):
            self.learner.opt_prior.load_state_dict(ck["opt_prior"])
        for s, st in zip(self.sched, ck["sched"]):
            s.load_state_dict(st)
        self.train_s.load_state_dict(ck["samplers"]["train"])
        if self.meta_tr:
            self.meta_tr.load_state_dict(ck["samplers"]["meta_train"])
            self.meta_ts.load_state_dict(ck["samplers"]["meta_test"])
        r = ck["rng"]
        torch.set_rng_state(r["torch"].cpu())
        np.random.set_state(r["numpy"])
        random.setstate(r["python"])
        if r.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([t.cpu() for t in r["cuda"]])
        self.step = int(ck["step"])
        self.last_val = ck.get("last_val")
        if self.guard and ck.get("guard"):
            self.guard.load_state_dict(ck["guard"])

    def save(self, epoch_copy: bool = False) -> Path:
        path = self.out / "checkpoint.pt"
        if not self.main:  # one writer: rank 0 (every rank holds the same state)
            return path
        state = self.state_dict()
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        if epoch_copy and self.cfg["train"]["keep_epoch_checkpoints"]:
            ep = self.out / "epochs" / f"epoch_{self.step // self.steps_per_epoch:03d}.pt"
            with atomic_path(ep) as tmp:
                torch.save(state, tmp)
        return path

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict:
        """Mean L_f, L_r and metric scores on the held-out pairs (see :func:`validate`)."""
        epoch = max(self.step // self.steps_per_epoch - 1, 0)
        c_grad = c_grad_at(self.weights, epoch, self.cfg["train"]["epochs"])
        fig = self.out / "figures" / f"proposal_epoch_{self.step // self.steps_per_epoch:03d}.png"
        return validate(self.F, self.R, self.P, self.data, self.cfg, c_grad, self.device, figure=fig)

    # ------------------------------------------------------------------ loop
    def _mine(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a global batch (every rank draws the same batches from identically seeded
        samplers; the state of a run therefore does not depend on the number of processes)."""
        if not self.ctx.distributed:
            return x
        n = x.shape[0] // self.ctx.world_size
        return x[self.ctx.rank * n:(self.ctx.rank + 1) * n]

    def _meta_batches(self):
        return self._mine(self.meta_tr.next()).to(self.device), self._mine(self.meta_ts.next()).to(self.device)

    def _on_sigint(self, signum, frame):
        if self._stop:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self._stop = True
        print("\nCtrl-C: finishing this iteration, saving a checkpoint ... (Ctrl-C again to abort)", file=sys.stderr)

    def run(self, resume: bool = False, max_steps: int | None = None) -> TrainResult:
        """Train to the end of the schedule (or ``train.max_steps``); with ``max_steps``, stop after that many
        iterations of this call (``--max-steps``: per invocation, never stored; ``--resume`` goes on)."""
        from fusionbench import distributed as D

        ck_path = self.out / "checkpoint.pt"
        if self.main:
            ensure_dir(self.out, "run folder")
            for name in ("checkpoint.pt", "log.csv", "val.csv", "config.yaml"):  # temporaries of a killed run
                remove_stale_temps(self.out / name)
        D.barrier()
        if resume:  # every rank reads the checkpoint rank 0 wrote (multi-node: the run folder must be shared)
            self.load_state_dict(load_checkpoint(ck_path, self.device), str(ck_path))
        elif ck_path.exists():
            raise UsageError(f"{self.out} already holds a checkpoint: use --resume to continue it, or another --out")
        D.barrier()  # (no rank may see the checkpoint rank 0 is about to write as "already there")
        if self.main:
            write_text_atomic(self.out / "config.yaml", C.dump(self.cfg))
        vfields = ["epoch", "step", "val_L_f", "val_L_r", *STAT_FIELDS, "w_brighter", "v_stronger"] + \
            _metric_labels(self.cfg["validation"])
        log = _CsvLog(self.out / "log.csv", LOG_FIELDS, self.step if resume else None) if self.main else _NoLog()
        vlog = _CsvLog(self.out / "val.csv", vfields, self.step if resume else None) if self.main else _NoLog()
        old_handler = None
        if threading.current_thread() is threading.main_thread():
            old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        if self.main:
            print(self.data.describe(), file=sys.stderr)
            print(self.memory.describe(), file=sys.stderr)
            print(f"{self.steps_per_epoch} iterations per epoch, {self.total_steps} in all; device {self.device}; "
                  f"run folder {self.out}; {self.ctx.describe()}"
                  + (f" (global batch {self.cfg['train']['batch_size']}, "
                     f"{self.cfg['train']['batch_size'] // self.ctx.world_size} per process)"
                     if self.ctx.distributed else ""), file=sys.stderr)
        bar = _progress(self.total_steps, self.step, self.progress)
        stopped = "done"
        consistent = True
        try:
            t0 = time.time()
            stop_at = self.total_steps if max_steps is None else min(self.total_steps, self.step + int(max_steps))
            while self.step < stop_at:
                if D.any_true(self._stop):  # (every rank stops at the same iteration)
                    stopped = "interrupted"
                    break
                epoch = self.step // self.steps_per_epoch
                c_grad = c_grad_at(self.weights, epoch, self.cfg["train"]["epochs"])
                lr_now = self.opt_f.param_groups[0]["lr"]
                p_lr_now = self.opt_p.param_groups[0]["lr"]
                consistent = False
                x = self._mine(self.train_s.next()).to(self.device)
                logs = D.all_mean(self.learner.step(self.step, x, self._meta_batches, c_grad))
                self.step += 1
                consistent = True
                t1 = time.time()
                log.write({"step": self.step, "epoch": epoch, "lr": lr_now, "p_lr": p_lr_now, "c_grad": c_grad,
                           "seconds": t1 - t0, **logs})
                t0 = t1
                bar.update(1)
                bar.set_postfix({k: f"{logs[k]:.3g}" for k in ("L_f", "L_r", "w_a_mean", "v_a_std") if k in logs},
                                refresh=False)
                reason = self.guard.update(logs) if self.guard else None
                if reason is not None:
                    self.save()
                    raise ProposalCollapsed(f"{reason} (iteration {self.step}; checkpoint kept in {self.out})")
                if self.step % self.steps_per_epoch == 0:  # end of epoch
                    with warnings.catch_warnings():
                        # P's optimiser has not stepped yet during a prior warm-up: torch warns, harmlessly
                        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step",
                                                category=UserWarning)
                        for s in self.sched:
                            s.step()
                    ep_done = self.step // self.steps_per_epoch
                    v = self.cfg["validation"]
                    if self.main and v["enabled"] and self.data.val and \
                            (ep_done % v["every_epochs"] == 0 or self.step >= self.total_steps):
                        self.last_val = {"epoch": ep_done, "step": self.step, **self.validate()}
                        vlog.write(self.last_val)
                        bar.write(_fmt_val(self.last_val))
                    self.save(epoch_copy=True)
                elif self.cfg["train"]["ckpt_every_steps"] and self.step % self.cfg["train"]["ckpt_every_steps"] == 0:
                    self.save()
            if stopped == "done":
                if self.step < self.total_steps:
                    stopped = "max_steps"
                if self.step % self.steps_per_epoch != 0:  # (an epoch's end has just been saved)
                    self.save()
            elif stopped == "interrupted":
                self.save()
        except KeyboardInterrupt:
            stopped = "interrupted"
            if consistent:
                self.save()
            else:
                print("\ninterrupted inside an iteration: keeping the previous checkpoint", file=sys.stderr)
        finally:
            bar.close()
            log.close()
            vlog.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if stopped == "interrupted":
            print(f"stopped at iteration {self.step}; resume with --resume --out {self.out}", file=sys.stderr)
        return TrainResult(self.out, self.step, self.step // self.steps_per_epoch, stopped, self.last_val)


def validate(F, R, P, data: Dataset, cfg: dict, c_grad: float, device="cpu", figure: Path | None = None) -> dict:
    """Mean over ``data.val`` (full images, one pair at a time) of L_f (with P's proposal), L_r, P's
    statistics (:func:`fusionbench.refusion.diagnostics.proposal_stats` and ``content_stats``) and the
    ``validation.metrics`` scores of F's output after the official inference protocol
    (:func:`fusionbench.refusion.official.run_protocol`: float BT.601 luma, min-max normalisation, rounding), scored
    against the sources as decoded. Metrics are skipped when fusionbench.metrics lacks ``score_batch``.
    With ``figure``, the first two validation pairs are drawn there (sources, W_a, V_a, fused).
    Leaves the modules in train mode."""
    metric = _metric_fns(cfg["validation"])
    L = cfg["loss"]
    sums: dict[str, float] = {}
    drawn: list[dict] = []
    n = 0
    F.eval(), R.eval(), P.eval()
    with torch.no_grad():
        for i in data.val:
            pair = data.pairs[i]
            x = (pair.luma.float() / 255.0).unsqueeze(0).to(device)
            fused = F(x)
            w, v = P(x)
            # a symmetric P's proposal for (b, a) is the channel swap of its proposal for (a, b): no second pass
            ws, vs = (w.flip(1), v.flip(1)) if getattr(P, "symmetric", False) else P(x.flip(1))
            lf = fusion_loss(fused, x, w, v, L["c_int"], c_grad)[0]
            lr = recon_loss(R(fused), x, L["c_r_int"], L["c_r_grad"])[0]
            row = {"val_L_f": float(lf), "val_L_r": float(lr), **proposal_stats(w, v, ws, vs),
                   **content_stats(w, v, x)}
            if figure is not None and len(drawn) < 2:
                drawn.append({"name": pair.stem, "a": x[0, 0].cpu().numpy(), "b": x[0, 1].cpu().numpy(),
                              "w_a": w[0, 0].cpu().numpy(), "v_a": v[0, 0].cpu().numpy(),
                              "fused": fused[0, 0].cpu().numpy()})
            if metric is not None:
                row.update(_protocol_scores(F, pair, metric, device))
            for k, val in row.items():
                sums[k] = sums.get(k, 0.0) + val
            n += 1
    F.train(), R.train(), P.train()
    out = {k: val / max(n, 1) for k, val in sums.items()}
    if figure is not None and drawn:
        plot_proposals(drawn, figure, f"{Path(figure).stem}: W_a {out['w_a_mean']:.2f} ± {out['w_a_std']:.2f} "
                                      f"(picks {out['w_sel']:.0%}), V_a {out['v_a_mean']:.2f} ± {out['v_a_std']:.2f} "
                                      f"(picks {out['v_sel']:.0%})")
    return out


def _protocol_scores(F, pair, metric, device) -> dict[str, float]:
    """``metric`` scores of F's output for one pair after the official inference protocol
    (:func:`fusionbench.refusion.official.run_protocol`), against the sources as decoded."""
    from fusionbench.io import read_image

    from .official import run_protocol

    a = torch.from_numpy(np.array(read_image(pair.a_path))).permute(2, 0, 1).unsqueeze(0).to(device)
    b = torch.from_numpy(np.array(read_image(pair.b_path))).permute(2, 0, 1).unsqueeze(0).to(device)
    u8 = run_protocol(F, a, b, want_rgb=False).gray
    return {k: float(t.reshape(-1)[0]) for k, t in metric(u8, a, b).items()}


def validation_scores(F, data: Dataset, cfg: dict, device="cpu") -> dict[str, float]:
    """Mean ``validation.metrics`` scores of fusion network ``F`` on ``data.val`` under the official
    protocol: the metric columns of :func:`validate`, for any F (e.g. the official weights, as the
    reference a run's val.csv is compared with: ``python -m fusionbench.refusion.diagnostics --validation RUN``)."""
    metric = _metric_fns(cfg["validation"])
    if metric is None:
        raise RuntimeError("fusionbench.metrics.score_batch is not available")
    was = F.training
    F.eval()
    sums: dict[str, float] = {}
    with torch.no_grad():
        for i in data.val:
            for k, v in _protocol_scores(F, data.pairs[i], metric, device).items():
                sums[k] = sums.get(k, 0.0) + v
    F.train(was)
    return {k: v / max(len(data.val), 1) for k, v in sums.items()}


def _metric_labels(vcfg: dict) -> list[str]:
    return [m.strip() for m in vcfg["metrics"].split(",") if m.strip()]


def _metric_fns(vcfg: dict):
    """``fn(fused_u8, a_u8, b_u8) -> {label: (N,)}`` from fusionbench.metrics, or None when the metrics
    package does not provide ``parse_metrics`` / ``score_batch`` (validation then reports losses only)."""
    try:
        from fusionbench.metrics import parse_metrics, score_batch
    except ImportError:
        if not getattr(_metric_fns, "_warned", False):
            print("warning: fusionbench.metrics.score_batch is not available; validation reports losses only",
                  file=sys.stderr)
            _metric_fns._warned = True
        return None
    requests = parse_metrics(vcfg["metrics"], preset=vcfg["preset"])
    return lambda f, a, b: score_batch(f, a, b, requests)


def _fmt_val(v: dict) -> str:
    return "validation epoch {}: ".format(v["epoch"]) + ", ".join(
        f"{k} {val:.4g}" for k, val in v.items() if k not in ("epoch", "step"))


class _NoLog:
    """The log of a rank other than 0: rank 0 alone writes log.csv and val.csv."""

    def write(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, *a, **k):
        pass

    def write(self, s):
        print(s, file=sys.stderr)

    def close(self):
        pass


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, file=sys.stderr, unit="it", dynamic_ncols=True,
                mininterval=0.5 if tty else 30.0, desc="refusion")


def train(cfg: dict, out: str | Path, device="cpu", resume: bool = False, progress: bool = True,
          max_steps: int | None = None) -> TrainResult:
    """Train from a config dict (see :mod:`fusionbench.refusion.config`) into ``out``."""
    return Trainer(cfg, out, device, progress).run(resume, max_steps)
