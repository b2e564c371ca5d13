"""fusionbench eval: outputs, caching/resume, damaged cache, failures, results folders, skips."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fusionbench.cli.main import cli
from fusionbench.io import write_image


@pytest.fixture(autouse=True)
def fake(fake_registry):
    return fake_registry


def make_data(root, n=3, size=(24, 28)):
    rng = np.random.default_rng(1)
    for i in range(n):
        write_image(root / "ir" / f"s{i}.png", rng.integers(0, 256, size, dtype=np.uint8))
        write_image(root / "vi" / f"s{i}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return root


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def evaluate(data, out, *extra, keep_going=True):
    """fake-weighted is asked for by name and has no weights: left out with --keep-going (exit 0)."""
    kg = ("--keep-going",) if keep_going else ()
    return run("eval", "--methods", "fake-mean,fake-weighted", "--data", data, "--out", out, "--metrics", "EN,SSIM,MI",
               "--device", "cpu", "-q", "--no-figures", *kg, *extra)


def test_a_method_asked_for_that_cannot_run_fails_the_eval(tmp_path):
    data = make_data(tmp_path / "d")
    r = evaluate(data, tmp_path / "run", keep_going=False)
    assert r.exit_code == 1
    assert "could not run FakeWeighted: needs weights" in r.output
    assert r.output.strip().splitlines()[-1].startswith("Error: 1 method(s) could not run")
    assert "Left out, could not run: FakeWeighted" in next((tmp_path / "run").glob("table_*.md")).read_text()
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert "FakeWeighted" in prov["errors"] and "FakeWeighted" not in prov["skipped"]
    r = evaluate(data, tmp_path / "run")
    assert r.exit_code == 0 and "left out (--keep-going): FakeWeighted" in r.output
    # through 'all' (not by name) a method without weights is only listed as skipped
    r = run("eval", "--data", data, "--out", tmp_path / "all", "--metrics", "EN", "--device", "cpu", "-q",
            "--no-figures", "--methods", "fake-*")
    assert r.exit_code == 0, r.output
    assert "skipped (needs weights" in r.output


def test_eval_writes_run_and_resumes(tmp_path, monkeypatch):
    data = make_data(tmp_path / "d")
    out = tmp_path / "run"
    r = evaluate(data, out)
    assert r.exit_code == 0, r.output
    scores = pd.read_csv(out / "scores.csv", dtype={"image": str})
    assert list(scores.columns) == ["dataset", "method", "image", "metric", "value"]
    assert set(scores["method"]) == {"FakeMean"} and len(scores) == 3 * 3
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.columns) == {"dataset", "method", "metric", "mean", "std", "n"}
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["preset"] == "cddfuse" and "FakeWeighted" in prov["errors"]
    assert "needs weights" in prov["errors"]["FakeWeighted"]
    assert (out / "table_d.md").is_file() or any(out.glob("table_*.md"))

    # a rerun fuses and scores nothing
    fused = sorted((out / "fused").rglob("*.png"))
    mtimes = [p.stat().st_mtime_ns for p in fused]
    import fusionbench.metrics.scoring as scoring

    calls = []
    orig = scoring.score_files
    monkeypatch.setattr(scoring, "score_files", lambda triples, *a, **k: calls.append(list(triples)) or orig(triples, *a, **k))
    r = evaluate(data, out)
    assert r.exit_code == 0, r.output
    assert [p.stat().st_mtime_ns for p in fused] == mtimes
    assert calls == []
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores.csv", dtype={"image": str}), scores)

    # a damaged cache entry is detected by its hash and redone; only that image is rescored
    # (the re-fused file is byte-identical, so its scores are still valid and not recomputed)
    victim = fused[0]
    good = victim.read_bytes()
    victim.write_bytes(good[:40])
    r = evaluate(data, out)
    assert r.exit_code == 0, r.output
    assert victim.read_bytes() == good and calls == []

    # a damaged score cache is recomputed, not trusted
    cache_csv = next((out / "scores").rglob("*.csv"))
    cache_csv.write_text("garbage,\n\x00\x01")
    r = evaluate(data, out)
    assert r.exit_code == 0, r.output
    assert len(calls) == 1
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores.csv", dtype={"image": str}), scores)
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores.csv", dtype={"image": str}), scores)


def test_changed_input_is_refused(tmp_path):
    """Changing one source re-fuses and rescores exactly that image."""
    data = make_data(tmp_path / "d")
    out = tmp_path / "run"
    assert evaluate(data, out).exit_code == 0
    before = pd.read_csv(out / "scores.csv", dtype={"image": str})
    write_image(data / "ir" / "s1.png", np.zeros((24, 28), np.uint8))
    assert evaluate(data, out).exit_code == 0
    after = pd.read_csv(out / "scores.csv", dtype={"image": str})
    changed = before.merge(after, on=["dataset", "method", "image", "metric"]).query("value_x != value_y")
    assert set(changed["image"]) == {"s1"}


def test_failure_on_one_image_reported_rest_scored(tmp_path):
    data = make_data(tmp_path / "d")
    write_image(data / "ir" / "s2.png", np.full((24, 28), 7, np.uint8))
    out = tmp_path / "run"
    import dataclasses

    from fusionbench import registry

    info = registry.get_method("fake-mean")
    registry._REGISTRY["fake-mean"] = dataclasses.replace(info, options={"fail_on_value": 7})
    try:
        r = evaluate(data, out)
    finally:
        registry._REGISTRY["fake-mean"] = info
    assert r.exit_code == 1
    assert "s2" in r.output and "synthetic failure" in r.output
    scores = pd.read_csv(out / "scores.csv", dtype={"image": str})
    assert sorted(set(scores["image"])) == ["s0", "s1"]


def test_results_folder_method(tmp_path):
    data = make_data(tmp_path / "d")
    theirs = tmp_path / "theirs"
    for i in range(2):  # a partial results folder: s2 has no output
        write_image(theirs / f"s{i}.jpg", np.full((24, 28), 100 + i, np.uint8))
    out = tmp_path / "run"
    r = run("eval", "--methods", "fake-mean", "--data", data, "--out", out, "--metrics", "SD", "--results", f"Theirs={theirs}",
            "-q", "--no-figures", "--device", "cpu")
    assert r.exit_code == 0, r.output
    scores = pd.read_csv(out / "scores.csv", dtype={"image": str})
    assert set(scores["method"]) == {"FakeMean", "Theirs"}
    assert scores.query("method == 'Theirs'")["value"].abs().max() < 2  # near-constant JPEGs: SD ~ 0
    assert sorted(set(scores.query("method == 'Theirs'")["image"])) == ["s0", "s1"]
    assert "fewer than the dataset" in r.output
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["incomplete"] == {"d/Theirs": ["s2"]}


def test_bad_results_arg_and_unknown_method(tmp_path):
    data = make_data(tmp_path / "d")
    r = run("eval", "--methods", "fake-mean", "--data", data, "--results", "x", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "NAME=DIR" in r.output
    r = run("eval", "--methods", "fake-maen", "--data", data, "--out", tmp_path / "r")
    assert r.exit_code == 2 and "Did you mean" in r.output


def test_bundled_sample_runs_without_shared(tmp_path, monkeypatch):
    """The README main job: the bundled sample with the classical methods, nothing downloaded."""
    monkeypatch.setenv("FUSIONBENCH_DATA", str(tmp_path / "nowhere"))
    r = run("eval", "--methods", "average,max", "--out", tmp_path / "run", "-q", "--no-figures", "--device", "cpu")
    assert r.exit_code == 0, r.output
    scores = pd.read_csv(tmp_path / "run" / "scores.csv", dtype={"image": str})
    assert set(scores["dataset"]) == {"sample"} and len(set(scores["image"])) == 6


def test_sources_are_decoded_once_for_all_methods(tmp_path, monkeypatch):
    import fusionbench.metrics.scoring as scoring

    data = make_data(tmp_path / "d")
    seen = []
    real = scoring._decode
    monkeypatch.setattr(scoring, "_decode", lambda p: seen.append(p) or real(p))
    r = run("eval", "--methods", "fake-mean,average,max", "--data", data, "--out", tmp_path / "run",
            "--metrics", "EN,SSIM", "--device", "cpu", "-q", "--no-figures")
    assert r.exit_code == 0, r.output
    sources = [p for p in seen if p.parent.name in ("ir", "vi")]
    assert len(sources) == 6 and len(set(sources)) == 6  # 3 pairs, once each, not once per method
    assert len(seen) - len(sources) == 3 * 3  # every method's fused images, once each
    scores = pd.read_csv(tmp_path / "run" / "scores.csv")
    assert scores.groupby("method")["image"].nunique().tolist() == [3, 3, 3]


def test_provenance_says_which_kernels_scored(tmp_path):
    data = make_data(tmp_path / "d")
    r = evaluate(data, tmp_path / "run")
    assert r.exit_code == 0, r.output
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    b = prov["metric_backend"]
    assert b["device"] == "cpu" and b["kernels"] in ("native", "eager")
    assert (b["kernels"] == "native") == (b["native"] == "loaded")  # the cddfuse preset has native kernels
    assert b["detail"].startswith(("native CPU kernels", "eager torch"))


def test_provenance_says_eager_without_native_kernels(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSIONBENCH_NATIVE", "0")
    data = make_data(tmp_path / "d")
    r = evaluate(data, tmp_path / "run")
    assert r.exit_code == 0, r.output
    b = json.loads((tmp_path / "run" / "provenance.json").read_text())["metric_backend"]
    assert b["kernels"] == "eager" and b["native"].startswith("disabled") and b["native_metrics"] == []
