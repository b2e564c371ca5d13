"""Colour conversions on NCHW tensors, with the exact conventions the reference codes use.

Every fusion code in the field converts colour a little differently; these functions name each
convention so that metric presets and method ports can say which one they follow.

All functions take (N, 3, H, W) RGB tensors (or (N, 1, H, W), returned unchanged where it makes
sense) and keep the dtype unless stated otherwise.
"""
from __future__ import annotations

import torch
from torch import Tensor

# ITU-R BT.601 luma weights (OpenCV, PIL, most fusion code)
BT601 = (0.299, 0.587, 0.114)
# MATLAB rgb2gray weights (inverse of the NTSC YIQ matrix row)
MATLAB_GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def _check_rgb(x: Tensor) -> None:
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1|3, H, W), got {tuple(x.shape)}")


def to_rgb(x: Tensor) -> Tensor:
    """Repeat a grey (N, 1, H, W) tensor to three channels; RGB passes through."""
    _check_rgb(x)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def is_grey(x: Tensor) -> Tensor:
    """(N,) bool: True where the image has one channel or three equal channels."""
    _check_rgb(x)
    if x.shape[1] == 1:
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    return ((x[:, 0] == x[:, 1]) & (x[:, 1] == x[:, 2])).flatten(1).all(1)


def luma(x: Tensor, weights=BT601) -> Tensor:
    """Weighted sum of R, G, B in the input dtype, no rounding: (N, 1, H, W).

    Products are summed in R, G, B order. OpenCV's float ``cvtColor(BGR2GRAY)`` sums (B + G) + R, which can
    differ in the last float32 bit; the cddfuse metric preset reproduces OpenCV's order exactly.
    """
    _check_rgb(x)
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return r * weights[0] + g * weights[1] + b * weights[2]


def luma_cv2_u8(x: Tensor) -> Tensor:
    """OpenCV ``cvtColor(uint8, RGB2GRAY)``: 14-bit fixed point with rounding. Integer-valued output."""
    _check_rgb(x)
    if x.shape[1] == 1:
        return x
    xi = x.to(torch.int32)
    y = (xi[:, 0:1] * 4899 + xi[:, 1:2] * 9617 + xi[:, 2:3] * 1868 + (1 << 13)) >> 14
    return y.to(x.dtype)


def luma_pil(x: Tensor) -> Tensor:
    """PIL ``Image.convert('L')`` from RGB uint8: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16."""
    _check_rgb(x)
    if x.shape[1] == 1:
        return x
    xi = x.to(torch.int32)
    y = (xi[:, 0:1] * 19595 + xi[:, 1:2] * 38470 + xi[:, 2:3] * 7471 + 0x8000) >> 16
    return y.to(x.dtype)


def luma_matlab_u8(x: Tensor) -> Tensor:
    """MATLAB ``rgb2gray`` on uint8 input: weighted sum rounded half away from zero."""
    y = luma(x.to(torch.float64), MATLAB_GRAY)
    return torch.floor(y + 0.5).clamp(0, 255).to(x.dtype)


def rgb_to_ycrcb(x: Tensor, delta: float) -> Tensor:
    """RGB -> (Y, Cr, Cb) with OpenCV's coefficients: Cr = (R-Y)*0.713 + delta, Cb = (B-Y)*0.564 + delta.

    OpenCV uses ``delta = 0.5`` for float input regardless of range (ReFusion relies on this with
    0..255 data) and 128 for uint8; SeAFusion and TarDAL use 0.5 on 0..1 data.
    """
    _check_rgb(x)
    x = to_rgb(x)
    y = luma(x)
    cr = (x[:, 0:1] - y) * 0.713 + delta
    cb = (x[:, 2:3] - y) * 0.564 + delta
    return torch.cat([y, cr, cb], 1)


def ycrcb_to_rgb(ycc: Tensor, delta: float) -> Tensor:
    """Inverse of :func:`rgb_to_ycrcb` with OpenCV's coefficients (1.403, 0.714, 0.344, 1.773)."""
    y, cr, cb = ycc[:, 0:1], ycc[:, 1:2] - delta, ycc[:, 2:3] - delta
    r = y + 1.403 * cr
    g = y - 0.714 * cr - 0.344 * cb
    b = y + 1.773 * cb
    return torch.cat([r, g, b], 1)


def fuse_chroma(c1: Tensor, c2: Tensor, delta: float, eps: float = 1e-4) -> Tensor:
    """Per-pixel chroma fusion weighted by saturation: (c1|c1-d| + c2|c2-d|) / (|c1-d| + |c2-d| + eps)."""
    w1, w2 = (c1 - delta).abs(), (c2 - delta).abs()
    return (c1 * w1 + c2 * w2) / (w1 + w2 + eps)


def fuse_y_keep_chroma(fn, a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Fuse the luma of two uint8 images with ``fn`` and carry the chroma of the colour source.

    ``a`` and ``b`` are uint8 (N, 1|3, H, W) exactly as read from the files (the channel counts may
    differ). ``fn(ya, yb)`` receives float32 luma in [0, 1], shape (N, 1, H, W) (BT.601 float luma for
    colour images, the stored value for grey ones: one channel or three equal channels) and returns the
    fused luma in the same range and shape.

    Colour, per sample: when exactly one source is colour its Cr/Cb (OpenCV coefficients, offset 0.5)
    are kept; when both are, the chroma is fused by saturation weights (:func:`fuse_chroma` applied to
    the chroma centred on 0.5, so a pixel neutral in both stays neutral); when both are grey the result
    is grey. The output is grey (N, 1, H, W) when every sample of the batch is grey
    on both sides, otherwise (N, 3, H, W) RGB (grey samples then have three equal channels). Values are
    clamped to [0, 1], scaled by 255 and rounded to uint8.
    """
    _check_rgb(a)
    _check_rgb(b)
    if a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise ValueError(f"fuse_y_keep_chroma expects uint8 inputs, got {a.dtype} and {b.dtype}")
    if a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"fuse_y_keep_chroma: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    fa, fb = a.to(torch.float32) / 255.0, b.to(torch.float32) / 255.0
    ga, gb = is_grey(a), is_grey(b)  # (N,)

    def _y(x: Tensor, grey: Tensor) -> Tensor:
        if x.shape[1] == 1:
            return x
        return torch.where(grey.view(-1, 1, 1, 1), x[:, :1], luma(x))

    ya, yb = _y(fa, ga), _y(fb, gb)
    yf = fn(ya, yb)
    if not isinstance(yf, Tensor) or yf.shape != ya.shape:
        raise ValueError(f"fuse_y_keep_chroma: fn returned {getattr(yf, 'shape', type(yf))}, expected {tuple(ya.shape)}")
    yf = yf.to(torch.float32).clamp(0.0, 1.0)
    if bool(ga.all()) and bool(gb.all()):
        return torch.round(yf * 255.0).to(torch.uint8)

    half = 0.5
    zeros = torch.full_like(ya, half)

    def _crcb(x: Tensor, grey: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[1] == 1:
            return zeros, zeros
        ycc = rgb_to_ycrcb(x, half)
        g = grey.view(-1, 1, 1, 1)
        return torch.where(g, zeros, ycc[:, 1:2]), torch.where(g, zeros, ycc[:, 2:3])

    cra, cba = _crcb(fa, ga)
    crb, cbb = _crcb(fb, gb)
    both = (~ga & ~gb).view(-1, 1, 1, 1)
    only_a = (~ga & gb).view(-1, 1, 1, 1)
    cr = torch.where(both, half + fuse_chroma(cra - half, crb - half, 0.0, eps), torch.where(only_a, cra, crb))
    cb = torch.where(both, half + fuse_chroma(cba - half, cbb - half, 0.0, eps), torch.where(only_a, cba, cbb))
    rgb = ycrcb_to_rgb(torch.cat([yf, cr, cb], 1), half).clamp(0.0, 1.0)
    return torch.round(rgb * 255.0).to(torch.uint8)
