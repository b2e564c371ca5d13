"""ReFusion (Bai et al., IJCV 2024): networks, official weights, losses and meta-training.

Submodules: ``nets`` (F, R, P), ``official`` (official checkpoints + inference protocol),
``ours`` (weights trained by fusionbench), ``entry`` (registry entries).
"""
from .nets import FusionNet, ProposalNet, ReconNet, remap_official, sobel_magnitude

__all__ = ["FusionNet", "ReconNet", "ProposalNet", "sobel_magnitude", "remap_official"]
