"""IFCNN (Zhang et al., Information Fusion 2020) as a native PyTorch port of the official checkpoints.

Network (from the paper, Fig. 2, and the checkpoint shapes; 13 tensors):

* feature extraction, shared by every input: ``conv1`` 7x7, 3 -> 64, no bias (the first layer of an
  ImageNet ResNet-101, frozen; its weight is stored in the checkpoint), applied after a replicate pad
  of 3 with stride 1 and no activation; ``conv2`` = replicate pad 1, 3x3 conv 64 -> 64 without bias,
  BatchNorm, ReLU;
* fusion: element-wise MAX, MEAN or SUM over the inputs' conv2 features (one checkpoint per rule);
* reconstruction: ``conv3`` (as conv2), then ``conv4`` 1x1, 64 -> 3 with bias.

BatchNorm uses its running statistics (the official demo calls ``model.eval()``).

Official inference protocol (uzeful/IFCNN ``Code/IFCNN_Main.py``; the ivif one is the reference in
``shared/reference/outputs/README.md``):

* every image is ``PIL.Image.convert('RGB')`` (grey repeated), ``ToTensor`` (/255);
* ivif, mif (the IV and MD branches): mean 0 / std 1, so no normalisation; the fused RGB output is
  ``clamp(0, 1) * 255``, cast to uint8 by truncation, then converted to grey with OpenCV's uint8
  ``RGB2GRAY`` (:func:`fusionbench.color.luma_cv2_u8`); one-channel output;
* mfif (the CMF branch, colour multi-focus): ImageNet normalisation (mean 0.485, 0.456, 0.406; std
  0.229, 0.224, 0.225) on the input and its inverse on the output, then clamp, x255, truncation; the RGB
  output is saved (also for grey sources, which are repeated to RGB as in the official loader);
* meif: the official multi-exposure branch (IFCNN-MEAN, PIL YCbCr, Cb/Cr weighting, a linear stretch
  and OpenCV CLAHE on the fused Y) is not ported; ``task="meif"`` raises a clear error.

Options:

* ``rule``: ``"max"`` (default, IFCNN-MAX.pth, what the paper uses for ivif, mif and mfif), ``"mean"``
  (IFCNN-MEAN.pth) or ``"sum"`` (IFCNN-SUM.pth);
* ``norm``: ``"none"`` (default for ivif and mif, the current demo) or ``"imagenet"`` (default for
  mfif). The results the authors publish in the repository (``Results/IV``, ``Results/MD``) were made
  with ImageNet normalisation for the grey sets too: ``norm="imagenet"`` reproduces them (14 IV and
  8 MD images, >= 91 dB, see ``tests/test_ports_a.py``), the default reproduces the current code.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.color import luma_cv2_u8, to_rgb
from fusionbench.errors import UsageError, WeightsError
from fusionbench.registry import MethodInfo, Paper, WeightFile

from ._common import check_pair, cl, fast_copy, fold_bn, load_checkpoint, to_unit, truncate_u8, weight_path

REPO = "uzeful/IFCNN"
COMMIT = "8fe59c2b1553e52acc793986208ca479d134a8da"
RULES = {
    "max": ("IFCNN-MAX.pth", "6022b44c88a2f0367ba9b08fcdf0d663745d9a966fca0ee1f41867797b6ff53f"),
    "mean": ("IFCNN-MEAN.pth", "fd2ee9361f1d428fc9749e28e8a2c5c5ef6ce6528ab6f5ad8ef5def42e7ffa4b"),
    "sum": ("IFCNN-SUM.pth", "a8c1d293f1bf16a93e6244a4bf8f7a7bd300dc10555c8597ad7ef3320b0410cb"),
}
NORMS = ("none", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBlock(nn.Module):
    """Replicate pad 1, 3x3 conv (no bias), BatchNorm, ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))), inplace=True)


class IFCNNNet(nn.Module):
    """Two-branch (shared weights) feature extraction, element-wise fusion, reconstruction."""

    def __init__(self, rule: str = "max"):
        super().__init__()
        if rule not in RULES:
            raise UsageError(f"IFCNN: unknown fusion rule {rule!r}; choose one of {', '.join(RULES)}")
        self.rule = rule
        self.conv1 = nn.Conv2d(3, 64, 7, bias=False)
        self.conv2 = ConvBlock(64)
        self.conv3 = ConvBlock(64)
        self.conv4 = nn.Conv2d(64, 3, 1)

    def features(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(F.pad(x, (3, 3, 3, 3), mode="replicate")))

    def forward(self, *inputs: Tensor) -> Tensor:
        """Fuse any number of (N, 3, H, W) inputs (normalised as the protocol says)."""
        n = inputs[0].shape[0]
        feats = self.features(torch.cat(inputs, 0)).split(n, 0)  # one pass over all inputs
        fused = feats[0]
        for f in feats[1:]:
            fused = torch.maximum(fused, f) if self.rule == "max" else fused + f
        if self.rule == "mean":
            fused = fused / len(feats)
        return self.conv4(self.conv3(fused))


def fast_ifcnn(net: IFCNNNet) -> IFCNNNet:
    """Inference copy: BatchNorm folded into conv2/conv3, channels_last."""
    fast = fast_copy(net)
    for block in (fast.conv2, fast.conv3):
        block.conv, block.bn = fold_bn(block.conv, block.bn), nn.Identity()
    return fast.to(memory_format=torch.channels_last)


class IFCNNFuser:
    """Fuser for IFCNN: uint8 (N, C, H, W) pairs in, the image the official demo saves out.

    ``net`` holds the checkpoint as loaded; inference runs on a BN-folded channels_last copy.
    """

    tile_halo = 5  # 7x7 + 3x3 + 3x3 receptive field radius (3 + 1 + 1)

    def __init__(self, info: MethodInfo, net: IFCNNNet, device: torch.device, task: str, norm: str | None = None):
        self.info, self.net, self.device, self.task = info, net.to(device).eval(), device, task
        self.norm = norm or ("imagenet" if task == "mfif" else "none")
        self._fast = fast_ifcnn(self.net)
        view = (1, 3, 1, 1)
        self._mean = torch.tensor(IMAGENET_MEAN, device=device).view(view)
        self._std = torch.tensor(IMAGENET_STD, device=device).view(view)

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        check_pair(a, b)
        with torch.inference_mode():
            xa = to_unit(to_rgb(a.to(self.device)))
            xb = to_unit(to_rgb(b.to(self.device)))
            colour = self.task == "mfif"
            if self.norm == "imagenet":
                xa, xb = (xa - self._mean) / self._std, (xb - self._mean) / self._std
            out = self._fast(cl(xb), cl(xa))  # official order: img1 = visible (second source), img2 = infrared
            if self.norm == "imagenet":
                out = out * self._std + self._mean
            rgb = truncate_u8(out.clamp(0, 1) * 255)
            return (rgb if colour else luma_cv2_u8(rgb)).contiguous()


def build(
    weights: dict, device: torch.device, task: str = "ivif", rule: str | None = None, norm: str | None = None, **options
) -> IFCNNFuser:
    """Factory (registry contract). ``rule``: "max" (default), "mean" or "sum"; ``norm``: "none" | "imagenet"."""
    if options:
        raise UsageError(f"IFCNN: unknown option(s) {', '.join(sorted(options))}; known: rule, norm")
    if norm is not None and norm.lower() not in NORMS:
        raise UsageError(f"IFCNN: unknown normalisation {norm!r}; choose one of {', '.join(NORMS)}")
    if task == "meif":
        raise UsageError(
            "IFCNN: the official multi-exposure protocol (IFCNN-MEAN with YCbCr chroma weighting and OpenCV CLAHE) "
            "is not ported; use task ivif, mif or mfif"
        )
    if task not in ENTRIES[0].tasks:
        raise UsageError(f"IFCNN: unsupported task {task!r}; supported: {', '.join(ENTRIES[0].tasks)}")
    rule = (rule or "max").lower()
    if rule not in RULES:
        raise UsageError(f"IFCNN: unknown fusion rule {rule!r}; choose one of {', '.join(RULES)}")
    info = ENTRIES[0]
    path = _weight_for_rule(info, weights, rule)
    net = load_checkpoint(IFCNNNet(rule), path, remap=_add_bn_counters)
    return IFCNNFuser(info, net, device, task, norm.lower() if norm else None)


def _add_bn_counters(state: dict) -> dict:
    """The checkpoints predate BatchNorm's ``num_batches_tracked`` buffer (unused in eval mode): add it as 0."""
    state = dict(state)
    for block in ("conv2", "conv3"):
        if f"{block}.bn.running_mean" in state:
            state.setdefault(f"{block}.bn.num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return state


def _weight_for_rule(info: MethodInfo, weights: dict, rule: str):
    name = RULES[rule][0]
    if weights and name in weights:
        return weight_path(weights, name, info.display)
    # the MEAN/SUM checkpoints are options, not part of the default weight set: look for them beside the
    # resolved MAX file, then where fusionbench.weights.resolve would look
    from fusionbench.weights import candidates

    wf = next(w for w in OPTIONAL_WEIGHTS if w.name == name)
    for p in weights.values() if weights else ():
        sibling = Path(p).parent / name
        if sibling.is_file():
            return sibling
    for c in candidates(info, wf):
        if c.is_file():
            return c
    raise WeightsError(
        f"{info.display}: weights file {name} (rule={rule}) not found; put it beside IFCNN-MAX.pth, "
        f"at $FUSIONBENCH_WEIGHTS/{info.name}/{name}, or download it from {wf.url}"
    )


def _wf(rule: str) -> WeightFile:
    name, sha = RULES[rule]
    return WeightFile(
        name=name,
        sha256=sha,
        url=f"https://github.com/{REPO}/raw/{COMMIT}/Code/snapshots/{name}",
        licence="none stated",
        origin=f"{REPO}@{COMMIT}",
        note="" if rule == "max" else f"optional: rule={rule}",
    )


OPTIONAL_WEIGHTS = (_wf("mean"), _wf("sum"))

ENTRIES = [
    MethodInfo(
        name="ifcnn",
        display="IFCNN",
        paper=Paper(
            "IFCNN: A general image fusion framework based on convolutional neural network",
            "Information Fusion",
            2020,
            "https://doi.org/10.1016/j.inffus.2019.07.011",
        ),
        kind="cnn",
        tasks=("ivif", "mif", "mfif"),
        inputs="two images, each fed as RGB (grey repeated to 3 channels)",
        colour="ivif/mif: RGB in, fused RGB converted to grey (OpenCV uint8 RGB2GRAY), grey out; "
        "mfif: ImageNet-normalised RGB in, colour out",
        weights=(_wf("max"),),
        factory="fusionbench.baselines.ports.ifcnn:build",
        code=f"https://github.com/{REPO}",
        notes="Decoded with Pillow, as the official code. Options: rule=max|mean|sum selects IFCNN-MAX/MEAN/SUM.pth "
        "(MEAN and SUM are looked up beside the MAX file); norm=imagenet reproduces the results published in the "
        "repository (Results/IV, Results/MD), which used ImageNet normalisation; the default follows the current "
        "demo (no normalisation for ivif/mif). The multi-exposure branch (CLAHE) is not ported.",
        options={},
    )
]
