"""Several processes, one job: ``torchrun`` support for ``fuse``, ``eval`` and ``train refusion``.

``torchrun`` (PyTorch's launcher) starts one process per worker and tells each its place through the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); fusionbench reads it,
joins the process group (gloo on CPU, NCCL when the processes use CUDA devices), and divides the work:

* fusing (``fuse``, ``eval``): the pairs are split by rank with :func:`shard` (deterministic, balanced by pixel
  count), each rank writes its outputs atomically into the shared run folder; after a barrier rank 0 scores,
  merges and writes tables and figures, so the results are those of one process;
* training (``fusionbench.refusion``): every rank draws the same global batch and takes its slice; gradients of
  F and R and P's hypergradient are averaged across ranks (see ``fusionbench/refusion/train.py``); rank 0 alone
  writes logs, figures and checkpoints.

Without torchrun (no ``WORLD_SIZE`` in the environment, or 1) everything is a no-op: :func:`context` returns a
single-process context and the collective helpers return their input.

>>> ctx = context()
>>> (ctx.rank, ctx.world_size, ctx.is_main)
(0, 1, True)
>>> shard(["a", "b", "c"], [1, 1, 1], rank=0, world_size=2)
['a', 'c']
"""
from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DistContext", "context", "init", "shutdown", "shard", "barrier", "gather_objects", "all_mean", "any_true",
           "rank_device", "average_gradients", "mean_across_ranks"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its ``rank`` among ``world_size`` processes, ``local_rank`` on its node,
    the process-group ``backend`` ("" when single-process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        if not self.distributed:
            return "1 process"
        return f"rank {self.rank} of {self.world_size} ({self.backend}, local rank {self.local_rank})"


_CTX: DistContext | None = None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        from .errors import UsageError

        raise UsageError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None


def context() -> DistContext:
    """The current context: the initialised process group's, else what the environment says (not joined)."""
    if _CTX is not None:
        return _CTX
    return DistContext(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0), "")


def rank_device(device) -> object:
    """The device this rank should use for ``device`` ("auto", "cpu", "cuda", "cuda:N" or a torch.device):
    under torchrun with CUDA, ``cuda`` / ``auto`` become ``cuda:<LOCAL_RANK>`` (one GPU per process); an
    explicit ``cuda:N`` is kept."""
    import torch

    ctx = context()
    d = torch.device(device) if not isinstance(device, str) or device != "auto" else None
    if d is None:
        d = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.type == "cuda" and d.index is None and ctx.distributed:
        n = torch.cuda.device_count()
        if ctx.local_rank >= n:
            from .errors import UsageError

            raise UsageError(f"local rank {ctx.local_rank} has no GPU (this node has {n}): start at most {n} "
                             f"processes per node (torchrun --nproc_per_node {n}) or use --device cpu")
        d = torch.device("cuda", ctx.local_rank)
    return d


def init(device="cpu", timeout_s: float = 1800.0) -> DistContext:
    """Join the process group torchrun described (once per process; later calls return the same context).
    The backend is NCCL when this rank computes on a CUDA device, gloo otherwise. Single-process: no-op."""
    global _CTX
    if _CTX is not None:
        return _CTX
    env = context()
    if not env.distributed:
        _CTX = env
        return _CTX
    import torch
    import torch.distributed as dist

    from .errors import UsageError

    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise UsageError(f"WORLD_SIZE={env.world_size} but {', '.join(missing)} not set: start the command with "
                         f"torchrun (e.g. torchrun --standalone --nproc_per_node N --no-python fusionbench ...)")
    dev = torch.device(device)
    backend = "nccl" if dev.type == "cuda" and dist.is_nccl_available() else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    _CTX = DistContext(dist.get_rank(), dist.get_world_size(), env.local_rank, backend)
    import atexit

    atexit.register(_leave)  # a process must leave the group before it exits (gloo aborts otherwise)
    return _CTX


def _leave() -> None:
    """At exit: wait for the other ranks (a rank whose share is done must not tear the group down under rank 0,
    which is still reporting), then leave the group."""
    import torch.distributed as dist

    try:
        if dist.is_initialized():
            dist.barrier()
    except Exception:  # noqa: BLE001 - another rank failed: torchrun ends the job anyway
        pass
    shutdown()


def shutdown() -> None:
    """Leave the process group (registered to run at exit by :func:`init`)."""
    global _CTX
    if _CTX is not None and _CTX.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - leaving at exit: nothing else to do
                pass
    _CTX = None


def shard(items: Sequence, weights: Sequence[float] | None = None, rank: int | None = None,
          world_size: int | None = None) -> list:
    """The items rank ``rank`` takes: a deterministic split balanced by ``weights`` (e.g. pixels per pair).

    Greedy longest-processing-time: items in decreasing weight (ties: original order) each go to the rank
    with the least total so far (ties: the lowest rank). Every rank computes the same assignment from the
    same list, so no communication is needed; the items keep their original order within a rank."""
    ctx = context()
    rank = ctx.rank if rank is None else rank
    world_size = ctx.world_size if world_size is None else world_size
    if world_size <= 1:
        return list(items)
    weights = [1.0] * len(items) if weights is None else [float(w) for w in weights]
    load = [0.0] * world_size
    mine = []
    for i in sorted(range(len(items)), key=lambda i: (-weights[i], i)):
        r = min(range(world_size), key=lambda k: (load[k], k))
        load[r] += weights[i]
        if r == rank:
            mine.append(i)
    return [items[i] for i in sorted(mine)]


def barrier() -> None:
    ctx = context()
    if ctx.distributed and _CTX is not None:
        import torch.distributed as dist

        dist.barrier()


def gather_objects(obj: Any) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` single-process."""
    ctx = context()
    if not (ctx.distributed and _CTX is not None):
        return [obj]
    import torch.distributed as dist

    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def _comm_device():
    """Where collective tensors live: the current CUDA device for NCCL, the CPU for gloo."""
    import torch

    if _CTX is not None and _CTX.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_mean(values: dict[str, float]) -> dict[str, float]:
    """The mean over ranks of each value of ``values`` (same keys on every rank); unchanged single-process."""
    ctx = context()
    if not (ctx.distributed and _CTX is not None) or not values:
        return values
    import torch
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    t /= ctx.world_size
    return {k: float(v) for k, v in zip(keys, t.cpu().tolist())}


def any_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. a stop request)."""
    ctx = context()
    if not (ctx.distributed and _CTX is not None):
        return bool(flag)
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def average_gradients(params) -> None:
    """Average the ``.grad`` of ``params`` across ranks in place (what DistributedDataParallel's reduction does,
    as one flattened all_reduce). A parameter without a gradient counts as zero on that rank (and keeps
    ``None`` when no rank has one). Single-process: no-op."""
    ctx = context()
    if not (ctx.distributed and _CTX is not None):
        return
    import torch
    import torch.distributed as dist

    params = [p for p in params]
    have = torch.tensor([p.grad is not None for p in params], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(have, op=dist.ReduceOp.MAX)
    live = [p for p, h in zip(params, have.cpu().tolist()) if h]
    if not live:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in live])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    i = 0
    for p in live:
        n = p.numel()
        p.grad = flat[i:i + n].view_as(p).clone()
        i += n


def mean_across_ranks(tensors: list) -> list:
    """The mean across ranks of each tensor in ``tensors`` (``None`` entries kept), **differentiable**: gradients
    flow back to every rank's inputs (``torch.distributed.nn.functional.all_reduce``), so a quantity computed from
    the mean (e.g. fast weights of a meta-learning inner step) has the exact gradient of the single-process
    computation on the whole batch. One collective for the whole list. Single-process: returned unchanged."""
    ctx = context()
    if not (ctx.distributed and _CTX is not None):
        return list(tensors)
    import warnings

    import torch
    from torch.distributed.nn.functional import all_reduce

    idx = [i for i, t in enumerate(tensors) if t is not None]
    if not idx:
        return list(tensors)
    flat = torch.cat([tensors[i].reshape(-1) for i in idx])
    with warnings.catch_warnings():
        # recent torch marks it deprecated in favour of the private _functional_collectives, whose all_reduce
        # is not documented as differentiable; this one's backward (the all-reduce of the incoming gradients)
        # is what the meta step needs, and tests/test_distributed.py checks the result against one process
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*all_reduce is deprecated")
        total = all_reduce(flat) / ctx.world_size
    out = list(tensors)
    pos = 0
    for i in idx:
        n = tensors[i].numel()
        out[i] = total[pos:pos + n].view_as(tensors[i])
        pos += n
    return out
