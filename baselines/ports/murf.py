"""MURF (Xu et al., TPAMI 2023), native PyTorch port of the "fine registration and fusion" networks (task 3 of
the official code) for RGB-IR, CT-MRI and PET-MRI, loading the official TensorFlow 1 checkpoints directly
(:mod:`fusionbench.tf_checkpoint`, no TensorFlow needed).

RGB-IR network (official ``F2M_network.fuse`` in ``RGB-IR/fine_registration_and_fusion/f2m_model.py``, 65 tensors):

* offset sub-network ``conv1_offset/offset_conv`` on [RGB, IR] (4 channels): 3x3 convs with reflect padding 1
  (``conv1``..``conv11``), contrib batch norm (``scale=False``, epsilon 0.001, **batch statistics**: the
  official test builds the graph with ``is_training=BN=True``) after every conv but ``conv2`` and ``conv11``,
  leaky ReLU 0.2, three 4x4/2 'SAME' max pools and nearest 2x upsampling with skip concatenations (a U-Net);
  ``tanh(conv11) * 0.2`` is a displacement field in [-1, 1] grid units added to the identity grid;
* the RGB image is warped with that grid by the authors' ``bilinear_sampler``: corner weights of bilinear
  interpolation passed through ``softmax(w / 0.05)``, corners clipped to the image, zero outside it;
* fusion branch: 1x1 conv (3 -> 8 warped RGB, 1 -> 8 IR), 3x3 8 -> 16, 3x3 16 -> 32 per branch (zero 'SAME'
  padding, leaky ReLU 0.2); channel attention from the absolute Laplacian of both branches (spatial mean and
  max, two dense pairs 32 -> 4 -> 32 without activation in between, sigmoid of the sum) scales both branches;
  ``wf1`` (HWIO 3x3x32x32) on the 64-channel concatenation is a **grouped** convolution (TensorFlow infers 2
  groups from input depth 64 / filter depth 32), then 3x3 32 -> 16, 3x3 16 -> 1, ``tanh / 2 + 0.5`` = fused Y;
* colour: YCbCr -> RGB (the authors' JPEG-style formulas) with the Cb/Cr of the warped RGB image.

Official inference protocol (``test.py``; ``shared/reference/outputs/murf/README.md``): both sources resized
to 1240x1240 with ``scipy.misc.imresize`` (PIL BILINEAR on uint8, done here by Pillow itself), /255; output
resized back to the source size with ``cv2.resize`` INTER_LINEAR (half-pixel centres, no antialias; here
``F.interpolate(bilinear, align_corners=False)``), then ``scipy.misc.toimage(x, cmin=0, cmax=max(x))``:
``x * (255 / max)``, clipped to [0, 255], ``+ 0.5``, truncated to uint8.

Medical networks (``CT-MRI/`` and ``PET-MRI/fine_registration_and_fusion``, 74 tensors each; task ``mif``):

* offset U-Net on [CT or PET, MRI] (2 or 4 channels) as above but with batch norm after *every* conv, a residual
  block (two 5x5 reflect-padded convs, ReLU between, plus the input) after the first three, and
  * CT-MRI: leaky ReLU only after ``conv1``/``conv2``; the displacement is two bias-free convs ``conv12`` (x),
    ``conv13`` (y) with no activation; batch statistics (contrib's default ``is_training=True``);
  * PET-MRI: leaky ReLU after every batch norm; ``tanh(conv11)`` (no 0.2 factor); **moving statistics** (the
    official test passes ``is_training=False`` to the batch norms and restores ``moving_mean/variance``);
* the CT / PET image is warped as above; the fusion branch has *one* set of weights ``w1..w3`` for both
  sources (CT and MRI replicated to 3 channels), channel attention as above, the two branches are *added*
  (``wf1`` an ordinary 32 -> 32 conv), ``wf3`` gives 1 (CT-MRI: grey) or 3 (PET-MRI: RGB) channels,
  ``tanh / 2 + 0.5``.
* protocol (``test.py``, N = 256): CT read by ``scipy.misc.imread(flatten=True, mode='YCbCr')`` = PIL
  ``convert('YCbCr').convert('F')`` (for a colour file this is not the plain grey value: Pillow goes
  YCbCr -> RGB -> F), which ``imresize`` min-max stretches to uint8 (``bytescale``) before the PIL bilinear
  resize; MRI and PET are resized as uint8 (no stretch); output: ``imresize(fused, (H, W))`` = bytescale
  (min-max over the whole image) + PIL bilinear resize, ``/ 255``, and ``imsave`` bytescales once more.
  Which medical network runs is chosen per pair from the second source: colour (PET, SPECT) -> PET-MRI,
  grey (CT) -> CT-MRI (option ``model`` forces one). The first source is the MRI (fusionbench's medical
  layout: a = MRI, b = CT/PET/SPECT).

Batch statistics and the output maximum are taken per item, so a batch gives the same result as single pairs.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.errors import UsageError, WeightsError
from fusionbench.registry import MethodInfo, Paper, WeightFile
from fusionbench.tf_checkpoint import read_checkpoint

from ._common import check_pair, cl, fast_copy, tf_checkpoint_prefix, tf_weight_files

REPO = "hanna-xu/MURF"
COMMIT = "79b270af4ec8a77a7ed880ec6890a5cf9fe3f268"
N_DEFAULT = 1240  # test.py: N = 1240
# task -> (weights subfolder, path of the checkpoint folder in the repository, sha256 .index, sha256 .data)
# model -> (task, weights subfolder, path of the checkpoint folder in the repository, sha256 .index, sha256 .data)
MODELS = {
    "rgb-ir": ("ivif", "RGB-IR", "RGB-IR/fine_registration_and_fusion/models/finetuning",
               "492cedfabc38105699a6baa79d586c61e1acbee8aaa046efcedd1c3be32c031b",
               "a429f09b31f624be2812626b502efe52a9915c4f7d507f9cc5deee704eab6e73"),
    "ct-mri": ("mif", "CT-MRI", "CT-MRI/fine_registration_and_fusion/models",
               "79499958913fa0d2feb755daf560effc5ca6944df918c73dcec619cdccc83b88",
               "379dddd9a26d672f03b27b0f5f8be5ec26bc61f5352f650d8695be60daef6adb"),
    "pet-mri": ("mif", "PET-MRI", "PET-MRI/fine_registration_and_fusion/models",
                "9a673bbbf9983ad8f126230ffbf3be14687d2ea5d7fb174991c8ad2e6e6ccc66",
                "44efd39cdf975e91f106273a2118ef41ea13b60cf6ef376c96ee85f24453ce2b"),
}
TASKS = {"ivif": ("rgb-ir",), "mif": ("ct-mri", "pet-mri")}  # task -> its models
N_MEDICAL = 256  # CT-MRI / PET-MRI test.py: N = 256
OFFSET = "f2m_net/conv1_offset/offset_conv/"
# offset convs (scope, in, out) in graph order, and the BatchNorm index that follows each (None: no BN)
OFFSET_CONVS = (("conv1", 4, 32, 0), ("conv2", 32, 32, None), ("conv3", 32, 32, 1), ("conv5", 32, 32, 2),
                ("conv6", 64, 32, 3), ("conv7", 64, 32, 4), ("conv8", 64, 32, 5), ("conv10", 32, 16, 6),
                ("conv11", 16, 2, None))
BN_EPS = 0.001
C128 = float(np.float32(128 / 255.0))


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2)  # lrelu: tf.maximum(x, 0.2 x), the same values


def _batch_norm(x: Tensor, beta: Tensor) -> Tensor:
    """contrib batch_norm(is_training=True, scale=False): the item's own mean / biased variance over (H, W)."""
    items = [F.batch_norm(t, None, None, None, beta, True, 0.0, BN_EPS) for t in x.split(1)]  # keeps channels_last
    return items[0] if len(items) == 1 else torch.cat(items)


def _max_pool_same(x: Tensor) -> Tensor:
    """tf.nn.max_pool(ksize 4, stride 2, 'SAME'): extra padding at the bottom/right, padded cells ignored."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        out = -(-size // 2)
        total = max((out - 1) * 2 + 4 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 4, 2)


def _laplacian_abs(x: Tensor) -> Tensor:
    """|depthwise 3x3 Laplacian [[0,1,0],[1,-4,1],[0,1,0]]| with zero 'SAME' padding (gradient_channels)."""
    k = x.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(x, k, padding=1, groups=x.shape[1]).abs()


def identity_grid(h: int, w: int, device=None) -> Tensor:
    """(1, 2, H, W): channel 0 = x in linspace(-1, 1, W), channel 1 = y in linspace(-1, 1, H) (float32)."""
    xs = torch.linspace(-1.0, 1.0, w, device=device)
    ys = torch.linspace(-1.0, 1.0, h, device=device)
    return torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)])[None]


def softmax_bilinear_sample(img: Tensor, grid: Tensor) -> Tensor:
    """The official ``grid_sample`` / ``bilinear_sampler``: img (N, C, H, W), grid (N, 2, H, W) in [-1, 1]
    (x, y; -1/+1 = centres of the first/last pixel). Corners clipped to the image, the four bilinear weights
    replaced by softmax(w / 0.05), output zero where the point lies outside [0, W-1] x [0, H-1]."""
    n, c, h, w = img.shape
    x = (grid[:, 0] + 1) / 2 * (w - 1)
    y = (grid[:, 1] + 1) / 2 * (h - 1)
    inside = ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).to(img.dtype)
    x0i, y0i = torch.floor(x).to(torch.int64), torch.floor(y).to(torch.int64)
    x0i, x1i = x0i.clamp(0, w - 1), (x0i + 1).clamp(0, w - 1)
    y0i, y1i = y0i.clamp(0, h - 1), (y0i + 1).clamp(0, h - 1)
    x0, x1, y0, y1 = x0i.to(img.dtype), x1i.to(img.dtype), y0i.to(img.dtype), y1i.to(img.dtype)
    wts = torch.stack([(x1 - x) * (y1 - y), (x1 - x) * (y - y0), (x - x0) * (y1 - y), (x - x0) * (y - y0)], 1)
    wts = torch.softmax(wts / 0.05, dim=1)
    flat = img.reshape(n, c, h * w)
    out = 0
    for k, (xi, yi) in enumerate(((x0i, y0i), (x0i, y1i), (x1i, y0i), (x1i, y1i))):
        idx = (yi * w + xi).reshape(n, 1, h * w).expand(n, c, h * w)
        out = out + wts[:, k:k + 1] * torch.gather(flat, 2, idx).view(n, c, h, w)
    return out * inside[:, None]


def rgb2ycbcr(x: Tensor) -> Tensor:
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.1687 * r - 0.3313 * g + 0.5 * b + C128
    cr = 0.5 * r - 0.4187 * g - 0.0813 * b + C128
    return torch.cat([y, cb, cr], 1)


def ycbcr2rgb(x: Tensor) -> Tensor:
    y, cb, cr = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    r = y + 1.402 * (cr - C128)
    g = y - 0.34414 * (cb - C128) - 0.71414 * (cr - C128)
    b = y + 1.772 * (cb - C128)
    return torch.cat([r, g, b], 1)


class MURFNet(nn.Module):
    """``F2M_network`` (RGB-IR): offset U-Net + softmax-bilinear warp of the RGB image + fusion branch."""

    model = "rgb-ir"

    def __init__(self):
        super().__init__()
        self.offset = nn.ModuleDict({s: nn.Conv2d(i, o, 3) for s, i, o, _ in OFFSET_CONVS})
        for k in range(7):  # BatchNorm[_k]: beta used; moving statistics kept (unused: batch statistics)
            self.register_buffer(f"bn{k}_beta", torch.zeros(32 if k < 6 else 16))
            self.register_buffer(f"bn{k}_mean", torch.zeros(32 if k < 6 else 16))
            self.register_buffer(f"bn{k}_var", torch.ones(32 if k < 6 else 16))
        self.a1, self.b1 = nn.Conv2d(3, 8, 1), nn.Conv2d(1, 8, 1)
        self.a2, self.b2 = nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.a3, self.b3 = nn.Conv2d(16, 32, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.ca_avg1, self.ca_avg2 = nn.Linear(32, 4), nn.Linear(4, 32)  # dense, dense_1
        self.ca_max1, self.ca_max2 = nn.Linear(32, 4), nn.Linear(4, 32)  # dense_2, dense_3
        self.f1 = nn.Conv2d(64, 32, 3, padding=1, groups=2)
        self.f2 = nn.Conv2d(32, 16, 3, padding=1)
        self.f3 = nn.Conv2d(16, 1, 3, padding=1)

    def _oconv(self, name: str, x: Tensor) -> Tensor:
        scope = next(s for s in OFFSET_CONVS if s[0] == name)
        x = self.offset[name](F.pad(x, (1, 1, 1, 1), mode="reflect"))
        if scope[3] is not None:
            x = _batch_norm(x, getattr(self, f"bn{scope[3]}_beta"))
        return x

    def offsets(self, rgb: Tensor, ir: Tensor) -> Tensor:
        """The displacement field (N, 2, H, W) (x, y) in grid units; H, W must be multiples of 8."""
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731 - resize_images method=1
        o1 = _lrelu(self._oconv("conv1", torch.cat([rgb, ir], 1)))
        o2 = _lrelu(self._oconv("conv2", _max_pool_same(o1)))
        o3 = _lrelu(self._oconv("conv3", _max_pool_same(o2)))
        o5 = _lrelu(self._oconv("conv5", _max_pool_same(o3)))
        o6 = _lrelu(self._oconv("conv6", torch.cat([up(o5), o3], 1)))
        o7 = _lrelu(self._oconv("conv7", torch.cat([up(o6), o2], 1)))
        o8 = _lrelu(self._oconv("conv8", torch.cat([up(o7), o1], 1)))
        o10 = _lrelu(self._oconv("conv10", o8))
        return torch.tanh(self._oconv("conv11", o10)) * 0.2

    def forward(self, rgb: Tensor, ir: Tensor) -> tuple[Tensor, Tensor]:
        """rgb (N, 3, H, W), ir (N, 1, H, W) in [0, 1] -> (fused Y, warped RGB)."""
        h, w = rgb.shape[2:]
        grid = self.offsets(rgb, ir) + identity_grid(h, w, rgb.device)
        warped = softmax_bilinear_sample(rgb, grid)
        a = _lrelu(self.a3(_lrelu(self.a2(_lrelu(self.a1(warped))))))
        b = _lrelu(self.b3(_lrelu(self.b2(_lrelu(self.b1(ir))))))
        ga, gb = _laplacian_abs(a), _laplacian_abs(b)
        avg = ga.mean((2, 3)) + gb.mean((2, 3))
        mx = ga.amax((2, 3)) + gb.amax((2, 3))
        scale = torch.sigmoid(self.ca_avg2(self.ca_avg1(avg)) + self.ca_max2(self.ca_max1(mx)))[:, :, None, None]
        x = _lrelu(self.f1(torch.cat([a * scale, b * scale], 1)))
        x = _lrelu(self.f2(x))
        return torch.tanh(self.f3(x)) / 2 + 0.5, warped


class MURFMedicalNet(nn.Module):
    """``F2M_network`` of CT-MRI (``pet=False``) or PET-MRI (``pet=True``): offset U-Net with residual blocks,
    softmax-bilinear warp of the CT / PET image, one shared fusion branch, 1 or 3 output channels."""

    def __init__(self, pet: bool):
        super().__init__()
        self.pet = pet
        self.model = "pet-mri" if pet else "ct-mri"
        cin = 4 if pet else 2
        convs = {"conv1": (cin, 32), "conv2": (32, 32), "conv3": (32, 32), "conv5": (32, 32), "conv6": (64, 32),
                 "conv7": (64, 32), "conv8": (64, 32), "conv10": (32, 16)}
        heads = {"conv11": (16, 2, True)} if pet else {"conv12": (16, 1, False), "conv13": (16, 1, False)}
        self.offset = nn.ModuleDict({k: nn.Conv2d(i, o, 3) for k, (i, o) in convs.items()})
        self.offset.update({k: nn.Conv2d(i, o, 3, bias=b) for k, (i, o, b) in heads.items()})
        self.res = nn.ModuleDict({f"res{r}_{j}": nn.Conv2d(32, 32, 5) for r in (1, 2, 3) for j in (1, 2)})
        for k, (_, o) in enumerate(convs.values()):  # BatchNorm[_k] after conv1, 2, 3, 5, 6, 7, 8, 10
            self.register_buffer(f"bn{k}_beta", torch.zeros(o))
            self.register_buffer(f"bn{k}_mean", torch.zeros(o))
            self.register_buffer(f"bn{k}_var", torch.ones(o))
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.ca_avg1, self.ca_avg2 = nn.Linear(32, 4), nn.Linear(4, 32)
        self.ca_max1, self.ca_max2 = nn.Linear(32, 4), nn.Linear(4, 32)
        self.f1 = nn.Conv2d(32, 32, 3, padding=1)
        self.f2 = nn.Conv2d(32, 16, 3, padding=1)
        self.f3 = nn.Conv2d(16, 3 if pet else 1, 3, padding=1)

    def _bn(self, k: int, x: Tensor) -> Tensor:
        beta = getattr(self, f"bn{k}_beta")
        if self.pet:  # is_training=False: the restored moving statistics
            return F.batch_norm(x, getattr(self, f"bn{k}_mean"), getattr(self, f"bn{k}_var"), None, beta, False,
                                0.0, BN_EPS)
        return _batch_norm(x, beta)

    def _oconv(self, name: str, x: Tensor, k: int | None) -> Tensor:
        x = self.offset[name](F.pad(x, (1, 1, 1, 1), mode="reflect"))
        return x if k is None else self._bn(k, x)

    def _res(self, r: int, x: Tensor) -> Tensor:
        y = F.relu(self.res[f"res{r}_1"](F.pad(x, (2, 2, 2, 2), mode="reflect")))
        return self.res[f"res{r}_2"](F.pad(y, (2, 2, 2, 2), mode="reflect")) + x

    def offsets(self, src: Tensor, mri: Tensor) -> Tensor:
        """Displacement field (N, 2, H, W) (x, y) in grid units; H, W multiples of 8."""
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731 - resize_images method=1
        act = _lrelu if self.pet else (lambda t: t)  # CT-MRI: leaky ReLU after conv1 and conv2 only
        o1 = self._res(1, _lrelu(self._oconv("conv1", torch.cat([src, mri], 1), 0)))
        o2 = self._res(2, _lrelu(self._oconv("conv2", _max_pool_same(o1), 1)))
        o3 = self._res(3, act(self._oconv("conv3", _max_pool_same(o2), 2)))
        o5 = act(self._oconv("conv5", _max_pool_same(o3), 3))
        o6 = act(self._oconv("conv6", torch.cat([up(o5), o3], 1), 4))
        o7 = act(self._oconv("conv7", torch.cat([up(o6), o2], 1), 5))
        o8 = act(self._oconv("conv8", torch.cat([up(o7), o1], 1), 6))
        o10 = act(self._oconv("conv10", o8, 7))
        if self.pet:
            return torch.tanh(self._oconv("conv11", o10, None))
        return torch.cat([self._oconv("conv12", o10, None), self._oconv("conv13", o10, None)], 1)

    def _branch(self, x: Tensor) -> Tensor:
        return _lrelu(self.c3(_lrelu(self.c2(_lrelu(self.c1(x))))))

    def forward(self, src: Tensor, mri: Tensor) -> Tensor:
        """src: CT (N, 1, H, W) or PET (N, 3, H, W), mri (N, 1, H, W), in [0, 1] -> fused (N, 1|3, H, W)."""
        h, w = src.shape[2:]
        grid = self.offsets(src, mri) + identity_grid(h, w, src.device)
        warped = softmax_bilinear_sample(src, grid)
        a = self._branch(warped if self.pet else warped.expand(-1, 3, -1, -1))
        b = self._branch(mri.expand(-1, 3, -1, -1))
        ga, gb = _laplacian_abs(a), _laplacian_abs(b)
        avg = ga.mean((2, 3)) + gb.mean((2, 3))
        mx = ga.amax((2, 3)) + gb.amax((2, 3))
        scale = torch.sigmoid(self.ca_avg2(self.ca_avg1(avg)) + self.ca_max2(self.ca_max1(mx)))[:, :, None, None]
        x = _lrelu(self.f1(a * scale + b * scale))
        x = _lrelu(self.f2(x))
        return torch.tanh(self.f3(x)) / 2 + 0.5


def _variable_map(model: str = "rgb-ir") -> dict[str, tuple[str, str]]:
    """official variable -> (state_dict key, kind: conv / dense / vector)."""
    m = {}
    medical = model != "rgb-ir"
    if medical:
        convs = ["conv1", "conv2", "conv3", "conv5", "conv6", "conv7", "conv8", "conv10"]
        heads = ["conv11"] if model == "pet-mri" else ["conv12", "conv13"]
        n_bn = 8
    else:
        convs, heads, n_bn = [s for s, _, _, _ in OFFSET_CONVS], [], 7
    for scope in convs + heads:
        m[f"{OFFSET}{scope}/conv2d/kernel"] = (f"offset.{scope}.weight", "conv")
        if scope not in ("conv12", "conv13"):  # CT-MRI's displacement convs have no bias
            m[f"{OFFSET}{scope}/conv2d/bias"] = (f"offset.{scope}.bias", "vector")
    for k in range(n_bn):
        bn = OFFSET + ("BatchNorm" if k == 0 else f"BatchNorm_{k}")
        for var, short in (("beta", "beta"), ("moving_mean", "mean"), ("moving_variance", "var")):
            m[f"{bn}/{var}"] = (f"bn{k}_{short}", "vector")
    if medical:
        for r in (1, 2, 3):
            for j in (1, 2):
                m[f"{OFFSET}res{r}/res_conv{j}/conv/conv2d/kernel"] = (f"res.res{r}_{j}.weight", "conv")
                m[f"{OFFSET}res{r}/res_conv{j}/conv/conv2d/bias"] = (f"res.res{r}_{j}.bias", "vector")
    for i in (1, 2, 3):
        if medical:  # one set of weights for both sources
            m[f"f2m_net/w{i}"] = (f"c{i}.weight", "conv")
            m[f"f2m_net/b{i}"] = (f"c{i}.bias", "vector")
        else:
            for side in ("a", "b"):
                m[f"f2m_net/w_{side}{i}"] = (f"{side}{i}.weight", "conv")
                m[f"f2m_net/b_{side}{i}"] = (f"{side}{i}.bias", "vector")
        m[f"f2m_net/wf{i}"] = (f"f{i}.weight", "conv")
        m[f"f2m_net/bf{i}"] = (f"f{i}.bias", "vector")
    for tf_name, mod in (("dense", "ca_avg1"), ("dense_1", "ca_avg2"), ("dense_2", "ca_max1"), ("dense_3", "ca_max2")):
        m[f"f2m_net/{tf_name}/kernel"] = (f"{mod}.weight", "dense")
        m[f"f2m_net/{tf_name}/bias"] = (f"{mod}.bias", "vector")
    return m


def new_net(model: str) -> nn.Module:
    """An empty network for ``model`` (``rgb-ir``, ``ct-mri``, ``pet-mri``)."""
    return MURFNet() if model == "rgb-ir" else MURFMedicalNet(pet=model == "pet-mri")


def load_tf_checkpoint(net: nn.Module, prefix) -> nn.Module:
    """Fill ``net`` from an official checkpoint (conv HWIO -> OIHW, dense (in, out) -> (out, in)); shapes checked."""
    model = net.model
    mapping = _variable_map(model)
    try:
        arrays = read_checkpoint(prefix, names=list(mapping))
    except WeightsError as e:
        raise WeightsError(f"{e} (not a MURF {MODELS[model][1]} checkpoint?)") from None
    own = net.state_dict()
    state = {}
    for tf_name, (key, kind) in mapping.items():
        arr = arrays[tf_name]
        if kind == "conv" and arr.ndim == 4:
            arr = arr.transpose(3, 2, 0, 1)
        elif kind == "dense" and arr.ndim == 2:
            arr = arr.T
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if tuple(t.shape) != tuple(own[key].shape):
            raise WeightsError(f"{prefix}: {tf_name} has shape {tuple(arrays[tf_name].shape)}, MURF "
                               f"({MODELS[model][1]}) needs {tuple(own[key].shape)} (as {key}): not a MURF "
                               f"{MODELS[model][1]} checkpoint")
        state[key] = t.to(torch.float32)
    net.load_state_dict(state, strict=True)
    return net


def pil_resize(x: Tensor, size) -> Tensor:
    """``scipy.misc.imresize(img, size)`` on uint8 = PIL BILINEAR resize of each item, done by Pillow
    (``size``: an int for a square, or (H, W))."""
    from PIL import Image

    h, w = (size, size) if isinstance(size, int) else size
    out = []
    for img in x.to("cpu"):
        arr = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
        im = Image.fromarray(arr[..., 0], "L") if arr.shape[-1] == 1 else Image.fromarray(arr, "RGB")
        r = np.asarray(im.resize((w, h), Image.BILINEAR))
        out.append(torch.from_numpy(r.reshape(h, w, -1).copy()).permute(2, 0, 1))
    return torch.stack(out).to(x.device)


def pil_f_via_ycbcr(x: Tensor) -> Tensor:
    """``scipy.misc.imread(path, flatten=True, mode='YCbCr')`` of a uint8 item (N, 1|3, H, W): PIL
    ``convert('YCbCr').convert('F')`` -> float32 (N, 1, H, W). For a grey image the grey value; for a colour one
    Pillow converts YCbCr -> RGB -> F, which differs from the direct luma by up to one level."""
    from PIL import Image

    out = []
    for img in x.to("cpu"):
        arr = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
        im = Image.fromarray(arr[..., 0], "L") if arr.shape[-1] == 1 else Image.fromarray(arr, "RGB")
        out.append(torch.from_numpy(np.asarray(im.convert("YCbCr").convert("F"), dtype=np.float32).copy())[None])
    return torch.stack(out).to(x.device)


def bytescale_u8(x: Tensor) -> Tensor:
    """SciPy 1.1 ``bytescale`` of a float32 item (what ``imresize``/``imsave``/``toimage`` do to float data):
    ``(x - min) * (255 / (max - min)) + 0.5`` (float32, a flat image: scale 255), clipped, truncated; per item over
    (C, H, W)."""
    flat = x.flatten(1)
    lo = flat.amin(1)
    span = flat.amax(1) - lo
    span = torch.where(span == 0, torch.ones_like(span), span)
    scale = (torch.tensor(255.0, dtype=x.dtype, device=x.device) / span).view(-1, 1, 1, 1)
    return ((x - lo.view(-1, 1, 1, 1)) * scale).clamp_(0, 255).add_(0.5).to(torch.uint8)


def cv2_resize_linear(x: Tensor, h: int, w: int) -> Tensor:
    """``cv2.resize(img, (w, h))`` INTER_LINEAR on float data: half-pixel centres, edge clamp, no antialias
    (OpenCV's exact-2x-downscale switch to INTER_AREA gives the same 2x2 means)."""
    if tuple(x.shape[2:]) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)


def toimage_u8(x: Tensor) -> Tensor:
    """``scipy.misc.toimage(x, cmin=0, cmax=max(x))`` per item: x * (255 / max), clip [0, 255], +0.5, uint8."""
    cmax = x.flatten(1).amax(1)
    cmax = torch.where(cmax <= 0, torch.ones_like(cmax), cmax)
    scale = (255.0 / cmax).view(-1, 1, 1, 1)
    return (x * scale).clamp_(0, 255).add_(0.5).to(torch.uint8)


def _is_colour(x: Tensor) -> bool:
    return x.shape[0] == 3 and not (torch.equal(x[0], x[1]) and torch.equal(x[0], x[2]))


class MURFFuser:
    tile_halo = None  # global batch statistics, channel attention and output maximum

    def __init__(self, info: MethodInfo, nets: dict[str, nn.Module], device: torch.device, task: str, size: int,
                 model: str):
        self.info, self.device, self.task, self.size, self.model = info, torch.device(device), task, size, model
        self.nets = {k: fast_copy(n.to(self.device)) for k, n in nets.items()}  # channels_last; float rounding only

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        """ivif: a = IR (N, 1|3, H, W) uint8 (grey values), b = visible RGB (a grey one is replicated) -> (N, 3, H, W).
        mif: a = MRI (grey values), b = CT (grey) or PET / SPECT (colour) -> (N, 1, H, W) for CT, (N, 3, H, W) for
        colour (a batch mixing both returns 3 channels, grey replicated)."""
        check_pair(a, b)
        if self.task == "ivif":
            return self._fuse_ivif(a, b)
        models = [self.model if self.model != "auto" else ("pet-mri" if _is_colour(x) else "ct-mri") for x in b]
        outs = [self._fuse_medical(a[i:i + 1], b[i:i + 1], m) for i, m in enumerate(models)]
        if len({o.shape[1] for o in outs}) > 1:
            outs = [o.expand(-1, 3, -1, -1) for o in outs]
        return torch.cat(outs).contiguous()

    def _fuse_ivif(self, a: Tensor, b: Tensor) -> Tensor:
        from fusionbench.color import luma_pil

        h, w = a.shape[2:]
        ir = luma_pil(a) if a.shape[1] == 3 else a
        rgb = b.expand(-1, 3, -1, -1) if b.shape[1] == 1 else b
        with torch.inference_mode():
            ir_n = cl(pil_resize(ir, self.size).to(self.device, torch.float32) / 255.0)
            rgb_n = cl(pil_resize(rgb, self.size).to(self.device, torch.float32) / 255.0)
            y, warped = self.nets["rgb-ir"](rgb_n, ir_n)
            y, warped = y.contiguous(), warped.contiguous()
            ycc = rgb2ycbcr(warped)
            fused = ycbcr2rgb(torch.cat([y, ycc[:, 1:3]], 1))
            return toimage_u8(cv2_resize_linear(fused, h, w)).contiguous()

    def _fuse_medical(self, mri: Tensor, src: Tensor, model: str) -> Tensor:
        from fusionbench.color import luma_pil

        h, w = mri.shape[2:]
        mri = luma_pil(mri) if mri.shape[1] == 3 else mri
        with torch.inference_mode():
            if model == "ct-mri":  # imread(flatten=True, mode='YCbCr'); imresize bytescales the float image
                src_u8 = pil_resize(bytescale_u8(pil_f_via_ycbcr(src)), self.size)
            else:
                src_u8 = pil_resize(src.expand(-1, 3, -1, -1), self.size)
            src_n = cl(src_u8.to(self.device, torch.float32) / 255.0)
            mri_n = cl(pil_resize(mri, self.size).to(self.device, torch.float32) / 255.0)
            fused = self.nets[model](src_n, mri_n).contiguous()
            # imresize(fused, (H, W)) = bytescale + PIL bilinear; / 255; imsave bytescales again
            back = pil_resize(bytescale_u8(fused).cpu(), (h, w)).to(self.device, torch.float32) / 255.0
            return bytescale_u8(back)


def build(weights: dict, device: torch.device = "cpu", task: str = "ivif", size: int | None = None,
          model: str = "auto", **options) -> MURFFuser:
    """Factory (registry contract): the task's official checkpoint(s) (``.index`` + ``.data-*``).

    ``size``: the square processing resolution (official: 1240 for RGB-IR, 256 for the medical models; a
    multiple of 8). ``model`` (task mif): ``auto`` (per pair: colour second source -> PET-MRI, grey -> CT-MRI),
    ``ct-mri`` or ``pet-mri``."""
    info = ENTRIES[0]
    if options:
        raise UsageError(f"MURF: unknown option(s) {', '.join(sorted(options))}; MURF has: size, model")
    if task not in TASKS:
        raise UsageError(f"MURF: unsupported task {task!r}; supported: {', '.join(TASKS)}")
    choices = ("auto",) + TASKS[task]
    if model not in choices:
        raise UsageError(f"MURF: model {model!r} is not one of {', '.join(choices)} for task {task}")
    size = (N_DEFAULT if task == "ivif" else N_MEDICAL) if size is None else size
    if not isinstance(size, int) or isinstance(size, bool) or size < 8 or size % 8:
        raise UsageError(f"MURF: size must be a positive multiple of 8 (official {N_DEFAULT} for RGB-IR, "
                         f"{N_MEDICAL} for the medical models), got {size!r}")
    wanted = TASKS[task] if model == "auto" else (model,)
    nets = {}
    for m in wanted:
        pre = tf_checkpoint_prefix(weights, f"{MODELS[m][1]}/0000.ckpt", info.display)
        nets[m] = load_tf_checkpoint(new_net(m), pre)
    return MURFFuser(info, nets, device, task, size, model)


def _files() -> tuple[WeightFile, ...]:
    return tuple(f for model, (task, folder, repo_dir, sha_index, sha_data) in MODELS.items()
                 for f in tf_weight_files(f"{folder}/0000.ckpt", f"https://github.com/{REPO}/raw/{COMMIT}/{repo_dir}/0000.ckpt",
                                          sha_index, sha_data, "none stated (the repository has no LICENSE file)",
                                          f"{REPO}@{COMMIT}", task))


ENTRIES = [
    MethodInfo(
        name="murf",
        display="MURF",
        paper=Paper("MURF: Mutually Reinforcing Multi-Modal Image Registration and Fusion",
                    "IEEE Transactions on Pattern Analysis and Machine Intelligence", 2023),
        kind="cnn",
        tasks=tuple(TASKS),
        inputs="ivif: IR grey (PIL luma of a colour file) + visible RGB (grey replicated), PIL-bilinear resized to "
               "1240x1240, /255; mif: MRI grey + CT (PIL YCbCr->F, min-max stretched) or PET/SPECT RGB, 256x256",
        colour="ivif: RGB, fused Y with the Cb/Cr of the (network-warped) visible image; mif: grey for CT-MRI, RGB "
               "straight from the network for PET-MRI; resized back to the source size",
        weights=_files(),
        factory="fusionbench.baselines.ports.murf:build",
        code=f"https://github.com/{REPO}",
        code_licence="none stated",
        notes="Native port of the official TensorFlow 1 graphs of task 3 (fine registration and fusion): the "
              "'finetuning' RGB-IR checkpoint (task ivif) and the CT-MRI and PET-MRI checkpoints (task mif; option "
              "model=auto picks PET-MRI for a colour second source such as PET or SPECT, CT-MRI for a grey one), "
              "read directly from their tensor-bundle files. Batch normalisation as in the official tests: the "
              "image's own statistics for RGB-IR and CT-MRI, the stored moving statistics for PET-MRI. The second "
              "source (visible / CT / PET) is warped by the predicted deformation before fusion, as in the official "
              "tests. Option size sets the square processing resolution (official 1240 RGB-IR, 256 medical).",
        options={"size": None, "model": "auto"},
    )
]
