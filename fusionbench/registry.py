"""The method registry: one interface for every fusion method.

Methods live outside the core (``baselines/``, ``refusion/``, third-party packages) and plug in
through the entry-point group ``fusionbench.methods``. Each entry point resolves to a
:class:`MethodInfo` or to an iterable of them. The core never imports those packages by name.

A method is *runnable* when it has a ``factory`` and all its weight files resolve (see
:mod:`fusionbench.weights`); a method without a factory is *results-folder only*: the user points
fusionbench at outputs produced with the official code (``--results NAME=DIR``).
"""
from __future__ import annotations

import fnmatch
import importlib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .data.datasets import TASKS  # the canonical task list (re-exported: methods import it from here)
from .errors import FusionBenchError, did_you_mean

ENTRY_POINT_GROUP = "fusionbench.methods"
KINDS = ("classical", "cnn", "autoencoder", "gan", "transformer", "diffusion", "meta")


@dataclass(frozen=True)
class Paper:
    title: str
    venue: str
    year: int
    url: str = ""

    def cite(self) -> str:
        return f"{self.title}, {self.venue} {self.year}"


@dataclass(frozen=True)
class WeightFile:
    """One checkpoint file and where it comes from.

    ``name`` is the official file name; it is looked for as ``<method>/<name>`` in the weights
    folders (see :func:`fusionbench.weights.resolve`). ``bundled`` is a path inside an installed
    package (``"package:relative/path"``) for weights that ship with fusionbench.
    """

    name: str
    sha256: str
    url: str = ""  # official download URL ("" when the authors host none)
    licence: str = "none stated"
    origin: str = ""  # repository or page the file comes from
    task: str = ""  # for per-task checkpoints ("ivif", ...); "" when task-independent
    bundled: str = ""
    note: str = ""


@dataclass(frozen=True)
class MethodInfo:
    """Everything the registry knows about a method.

    ``factory`` is ``"module:callable"``; it is called as
    ``factory(weights=dict[name -> Path], device=torch.device, task=str, **options)`` and returns a
    :class:`Fuser`. ``None`` means results-folder only.
    """

    name: str
    display: str
    paper: Paper | None
    kind: str
    tasks: tuple[str, ...]
    inputs: str
    colour: str
    weights: tuple[WeightFile, ...] = ()
    factory: str | None = None
    code: str = ""  # official code repository
    code_licence: str = "none stated"
    results_howto: str = ""  # how to make outputs with the official code (results-folder methods)
    notes: str = ""
    aliases: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    #: smallest side (pixels) the method is run on; below it every 3x3 convolution / pyramid level is mostly
    #: padding and the output says nothing (16 is also the smallest size the metrics score)
    min_size: int = 16

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} not in {KINDS}")
        bad = set(self.tasks) - set(TASKS)
        if bad:
            raise ValueError(f"{self.name}: unknown tasks {sorted(bad)}")

    def weights_for(self, task: str | None = None) -> tuple[WeightFile, ...]:
        task = task or self.tasks[0]
        return tuple(w for w in self.weights if not w.task or w.task == task)

    def build(self, weights: dict | None = None, device=None, task: str | None = None, **options) -> Fuser:
        if self.factory is None:
            raise FusionBenchError(
                f"{self.display} cannot run inside fusionbench; it is results-folder only. {self.results_howto}"
            )
        mod, _, attr = self.factory.partition(":")
        fn = getattr(importlib.import_module(mod), attr)
        import torch

        device = torch.device(device) if device is not None else torch.device("cpu")
        return fn(weights=weights or {}, device=device, task=task or self.tasks[0], **{**self.options, **options})


class Fuser(Protocol):
    """What a method's factory returns.

    ``fuse(a, b)`` takes two uint8 tensors (N, C, H, W) exactly as decoded from the files
    (C = 1 or 3, the two may differ) on the fuser's device, applies the method's official
    protocol (colour handling, normalisation, padding, output scaling) and returns the image to
    save as uint8 (N, 1 or 3, H, W). ``tile_halo`` is the receptive-field margin needed to fuse
    large images tile by tile, or None when the method needs the whole image (global operations).
    """

    info: MethodInfo
    tile_halo: int | None

    def fuse(self, a, b): ...


_REGISTRY: dict[str, MethodInfo] = {}
_ALIASES: dict[str, str] = {}
_LOADED = False
_LOAD_ERRORS: dict[str, str] = {}


def register(info: MethodInfo, overwrite: bool = False) -> MethodInfo:
    """Add a method (normally done through the entry-point group, see module docstring)."""
    key = info.name.lower()
    if key in _REGISTRY and not overwrite and _REGISTRY[key] != info:
        warnings.warn(f"method {key!r} registered twice; keeping the first", stacklevel=2)
        return _REGISTRY[key]
    _REGISTRY[key] = info
    for a in info.aliases:
        _ALIASES[a.lower()] = key
    return info


def _load_entry_points() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, MethodInfo):
                obj = obj()
            items: Iterable[MethodInfo] = [obj] if isinstance(obj, MethodInfo) else obj
            for info in items:
                register(info)
        except Exception as e:  # a broken plugin must not take the registry down
            _LOAD_ERRORS[ep.name] = f"{e.__class__.__name__}: {e}"
            warnings.warn(f"fusionbench: method plugin {ep.name!r} failed to load: {e}", stacklevel=2)


def list_methods(pattern: str | None = None, task: str | None = None) -> list[MethodInfo]:
    """All registered methods, optionally filtered by fnmatch pattern(s) (comma-separated) and task."""
    _load_entry_points()
    items = sorted(_REGISTRY.values(), key=lambda m: m.name)
    if pattern and pattern != "all":
        pats = [p.strip().lower() for p in pattern.split(",") if p.strip()]
        items = [m for m in items if any(fnmatch.fnmatch(m.name, p) or fnmatch.fnmatch(m.display.lower(), p) for p in pats)]
    if task:
        items = [m for m in items if task in m.tasks]
    return items


def get_method(name: str) -> MethodInfo:
    """Look a method up by name or alias (case-insensitive); unknown names get a suggestion."""
    _load_entry_points()
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    raise did_you_mean("method", name, list(_REGISTRY) + list(_ALIASES))


def plugin_errors() -> dict[str, str]:
    _load_entry_points()
    return dict(_LOAD_ERRORS)

