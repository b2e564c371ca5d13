"""Fusion methods for fusionbench: classical training-free methods, native PyTorch ports of published
networks that load the authors' checkpoints, and results-folder adapters for methods that cannot run here.

Each family exposes ``ENTRIES`` (a list of :class:`fusionbench.registry.MethodInfo`), registered through
the ``fusionbench.methods`` entry-point group declared in pyproject.toml.
"""
