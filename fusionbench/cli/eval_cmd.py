"""``fusionbench eval``: the main job."""
from __future__ import annotations

from pathlib import Path

import click


def build_plan(datasets, pattern, results, device, weights_override=None, options=None):
    """Decide, per dataset, which methods run natively, which use a results folder, and which are skipped."""
    from ..registry import list_methods
    from ..runner.evaluate import MethodRun
    from ..weights import resolve, sha256sum
    from ..errors import WeightsError

    infos = list_methods(pattern)
    if pattern and pattern != "all" and not infos and not results:
        from ..errors import did_you_mean

        raise did_you_mean("method", pattern, [m.name for m in list_methods()])
    fusers: dict = {}
    skipped: dict[str, str] = {}
    plan = []
    results = dict(results or {})
    for ds in datasets:
        runs = []
        names_here = set()
        for info in infos:
            if ds.task not in info.tasks:
                continue
            given = next((d for k, d in results.items() if k.lower() in (info.name, info.display.lower())), None)
            if given is not None:
                runs.append(MethodRun(info.display, info.name, results_dir=given))
            elif info.factory is not None:
                try:
                    paths = resolve(info, ds.task, weights_override)
                except WeightsError as e:
                    skipped.setdefault((info.display, ds.name), f"needs weights: {e}")
                    continue
                wsha = {n: sha256sum(p) for n, p in paths.items()}

                def factory(task, info=info, paths=paths):
                    key = (info.name, task)
                    if key not in fusers:
                        fusers[key] = info.build(weights=paths, device=device, task=task, **(options or {}).get(info.name, {}))
                    return fusers[key]

                runs.append(MethodRun(info.display, info.name, fuser_factory=factory, weights=wsha))
            else:
                pub = _published(ds, info)
                if pub is None:
                    skipped.setdefault((info.display, ds.name), "results-folder only: no outputs given (--results "
                                       f"{info.name}=DIR); {info.results_howto}".strip())
                    continue
                runs.append(MethodRun(info.display, info.name, results_dir=pub))
            names_here.add(info.display.lower())
        # published outputs shipped with a dataset for methods the registry does not know
        if pattern in (None, "all"):
            for label, folder in sorted(getattr(ds, "published", {}).items()):
                if label.lower() not in names_here and not _known(label):
                    runs.append(MethodRun(label, label, results_dir=folder))
        for k, d in results.items():
            if not any(r.key == k.lower() or r.name.lower() == k.lower() for r in runs) and not _known(k):
                runs.append(MethodRun(k, k, results_dir=d))
        plan.append((ds, runs))
    return plan, _label_skips(skipped, plan)


def _label_skips(skipped: dict, plan) -> dict[str, str]:
    """Key skips by method, or by "method [dataset]" when the method runs on other datasets of the run."""
    ran = {r.name for _, runs in plan for r in runs}
    out: dict[str, str] = {}
    for (name, ds), why in skipped.items():
        out.setdefault(f"{name} [{ds}]" if name in ran else name, why)
    return out


def _published(ds, info):
    pub = getattr(ds, "published", {}) or {}
    for label, folder in pub.items():
        if label.lower() in (info.name, info.display.lower()):
            return folder
    return None


def _known(label: str) -> bool:
    from ..errors import UnknownNameError
    from ..registry import get_method

    try:
        get_method(label)
        return True
    except UnknownNameError:
        return False


@click.command("eval", short_help="Fuse, score and tabulate methods on datasets.")
@click.option("--methods", "pattern", default="all", show_default=True, help="'all' or comma-separated names/fnmatch patterns.")
@click.option("--data", "data", multiple=True, help="Dataset name (`fusionbench data list`) or folder; repeatable. Default: the bundled sample.")
@click.option("--metrics", default="EN,SD,SF,AG,SCD,SSIM", show_default=True, help="Comma-separated metric names (NAME@preset allowed) or 'all'.")
@click.option("--preset", default="cddfuse", show_default=True, type=click.Choice(["cddfuse", "vifb"]))
@click.option("--results", "results", multiple=True, metavar="NAME=DIR", help="Outputs of a method made elsewhere; repeatable.")
@click.option("--out", "out", type=click.Path(), help="Run folder. Default: runs/<dataset(s)> (untracked).")
@click.option("--device", default="auto", show_default=True)
@click.option("--dtype", default="auto", show_default=True, type=click.Choice(["auto", "float32", "float64"]),
              help="Arithmetic precision of the metrics; auto: each preset's own (cddfuse float32, vifb float64).")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1))
@click.option("--weights", "weights_path", type=click.Path(exists=True), help="Folder laid out <method>/<file> searched first.")
@click.option("--no-figures", is_flag=True, help="Write tables only.")
@click.option("--keep-going", is_flag=True,
              help="A method that cannot run (bad checkpoint, missing weights asked for by name, a crash) is left "
                   "out with a note and the exit code stays 0 (default: exit 1).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def eval_(pattern, data, metrics, preset, results, out, device, dtype, batch_size, weights_path, no_figures, keep_going,
          quiet):
    """Fuse every runnable method on every dataset, score, and write tables and figures.

    Outputs and scores are cached in the run folder (keyed by method, weight hashes and input
    content), so a rerun only does what changed. Methods that cannot run here are listed as skipped
    with the reason. Exit code 1 when any image failed (summary at the end).
    """
    from ..data import open_dataset
    from ..device import pick_device, pick_dtype
    from ..errors import DataError
    from ..metrics import parse_metrics
    from ..runner.evaluate import parse_results_args, run_eval

    dev, dt = pick_device(device), pick_dtype(dtype)
    requests = parse_metrics(metrics, preset=preset)
    from ..metrics.scoring import tune_allocator

    tune_allocator()  # a process-wide malloc setting: the command's choice, never the library's
    datasets = [open_dataset(d) for d in (data or ("sample",))]
    res = parse_results_args(results)
    plan, skipped = build_plan(datasets, pattern, res, dev, weights_path)
    run_dir = Path(out) if out else Path("runs") / "+".join(d.name for d in datasets)
    asked = _asked_by_name(pattern)
    errors = {k: v for k, v in skipped.items() if k.split(" [")[0].lower() in asked and v.startswith("needs weights")}
    skipped = {k: v for k, v in skipped.items() if k not in errors}
    _print_skipped(skipped)
    result = run_eval(plan, requests, run_dir, preset, dev, dt, batch_size=batch_size, progress=not quiet,
                      skipped=skipped, errors=errors, write_reports=True, figures=not no_figures)
    for msg, stems in result.notes.items():
        click.echo(f"note: {msg}: {', '.join(stems[:8])}{' ...' if len(stems) > 8 else ''}", err=True)
    for key, stems in result.incomplete.items():
        click.echo(f"note: {key} covers {len(stems)} image(s) fewer than the dataset (results folder has no output for them)", err=True)
    _print_summary(run_dir)
    click.echo(f"run folder: {run_dir}", err=True)
    for name, why in result.errors.items():
        click.echo(f"could not run {name}: {why}", err=True)
    if result.errors and not keep_going:
        raise DataError(f"{len(result.errors)} method(s) could not run (listed above) and are left out of the tables; "
                        f"fix them, or pass --keep-going to accept the tables without them")
    if result.errors:
        click.echo(f"left out (--keep-going): {', '.join(result.errors)}", err=True)
    if not result.ok:
        for (d, m), fails in result.failed.items():
            for stem, msg in sorted(fails.items()):
                click.echo(f"failed {d}/{m}/{stem}: {msg}", err=True)
        n = sum(len(v) for v in result.failed.values())
        raise DataError(f"{n} image(s) failed (listed above); everything else is in {run_dir}")


def _asked_by_name(pattern: str | None) -> set[str]:
    """Method names (lower case, as displayed or registered) the user named exactly, not through 'all' or a
    wildcard: for those, missing weights are an error, not a skip."""
    if not pattern or pattern == "all":
        return set()
    from ..errors import UnknownNameError
    from ..registry import get_method

    out = set()
    for part in pattern.split(","):
        part = part.strip()
        if part and not any(c in part for c in "*?["):
            try:
                info = get_method(part)
            except UnknownNameError:
                continue
            out |= {info.name.lower(), info.display.lower()}
    return out


def _print_skipped(skipped: dict) -> None:
    """One line per reason class; the full reasons go to provenance.json."""
    groups: dict[str, list[str]] = {}
    for name, why in skipped.items():
        kind = why.split(":", 1)[0] if why.startswith(("needs weights", "results-folder only")) else "cannot run"
        groups.setdefault(kind, []).append(name)
    hints = {
        "needs weights": "`fusionbench methods -v` says where to get them; FUSIONBENCH_WEIGHTS=DIR or --weights DIR",
        "results-folder only": "pass outputs of the official code with --results NAME=DIR; `fusionbench methods -v` says how",
    }
    for kind, names in groups.items():
        hint = hints.get(kind, "reasons in provenance.json")
        click.echo(f"skipped ({kind}; {hint}): {', '.join(names)}", err=True)


def _print_summary(run_dir: Path) -> None:
    md = sorted(Path(run_dir).glob("table_*.md"))
    for p in md:
        click.echo(p.read_text(), err=True)
