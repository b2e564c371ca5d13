"""SDNet (Zhang & Ma, IJCV 2021), native PyTorch port loading the official TensorFlow 1 checkpoints directly
(:mod:`fusionbench.tf_checkpoint`, no TensorFlow needed), for all four tasks.

Network (the official ``fusion_model`` graph; the four task checkpoints share it, 32 tensors each). Inference
needs the squeeze (fusion) half only: two branches (a, b) of

* ``layer1`` 5x5 conv 1 -> 16, ``layer2`` 3x3 16 -> 16, ``layer3`` 3x3 on [1, 2] 32 -> 16, ``layer4`` 3x3 on
  [1, 2, 3] 48 -> 16, each followed by leaky ReLU (slope 0.2);
* ``layer5_fuse``: 1x1 conv on [a1, b1, a2, b2, a3, b3, a4, b4] (128 channels) -> 1, then tanh.

All convolutions are TensorFlow ``padding='SAME'`` at stride 1 (zero padding of k // 2) with a bias. The
decomposition half (``layer6``..``layer9``) only serves the training loss and is not run.

Official inference protocol (``<task>/test.py``; ``shared/reference/outputs/sdnet/README.md``):

* each source read with ``scipy.misc.imread(path, flatten=True, mode='YCbCr')``, i.e. PIL
  ``convert('YCbCr').convert('F')``: float32 luma 0.299 R + 0.587 G + 0.114 B of the RGB image PIL gets back
  from its YCbCr (for a grey image, its grey value); ``(x - 127.5) / 127.5``; no padding or resizing;
* ``a`` is the first source (IR, or the task's first input), ``b`` the second (visible);
* output ``tanh(...) * 127.5 + 127.5`` (float32), saved with ``scipy.misc.imsave`` = SciPy 1.1 ``bytescale``:
  min-max stretch to 0..255 over the image, ``+ 0.5``, truncation to uint8; a grey image (the official
  script fuses luma only; the authors' MATLAB ``output_process.m`` recolouring is not part of it).

Per-item statistics, so batches give the same result as single pairs.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.errors import UsageError, WeightsError
from fusionbench.registry import MethodInfo, Paper, WeightFile
from fusionbench.tf_checkpoint import read_checkpoint

from ._common import check_pair, tf_checkpoint_prefix, tf_weight_files

REPO = "HaoZhang1018/SDNet"
COMMIT = "bf6a2eeed1f723f0fd319b882d2bf38016bf6e55"
# task -> (folder in the repository, checkpoint prefix, sha256 of .index, sha256 of .data-00000-of-00001)
TASKS = {
    "ivif": ("IR_VIS", "IRVIS.model-10", "bed2d4628732a36bc972de1189c4e139d8bc233077da20156e8e662a17df35aa",
             "17e4426453f09f3dae7887244f48eed54550bdd584792ac284597ee3713293a0"),
    "mif": ("Medical", "Medical.model-29", "e7e22f1195e6b624f38ba886c36a734be183a0399282c1ee6e9582db15ffa969",
            "062d217c7eca5cf910d11115a40347927d7a7b2e6c034a7a76b6149defd97898"),
    "meif": ("Multi_exposure", "MEF.model-11", "93054dfad619624e602abbc49eecc85d4d33794d2444296cfec0ff698320ae68",
             "81fe45422b083a002a842c728f9fa1cf14b32a80e82f120a4e97a1006bfc4e6f"),
    "mfif": ("Multi_focus", "MFF.model-19", "e0047d1b76f501e8730ba8b98ac3d3736d940c3961f2549dbec8f1cccaa39d72",
             "1d568798216d6b22ad4e019e70717b950ebf79682a813acc9846c86e8c4e10f0"),
}


class SDNetFusion(nn.Module):
    """The squeeze half of SDNet: two 4-layer dense branches and a 1x1 fusion layer (tanh)."""

    def __init__(self):
        super().__init__()
        for side in ("a", "b"):
            setattr(self, f"conv1_{side}", nn.Conv2d(1, 16, 5, padding=2))
            setattr(self, f"conv2_{side}", nn.Conv2d(16, 16, 3, padding=1))
            setattr(self, f"conv3_{side}", nn.Conv2d(32, 16, 3, padding=1))
            setattr(self, f"conv4_{side}", nn.Conv2d(48, 16, 3, padding=1))
        self.conv5 = nn.Conv2d(128, 1, 1)

    def _branch(self, x: Tensor, side: str) -> list[Tensor]:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731 - tf.maximum(x, 0.2 x)
        c1 = act(getattr(self, f"conv1_{side}")(x))
        c2 = act(getattr(self, f"conv2_{side}")(c1))
        c3 = act(getattr(self, f"conv3_{side}")(torch.cat([c1, c2], 1)))
        c4 = act(getattr(self, f"conv4_{side}")(torch.cat([c1, c2, c3], 1)))
        return [c1, c2, c3, c4]

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        fa, fb = self._branch(a, "a"), self._branch(b, "b")
        return torch.tanh(self.conv5(torch.cat([t for pair in zip(fa, fb) for t in pair], 1)))


#: official variable -> (module attribute, kind); "a" is the graph's *_ir branch, "b" its *_vi branch
def _variable_map() -> dict[str, tuple[str, str]]:
    m = {}
    for i in range(1, 5):
        for side, tf_side in (("a", "ir"), ("b", "vi")):
            m[f"fusion_model/layer{i}_{tf_side}/w{i}_{tf_side}"] = (f"conv{i}_{side}.weight", "kernel")
            m[f"fusion_model/layer{i}_{tf_side}/b{i}_{tf_side}"] = (f"conv{i}_{side}.bias", "bias")
    m["fusion_model/layer5_fuse/w5_fuse"] = ("conv5.weight", "kernel")
    m["fusion_model/layer5_fuse/b5_fuse"] = ("conv5.bias", "bias")
    return m


def load_tf_checkpoint(net: SDNetFusion, prefix) -> SDNetFusion:
    """Fill ``net`` from an official checkpoint (kernels HWIO -> OIHW); every tensor's shape is checked."""
    mapping = _variable_map()
    arrays = read_checkpoint(prefix, names=list(mapping))
    state = {}
    own = net.state_dict()
    for tf_name, (key, kind) in mapping.items():
        arr = arrays[tf_name]
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(3, 2, 0, 1) if kind == "kernel" else arr))
        if tuple(t.shape) != tuple(own[key].shape):
            raise WeightsError(f"{prefix}: {tf_name} has shape {tuple(arr.shape)}, SDNet needs "
                               f"{tuple(own[key].shape)} (as {key}): not an SDNet checkpoint")
        state[key] = t.to(torch.float32)
    net.load_state_dict(state, strict=True)
    return net


def pil_float_luma(x: Tensor) -> Tensor:
    """``PIL.Image.convert('YCbCr').convert('F')`` of each uint8 image (N, 1|3, H, W) -> float32 (N, 1, H, W).

    Done by Pillow itself, image by image (the official reader's exact integer YCbCr round trip).
    """
    from PIL import Image

    out = []
    for img in x.to("cpu"):
        arr = img.permute(1, 2, 0).numpy()
        im = Image.fromarray(arr[..., 0], "L") if arr.shape[-1] == 1 else Image.fromarray(np.ascontiguousarray(arr), "RGB")
        out.append(torch.from_numpy(np.asarray(im.convert("YCbCr").convert("F"), dtype=np.float32).copy()))
    return torch.stack(out)[:, None].to(x.device)


def bytescale_u8(x: Tensor) -> Tensor:
    """SciPy 1.1 ``bytescale`` of float32 data, per item: (x - min) * (255 / (max - min)) + 0.5, truncated."""
    flat = x.flatten(1)
    lo = flat.amin(1).view(-1, 1, 1, 1)
    span = flat.amax(1).view(-1, 1, 1, 1) - lo
    span = torch.where(span == 0, torch.ones_like(span), span)
    scale = (255.0 / span.to(torch.float64)).to(torch.float32)  # python float 255 / float32 -> used as float32
    return ((x - lo) * scale).clamp_(0, 255).add_(0.5).to(torch.uint8)


class SDNetFuser:
    tile_halo = None  # the output is min-max stretched over the whole image

    def __init__(self, info: MethodInfo, net: SDNetFusion, device: torch.device, task: str):
        self.info, self.device, self.task = info, device, task
        self.net = net.to(device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        check_pair(a, b)
        with torch.inference_mode():
            xa = ((pil_float_luma(a).to(torch.float64) - 127.5) / 127.5).to(torch.float32).to(self.device)
            xb = ((pil_float_luma(b).to(torch.float64) - 127.5) / 127.5).to(torch.float32).to(self.device)
            out = self.net(xa, xb) * 127.5 + 127.5
            return bytescale_u8(out).contiguous()


def build(weights: dict, device: torch.device, task: str = "ivif", **options) -> SDNetFuser:
    """Factory (registry contract): the task's official checkpoint (``.index`` + ``.data-*``)."""
    info = ENTRIES[0]
    if options:
        raise UsageError(f"SDNet: unknown option(s) {', '.join(sorted(options))}; SDNet has none")
    if task not in TASKS:
        raise UsageError(f"SDNet: unsupported task {task!r}; supported: {', '.join(TASKS)}")
    folder, prefix, _, _ = TASKS[task]
    pre = tf_checkpoint_prefix(weights, f"{folder}/{prefix}", info.display)
    net = load_tf_checkpoint(SDNetFusion(), pre)
    return SDNetFuser(info, net, device, task)


def _files() -> tuple[WeightFile, ...]:
    return tuple(f for task, (folder, prefix, sha_index, sha_data) in TASKS.items()
                 for f in tf_weight_files(f"{folder}/{prefix}", f"https://github.com/{REPO}/raw/{COMMIT}/{folder}/checkpoint/{prefix}",
                                          sha_index, sha_data, "MIT (the repository's LICENSE)", f"{REPO}@{COMMIT}", task))


ENTRIES = [
    MethodInfo(
        name="sdnet",
        display="SDNet",
        paper=Paper("SDNet: A Versatile Squeeze-and-Decomposition Network for Real-Time Image Fusion",
                    "International Journal of Computer Vision", 2021),
        kind="cnn",
        tasks=("ivif", "mif", "meif", "mfif"),
        inputs="two grey images (PIL YCbCr -> F luma), (x - 127.5) / 127.5",
        colour="grey: colour sources reduced to PIL's float luma; one-channel output (the authors recolour in MATLAB)",
        weights=_files(),
        factory="fusionbench.baselines.ports.sdnet:build",
        code=f"https://github.com/{REPO}",
        code_licence="MIT",
        notes="Native port of the official TensorFlow 1 graph (squeeze half); the four official checkpoints are read "
              "directly from their tensor-bundle files. Parity with the official code's outputs on the 12 IVIF "
              "reference pairs: see README.",
    )
]
