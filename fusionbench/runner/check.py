"""Score regression check: compare a run's scores with a stored baseline.

The baseline is a CSV in the run's own long format, ``dataset,method,image,metric,value`` (what
``--update`` writes), or in summary format ``dataset,method,metric,mean`` (then the run's summary
means are compared). An entry passes when::

    |now - baseline| <= atol + rtol * |baseline|        (numpy.isclose convention)

with per-metric overrides of rtol (and optionally atol): ``SSIM=1e-3`` or ``SSIM=1e-3:1e-6``; a key
without ``@`` also applies to its preset variants (``SSIM`` covers ``SSIM@vifb``). NaN equals NaN; NaN
against a number is a regression. Entries missing on either side are failures, except entries only in
the run when ``allow_new`` is set.

Exit code of ``fusionbench check``: 1 when anything moved beyond tolerance or is missing (as the issue
asks; the CLI's generic "check failed" code 3 is not used), 0 otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, UsageError
from ..io import atomic_path
from .rundir import SCORE_COLUMNS, read_long_csv

LONG_KEYS = ("dataset", "method", "image", "metric")
SUMMARY_KEYS = ("dataset", "method", "metric")


def parse_per_metric(spec) -> dict[str, tuple[float, float | None]]:
    """``"SSIM=1e-3,MI=1e-3:1e-8"`` -> {"ssim": (1e-3, None), "mi": (1e-3, 1e-8)} (rtol, atol)."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        items = spec.items()
    else:
        items = []
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise UsageError(f"--per-metric {part!r}: expected METRIC=RTOL or METRIC=RTOL:ATOL")
            items.append(tuple(s.strip() for s in part.split("=", 1)))
    out = {}
    for name, val in items:
        if isinstance(val, (tuple, list)):
            r, a = val
        else:
            r, _, a = str(val).partition(":")
        try:
            r = float(r)
            a = float(a) if a not in ("", None) else None
        except ValueError:
            raise UsageError(f"--per-metric {name}={val}: tolerances must be numbers") from None
        if r < 0 or (a is not None and a < 0) or not math.isfinite(r):
            raise UsageError(f"--per-metric {name}={val}: tolerances must be >= 0")
        out[str(name).lower()] = (r, a)
    return out


def tolerance_for(metric: str, rtol: float, atol: float, per_metric: dict) -> tuple[float, float]:
    low = metric.lower()
    hit = per_metric.get(low) or per_metric.get(low.split("@", 1)[0])
    if hit is None:
        return rtol, atol
    return hit[0], (atol if hit[1] is None else hit[1])


@dataclass
class CheckResult:
    level: str  # "scores" or "summary"
    keys: tuple
    compared: int = 0
    changed: int = 0  # differ at all but within tolerance
    moved: list = field(default_factory=list)  # dicts: keys..., baseline, now, abs_diff, rel_diff, rtol, atol
    missing_in_run: list = field(default_factory=list)  # key tuples
    missing_in_baseline: list = field(default_factory=list)
    allow_new: bool = False

    @property
    def ok(self) -> bool:
        return not self.moved and not self.missing_in_run and (self.allow_new or not self.missing_in_baseline)


def _key_frame(df, keys, value_col, source):
    dup = df.duplicated(list(keys))
    if dup.any():
        r = df[dup].iloc[0]
        raise DataError(f"{source}: duplicate entry {'/'.join(str(r[k]) for k in keys)}")
    return {tuple(r[:-1]): float(r[-1]) for r in df[list(keys) + [value_col]].itertuples(index=False, name=None)}


def _run_table(run: Path, level: str):
    """The run's entries at ``level`` from a run folder or a CSV file."""
    run = Path(run)
    if run.is_dir():
        if level == "scores":
            p = run / "scores.csv"
            if not p.is_file():
                raise DataError(f"{run}: no scores.csv (is this a `fusionbench eval` run folder?)")
            return read_long_csv(p, SCORE_COLUMNS), p
        p = run / "summary.csv"
        if p.is_file():
            return read_long_csv(p, SUMMARY_KEYS + ("mean",), value_cols=("mean", "std", "n")), p
        if (run / "scores.csv").is_file():
            from .rundir import summarise

            return summarise(read_long_csv(run / "scores.csv", SCORE_COLUMNS)), run / "scores.csv"
        raise DataError(f"{run}: neither summary.csv nor scores.csv found")
    if run.is_file():
        if level == "scores":
            return read_long_csv(run, SCORE_COLUMNS), run
        return read_long_csv(run, SUMMARY_KEYS + ("mean",), value_cols=("mean", "std", "n")), run
    raise UsageError(f"{run}: no such run folder or file")


def baseline_level(path: Path) -> str:
    import pandas as pd

    try:
        cols = list(pd.read_csv(path, nrows=0).columns)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read baseline CSV ({e.__class__.__name__})") from None
    if set(SCORE_COLUMNS) <= set(cols):
        return "scores"
    if set(SUMMARY_KEYS + ("mean",)) <= set(cols):
        return "summary"
    raise DataError(f"{path}: baseline needs columns {','.join(SCORE_COLUMNS)} (or {','.join(SUMMARY_KEYS)},mean); "
                    f"found {','.join(map(str, cols)) or 'none'}")


def compare(run, baseline, rtol: float = 1e-4, atol: float = 1e-6, per_metric=None, allow_new: bool = False,
            level: str | None = None) -> CheckResult:
    """Compare a run (folder or CSV) with a baseline CSV; see the module docstring for the rule."""
    if rtol < 0 or atol < 0:
        raise UsageError("--rtol and --atol must be >= 0")
    per_metric = parse_per_metric(per_metric)
    baseline = Path(baseline)
    if not baseline.is_file():
        raise DataError(f"{baseline}: baseline not found (write one with `fusionbench check RUN_DIR --baseline {baseline} --update`)")
    level = level or baseline_level(baseline)
    if level == "scores":
        keys, col = LONG_KEYS, "value"
        base_df = read_long_csv(baseline, SCORE_COLUMNS)
    elif level == "summary":
        keys, col = SUMMARY_KEYS, "mean"
        base_df = read_long_csv(baseline, SUMMARY_KEYS + ("mean",), value_cols=("mean", "std", "n"))
    else:
        raise UsageError(f"unknown check level {level!r}; choose scores or summary")
    run_df, run_src = _run_table(run, level)
    now = _key_frame(run_df, keys, col, run_src)
    base = _key_frame(base_df, keys, col, baseline)
    res = CheckResult(level, keys, allow_new=allow_new)
    res.missing_in_run = [k for k in base if k not in now]
    res.missing_in_baseline = [k for k in now if k not in base]
    metric_i = keys.index("metric")
    for k, b in base.items():
        if k not in now:
            continue
        n = now[k]
        res.compared += 1
        if (math.isnan(b) and math.isnan(n)) or b == n:
            continue
        r, a = tolerance_for(k[metric_i], rtol, atol, per_metric)
        diff = abs(n - b) if not (math.isnan(b) or math.isnan(n)) else math.nan
        within = math.isfinite(diff) and diff <= a + r * abs(b)
        if within:
            res.changed += 1
            continue
        rel = diff / abs(b) if (b != 0.0 and math.isfinite(diff)) else math.inf
        res.moved.append({**dict(zip(keys, k)), "baseline": b, "now": n, "abs_diff": diff, "rel_diff": rel,
                          "rtol": r, "atol": a})
    res.moved.sort(key=lambda d: tuple(d[x] for x in keys))
    return res


def _g(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.8g}"


def format_report(res: CheckResult, max_rows: int = 100) -> str:
    """Plain-text table of what moved and lists of what is missing."""
    lines = []
    if res.moved:
        head = list(res.keys) + ["baseline", "now", "rel_diff", "tol"]
        rows = []
        for d in res.moved[:max_rows]:
            rows.append([str(d[k]) for k in res.keys] + [_g(d["baseline"]), _g(d["now"]), _g(d["rel_diff"]),
                                                          f"{d['rtol']:g}/{d['atol']:g}"])
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        lines.append(f"moved beyond tolerance ({len(res.moved)}; tol = rtol/atol):")
        lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if len(res.moved) > max_rows:
            lines.append(f"  ... and {len(res.moved) - max_rows} more")
    for title, items in (("in the baseline but missing from the run", res.missing_in_run),
                         ("in the run but missing from the baseline" + (" (allowed)" if res.allow_new else ""),
                          res.missing_in_baseline)):
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += ["  " + "/".join(map(str, k)) for k in items[:max_rows]]
            if len(items) > max_rows:
                lines.append(f"  ... and {len(items) - max_rows} more")
    return "\n".join(lines) + ("\n" if lines else "")


def summary_line(res: CheckResult) -> str:
    verdict = "OK" if res.ok else "FAILED"
    return (f"check {verdict}: {res.compared} {res.level} entries compared, {len(res.moved)} moved beyond tolerance, "
            f"{res.changed} changed within tolerance, {len(res.missing_in_run)} missing from the run, "
            f"{len(res.missing_in_baseline)} missing from the baseline")


def update_baseline(run, baseline, level: str = "scores") -> int:
    """Write the run's scores (or summary) as the new baseline, atomically. Returns the row count."""
    if level not in ("scores", "summary"):
        raise UsageError(f"unknown check level {level!r}; choose scores or summary")
    df, src = _run_table(run, level)
    keys = LONG_KEYS if level == "scores" else SUMMARY_KEYS
    _key_frame(df, keys, "value" if level == "scores" else "mean", src)  # refuses duplicates
    cols = list(SCORE_COLUMNS) if level == "scores" else list(SUMMARY_KEYS) + ["mean"]
    df = df[cols].sort_values(list(keys), kind="stable")
    with atomic_path(baseline) as tmp:
        df.to_csv(tmp, index=False, na_rep="nan")  # floats as repr: exact round trip
    return len(df)
