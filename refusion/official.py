"""Official ReFusion checkpoints and the official inference protocol (``HaowenBai/ReFusion@54b7334`` test.py).

Protocol, per pair (``shared/reference/outputs/README.md``, "ReFusion"):

1. each source as float RGB 0..255 (grey files as three equal channels, like ``cv2.imread``);
2. Y = 0.299 R + 0.587 G + 0.114 B in float32, not rounded (OpenCV float ``RGB2YCrCb``);
   Cr, Cb with OpenCV's float offset 0.5 (even on 0..255 data);
3. F(cat[Y1/255, Y2/255]) -> sigmoid map; min-max normalised over the whole output of that image, x255;
4. Gray file: imageio's float -> uint8 conversion (min-max stretch, +0.499999999, truncate);
5. colour: both sources grey (three equal channels) -> no colour file; exactly one colour -> its CrCb;
   both colour -> saturation-weighted chroma fusion; YCrCb -> RGB (float, offset 0.5), clip [0, 255],
   imageio's stretch over all three channels and the same rounding.

The fuser returns the RGB image for pairs where the official script writes an RGB file and the Gray
image otherwise (``output="auto"``), or always the Gray image (``output="gray"``, what
``refusion_ivif/`` holds). In a batch that mixes grey and colour pairs, ``"auto"`` returns
(N, 3, H, W) and the grey pairs' rows hold the Gray image in three equal channels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from fusionbench.color import fuse_chroma, is_grey, luma, rgb_to_ycrcb, to_rgb, ycrcb_to_rgb
from fusionbench.errors import DataError, SizeMismatchError, UsageError
from fusionbench.registry import MethodInfo
from fusionbench.weights import load_into, load_state_dict, resolve

from .nets import FusionNet, remap_official

OUTPUTS = ("auto", "gray", "rgb")
LAYOUTS = ("channels_last", "nchw")
CHROMA_DELTA = 0.5  # OpenCV's float YCrCb offset, used by the official code on 0..255 data


def weight_name(task: str) -> str:
    """Official checkpoint file name for a task: ``ReFusion_IVIF.pth`` etc."""
    return f"ReFusion_{task.upper()}.pth"


def _info(name: str) -> MethodInfo:
    from .entry import ENTRIES

    for e in ENTRIES:
        if e.name == name:
            return e
    raise LookupError(name)  # programming error: entry.py and this module disagree


def load_fusion_net(path: str | Path, device: torch.device | str | None = None, *, official: bool = True,
                    key: str | None = None) -> FusionNet:
    """A :class:`FusionNet` in eval mode with the weights of ``path``.

    ``official=True``: an official ReFusion checkpoint (duplicated conv keys, remapped by
    :func:`remap_official`). ``official=False``: a plain FusionNet state_dict, optionally under ``key``.
    Raises :class:`WeightsError` for unreadable files or keys/shapes that do not fit.
    """
    net = FusionNet()
    state = load_state_dict(path, key=key)
    load_into(net, state, path, remap=remap_official if official else None)
    return net.to(device if device is not None else "cpu").eval()


def load_official(task: str = "ivif", device: torch.device | str | None = None, override=None) -> FusionNet:
    """The official F for ``task`` (ivif, mif, mfif, meif), found through the weights resolver."""
    info = _info("refusion")
    if task not in info.tasks:
        raise UsageError(f"ReFusion: unknown task {task!r}; official weights exist for {', '.join(info.tasks)}")
    files = resolve(info, task, override)
    return load_fusion_net(files[weight_name(task)], device)


# ---------------------------------------------------------------------------- protocol pieces


def imageio_to_uint8(x: Tensor) -> Tensor:
    """imageio 2.26 ``image_as_uint(float, bitdepth=8)`` per image of a batch (N, C, H, W) -> uint8.

    Values within [0, 1]: ``x*255 + 0.499999999``; otherwise min-max stretch to 0..255 over all
    channels, ``+0.499999999``; constant images are cast directly. Computed in float64, truncated.
    """
    x64 = x.to(torch.float64)
    flat = x64.flatten(1)
    mi = flat.amin(1).view(-1, 1, 1, 1)
    ma = flat.amax(1).view(-1, 1, 1, 1)
    unit = (mi >= 0) & (ma <= 1)
    const = ma == mi
    span = torch.where(const, torch.ones_like(ma), ma - mi)
    stretched = (x64 - mi) / span * 255.0 + 0.499999999
    y = torch.where(unit, x64 * 255.0 + 0.499999999, stretched)
    y = torch.where(const & ~unit, x64, y)
    # numpy's float -> uint8 cast truncates toward zero; values here lie in [0, 256)
    return y.clamp(0, 255).to(torch.uint8)


def minmax_per_image(o: Tensor) -> Tensor:
    """(o - min) / (max - min) per image over all its channels and pixels (the official normalisation).

    A constant output (max == min; the official code would divide by zero) maps to zeros.
    """
    flat = o.flatten(1)
    mi = flat.amin(1).view(-1, 1, 1, 1)
    ma = flat.amax(1).view(-1, 1, 1, 1)
    span = ma - mi
    return torch.where(span > 0, (o - mi) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(o))


@dataclass
class ProtocolOutput:
    """Everything the official script would write for a batch.

    ``gray``: (N, 1, H, W) uint8, the ``Gray/`` file of every pair. ``rgb``: (N, 3, H, W) uint8, the
    ``RGB/`` file, or None when no pair of the batch has colour. ``has_rgb``: (N,) bool, which pairs
    the official script writes an RGB file for (rows where it is False hold the Gray image x3).
    """

    gray: Tensor
    rgb: Tensor | None
    has_rgb: Tensor


def _check_pair(a: Tensor, b: Tensor) -> None:
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, Tensor) or t.ndim != 4 or t.shape[1] not in (1, 3):
            raise DataError(f"ReFusion: source {name} must be a tensor (N, 1|3, H, W), got "
                            f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
        if t.dtype != torch.uint8:
            raise DataError(f"ReFusion: source {name} must be uint8 as decoded from the file, got {t.dtype}")
    if a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
        raise SizeMismatchError(f"ReFusion: sources differ in size: a {tuple(a.shape)} vs b {tuple(b.shape)}")


def run_protocol(net: FusionNet, a: Tensor, b: Tensor, want_rgb: bool = True, channels_last: bool = False) -> ProtocolOutput:
    """Apply the official ReFusion inference protocol to uint8 batches ``a`` (first source), ``b``.

    ``channels_last`` runs F on an NHWC-strided input (give F channels-last weights too): about 30 %
    faster on CPU, because oneDNN's depthwise convolutions are much faster in that layout; the
    convolutions then sum in another order, which moves one grey level on ~0.01 % more pixels.
    """
    _check_pair(a, b)
    p = next(net.parameters())
    dev = p.device
    a = to_rgb(a.to(dev, torch.float32))  # cv2.imread(IMREAD_COLOR): grey -> three equal channels
    b = to_rgb(b.to(dev, torch.float32))
    ya, yb = luma(a), luma(b)
    x = torch.cat([ya / 255.0, yb / 255.0], dim=1).to(p.dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = net(x).to(torch.float32).contiguous()
    y = minmax_per_image(out) * 255.0  # float32, as the official code
    gray = imageio_to_uint8(y)
    grey_a, grey_b = is_grey(a), is_grey(b)
    has_rgb = ~(grey_a & grey_b)
    if not want_rgb or not bool(has_rgb.any()):
        return ProtocolOutput(gray, None, has_rgb)
    ca = rgb_to_ycrcb(a, CHROMA_DELTA)[:, 1:]
    cb = rgb_to_ycrcb(b, CHROMA_DELTA)[:, 1:]
    both = fuse_chroma(ca, cb, CHROMA_DELTA)
    sel_b = (grey_a & ~grey_b).view(-1, 1, 1, 1)  # only b has colour -> its CrCb
    sel_a = (~grey_a & grey_b).view(-1, 1, 1, 1)  # only a has colour -> its CrCb
    crcb = torch.where(sel_b, cb, torch.where(sel_a, ca, both))
    rgb = ycrcb_to_rgb(torch.cat([y, crcb], dim=1), CHROMA_DELTA).clamp(0, 255)
    rgb = imageio_to_uint8(rgb)
    rgb = torch.where(has_rgb.view(-1, 1, 1, 1), rgb, gray.expand(-1, 3, -1, -1))
    return ProtocolOutput(gray, rgb, has_rgb)


class ReFusionFuser:
    """A :class:`fusionbench.registry.Fuser` around a loaded :class:`FusionNet` and the official protocol.

    ``output``: ``"auto"`` (RGB where the official script writes an RGB file, else Gray),
    ``"gray"`` (always the Gray file), ``"rgb"`` (always 3 channels; grey pairs repeated).
    ``layout``: ``"channels_last"`` (default, ~30 % faster on CPU) or ``"nchw"``, the official
    code's layout and summation order (fewest pixels off by one grey level; see :func:`run_protocol`).
    """

    tile_halo = None  # global min-max normalisation and image-wide channel attention: no tiling

    def __init__(self, info: MethodInfo, net: FusionNet, task: str, output: str = "auto", layout: str = "channels_last"):
        if output not in OUTPUTS:
            raise UsageError(f"{info.display}: option output={output!r}; use one of {', '.join(OUTPUTS)}")
        if layout not in LAYOUTS:
            raise UsageError(f"{info.display}: option layout={layout!r}; use one of {', '.join(LAYOUTS)}")
        self.info = info
        self.layout = layout
        self.net = net.eval()
        if layout == "channels_last":
            self.net.to(memory_format=torch.channels_last)
        self.task = task
        self.output = output

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def fuse_outputs(self, a: Tensor, b: Tensor) -> ProtocolOutput:
        """Both official files (Gray and, where applicable, RGB) for a batch."""
        with torch.inference_mode():
            return run_protocol(self.net, a, b, want_rgb=True, channels_last=self.layout == "channels_last")

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        with torch.inference_mode():
            res = run_protocol(self.net, a, b, want_rgb=self.output != "gray", channels_last=self.layout == "channels_last")
        if self.output == "gray":
            return res.gray
        if res.rgb is None:
            return res.gray.expand(-1, 3, -1, -1).contiguous() if self.output == "rgb" else res.gray
        return res.rgb


def build(weights: dict | None = None, device: torch.device | str | None = None, task: str = "ivif",
          output: str = "auto", layout: str = "channels_last", **options) -> ReFusionFuser:
    """Registry factory for ``refusion``: the official checkpoint of ``task`` + the official protocol."""
    info = _info("refusion")
    if options:
        raise UsageError(f"{info.display}: unknown option(s) {', '.join(sorted(options))}; known: output, layout")
    if task not in info.tasks:
        raise UsageError(f"{info.display}: unknown task {task!r}; official weights exist for {', '.join(info.tasks)}")
    name = weight_name(task)
    weights = dict(weights or {})
    if name not in weights:
        weights.update(resolve(info, task))
    net = load_fusion_net(weights[name], device)
    return ReFusionFuser(info, net, task, output, layout)


__all__ = [
    "ReFusionFuser",
    "ProtocolOutput",
    "build",
    "load_official",
    "load_fusion_net",
    "run_protocol",
    "imageio_to_uint8",
    "minmax_per_image",
    "weight_name",
]
