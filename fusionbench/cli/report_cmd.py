"""``fusionbench table``, ``fusionbench figures`` and ``fusionbench check``: reports from a run folder."""
from __future__ import annotations

from pathlib import Path

import click


class _TableFormatChoice(click.Choice):
    """``click.Choice`` over the table-format registry (:mod:`fusionbench.runner.tables`).

    The choices are read from the registry whenever click validates ``--format`` or prints the help,
    not when the command is defined, so a format registered later (by a plugin, a test) is accepted
    and listed, and importing the CLI does not import the table code.
    """

    def __init__(self) -> None:
        super().__init__((), case_sensitive=True)

    @property
    def choices(self):
        from ..runner.tables import format_names

        return format_names()

    @choices.setter
    def choices(self, value) -> None:
        # click.Choice.__init__ assigns the choices it was given; the registry stays their only source
        pass


def _csv_list(value):
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


@click.command("table", short_help="Comparison tables (CSV, LaTeX, Markdown) from a run.")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=_TableFormatChoice(), default="markdown", show_default=True)
@click.option("--std", is_flag=True, help="Show mean ± std (CSV: add <metric>_std columns).")
@click.option("--datasets", help="Comma-separated datasets (default: all in the run, one combined table).")
@click.option("--metrics", help="Comma-separated metric labels as in the run (default: all).")
@click.option("--methods", help="Comma-separated methods; this order is kept (default: paper order, ours last).")
@click.option("--layout", type=click.Choice(["combined", "separate"]), default="combined", show_default=True,
              help="Several datasets: one table with a column group per dataset, or one table each.")
@click.option("--digits", type=click.IntRange(1, 10), default=4, show_default=True,
              help="Significant digits of each column's largest value.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (atomically) instead of stdout.")
def table(run_dir, fmt, std, datasets, metrics, methods, layout, digits, out):
    """Print a comparison table of the run in RUN_DIR: methods as rows, metrics as columns
    (↑/↓ = higher/lower is better), best in bold and second best underlined per column."""
    from ..io import write_text_atomic
    from ..runner.rundir import load_run
    from ..runner.tables import render_table

    order = _csv_list(methods)
    run = load_run(run_dir, order=order)
    text = render_table(run, fmt, datasets=_csv_list(datasets), metrics=_csv_list(metrics), methods=order,
                        std=std, digits=digits, layout=layout)
    if out:
        write_text_atomic(out, text)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


@click.command("figures", short_help="Figures (grid, distributions, ranks) from a run.")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dataset", "datasets", multiple=True, help="Dataset to draw (repeatable; default: all).")
@click.option("--images", help="Comma-separated image stems for the qualitative grid (default: the first --n-images).")
@click.option("--n-images", type=click.IntRange(1, 20), default=2, show_default=True)
@click.option("--zoom", metavar="X,Y,W,H", help="Zoom region in pixels of source A (default: most detailed region per image).")
@click.option("--kind", type=click.Choice(["box", "violin"]), default="box", show_default=True, help="Distribution plot style.")
@click.option("--width", default="7", show_default=True, help="Figure width in inches, or 'single' (3.5) / 'double' (7).")
@click.option("--max-cols", type=click.IntRange(2, 40), help="Grid panels per row before wrapping (default 8, or 4 at single width).")
@click.option("--only", help="Comma-separated subset of grid,dist,ranks.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: RUN_DIR/figures).")
def figures(run_dir, datasets, images, n_images, zoom, kind, width, max_cols, only, out):
    """Draw the qualitative grid, per-metric distributions and the rank heat-map of a run
    (PNG at 300 dpi and PDF). Prints the written files."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from ..errors import UsageError
    from ..runner.figures import FIGURES, write_figures

    try:
        w = float(width)
    except ValueError:
        w = width
        if w not in ("single", "double"):
            raise UsageError(f"--width {width!r}: a number of inches, 'single' or 'double'") from None
    which = _csv_list(only) or list(FIGURES)
    paths = write_figures(run_dir, datasets=list(datasets) or None, images=_csv_list(images), out_dir=out,
                          zoom=zoom, kind=kind, width=w, n_images=n_images, which=which, max_cols=max_cols)
    for p in paths:
        click.echo(str(p))


@click.command("check", short_help="Fail when a run's scores drift from a baseline.")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--baseline", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Baseline CSV (dataset,method,image,metric,value, or a summary with mean).")
@click.option("--rtol", type=click.FloatRange(0), default=1e-4, show_default=True)
@click.option("--atol", type=click.FloatRange(0), default=1e-6, show_default=True)
@click.option("--per-metric", metavar="M=RTOL[:ATOL],...", help="Per-metric tolerances, e.g. SSIM=1e-3,MI=1e-3:1e-8.")
@click.option("--level", type=click.Choice(["auto", "scores", "summary"]), default="auto", show_default=True,
              help="Compare per-image scores or per-method means (auto: from the baseline's columns).")
@click.option("--allow-new", is_flag=True, help="Entries in the run but not in the baseline do not fail the check.")
@click.option("--max-rows", type=click.IntRange(1), default=100, show_default=True, help="Rows listed per section.")
@click.option("--update", is_flag=True, help="Write the baseline from the run (atomically) instead of checking.")
def check(run_dir, baseline, rtol, atol, per_metric, level, allow_new, max_rows, update):
    """Compare RUN_DIR's scores (a run folder or a scores CSV) with a baseline.

    An entry passes when |now - baseline| <= atol + rtol * |baseline|. Prints what moved (stdout) and
    a one-line verdict (stderr). Exit code 1 when a value moved beyond tolerance or an entry is missing
    on either side, 0 otherwise.
    """
    from ..runner.check import baseline_level, compare, format_report, summary_line, update_baseline

    if update:
        lv = level if level != "auto" else (baseline_level(baseline) if baseline.is_file() else "scores")
        n = update_baseline(run_dir, baseline, lv)
        click.echo(f"wrote baseline {baseline} ({n} {lv} entries)", err=True)
        return
    res = compare(run_dir, baseline, rtol=rtol, atol=atol, per_metric=per_metric, allow_new=allow_new,
                  level=None if level == "auto" else level)
    text = format_report(res, max_rows=max_rows)
    if text:
        click.echo(text, nl=False)
    click.echo(summary_line(res), err=True)
    if not res.ok:
        click.get_current_context().exit(1)
