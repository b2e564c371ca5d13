"""DIDFuse (Zhao et al., IJCAI 2020), native port of the official encoder/decoder checkpoints.

Network (paper Fig. 2 / Table 1 and the checkpoint shapes; BatchNorm in eval mode):

* encoder ``cov1``: reflection pad 1, 3x3 conv 1 -> 64, BN, PReLU (one slope);
  ``cov2``: 3x3 conv 64 -> 64 (zero pad 1), BN, PReLU;
  ``cov3`` (base part) and ``cov4`` (detail part), both fed by cov2: 3x3 conv 64 -> 64, BN, tanh.
  It returns the four feature maps (cov1, cov2, base, detail).
* decoder ``cov5``: cat(base, detail) -> 3x3 conv 128 -> 64, BN, PReLU;
  ``cov6``: cat(cov5, cov2 features) -> 3x3 conv 128 -> 64, BN, PReLU;
  ``cov7``: cat(cov6, cov1 features) -> reflection pad 1, 3x3 conv 128 -> 1, BN, sigmoid.

Checkpoints are ``{"weight": state_dict, "epoch": 120}``; the state dicts load strictly as they are.

Official inference protocol (Zhaozixiang1228/IVIF-DIDFuse ``test.py`` + ``utils_didfuse.Test_fusion``;
``shared/reference/outputs/README.md``):

* ``PIL.Image.open``; images not in mode 'L' reduced with PIL ``convert('L')`` (the official script
  only handles single-channel images; this is the documented deviation of the reference outputs);
  float32 / 255; img1 = infrared, img2 = visible;
* fusion ``addition_mode='Sum'`` (default of ``Test_fusion``): each of the four feature maps summed over
  the two inputs. ``addition="average"`` and ``addition="l1_norm"`` give the other official modes;
* output (sigmoid, in (0, 1)) saved with ``skimage.io.imsave`` -> imageio: ``round(x * 255)``
  (:func:`fusionbench.baselines.ports._common.imageio_u8`); one-channel image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.color import luma_pil
from fusionbench.errors import UsageError
from fusionbench.registry import MethodInfo, Paper, WeightFile

from ._common import check_pair, cl, fast_copy, fold_bn, imageio_u8, load_checkpoint, to_unit, weight_path

REPO = "Zhaozixiang1228/IVIF-DIDFuse"
COMMIT = "5f287300dce7cbc90b9e08e6872455af6baa279f"
ENCODER = ("Encoder_weight_IJCAI.pkl", "4d84a4e64e58469d3d4591f83c6683ead3e422498519db99bb617cb29d268471")
DECODER = ("Decoder_weight_IJCAI.pkl", "c6974e2a7c66ab579a77bacb086023237a229e769d459783bad8ff43e52e9986")
MODES = ("sum", "average", "l1_norm")


class _Reflect(nn.Module):
    """Reflection pad of 1 (a parameter-free slot, so that the checkpoint's Sequential indices line up)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, (1, 1, 1, 1), mode="reflect")


def _block(cin: int, cout: int, act: nn.Module, pad: bool) -> nn.Sequential:
    if pad:  # indices: 0 pad, 1 conv, 2 bn, 3 act
        return nn.Sequential(_Reflect(), nn.Conv2d(cin, cout, 3), nn.BatchNorm2d(cout), act)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), act)  # 0 conv, 1 bn, 2 act


class _Wrap(nn.Module):
    """Holds a Sequential under the same name as its parent (checkpoint keys ``covK.covK.i.*``)."""

    def __init__(self, name: str, seq: nn.Sequential):
        super().__init__()
        self._name = name
        self.add_module(name, seq)

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, self._name)(x)


class DIDFuseEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.cov1 = _Wrap("cov1", _block(1, 64, nn.PReLU(), pad=True))
        self.cov2 = _Wrap("cov2", _block(64, 64, nn.PReLU(), pad=False))
        self.cov3 = _Wrap("cov3", _block(64, 64, nn.Tanh(), pad=False))
        self.cov4 = _Wrap("cov4", _block(64, 64, nn.Tanh(), pad=False))

    def forward(self, x: Tensor):
        f1 = self.cov1(x)
        f2 = self.cov2(f1)
        return f1, f2, self.cov3(f2), self.cov4(f2)


class DIDFuseDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.cov5 = _Wrap("cov5", _block(128, 64, nn.PReLU(), pad=False))
        self.cov6 = _Wrap("cov6", _block(128, 64, nn.PReLU(), pad=False))
        self.cov7 = _Wrap("cov7", _block(128, 1, nn.Sigmoid(), pad=True))

    def forward(self, f1: Tensor, f2: Tensor, base: Tensor, detail: Tensor) -> Tensor:
        x = self.cov5(torch.cat([base, detail], 1))
        x = self.cov6(torch.cat([x, f2], 1))
        return self.cov7(torch.cat([x, f1], 1))


def _l1_weighted(y1: Tensor, y2: Tensor) -> Tensor:
    """``l1_norm`` mode: activity = 3x3 mean of |y| summed over all channels (zero padding), soft weights."""
    k = torch.full((1, 1, 3, 3), 1.0 / 9.0, dtype=y1.dtype, device=y1.device)
    a1 = F.conv2d(y1.abs().sum(1, keepdim=True), k, padding=1)
    a2 = F.conv2d(y2.abs().sum(1, keepdim=True), k, padding=1)
    return (a1 / (a1 + a2)) * y1 + (a2 / (a1 + a2)) * y2


class DIDFuseNet(nn.Module):
    def __init__(self, addition: str = "sum"):
        super().__init__()
        self.addition = addition
        self.encoder = DIDFuseEncoder()
        self.decoder = DIDFuseDecoder()

    def forward(self, ir: Tensor, vi: Tensor) -> Tensor:
        n = ir.shape[0]
        feats = self.encoder(torch.cat([ir, vi], 0))
        fused = []
        for f in feats:
            fi, fv = f[:n], f[n:]
            if self.addition == "sum":
                fused.append(fi.add(fv))
            elif self.addition == "average":
                fused.append(fi.add(fv).div_(2))
            else:
                fused.append(_l1_weighted(fi, fv))
        return self.decoder(*fused)


class _InplaceTanh(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh_()


class _InplaceLeaky(nn.Module):
    """A single-slope PReLU applied in place (identical values: x if x > 0 else slope * x)."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu_(x, self.slope)


class _InplaceSigmoid(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid_()


def fold_all_bn(net: nn.Module) -> nn.Module:
    """Inference copy of ``net``: every (conv, BatchNorm) pair of its Sequentials folded into one conv,
    PReLU / tanh / sigmoid applied in place (no fresh full-size buffers), channels_last."""
    fast = fast_copy(net)
    for seq in [m for m in fast.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq)):
            if i + 1 < len(seq) and isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i], seq[i + 1] = fold_bn(seq[i], seq[i + 1]), nn.Identity()
            elif isinstance(seq[i], nn.Tanh):
                seq[i] = _InplaceTanh()
            elif isinstance(seq[i], nn.Sigmoid):
                seq[i] = _InplaceSigmoid()
            elif isinstance(seq[i], nn.PReLU) and seq[i].weight.numel() == 1:
                seq[i] = _InplaceLeaky(float(seq[i].weight))
    return fast.to(memory_format=torch.channels_last)


class DIDFuseFuser:
    """``net`` holds the checkpoint as loaded; inference runs on a BN-folded channels_last copy."""

    tile_halo = 6  # six 3x3 layers

    def __init__(self, info: MethodInfo, net: DIDFuseNet, device: torch.device):
        self.info, self.net, self.device = info, net.to(device).eval(), device
        self._fast = fold_all_bn(self.net)
        if net.addition == "l1_norm":
            self.tile_halo = 7  # the 3x3 activity window adds one pixel

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        check_pair(a, b)
        with torch.inference_mode():
            ir = cl(to_unit(luma_pil(a.to(self.device))))
            vi = cl(to_unit(luma_pil(b.to(self.device))))
            return imageio_u8(self._fast(ir, vi)).contiguous()


def build(weights: dict, device: torch.device, task: str = "ivif", addition: str = "sum", **options) -> DIDFuseFuser:
    """Factory (registry contract). ``addition``: "sum" (official default), "average" or "l1_norm"."""
    if options:
        raise UsageError(f"DIDFuse: unknown option(s) {', '.join(sorted(options))}; known: addition")
    info = ENTRIES[0]
    if task not in info.tasks:
        raise UsageError(f"DIDFuse: unsupported task {task!r}; supported: {', '.join(info.tasks)}")
    addition = addition.lower()
    if addition not in MODES:
        raise UsageError(f"DIDFuse: unknown addition mode {addition!r}; choose one of {', '.join(MODES)}")
    net = DIDFuseNet(addition)
    load_checkpoint(net.encoder, weight_path(weights, ENCODER[0], info.display), key="weight")
    load_checkpoint(net.decoder, weight_path(weights, DECODER[0], info.display), key="weight")
    return DIDFuseFuser(info, net, device)


def _wf(name: str, sha: str) -> WeightFile:
    return WeightFile(
        name=name,
        sha256=sha,
        url=f"https://github.com/{REPO}/raw/{COMMIT}/Models/{name}",
        licence="none stated",
        origin=f"{REPO}@{COMMIT}",
    )


ENTRIES = [
    MethodInfo(
        name="didfuse",
        display="DIDFuse",
        paper=Paper(
            "DIDFuse: Deep Image Decomposition for Infrared and Visible Image Fusion",
            "IJCAI",
            2020,
            "https://www.ijcai.org/proceedings/2020/135",
        ),
        kind="autoencoder",
        tasks=("ivif",),
        inputs="two grey images (PIL convert('L') for colour files), float /255",
        colour="grey: colour sources reduced with PIL luma; one-channel output",
        weights=(_wf(*ENCODER), _wf(*DECODER)),
        factory="fusionbench.baselines.ports.didfuse:build",
        code=f"https://github.com/{REPO}",
        notes="The official test script only reads single-channel images; colour files go through PIL "
        "convert('L') (as for the reference outputs). Option addition=sum|average|l1_norm (official modes).",
    )
]
