"""Filters and windows shared by the metric kernels, each written once.

All work on (..., H, W) float tensors, vectorised over the leading dimensions; Python loops run
over filter taps only. Taps are Python floats so that every product is taken in the data's dtype,
in a fixed order (the results do not depend on the device or on a convolution backend's choice
of algorithm). Each helper names the MATLAB / SciPy construct it reproduces.

Padding conventions, as the references name them:

* ``'valid'`` (``filter2(k, x, 'valid')``, ``scipy.signal.convolve2d(..., 'valid')``): only the
  window positions fully inside the image; :func:`correlate_valid`, :func:`separable_valid`.
* ``'same'`` with zero padding (``filter2`` / ``conv2(..., 'same')``): :func:`separable_same_zero`,
  :func:`sobel_xy` with ``mode="constant"``.
* replicate borders (``imfilter(..., 'replicate')``): :func:`sobel_xy` with ``mode="replicate"``.

Correlation, not convolution: for the symmetric windows here the two are the same; where a
reference convolves with an antisymmetric kernel (Sobel) the caller says what the sign flip does.
"""
from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "gaussian_profile",
    "fspecial_gaussian_1d",
    "gaussian_window",
    "correlate_valid",
    "separable_valid",
    "separable_same_zero",
    "window_sum_valid",
    "sobel_xy",
    "magnitude_",
    "matlab_gradient",
    "block_sums",
]


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------
def gaussian_profile(size: int, sigma: float) -> Tensor:
    """exp(-x^2 / (2 sigma^2)) for x = -(size-1)/2 .. (size-1)/2, float64, not normalised (peak 1)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.exp(-(x * x) / (2 * sigma * sigma))


@cache
def fspecial_gaussian_1d(size: int, sigma: float) -> tuple[float, ...]:
    """1-D factor g of MATLAB ``fspecial('gaussian', size, sigma)`` = outer(g, g), normalised, as Python floats.

    fspecial zeroes entries of the 2-D kernel below eps * max before normalising, which would make
    it non-separable; no window used here (SSIM's 11/1.5, VIF's 17, 9, 5, 3 with sigma = size/5) has
    such an entry, and this raises if one would.
    """
    g = gaussian_profile(int(size), float(sigma))
    if bool((torch.outer(g, g) < torch.finfo(torch.float64).eps * g.max() ** 2).any()):
        raise ValueError(f"gaussian window {size}/{sigma}: fspecial would truncate it; not separable")
    return tuple((g / g.sum()).tolist())


def gaussian_window(size: int, sigma: float, dtype=torch.float64, device=None) -> Tensor:
    """1-D normalised Gaussian whose outer product is MATLAB ``fspecial('gaussian', size, sigma)``."""
    return torch.tensor(fspecial_gaussian_1d(int(size), float(sigma)), dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# 'valid' and 'same' correlation with separable windows
# --------------------------------------------------------------------------------------------
def correlate_valid(x: Tensor, taps, dim: int, stride: int = 1) -> Tensor:
    """'valid' correlation of ``x`` with the 1-D ``taps`` (Python floats) along ``dim`` (-1 or -2).

    Output index i is sum_k taps[k] * x[i * stride + k], accumulated in tap order: with ``stride`` 2
    that is the full 'valid' result keeping every second sample, starting at 0. (Shifted slices are
    about 10x faster than ``conv2d`` for float64 on CPU, and exact in the same way.)
    """
    if dim not in (-1, -2):
        raise ValueError("dim must be -1 or -2")
    k = len(taps)
    no = (x.shape[dim] - k) // stride + 1

    def tap(i):
        sl = slice(i, i + (no - 1) * stride + 1, stride)
        return x[..., sl, :] if dim == -2 else x[..., sl]

    out = tap(0) * taps[0]
    for i in range(1, k):  # window taps, not pixels
        out.add_(tap(i), alpha=taps[i])
    return out


def separable_valid(x: Tensor, tv, th=None, stride: int = 1) -> Tensor:
    """``filter2(outer(tv, th), x, 'valid')`` for (..., H, W): rows (``th``, default ``tv``) first, then
    columns, each by :func:`correlate_valid`. Empty (zero-size) when the image is smaller than the window."""
    th = tv if th is None else th
    h, w = x.shape[-2:]
    if h < len(tv) or w < len(th):
        rows = (h - len(tv)) // stride + 1 if h >= len(tv) else 0
        cols = (w - len(th)) // stride + 1 if w >= len(th) else 0
        return x.new_zeros(*x.shape[:-2], rows, cols)
    return correlate_valid(correlate_valid(x, th, -1, stride), tv, -2, stride)


def separable_same_zero(x: Tensor, tv, th=None) -> Tensor:
    """``filter2(outer(tv, th), x, 'same')`` for odd-length taps: zero padding, output size of x."""
    th = tv if th is None else th
    pv, ph = (len(tv) - 1) // 2, (len(th) - 1) // 2
    return separable_valid(F.pad(x, (ph, ph, pv, pv)), tv, th)


def window_sum_valid(x: Tensor, k: int, dim: int) -> Tensor:
    """Sum of k consecutive samples along ``dim`` ('valid'), by doubling: about log2(k) + popcount(k) passes.

    The additions are exact for integer-valued data (and float64 sums of float32 values), so the
    association does not matter there.
    """
    def sl(t, start, length):
        return t.narrow(dim, start, length)

    n = x.shape[dim]
    no = n - k + 1
    pieces = {1: x}
    p = 1
    while p * 2 <= k:
        t = pieces[p]
        ln = t.shape[dim] - p
        pieces[p * 2] = sl(t, 0, ln) + sl(t, p, ln)
        p *= 2
    parts = []
    off = 0
    for size in sorted(pieces, reverse=True):
        if k - off >= size:
            parts.append(sl(pieces[size], off, no))
            off += size
    if len(parts) == 1:
        return parts[0].clone() if parts[0] is x else parts[0]
    out = parts[0] + parts[1]
    for part in parts[2:]:
        out += part
    return out


def block_sums(x: Tensor, block: int) -> Tensor:
    """``blkproc(x, [b b], @(t) sum(t(:)))``: sums over non-overlapping b x b blocks, partial
    blocks at the right/bottom zero-padded (as blkproc does). (..., H, W) -> (..., ceil(H/b), ceil(W/b))."""
    h, w = x.shape[-2:]
    s = F.avg_pool2d(x.reshape(-1, 1, h, w), block, ceil_mode=True, divisor_override=1)
    return s.view(*x.shape[:-2], *s.shape[-2:])


# --------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------
def sobel_xy(x: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """Sobel correlations of (..., H, W), output size of x.

    sx = correlation with [-1 0 1; -2 0 2; -1 0 1]  (right minus left)
    sy = correlation with [-1 -2 -1; 0 0 0; 1 2 1]  (bottom minus top)
    ``mode`` is 'constant' (zero padding: filter2/conv2 'same') or 'replicate' (imfilter).
    Exact for integer-valued inputs.
    """
    shape = x.shape
    x4 = x.reshape(-1, 1, shape[-2], shape[-1])
    p = F.pad(x4, (1, 1, 1, 1), mode=mode) if mode != "constant" else F.pad(x4, (1, 1, 1, 1))
    p = p.view(*shape[:-2], shape[-2] + 2, shape[-1] + 2)
    sv = p[..., 1:-1, :] * 2  # vertical [1 2 1] smoothing, (H, W+2)
    sv.add_(p[..., :-2, :]).add_(p[..., 2:, :])
    sx = sv[..., :, 2:] - sv[..., :, :-2]
    del sv
    sh = p[..., :, 1:-1] * 2  # horizontal smoothing, (H+2, W)
    sh.add_(p[..., :, :-2]).add_(p[..., :, 2:])
    sy = sh[..., 2:, :] - sh[..., :-2, :]
    return sx, sy


def magnitude_(sx: Tensor, sy: Tensor) -> Tensor:
    """sqrt(sx^2 + sy^2), computed in the storage of sx (which is overwritten)."""
    return sx.square_().addcmul_(sy, sy).sqrt_()


def matlab_gradient(x: Tensor) -> tuple[Tensor, Tensor]:
    """MATLAB ``gradient`` with unit spacing: (d/dx along columns, d/dy along rows).

    Central differences (x[j+1] - x[j-1]) / 2 inside, one-sided at the borders; a dimension of
    length 1 gives 0.
    """
    def along(t: Tensor, dim: int) -> Tensor:
        n = t.shape[dim]
        g = torch.empty_like(t)
        if n < 2:
            return g.zero_()
        torch.sub(t.narrow(dim, 1, 1), t.narrow(dim, 0, 1), out=g.narrow(dim, 0, 1))
        torch.sub(t.narrow(dim, n - 1, 1), t.narrow(dim, n - 2, 1), out=g.narrow(dim, n - 1, 1))
        if n > 2:
            inner = g.narrow(dim, 1, n - 2)
            torch.sub(t.narrow(dim, 2, n - 2), t.narrow(dim, 0, n - 2), out=inner)
            inner.div_(2)
        return g

    return along(x, -1), along(x, -2)
