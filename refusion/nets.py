"""The three ReFusion networks as plain ``nn.Module``s (no shadow / meta weights).

* :class:`FusionNet` (F): two sources -> fused image. Parameter names follow the official
  checkpoints (``HaowenBai/ReFusion``) so that they load strictly after :func:`remap_official`.
* :class:`ReconNet` (R): fused image -> both sources.
* :class:`ProposalNet` (P): both sources -> per-pixel intensity weights W and gradient weights V.

The meta-learning code steps these modules with ``torch.func.functional_call``; nothing here
keeps a second copy of any weight. Architecture facts: ``docs/REFUSION.md`` §1.2, §2.1, §2.2.
All convolutions are bias-free, as in the official code (``bias=False``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn

from fusionbench.errors import WeightsError

__all__ = [
    "ChannelLayerNorm",
    "MDTA",
    "GDFN",
    "TransformerBlock",
    "CrossFusionBlock",
    "FusionNet",
    "ReconNet",
    "ProposalNet",
    "LossProposal",
    "sobel_magnitude",
    "remap_official",
]


def _conv1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=False)


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


def _dw3(c: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)


class _LNBody(nn.Module):
    """Holds the affine parameters (``<norm>.body.weight/bias`` in the official names)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of each pixel of an NCHW tensor ("WithBias": affine weight and bias).

    mean and biased variance over C, ``eps`` added to the variance (1e-5).
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.body = _LNBody(dim)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # Same operation order as the official code (mean, then biased var, then divide by sqrt):
        # bit-identical to it in float32, unlike F.layer_norm (rsqrt / Welford), which moved ~5x more
        # output pixels by one grey level in the parity tests.
        mu = x.mean(1, keepdim=True)
        var = x.var(1, keepdim=True, unbiased=False)
        w = self.body.weight.view(1, -1, 1, 1)
        b = self.body.bias.view(1, -1, 1, 1)
        return (x - mu) / torch.sqrt(var + self.eps) * w + b


def _split_heads(t: Tensor, heads: int) -> Tensor:
    n, c, h, w = t.shape
    return t.reshape(n, heads, c // heads, h * w)


def _channel_attention(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, heads: int) -> Tensor:
    """Transposed (c x c per head) attention: softmax(norm(q) norm(k)^T * t) v, NCHW in and out."""
    n, c, h, w = v.shape
    q = Fn.normalize(_split_heads(q, heads), dim=-1)
    k = Fn.normalize(_split_heads(k, heads), dim=-1)
    attn = (q @ k.transpose(-2, -1)) * temperature
    attn = attn.softmax(dim=-1)
    return (attn @ _split_heads(v, heads)).reshape(n, c, h, w)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention (Restormer): qkv 1x1 + depthwise 3x3, channel attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = _conv1(dim, 3 * dim)
        self.qkv_dwconv = _dw3(3 * dim)
        self.project_out = _conv1(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(_channel_attention(q, k, v, self.temperature, self.heads))


class GDFN(nn.Module):
    """Gated depthwise feed-forward network: 1x1 -> dw 3x3 -> GELU(a) * b -> 1x1."""

    def __init__(self, dim: int, ffn_expansion_factor: float = 2):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = _conv1(dim, 2 * hidden)
        self.dwconv = _dw3(2 * hidden)
        self.project_out = _conv1(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(Fn.gelu(a) * b)


class TransformerBlock(nn.Module):
    """x + MDTA(LN(x)), then x + GDFN(LN(x))."""

    def __init__(self, dim: int, heads: int, ffn_expansion_factor: float = 2):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = MDTA(dim, heads)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GDFN(dim, ffn_expansion_factor)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def _blocks(n: int, dim: int, heads: int, ffn: float) -> nn.Sequential:
    return nn.Sequential(*[TransformerBlock(dim, heads, ffn) for _ in range(n)])


class CrossFusionBlock(nn.Module):
    """The official "AFM" block: cross-modal channel attention, then gated 1x1/dw-3x3 mixing.

    (x1, x2), each (N, dim, H, W) -> (N, 2*dim, H, W).
    """

    def __init__(self, dim: int = 16, heads: int = 8):
        super().__init__()
        self.heads = heads
        self.temperature1 = nn.Parameter(torch.ones(heads, 1, 1))
        self.temperature2 = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv1 = _conv1(dim, 3 * dim)
        self.qkv1_dwconv = _dw3(3 * dim)
        self.qkv2 = _conv1(dim, 3 * dim)
        self.qkv2_dwconv = _dw3(3 * dim)
        self.project_mid1 = _conv1(dim, dim)
        self.project_mid2 = _conv1(dim, dim)
        self.project_E = _conv1(2 * dim, 8 * dim)
        self.project_E_d = _dw3(8 * dim)
        self.project_E1 = _conv1(dim, 4 * dim)
        self.project_E1_d = _dw3(4 * dim)
        self.project_E2 = _conv1(dim, 4 * dim)
        self.project_E2_d = _dw3(4 * dim)
        self.project_out1 = _conv1(4 * dim, 2 * dim)
        self.project_out2 = _conv1(4 * dim, 2 * dim)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        q1, k1, v1 = self.qkv1_dwconv(self.qkv1(x1)).chunk(3, dim=1)
        q2, k2, v2 = self.qkv2_dwconv(self.qkv2(x2)).chunk(3, dim=1)
        # query of one source attends to keys/values of the other
        out1 = _channel_attention(q2, k1, v1, self.temperature1, self.heads)
        out2 = _channel_attention(q1, k2, v2, self.temperature2, self.heads)
        x1 = x1 + self.project_mid1(out1)
        x2 = x2 + self.project_mid2(out2)
        out = torch.cat([x1, x2], dim=1)
        g1, g2 = self.project_E_d(self.project_E(out)).chunk(2, dim=1)
        y1 = Fn.gelu(g1) * self.project_E1_d(self.project_E1(x1))
        y2 = Fn.gelu(g2) * self.project_E2_d(self.project_E2(x2))
        return out + self.project_out1(y1) + self.project_out2(y2)


def _check_input(x: Tensor, channels: int, who: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{who}: expected input (N, {channels}, H, W), got {tuple(x.shape)}")


class FusionNet(nn.Module):
    """ReFusion's fusion module F.

    ``forward(x)``: x (N, 2, H, W) in [0, 1], channel 0 = source 1 (IR / CT-PET-SPECT / near / under),
    channel 1 = source 2 (VIS / MRI / far / over) -> fused (N, 1, H, W) in (0, 1) (sigmoid).
    Fully convolutional: any H, W. 59,856 parameters with the defaults.
    """

    def __init__(self, dim: int = 16, num_blocks: int = 2, heads: int = 8, ffn_expansion_factor: float = 2):
        super().__init__()
        self.project_in_1 = _conv3(1, dim)
        self.project_in_2 = _conv3(1, dim)
        self.encoder1 = _blocks(num_blocks, dim, heads, ffn_expansion_factor)
        self.encoder2 = _blocks(num_blocks, dim, heads, ffn_expansion_factor)
        self.FM = CrossFusionBlock(dim, heads)
        self.decoder = _blocks(num_blocks, 2 * dim, heads, ffn_expansion_factor)
        self.project_out_0 = _conv3(2 * dim, dim)
        self.project_out_1 = _conv3(dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, 2, "FusionNet")
        f1 = self.encoder1(self.project_in_1(x[:, 0:1]))
        f2 = self.encoder2(self.project_in_2(x[:, 1:2]))
        f = self.decoder(self.FM(f1, f2))
        f = Fn.leaky_relu(self.project_out_0(f), 0.01)
        return torch.sigmoid(self.project_out_1(f))


class _ReconBranch(nn.Module):
    def __init__(self, dim: int, num_blocks: int, heads: int, ffn: float):
        super().__init__()
        self.project_in = _conv3(1, dim)
        self.blocks = _blocks(num_blocks, dim, heads, ffn)
        self.project_out_0 = _conv3(dim, dim // 2)
        self.project_out_1 = _conv3(dim // 2, 1)

    def forward(self, f: Tensor) -> Tensor:
        y = self.blocks(self.project_in(f))
        y = Fn.leaky_relu(self.project_out_0(y), 0.01)
        return torch.sigmoid(self.project_out_1(y))


class ReconNet(nn.Module):
    """ReFusion's reconstruction module R (``docs/REFUSION.md`` §2.1).

    ``forward(f)``: fused (N, 1, H, W) -> (N, 2, H, W); channel 0 reconstructs source 1, channel 1
    source 2, each by its own branch (conv3x3 1->dim, blocks, conv3x3 dim->dim/2, LeakyReLU,
    conv3x3 ->1, sigmoid). 59,648 parameters with the defaults.
    """

    def __init__(self, dim: int = 32, num_blocks: int = 2, heads: int = 8, ffn_expansion_factor: float = 2):
        super().__init__()
        self.branch1 = _ReconBranch(dim, num_blocks, heads, ffn_expansion_factor)
        self.branch2 = _ReconBranch(dim, num_blocks, heads, ffn_expansion_factor)

    def forward(self, f: Tensor) -> Tensor:
        _check_input(f, 1, "ReconNet")
        return torch.cat([self.branch1(f), self.branch2(f)], dim=1)


class LossProposal(nn.Module):
    """One proposal sub-net ("PN"): (N, 2, H, W) -> (N, 2, H, W) softmax weights (sum to 1 per pixel).

    Per input channel: conv3x3 1->dim + ``num_blocks`` blocks (separate weights); concat -> blocks
    at 2*dim -> conv3x3 2*dim->dim -> PReLU (one parameter, 0.25) -> conv3x3 dim->2 -> softmax over C.
    44,529 parameters with the defaults.
    """

    def __init__(self, dim: int = 16, num_blocks: int = 2, heads: int = 8, ffn_expansion_factor: float = 2):
        super().__init__()
        self.project_in_1 = _conv3(1, dim)
        self.project_in_2 = _conv3(1, dim)
        self.encoder1 = _blocks(num_blocks, dim, heads, ffn_expansion_factor)
        self.encoder2 = _blocks(num_blocks, dim, heads, ffn_expansion_factor)
        self.decoder = _blocks(num_blocks, 2 * dim, heads, ffn_expansion_factor)
        self.project_out_0 = _conv3(2 * dim, dim)
        self.act = nn.PReLU(num_parameters=1, init=0.25)
        self.project_out_1 = _conv3(dim, 2)

    def forward(self, x: Tensor) -> Tensor:
        f1 = self.encoder1(self.project_in_1(x[:, 0:1]))
        f2 = self.encoder2(self.project_in_2(x[:, 1:2]))
        f = self.decoder(torch.cat([f1, f2], dim=1))
        return self.project_out_1(self.act(self.project_out_0(f))).softmax(dim=1)


def sobel_magnitude(t: Tensor) -> Tensor:
    """|Sobel_x * t| + |Sobel_y * t| per channel (3x3, zero padding 1, unnormalised): same shape as t."""
    if t.ndim != 4:
        raise ValueError(f"sobel_magnitude: expected (N, C, H, W), got {tuple(t.shape)}")
    c = t.shape[1]
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=t.dtype, device=t.device)
    k = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(c, 1, 1, 1)  # (2C, 1, 3, 3): x, y per channel
    g = Fn.conv2d(t, k, padding=1, groups=c)
    return g[:, 0::2].abs() + g[:, 1::2].abs()


class ProposalNet(nn.Module):
    """ReFusion's loss-proposal module P (``docs/REFUSION.md`` §2.2).

    ``forward(x)``: sources (N, 2, H, W) in [0, 1] -> ``(W, V)``, both (N, 2, H, W):
    W = intensity weights from the intensities (``pn_int``), V = gradient weights from the Sobel
    gradient magnitudes of the sources (``pn_grad``). Channel 0 weights source 1, channel 1 source 2;
    each pair sums to 1 at every pixel. 89,058 parameters with the defaults.

    ``symmetric=True`` makes P equivariant to the input order by construction:
    ``P(x) = 1/2 [P0(a, b) + swap(P0(b, a))]`` with ``P0`` the plain network, so
    ``P(b, a) = swap(P(a, b))`` exactly and P cannot learn "weight whatever comes first" (the collapse
    of the plain P under meta-training, issue 12). Same parameters, twice the compute (one batched pass).
    """

    def __init__(self, dim: int = 16, num_blocks: int = 2, heads: int = 8, ffn_expansion_factor: float = 2,
                 symmetric: bool = False):
        super().__init__()
        self.pn_int = LossProposal(dim, num_blocks, heads, ffn_expansion_factor)
        self.pn_grad = LossProposal(dim, num_blocks, heads, ffn_expansion_factor)
        self.symmetric = bool(symmetric)

    def _plain(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.pn_int(x), self.pn_grad(sobel_magnitude(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_input(x, 2, "ProposalNet")
        if not self.symmetric:
            return self._plain(x)
        n = x.shape[0]
        w, v = self._plain(torch.cat([x, x.flip(1)]))
        return 0.5 * (w[:n] + w[n:].flip(1)), 0.5 * (v[:n] + v[n:].flip(1))

    def extra_repr(self) -> str:
        return f"symmetric={self.symmetric}"


def remap_official(state: dict) -> dict:
    """Official ReFusion state_dict -> :class:`FusionNet` keys.

    The official ``MetaConv2d`` stores every convolution weight twice (``X.weight`` and
    ``X.conv.weight``). Each ``X.conv.weight`` is dropped after checking that ``X.weight`` exists and
    is bit-identical; an unpaired or differing duplicate, any ``*_meta`` tensor or a non-tensor
    value raises :class:`WeightsError`. All other keys pass through unchanged (``load_into`` then
    checks them strictly).
    """
    if not isinstance(state, dict):
        raise WeightsError(f"official ReFusion checkpoint: expected a state_dict, found {type(state).__name__}")
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise WeightsError(f"official ReFusion checkpoint: key {k!r} holds {type(v).__name__}, not a tensor")
        if "_meta" in k:
            raise WeightsError(f"official ReFusion checkpoint: unexpected meta tensor {k!r}")
        if k.endswith(".conv.weight"):
            twin = k[: -len(".conv.weight")] + ".weight"
            if twin not in state:
                raise WeightsError(f"official ReFusion checkpoint: {k!r} has no twin {twin!r}")
            w = state[twin]
            if not isinstance(w, torch.Tensor) or w.shape != v.shape or w.dtype != v.dtype or not torch.equal(w, v):
                raise WeightsError(f"official ReFusion checkpoint: {k!r} differs from {twin!r}")
            continue
        if k.endswith(".conv.bias"):
            raise WeightsError(f"official ReFusion checkpoint: unexpected conv bias {k!r} (the official convs have none)")
        out[k] = v
    return out
