"""Small helpers shared by the checkpoint ports (kept minimal; each function names the convention it copies).

Input side
    :func:`check_pair` validates the two uint8 batches a Fuser receives; :func:`to_unit` is the
    ``ToTensor`` / ``np.float32(img) / 255`` scaling; grey conversions are the ones in
    :mod:`fusionbench.color` (``luma_pil`` = PIL ``convert('L')``, ``luma_cv2_u8`` = OpenCV
    ``cvtColor(RGB2GRAY)`` on uint8, which is also what ``cv2.imread(p, IMREAD_GRAYSCALE)`` gives
    for a colour *PNG*; for a colour JPEG OpenCV asks libjpeg for grey directly, which can differ by
    one level).

Output side (how the official scripts turn a float array into the saved uint8 image)
    :func:`truncate_u8`  ``np.uint8(x)`` / ``x.astype('uint8')`` after a clamp: truncation toward zero;
    :func:`imageio_u8`   ``imageio`` (<= 2.x ``image_as_uint``, used by ``skimage.io.imsave``) on a float
                          array: ``x*255 + 0.499999999`` in float64 when the data lie in [0, 1],
                          otherwise a min-max stretch to 0..255 first;
    :func:`minmax`        per-item min-max normalisation over (C, H, W).

Everything is batched over N: statistics that the official code takes "over the whole image" are
taken per item, so a batch gives the same result as one pair at a time.

Speed
    :func:`fold_bn` folds an eval-mode BatchNorm into the preceding convolution; :func:`fast_copy` makes
    an inference copy of a loaded network in channels_last memory format (oneDNN's fast path on CPU,
    2-3x faster for 64-channel full-resolution convolutions); :func:`cl` converts an input to match.
    Both change results only at float rounding level (checked by the parity tests).

Loading
    :func:`load_checkpoint` = :func:`fusionbench.weights.load_state_dict` + ``load_into`` (strict, one
    :class:`~fusionbench.errors.WeightsError` naming expected and found shapes).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from fusionbench.errors import DataError, SizeMismatchError, WeightsError
from fusionbench.weights import load_into, load_state_dict

__all__ = [
    "check_pair", "to_unit", "truncate_u8", "imageio_u8", "minmax", "load_checkpoint", "weight_path",
    "fold_bn", "fast_copy", "cl", "TF_DATA_SUFFIX", "tf_checkpoint_prefix", "tf_weight_files",
]


def check_pair(a: Tensor, b: Tensor) -> None:
    """Raise a one-line :class:`DataError` unless a, b are uint8 (N, 1|3, H, W) batches of the same N, H, W."""
    for label, x in (("first", a), ("second", b)):
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise DataError(f"{label} input: expected a uint8 tensor (N, 1|3, H, W), got {shape}")
        if x.dtype != torch.uint8:
            raise DataError(f"{label} input: expected uint8 (as decoded by fusionbench.io.read_image), got {x.dtype}")
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise SizeMismatchError(
            f"inputs differ in size: {tuple(a.shape)} vs {tuple(b.shape)} (batches must hold same-size pairs)"
        )


def to_unit(x: Tensor) -> Tensor:
    """uint8 -> float32 / 255 (torchvision ``ToTensor``; ``np.float32(img) / 255``; identical in IEEE float32)."""
    return x.to(torch.float32) / 255.0


def truncate_u8(x: Tensor, lo: float = 0.0, hi: float = 255.0) -> Tensor:
    """Clamp to [lo, hi] and cast to uint8 by truncation (numpy ``astype(np.uint8)`` of non-negative floats)."""
    return x.clamp(lo, hi).to(torch.uint8)


def minmax(x: Tensor, eps: float = 0.0) -> Tensor:
    """(x - min) / (max - min + eps) with min and max taken per item over (C, H, W)."""
    flat = x.flatten(1)
    lo = flat.amin(1).view(-1, *([1] * (x.ndim - 1)))
    hi = flat.amax(1).view(-1, *([1] * (x.ndim - 1)))
    return (x - lo) / (hi - lo + eps)


def imageio_u8(x: Tensor) -> Tensor:
    """What ``imageio.v2.imsave`` (2.x ``image_as_uint``) stores for a float array, per item.

    Items with all values in [0, 1]: ``uint8(float64(x) * 255 + 0.499999999)``. Other items are first
    stretched min-max (in float64) to 0..255; a constant item is cast directly (as imageio does).
    """
    xd = x.to(torch.float64)
    flat = xd.flatten(1)
    lo = flat.amin(1).view(-1, 1, 1, 1)
    hi = flat.amax(1).view(-1, 1, 1, 1)
    in_unit = (lo >= 0) & (hi <= 1)
    const = hi == lo
    stretched = (xd - lo) / torch.where(const, torch.ones_like(hi), hi - lo) * 255.0
    y = torch.where(in_unit, xd * 255.0, stretched) + 0.499999999
    y = torch.where(~in_unit & const, xd, y)
    return y.clamp(0, 255).to(torch.uint8)


def weight_path(weights: dict, name: str, display: str) -> Path:
    """The resolved path of weight file ``name`` from a factory's ``weights`` dict, or a WeightsError."""
    p = weights.get(name) if weights else None
    if p is None:
        raise WeightsError(
            f"{display}: no path given for weights file {name}; resolve it with fusionbench.weights.resolve(info, task)"
        )
    return Path(p)


def load_checkpoint(model: torch.nn.Module, path: Path, key: str | None = None, remap=None) -> torch.nn.Module:
    """Strictly load ``path`` (optionally ``ckpt[key]``) into ``model``; shape problems raise one WeightsError."""
    state = load_state_dict(path, key=key)
    load_into(model, state, path, remap=remap)
    return model


def fold_bn(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> torch.nn.Conv2d:
    """A new conv computing ``bn(conv(x))`` with BN's running statistics (eval mode), in float32."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        out = torch.nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, bias=True, padding_mode=conv.padding_mode,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        out.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        out.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return out.eval()


def fast_copy(net: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``net`` for inference: eval mode, no grad, channels_last weights."""
    import copy

    fast = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast


def cl(x: Tensor) -> Tensor:
    """``x`` in channels_last memory format (same values)."""
    return x.contiguous(memory_format=torch.channels_last)



#: the single data shard of the official TensorFlow 1 checkpoints
TF_DATA_SUFFIX = ".data-00000-of-00001"


def tf_checkpoint_prefix(weights: dict, stem: str, display: str) -> Path:
    """The checkpoint prefix of the TensorFlow checkpoint ``stem`` (``stem.index`` + ``stem`` + TF_DATA_SUFFIX,
    as registry weight names) from a factory's ``weights`` dict; one WeightsError when the two resolved files
    are not the two halves of one checkpoint."""
    from fusionbench.tf_checkpoint import checkpoint_prefix

    index = weight_path(weights, f"{stem}.index", display)
    data = weights.get(f"{stem}{TF_DATA_SUFFIX}") if weights else None
    pre = checkpoint_prefix(index)
    if data is not None and checkpoint_prefix(data) != pre:
        raise WeightsError(f"{display}: {index} and {data} are not the two files of one checkpoint (NAME.index beside "
                           f"NAME{TF_DATA_SUFFIX})")
    return pre


def tf_weight_files(stem: str, url_stem: str, sha_index: str, sha_data: str, licence: str, origin: str,
                    task: str) -> tuple:
    """The two registry WeightFiles (``.index``, data shard) of one official TensorFlow checkpoint."""
    from fusionbench.registry import WeightFile

    return tuple(WeightFile(name=f"{stem}{suffix}", sha256=sha, url=f"{url_stem}{suffix}", licence=licence,
                            origin=origin, task=task, note="TensorFlow 1 checkpoint, read without TensorFlow")
                 for suffix, sha in ((".index", sha_index), (TF_DATA_SUFFIX, sha_data)))
