"""MetaFusion (Zhao et al., CVPR 2023), native PyTorch port of the official fusion network and test protocol.

Network (``models/metafusion_net.py``, ``FusionNet(block_num=3, feature_out=False)`` as ``test.py`` builds it;
36 tensors). Every convolution is 3x3, stride 1, zero padding 1, with a bias (the official ``MetaConv2d``
keeps its weight and bias as *buffers*; the state-dict keys are the same as an ``nn.Conv2d``'s):

* ``block1``: three ``FusionBlock``s (4 -> 64 -> 128, 128 -> 128 -> 256, 256 -> 128 -> 256 channels). A
  block is ``conv1_1`` + ReLU, ``conv1_2`` + ReLU, then two parallel branches ``conv1_0_00`` + ReLU and
  ``conv1_0_01`` + ReLU whose outputs are concatenated (2 x out channels);
* ``block2``: 256 -> 128 -> 128 -> 128 -> 128 -> 64 (3x3 + ReLU each), then a 1x1 conv 64 -> 2 and a sigmoid:
  two per-pixel weights (w_ir, w_vis).

Official inference protocol (``test.py`` + ``utils/dataloader.py``;
``shared/reference/random/metafusion/README.md``):

* every source is resized to 512 x 384 (width x height), whatever its size: IR with PIL
  ``resize((512, 384), BILINEAR)`` then ``convert('L')``; the visible image with PIL ``resize`` then
  ``convert('RGB')`` (network input) and, separately, with OpenCV ``imread`` (BGR) + ``resize(INTER_LINEAR)`` +
  ``cvtColor(COLOR_RGB2HSV)`` applied to the BGR array (H is computed on swapped channels; the swap cancels on
  the way back). The PIL steps are done by Pillow itself; the OpenCV steps (fixed-point bilinear resize,
  integer RGB -> HSV, float HSV -> RGB) are re-implemented here bit-exactly (OpenCV is not a dependency);
* network input ``cat([ir, vis_rgb]) / 255``; ``fus = w_ir * ir + w_vis * V / 255``; ``fus * 255`` clipped to
  [0, 255] and truncated to uint8 replaces V; HSV -> RGB (OpenCV) gives the saved colour image, which stays
  **512 x 384** (not resized back to the source size).

``a`` is the IR image, ``b`` the visible one, uint8 (N, 1|3, H, W) as PIL decodes them; the output is
uint8 (N, 3, 384, 512) RGB. One known source of differences from the official script: it decodes the visible
file with OpenCV for the HSV half, while a Fuser receives PIL-decoded pixels (identical for PNG/BMP, possibly
one grey level apart for JPEG).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.errors import UsageError
from fusionbench.registry import MethodInfo, Paper, WeightFile

from ._common import check_pair, cl, fast_copy, load_checkpoint, weight_path

REPO = "wdzhao123/MetaFusion"
COMMIT = "a8c5eafc84df9399e35602a00e3651a7d3d5c7d1"
WEIGHTS = "model_weight.pth"
SIZE = (512, 384)  # (width, height), as PIL and OpenCV take it


# ----------------------------------------------------------------------------------------------- network
def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1)


class FusionBlock(nn.Module):
    """conv1_1, conv1_2 (each + ReLU), then two parallel 3x3 + ReLU branches concatenated."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1_1 = _conv(cin, cout)
        self.conv1_2 = _conv(cout, cout)
        self.conv1_0_00 = _conv(cout, cout)
        self.conv1_0_01 = _conv(cout, cout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1_1(x), inplace=True)
        x = F.relu(self.conv1_2(x), inplace=True)
        return torch.cat([F.relu(self.conv1_0_00(x), inplace=True), F.relu(self.conv1_0_01(x), inplace=True)], 1)


class FusionNet(nn.Module):
    """The official FusionNet (block_num=3); forward returns the two sigmoid weights (N, 2, H, W)."""

    def __init__(self, block_num: int = 3):
        super().__init__()
        chans = [(4, 64), (128, 128)] + [(256, 128)] * (block_num - 2)
        self.block1 = nn.Sequential(*[FusionBlock(i, o) for i, o in chans[:block_num]])
        cin = 128 if block_num == 1 else 256
        self.block2 = nn.Sequential(
            _conv(cin, 128), nn.ReLU(inplace=True),
            _conv(128, 128), nn.ReLU(inplace=True),
            _conv(128, 128), nn.ReLU(inplace=True),
            _conv(128, 128), nn.ReLU(inplace=True),
            _conv(128, 64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 2, 1, 1, 0), nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block2(self.block1(x))


# ------------------------------------------------------------------------------------- PIL preprocessing
def _pil_images(x: Tensor):
    from PIL import Image

    for img in x.to("cpu"):
        arr = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
        yield Image.fromarray(arr[..., 0], "L") if arr.shape[-1] == 1 else Image.fromarray(arr, "RGB")


def pil_resize(x: Tensor, mode: str) -> Tensor:
    """PIL ``resize((512, 384), BILINEAR).convert(mode)`` of each uint8 image -> uint8 (N, C, 384, 512)."""
    from PIL import Image

    out = []
    for im in _pil_images(x):
        a = np.asarray(im.resize(SIZE, Image.BILINEAR).convert(mode), dtype=np.uint8)
        out.append(torch.from_numpy(a.copy()).reshape(SIZE[1], SIZE[0], -1).permute(2, 0, 1))
    return torch.stack(out).to(x.device)


# ---------------------------------------------------------------------------- OpenCV re-implementations
_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS


def _cv2_linear_taps(src: int, dst: int) -> tuple[Tensor, Tensor]:
    """OpenCV INTER_LINEAR source index and fixed-point weights (short, x2048) along one axis."""
    scale = src / dst
    d = np.arange(dst, dtype=np.float64)
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)  # (float)((dx+0.5)*scale_x - 0.5)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    low = s < 0
    f[low], s[low] = 0.0, 0
    high = s >= src - 1
    f[high], s[high] = 0.0, src - 1
    a1 = np.rint(f * np.float32(_COEF_SCALE)).astype(np.int64)  # saturate_cast<short>(fx * 2048)
    a0 = np.rint((np.float32(1.0) - f) * np.float32(_COEF_SCALE)).astype(np.int64)
    return torch.from_numpy(s), torch.from_numpy(np.stack([a0, a1]))


def cv2_resize_linear(x: Tensor, size: tuple[int, int] = SIZE) -> Tensor:
    """``cv2.resize(img, size, interpolation=INTER_LINEAR)`` of uint8 (N, C, H, W), bit-exact (8-bit path).

    Horizontal pass: int sums of 2048-scaled taps; vertical pass as OpenCV's SIMD kernel
    ``VResizeLinearVec_32s8u``: ``((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16) + 2) >> 2``. An exact 2x
    reduction in both directions is INTER_AREA in OpenCV (rounded 2 x 2 mean).
    """
    n, c, h, w = x.shape
    dw, dh = size
    xi = x.to(torch.int64)
    if w == 2 * dw and h == 2 * dh:
        s = xi[..., 0::2, 0::2] + xi[..., 0::2, 1::2] + xi[..., 1::2, 0::2] + xi[..., 1::2, 1::2]
        return ((s + 2) >> 2).to(torch.uint8)
    sx, ax = _cv2_linear_taps(w, dw)
    sy, ay = _cv2_linear_taps(h, dh)
    ax, ay = ax.to(x.device), ay.to(x.device)
    sx1 = (sx + 1).clamp(max=w - 1).to(x.device)
    sy1 = (sy + 1).clamp(max=h - 1).to(x.device)
    sx, sy = sx.to(x.device), sy.to(x.device)
    rows = xi[..., sx] * ax[0] + xi[..., sx1] * ax[1]  # (N, C, H, dw), scale 2048
    r0 = rows[..., sy, :] >> 4
    r1 = rows[..., sy1, :] >> 4
    r0 = r0.clamp(-32768, 32767)  # v_pack saturates to int16
    r1 = r1.clamp(-32768, 32767)
    v = ((r0 * ay[0].view(-1, 1)) >> 16) + ((r1 * ay[1].view(-1, 1)) >> 16)
    return ((v + 2) >> 2).clamp(0, 255).to(torch.uint8)


_HSV_SHIFT = 12


def _div_tables(device) -> tuple[Tensor, Tensor]:
    i = np.arange(256, dtype=np.float64)
    with np.errstate(divide="ignore"):
        sdiv = np.where(i == 0, 0, np.rint((255 << _HSV_SHIFT) / i))
        hdiv = np.where(i == 0, 0, np.rint((180 << _HSV_SHIFT) / (6.0 * i)))
    return (torch.from_numpy(sdiv.astype(np.int64)).to(device), torch.from_numpy(hdiv.astype(np.int64)).to(device))


def cv2_rgb2hsv(x: Tensor) -> Tensor:
    """``cv2.cvtColor(img, COLOR_RGB2HSV)`` on uint8 (N, 3, H, W) with channels (r, g, b) -> uint8 (H 0..180, S, V)."""
    sdiv, hdiv = _div_tables(x.device)
    r, g, b = x.to(torch.int64).unbind(1)
    v = torch.maximum(torch.maximum(r, g), b)
    vmin = torch.minimum(torch.minimum(r, g), b)
    diff = v - vmin
    half = 1 << (_HSV_SHIFT - 1)
    s = (diff * sdiv[v] + half) >> _HSV_SHIFT
    h = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * hdiv[diff] + half) >> _HSV_SHIFT
    h = torch.where(h < 0, h + 180, h)
    return torch.stack([h, s, v], 1).clamp(0, 255).to(torch.uint8)


def cv2_hsv2rgb(hsv: Tensor) -> Tensor:
    """``cv2.cvtColor(img, COLOR_HSV2RGB)`` on uint8 (N, 3, H, W) -> uint8 (r, g, b), OpenCV's float32 path.

    h * (6 / 180) gives the sector and the fraction; s, v scaled by 1 / 255; the sector table picks v,
    v (1 - s), v (1 - s f), v (1 - s (1 - f)); the result times 255, truncated.
    """
    h, s, v = hsv.to(torch.float32).unbind(1)
    s = s * np.float32(1 / 255)
    v = v * np.float32(1 / 255)
    h = h * np.float32(6.0 / 180)
    h = torch.fmod(h, 6.0)
    sector = torch.floor(h)
    h = h - sector
    sector = sector.to(torch.int64)
    bad = (sector < 0) | (sector >= 6)
    sector = torch.where(bad, torch.zeros_like(sector), sector)
    h = torch.where(bad, torch.zeros_like(h), h)
    tab = torch.stack([v, v * (1 - s), v * (1 - s * h), v * (1 - s * (1 - h))], 1)  # (N, 4, H, W)
    sectors = torch.tensor([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]], device=hsv.device)
    idx = sectors[sector].permute(0, 3, 1, 2)  # (N, 3, H, W): which tab entry gives b, g, r
    bgr = torch.gather(tab, 1, idx)
    grey = (s == 0).unsqueeze(1)
    bgr = torch.where(grey, v.unsqueeze(1).expand_as(bgr), bgr)
    # x * 255 converted to uint8 by truncation: this is what the reference run (OpenCV 5.1) gives -- rounding
    # leaves 29 % of the RoadScene reference values one level high, truncation matches all but the pixels whose
    # H, S or V already differ
    out = torch.floor(bgr * 255.0).clamp(0, 255).to(torch.uint8)
    return out.flip(1)  # (r, g, b)


def to_bgr(x: Tensor) -> Tensor:
    """What ``cv2.imread(path)`` holds for a PIL-decoded uint8 image: BGR, grey repeated."""
    return x.expand(-1, 3, -1, -1).flip(1) if x.shape[1] == 1 else x.flip(1)


# ------------------------------------------------------------------------------------------------- fuser
class MetaFusionFuser:
    tile_halo = None  # every source is resized to 512 x 384 as a whole

    def __init__(self, info: MethodInfo, net: FusionNet, device: torch.device, output: str = "source"):
        self.info, self.device, self.output = info, device, output
        self.net = net.to(device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self._fast = fast_copy(self.net)

    def prepare(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """(network input (N, 4, 384, 512) float32 in [0, 1], visible HSV of the BGR array (N, 3, 384, 512) uint8)."""
        ir = pil_resize(a, "L")
        vis_rgb = pil_resize(b, "RGB")
        hsv = cv2_rgb2hsv(cv2_resize_linear(to_bgr(b)))
        x = torch.cat([ir, vis_rgb], 1).to(self.device, torch.float32) / 255.0
        return x, hsv.to(self.device)

    def weights(self, x: Tensor) -> Tensor:
        """The network's (N, 2, H, W) sigmoid weights (``model(x)[1]`` of the official code)."""
        with torch.inference_mode():
            return self._fast(cl(x)).contiguous()

    @staticmethod
    def finish(x: Tensor, hsv: Tensor, w: Tensor) -> Tensor:
        """Official post-processing: fused V = trunc(255 (w_ir ir + w_vis V / 255)), HSV -> RGB (uint8 RGB)."""
        bri = hsv[:, 2:3].to(torch.float32) / 255.0
        fus = w[:, 0:1] * x[:, 0:1] + w[:, 1:2] * bri
        v = (fus * 255.0).clamp(0, 255).to(torch.uint8)  # np.where clip, astype(uint8) truncation
        return cv2_hsv2rgb(torch.cat([hsv[:, :2], v], 1)).flip(1).contiguous()  # BGR array -> RGB file

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        check_pair(a, b)
        with torch.inference_mode():
            x, hsv = self.prepare(a, b)
            out = self.finish(x, hsv, self.weights(x))
            if self.output == "official" or tuple(out.shape[-2:]) == tuple(a.shape[-2:]):
                return out
            # fusionbench's step, not the official script's: back to the sources' size (bilinear, half-pixel
            # centres), so that the output can be scored against its sources
            back = torch.nn.functional.interpolate(out.to(torch.float32), size=tuple(a.shape[-2:]), mode="bilinear",
                                                   align_corners=False, antialias=False)
            return back.round_().clamp_(0, 255).to(torch.uint8).contiguous()


def build(weights: dict, device: torch.device, task: str = "ivif", **options) -> MetaFusionFuser:
    """Factory (registry contract): the official ``model_weight.pth`` (a plain state_dict)."""
    info = ENTRIES[0]
    output = options.pop("output", "source")
    if options:
        raise UsageError(f"MetaFusion: unknown option(s) {', '.join(sorted(options))}; known: output")
    if output not in ("source", "official"):
        raise UsageError(f"MetaFusion: option output={output!r}; use source (resized back to the sources' size, the "
                         f"default) or official (512x384, as the official script writes it)")
    if task not in info.tasks:
        raise UsageError(f"MetaFusion: unsupported task {task!r}; supported: {', '.join(info.tasks)}")
    path = weight_path(weights, WEIGHTS, info.display)
    net = load_checkpoint(FusionNet(3), path)
    return MetaFusionFuser(info, net, torch.device(device), output)


ENTRIES = [
    MethodInfo(
        name="metafusion",
        display="MetaFusion",
        paper=Paper(
            "MetaFusion: Infrared and Visible Image Fusion via Meta-Feature Embedding from Object Detection",
            "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
            2023,
        ),
        kind="cnn",
        tasks=("ivif",),
        inputs="IR: PIL resize to 512x384 (bilinear) then convert('L'); visible: PIL resize then convert('RGB'), "
               "and OpenCV resize + HSV for its V channel; network input in [0, 1]",
        colour="colour: the fused brightness replaces V of the visible image's HSV (OpenCV); RGB output at 512x384, "
               "resized back to the sources' size unless output=official",
        weights=(
            WeightFile(
                name=WEIGHTS,
                sha256="",
                url=f"https://github.com/{REPO}/raw/{COMMIT}/weight/{WEIGHTS}",
                licence="none stated",
                origin=f"{REPO}@{COMMIT}",
                note="architecture verified against the official code with random weights; checkpoint hash not pinned",
            ),
        ),
        factory="fusionbench.baselines.ports.metafusion:build",
        code=f"https://github.com/{REPO}",
        code_licence="none stated",
        notes="Native port of the official test.py protocol (FusionNet, 3 blocks; OpenCV resize/HSV re-implemented "
              "bit-exactly). The official script writes 512x384 whatever the source size; fusionbench resizes that back to the sources' size (bilinear) so it can be scored, and `-o output=official` keeps 512x384. "
              "Verified with fixed random weights (shared/reference/random/metafusion).",
    )
]
