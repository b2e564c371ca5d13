"""Metric presets: which reference's conventions a metric follows, and the registry of presets.

A preset (:class:`~fusionbench.metrics.spec.Preset`) fixes the colour preparation (done once per
batch) and, for each metric, the kernel and its parameters. Users pick one per run (``--preset``,
default ``cddfuse``) and may ask for single metrics under another with a timm-style tag:
``SSIM@vifb``.

* ``cddfuse`` — the NumPy evaluator of CDDFuse (``utils/Evaluator.py``), used by CDDFuse,
  ReFusion's co-authors and most recent infrared-visible papers. Rounded BT.601 luma, one image.
  See :mod:`fusionbench.metrics.cddfuse`.
* ``vifb`` — VIFB's MATLAB toolbox (Zhang et al., CVPRW 2020). Per-channel evaluation averaged
  over R, G, B. See :mod:`fusionbench.metrics.vifb`.

Each built-in preset is the ``PRESET`` object of its module, listed once in :data:`BUILTIN` and
imported on first use; a preset module that cannot be imported makes that preset unavailable (with
the reason) instead of breaking the others. :func:`register_preset` adds a preset object at run
time (plugins, tests) and :func:`unregister_preset` removes it.
"""
from __future__ import annotations

import importlib

from ..errors import UsageError, did_you_mean
from .spec import Implementation, Preset

__all__ = ["PRESETS", "DEFAULT_PRESET", "BUILTIN", "Preset", "Implementation", "get_preset", "require_preset",
           "register_preset", "unregister_preset", "preset_names", "all_presets"]

#: the presets fusionbench ships, in listing order
PRESETS = ("cddfuse", "vifb")
DEFAULT_PRESET = "cddfuse"

#: where each built-in preset is defined: name -> module of this package whose ``PRESET`` it is. Adding a
#: preset to fusionbench is one module and one line here.
BUILTIN = {"cddfuse": "cddfuse", "vifb": "vifb"}
assert tuple(BUILTIN) == PRESETS

_LOADED: dict[str, Preset] = {}
_REGISTERED: dict[str, Preset] = {}


def _load(name: str) -> Preset:
    module = BUILTIN[name]
    qualified = f"{__package__}.{module}"
    unknown = f"(defined in {qualified}, which cannot be used)"
    try:
        mod = importlib.import_module(qualified)
    except ModuleNotFoundError as e:
        if e.name != qualified:
            raise
        return Preset(name, unknown, unknown, None, {}, available=False,
                      unavailable_reason=f"fusionbench/metrics/{module}.py is not installed")
    preset = getattr(mod, "PRESET", None)
    if not isinstance(preset, Preset) or preset.name != name:
        return Preset(name, unknown, unknown, None, {}, available=False,
                      unavailable_reason=f"{qualified} defines no PRESET named {name!r}")
    return preset


def preset_names() -> tuple[str, ...]:
    """The built-in presets, then those added with :func:`register_preset`."""
    return PRESETS + tuple(_REGISTERED)


def get_preset(name) -> Preset:
    """The :class:`Preset` called ``name`` (case-insensitive); unknown names suggest close ones.

    A :class:`Preset` object is returned as it is, so that callers may pass either.
    """
    if isinstance(name, Preset):
        return name
    key = (name or "").strip().lower()
    if key in _REGISTERED:
        return _REGISTERED[key]
    if key not in BUILTIN:
        raise did_you_mean("preset", str(name), preset_names())
    if key not in _LOADED:
        _LOADED[key] = _load(key)
    return _LOADED[key]


def require_preset(name) -> Preset:
    """Like :func:`get_preset`, but raise :class:`UsageError` when the preset is not available."""
    p = get_preset(name)
    if not p.available:
        raise UsageError(f"preset {p.name!r} is not available: {p.unavailable_reason}")
    return p


def all_presets() -> list[Preset]:
    """Every preset of :func:`preset_names` (the built-in ones loaded on first use)."""
    return [get_preset(p) for p in preset_names()]


def register_preset(preset: Preset) -> Preset:
    """Make ``preset`` known by its name (lower case, not a built-in one's) to :func:`get_preset`,
    ``--metrics X@name`` and the metric listings. Returns it; :func:`unregister_preset` removes it."""
    if not isinstance(preset, Preset):
        raise TypeError(f"expected a Preset, got {type(preset).__name__}")
    if preset.name != preset.name.strip().lower() or not preset.name:
        raise ValueError(f"preset names are lower case without surrounding spaces, got {preset.name!r}")
    if preset.name in BUILTIN or preset.name in _REGISTERED:
        raise ValueError(f"preset {preset.name!r} already exists")
    _REGISTERED[preset.name] = preset
    return preset


def unregister_preset(name: str) -> None:
    """Remove a preset added with :func:`register_preset`."""
    key = (name.name if isinstance(name, Preset) else str(name)).strip().lower()
    if key in BUILTIN:
        raise ValueError(f"{key!r} is a built-in preset")
    if _REGISTERED.pop(key, None) is None:
        raise did_you_mean("preset", key, preset_names())
