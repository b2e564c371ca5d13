"""Where things live: the shared data folder, the user cache, the bundled sample."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample"


def shared_dir() -> Path | None:
    """The ``shared`` folder (data, weights, reference values), or None when absent.

    Looked up from ``FUSIONBENCH_SHARED``, then ``../shared`` beside the current directory
    and beside the source tree.
    """
    env = os.environ.get("FUSIONBENCH_SHARED")
    cands = [Path(env)] if env else []
    cands += [Path.cwd().parent / "shared", PACKAGE_DIR.parent.parent / "shared"]
    for c in cands:
        if (c / "data").is_dir() or (c / "reference").is_dir():
            return c.resolve()
    return None


def data_dir() -> Path | None:
    """Real datasets: ``FUSIONBENCH_DATA`` or ``<shared>/data``; None when absent."""
    env = os.environ.get("FUSIONBENCH_DATA")
    if env:
        p = Path(env)
        return p.resolve() if p.is_dir() else None
    s = shared_dir()
    return (s / "data") if s and (s / "data").is_dir() else None


def cache_dir() -> Path:
    """User cache (weights, fused outputs): ``FUSIONBENCH_CACHE`` or the XDG cache folder."""
    env = os.environ.get("FUSIONBENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "fusionbench"
