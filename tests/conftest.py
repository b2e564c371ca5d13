from __future__ import annotations

from pathlib import Path

import pytest


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
