"""Shared CLI options (issue 16): every command declares --device, --dtype, --preset, --task, --batch-size and
--quiet through fusionbench/cli/options.py, with choices from the canonical lists; planning lives in the runner."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import fusionbench.data
import fusionbench.metrics
import fusionbench.registry
from fusionbench.cli import options
from fusionbench.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    """(path, command) for every command and subcommand of `fusionbench`, plugin trainers included."""
    out = []

    def walk(group, ctx, prefix):
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            out.append((f"{prefix}{name}", cmd))
            if isinstance(cmd, click.Group):
                walk(cmd, click.Context(cmd, info_name=name, parent=ctx), f"{prefix}{name} ")

    walk(cli, click.Context(cli, info_name="fusionbench"), "")
    return out


COMMANDS = _commands()


def _shared(decorator) -> click.Option:
    """The click.Option that a shared decorator declares."""
    return decorator(click.command()(lambda **kw: None)).params[0]


def _params(name):
    return [(path, p) for path, cmd in COMMANDS for p in cmd.params if p.name == name]


# the commands that have each option today; a command losing one, or declaring it by hand, fails below
EXPECTED = {
    "device": {"score", "eval", "fuse", "train refusion"},
    "dtype": {"score", "eval"},
    "preset": {"score", "eval", "metrics"},
    "task": {"fuse", "methods", "data check", "weights download"},
    "batch_size": {"score", "eval", "fuse"},
    "quiet": {"score", "eval", "train refusion"},
}
SHARED = {
    "device": options.device_option(),
    "dtype": options.dtype_option(),
    "preset": options.preset_option(),
    "task": options.task_option("help"),
    "batch_size": options.batch_size_option(1),
    "quiet": options.quiet_option("help"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_command_uses_the_shared_option(name):
    found = _params(name)
    assert {path for path, _ in found} == EXPECTED[name]
    ref = _shared(SHARED[name])
    for path, p in found:
        assert isinstance(p, click.Option), path
        assert p.opts == ref.opts and p.secondary_opts == ref.secondary_opts, (path, p.opts)
        assert type(p.type) is type(ref.type), (path, p.type)
        assert p.type.to_info_dict() == ref.type.to_info_dict(), (path, p.type.to_info_dict())
        assert p.is_flag == ref.is_flag and p.multiple == ref.multiple, path
        if name in ("device", "dtype"):  # same help everywhere: a hand-written copy would drift
            assert p.help == ref.help, (path, p.help)


def test_choices_come_from_the_canonical_lists():
    assert tuple(options.PresetChoice().choices) == tuple(fusionbench.metrics.PRESETS)
    for path, p in _params("preset"):
        assert tuple(p.type.choices) == tuple(fusionbench.metrics.PRESETS), path
    for path, p in _params("task"):
        assert tuple(p.type.choices) == tuple(fusionbench.data.TASKS), path
    for path, p in _params("dtype"):
        assert tuple(p.type.choices) == options.DTYPES, path
    assert fusionbench.registry.TASKS is fusionbench.data.TASKS


def test_defaults_stay_what_each_command_documents():
    defaults = {(path, p.name): p.default for name in EXPECTED for path, p in _params(name)}
    assert defaults[("score", "preset")] == defaults[("eval", "preset")] == fusionbench.metrics.DEFAULT_PRESET
    assert defaults[("metrics", "preset")] is None
    assert {v for (path, n), v in defaults.items() if n in ("device", "dtype")} == {"auto"}
    assert defaults[("score", "batch_size")] == 16
    assert defaults[("eval", "batch_size")] == defaults[("fuse", "batch_size")] == 4


def test_no_hand_written_task_or_preset_lists_in_the_commands():
    files = [*(ROOT / "fusionbench" / "cli").glob("*.py"), ROOT / "refusion" / "cli.py", ROOT / "fusionbench" / "registry.py"]
    for f in files:
        text = f.read_text()
        assert '"ivif", "mif"' not in text, f
        if f.name != "options.py":
            assert '"cddfuse", "vifb"' not in text and '"float32", "float64"' not in text, f


def test_preset_is_case_insensitive_and_suggests_close_names():
    ok = CliRunner().invoke(cli, ["metrics", "--json", "--preset", "VIFB"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(cli, ["metrics", "--preset", "vifbb"])
    assert bad.exit_code == 2
    last = bad.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "vifbb" in last and "Did you mean: vifb" in last, bad.output


def test_bad_task_is_a_usage_error():
    r = CliRunner().invoke(cli, ["methods", "--task", "ivfi"])
    assert r.exit_code == 2 and "ivfi" in r.output


def test_planning_lives_in_the_runner_without_click():
    code = ("import sys; import fusionbench.runner.plan as p; "
            "assert callable(p.build_plan) and p.build_plan.__doc__; assert 'click' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
