"""Classical, training-free fusion rules on luma: batched torch, any device.

Every function takes two float tensors ``a``, ``b`` of shape (N, 1, H, W) with values in [0, 1] and
returns the fused (N, 1, H, W) image in the same range (not clamped; the caller clamps and rounds).
Colour is handled outside (:func:`fusionbench.color.fuse_y_keep_chroma`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .filters import box_mean, filter2d, gaussian_kernel1d, guided_filter, levels_for, pad2d, sep_filter

# ---------------------------------------------------------------------------------------------
# pixel rules


def average(a: Tensor, b: Tensor) -> Tensor:
    """Pixel-wise mean."""
    return (a + b) * 0.5


def choose_max(a: Tensor, b: Tensor) -> Tensor:
    """Pixel-wise choose-max. On intensities (non-negative) this is the max-abs rule."""
    return torch.maximum(a, b)


def select_max_abs(ca: Tensor, cb: Tensor) -> Tensor:
    """Coefficient-wise max-abs selection; ties keep the first source."""
    return torch.where(ca.abs() >= cb.abs(), ca, cb)


# ---------------------------------------------------------------------------------------------
# Laplacian pyramid (Burt & Adelson 1983)

# The generating kernel w = [1/4 - a/2, 1/4, a, 1/4, 1/4 - a/2] with a = 0.375 (Burt & Adelson's choice
# that makes w close to a Gaussian): [1, 4, 6, 4, 1] / 16.
_BURT = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16.0


def _reduce(g: Tensor) -> Tensor:
    return sep_filter(g, _BURT, _BURT, "symmetric")[..., ::2, ::2]


def _expand(g: Tensor, size: tuple[int, int]) -> Tensor:
    """Zero-insertion upsampling to ``size`` followed by 2·w in each direction (Burt & Adelson's EXPAND)."""
    n, c = g.shape[:2]
    up = g.new_zeros((n, c, size[0], size[1]))
    up[..., ::2, ::2] = g
    return sep_filter(up, 2 * _BURT, 2 * _BURT, "symmetric")


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """[L0, ..., L_{levels-1}, G_levels]: band-pass levels then the low-pass residual."""
    out, g = [], x
    for _ in range(levels):
        nxt = _reduce(g)
        out.append(g - _expand(nxt, g.shape[-2:]))
        g = nxt
    out.append(g)
    return out


def collapse(pyr: list[Tensor]) -> Tensor:
    g = pyr[-1]
    for lap in reversed(pyr[:-1]):
        g = lap + _expand(g, lap.shape[-2:])
    return g


def laplacian_pyramid_fusion(a: Tensor, b: Tensor, levels: int = 4) -> Tensor:
    """Laplacian-pyramid fusion: max-abs on the band-pass levels, average of the low-pass residual.

    The pyramid is Burt & Adelson's (1983); the selection rule is the standard choose-max rule of
    pyramid fusion. ``levels`` is reduced for small images so the coarsest level keeps >= 8 px per side.
    """
    lv = levels_for(*a.shape[-2:], levels)
    pa, pb = laplacian_pyramid(a, lv), laplacian_pyramid(b, lv)
    fused = [select_max_abs(x, y) for x, y in zip(pa[:-1], pb[:-1])]
    fused.append(average(pa[-1], pb[-1]))
    return collapse(fused)


# ---------------------------------------------------------------------------------------------
# DWT (Li, Manjunath & Mitra 1995)

_SQ3 = math.sqrt(3.0)
WAVELETS: dict[str, tuple[float, ...]] = {
    # orthonormal scaling (low-pass synthesis) filters, sum = sqrt(2)
    "haar": (1 / math.sqrt(2.0), 1 / math.sqrt(2.0)),
    "db2": tuple(v / (4 * math.sqrt(2.0)) for v in (1 + _SQ3, 3 + _SQ3, 3 - _SQ3, 1 - _SQ3)),
    "db4": (0.23037781330885523, 0.7148465705525415, 0.6308807679295904, -0.02798376941698385,
            -0.18703481171888114, 0.030841381835986965, 0.032883011666982945, -0.010597401784997278),
}


def _qmf(h: Tensor) -> Tensor:
    """High-pass partner g[k] = (-1)^k h[L-1-k] of an orthonormal low-pass filter."""
    sign = torch.tensor([(-1.0) ** k for k in range(h.numel())], dtype=h.dtype)
    return sign * h.flip(0)


def _analysis_1d(x: Tensor, f: Tensor, dim: int) -> Tensor:
    """Periodic filtering + downsampling by 2 along ``dim`` (-1 or -2): y[n] = sum_k f[k] x[(2n+k) mod N]."""
    L = f.numel()
    if dim == -1:
        xp = torch.cat([x, x[..., : L - 1]], -1) if L > 1 else x
        return F.conv2d(xp, f.view(1, 1, 1, L), stride=(1, 2))
    xp = torch.cat([x, x[..., : L - 1, :]], -2) if L > 1 else x
    return F.conv2d(xp, f.view(1, 1, L, 1), stride=(2, 1))


def _synthesis_1d(y: Tensor, f: Tensor, dim: int, n: int) -> Tensor:
    """Transpose of :func:`_analysis_1d` (upsample by 2, filter, wrap the tail) back to length ``n``."""
    L = f.numel()
    if dim == -1:
        z = F.conv_transpose2d(y, f.view(1, 1, 1, L), stride=(1, 2))
        head, tail = z[..., :n], z[..., n:]
        if tail.shape[-1]:
            head = head.clone()
            head[..., : tail.shape[-1]] += tail
        return head
    z = F.conv_transpose2d(y, f.view(1, 1, L, 1), stride=(2, 1))
    head, tail = z[..., :n, :], z[..., n:, :]
    if tail.shape[-2]:
        head = head.clone()
        head[..., : tail.shape[-2], :] += tail
    return head


def dwt2(x: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One level of the separable periodic orthonormal DWT of (M, 1, H, W) with even H, W: LL, LH, HL, HH."""
    g = _qmf(h).to(x)
    h = h.to(x)
    lo, hi = _analysis_1d(x, h, -1), _analysis_1d(x, g, -1)
    return (_analysis_1d(lo, h, -2), _analysis_1d(lo, g, -2), _analysis_1d(hi, h, -2), _analysis_1d(hi, g, -2))


def idwt2(ll: Tensor, lh: Tensor, hl: Tensor, hh: Tensor, h: Tensor) -> Tensor:
    g = _qmf(h).to(ll)
    h = h.to(ll)
    rows = 2 * ll.shape[-2]
    lo = _synthesis_1d(ll, h, -2, rows) + _synthesis_1d(lh, g, -2, rows)
    hi = _synthesis_1d(hl, h, -2, rows) + _synthesis_1d(hh, g, -2, rows)
    cols = 2 * ll.shape[-1]
    return _synthesis_1d(lo, h, -1, cols) + _synthesis_1d(hi, g, -1, cols)


def _li_select(ca: Tensor, cb: Tensor, window: int, consistency: bool) -> Tensor:
    """Li et al.'s rule: activity = max |c| over a window; choose the larger; majority-filter the decision."""
    if window > 1:
        act_a = F.max_pool2d(ca.abs(), window, stride=1, padding=window // 2)
        act_b = F.max_pool2d(cb.abs(), window, stride=1, padding=window // 2)
    else:
        act_a, act_b = ca.abs(), cb.abs()
    take_a = (act_a >= act_b).to(ca.dtype)
    if consistency:
        # a coefficient follows the majority of its 3x3 neighbourhood (clipped at the border)
        take_a = (F.avg_pool2d(take_a, 3, stride=1, padding=1, count_include_pad=False) > 0.5).to(ca.dtype)
    return take_a * ca + (1 - take_a) * cb


def dwt_fusion(a: Tensor, b: Tensor, levels: int = 3, wavelet: str = "db2", window: int = 3,
               consistency: bool = True) -> Tensor:
    """Wavelet fusion after Li, Manjunath & Mitra (1995).

    Orthonormal DWT (``haar``, ``db2``, ``db4``) over ``levels`` levels; detail coefficients chosen by
    the area-based maximum-selection rule (activity = max |coefficient| in a ``window`` x ``window``
    window; ``window=1`` is the plain per-coefficient max-abs rule) followed by consistency
    verification with a 3x3 majority filter (``consistency``); approximation coefficients averaged.
    The image is mirrored by the filters' reach and to a multiple of 2**levels before the periodic
    transform, and cropped back, so no wrap-around reaches the image.
    """
    if wavelet not in WAVELETS:
        raise ValueError(f"wavelet {wavelet!r}: use one of {', '.join(WAVELETS)}")
    h = torch.tensor(WAVELETS[wavelet], dtype=torch.float64)
    H, W = a.shape[-2:]
    lv = levels_for(H, W, levels, min_size=4)
    step = 2 ** lv
    margin = (h.numel() - 2) * step if h.numel() > 2 else 0
    ph, pw = (-(H + 2 * margin)) % step, (-(W + 2 * margin)) % step
    x = pad2d(torch.cat([a, b], 0), margin, margin + ph, margin, margin + pw, "symmetric")
    n = a.shape[0]
    bands = []
    ll = x
    for _ in range(lv):
        ll, lh, hl, hh = dwt2(ll, h)
        bands.append((lh, hl, hh))
    fused_ll = average(ll[:n], ll[n:])
    for lh, hl, hh in reversed(bands):
        fl = [_li_select(c[:n], c[n:], window, consistency) for c in (lh, hl, hh)]
        fused_ll = idwt2(fused_ll, *fl, h)
    return fused_ll[..., margin : margin + H, margin : margin + W]


# ---------------------------------------------------------------------------------------------
# GFF (Li, Kang & Hu, TIP 2013)

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)


def gff(a: Tensor, b: Tensor, r1: int = 45, eps1: float = 0.3, r2: int = 7, eps2: float = 1e-6,
        avg_size: int = 31, gauss_size: int = 11, gauss_sigma: float = 5.0, quantize_weights: bool = True) -> Tensor:
    """Guided-filtering fusion (Li, Kang & Hu, IEEE TIP 22(7), 2013).

    1. Two-scale decomposition: base B = I * Z (``avg_size`` x ``avg_size`` mean, 31 in the paper),
       detail D = I - B.
    2. Saliency S = |I * L| * g (3x3 Laplacian, then an 11x11 Gaussian with sigma 5).
    3. Initial weights P_n = 1 where S_n is the largest (first source on ties), else 0.
    4. Weights refined by the guided filter with the source as guide: W^B = G_{r1,eps1}(P, I),
       W^D = G_{r2,eps2}(P, I), clipped to [0, 1] and normalised to sum 1 per pixel
       (paper values r1=45, eps1=0.3, r2=7, eps2=1e-6 on [0, 1] data).
    5. F = sum_n W^B_n B_n + W^D_n D_n.

    Border handling follows the authors' MATLAB code (``imfilter(..., 'replicate')``, box windows clipped
    at the border inside the guided filter); ``quantize_weights`` reproduces that code's rounding of the
    clipped weights to multiples of 1/255 before normalisation.
    """
    x = torch.cat([a, b], 0)
    n = a.shape[0]
    hp = filter2d(x, _LAPLACIAN, "replicate").abs()
    g = gaussian_kernel1d(gauss_size, gauss_sigma)
    sal = sep_filter(hp, g, g, "replicate")
    p_a = (sal[:n] >= sal[n:]).to(x.dtype)
    p = torch.cat([p_a, 1 - p_a], 0)
    wb = guided_filter(x, p, r1, eps1).clamp(0, 1)
    wd = guided_filter(x, p, r2, eps2).clamp(0, 1)
    if quantize_weights:
        wb, wd = torch.round(wb * 255) / 255, torch.round(wd * 255) / 255
    wb, wd = wb + 1e-12, wd + 1e-12
    wb = wb / (wb[:n] + wb[n:]).repeat(2, 1, 1, 1)
    wd = wd / (wd[:n] + wd[n:]).repeat(2, 1, 1, 1)
    base = box_mean(x, avg_size, "replicate")
    detail = x - base
    fb, fd = wb * base, wd * detail
    return fb[:n] + fb[n:] + fd[:n] + fd[n:]


# ---------------------------------------------------------------------------------------------
# ADF (Bavirisetti & Dhuli, IEEE Sensors Journal 2016)

# the eight neighbour offsets (dy, dx) and their squared distances, Perona-Malik on an 8-neighbourhood
_NEIGHBOURS = ((-1, 0, 1.0), (1, 0, 1.0), (0, 1, 1.0), (0, -1, 1.0), (-1, 1, 2.0), (1, 1, 2.0), (1, -1, 2.0), (-1, -1, 2.0))


def anisotropic_diffusion(x: Tensor, iterations: int = 10, delta_t: float = 0.15, kappa: float = 30.0,
                          conduction: int = 1, border: str = "zero") -> Tensor:
    """Perona-Malik anisotropic diffusion on an 8-neighbourhood (x in the units of ``kappa``, here 0..255).

    conduction 1: c = exp(-(∇I/κ)²), 2: c = 1/(1+(∇I/κ)²). ``border="zero"`` reproduces the
    authors' code (MATLAB ``imfilter`` finite differences with zero padding); ``"replicate"`` gives
    zero flux across the border.
    """
    for _ in range(iterations):
        xp = pad2d(x, 1, 1, 1, 1, border)
        h, w = x.shape[-2:]
        acc = torch.zeros_like(x)
        for dy, dx, d2 in _NEIGHBOURS:
            nb = xp[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] - x
            t = nb / kappa
            c = torch.exp(-t * t) if conduction == 1 else 1.0 / (1.0 + t * t)
            acc = acc + (c * nb) / d2
        x = x + delta_t * acc
    return x


def adf(a: Tensor, b: Tensor, iterations: int = 10, delta_t: float = 0.15, kappa: float = 30.0,
        conduction: int = 1, border: str = "zero") -> Tensor:
    """Anisotropic-diffusion + KL-transform fusion (Bavirisetti & Dhuli, IEEE Sensors J. 16(1), 2016).

    Base layers A_n = anisotropic diffusion of I_n (10 iterations, step 0.15, kappa 30, exponential
    conduction, on 0..255 intensities), details D_n = I_n - A_n. Details are fused with the KL
    transform: the eigenvector of the 2x2 covariance of (D_1, D_2) with the largest eigenvalue,
    normalised to sum 1, gives the two weights (global statistics, per image). Bases are averaged.
    """
    x = torch.cat([a, b], 0) * 255.0
    n = a.shape[0]
    work = torch.float64 if x.device.type in ("cpu", "cuda") else torch.float32
    base = anisotropic_diffusion(x, iterations, delta_t, kappa, conduction, border).to(work)
    det = x.to(work) - base
    d1, d2 = det[:n].flatten(1), det[n:].flatten(1)
    d1c, d2c = d1 - d1.mean(1, keepdim=True), d2 - d2.mean(1, keepdim=True)
    m = d1.shape[1] - 1 if d1.shape[1] > 1 else 1
    c11, c22, c12 = (d1c * d1c).sum(1) / m, (d2c * d2c).sum(1) / m, (d1c * d2c).sum(1) / m
    cov = torch.stack([torch.stack([c11, c12], -1), torch.stack([c12, c22], -1)], -2)  # (N, 2, 2)
    _, vecs = torch.linalg.eigh(cov)
    v = vecs[..., -1]  # eigenvector of the largest eigenvalue
    s = v.sum(-1, keepdim=True)
    ok = s.abs() > 1e-12
    wts = torch.where(ok, v / torch.where(ok, s, torch.ones_like(s)), torch.full_like(v, 0.5))
    w1, w2 = wts[:, 0].view(-1, 1, 1, 1), wts[:, 1].view(-1, 1, 1, 1)
    fused = w1 * det[:n] + w2 * det[n:] + 0.5 * (base[:n] + base[n:])
    return (fused / 255.0).to(a.dtype)
