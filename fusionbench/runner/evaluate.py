"""``fusionbench eval``: fuse every method on every dataset, score, tabulate, plot.

Layout of a run directory::

    RUN_DIR/
      fused/<dataset>/<method>/<stem>.png   fused outputs (cache; results-folder methods are copied in)
      fused/<dataset>/<method>/cache.json   per stem: cache key (method, weights sha256, options, inputs)
                                            and the output's sha256 (a damaged file is detected and redone)
      scores/<dataset>/<method>.csv         per-image scores with the key they were computed from
      scores.csv                            long format: dataset,method,image,metric,value
      summary.csv                           dataset,method,metric,mean,std,n
      provenance.json                       versions, git commit, device, preset, weight hashes, times, skips
      table_*.{csv,tex,md}, figures/        written by fusionbench.runner.tables / figures

Everything is written atomically and as soon as it is computed, so killing eval loses nothing and
a rerun does only what changed. Two runs with different RUN_DIRs share nothing.
"""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import FusionBenchError, UsageError
from ..fusing import FuseReport, PairJob, fuse_pairs
from ..io import atomic_path, ensure_dir, remove_stale_temps, write_text_atomic
from ..weights import sha256sum

CACHE_VERSION = 1


@dataclass
class MethodRun:
    """A method as it takes part in a run: runnable (fuser) or a folder of given outputs."""

    name: str  # display name used in tables
    key: str  # registry name or results folder label
    fuser_factory: object = None  # callable(task) -> Fuser, or None
    results_dir: Path | None = None
    weights: dict = field(default_factory=dict)  # file name -> sha256
    options: dict = field(default_factory=dict)


@dataclass
class EvalResult:
    run_dir: Path
    skipped: dict = field(default_factory=dict)  # method -> reason (could not run here; not asked for by name)
    errors: dict = field(default_factory=dict)  # "method [dataset]" -> why it could not run (bad checkpoint, crash)
    failed: dict = field(default_factory=dict)  # (dataset, method) -> {stem: message}
    incomplete: dict = field(default_factory=dict)  # "dataset/method" -> stems a results folder lacks
    notes: dict = field(default_factory=dict)  # "dataset/method: observation" -> stems (degenerate inputs)
    n_scores: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def _hash_files(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(sha256sum(p).encode())
    return h.hexdigest()


class _FileHashes:
    """sha256 of input files, computed once per run."""

    def __init__(self):
        self._memo: dict[Path, str] = {}

    def __call__(self, p: Path) -> str:
        p = Path(p)
        if p not in self._memo:
            self._memo[p] = sha256sum(p)
        return self._memo[p]


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def fuse_method(run: MethodRun, dataset, out_dir: Path, hashes: _FileHashes, task: str, batch_size: int, progress: bool,
                share=None) -> FuseReport:
    """Fuse (or collect) ``run``'s outputs for ``dataset`` into ``out_dir`` with a hash-keyed cache.

    ``share``: picks this process's batches under torchrun (:func:`fusionbench.fusing.share_across_ranks`)."""
    ensure_dir(out_dir)
    # one small record per finished output, written atomically right after the output itself: a kill -9
    # loses at most the batch in flight (cache.json of older runs is still read)
    entries = out_dir / ".cache"
    cache = _read_json(out_dir / "cache.json", {})
    base = json.dumps({"v": CACHE_VERSION, "method": run.key, "weights": run.weights, "options": run.options, "task": task}, sort_keys=True)

    def key_for(pair) -> str:
        src = run.results_dir and _results_file(run.results_dir, pair.stem)
        extra = hashes(src) if src else ""
        return hashlib.sha256(f"{base}|{hashes(pair.a)}|{hashes(pair.b)}|{extra}".encode()).hexdigest()

    pairs = dataset.pairs
    jobs, keys = [], {}
    for pair in pairs:
        keys[pair.stem] = key_for(pair)
        jobs.append(PairJob(pair.stem, Path(pair.a), Path(pair.b), out_dir / f"{pair.stem}.png"))

    def is_done(job: PairJob) -> bool:
        ent = _read_json(entries / f"{job.stem}.json", None) or cache.get(job.stem)
        return bool(ent and ent.get("key") == keys[job.stem] and job.out.is_file() and hashes(job.out) == ent.get("out"))

    for pair in pairs:  # cache records half-written by a killed earlier run (under torchrun: before any rank
        remove_stale_temps(entries / f"{pair.stem}.json")  # writes, see share_across_ranks)

    def remember(job: PairJob) -> None:
        hashes._memo.pop(job.out, None)
        write_text_atomic(entries / f"{job.stem}.json", json.dumps({"key": keys[job.stem], "out": hashes(job.out)}))

    report = FuseReport()
    if run.results_dir is not None:
        for job in jobs:
            if is_done(job):
                report.skipped.append(job.stem)
                continue
            src = _results_file(run.results_dir, job.stem)
            if src is None:  # partial results folders are common (published subsets): not an error
                report.missing.append(job.stem)
                continue
            _copy_as_png(src, job.out)
            remember(job)
            report.done.append(job.stem)
    else:
        fuser = run.fuser_factory(task)
        report = fuse_pairs(fuser, jobs, batch_size=batch_size, is_done=is_done, on_written=remember,
                            progress=progress, label=f"{dataset.name}/{run.name}", share=share)
    return report


def _results_file(folder: Path, stem: str) -> Path | None:
    from ..io import IMAGE_EXTS

    for ext in IMAGE_EXTS + tuple(e.upper() for e in IMAGE_EXTS):
        p = Path(folder) / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _copy_as_png(src: Path, dest: Path) -> None:
    if src.suffix.lower() == ".png":
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    else:  # decode once and store losslessly, so every method's outputs are read the same way
        from ..io import read_image, write_image

        write_image(dest, read_image(src))


def score_method(dataset, method_name: str, fused_dir: Path, stems, requests, score_dir: Path, hashes: _FileHashes,
                 device, dtype, batch_size: int, progress: bool, preset: str, decode_cache=None):
    """Score the fused outputs of one method on one dataset, reusing cached per-image scores.

    ``decode_cache``: a :class:`~fusionbench.metrics.scoring.DecodeCache` shared by the dataset's
    methods, so that its sources are decoded once for all of them."""
    import pandas as pd

    from ..metrics.scoring import score_files

    cache_csv = score_dir / f"{_safe(method_name)}.csv"
    journal = score_dir / f".{_safe(method_name)}.journal.csv"  # rows of this call, flushed per batch
    labels = [r.label for r in requests]
    parts = []
    for path in (cache_csv, journal):
        try:
            if path.is_file():
                parts.append(pd.read_csv(path, dtype={"image": str, "key": str}, on_bad_lines="skip"))
        except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError):  # damaged: recompute
            pass
    cols = ["image", "metric", "value", "key"]
    parts = [t for t in parts if set(cols) <= set(t.columns)]  # (a damaged file lacks them: ignored)
    old = pd.concat([t[cols] for t in parts], ignore_index=True).dropna(subset=["key"]) if parts else None
    if old is not None:  # a line cut by a kill may have left text in the value column
        old["value"] = pd.to_numeric(old["value"], errors="coerce")
    by_stem = {p.stem: p for p in dataset.pairs}
    keys = {}
    for s in stems:
        f = fused_dir / f"{s}.png"
        keys[s] = hashlib.sha256(f"{hashes(f)}|{hashes(by_stem[s].a)}|{hashes(by_stem[s].b)}|{preset}|{_dtype_name(dtype, requests)}".encode()).hexdigest()
    keep = []
    if old is not None and {"image", "metric", "value", "key"} <= set(old.columns):
        old = old[old["metric"].isin(labels)]
        good = old[old.apply(lambda r: keys.get(r["image"]) == r["key"], axis=1)]
        good = good.drop_duplicates(subset=["image", "metric"], keep="last")  # (cache and journal may overlap)
        complete = good.groupby("image")["metric"].nunique()
        done = set(complete[complete == len(labels)].index)
        keep = [good[good["image"].isin(done)]]
    else:
        done = set()
    todo = [s for s in stems if s not in done]
    rows, failed = [], {}
    if todo:
        import csv

        triples = [(s, fused_dir / f"{s}.png", by_stem[s].a, by_stem[s].b) for s in todo]
        ensure_dir(score_dir)
        fresh = not journal.is_file()
        with open(journal, "a", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            if fresh:
                w.writerow(["image", "metric", "value", "key"])
            for stem, values, err in score_files(triples, requests, device=device, dtype=dtype,
                                                 batch_size=batch_size, progress=progress,
                                                 label=f"scoring {dataset.name}/{method_name}",
                                                 decode_cache=decode_cache):
                if err:
                    failed[stem] = err
                    continue
                new_rows = [{"image": stem, "metric": k, "value": float(v), "key": keys[stem]} for k, v in values.items()]
                w.writerows([[r["image"], r["metric"], repr(r["value"]), r["key"]] for r in new_rows])
                fh.flush()  # a kill -9 now loses at most the image in flight
                rows += new_rows
    new = pd.DataFrame(rows, columns=["image", "metric", "value", "key"])
    table = pd.concat([t for t in keep + [new] if len(t)] or [new], ignore_index=True)
    table["value"] = table["value"].astype("float64")  # (an empty frame would make the column object)
    with atomic_path(cache_csv) as tmp:
        table.to_csv(tmp, index=False)
    journal.unlink(missing_ok=True)
    return table, failed


def _backend(device, requests) -> dict:
    """Which code computed the scores (native CPU kernels or eager torch, the device): provenance."""
    from ..metrics.scoring import backend

    return backend(device, tuple(dict.fromkeys(r.preset for r in requests)))


def _dtype_name(dtype, requests) -> str:
    """The precision of a run: "float32", or for ``--dtype auto`` each preset's, e.g. "auto (cddfuse float32)"."""
    if dtype is not None:
        return str(dtype).replace("torch.", "")
    from ..metrics.presets import get_preset

    used = dict.fromkeys(r.preset for r in requests)
    return "auto (" + ", ".join(f"{p} {get_preset(p).default_dtype}" for p in used) + ")"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


def run_eval(plan, requests, run_dir: Path, preset: str, device, dtype, batch_size: int = 4, progress: bool = True,
             skipped: dict | None = None, write_reports: bool = True, figures: bool = True,
             errors: dict | None = None) -> EvalResult:
    """Fuse, score and report.

    ``plan`` is a list of ``(dataset, [MethodRun, ...])``; ``skipped`` carries methods excluded up
    front (label -> reason), which are listed in provenance.json and do not stop the run.
    """
    import pandas as pd
    import torch

    from .. import distributed as D

    run_dir = Path(run_dir)
    ctx = D.init(device)  # under torchrun: join the process group (no-op otherwise)
    ensure_dir(run_dir, "run folder")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result = EvalResult(run_dir, skipped=dict(skipped or {}), errors=dict(errors or {}))
    hashes = _FileHashes()
    per_rank = None
    if ctx.distributed:  # every rank fuses its share; rank 0 then does the rest as a single process would
        mine = _fuse_share(plan, run_dir, hashes, batch_size, progress and ctx.is_main)
        D.barrier()
        per_rank = D.gather_objects(mine)
        if not ctx.is_main:
            return result
    for name in ("scores.csv", "summary.csv", "provenance.json"):  # temporaries of a killed earlier run
        remove_stale_temps(run_dir / name)
    frames, ds_meta, used = [], {}, {}
    from ..metrics.scoring import DecodeCache

    for ds, runs in plan:
        sources = DecodeCache()  # the dataset's decoded sources, shared by its methods' scoring
        ds_meta[ds.name] = {
            "task": ds.task, "a_label": ds.a_label, "b_label": ds.b_label,
            "a_dir": str(Path(ds.pairs[0].a).parent), "b_dir": str(Path(ds.pairs[0].b).parent),
            "root": str(ds.root), "stems": [p.stem for p in ds.pairs],
        }
        for m in runs:
            fused_dir = run_dir / "fused" / _safe(ds.name) / _safe(m.name)
            try:
                rep = fuse_method(m, ds, fused_dir, hashes, ds.task, batch_size, progress)
            except FusionBenchError as e:  # e.g. an unusable checkpoint: the other methods go on, and it is reported
                result.errors[f"{m.name} [{ds.name}]"] = str(e)
                continue
            except Exception as e:  # noqa: BLE001 - a method's own crash must not lose the other methods' work
                first = (str(e).splitlines() or [""])[0][:300]
                result.errors[f"{m.name} [{ds.name}]"] = f"crashed ({type(e).__name__}: {first})"
                continue
            if rep.failed:
                result.failed.setdefault((ds.name, m.name), {}).update(rep.failed)
            for msg, stems in getattr(rep, "notes", {}).items():
                result.notes.setdefault(f"{ds.name}/{m.name}: {msg}", []).extend(stems)
            if rep.missing:
                result.incomplete[f"{ds.name}/{m.name}"] = rep.missing
            stems = [p.stem for p in ds.pairs if p.stem not in rep.failed and p.stem not in rep.missing]
            if not stems:
                continue
            entry = used.setdefault(m.name, {"registry": m.key, "weights_sha256": {}, "options": m.options, "results_dirs": {}})
            entry["weights_sha256"].update(m.weights)  # per-task checkpoints: every file the run used
            if m.results_dir:
                used[m.name]["results_dirs"][ds.name] = str(m.results_dir)
            table, sfail = score_method(ds, m.name, fused_dir, stems, requests, run_dir / "scores" / _safe(ds.name), hashes,
                                        device, dtype, batch_size, progress, preset, decode_cache=sources)
            if sfail:
                result.failed.setdefault((ds.name, m.name), {}).update(sfail)
            t = table[["image", "metric", "value"]].copy()
            t.insert(0, "method", m.name)
            t.insert(0, "dataset", ds.name)
            frames.append(t)
    cols = ["dataset", "method", "image", "metric", "value"]
    scores = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    order = {r.label: i for i, r in enumerate(requests)}
    scores = scores.assign(_o=scores["metric"].map(order)).sort_values(["dataset", "method", "image", "_o"], kind="stable").drop(columns="_o")
    with atomic_path(run_dir / "scores.csv") as tmp:
        scores.to_csv(tmp, index=False, float_format="%.10g")
    summary = summarise_scores(scores, [r.label for r in requests])
    with atomic_path(run_dir / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False, float_format="%.10g")
    result.n_scores = len(scores)
    prov = {
        "fusionbench": __version__, "git_commit": _git_commit(), "python": platform.python_version(),
        "torch": torch.__version__, "platform": platform.platform(), "device": str(device),
        "dtype": _dtype_name(dtype, requests), "preset": preset, "metrics": [r.label for r in requests],
        "datasets": ds_meta, "methods": used, "skipped": result.skipped, "errors": result.errors,
        "failed": {f"{d}/{m}": v for (d, m), v in result.failed.items()},
        "incomplete": result.incomplete, "notes": result.notes, "metric_backend": _backend(device, requests),
        "world_size": ctx.world_size,
        "pairs_fused_per_rank": per_rank,
        "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
    }
    write_text_atomic(run_dir / "provenance.json", json.dumps(prov, indent=2))
    if write_reports and len(scores):
        from .figures import write_figures
        from .tables import write_tables

        write_tables(run_dir)
        if figures:
            write_figures(run_dir)
    return result


def _fuse_share(plan, run_dir: Path, hashes: _FileHashes, batch_size: int, progress: bool) -> dict[str, int]:
    """Under torchrun: fuse this rank's share of every dataset's batches (whole batches of the single-process
    plan, balanced by pixels: :func:`fusionbench.fusing.share_across_ranks`) for every runnable method.
    Failures are not reported here: rank 0's pass over everything afterwards retries what is missing and
    reports it. Returns ``{"dataset/method": pairs fused}``."""
    from ..fusing import share_across_ranks

    fused: dict[str, int] = {}
    for ds, runs in plan:
        for m in runs:
            if m.results_dir is not None:  # published outputs: rank 0 copies them (no computation)
                continue
            try:
                rep = fuse_method(m, ds, run_dir / "fused" / _safe(ds.name) / _safe(m.name), hashes, ds.task,
                                  batch_size, progress, share=share_across_ranks)
            except Exception:  # noqa: BLE001 - reported by rank 0's pass, which tries again
                continue
            fused[f"{ds.name}/{m.name}"] = len(rep.done)
    return fused


def summarise_scores(scores, metric_order):
    import pandas as pd

    if scores.empty:
        return pd.DataFrame(columns=["dataset", "method", "metric", "mean", "std", "n"])
    g = scores.groupby(["dataset", "method", "metric"], sort=False)["value"]
    s = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "n": g.count()}).reset_index()
    order = {m: i for i, m in enumerate(metric_order)}
    return s.assign(_o=s["metric"].map(order)).sort_values(["dataset", "method", "_o"]).drop(columns="_o")


def parse_results_args(items) -> dict[str, Path]:
    out = {}
    for it in items or ():
        if "=" not in it:
            raise UsageError(f"--results {it!r}: expected NAME=DIR")
        name, d = it.split("=", 1)
        p = Path(d)
        if not p.is_dir():
            raise UsageError(f"--results {name}={d}: no such folder")
        out[name.strip()] = p
    return out
