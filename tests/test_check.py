"""`fusionbench check`: score drift against a baseline, tolerances, missing entries, --update."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from click.testing import CliRunner

from fusionbench.cli.main import cli
from fusionbench.errors import DataError, UsageError
from fusionbench.runner.check import compare, parse_per_metric, update_baseline

METRICS = ("EN", "SSIM@vifb", "MI")


def write_scores(root, edit=None, drop=(), extra=()):
    """A run folder with scores.csv: 2 methods x 3 images x 3 metrics, values 1..18 (+ edits)."""
    rows, v = [], 1.0
    for m in ("DenseFuse", "ReFusion"):
        for s in ("00001", "00002", "010"):
            for k in METRICS:
                rows.append(["TNO", m, s, k, v * 1.1])
                v += 1
    df = pd.DataFrame(rows, columns=["dataset", "method", "image", "metric", "value"])
    for (m, s, k), val in (edit or {}).items():
        sel = (df["method"] == m) & (df["image"] == s) & (df["metric"] == k)
        assert sel.sum() == 1
        df.loc[sel, "value"] = val(df.loc[sel, "value"].iloc[0]) if callable(val) else val
    for (m, s, k) in drop:
        df = df[~((df["method"] == m) & (df["image"] == s) & (df["metric"] == k))]
    if extra:
        df = pd.concat([df, pd.DataFrame(list(extra), columns=df.columns)], ignore_index=True)
    root.mkdir(parents=True, exist_ok=True)
    df.to_csv(root / "scores.csv", index=False, float_format="%.17g")
    return root


@pytest.fixture
def baseline(tmp_path):
    base = tmp_path / "baseline.csv"
    update_baseline(write_scores(tmp_path / "ref"), base)
    return base


def check(*args):
    return CliRunner().invoke(cli, ["check", *map(str, args)])


def test_identical_passes(tmp_path, baseline):
    run = write_scores(tmp_path / "run")
    r = check(run, "--baseline", baseline)
    assert r.exit_code == 0, r.output
    assert "check OK: 18 scores entries compared, 0 moved" in r.output


def test_moved_value_fails_with_exit_1_and_is_listed(tmp_path, baseline):
    run = write_scores(tmp_path / "run", edit={("ReFusion", "010", "EN"): lambda v: v * (1 + 2e-4)})
    r = check(run, "--baseline", baseline)
    assert r.exit_code == 1
    assert "moved beyond tolerance (1" in r.output
    line = next(ln for ln in r.output.splitlines() if "ReFusion" in ln and "010" in ln)
    assert "TNO" in line and "EN" in line and "0.0002" in line  # rel diff column
    assert "check FAILED" in r.output
    # within tolerance: passes, counted as changed
    run2 = write_scores(tmp_path / "run2", edit={("ReFusion", "010", "EN"): lambda v: v * (1 + 5e-5)})
    r = check(run2, "--baseline", baseline)
    assert r.exit_code == 0 and "1 changed within tolerance" in r.output
    # the same move passes with a looser global rtol
    assert check(run, "--baseline", baseline, "--rtol", "1e-3").exit_code == 0


def test_atol_matters_near_zero(tmp_path):
    base = tmp_path / "b.csv"
    update_baseline(write_scores(tmp_path / "ref", edit={("DenseFuse", "00001", "MI"): 0.0}), base)
    run = write_scores(tmp_path / "run", edit={("DenseFuse", "00001", "MI"): 5e-7})
    assert check(run, "--baseline", base).exit_code == 0  # |5e-7| <= atol 1e-6
    r = check(run, "--baseline", base, "--atol", "1e-7")
    assert r.exit_code == 1 and "inf" in r.output  # relative change from zero


def test_per_metric_tolerance(tmp_path, baseline):
    run = write_scores(tmp_path / "run", edit={("DenseFuse", "00002", "SSIM@vifb"): lambda v: v * (1 + 5e-4)})
    assert check(run, "--baseline", baseline).exit_code == 1
    # "SSIM" applies to SSIM@vifb; 1e-3 relative is enough
    r = check(run, "--baseline", baseline, "--per-metric", "SSIM=1e-3,MI=1e-3")
    assert r.exit_code == 0, r.output
    # a per-metric tolerance for another metric does not loosen SSIM
    assert check(run, "--baseline", baseline, "--per-metric", "MI=1e-2").exit_code == 1
    # and a tighter one for SSIM wins over a looser global rtol
    assert check(run, "--baseline", baseline, "--rtol", "1e-2", "--per-metric", "ssim@VIFB=1e-5").exit_code == 1
    # RTOL:ATOL form
    assert check(run, "--baseline", baseline, "--per-metric", "SSIM=0:1").exit_code == 0


def test_missing_entries_fail_and_are_listed(tmp_path, baseline):
    run = write_scores(tmp_path / "run", drop=[("DenseFuse", "010", "MI")])
    r = check(run, "--baseline", baseline)
    assert r.exit_code == 1
    assert "in the baseline but missing from the run (1)" in r.output and "TNO/DenseFuse/010/MI" in r.output
    run2 = write_scores(tmp_path / "run2", extra=[("TNO", "IFCNN", "00001", "EN", 3.0)])
    r = check(run2, "--baseline", baseline)
    assert r.exit_code == 1 and "in the run but missing from the baseline (1)" in r.output and "TNO/IFCNN/00001/EN" in r.output
    r = check(run2, "--baseline", baseline, "--allow-new")
    assert r.exit_code == 0 and "(allowed)" in r.output


def test_nan_handling(tmp_path):
    base = tmp_path / "b.csv"
    update_baseline(write_scores(tmp_path / "ref", edit={("DenseFuse", "00001", "MI"): math.nan}), base)
    assert "nan" in base.read_text().lower()
    same = write_scores(tmp_path / "same", edit={("DenseFuse", "00001", "MI"): math.nan})
    assert check(same, "--baseline", base).exit_code == 0
    now_number = write_scores(tmp_path / "num")
    r = check(now_number, "--baseline", base)
    assert r.exit_code == 1 and "nan" in r.output


def test_update_writes_exact_baseline_atomically(tmp_path):
    run = write_scores(tmp_path / "run", edit={("ReFusion", "00001", "EN"): 0.1 + 0.2})
    base = tmp_path / "sub" / "baseline.csv"
    r = CliRunner().invoke(cli, ["check", str(run), "--baseline", str(base), "--update"])
    assert r.exit_code == 0 and "18 scores entries" in r.output
    df = pd.read_csv(base, dtype={"image": str})
    assert list(df.columns) == ["dataset", "method", "image", "metric", "value"]
    assert set(df["image"]) == {"00001", "00002", "010"}
    assert (df["value"] == 0.1 + 0.2).sum() == 1  # repr round trip, not 0.3
    assert not [p for p in base.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    assert check(run, "--baseline", base).exit_code == 0


def test_summary_level_baseline(tmp_path):
    ref = write_scores(tmp_path / "ref")
    base = tmp_path / "summary_base.csv"
    update_baseline(ref, base, level="summary")
    assert "mean" in base.read_text().splitlines()[0]
    # summary.csv absent: computed from scores.csv
    assert check(ref, "--baseline", base).exit_code == 0
    moved = write_scores(tmp_path / "run", edit={("ReFusion", "010", "EN"): lambda v: v + 1.0})
    r = check(moved, "--baseline", base)
    assert r.exit_code == 1
    line = next(ln for ln in r.output.splitlines() if "ReFusion" in ln)
    assert line.split()[:3] == ["TNO", "ReFusion", "EN"]


def test_run_may_be_a_csv_file(tmp_path, baseline):
    run = write_scores(tmp_path / "run")
    assert check(run / "scores.csv", "--baseline", baseline).exit_code == 0


def test_bad_inputs(tmp_path, baseline):
    run = write_scores(tmp_path / "run")
    r = check(run, "--baseline", tmp_path / "nope.csv")
    assert r.exit_code == 1 and "baseline not found" in r.output and "--update" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    r = check(run, "--baseline", bad)
    assert r.exit_code == 1 and "baseline needs columns" in r.output
    r = check(run, "--baseline", baseline, "--per-metric", "SSIM")
    assert r.exit_code == 2 and "METRIC=RTOL" in r.output
    r = check(tmp_path / "missing_run", "--baseline", baseline)
    assert r.exit_code == 2 and "no such run folder" in r.output
    dup = write_scores(tmp_path / "dup", extra=[("TNO", "DenseFuse", "00001", "EN", 1.1)])
    with pytest.raises(DataError, match="duplicate entry TNO/DenseFuse/00001/EN"):
        compare(dup, baseline)
    assert "Traceback" not in r.output


def test_parse_per_metric():
    assert parse_per_metric("SSIM=1e-3, MI=1e-3:1e-8") == {"ssim": (1e-3, None), "mi": (1e-3, 1e-8)}
    with pytest.raises(UsageError):
        parse_per_metric("SSIM=abc")
    with pytest.raises(UsageError):
        parse_per_metric("SSIM=-1")
