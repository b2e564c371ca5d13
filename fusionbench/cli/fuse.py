"""``fusionbench fuse --method NAME --ir DIR --vi DIR --out DIR``."""
from __future__ import annotations

import click

from .options import batch_size_option, device_option, task_option


@click.command("fuse", short_help="Fuse folders of image pairs with a registered method.")
@click.option("--method", "-m", required=True, help="Method name (see `fusionbench methods`).")
@click.option("--ir", "--a", "a_dir", required=True, type=click.Path(), help="First sources (IR, CT/PET/SPECT, near, under).")
@click.option("--vi", "--b", "b_dir", required=True, type=click.Path(), help="Second sources (VIS, MRI, far, over).")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Output folder (<stem>.png per pair).")
@task_option("Task (selects per-task weights); default: the method's first.")
@device_option()
@click.option("--weights", "weights_path", type=click.Path(), help="Checkpoint file or folder (overrides the search path).")
@batch_size_option(4, help="Same-size pairs per forward pass.")
@click.option("--max-pixels", default=16_000_000, show_default=True, type=click.IntRange(1), help="Larger images are fused in tiles when the method allows it.")
@click.option("--skip-missing", is_flag=True, help="Fuse the pairs that exist even if some files have no counterpart.")
@click.option("--overwrite", is_flag=True, help="Re-fuse pairs whose output already exists.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE", help="Method option (e.g. -o rule=mean).")
def fuse(method, a_dir, b_dir, out_dir, task, device, weights_path, batch_size, max_pixels, skip_missing, overwrite, options):
    """Fuse every pair (matched by file stem) and write one image per pair.

    Outputs already in --out are kept, so a rerun resumes; each file is written atomically. A
    pair that fails is reported and the rest goes on; the exit code is 1 if any pair failed.
    """
    from pathlib import Path

    from ..device import pick_device
    from ..errors import DataError, UsageError
    from ..fusing import fuse_pairs, jobs_for, share_across_ranks, summarise
    from ..io import pair_folders
    from ..registry import get_method
    from ..weights import resolve

    info = get_method(method)
    if task and task not in info.tasks:
        raise UsageError(f"{info.display} does not support task {task!r} (supports: {', '.join(info.tasks)})")
    opts = parse_options(options)
    pairing = pair_folders({"--ir/--a": a_dir, "--vi/--b": b_dir}, skip_missing=skip_missing)
    for label, stems in pairing.missing.items():
        click.echo(f"warning: {len(stems)} file(s) without a counterpart in {label} skipped: {', '.join(stems[:8])}", err=True)
    from .. import distributed as D

    dev = D.rank_device(pick_device(device))  # under torchrun: one GPU per process
    ctx = D.init(dev)  # (no-op without torchrun)
    weights = resolve(info, task, weights_path) if info.factory else {}
    fuser = info.build(weights=weights, device=dev, task=task, **opts)
    from ..io import ensure_dir

    ensure_dir(out_dir)  # an unwritable --out fails now, before any fusing
    jobs = jobs_for([(s, *pairing.files[s]) for s in pairing.stems], Path(out_dir))
    is_done = (lambda j: False) if overwrite else None
    report = fuse_pairs(fuser, jobs, batch_size=batch_size, max_pixels=max_pixels, is_done=is_done,
                        progress=ctx.is_main, label=info.name, share=share_across_ranks)  # (torchrun: this rank's)
    if ctx.distributed:  # rank 0 reports for all
        reports = D.gather_objects(report)
        if not ctx.is_main:
            return
        report = _merge(reports)
        click.echo(f"{ctx.world_size} processes fused " + ", ".join(
            f"{len(r.done)} (rank {i})" for i, r in enumerate(reports)) + " pairs", err=True)
    click.echo(summarise(report), err=True)
    if not report.ok:
        raise DataError(f"{len(report.failed)} of {len(jobs)} pair(s) failed (listed above); the others are in {out_dir}")


def _merge(reports):
    """One report from every rank's."""
    from ..fusing import FuseReport

    out = FuseReport(skipped=list(reports[0].skipped))  # (every rank planned from the same outputs)
    for r in reports:
        out.done += r.done
        out.failed.update(r.failed)
        out.missing += r.missing
        for k, v in r.notes.items():
            out.notes.setdefault(k, []).extend(v)
    return out


def parse_options(options) -> dict:
    """KEY=VALUE strings to a dict, with ints/floats/bools converted."""
    import yaml

    from ..errors import UsageError

    out = {}
    for o in options:
        if "=" not in o:
            raise UsageError(f"--option {o!r}: expected KEY=VALUE")
        k, v = o.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out
