"""SeAFusion (Tang, Yuan & Ma, Information Fusion 2022), native port of the fusion network checkpoint.

Network (paper Fig. 3 and the checkpoint shapes; 72 tensors). All 3x3 convolutions use zero padding 1.

* two encoders (``vis_*`` for the visible Y channel, ``inf_*`` for infrared), each:
  ``*_conv``: 3x3 conv 1 -> 16, LeakyReLU(0.2); then two residual gradient dense blocks (RGBD),
  16 -> 32 and 32 -> 48 channels;
* RGBD(c -> c_out): a dense path (two 3x3 conv + LeakyReLU(0.2) layers, each output concatenated to its
  input: c -> 3c channels, then a 1x1 conv to c_out; here computed piecewise, see ``RGBD.forward``) plus a gradient path (fixed depthwise Sobel x and y
  filters, |gx| + |gy|, then a 1x1 conv to c_out); the sum goes through LeakyReLU(0.1);
* decoder on cat(visible, infrared) (96 channels): 3x3 convs 96 -> 64 -> 32 -> 16, each LeakyReLU(0.2),
  then 16 -> 1 with tanh; the output is tanh / 2 + 0.5. The checkpoint holds BatchNorm tensors for the
  decoder layers, but the network never applies them (they are loaded, unused).

Official inference protocol (Linfeng-Tang/SeAFusion ``test.py``; ``shared/reference/outputs/README.md``):

* visible: RGB (grey files repeated to RGB), float32 / 255, RGB -> YCrCb with OpenCV's coefficients and
  delta 0.5, no clamp; the network takes Y;
* infrared: ``cv2.imread(path, 0) / 255``. OpenCV's grey conversion of a colour PNG is
  :func:`fusionbench.color.luma_cv2_u8`; one-channel files are used as decoded (Pillow; OpenCV's libjpeg
  may decode a grey JPEG differently -- within one grey level on the reference pairs);
* output: fused Y with the visible Cr, Cb -> RGB (OpenCV inverse coefficients), clamp to [0, 1], min-max
  normalised over the whole image (all three channels, per item), ``np.uint8(255 * x)`` (truncation);
  a colour (RGB) image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.color import luma_cv2_u8, rgb_to_ycrcb, to_rgb
from fusionbench.errors import UsageError
from fusionbench.registry import MethodInfo, Paper, WeightFile

from ._common import check_pair, cl, fast_copy, load_checkpoint, minmax, to_unit, truncate_u8, weight_path

REPO = "Linfeng-Tang/VIF-Benchmark"
COMMIT = "23f2e51fc1b084310d998999222ce02dc364b6eb"
FILE = ("SeAFusion.pth", "8d65a7f9a50f36349803368cf9920f40420776995e7e8cc8a56d8d30e499431d")


class ConvAct(nn.Module):
    """k x k conv (zero pad k//2) with bias; key ``conv.*``. ``slope=None``: no activation."""

    def __init__(self, cin: int, cout: int, k: int = 3, slope: float | None = 0.2):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x if self.slope is None else F.leaky_relu(x, self.slope, inplace=True)


class ConvBNAct(ConvAct):
    """Decoder layer: conv + activation; holds a BatchNorm (``bn.*``) that the network never applies."""

    def __init__(self, cin: int, cout: int, slope: float | None = 0.2):
        super().__init__(cin, cout, 3, slope)
        self.bn = nn.BatchNorm2d(cout)


class Sobel(nn.Module):
    """|Sobel_x * x| + |Sobel_y * x|, depthwise, zero padding; fixed kernels stored in the checkpoint."""

    def __init__(self, channels: int):
        super().__init__()
        self.convx = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.convy = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        with torch.no_grad():
            self.convx.weight.copy_(kx.expand(channels, 1, 3, 3))
            self.convy.weight.copy_(kx.t().expand(channels, 1, 3, 3))
        self.convx.weight.requires_grad_(False)
        self.convy.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.convx(x).abs_().add_(self.convy(x).abs_())


class Dense(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = ConvAct(c, c)
        self.conv2 = ConvAct(2 * c, c)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat([x, self.conv1(x)], 1)
        return torch.cat([x, self.conv2(x)], 1)


class RGBD(nn.Module):
    """Residual gradient dense block."""

    def __init__(self, c: int, cout: int):
        super().__init__()
        self.dense = Dense(c)
        self.convdown = ConvAct(3 * c, cout, k=1, slope=None)
        self.sobelconv = Sobel(c)
        self.convup = ConvAct(c, cout, k=1, slope=None)

    def forward(self, x: Tensor) -> Tensor:
        """leaky_relu(convdown(cat(x, d1, d2)) + convup(sobel(x)), 0.1).

        The two 1x1 convolutions are computed as one chain of matrix products over the pieces of the
        concatenation (convdown's weight split by input channel), accumulated in place: the same sum
        without building the 3c-channel concatenation (float rounding aside).
        """
        c = x.shape[1]
        d1 = self.dense.conv1(x)
        d2 = self.dense.conv2(torch.cat([x, d1], 1))
        wd = self.convdown.conv.weight.flatten(1)  # (cout, 3c)
        out = _conv1x1_sum(
            [(x, wd[:, :c]), (d1, wd[:, c : 2 * c]), (d2, wd[:, 2 * c :]), (self.sobelconv(x), self.convup.conv.weight.flatten(1))],
            self.convdown.conv.bias + self.convup.conv.bias,
        )
        return F.leaky_relu(out, 0.1, inplace=True)


def _conv1x1_sum(pieces, bias: Tensor) -> Tensor:
    """sum_k conv1x1(x_k, w_k) + bias for (N, C_k, H, W) inputs, as in-place accumulated matrix products.

    Returns a channels_last (N, C_out, H, W) tensor (a view of the (N*H*W, C_out) product).
    """
    n, _, h, w = pieces[0][0].shape

    def rows(t: Tensor) -> Tensor:  # (N*H*W, C); a view when t is channels_last
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])

    (x0, w0), rest = pieces[0], pieces[1:]
    out = torch.addmm(bias, rows(x0), w0.t())
    for xk, wk in rest:
        out.addmm_(rows(xk), wk.t())
    return out.view(n, h, w, -1).permute(0, 3, 1, 2)


class SeAFusionNet(nn.Module):
    def __init__(self):
        super().__init__()
        for side in ("vis", "inf"):
            self.add_module(f"{side}_conv", ConvAct(1, 16))
            self.add_module(f"{side}_rgbd1", RGBD(16, 32))
            self.add_module(f"{side}_rgbd2", RGBD(32, 48))
        self.decode4 = ConvBNAct(96, 64)
        self.decode3 = ConvBNAct(64, 32)
        self.decode2 = ConvBNAct(32, 16)
        self.decode1 = ConvBNAct(16, 1, slope=None)

    def forward(self, vis_y: Tensor, ir: Tensor) -> Tensor:
        """(N, 1, H, W) visible Y and infrared in [0, 1] -> fused Y in (0, 1)."""
        v = self.vis_rgbd2(self.vis_rgbd1(self.vis_conv(vis_y)))
        i = self.inf_rgbd2(self.inf_rgbd1(self.inf_conv(ir)))
        x = self.decode2(self.decode3(self.decode4(torch.cat([v, i], 1))))
        return torch.tanh(self.decode1(x)) / 2 + 0.5


def ycrcb_to_rgb_seafusion(y: Tensor, cr: Tensor, cb: Tensor) -> Tensor:
    """SeAFusion's YCrCb -> RGB (OpenCV coefficients, delta 0.5)."""
    cr, cb = cr - 0.5, cb - 0.5
    return torch.cat([y + 1.403 * cr, y - 0.714 * cr - 0.344 * cb, y + 1.773 * cb], 1)


class SeAFusionFuser:
    tile_halo = None  # the output is min-max normalised over the whole image

    def __init__(self, info: MethodInfo, net: SeAFusionNet, device: torch.device):
        self.info, self.net, self.device = info, net.to(device).eval(), device
        self._fast = fast_copy(self.net)  # channels_last inference copy

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        check_pair(a, b)
        with torch.inference_mode():
            ir = to_unit(luma_cv2_u8(a.to(self.device)))
            ycc = rgb_to_ycrcb(to_unit(to_rgb(b.to(self.device))), 0.5)
            y = self._fast(cl(ycc[:, 0:1]), cl(ir))
            rgb = ycrcb_to_rgb_seafusion(y, ycc[:, 1:2], ycc[:, 2:3]).clamp(0, 1)
            return truncate_u8(minmax(rgb) * 255.0).contiguous()


def build(weights: dict, device: torch.device, task: str = "ivif", **options) -> SeAFusionFuser:
    """Factory (registry contract); no options."""
    info = ENTRIES[0]
    if options:
        raise UsageError(f"SeAFusion: unknown option(s) {', '.join(sorted(options))}; it takes none")
    if task not in info.tasks:
        raise UsageError(f"SeAFusion: unsupported task {task!r}; supported: {', '.join(info.tasks)}")
    net = load_checkpoint(SeAFusionNet(), weight_path(weights, FILE[0], info.display))
    return SeAFusionFuser(info, net, device)


ENTRIES = [
    MethodInfo(
        name="seafusion",
        display="SeAFusion",
        paper=Paper(
            "Image fusion in the loop of high-level vision tasks: A semantic-aware real-time infrared and "
            "visible image fusion network",
            "Information Fusion",
            2022,
            "https://doi.org/10.1016/j.inffus.2021.12.004",
        ),
        kind="cnn",
        tasks=("ivif",),
        inputs="infrared grey (OpenCV grey conversion), visible RGB -> Y channel; float /255",
        colour="fuses the visible Y channel; output RGB with the visible Cr/Cb (OpenCV coefficients, delta 0.5), "
        "min-max normalised over all three channels, truncated to uint8",
        weights=(
            WeightFile(
                name=FILE[0],
                sha256=FILE[1],
                url=f"https://github.com/{REPO}/raw/{COMMIT}/Checkpoint/SeAFusion/{FILE[0]}",
                licence="MIT (VIF-Benchmark repository)",
                origin=f"{REPO}@{COMMIT}",
                note="re-hosted by the SeAFusion author; not verified byte-identical to the official fusionmodel_final.pth",
            ),
        ),
        factory="fusionbench.baselines.ports.seafusion:build",
        code="https://github.com/Linfeng-Tang/SeAFusion",
        notes="Checkpoint from the author's VIF-Benchmark repo (the official repo snapshot was too large to fetch). "
        "Grey JPEG infrared decoded with Pillow (official: OpenCV).",
    )
]
