"""``fusionbench train refusion``: meta-train ReFusion (registered in the ``fusionbench.trainers`` group)."""
from __future__ import annotations

from pathlib import Path

import click

from fusionbench.cli.options import device_option, quiet_option


@click.command("refusion")
@click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset root with paired folders (ir/vi, infrared/visible, cropinfrared/crop_LR_visible, A/B). "
                   "Default: the config's data.root, else ../shared/data/roadscene without its 50-pair test split.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML config (keys of refusion/configs/default.yaml; missing keys take the defaults). "
                   "With --resume and no --config, the run's own config is used.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: config.yaml, log.csv, val.csv, checkpoint.pt, epochs/.")
@click.option("--resume", is_flag=True, help="Continue from RUN_DIR/checkpoint.pt exactly where it stopped.")
@device_option()
@click.option("--seed", type=int, default=None, help="Override train.seed.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override train.epochs.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop after this many iterations of this invocation (not stored in the run; --resume goes on).")
@quiet_option("No progress bar.")
def train_refusion(data, config_path, out, resume, device, seed, epochs, max_steps, quiet):
    """Meta-train ReFusion (F, R, P) on paired images; see refusion/configs/default.yaml."""
    from fusionbench.cli.main import run_guarded

    run_guarded(_run, data, config_path, out, resume, device, seed, epochs, max_steps, quiet)


def _run(data, config_path, out, resume, device, seed, epochs, max_steps, quiet):
    from fusionbench.device import pick_device
    from fusionbench.distributed import context, rank_device

    from . import config as C
    from .train import load_checkpoint, train

    dev = rank_device(pick_device(device))  # under torchrun: one GPU per process
    if resume and config_path is None:
        ck_path = Path(out) / "checkpoint.pt"
        ck = load_checkpoint(ck_path, "cpu")
        cfg = C.merge(C.default_config(), ck["config"], f"{ck_path} (stored config)")
    else:
        cfg = C.load_config(config_path)
    cfg = C.apply_overrides(cfg, data__root=str(Path(data).resolve()) if data is not None else None,
                            train__seed=seed, train__epochs=epochs)
    res = train(cfg, out, dev, resume=resume, progress=not quiet, max_steps=max_steps)
    msg = {"done": "finished", "max_steps": "stopped at --max-steps", "interrupted": "interrupted"}[res.stopped]
    if context().is_main:  # under torchrun every rank returns the same result; rank 0 alone reports it
        click.echo(f"{msg}: iteration {res.step}, epoch {res.epoch}; checkpoint {Path(out) / 'checkpoint.pt'}", err=True)
    if res.stopped == "interrupted":
        raise SystemExit(130)
