"""One function per metric, torchmetrics-style: ``fusionbench.functional.ssim(fused, a, b, data_range=1.0)``.

Each is :func:`fusionbench.score` for one metric and returns a (N,) tensor; inputs follow the input
contract (:mod:`fusionbench.contract`: uint8 = 0..255, float tensors need ``data_range``). ``preset``
chooses the reference whose conventions apply (``cddfuse``, the default, or ``vifb``). Metrics of the
fused image alone (EN, SD, SF, AG, EI) take no sources.

>>> import torch
>>> from fusionbench import functional as FB
>>> x = torch.full((1, 1, 32, 32), 0.5)
>>> FB.en(x, data_range=1.0)
tensor([0.])
>>> FB.ssim(x, x, x, data_range=1.0).item()
2.0

The kernels these call, on float 0..255 (N, C, H, W) tensors, are in
:mod:`fusionbench.metrics.functional` and :mod:`fusionbench.metrics.functional_vifb` (for implementers:
they check shapes only and do not know the presets' colour and rounding conventions, which the presets
of :mod:`fusionbench.metrics.presets` apply).
"""
from __future__ import annotations

from .api import score

__all__ = ["en", "sd", "sf", "ag", "ei", "mi", "scd", "vif", "qabf", "ssim", "mse", "rmse", "cc", "psnr",
           "ce", "qcb", "qcv"]


def _fused_only(name: str, what: str):
    def fn(fused, *, preset: str = "cddfuse", data_range: float | None = None, dtype=None):
        return score(fused, fused, fused, name, preset=preset, data_range=data_range, dtype=dtype)[name]

    fn.__name__ = fn.__qualname__ = name.lower()
    fn.__doc__ = f"{name}: {what} of the fused image alone, (N,). See :func:`fusionbench.score`."
    return fn


def _with_sources(name: str, what: str):
    def fn(fused, a, b, *, preset: str = "cddfuse", data_range: float | None = None, dtype=None):
        return score(fused, a, b, name, preset=preset, data_range=data_range, dtype=dtype)[name]

    fn.__name__ = fn.__qualname__ = name.lower()
    fn.__doc__ = f"{name}: {what}, (N,). See :func:`fusionbench.score`."
    return fn


en = _fused_only("EN", "Shannon entropy (bits)")
sd = _fused_only("SD", "standard deviation")
sf = _fused_only("SF", "spatial frequency")
ag = _fused_only("AG", "average gradient")
ei = _fused_only("EI", "edge intensity")
mi = _with_sources("MI", "mutual information MI(F, A) + MI(F, B)")
scd = _with_sources("SCD", "sum of the correlations of differences")
vif = _with_sources("VIF", "visual information fidelity VIF(A -> F) + VIF(B -> F)")
qabf = _with_sources("Qabf", "Xydeas-Petrovic edge preservation")
ssim = _with_sources("SSIM", "structural similarity SSIM(F, A) + SSIM(F, B)")
mse = _with_sources("MSE", "mean squared error to the sources")
rmse = _with_sources("RMSE", "root mean squared error to the sources")
cc = _with_sources("CC", "correlation coefficient with the sources")
psnr = _with_sources("PSNR", "peak signal-to-noise ratio (dB)")
ce = _with_sources("CE", "cross entropy of the sources' histograms relative to F's")
qcb = _with_sources("Qcb", "Chen-Blum perceptual metric")
qcv = _with_sources("Qcv", "Chen-Varshney perceptual metric (lower is better)")
