"""The metric registry: names, aliases, direction, inputs and per-preset implementations.

>>> from fusionbench.metrics import get_metric
>>> get_metric("viff").name, get_metric("QAB/F").name
('VIF', 'Qabf')
>>> [r.label for r in parse_metrics("EN, ssim@vifb", preset="cddfuse")][0]
'EN'

Names are matched case-insensitively and ignoring punctuation (``Q_abf``, ``QAB/F`` and ``qabf``
are the same metric). Unknown names raise :class:`fusionbench.errors.UnknownNameError` with
"did you mean" suggestions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UsageError, did_you_mean
from .presets import DEFAULT_PRESET, PRESETS, Implementation, get_preset


@dataclass(frozen=True)
class MetricInfo:
    """What the registry knows about a metric.

    ``presets`` maps a preset name to its :class:`~fusionbench.metrics.presets.Implementation`
    (``.fn`` and ``.fidelity``: ``"reference"`` when the preset's reference code has the metric,
    otherwise ``"extension: <convention chosen>"``).
    """

    name: str
    aliases: tuple[str, ...]
    higher_is_better: bool
    needs_sources: bool
    description: str
    degenerate: str  # the value returned where the definition breaks down (constant images ...)
    presets: dict = field(default_factory=dict)

    def implementation(self, preset: str = DEFAULT_PRESET) -> Implementation:
        p = get_preset(preset).name
        if p not in self.presets:
            have = ", ".join(self.presets) or "none"
            raise UsageError(f"metric {self.name} has no implementation in preset {p!r} (available in: {have})")
        return self.presets[p]

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


# name, aliases, higher_is_better, needs_sources, description, degenerate-input value
_TABLE = [
    ("EN", ("entropy",), True, False,
     "Shannon entropy of the fused image's grey-level histogram, in bits",
     "0 for a constant image"),
    ("SD", ("std", "standard_deviation"), True, False,
     "standard deviation of the fused image (population, divides by N)",
     "0 for a constant image"),
    ("SF", ("spatial_frequency",), True, False,
     "spatial frequency: sqrt of the mean squared horizontal plus vertical neighbour differences",
     "0 for a constant image"),
    ("AG", ("average_gradient", "avg_gradient"), True, False,
     "average gradient: mean of sqrt((gx^2 + gy^2) / 2), central differences",
     "0 for a constant image"),
    ("MI", ("mutual_information", "mutinf"), True, True,
     "mutual information MI(F,A) + MI(F,B) of the grey levels, in nats",
     "a pair with a constant image contributes 0"),
    ("SCD", ("sum_of_correlations_of_differences",), True, True,
     "sum of the correlations of differences corr(A, F-B) + corr(B, F-A)",
     "a correlation with a constant image (or constant difference) counts as 0"),
    ("VIF", ("VIFF", "VIFp"), True, True,
     "visual information fidelity (pixel-domain VIFp, 4 scales), VIF(A->F) + VIF(B->F)",
     "a constant source contributes 1 (the reference turns its NaN into 1); images with a side under 41 px: "
     "as the evaluator's zero-padded operand swap, or undefined (NaN, noted) where the evaluator raises"),
    ("Qabf", ("QAB/F", "Q_abf"), True, True,
     "Xydeas-Petrovic gradient-based edge preservation Q^{AB/F}",
     "0 when neither source has any gradient"),
    ("SSIM", ("structural_similarity",), True, True,
     "structural similarity SSIM(F,A) + SSIM(F,B)",
     "defined for constant images (the stabilising constants keep it finite); an image against itself gives 1 per source"),
    ("MSE", ("mean_squared_error",), False, True,
     "mean squared error between F and each source, averaged over the two sources",
     "always defined"),
    ("RMSE", ("root_mean_squared_error",), False, True,
     "root mean squared error between F and the sources",
     "always defined"),
    ("CC", ("correlation_coefficient", "corr"), True, True,
     "Pearson correlation of F with each source, averaged over the two sources",
     "a correlation with a constant image counts as 0"),
    ("PSNR", ("peak_signal_to_noise_ratio",), True, True,
     "peak signal-to-noise ratio of F against the sources, in dB",
     "+inf when F equals both sources, as both references give (their division by a zero error; not capped, "
     "unlike torchmetrics/skimage, so that tables match papers), also for all-black images where the CDDFuse "
     "evaluator's 0/0 gives NaN; -inf when F's peak is 0 and the error is not (the evaluator's log10(0))"),
    ("CE", ("cross_entropy",), False, True,
     "cross entropy (KL divergence) of each source's histogram relative to F's, in bits, averaged",
     "always finite: bins where either histogram is empty are skipped (0 when nothing is left)"),
    ("EI", ("edge_intensity",), True, False,
     "edge intensity: mean Sobel gradient magnitude of the fused image",
     "0 for a constant image"),
    ("Qcb", ("Q_CB", "chen_blum"), True, True,
     "Chen-Blum human-perception metric (contrast preservation after CSF filtering)",
     "where MATLAB gives NaN: contrast 0 for an all-zero neighbourhood, preservation 1 where both contrasts are 0, "
     "equal saliency weights where both sources have none"),
    ("Qcv", ("Q_CV", "chen_varshney"), False, True,
     "Chen-Varshney human-perception metric (saliency-weighted CSF-filtered distortion)",
     "when neither source has an edge (zero saliency everywhere), the equal-weight mean of the two distortions"),
]

ORDER = tuple(row[0] for row in _TABLE)


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


_LOOKUP: dict[str, str] = {}
for _row in _TABLE:
    for _n in (_row[0], *_row[1]):
        _k = _norm(_n)
        assert _k not in _LOOKUP or _LOOKUP[_k] == _row[0], _n
        _LOOKUP[_k] = _row[0]

_INFOS: dict[str, MetricInfo] | None = None


def canonical_name(name: str) -> str | None:
    """The canonical display name for a metric name or alias, or None when unknown."""
    return _LOOKUP.get(_norm(name))


def _build() -> dict[str, MetricInfo]:
    global _INFOS
    if _INFOS is None:
        impls: dict[str, dict] = {row[0]: {} for row in _TABLE}
        for p in PRESETS:
            for name, impl in get_preset(p).metrics.items():
                if name not in impls:  # a preset module defining a metric the catalogue does not know
                    import warnings

                    warnings.warn(f"preset {p!r}: metric {name!r} is not in the metric catalogue; ignored",
                                  stacklevel=2)
                    continue
                impls[name][p] = impl
        _INFOS = {row[0]: MetricInfo(row[0], row[1], row[2], row[3], row[4], row[5], impls[row[0]]) for row in _TABLE}
    return _INFOS


def list_metrics(preset: str | None = None) -> list[MetricInfo]:
    """Every registered metric in a fixed order; with ``preset``, only those it implements."""
    infos = list(_build().values())
    if preset is not None:
        p = get_preset(preset).name
        infos = [i for i in infos if p in i.presets]
    return infos


def get_metric(name: str) -> MetricInfo:
    """Look a metric up by name or alias (case- and punctuation-insensitive)."""
    canon = canonical_name(name)
    if canon is None:
        choices = [row[0] for row in _TABLE] + [a for row in _TABLE for a in row[1]]
        raise did_you_mean("metric", str(name), choices)
    return _build()[canon]


@dataclass(frozen=True)
class MetricRequest:
    """A metric to compute under a preset, and the label its values carry in outputs."""

    metric: MetricInfo
    preset: str
    label: str

    @property
    def implementation(self) -> Implementation:
        return self.metric.implementation(self.preset)


def parse_metrics(spec, preset: str = DEFAULT_PRESET) -> list[MetricRequest]:
    """Parse ``"EN,SD,SSIM@vifb"``, ``"all"`` or ``"all@vifb"`` (or a list of such strings).

    ``preset`` is the run's preset: metrics without ``@tag`` use it and are labelled by their
    name; tagged ones are labelled ``NAME@preset``. ``all`` expands to every metric the preset
    implements. Duplicates are dropped, order is kept.
    """
    run = get_preset(preset)
    if not run.available:
        raise UsageError(f"preset {run.name!r} is not available: {run.unavailable_reason}")
    if isinstance(spec, str):
        spec = [spec]
    tokens = [t.strip() for item in spec for t in str(item).split(",")]
    tokens = [t for t in tokens if t]
    if not tokens:
        raise UsageError("no metrics given (e.g. --metrics EN,SD,SSIM or --metrics all)")
    out: list[MetricRequest] = []
    seen = set()
    for tok in tokens:
        name, _, tag = tok.partition("@")
        name, tag = name.strip(), tag.strip()
        p = get_preset(tag) if tag else run
        if not p.available:
            raise UsageError(f"{tok}: preset {p.name!r} is not available: {p.unavailable_reason}")
        if _norm(name) == "all":
            infos = list_metrics(p.name)
        else:
            info = get_metric(name)
            if p.name not in info.presets:
                have = ", ".join(info.presets) or "none"
                raise UsageError(f"{tok}: metric {info.name} has no implementation in preset {p.name!r} "
                                 f"(available in: {have})")
            infos = [info]
        for info in infos:
            label = info.name if p.name == run.name else f"{info.name}@{p.name}"
            if label not in seen:
                seen.add(label)
                out.append(MetricRequest(info, p.name, label))
    return out
