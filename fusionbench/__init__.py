"""fusionbench: reference-exact image-fusion metrics, a method registry and benchmarks.

Import cost is kept low: torch-heavy submodules are imported on use.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("fusionbench-toolkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
