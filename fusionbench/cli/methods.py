"""``fusionbench methods [PATTERN] [--task T] [--json]``."""
from __future__ import annotations

import json

import click

from .options import task_option


def method_rows(pattern=None, task=None):
    from ..registry import list_methods
    from ..weights import status

    rows = []
    for m in list_methods(pattern, task):
        st, detail = status(m)
        rows.append({
            "name": m.name,
            "display": m.display,
            "kind": m.kind,
            "tasks": list(m.tasks),
            "status": st,
            "detail": detail,
            "paper": m.paper.cite() if m.paper else "",
            "paper_url": m.paper.url if m.paper else "",
            "code": m.code,
            "code_licence": m.code_licence,
            "inputs": m.inputs,
            "colour": m.colour,
            "weights": [
                {"file": w.name, "task": w.task, "sha256": w.sha256, "url": w.url, "licence": w.licence, "origin": w.origin}
                for w in m.weights
            ],
            "notes": m.notes,
        })
    return rows


@click.command("methods", short_help="List fusion methods and whether they can run here.")
@click.argument("pattern", required=False)
@task_option("Only methods for this task.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (all metadata).")
@click.option("--verbose", "-v", is_flag=True, help="Show how to get missing weights / produce results.")
def methods(pattern, task, as_json, verbose):
    """List registered methods (PATTERN: fnmatch, comma-separated, e.g. 'tar*,ifcnn').

    Status: `runnable` (can fuse now), `needs weights` (the detail says exactly where to get
    them), `results-folder only` (pass outputs of the official code with --results NAME=DIR).
    """
    rows = method_rows(pattern, task)
    if pattern and not rows:
        from ..errors import did_you_mean
        from ..registry import list_methods

        raise did_you_mean("method", pattern, [m.name for m in list_methods()])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    w = max([len(r["name"]) for r in rows] + [4])
    click.echo(f"{'name':<{w}}  {'kind':<11} {'tasks':<19} {'status':<20} paper")
    for r in rows:
        click.echo(f"{r['name']:<{w}}  {r['kind']:<11} {','.join(r['tasks']):<19} {r['status']:<20} {r['paper']}")
        if verbose and r["detail"]:
            click.echo(f"{'':<{w}}  -> {r['detail']}")
    if not verbose and any(r["detail"] for r in rows):
        click.echo("\n(use -v to see how to get missing weights or produce results-folder outputs)", err=True)
