"""Classical, training-free fusion methods: what runs on a fresh machine with nothing downloaded.

One factory, :func:`build`, serves every method; the registry entry's ``options["method"]`` selects it
and the remaining options are the method's parameters (``fusionbench fuse --method lp`` or
``info.build(levels=5)``). All methods fuse the luma and carry the chroma of the colour source
(:func:`fusionbench.color.fuse_y_keep_chroma`); they accept any image size, batch over N and run on
any device.

=========  ===========================================================  ===========================
name       method                                                       options (defaults)
=========  ===========================================================  ===========================
average    pixel mean                                                   -
max        pixel choose-max (max-abs on intensities)                    -
lp         Laplacian pyramid, max-abs details, mean base                levels=4
dwt        wavelet, Li et al. area-based max + consistency check        levels=3, wavelet=db2,
                                                                        window=3, consistency=True
gff        guided-filtering fusion (Li, Kang & Hu 2013)                 r1=45, eps1=0.3, r2=7,
                                                                        eps2=1e-6, quantize_weights
adf        anisotropic diffusion + KL transform (Bavirisetti & Dhuli)   iterations=10, delta_t=0.15,
                                                                        kappa=30, conduction=1,
                                                                        border=zero
=========  ===========================================================  ===========================
"""
from __future__ import annotations

import inspect

import torch
from torch import Tensor

from fusionbench.errors import DataError, SizeMismatchError, UsageError
from fusionbench.registry import TASKS, MethodInfo, Paper

from . import methods as _m

_COLOUR = ("fuses the BT.601 luma (float); keeps Cr/Cb of the colour source, saturation-weighted chroma when both "
           "are colour; grey output when both sources are grey (fusionbench.color.fuse_y_keep_chroma)")
_INPUTS = "two registered images of the same size, grey or colour, any size"

_FUNCS = {
    "average": _m.average,
    "max": _m.choose_max,
    "lp": _m.laplacian_pyramid_fusion,
    "dwt": _m.dwt_fusion,
    "gff": _m.gff,
    "adf": _m.adf,
}


def _halo(method: str, params: dict) -> int | None:
    """Context (px) a tile needs so that its core matches whole-image fusion (None: global statistics)."""
    if method in ("average", "max"):
        return 0
    if method == "lp":
        return 2 ** (int(params.get("levels", 4)) + 2)  # 5-tap REDUCE/EXPAND at each of `levels` octaves
    if method == "dwt":
        taps = len(_m.WAVELETS[params.get("wavelet", "db2")])
        return (taps + 2) * 2 ** int(params.get("levels", 3))
    if method == "gff":
        # guided filter reaches 2*r1, plus the 11x11 saliency Gaussian and Laplacian, plus the base filter
        return 2 * int(params.get("r1", 45)) + 7 + int(params.get("avg_size", 31)) // 2
    return None  # adf: KL-transform weights come from whole-image covariance


class ClassicalFuser:
    """Applies one classical rule to the luma of uint8 (N, C, H, W) pairs (see module docstring)."""

    def __init__(self, info: MethodInfo, method: str, params: dict, device: torch.device, task: str):
        self.info, self.method, self.params, self.device, self.task = info, method, dict(params), device, task
        self.tile_halo = _halo(method, params)
        self._fn = _FUNCS[method]

    def _luma_fn(self, ya: Tensor, yb: Tensor) -> Tensor:
        return self._fn(ya, yb, **self.params)

    def fuse(self, a: Tensor, b: Tensor) -> Tensor:
        from fusionbench.color import fuse_y_keep_chroma

        for label, x in (("first", a), ("second", b)):
            if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise DataError(f"{self.info.display}: {label} input must be a uint8 tensor (N, 1|3, H, W), got {shape}")
            if x.dtype != torch.uint8:
                raise DataError(f"{self.info.display}: {label} input must be uint8 (as read by fusionbench.io), got {x.dtype}")
        if a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
            raise SizeMismatchError(f"{self.info.display}: inputs differ in size: {tuple(a.shape)} vs {tuple(b.shape)}")
        with torch.inference_mode():
            return fuse_y_keep_chroma(self._luma_fn, a.to(self.device), b.to(self.device))


def build(weights=None, device=None, task: str = "ivif", method: str | None = None, **params) -> ClassicalFuser:
    """Factory for every classical entry (``method`` selects it; other keyword options are its parameters)."""
    if method not in _FUNCS:
        raise UsageError(f"classical method {method!r}: use one of {', '.join(_FUNCS)}")
    sig = inspect.signature(_FUNCS[method])
    allowed = [p for p in list(sig.parameters)[2:]]
    bad = sorted(set(params) - set(allowed))
    if bad:
        raise UsageError(f"{method}: unknown option(s) {', '.join(bad)}; allowed: {', '.join(allowed) or 'none'}")
    for k, v in params.items():  # coerce CLI strings to the default's type
        default = sig.parameters[k].default
        if isinstance(v, str) and not isinstance(default, str):
            try:
                params[k] = (v.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(v)
            except ValueError:
                raise UsageError(f"{method}: option {k}={v!r} is not a {type(default).__name__}") from None
    if method == "dwt" and params.get("wavelet", "db2") not in _m.WAVELETS:
        raise UsageError(f"dwt: wavelet {params['wavelet']!r}: use one of {', '.join(_m.WAVELETS)}")
    if method == "adf" and params.get("border", "zero") not in ("zero", "replicate"):
        raise UsageError("adf: border must be zero or replicate")
    info = next(e for e in ENTRIES if e.options.get("method") == method)
    device = torch.device(device) if device is not None else torch.device("cpu")
    return ClassicalFuser(info, method, params, device, task)


def _entry(name, display, paper, notes, aliases=(), code="", code_licence="none stated", options=None):
    return MethodInfo(
        name=name, display=display, paper=paper, kind="classical", tasks=TASKS, inputs=_INPUTS, colour=_COLOUR,
        weights=(), factory="fusionbench.baselines.classical:build", code=code, code_licence=code_licence, notes=notes,
        aliases=tuple(aliases), options={"method": name, **(options or {})},
    )


ENTRIES = [
    _entry("average", "Average", None, "Pixel-wise mean of the two sources (baseline).", aliases=("mean", "avg")),
    _entry("max", "Max", None,
           "Pixel-wise choose-max of the two sources; on intensities this is the max-abs rule (baseline).",
           aliases=("choose-max", "max-abs", "maxabs")),
    _entry("lp", "LP",
           Paper("The Laplacian Pyramid as a Compact Image Code", "IEEE Transactions on Communications", 1983),
           "Burt & Adelson pyramid (5-tap generating kernel, a=0.375, mirrored borders); band-pass levels fused by "
           "max-abs selection, low-pass residual averaged; levels=4 (fewer for images under 128 px). "
           "tile_halo is approximate (dyadic subsampling phase).",
           aliases=("laplacian", "laplacian-pyramid")),
    _entry("dwt", "DWT",
           Paper("Multisensor Image Fusion Using the Wavelet Transform", "Graphical Models and Image Processing", 1995),
           "Li, Manjunath & Mitra: orthonormal DWT (haar, db2, db4; db2 default), detail coefficients by area-based "
           "maximum selection (max |c| in a 3x3 window) with 3x3 majority-filter consistency verification "
           "(window=1, consistency=False gives plain max-abs), approximation averaged; levels=3. "
           "tile_halo is approximate (dyadic subsampling phase).",
           aliases=("wavelet",)),
    _entry("gff", "GFF",
           Paper("Image Fusion With Guided Filtering", "IEEE Transactions on Image Processing", 2013),
           "Li, Kang & Hu: two-scale decomposition (31x31 mean), saliency = Gaussian(11, sigma 5) of |Laplacian|, "
           "guided-filter weight refinement r1=45, eps1=0.3 (base), r2=7, eps2=1e-6 (detail), as in the paper; "
           "borders and weight rounding as in the authors' MATLAB code.",
           aliases=("guided-filter",)),
    _entry("adf", "ADF",
           Paper("Fusion of Infrared and Visible Sensor Images Based on Anisotropic Diffusion and Karhunen-Loeve "
                 "Transform", "IEEE Sensors Journal", 2016),
           "Bavirisetti & Dhuli: Perona-Malik diffusion (8 neighbours, 10 iterations, step 0.15, kappa 30, exponential "
           "conduction, zero-padded differences as in the authors' code) gives base layers; details fused with "
           "KL-transform weights from the whole-image detail covariance, bases averaged. Global statistics: no tiling.",
           aliases=("anisotropic-diffusion",)),
]
