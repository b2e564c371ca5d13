"""ReFusion (Bai et al., IJCV 2024): networks, official weights, losses and meta-training.

Submodules: ``nets`` (F, R, P), ``official`` (official checkpoints + inference protocol),
``ours`` (weights trained by fusionbench), ``entry`` (registry entries; imports no torch).
The network classes are importable from the package (loaded on first access).
"""
from __future__ import annotations

__all__ = ["FusionNet", "ReconNet", "ProposalNet", "sobel_magnitude", "remap_official"]


def __getattr__(name: str):
    if name in __all__:
        from . import nets

        return getattr(nets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
