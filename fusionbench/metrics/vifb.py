"""The ``vifb`` metric preset: VIFB's MATLAB toolbox (Zhang et al., CVPRW 2020), reproduced.

Reference: github.com/xingchenzhang/VIFB ``metrics/*.m`` and the values in
``shared/reference/vifb_matlab.csv`` (conventions in ``shared/reference/VIFB_METRICS.md``).
The kernels are in :mod:`fusionbench.metrics.functional_vifb` (re-exported here); this module is
the preset: VIFB's colour handling and the table of which kernel computes each metric.

Usage::

    f, a, b = prepare_vifb(fused_u8, ir_u8, vis_u8, dtype=torch.float64)
    scores = {name: fn(f, a, b) for name, fn in VIFB_METRICS.items()}   # each (N,)

Colour handling (VIFB's per-metric wrappers): when the fused image has three channels every
metric is computed per channel k with channel k of each source (a one-channel source is used for
every k) and the channel results are averaged with equal weights. SF is the exception (the
channels are laid side by side as one H x 3W matrix, MATLAB's 2-D view of an H x W x 3 array);
EI averages over all pixels of all channels, which is the same as the channel mean. When the
fused image has one channel, RGB sources are converted with MATLAB ``rgb2gray`` by
:func:`prepare_vifb`: on uint8 (rounded) for most metrics, on double (unrounded) for PSNR, RMSE and
Qabf, following each metric's code (:data:`VIFB_PREPARE_VARIANTS`).

Metrics VIFB's toolbox lacks (VIF, SCD, CC, MSE) are the CDDFuse definitions of
:mod:`fusionbench.metrics.functional` applied to each channel of VIFB's prepared images and
averaged (VIFB's colour convention), flagged as extensions.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..color import MATLAB_GRAY, luma, luma_matlab_u8
from . import functional as FM
from . import functional_vifb as V
from ._kernels_vifb import to_float
from .catalogue import lookup
from .checks import KernelSizeMismatchError, check_nchw
from .functional_vifb import (
    average_gradient_vifb,
    cross_entropy_kl,
    edge_intensity,
    entropy,
    mutual_information_vifb,
    psnr_vifb,
    qabf,
    qcb,
    qcv,
    rmse_vifb,
    spatial_frequency_vifb,
    ssim_vifb,
    standard_deviation,
)
from .spec import Preset

__all__ = [
    "PRESET",
    "prepare_vifb",
    "VIFB_PREPARE_VARIANTS",
    "VIFB_METRICS",
    "VIFB_NOTES",
    "VIFB_HIGHER_IS_BETTER",
    # the kernels, re-exported from fusionbench.metrics.functional_vifb
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

REFERENCE = "VIFB MATLAB toolbox (github.com/xingchenzhang/VIFB @ 22b2ea9), metrics/*.m"
COLOUR = "each metric per R, G, B channel, then averaged (SF: channels side by side); grey sources used as is"


# --------------------------------------------------------------------------------------------
# colour handling
# --------------------------------------------------------------------------------------------

def prepare_vifb(fused_u8: Tensor, a_u8: Tensor, b_u8: Tensor, dtype: torch.dtype = torch.float64,
                 grey: str = "rounded"):
    """Bring decoded images to VIFB's colour convention: ``(f, a, b)`` float 0..255, equal channels.

    Inputs are uint8 (or integer-valued) tensors (N, C, H, W), C in {1, 3}, as decoded from the
    files; the channel counts may differ. ``a`` is the first source (IR), ``b`` the second (VIS).

    * fused with 3 channels: a 1-channel source is repeated to 3 channels (VIFB uses the whole
      single-channel image with every fused channel); 3-channel sources are kept.
    * fused with 1 channel: 3-channel sources go through MATLAB ``rgb2gray``: with ``grey="rounded"``
      on uint8 (weighted sum rounded half away from zero: VIFB's CE, MI, SSIM, whose code converts
      the uint8 image), with ``grey="exact"`` on double, unrounded (VIFB's PSNR, RMSE and Qabf, whose
      code calls ``double`` first); see :data:`VIFB_PREPARE_VARIANTS`.
    """
    if grey not in ("rounded", "exact"):
        raise ValueError(f"grey={grey!r}; use 'rounded' or 'exact'")
    for name, t in (("fused", fused_u8), ("a", a_u8), ("b", b_u8)):
        check_nchw(t, f"vifb metrics: {name}", channels=(1, 3))
    n, c, h, w = fused_u8.shape
    for name, t in (("a", a_u8), ("b", b_u8)):
        if t.shape[0] != n or t.shape[-2:] != (h, w):
            raise KernelSizeMismatchError(
                f"vifb metrics: fused is {n}x{h}x{w} (N x H x W) but {name} is "
                f"{t.shape[0]}x{t.shape[2]}x{t.shape[3]}")
    f = to_float(fused_u8, dtype)
    out = []
    for t in (a_u8, b_u8):
        if c == 3:
            t = to_float(t, dtype)
            if t.shape[1] == 1:
                t = t.expand(-1, 3, -1, -1)
        else:
            if t.shape[1] == 3:
                # (float64 arithmetic either way, as MATLAB's; only the result goes to dtype)
                t = luma_matlab_u8(t) if grey == "rounded" else luma(t.to(torch.float64), MATLAB_GRAY)
            t = to_float(t, dtype)
        out.append(t)
    return f, out[0], out[1]


def _prepare_exact_grey(fused_u8: Tensor, a_u8: Tensor, b_u8: Tensor, dtype: torch.dtype = torch.float64):
    return prepare_vifb(fused_u8, a_u8, b_u8, dtype, grey="exact")


#: metrics whose VIFB code prepares the sources differently from :func:`prepare_vifb`'s default:
#: metric -> prepare function (only a single-channel fused image with a colour source is affected)
VIFB_PREPARE_VARIANTS: dict[str, Callable] = {"PSNR": _prepare_exact_grey, "RMSE": _prepare_exact_grey,
                                             "Qabf": _prepare_exact_grey}


_REF = "reference: matches VIFB's MATLAB values (vifb_matlab.csv, 8 methods x 21 images) to their 5 significant digits"
_GREY = "; single-channel fused image: colour sources via rgb2gray on uint8 (rounded), as VIFB's code"
_GREY_EXACT = "; single-channel fused image: colour sources via rgb2gray on double (unrounded), as VIFB's code"

#: fidelity of VIFB's own metrics (the table below adds the extensions)
VIFB_NOTES: dict[str, str] = {
    "EN": _REF + " (bits, per-channel mean)",
    "SD": _REF + " (population std, per-channel mean)",
    "SF": _REF + " (channels side by side as H x 3W, seams included, sums / (H*3W))",
    "AG": _REF + " (MATLAB gradient, sum / ((H-1)(W-1)), per-channel mean)",
    "EI": _REF + " (Sobel, replicate borders, mean over all pixels and channels)",
    "CE": _REF + " (KL divergence in bits, mean over sources)" + _GREY,
    "MI": _REF + " (nats, min-max stretch + round half away, sum over sources; constant image -> zeros)"
          + _GREY,
    "PSNR": _REF + " (e = ||S-F||/(H*W), 20 log10(255/sqrt(e)); +inf if F equals both sources)" + _GREY_EXACT,
    "RMSE": _REF + " (e = ||S-F||/(H*W), mean over sources)" + _GREY_EXACT,
    "SSIM": _REF + " (11x11 Gaussian, valid region, L=255, sum over sources)" + _GREY,
    "Qabf": _REF + " (x255 scaling kept for the g_X == g_F quirk; 0 when neither source has edges)" + _GREY_EXACT,
    "Qcb": _REF + " (implemented from metricsQcb.m; NaN points of MATLAB defined, see qcb())"
           + "; single-channel fused image with RGB sources: extension (VIFB's code fails there)",
    "Qcv": _REF + " (implemented from metricsQcv.m; lower is better; equal-weight fallback without edges)"
           + "; single-channel fused image with RGB sources: extension (VIFB's code fails there)",
}


# --------------------------------------------------------------------------------------------
# the preset
# --------------------------------------------------------------------------------------------

def _extension(what: str) -> str:
    return (f"extension: {what}, computed per R, G, B channel and averaged (VIFB's colour convention); "
            "VIFB's MATLAB code has no such metric")


#: metric -> (kernel, parameters, fidelity): VIFB's 13 metrics, then the extensions
TABLE = {
    "EN": (V.entropy, {}, VIFB_NOTES["EN"]),
    "SD": (V.standard_deviation, {}, VIFB_NOTES["SD"]),
    "SF": (V.spatial_frequency_vifb, {}, VIFB_NOTES["SF"]),
    "AG": (V.average_gradient_vifb, {}, VIFB_NOTES["AG"]),
    "EI": (V.edge_intensity, {}, VIFB_NOTES["EI"]),
    "CE": (V.cross_entropy_kl, {}, VIFB_NOTES["CE"]),
    "MI": (V.mutual_information_vifb, {}, VIFB_NOTES["MI"]),
    "PSNR": (V.psnr_vifb, {}, VIFB_NOTES["PSNR"]),
    "RMSE": (V.rmse_vifb, {}, VIFB_NOTES["RMSE"]),
    "SSIM": (V.ssim_vifb, {}, VIFB_NOTES["SSIM"]),
    "Qabf": (V.qabf, {}, VIFB_NOTES["Qabf"]),
    "Qcb": (V.qcb, {}, VIFB_NOTES["Qcb"]),
    "Qcv": (V.qcv, {}, VIFB_NOTES["Qcv"]),
    "VIF": (FM.vif, {}, _extension("VIFp as in the cddfuse preset (4 scales, sigma_n^2 = 2, sum over sources)")),
    "SCD": (FM.scd, {}, _extension("corr(A, F-B) + corr(B, F-A) as in the cddfuse preset")),
    "CC": (FM.correlation_coefficient, {}, _extension("(corr(A,F) + corr(B,F)) / 2 as in the cddfuse preset")),
    "MSE": (FM.mse, {}, _extension("true MSE averaged over the two sources (not VIFB's RMSE helper)")),
}

PRESET = Preset(
    "vifb", REFERENCE, COLOUR, prepare_vifb, TABLE,
    prepare_variants=VIFB_PREPARE_VARIANTS,
    sixteen_bit="round",  # MATLAB im2uint8 of uint16: round(v / 257)
    default_dtype="float64",  # MATLAB's double; float32 misses the 5th digit on 9 of 2184 values
)

# --------------------------------------------------------------------------------------------
# views of the table for direct use of the kernels
# --------------------------------------------------------------------------------------------

#: VIFB's own metrics: canonical name -> fn(f, a, b) -> (N,), on the output of :func:`prepare_vifb`
VIFB_METRICS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    name: PRESET.metrics[name].fn for name in VIFB_NOTES}

VIFB_HIGHER_IS_BETTER: dict[str, bool] = {k: lookup(k).higher_is_better for k in VIFB_METRICS}
