"""The metrics core's structure: a catalogue without preset knowledge, presets as data, one place to
register a metric or a preset, and modules that import without cycles."""
from __future__ import annotations

import ast
import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fusionbench.metrics as M
from fusionbench.errors import UnknownNameError, UsageError
from fusionbench.metrics import catalogue, presets, spec
from fusionbench.metrics import functional as FM

METRICS_DIR = Path(M.__file__).parent
MODULES = sorted(p.stem for p in METRICS_DIR.glob("*.py") if p.stem != "__init__")


def _imports(module: str) -> set[str]:
    """Modules of fusionbench.metrics that ``module`` imports anywhere (top level or inside functions)."""
    tree = ast.parse((METRICS_DIR / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fusionbench.metrics."):
            out.add(node.module.split(".")[2])
    return out & set(MODULES)


def test_catalogue_knows_no_preset():
    assert _imports("catalogue") == set()
    fields = {f for f in catalogue.Metric.__dataclass_fields__}
    assert fields == {"name", "aliases", "higher_is_better", "needs_sources", "description", "degenerate"}
    assert [m.name for m in catalogue.entries()] == [i.name for i in M.list_metrics()]


def test_the_preset_data_types_import_no_preset():
    assert _imports("spec") <= {"catalogue"}
    assert "cddfuse" not in _imports("presets") and "vifb" not in _imports("presets")  # loaded by name


def test_no_import_cycle_between_the_metrics_modules():
    graph = {m: _imports(m) for m in MODULES}

    def visit(m, path):
        assert m not in path, " -> ".join(path + [m])
        for n in graph[m]:
            visit(n, path + [m])

    for m in MODULES:
        visit(m, [])


def test_each_module_imports_first():
    # one interpreter; before each module every fusionbench module is dropped from sys.modules, so each
    # is imported first (torch, numpy stay loaded: they cannot take part in a cycle of ours)
    names = ["fusionbench.metrics"] + [f"fusionbench.metrics.{m}" for m in MODULES]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for k in [k for k in sys.modules if k == 'fusionbench' or k.startswith('fusionbench.')]:\n"
        "        del sys.modules[k]\n"
        "    importlib.import_module(name)\n"
        "    import fusionbench.metrics as M\n"
        "    assert len(M.list_metrics('vifb')) == 17, name\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("name", M.PRESETS)
def test_each_builtin_preset_is_a_declarative_object(name):
    p = M.get_preset(name)
    assert isinstance(p, M.Preset) and p.available and p.name == name
    mod = sys.modules[f"fusionbench.metrics.{name}"]
    assert mod.PRESET is p and get_table(mod) is not None
    for metric, impl in p.metrics.items():
        assert isinstance(impl, M.Implementation)
        assert impl.fidelity == "reference" or impl.fidelity.startswith(("reference: ", "extension: ")), metric
        assert impl.fused_only == (not M.get_metric(metric).needs_sources)
        entry = get_table(mod)[metric]
        assert (impl.kernel, dict(impl.params), impl.fidelity) == (entry[0], entry[1], entry[2])
    assert set(p.prepare_variants) <= set(p.metrics) and p.native_metrics <= set(p.metrics)


def get_table(mod):
    return getattr(mod, "TABLE", None)


def test_get_preset_returns_objects_and_accepts_them():
    p = M.get_preset("VIFB ")
    assert M.get_preset(p) is p and presets.require_preset(p) is p
    with pytest.raises(UnknownNameError, match="vifb"):
        M.get_preset("vifbb")


def test_metric_info_presets_is_a_derived_view():
    info = M.get_metric("SSIM")
    assert list(info.presets) == ["cddfuse", "vifb"]
    assert info.presets["cddfuse"] is M.get_preset("cddfuse").metrics["SSIM"]
    assert info.implementation("vifb") is M.get_preset("vifb").metrics["SSIM"]
    assert info.implementation(M.get_preset("cddfuse")).params["emulate"] == "skimage-float32"


def _toy_preset(name="toy"):
    # a preset with its own colour handling: the fused image's first channel, float64, as is
    def prepare(f, a, b, dtype):
        return tuple(t[:, :1].to(dtype) for t in (f, a, b))

    return M.Preset(name, "a test", "first channel", prepare, {
        "SF": (FM.spatial_frequency, {"normalize": "pixels"}, "reference"),
        "MSE": (FM.mse, {}, "extension: as cddfuse"),
    }, default_dtype="float64")


def _images(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (2, 1, 24, 24), generator=g, dtype=torch.uint8) for _ in range(3)]


def test_a_preset_object_scores_without_registration():
    toy = _toy_preset()
    f, a, b = _images()
    out = M.score_batch(f, a, b, "SF,MSE,EN@cddfuse", preset=toy)
    assert list(out) == ["SF", "MSE", "EN@cddfuse"] and out["SF"].dtype == torch.float64
    torch.testing.assert_close(out["SF"], FM.spatial_frequency(f.double(), normalize="pixels"))
    torch.testing.assert_close(out["MSE"], FM.mse(f.double(), a.double(), b.double()))
    assert "toy" not in M.get_metric("SF").presets  # not registered: not in the listings


def test_registering_a_metric_and_a_preset_in_one_place_each(tmp_path):
    toy = _toy_preset("toy2")
    metric = M.Metric("TV", ("total_variation",), False, False, "total variation of F", "0 for a constant image")

    def tv(f):
        return (f[..., 1:, :] - f[..., :-1, :]).abs().sum((1, 2, 3)) + (f[..., 1:] - f[..., :-1]).abs().sum((1, 2, 3))

    M.register_metric(metric)
    try:
        with pytest.raises(ValueError, match="already"):
            M.register_metric(metric)
        withtv = M.Preset("toy2", toy.reference, toy.colour, toy.prepare,
                          {**toy.metrics, "TV": (tv, {}, "reference")}, default_dtype="float64")
        M.register_preset(withtv)
        try:
            assert M.get_metric("total-variation").presets == {"toy2": withtv.metrics["TV"]}
            assert [i.name for i in M.list_metrics("toy2")] == ["SF", "MSE", "TV"]
            f, a, b = _images(1)
            out = M.score_batch(f, a, b, "TV, SF@toy2, MSE@cddfuse", preset="toy2")
            assert out["TV"].tolist() == tv(f.double()).tolist()
            with pytest.raises(UsageError, match="no implementation in preset 'cddfuse'"):
                M.parse_metrics("TV", preset="cddfuse")
            from fusionbench.metrics.scoring import backend

            assert backend("cpu", ("toy2",))["kernels"] == "eager"
        finally:
            M.unregister_preset("toy2")
    finally:
        M.unregister_metric("TV")
    assert catalogue.canonical_name("TV") is None and "toy2" not in presets.preset_names()
    assert [m.name for m in catalogue.entries()] == [m.name for m in catalogue.CATALOGUE]
    with pytest.raises(ValueError, match="built-in"):
        M.unregister_metric("EN")
    with pytest.raises(ValueError, match="built-in"):
        M.unregister_preset("vifb")


def test_a_preset_table_is_checked_against_the_catalogue():
    with pytest.raises(UnknownNameError, match="Did you mean"):
        M.Preset("bad", "", "", lambda *x: x, {"SSIMM": (FM.ssim, {}, "reference")})
    with pytest.raises(ValueError, match="canonical name 'Qabf'"):
        M.Preset("bad", "", "", lambda *x: x, {"qabf": (FM.qabf, {}, "reference")})
    with pytest.raises(ValueError, match="does not implement"):
        M.Preset("bad", "", "", lambda *x: x, {"EN": (FM.entropy, {}, "reference")}, native_metrics={"SSIM"})
    with pytest.raises(ValueError, match="sixteen_bit"):
        M.Preset("bad", "", "", lambda *x: x, {}, sixteen_bit="truncate")


def test_implementations_bind_their_parameters():
    impl = spec.Implementation(FM.psnr, "reference", {"peak": 255.0})
    x = torch.zeros(1, 1, 4, 4)
    assert impl.fn(x, x + 1, x + 1).item() == pytest.approx(10 * torch.log10(torch.tensor(255.0 ** 2)).item())
    fused_only = spec.Implementation(FM.entropy, "reference", fused_only=True)
    assert fused_only.fn(torch.arange(256.).view(1, 1, 16, 16), None, None).item() == 8.0


@pytest.mark.parametrize("module", ["catalogue", "spec", "presets", "registry", "filters", "checks", "__init__"])
def test_module_doctests(module):
    mod = importlib.import_module("fusionbench.metrics" + ("" if module == "__init__" else f".{module}"))
    assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0
