"""Comparison tables from a run directory: the public names of :mod:`.rundir` and :mod:`.tables`.

Kept so that ``from fusionbench.runner.report import load_run, render_table, write_tables`` and the
other names it always offered keep working. Reading a run folder and the format-independent table
model (:class:`Run`, :func:`load_run`, :class:`Block`, :func:`build_blocks`, method order, metric
direction, coverage) live in :mod:`.rundir`; the formats (:class:`TableFormat` and its CSV, LaTeX and
Markdown subclasses, :func:`register_format`), :func:`render_table` and :func:`write_tables` in
:mod:`.tables`. ``FORMATS`` and ``EXTENSIONS`` are read from the format registry on each access.

The eval runner calls :func:`write_tables`; the ``fusionbench table`` command calls
:func:`render_table`.
"""
from __future__ import annotations

from . import tables as _tables
from .rundir import (
    DEFAULT_DIGITS,
    SCORE_COLUMNS,
    SUMMARY_COLUMNS,
    Block,
    Run,
    build_blocks,
    column_decimals,
    coverage,
    fmt_number,
    load_run,
    metric_direction,
    order_methods,
    rank_marks,
    read_long_csv,
    row_methods,
    safe_name,
    summarise,
)
from .tables import (
    LAYOUTS,
    CSVFormat,
    LaTeXFormat,
    MarkdownFormat,
    TableFormat,
    extensions,
    format_names,
    get_format,
    latex_escape,
    markdown_escape,
    register_format,
    render_table,
    unregister_format,
    write_tables,
)

FORMATS: tuple[str, ...]  # read from the format registry by __getattr__ below
EXTENSIONS: dict[str, str]

__all__ = [
    "SCORE_COLUMNS", "SUMMARY_COLUMNS", "DEFAULT_DIGITS", "FORMATS", "EXTENSIONS", "LAYOUTS",
    "read_long_csv", "summarise", "Run", "load_run", "metric_direction", "order_methods",
    "column_decimals", "fmt_number", "rank_marks", "Block", "coverage", "build_blocks", "row_methods",
    "safe_name", "latex_escape", "markdown_escape",
    "TableFormat", "CSVFormat", "LaTeXFormat", "MarkdownFormat",
    "register_format", "unregister_format", "get_format", "format_names", "extensions",
    "render_table", "write_tables",
]


def __getattr__(name: str):
    if name in ("FORMATS", "EXTENSIONS"):  # live views of the format registry
        return getattr(_tables, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
