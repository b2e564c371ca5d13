"""Batched image-fusion metrics on NCHW float tensors: the kernels behind the presets.

Every function takes float tensors of shape (N, C, H, W) on any device and returns a tensor of
shape (N,) in the input dtype. Nothing loops over images, pixels or histogram bins in Python:
histograms use ``bincount`` with a per-image offset, windows are separable slice-and-accumulate
filters (:mod:`fusionbench.metrics.filters`).

Conventions shared by all functions:

* Intensities are on the 0..255 scale (integer-valued for the histogram metrics, which round and
  clip to 0..255 first).
* ``C > 1``: each channel is scored as its own single-channel image and the channel scores are
  averaged (the convention of VIFB's MATLAB toolbox). The ``cddfuse`` preset always passes
  single-channel luma images.
* Keyword arguments select conventions (window, normalisation, log base); their defaults are the
  CDDFuse evaluator's (``utils/Evaluator.py`` of MMIF-CDDFuse), which is what the ``cddfuse``
  preset uses. Other presets bind other values (see :mod:`fusionbench.metrics.presets`).
* Degenerate inputs never give NaN. The value used is stated in each docstring (for example a
  correlation with a constant image is 0).

Two-source metrics take ``(fused, a, b)``; ``a`` and ``b`` are the source images (IR and visible,
CT and MRI, ...). All two-source metrics here are symmetric in ``a`` and ``b``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import MetricUndefinedError
from .checks import check_nchw, check_same
from .filters import fspecial_gaussian_1d, gaussian_window, separable_valid, window_sum_valid

__all__ = [
    "check_nchw",
    "entropy",
    "standard_deviation",
    "spatial_frequency",
    "average_gradient",
    "mutual_information",
    "correlation",
    "correlation_coefficient",
    "scd",
    "vif",
    "vifp_pair",
    "gaussian_window",
    "qabf",
    "ssim",
    "ssim_pair",
    "mse",
    "rmse",
    "psnr",
]


# --------------------------------------------------------------------------------------------
# small helpers (the input checks are in fusionbench.metrics.checks)
# --------------------------------------------------------------------------------------------
def _per_channel(*xs: Tensor) -> tuple[int, int, list[Tensor]]:
    """(N, C, H, W) -> (N*C, 1, H, W) views; returns N, C and the reshaped tensors."""
    n, c = xs[0].shape[:2]
    return n, c, [x.reshape(n * c, 1, *x.shape[-2:]) for x in xs]


def _channel_mean(v: Tensor, n: int, c: int) -> Tensor:
    return v.view(n, c).mean(1) if c > 1 else v.view(n)


def _levels(x: Tensor, levels: int = 256) -> Tensor:
    """Integer grey levels 0..levels-1 as a float tensor (round half to even, then clip)."""
    return x.round().clamp_(0, levels - 1)


def _offset_index(idx: Tensor, per_image: int) -> Tensor:
    """(M, P) integer-valued float bin indices -> flat int32/int64 indices offset per image."""
    m = idx.shape[0]
    total = m * per_image
    it = torch.int32 if total < 2 ** 31 else torch.int64
    off = torch.arange(m, device=idx.device, dtype=it).mul_(per_image).unsqueeze(1)
    return idx.to(it).add_(off).view(-1)


def _histograms(q: Tensor, levels: int) -> Tensor:
    """Per-image histograms of (M, P) integer-valued levels: (M, levels) int64 counts."""
    m = q.shape[0]
    return torch.bincount(_offset_index(q, levels), minlength=m * levels).view(m, levels)


def _safe_div(num: Tensor, den: Tensor, fill: float) -> Tensor:
    ok = den != 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.full_like(num, fill))


# --------------------------------------------------------------------------------------------
# fused-only metrics
# --------------------------------------------------------------------------------------------
def entropy(fused: Tensor, levels: int = 256) -> Tensor:
    """Shannon entropy of the grey-level histogram of ``fused``, in bits. Higher is better.

    Values are rounded (half to even) and clipped to ``0..levels-1``; p is the histogram divided by
    the pixel count and EN = -sum p log2 p over non-empty bins. A constant image has EN = 0.

    >>> x = torch.arange(256.).view(1, 1, 16, 16)
    >>> entropy(x)
    tensor([8.])
    """
    fused = check_nchw(fused, "fused")
    n, c, (x,) = _per_channel(fused)
    q = _levels(x, levels).view(n * c, -1)
    h = _histograms(q, levels)
    p = h.to(torch.float64) / q.shape[1]  # the histogram is small: accumulate in float64
    e = 0.0 - (p * torch.log2(torch.where(h > 0, p, torch.ones_like(p)))).sum(1)  # 0.0 - x: no -0.0
    return _channel_mean(e.to(fused.dtype), n, c)


def standard_deviation(fused: Tensor) -> Tensor:
    """Population standard deviation of ``fused`` (divides by H*W, not H*W-1). Higher is better.

    >>> standard_deviation(torch.tensor([0., 2.]).view(1, 1, 1, 2))
    tensor([1.])
    """
    fused = check_nchw(fused, "fused")
    n, c, (x,) = _per_channel(fused)
    x = x.flatten(1)
    d = x - x.mean(1, keepdim=True)
    return _channel_mean(d.square_().mean(1).sqrt_(), n, c)


def spatial_frequency(fused: Tensor, normalize: str = "differences") -> Tensor:
    """Spatial frequency sqrt(RF^2 + CF^2) of ``fused``. Higher is better.

    RF^2 and CF^2 are the squared horizontal and vertical neighbour differences averaged over the
    number of differences (``normalize="differences"``, H(W-1) and (H-1)W: the CDDFuse evaluator)
    or divided by H*W (``normalize="pixels"``: the classic Eskicioglu formula as in VIFB, for one
    channel).

    >>> x = torch.tensor([[0., 1.], [0., 1.]]).view(1, 1, 2, 2)
    >>> spatial_frequency(x)
    tensor([1.])
    """
    fused = check_nchw(fused, "fused", 2)
    if normalize not in ("differences", "pixels"):
        raise ValueError("normalize must be 'differences' or 'pixels'")
    n, c, (x,) = _per_channel(fused)
    dx = (x[..., :, 1:] - x[..., :, :-1]).square().flatten(1).sum(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).square().flatten(1).sum(1)
    h, w = x.shape[-2:]
    if normalize == "differences":
        sf = (dx / (h * (w - 1)) + dy / ((h - 1) * w)).sqrt()
    else:
        sf = ((dx + dy) / (h * w)).sqrt()
    return _channel_mean(sf, n, c)


def average_gradient(fused: Tensor, normalize: str = "pixels") -> Tensor:
    """Average gradient: mean of sqrt((gx^2 + gy^2) / 2). Higher is better.

    gx and gy are ``numpy.gradient`` / MATLAB ``gradient`` differences: central (x[j+1]-x[j-1])/2
    inside, one-sided on the first and last column (row). The sum over all H*W pixels is divided
    by H*W (``normalize="pixels"``, the CDDFuse evaluator) or by (H-1)(W-1)
    (``normalize="interior"``, VIFB).

    >>> x = torch.arange(4.).repeat(4, 1).view(1, 1, 4, 4)
    >>> average_gradient(x)
    tensor([0.7071])
    """
    fused = check_nchw(fused, "fused", 2)
    if normalize not in ("pixels", "interior"):
        raise ValueError("normalize must be 'pixels' or 'interior'")
    n, c, (x,) = _per_channel(fused)
    gy, gx = torch.gradient(x, dim=(-2, -1))
    s = gx.square_().addcmul_(gy, gy).div_(2).sqrt_().flatten(1).sum(1)
    h, w = x.shape[-2:]
    s = s / (h * w if normalize == "pixels" else (h - 1) * (w - 1))
    return _channel_mean(s, n, c)


# --------------------------------------------------------------------------------------------
# information theory
# --------------------------------------------------------------------------------------------
def _plogp_sum(counts: Tensor, total: int, dtype, dim) -> Tensor:
    """-sum p log p (nats) of integer counts along ``dim``, p = counts / total.

    Accumulated in float64 (histograms are small next to the images), returned in ``dtype``.
    """
    p = counts.to(torch.float64) / total
    return (0.0 - (p * torch.log(torch.where(counts > 0, p, torch.ones_like(p)))).sum(dim)).to(dtype)


def _joint_counts(x: Tensor, ys: Tensor, levels: int) -> Tensor:
    """Joint histograms of integer levels of x (M, ...) with each of ys (K, M, ...): (K, M, L, L) int64."""
    k, m = ys.shape[:2]
    qx = _levels(x, levels).reshape(1, m, -1)
    qy = _levels(ys, levels).reshape(k, m, -1)
    idx = qy.addcmul_(qx, torch.full((), float(levels), dtype=qx.dtype, device=qx.device))  # exact: < 2^24
    counts = torch.bincount(_offset_index(idx.view(k * m, -1), levels * levels), minlength=k * m * levels * levels)
    return counts.view(k, m, levels, levels)


def _mi_from_joint(joint: Tensor, total: int, dtype) -> Tensor:
    """MI (nats) from joint counts (..., L, L) over ``total`` pixels."""
    f64 = torch.float64
    hx = _plogp_sum(joint.sum(-1), total, f64, -1)
    hy = _plogp_sum(joint.sum(-2), total, f64, -1)
    hxy = _plogp_sum(joint.flatten(-2), total, f64, -1)
    return ((hx + hy - hxy).clamp_min(0) + 0.0).to(dtype)


def mutual_information(fused: Tensor, a: Tensor, b: Tensor, levels: int = 256) -> Tensor:
    """MI(F, A) + MI(F, B) in nats (natural log), on the raw integer grey levels. Higher is better.

    Each distinct grey level is its own bin (values rounded and clipped to ``0..levels-1``), as
    ``sklearn.metrics.mutual_info_score`` on the flattened images does in the CDDFuse evaluator.
    MI = H(F) + H(S) - H(F, S), clipped at 0. A constant image gives MI = 0 for its pair.
    It is a sum over the two sources, not an average.

    >>> x = torch.arange(256.).view(1, 1, 16, 16)
    >>> mutual_information(x, x, torch.zeros_like(x))  # ln 256 + 0
    tensor([5.5452])
    """
    fused, a, b = check_same(fused, a, b)
    n, c, (f, a, b) = _per_channel(fused, a, b)
    joint = _joint_counts(f, torch.stack([a, b]), levels)
    mi = _mi_from_joint(joint, f[0].numel(), fused.dtype)
    return _channel_mean(mi[0] + mi[1], n, c)


# --------------------------------------------------------------------------------------------
# correlations
# --------------------------------------------------------------------------------------------
def correlation(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation of each image pair over all its pixels (global means): (M, ...) -> (M,).

    0 when either image is constant (the reference gives NaN there).
    """
    x = x.flatten(1)
    y = y.flatten(1)
    xc = x - x.mean(1, keepdim=True)
    yc = y - y.mean(1, keepdim=True)
    num = (xc * yc).sum(1)
    den = (xc.square().sum(1) * yc.square().sum(1)).sqrt()
    return _safe_div(num, den, 0.0)


def correlation_coefficient(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """CC = (corr(A, F) + corr(B, F)) / 2, Pearson over all pixels. Higher is better.

    A correlation involving a constant image counts as 0.

    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> correlation_coefficient(x, x, x).tolist()
    [1.0, 1.0]
    """
    fused, a, b = check_same(fused, a, b)
    n, c, (f, a, b) = _per_channel(fused, a, b)
    r = (correlation(a, f) + correlation(b, f)) / 2
    return _channel_mean(r, n, c)


def scd(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Sum of the correlations of differences (Aslantas & Bendes 2015). Higher is better.

    SCD = corr(A, F - B) + corr(B, F - A), Pearson with global means; range about -2..2.
    A correlation involving a constant image (or a constant difference) counts as 0.

    >>> g = torch.Generator().manual_seed(0)
    >>> a, b = torch.rand(1, 1, 8, 8, generator=g), torch.rand(1, 1, 8, 8, generator=g)
    >>> scd(a + b, a, b)
    tensor([2.])
    """
    fused, a, b = check_same(fused, a, b)
    n, c, (f, a, b) = _per_channel(fused, a, b)
    s = correlation(a, f - b) + correlation(b, f - a)
    return _channel_mean(s, n, c)


# --------------------------------------------------------------------------------------------
# VIF (pixel domain, Sheikh & Bovik), as in the CDDFuse evaluator
# --------------------------------------------------------------------------------------------
def vif_defined(h: int, w: int, scales: int = 4) -> bool:
    """Whether the CDDFuse evaluator's VIF (:func:`vif`) has a value for h x w images: False where one of its
    'valid' filterings meets a map smaller than the window on one side only (scipy raises there). True
    for every size with both sides >= 41."""
    def fits(h: int, w: int, k: int) -> bool:
        return (h >= k and w >= k) or (h <= k and w <= k)

    for s in range(1, scales + 1):
        k = 2 ** (scales + 1 - s) + 1
        if s > 1:  # filter and keep every second sample: the map the scale's statistics are taken on
            if not fits(h, w, k):
                return False
            h, w = (abs(h - k) + 2) // 2, (abs(w - k) + 2) // 2
        if not fits(h, w, k):
            return False
    return True


def _scipy_valid_operand(x: Tensor, k: int, offset: Tensor, scale: int) -> Tensor:
    """The map that ``scipy.signal.convolve2d(x, window, 'valid')`` effectively filters, for a k x k window.

    When x is at least k on both sides this is x. When it is at most k on both sides scipy swaps the
    operands: the result has (k - h + 1) x (k - w + 1) samples, the sums of x against every placement
    of x inside the window, which is the ordinary 'valid' filtering of x zero-padded by k - h rows
    and k - w columns on each side (zeros of the uncentred image: ``-offset`` here). When one side is
    smaller and the other larger scipy raises, and so does this (:class:`MetricUndefinedError`).
    """
    h, w = x.shape[-2:]
    if h >= k and w >= k:
        return x
    if h <= k and w <= k:
        return F.pad(x + offset, (k - w, k - w, k - h, k - h)) - offset
    raise MetricUndefinedError(
        f"VIF is undefined for this image size: at scale {scale} its {w}x{h} map is smaller than the {k}x{k} window "
        f"on one side only, where the CDDFuse evaluator's convolve2d(..., 'valid') raises (every image with both "
        f"sides >= 41 px has a VIF)", metric="VIF")


def _vifp_terms(ref: Tensor, dist: Tensor, sigma_nsq: float = 2.0, eps: float = 1e-10, scales: int = 4):
    """Numerator and denominator sums of VIFp (natural log): ref (K, M, 1, H, W), dist (M, 1, H, W).

    The K references of each distorted image share its statistics. Returns two (K, M) tensors.
    """
    k, m = ref.shape[:2]
    dist = dist.unsqueeze(0)
    # Variances and covariances do not depend on a constant offset; centring each image on its
    # own mean keeps E[x^2] - E[x]^2 as accurate as possible. (The offsets are kept: a map padded
    # with the reference's zeros is padded with -offset here.)
    m_ref, m_dist = ref.mean((-2, -1), keepdim=True), dist.mean((-2, -1), keepdim=True)
    ref, dist = ref - m_ref, dist - m_dist
    num = ref.new_zeros(k, m)
    den = ref.new_zeros(k, m)
    for s in range(1, scales + 1):  # the four scales, not a loop over images or pixels
        size = 2 ** (scales + 1 - s) + 1
        taps = fspecial_gaussian_1d(size, size / 5.0)
        if s > 1:
            ref, dist = separable_valid(_scipy_valid_operand(ref, size, m_ref, s), taps, stride=2), \
                separable_valid(_scipy_valid_operand(dist, size, m_dist, s), taps, stride=2)
        ref_w, dist_w = _scipy_valid_operand(ref, size, m_ref, s), _scipy_valid_operand(dist, size, m_dist, s)
        mu1, mu2 = separable_valid(ref_w, taps), separable_valid(dist_w, taps)
        s1 = separable_valid(ref_w * ref_w, taps).addcmul_(mu1, mu1, value=-1).clamp_min_(0)
        s2 = separable_valid(dist_w * dist_w, taps).addcmul_(mu2, mu2, value=-1).clamp_min_(0)
        s12 = separable_valid(ref_w * dist_w, taps).sub_(mu1 * mu2)
        del mu1, mu2, ref_w, dist_w
        # The reference's masking sequence reduces to: the information term counts only where
        # s1 >= eps, s2 >= eps and g = s12 / (s1 + eps) > 0 (elsewhere g is set to 0, so the term
        # is log(1 + 0) = 0 whatever sv is); there sv = max(s2 - g * s12, eps); and s1 < eps
        # counts as 0 in the denominator.
        g = s12 / (s1 + eps)
        sv = torch.addcmul(s2, g, s12, value=-1).clamp_min_(eps).add_(sigma_nsq)
        keep = (s1 >= eps) & (s2 >= eps) & (s12 > 0)
        info = g.mul_(g).mul_(s1).div_(sv).log1p_().mul_(keep)
        num += info.sum((-3, -2, -1))
        s1.masked_fill_(s1 < eps, 0)
        den += s1.div_(sigma_nsq).log1p_().sum((-3, -2, -1))
        del g, sv, keep, info, s1, s2, s12
    return num, den


def vifp_pair(ref: Tensor, dist: Tensor, sigma_nsq: float = 2.0) -> Tensor:
    """Pixel-domain VIF of ``dist`` against ``ref`` (Sheikh & Bovik 2006), 4 scales.

    Windows are MATLAB-``fspecial`` Gaussians of size 17, 9, 5, 3 (sigma = size/5) with 'valid'
    filtering; scales 2-4 filter and keep every second row and column starting at index 0.
    sigma_n^2 = 2 on the 0..255 scale. VIF = sum of log(1 + g^2 s1/(sv^2 + sigma_n^2)) over
    all scales divided by the sum of log(1 + s1/sigma_n^2). When the denominator is 0 (constant
    reference) the value is 1, as the reference code returns for its NaN.

    Images with a side under 41 px reach a scale whose map is smaller than the window; the reference's
    ``scipy.signal.convolve2d(..., 'valid')`` then swaps its operands when the map is smaller on both
    sides (reproduced, see :func:`_scipy_valid_operand`) and raises when on one side only (so does
    this: :class:`~fusionbench.errors.MetricUndefinedError`).

    The local statistics are always computed in float64 (the result is returned in the input
    dtype): the reference thresholds variances at 1e-10, far below float32 resolution of
    E[x^2] - E[x]^2 on 0..255 data, and float32 statistics were measured to move VIF by up to 8e-4.
    """
    ref, dist = check_same(ref, dist)
    n, c, (r, d) = _per_channel(ref, dist)
    num, den = _vifp_terms(r.unsqueeze(0).to(torch.float64), d.to(torch.float64), sigma_nsq)
    return _channel_mean(_safe_div(num[0], den[0], 1.0).to(ref.dtype), n, c)


def vif(fused: Tensor, a: Tensor, b: Tensor, sigma_nsq: float = 2.0) -> Tensor:
    """VIF(A -> F) + VIF(B -> F), pixel-domain VIF summed over the two sources. Higher is better.

    This is what the CDDFuse evaluator calls VIFF (it is VIFp, not Han et al.'s fusion VIFF);
    see :func:`vifp_pair` (statistics in float64 whatever the input dtype). A constant source
    contributes 1 (the reference's NaN -> 1) on images with both sides >= 41 px; on smaller ones the
    reference's operand swap zero-pads the image, so a constant is no longer constant there. Sizes where
    the reference raises raise :class:`~fusionbench.errors.MetricUndefinedError` (see :func:`vif_defined`).

    >>> x = torch.rand(1, 1, 80, 80, generator=torch.Generator().manual_seed(0)) * 255
    >>> round(vif(x, x, x).item(), 6)
    2.0
    """
    fused, a, b = check_same(fused, a, b)
    n, c, (f, a, b) = _per_channel(fused, a, b)
    num, den = _vifp_terms(torch.stack([a, b]).to(torch.float64), f.to(torch.float64), sigma_nsq)
    v = _safe_div(num, den, 1.0).to(fused.dtype)
    return _channel_mean(v[0] + v[1], n, c)


# --------------------------------------------------------------------------------------------
# Qabf (Xydeas & Petrovic)
# --------------------------------------------------------------------------------------------
def _sobel_grad_angle(x: Tensor) -> tuple[Tensor, Tensor]:
    """Sobel magnitude and atan orientation with zero padding ('same') of (..., H, W).

    Correlation with [-1 0 1; -2 0 2; -1 0 1] and [1 2 1; 0 0 0; -1 -2 -1], done separably. (The
    reference's true convolution negates both responses, which changes neither the magnitude nor
    atan(sy/sx).) The angle is atan(sy/sx), pi/2 where sx == 0.
    """
    h, w = x.shape[-2:]
    xp = F.pad(x, (1, 1, 1, 1))
    v = xp[..., 1: h + 1, :] * 2
    v += xp[..., 0:h, :]
    v += xp[..., 2: h + 2, :]
    sx = v[..., 2: w + 2] - v[..., 0:w]
    d = xp[..., 0:h, :] - xp[..., 2: h + 2, :]
    sy = d[..., 1: w + 1] * 2
    sy += d[..., 0:w]
    sy += d[..., 2: w + 2]
    del xp, v, d
    g = torch.mul(sx, sx).addcmul_(sy, sy).sqrt_()
    ang = sy.div_(sx).atan_().masked_fill_(sx == 0, math.pi / 2)
    return g, ang


def _qabf_edge_preservation(g_s: Tensor, a_s: Tensor, g_f: Tensor, a_f: Tensor) -> Tensor:
    """Q^{SF} map: strength ratio and orientation sigmoids (broadcasting S over F)."""
    tg, kg, dg = 0.9994, -15.0, 0.5
    ta, ka, da = 0.9879, -22.0, 0.8
    # G = min/max of the two strengths, except g_F itself where they are equal (the quirk)
    ratio = torch.minimum(g_s, g_f).div_(torch.maximum(g_s, g_f))
    ratio = torch.where(g_s == g_f, g_f, ratio)
    qg = ratio.sub_(dg).mul_(kg).exp_().add_(1)
    qa = (a_s - a_f).abs_().mul_(-ka / (math.pi / 2)).add_(ka * (1 - da)).exp_().add_(1)
    return qg.mul_(qa).reciprocal_().mul_(tg * ta)


def qabf(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Xydeas-Petrovic edge-preservation Q^{AB/F}. Higher is better; range 0..1.

    Sobel responses with zero padding, g = sqrt(sx^2 + sy^2), alpha = atan(sy/sx) (pi/2 where
    sx = 0; atan, not atan2). Strength ratio G = min(g_S, g_F)/max(g_S, g_F), except that where
    g_S == g_F it is g_F itself (the reference implementations' quirk: 0 where both are zero).
    A = 1 - |alpha_S - alpha_F|/(pi/2); Q = 0.9994/(1+exp(-15(G-0.5))) * 0.9879/(1+exp(-22(A-0.8)));
    Qabf = sum(Q_AF g_A + Q_BF g_B) / sum(g_A + g_B) over all pixels. When both sources have no
    edge at all (the denominator is 0) the value is 0.

    >>> x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 255
    >>> qabf(x, x, x).item() > 0.9
    True
    """
    fused, a, b = check_same(fused, a, b)
    n, c, (f, a, b) = _per_channel(fused, a, b)
    g, ang = _sobel_grad_angle(torch.stack([a, b, f]))
    q = _qabf_edge_preservation(g[:2], ang[:2], g[2:], ang[2:])
    gs = g[:2]
    num = q.mul_(gs).sum((0, -3, -2, -1))
    den = gs.sum((0, -3, -2, -1))
    return _channel_mean(_safe_div(num, den, 0.0), n, c)


# --------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------
def _ssim_from_moments(ux, uy, uxx, uyy, uxy, cov_norm, c1, c2):
    """Mean SSIM over the map from local moments; x terms broadcast over the K references."""
    uxsq = ux * ux
    uysq = uy * uy
    uxuy = ux * uy
    vx = uxx.sub_(uxsq).mul_(cov_norm)
    vy = uyy.sub_(uysq).mul_(cov_norm)
    vxy = uxy.sub_(uxuy).mul_(cov_norm)
    a1 = uxuy.mul_(2).add_(c1)  # (2 ux) uy == 2 (ux uy) exactly
    a2 = vxy.mul_(2).add_(c2)
    b1 = uysq.add_(uxsq).add_(c1)
    b2 = vy.add_(vx).add_(c2)
    smap = a1.mul_(a2).div_(b1.mul_(b2))
    return smap.to(torch.float64).sum((-3, -2, -1)) / smap[0, 0].numel()


def _ssim_maps(x: Tensor, ys: Tensor, window: str, size: int, sigma: float, data_range: float,
               sample_covariance: bool, k1: float, k2: float) -> Tensor:
    """Mean SSIM of x (M,1,H,W) against each of ys (K,M,1,H,W) over the 'valid' window positions: (K, M)."""
    if window == "box":
        taps = (1.0 / size,) * size
    elif window == "gaussian":
        taps = fspecial_gaussian_1d(size, sigma)
    else:
        raise ValueError("window must be 'box' or 'gaussian'")
    x = x.unsqueeze(0)
    # Centre each image on its own mean so that E[x^2] - E[x]^2 keeps its precision in float32;
    # the means are added back for the luminance term.
    cx = x.mean((-2, -1), keepdim=True)
    cy = ys.mean((-2, -1), keepdim=True)
    xc, yc = x - cx, ys - cy
    ux, uy = separable_valid(xc, taps), separable_valid(yc, taps)
    uxx, uyy, uxy = separable_valid(xc * xc, taps), separable_valid(yc * yc, taps), separable_valid(xc * yc, taps)
    cov_norm = size * size / (size * size - 1) if sample_covariance else 1.0
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    vx = uxx.addcmul_(ux, ux, value=-1).mul_(cov_norm)
    vy = uyy.addcmul_(uy, uy, value=-1).mul_(cov_norm)
    vxy = uxy.sub_(ux * uy).mul_(cov_norm)
    mx, my = ux.add_(cx), uy.add_(cy)
    a1 = (mx * my).mul_(2).add_(c1)
    b1 = (my * my).addcmul_(mx, mx).add_(c1)
    a2 = vxy.mul_(2).add_(c2)
    b2 = vy.add_(vx).add_(c2)
    smap = a1.mul_(a2).div_(b1.mul_(b2))
    return smap.to(torch.float64).sum((-3, -2, -1)) / smap[0, 0].numel()


def _box_mean_skimage_f32(x: Tensor, size: int) -> Tensor:
    """``scipy.ndimage.uniform_filter`` on float32 data, reproduced bit for bit on the 'valid' region.

    scipy filters axis 0 (rows) first and stores that pass in a float32 array, then filters axis 1,
    each pass accumulating in double. For integer-valued float32 input (|x| * size < 2^24) the
    first-pass window sums are exact in float32 and float32 division is correctly rounded, so
    ``sum / size`` in float32 equals scipy's stored value; the second pass sums float32 values,
    which is exact in float64, and rounds to float32 once.
    """
    s = window_sum_valid(x, size, -2)
    v = torch.empty(s.shape, dtype=torch.float64, device=s.device)
    torch.div(s, size, out=v)  # computed in float32 (the inputs' type), stored as float64: one pass
    t = window_sum_valid(v, size, -1)
    u = torch.empty(t.shape, dtype=torch.float32, device=t.device)
    return torch.div(t, size, out=u)  # computed in float64, rounded once to float32


def _ssim_skimage_f32(x: Tensor, ys: Tensor, size: int, data_range: float, sample_covariance: bool,
                      k1: float, k2: float) -> Tensor:
    """skimage ``structural_similarity`` (box window) on float32 images, float32 arithmetic throughout.

    x (M,1,H,W), ys (K,M,1,H,W) -> (K, M) float64. Exact (to the last bit of every map) for
    integer-valued images; the map is averaged in float64 over the window positions fully inside
    the image, like skimage's crop + mean.
    """
    xf, yf = x.unsqueeze(0).to(torch.float32), ys.to(torch.float32)
    ux, uy = _box_mean_skimage_f32(xf, size), _box_mean_skimage_f32(yf, size)
    uxx, uyy = _box_mean_skimage_f32(xf * xf, size), _box_mean_skimage_f32(yf * yf, size)
    uxy = _box_mean_skimage_f32(xf * yf, size)
    f32 = dict(dtype=torch.float32, device=x.device)
    np_ = size * size
    # numpy multiplies float32 arrays by Python floats in float32: use the same float32 constants
    cov_norm = torch.tensor(np_ / (np_ - 1) if sample_covariance else 1.0, **f32)
    c1 = torch.tensor((k1 * data_range) ** 2, **f32)
    c2 = torch.tensor((k2 * data_range) ** 2, **f32)
    return _ssim_from_moments(ux, uy, uxx, uyy, uxy, cov_norm, c1, c2)


def _ssim_dispatch(x, ys, window, size, sigma, data_range, sample_covariance, k1, k2, emulate):
    if emulate is None:
        return _ssim_maps(x, ys, window, size, sigma, data_range, sample_covariance, k1, k2)
    if emulate != "skimage-float32":
        raise ValueError("emulate must be None or 'skimage-float32'")
    if window != "box":
        raise ValueError("emulate='skimage-float32' is implemented for the box window only")
    return _ssim_skimage_f32(x, ys, size, data_range, sample_covariance, k1, k2)


_SSIM_DEFAULTS = dict(window="box", size=7, sigma=1.5, data_range=2.0, sample_covariance=True, k1=0.01, k2=0.03,
                      emulate=None)


def ssim_pair(x: Tensor, y: Tensor, window: str = "box", size: int = 7, sigma: float = 1.5,
              data_range: float = 2.0, sample_covariance: bool = True, k1: float = 0.01,
              k2: float = 0.03, emulate: str | None = None) -> Tensor:
    """Mean SSIM (Wang et al. 2004) of x and y over the window positions fully inside the image.

    Defaults are ``skimage.metrics.structural_similarity`` as the CDDFuse evaluator runs it on
    float images with scikit-image 0.19: 7x7 box window, sample covariance (N/(N-1)),
    data_range = 2 (C1 = 4e-4, C2 = 3.6e-3 on 0..255 data), mean over the map cropped by 3
    pixels, which is the map over the window positions fully inside the image (so skimage's
    reflect padding never enters). ``window="gaussian", size=11, sigma=1.5, data_range=255,
    sample_covariance=False`` gives Wang's MATLAB ssim_index on the 'valid' region.

    ``emulate="skimage-float32"`` (box window only) reproduces scikit-image's float32 arithmetic
    bit for bit on integer-valued images, whatever the input dtype. With data_range = 2 the
    constants are tiny and SSIM in near-flat windows depends on float32 rounding: the CDDFuse
    reference values differ from an exact (float64) evaluation by up to about 3e-4 relative, so the
    ``cddfuse`` preset uses this mode. The result is returned in the input dtype.

    >>> x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 255
    >>> ssim_pair(x, x).tolist()
    [1.0]
    """
    x, y = check_same(x, y, min_size=size)
    n, c, (x, y) = _per_channel(x, y)
    s = _ssim_dispatch(x, y.unsqueeze(0), window, size, sigma, data_range, sample_covariance, k1, k2, emulate)
    return _channel_mean(s[0].to(x.dtype), n, c)


def ssim(fused: Tensor, a: Tensor, b: Tensor, **kwargs) -> Tensor:
    """SSIM(F, A) + SSIM(F, B), summed over the two sources (range up to 2). Higher is better.

    Keyword arguments are those of :func:`ssim_pair` (defaults: the CDDFuse evaluator's
    conventions, computed in the input dtype). An image compared with itself scores 1 per source,
    also when it is constant (the constants C1, C2 keep the ratio defined).

    >>> x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 255
    >>> ssim(x, x, x).tolist()
    [2.0, 2.0]
    """
    unknown = set(kwargs) - set(_SSIM_DEFAULTS)
    if unknown:
        raise TypeError(f"ssim() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    opts = {**_SSIM_DEFAULTS, **kwargs}
    fused, a, b = check_same(fused, a, b, min_size=opts["size"])
    n, c, (f, a, b) = _per_channel(fused, a, b)
    s = _ssim_dispatch(f, torch.stack([a, b]), **opts).to(f.dtype)
    return _channel_mean(s[0] + s[1], n, c)


# --------------------------------------------------------------------------------------------
# error-based
# --------------------------------------------------------------------------------------------
def mse(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """(MSE(A, F) + MSE(B, F)) / 2, true mean squared errors in grey levels^2. Lower is better.

    >>> x = torch.zeros(1, 1, 2, 2)
    >>> mse(x, x + 1, x + 3)
    tensor([5.])
    """
    fused, a, b = check_same(fused, a, b)
    n, c, (f, a, b) = _per_channel(fused, a, b)
    e = ((a - f).square().flatten(1).mean(1) + (b - f).square().flatten(1).mean(1)) / 2
    return _channel_mean(e, n, c)


def rmse(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """sqrt of :func:`mse` (the mean of the two sources' MSEs), in grey levels. Lower is better.

    >>> x = torch.zeros(1, 1, 2, 2)
    >>> rmse(x, x + 1, x + 3)
    tensor([2.2361])
    """
    fused, a, b = check_same(fused, a, b)
    n, c, (f, a, b) = _per_channel(fused, a, b)
    e = ((a - f).square().flatten(1).mean(1) + (b - f).square().flatten(1).mean(1)) / 2
    return _channel_mean(e.sqrt(), n, c)


def psnr(fused: Tensor, a: Tensor, b: Tensor, peak: str | float = "max") -> Tensor:
    """10 log10(peak^2 / MSE) with MSE from :func:`mse`. Higher is better.

    ``peak="max"`` uses the maximum of the fused image (the CDDFuse evaluator), a number uses that
    value (e.g. 255). MSE = 0 gives +inf (identical images); a peak of 0 with MSE > 0 gives -inf.

    >>> x = torch.zeros(1, 1, 2, 2); x[..., 0, 0] = 10
    >>> psnr(x, x + 1, x + 1)
    tensor([20.])
    """
    fused, a, b = check_same(fused, a, b)
    n, c, (f, a, b) = _per_channel(fused, a, b)
    e = ((a - f).square().flatten(1).mean(1) + (b - f).square().flatten(1).mean(1)) / 2
    pk = f.flatten(1).amax(1) if peak == "max" else torch.full_like(e, float(peak))
    ratio = torch.where(e > 0, pk * pk / torch.where(e > 0, e, torch.ones_like(e)), torch.full_like(e, math.inf))
    return _channel_mean(10 * torch.log10(ratio), n, c)
