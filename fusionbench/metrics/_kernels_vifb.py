"""Low-level building blocks of the VIFB (MATLAB) metric kernels (:mod:`fusionbench.metrics.functional_vifb`).

Everything works on (..., H, W) float tensors and is vectorised over the leading dimensions;
Python loops run only over filter taps (at most 31) or over a fixed handful of maps.
Each helper names the MATLAB construct it reproduces. The spatial filters (Sobel, separable
windows, block sums, MATLAB ``gradient``) are shared with the other kernels and live in
:mod:`fusionbench.metrics.filters`; they are re-exported here under their MATLAB-flavoured names.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .filters import block_sums, fspecial_gaussian_1d, magnitude_, matlab_gradient, sobel_xy
from .filters import correlate_valid as corr1d_valid
from .filters import separable_same_zero as sep_filter_same_zero
from .filters import separable_valid as sep_filter_valid

__all__ = ["EPS64", "round_half_away", "minmax", "stretch_255", "compact", "to_float", "levels_u8", "hist256",
           "joint_hist256", "entropy_from_counts", "freqspace_radius", "fft_filter_real", "fast_len",
           "symmetric_kernel_spectrum", "gaussian_same_fft",
           # re-exported from fusionbench.metrics.filters
           "block_sums", "magnitude_", "matlab_gradient", "sobel_xy", "corr1d_valid", "fspecial_gaussian_1d",
           "sep_filter_same_zero", "sep_filter_valid"]

EPS64 = 2.220446049250313e-16  # MATLAB eps (double)


# --------------------------------------------------------------------------------------------
# rounding, normalisation, broadcasting
# --------------------------------------------------------------------------------------------

def round_half_away(x: Tensor) -> Tensor:
    """MATLAB ``round`` / ``int16()``: round half away from zero, exact for every float."""
    r = x.round()  # half to even
    d = x - r
    up = (d == 0.5) & (x > 0)  # k + 0.5 (k even) sent down to k
    down = (d == -0.5) & (x < 0)  # -(k + 0.5) sent up to -k
    return r.add_(up.to(x.dtype)).sub_(down.to(x.dtype))


def minmax(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image min and max over the last two dims, keepdim."""
    lo, hi = x.flatten(-2).aminmax(dim=-1)
    return lo[..., None, None], hi[..., None, None]


def stretch_255(x: Tensor) -> Tensor:
    """Min-max stretch to 0..1, times 255, rounded half away from zero.

    This is both VIFB's MI binning (``int16((x-min)/(max-min)*255)``) and Z. Liu's ``normalize1``
    used by Qcb and Qcv (same operation order). A constant image gives all zeros: VIFB's MI sets
    it to zeros explicitly, ``normalize1`` leaves an all-zero image as it is (and would give NaN
    for any other constant, which we map to zeros too).
    """
    lo, hi = minmax(x)
    rng = hi - lo
    rng = torch.where(rng > 0, rng, torch.ones_like(rng))  # constant: x - lo is 0 anyway
    y = torch.sub(x, lo).div_(rng).mul_(255)
    r = y.round()  # half to even; then fix the ties sent down (y >= 0)
    return r.add_(y.sub_(r).eq_(0.5))


def compact(x: Tensor) -> Tensor:
    """Undo stride-0 broadcasting on the batch and channel dims (an ``expand``ed source).

    Per-source work then runs once and broadcasts against the fused batch. The values are
    unchanged; only redundant computation is skipped.
    """
    for d in (0, 1):
        if x.ndim == 4 and x.shape[d] > 1 and x.stride(d) == 0:
            x = x.narrow(d, 0, 1)
    return x


def to_float(x: Tensor, dtype: torch.dtype) -> Tensor:
    """Convert to ``dtype`` keeping a stride-0 batch broadcast (a source shared by a batch)."""
    if x.shape[0] > 1 and x.stride(0) == 0:
        return x[:1].to(dtype).expand(x.shape)
    return x.to(dtype)


# --------------------------------------------------------------------------------------------
# histograms
# --------------------------------------------------------------------------------------------

def levels_u8(x: Tensor) -> Tensor:
    """Integer grey levels 0..255 as long (MATLAB ``floor(x)+1`` indexing, minus the 1)."""
    return x.floor().clamp_(0, 255).long()


def hist256(lev: Tensor) -> Tensor:
    """Per-image 256-bin histograms of long levels (..., H, W) -> (..., 256) counts (long)."""
    lead = lev.shape[:-2]
    m = math.prod(lead)
    off = (torch.arange(m, device=lev.device) * 256).view(*lead, 1, 1)
    h = torch.bincount((lev + off).reshape(-1), minlength=256 * m)
    return h.view(*lead, 256)


def joint_hist256(la: Tensor, lb: Tensor) -> Tensor:
    """Per-image 256x256 joint histograms (rows: la, columns: lb) of long levels, broadcast
    against each other -> (..., 256, 256) counts."""
    lead = torch.broadcast_shapes(la.shape, lb.shape)[:-2]
    m = math.prod(lead)
    off = (torch.arange(m, device=la.device) * 65536).view(*lead, 1, 1)
    idx = (lb + off).add_(la * 256)  # lb + off already has the full broadcast shape
    h = torch.bincount(idx.reshape(-1), minlength=65536 * m)
    return h.view(*lead, 256, 256)


def entropy_from_counts(h: Tensor, total: float, dtype: torch.dtype, base: float | None = None) -> Tensor:
    """-sum p log p over the non-empty bins of the last dim, p = counts / total (nats, or ``base``)."""
    p = h.to(dtype) / total
    e = -torch.xlogy(p, p).sum(-1)
    return e / math.log(base) if base else e


# --------------------------------------------------------------------------------------------
# frequency domain
# --------------------------------------------------------------------------------------------

def freqspace_radius(h: int, w: int, scale_u: float, scale_v: float) -> Tensor:
    """r = sqrt(u^2 + v^2) of ``[u,v] = freqspace([h,w],'meshgrid'); u = scale_u*u; v = scale_v*v``.

    Returned in float64 in the *unshifted* FFT layout (``ifftshift`` of MATLAB's grid), so that
    ``ifft2(ifftshift(fftshift(X) .* S(r)))`` becomes ``ifft2(X * S(r_unshifted))``.
    """
    fu = (torch.arange(w, dtype=torch.float64) - (w // 2)) * (2.0 / w)
    fv = (torch.arange(h, dtype=torch.float64) - (h // 2)) * (2.0 / h)
    u = scale_u * fu
    v = scale_v * fv
    r = torch.sqrt(u[None, :] ** 2 + v[:, None] ** 2)
    return torch.fft.ifftshift(r)


def fft_filter_real(x: Tensor, filt: Tensor) -> Tensor:
    """``real(ifft2(fft2(x) .* filt))`` for real x (..., H, W) and a real, point-symmetric filter
    given in the unshifted FFT layout (H, W). Uses the real-input FFT (the result is real)."""
    h, w = x.shape[-2:]
    spec = torch.fft.rfft2(x)
    spec.mul_(filt[:, : w // 2 + 1].to(device=x.device, dtype=x.dtype))
    return torch.fft.irfft2(spec, s=(h, w))


def fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (a fast FFT length)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def symmetric_kernel_spectrum(taps: Tensor, n: int) -> Tensor:
    """DFT (length n, real) of an odd-length symmetric 1-D kernel centred at index 0 (wrapped)."""
    k = taps.shape[0]
    half = (k - 1) // 2
    buf = torch.zeros(n, dtype=taps.dtype)
    idx = torch.arange(-half, half + 1) % n
    buf[idx] = taps
    return torch.fft.fft(buf).real


def gaussian_same_fft(y: Tensor, kernels: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
    """``filter2(outer(tv, th), y, 'same')`` (zero padding) for several symmetric separable kernels
    at once, through one zero-padded FFT of y. (..., H, W) -> list of (..., H, W).

    Padding to at least H + k//2 rows and W + k//2 columns keeps the circular convolution from
    wrapping image data into the output; the kernels' symmetry makes correlation = convolution.
    """
    h, w = y.shape[-2:]
    half = max(max(tv.shape[0], th.shape[0]) for tv, th in kernels) // 2
    ph, pw = fast_len(h + half), fast_len(w + half)
    spec = torch.fft.rfft2(y, s=(ph, pw))
    out = []
    for i, (tv, th) in enumerate(kernels):
        sv = symmetric_kernel_spectrum(tv, ph)
        sh = symmetric_kernel_spectrum(th, pw)[: pw // 2 + 1]
        k2 = (sv[:, None] * sh[None, :]).to(device=y.device, dtype=y.dtype)
        prod = spec.mul_(k2) if i == len(kernels) - 1 else spec * k2
        out.append(torch.fft.irfft2(prod, s=(ph, pw))[..., :h, :w])
    return out
