"""The metric kernels of VIFB's MATLAB toolbox (Zhang et al., CVPRW 2020), reproduced in torch.

Reference: github.com/xingchenzhang/VIFB ``metrics/*.m`` and the values in
``shared/reference/vifb_matlab.csv`` (conventions in ``shared/reference/VIFB_METRICS.md``). The
``vifb`` preset (:mod:`fusionbench.metrics.vifb`) binds these to VIFB's colour handling; the
``cddfuse`` preset uses CE, EI, Qcb and Qcv from here as extensions.

Colour handling is per channel: every function takes prepared (N, C, H, W) float tensors with
values 0..255, scores channel k of the fused image against channel k of each source (a
one-channel source is used for every k) and averages the channel results with equal weights. SF
is the exception (the channels are laid side by side as one H x 3W matrix, MATLAB's 2-D view of
an H x W x 3 array); EI averages over all pixels of all channels, which is the same as the channel
mean.

Every two-source metric here is symmetric in the two sources (MI and SSIM are sums, CE, PSNR
and RMSE means, Qabf, Qcb and Qcv symmetric weighted forms), so VIFB's (visible, infrared) order
and fusionbench's (a = IR, b = VIS) order give the same values.

All functions return (N,) in their input's dtype, on its device. Sources broadcast from one
image with ``expand`` (stride 0 on the batch dim) are processed once.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _kernels_vifb as K
from .checks import check_sources
from .filters import (
    block_sums,
    fspecial_gaussian_1d,
    gaussian_profile,
    magnitude_,
    matlab_gradient,
    separable_valid,
    sobel_xy,
)

__all__ = [
    "entropy",
    "standard_deviation",
    "spatial_frequency_vifb",
    "average_gradient_vifb",
    "edge_intensity",
    "cross_entropy_kl",
    "mutual_information_vifb",
    "psnr_vifb",
    "rmse_vifb",
    "ssim_vifb",
    "qabf",
    "qcb",
    "qcv",
]


# --------------------------------------------------------------------------------------------
# fused-only metrics
# --------------------------------------------------------------------------------------------

def entropy(f: Tensor) -> Tensor:
    """EN: Shannon entropy (bits) of the 256-bin histogram of floor(values), channel mean."""
    check_sources(f, what="vifb metrics")
    h = K.hist256(K.levels_u8(f))
    e = K.entropy_from_counts(h, f.shape[-2] * f.shape[-1], f.dtype, base=2.0)
    return e.mean(1)


def standard_deviation(f: Tensor) -> Tensor:
    """SD (VIFB 'Variance'): population standard deviation per channel, channel mean."""
    check_sources(f, what="vifb metrics")
    return f.flatten(-2).std(dim=-1, correction=0).mean(1)


def spatial_frequency_vifb(f: Tensor) -> Tensor:
    """SF with VIFB's layout: channels side by side as one H x (C*W) matrix, both squared-difference
    sums divided by the full element count H*C*W (not by the number of differences)."""
    check_sources(f, what="vifb metrics")
    n, c, h, w = f.shape
    x = f.permute(0, 2, 1, 3).reshape(n, h, c * w)
    rf = (x[:, :, 1:] - x[:, :, :-1]).square().sum((1, 2))
    cf = (x[:, 1:, :] - x[:, :-1, :]).square().sum((1, 2))
    return ((rf + cf) / (h * c * w)).sqrt()


def average_gradient_vifb(f: Tensor) -> Tensor:
    """AG: MATLAB ``gradient``; sum of sqrt((gx^2+gy^2)/2) over all H*W pixels / ((H-1)(W-1)),
    channel mean."""
    check_sources(f, what="AG", min_size=2)
    gx, gy = matlab_gradient(f)
    s = gx.square_().addcmul_(gy, gy).div_(2).sqrt_().sum((-2, -1))
    return (s / ((f.shape[-2] - 1) * (f.shape[-1] - 1))).mean(1)


def edge_intensity(f: Tensor) -> Tensor:
    """EI: mean Sobel magnitude, ``imfilter`` correlation with replicate borders, over all pixels
    of all channels."""
    check_sources(f, what="vifb metrics")
    return magnitude_(*sobel_xy(f, "replicate")).mean((1, 2, 3))


# --------------------------------------------------------------------------------------------
# two-source metrics
# --------------------------------------------------------------------------------------------

def cross_entropy_kl(f: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """CE (VIFB 'Cross_entropy', really a KL divergence, bits):
    (KL(a||f) + KL(b||f)) / 2 over 256-bin histograms, skipping bins where either is empty.
    Per channel, channel mean. Lower is better."""
    check_sources(f, a, b, what="vifb metrics")
    npx = f.shape[-2] * f.shape[-1]
    pf = K.hist256(K.levels_u8(f)).to(f.dtype) / npx

    def kl(s: Tensor) -> Tensor:
        ps = K.hist256(K.levels_u8(K.compact(s))).to(f.dtype) / npx
        ok = (ps > 0) & (pf > 0)
        ratio = torch.where(ok, ps / torch.where(ok, pf, torch.ones_like(pf)), torch.ones_like(pf))
        return torch.where(ok, ps * torch.log2(ratio), torch.zeros_like(pf)).sum(-1)

    return ((kl(a) + kl(b)) / 2).mean(1)


def mutual_information_vifb(f: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """MI (nats): MI(a,f) + MI(b,f), each image min-max stretched to 0..255 and rounded half away
    from zero (``int16``), 256x256 joint histogram; per channel, channel mean.
    A constant image maps to all zeros (as VIFB does)."""
    check_sources(f, a, b, what="vifb metrics")
    npx = f.shape[-2] * f.shape[-1]
    lf = K.stretch_255(f).long()
    hf = K.entropy_from_counts(K.hist256(lf), npx, f.dtype)

    def mi(s: Tensor) -> Tensor:
        ls = K.stretch_255(K.compact(s)).long()
        hs = K.entropy_from_counts(K.hist256(ls), npx, f.dtype)
        hj = K.entropy_from_counts(K.joint_hist256(ls, lf).flatten(-2), npx, f.dtype)
        return hs + hf - hj

    return (mi(a) + mi(b)).mean(1)


def _l2_over_n(s: Tensor, f: Tensor) -> Tensor:
    """VIFB's 'mse': sqrt(sum((s-f)^2)) / (H*W), per channel -> (N, C)."""
    return (s - f).square_().sum((-2, -1)).sqrt() / (f.shape[-2] * f.shape[-1])


def rmse_vifb(f: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """RMSE (VIFB): (e(a,f) + e(b,f)) / 2 with e = ||s-f||_2 / (H*W); channel mean. Lower is better."""
    check_sources(f, a, b, what="vifb metrics")
    return ((_l2_over_n(a, f) + _l2_over_n(b, f)) / 2).mean(1)


def psnr_vifb(f: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """PSNR (VIFB): 20 log10(255 / sqrt(m)), m = (e(a,f) + e(b,f)) / 2 with e = ||s-f||_2 / (H*W);
    channel mean. +inf when the fused image equals both sources (as MATLAB)."""
    check_sources(f, a, b, what="vifb metrics")
    m = (_l2_over_n(a, f) + _l2_over_n(b, f)) / 2
    return (20 * torch.log10(255 / m.sqrt())).mean(1)


_SSIM_TAPS = fspecial_gaussian_1d(11, 1.5)


def ssim_vifb(f: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """SSIM (VIFB): SSIM(a,f) + SSIM(b,f), Wang et al.'s reference code: 11x11 Gaussian (sigma 1.5)
    window, 'valid' filtering (filter2), L = 255, K = (0.01, 0.03), mean of the map; per channel,
    channel mean."""
    check_sources(f, a, b, what="SSIM", min_size=11)
    g = _SSIM_TAPS

    def filt(x: Tensor) -> Tensor:
        return separable_valid(x, g, g)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_f = filt(f)
    mu_f2 = mu_f.square()
    sig_f = filt(f.square()).sub_(mu_f2)

    def ssim(s: Tensor) -> Tensor:
        s = K.compact(s)
        mu_s = filt(s)
        mu_s2 = mu_s.square()
        sig_s = filt(s.square()).sub_(mu_s2)
        mu_sf = mu_f * mu_s
        num = filt(f * s).sub_(mu_sf).mul_(2).add_(c2)  # 2 sigma_sf + C2
        num.mul_(mu_sf.mul_(2).add_(c1))  # (2 mu_s mu_f + C1)(2 sigma_sf + C2)
        den = torch.add(mu_f2, mu_s2).add_(c1)
        den.mul_(torch.add(sig_f, sig_s).add_(c2))
        return num.div_(den).mean((-2, -1))

    return (ssim(a) + ssim(b)).mean(1)


def _sobel_mag_angle(x: Tensor) -> tuple[Tensor, Tensor]:
    """Qabf's edge strength and ``atan`` orientation (pi/2 where the x response is 0).

    MATLAB uses ``conv2(x, h, 'same')`` (zero padding) with h3 = [-1 0 1; -2 0 2; -1 0 1] and
    h1 = [1 2 1; 0 0 0; -1 -2 -1]. Relative to correlation with those kernels convolution negates
    both responses, which changes neither the magnitude, nor the ratio sy/sx, nor where sx == 0.
    """
    sx, sy = sobel_xy(x, "constant")
    sy.neg_()  # correlation with h1 is top minus bottom
    zero = sx == 0
    ang = torch.div(sy, sx).atan_().masked_fill_(zero, math.pi / 2)  # sx == 0 gives inf/nan, replaced
    return magnitude_(sx, sy), ang


def qabf(f: Tensor, a: Tensor, b: Tensor, scale: float = 255.0) -> Tensor:
    """Qabf (Xydeas & Petrovic) as in VIFB's ``metricsQabf.m``; per channel, channel mean.

    Sobel (conv2 'same', zero padding), g = sqrt(sx^2+sy^2), angle atan(sy/sx) (pi/2 where sx = 0);
    G = min/max of g_X, g_F except G = g_F where g_X == g_F (the code's quirk), A = 1 - |a_X - a_F|/(pi/2);
    Q = 0.9994/(1+exp(-15(G-0.5))) * 0.9879/(1+exp(-22(A-0.8))); result sum(Q_AF g_A + Q_BF g_B) / sum(g_A + g_B).

    ``scale`` multiplies the images first (VIFB: 255 * im2double(double) = x*255). It matters only
    through the quirk G = g_F. When neither source has any edge (sum of g_A + g_B is 0) the value
    is defined as 0.
    """
    check_sources(f, a, b, what="vifb metrics")
    tg, kg, dg, ta, ka, da = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8
    gf, af = _sobel_mag_angle(f)
    gf.mul_(scale)  # Sobel is linear: exact for integer data, within an ulp otherwise

    shape = torch.broadcast_shapes(gf.shape, a.shape, b.shape)
    lo = torch.empty(shape, dtype=gf.dtype, device=gf.device)
    hi = torch.empty_like(lo)

    def term(s: Tensor) -> tuple[Tensor, Tensor]:
        gs, as_ = _sobel_mag_angle(K.compact(s))
        gs.mul_(scale)
        ratio = torch.minimum(gs, gf, out=lo).div_(torch.maximum(gs, gf, out=hi))  # 0/0: replaced
        ratio = torch.where(gs == gf, gf, ratio, out=hi)  # the quirk: G = g_F where g_X == g_F
        qg = ratio.sub_(dg).mul_(-kg).sigmoid_()  # Tg / (1 + exp(kg (G - Dg))), without Tg
        # A - Da = (1 - Da) - |a_X - a_F| / (pi/2); Ta / (1 + exp(ka (A - Da))), without Ta
        qa = torch.sub(as_, af, out=lo).abs_().div_(math.pi / 2).sub_(1 - da).mul_(ka).sigmoid_()
        num = qg.mul_(qa).mul_(gs).sum((-2, -1)) * (tg * ta)
        return num, gs.sum((-2, -1)).expand(num.shape)

    na, da_ = term(a)
    nb, db_ = term(b)
    den = da_ + db_
    ok = den > 0
    q = torch.where(ok, (na + nb) / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))
    return q.mean(1)


def _qcb_filters(h: int, w: int):
    r = K.freqspace_radius(h, w, w / 30, h / 30)
    sd = torch.exp(-((r / 15.3870) ** 2)) - 0.7622 * torch.exp(-((r / 1.3456) ** 2))
    kernels = []
    for sigma in (2.0, 4.0):  # exp(-(x^2+y^2)/(2 s^2)) / (2 pi s^2), 31 x 31, not normalised
        e = gaussian_profile(31, sigma)
        kernels.append((e, e / (2 * math.pi * sigma * sigma)))
    return sd, kernels


def _qcb_masked_contrast(x: Tensor, sd: Tensor, kernels) -> Tensor:
    y = K.fft_filter_real(K.stretch_255(x), sd)
    b1, b2 = K.gaussian_same_fft(y, kernels)  # views into padded FFT outputs, reused in place
    zero = b2 == 0
    c = b1.div_(b2).sub_(1).abs_().masked_fill_(zero, 0.0)  # |G1*y / G2*y - 1|
    c2 = torch.mul(c, c, out=b2)
    return c.mul_(c2).div_(c2.add_(1e-4))  # C^3 / (C^2 + 1e-4)


def qcb(f: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Qcb (Chen & Blum) as in VIFB's ``metricsQcb.m``; per channel, channel mean.

    normalize1 (min-max to 0..255, rounded) -> contrast-sensitivity filter in the frequency domain
    on MATLAB's freqspace grid scaled by (W/30, H/30) -> local contrast |G1*x / G2*x - 1| with
    31x31 unnormalised Gaussians (sigma 2 and 4), filter2 'same' (zero padding; computed by a
    zero-padded FFT) -> masking C^3 / (C^2 + 1e-4) -> preservation min/max ratio ->
    saliency-weighted mean.

    Degenerate points, where MATLAB would give NaN, are defined: contrast 0 where G2*x == 0
    (an all-zero neighbourhood, e.g. a constant image), preservation 1 where both masked contrasts
    are 0, saliency weights 1/2 each where both sources have masked contrast 0.

    Computed in float64 whatever the input dtype (the result is returned in it): the local contrast
    is a ratio of Gaussian sums that are tiny in dark areas, and float32 moved Qcb by up to 44 % on
    medical images (0.5 % on natural ones). On large exactly-black areas the value depends on
    round-off even in float64 (Octave and this differ by ~4 % on such medical images): the reference
    itself is ill-conditioned there.
    """
    check_sources(f, a, b, what="vifb metrics")
    out_dtype = f.dtype
    f, a, b = (K.to_float(t, torch.float64) for t in (f, a, b))
    sd, kernels = _qcb_filters(*f.shape[-2:])
    cf = _qcb_masked_contrast(f, sd, kernels)
    c1 = _qcb_masked_contrast(K.compact(a), sd, kernels)
    c2 = _qcb_masked_contrast(K.compact(b), sd, kernels)

    s1, s2 = c1.square(), c2.square()
    tot = s1 + s2
    zero = tot == 0
    tot.masked_fill_(zero, 1.0)
    l1 = torch.div(s1, tot).masked_fill_(zero, 0.5)  # sources may differ in compacted shape
    l2 = torch.div(s2, tot).masked_fill_(zero, 0.5)

    # preservation: C'_S / C'_F if C'_S < C'_F else C'_F / C'_S, i.e. min/max (1 where both are 0)
    shape = torch.broadcast_shapes(cf.shape, c1.shape, c2.shape)
    q = torch.zeros(shape, dtype=cf.dtype, device=cf.device)
    lo = torch.empty(shape, dtype=cf.dtype, device=cf.device)
    hi = torch.empty_like(lo)
    for cs, lam in ((c1, l1), (c2, l2)):
        torch.minimum(cs, cf, out=lo)
        torch.maximum(cs, cf, out=hi)
        q.addcmul_(lo.div_(hi).nan_to_num_(nan=1.0), lam)
    return q.mean((-2, -1)).mean(1).to(out_dtype)


def qcv(f: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Qcv (Chen & Varshney) as in VIFB's ``metricsQcv.m``; per channel, channel mean. Lower is better.

    normalize1 -> saliency per 16x16 block (blkproc, zero-padded partial blocks) = sum of g^5 of the
    source's Sobel magnitude (filter2 'same', zero padding) -> difference images s - f filtered by
    the Mannos-Sakrison CSF on freqspace scaled by (W/8, H/8) (computed as CSF(s) - CSF(f), the
    filter being linear) -> block distortion = mean of the
    squared filtered difference over the 256 entries of the zero-padded block ->
    sum(l1 D1 + l2 D2) / sum(l1 + l2).

    When both sources have zero saliency everywhere (no edges), the equal-weight limit
    mean over blocks of (D1 + D2) / 2 is returned instead of 0/0.
    """
    check_sources(f, a, b, what="vifb metrics")
    h, w = f.shape[-2:]
    bs = 16
    r = K.freqspace_radius(h, w, w / 8, h / 8)
    theta = 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))
    nf = K.stretch_255(f)

    def saliency(s: Tensor) -> Tensor:
        g = magnitude_(*sobel_xy(s, "constant"))
        return block_sums(g.pow_(5), bs)

    # the CSF filter is linear: filter(s - f) = filter(s) - filter(f), so the fused image is
    # filtered once and each (possibly batch-shared) source once
    csf_f = K.fft_filter_real(nf, theta)

    def distortion(s: Tensor) -> Tensor:
        d = K.fft_filter_real(s, theta).sub(csf_f)
        return block_sums(d.square_(), bs).div_(bs * bs)

    n1 = K.stretch_255(K.compact(a))
    n2 = K.stretch_255(K.compact(b))
    l1, l2 = saliency(n1), saliency(n2)
    d1, d2 = distortion(n1), distortion(n2)
    num = (l1 * d1 + l2 * d2).sum((-2, -1))
    den = (l1 + l2).sum((-2, -1)).expand(num.shape)
    fallback = ((d1 + d2) / 2).mean((-2, -1))
    ok = den > 0
    q = torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), fallback)
    return q.mean(1)
