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
:data:`TABLE`, the preset's declarative metric table (``metric -> (kernel, params, fidelity)``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _native
from . import functional as FM
from . import functional_vifb as V
from .checks import check_nchw
from .spec import Preset

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
    check_nchw(x, "luma_rounded", channels=(1, 3))
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


# --------------------------------------------------------------------------------------------
# the preset
# --------------------------------------------------------------------------------------------

_EXT_VIFB = "extension: VIFB's "

#: metric -> (kernel, parameters, fidelity), on the output of :func:`prepare_cddfuse`: the evaluator's
#: twelve metrics, then those it lacks, computed on the same rounded luma images (VIFB's kernels for CE,
#: EI, Qcb and Qcv: on a single-channel image VIFB's per-channel averaging does nothing)
TABLE = {
    "EN": (FM.entropy, {}, "reference"),
    "SD": (FM.standard_deviation, {}, "reference"),
    "SF": (FM.spatial_frequency, {"normalize": "differences"}, "reference"),
    "AG": (FM.average_gradient, {"normalize": "pixels"}, "reference"),
    "MI": (FM.mutual_information, {}, "reference"),
    "SCD": (FM.scd, {}, "reference"),
    "VIF": (FM.vif, {}, "reference"),
    "Qabf": (FM.qabf, {}, "reference"),
    "SSIM": (FM.ssim, {"window": "box", "size": 7, "data_range": 2.0, "sample_covariance": True,
                       "emulate": "skimage-float32"}, "reference"),
    "MSE": (FM.mse, {}, "reference"),
    "RMSE": (FM.rmse, {}, "extension: sqrt of the evaluator's MSE (mean of the two sources' true MSEs on rounded "
                          "luma), in grey levels, so that PSNR = 20 log10(max F / RMSE)"),
    "CC": (FM.correlation_coefficient, {}, "reference"),
    "PSNR": (FM.psnr, {"peak": "max"}, "reference"),
    "CE": (V.cross_entropy_kl, {}, _EXT_VIFB + "Cross_entropy (KL divergence of each source's 256-bin histogram "
                                             "from F's, bits, bins where either is empty skipped, mean over the two "
                                             "sources) on the rounded luma images"),
    "EI": (V.edge_intensity, {}, _EXT_VIFB + "Edge_intensity (Sobel correlation with replicate borders, mean "
                                           "magnitude) on the rounded luma of F"),
    "Qcb": (V.qcb, {}, _EXT_VIFB + "Qcb (Chen-Blum; min-max normalisation, CSF, local contrast, saliency weights) "
                                 "on the rounded luma images"),
    "Qcv": (V.qcv, {}, _EXT_VIFB + "Qcv (Chen-Varshney; min-max normalisation, 16x16 blocks, Mannos-Sakrison CSF) "
                                 "on the rounded luma images"),
}

PRESET = Preset(
    "cddfuse", REFERENCE,
    "grey replicated to 3 channels; float32 BT.601 luma (OpenCV order), rounded half to even; one image",
    prepare_cddfuse, TABLE,
    native=native_cddfuse, native_metrics=NATIVE_METRICS,
    sixteen_bit="shift",  # cv2.imread(path) of a 16-bit PNG: v >> 8
    default_dtype="float32",
)
