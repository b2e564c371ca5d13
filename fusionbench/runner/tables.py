"""Comparison tables from a run folder, one :class:`TableFormat` per output format.

The numbers come from :mod:`.rundir` (:func:`~.rundir.load_run`, :func:`~.rundir.build_blocks`: means,
std, decimals per column, best / second marks, partial coverage); a format only decides how they
print. Layout: methods are rows, metrics are columns, each metric marked with an up arrow (higher is
better) or a down arrow (lower is better); a metric whose direction is unknown gets neither an arrow
nor marks. Means, optionally ``± std``, use the column's common number of decimals.

Formats registered here:

- ``csv`` (``.csv``): machine-readable, one row per (dataset, method), full precision, no marks;
- ``latex`` (``.tex``): a booktabs table float, best in ``\\textbf``, second best ``\\underline``;
- ``markdown`` (``.md``): a GitHub-flavoured table with a caption line, best ``**``, second ``<ins>``.

Rows scored on fewer images than their dataset has are marked with a dagger, explained in the
caption and left unranked; methods the run could not produce are named in the caption.

A new format is one class: subclass :class:`TableFormat`, give it a ``name`` and an ``extension``,
override the hooks that differ from plain Unicode text (:meth:`~TableFormat.escape`,
:meth:`~TableFormat.emphasis`, the ``missing`` / ``partial_mark`` / arrow / ``plus_minus`` symbols,
:meth:`~TableFormat.std_suffix`, :meth:`~TableFormat.caption`) and implement
:meth:`~TableFormat.render` from the ready-made :meth:`~TableFormat.header`, :meth:`~TableFormat.rows`
and :meth:`~TableFormat.caption`; then decorate it with :func:`register_format`::

    @register_format
    class TSVFormat(TableFormat):
        name, extension = "tsv", ".tsv"

        def render(self, run, blocks, std=False):
            lines = [self.header(blocks)] + self.rows(run, blocks, std)
            return "".join("\\t".join(cells) + "\\n" for cells in lines)

:func:`render_table` (``fusionbench table --format tsv``) and :func:`write_tables` (``table_*.tsv``
beside the others after ``fusionbench eval``) then offer it. :data:`FORMATS` and :data:`EXTENSIONS`
are read from the registry each time they are accessed.
"""
from __future__ import annotations

import abc
import csv
import io
import math
import re
from pathlib import Path
from typing import ClassVar

from ..errors import UsageError
from ..io import write_text_atomic
from .rundir import DEFAULT_DIGITS, Block, Run, build_blocks, fmt_number, load_run, row_methods, safe_name

__all__ = [
    "TableFormat", "CSVFormat", "LaTeXFormat", "MarkdownFormat",
    "register_format", "unregister_format", "get_format", "format_names", "extensions",
    "FORMATS", "EXTENSIONS", "LAYOUTS",
    "latex_escape", "markdown_escape", "render_table", "write_tables",
]

LAYOUTS = ("combined", "separate")

# Declared for readers and checkers; the values come from the module's __getattr__ (the registry, live).
FORMATS: tuple[str, ...]  # registered format names, in registration order
EXTENSIONS: dict[str, str]  # format name -> file extension


# ----------------------------------------------------------------------------------------------
# escaping


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials so any method, metric or dataset name prints literally."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def markdown_escape(text: str) -> str:
    """Backslash-escape what Markdown or a table cell would interpret (``|*_`<>[]`` and ``\\``)."""
    s = str(text).replace("\\", "\\\\")
    for c in "|*_`<>[]":
        s = s.replace(c, "\\" + c)
    return s


# ----------------------------------------------------------------------------------------------
# caption helpers (format-independent)


def _join_names(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _images_note(blocks: list[Block]) -> list[tuple[str, str]]:
    """``(dataset, image pairs)`` for the blocks whose pair count is known."""
    return [(b.dataset, str(b.total)) for b in blocks if b.total]


def _short(why: str, n: int = 90) -> str:
    why = why.split(": ", 1)[-1] if why.startswith("/") else why  # drop a leading file path
    return why if len(why) <= n else why[: n - 1].rstrip() + "…"


# ----------------------------------------------------------------------------------------------
# the interface


class TableFormat(abc.ABC):
    """One output format of the comparison tables.

    A format renders the blocks of :func:`~.rundir.build_blocks` (one per dataset; several blocks make
    one table with a column group per dataset) into text with :meth:`render`. The hooks below default
    to plain Unicode text with no best / second marks; a subclass overrides what differs, and the
    building blocks (:meth:`cell`, :meth:`method_cell`, :meth:`header`, :meth:`rows`, :meth:`caption`)
    assemble them, so every format prints the same numbers, marks and notes.

    Class attributes:
        name: the format's name (``--format NAME``); unique in the registry.
        extension: the file extension :func:`write_tables` uses, with its dot; unique in the registry.
        tidy: True when several datasets always make one table, whatever the layout (CSV).
        missing: the cell of a method without a (finite) value.
        partial_mark: appended to a method or cell scored on fewer images than the dataset has.
        up, down: the direction arrows; ``arrow_sep`` goes between a metric label and its arrow.
        plus_minus: the symbol between mean and std in the caption.
    """

    name: ClassVar[str]
    extension: ClassVar[str]
    tidy: ClassVar[bool] = False
    missing: ClassVar[str] = "–"
    partial_mark: ClassVar[str] = "†"
    up: ClassVar[str] = "↑"
    down: ClassVar[str] = "↓"
    arrow_sep: ClassVar[str] = " "
    plus_minus: ClassVar[str] = "±"

    @abc.abstractmethod
    def render(self, run: Run, blocks: list[Block], std: bool = False) -> str:
        """The table of ``blocks`` (one per dataset, all sharing their metrics) as text, ending in a newline."""

    # -- hooks -----------------------------------------------------------------------------------

    def escape(self, text: str) -> str:
        """``text`` (a method, metric or dataset name, a message) made to print literally."""
        return str(text)

    def emphasis(self, text: str, mark: str | None) -> str:
        """``text`` marked as ``'best'`` or ``'second'`` best in its column (``None``: unmarked)."""
        return text

    def arrow(self, direction: bool | None) -> str:
        """What follows a metric label: the direction arrow, nothing when the direction is unknown."""
        if direction is None:
            return ""
        return self.arrow_sep + (self.up if direction else self.down)

    def std_suffix(self, std: str) -> str:
        """What follows a printed mean when the table shows the standard deviation ``std``."""
        return f" {self.plus_minus} {std}"

    def marks_legend(self) -> str | None:
        """The caption's explanation of the best / second marks, or None when the format has none."""
        best, second = self.emphasis("bold", "best"), self.emphasis("underlined", "second")
        if (best, second) == ("bold", "underlined"):
            return None
        return f"best in {best}, second best {second}"

    # -- building blocks -------------------------------------------------------------------------

    def cell(self, block: Block | None, method: str, metric: str, std: bool = False,
             mark_partial: bool = False) -> str:
        """One value: the mean with the column's decimals and its mark, ``std`` appended on request.

        ``block`` None (the method is absent from that dataset) or a missing / non-finite mean gives
        :attr:`missing`. ``mark_partial`` appends :attr:`partial_mark` when the method is partial in
        ``block`` (tables of several datasets mark cells; one dataset marks the row label instead).
        """
        b, m, k = block, method, metric
        if b is None or (m, k) not in b.mean:
            return self.missing
        d = b.decimals[k]
        mean = fmt_number(b.mean[(m, k)], d)
        if mean is None:
            return self.missing
        core = self.emphasis(mean, b.marks.get((m, k)))
        if std:
            e = fmt_number(b.std.get((m, k)), d)
            if e is not None:
                core += self.std_suffix(e)
        return core + (self.partial_mark if mark_partial and m in b.partial else "")

    def method_cell(self, method: str, blocks: list[Block]) -> str:
        """The row label; with one dataset a partial row is marked here, with several on its cells."""
        partial = len(blocks) == 1 and method in blocks[0].partial
        return self.escape(method) + (self.partial_mark if partial else "")

    def metric_label(self, block: Block, metric: str) -> str:
        """A column's label: the escaped metric and its arrow."""
        return f"{self.escape(metric)}{self.arrow(block.directions[metric])}"

    def header(self, blocks: list[Block], dataset_prefix: bool = True) -> list[str]:
        """``Method`` and one label per column. With several datasets and ``dataset_prefix`` (formats
        without column groups), each label starts with its dataset: ``TNO · EN ↑``."""
        multi = dataset_prefix and len(blocks) > 1
        head = ["Method"]
        for b in blocks:
            for k in b.metrics:
                label = self.metric_label(b, k)
                head.append(f"{self.escape(b.dataset)} · {label}" if multi else label)
        return head

    def rows(self, run: Run, blocks: list[Block], std: bool = False) -> list[list[str]]:
        """The body: per method in table order, its label then one cell per (dataset, metric) column."""
        multi = len(blocks) > 1
        out = []
        for m in row_methods(blocks, run):
            cells = [self.method_cell(m, blocks)]
            for b in blocks:
                for k in b.metrics:
                    cells.append(self.cell(b if m in b.methods else None, m, k, std, mark_partial=multi))
            out.append(cells)
        return out

    def caption(self, run: Run, blocks: list[Block], std: bool = False) -> str:
        """What the table shows: datasets and their sizes, preset, how to read values, marks and arrows,
        then the partial rows and the methods left out."""
        esc = self.escape
        notes = _images_note(blocks)
        if len(notes) == 1:
            where = f"{esc(notes[0][0])} ({notes[0][1]} image pairs)"
        elif notes and len({t for _, t in notes}) == 1:
            where = _join_names([esc(d) for d, _ in notes]) + f" ({notes[0][1]} image pairs each)"
        else:
            where = _join_names([esc(d) for d, _ in notes]) + " (" + _join_names([t for _, t in notes]) + " image pairs)"
        preset = run.preset
        pre = f", metrics computed with the {esc(preset)} preset" if preset else ""
        what = f"mean {self.plus_minus} standard deviation" if std else "mean"
        legend = self.marks_legend()
        values = [f"{what} over images"] + ([legend] if legend else []) + [f"{self.up}/{self.down}: higher/lower is better"]
        return (f"Quantitative comparison on {where}{pre}. Values: {'; '.join(values)}."
                + self.partial_note(blocks) + self.left_out_note(run))

    def partial_note(self, blocks: list[Block]) -> str:
        """Caption sentence naming the rows scored on fewer images than the dataset has ('' if none)."""
        items = []
        for b in blocks:
            for m, k in b.partial.items():
                where = f" on {self.escape(b.dataset)}" if len(blocks) > 1 else ""
                items.append(f"{self.escape(m)}{where}: {k} of {b.total}")
        if not items:
            return ""
        return f" {self.partial_mark} Mean over the images its outputs cover ({'; '.join(items)}); not ranked."

    def left_out_note(self, run: Run) -> str:
        """' Left out, could not run: M (reason); ...' for methods of the run that failed ('' if none)."""
        errors = run.provenance.get("errors") or {}
        if not errors:
            return ""
        items = [f"{self.escape(name)} ({self.escape(_short(why))})" for name, why in errors.items()]
        return " Left out, could not run: " + "; ".join(items) + "."

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'name', '?')!r} ({getattr(self, 'extension', '?')})>"


# ----------------------------------------------------------------------------------------------
# the registry


_REGISTRY: dict[str, TableFormat] = {}
_EXTENSION_RE = re.compile(r"\.[A-Za-z0-9_.+-]+")


def register_format(fmt=None, *, replace: bool = False):
    """Register a :class:`TableFormat` subclass (or instance) under its ``name``.

    Usable as ``@register_format`` or ``@register_format(replace=True)`` on a class; returns its
    argument. Formats are offered in registration order. Raises ``ValueError`` when the name is taken
    (unless ``replace``) or the extension is another format's, ``TypeError`` for anything but a
    :class:`TableFormat`.
    """

    def add(f):
        inst = f() if isinstance(f, type) and issubclass(f, TableFormat) else f
        if not isinstance(inst, TableFormat):
            raise TypeError(f"register_format expects a TableFormat subclass or instance, got {f!r}")
        name, ext = getattr(inst, "name", None), getattr(inst, "extension", None)
        if not isinstance(name, str) or not name or name != name.strip() or any(c.isspace() for c in name):
            raise ValueError(f"{type(inst).__name__}: name must be a non-empty word, got {name!r}")
        if not isinstance(ext, str) or not _EXTENSION_RE.fullmatch(ext):
            raise ValueError(f"{type(inst).__name__}: extension must look like '.ext', got {ext!r}")
        if name in _REGISTRY and not replace:
            raise ValueError(f"table format {name!r} is already registered ({_REGISTRY[name]!r})")
        clash = [n for n, g in _REGISTRY.items() if n != name and g.extension == ext]
        if clash:
            raise ValueError(f"table format {name!r}: extension {ext!r} is already used by {clash[0]!r}")
        _REGISTRY[name] = inst
        return f

    return add if fmt is None else add(fmt)


def unregister_format(name: str) -> TableFormat:
    """Remove the format ``name`` from the registry and return it."""
    get_format(name)
    return _REGISTRY.pop(name)


def get_format(fmt: str | TableFormat) -> TableFormat:
    """The registered format called ``fmt`` (a :class:`TableFormat` is returned as is)."""
    if isinstance(fmt, TableFormat):
        return fmt
    try:
        return _REGISTRY[fmt]
    except (KeyError, TypeError):
        raise UsageError(f"unknown table format {fmt!r}; choose from {', '.join(format_names())}") from None


def format_names() -> tuple[str, ...]:
    """The registered format names, in registration order."""
    return tuple(_REGISTRY)


def extensions() -> dict[str, str]:
    """Format name -> file extension (with its dot), in registration order."""
    return {name: f.extension for name, f in _REGISTRY.items()}


def __getattr__(name: str):
    # FORMATS and EXTENSIONS follow the registry: a format registered later is listed too
    if name == "FORMATS":
        return format_names()
    if name == "EXTENSIONS":
        return extensions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------
# the built-in formats


@register_format
class CSVFormat(TableFormat):
    """Machine-readable: one row per (dataset, method), full precision, ``<metric>_std`` with std.

    Values are written as Python's shortest round-tripping ``repr`` without marks or arrows; ``n`` is
    the number of images scored (``a/b`` when it differs between metrics). Several datasets always
    make one tidy table.
    """

    name = "csv"
    extension = ".csv"
    tidy = True

    def render(self, run: Run, blocks: list[Block], std: bool = False) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        metrics = blocks[0].metrics if blocks else []
        head = ["dataset", "method"]
        for k in metrics:
            head += [k, f"{k}_std"] if std else [k]
        head.append("n")
        w.writerow(head)
        for b in blocks:
            for m in b.methods:
                row = [b.dataset, m]
                for k in metrics:
                    v = b.mean.get((m, k))
                    row.append("" if v is None else repr(v))
                    if std:
                        e = b.std.get((m, k))
                        row.append("" if e is None else repr(e))
                ns = sorted({int(b.n[(m, k)]) for k in metrics if (m, k) in b.n and math.isfinite(b.n[(m, k)])})
                row.append(ns[0] if len(ns) == 1 else "/".join(map(str, ns)))
                w.writerow(row)
        return buf.getvalue()


@register_format
class LaTeXFormat(TableFormat):
    """A booktabs table float; several datasets get a multi-column header with ``\\cmidrule``.

    Best in ``\\textbf``, second best ``\\underline``, std as ``{\\scriptsize ± s}``. Wide tables
    (more than 7 columns, or more than 4 with std) use ``table*``; the label is
    ``tab:fusionbench-<datasets>``. Needs ``\\usepackage{booktabs}``.
    """

    name = "latex"
    extension = ".tex"
    missing = "--"
    partial_mark = "$^\\dagger$"
    up = "$\\uparrow$"
    down = "$\\downarrow$"
    arrow_sep = ""
    plus_minus = "$\\pm$"

    def escape(self, text: str) -> str:
        return latex_escape(text)

    def emphasis(self, text: str, mark: str | None) -> str:
        return {"best": f"\\textbf{{{text}}}", "second": f"\\underline{{{text}}}"}.get(mark, text)

    def std_suffix(self, std: str) -> str:
        return f"{{\\scriptsize\\,$\\pm$\\,{std}}}"

    @staticmethod
    def label(blocks: list[Block]) -> str:
        """``tab:fusionbench-`` and the datasets' alphanumerics, lower case."""
        names = [b.dataset for b in blocks]
        return "tab:fusionbench-" + "-".join(re.sub(r"[^A-Za-z0-9]+", "", n).lower() or "data" for n in names)

    def render(self, run: Run, blocks: list[Block], std: bool = False) -> str:
        multi = len(blocks) > 1
        ncols = sum(len(b.metrics) for b in blocks)
        wide = ncols > 7 or (std and ncols > 4)
        env = "table*" if wide else "table"
        out = [
            "% Generated by `fusionbench table`" + (f" from {Path(run.run_dir).name}" if run.run_dir else "") + ".",
            "% Requires \\usepackage{booktabs} in the preamble.",
            f"\\begin{{{env}}}[t]",
            "\\centering",
        ]
        if multi or wide:
            out.append("\\small")
        out.append(f"\\caption{{{self.caption(run, blocks, std)}}}")
        out.append(f"\\label{{{self.label(blocks)}}}")
        spec = "l" + "".join("c" * len(b.metrics) for b in blocks)
        out.append(f"\\begin{{tabular}}{{{spec}}}")
        out.append("\\toprule")
        if multi:
            groups, rules, col = [], [], 2
            for b in blocks:
                w = len(b.metrics)
                groups.append(f"\\multicolumn{{{w}}}{{c}}{{{self.escape(b.dataset)}}}")
                rules.append(f"\\cmidrule(lr){{{col}-{col + w - 1}}}")
                col += w
            out.append(" & " + " & ".join(groups) + " \\\\")
            out.append(" ".join(rules))
        out.append(" & ".join(self.header(blocks, dataset_prefix=False)) + " \\\\")
        out.append("\\midrule")
        out.extend(" & ".join(cells) + " \\\\" for cells in self.rows(run, blocks, std))
        out.append("\\bottomrule")
        out.append("\\end{tabular}")
        out.append(f"\\end{{{env}}}")
        return "\n".join(out) + "\n"


@register_format
class MarkdownFormat(TableFormat):
    """A GitHub-flavoured table with a caption line above; several datasets as column groups
    (``TNO · EN ↑``). Best in ``**bold**``, second best ``<ins>underlined</ins>``."""

    name = "markdown"
    extension = ".md"

    def escape(self, text: str) -> str:
        return markdown_escape(text)

    def emphasis(self, text: str, mark: str | None) -> str:
        return {"best": f"**{text}**", "second": f"<ins>{text}</ins>"}.get(mark, text)

    def render(self, run: Run, blocks: list[Block], std: bool = False) -> str:
        head = self.header(blocks)
        lines = [self.caption(run, blocks, std), ""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|:--" + "|--:" * (len(head) - 1) + "|")
        lines.extend("| " + " | ".join(cells) + " |" for cells in self.rows(run, blocks, std))
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# entry points


def render_table(run: Run | str | Path, fmt: str | TableFormat = "markdown", datasets=None, metrics=None,
                 methods=None, std: bool = False, digits: int = DEFAULT_DIGITS, layout: str = "combined") -> str:
    """The text of a table in a registered format (or a :class:`TableFormat` instance).

    ``run`` is a :class:`~.rundir.Run` or a run folder; ``datasets``, ``metrics`` and ``methods``
    select (default: all). Rows follow the run's method order (``load_run(run_dir, order=...)``).
    Several datasets: one combined table (``layout='combined'``) or one table per dataset separated by
    a blank line (``'separate'``; a tidy format such as CSV is always one table).
    """
    table = get_format(fmt)
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose combined or separate")
    if not isinstance(run, Run):
        run = load_run(run)
    blocks = build_blocks(run, datasets, metrics, methods, digits)
    if table.tidy or layout == "combined" or len(blocks) == 1:
        return table.render(run, blocks, std)
    return "\n".join(table.render(run, [b], std) for b in blocks)


def write_tables(run_dir: str | Path, std: bool = False, digits: int = DEFAULT_DIGITS,
                 out_dir: str | Path | None = None) -> list[Path]:
    """Write ``table_<dataset><ext>`` per dataset and, for several datasets, ``table_all<ext>``
    (combined), in every registered format (``.csv``, ``.tex`` and ``.md`` by default), atomically,
    into ``out_dir`` (default: the run folder).

    Returns the paths written. A dataset literally named ``all`` is written as ``table_all-dataset.*``.
    A ``table_all.*`` left from an earlier multi-dataset run in the same folder is removed when the
    run now has a single dataset.
    """
    run = load_run(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run.run_dir
    formats = list(_REGISTRY.values())
    written = []
    for ds in run.datasets:
        blocks = build_blocks(run, [ds], digits=digits)
        stem = safe_name(ds) if safe_name(ds) != "all" else "all-dataset"  # table_all is the combined table
        for table in formats:
            p = out_dir / f"table_{stem}{table.extension}"
            write_text_atomic(p, table.render(run, blocks, std))
            written.append(p)
    if len(run.datasets) > 1:
        blocks = build_blocks(run, digits=digits)
        for table in formats:
            p = out_dir / f"table_all{table.extension}"
            write_text_atomic(p, table.render(run, blocks, std))
            written.append(p)
    else:
        for table in formats:
            stale = out_dir / f"table_all{table.extension}"
            if stale.is_file():
                stale.unlink()
    return written
