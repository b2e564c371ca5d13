"""The metric registry: the catalogue joined with the presets, and parsing of metric specs.

:mod:`fusionbench.metrics.catalogue` says what each metric is; each preset
(:mod:`fusionbench.metrics.presets`) says how it computes the metrics it offers. A
:class:`MetricInfo` is a catalogue entry with the derived view of its implementations across the
presets (:attr:`MetricInfo.presets`).

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

from dataclasses import dataclass, field, fields

from ..errors import UsageError
from . import catalogue
from .catalogue import Metric, canonical_name
from .presets import DEFAULT_PRESET, Implementation, Preset, all_presets, get_preset

__all__ = ["MetricInfo", "MetricRequest", "canonical_name", "get_metric", "list_metrics", "parse_metrics"]


@dataclass(frozen=True)
class MetricInfo(Metric):
    """A catalogue entry (:class:`~fusionbench.metrics.catalogue.Metric`) with its implementations.

    :attr:`presets` maps a preset name to its :class:`~fusionbench.metrics.spec.Implementation`
    (``.fn`` and ``.fidelity``: ``"reference"`` when the preset's reference code has the metric,
    otherwise ``"extension: <convention chosen>"``), for every registered preset that offers the
    metric. It is derived from the presets on each access, never stored.
    """

    @property
    def presets(self) -> dict[str, Implementation]:
        return {p.name: p.metrics[self.name] for p in all_presets() if self.name in p.metrics}

    def implementation(self, preset=DEFAULT_PRESET) -> Implementation:
        """The implementation under ``preset`` (a name or a :class:`Preset`)."""
        p = get_preset(preset)
        if self.name not in p.metrics:
            have = ", ".join(self.presets) or "none"
            raise UsageError(f"metric {self.name} has no implementation in preset {p.name!r} (available in: {have})")
        return p.metrics[self.name]


_INFOS: dict[Metric, MetricInfo] = {}  # one MetricInfo per catalogue entry, so lookups return the same object


def _info(metric: Metric) -> MetricInfo:
    info = _INFOS.get(metric)
    if info is None:
        info = _INFOS[metric] = MetricInfo(**{f.name: getattr(metric, f.name) for f in fields(Metric)})
    return info


def list_metrics(preset=None) -> list[MetricInfo]:
    """Every metric of the catalogue in a fixed order; with ``preset`` (a name or a :class:`Preset`), only
    those it implements."""
    infos = [_info(m) for m in catalogue.entries()]
    if preset is not None:
        p = get_preset(preset)
        infos = [i for i in infos if i.name in p.metrics]
    return infos


def get_metric(name: str) -> MetricInfo:
    """Look a metric up by name or alias (case- and punctuation-insensitive)."""
    return _info(catalogue.lookup(name))


@dataclass(frozen=True)
class MetricRequest:
    """A metric to compute under a preset, and the label its values carry in outputs.

    ``preset`` is the preset's name; ``preset_object`` is the :class:`Preset` itself when the request
    was made for a preset object (which need not be registered), else None (looked up by name).
    """

    metric: MetricInfo
    preset: str
    label: str
    preset_object: Preset | None = field(default=None, repr=False, compare=False)

    @property
    def resolved_preset(self) -> Preset:
        """The :class:`Preset` the metric is computed under."""
        return self.preset_object if self.preset_object is not None else get_preset(self.preset)

    @property
    def implementation(self) -> Implementation:
        return self.metric.implementation(self.resolved_preset)


def parse_metrics(spec, preset=DEFAULT_PRESET) -> list[MetricRequest]:
    """Parse ``"EN,SD,SSIM@vifb"``, ``"all"`` or ``"all@vifb"`` (or a list of such strings).

    ``preset`` is the run's preset (a name or a :class:`Preset`): metrics without ``@tag`` use it and
    are labelled by their name; tagged ones are labelled ``NAME@preset``. ``all`` expands to every
    metric the preset implements. Duplicates are dropped, order is kept.
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
        if catalogue.normalise(name) == "all":
            infos = list_metrics(p)
        else:
            info = get_metric(name)
            if info.name not in p.metrics:
                have = ", ".join(info.presets) or "none"
                raise UsageError(f"{tok}: metric {info.name} has no implementation in preset {p.name!r} "
                                 f"(available in: {have})")
            infos = [info]
        for info in infos:
            label = info.name if p.name == run.name else f"{info.name}@{p.name}"
            if label not in seen:
                seen.add(label)
                out.append(MetricRequest(info, p.name, label, p if p is run and isinstance(preset, Preset) else None))
    return out
