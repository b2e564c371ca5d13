"""Low-level building blocks for the VIFB (MATLAB) metric preset.

Everything works on (..., H, W) float tensors and is vectorised over the leading dimensions;
Python loops run only over filter taps (at most 31) or over a fixed handful of maps.
Each helper names the MATLAB construct it reproduces.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

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
# filtering
# --------------------------------------------------------------------------------------------

def corr1d_valid(x: Tensor, taps, dim: int) -> Tensor:
    """'valid' 1-D correlation along ``dim`` with Python-float taps, by shifted slices.

    (About 10x faster than conv2d for float64 on CPU, and exact in the same way.)
    """
    k = len(taps)
    n = x.shape[dim] - k + 1
    out = x.narrow(dim, 0, n) * taps[0]
    for i in range(1, k):
        out.add_(x.narrow(dim, i, n), alpha=taps[i])
    return out


def sep_filter_valid(x: Tensor, tv, th) -> Tensor:
    """2-D 'valid' correlation with the separable kernel outer(tv, th): ``filter2(k, x, 'valid')``."""
    return corr1d_valid(corr1d_valid(x, th, -1), tv, -2)


def sep_filter_same_zero(x: Tensor, tv, th) -> Tensor:
    """``filter2(outer(tv, th), x, 'same')`` for odd-length taps: zero padding, output size of x."""
    pv, ph = (len(tv) - 1) // 2, (len(th) - 1) // 2
    return sep_filter_valid(F.pad(x, (ph, ph, pv, pv)), tv, th)


def fspecial_gaussian_1d(size: int, sigma: float) -> list[float]:
    """1-D factor g of MATLAB ``fspecial('gaussian', size, sigma)`` = outer(g, g).

    fspecial zeroes entries below eps*max before normalising; that would break separability, so
    this raises if any entry of the 2-D kernel would be zeroed (never the case for SSIM's 11/1.5).
    """
    half = (size - 1) / 2
    xs = [-half + i for i in range(size)]
    g = [math.exp(-(v * v) / (2 * sigma * sigma)) for v in xs]
    if g[0] * g[0] < EPS64:  # smallest 2-D entry relative to the max (=1)
        raise ValueError(f"fspecial('gaussian', {size}, {sigma}) is not separable (eps truncation)")
    s = sum(g)
    return [v / s for v in g]


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


def block_sums(x: Tensor, block: int) -> Tensor:
    """``blkproc(x, [b b], @(t) sum(t(:)))``: sums over non-overlapping b x b blocks, partial
    blocks at the right/bottom zero-padded (as blkproc does). (..., H, W) -> (..., ceil(H/b), ceil(W/b))."""
    h, w = x.shape[-2:]
    s = F.avg_pool2d(x.reshape(-1, 1, h, w), block, ceil_mode=True, divisor_override=1)
    return s.view(*x.shape[:-2], *s.shape[-2:])
