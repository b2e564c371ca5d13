"""Small batched filters on (N, C, H, W) float tensors, any device. Written for the classical methods.

Border conventions are named after MATLAB's ``imfilter`` options because the reference implementations
of these methods are MATLAB code: ``replicate`` repeats the edge pixel, ``zero`` pads with 0,
``symmetric`` mirrors including the edge pixel (half-sample symmetric, as MATLAB ``'symmetric'``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def symmetric_index(n: int, before: int, after: int, device=None) -> Tensor:
    """Indices into a length-``n`` axis that extend it by half-sample symmetric mirroring (any pad size)."""
    i = torch.arange(-before, n + after, device=device)
    period = 2 * n
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - 1 - i, i)


def pad2d(x: Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> Tensor:
    """Pad the last two dims. ``mode``: replicate | zero | symmetric | circular."""
    if top == bottom == left == right == 0:
        return x
    if mode == "zero":
        return F.pad(x, (left, right, top, bottom))
    if mode == "replicate":
        return F.pad(x, (left, right, top, bottom), mode="replicate")
    if mode == "circular":
        return F.pad(x, (left, right, top, bottom), mode="circular")
    if mode == "symmetric":
        h, w = x.shape[-2:]
        x = x.index_select(-2, symmetric_index(h, top, bottom, x.device))
        return x.index_select(-1, symmetric_index(w, left, right, x.device))
    raise ValueError(f"unknown padding mode {mode!r}")


def sep_filter(x: Tensor, kh: Tensor, kw: Tensor, mode: str = "replicate") -> Tensor:
    """Correlate every channel with the separable kernel ``kh`` (vertical) ⊗ ``kw`` (horizontal), same size.

    Odd kernel lengths; the output pixel is aligned with the kernel centre (MATLAB ``imfilter``).
    """
    n, c, h, w = x.shape
    rh, rw = kh.numel() // 2, kw.numel() // 2
    y = pad2d(x.reshape(n * c, 1, h, w), rh, rh, rw, rw, mode)
    y = F.conv2d(y, kw.to(x).view(1, 1, 1, -1))
    y = F.conv2d(y, kh.to(x).view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def filter2d(x: Tensor, k: Tensor, mode: str = "replicate") -> Tensor:
    """Correlate every channel with the 2-D odd-sized kernel ``k`` (same size)."""
    n, c, h, w = x.shape
    kh, kw = k.shape
    y = pad2d(x.reshape(n * c, 1, h, w), kh // 2, kh // 2, kw // 2, kw // 2, mode)
    return F.conv2d(y, k.to(x).view(1, 1, kh, kw)).reshape(n, c, h, w)


def gaussian_kernel1d(size: int, sigma: float, dtype=torch.float64) -> Tensor:
    """Normalised sampled Gaussian of odd ``size`` (MATLAB ``fspecial('gaussian', size, sigma)`` is its outer product)."""
    r = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    return g / g.sum()


def box_mean(x: Tensor, size: int, mode: str = "replicate") -> Tensor:
    """Mean over a ``size`` x ``size`` window with padding ``mode`` (MATLAB ``fspecial('average')`` + imfilter)."""
    k = torch.full((size,), 1.0 / size, dtype=torch.float64)
    return sep_filter(x, k, k, mode)


def _clipped_mean_1d(y: Tensor, r: int, dim: int) -> Tensor:
    n = y.shape[dim]
    shape = list(y.shape)
    shape[dim] = 1
    cs = torch.cat([y.new_zeros(shape), torch.cumsum(y, dim)], dim)  # cs[j] = sum of the first j values
    j = torch.arange(n, device=y.device)
    hi, lo = torch.clamp(j + r + 1, max=n), torch.clamp(j - r, min=0)
    count = (hi - lo).to(y.dtype)
    view = [1] * y.ndim
    view[dim] = n
    return (cs.index_select(dim, hi) - cs.index_select(dim, lo)) / count.view(view)


def clipped_box_mean(x: Tensor, r: int) -> Tensor:
    """Mean over the (2r+1)^2 window clipped to the image (He et al.'s ``boxfilter(I, r) ./ N``).

    Running sums along each axis (O(1) per pixel whatever ``r``); the clipped window is a rectangle, so
    the 2-D mean factorises into two 1-D means. Use float64 for large images and small ``eps``.
    """
    return _clipped_mean_1d(_clipped_mean_1d(x, r, -1), r, -2)


def guided_filter(guide: Tensor, p: Tensor, r: int, eps: float) -> Tensor:
    """Grey-guide guided filter (He, Sun & Tang, ECCV 2010 / TPAMI 2013), box windows clipped at the border.

    Statistics are accumulated in float64 (CUDA and CPU) because ``eps`` can be 1e-6 on [0, 1] data,
    where float32 cancellation in var = E[I²] - E[I]² is of the same order.
    """
    dt = guide.dtype
    work = torch.float64 if guide.device.type in ("cpu", "cuda") else torch.float32
    i, p = guide.to(work), p.to(work)
    c = i.shape[1]
    means = clipped_box_mean(torch.cat([i, p, i * p, i * i], 1), r)  # the four window means in one pass
    mean_i, mean_p, corr_ip, corr_ii = means.split(c, 1)
    a = (corr_ip - mean_i * mean_p) / (corr_ii - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    mean_a, mean_b = clipped_box_mean(torch.cat([a, b], 1), r).split(c, 1)
    return (mean_a * i + mean_b).to(dt)


def levels_for(h: int, w: int, wanted: int, min_size: int = 8) -> int:
    """At most ``wanted`` dyadic levels such that the coarsest level keeps ``min_size`` pixels per side."""
    lim = int(math.floor(math.log2(max(1, min(h, w)) / min_size))) if min(h, w) >= min_size else 0
    return max(0, min(wanted, lim))
