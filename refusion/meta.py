"""ReFusion's three-phase meta-iteration (``docs/REFUSION.md`` §2.4-2.5, issue 5 item 3).

One training iteration (:meth:`MetaLearner.step`):

1. **inner update** (every ``meta_every``-th iteration) on a meta-train batch: one SGD step of F under
   L_f with P's current proposal, taken with ``create_graph=True`` so the stepped weights F' are a
   differentiable function of P; R takes one SGD step under L_r. Fast weights are plain dicts fed to
   :func:`torch.func.functional_call`; the modules keep a single copy of every weight.
2. **outer update** on a meta-test batch: L_r of R'(F'(x)). Its gradient is taken with respect to P's
   parameters only (``torch.autograd.grad``), so it reaches P solely through the inner step; F and R
   are untouched. P's optimiser steps.
3. **fusion update** on a fusion-training batch: P is evaluated under ``no_grad`` (held fixed); F steps
   on L_f; R steps on L_r of ``fused.detach()`` (``recon_through_fused: false``, the derivative code's
   choice) or of the live fused image (``true``: L_r also trains F).

Choices (config section ``meta``; see ``configs/default.yaml``):

* ``inner_loss: separate`` - F' under L_f, R' under L_r of the detached fused image (derivative code).
  ``joint`` - one step of F and R under L_f + L_r with R on the live fused image (the STYLE.md sketch).
* ``inner_lr: null`` - F's current learning rate, as in the derivative code.
* ``first_order: true`` drops the second-order term. Because P enters the inner step only through the
  gradient of L_f, P then receives no gradient at all: it is an ablation (P stays at its
  initialisation), kept for speed comparisons and tests.
* ``p_optimizer: normalized_sgd`` (default; the derivative code's ``outer_update``:
  ``p -= lr * g / max|g|`` over all of P's parameters) or ``adam``. The hypergradients are tiny (norm
  ~1e-6); Adam (eps 1e-10) turns them into lr-sized steps of every parameter, and in our RoadScene run it
  collapsed P to W_a = V_a = 0.99 (F then copied its first input) within 150 iterations.
* ``p_grad: outer`` (default): P's gradient is the outer (meta) gradient only. ``outer+inner`` adds the
  first-order dL_f/dP of the inner step, which the derivative code effectively adds (its gradients are
  zeroed only per accumulation window). Minimising L_f over P's own output rewards weighting whichever
  source F already matches, so this term pulls P toward the weaker edge (measured, issue 12).
* ``p_norm`` of :class:`NormalizedSGD`: ``global`` (derivative code) divides by the largest gradient
  entry over all of P; ``per_net`` divides each sub-net's (``pn_int`` = W, ``pn_grad`` = V) gradient by
  its own largest entry, so W is not frozen when V's hypergradient is larger.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .diagnostics import proposal_stats
from .losses import LossWeights, fusion_loss, recon_loss

__all__ = ["MetaOptions", "NormalizedSGD", "MetaLearner", "swap_batch", "prior_target", "PRIORS"]

PRIORS = ("none", "brighter_stronger")


def prior_target(x: Tensor, prior: str) -> tuple[Tensor, Tensor]:
    """The hand-made proposal a P warm-up moves toward (``meta.prior``; not ReFusion's method).

    ``brighter_stronger``: W_a = sigmoid((A - B) / 0.05), i.e. the brighter source, and
    V_a = sigmoid((|dA| - |dB|) / 0.1), the source with the stronger edge, for sources ``x`` (N, 2, H, W)
    in [0, 1]; each pair sums to 1. Returns ``(W, V)``.
    """
    if prior != "brighter_stronger":
        raise ValueError(f"meta.prior must be one of {', '.join(PRIORS)}, got {prior!r}")
    from .nets import sobel_magnitude

    wa = torch.sigmoid((x[:, 0:1] - x[:, 1:2]) / 0.05)
    g = sobel_magnitude(x)
    va = torch.sigmoid((g[:, 0:1] - g[:, 1:2]) / 0.1)
    return torch.cat([wa, 1 - wa], 1), torch.cat([va, 1 - va], 1)


@dataclass(frozen=True)
class MetaOptions:
    """Options of the meta-iteration (config section ``meta`` plus ``train.swap_inputs``)."""

    enabled: bool = True
    meta_every: int = 1
    first_order: bool = False
    inner_lr: float | None = None
    inner_loss: str = "separate"  # or "joint"
    p_grad: str = "outer"  # or "outer+inner"
    prior: str = "none"  # or "brighter_stronger" (hand-made warm-up of P, see prior_target)
    prior_steps: int = 0
    swap_inputs: bool = True
    recon_through_fused: bool = False


class NormalizedSGD(torch.optim.Optimizer):
    """The derivative code's outer update: ``p -= lr * grad / g_max`` with ``g_max`` the largest
    absolute gradient entry over all parameters of the optimiser (no momentum, no state).

    ``per_group=True`` takes ``g_max`` per parameter group instead (one group per sub-net of P: the
    ``per_net`` rule), so every group's largest entry moves by exactly ``lr``.
    """

    def __init__(self, params, lr: float = 1e-4, eps: float = 1e-12, per_group: bool = False):
        super().__init__(params, {"lr": lr, "eps": eps})
        self.per_group = bool(per_group)

    @staticmethod
    def _gmax(params):
        g = [p.grad.abs().max() for p in params if p.grad is not None]
        return torch.stack(g).max() if g else None

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        g_all = self._gmax([p for g in self.param_groups for p in g["params"]])
        if g_all is None:
            return loss
        for group in self.param_groups:
            g_max = self._gmax(group["params"]) if self.per_group else g_all
            if g_max is None:
                continue
            scale = group["lr"] / (g_max + group["eps"])
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(p.grad * scale)
        return loss


def swap_batch(x: Tensor, swap: bool) -> tuple[Tensor, Tensor]:
    """Inputs and reconstruction targets for a source batch ``x`` (N,2,H,W).

    With ``swap`` (the derivative code's ``Switch_r``) the batch is doubled with the sources in
    swapped order, ``[x; x[:, ::-1]]``; the reconstruction targets stay un-swapped, ``[x; x]``, so R's
    channel 0 always reconstructs source a and the fused image must carry both sources whatever the
    input order. Without ``swap``: ``(x, x)``.
    """
    if not swap:
        return x, x
    return torch.cat([x, x.flip(1)]), torch.cat([x, x])


def _params(m: nn.Module) -> dict[str, Tensor]:
    return {k: p for k, p in m.named_parameters()}


class MetaLearner:
    """F, R, P, their optimisers and the three phases. Stateless apart from the modules/optimisers,
    so checkpointing their ``state_dict``s captures everything.

    ``opt_f``/``opt_r`` are any torch optimisers over F's/R's parameters; ``opt_p`` over P's.

    Data parallel (``distributed=True``, under torchrun, every rank holding an equal slice of each global
    batch): phase 3 and the prior warm-up average the gradients across ranks before each optimiser step (as
    DistributedDataParallel does); in phase 1 the inner gradients are averaged with a *differentiable*
    all-reduce, so every rank takes the whole batch's inner step and the hypergradient of phase 2, averaged
    across ranks, equals the single-process one on the whole batch.
    """

    def __init__(self, F: nn.Module, R: nn.Module, P: nn.Module, opt_f, opt_r, opt_p,
                 options: MetaOptions = MetaOptions(), weights: LossWeights | None = None,
                 distributed: bool = False):
        if options.inner_loss not in ("separate", "joint"):
            raise ValueError(f"meta.inner_loss must be 'separate' or 'joint', got {options.inner_loss!r}")
        if options.p_grad not in ("outer", "outer+inner"):
            raise ValueError(f"meta.p_grad must be 'outer' or 'outer+inner', got {options.p_grad!r}")
        if options.prior not in PRIORS:
            raise ValueError(f"meta.prior must be one of {', '.join(PRIORS)}, got {options.prior!r}")
        if options.meta_every < 1:
            raise ValueError(f"meta.meta_every must be >= 1, got {options.meta_every}")
        self.F, self.R, self.P = F, R, P
        self.opt_f, self.opt_r, self.opt_p = opt_f, opt_r, opt_p
        self.opt = options
        self.w = weights if weights is not None else LossWeights()
        # the warm-up's own optimiser (only with a prior); its state is checkpointed by the trainer
        self.opt_prior = torch.optim.Adam(P.parameters(), lr=1e-3) if options.prior != "none" else None
        self.distributed = bool(distributed)

    def _sync_grads(self, *modules: nn.Module) -> None:
        """Average the ``.grad`` of ``modules`` across ranks (data parallel); no-op in one process."""
        if self.distributed:
            from fusionbench.distributed import average_gradients

            average_gradients([p for m in modules for p in m.parameters()])

    def _mean(self, tensors):
        """Differentiable mean across ranks (data parallel); the tensors themselves in one process."""
        if not self.distributed:
            return list(tensors)
        from fusionbench.distributed import mean_across_ranks

        return mean_across_ranks(list(tensors))

    # ------------------------------------------------------------------ helpers
    def inner_lr(self) -> float:
        return float(self.opt.inner_lr) if self.opt.inner_lr is not None else float(self.opt_f.param_groups[0]["lr"])

    def _propose(self, x: Tensor, x_in: Tensor) -> tuple[Tensor, Tensor]:
        """P's proposal for the (possibly swap-doubled) batch ``x_in`` built from ``x``. A symmetric P gives
        the swapped half as the channel swap of the first (``P(b, a) = swap(P(a, b))``): one pass, not two."""
        if self.opt.swap_inputs and getattr(self.P, "symmetric", False):
            w, v = self.P(x)
            return torch.cat([w, w.flip(1)]), torch.cat([v, v.flip(1)])
        return self.P(x_in)

    def _lf(self, fused, src, w, v, c_grad, src_grad=None):
        return fusion_loss(fused, src, w, v, self.w.c_int, c_grad, src_grad)

    def _lr(self, recon, src, src_grad=None):
        return recon_loss(recon, src, self.w.c_r_int, self.w.c_r_grad, src_grad)

    # ------------------------------------------------------------------ phases 1 + 2
    def inner_step(self, x: Tensor, c_grad: float, lr: float | None = None):
        """Phase 1 on meta-train sources ``x`` (N,2,H,W): returns ``(fast_f, fast_r, logs)``.

        ``fast_f`` depends differentiably on P (unless ``first_order``)."""
        return self._inner(x, c_grad, lr)[:3]

    def _inner(self, x: Tensor, c_grad: float, lr: float | None = None):
        """:meth:`inner_step` plus the inner L_f (its graph kept when ``p_grad`` needs it)."""
        lr = self.inner_lr() if lr is None else lr
        keep = self.opt.p_grad == "outer+inner"
        x_in, x_tgt = swap_batch(x, self.opt.swap_inputs)
        pf, pr = _params(self.F), _params(self.R)
        fused = functional_call(self.F, pf, (x_in,))
        w, v = self._propose(x, x_in)
        lf, _ = self._lf(fused, x_in, w, v, c_grad)
        create = not self.opt.first_order
        if self.opt.inner_loss == "separate":
            gf = torch.autograd.grad(lf, list(pf.values()), create_graph=create, retain_graph=create or keep)
            recon = functional_call(self.R, pr, (fused.detach(),))
            lr_loss, _ = self._lr(recon, x_tgt)
            # R's step does not depend on P (its input is detached): no graph needed.
            gr = torch.autograd.grad(lr_loss, list(pr.values()))
            g = self._mean([*gf, *gr])  # data parallel: the whole global batch's inner gradient
            gf, gr = g[: len(pf)], g[len(pf):]
        else:
            recon = functional_call(self.R, pr, (fused,))
            lr_loss, _ = self._lr(recon, x_tgt)
            g = torch.autograd.grad(lf + lr_loss, [*pf.values(), *pr.values()], create_graph=create,
                                    retain_graph=create or keep)
            g = self._mean(g)
            gf, gr = g[: len(pf)], g[len(pf):]
        fast_f = {k: p - lr * g for (k, p), g in zip(pf.items(), gf)}
        fast_r = {k: p - lr * g for (k, p), g in zip(pr.items(), gr)}
        if not create:  # first order: the fast weights are constants, nothing leads back to P
            fast_f = {k: t.detach() for k, t in fast_f.items()}
            fast_r = {k: t.detach() for k, t in fast_r.items()}
        logs = {"inner_L_f": float(lf.detach()), "inner_L_r": float(lr_loss.detach())}
        return fast_f, fast_r, logs, lf

    def outer_loss(self, x: Tensor, fast_f: dict, fast_r: dict) -> Tensor:
        """Phase 2 loss: L_r of R'(F'(x)) on meta-test sources ``x``."""
        x_in, x_tgt = swap_batch(x, self.opt.swap_inputs)
        fused = functional_call(self.F, fast_f, (x_in,))
        recon = functional_call(self.R, fast_r, (fused,))
        return self._lr(recon, x_tgt)[0]

    def meta_grads(self, x_train: Tensor, x_test: Tensor, c_grad: float, lr: float | None = None):
        """Phases 1-2 without the optimiser step: ``(grads of P (None where unused), logs)``."""
        fast_f, fast_r, logs, lf = self._inner(x_train, c_grad, lr)
        lo = self.outer_loss(x_test, fast_f, fast_r)
        params = list(self.P.parameters())
        target = lo + lf if self.opt.p_grad == "outer+inner" else lo
        if target.requires_grad:
            grads = torch.autograd.grad(target, params, allow_unused=True)
        else:  # first_order with p_grad "outer": nothing connects the outer loss to P
            grads = [None] * len(params)
        if self.distributed:  # the mean over ranks of each rank's hypergradient (see the class docstring)
            grads = [None if g is None else g.detach() for g in self._mean(grads)]
            from fusionbench.distributed import all_mean

            lo_mean = all_mean({"lo": float(lo.detach())})["lo"]
        else:
            lo_mean = float(lo.detach())
        logs["outer_L_r"] = lo_mean
        sq = [g.pow(2).sum() for g in grads if g is not None]
        logs["p_grad_norm"] = float(torch.stack(sq).sum().sqrt()) if sq else 0.0
        return grads, logs

    def meta_phase(self, x_train: Tensor, x_test: Tensor, c_grad: float) -> dict:
        """Phases 1-2: update P only (F and R, their ``.grad`` and their optimisers are untouched)."""
        self.P.train()
        grads, logs = self.meta_grads(x_train, x_test, c_grad)
        self.opt_p.zero_grad(set_to_none=True)
        if any(g is not None for g in grads):
            for p, g in zip(self.P.parameters(), grads):
                p.grad = None if g is None else g.detach()
            self.opt_p.step()
            self.opt_p.zero_grad(set_to_none=True)
        return logs

    def prior_phase(self, x: Tensor) -> dict:
        """Warm-up instead of phases 1-2 (first ``prior_steps`` iterations, ``meta.prior`` set): one Adam
        step (lr 1e-3) of P toward :func:`prior_target` on sources ``x``. F and R are untouched."""
        self.P.train()
        tw, tv = prior_target(x, self.opt.prior)
        w, v = self.P(x)
        loss = ((w[:, 0] - tw[:, 0]) ** 2).mean() + ((v[:, 0] - tv[:, 0]) ** 2).mean()
        self.opt_prior.zero_grad(set_to_none=True)
        loss.backward()
        self._sync_grads(self.P)
        self.opt_prior.step()
        self.opt_prior.zero_grad(set_to_none=True)
        return {"prior_loss": float(loss.detach())}

    # ------------------------------------------------------------------ phase 3
    def fusion_phase(self, x: Tensor, c_grad: float) -> dict:
        """Phase 3: F on L_f with P fixed, R on L_r. Updates F and R only."""
        x_in, x_tgt = swap_batch(x, self.opt.swap_inputs)
        self.P.eval()
        with torch.no_grad():
            w, v = self._propose(x, x_in)
        self.opt_f.zero_grad(set_to_none=True)
        self.opt_r.zero_grad(set_to_none=True)
        fused = self.F(x_in)
        lf, parts_f = self._lf(fused, x_in, w, v, c_grad)
        if self.opt.recon_through_fused:
            recon = self.R(fused)
            lr_loss, parts_r = self._lr(recon, x_tgt)
            (lf + lr_loss).backward()
        else:
            lf.backward()
            recon = self.R(fused.detach())
            lr_loss, parts_r = self._lr(recon, x_tgt)
            lr_loss.backward()
        self._sync_grads(self.F, self.R)
        self.opt_f.step()
        self.opt_r.step()
        self.opt_f.zero_grad(set_to_none=True)
        self.opt_r.zero_grad(set_to_none=True)
        out = {"L_f": float(lf.detach()), "L_r": float(lr_loss.detach())}
        out.update({k: float(t.detach()) for k, t in {**parts_f, **parts_r}.items()})
        if self.opt.swap_inputs:
            n = x.shape[0]
            out.update(proposal_stats(w[:n], v[:n], w[n:], v[n:]))
        else:
            with torch.no_grad():
                ws, vs = self.P(x.flip(1))
            out.update(proposal_stats(w, v, ws, vs))
        return out

    # ------------------------------------------------------------------ one iteration
    def step(self, it: int, x: Tensor, meta_batches, c_grad: float) -> dict:
        """Iteration ``it`` (0-based): phases 1-2 when ``enabled`` and ``it % meta_every == 0`` (a prior
        warm-up, :meth:`prior_phase`, in their place during its first ``prior_steps`` iterations)
        (``meta_batches()`` is then called for ``(x_meta_train, x_meta_test)``), then phase 3 on ``x``."""
        logs: dict = {}
        if self.opt.enabled and it % self.opt.meta_every == 0:
            xt, xs = meta_batches()
            if self.opt_prior is not None and it < self.opt.prior_steps:
                logs.update(self.prior_phase(torch.cat([xt, xs])))
            else:
                logs.update(self.meta_phase(xt, xs, c_grad))
        logs.update(self.fusion_phase(x, c_grad))
        return logs
