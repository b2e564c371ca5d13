"""A straightforward per-image NumPy / SciPy / scikit-image computation of the cddfuse metrics.

Used only as the speed baseline in ``bench_metrics.py``: it follows the conventions of the CDDFuse
evaluator (``utils/Evaluator.py`` of MMIF-CDDFuse; see shared/reference/CDDFUSE_METRICS.md) the
way that evaluator computes them — one image at a time, float32 luma arrays, ``scipy.signal``
convolutions for VIF and Qabf, ``skimage.metrics.structural_similarity`` for SSIM — so its
throughput stands in for the evaluator's. (scikit-learn is not installed here; MI uses the same
label-encoding + contingency-table steps as ``sklearn.metrics.mutual_info_score``.)

Written for fusionbench; not the evaluator's code.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity


def luma_u8(img: np.ndarray) -> np.ndarray:
    """(H, W, 1|3) uint8 -> float32 rounded luma, as ``image_read_cv2(path, 'GRAY')`` gives."""
    x = img.astype(np.float32)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    y = x[..., 2] * np.float32(0.114) + x[..., 1] * np.float32(0.587) + x[..., 0] * np.float32(0.299)
    return np.round(y)


def en(f):
    q = np.uint8(np.round(f)).ravel()
    p = np.bincount(q) / q.size
    return float(-np.sum(p * np.log2(p + (p == 0))))


def sd(f):
    return float(np.std(f))


def sf(f):
    return float(np.sqrt(np.mean((f[:, 1:] - f[:, :-1]) ** 2) + np.mean((f[1:, :] - f[:-1, :]) ** 2)))


def ag(f):
    gy, gx = np.gradient(f)
    return float(np.mean(np.sqrt((gx ** 2 + gy ** 2) / 2)))


def _mi_pair(x, y):
    _, xi = np.unique(x.ravel(), return_inverse=True)
    _, yi = np.unique(y.ravel(), return_inverse=True)
    ny = yi.max() + 1
    joint = np.bincount(xi * ny + yi).astype(np.float64)
    nz = joint > 0
    joint = joint[nz]
    n = x.size
    px = np.bincount(xi).astype(np.float64)
    py = np.bincount(yi).astype(np.float64)
    idx = np.flatnonzero(nz)
    outer = px[idx // ny] * py[idx % ny]
    pxy = joint / n
    return float(max(0.0, np.sum(pxy * (np.log(joint) - math.log(n) - np.log(outer) + 2 * math.log(n)))))


def mi(f, a, b):
    return _mi_pair(f, a) + _mi_pair(f, b)


def _corr(x, y):
    xc, yc = x - x.mean(), y - y.mean()
    return float(np.sum(xc * yc) / np.sqrt(np.sum(xc ** 2) * np.sum(yc ** 2)))


def scd(f, a, b):
    return _corr(a, f - b) + _corr(b, f - a)


def cc(f, a, b):
    return (_corr(a, f) + _corr(b, f)) / 2


def mse(f, a, b):
    return float((np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2)


def psnr(f, a, b):
    return float(10 * np.log10(np.max(f) ** 2 / mse(f, a, b)))


def _gauss(n):
    r = (n - 1) / 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    h = np.exp(-(x * x + y * y) / (2 * (n / 5.0) ** 2))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


def _vifp(ref, dist):
    eps, sn = 1e-10, 2.0
    num = den = 0.0
    for s in range(1, 5):
        n = 2 ** (5 - s) + 1
        w = _gauss(n)
        if s > 1:
            ref = convolve2d(ref, w, mode="valid")[::2, ::2]
            dist = convolve2d(dist, w, mode="valid")[::2, ::2]
        mu1 = convolve2d(ref, w, mode="valid")
        mu2 = convolve2d(dist, w, mode="valid")
        s1 = convolve2d(ref * ref, w, mode="valid") - mu1 * mu1
        s2 = convolve2d(dist * dist, w, mode="valid") - mu2 * mu2
        s12 = convolve2d(ref * dist, w, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        m = s1 < eps
        g[m] = 0
        sv[m] = s2[m]
        s1[m] = 0
        m = s2 < eps
        g[m] = 0
        sv[m] = 0
        m = g < 0
        sv[m] = s2[m]
        g[m] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g * g * s1 / (sv + sn)))
        den += np.sum(np.log10(1 + s1 / sn))
    v = num / den
    return 1.0 if np.isnan(v) else float(v)


def vif(f, a, b):
    return _vifp(a, f) + _vifp(b, f)


_SX = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
_SY = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float32)


def _grad_angle(x):
    sx = convolve2d(x, _SX, mode="same")
    sy = convolve2d(x, _SY, mode="same")
    g = np.sqrt(sx * sx + sy * sy)
    ang = np.full_like(x, math.pi / 2)
    nz = sx != 0
    ang[nz] = np.arctan(sy[nz] / sx[nz])
    return g, ang


def _q(ga, aa, gf, af):
    r = np.zeros_like(ga)
    m = ga > gf
    r[m] = gf[m] / ga[m]
    m = ga == gf
    r[m] = gf[m]
    m = ga < gf
    r[m] = ga[m] / gf[m]
    o = 1 - np.abs(aa - af) / (math.pi / 2)
    return 0.9994 / (1 + np.exp(-15 * (r - 0.5))) * (0.9879 / (1 + np.exp(-22 * (o - 0.8))))


def qabf(f, a, b):
    ga, aa = _grad_angle(a)
    gb, ab = _grad_angle(b)
    gf, af = _grad_angle(f)
    return float(np.sum(_q(ga, aa, gf, af) * ga + _q(gb, ab, gf, af) * gb) / np.sum(ga + gb))


def ssim(f, a, b):
    return float(structural_similarity(f, a, data_range=2) + structural_similarity(f, b, data_range=2))


CORE = {"EN": en, "SD": sd, "SF": sf, "AG": ag, "SCD": scd, "SSIM": ssim}
ALL = {"EN": en, "SD": sd, "SF": sf, "AG": ag, "MI": mi, "SCD": scd, "VIF": vif, "Qabf": qabf, "SSIM": ssim,
       "MSE": mse, "CC": cc, "PSNR": psnr}
_FUSED_ONLY = {"EN", "SD", "SF", "AG"}


def score_one(f_u8, a_u8, b_u8, metrics=ALL) -> dict:
    """Score one decoded (H, W, C) uint8 triple with the given metric functions."""
    f, a, b = luma_u8(f_u8), luma_u8(a_u8), luma_u8(b_u8)
    return {k: (fn(f) if k in _FUSED_ONLY else fn(f, a, b)) for k, fn in metrics.items()}
