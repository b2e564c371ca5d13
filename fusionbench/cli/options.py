"""Click options shared by the ``fusionbench`` commands (and plugin commands such as ``train refusion``).

Each option is declared once here, with its choices taken from the canonical lists, so every command
offers the same names, types and help:

* :func:`device_option` — ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; checked by
  :func:`fusionbench.device.pick_device` when the command runs);
* :func:`dtype_option` — ``--dtype``, one of :data:`DTYPES` (see :func:`fusionbench.device.pick_dtype`);
* :func:`preset_option` — ``--preset``, one of :data:`fusionbench.metrics.PRESETS` (case-insensitive;
  an unknown name gets a "did you mean"; see :class:`PresetChoice`);
* :func:`task_option` — ``--task``, one of :data:`fusionbench.data.TASKS`;
* :func:`batch_size_option` — ``--batch-size``, an integer >= 1;
* :func:`quiet_option` — ``-q/--quiet``.

Defaults and help texts that differ between commands are parameters. Usage::

    @click.command("score")
    @preset_option()
    @device_option()
    @batch_size_option(16, help="Images scored together.")
    def score(preset, device, batch_size): ...
"""
from __future__ import annotations

import click

from ..data import TASKS
from ..errors import UnknownNameError
from ..metrics import DEFAULT_PRESET, PRESETS, get_preset

#: ``--dtype`` values: ``auto`` (each metric preset's own precision) or a torch floating-point type
DTYPES = ("auto", "float32", "float64")

DEVICE_HELP = "auto, cpu, cuda or cuda:N."
DTYPE_HELP = "Arithmetic precision of the metrics; auto: each preset's own (cddfuse float32, vifb float64)."
PRESET_HELP = "Reference conventions of the metrics (`fusionbench metrics --json` names each preset's reference)."


class PresetChoice(click.Choice):
    """A :class:`click.Choice` of the metric presets, case-insensitive, whose error suggests close names.

    The help lists the built-in presets (:data:`fusionbench.metrics.PRESETS`); a name outside them is
    looked up with :func:`fusionbench.metrics.get_preset`, so a preset the metrics registry knows beyond
    the built-in ones is accepted too, and an unknown one fails with the registry's "did you mean".
    """

    def __init__(self):
        super().__init__(PRESETS, case_sensitive=False)

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            pass
        try:
            return get_preset(str(value)).name
        except UnknownNameError as e:
            raise click.BadParameter(str(e), ctx, param) from None


def device_option(default: str = "auto", help: str = DEVICE_HELP):
    """``--device``: where tensors and models live; ``auto`` picks CUDA when available, else the CPU."""
    return click.option("--device", default=default, show_default=True, help=help)


def dtype_option(help: str = DTYPE_HELP):
    """``--dtype``: the arithmetic precision of the metrics, one of :data:`DTYPES` (default ``auto``)."""
    return click.option("--dtype", default="auto", show_default=True, type=click.Choice(DTYPES), help=help)


def preset_option(default: str | None = DEFAULT_PRESET, help: str = PRESET_HELP):
    """``--preset``: a metric preset (:data:`fusionbench.metrics.PRESETS`); ``default=None`` for "no preset"."""
    return click.option("--preset", default=default, show_default=default is not None, type=PresetChoice(),
                        help=help)


def task_option(help: str):
    """``--task``: one of :data:`fusionbench.data.TASKS`, no default (the command decides what None means)."""
    return click.option("--task", type=click.Choice(TASKS), help=help)


def batch_size_option(default: int, help: str | None = None):
    """``--batch-size``: an integer >= 1; what a batch is (images scored, pairs fused) is the command's."""
    return click.option("--batch-size", default=default, show_default=True, type=click.IntRange(min=1), help=help)


def quiet_option(help: str):
    """``-q/--quiet``: a flag that silences progress output (what exactly is the command's help)."""
    return click.option("-q", "--quiet", "quiet", is_flag=True, help=help)
