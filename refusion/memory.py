"""Peak-memory estimate of a training run, checked before the first iteration (issue 12).

The peak of a meta-iteration is the second-order graph of phases 1-2: every activation of F, R and P
on the meta-train batch is kept for the differentiable SGD step, so it grows with
``pixels = effective batch x crop^2`` (the effective batch is ``train.batch_size``, doubled by
``train.swap_inputs``). Measured on CPU with torch 2.13 (``ru_maxrss`` of a fresh process, one
iteration, official sizes) the growth is linear in the pixels to within 2 % from 48- to 96-px crops:

* 108 KB per pixel for F and R (and the loss terms), 29 KB per pixel for each pass of P (a
  symmetric P makes two passes, except with ``swap_inputs``, where one pass serves both orders);
* about 0.30 GB before the first iteration (Python, torch, the three networks);

plus the training pairs held in memory (uint8 luma) and, for validation, a no-grad pass of F and P
over the largest validation image (about 5 KB per pixel). Non-default widths scale the per-pixel
terms with ``dim x (num_blocks + 1)``; that part of the model is an extrapolation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fusionbench.errors import UsageError

__all__ = ["MemoryEstimate", "estimate_peak", "available_bytes", "check_memory"]

GB = 1e9
BASE = 0.30 * GB
FR_PER_PX = 108e3
P_PER_PX = 29e3
INFER_PER_PX = 5e3
_DEFAULTS = {"fusion": (16, 2), "recon": (32, 2), "proposal": (16, 2)}


def _scale(cfg: dict, key: str) -> float:
    kw = cfg["model"][key]
    d0, b0 = _DEFAULTS[key]
    return (kw.get("dim", d0) * (kw.get("num_blocks", b0) + 1)) / (d0 * (b0 + 1))


@dataclass(frozen=True)
class MemoryEstimate:
    peak: float  # bytes
    train_pixels: int
    limit: float | None  # bytes, None when unknown
    limit_source: str

    def describe(self) -> str:
        lim = f" (limit {self.limit / GB:.1f} GB, {self.limit_source})" if self.limit else ""
        return f"estimated peak memory {self.peak / GB:.1f} GB{lim}"


def estimate_peak(cfg: dict, data_bytes: int = 0, val_pixels: int = 0) -> float:
    """Estimated peak resident memory (bytes) of ``fusionbench train refusion`` with ``cfg`` on CPU."""
    t, m = cfg["train"], cfg["meta"]
    n_eff = int(t["batch_size"]) * (2 if t["swap_inputs"] else 1)
    px = n_eff * int(cfg["data"]["crop"]) ** 2
    # a symmetric P makes two passes, except under swap_inputs where one pass gives both orders
    sym = 2 if cfg["model"]["proposal"].get("symmetric", False) and not t["swap_inputs"] else 1
    fr = FR_PER_PX * (_scale(cfg, "fusion") + _scale(cfg, "recon")) / 2
    per_px = fr + P_PER_PX * sym * _scale(cfg, "proposal")
    if not m["enabled"]:
        per_px /= 3.5  # phase 3 alone keeps one first-order graph (measured 1.2 GB vs 4.6 GB at 80 px)
    return BASE + data_bytes + max(px * per_px, val_pixels * INFER_PER_PX)


def available_bytes() -> float | None:
    """MemAvailable of /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(cfg: dict, data, device) -> MemoryEstimate:
    """Estimate the peak for ``cfg`` on ``data`` (a :class:`fusionbench.refusion.data.Dataset`) and refuse, with a
    one-line :class:`UsageError` naming the options to lower, when it exceeds ``train.max_memory_gb``
    (or, when that is null, the memory available now). On CUDA the estimate is for GPU memory and is
    checked against the device's free memory."""
    data_bytes = sum(p.luma.numel() for p in data.pairs)
    val_px = max((data.pairs[i].luma[0].numel() for i in data.val), default=0) if cfg["validation"]["enabled"] else 0
    peak = estimate_peak(cfg, data_bytes, val_px)
    t = cfg["train"]
    dev = torch.device(device)
    if t["max_memory_gb"] is not None:
        limit, source = float(t["max_memory_gb"]) * GB, "train.max_memory_gb"
    elif dev.type == "cuda":
        limit, source = float(torch.cuda.mem_get_info(dev)[0]), "free GPU memory"
        peak -= BASE + data_bytes  # those live in host memory
    else:
        limit, source = available_bytes(), "available now"
    n_eff = int(t["batch_size"]) * (2 if t["swap_inputs"] else 1)
    est = MemoryEstimate(peak, n_eff * int(cfg["data"]["crop"]) ** 2, limit, source)
    if limit is not None and peak > limit:
        raise UsageError(
            f"estimated peak memory {peak / GB:.1f} GB exceeds the {limit / GB:.1f} GB limit ({source}): lower "
            f"data.crop ({cfg['data']['crop']}) or train.batch_size ({t['batch_size']}); the meta-step's memory "
            f"grows with batch x crop^2")
    return est
