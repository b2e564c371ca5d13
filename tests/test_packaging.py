"""The wheel: one top-level import name (``fusionbench``; the methods install as ``fusionbench.baselines`` and
``fusionbench.refusion``), the bundled sample and ReFusion weights inside it, entry points into the namespace."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                        str(ROOT)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip().splitlines()[-1:]}")
    return zipfile.ZipFile(next(out.glob("fusionbench_toolkit-*.whl")))


def test_only_fusionbench_at_the_top(wheel):
    tops = {n.split("/")[0] for n in wheel.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"fusionbench"}
    names = set(wheel.namelist())
    assert {"fusionbench/baselines/__init__.py", "fusionbench/baselines/ports/murf.py",
            "fusionbench/refusion/__init__.py", "fusionbench/refusion/train.py"} <= names


def test_sample_and_bundled_weights_are_inside(wheel):
    names = set(wheel.namelist())
    sample = [n for n in names if n.startswith("fusionbench/sample/") and n.endswith(".png")]
    assert len(sample) == len(list((ROOT / "fusionbench" / "sample").rglob("*.png"))) > 0
    assert {"fusionbench/refusion/weights/refusion_ours_ivif.pt", "fusionbench/refusion/weights/refusion_ours_ivif.json",
            "fusionbench/refusion/configs/default.yaml"} <= names


def test_entry_points_point_into_the_namespace(wheel):
    ep = wheel.read(next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))).decode()
    targets = [line.split("=", 1)[1].strip() for line in ep.splitlines() if "=" in line]
    assert targets and all(t.startswith("fusionbench.") for t in targets), targets


def test_installed_command_finds_bundled_weights_outside_the_source_tree(tmp_path):
    """From a folder that is not the checkout (so nothing resolves through the current directory), the command
    sees the methods and the weights bundled in the package (refusion-ours runs without downloads)."""
    import shutil

    exe = shutil.which("fusionbench")
    if exe is None:
        pytest.skip("the fusionbench command is not on PATH")
    r = subprocess.run([exe, "methods", "refusion-ours", "--json"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    import json

    (entry,) = json.loads(r.stdout)
    assert entry["name"] == "refusion-ours" and entry["status"] == "runnable", entry
