"""fusionbench: reference-exact image-fusion metrics, a method registry and benchmarks.

The public Python API (see README, "Python"):

* :func:`fusionbench.score` — score fused images against their sources with a reference's conventions;
* :mod:`fusionbench.functional` — one function per metric (``functional.ssim(f, a, b, data_range=1.0)``);
* :func:`fusionbench.load_method` — a registered fusion method, ready to run on tensors;
* :func:`fusionbench.read_tensor` — an image file as a (1, C, H, W) uint8 tensor;
* :func:`fusionbench.list_metrics`, :func:`fusionbench.list_methods` — what exists;
* :mod:`fusionbench.errors` — the exception types (one per problem; all :class:`FusionBenchError`).

Image tensors: (H, W), (C, H, W) or (N, C, H, W), C = 1 or 3; uint8 = 0..255; float tensors need
``data_range`` (see :mod:`fusionbench.contract`). Import cost is kept low: torch-heavy submodules are
imported on use.
"""
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("fusionbench-toolkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "score", "load_method", "read_tensor", "functional", "list_metrics", "list_methods",
           "errors"]

_LAZY = {
    "score": ("fusionbench.api", "score"),
    "load_method": ("fusionbench.api", "load_method"),
    "list_metrics": ("fusionbench.metrics.registry", "list_metrics"),
    "list_methods": ("fusionbench.registry", "list_methods"),
    "read_tensor": ("fusionbench.io", "read_tensor"),
}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    if name in ("functional", "errors", "contract", "metrics"):
        return importlib.import_module(f"fusionbench.{name}")
    raise AttributeError(f"module 'fusionbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
