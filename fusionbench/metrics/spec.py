"""The data a preset is made of: :class:`Preset` and :class:`Implementation`.

A preset is a reference's conventions written down as data: its colour handling (a ``prepare``
function, done once per batch, and per-metric variants of it), how it reads 16-bit files, the
precision that reproduces it, an optional native fast path, and a table ``metric -> (kernel,
params, fidelity note)``. The kernels are plain functions of :mod:`fusionbench.metrics.functional`
and :mod:`fusionbench.metrics.functional_vifb`; a table entry binds one of them to its parameters.

>>> from fusionbench.metrics import functional as FM
>>> def as_float(f, a, b, dtype):
...     return f.to(dtype), a.to(dtype), b.to(dtype)
>>> p = Preset("toy", "nothing", "grey as is", as_float,
...            metrics={"SF": (FM.spatial_frequency, {"normalize": "pixels"}, "reference")})
>>> p.metrics["SF"].params["normalize"], p.metrics["SF"].fused_only
('pixels', True)

This module imports no preset; :mod:`fusionbench.metrics.presets` keeps the registry of them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import catalogue

__all__ = ["Implementation", "Preset"]


@dataclass(frozen=True)
class Implementation:
    """One metric under one preset: ``kernel`` bound to ``params``.

    ``fn(f, a, b) -> (N,)`` calls ``kernel(f, a, b, **params)``, or ``kernel(f, **params)`` when
    ``fused_only`` (a metric of the fused image alone), on the preset's prepared tensors.
    ``fidelity`` is ``"reference[: details]"`` when the preset's reference code has the metric,
    otherwise ``"extension: <convention chosen>"``.
    """

    kernel: Callable
    fidelity: str = "reference"
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    fused_only: bool = False

    def __post_init__(self):
        object.__setattr__(self, "params", dict(self.params))  # a copy: the table entry stays as written

    @property
    def is_reference(self) -> bool:
        return self.fidelity.startswith("reference")

    def __call__(self, f, a=None, b=None):
        """The metric on prepared tensors: ``(N,)``."""
        if self.fused_only:
            return self.kernel(f, **self.params)
        return self.kernel(f, a, b, **self.params)

    @property
    def fn(self) -> Callable:
        """``fn(f, a, b) -> (N,)``: the kernel with its parameters bound (sources ignored when fused-only)."""
        return self.__call__


@dataclass(frozen=True)
class Preset:
    """A named set of conventions.

    ``prepare(fused_u8, a_u8, b_u8, dtype) -> (f, a, b)`` turns decoded images (N, 1|3, H, W)
    into the tensors every metric of the preset takes. ``metrics`` maps canonical metric names
    (of :mod:`fusionbench.metrics.catalogue`) to :class:`Implementation`; a table entry may also be
    written ``(kernel, params, fidelity)``, which becomes an :class:`Implementation` (fused-only
    when the catalogue says the metric takes no sources). ``available`` is False when the preset's
    module is not installed; ``unavailable_reason`` says why.
    """

    name: str
    reference: str
    colour: str
    prepare: Callable | None
    metrics: Mapping[str, Implementation] = field(default_factory=dict, hash=False)
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
    prepare_variants: Mapping[str, Callable] = field(default_factory=dict, hash=False)
    #: precision used when none is asked for: the lowest that reproduces the reference to README's stated
    #: precision on every golden value ("float32" or "float64")
    default_dtype: str = "float32"

    def __post_init__(self):
        from ..io import SIXTEEN_BIT_RULES

        impls = {}
        for name, entry in dict(self.metrics).items():
            metric = catalogue.lookup(name)  # unknown names: UnknownNameError with suggestions
            if metric.name != name:
                raise ValueError(f"preset {self.name!r}: use the canonical name {metric.name!r}, not {name!r}")
            if not isinstance(entry, Implementation):
                kernel, params, fidelity = entry
                entry = Implementation(kernel, fidelity, params, fused_only=not metric.needs_sources)
            impls[name] = entry
        for what, names in (("prepare_variants", self.prepare_variants), ("native_metrics", self.native_metrics)):
            extra = set(names) - set(impls)
            if extra:
                raise ValueError(f"preset {self.name!r}: {what} names metrics it does not implement: {sorted(extra)}")
        if self.sixteen_bit not in SIXTEEN_BIT_RULES:
            raise ValueError(f"preset {self.name!r}: sixteen_bit must be one of {sorted(SIXTEEN_BIT_RULES)}")
        if self.default_dtype not in ("float32", "float64"):
            raise ValueError(f"preset {self.name!r}: default_dtype must be 'float32' or 'float64'")
        if self.available and self.prepare is None and impls:
            raise ValueError(f"preset {self.name!r}: a preset with metrics needs a prepare function")
        object.__setattr__(self, "metrics", impls)
        object.__setattr__(self, "prepare_variants", dict(self.prepare_variants))
        object.__setattr__(self, "native_metrics", frozenset(self.native_metrics))

    @property
    def dtype(self):
        """:attr:`default_dtype` as a ``torch.dtype``."""
        import torch

        return getattr(torch, self.default_dtype)

    def prepare_for(self, metric: str) -> Callable:
        """The colour preparation of ``metric`` under this preset."""
        return self.prepare_variants.get(metric, self.prepare)
