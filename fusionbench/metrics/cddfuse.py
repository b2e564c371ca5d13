"""The ``cddfuse`` preset: the metric conventions of the CDDFuse evaluator.

Reference: ``utils/Evaluator.py`` of github.com/Zhaozixiang1228/MMIF-CDDFuse (commit fd8da1f),
with images read as its ``test_IVF.py`` reads them (``image_read_cv2(path, 'GRAY')``). Most
recent infrared-visible fusion papers report numbers from this evaluator or a copy of it.

Colour handling (:func:`prepare_cddfuse`), done once per batch for the fused image and both
sources alike: a grey image is replicated to three channels, then luma
Y = 0.299 R + 0.587 G + 0.114 B is computed as OpenCV's default float32 ``cvtColor(BGR2GRAY)`` path
computes it (see :func:`luma_rounded`) and rounded half to even (``np.round``). Range 0..255, never rescaled. Grey images therefore keep
their values exactly. There is no per-channel averaging.

Metrics the evaluator has (EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM, MSE, CC, PSNR) follow it
exactly; see :mod:`fusionbench.metrics.functional` for each definition. Metrics it lacks are
computed on the same luma images with the nearest convention and flagged as extensions in
:data:`CDDFUSE_NOTES`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _native
from . import functional as FM

REFERENCE = "CDDFuse utils/Evaluator.py (github.com/Zhaozixiang1228/MMIF-CDDFuse @ fd8da1f), images read as luma"


def luma_rounded(x: Tensor) -> Tensor:
    """(N, 1|3, H, W) uint8 or integer-valued float -> (N, 1, H, W) float32 rounded BT.601 luma.

    Mirrors ``np.round(cv2.cvtColor(cv2.imread(path).astype('float32'), cv2.COLOR_BGR2GRAY))`` as the
    evaluator runs it: OpenCV's default (SIMD-optimised, x86 with FMA) float32 path. That path computes
    ``fma(R, 0.299f, fma(B, 0.114f, G * 0.587f))``, which for 546 of the 2^24 colours lands on the other
    side of n + 0.5 than the plain sum (e.g. R, G, B = 0, 138, 171: 100.50001 instead of 100.5, so
    ``np.round`` gives 101, not 100). Here each fused multiply-add is an exact float64 product and sum
    rounded to float32, which reproduces OpenCV 5.1.0's output bit for bit on every colour (the tests
    check all 2^24 against a digest of OpenCV's output). A single-channel image is returned as it is
    (the luma of a replicated grey value v rounds to v).
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1|3, H, W), got {tuple(x.shape)}")
    x32 = x.to(torch.float32)
    if x.shape[1] == 1:
        return x32.round() if x.is_floating_point() else x32
    y = x32[:, 1:2] * 0.587                                                       # G * 0.587f, float32
    y = (x32[:, 2:3].double() * _CB + y.double()).to(torch.float32)               # fma(B, 0.114f, .)
    y = (x32[:, 0:1].double() * _CR + y.double()).to(torch.float32)               # fma(R, 0.299f, .)
    return y.round_()


# OpenCV's float32 coefficients, widened exactly to float64
_CR = float(torch.tensor(0.299, dtype=torch.float32))
_CB = float(torch.tensor(0.114, dtype=torch.float32))


def prepare_cddfuse(fused: Tensor, a: Tensor, b: Tensor, dtype=torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    """Colour preparation of the ``cddfuse`` preset, once per batch: rounded luma in ``dtype``.

    CPU uint8 batches use the native luma kernel when it is available (bit-identical to
    :func:`luma_rounded`, which is checked on all 2^24 colours in the tests).
    """
    if _native.usable(fused, a, b):
        return tuple(_native.luma(t).to(dtype) for t in (fused, a, b))
    return tuple(luma_rounded(t).to(dtype) for t in (fused, a, b))


#: metrics the native CPU kernel computes in one pass over the decoded images
NATIVE_METRICS = frozenset(_native.CORE_SLOTS)
#: the native VIF runs on images with both sides at least this (every VIF scale's map covers its window)
VIF_NATIVE_MIN = 41


def native_cddfuse(fused: Tensor, a: Tensor, b: Tensor, names, dtype=torch.float64) -> dict[str, Tensor] | None:
    """``{name: float64 (N,)}`` for the metrics of ``names`` in :data:`NATIVE_METRICS`, straight from the
    decoded uint8 CPU batches, or None when the native kernel cannot be used (CUDA, other dtypes,
    no compiler, ``FUSIONBENCH_NATIVE=0``). Same values as the eager kernels on the prepared
    tensors (SSIM bit for bit; the moment-based metrics from exact integer sums). With ``dtype``
    float32, AG's per-pixel square roots are taken in float32 (relative error < 6e-8 per term).
    """
    names = [n for n in names if n in NATIVE_METRICS]
    if min(fused.shape[-2:]) < VIF_NATIVE_MIN:
        names = [n for n in names if n != "VIF"]  # small images: the eager VIF reproduces scipy's operand swap
    if not names or min(fused.shape[-2:]) < 16 or not _native.usable(fused, a, b):
        return None  # (images this small are rejected by score_batch anyway)
    return _native.cddfuse_core(fused, a, b, names, dtype)


def _en(f, a, b):
    return FM.entropy(f)


def _sd(f, a, b):
    return FM.standard_deviation(f)


def _sf(f, a, b):
    return FM.spatial_frequency(f, normalize="differences")


def _ag(f, a, b):
    return FM.average_gradient(f, normalize="pixels")


def _mi(f, a, b):
    return FM.mutual_information(f, a, b)


def _scd(f, a, b):
    return FM.scd(f, a, b)


def _vif(f, a, b):
    return FM.vif(f, a, b)


def _qabf(f, a, b):
    return FM.qabf(f, a, b)


def _ssim(f, a, b):
    return FM.ssim(f, a, b, window="box", size=7, data_range=2.0, sample_covariance=True, emulate="skimage-float32")


def _mse(f, a, b):
    return FM.mse(f, a, b)


def _rmse(f, a, b):
    return FM.rmse(f, a, b)


def _cc(f, a, b):
    return FM.correlation_coefficient(f, a, b)


def _psnr(f, a, b):
    return FM.psnr(f, a, b, peak="max")


#: canonical metric name -> fn(f, a, b) -> (N,), on the output of :func:`prepare_cddfuse`
CDDFUSE_METRICS = {
    "EN": _en, "SD": _sd, "SF": _sf, "AG": _ag, "MI": _mi, "SCD": _scd, "VIF": _vif, "Qabf": _qabf,
    "SSIM": _ssim, "MSE": _mse, "RMSE": _rmse, "CC": _cc, "PSNR": _psnr,
}

#: fidelity of each implementation: "reference" or "extension: <convention>"
CDDFUSE_NOTES = {
    name: "reference" for name in ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "MSE", "CC", "PSNR")
}
CDDFUSE_NOTES["RMSE"] = ("extension: sqrt of the evaluator's MSE (mean of the two sources' true MSEs on rounded "
                         "luma), in grey levels, so that PSNR = 20 log10(max F / RMSE)")


#: metrics the evaluator lacks, computed on the same rounded luma images with VIFB's kernels (the vifb
#: module's functions; on a single-channel image VIFB's per-channel averaging does nothing)
VIFB_EXTENSIONS = {
    "CE": "extension: VIFB's Cross_entropy (KL divergence of each source's 256-bin histogram from F's, bits, "
          "bins where either is empty skipped, mean over the two sources) on the rounded luma images",
    "EI": "extension: VIFB's Edge_intensity (Sobel correlation with replicate borders, mean magnitude) on the "
          "rounded luma of F",
    "Qcb": "extension: VIFB's Qcb (Chen-Blum; min-max normalisation, CSF, local contrast, saliency weights) on "
           "the rounded luma images",
    "Qcv": "extension: VIFB's Qcv (Chen-Varshney; min-max normalisation, 16x16 blocks, Mannos-Sakrison CSF) on "
           "the rounded luma images",
}


def metric_table(vifb_metrics: dict | None = None) -> tuple[dict, dict]:
    """``(functions, fidelity notes)`` of the preset: the evaluator's metrics plus, when the vifb kernels are
    given (``fusionbench.metrics.vifb.VIFB_METRICS``), the :data:`VIFB_EXTENSIONS`. Builds new dicts; nothing
    module-level is modified."""
    fns, notes = dict(CDDFUSE_METRICS), dict(CDDFUSE_NOTES)
    for name, note in VIFB_EXTENSIONS.items():
        fn = (vifb_metrics or {}).get(name)
        if fn is not None:
            fns[name], notes[name] = fn, note
    return fns, notes
