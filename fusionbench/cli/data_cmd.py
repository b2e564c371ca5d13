"""``fusionbench data list`` and ``fusionbench data check DIR|NAME``."""
from __future__ import annotations

import json
import sys

import click

from .options import task_option


@click.group("data", short_help="Inspect paired-image datasets.")
def data():
    """Registered datasets and checks of image-pair folders."""


@data.command("list", short_help="Registered dataset names and whether their data is here.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json):
    """Registered dataset names (use them with --data), their task, size and whether the data is present.

    Names other than `sample` read from FUSIONBENCH_DATA, else ../shared/data.
    """
    from ..data import list_datasets

    rows = list_datasets()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    w = max(len(r["name"]) for r in rows)
    click.echo(f"{'name':<{w}}  task  pairs  a/b              status     description")
    for r in rows:
        status = "available" if r["available"] else "absent"
        ab = f"{r['a']}/{r['b']}"
        click.echo(f"{r['name']:<{w}}  {r['task']:<4}  {r['pairs']:>5}  {ab:<15}  {status:<9}  {r['description']}")


@data.command("check", short_help="Report pairs, sizes, modes and problems of a dataset.")
@click.argument("spec", metavar="DIR|NAME")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@task_option("Task when the layout does not imply it.")
@click.option("--no-published", is_flag=True, help="Skip the folders of published fused outputs.")
def check(spec, as_json, task, no_published):
    """Decode every image of a dataset folder or registered name and report pairs, sizes (distinct and most
    common), modes per side (grey / grey-stored-as-RGB / colour), bit depth and problems (unpaired files,
    size mismatches, unreadable files, each named). Exit code 1 when there are problems."""
    from ..data import check_dataset, format_check, open_dataset

    ds = open_dataset(spec, task=task)
    report = check_dataset(ds, published=not no_published)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_check(report))
    if report["problems"]:
        click.echo(f"{len(report['problems'])} problem(s) in {ds.name}", err=True)
        sys.exit(1)
