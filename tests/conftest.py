from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fusionbench.paths import shared_dir

sys.path.insert(0, str(Path(__file__).parent))  # test helper modules (port_pairs, fake_methods)


@pytest.fixture
def fake_registry(monkeypatch, tmp_path):
    """Register the tiny test methods of tests/fake_methods.py; isolate weights and cache lookups."""
    from fusionbench import registry

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import fake_methods

    registry._load_entry_points()
    monkeypatch.setitem(registry._REGISTRY, "fake-mean", fake_methods.MEAN)
    monkeypatch.setitem(registry._REGISTRY, "fake-weighted", fake_methods.WEIGHTED)
    monkeypatch.setenv("FUSIONBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FUSIONBENCH_WEIGHTS", raising=False)
    return fake_methods


@pytest.fixture(scope="module")
def shared():
    """../shared with the official weights and reference outputs, or skip."""
    s = shared_dir()
    if s is None or not (s / "weights").is_dir() or not (s / "reference" / "outputs").is_dir():
        pytest.skip("../shared not found (weights and reference outputs needed)")
    return s


@pytest.fixture()
def wenv(shared, monkeypatch):
    """FUSIONBENCH_WEIGHTS pointed at ../shared/weights."""
    monkeypatch.setenv("FUSIONBENCH_WEIGHTS", str(shared / "weights"))
    return shared / "weights"
