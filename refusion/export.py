"""Export the fusion module F of a training run: ``python -m fusionbench.refusion.export RUN_DIR DEST.pt``.

Writes ``DEST.pt`` (F's state_dict only, float32, the keys of :class:`fusionbench.refusion.nets.FusionNet`, ~240 KB;
loadable by :func:`fusionbench.refusion.ours.load_ours` and ``--weights`` of ``refusion-ours``) and the sidecar
``DEST.json``: ``{sha256, file, config, steps, epoch, val, val_source, checkpoint, params, date}``.
``val`` holds the validation scores (held-out split of the run) of the exported weights: recomputed
with ``--validate`` (default when fusionbench.metrics is available), else the run's last val.csv row.
Both files are written atomically.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from pathlib import Path

import click
import torch

from fusionbench.cli.options import device_option
from fusionbench.errors import FusionBenchError, UsageError
from fusionbench.io import atomic_path, write_text_atomic
from fusionbench.weights import sha256sum

__all__ = ["export", "main"]


def export(run_dir: str | Path, dest: str | Path, checkpoint: str | Path | None = None,
           validate: bool | None = None, device: str = "cpu") -> dict:
    """Export F from ``RUN_DIR/checkpoint.pt`` (or ``checkpoint``) to ``dest`` + ``dest.json``;
    returns the sidecar dict."""
    from .losses import LossWeights, c_grad_at
    from .train import _metric_fns, build_models, load_checkpoint
    from .train import validate as run_val

    run_dir = Path(run_dir)
    ck_path = Path(checkpoint) if checkpoint else run_dir / "checkpoint.pt"
    dest = Path(dest)
    if dest.suffix != ".pt":
        raise UsageError(f"{dest}: the destination must end in .pt (the sidecar is written beside it as .json)")
    ck = load_checkpoint(ck_path, device)
    cfg = ck["config"]
    F, R, P = build_models(cfg, device)
    F.load_state_dict(ck["F"]), R.load_state_dict(ck["R"]), P.load_state_dict(ck["P"])
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in F.state_dict().items()}
    with atomic_path(dest) as tmp:
        torch.save(state, tmp)
    val, source = ck.get("last_val"), "checkpoint (last validation of the run)"
    if validate is None:
        validate = _metric_fns(cfg["validation"]) is not None
    if validate:
        from .data import build_dataset

        data = build_dataset(cfg)
        L = cfg["loss"]
        w = LossWeights(L["c_int"], L["c_grad"], L["c_grad_ramp"], L["c_r_int"], L["c_r_grad"])
        epoch = max(int(ck["epoch"]) - 1, 0)
        val = {"epoch": int(ck["epoch"]), "step": int(ck["step"]),
               **run_val(F, R, P, data, cfg, c_grad_at(w, epoch, cfg["train"]["epochs"]), device)}
        source = f"recomputed at export on the run's {len(data.val)} held-out pairs"
    meta = {
        "sha256": sha256sum(dest),
        "file": dest.name,
        "format": "FusionNet state_dict (fusionbench.refusion.nets.FusionNet keys), float32",
        "params": int(sum(v.numel() for v in state.values())),
        "config": cfg,
        "steps": int(ck["step"]),
        "epoch": int(ck["epoch"]),
        "steps_per_epoch": int(ck["steps_per_epoch"]),
        "val": val,
        "val_source": source,
        "checkpoint": str(ck_path),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "trained_with": "fusionbench train refusion",
    }
    write_text_atomic(dest.with_suffix(".json"), json.dumps(meta, indent=2, default=str) + "\n")
    for p in (dest, dest.with_suffix(".json")):  # temp files are created 0600; these are package data
        os.chmod(p, 0o644)
    return meta


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A checkpoint of the run other than RUN_DIR/checkpoint.pt (e.g. epochs/epoch_010.pt).")
@click.option("--validate/--no-validate", default=None,
              help="Recompute the validation scores of the exported weights (default: when the metrics exist).")
@device_option("cpu")
def main(run_dir, dest, checkpoint, validate, device):
    """Export F's weights of a ReFusion training run to DEST.pt and DEST.json."""
    try:
        meta = export(run_dir, dest, checkpoint, validate, device)
    except FusionBenchError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)
    val = meta["val"] or {}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in val.items() if isinstance(v, float))
    click.echo(f"{dest}: {meta['params']} parameters, step {meta['steps']} (epoch {meta['epoch']}), "
               f"sha256 {meta['sha256'][:12]}...; val: {shown or 'none'}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
