"""``refusion-ours``: a FusionNet trained by ``fusionbench train refusion``, run with the official IVIF protocol."""
from __future__ import annotations

from pathlib import Path

import torch

from fusionbench.errors import UsageError, WeightsError
from fusionbench.weights import load_into, load_state_dict, resolve, sha256sum

from .nets import FusionNet
from .official import OUTPUTS, ReFusionFuser

NOT_FOUND = (
    "the bundled weights {name} are missing from this installation (reinstall fusionbench-toolkit), "
    "or pass a checkpoint of `fusionbench train refusion` with --weights"
)


def load_ours(path: str | Path, device: torch.device | str | None = None) -> FusionNet:
    """A FusionNet from a fusionbench checkpoint: a dict holding the F state_dict under ``"F"``, or a bare state_dict."""
    raw = load_state_dict(path)
    state = raw["F"] if "F" in raw and isinstance(raw["F"], dict) else raw
    net = FusionNet()
    load_into(net, state, path)
    return net.to(device if device is not None else "cpu").eval()


def build(weights: dict | None = None, device: torch.device | str | None = None, task: str = "ivif",
          output: str = "auto", layout: str = "channels_last", **options) -> ReFusionFuser:
    """Registry factory for ``refusion-ours`` (task ivif only)."""
    from .entry import OURS as info

    if options:
        raise UsageError(f"{info.display}: unknown option(s) {', '.join(sorted(options))}; known: output, layout")
    if task not in info.tasks:
        raise UsageError(f"{info.display}: trained for {', '.join(info.tasks)} only, not {task!r}")
    if output not in OUTPUTS:
        raise UsageError(f"{info.display}: option output={output!r}; use one of {', '.join(OUTPUTS)}")
    wf = info.weights[0]
    weights = dict(weights or {})
    if wf.name not in weights:
        try:
            weights.update(resolve(info, task))
        except WeightsError:
            raise WeightsError(f"{info.display}: " + NOT_FOUND.format(name=wf.name)) from None
    path = Path(weights[wf.name])
    from .entry import WEIGHTS_DIR

    if wf.sha256 and path.resolve() == (WEIGHTS_DIR / wf.name).resolve():  # the bundled file: verify
        got = sha256sum(path)
        if got != wf.sha256:
            raise WeightsError(f"{path}: sha256 {got} does not match the recorded {wf.sha256} "
                               f"(refusion/weights/refusion_ours_ivif.json)")
    return ReFusionFuser(info, load_ours(path, device), task, output, layout)
