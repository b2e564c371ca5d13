"""Reference-exact, batched image-fusion metrics.

* :func:`list_metrics`, :func:`get_metric` — the registry (:class:`MetricInfo`: name, aliases,
  direction, inputs, definition from :mod:`~fusionbench.metrics.catalogue`, plus the derived view
  of its per-preset implementations).
* :data:`PRESETS`, :data:`DEFAULT_PRESET`, :func:`get_preset` — reference conventions
  (``cddfuse``: the CDDFuse NumPy evaluator; ``vifb``: VIFB's MATLAB toolbox), each a declarative
  :class:`Preset` object defined in its own module (:mod:`~fusionbench.metrics.cddfuse`,
  :mod:`~fusionbench.metrics.vifb`) and listed in :mod:`~fusionbench.metrics.presets`.
* :func:`parse_metrics` — ``"EN,SD,SSIM@vifb"`` / ``"all"`` -> :class:`MetricRequest` list.
* :func:`score_batch` — decoded uint8 batches -> ``{label: (N,)}``.
* :func:`score_files` — files -> per-image results, batched by size, decoding in parallel.
* :mod:`fusionbench.metrics.functional`, :mod:`fusionbench.metrics.functional_vifb` — the kernels on
  float NCHW tensors (shared windows and filters in :mod:`~fusionbench.metrics.filters`, input
  checks in :mod:`~fusionbench.metrics.checks`).

See CONTRIBUTING.md for adding a metric or a preset.

>>> import torch
>>> from fusionbench.metrics import score_batch
>>> x = torch.full((1, 1, 16, 16), 7, dtype=torch.uint8)
>>> score_batch(x, x, x, "EN,SSIM")["EN"]
tensor([0.])
"""
from __future__ import annotations

from .catalogue import Metric, register_metric, unregister_metric
from .presets import DEFAULT_PRESET, PRESETS, Implementation, Preset, get_preset, register_preset, unregister_preset
from .registry import MetricInfo, MetricRequest, canonical_name, get_metric, list_metrics, parse_metrics

__all__ = [
    "PRESETS", "DEFAULT_PRESET", "Preset", "Implementation", "get_preset",
    "MetricInfo", "MetricRequest", "canonical_name", "get_metric", "list_metrics", "parse_metrics",
    "score_batch", "score_files",
    "Metric", "register_metric", "unregister_metric", "register_preset", "unregister_preset",
]


def __getattr__(name):  # scoring pulls in torch; import it on first use
    if name in ("score_batch", "score_files", "score_folders"):
        from . import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
