"""DenseFuse (Li & Wu, IEEE TIP 2019), native port of the official PyTorch checkpoints.

Network (paper Fig. 1 and the checkpoint shapes; 16 tensors). Every layer ("ConvLayer") is a
reflection pad of 1, a 3x3 convolution with bias and a ReLU -- the official PyTorch release applies the
ReLU after the last decoder layer too:

* encoder: ``conv1`` (C -> 16), then a dense block of three layers (16, 32, 48 -> 16 channels; each
  output is concatenated to its input), giving 64 feature maps;
* fusion, addition strategy: the mean of the two encoders' features, (f_a + f_b) / 2;
* decoder: ``conv2`` 64 -> 64, ``conv3`` 64 -> 32, ``conv4`` 32 -> 16, ``conv5`` 16 -> C.

``C`` is 1 for ``densefuse_gray.model`` (the default and the reference protocol) and 3 for
``densefuse_rgb.model`` (``model="rgb"``).

Official inference protocol (hli1221/densefuse-pytorch ``test_image.py`` defaults: gray model, mode 'L',
addition; ``shared/reference/outputs/README.md``):

* both images through PIL ``convert('L')`` (:func:`fusionbench.color.luma_pil`), float32 **in 0..255**
  (not divided by 255), no padding or resizing;
* output ``clamp(0, 255)`` then uint8 by truncation; one-channel image.

``model="rgb"`` (not covered by reference outputs): both images PIL ``convert('RGB')`` (grey
repeated), ``ToTensor()`` then x255 (the official RGB loader), the same clamp and truncation, a colour
output.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.color import luma_pil, to_rgb
from fusionbench.errors import UsageError
from fusionbench.registry import MethodInfo, Paper, WeightFile

from ._common import check_pair, cl, fast_copy, load_checkpoint, to_unit, truncate_u8, weight_path

REPO = "hli1221/densefuse-pytorch"
COMMIT = "4394b63e9295db1c6b7a5c3664551c90f0605f2b"
FILES = {
    "gray": ("densefuse_gray.model", "b34cf3650f04161b31ac2467decfeedf7eba39165b7618f846e0f298ecd2ac65"),
    "rgb": ("densefuse_rgb.model", "d1829f47c0ff02ecfc294907655384eebc911a00deb89b91e354ae47c8728ea5"),
}


class ConvLayer(nn.Module):
    """Reflection pad 1, 3x3 conv with bias, ReLU; key ``conv2d.*``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv2d = nn.Conv2d(cin, cout, 3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect")), inplace=True)


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.dense_conv = ConvLayer(cin, growth)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.dense_conv(x)], 1)


class DenseBlock(nn.Module):
    def __init__(self, cin: int = 16, growth: int = 16, layers: int = 3):
        super().__init__()
        self.denseblock = nn.Sequential(*[DenseLayer(cin + i * growth, growth) for i in range(layers)])

    def forward(self, x: Tensor) -> Tensor:
        return self.denseblock(x)


class DenseFuseNet(nn.Module):
    def __init__(self, channels: int = 1):
        super().__init__()
        self.conv1 = ConvLayer(channels, 16)
        self.DB1 = DenseBlock(16, 16, 3)
        self.conv2 = ConvLayer(64, 64)
        self.conv3 = ConvLayer(64, 32)
        self.conv4 = ConvLayer(32, 16)
        self.conv5 = ConvLayer(16, channels)

    def encode(self, x: Tensor) -> Tensor:
        return self.DB1(self.conv1(x))

    def decode(self, f: Tensor) -> Tensor:
        return self.conv5(self.conv4(self.conv3(self.conv2(f))))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Addition strategy: decode((enc(a) + enc(b)) / 2). Inputs in 0..255.

        Computed on reflection-padded features: padding commutes with concatenation and with the
        element-wise fusion, so the dense block keeps a padded concatenation (each new 16-channel output is
        padded once instead of re-padding the whole concatenation in every layer) and conv2 takes the padded
        fused features directly. The values are identical to ``decode((encode(a) + encode(b)) / 2)``.
        """
        p = _reflect1(torch.cat([a, b], 0))
        p = _reflect1(F.relu(self.conv1.conv2d(p), inplace=True))
        for layer in self.DB1.denseblock:
            p = torch.cat([p, _reflect1(F.relu(layer.dense_conv.conv2d(p), inplace=True))], 1)
        pa, pb = p.chunk(2, 0)
        x = F.relu(self.conv2.conv2d(pa.add(pb).div_(2)), inplace=True)
        return self.conv5(self.conv4(self.conv3(x)))


def _reflect1(x: Tensor) -> Tensor:
    return F.pad(x, (1, 1, 1, 1), mode="reflect")


class DenseFuseFuser:
    tile_halo = 8  # eight 3x3 layers

    def __init__(self, info: MethodInfo, net: DenseFuseNet, device: torch.device, model: str):
        self.info, self.net, self.device, self.model = info, net.to(device).eval(), device, model
        self._fast = fast_copy(self.net)  # channels_last inference copy

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        check_pair(a, b)
        with torch.inference_mode():
            a, b = a.to(self.device), b.to(self.device)
            if self.model == "gray":
                xa, xb = luma_pil(a).to(torch.float32), luma_pil(b).to(torch.float32)
            else:  # official RGB loader: ToTensor (/255) then *255, in float32
                xa, xb = to_unit(to_rgb(a)) * 255.0, to_unit(to_rgb(b)) * 255.0
            out = self._fast(cl(xa), cl(xb))
            return truncate_u8(out).contiguous()


def build(weights: dict, device: torch.device, task: str = "ivif", model: str = "gray", **options) -> DenseFuseFuser:
    """Factory (registry contract). ``model``: "gray" (default, official protocol) or "rgb"."""
    if options:
        raise UsageError(f"DenseFuse: unknown option(s) {', '.join(sorted(options))}; known: model")
    info = ENTRIES[0]
    if task not in info.tasks:
        raise UsageError(f"DenseFuse: unsupported task {task!r}; supported: {', '.join(info.tasks)}")
    model = model.lower()
    if model not in FILES:
        raise UsageError(f"DenseFuse: unknown model {model!r}; choose gray or rgb")
    name = FILES[model][0]
    if model == "rgb" and name not in (weights or {}):
        path = _sibling(weights or {}, name, info)
    else:
        path = weight_path(weights, name, info.display)
    net = load_checkpoint(DenseFuseNet(1 if model == "gray" else 3), path)
    return DenseFuseFuser(info, net, device, model)


def _sibling(weights: dict, name: str, info: MethodInfo):
    """The optional rgb checkpoint: beside the resolved gray one, or where resolve() would look."""
    from fusionbench.errors import WeightsError
    from fusionbench.weights import candidates

    for p in weights.values():
        if (Path(p).parent / name).is_file():
            return Path(p).parent / name
    for c in candidates(info, RGB_WEIGHTS):
        if c.is_file():
            return c
    raise WeightsError(
        f"{info.display}: weights file {name} (model=rgb) not found; put it beside densefuse_gray.model, "
        f"at $FUSIONBENCH_WEIGHTS/{info.name}/{name}, or download it from {RGB_WEIGHTS.url}"
    )


def _wf(model: str) -> WeightFile:
    name, sha = FILES[model]
    return WeightFile(
        name=name,
        sha256=sha,
        url=f"https://github.com/{REPO}/raw/{COMMIT}/models/{name}",
        licence="none stated",
        origin=f"{REPO}@{COMMIT}",
        note="" if model == "gray" else "optional: model=rgb",
    )


RGB_WEIGHTS = _wf("rgb")

ENTRIES = [
    MethodInfo(
        name="densefuse",
        display="DenseFuse",
        paper=Paper(
            "DenseFuse: A Fusion Approach to Infrared and Visible Images",
            "IEEE Transactions on Image Processing",
            2019,
            "https://doi.org/10.1109/TIP.2018.2887342",
        ),
        kind="autoencoder",
        tasks=("ivif",),
        inputs="two grey images (PIL convert('L')), float 0..255",
        colour="grey: colour sources reduced with PIL luma; one-channel output (model=rgb: RGB in and out)",
        weights=(_wf("gray"),),
        factory="fusionbench.baselines.ports.densefuse:build",
        code=f"https://github.com/{REPO}",
        notes="Official PyTorch release (gray model, addition strategy = mean of encoder features). "
        "Option model=rgb uses densefuse_rgb.model (looked up beside the gray file); not covered by reference outputs.",
    )
]
