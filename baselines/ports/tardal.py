"""TarDAL (Liu et al., CVPR 2022), native PyTorch port of the v0 fusion generator and its checkpoints.

Network (the paper's generator, "dim=32, depth=3", and the checkpoint shapes; 46 tensors). Every
convolution is 3x3 with zero padding 1 and a bias; every activation is ReLU.

* ``encoder``: conv 2 -> 32, BatchNorm, ReLU (input: cat(infrared, visible grey));
* ``dense``: three conv-BN-ReLU layers producing 32 channels each; layer i sees the concatenation of
  everything before it (32, 64, 96 channels), and its output is appended *after* its input, giving
  128 channels at the end;
* ``fuse``: conv 128 -> 128 (no BN), ReLU; conv 128 -> 64, BN, ReLU; conv 64 -> 32, BN, ReLU;
  conv 32 -> 1, tanh. The fused image is ``tanh(.)`` clipped to [0, 1].

BatchNorm: the official ``fuse.py`` leaves the network in train mode unless ``--eval`` is passed, so
BN normalises with the statistics of the image itself (one image per forward pass). ``bn="image"``
reproduces that per item of a batch (instance statistics = batch-of-one BN; running statistics are
never touched); ``bn="running"`` uses the stored running statistics (``--eval``).

Official inference protocol (JinyuanLiu-CV/TarDAL v0, commit 8ef276f; ``fuse.py``,
``pipeline/eval.py``; ``shared/reference/outputs/README.md``):

* infrared: ``cv2.imread(p, IMREAD_GRAYSCALE) / 255``; visible: ``cv2.imread(p, IMREAD_COLOR)`` ->
  ``BGR2GRAY`` (uint8 fixed point, :func:`fusionbench.color.luma_cv2_u8`) ``/ 255``; no padding;
* ``--color``: ``uint8(fused * 255)`` (truncation) replaces Y in the visible image's OpenCV uint8
  YCrCb, converted back with OpenCV's uint8 ``YCrCb2BGR`` (both conversions reproduced bit-exactly
  in 14-bit fixed point below); a colour image;
* without ``--color``: ``cv2.imwrite`` of the float array ``fused * 255``, i.e. round to nearest
  (ties to even) with saturation; a one-channel image.

The README of that commit runs ``tardal.pt`` with ``--color`` (train-mode BN) and ``tardal+.pt`` /
``tardal++.pt`` with ``--color --eval``; ``bn="auto"`` follows those commands.
"""
from __future__ import annotations

from urllib.parse import quote

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.color import luma_cv2_u8, to_rgb
from fusionbench.errors import UsageError, WeightsError
from fusionbench.registry import MethodInfo, Paper, WeightFile

from ._common import check_pair, load_checkpoint, to_unit, weight_path

REPO = "JinyuanLiu-CV/TarDAL"
HOST = "Linfeng-Tang/VIF-Benchmark"
HOST_COMMIT = "23f2e51fc1b084310d998999222ce02dc364b6eb"
CHECKPOINTS = {  # name -> (file, sha256, BN mode of the official README command)
    "tardal": ("tardal.pt", "e0fa61e25cffa9fb14ff17b47ea7ba237a6e8c6f37e1b9b115d63354ff0f13e1", "image"),
    "tardal+": ("tardal+.pt", "cff3756548b511e3e415616debc557cdc85b3bb19393ca158cac8d08f232897c", "running"),
    "tardal++": ("tardal++.pt", "7009d125e36db043d6918d9358e10c6dca7fdf2dd08ada09c5ecd294f45f98c5", "running"),
}
BN_MODES = ("auto", "image", "running")


class ImageBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose statistics can come from each image alone (train-mode BN on a batch of one).

    ``per_image=True``: normalise every item with its own per-channel mean and biased variance over
    (H, W), then apply the affine weight/bias; running statistics are neither used nor updated.
    ``per_image=False``: the stored running statistics (eval mode). ``inplace=True`` lets the
    per-image path overwrite its input when no gradient is needed (the generator passes it a
    convolution's fresh output).
    """

    per_image: bool = False

    def __init__(self, num_features: int, inplace: bool = False):
        super().__init__(num_features)
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        if not self.per_image:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        shift = self.bias.view(1, -1, 1, 1) - mean * scale
        if self.inplace and not (torch.is_grad_enabled() and x.requires_grad):
            return x.mul_(scale).add_(shift)
        return x * scale + shift


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), ImageBatchNorm2d(cout, inplace=True), nn.ReLU(inplace=True))


class TarDALGenerator(nn.Module):
    """The TarDAL v0 fusion generator; state-dict keys match the official checkpoints as they are."""

    def __init__(self, dim: int = 32, depth: int = 3):
        super().__init__()
        self.encoder = _conv_bn_relu(2, dim)
        self.dense = nn.ModuleList(_conv_bn_relu(dim * (i + 1), dim) for i in range(depth))
        wide = dim * (depth + 1)
        self.fuse = nn.Sequential(
            nn.Sequential(nn.Conv2d(wide, wide, 3, padding=1), nn.ReLU(inplace=True)),
            _conv_bn_relu(wide, wide // 2),
            _conv_bn_relu(wide // 2, wide // 4),
            nn.Sequential(nn.Conv2d(wide // 4, 1, 3, padding=1), nn.Tanh()),
        )

    def set_bn(self, per_image: bool) -> TarDALGenerator:
        for m in self.modules():
            if isinstance(m, ImageBatchNorm2d):
                m.per_image = per_image
        return self

    def forward(self, ir: Tensor, vi: Tensor) -> Tensor:
        """ir, vi: (N, 1, H, W) in [0, 1] -> fused (N, 1, H, W) = tanh output (not yet clipped)."""
        x = self.encoder(torch.cat([ir, vi], 1))
        for layer in self.dense:
            x = torch.cat([x, layer(x)], 1)
        return self.fuse(x)


# --- OpenCV uint8 YCrCb conversions (imgproc color_yuv, 14-bit fixed point, CV_DESCALE rounding) ---
_SHIFT = 14
_HALF = 1 << (_SHIFT - 1)


def _descale(x: Tensor) -> Tensor:
    return (x + _HALF) >> _SHIFT  # arithmetic shift: floor, as CV_DESCALE on int


def cv2_rgb_to_ycrcb_u8(rgb: Tensor) -> Tensor:
    """OpenCV ``cvtColor(uint8, RGB2YCrCb)`` (same as BGR2YCrCb on BGR data): (N, 3, H, W) uint8 -> uint8."""
    x = rgb.to(torch.int32)
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = _descale(r * 4899 + g * 9617 + b * 1868)
    cr = _descale((r - y) * 11682 + (128 << _SHIFT))
    cb = _descale((b - y) * 9241 + (128 << _SHIFT))
    return torch.cat([y, cr, cb], 1).clamp_(0, 255).to(torch.uint8)


def cv2_ycrcb_to_rgb_u8(ycc: Tensor) -> Tensor:
    """OpenCV ``cvtColor(uint8, YCrCb2RGB)``: (N, 3, H, W) uint8 -> uint8 RGB, saturated."""
    x = ycc.to(torch.int32)
    y, cr, cb = x[:, 0:1], x[:, 1:2] - 128, x[:, 2:3] - 128
    r = y + _descale(cr * 22987)
    g = y + _descale(cb * -5636 + cr * -11698)
    b = y + _descale(cb * 29049)
    return torch.cat([r, g, b], 1).clamp_(0, 255).to(torch.uint8)


def cv2_grey_read(x: Tensor) -> Tensor:
    """What ``cv2.imread(p, IMREAD_GRAYSCALE)`` gives for an image decoded as ``x`` (uint8, 1 or 3 channels).

    One-channel files and colour files with equal channels give their grey value exactly. Other colour
    files are approximated by OpenCV's uint8 BGR2GRAY of the RGB decode: OpenCV decodes them straight to
    grey (libjpeg's luma plane for a JPEG, libpng's conversion for a PNG), which can differ by a few
    levels on some pixels (measured on the RoadScene visible JPEGs: 0.05-0.7 % of pixels, up to 10 levels).
    """
    return luma_cv2_u8(x)


class TarDALFuser:
    """Fuser for TarDAL: uint8 (N, C, H, W) pairs in, the image ``fuse.py`` saves out."""

    def __init__(self, info: MethodInfo, net: TarDALGenerator, device: torch.device, per_image_bn: bool, color: bool):
        self.info, self.device, self.color = info, device, color
        self.per_image_bn = per_image_bn
        self.net = net.set_bn(per_image_bn).to(device).eval()
        if device.type == "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)
        # per-image BN statistics are global over the image: tiles would change the result
        self.tile_halo = None if per_image_bn else 7  # seven 3x3 convolutions

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        check_pair(a, b)
        with torch.inference_mode():
            a, b = a.to(self.device), b.to(self.device)
            ir = to_unit(cv2_grey_read(a))
            vi = to_unit(luma_cv2_u8(b))
            if self.device.type == "cpu":
                ir, vi = ir.contiguous(memory_format=torch.channels_last), vi.contiguous(memory_format=torch.channels_last)
            fused = self.net(ir, vi).clamp_(0, 1).contiguous()
            if not self.color:
                return torch.round(fused.to(torch.float64) * 255).clamp_(0, 255).to(torch.uint8)
            y = (fused * 255).to(torch.uint8)  # truncation (values are in [0, 255])
            ycc = cv2_rgb_to_ycrcb_u8(to_rgb(b))
            return cv2_ycrcb_to_rgb_u8(torch.cat([y, ycc[:, 1:]], 1))


def _checkpoint_path(info: MethodInfo, weights: dict, name: str) -> Path:  # noqa: F821
    """The path of checkpoint file ``name``: given, beside a given file, or where resolve() looks."""
    from fusionbench.weights import candidates

    if weights and name in weights:
        return weight_path(weights, name, info.display)
    for p in (weights or {}).values():
        sibling = p.parent / name
        if sibling.is_file():
            return sibling
    wf = next(w for w in ALL_WEIGHTS if w.name == name)
    for c in candidates(info, wf):
        if c.is_file():
            return c
    raise WeightsError(
        f"{info.display}: weights file {name} not found; put it beside tardal.pt, at "
        f"$FUSIONBENCH_WEIGHTS/{info.name}/{name}, or download it from {wf.url}"
    )


def build(
    weights: dict,
    device: torch.device,
    task: str = "ivif",
    checkpoint: str = "tardal",
    bn: str = "auto",
    color: bool = True,
    **options,
) -> TarDALFuser:
    """Factory (registry contract).

    ``checkpoint``: "tardal" (default), "tardal+" or "tardal++"; ``bn``: "auto" (what the official README
    command for that checkpoint uses), "image" (train-mode BN, per-image statistics) or "running"
    (``--eval``); ``color``: colour output with the visible chroma (``--color``, default) or grey.
    """
    info = ENTRIES[0]
    if options:
        raise UsageError(f"TarDAL: unknown option(s) {', '.join(sorted(options))}; known: checkpoint, bn, color")
    if task not in info.tasks:
        raise UsageError(f"TarDAL: unsupported task {task!r}; supported: {', '.join(info.tasks)}")
    key = str(checkpoint).lower().removesuffix(".pt")
    if key not in CHECKPOINTS:
        raise UsageError(f"TarDAL: unknown checkpoint {checkpoint!r}; choose one of {', '.join(CHECKPOINTS)}")
    bn = str(bn).lower()
    if bn not in BN_MODES:
        raise UsageError(f"TarDAL: unknown bn mode {bn!r}; choose one of {', '.join(BN_MODES)}")
    if not isinstance(color, bool):
        raise UsageError(f"TarDAL: option color must be true or false, got {color!r}")
    file, _, official_bn = CHECKPOINTS[key]
    per_image = (official_bn if bn == "auto" else bn) == "image"
    net = load_checkpoint(TarDALGenerator(), _checkpoint_path(info, weights, file))
    return TarDALFuser(info, net, device, per_image, color)


def _wf(key: str) -> WeightFile:
    file, sha, _ = CHECKPOINTS[key]
    return WeightFile(
        name=file,
        sha256=sha,
        url=f"https://github.com/{HOST}/raw/{HOST_COMMIT}/Checkpoint/TarDAL/{quote(file)}",
        licence="MIT (VIF-Benchmark re-host)",
        origin=f"{HOST}@{HOST_COMMIT}",
        note=("" if key == "tardal" else f"optional: checkpoint={key}; ")
        + "byte-identical re-host of the official TarDAL v0 weights (the official copies ship as GitHub "
        "release assets of JinyuanLiu-CV/TarDAL)",
    )


ALL_WEIGHTS = tuple(_wf(k) for k in CHECKPOINTS)

ENTRIES = [
    MethodInfo(
        name="tardal",
        display="TarDAL",
        paper=Paper(
            "Target-aware Dual Adversarial Learning and a Multi-scenario Multi-modality Benchmark to Fuse "
            "Infrared and Visible for Object Detection",
            "CVPR",
            2022,
            "https://arxiv.org/abs/2203.16220",
        ),
        kind="gan",
        tasks=("ivif",),
        inputs="infrared grey (OpenCV IMREAD_GRAYSCALE), visible grey (OpenCV uint8 BGR2GRAY); float /255",
        colour="color=true (default): fused Y (truncated) with the visible image's OpenCV uint8 Cr/Cb, "
        "OpenCV uint8 YCrCb->RGB, colour out; color=false: rounded grey out",
        weights=(ALL_WEIGHTS[0],),
        factory="fusionbench.baselines.ports.tardal:build",
        code=f"https://github.com/{REPO}",
        notes="Port of the v0 code (commit 8ef276f). Options: checkpoint=tardal|tardal+|tardal++ (the other "
        "files are looked up beside tardal.pt), bn=auto|image|running (auto = the official README command: "
        "per-image train-mode BN for tardal, --eval for tardal+/tardal++), color=true|false. Images decoded "
        "with Pillow (official: OpenCV); a colour JPEG infrared is converted to grey from RGB (OpenCV asks "
        "libjpeg for grey directly). Weights: byte-identical re-host in Linfeng-Tang/VIF-Benchmark.",
    )
]
