"""LRRNet (Li, Xu, Wu, Lu & Kittler, TPAMI 2023), native PyTorch port of the official fusion checkpoint.

Network (LRR_NET with s=3, n=128, channel=1, num_block=4, fusion 'cat'; 52 tensors). Every convolution
is 3x3 with reflection padding 1 and a bias, and there is no activation besides the soft threshold
``h_lam(c) = sign(c) * max(|c| - lam, 0)`` (per channel; a threshold may be negative).

* ``get_ls1`` (infrared) and ``get_ls2`` (visible) are two learned low-rank representation (LLRR)
  encoders with their own weights. Each computes a 2n = 256 channel code of its image ``x``:
  ``C = h_lamj(W00 * x)``, then four unrolled iterations
  ``C = h_lamj(lamz * C + Wdt_k * (x - Wd_k * C))`` (``Wd_k``: 256 -> 1, ``Wdt_k``: 1 -> 256, one pair
  per block; ``lamj`` (256 thresholds) and the scalar ``lamz`` are shared by the blocks). The first
  n channels are the low-rank coefficients, the last n the salient (sparse) ones.
* ``decoder``: each coefficient set is mapped back to an image (``ReZx``/``ReUx`` for infrared,
  ``ReZy``/``ReUy`` for visible, 128 -> 1); the two low-rank images are concatenated and merged by
  ``ReL`` (2 -> 1), the two salient ones by ``ReH``; the fused image is their sum.

Fast evaluation. The official code runs every LLRR step as full-resolution convolutions plus several
element-wise passes over 256-channel tensors (memory-bound). Here each step is one streaming pass over
the code, in cache-sized chunks of pixels (channels last): a 1 -> 256 convolution is a (pixels x 9) @
(9 x 256) product of the 3x3 patches of the one-channel residual, the soft threshold is done in place,
and the next 256 -> 1 convolution is reduced on the fly to 9 per-pixel projections that are summed over
the 3x3 neighbourhood afterwards (reflection padding commutes with per-pixel linear maps). Large
images are processed in bands of rows with an exact halo (reflection padding is applied only at the
true image borders), so memory stays bounded. :meth:`LRRNet.forward` is the plain convolutional
formulation, kept as the definition and used by the tests to check the fast path.

Official inference protocol (hli1221/imagefusion-LRRNet ``testing_fusion_lrr.py``, ``utils.py``;
``shared/reference/outputs/README.md``):

* both images ``cv2.imread(p, IMREAD_GRAYSCALE)`` (:func:`fusionbench.baselines.ports.tardal.cv2_grey_read`: exact for
  grey images; a colour JPEG, which OpenCV decodes straight to libjpeg's luma plane, is approximated
  from its RGB decode) as float32 0..255, then per image
  ``(x - min) / (max - min + 1e-5)``; no padding;
* output ``(f - min) / (max - min + 1e-5) * 255`` over the whole fused image (no clamp), truncated to
  uint8 (so the maximum is 254); a one-channel image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionbench.errors import UsageError
from fusionbench.registry import MethodInfo, Paper, WeightFile

from ._common import check_pair, load_checkpoint, minmax, truncate_u8, weight_path
from .tardal import cv2_grey_read

REPO = "hli1221/imagefusion-LRRNet"
COMMIT = "e489fc325ea6acb9b7327b1de2c0cc4a09172ba4"
FILE = (
    "final_lrr_net_lam2_1.5_wir_3.0_lam3_gram_2000_epoch_4_block_4.model",
    "1de9dd8dee9b650ce69c74ea53e3b9a6b749222f1059a689aabf28f68ee63e29",
)
EPS = 1e-5
HALO = 11  # 1 (W00) + 4 blocks x 2 (Wd, Wdt) + 2 (decoder): rows a band needs beyond its output


class ReflectConv(nn.Module):
    """Reflection pad k//2, then a k x k convolution with bias; key ``conv2d.*``."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.conv2d = nn.Conv2d(cin, cout, k)

    def forward(self, x: Tensor) -> Tensor:
        p = self.conv2d.kernel_size[0] // 2
        return self.conv2d(F.pad(x, (p, p, p, p), mode="reflect"))


def soft_threshold(c: Tensor, lam: Tensor) -> Tensor:
    """``sign(c) * max(|c| - lam, 0)`` (lam broadcast over c; exact for negative thresholds too)."""
    return torch.sign(c) * (c.abs() - lam).clamp(min=0)


def _soft_threshold_(c: Tensor, lam: Tensor) -> Tensor:
    """In-place :func:`soft_threshold` on a (pixels, channels) chunk; same float operations."""
    s = torch.sign(c)
    return c.abs_().sub_(lam).clamp_(min=0).mul_(s)


class LLRRBlock(nn.Module):
    """One unrolled iteration: ``h(lamz * C + Wdt * (x - Wd * C))``."""

    def __init__(self, n2: int, channel: int = 1, s: int = 3):
        super().__init__()
        self.conv_Wdz = ReflectConv(n2, channel, s)
        self.conv_Wdtz = ReflectConv(channel, n2, s)

    def forward(self, x: Tensor, c: Tensor, lamj: Tensor, lamz: Tensor) -> Tensor:
        return soft_threshold(lamz * c + self.conv_Wdtz(x - self.conv_Wdz(c)), lamj.view(1, -1, 1, 1))


class LLRREncoder(nn.Module):
    """LLRR encoder of one modality: image -> (low-rank code, salient code), n channels each."""

    def __init__(self, n: int = 128, channel: int = 1, s: int = 3, num_block: int = 4):
        super().__init__()
        self.n = n
        self.conv_W00 = ReflectConv(channel, 2 * n, s)
        self.lamj = nn.Parameter(torch.zeros(1, 2 * n))
        self.lamz = nn.Parameter(torch.zeros(1, 1))
        self.num_block = num_block
        for i in range(num_block):
            self.add_module(f"lrrblock{i}", LLRRBlock(2 * n, channel, s))

    def blocks(self) -> list[LLRRBlock]:
        return [getattr(self, f"lrrblock{i}") for i in range(self.num_block)]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c = soft_threshold(self.conv_W00(x), self.lamj.view(1, -1, 1, 1))
        for blk in self.blocks():
            c = blk(x, c, self.lamj, self.lamz)
        return c[:, : self.n], c[:, self.n :]


class LRRDecoder(nn.Module):
    """Per-part reconstruction, 'cat' fusion of the low-rank and of the salient images, sum."""

    def __init__(self, n: int = 128, channel: int = 1, s: int = 3):
        super().__init__()
        self.conv_ReZx = ReflectConv(n, channel, s)
        self.conv_ReUx = ReflectConv(n, channel, s)
        self.conv_ReZy = ReflectConv(n, channel, s)
        self.conv_ReUy = ReflectConv(n, channel, s)
        self.conv_ReL = ReflectConv(2 * channel, channel, s)
        self.conv_ReH = ReflectConv(2 * channel, channel, s)

    def forward(self, zx: Tensor, ux: Tensor, zy: Tensor, uy: Tensor) -> Tensor:
        low = self.conv_ReL(torch.cat([self.conv_ReZx(zx), self.conv_ReZy(zy)], 1))
        high = self.conv_ReH(torch.cat([self.conv_ReUx(ux), self.conv_ReUy(uy)], 1))
        return low + high


class LRRNet(nn.Module):
    """LRR_NET(s=3, n=128, channel=1, num_block=4, fusion 'cat'); keys match the official checkpoint."""

    def __init__(self, n: int = 128, num_block: int = 4):
        super().__init__()
        self.get_ls1 = LLRREncoder(n, 1, 3, num_block)
        self.get_ls2 = LLRREncoder(n, 1, 3, num_block)
        self.decoder = LRRDecoder(n, 1, 3)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Plain convolutional evaluation: x (infrared), y (visible) normalised (N, 1, H, W) -> fused."""
        return self.decoder(*self.get_ls1(x), *self.get_ls2(y))


# ----------------------------------------------------------------------------------------------------
# fast evaluation (same mathematics, streamed over pixels; see the module docstring)


def _pad(x: Tensor, top: int, bottom: int) -> Tensor:
    """Reflection-pad a (C, h, W) band by 1 column on each side and ``top``/``bottom`` rows."""
    return F.pad(x[None], (1, 1, top, bottom), mode="reflect")[0]


def _patches(r: Tensor, top: int, bottom: int) -> Tensor:
    """3x3 patches of a one-channel band (h, W) plus a ones column: ((h') * W, 10), h' = h - 2 + top + bottom."""
    p = F.unfold(_pad(r[None], top, bottom)[None], 3)[0]  # (9, h' * W), kernel order (i, j)
    return torch.cat([p, torch.ones_like(p[:1])], 0).t().contiguous()


class _FastLRR:
    """Weights of a loaded :class:`LRRNet` rearranged for the streamed evaluation."""

    def __init__(self, net: LRRNet, device: torch.device, chunk: int | None = None, band_bytes: int = 1 << 29):
        self.device = device
        self.chunk = chunk or (4096 if device.type == "cpu" else 1 << 18)
        self.band_bytes = band_bytes
        self._pool, self._workers, self._use_pool = None, 1, False
        with torch.no_grad():
            self._prepare(net, device)

    def _prepare(self, net: LRRNet, device: torch.device) -> None:
        dec = net.decoder
        self.enc = []
        for enc, (rz, ru) in ((net.get_ls1, (dec.conv_ReZx, dec.conv_ReUx)), (net.get_ls2, (dec.conv_ReZy, dec.conv_ReUy))):
            n2 = 2 * enc.n

            def mk_in(conv: ReflectConv, n2: int = n2) -> Tensor:
                """1 -> 256 conv as a (10, 256) matrix for [3x3 patch, 1] rows (the bias in the last row)."""
                return torch.cat([conv.conv2d.weight.reshape(n2, 9).t(), conv.conv2d.bias[None]], 0)

            w00 = mk_in(enc.conv_W00)
            # projections taken after each pass: block k's Wd (for the next residual), then the decoder's
            projs = [b.conv_Wdz.conv2d.weight.reshape(n2, 9) for b in enc.blocks()]
            dec_w = torch.zeros(n2, 18, dtype=w00.dtype)
            dec_w[: enc.n, :9] = rz.conv2d.weight.reshape(enc.n, 9)
            dec_w[enc.n :, 9:] = ru.conv2d.weight.reshape(enc.n, 9)
            projs.append(dec_w)
            lamj = enc.lamj.detach().reshape(-1).clone()
            neg = torch.nonzero(lamj < 0).flatten()
            proj_bias = [b.conv_Wdz.conv2d.bias for b in enc.blocks()] + [torch.cat([rz.conv2d.bias, ru.conv2d.bias])]
            self.enc.append(
                dict(
                    w00=w00.to(device),
                    wdt=[mk_in(b.conv_Wdtz).to(device) for b in enc.blocks()],
                    projs=[p.t().contiguous().to(device) for p in projs],  # (9k, 256)
                    proj_bias=[b.to(device) for b in proj_bias],
                    lamj=lamj.to(device),
                    nlamj=(-lamj).to(device),
                    neg=neg.to(device) if neg.numel() else None,
                    lamz=float(enc.lamz),
                )
            )
        self.re_l = (dec.conv_ReL.conv2d.weight.detach().to(device), dec.conv_ReL.conv2d.bias.detach().to(device))
        self.re_h = (dec.conv_ReH.conv2d.weight.detach().to(device), dec.conv_ReH.conv2d.bias.detach().to(device))

    def _stream(self, c: Tensor, u: Tensor, w: Tensor, beta: float | None, e: dict, proj_t: Tensor, out: Tensor) -> None:
        """For each chunk of pixels: c = h(beta * c + u @ w) (or h(u @ w)) in place, then out = proj_t @ c^T.

        ``out`` is (9k, pixels): the projections come out channel-major, as the neighbourhood sum needs.
        The soft threshold is ``c - clamp(c, -lam, lam)``, bit-identical to ``sign(c) * max(|c| - lam, 0)``
        for lam >= 0; channels with a negative threshold are redone with the general formula. With
        several workers, each takes a contiguous share of the chunks (see :meth:`__call__`).
        """
        n, step = c.shape[0], self.chunk
        starts = list(range(0, n, step))
        if not self._use_pool or len(starts) < 2:
            self._run_chunks(c, u, w, beta, e, proj_t, out, starts)
            return
        k = self._workers
        shares = [starts[i * len(starts) // k : (i + 1) * len(starts) // k] for i in range(k)]
        mode = torch.is_inference_mode_enabled()  # grad / inference modes are thread-local
        jobs = [self._pool.submit(self._worker, mode, c, u, w, beta, e, proj_t, out, sh) for sh in shares if sh]
        for j in jobs:
            j.result()

    def _worker(self, inference: bool, *args) -> None:
        with torch.inference_mode(inference), torch.no_grad():
            self._run_chunks(*args)

    def _run_chunks(self, c, u, w, beta, e, proj_t, out, starts) -> None:
        step = self.chunk
        lam, neg = e["lamj"], e["neg"]
        tmp = torch.empty(min(step, c.shape[0]), c.shape[1], dtype=c.dtype, device=c.device)
        for s in starts:
            cc = c[s : s + step]
            if beta is None:
                torch.mm(u[s : s + step], w, out=cc)
            else:
                cc.addmm_(u[s : s + step], w, beta=beta)
            kept = cc[:, neg] if neg is not None else None
            t = tmp[: cc.shape[0]]
            torch.clamp(cc, e["nlamj"], lam, out=t)
            cc.sub_(t)
            if neg is not None:
                cc[:, neg] = soft_threshold(kept, lam[neg])
            out[:, s : s + step] = torch.mm(proj_t, cc.t())

    @staticmethod
    def _neighbour_sum(p: Tensor, rows: int, width: int, bias: Tensor, top: int, bottom: int) -> Tensor:
        """Sum k groups of 9 per-pixel projections over the 3x3 neighbourhood: (9k, rows*W) -> (k, rows', W).

        Group j, row t holds ``sum_c w[j, c, t] * C[c, pixel]``; the 3x3 convolution of C with w is the
        sum over t of row t shifted by kernel offset t.
        """
        k = p.shape[0] // 9
        img = _pad(p.reshape(9 * k, rows, width), top, bottom).view(k, 9, -1, width + 2)
        h = img.shape[2] - 2
        out = bias.view(k, 1, 1).expand(k, h, width).clone()
        for t in range(9):
            i, j = divmod(t, 3)
            out += img[:, t, i : i + h, j : j + width]
        return out

    def _encode(self, e: dict, x: Tensor, top: int, bottom: int) -> tuple[Tensor, int, int]:
        """Run one LLRR encoder on a band x (h, W): its two decoder images (2, h', W), their first row in x, h'."""
        h, width = x.shape
        lost_t, lost_b = 1 - top, 1 - bottom  # rows lost at an open (interior) band edge per 3x3 layer
        u = _patches(x, top, bottom)
        rows = h - lost_t - lost_b
        c = torch.empty(rows * width, e["w00"].shape[1], dtype=x.dtype, device=x.device)
        proj = torch.empty(9, rows * width, dtype=x.dtype, device=x.device)
        self._stream(c, u, e["w00"], None, e, e["projs"][0], proj)
        r0 = lost_t  # first row of x covered by c
        for k, w in enumerate(e["wdt"]):
            wd = self._neighbour_sum(proj, rows, width, e["proj_bias"][k].view(1), top, bottom)[0]
            r0 += lost_t
            rows -= lost_t + lost_b
            res = x[r0 : r0 + rows] - wd
            u = _patches(res, top, bottom)
            r0 += lost_t
            rows -= lost_t + lost_b
            c = c[lost_t * 2 * width : lost_t * 2 * width + rows * width]  # same pixels, fewer rows
            last = k == len(e["wdt"]) - 1
            proj = torch.empty(18 if last else 9, rows * width, dtype=x.dtype, device=x.device)
            self._stream(c, u, w, e["lamz"], e, e["projs"][k + 1], proj)
        parts = self._neighbour_sum(proj, rows, width, e["proj_bias"][-1], top, bottom)
        return parts, r0 + lost_t, rows - lost_t - lost_b

    def fused_band(self, x: Tensor, y: Tensor, top: int, bottom: int) -> Tensor:
        """Fused (pre-normalisation) image of a band; ``top``/``bottom`` = 1 at a true image border, else 0."""
        px, r0, rows = self._encode(self.enc[0], x, top, bottom)
        py, _, _ = self._encode(self.enc[1], y, top, bottom)
        low = F.conv2d(_pad(torch.stack([px[0], py[0]]), top, bottom)[None], *self.re_l)
        high = F.conv2d(_pad(torch.stack([px[1], py[1]]), top, bottom)[None], *self.re_h)
        return (low + high)[0, 0]

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y: normalised (N, 1, H, W) -> fused (N, 1, H, W), equal to :meth:`LRRNet.forward`.

        On CPU with several torch threads, the streamed passes run on that many Python worker threads,
        each doing single-threaded torch operations on its own chunks (torch releases the GIL inside
        operations), instead of one OpenMP team per small operation: the thousands of per-chunk
        OpenMP barriers are very slow when the machine is busy. The thread count is restored afterwards.
        """
        threads = torch.get_num_threads() if self.device.type == "cpu" else 1
        if threads <= 1:
            return self._run(x, y)
        torch.set_num_threads(1)
        try:
            if self._pool is None or self._workers != threads:
                from concurrent.futures import ThreadPoolExecutor

                if self._pool is not None:
                    self._pool.shutdown()
                self._pool, self._workers = ThreadPoolExecutor(threads, thread_name_prefix="lrrnet"), threads
            self._use_pool = True
            return self._run(x, y)
        finally:
            self._use_pool = False
            torch.set_num_threads(threads)

    def _run(self, x: Tensor, y: Tensor) -> Tensor:
        n, _, height, width = x.shape
        if height < 2 or width < 2:
            raise UsageError(f"LRRNet: images must be at least 2x2 pixels (reflection padding), got {height}x{width}")
        band = max(16, self.band_bytes // (width * 256 * 4) - 2 * HALO)
        out = torch.empty_like(x)
        for i in range(n):
            for y0 in range(0, height, band):
                y1 = min(height, y0 + band)
                a, b = max(0, y0 - HALO), min(height, y1 + HALO)
                top, bottom = int(a == 0), int(b == height)
                f = self.fused_band(x[i, 0, a:b], y[i, 0, a:b], top, bottom)
                off = y0 - a - (0 if top else HALO)
                out[i, 0, y0:y1] = f[off : off + (y1 - y0)]
        return out


class LRRNetFuser:
    """Fuser for LRRNet: uint8 (N, C, H, W) pairs in, the one-channel image ``run`` saves out."""

    tile_halo = None  # min-max normalisation of the input and of the output: global

    def __init__(self, info: MethodInfo, net: LRRNet, device: torch.device, fast: bool = True):
        self.info, self.device = info, device
        self.net = net.to(device).eval()
        self.fast = _FastLRR(self.net, device) if fast else None

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        check_pair(a, b)
        with torch.inference_mode():
            ir = minmax(cv2_grey_read(a.to(self.device)).to(torch.float32), EPS)
            vi = minmax(cv2_grey_read(b.to(self.device)).to(torch.float32), EPS)
            f = self.fast(ir, vi) if self.fast is not None else self.net(ir, vi)
            return truncate_u8(minmax(f, EPS) * 255)


def build(weights: dict, device: torch.device, task: str = "ivif", fast: bool = True, **options) -> LRRNetFuser:
    """Factory (registry contract). ``fast=False`` evaluates with plain convolutions (slow, for checking)."""
    info = ENTRIES[0]
    if options:
        raise UsageError(f"LRRNet: unknown option(s) {', '.join(sorted(options))}; known: fast")
    if task not in info.tasks:
        raise UsageError(f"LRRNet: unsupported task {task!r}; supported: {', '.join(info.tasks)}")
    net = load_checkpoint(LRRNet(), weight_path(weights, FILE[0], info.display))
    return LRRNetFuser(info, net, device, fast=bool(fast))


ENTRIES = [
    MethodInfo(
        name="lrrnet",
        display="LRRNet",
        paper=Paper(
            "LRRNet: A Novel Representation Learning Guided Fusion Network for Infrared and Visible Images",
            "IEEE TPAMI",
            2023,
            "https://doi.org/10.1109/TPAMI.2023.3268209",
        ),
        kind="cnn",
        tasks=("ivif",),
        inputs="both images grey (OpenCV IMREAD_GRAYSCALE), per-image min-max normalised (+1e-5)",
        colour="grey in, grey out (a colour source is converted with OpenCV's uint8 grey conversion)",
        weights=(
            WeightFile(
                name=FILE[0],
                sha256=FILE[1],
                url=f"https://github.com/{REPO}/raw/{COMMIT}/model/{FILE[0]}",
                licence="none stated",
                origin=f"{REPO}@{COMMIT}",
            ),
        ),
        factory="fusionbench.baselines.ports.lrrnet:build",
        code=f"https://github.com/{REPO}",
        notes="Output min-max (+1e-5) x255 truncated (maximum 254), as the official save_image. Images decoded "
        "with Pillow (official: OpenCV); a colour JPEG is converted to grey from its RGB decode, while OpenCV "
        "asks libjpeg for grey directly (a few levels on some input pixels; 52-71 dB instead of 90-101 dB against "
        "the official outputs on the RoadScene pairs, whose visible images are colour JPEGs). The LLRR iterations "
        "run as streamed per-pixel products instead of full-resolution convolutions (same mathematics).",
    )
]
