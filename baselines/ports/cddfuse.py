"""CDDFuse (Zhao et al., CVPR 2023), native PyTorch port of the official checkpoints.

"CDDFuse: Correlation-Driven Dual-Branch Feature Decomposition for Multi-Modality Image Fusion";
official code Zhaozixiang1228/MMIF-CDDFuse (``net.py``, ``test_IVF.py``, ``test_MIF.py``).

Network (four modules, saved together as ``{'DIDF_Encoder', 'DIDF_Decoder', 'BaseFuseLayer',
'DetailFuseLayer'}``, each a ``nn.DataParallel`` state_dict whose keys start with ``module.``; 158 tensors):

* Restormer block (``TransformerBlock``, dim 64, 8 heads, bias-free convolutions):
  ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``. LN is a per-pixel layer norm over the channels
  (eps 1e-5, with bias). MDTA: 1x1 conv 64 -> 192, depthwise 3x3, split q, k, v; per head (8 channels)
  q and k are L2-normalised over the pixels, ``A = softmax(q k^T * temperature)`` (8 x 8, i.e. attention
  across channels, global over the image), output ``A v`` through a 1x1 ``project_out``. GDFN:
  1x1 conv 64 -> 256, depthwise 3x3, ``gelu(x1) * x2``, 1x1 128 -> 64.
* Encoder: 3x3 conv 1 -> 64 (``patch_embed``), four Restormer blocks (``encoder_level1``), then two
  branches on the result: the base branch ``BaseFeatureExtraction`` (a Restormer-like block whose
  attention computes qkv by a 1x1 conv 64 -> 192 followed by a *full* 3x3 conv 192 -> 192, scale
  parameter ``scale``, and whose MLP has expansion 1 and a 3x3 conv with 64 groups of 2 channels) and
  the detail branch ``DetailFeatureExtraction``: an invertible network of 3 ``DetailNode``s, each a 1x1
  conv (with bias) on [z1, z2], then ``z2 += phi(z1)``, ``z1 = z1 * exp(rho(z2)) + eta(z2)`` with
  phi/rho/eta inverted residual blocks (1x1 32 -> 64, ReLU6, reflection-padded depthwise 3x3, ReLU6,
  1x1 64 -> 32).
* Fusion: ``BaseFuseLayer`` = BaseFeatureExtraction(64, 8 heads) on ``V_B + I_B``; ``DetailFuseLayer`` =
  DetailFeatureExtraction with one node on ``V_D + I_D``.
* Decoder: 1x1 conv 128 -> 64 on [F_B, F_D], four Restormer blocks, 3x3 conv 64 -> 32, LeakyReLU(0.01),
  3x3 conv 32 -> 1, plus the visible input, sigmoid.

Evaluation order (numerically equivalent to the official one up to float rounding): the visible and infrared
images go through the encoder as one batch of two; ``qkv2(qkv1(x))`` of the base-branch attention is one
3x3 conv 64 -> 192 with the composed kernel (exact algebraically: both are bias-free and the 1x1 commutes
with zero padding), which is 3x cheaper than the official full 192 -> 192 conv; the attention normalises the
Gram matrix instead of q and k, and ``project_out`` is folded into the (per-image 64 x 64) attention matrix;
everything runs in channels_last. The tests check every intermediate against the official code's
(random-weight reference, ``shared/reference/random/cddfuse``).

Official inference protocol (``test_IVF.py``; ``test_MIF.py`` with ``CDDFuse_MIF.pth`` is the same with the MRI
as the "visible" and CT/PET/SPECT as the "infrared" input, except that its decoder adds no input image before
the sigmoid, ``Decoder(None, F_B, F_D)``):

* both images ``image_read_cv2(path, 'GRAY')`` = ``np.round(cvtColor(cv2.imread(p).astype(float32),
  BGR2GRAY))`` (:func:`fusionbench.metrics.cddfuse.luma_rounded`, bit-exact), / 255 in float32; no
  padding or resizing (the network is fully convolutional; attention is over channels);
* ``data_Fuse = Decoder(VIS, BaseFuse(V_B + I_B), DetailFuse(V_D + I_D))``, global min-max, x255 in float32,
  ``skimage.io.imsave`` (imageio: a float array outside [0, 1] is stretched min-max again in float64,
  + 0.499999999, uint8); a one-channel image.

(test_MIF.py also scores CDDFuse_IVF.pth on the medical pairs with ``Decoder(IR + VIS, ...)``; that variant is
not exposed here: ``task="mif"`` means the MIF checkpoint.)

Fuser argument order: ``fuse(a, b)`` with ``a`` the infrared (first source: CT for ``task="mif"``) and ``b``
the visible image (MRI for ``mif``: the official ``test_MIF.py`` passes the MRI where test_IVF.py passes VIS).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.errors import UsageError
from fusionbench.metrics.cddfuse import luma_rounded
from fusionbench.registry import MethodInfo, Paper, WeightFile

from ._common import check_pair, cl, fast_copy, imageio_u8, load_checkpoint, weight_path

REPO = "Zhaozixiang1228/MMIF-CDDFuse"
COMMIT = "fd8da1f39d8d403b7343e577bd5a30cba38c7b7b"
FILES = {"ivif": "CDDFuse_IVF.pth", "mif": "CDDFuse_MIF.pth"}
PARTS = ("DIDF_Encoder", "DIDF_Decoder", "BaseFuseLayer", "DetailFuseLayer")


# ----------------------------------------------------------------------------------------------- building blocks
class LayerNorm(nn.Module):
    """Per-pixel layer norm over channels (WithBias variant, eps 1e-5); keys ``body.weight``, ``body.bias``."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Module()
        self.body.weight = nn.Parameter(torch.ones(dim))
        self.body.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.body.weight, self.body.bias, 1e-5)
        return y.permute(0, 3, 1, 2)


def _channel_attention(qkv: Tensor, heads: int, temperature: Tensor, proj: Tensor) -> Tensor:
    """``proj @ (softmax(norm(q) norm(k)^T * t) v)`` per head; qkv (B, 3C, H, W) -> (B, C, H, W) channels_last.

    q, k are L2-normalised over the pixels (F.normalize, eps 1e-12) -- done here on the C x C Gram matrix --
    and the 1x1 projection is folded into the attention matrix, so the big tensors are read once.
    """
    b, c3, h, w = qkv.shape
    c = c3 // 3
    d = c // heads
    t = qkv.permute(0, 2, 3, 1).reshape(b, h * w, c3)  # a view for channels_last input
    q, k, v = t[..., :c], t[..., c:2 * c], t[..., 2 * c:]
    gram = torch.bmm(q.transpose(1, 2), k)  # (B, C, C)
    nq = torch.linalg.vector_norm(q, dim=1).clamp_min(1e-12)  # (B, C)
    nk = torch.linalg.vector_norm(k, dim=1).clamp_min(1e-12)
    gram = gram / (nq[:, :, None] * nk[:, None, :])
    blocks = torch.stack([gram[:, i * d:(i + 1) * d, i * d:(i + 1) * d] for i in range(heads)], 1)  # (B, h, d, d)
    attn = (blocks * temperature).softmax(-1)
    m = torch.einsum("ohc,bhcd->bohd", proj.reshape(c, heads, d), attn).reshape(b, c, c)  # proj @ blockdiag(A)
    out = torch.bmm(v, m.transpose(1, 2))  # (B, HW, C)
    return out.view(b, h, w, c).permute(0, 3, 1, 2)


class Attention(nn.Module):
    """MDTA of the Restormer blocks: qkv 1x1, depthwise 3x3, channel attention, project_out."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.num_heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        qkv = self.qkv_dwconv(self.qkv(x))
        return _channel_attention(qkv, self.num_heads, self.temperature, self.project_out.weight[:, :, 0, 0])


class AttentionBase(nn.Module):
    """Attention of the base branch: qkv1 1x1 then a full 3x3 conv (evaluated as one composed 3x3 conv)."""

    def __init__(self, dim: int, heads: int = 8):
        super().__init__()
        self.num_heads = heads
        self.scale = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv1 = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv2 = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, bias=False)
        self.proj = nn.Conv2d(dim, dim, 1, bias=False)

    def qkv_weight(self) -> Tensor:
        """Kernel of qkv2(qkv1(.)): (3C, C, 3, 3); both bias-free, so zero padding commutes with qkv1."""
        return torch.einsum("omyx,mi->oiyx", self.qkv2.weight, self.qkv1.weight[:, :, 0, 0]).contiguous()

    def forward(self, x: Tensor) -> Tensor:
        qkv = F.conv2d(x, self.qkv_weight(), padding=1)
        return _channel_attention(qkv, self.num_heads, self.scale, self.proj.weight[:, :, 0, 0])


class GatedFFN(nn.Module):
    """1x1 in (to 2*hidden), grouped 3x3, gelu(x1) * x2, 1x1 out. ``groups`` = 2*hidden (GDFN) or hidden (Mlp)."""

    def __init__(self, dim: int, expansion: float, depthwise_groups_per_channel: bool):
        super().__init__()
        hidden = int(dim * expansion)
        groups = hidden * 2 if depthwise_groups_per_channel else hidden
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=groups, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, 1)
        return self.project_out(F.gelu(x1).mul_(x2))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int = 64, heads: int = 8, expansion: float = 2.0):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = LayerNorm(dim)
        self.ffn = GatedFFN(dim, expansion, True)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x.add_(self.ffn(self.norm2(x)))


class BaseFeatureExtraction(nn.Module):
    def __init__(self, dim: int = 64, num_heads: int = 8):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = AttentionBase(dim, num_heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = GatedFFN(dim, 1.0, False)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x.add_(self.mlp(self.norm2(x)))


class InvertedResidualBlock(nn.Module):
    """1x1 (no bias), ReLU6, reflection pad 1, depthwise 3x3, ReLU6, 1x1; keys ``bottleneckBlock.{0,3,5}``."""

    def __init__(self, inp: int = 32, oup: int = 32, expand_ratio: int = 2):
        super().__init__()
        hidden = int(inp * expand_ratio)
        self.bottleneckBlock = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False), nn.ReLU6(inplace=True), nn.ReflectionPad2d(1),
            nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneckBlock(x)


class DetailNode(nn.Module):
    def __init__(self):
        super().__init__()
        self.theta_phi = InvertedResidualBlock()
        self.theta_rho = InvertedResidualBlock()
        self.theta_eta = InvertedResidualBlock()
        self.shffleconv = nn.Conv2d(64, 64, 1, bias=True)  # (sic) the official name

    def forward(self, x: Tensor) -> Tensor:
        z1, z2 = self.shffleconv(x).chunk(2, 1)
        z2 = z2 + self.theta_phi(z1)
        z1 = self.theta_rho(z2).exp_().mul_(z1).add_(self.theta_eta(z2))
        return torch.cat((z1, z2), 1)


class DetailFeatureExtraction(nn.Module):
    def __init__(self, num_layers: int = 3):
        super().__init__()
        self.net = nn.Sequential(*[DetailNode() for _ in range(num_layers)])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Encoder(nn.Module):
    """Restormer_Encoder: returns (base, detail, level-1 features)."""

    def __init__(self, dim: int = 64, blocks: int = 4, heads: int = 8):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, dim, 3, padding=1, bias=False)
        self.encoder_level1 = nn.Sequential(*[TransformerBlock(dim, heads, 2.0) for _ in range(blocks)])
        self.baseFeature = BaseFeatureExtraction(dim, heads)
        self.detailFeature = DetailFeatureExtraction(3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f = self.encoder_level1(self.patch_embed.proj(x))
        return self.baseFeature(f), self.detailFeature(f), f


class Decoder(nn.Module):
    """Restormer_Decoder: returns (sigmoid output, features after reduce_channel)."""

    def __init__(self, dim: int = 64, blocks: int = 4, heads: int = 8):
        super().__init__()
        self.reduce_channel = nn.Conv2d(dim * 2, dim, 1, bias=False)
        self.encoder_level2 = nn.Sequential(*[TransformerBlock(dim, heads, 2.0) for _ in range(blocks)])
        self.output = nn.Sequential(
            nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.LeakyReLU(),
            nn.Conv2d(dim // 2, 1, 3, padding=1, bias=False),
        )

    def forward(self, vis: Tensor | None, base: Tensor, detail: Tensor) -> tuple[Tensor, Tensor]:
        level0 = self.reduce_channel(torch.cat((base, detail), 1))
        out = self.output(self.encoder_level2(level0))
        if vis is not None:
            out = out + vis
        return torch.sigmoid(out), level0


class CDDFuseNet(nn.Module):
    """The four official modules under their checkpoint names."""

    def __init__(self):
        super().__init__()
        self.DIDF_Encoder = Encoder()
        self.DIDF_Decoder = Decoder()
        self.BaseFuseLayer = BaseFeatureExtraction(64, 8)
        self.DetailFuseLayer = DetailFeatureExtraction(1)

    def trace(self, vis: Tensor, ir: Tensor, add_input: bool = True) -> dict[str, Tensor]:
        """All official intermediates (names as in test_IVF.py) for float inputs (N, 1, H, W) in [0, 1].

        ``add_input=False`` is test_MIF.py with CDDFuse_MIF.pth: ``Decoder(None, F_B, F_D)`` (no image added
        before the sigmoid).
        """
        n = vis.shape[0]
        base, detail, feat = self.DIDF_Encoder(torch.cat((vis, ir), 0))  # both images as one batch
        f_b = self.BaseFuseLayer(base[:n] + base[n:])
        f_d = self.DetailFuseLayer(detail[:n] + detail[n:])
        raw, level0 = self.DIDF_Decoder(vis if add_input else None, f_b, f_d)
        return {
            "feature_V_B": base[:n], "feature_V_D": detail[:n], "feature_V": feat[:n],
            "feature_I_B": base[n:], "feature_I_D": detail[n:], "feature_I": feat[n:],
            "feature_F_B": f_b, "feature_F_D": f_d, "decoder_level0": level0, "data_Fuse_raw": raw,
        }

    def forward(self, vis: Tensor, ir: Tensor, add_input: bool = True) -> Tensor:
        """The decoder's sigmoid output (before the min-max of the test script)."""
        return self.trace(vis, ir, add_input)["data_Fuse_raw"]


def load_cddfuse(path, net: CDDFuseNet | None = None) -> CDDFuseNet:
    """Strictly load an official container (four DataParallel state_dicts) into ``net``; one WeightsError if not."""
    net = CDDFuseNet() if net is None else net
    for part in PARTS:
        load_checkpoint(getattr(net, part), path, key=part, remap=_strip_module)
    return net


def _strip_module(state: dict) -> dict:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def postprocess(raw: Tensor) -> Tensor:
    """test_IVF.py: per image min-max, x255 (float32), then imageio's imsave of that float array -> uint8."""
    flat = raw.flatten(1)
    lo = flat.amin(1).view(-1, 1, 1, 1)
    span = flat.amax(1).view(-1, 1, 1, 1) - lo
    span = torch.where(span == 0, torch.ones_like(span), span)  # constant output: 0 (official: NaN)
    return imageio_u8((raw - lo) / span * 255.0)


# ----------------------------------------------------------------------------------------------- fuser
class CDDFuseFuser:
    tile_halo = None  # attention is global over the image, and the output is min-max stretched over it

    def __init__(self, info: MethodInfo, net: CDDFuseNet, device: torch.device, task: str):
        self.info, self.device, self.task = info, torch.device(device), task
        self.net = net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self._fast = fast_copy(self.net)  # channels_last inference copy

    def inputs(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 (N, 1|3, H, W) -> official network inputs (VIS, IR): rounded OpenCV luma / 255, float32."""
        ir = luma_rounded(a.to(self.device)) / 255.0
        vis = luma_rounded(b.to(self.device)) / 255.0
        return vis, ir

    def raw(self, a: Tensor, b: Tensor) -> Tensor:
        """Decoder output (N, 1, H, W) float32 for uint8 inputs (a = IR, b = visible), one pair at a time."""
        vis, ir = self.inputs(a, b)
        add = self.task == "ivif"  # test_MIF.py runs CDDFuse_MIF.pth with Decoder(None, ...)
        return torch.cat([self._fast(cl(vis[i:i + 1]), cl(ir[i:i + 1]), add) for i in range(vis.shape[0])], 0)

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        check_pair(a, b)
        with torch.inference_mode():
            return postprocess(self.raw(a, b)).contiguous()


def build(weights: dict, device: torch.device, task: str = "ivif", **options) -> CDDFuseFuser:
    """Factory (registry contract): the task's official checkpoint (CDDFuse_IVF.pth / CDDFuse_MIF.pth)."""
    info = ENTRIES[0]
    if options:
        raise UsageError(f"CDDFuse: unknown option(s) {', '.join(sorted(options))}; CDDFuse has none")
    if task not in FILES:
        raise UsageError(f"CDDFuse: unsupported task {task!r}; supported: {', '.join(FILES)}")
    path = weight_path(weights, FILES[task], info.display)
    return CDDFuseFuser(info, load_cddfuse(path), device, task)


def _wf(task: str) -> WeightFile:
    name = FILES[task]
    return WeightFile(
        name=name,
        sha256="",
        url=f"https://github.com/{REPO}/raw/{COMMIT}/models/{name}",
        licence="none stated",
        origin=f"{REPO}@{COMMIT}",
        task=task,
        note="architecture verified against the official code with random weights; checkpoint hash not pinned",
    )


ENTRIES = [
    MethodInfo(
        name="cddfuse",
        display="CDDFuse",
        paper=Paper(
            "CDDFuse: Correlation-Driven Dual-Branch Feature Decomposition for Multi-Modality Image Fusion",
            "CVPR",
            2023,
            "https://openaccess.thecvf.com/content/CVPR2023/html/Zhao_CDDFuse_Correlation-Driven_Dual-Branch_"
            "Feature_Decomposition_for_Multi-Modality_Image_Fusion_CVPR_2023_paper.html",
        ),
        kind="transformer",
        tasks=("ivif", "mif"),
        inputs="two grey images (OpenCV BGR2GRAY luma, rounded), float /255; first source IR (CT/PET/SPECT), "
        "second visible (MRI)",
        colour="grey: colour sources reduced to OpenCV's rounded luma; one-channel output (as test_IVF.py)",
        weights=(_wf("ivif"), _wf("mif")),
        factory="fusionbench.baselines.ports.cddfuse:build",
        code=f"https://github.com/{REPO}",
        notes="Native port of the official net.py (Restormer encoder, base/detail fusion layers, decoder) and the "
        "test_IVF.py protocol (global min-max, imageio rounding). Verified against the official code run with fixed "
        "random weights (every intermediate and the saved PNGs, shared/reference/random/cddfuse); the real "
        "checkpoints' hashes are not pinned. Global channel attention: no tiling. task=mif follows test_MIF.py with "
        "CDDFuse_MIF.pth (the decoder adds no input image before its sigmoid).",
    )
]
