"""The one input contract of fusionbench's public entry points (:func:`fusionbench.score`,
:func:`fusionbench.metrics.score_batch`, :mod:`fusionbench.functional`, :func:`fusionbench.load_method`).

An image argument is a torch tensor of shape (H, W), (C, H, W) or (N, C, H, W) with C = 1 (grey) or 3
(RGB), and its value range is never guessed:

* ``uint8`` (and other integer dtypes with values 0..255): grey levels 0..255;
* ``uint16``: a 16-bit image, 0..65535 (each metric preset turns it into 8 bit as its reference reads
  such a file);
* floating point: needs ``data_range`` (the value of white: ``1.0`` for images in [0, 1], ``255.0`` for
  [0, 255]; it applies to the float tensors of a call only, so a uint8 fused image can be scored against
  float sources). The values must lie in [0, data_range]; they are quantised to 8 bit exactly as saving the
  image would do, ``round(x * 255 / data_range)`` (half to even), so a float image scores what its saved
  PNG scores.

Each problem has its own exception (all :class:`~fusionbench.errors.InputError`, one-line messages that
say how to call correctly): :class:`ShapeError`, :class:`DTypeError`, :class:`DataRangeError` (a float
tensor without ``data_range``), :class:`ValueRangeError` (values outside the stated range, NaN or inf),
:class:`~fusionbench.errors.SizeMismatchError` and :class:`ImageTooSmallError`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .errors import DataRangeError, DTypeError, ImageTooSmallError, ShapeError, SizeMismatchError, ValueRangeError

__all__ = ["as_images", "check_triple", "check_min_size"]


def as_images(x, name: str = "image", data_range: float | None = None) -> Tensor:
    """``x`` as an (N, C, H, W) uint8 tensor (uint16 for 16-bit input), checked against the contract."""
    if not isinstance(x, Tensor):
        hint = " (a NumPy array from an image file is (H, W, C): torch.from_numpy(arr).permute(2, 0, 1))" \
            if type(x).__module__.startswith("numpy") else ""
        raise DTypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}{hint}")
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ShapeError(f"{name}: expected (H, W), (C, H, W) or (N, C, H, W) with C = 1 or 3, "
                         f"got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ShapeError(f"{name}: the tensor is empty (shape {tuple(x.shape)})")
    if x.dtype == torch.bool or x.is_complex():
        raise DTypeError(f"{name}: {x.dtype} images are not supported; use uint8 (0..255), uint16 (16-bit) "
                         f"or a float tensor with data_range")
    if x.is_floating_point():
        return _quantise(x, name, data_range)
    # integer images carry their range in their dtype (data_range applies to float tensors only)
    if x.dtype == torch.uint16:
        return x
    if x.dtype != torch.uint8:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ValueRangeError(f"{name}: {x.dtype} values {lo}..{hi} are outside 0..255 (integer images are "
                                  f"8-bit grey levels; pass a float tensor with data_range for other scales)")
        x = x.to(torch.uint8)
    return x


def _quantise(x: Tensor, name: str, data_range) -> Tensor:
    if data_range is None:
        lo, hi = float(x.min()), float(x.max())
        raise DataRangeError(f"{name}: a {x.dtype} image needs data_range (values here {lo:.4g}..{hi:.4g}): "
                             f"pass data_range=1.0 for images in [0, 1] or data_range=255.0 for [0, 255]")
    try:
        data_range = float(data_range)
    except (TypeError, ValueError):
        raise DataRangeError(f"{name}: data_range must be a positive number, got {data_range!r}") from None
    if not data_range > 0:
        raise DataRangeError(f"{name}: data_range must be a positive number, got {data_range!r}")
    if not torch.isfinite(x).all():
        raise ValueRangeError(f"{name}: the image holds NaN or inf values")
    lo, hi = float(x.min()), float(x.max())
    slack = 1e-6 * data_range  # float round-off of a computed image in [0, data_range]
    if lo < -slack or hi > data_range + slack:
        raise ValueRangeError(f"{name}: values {lo:.6g}..{hi:.6g} lie outside [0, data_range={data_range:g}] "
                              f"(clamp the image, or state the range it is in)")
    y = x.to(torch.float64) * (255.0 / data_range)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def check_min_size(h: int, w: int, minimum: int, what: str, name: str = "images") -> None:
    if h < minimum or w < minimum:
        raise ImageTooSmallError(f"{name} of {w}x{h} pixels are too small for {what} "
                                 f"(at least {minimum}x{minimum})")


def check_triple(fused, a, b, data_range: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The three images of a scoring call, each through :func:`as_images`; sizes must agree, and a source
    given once (N = 1) is shared by every fused image of the batch."""
    f = as_images(fused, "fused", data_range)
    a = as_images(a, "a", data_range)
    b = as_images(b, "b", data_range)
    n = f.shape[0]
    out = []
    for nm, t in (("a", a), ("b", b)):
        if t.shape[-2:] != f.shape[-2:]:
            raise SizeMismatchError(f"fused is {f.shape[-1]}x{f.shape[-2]} pixels but {nm} is "
                                    f"{t.shape[-1]}x{t.shape[-2]}: the three images must share their size")
        if t.shape[0] != n:
            if t.shape[0] != 1:
                raise SizeMismatchError(f"fused holds {n} images but {nm} holds {t.shape[0]}: give one source "
                                        f"per fused image, or one source for all")
            t = t.expand(n, -1, -1, -1)
        out.append(t)
    return f, out[0], out[1]
