"""Tables from a run folder: numbers, best/second marks, LaTeX/Markdown/CSV structure, CLI."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
from click.testing import CliRunner

from fusionbench.cli.main import cli
from fusionbench.runner.report import column_decimals, latex_escape, load_run, rank_marks, render_table, write_tables

# EN: higher is better, MSE: lower is better (metric registry); SSIM@vifb checks the preset suffix.
MEANS = {
    # method: (EN, MSE, SSIM@vifb)
    "DenseFuse": (7.0, 0.10, 0.61),
    "IFCNN": (6.5, 0.30, 0.62),
    "ReFusion (ours)": (6.9, 0.20, 0.70),
    "A&B_net%": (6.0, 0.40, 0.55),
}
METRICS = ("EN", "MSE", "SSIM@vifb")


def make_run(root, means=MEANS, datasets=("TNO",), metrics=METRICS, summary=True, stems=("00001", "00002")):
    """A run folder whose per-image values average exactly to ``means`` (offsets -d, +d)."""
    rows = []
    for ds in datasets:
        for m, vals in means.items():
            for k, v in zip(metrics, vals):
                if v is None:
                    continue
                d = abs(v) * 0.01
                for s, off in zip(stems, (-d, d)):
                    rows.append((ds, m, s, k, v + off))
    scores = pd.DataFrame(rows, columns=["dataset", "method", "image", "metric", "value"])
    root.mkdir(parents=True, exist_ok=True)
    scores.to_csv(root / "scores.csv", index=False, float_format="%.17g")
    if summary:
        g = scores.groupby(["dataset", "method", "metric"], sort=False)["value"]
        s = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "n": g.count()}).reset_index()
        s.to_csv(root / "summary.csv", index=False, float_format="%.17g")
    prov = {"preset": "cddfuse", "metrics": list(metrics),
            "datasets": {d: {"a_dir": "a", "b_dir": "b", "a_label": "ir", "b_label": "vi", "task": "ivif",
                             "stems": list(stems)} for d in datasets},
            "methods": {m: {"registry": m.lower()} for m in means}}
    (root / "provenance.json").write_text(json.dumps(prov))
    return root


def _rows(tex: str) -> dict[str, list[str]]:
    """Body rows of a booktabs table: method -> cells (split on unescaped &)."""
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
    out = {}
    for line in body.strip().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)&", line.rstrip().removesuffix("\\\\"))]
        out[cells[0]] = cells[1:]
    return out


def _md_rows(md: str) -> dict[str, list[str]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    out = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
        out[cells[0]] = cells[1:]
    return out


def _balanced(tex: str) -> bool:
    depth = 0
    for i, c in enumerate(tex):
        if c in "{}" and i > 0 and tex[i - 1] == "\\":
            continue
        depth += {"{": 1, "}": -1}.get(c, 0)
        if depth < 0:
            return False
    return depth == 0


# ---------------------------------------------------------------------------------------------- numbers


def test_column_decimals_give_four_significant_digits():
    assert column_decimals([7.12345, 6.0]) == 3
    assert column_decimals([0.45678]) == 4
    assert column_decimals([12.3, 3.0]) == 2
    assert column_decimals([1234.5]) == 0
    assert column_decimals([-0.0123]) == 5
    assert column_decimals([float("nan"), None]) == 3
    assert column_decimals([0.45678], digits=2) == 2


def test_rank_marks_direction_ties_and_rounding():
    assert rank_marks([1.0, 3.0, 2.0], True, 2) == [None, "best", "second"]
    assert rank_marks([1.0, 3.0, 2.0], False, 2) == ["best", None, "second"]
    # ties share the mark; the next distinct value is second (dense ranking)
    assert rank_marks([3.0, 3.0, 2.0, 1.0], True, 2) == ["best", "best", "second", None]
    # values equal as printed are tied
    assert rank_marks([7.00001, 7.00002, 6.0], True, 3) == ["best", "best", "second"]
    assert rank_marks([7.00001, 7.00002, 6.0], True, 5) == ["second", "best", None]
    # NaN is never marked; two values: no second; unknown direction: nothing
    assert rank_marks([float("nan"), 1.0, 2.0], True, 2) == [None, None, "best"]
    assert rank_marks([1.0, 2.0], True, 2) == [None, "best"]
    assert rank_marks([1.0, 2.0, 3.0], None, 2) == [None, None, None]


def test_latex_escape_specials():
    assert latex_escape("A&B_net%") == r"A\&B\_net\%"
    assert latex_escape("x$#{}~^\\") == r"x\$\#\{\}\textasciitilde{}\textasciicircum{}\textbackslash{}"


# ---------------------------------------------------------------------------------------------- LaTeX


def test_latex_marks_best_and_second_per_direction(tmp_path):
    run = make_run(tmp_path / "run")
    tex = render_table(run, "latex")
    rows = _rows(tex)
    assert list(rows) == ["DenseFuse", "IFCNN", r"A\&B\_net\%", "ReFusion (ours)"]  # ours last
    en, mse, ssim = ([rows[m][i] for m in rows] for i in range(3))
    # EN (higher better): DenseFuse 7.0 best, ours 6.9 second
    assert rows["DenseFuse"][0] == r"\textbf{7.000}" and rows["ReFusion (ours)"][0] == r"\underline{6.900}"
    assert rows["IFCNN"][0] == "6.500" and rows[r"A\&B\_net\%"][0] == "6.000"
    # MSE (lower better): DenseFuse 0.1 best, ours 0.2 second
    assert rows["DenseFuse"][1] == r"\textbf{0.1000}" and rows["ReFusion (ours)"][1] == r"\underline{0.2000}"
    assert rows["IFCNN"][1] == "0.3000"
    # SSIM@vifb looked up as SSIM (higher better)
    assert rows["ReFusion (ours)"][2] == r"\textbf{0.7000}" and rows["IFCNN"][2] == r"\underline{0.6200}"
    assert sum(c.startswith(r"\textbf") for c in en + mse + ssim) == 3
    assert sum(c.startswith(r"\underline") for c in en + mse + ssim) == 3
    head = tex.split("\\toprule", 1)[1].split("\\midrule", 1)[0]
    assert r"EN$\uparrow$" in head and r"MSE$\downarrow$" in head and r"SSIM@vifb$\uparrow$" in head


def test_latex_structure_and_caption(tmp_path):
    run = make_run(tmp_path / "run", datasets=("TNO_25",))
    tex = render_table(run, "latex", std=True)
    assert _balanced(tex)
    assert "% Requires \\usepackage{booktabs}" in tex
    assert re.search(r"\\begin\{table\*?\}\[t\]", tex) and re.search(r"\\end\{table\*?\}", tex)
    for cmd in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{lccc}", "\\end{tabular}"):
        assert tex.count(cmd) == 1, cmd
    cap = re.search(r"\\caption\{(.*)\}\n", tex).group(1)
    assert r"TNO\_25" in cap and "cddfuse" in cap and "2 image pairs" in cap and r"$\pm$" in cap
    for cells in _rows(tex).values():
        assert len(cells) == 3
        assert all(r"$\pm$" in c for c in cells)
    # std printed with the mean's decimals
    assert r"\textbf{7.000}{\scriptsize\,$\pm$\,0.070}" in tex


def test_combined_latex_has_group_headers_and_cmidrules(tmp_path):
    root = make_run(tmp_path / "run", datasets=("TNO", "RoadScene"))
    # a method that ran only on TNO
    s = pd.read_csv(root / "summary.csv", dtype={"image": str})
    s = s[~((s["dataset"] == "RoadScene") & (s["method"] == "IFCNN"))]
    s.to_csv(root / "summary.csv", index=False)
    tex = render_table(root, "latex")
    assert _balanced(tex)
    assert r"\multicolumn{3}{c}{TNO} & \multicolumn{3}{c}{RoadScene} \\" in tex
    assert r"\cmidrule(lr){2-4} \cmidrule(lr){5-7}" in tex
    assert "\\begin{tabular}{lcccccc}" in tex
    rows = _rows(tex)
    assert all(len(c) == 6 for c in rows.values())
    assert rows["IFCNN"][3:] == ["--", "--", "--"]
    # marks are per dataset: on RoadScene without IFCNN, SSIM second best is DenseFuse (0.61)
    assert rows["DenseFuse"][5] == r"\underline{0.6100}"
    assert rows["IFCNN"][2] == r"\underline{0.6200}"
    assert "TNO and RoadScene" in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed; structure checked instead")
def test_latex_compiles(tmp_path):
    run = make_run(tmp_path / "run", datasets=("TNO", "Road_Scene"))
    body = render_table(run, "latex", std=True)
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + body + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]


# ---------------------------------------------------------------------------------------------- Markdown, CSV


def test_markdown_marks_and_arrows(tmp_path):
    run = make_run(tmp_path / "run")
    md = render_table(run, "markdown", std=True)
    head = next(ln for ln in md.splitlines() if ln.startswith("| Method"))
    assert "EN ↑" in head and "MSE ↓" in head and "SSIM@vifb ↑" in head
    rows = _md_rows(md)
    assert rows["DenseFuse"][0] == "**7.000** ± 0.070"
    assert rows["ReFusion (ours)"][0] == "<ins>6.900</ins> ± 0.069"
    assert rows["DenseFuse"][1].startswith("**0.1000**")
    assert r"A&B\_net%" in rows
    assert "cddfuse" in md.splitlines()[0]


def test_combined_markdown(tmp_path):
    run = make_run(tmp_path / "run", datasets=("TNO", "RoadScene"))
    md = render_table(run, "markdown")
    head = next(ln for ln in md.splitlines() if ln.startswith("| Method"))
    assert "TNO · EN ↑" in head and "RoadScene · MSE ↓" in head
    assert all(len(c) == 6 for c in _md_rows(md).values())
    sep = render_table(run, "markdown", layout="separate")
    assert sep.count("| Method") == 2


def test_csv_is_full_precision_and_reads_back(tmp_path):
    run = make_run(tmp_path / "run", datasets=("TNO", "RoadScene"))
    import io

    df = pd.read_csv(io.StringIO(render_table(run, "csv", std=True)))
    assert list(df.columns) == ["dataset", "method", "EN", "EN_std", "MSE", "MSE_std", "SSIM@vifb", "SSIM@vifb_std", "n"]
    assert len(df) == 8
    r = df[(df["dataset"] == "TNO") & (df["method"] == "IFCNN")].iloc[0]
    assert r["EN"] == pytest.approx(6.5, rel=1e-12) and r["MSE_std"] == pytest.approx(0.003, rel=1e-9) and r["n"] == 2


# ---------------------------------------------------------------------------------------------- run reading, order


def test_summary_computed_from_scores_when_missing(tmp_path):
    a = render_table(make_run(tmp_path / "a"), "latex", std=True)
    b = render_table(make_run(tmp_path / "b", summary=False), "latex", std=True)
    assert a.replace("from a.", "") == b.replace("from b.", "")


def test_image_stems_and_names_stay_strings(tmp_path):
    root = make_run(tmp_path / "run", means={"NA": (1.0, 2.0, 0.5), "None": (2.0, 1.0, 0.4)})
    run = load_run(root)
    assert set(run.methods) == {"NA", "None"} and set(run.scores["image"]) == {"00001", "00002"}


def test_method_order_given_and_ours_last(tmp_path):
    run = load_run(make_run(tmp_path / "run"))
    assert run.methods[-1] == "ReFusion (ours)"
    run2 = load_run(tmp_path / "run", order=["ReFusion (ours)", "IFCNN"])
    assert run2.methods[:2] == ["ReFusion (ours)", "IFCNN"] and len(run2.methods) == 4


def test_unknown_metric_direction_gets_no_arrow_and_no_marks(tmp_path):
    run = make_run(tmp_path / "run", metrics=("EN", "MSE", "NOT_A_METRIC_X"))
    tex = render_table(run, "latex")
    assert all("textbf" not in c[2] and "underline" not in c[2] for c in _rows(tex).values())
    assert "& NOT\\_A\\_METRIC\\_X \\\\\n" in tex


def test_write_tables(tmp_path):
    root = make_run(tmp_path / "run", datasets=("TNO", "Road Scene"))
    paths = write_tables(root)
    names = sorted(p.name for p in paths)
    assert names == sorted([f"table_{d}.{e}" for d in ("TNO", "Road_Scene", "all") for e in ("csv", "tex", "md")])
    assert all(p.stat().st_size > 0 for p in paths)
    assert r"\multicolumn{3}{c}{Road Scene}" in (root / "table_all.tex").read_text()
    # the same folder now with one dataset: the combined table goes away
    make_run(root, datasets=("TNO",))
    paths = write_tables(root)
    assert not (root / "table_all.tex").exists() and len(paths) == 3


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_table(tmp_path):
    root = make_run(tmp_path / "run", datasets=("TNO", "RoadScene"))
    r = CliRunner().invoke(cli, ["table", str(root), "--format", "latex", "--std", "--datasets", "RoadScene",
                                 "--metrics", "en,MSE"])
    assert r.exit_code == 0, r.output
    assert "\\begin{tabular}{lcc}" in r.output and "multicolumn" not in r.output and "RoadScene" in r.output
    out = tmp_path / "t.md"
    r = CliRunner().invoke(cli, ["table", str(root), "--out", str(out)])
    assert r.exit_code == 0 and "TNO · EN ↑" in out.read_text()
    r = CliRunner().invoke(cli, ["table", str(root), "--methods", "IFCNN,DenseFuse", "--format", "csv"])
    assert r.exit_code == 0 and [ln.split(",")[1] for ln in r.output.splitlines()[1:3]] == ["IFCNN", "DenseFuse"]


def test_cli_table_bad_input(tmp_path):
    root = make_run(tmp_path / "run")
    r = CliRunner().invoke(cli, ["table", str(root), "--datasets", "TN0"])
    assert r.exit_code == 2 and "Did you mean: TNO" in r.output
    r = CliRunner().invoke(cli, ["table", str(root), "--metrics", "QABF"])
    assert r.exit_code == 2 and "unknown metric" in r.output
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(cli, ["table", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "neither summary.csv nor scores.csv" in r.output
    (root / "summary.csv").write_text("dataset,method,metric,mean,std,n\nTNO,X,EN,abc,0,1\n")
    r = CliRunner().invoke(cli, ["table", str(root)])
    assert r.exit_code == 1 and "summary.csv: line 2" in r.output and "'abc'" in r.output
    assert "Traceback" not in r.output


def test_partial_results_folder_marked_and_not_ranked(tmp_path):
    """A method scored on fewer images than the dataset has (a published subset) gets a dagger and no mark."""
    run_dir = make_run(tmp_path / "run")
    scores = pd.read_csv(run_dir / "scores.csv", dtype={"image": str})
    # DenseFuse has the best EN and MSE; keep only one of its two images
    scores = scores[~((scores["method"] == "DenseFuse") & (scores["image"] != "00001"))]
    scores.to_csv(run_dir / "scores.csv", index=False, float_format="%.17g")
    g = scores.groupby(["dataset", "method", "metric"], sort=False)["value"]
    pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "n": g.count()}).reset_index().to_csv(
        run_dir / "summary.csv", index=False, float_format="%.17g")
    md = render_table(run_dir, "markdown")
    rows = _md_rows(md)
    assert "DenseFuse†" in rows and not any("**" in c or "<ins>" in c for c in rows["DenseFuse†"])
    assert rows["ReFusion (ours)"][0] == "**6.900**"  # best EN among the fully scored methods
    assert "(2 image pairs)" in md.splitlines()[0] and "DenseFuse: 1 of 2" in md.splitlines()[0]
    tex = render_table(run_dir, "latex")
    assert "DenseFuse$^\\dagger$" in _rows(tex) and "1 of 2" in tex
    from fusionbench.runner.figures import rank_matrix

    ranks, _ = rank_matrix(load_run(run_dir))
    assert "DenseFuse" not in ranks.index  # not ranked anywhere: its only dataset is incomplete


def test_partial_in_one_dataset_marks_its_cells(tmp_path):
    run_dir = make_run(tmp_path / "run", datasets=("TNO", "RoadScene"))
    scores = pd.read_csv(run_dir / "scores.csv", dtype={"image": str})
    scores = scores[~((scores["dataset"] == "RoadScene") & (scores["method"] == "IFCNN") & (scores["image"] == "00002"))]
    scores.to_csv(run_dir / "scores.csv", index=False, float_format="%.17g")
    g = scores.groupby(["dataset", "method", "metric"], sort=False)["value"]
    pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "n": g.count()}).reset_index().to_csv(
        run_dir / "summary.csv", index=False, float_format="%.17g")
    row = _md_rows(render_table(run_dir, "markdown"))["IFCNN"]
    assert not any(c.endswith("†") for c in row[:3]) and all(c.endswith("†") for c in row[3:])
    assert "<ins>" in row[2]  # second-best SSIM on TNO, where it is complete ...
    assert "<ins>" not in row[5] and "**" not in row[5]  # ... not ranked on RoadScene
