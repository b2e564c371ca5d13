"""The metric catalogue: what each metric *is*, independent of any reference implementation.

An entry (:class:`Metric`) has the canonical name, aliases, direction, whether the sources are
inputs, a one-line definition and the value taken where the definition breaks down (constant
images ...). How a metric is computed under a reference's conventions is a preset's business
(:mod:`fusionbench.metrics.presets`); this module imports no preset and knows none.

>>> canonical_name("QAB/F"), canonical_name("viff"), canonical_name("nope")
('Qabf', 'VIF', None)
>>> lookup("entropy").direction
'higher'

Names are matched case-insensitively and ignoring punctuation (``Q_abf``, ``QAB/F`` and ``qabf``
are the same metric). Unknown names raise :class:`fusionbench.errors.UnknownNameError` with
"did you mean" suggestions.

Adding a metric is one :class:`Metric` in :data:`CATALOGUE` (plus an implementation in each preset
that offers it); :func:`register_metric` adds one at run time (plugins, tests) and
:func:`unregister_metric` removes it again.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import did_you_mean

__all__ = ["Metric", "CATALOGUE", "canonical_name", "lookup", "entries", "names_and_aliases", "register_metric",
           "unregister_metric", "normalise"]


@dataclass(frozen=True)
class Metric:
    """One metric of the catalogue."""

    name: str
    aliases: tuple[str, ...]
    higher_is_better: bool
    needs_sources: bool  # False: a function of the fused image alone
    description: str
    degenerate: str  # the value returned where the definition breaks down (constant images ...)

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


#: every built-in metric, in the order listings and ``all`` use
CATALOGUE: tuple[Metric, ...] = (
    Metric("EN", ("entropy",), True, False,
           "Shannon entropy of the fused image's grey-level histogram, in bits",
           "0 for a constant image"),
    Metric("SD", ("std", "standard_deviation"), True, False,
           "standard deviation of the fused image (population, divides by N)",
           "0 for a constant image"),
    Metric("SF", ("spatial_frequency",), True, False,
           "spatial frequency: sqrt of the mean squared horizontal plus vertical neighbour differences",
           "0 for a constant image"),
    Metric("AG", ("average_gradient", "avg_gradient"), True, False,
           "average gradient: mean of sqrt((gx^2 + gy^2) / 2), central differences",
           "0 for a constant image"),
    Metric("MI", ("mutual_information", "mutinf"), True, True,
           "mutual information MI(F,A) + MI(F,B) of the grey levels, in nats",
           "a pair with a constant image contributes 0"),
    Metric("SCD", ("sum_of_correlations_of_differences",), True, True,
           "sum of the correlations of differences corr(A, F-B) + corr(B, F-A)",
           "a correlation with a constant image (or constant difference) counts as 0"),
    Metric("VIF", ("VIFF", "VIFp"), True, True,
           "visual information fidelity (pixel-domain VIFp, 4 scales), VIF(A->F) + VIF(B->F)",
           "a constant source contributes 1 (the reference turns its NaN into 1); images with a side under 41 px: "
           "as the evaluator's zero-padded operand swap, or undefined (NaN, noted) where the evaluator raises"),
    Metric("Qabf", ("QAB/F", "Q_abf"), True, True,
           "Xydeas-Petrovic gradient-based edge preservation Q^{AB/F}",
           "0 when neither source has any gradient"),
    Metric("SSIM", ("structural_similarity",), True, True,
           "structural similarity SSIM(F,A) + SSIM(F,B)",
           "defined for constant images (the stabilising constants keep it finite); an image against itself gives "
           "1 per source"),
    Metric("MSE", ("mean_squared_error",), False, True,
           "mean squared error between F and each source, averaged over the two sources",
           "always defined"),
    Metric("RMSE", ("root_mean_squared_error",), False, True,
           "root mean squared error between F and the sources",
           "always defined"),
    Metric("CC", ("correlation_coefficient", "corr"), True, True,
           "Pearson correlation of F with each source, averaged over the two sources",
           "a correlation with a constant image counts as 0"),
    Metric("PSNR", ("peak_signal_to_noise_ratio",), True, True,
           "peak signal-to-noise ratio of F against the sources, in dB",
           "+inf when F equals both sources, as both references give (their division by a zero error; not capped, "
           "unlike torchmetrics/skimage, so that tables match papers), also for all-black images where the CDDFuse "
           "evaluator's 0/0 gives NaN; -inf when F's peak is 0 and the error is not (the evaluator's log10(0))"),
    Metric("CE", ("cross_entropy",), False, True,
           "cross entropy (KL divergence) of each source's histogram relative to F's, in bits, averaged",
           "always finite: bins where either histogram is empty are skipped (0 when nothing is left)"),
    Metric("EI", ("edge_intensity",), True, False,
           "edge intensity: mean Sobel gradient magnitude of the fused image",
           "0 for a constant image"),
    Metric("Qcb", ("Q_CB", "chen_blum"), True, True,
           "Chen-Blum human-perception metric (contrast preservation after CSF filtering)",
           "where MATLAB gives NaN: contrast 0 for an all-zero neighbourhood, preservation 1 where both contrasts "
           "are 0, equal saliency weights where both sources have none"),
    Metric("Qcv", ("Q_CV", "chen_varshney"), False, True,
           "Chen-Varshney human-perception metric (saliency-weighted CSF-filtered distortion)",
           "when neither source has an edge (zero saliency everywhere), the equal-weight mean of the two "
           "distortions"),
)


def normalise(name: str) -> str:
    """The lookup key of a name: lower case, letters and digits only (``"QAB/F"`` -> ``"qabf"``)."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


_ENTRIES: dict[str, Metric] = {}  # canonical name -> entry, in catalogue order
_LOOKUP: dict[str, str] = {}  # normalised name or alias -> canonical name


def _add(metric: Metric) -> None:
    keys = [normalise(n) for n in (metric.name, *metric.aliases)]
    for n, k in zip((metric.name, *metric.aliases), keys):
        if not k:
            raise ValueError(f"metric {metric.name!r}: {n!r} has no letter or digit to look it up by")
        if _LOOKUP.get(k, metric.name) != metric.name:
            raise ValueError(f"metric {metric.name!r}: name or alias {n!r} already means {_LOOKUP[k]}")
    if metric.name in _ENTRIES:
        raise ValueError(f"metric {metric.name!r} is already in the catalogue")
    _ENTRIES[metric.name] = metric
    for k in keys:
        _LOOKUP[k] = metric.name


for _m in CATALOGUE:
    _add(_m)
del _m


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to the catalogue (after the built-in ones); its name and aliases must be new.

    Presets can then implement it. Returns the entry; :func:`unregister_metric` removes it.
    """
    _add(metric)
    return metric


def unregister_metric(name: str) -> None:
    """Remove a metric added with :func:`register_metric` (built-in metrics cannot be removed)."""
    canon = canonical_name(name)
    if canon is None:
        raise did_you_mean("metric", str(name), names_and_aliases())
    if any(m.name == canon for m in CATALOGUE):
        raise ValueError(f"{canon} is a built-in metric")
    metric = _ENTRIES.pop(canon)
    for n in (metric.name, *metric.aliases):
        _LOOKUP.pop(normalise(n), None)


def canonical_name(name: str) -> str | None:
    """The canonical display name for a metric name or alias, or None when unknown."""
    return _LOOKUP.get(normalise(name))


def lookup(name: str) -> Metric:
    """The catalogue entry of a name or alias; unknown names raise
    :class:`~fusionbench.errors.UnknownNameError` with close matches."""
    canon = canonical_name(name)
    if canon is None:
        raise did_you_mean("metric", str(name), names_and_aliases())
    return _ENTRIES[canon]


def entries() -> tuple[Metric, ...]:
    """Every metric of the catalogue, built-in ones first, in a fixed order."""
    return tuple(_ENTRIES.values())


def names_and_aliases() -> list[str]:
    """Every canonical name, then every alias (the choices offered by "did you mean")."""
    return [m.name for m in _ENTRIES.values()] + [a for m in _ENTRIES.values() for a in m.aliases]
