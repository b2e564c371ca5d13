"""What P proposes, in numbers and pictures, and the guard that stops a run whose P collapsed.

Statistics of a proposal ``(W, V)`` (each (N, 2, H, W), channel 0 = source a, sums to 1 per pixel):

* ``w_a_mean`` / ``w_a_std``: mean and spread over all pixels of W_a, the intensity weight of source a;
* ``w_sel``: share of pixels where W picks one source (W_a < 0.2 or W_a > 0.8);
* ``w_a_mean_swapped`` / ``w_sel_swapped``: the same for the weight that source a gets when the
  inputs are given in swapped order (b, a). An order-invariant P has ``w_a_mean_swapped == w_a_mean``;
  a P that weights "whatever comes first" has ``w_a_mean_swapped ≈ 1 - w_a_mean``;
* the same four for V (``v_...``), the gradient weights.

:func:`content_stats` adds what the choices follow (validation only): ``w_brighter``, the share of
pixels whose sources differ by more than 8 grey levels where W gives more weight to the brighter
source; ``v_stronger``, the share of edge pixels (max Sobel magnitude above 0.1) where V gives more
weight to the source with the stronger edge. 0.5 means "no preference"; these are read-outs, nothing
trains on them.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path

import torch
from torch import Tensor

from fusionbench.errors import FusionBenchError

from .nets import sobel_magnitude

__all__ = ["proposal_stats", "content_stats", "CollapseGuard", "ProposalCollapsed", "STAT_FIELDS",
           "plot_proposals", "output_character"]

SELECT = 0.2  # W_a < 0.2 or > 0.8 counts as "picks one source"
STAT_FIELDS = ["w_a_mean", "w_a_std", "w_sel", "w_a_mean_swapped", "w_sel_swapped",
               "v_a_mean", "v_a_std", "v_sel", "v_a_mean_swapped", "v_sel_swapped"]


def _one(t_a: Tensor) -> tuple[float, float, float]:
    t = t_a.detach().double()
    sel = ((t < SELECT) | (t > 1 - SELECT)).double().mean()
    return float(t.mean()), float(t.std(unbiased=False)), float(sel)


@torch.no_grad()
def proposal_stats(w: Tensor, v: Tensor, w_swapped: Tensor, v_swapped: Tensor) -> dict[str, float]:
    """Statistics of P's output ``(w, v)`` on sources (a, b) and ``(w_swapped, v_swapped)`` on (b, a)."""
    out: dict[str, float] = {}
    for name, t, ts in (("w", w, w_swapped), ("v", v, v_swapped)):
        m, s, sel = _one(t[:, 0])
        ms, _, sels = _one(ts[:, 1])  # in swapped order source a is channel 1
        out.update({f"{name}_a_mean": m, f"{name}_a_std": s, f"{name}_sel": sel,
                    f"{name}_a_mean_swapped": ms, f"{name}_sel_swapped": sels})
    return out


@torch.no_grad()
def content_stats(w: Tensor, v: Tensor, x: Tensor) -> dict[str, float]:
    """``w_brighter`` and ``v_stronger`` (see the module docstring) for sources ``x`` (N, 2, H, W) in [0, 1]."""
    a, b = x[:, 0], x[:, 1]
    differ = (a - b).abs() > 8 / 255
    favours_a = w[:, 0] > w[:, 1]
    brighter_a = a > b
    w_br = float((favours_a == brighter_a)[differ].double().mean()) if differ.any() else float("nan")
    g = sobel_magnitude(x)
    edge = g.amax(dim=1) > 0.1
    v_st = float(((v[:, 0] > v[:, 1]) == (g[:, 0] > g[:, 1]))[edge].double().mean()) if edge.any() else float("nan")
    return {"w_brighter": w_br, "v_stronger": v_st}


@torch.no_grad()
def output_character(fused: Tensor, x: Tensor, fused_swapped: Tensor | None = None) -> dict[str, float]:
    """How a fused image ``fused`` (N, 1, H, W) combines its sources ``x`` (N, 2, H, W), all in [0, 1]:

    * ``alpha`` and ``mse_blend``: the fixed blend ``alpha·A + (1 - alpha)·B`` closest to the output
      (least squares over all pixels) and its MSE: a small MSE means "a fixed average";
    * ``mse_max`` / ``mse_mean``: MSE to ``max(A, B)`` and to ``(A + B) / 2``;
    * ``one_source``: share of pixels whose sources differ by more than 0.1 where the output is within
      20 % of that difference of one source (a per-pixel choice rather than a mix);
    * ``mse_swap`` (with ``fused_swapped``, the output for (B, A)): sensitivity to the input order.

    Means over the batch. Used to compare trained weights with the official ones (README, issue 12).
    """
    a, b, f = x[:, 0:1].double(), x[:, 1:2].double(), fused.double()
    d = a - b
    alpha = ((f - b) * d).sum(dim=(1, 2, 3)) / (d * d).sum(dim=(1, 2, 3)).clamp_min(1e-12)
    blend = alpha.view(-1, 1, 1, 1) * a + (1 - alpha.view(-1, 1, 1, 1)) * b
    differ = d.abs() > 0.1
    one = ((f - a).abs() < 0.2 * d.abs()) | ((f - b).abs() < 0.2 * d.abs())
    out = {"alpha": float(alpha.mean()), "mse_blend": float(((f - blend) ** 2).mean()),
           "mse_max": float(((f - torch.maximum(a, b)) ** 2).mean()), "mse_mean": float(((f - (a + b) / 2) ** 2).mean()),
           "one_source": float(one[differ].double().mean()) if differ.any() else float("nan")}
    if fused_swapped is not None:
        out["mse_swap"] = float(((f - fused_swapped.double()) ** 2).mean())
    return out


def _character_main(argv=None) -> None:
    """``python -m fusionbench.refusion.diagnostics WEIGHTS [WEIGHTS ...] [--data roadscene50] [--pairs 12]``: the
    :func:`output_character` of F's raw output (before the protocol's min-max), mean over the pairs.
    ``python -m fusionbench.refusion.diagnostics WEIGHTS [WEIGHTS ...] --validation RUN``: the run's validation
    metrics (mean over the validation pairs of the run folder RUN, as its val.csv computes them) for
    these weights instead, e.g. ``official`` as the reference a run's val.csv is read against.
    WEIGHTS: a fusionbench checkpoint / exported F, or ``official`` (the official IVIF weights)."""
    import argparse
    import csv
    import sys

    import numpy as np

    from fusionbench.data.datasets import open_dataset
    from fusionbench.io import read_image

    from .data import to_luma_u8

    ap = argparse.ArgumentParser(prog="python -m fusionbench.refusion.diagnostics", description=_character_main.__doc__)
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--data", default="roadscene50")
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--validation", metavar="RUN", help="score on the validation split of this run folder")
    args = ap.parse_args(argv)
    if args.validation:
        return _validation_main(args.weights, Path(args.validation))
    ds = open_dataset(args.data)
    pairs = ds.pairs[: args.pairs]
    srcs = []
    for p in pairs:
        a = to_luma_u8(np.array(read_image(p.a))).float() / 255
        b = to_luma_u8(np.array(read_image(p.b))).float() / 255
        srcs.append(torch.stack([a, b])[None])
    w = csv.writer(sys.stdout)
    keys = ["alpha", "mse_blend", "mse_max", "mse_mean", "one_source", "mse_swap"]
    w.writerow(["weights", "data", "pairs", *keys])
    for spec in args.weights:
        net = _load_f(spec)
        rows = []
        with torch.no_grad():
            for x in srcs:
                rows.append(output_character(net(x), x, net(x.flip(1))))
        w.writerow([spec, args.data, len(rows), *(f"{np.mean([r[k] for r in rows]):.5g}" for k in keys)])


def _validation_main(specs: list[str], run: Path) -> None:
    import csv
    import sys

    from . import config as C
    from .data import build_dataset
    from .train import _metric_labels, validation_scores

    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise SystemExit(f"{run}: no config.yaml (not a run folder of fusionbench train refusion)")
    cfg = C.load_config(cfg_path)
    data = build_dataset(cfg)
    labels = _metric_labels(cfg["validation"])
    w = csv.writer(sys.stdout)
    w.writerow(["weights", "run", "pairs", *labels])
    for spec in specs:
        scores = validation_scores(_load_f(spec), data, cfg)
        w.writerow([spec, str(run), len(data.val), *(f"{scores[k]:.6g}" for k in labels)])


def _load_f(spec: str):
    if spec == "official":
        from .official import load_official

        return load_official("ivif")
    from .ours import load_ours

    return load_ours(spec)


class ProposalCollapsed(FusionBenchError):
    """Meta-training stopped because P's proposal collapsed (see :class:`CollapseGuard`)."""


class CollapseGuard:
    """Watches the per-iteration statistics and names a collapse of P.

    Over the last ``window`` iterations (means of the logged statistics):

    * **one source everywhere**: mean W_a (or V_a) above ``threshold`` or below ``1 - threshold``,
      i.e. P gives one source almost all the weight at every pixel;
    * **input order**: |W_a - W_a(swapped)| (or for V) above ``order_gap``, i.e. P weights a position
      ("the first input"), not a source.

    ``update(stats)`` returns None, or the one-line reason.
    """

    def __init__(self, threshold: float = 0.95, order_gap: float = 0.5, window: int = 20):
        self.threshold, self.order_gap = float(threshold), float(order_gap)
        self.hist: deque = deque(maxlen=int(window))

    def update(self, stats: dict) -> str | None:
        if "w_a_mean" not in stats:
            return None
        self.hist.append({k: stats[k] for k in STAT_FIELDS if k in stats})
        if len(self.hist) < self.hist.maxlen:
            return None
        mean = {k: sum(h[k] for h in self.hist) / len(self.hist) for k in self.hist[0]}
        for name, label in (("w", "intensity weights W"), ("v", "gradient weights V")):
            m = mean[f"{name}_a_mean"]
            if m > self.threshold or m < 1 - self.threshold:
                src = "a" if m > 0.5 else "b"
                return (f"P collapsed: its {label} give source {src} {max(m, 1 - m):.1%} of the weight on "
                        f"average over the last {len(self.hist)} iterations; lower meta.p_lr "
                        f"or raise meta.collapse_threshold ({self.threshold})")
            gap = abs(m - mean[f"{name}_a_mean_swapped"])
            if gap > self.order_gap:
                return (f"P collapsed onto the input order: its {label} for source a are {m:.2f} in (a, b) order "
                        f"but {mean[f'{name}_a_mean_swapped']:.2f} in (b, a) order; set "
                        f"model.proposal.symmetric: true or lower meta.p_lr")
        return None

    def state_dict(self) -> dict:
        return {"hist": list(self.hist)}

    def load_state_dict(self, s: dict) -> None:
        self.hist.clear()
        self.hist.extend(s.get("hist", []))


def plot_proposals(rows: list[dict], path: Path, title: str) -> None:
    """One PNG: per row (a validation pair) source a, source b, W_a, V_a and the fused image.

    ``rows``: dicts with ``name`` and (H, W) arrays ``a``, ``b``, ``fused`` in [0, 1], ``w_a``, ``v_a``.
    Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from fusionbench.io import atomic_path

    cols = [("a", "source a", "gray", (0, 1)), ("b", "source b", "gray", (0, 1)),
            ("w_a", "W_a (intensity)", "coolwarm", (0, 1)), ("v_a", "V_a (gradient)", "coolwarm", (0, 1)),
            ("fused", "fused", "gray", (0, 1))]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.0 * len(cols), 2.6 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c, (key, label, cmap, (lo, hi)) in enumerate(cols):
            ax = axes[r][c]
            im = ax.imshow(row[key], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=10)
            if c == 0:
                ax.set_ylabel(row["name"], fontsize=9)
            if key in ("w_a", "v_a"):
                ax.set_xlabel(f"mean {row[key].mean():.2f}, picks {((row[key] < SELECT) | (row[key] > 1 - SELECT)).mean():.0%}",
                              fontsize=8)
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


if __name__ == "__main__":
    _character_main()
