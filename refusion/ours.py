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


def _architecture(raw: dict, path: Path) -> dict:
    """FusionNet keyword arguments of a checkpoint: the run's ``model.fusion`` config, read from a training
    checkpoint's stored config or from the sidecar ``.json`` that ``export`` writes; ``{}`` (the default
    architecture) when neither says."""
    import json

    cfg = raw.get("config") if isinstance(raw.get("config"), dict) else None
    side = path.with_suffix(".json")
    if cfg is None and side.is_file():
        try:
            cfg = json.loads(side.read_text()).get("config")
        except (OSError, ValueError) as e:
            raise WeightsError(f"{side}: unreadable sidecar of {path.name} ({e})") from None
    fusion = ((cfg or {}).get("model") or {}).get("fusion")
    return dict(fusion) if isinstance(fusion, dict) else {}


def load_ours(path: str | Path, device: torch.device | str | None = None) -> FusionNet:
    """A FusionNet from a fusionbench checkpoint: a training checkpoint (F's state_dict under ``"F"``), or
    an exported state_dict. The architecture is the run's (stored config or the export's sidecar .json)."""
    raw = load_state_dict(path)
    state = raw["F"] if "F" in raw and isinstance(raw["F"], dict) else raw
    arch = _architecture(raw, Path(path))
    try:
        net = FusionNet(**arch)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{path}: its stored architecture model.fusion={arch} is not a FusionNet ({e})") from None
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
