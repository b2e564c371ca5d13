from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fusionbench.paths import shared_dir

sys.path.insert(0, str(Path(__file__).parent))  # test helper modules (port_pairs, fake_methods)


# ---------------------------------------------------------------- device / dtype fixtures (as kornia's)
def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", metavar="LIST",
                     help="devices the `device` fixture runs tests on: comma-separated cpu, cuda, cuda:N, or 'all' "
                          "(cpu and every CUDA device present). Default: cpu.")
    parser.addoption("--dtype", default="float32,float64", metavar="LIST",
                     help="dtypes the `dtype` fixture runs tests with: comma-separated float16, bfloat16, float32, "
                          "float64, or 'all'. Default: float32,float64.")


def _devices(option: str) -> list[str]:
    import torch

    if option.strip() == "all":
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [d.strip() for d in option.split(",") if d.strip()]


def _dtypes(option: str) -> list[str]:
    if option.strip() == "all":
        return ["float16", "bfloat16", "float32", "float64"]
    return [d.strip() for d in option.split(",") if d.strip()]


def _explicitly_parametrized(metafunc, name: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc):
    """Tests asking for the ``device`` fixture run once per device of ``--device`` (a CUDA device that is not
    there is a skip, saying so); tests asking for ``dtype`` once per dtype of ``--dtype``. Tests that
    parametrize these names themselves keep their own values."""
    import torch

    cfg = metafunc.config
    if "device" in metafunc.fixturenames and not _explicitly_parametrized(metafunc, "device"):
        params = []
        for d in _devices(cfg.getoption("--device")):
            dev = torch.device(d)
            missing = dev.type == "cuda" and (not torch.cuda.is_available()
                                              or (dev.index or 0) >= torch.cuda.device_count())
            marks = [pytest.mark.skip(reason=f"{d}: no such CUDA device here")] if missing else []
            params.append(pytest.param(dev, id=d, marks=marks))
        metafunc.parametrize("device", params)
    if "dtype" in metafunc.fixturenames and not _explicitly_parametrized(metafunc, "dtype"):
        metafunc.parametrize("dtype", [pytest.param(getattr(torch, d), id=d) for d in _dtypes(cfg.getoption("--dtype"))])


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
