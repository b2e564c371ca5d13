"""The input checks of the metric kernels, in one place.

Public entry points (:func:`fusionbench.score`, :func:`fusionbench.metrics.score_batch`) validate
their inputs with :mod:`fusionbench.contract` first; the kernels check again what they rely on, so
that calling one directly with a wrong shape fails with a clear message instead of a broadcasting
error deep inside. The errors raised here are both fusionbench errors
(:class:`~fusionbench.errors.DataError` subclasses, as the contract raises) and :class:`ValueError`
(what numerical code conventionally raises for bad arguments), so either can be caught.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ImageTooSmallError, ShapeError, SizeMismatchError

__all__ = ["KernelShapeError", "KernelSizeMismatchError", "KernelTooSmallError", "check_nchw", "check_same",
           "check_sources", "check_min_size"]


class KernelShapeError(ShapeError, ValueError):
    """A kernel's input is not an (N, C, H, W) tensor (with the channel counts the kernel takes)."""


class KernelSizeMismatchError(SizeMismatchError, ValueError):
    """A kernel's inputs do not have matching shapes."""


class KernelTooSmallError(ImageTooSmallError, ValueError):
    """The images are smaller than the kernel's window."""


def check_min_size(x: Tensor, minimum: int, what: str = "this metric", name: str = "input") -> None:
    """Raise :class:`KernelTooSmallError` unless both sides of ``x`` (..., H, W) are at least ``minimum``."""
    h, w = x.shape[-2:]
    if h < minimum or w < minimum:
        raise KernelTooSmallError(f"{name}: image is {w}x{h} pixels; {what} needs at least {minimum}x{minimum}")


def check_nchw(x: Tensor, name: str = "input", min_size: int = 1, channels: tuple[int, ...] | None = None) -> Tensor:
    """Check that ``x`` is an (N, C, H, W) tensor with H, W >= ``min_size`` (and C in ``channels`` when
    given); return it as float: integer tensors are converted to float32, float tensors keep their dtype.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or (channels is not None and x.shape[1] not in channels):
        c = "C" if channels is None else "|".join(map(str, channels))
        raise KernelShapeError(f"{name}: expected shape (N, {c}, H, W), got {tuple(x.shape)}")
    if min_size > 1:
        check_min_size(x, min_size, name=name)
    if not x.is_floating_point():
        x = x.to(torch.float32)
    return x


def check_same(fused: Tensor, *others: Tensor, min_size: int = 1) -> list[Tensor]:
    """:func:`check_nchw` for the fused image and the sources (named ``fused``, ``a``, ``b``), which must
    all have the fused image's shape; returns them as float tensors in the fused image's dtype."""
    names = ("fused", "a", "b")
    out = [check_nchw(t, n, min_size) for t, n in zip((fused, *others), names)]
    for t, n in zip(out[1:], names[1:]):
        if t.shape != out[0].shape:
            raise KernelSizeMismatchError(f"{n} has shape {tuple(t.shape)} but fused has {tuple(out[0].shape)}")
    dt = out[0].dtype
    return [t.to(dt) for t in out]


def check_sources(fused: Tensor, *sources: Tensor, what: str = "the metric", min_size: int = 1) -> None:
    """Check prepared tensors for a per-channel kernel: ``fused`` (N, C, H, W); each source (N or 1, C or 1,
    H, W), broadcasting against it (a source shared by the batch, a grey source used with every channel)."""
    if not isinstance(fused, Tensor) or fused.ndim != 4:
        got = tuple(fused.shape) if isinstance(fused, Tensor) else type(fused).__name__
        raise KernelShapeError(f"{what}: expected (N, C, H, W) tensors, got {got}")
    for s in sources:
        if (not isinstance(s, Tensor) or s.ndim != 4 or s.shape[-2:] != fused.shape[-2:]
                or s.shape[1] not in (1, fused.shape[1]) or s.shape[0] not in (1, fused.shape[0])):
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise KernelSizeMismatchError(f"{what}: source {got} does not match fused {tuple(fused.shape)}")
    if min_size > 1:
        check_min_size(fused, min_size, what, "fused")
