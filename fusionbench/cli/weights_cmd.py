"""``fusionbench weights list|where|download|verify``."""
from __future__ import annotations

import click

from .options import task_option


@click.group("weights")
def weights():
    """Find, download and verify method checkpoints.

    Lookup order: --weights PATH, $FUSIONBENCH_WEIGHTS/<method>/<file>, the user cache
    (`fusionbench weights where`), then weights bundled with an installed package.
    """


@weights.command("where")
def where():
    """Print the cache folder that downloads go to."""
    from ..weights import weights_cache

    click.echo(str(weights_cache()))


@weights.command("list")
@click.argument("pattern", required=False)
def list_(pattern):
    """Every weight file of every method, with its status here."""
    from ..registry import list_methods
    from ..weights import candidates

    for m in list_methods(pattern):
        for wf in m.weights:
            found = next((c for c in candidates(m, wf) if c.is_file()), None)
            state = f"found: {found}" if found else ("downloadable" if wf.url else "missing (no official URL)")
            task = f" [{wf.task}]" if wf.task else ""
            click.echo(f"{m.name}{task}: {wf.name}  {state}")


@weights.command("download")
@click.argument("name")
@task_option("Only the checkpoint for this task (methods with per-task weights).")
@click.option("--force", is_flag=True, help="Download even if a verified copy exists.")
def download_cmd(name, task, force):
    """Fetch NAME's checkpoints from their official URL into the cache, verifying sha256."""
    from ..registry import get_method
    from ..weights import download

    info = get_method(name)
    for p in download(info, task=task, force=force):
        click.echo(f"{info.name}: {p}")


@weights.command("verify")
@click.argument("name")
@click.option("--weights", "override", type=click.Path(), help="File or folder to check instead of the search path.")
def verify(name, override):
    """Check the sha256 of NAME's resolved checkpoints (exit 1 on a mismatch)."""
    from ..errors import WeightsError
    from ..registry import get_method
    from ..weights import resolve, sha256sum

    info = get_method(name)
    bad = []
    for task in info.tasks if any(w.task for w in info.weights) else [None]:
        for fname, path in resolve(info, task, override).items():
            wf = next(w for w in info.weights if w.name == fname)
            got = sha256sum(path)
            ok = not wf.sha256 or got == wf.sha256
            click.echo(f"{'ok ' if ok else 'BAD'} {path} sha256 {got}")
            if not ok:
                bad.append(f"{path}: sha256 {got}, expected {wf.sha256}")
    if bad:
        raise WeightsError("; ".join(bad))
