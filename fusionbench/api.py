"""The public Python API: :func:`score` and :func:`load_method` (re-exported as ``fusionbench.score`` and
``fusionbench.load_method``), on top of the metric presets and the method registry.

Image tensors follow one contract (:mod:`fusionbench.contract`): (H, W), (C, H, W) or (N, C, H, W), C = 1
or 3; uint8 means 0..255, uint16 16-bit, and a float tensor needs ``data_range`` (1.0 for [0, 1]).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .contract import as_images, check_min_size, check_triple

__all__ = ["score", "load_method", "LoadedMethod"]

CORE_METRICS = "EN,SD,SF,AG,SCD,SSIM"


def score(fused, a, b, metrics: str | list[str] = CORE_METRICS, *, preset: str = "cddfuse",
          data_range: float | None = None, dtype: torch.dtype | None = None,
          device: str | torch.device | None = None) -> dict[str, Tensor]:
    """Score fused images against their two sources: ``{metric label: Tensor (N,)}``.

    ``fused``, ``a`` (IR / first source), ``b`` (visible / second source): image tensors under the input
    contract; a source with N = 1 is shared by every fused image. ``metrics``: names (``"EN,SSIM"``, a list,
    ``"all"``; ``NAME@PRESET`` picks another preset for one metric). ``preset``: ``cddfuse`` (the CDDFuse
    evaluator) or ``vifb`` (VIFB's MATLAB code). ``data_range``: required for float tensors. ``dtype``:
    None = each preset's reference precision. ``device``: where to compute (default: the tensors' device).

    >>> import torch, fusionbench
    >>> g = torch.Generator().manual_seed(0)
    >>> a, b = torch.rand(2, 1, 1, 64, 64, generator=g)           # two float sources in [0, 1]
    >>> fused = (a + b) / 2
    >>> s = fusionbench.score(fused, a, b, "EN,SSIM", data_range=1.0)
    >>> sorted(s), tuple(s["EN"].shape)
    (['EN', 'SSIM'], (1,))
    """
    from .metrics.presets import require_preset
    from .metrics.registry import parse_metrics
    from .metrics.scoring import score_batch

    require_preset(preset)
    reqs = parse_metrics(metrics, preset=preset)
    f, a, b = check_triple(fused, a, b, data_range)
    if device is not None:
        from .device import pick_device

        dev = pick_device(str(device))
        f, a, b = (t.to(dev) for t in (f, a, b))
    return score_batch(f, a, b, reqs, dtype=dtype)


@dataclass
class LoadedMethod:
    """A fusion method ready to run: ``method(a, b)`` (or ``method.fuse(a, b)``) -> uint8 (N, 1|3, H, W).

    ``info`` is the registry entry (paper, weights and their licence, tasks, colour handling). Inputs follow
    the input contract (float tensors need ``data_range``); the method's official protocol (colour
    handling, normalisation, output scaling) is applied inside, exactly as ``fusionbench fuse`` does.
    """

    info: object
    fuser: object
    task: str
    device: torch.device

    @property
    def min_size(self) -> int:
        return int(getattr(self.info, "min_size", 16))

    def fuse(self, a, b, data_range: float | None = None) -> Tensor:
        from .io import to_8bit

        # 16-bit sources become 8 bit as `fusionbench fuse` reads 16-bit files: round(v / 257)
        ta, tb = (to_8bit(as_images(x, n, data_range), "round") for x, n in ((a, "a"), (b, "b")))
        if ta.shape[-2:] != tb.shape[-2:] or ta.shape[0] != tb.shape[0]:
            from .errors import SizeMismatchError

            raise SizeMismatchError(f"a is {tuple(ta.shape)} and b is {tuple(tb.shape)}: the sources must share "
                                    f"N, H and W")
        check_min_size(*ta.shape[-2:], self.min_size, self.info.display, name="sources")
        with torch.inference_mode():
            return self.fuser.fuse(ta.to(self.device), tb.to(self.device))

    __call__ = fuse


def load_method(name: str, task: str | None = None, device: str | torch.device | None = "auto",
                weights: str | None = None, **options) -> LoadedMethod:
    """A registered fusion method (``fusionbench methods`` lists them), built with its weights.

    ``task``: ivif, mif, mfif or meif (default: the method's first). ``weights``: a checkpoint file or a
    folder laid out ``<method>/<file>``, searched before ``$FUSIONBENCH_WEIGHTS`` and the cache. Missing or
    unusable weights raise :class:`~fusionbench.errors.WeightsError` saying what is wrong and how to get
    them. ``options``: the method's own options (``fusionbench methods NAME -v``).

    >>> import fusionbench, torch
    >>> gff = fusionbench.load_method("gff", device="cpu")            # a classical method: no weights
    >>> a = torch.randint(0, 256, (1, 1, 64, 64), dtype=torch.uint8)
    >>> gff(a, a).shape
    torch.Size([1, 1, 64, 64])
    """
    from .device import pick_device
    from .registry import get_method
    from .weights import resolve

    info = get_method(name)
    t = task or info.tasks[0]
    if t not in info.tasks:
        from .errors import UsageError

        raise UsageError(f"{info.display} runs the task(s) {', '.join(info.tasks)}, not {t!r}")
    dev = pick_device(str(device) if device is not None else "auto")
    files = resolve(info, t, weights) if info.factory and info.weights_for(t) else {}
    return LoadedMethod(info, info.build(weights=files, device=dev, task=t, **options), t, dev)
