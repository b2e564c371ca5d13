"""``fusionbench metrics``: the metric registry as a table or JSON."""
from __future__ import annotations

import json

import click

from .options import preset_option


@click.command("metrics", short_help="List metrics, their presets and aliases.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per metric) instead of a table.")
@preset_option(default=None, help="Only metrics this preset implements.")
def metrics(as_json, preset):
    """List every metric: name, aliases, whether higher is better, presets and definition.

    In the table, a preset marked with * computes a metric its reference code lacks (an
    extension); --json gives the convention chosen for each.
    """
    from ..metrics import PRESETS, get_preset, list_metrics

    infos = list_metrics(preset)
    if as_json:
        data = {
            "presets": {p: {"reference": get_preset(p).reference, "colour": get_preset(p).colour,
                            "available": get_preset(p).available,
                            **({"unavailable_reason": get_preset(p).unavailable_reason}
                               if not get_preset(p).available else {})}
                        for p in PRESETS},
            "metrics": [
                {"name": i.name, "aliases": list(i.aliases), "higher_is_better": i.higher_is_better,
                 "needs_sources": i.needs_sources, "definition": i.description, "degenerate": i.degenerate,
                 "presets": {p: impl.fidelity for p, impl in i.presets.items()}}
                for i in infos
            ],
        }
        click.echo(json.dumps(data, indent=2))
        return
    rows = []
    for i in infos:
        pres = ", ".join(p + ("" if impl.is_reference else "*") for p, impl in i.presets.items()) or "-"
        rows.append((i.name, ", ".join(i.aliases) or "-", i.direction, "F only" if not i.needs_sources else "F, A, B",
                     pres, i.description))
    head = ("name", "aliases", "better", "inputs", "presets", "definition")
    widths = [max(len(head[k]), *(len(r[k]) for r in rows)) if rows else len(head[k]) for k in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    click.echo(fmt.format(*head))
    for r in rows:
        click.echo(fmt.format(*r))
    missing = [p for p in PRESETS if not get_preset(p).available]
    click.echo("\n* extension: the preset's reference code lacks this metric; see --json for the convention used.")
    for p in missing:
        click.echo(f"preset {p} unavailable: {get_preset(p).unavailable_reason}")
