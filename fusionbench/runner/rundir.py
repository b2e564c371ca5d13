"""Reading a run folder, and the format-independent model of its comparison tables.

Reads only what ``fusionbench eval`` writes into RUN_DIR:

- ``summary.csv`` (dataset, method, metric, mean, std, n); when absent it is computed from
- ``scores.csv`` (long format: dataset, method, image, metric, value), std with ddof=0 like eval;
- ``provenance.json`` for the preset, the metric order and the datasets' order (optional).

:func:`load_run` gives a :class:`Run`; :func:`build_blocks` turns it into one :class:`Block` per
dataset, everything a table needs whatever its format (:mod:`.tables` renders blocks as CSV, LaTeX,
Markdown or any registered format):

- metric directions from the metric registry (:func:`metric_direction`; a label such as ``SSIM@vifb``
  is looked up as ``SSIM``), ``None`` for a metric the registry does not know;
- a common number of decimals per column (:func:`column_decimals`), chosen so that the column's largest
  magnitude shows ``digits`` significant digits (default 4: 7.123, 0.4567, 12.35, 1234);
- best and second best per column (:func:`rank_marks`), decided on the *printed* values so the marks
  always agree with what a reader sees. Ties share the mark (dense ranking: everyone tied for best is
  best, the next distinct value is second). A column is marked only when at least two methods have a
  value there, second best only when at least three do, and never when the direction is unknown;
- coverage (:func:`coverage`): methods scored on fewer images than the dataset has are shown but
  not ranked.

Method order (:func:`order_methods`): classical methods first, then learned methods by publication
year (registry metadata), then methods the registry does not know (alphabetical), and methods whose
display name says "ours" last, the way papers print their own method in the final row.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, UsageError, did_you_mean

__all__ = [
    "SCORE_COLUMNS", "SUMMARY_COLUMNS", "DEFAULT_DIGITS",
    "read_long_csv", "summarise", "Run", "load_run",
    "metric_direction", "order_methods",
    "column_decimals", "fmt_number", "rank_marks",
    "Block", "coverage", "build_blocks", "row_methods", "safe_name",
]

SCORE_COLUMNS = ("dataset", "method", "image", "metric", "value")
SUMMARY_COLUMNS = ("dataset", "method", "metric", "mean", "std", "n")
DEFAULT_DIGITS = 4


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
    """What the reports need from a run directory."""

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


def safe_name(name: str) -> str:
    """File-name-safe form of a dataset name (same rule as the eval runner's folders)."""
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


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
# numbers and marks


def column_decimals(values, digits: int = DEFAULT_DIGITS) -> int:
    """Decimals that give the column's largest |value| ``digits`` significant digits (0..8)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    big = max(finite, default=0.0)
    if big == 0.0:
        return max(digits - 1, 0)
    return int(min(max(digits - 1 - math.floor(math.log10(big)), 0), 8))


def fmt_number(v, decimals: int) -> str | None:
    """``v`` with ``decimals`` decimals (never ``-0.000``), or None for a missing or non-finite value."""
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


def coverage(run: Run, ds: str, metrics=None) -> tuple[int | None, dict]:
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

    ``datasets``, ``metrics`` and ``methods`` select (a list or a comma-separated string, matched
    case-insensitively; default: all of the run, in run order). ``directions`` overrides the registry
    (metric label -> higher_is_better or None).
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


def row_methods(blocks: list[Block], run: Run) -> list[str]:
    """The table's rows: the methods present in any of ``blocks``, in the run's method order."""
    present = set().union(*[set(b.methods) for b in blocks]) if blocks else set()
    return [m for m in run.methods if m in present]
