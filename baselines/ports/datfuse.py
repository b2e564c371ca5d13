"""DATFuse (Tang, He, Liu, Duan & Si, IEEE TCSVT 2023), native PyTorch port of the official checkpoint.

Network (the paper's DARM -> TRM -> DARM design and the checkpoint shapes; 64 tensors; 16 channels):

* ``convolutional``: replicate pad 2, 5x5 conv 2 -> 16, BatchNorm, ReLU (shallow features ``s``);
* dual attention residual module (DARM), one set of weights used twice:
  ``fem`` = replicate pad 1, 3x3 conv, BN, ReLU, then the *same* conv and BN again (no ReLU);
  ``cam`` = global average pool, 1x1 conv 16 -> 4, ReLU, 1x1 conv 4 -> 16, sigmoid (per channel);
  ``sam`` = 3x3 conv 16 -> 4 (zero padding 1), BN, ReLU, 3x3 conv 4 -> 1 (zero padding 1), BN, sigmoid
  (per pixel); with ``f = fem(x)`` the module gives ``f * cam(f) + f * sam(f)``;
  encoder: ``e = ReLU(s + DARM(s))``;
* transformer module (TRM): ``basicLayer`` = two Swin blocks (dim 16, 8 heads, MLP ratio 4, GELU,
  LayerNorm pre-norm, residuals) with window size 1 and no shift. A one-token window makes the
  softmax exactly 1, so attention is ``proj(v)`` (the relative-position bias and the mask drop out).
  The official block reinterprets the (N, C, H, W) tensor's memory as (N, H, W, C) with ``view``, not
  ``permute``: the "tokens" are runs of 16 consecutive values of the NCHW buffer (16 neighbouring
  pixels of one channel row). This port does the same (``reshape(-1, 16)`` of the contiguous buffer);
  ``patch_embed`` holds a LayerNorm(96) that the network never applies;
* decoder: ``d = fem(t)``, ``d * cam(d) + d * sam(d) + d``; output ``tanh(1x1 conv 16 -> 1)``.

Official inference protocol (tthinking/DATFuse ``Test.py``; ``shared/reference/outputs/README.md``):
``PIL.Image.convert('L')`` of both images (:func:`fusionbench.color.luma_pil`), ``ToTensor`` (/255),
``cat(ir, vi)``, ``model.eval()`` (BN running statistics), no padding; the output ``uint8(x * 255)``
(truncation; the official code does not clamp, so a negative value would wrap -- this port clamps to 0).
A one-channel image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.color import luma_pil
from fusionbench.errors import UsageError
from fusionbench.registry import MethodInfo, Paper, WeightFile

from ._common import check_pair, load_checkpoint, to_unit, truncate_u8, weight_path

REPO = "tthinking/DATFuse"
COMMIT = "0cd93f15fb5552c7aef79b7be56726c863d6c5ba"
FILE = ("model_10.pth", "075b636954cbd425fc29be808bcfb42232e29b203f054c2a637ed301300d5a1d")
DIM = 16


class ConvBN(nn.Module):
    """Replicate pad k//2, k x k conv with bias, BatchNorm (``conv.*``, ``bn.*``)."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        p = self.conv.kernel_size[0] // 2
        return self.bn(self.conv(F.pad(x, (p, p, p, p), mode="replicate")))


class FEM(ConvBN):
    """Feature extraction: the same conv + BN applied twice, ReLU in between."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.relu(super().forward(x)))


class ChannelAttention(nn.Module):
    """Squeeze-excitation weights (N, C, 1, 1): avg pool, 1x1 C -> C/4, ReLU, 1x1 C/4 -> C, sigmoid."""

    def __init__(self, c: int = DIM, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(c, c // reduction, 1), nn.ReLU(inplace=True), nn.Conv2d(c // reduction, c, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class SpatialAttention(nn.Module):
    """Per-pixel weights (N, 1, H, W): 3x3 C -> C/4, BN, ReLU, 3x3 C/4 -> 1, BN, sigmoid (zero padding)."""

    def __init__(self, c: int = DIM, reduction: int = 4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c // reduction, 3, padding=1),
            nn.BatchNorm2d(c // reduction),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // reduction, 1, 3, padding=1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class WindowAttention1(nn.Module):
    """Window attention with one token per window: softmax over one key is 1, so the output is proj(v).

    ``relative_position_bias_table`` / ``relative_position_index`` are kept for the checkpoint; with a
    single token they cannot change the result.
    """

    def __init__(self, dim: int = DIM, num_heads: int = 8):
        super().__init__()
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros(1, num_heads))
        self.register_buffer("relative_position_index", torch.zeros(1, 1, dtype=torch.long))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        d = x.shape[-1]
        wv, bv = self.qkv.weight[2 * d :], self.qkv.bias[2 * d :]
        # proj(v(x)) as one linear map (a 16x16 product; saves a pass over the tokens)
        return F.linear(x, self.proj.weight @ wv, self.proj.weight @ bv + self.proj.bias)


class Mlp(nn.Module):
    def __init__(self, dim: int = DIM, ratio: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * ratio)
        self.fc2 = nn.Linear(dim * ratio, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock1(nn.Module):
    """Pre-norm transformer block on tokens (..., dim): x + attn(norm1(x)), then + mlp(norm2(x))."""

    def __init__(self, dim: int = DIM, num_heads: int = 8):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention1(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim)

    def forward(self, t: Tensor) -> Tensor:
        t = t + self.attn(self.norm1(t))
        return t + self.mlp(self.norm2(t))


class BasicLayer(nn.Module):
    def __init__(self, dim: int = DIM, depth: int = 2, num_heads: int = 8):
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock1(dim, num_heads) for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C, H, W). Tokens are runs of C consecutive values of the contiguous NCHW buffer."""
        t = x.contiguous().reshape(-1, x.shape[1])
        for blk in self.blocks:
            t = blk(t)
        return t.reshape(x.shape)


class PatchEmbedNorm(nn.Module):
    """Holds the checkpoint's ``patch_embed.norm`` (LayerNorm(96)); never applied by the network."""

    def __init__(self, dim: int = 96):
        super().__init__()
        self.norm = nn.LayerNorm(dim)


class DATFuseNet(nn.Module):
    """DATFuse MODEL(in_channel=2, out_channel=16, window_size=1, depth=2, num_heads=8); official keys."""

    def __init__(self):
        super().__init__()
        self.convolutional = ConvBN(2, DIM, 5)
        self.convolutional_out = nn.Module()
        self.convolutional_out.conv = nn.Conv2d(DIM, 1, 1)
        self.fem = FEM(DIM, DIM, 3)
        self.cam = ChannelAttention(DIM)
        self.sam = SpatialAttention(DIM)
        self.patch_embed = PatchEmbedNorm(96)
        self.basicLayer = BasicLayer(DIM, 2, 8)

    def darm(self, x: Tensor) -> Tensor:
        f = self.fem(x)
        return f * self.cam(f) + f * self.sam(f), f

    def forward(self, ir: Tensor, vi: Tensor) -> Tensor:
        """ir, vi: (N, 1, H, W) in [0, 1] -> tanh output (N, 1, H, W)."""
        s = F.relu(self.convolutional(torch.cat([ir, vi], 1)))
        att, _ = self.darm(s)
        t = self.basicLayer(F.relu(s + att))
        att, d = self.darm(t)
        return torch.tanh(self.convolutional_out.conv(att + d))


class DATFuseFuser:
    """Fuser for DATFuse: uint8 (N, C, H, W) pairs in, the one-channel image ``Test.py`` saves out."""

    tile_halo = None  # channel attention pools over the whole image

    def __init__(self, info: MethodInfo, net: DATFuseNet, device: torch.device):
        self.info, self.device = info, device
        self.net = net.to(device).eval()

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        check_pair(a, b)
        with torch.inference_mode():
            ir = to_unit(luma_pil(a.to(self.device)))
            vi = to_unit(luma_pil(b.to(self.device)))
            return truncate_u8(self.net(ir, vi) * 255)


def build(weights: dict, device: torch.device, task: str = "ivif", **options) -> DATFuseFuser:
    """Factory (registry contract); no options."""
    info = ENTRIES[0]
    if options:
        raise UsageError(f"DATFuse: unknown option(s) {', '.join(sorted(options))}; it takes none")
    if task not in info.tasks:
        raise UsageError(f"DATFuse: unsupported task {task!r}; supported: {', '.join(info.tasks)}")
    net = load_checkpoint(DATFuseNet(), weight_path(weights, FILE[0], info.display))
    return DATFuseFuser(info, net, device)


ENTRIES = [
    MethodInfo(
        name="datfuse",
        display="DATFuse",
        paper=Paper(
            "DATFuse: Infrared and Visible Image Fusion via Dual Attention Transformer",
            "IEEE TCSVT",
            2023,
            "https://doi.org/10.1109/TCSVT.2023.3234340",
        ),
        kind="transformer",
        tasks=("ivif",),
        inputs="both images grey (PIL convert('L')), float /255",
        colour="grey in (PIL luma of a colour source), grey out",
        weights=(
            WeightFile(
                name=FILE[0],
                sha256=FILE[1],
                url=f"https://github.com/{REPO}/raw/{COMMIT}/{FILE[0]}",
                licence="none stated",
                origin=f"{REPO}@{COMMIT}",
            ),
        ),
        factory="fusionbench.baselines.ports.datfuse:build",
        code=f"https://github.com/{REPO}",
        notes="Decoded with Pillow, as the official code. Output truncated to uint8 after a clamp at 0 (the "
        "official cast would wrap negative values; none occur on the reference pairs). The Swin blocks' "
        "memory-reinterpreting view (NCHW buffer read as NHWC tokens) is reproduced, as it defines the "
        "trained network's behaviour.",
    )
]
