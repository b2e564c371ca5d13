"""Figures from a run folder: qualitative grid with zoom, distributions, rank heat-map (PNG + PDF)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from fusionbench.cli.main import cli
from fusionbench.io import write_image
from fusionbench.runner.figures import auto_zoom_region, qualitative_grid, rank_matrix, write_figures
from fusionbench.runner.report import load_run

METHODS = ("DenseFuse", "IFCNN", "ReFusion (ours)")
METRICS = ("EN", "MSE", "SSIM@vifb")


def make_run(root, datasets=("TNO", "Road Scene"), n=3, size=(24, 32), seed=0, skip_fused=()):
    """Tiny sources (grey A, colour B), fused outputs and scores; EN/MSE/SSIM values chosen per method."""
    rng = np.random.default_rng(seed)
    rows, prov_ds = [], {}
    h, w = size
    for ds in datasets:
        stems = [f"{i:02d}" for i in range(n)]
        for s in stems:
            a = rng.integers(0, 256, (h, w), dtype=np.uint8)
            b = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            write_image(root / "src" / ds / "ir" / f"{s}.png", a)
            write_image(root / "src" / ds / "vi" / f"{s}.jpg", b)
            for j, m in enumerate(METHODS):
                if (ds, m, s) not in skip_fused:
                    f = ((a.astype(np.uint16)[..., None] * (j + 1) + b) // (j + 2)).astype(np.uint8)
                    write_image(root / "fused" / ds / m / f"{s}.png", f)
                # EN: ours best; MSE (lower better): IFCNN best; SSIM: DenseFuse best; one NaN-free spread
                for k, v in zip(METRICS, (6 + j + rng.normal(0, .1), [.3, .1, .2][j] + rng.normal(0, .01),
                                          [.9, .5, .7][j] + rng.normal(0, .01))):
                    rows.append((ds, m, s, k, float(v)))
        prov_ds[ds] = {"a_dir": str(root / "src" / ds / "ir"), "b_dir": str(root / "src" / ds / "vi"),
                       "a_label": "ir", "b_label": "vi", "task": "ivif", "stems": stems}
    sc = pd.DataFrame(rows, columns=["dataset", "method", "image", "metric", "value"])
    sc.to_csv(root / "scores.csv", index=False)
    (root / "provenance.json").write_text(json.dumps({"preset": "cddfuse", "metrics": list(METRICS), "datasets": prov_ds}))
    return root


def _assert_figure_files(paths, names):
    assert sorted(p.name for p in paths) == sorted(names)
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000, p
        if p.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
            with Image.open(p) as im:
                assert round(im.info["dpi"][0]) == 300
        else:
            assert data[:5] == b"%PDF-" and b"%%EOF" in data[-64:]


def test_write_figures_all(tmp_path):
    root = make_run(tmp_path / "run")
    paths = write_figures(root)
    names = [f"{k}_{d}.{e}" for k in ("grid", "dist") for d in ("TNO", "Road_Scene") for e in ("png", "pdf")]
    _assert_figure_files(paths, names + ["ranks.png", "ranks.pdf"])
    assert all(p.parent == root / "figures" for p in paths)


def test_grid_size_wrapping_and_width(tmp_path):
    root = make_run(tmp_path / "run", datasets=("TNO",))
    run = load_run(root)
    fig = qualitative_grid(run, "TNO", images=["01", "02"], width=7.0)
    w, h = fig.get_size_inches()
    assert w == pytest.approx(7.0)
    # 2 images x 5 panels (IR, VI, 3 methods); titles on the first image's row only
    assert len(fig.axes) == 10
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["IR", "VI", "DenseFuse", "IFCNN", "ReFusion (ours)"]
    assert all(len(ax.child_axes) == 1 for ax in fig.axes)  # every panel has its zoom inset
    # single column, at most 2 panels per row: 3 chunks of titles, panels 1.6 in wide at aspect 3:4
    single = qualitative_grid(run, "TNO", images=["01"], width="single", max_cols=2)
    assert single.get_size_inches()[0] == pytest.approx(3.5)
    assert sum(1 for ax in single.axes if ax.get_title()) == 5
    assert single.get_size_inches()[1] > 3 * 1.6 * 0.75


def test_grid_missing_output_warns_but_draws(tmp_path):
    root = make_run(tmp_path / "run", datasets=("TNO",), skip_fused={("TNO", "IFCNN", "00")})
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        paths = write_figures(root, which=["grid"], images=["00"])
    assert any("no image for IFCNN" in str(r.message) for r in rec)
    _assert_figure_files(paths, ["grid_TNO.png", "grid_TNO.pdf"])


def test_auto_zoom_finds_the_detailed_region():
    rng = np.random.default_rng(0)
    a = np.full((60, 80, 1), 100, np.uint8)
    a[30:50, 50:70, 0] = rng.integers(0, 256, (20, 20))
    b = np.full((60, 80, 3), 50, np.uint8)
    b[32:52, 48:68] = rng.integers(0, 256, (20, 20, 3))
    x, y, w, h = auto_zoom_region(a, b, frac=0.25)
    assert (w, h) == (15, 15)
    assert 30 <= y and y + h <= 52 and 48 <= x and x + w <= 70


def test_zoom_region_given_and_scaled(tmp_path):
    root = make_run(tmp_path / "run", datasets=("TNO",))
    # an output at twice the size: the box is scaled, not clipped off
    big = np.zeros((48, 64), np.uint8)
    write_image(root / "fused" / "TNO" / "IFCNN" / "00.png", big)
    fig = qualitative_grid(load_run(root), "TNO", images=["00"], zoom=(4, 4, 8, 8))
    ax = next(a for a in fig.axes if a.get_title() == "IFCNN")
    rect = ax.patches[0]
    assert (rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()) == (8, 8, 16, 16)
    ax0 = next(a for a in fig.axes if a.get_title() == "IR")
    assert ax0.patches[0].get_width() == 8


def test_rank_matrix_is_direction_aware(tmp_path):
    run = load_run(make_run(tmp_path / "run"))
    ranks, mean = rank_matrix(run)
    assert ranks.loc["ReFusion (ours)", ("TNO", "EN")] == 1  # highest EN
    assert ranks.loc["IFCNN", ("TNO", "MSE")] == 1  # lowest MSE
    assert ranks.loc["DenseFuse", ("Road Scene", "SSIM@vifb")] == 1
    assert ranks.shape == (3, 6)
    assert mean.loc["DenseFuse"] == pytest.approx(ranks.loc["DenseFuse"].mean())
    assert list(mean) == sorted(mean)


def test_violin_and_constant_scores(tmp_path):
    root = make_run(tmp_path / "run", datasets=("TNO",))
    sc = pd.read_csv(root / "scores.csv", dtype={"image": str})
    sc.loc[(sc["method"] == "IFCNN") & (sc["metric"] == "EN"), "value"] = 5.0  # no spread: no KDE possible
    sc.to_csv(root / "scores.csv", index=False)
    paths = write_figures(root, which=["dist"], kind="violin", width="single")
    _assert_figure_files(paths, ["dist_TNO.png", "dist_TNO.pdf"])


def test_cli_figures(tmp_path):
    root = make_run(tmp_path / "run")
    out = tmp_path / "figs"
    r = CliRunner().invoke(cli, ["figures", str(root), "--dataset", "TNO", "--only", "grid,ranks", "--images", "01",
                                 "--zoom", "2,2,6,6", "--width", "single", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["grid_TNO.pdf", "grid_TNO.png", "ranks.pdf", "ranks.png"]
    assert str(out / "ranks.pdf") in r.output
    r = CliRunner().invoke(cli, ["figures", str(root), "--images", "99"])
    assert r.exit_code == 2 and "unknown image '99'" in r.output
    r = CliRunner().invoke(cli, ["figures", str(root), "--dataset", "TN0"])
    assert r.exit_code == 2 and "Did you mean: TNO" in r.output
    r = CliRunner().invoke(cli, ["figures", str(root), "--zoom", "1,2,3"])
    assert r.exit_code == 2 and "x,y,w,h" in r.output


def test_stretched_ranks_put_columns_of_different_sizes_on_one_scale():
    import numpy as np

    from fusionbench.runner.figures import stretched_ranks

    ranks = pd.DataFrame({("A", "EN"): [1.0, 2.0, 3.0, 4.0, 5.0], ("B", "EN"): [1.0, np.nan, 3.0, np.nan, 2.0]},
                         index=list("pqrst"))
    s = stretched_ranks(ranks)
    assert s[("A", "EN")].tolist() == [1, 2, 3, 4, 5]  # the largest column is unchanged
    assert s.loc["r", ("B", "EN")] == 5 and s.loc["t", ("B", "EN")] == 3  # last of 3 -> 5, second of 3 -> 3
    same = pd.DataFrame({("A", "EN"): [1.0, 2.0], ("B", "EN"): [2.0, 1.0]}, index=list("pq"))
    assert stretched_ranks(same).equals(same)
