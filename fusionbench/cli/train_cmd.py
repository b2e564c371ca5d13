"""``fusionbench train NAME``: trainers plug in through the entry-point group ``fusionbench.trainers``."""
from __future__ import annotations

from importlib.metadata import entry_points

import click

GROUP = "fusionbench.trainers"


class TrainerGroup(click.Group):
    def _eps(self):
        return {ep.name: ep for ep in entry_points(group=GROUP)}

    def list_commands(self, ctx):
        return sorted(self._eps())

    def get_command(self, ctx, name):
        ep = self._eps().get(name)
        return ep.load() if ep else None

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and name not in self._eps():
            from ..errors import did_you_mean

            raise click.UsageError(str(did_you_mean("trainer", name, self._eps())), ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=TrainerGroup)
def train():
    """Train a method. Trainers are plugins; `fusionbench train --help` lists those installed."""
