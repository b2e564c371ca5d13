"""``fusionbench score`` and ``fusionbench metrics`` through click's CliRunner, incl. every bad input."""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fusionbench.cli.main import cli
from fusionbench.io import read_image, write_image
from fusionbench.metrics import get_preset, list_metrics, score_batch


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_ops():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _img(seed, h=24, w=32, c=1):
    g = np.random.default_rng(seed)
    base = g.integers(0, 256, (h // 4 + 1, w // 4 + 1, c)).astype(np.float64)
    up = np.kron(base, np.ones((4, 4, 1)))[:h, :w] + g.normal(0, 8, (h, w, c))
    return np.clip(np.round(up), 0, 255).astype(np.uint8)


@pytest.fixture
def dataset(tmp_path):
    """ir/, vi/, fused/ with three stems; sizes differ between stems; grey and colour mixed."""
    for d in ("ir", "vi", "fused"):
        (tmp_path / d).mkdir()
    sizes = {"a1": (48, 64), "b2": (48, 64), "c3": (44, 56)}
    for i, (stem, (h, w)) in enumerate(sizes.items()):
        write_image(tmp_path / "ir" / f"{stem}.png", _img(10 * i, h, w, 1))
        write_image(tmp_path / "vi" / f"{stem}.jpg", _img(10 * i + 1, h, w, 3))
        write_image(tmp_path / "fused" / f"{stem}.png", _img(10 * i + 2, h, w, 1 if i != 1 else 3))
    return tmp_path


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _args(ds, *extra, quiet=True):
    q = ("-q",) if quiet else ()
    return ("score", "--ir", str(ds / "ir"), "--vi", str(ds / "vi"), "--fused", str(ds / "fused"), *q, *extra)


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def _one_line_error(res, code, *needles):
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    err = res.stderr.strip().splitlines()
    assert err and err[-1].startswith("Error: "), res.stderr
    assert "Traceback" not in res.output and "Traceback" not in res.stderr
    for n in needles:
        assert n in err[-1], (n, err[-1])
    return err[-1]


def test_score_writes_long_csv_matching_score_batch(dataset):
    res = run(*_args(dataset, "--metrics", "EN,SSIM,VIF,Qabf", "--dtype", "float64"))
    assert res.exit_code == 0, res.stderr
    rows = _rows(res.stdout)
    assert list(rows[0]) == ["image", "metric", "value"]
    assert [(r["image"], r["metric"]) for r in rows[:4]] == [("a1", "EN"), ("a1", "SSIM"), ("a1", "VIF"), ("a1", "Qabf")]
    assert len(rows) == 12
    # the CLI gives exactly what score_batch gives on the decoded files
    t = [torch.from_numpy(read_image(dataset / d / f).copy()).permute(2, 0, 1)[None]
         for d, f in (("fused", "b2.png"), ("ir", "b2.png"), ("vi", "b2.jpg"))]
    ref = score_batch(*t, "EN,SSIM,VIF,Qabf", dtype=torch.float64)
    got = {r["metric"]: float(r["value"]) for r in rows if r["image"] == "b2"}
    for k, v in ref.items():
        assert got[k] == pytest.approx(v.item(), rel=1e-12)


def test_score_out_file_progress_and_means(dataset, tmp_path):
    out = tmp_path / "res" / "scores.csv"
    res = CliRunner().invoke(cli, ["score", "--a", str(dataset / "ir"), "--b", str(dataset / "vi"), "--fused",
                                   str(dataset / "fused"), "--metrics", "EN,SD,SF,AG,SCD,SSIM", "--out", str(out),
                                   "--batch-size", "1"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""
    rows = _rows(out.read_text())
    assert len(rows) == 18 and {r["image"] for r in rows} == {"a1", "b2", "c3"}
    assert "means over 3 image(s)" in res.stderr and "SSIM" in res.stderr and "higher" in res.stderr
    assert not list(out.parent.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize("native", ["1", "0"])
def test_score_json_has_values_and_backend(dataset, monkeypatch, native):
    monkeypatch.setenv("FUSIONBENCH_NATIVE", native)
    csv_res = run(*_args(dataset, "--metrics", "EN,SSIM,PSNR"))
    res = run(*_args(dataset, "--metrics", "EN,SSIM,PSNR", "--json"))
    assert res.exit_code == 0 and csv_res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["preset"] == "cddfuse" and doc["dtype"] == {"cddfuse": "float32"} and doc["metrics"] == ["EN", "SSIM", "PSNR"]
    b = doc["backend"]
    assert b["device"] == "cpu" and b["kernels"] == ("eager" if native == "0" else b["kernels"])
    if native == "0":
        assert b["native"].startswith("disabled") and b["native_metrics"] == []
    elif b["native"] == "loaded":
        assert b["kernels"] == "native" and {"EN", "SSIM", "PSNR"} <= set(b["native_metrics"])
    # the same numbers as the CSV, on either path
    for r in _rows(csv_res.stdout):
        assert doc["images"][r["image"]][r["metric"]] == float(r["value"])


def test_score_json_encodes_infinite_values(dataset):
    res = run("score", "--ir", str(dataset / "ir"), "--vi", str(dataset / "ir"), "--fused", str(dataset / "ir"),
              "--metrics", "PSNR", "--json", "-q")
    assert res.exit_code == 0, res.stderr
    assert {v["PSNR"] for v in json.loads(res.stdout)["images"].values()} == {"inf"}


def test_score_all_metrics_and_presets(dataset):
    res = run(*_args(dataset, "--metrics", "all"))
    assert res.exit_code == 0, res.stderr
    names = [m.name for m in list_metrics("cddfuse")]
    assert [r["metric"] for r in _rows(res.stdout)[: len(names)]] == names
    if get_preset("vifb").available:
        res = run(*_args(dataset, "--preset", "vifb", "--metrics", "SSIM,SSIM@cddfuse,EN"))
        assert res.exit_code == 0, res.stderr
        assert [r["metric"] for r in _rows(res.stdout)[:3]] == ["SSIM", "SSIM@cddfuse", "EN"]
        for r in _rows(res.stdout):
            assert math.isfinite(float(r["value"]))


def test_wrong_path_is_a_usage_error(dataset):
    res = run("score", "--ir", str(dataset / "nope"), "--vi", str(dataset / "vi"), "--fused", str(dataset / "fused"))
    _one_line_error(res, 2, "nope", "no such folder")


def test_missing_option_is_a_usage_error(dataset):
    res = run("score", "--ir", str(dataset / "ir"), "--vi", str(dataset / "vi"))
    assert res.exit_code == 2 and "--fused" in res.stderr


def test_unknown_metric_and_preset(dataset):
    err = _one_line_error(run(*_args(dataset, "--metrics", "EN,SSMI")), 2, "SSMI")
    assert "Did you mean: SSIM" in err
    _one_line_error(run(*_args(dataset, "--preset", "vifbb")), 2, "vifbb", "Did you mean: vifb")
    _one_line_error(run(*_args(dataset, "--device", "cuda:7")) if not torch.cuda.is_available()
                    else run(*_args(dataset, "--device", "tpu")), 2)


def test_empty_folder(dataset, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run("score", "--ir", str(dataset / "ir"), "--vi", str(dataset / "vi"), "--fused", str(empty))
    _one_line_error(res, 1, "empty", "no images")


def test_files_without_counterpart(dataset):
    (dataset / "vi" / "b2.jpg").unlink()
    write_image(dataset / "fused" / "zz.png", _img(99))
    err = _one_line_error(run(*_args(dataset)), 1, "b2", "zz", "--skip-missing")
    assert "no counterpart" in err
    res = run(*_args(dataset, "--skip-missing", "--metrics", "EN", quiet=False))
    assert res.exit_code == 0, res.stderr
    assert {r["image"] for r in _rows(res.stdout)} == {"a1", "c3"}
    assert "skipped" in res.stderr and "b2" in res.stderr


def test_size_mismatch_names_files_and_sizes(dataset):
    write_image(dataset / "fused" / "b2.png", _img(5, 24, 30, 1))
    err = _one_line_error(run(*_args(dataset, "--metrics", "EN")), 1, "b2", "30x24", "64x48", "--keep-going")
    assert "fused" in err and "vi" in err
    res = run(*_args(dataset, "--metrics", "EN,SSIM", "--keep-going", quiet=False))
    assert res.exit_code == 1
    assert {r["image"] for r in _rows(res.stdout)} == {"a1", "c3"}  # good images still written
    assert "failed: size mismatch for 'b2'" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("Error: 1 of 3 image(s) could not be scored")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_image_names_file(dataset, tmp_path, damage):
    p = dataset / "fused" / "c3.png"
    data = p.read_bytes()
    p.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not an image at all" * 10, "empty": b""}[damage])
    _one_line_error(run(*_args(dataset, "--metrics", "EN")), 1, "c3.png")
    out = tmp_path / "partial.csv"
    res = run(*_args(dataset, "--metrics", "EN", "--keep-going", "--out", str(out), quiet=False))
    assert res.exit_code == 1
    assert {r["image"] for r in _rows(out.read_text())} == {"a1", "b2"}
    assert "c3.png" in res.stderr


def test_sixteen_bit_images_are_scaled(dataset):
    ir8 = read_image(dataset / "ir" / "a1.png")[..., 0]
    Image.fromarray(ir8.astype(np.uint16) * 257).save(dataset / "ir" / "a1.png")  # 16-bit PNG, same content
    assert Image.open(dataset / "ir" / "a1.png").mode.startswith("I")
    res = run(*_args(dataset, "--metrics", "MI,SSIM,MSE", quiet=False))
    assert res.exit_code == 0, res.stderr
    assert "16-bit" in res.stderr
    write_image(dataset / "ir" / "a1.png", ir8)
    res8 = run(*_args(dataset, "--metrics", "MI,SSIM,MSE"))
    assert _rows(res.stdout) == _rows(res8.stdout)


def test_colour_grey_mixes_follow_the_preset(dataset):
    """A grey image stored as RGB (equal channels) scores exactly like the grey file (cddfuse: luma)."""
    grey = read_image(dataset / "fused" / "a1.png")
    res1 = run(*_args(dataset, "--metrics", "all"))
    write_image(dataset / "fused" / "a1.png", np.repeat(grey, 3, axis=2))
    res3 = run(*_args(dataset, "--metrics", "all"))
    assert res1.exit_code == res3.exit_code == 0
    r1, r3 = _rows(res1.stdout), _rows(res3.stdout)
    assert [(r["image"], r["metric"]) for r in r1] == [(r["image"], r["metric"]) for r in r3]
    for x, y in zip(r1, r3):  # the images now share a batch: float32 reductions may round differently
        assert float(x["value"]) == pytest.approx(float(y["value"]), rel=1e-6, abs=1e-9), (x, y)


def test_constant_images_give_documented_values(dataset):
    write_image(dataset / "fused" / "a1.png", np.full((48, 64, 1), 77, np.uint8))
    write_image(dataset / "ir" / "a1.png", np.full((48, 64, 1), 77, np.uint8))
    res = run(*_args(dataset, "--metrics", "all", quiet=False))
    assert res.exit_code == 0, res.stderr
    vals = {r["metric"]: float(r["value"]) for r in _rows(res.stdout) if r["image"] == "a1"}
    assert not any(math.isnan(v) for v in vals.values())
    assert vals["EN"] == 0.0 and vals["SD"] == 0.0
    assert "constant" in res.stderr


def test_metrics_command_table_and_json():
    res = run("metrics")
    assert res.exit_code == 0
    assert res.stdout.splitlines()[0].split()[:5] == ["name", "aliases", "better", "inputs", "presets"]
    assert any(line.startswith("VIF ") and "VIFF" in line for line in res.stdout.splitlines())
    data = json.loads(run("metrics", "--json").stdout)
    by = {m["name"]: m for m in data["metrics"]}
    assert by["SSIM"]["presets"]["cddfuse"] == "reference"
    assert by["RMSE"]["presets"]["cddfuse"].startswith("extension: ")
    assert by["MSE"]["higher_is_better"] is False and by["EN"]["needs_sources"] is False
    assert set(data["presets"]) == {"cddfuse", "vifb"}
    only = json.loads(run("metrics", "--json", "--preset", "cddfuse").stdout)["metrics"]
    assert all("cddfuse" in m["presets"] for m in only)
