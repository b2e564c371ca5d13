"""ReFusion's losses (``docs/REFUSION.md`` §2.3).

* Fusion loss, weighted by the proposal ``(W, V)`` of P::

      L_int  = mean((W_a (A - F))^2) + mean((W_b (B - F))^2)
      L_grad = mean((V_a (dA - dF))^2) + mean((V_b (dB - dF))^2)
      L_f    = c_int * L_int + c_grad * L_grad

  The weights sit inside the square (squared weighting), as in the training-code derivative.
* Reconstruction loss of R's output ``(Â, B̂)``::

      L_r = c_r_int  * mean(max(|A - Â|, |B - B̂|)^2)
          + c_r_grad * mean(max(|dA - dÂ|, |dB - dB̂|)^2)

``d`` is :func:`fusionbench.refusion.nets.sobel_magnitude` (|Sobel_x| + |Sobel_y|, zero padding). Sources are
(N, 2, H, W) tensors: channel 0 = source a (IR), channel 1 = source b (VIS), values in [0, 1].
Every function is batched, differentiable and device-agnostic; each returns the total and its parts
(for logging).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .nets import sobel_magnitude

__all__ = ["LossWeights", "fusion_loss", "recon_loss", "c_grad_at"]


@dataclass(frozen=True)
class LossWeights:
    """Loss coefficients (config section ``loss``)."""

    c_int: float = 1.0
    c_grad: float = 1.0
    c_grad_ramp: str = "linear"  # "linear": c_grad * (epoch + 1) / epochs ; "constant": c_grad
    c_r_int: float = 1.0
    c_r_grad: float = 1.0


def c_grad_at(w: LossWeights, epoch: int, epochs: int) -> float:
    """The gradient-term coefficient at 0-based ``epoch`` of ``epochs``.

    ``linear`` is the derivative code's ramp ``c_grad * (epoch + 1) / epochs`` (1/50 .. 1 over 50
    epochs); ``constant`` keeps ``c_grad``.
    """
    if w.c_grad_ramp == "constant":
        return float(w.c_grad)
    if w.c_grad_ramp == "linear":
        return float(w.c_grad) * min(epoch + 1, epochs) / max(epochs, 1)
    raise ValueError(f"c_grad_ramp must be 'linear' or 'constant', got {w.c_grad_ramp!r}")


def _check(x: Tensor, name: str, channels: int) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{name}: expected (N, {channels}, H, W), got {tuple(x.shape)}")


def fusion_loss(fused: Tensor, src: Tensor, w: Tensor, v: Tensor, c_int: float = 1.0, c_grad: float = 1.0,
                src_grad: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """L_f of ``fused`` (N,1,H,W) against ``src`` (N,2,H,W) with intensity weights ``w`` and gradient
    weights ``v`` (each (N,2,H,W)). ``src_grad`` may pass a precomputed ``sobel_magnitude(src)``.

    Returns ``(L_f, {"L_f_int": L_int, "L_f_grad": L_grad})``.
    """
    _check(fused, "fused", 1)
    _check(src, "sources", 2)
    _check(w, "W", 2)
    _check(v, "V", 2)
    # mean over (N,1,H,W) of each source's term, summed over the two sources
    l_int = ((w * (src - fused)) ** 2).mean(dim=(0, 2, 3)).sum()
    gs = sobel_magnitude(src) if src_grad is None else src_grad
    gf = sobel_magnitude(fused)
    l_grad = ((v * (gs - gf)) ** 2).mean(dim=(0, 2, 3)).sum()
    return c_int * l_int + c_grad * l_grad, {"L_f_int": l_int, "L_f_grad": l_grad}


def recon_loss(recon: Tensor, src: Tensor, c_r_int: float = 1.0, c_r_grad: float = 1.0,
               src_grad: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """L_r of R's output ``recon`` (N,2,H,W) against ``src`` (N,2,H,W): pixel-wise max over the two
    sources' absolute errors, squared and averaged; same on Sobel magnitudes.

    Returns ``(L_r, {"L_r_int": ..., "L_r_grad": ...})``.
    """
    _check(recon, "reconstruction", 2)
    _check(src, "sources", 2)
    l_int = ((recon - src).abs().amax(dim=1) ** 2).mean()
    gs = sobel_magnitude(src) if src_grad is None else src_grad
    l_grad = ((sobel_magnitude(recon) - gs).abs().amax(dim=1) ** 2).mean()
    return c_r_int * l_int + c_r_grad * l_grad, {"L_r_int": l_int, "L_r_grad": l_grad}

