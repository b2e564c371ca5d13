"""Table formats behind one interface: the registry, and a new format added as one class."""
from __future__ import annotations

import html
import json

import pytest
from click.testing import CliRunner

from fusionbench.cli.main import cli
from fusionbench.runner import report, tables
from fusionbench.runner.rundir import build_blocks, load_run
from fusionbench.runner.tables import (
    TableFormat,
    get_format,
    register_format,
    render_table,
    unregister_format,
    write_tables,
)

# method: (EN higher is better, MSE lower is better, Custom: direction unknown)
MEANS = {"DenseFuse": (7.0, 0.10, 1.0), "IFCNN": (6.5, 0.30, 2.0), "A&B<net>": (6.9, 0.20, 3.0)}


def make_run(root, datasets=("TNO", "Road Scene"), partial=()):
    """A run folder holding only summary.csv and provenance.json (2 image pairs per dataset).

    ``partial``: (dataset, method) pairs scored on one image only.
    """
    root.mkdir(parents=True, exist_ok=True)
    lines = ["dataset,method,metric,mean,std,n"]
    for ds in datasets:
        for m, vals in MEANS.items():
            for k, v in zip(("EN", "MSE", "Custom"), vals):
                lines.append(f"{ds},{m},{k},{v!r},{v / 100!r},{1 if (ds, m) in partial else 2}")
    (root / "summary.csv").write_text("\n".join(lines) + "\n")
    prov = {"preset": "cddfuse", "metrics": ["EN", "MSE", "Custom"],
            "datasets": {d: {"stems": ["00001", "00002"]} for d in datasets}}
    (root / "provenance.json").write_text(json.dumps(prov))
    return root


class HTMLFormat(TableFormat):
    """The whole of a new format: a name, an extension, its hooks and how rows are laid out."""

    name = "html"
    extension = ".html"
    partial_mark = "&dagger;"

    def escape(self, text):
        return html.escape(str(text), quote=False)

    def emphasis(self, text, mark):
        return {"best": f"<b>{text}</b>", "second": f"<u>{text}</u>"}.get(mark, text)

    def render(self, run, blocks, std=False):
        head = "".join(f"<th>{c}</th>" for c in self.header(blocks))
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n" for cells in self.rows(run, blocks, std))
        return f"<table>\n<caption>{self.caption(run, blocks, std)}</caption>\n<tr>{head}</tr>\n{body}</table>\n"


class TSVFormat(TableFormat):
    """A format that keeps every default hook (plain text, no marks)."""

    name = "tsv"
    extension = ".tsv"

    def render(self, run, blocks, std=False):
        return "".join("\t".join(cells) + "\n" for cells in [self.header(blocks)] + self.rows(run, blocks, std))


@pytest.fixture
def html_format():
    register_format(HTMLFormat)
    try:
        yield get_format("html")
    finally:
        unregister_format("html")


@pytest.fixture
def tsv_format():
    register_format(TSVFormat)
    try:
        yield get_format("tsv")
    finally:
        unregister_format("tsv")


def test_builtin_formats_come_from_the_registry():
    assert tables.FORMATS == ("csv", "latex", "markdown")
    assert tables.EXTENSIONS == {"csv": ".csv", "latex": ".tex", "markdown": ".md"}
    assert report.FORMATS == tables.FORMATS and report.EXTENSIONS == tables.EXTENSIONS
    for name, ext in tables.EXTENSIONS.items():
        f = get_format(name)
        assert isinstance(f, TableFormat) and f.name == name and f.extension == ext
    assert get_format("csv").tidy and not get_format("latex").tidy


def test_new_format_is_one_class(tmp_path, html_format):
    run_dir = make_run(tmp_path / "run", partial=[("Road Scene", "IFCNN")])
    assert "html" in tables.FORMATS and report.FORMATS[-1] == "html" and tables.EXTENSIONS["html"] == ".html"
    out = render_table(run_dir, "html", std=True)
    assert out.startswith("<table>\n<caption>Quantitative comparison on TNO and Road Scene (2 image pairs each)")
    assert "best in <b>bold</b>, second best <u>underlined</u>" in out  # the caption follows the hooks
    assert "IFCNN on Road Scene: 1 of 2" in out and "&dagger; Mean over the images" in out
    assert "<th>TNO · EN ↑</th><th>TNO · MSE ↓</th><th>TNO · Custom</th>" in out
    rows = {r.split("</td>", 1)[0].removeprefix("<tr><td>"): r for r in out.splitlines() if r.startswith("<tr><td>")}
    assert set(rows) == {"DenseFuse", "IFCNN", "A&amp;B&lt;net&gt;"}
    assert "<td><b>7.000</b> ± 0.070</td>" in rows["DenseFuse"]  # best EN
    assert "<td><u>6.900</u> ± 0.069</td>" in rows["A&amp;B&lt;net&gt;"]  # second EN
    assert "<td>6.500 ± 0.065&dagger;</td>" in rows["IFCNN"]  # partial on Road Scene: marked, not ranked
    # the same object renders what render_table printed
    run = load_run(run_dir)
    assert html_format.render(run, build_blocks(run), std=True) == out
    # one table per dataset on request
    separate = render_table(run_dir, "html", layout="separate")
    assert separate.count("<table>") == 2 and "TNO · " not in separate


def test_new_format_through_the_cli(tmp_path, html_format):
    run_dir = make_run(tmp_path / "run")
    r = CliRunner().invoke(cli, ["table", str(run_dir), "--format", "html"])
    assert r.exit_code == 0, r.output
    assert r.output == render_table(run_dir, "html")
    r = CliRunner().invoke(cli, ["table", "--help"])
    assert "html" in r.output
    out = tmp_path / "t.html"
    r = CliRunner().invoke(cli, ["table", str(run_dir), "--format", "html", "--out", str(out)])
    assert r.exit_code == 0 and out.read_text(encoding="utf-8") == render_table(run_dir, "html")


def test_new_format_written_beside_the_others(tmp_path, html_format):
    run_dir = make_run(tmp_path / "run")
    names = sorted(p.name for p in write_tables(run_dir))
    assert names == sorted(f"table_{s}{e}" for s in ("TNO", "Road_Scene", "all")
                           for e in (".csv", ".tex", ".md", ".html"))
    assert (run_dir / "table_all.html").read_text(encoding="utf-8") == render_table(run_dir, "html")


def test_unregistered_format_is_gone(tmp_path):
    run_dir = make_run(tmp_path / "run", datasets=("TNO",))
    register_format(TSVFormat)
    unregister_format("tsv")
    assert "tsv" not in tables.FORMATS
    r = CliRunner().invoke(cli, ["table", str(run_dir), "--format", "tsv"])
    assert r.exit_code == 2 and "'tsv' is not one of 'csv', 'latex', 'markdown'" in r.output
    with pytest.raises(Exception, match="unknown table format 'tsv'; choose from csv, latex, markdown"):
        render_table(run_dir, "tsv")


def test_default_hooks_are_plain_text_without_marks(tmp_path, tsv_format):
    run_dir = make_run(tmp_path / "run", datasets=("TNO",), partial=[("TNO", "IFCNN")])
    out = render_table(run_dir, "tsv", std=True)
    lines = out.splitlines()
    assert lines[0] == "Method\tEN ↑\tMSE ↓\tCustom"
    assert lines[1:] == ["DenseFuse\t7.000 ± 0.070\t0.1000 ± 0.0010\t1.000 ± 0.010",
                         "IFCNN†\t6.500 ± 0.065\t0.3000 ± 0.0030\t2.000 ± 0.020",
                         "A&B<net>\t6.900 ± 0.069\t0.2000 ± 0.0020\t3.000 ± 0.030"]
    # no marks, so the caption does not promise bold or underlined values
    caption = tsv_format.caption(load_run(run_dir), build_blocks(load_run(run_dir)), std=True)
    assert "Values: mean ± standard deviation over images; ↑/↓: higher/lower is better." in caption
    assert "bold" not in caption and "† Mean over the images its outputs cover (IFCNN: 1 of 2)" in caption


def test_registration_is_checked(tsv_format):
    with pytest.raises(ValueError, match="already registered"):
        register_format(TSVFormat)
    register_format(TSVFormat, replace=True)  # a new version of the same format

    class Clash(TSVFormat):
        name = "tsv2"

    with pytest.raises(ValueError, match="extension '.tsv' is already used by 'tsv'"):
        register_format(Clash)

    class NoDot(TSVFormat):
        name, extension = "nodot", "txt"

    with pytest.raises(ValueError, match="extension"):
        register_format(NoDot)

    class Unnamed(TableFormat):
        extension = ".un"

        def render(self, run, blocks, std=False):
            return ""

    with pytest.raises(ValueError, match="name"):
        register_format(Unnamed)
    with pytest.raises(TypeError):
        register_format(object)
    assert tables.FORMATS == ("csv", "latex", "markdown", "tsv")


def test_decorator_form_returns_the_class():
    @register_format
    class Plain(TSVFormat):
        name, extension = "plain", ".txt"

    try:
        assert isinstance(get_format("plain"), Plain) and Plain.name == "plain"
    finally:
        unregister_format("plain")
    assert "plain" not in tables.FORMATS
