"""``fusionbench eval``: the main job.

A thin command: it parses the options, plans the run with :func:`fusionbench.runner.plan.build_plan`
(which methods run on which dataset, weights, published outputs, skips), runs it with
:func:`fusionbench.runner.evaluate.run_eval` and reports on the console.
"""
from __future__ import annotations

from pathlib import Path

import click

from .options import batch_size_option, device_option, dtype_option, preset_option, quiet_option


@click.command("eval", short_help="Fuse, score and tabulate methods on datasets.")
@click.option("--methods", "pattern", default="all", show_default=True, help="'all' or comma-separated names/fnmatch patterns.")
@click.option("--data", "data", multiple=True, help="Dataset name (`fusionbench data list`) or folder; repeatable. Default: the bundled sample.")
@click.option("--metrics", default="EN,SD,SF,AG,SCD,SSIM", show_default=True, help="Comma-separated metric names (NAME@preset allowed) or 'all'.")
@preset_option()
@click.option("--results", "results", multiple=True, metavar="NAME=DIR", help="Outputs of a method made elsewhere; repeatable.")
@click.option("--out", "out", type=click.Path(), help="Run folder. Default: runs/<dataset(s)> (untracked).")
@device_option()
@dtype_option()
@batch_size_option(4)
@click.option("--weights", "weights_path", type=click.Path(exists=True), help="Folder laid out <method>/<file> searched first.")
@click.option("--no-figures", is_flag=True, help="Write tables only.")
@click.option("--keep-going", is_flag=True,
              help="A method that cannot run (bad checkpoint, missing weights asked for by name, a crash) is left "
                   "out with a note and the exit code stays 0 (default: exit 1).")
@quiet_option("No progress bars.")
def eval_(pattern, data, metrics, preset, results, out, device, dtype, batch_size, weights_path, no_figures, keep_going,
          quiet):
    """Fuse every runnable method on every dataset, score, and write tables and figures.

    Outputs and scores are cached in the run folder (keyed by method, weight hashes and input
    content), so a rerun only does what changed. Methods that cannot run here are listed as skipped
    with the reason. Exit code 1 when any image failed (summary at the end).
    """
    from .. import distributed as D
    from ..data import open_dataset
    from ..device import pick_device, pick_dtype
    from ..errors import DataError
    from ..metrics import parse_metrics
    from ..runner.evaluate import parse_results_args, run_eval
    from ..runner.plan import build_plan, split_skips

    dev, dt = D.rank_device(pick_device(device)), pick_dtype(dtype)  # under torchrun: one GPU per process
    ctx = D.init(dev)  # (no-op without torchrun)
    requests = parse_metrics(metrics, preset=preset)
    from ..metrics.scoring import tune_allocator

    tune_allocator()  # a process-wide malloc setting: the command's choice, never the library's
    datasets = [open_dataset(d) for d in (data or ("sample",))]
    res = parse_results_args(results)
    plan, skipped = build_plan(datasets, pattern, res, dev, weights_path)
    run_dir = Path(out) if out else Path("runs") / "+".join(d.name for d in datasets)
    skipped, errors = split_skips(skipped, pattern)  # missing weights of a method named exactly: an error
    if ctx.is_main:
        _print_skipped(skipped)
    result = run_eval(plan, requests, run_dir, preset, dev, dt, batch_size=batch_size, progress=not quiet,
                      skipped=skipped, errors=errors, write_reports=True, figures=not no_figures)
    if not ctx.is_main:  # the other ranks fused their share; rank 0 scored and reports
        return
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
