"""The ``fusionbench`` command. One module per command under ``fusionbench/cli``; they are imported
only when used, so ``fusionbench --help`` stays fast.

Exit codes: 0 ok, 1 data or runtime problem (and a score regression found by ``check``), 2 usage error.
Messages for people go to stderr; machine output (CSV/JSON) to stdout or ``--out``.
"""
from __future__ import annotations

import importlib
import sys

import click

from ..errors import FusionBenchError

COMMANDS = {
    "score": ("fusionbench.cli.score", "score", "Score fused images against their sources."),
    "fuse": ("fusionbench.cli.fuse", "fuse", "Fuse folders of image pairs with a registered method."),
    "methods": ("fusionbench.cli.methods", "methods", "List fusion methods and whether they can run here."),
    "metrics": ("fusionbench.cli.metrics_cmd", "metrics", "List metrics, their presets and aliases."),
    "weights": ("fusionbench.cli.weights_cmd", "weights", "Find, download and verify checkpoints."),
    "data": ("fusionbench.cli.data_cmd", "data", "Inspect paired-image datasets."),
    "eval": ("fusionbench.cli.eval_cmd", "eval_", "Fuse, score and tabulate methods on datasets."),
    "table": ("fusionbench.cli.report_cmd", "table", "Comparison tables (CSV, LaTeX, Markdown) from a run."),
    "figures": ("fusionbench.cli.report_cmd", "figures", "Figures (grid, distributions, ranks) from a run."),
    "check": ("fusionbench.cli.report_cmd", "check", "Fail when a run's scores drift from a baseline."),
    "train": ("fusionbench.cli.train_cmd", "train", "Train a method (e.g. `fusionbench train refusion`)."),
}


def run_guarded(fn, *args, **kwargs):
    """Call ``fn``; turn FusionBenchError into a one-line message and its exit code."""
    try:
        return fn(*args, **kwargs)
    except FusionBenchError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        mod, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(mod), attr)

    def format_commands(self, ctx, formatter):
        rows = [(n, COMMANDS[n][2]) for n in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FusionBenchError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:  # a file-system problem not met at an atomic write: still one line, exit 1
            from ..io import os_problem

            where = " -> ".join(str(f) for f in (e.filename, getattr(e, "filename2", None)) if f)
            click.echo(f"Error: {where + ': ' if where else ''}{os_problem(e)}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted; everything finished so far is saved.", err=True)
            ctx.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fusionbench-toolkit", prog_name="fusionbench")
def cli():
    """fusionbench: score, run and compare multi-modality image fusion methods."""


if __name__ == "__main__":  # pragma: no cover
    cli()
