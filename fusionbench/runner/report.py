"""Comparison tables from a run directory: CSV, booktabs LaTeX and Markdown.

Reads only what ``fusionbench eval`` writes into RUN_DIR:

- ``summary.csv`` (dataset, method, metric, mean, std, n); when absent it is computed from
- ``scores.csv`` (long format: dataset, method, image, metric, value), std with ddof=0 like eval;
- ``provenance.json`` for the preset, the metric order and the datasets' order (optional).

Layout: methods are rows, metrics are columns, marked with an up arrow (higher is better) or a down
arrow (lower is better) from the metric registry (``fusionbench.metrics.get_metric``; a label such as
``SSIM@vifb`` is looked up as ``SSIM``). Means, optionally ``± std``, are printed with a common number
of decimals per column, chosen so that the column's largest magnitude shows ``digits`` significant
digits (default 4: 7.123, 0.4567, 12.35, 1234).

Best and second best per column (LaTeX: ``\\textbf`` / ``\\underline``; Markdown: ``**`` / ``<ins>``)
are decided on the *printed* values, so the marks always agree with what a reader sees. Ties share
the mark (dense ranking: everyone tied for best is bold, the next distinct value is underlined). A
column is marked only when at least two methods have a value there, and second best only when at least
three do. Metrics whose direction is unknown get neither an arrow nor marks.

Method order: classical methods first, then learned methods by publication year (registry metadata),
then methods the registry does not know (alphabetical), and methods whose display name says "ours"
last, the way papers print their own method in the final row.

The eval runner calls :func:`write_tables`; the ``fusionbench table`` command calls
:func:`render_table`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, UsageError, did_you_mean
from ..io import write_text_atomic

SCORE_COLUMNS = ("dataset", "method", "image", "metric", "value")
SUMMARY_COLUMNS = ("dataset", "method", "metric", "mean", "std", "n")
FORMATS = ("csv", "latex", "markdown")
DEFAULT_DIGITS = 4
EXTENSIONS = {"csv": ".csv", "latex": ".tex", "markdown": ".md"}


# ----------------------------------------------------------------------------------------------
# reading a run


def read_long_csv(path: str | Path, required, value_cols=("value",)):
    """Read a CSV whose key columns are strings and whose ``value_cols`` are floats.

    Keys are never parsed as numbers or NaN (image stems like ``00012`` and a method called ``NA``
    survive). Raises :class:`DataError` naming the file for a missing file, missing columns or
    non-numeric values.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read CSV ({e.__class__.__name__}: {str(e).strip()})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns)) or 'none'}")
    for c in value_cols:
        if c not in df.columns:
            continue
        raw = df[c].str.strip()
        num = pd.to_numeric(raw.replace({"": "nan"}), errors="coerce")
        bad = num.isna() & ~raw.str.lower().isin(["", "nan", "-nan", "+nan"])
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(f"{path}: line {i + 2}: column {c!r} is not a number: {df[c].iloc[i]!r}")
        df[c] = num.astype(float)
    return df


def summarise(scores):
    """Mean, std (ddof=0, as eval writes it) and count per dataset, method, metric, in input order."""
    import pandas as pd

    if scores.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    g = scores.groupby(["dataset", "method", "metric"], sort=False)["value"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "n": g.count()}).reset_index()
    return out[list(SUMMARY_COLUMNS)]


@dataclass
class Run:
    """What the report needs from a run directory."""

    run_dir: Path
    summary: object  # DataFrame dataset, method, metric, mean, std, n
    scores: object | None  # DataFrame in long format, or None when only summary.csv exists
    provenance: dict = field(default_factory=dict)
    datasets: list = field(default_factory=list)  # in run order
    methods: list = field(default_factory=list)  # in table order (see order_methods)
    metrics: list = field(default_factory=list)  # in run order

    @property
    def preset(self) -> str | None:
        return self.provenance.get("preset")

    def dataset_info(self, name: str) -> dict:
        return (self.provenance.get("datasets") or {}).get(name) or {}


def _unique(seq):
    seen, out = set(), []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def load_run(run_dir: str | Path, order: list[str] | None = None) -> Run:
    """Read scores.csv / summary.csv / provenance.json of ``run_dir``.

    ``order`` fixes the method order (names not listed follow in the default order).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run folder")
    prov_path = run_dir / "provenance.json"
    prov = {}
    if prov_path.is_file():
        try:
            prov = json.loads(prov_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise DataError(f"{prov_path}: not valid JSON ({e})") from None
        if not isinstance(prov, dict):
            raise DataError(f"{prov_path}: expected a JSON object")
    scores = None
    if (run_dir / "scores.csv").is_file():
        scores = read_long_csv(run_dir / "scores.csv", SCORE_COLUMNS)
    if (run_dir / "summary.csv").is_file():
        summary = read_long_csv(run_dir / "summary.csv", SUMMARY_COLUMNS, value_cols=("mean", "std", "n"))
    elif scores is not None:
        summary = summarise(scores)
    else:
        raise DataError(f"{run_dir}: neither summary.csv nor scores.csv found; is this a `fusionbench eval` run folder?")
    if summary.empty:
        raise DataError(f"{run_dir}: the run holds no scores")
    dup = summary.duplicated(["dataset", "method", "metric"])
    if dup.any():
        r = summary[dup].iloc[0]
        raise DataError(f"{run_dir / 'summary.csv'}: duplicate row for {r['dataset']}/{r['method']}/{r['metric']}")
    prov_ds = list((prov.get("datasets") or {}).keys())
    datasets = [d for d in prov_ds if d in set(summary["dataset"])] + [d for d in _unique(summary["dataset"]) if d not in prov_ds]
    prov_metrics = [m for m in (prov.get("metrics") or []) if isinstance(m, str)]
    metrics = [m for m in prov_metrics if m in set(summary["metric"])] + [m for m in _unique(summary["metric"]) if m not in prov_metrics]
    methods = order_methods(_unique(summary["method"]), prov, order)
    return Run(run_dir, summary, scores, prov, datasets, methods, metrics)


# ----------------------------------------------------------------------------------------------
# metric direction and method order


def metric_direction(label: str) -> bool | None:
    """True when higher is better, False when lower is, None for a metric the registry does not know.

    ``label`` may carry a preset suffix (``SSIM@vifb``); the lookup uses the part before ``@``.
    """
    from ..errors import UnknownNameError
    from ..metrics import get_metric

    base = label.split("@", 1)[0].strip()
    try:
        m = get_metric(base)
    except (UnknownNameError, KeyError):
        return None
    hib = getattr(m, "higher_is_better", None)
    return None if hib is None else bool(hib)


_OURS = re.compile(r"\bours\b", re.IGNORECASE)


def _registry_info(name: str, prov: dict):
    """MethodInfo for a method of the run, or None (results folders the registry does not know)."""
    import warnings

    key = ((prov.get("methods") or {}).get(name) or {}).get("registry") if isinstance(prov.get("methods"), dict) else None
    try:
        from ..registry import get_method

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a broken plugin is reported by `fusionbench methods`, not here
            for k in (key, name):
                if not k:
                    continue
                try:
                    return get_method(k)
                except Exception:  # UnknownNameError, or a plugin failing to import
                    continue
    except Exception:
        return None
    return None


def order_methods(names, prov: dict | None = None, order: list[str] | None = None) -> list[str]:
    """Stable paper order: given ``order`` first; then classical methods, learned methods by year,
    unknown methods alphabetically, and "ours" last (each group by year, then name)."""
    prov = prov or {}
    names = list(names)
    fixed = [n for n in (order or []) if n in names]

    def key(n):
        ours = bool(_OURS.search(n))
        info = _registry_info(n, prov)
        if info is None:
            return (2 if ours else 1, 1, 9999, n.lower())
        year = info.paper.year if info.paper is not None else 9999
        return (2 if ours else 0, 0 if info.kind == "classical" else 1, year, n.lower())

    rest = sorted((n for n in names if n not in fixed), key=key)
    return fixed + rest


# ----------------------------------------------------------------------------------------------
# numbers, marks, escaping


def column_decimals(values, digits: int = DEFAULT_DIGITS) -> int:
    """Decimals that give the column's largest |value| ``digits`` significant digits (0..8)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    big = max(finite, default=0.0)
    if big == 0.0:
        return max(digits - 1, 0)
    return int(min(max(digits - 1 - math.floor(math.log10(big)), 0), 8))


def fmt_number(v, decimals: int) -> str | None:
    if v is None or not math.isfinite(v):
        return None
    s = f"{v:.{decimals}f}"
    if float(s) == 0.0:  # no "-0.000"
        s = s.lstrip("-")
    return s


def rank_marks(values, higher: bool | None, decimals: int) -> list[str | None]:
    """'best' / 'second' / None per value, on the values as printed (dense ranking, ties share)."""
    marks: list[str | None] = [None] * len(values)
    if higher is None:
        return marks
    shown = [fmt_number(v, decimals) for v in values]
    nums = [float(s) if s is not None else None for s in shown]
    valid = [x for x in nums if x is not None]
    if len(valid) < 2:
        return marks
    distinct = sorted(set(valid), reverse=higher)
    best = distinct[0]
    second = distinct[1] if len(distinct) > 1 and len(valid) >= 3 else None
    for i, x in enumerate(nums):
        if x is None:
            continue
        if x == best:
            marks[i] = "best"
        elif second is not None and x == second:
            marks[i] = "second"
    return marks


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials so any method, metric or dataset name prints literally."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def markdown_escape(text: str) -> str:
    s = str(text).replace("\\", "\\\\")
    for c in "|*_`<>[]":
        s = s.replace(c, "\\" + c)
    return s


# ----------------------------------------------------------------------------------------------
# the table model


@dataclass
class Block:
    """One dataset's part of a table: mean/std/n per (method, metric), with decimals and marks."""

    dataset: str
    metrics: list
    methods: list
    mean: dict  # (method, metric) -> float
    std: dict
    n: dict
    decimals: dict  # metric -> int
    marks: dict  # (method, metric) -> 'best' | 'second' | None
    directions: dict  # metric -> bool | None
    total: int | None = None  # image pairs in the dataset
    partial: dict = field(default_factory=dict)  # method -> images it was scored on, when fewer than total


def coverage(run: "Run", ds: str, metrics=None) -> tuple[int | None, dict]:
    """``(pairs in ds, {method: images scored})`` for the methods scored on fewer images than ``ds`` has.

    The pair count comes from provenance.json when the run recorded it, else it is the largest
    count scored. A method's count is its smallest over ``metrics`` (default: all). Tables show
    such partial rows marked and unranked; the rank heat-map leaves them out.
    """
    s = run.summary
    sub = s[s["dataset"] == ds]
    if metrics is not None:
        sub = sub[sub["metric"].isin(list(metrics))]
    stems = run.dataset_info(ds).get("stems")
    total = len(stems) if stems else (int(sub["n"].max()) if len(sub) else None)
    if not total:
        return total, {}
    counts = sub.groupby("method")["n"].min()
    return total, {m: int(c) for m, c in counts.items() if c < total}


def _select(available: list, wanted, kind: str) -> list:
    if wanted is None:
        return list(available)
    if isinstance(wanted, str):
        wanted = [w.strip() for w in wanted.split(",") if w.strip()]
    out = []
    lower = {a.lower(): a for a in available}
    for w in wanted:
        hit = w if w in available else lower.get(w.lower())
        if hit is None:
            raise did_you_mean(kind, w, available)
        if hit not in out:
            out.append(hit)
    if not out:
        raise UsageError(f"no {kind} selected")
    return out


def build_blocks(run: Run, datasets=None, metrics=None, methods=None, digits: int = DEFAULT_DIGITS,
                 directions: dict | None = None) -> list[Block]:
    """Per selected dataset, the numbers of the table, decimals per column and best/second marks.

    ``directions`` overrides the registry (metric label -> higher_is_better or None).
    """
    datasets = _select(run.datasets, datasets, "dataset")
    metrics = _select(run.metrics, metrics, "metric")
    methods = _select(run.methods, methods, "method")
    dirs = {m: (directions[m] if directions and m in directions else metric_direction(m)) for m in metrics}
    s = run.summary
    blocks = []
    for ds in datasets:
        sub = s[s["dataset"] == ds]
        mean, std, n = {}, {}, {}
        for r in sub.itertuples(index=False):
            if r.metric in dirs and r.method in methods:
                mean[(r.method, r.metric)] = float(r.mean)
                std[(r.method, r.metric)] = float(r.std)
                n[(r.method, r.metric)] = float(r.n)
        present = [m for m in methods if any((m, k) in mean for k in metrics)]
        total, partial = coverage(run, ds, metrics)
        partial = {m: partial[m] for m in present if m in partial}  # in table order
        dec, marks = {}, {}
        for k in metrics:
            vals = [mean.get((m, k)) for m in present]
            dec[k] = column_decimals(vals, digits)
            # a mean over a subset of the images is shown, but does not compete for best / second
            ranked = [None if m in partial else v for m, v in zip(present, vals)]
            for m, mk in zip(present, rank_marks(ranked, dirs[k], dec[k])):
                marks[(m, k)] = mk
        blocks.append(Block(ds, metrics, present, mean, std, n, dec, marks, dirs, total, partial))
    return blocks


def _row_methods(blocks: list[Block], run: Run) -> list[str]:
    present = set().union(*[set(b.methods) for b in blocks]) if blocks else set()
    return [m for m in run.methods if m in present]


def _images_note(blocks: list[Block]) -> list[tuple[str, str]]:
    parts = []
    for b in blocks:
        if b.total:
            parts.append((b.dataset, str(b.total)))
    return parts


PARTIAL_MARK = {"md": "†", "latex": "$^\\dagger$"}


def _partial_note(blocks: list[Block], style: str) -> str:
    """Caption sentence naming the rows scored on fewer images than the dataset has."""
    esc = latex_escape if style == "latex" else markdown_escape
    items = []
    for b in blocks:
        for m, k in b.partial.items():
            where = f" on {esc(b.dataset)}" if len(blocks) > 1 else ""
            items.append(f"{esc(m)}{where}: {k} of {b.total}")
    if not items:
        return ""
    return (f" {PARTIAL_MARK[style]} Mean over the images its outputs cover ({'; '.join(items)}); "
            "not ranked.")


def _method_cell(m: str, blocks: list[Block], style: str) -> str:
    """The row label; with one dataset a partial row is marked here, with several on its cells."""
    name = latex_escape(m) if style == "latex" else markdown_escape(m)
    return name + (PARTIAL_MARK[style] if len(blocks) == 1 and m in blocks[0].partial else "")


def _join_names(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


# ----------------------------------------------------------------------------------------------
# renderers


def render_csv(run: Run, blocks: list[Block], std: bool = False) -> str:
    """Machine-readable: one row per (dataset, method), full precision, ``<metric>_std`` with std."""
    import csv
    import io

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


def _cell(b: Block | None, m: str, k: str, std: bool, style: str, mark_partial: bool = False) -> str:
    missing = "--" if style == "latex" else "–"
    if b is None or (m, k) not in b.mean:
        return missing
    d = b.decimals[k]
    mean = fmt_number(b.mean[(m, k)], d)
    if mean is None:
        return missing
    mark = b.marks.get((m, k))
    if style == "latex":
        core = {"best": f"\\textbf{{{mean}}}", "second": f"\\underline{{{mean}}}"}.get(mark, mean)
        if std:
            e = fmt_number(b.std.get((m, k)), d)
            if e is not None:
                core += f"{{\\scriptsize\\,$\\pm$\\,{e}}}"
        return core + (PARTIAL_MARK["latex"] if mark_partial and m in b.partial else "")
    core = {"best": f"**{mean}**", "second": f"<ins>{mean}</ins>"}.get(mark, mean)
    if std:
        e = fmt_number(b.std.get((m, k)), d)
        if e is not None:
            core += f" ± {e}"
    return core + (PARTIAL_MARK["md"] if mark_partial and m in b.partial else "")


def _arrow(direction, style: str) -> str:
    if direction is None:
        return ""
    if style == "latex":
        return "$\\uparrow$" if direction else "$\\downarrow$"
    return " ↑" if direction else " ↓"


def _caption_text(run: Run, blocks: list[Block], std: bool, style: str) -> str:
    names = [b.dataset for b in blocks]
    esc = latex_escape if style == "latex" else markdown_escape
    notes = _images_note(blocks)
    if len(notes) == 1:
        where = f"{esc(notes[0][0])} ({notes[0][1]} image pairs)"
    elif notes and len({t for _, t in notes}) == 1:
        where = _join_names([esc(d) for d, _ in notes]) + f" ({notes[0][1]} image pairs each)"
    else:
        where = _join_names([esc(d) for d, _ in notes]) + " (" + _join_names([t for _, t in notes]) + " image pairs)"
    preset = run.preset
    pre = f", metrics computed with the {esc(preset)} preset" if preset else ""
    if style == "latex":
        what = "mean $\\pm$ standard deviation" if std else "mean"
        marks = "best in \\textbf{bold}, second best \\underline{underlined}"
        arrows = "$\\uparrow$/$\\downarrow$: higher/lower is better"
    else:
        what = "mean ± standard deviation" if std else "mean"
        marks = "best in **bold**, second best <ins>underlined</ins>"
        arrows = "↑/↓: higher/lower is better"
    return (f"Quantitative comparison on {where}{pre}. Values: {what} over images; {marks}; {arrows}."
            + _partial_note(blocks, "latex" if style == "latex" else "md") + _left_out_note(run, esc))


def _left_out_note(run: Run, esc) -> str:
    """' Left out: M (reason); ...' for methods of the run that could not run (bad checkpoint, crash)."""
    errors = run.provenance.get("errors") or {}
    if not errors:
        return ""
    items = [f"{esc(name)} ({esc(_short(why))})" for name, why in errors.items()]
    return " Left out, could not run: " + "; ".join(items) + "."


def _short(why: str, n: int = 90) -> str:
    why = why.split(": ", 1)[-1] if why.startswith("/") else why  # drop a leading file path
    return why if len(why) <= n else why[: n - 1].rstrip() + "…"


def render_markdown(run: Run, blocks: list[Block], std: bool = False) -> str:
    """A GitHub-flavoured table with a caption line above; several datasets as column groups."""
    methods = _row_methods(blocks, run)
    multi = len(blocks) > 1
    head = ["Method"]
    for b in blocks:
        for k in b.metrics:
            label = f"{markdown_escape(k)}{_arrow(b.directions[k], 'md')}"
            head.append(f"{markdown_escape(b.dataset)} · {label}" if multi else label)
    lines = [_caption_text(run, blocks, std, "md"), ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|:--" + "|--:" * (len(head) - 1) + "|")
    for m in methods:
        cells = [_method_cell(m, blocks, "md")]
        for b in blocks:
            for k in b.metrics:
                cells.append(_cell(b if m in b.methods else None, m, k, std, "md", mark_partial=multi))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _label(names: list[str]) -> str:
    return "tab:fusionbench-" + "-".join(re.sub(r"[^A-Za-z0-9]+", "", n).lower() or "data" for n in names)


def render_latex(run: Run, blocks: list[Block], std: bool = False) -> str:
    """A booktabs table float; several datasets get a multi-column header with \\cmidrule."""
    methods = _row_methods(blocks, run)
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
    out.append(f"\\caption{{{_caption_text(run, blocks, std, 'latex')}}}")
    out.append(f"\\label{{{_label([b.dataset for b in blocks])}}}")
    spec = "l" + "".join("c" * len(b.metrics) for b in blocks)
    out.append(f"\\begin{{tabular}}{{{spec}}}")
    out.append("\\toprule")
    if multi:
        groups, rules, col = [], [], 2
        for b in blocks:
            w = len(b.metrics)
            groups.append(f"\\multicolumn{{{w}}}{{c}}{{{latex_escape(b.dataset)}}}")
            rules.append(f"\\cmidrule(lr){{{col}-{col + w - 1}}}")
            col += w
        out.append(" & " + " & ".join(groups) + " \\\\")
        out.append(" ".join(rules))
    head = ["Method"] + [f"{latex_escape(k)}{_arrow(b.directions[k], 'latex')}" for b in blocks for k in b.metrics]
    out.append(" & ".join(head) + " \\\\")
    out.append("\\midrule")
    for m in methods:
        cells = [_method_cell(m, blocks, "latex")]
        for b in blocks:
            for k in b.metrics:
                cells.append(_cell(b if m in b.methods else None, m, k, std, "latex", mark_partial=multi))
        out.append(" & ".join(cells) + " \\\\")
    out.append("\\bottomrule")
    out.append("\\end{tabular}")
    out.append(f"\\end{{{env}}}")
    return "\n".join(out) + "\n"


RENDERERS = {"csv": render_csv, "latex": render_latex, "markdown": render_markdown}


def render_table(run: Run | str | Path, fmt: str = "markdown", datasets=None, metrics=None, methods=None,
                 std: bool = False, digits: int = DEFAULT_DIGITS, layout: str = "combined") -> str:
    """The text of a table. Several datasets: one combined table (``layout='combined'``) or one
    table per dataset separated by a blank line (``'separate'``; CSV is always one tidy table)."""
    if fmt not in RENDERERS:
        raise UsageError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")
    if layout not in ("combined", "separate"):
        raise UsageError(f"unknown layout {layout!r}; choose combined or separate")
    if not isinstance(run, Run):
        run = load_run(run)
    blocks = build_blocks(run, datasets, metrics, methods, digits)
    if fmt == "csv" or layout == "combined" or len(blocks) == 1:
        return RENDERERS[fmt](run, blocks, std)
    return "\n".join(RENDERERS[fmt](run, [b], std) for b in blocks)


def safe_name(name: str) -> str:
    """File-name-safe form of a dataset name (same rule as the eval runner's folders)."""
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


def write_tables(run_dir: str | Path, std: bool = False, digits: int = DEFAULT_DIGITS, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``table_<dataset>.{csv,tex,md}`` per dataset and, for several datasets,
    ``table_all.{csv,tex,md}`` (combined), atomically, into ``out_dir`` (default: the run folder).

    Returns the paths written. A dataset literally named ``all`` is written as ``table_all-dataset.*``.
    A ``table_all.*`` left from an earlier multi-dataset run in the same folder is removed when the
    run now has a single dataset.
    """
    run = load_run(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run.run_dir
    written = []
    for ds in run.datasets:
        blocks = build_blocks(run, [ds], digits=digits)
        stem = safe_name(ds) if safe_name(ds) != "all" else "all-dataset"  # table_all is the combined table
        for fmt, ext in EXTENSIONS.items():
            p = out_dir / f"table_{stem}{ext}"
            write_text_atomic(p, RENDERERS[fmt](run, blocks, std))
            written.append(p)
    if len(run.datasets) > 1:
        blocks = build_blocks(run, digits=digits)
        for fmt, ext in EXTENSIONS.items():
            p = out_dir / f"table_all{ext}"
            write_text_atomic(p, RENDERERS[fmt](run, blocks, std))
            written.append(p)
    else:
        for ext in EXTENSIONS.values():
            stale = out_dir / f"table_all{ext}"
            if stale.is_file():
                stale.unlink()
    return written
