"""Metric presets: which reference's conventions a metric follows.

A preset fixes the colour preparation (done once per batch) and, for each metric, the kernel and
its options. Users pick one per run (``--preset``, default ``cddfuse``) and may ask for single
metrics under another with a timm-style tag: ``SSIM@vifb``.

* ``cddfuse`` — the NumPy evaluator of CDDFuse (``utils/Evaluator.py``), used by CDDFuse,
  ReFusion's co-authors and most recent infrared-visible papers. Rounded BT.601 luma, one image.
  See :mod:`fusionbench.metrics.cddfuse`.
* ``vifb`` — VIFB's MATLAB toolbox (Zhang et al., CVPRW 2020). Per-channel evaluation averaged
  over R, G, B. See :mod:`fusionbench.metrics.vifb`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UsageError, did_you_mean

PRESETS = ("cddfuse", "vifb")
DEFAULT_PRESET = "cddfuse"


@dataclass(frozen=True)
class Implementation:
    """One metric under one preset: ``fn(f, a, b) -> (N,)`` on the preset's prepared tensors."""

    fn: Callable
    fidelity: str  # "reference[: details]" or "extension: <convention chosen>"

    @property
    def is_reference(self) -> bool:
        return self.fidelity.startswith("reference")


@dataclass(frozen=True)
class Preset:
    """A named set of conventions.

    ``prepare(fused_u8, a_u8, b_u8, dtype) -> (f, a, b)`` turns decoded images (N, 1|3, H, W)
    into the tensors every metric of the preset takes. ``metrics`` maps canonical metric names
    to :class:`Implementation`. ``available`` is False when the preset's module is not installed;
    ``unavailable_reason`` says why.
    """

    name: str
    reference: str
    colour: str
    prepare: Callable | None
    metrics: dict = field(default_factory=dict)
    available: bool = True
    unavailable_reason: str = ""
    #: optional fast path ``native(fused_u8, a_u8, b_u8, names, dtype) -> {name: (N,)} | None`` on the
    #: decoded images for the metrics in ``native_metrics`` (``dtype``: the precision asked for);
    #: None means "not applicable here", use ``prepare``
    native: Callable | None = None
    native_metrics: frozenset = frozenset()
    #: how the reference reads a 16-bit file as 8 bit (a rule of :data:`fusionbench.io.SIXTEEN_BIT_RULES`)
    sixteen_bit: str = "round"
    #: metric name -> its own ``prepare`` where the reference prepares that metric's inputs differently
    prepare_variants: dict = field(default_factory=dict)
    #: precision used when none is asked for: the lowest that reproduces the reference to README's stated
    #: precision on every golden value ("float32" or "float64")
    default_dtype: str = "float32"

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.default_dtype)

    def prepare_for(self, metric: str) -> Callable:
        """The colour preparation of ``metric`` under this preset."""
        return self.prepare_variants.get(metric, self.prepare)


def _load_cddfuse() -> Preset:
    from . import cddfuse

    try:
        vifb_metrics = getattr(importlib.import_module(f"{__package__}.vifb"), "VIFB_METRICS", None)
    except ModuleNotFoundError as e:  # the extensions need the vifb kernels; without them the preset has 12 metrics
        if e.name != f"{__package__}.vifb":
            raise
        vifb_metrics = None
    fns, notes = cddfuse.metric_table(vifb_metrics)
    impls = {k: Implementation(fn, notes[k]) for k, fn in fns.items()}
    return Preset(
        "cddfuse", cddfuse.REFERENCE,
        "grey replicated to 3 channels; float32 BT.601 luma (OpenCV order), rounded half to even; one image",
        cddfuse.prepare_cddfuse, impls, native=cddfuse.native_cddfuse, native_metrics=cddfuse.NATIVE_METRICS,
        sixteen_bit="shift")  # cv2.imread(path) of a 16-bit PNG: v >> 8


# metrics VIFB's MATLAB code computes; anything else the vifb module offers is an extension
VIFB_REFERENCE_METRICS = ("AG", "CE", "EI", "EN", "MI", "PSNR", "Qabf", "Qcb", "Qcv", "RMSE", "SD", "SF", "SSIM")
_VIFB_REFERENCE = "VIFB MATLAB toolbox (github.com/xingchenzhang/VIFB @ 22b2ea9), metrics/*.m"
_VIFB_COLOUR = "each metric per R, G, B channel, then averaged (SF: channels side by side); grey sources used as is"


def _load_vifb() -> Preset:
    try:
        vifb = importlib.import_module(f"{__package__}.vifb")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.vifb":
            raise
        return Preset("vifb", _VIFB_REFERENCE, _VIFB_COLOUR, None, {}, available=False,
                      unavailable_reason="fusionbench/metrics/vifb.py is not installed")
    table = getattr(vifb, "VIFB_METRICS", None)
    prepare = getattr(vifb, "prepare_vifb", None)
    if not table or prepare is None:
        return Preset("vifb", _VIFB_REFERENCE, _VIFB_COLOUR, None, {}, available=False,
                      unavailable_reason="fusionbench.metrics.vifb defines no VIFB_METRICS / prepare_vifb")
    notes = getattr(vifb, "VIFB_NOTES", {}) or {}
    impls = {}
    for name, fn in table.items():  # canonical metric names (the registry checks them, see registry.py)
        note = notes.get(name)
        if note is None:
            note = ("reference" if name in VIFB_REFERENCE_METRICS
                    else "extension: VIFB conventions (per-channel averaging), not in VIFB's MATLAB code")
        impls[name] = Implementation(fn, note)
    # Metrics VIFB's toolbox lacks and the vifb module does not define: the CDDFuse definitions
    # applied to each channel of VIFB's prepared images and averaged (VIFB's colour convention).
    from . import functional as FM

    fallbacks = {
        "VIF": (FM.vif, "VIFp as in the cddfuse preset (4 scales, sigma_n^2 = 2, sum over sources)"),
        "SCD": (FM.scd, "corr(A, F-B) + corr(B, F-A) as in the cddfuse preset"),
        "CC": (FM.correlation_coefficient, "(corr(A,F) + corr(B,F)) / 2 as in the cddfuse preset"),
        "MSE": (FM.mse, "true MSE averaged over the two sources (not VIFB's RMSE helper)"),
    }
    for name, (fn, what) in fallbacks.items():
        if name not in impls:
            impls[name] = Implementation(fn, f"extension: {what}, computed per R, G, B channel and averaged "
                                             "(VIFB's colour convention); VIFB's MATLAB code has no such metric")
    return Preset("vifb", getattr(vifb, "REFERENCE", _VIFB_REFERENCE), getattr(vifb, "COLOUR", _VIFB_COLOUR),
                  prepare, impls, sixteen_bit="round", prepare_variants=dict(getattr(vifb, "VIFB_PREPARE_VARIANTS", {})),
                  default_dtype="float64")  # MATLAB's double; float32 misses the 5th digit on 9 of 2184 values  # MATLAB im2uint8 of uint16: round(v / 257)


_LOADERS = {"cddfuse": _load_cddfuse, "vifb": _load_vifb}
_CACHE: dict[str, Preset] = {}


def get_preset(name: str) -> Preset:
    """The :class:`Preset` called ``name`` (case-insensitive); unknown names suggest close ones."""
    key = (name or "").strip().lower()
    if key not in _LOADERS:
        raise did_you_mean("preset", name, PRESETS)
    if key not in _CACHE:
        _CACHE[key] = _LOADERS[key]()
    return _CACHE[key]


def require_preset(name: str) -> Preset:
    """Like :func:`get_preset`, but raise :class:`UsageError` when the preset is not available."""
    p = get_preset(name)
    if not p.available:
        raise UsageError(f"preset {p.name!r} is not available: {p.unavailable_reason}")
    return p
