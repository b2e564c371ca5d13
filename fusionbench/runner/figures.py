"""Paper figures from a run directory (matplotlib, Agg; PNG at 300 dpi and PDF).

- :func:`qualitative_grid`: rows = chosen images, columns = source A, source B and every method's
  output, each with a box around one region and an enlarged crop of it as an inset. The region is
  given, or chosen automatically where both sources have the most local detail (highest local variance,
  each source normalised by its own variance).
- :func:`distributions`: per metric, the distribution of per-image scores of every method (box or violin
  plot, mean marked) on one dataset.
- :func:`rank_heatmap`: the rank of every method (1 = best, direction-aware, ties averaged) for every
  metric of every dataset, and the mean rank, annotated in the cells.

Sized for a paper: ``width`` 7 in (two columns) or 3.5 in (one column), 6-8 pt text, fonts embedded as
TrueType. Colours: the Okabe-Ito palette (safe for colour-blind readers) for methods, cividis for the
heat-map, vermillion for the zoom boxes.

Reads only RUN_DIR (scores.csv, summary.csv, provenance.json, fused/) and the source folders named in
provenance.json. The eval runner calls :func:`write_figures`.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError, did_you_mean
from ..io import IMAGE_EXTS, atomic_path, read_image
from .rundir import Run, coverage, load_run, metric_direction, safe_name

# Okabe & Ito (2008), "Color Universal Design"; ordered so that neighbours contrast, yellow late.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000")
ZOOM_COLOUR = "#D55E00"  # vermillion: visible on grey, infrared and natural colour images
HEATMAP_CMAP = "cividis_r"  # rank 1 (best) light, worst dark
DPI = 300
COLUMN_WIDTHS = {"single": 3.5, "double": 7.0}


def _style():
    import matplotlib

    return matplotlib.rc_context({
        "font.family": "DejaVu Sans", "font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7,
        "xtick.labelsize": 6.5, "ytick.labelsize": 6.5, "legend.fontsize": 6.5, "axes.linewidth": 0.6,
        "xtick.major.width": 0.5, "ytick.major.width": 0.5, "xtick.major.size": 2.5, "ytick.major.size": 2.5,
        "lines.linewidth": 0.8, "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": DPI,
        "axes.spines.top": False, "axes.spines.right": False, "image.interpolation": "antialiased",
    })


def _new_figure(w: float, h: float):
    from matplotlib.figure import Figure

    # A bare Figure renders with Agg (PNG) and the PDF backend on save; pyplot's global state is not used.
    return Figure(figsize=(w, h))


def _save(fig, stem: Path) -> list[Path]:
    """Write ``stem.png`` (300 dpi) and ``stem.pdf`` atomically; returns both paths."""
    out = []
    for ext, meta in ((".png", {"Software": "fusionbench"}), (".pdf", {"Creator": "fusionbench", "CreationDate": None})):
        dest = stem.with_suffix(ext)
        with atomic_path(dest) as tmp:
            fig.savefig(tmp, format=ext[1:], dpi=DPI, metadata=meta)
        out.append(dest)
    return out


def _width(width) -> float:
    if isinstance(width, str):
        if width not in COLUMN_WIDTHS:
            raise UsageError(f"width {width!r}: use a number of inches or one of {', '.join(COLUMN_WIDTHS)}")
        return COLUMN_WIDTHS[width]
    w = float(width)
    if not 1.0 <= w <= 20.0:
        raise UsageError(f"figure width {w} in is outside 1..20 inches")
    return w


def _text_width(text: str, size: float) -> float:
    """Width in inches of ``text`` set in DejaVu Sans at ``size`` points."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    if not text:
        return 0.0
    ext = TextPath((0, 0), text, size=size, prop=FontProperties(family="DejaVu Sans")).get_extents()
    return ext.width / 72.0


def _arrow(direction) -> str:
    return "" if direction is None else (" ↑" if direction else " ↓")


def _pretty_label(label: str) -> str:
    return label.upper() if len(label) <= 4 else label.capitalize()


# ----------------------------------------------------------------------------------------------
# files of a run


def _find_image(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTS + tuple(e.upper() for e in IMAGE_EXTS):
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _resolve_dir(run: Run, d: str | None) -> Path | None:
    if not d:
        return None
    p = Path(d)
    if p.is_absolute():
        return p
    for base in (Path.cwd(), run.run_dir, run.run_dir.parent):
        if (base / p).is_dir():
            return base / p
    return p


def source_files(run: Run, dataset: str, stem: str) -> tuple[Path | None, Path | None]:
    info = run.dataset_info(dataset)
    a_dir, b_dir = _resolve_dir(run, info.get("a_dir")), _resolve_dir(run, info.get("b_dir"))
    return (_find_image(a_dir, stem) if a_dir else None, _find_image(b_dir, stem) if b_dir else None)


def fused_file(run: Run, dataset: str, method: str, stem: str) -> Path | None:
    root = run.run_dir / "fused"
    for d in (dataset, safe_name(dataset)):
        for m in (method, safe_name(method)):
            p = _find_image(root / d / m, stem)
            if p is not None:
                return p
    return None


def dataset_stems(run: Run, dataset: str) -> list[str]:
    stems = list(run.dataset_info(dataset).get("stems") or [])
    if not stems and run.scores is not None:
        s = run.scores
        stems = list(dict.fromkeys(s.loc[s["dataset"] == dataset, "image"]))
    return stems


def _methods_of(run: Run, dataset: str) -> list[str]:
    s = run.summary
    here = set(s.loc[s["dataset"] == dataset, "method"])
    return [m for m in run.methods if m in here]


# ----------------------------------------------------------------------------------------------
# zoom region


def _grey(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float64)
    if x.shape[2] == 3:
        return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    return x[..., 0]


def _local_variance(g: np.ndarray, s: int) -> np.ndarray:
    """Variance of every s-by-s window fully inside ``g`` (integral images), shape (H-s+1, W-s+1)."""
    def box_sum(x):
        c = np.zeros((x.shape[0] + 1, x.shape[1] + 1))
        c[1:, 1:] = x.cumsum(0).cumsum(1)
        return c[s:, s:] - c[:-s, s:] - c[s:, :-s] + c[:-s, :-s]

    n = float(s * s)
    m = box_sum(g) / n
    return np.maximum(box_sum(g * g) / n - m * m, 0.0)


def auto_zoom_region(a: np.ndarray, b: np.ndarray | None = None, frac: float = 0.2) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the square window (side ``frac`` of the shorter side) with the most detail.

    Detail = local variance of each source's grey level divided by that source's global variance,
    summed over the sources, so that neither modality dominates. Ties go to the first window in
    row-major order. ``b`` is ignored when its size differs from ``a``'s.
    """
    h, w = a.shape[:2]
    s = max(4, min(h, w, int(round(min(h, w) * frac))))
    score = np.zeros((h - s + 1, w - s + 1))
    for img in (a, b):
        if img is None or img.shape[:2] != (h, w):
            continue
        g = _grey(img)
        score += _local_variance(g, s) / (g.var() + 1e-12)
    y, x = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(x), int(y), s, s


def _scale_region(region, from_shape, to_shape):
    x, y, w, h = region
    sy, sx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
    x0, y0 = int(round(x * sx)), int(round(y * sy))
    x1, y1 = int(round((x + w) * sx)), int(round((y + h) * sy))
    x0, y0 = min(max(x0, 0), to_shape[1] - 1), min(max(y0, 0), to_shape[0] - 1)
    x1, y1 = min(max(x1, x0 + 1), to_shape[1]), min(max(y1, y0 + 1), to_shape[0])
    return x0, y0, x1 - x0, y1 - y0


def _parse_region(zoom) -> tuple[int, int, int, int] | None:
    if zoom is None:
        return None
    if isinstance(zoom, str):
        try:
            zoom = [int(v) for v in zoom.split(",")]
        except ValueError:
            raise UsageError(f"zoom {zoom!r}: expected x,y,w,h in pixels") from None
    zoom = tuple(int(v) for v in zoom)
    if len(zoom) != 4 or zoom[2] <= 0 or zoom[3] <= 0 or zoom[0] < 0 or zoom[1] < 0:
        raise UsageError(f"zoom {zoom}: expected x,y,w,h in pixels with w, h > 0")
    return zoom


# ----------------------------------------------------------------------------------------------
# (a) qualitative grid


def _downsample(img: np.ndarray, max_w: int) -> np.ndarray:
    """Shrink to at most ``max_w`` pixels wide (what 300 dpi prints), keeping the PDF small."""
    if img.shape[1] <= max_w:
        return img
    from PIL import Image

    h = max(1, int(round(img.shape[0] * max_w / img.shape[1])))
    pil = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
    out = np.asarray(pil.resize((max_w, h), Image.Resampling.LANCZOS))
    return out[..., None] if out.ndim == 2 else out


def _show(ax, img: np.ndarray, interpolation="antialiased"):
    if img.shape[2] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation=interpolation)
    else:
        ax.imshow(img, interpolation=interpolation)


def _panel(fig, rect, img, region, label, max_px, show_label):
    from matplotlib.patches import Rectangle

    ax = fig.add_axes(rect)
    ax.set_xticks([])
    ax.set_yticks([])
    for sp in ax.spines.values():
        sp.set_visible(False)
    if show_label:
        ax.set_title(label, fontsize=6.5, pad=2)
    if img is None:
        ax.set_facecolor("#eeeeee")
        ax.text(0.5, 0.5, "not found", ha="center", va="center", fontsize=6, color="#555555", transform=ax.transAxes)
        return ax
    h, w = img.shape[:2]
    shown = _downsample(img, max_px)
    if shown.shape[2] == 1:
        ax.imshow(shown[..., 0], cmap="gray", vmin=0, vmax=255, extent=(0, w, h, 0), interpolation="antialiased")
    else:
        ax.imshow(shown, extent=(0, w, h, 0), interpolation="antialiased")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    if region is not None:
        x, y, rw, rh = region
        lw = 0.8
        ax.add_patch(Rectangle((x, y), rw, rh, fill=False, edgecolor=ZOOM_COLOUR, linewidth=lw))
        crop = img[y:y + rh, x:x + rw]
        # enlarged crop in the corner diagonally opposite the box, with the crop's own aspect ratio:
        # in axes fractions, a width iw spans iw*w pixels of the panel, a height ih spans ih*h.
        iw = 0.45
        ih = iw * (w / h) * (rh / rw)
        if ih > 0.55:
            ih = 0.55
            iw = ih * (h / w) * (rw / rh)
        right = x + rw / 2 < w / 2
        bottom = y + rh / 2 < h / 2
        ix = 1 - iw if right else 0.0
        iy = 0.0 if bottom else 1 - ih
        ins = ax.inset_axes([ix, iy, iw, ih])
        _show(ins, crop, interpolation="nearest")
        ins.set_xticks([])
        ins.set_yticks([])
        for sp in ins.spines.values():
            sp.set_visible(True)
            sp.set_edgecolor(ZOOM_COLOUR)
            sp.set_linewidth(lw)
    return ax


def qualitative_grid(run: Run, dataset: str, images=None, n_images: int = 2, zoom=None, zoom_frac: float = 0.2,
                     width=7.0, max_cols: int | None = None, methods=None, out: str | Path | None = None):
    """Sources and every method's output for chosen images, with a zoomed inset.

    ``images``: stems (default: the first ``n_images`` of the dataset); ``zoom``: (x, y, w, h) in
    pixels of source A, or None for the automatic choice per image; columns wrap after ``max_cols``
    panels (default 8 at double-column width, 4 at single). Returns the Figure, or the written paths when ``out`` (a path without suffix) is given.
    """
    width = _width(width)
    stems = dataset_stems(run, dataset)
    if images is None:
        chosen = stems[:max(1, n_images)]
    else:
        chosen = []
        for s in ([i.strip() for i in images.split(",")] if isinstance(images, str) else list(images)):
            if s not in stems:
                raise did_you_mean(f"image in {dataset}", s, stems)
            chosen.append(s)
    if not chosen:
        raise DataError(f"{run.run_dir}: dataset {dataset!r} lists no images")
    region = _parse_region(zoom)
    methods = [m for m in (methods or _methods_of(run, dataset))]
    info = run.dataset_info(dataset)
    labels = [_pretty_label(info.get("a_label") or "A"), _pretty_label(info.get("b_label") or "B")] + methods

    rows = []  # per image: list of images (or None) per column, and the zoom region per column
    for stem in chosen:
        a_p, b_p = source_files(run, dataset, stem)
        files = [a_p, b_p] + [fused_file(run, dataset, m, stem) for m in methods]
        imgs = []
        for lab, p in zip(labels, files):
            if p is None:
                warnings.warn(f"figures: {dataset}/{stem}: no image for {lab}", stacklevel=2)
                imgs.append(None)
            else:
                imgs.append(read_image(p))
        ref = next((im for im in imgs if im is not None), None)
        if ref is None:
            raise DataError(f"{run.run_dir}: no image found for {dataset}/{stem} (sources or fused outputs)")
        base = imgs[0] if imgs[0] is not None else ref
        reg = region if region is not None else auto_zoom_region(base, imgs[1], zoom_frac)
        regs = [None if im is None else _scale_region(reg, base.shape, im.shape) for im in imgs]
        rows.append((stem, imgs, regs, ref.shape[0] / ref.shape[1]))

    if max_cols is None:
        max_cols = 8 if width >= 6 else 4
    n_chunks = math.ceil(len(labels) / max(1, max_cols))
    ncol = math.ceil(len(labels) / n_chunks)  # balanced rows: 12 panels at max 8 -> 6 + 6
    chunks = [list(range(i, min(i + ncol, len(labels)))) for i in range(0, len(labels), ncol)]
    left, gap, title_h, top, bottom = 0.16, 0.03, 0.13, 0.02, 0.02
    pw = (width - left - (ncol - 1) * gap) / ncol
    max_px = int(math.ceil(pw * DPI))
    height = top + bottom + sum(title_h + sum(pw * asp + gap for *_, asp in rows) for _ in chunks)
    with _style():
        fig = _new_figure(width, height)
        y = height - top
        for chunk in chunks:
            y -= title_h
            for r, (stem, imgs, regs, asp) in enumerate(rows):
                ph = pw * asp
                y -= ph
                for j, col in enumerate(chunk):
                    x = left + j * (pw + gap)
                    ax = _panel(fig, [x / width, y / height, pw / width, ph / height], imgs[col], regs[col],
                                labels[col], max_px, show_label=(r == 0))
                    if j == 0:
                        ax.set_ylabel(stem, fontsize=6, labelpad=2)
                y -= gap
        if out is None:
            return fig
        return _save(fig, Path(out))


# ----------------------------------------------------------------------------------------------
# (b) distributions


def _mpl_at_least(major: int, minor: int) -> bool:
    import matplotlib

    v = tuple(int(p) for p in matplotlib.__version__.split(".")[:2] if p.isdigit())
    return v >= (major, minor)


def distributions(run: Run, dataset: str, metrics=None, methods=None, kind: str = "box", width=7.0,
                  ncols: int | None = None, out: str | Path | None = None):
    """Per metric, the per-image scores of each method on ``dataset`` (box or violin, mean as a dot)."""
    if kind not in ("box", "violin"):
        raise UsageError(f"distribution kind {kind!r}: choose box or violin")
    if run.scores is None:
        raise DataError(f"{run.run_dir}: scores.csv is needed for per-image distributions")
    width = _width(width)
    s = run.scores[run.scores["dataset"] == dataset]
    metrics = [m for m in (metrics or run.metrics) if m in set(s["metric"])]
    methods = [m for m in (methods or _methods_of(run, dataset)) if m in set(s["method"])]
    if not metrics or not methods:
        raise DataError(f"{run.run_dir}: no per-image scores for dataset {dataset!r}")
    ncols = ncols or (3 if width >= 6 else 2)
    ncols = max(1, min(ncols, len(metrics)))
    nrows = math.ceil(len(metrics) / ncols)
    sub_h = 0.35 + 0.13 * len(methods)
    height = nrows * sub_h + 0.15
    colours = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(methods))]
    horiz = {"orientation": "horizontal"} if _mpl_at_least(3, 10) else {"vert": False}
    grouped = {k: g for k, g in s.groupby(["metric", "method"], sort=False)["value"]}
    with _style():
        fig = _new_figure(width, height)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        pos = np.arange(len(methods))[::-1] + 1  # first method on top
        for i, k in enumerate(metrics):
            ax = axes[i // ncols][i % ncols]
            data = [grouped[(k, m)].dropna().to_numpy() if (k, m) in grouped else np.array([]) for m in methods]
            have = [j for j, d in enumerate(data) if len(d)]
            if kind == "box":
                bp = ax.boxplot([data[j] for j in have], positions=pos[have], widths=0.6, patch_artist=True,
                                showfliers=True, flierprops={"markersize": 1.5, "markeredgewidth": 0.4},
                                medianprops={"color": "black", "linewidth": 0.8},
                                whiskerprops={"linewidth": 0.6}, capprops={"linewidth": 0.6}, **horiz)
                for patch, j in zip(bp["boxes"], have):
                    patch.set_facecolor(colours[j])
                    patch.set_alpha(0.85)
                    patch.set_linewidth(0.6)
            else:
                spread = [j for j in have if np.ptp(data[j]) > 0 and len(data[j]) > 1]
                if spread:
                    vp = ax.violinplot([data[j] for j in spread], positions=pos[spread], widths=0.8,
                                       showmedians=True, showextrema=False, **horiz)
                    for body, j in zip(vp["bodies"], spread):
                        body.set_facecolor(colours[j])
                        body.set_edgecolor("black")
                        body.set_linewidth(0.4)
                        body.set_alpha(0.85)
                    vp["cmedians"].set_color("black")
                    vp["cmedians"].set_linewidth(0.8)
            means = [float(np.mean(data[j])) for j in have]
            ax.scatter(means, pos[have], s=6, marker="D", facecolor="white", edgecolor="black", linewidth=0.5, zorder=3)
            ax.set_title(f"{k}{_arrow(metric_direction(k))}")
            ax.set_yticks(pos)
            ax.set_yticklabels(methods if i % ncols == 0 else [])
            ax.set_ylim(0.4, len(methods) + 0.6)
            ax.grid(axis="x", linewidth=0.3, color="#cccccc")
            ax.set_axisbelow(True)
        for i in range(len(metrics), nrows * ncols):
            axes[i // ncols][i % ncols].set_visible(False)
        fig.tight_layout(pad=0.3, w_pad=0.6, h_pad=0.6)
        if out is None:
            return fig
        return _save(fig, Path(out))


# ----------------------------------------------------------------------------------------------
# (c) rank heat-map


def rank_matrix(run: Run, datasets=None, metrics=None, methods=None):
    """DataFrame of ranks (rows methods, columns (dataset, metric)) plus a ``mean rank`` Series.

    Rank 1 is best; direction from the metric registry; ties get the average rank; metrics of
    unknown direction are left out; a method scored on fewer images of a dataset than the dataset
    has (a results folder covering a subset) is not ranked there. Rows are sorted by mean rank
    (ties keep the table order).

    When the columns rank different numbers of methods (datasets with different method sets), a
    rank out of n is stretched to the scale 1..N of the largest column, 1 + (r - 1)(N - 1)/(n - 1),
    before it is averaged, so that 7th of 8 weighs like 26th of 30; :func:`stretched_ranks` gives
    those values.
    """
    import pandas as pd

    datasets = list(datasets or run.datasets)
    metrics = list(metrics or run.metrics)
    methods = list(methods or run.methods)
    dirs = {k: metric_direction(k) for k in metrics}
    s = run.summary
    cols = {}
    for ds in datasets:
        sub = s[s["dataset"] == ds]
        partial = set(coverage(run, ds)[1])
        for k in metrics:
            if dirs[k] is None:
                continue
            v = sub[sub["metric"] == k].set_index("method")["mean"].reindex(methods)
            v[v.index.isin(partial)] = float("nan")
            if v.notna().sum() == 0:
                continue
            cols[(ds, k)] = v.rank(method="average", ascending=not dirs[k])
    if not cols:
        raise DataError(f"{run.run_dir}: no metric with a known direction to rank methods by")
    ranks = pd.DataFrame(cols, index=methods)
    ranks = ranks.loc[ranks.notna().any(axis=1)]
    mean = stretched_ranks(ranks).mean(axis=1)
    order = sorted(range(len(ranks)), key=lambda i: (mean.iloc[i], i))
    return ranks.iloc[order], mean.iloc[order]


def stretched_ranks(ranks):
    """Each column's ranks mapped onto 1..N, N the most methods any column ranks (``ranks`` itself when all equal)."""
    counts = ranks.notna().sum(axis=0)
    big = int(counts.max()) if len(counts) else 0
    if big < 2 or (counts == big).all():
        return ranks
    scale = (big - 1) / (counts - 1).clip(lower=1)
    return 1 + (ranks - 1) * scale


def _fmt_rank(v: float, mean: bool = False) -> str:
    if not math.isfinite(v):
        return ""
    return f"{v:.1f}" if mean or abs(v - round(v)) > 1e-9 else f"{v:.0f}"


def rank_heatmap(run: Run, datasets=None, metrics=None, methods=None, width=7.0, out: str | Path | None = None):
    """Heat-map of ranks per (dataset, metric) with a final mean-rank column, ranks annotated."""
    import matplotlib
    import matplotlib.cm
    import matplotlib.patches
    import matplotlib.ticker
    from matplotlib.colors import Normalize

    ranks, mean = rank_matrix(run, datasets, metrics, methods)
    scaled = stretched_ranks(ranks)
    stretched = scaled is not ranks
    max_w = _width(width)
    data = np.column_stack([ranks.to_numpy(dtype=float), mean.to_numpy(dtype=float)])
    shade = np.column_stack([scaled.to_numpy(dtype=float), mean.to_numpy(dtype=float)])
    col_keys = list(ranks.columns)
    groups = list(dict.fromkeys(d for d, _ in col_keys))
    n_rows, n_cols = data.shape
    label_w = 0.1 + max(_text_width(str(m), 6.5) for m in ranks.index)
    units = (n_cols - 1) + 0.2 * (len(groups) - 1) + 0.4 + 1.6  # cells, gaps between datasets, mean column
    cell = min(0.32, (max_w - label_w - 0.75) / units)
    multi = len(groups) > 1
    rotate = n_cols > 10 or max(len(k) for _, k in col_keys) > 6
    bottom = 0.1 + max(_text_width(k, 6.5) for k in [k for _, k in col_keys] + ["Mean*"]) if rotate else 0.25
    width = label_w + cell * units + 0.75
    row_h = cell * 0.8
    height = bottom + 0.1 + (0.15 if multi else 0) + row_h * n_rows
    # x positions with a gap between datasets and before the mean column
    xs, x, prev = [], 0.0, None
    for d, _ in col_keys:
        if prev is not None and d != prev:
            x += 0.2
        xs.append(x)
        x += 1
        prev = d
    xs.append(x + 0.4)
    widths = [1.0] * (len(xs) - 1) + [1.6]  # the mean column holds values like 12.3
    n_methods = int(ranks.notna().sum(axis=0).max())
    norm = Normalize(vmin=1, vmax=max(n_methods, 2))
    cmap = matplotlib.colormaps[HEATMAP_CMAP]
    with _style():
        fig = _new_figure(width, height)
        ax_w = cell * (xs[-1] + widths[-1]) / width
        ax = fig.add_axes([label_w / width, bottom / height, ax_w, row_h * n_rows / height])
        for j, x0 in enumerate(xs):
            for i in range(n_rows):
                v = data[i, j]
                colour = cmap(norm(shade[i, j])) if math.isfinite(v) else (0.9, 0.9, 0.9, 1.0)
                ax.add_patch(matplotlib.patches.Rectangle((x0, i), widths[j], 1, facecolor=colour, edgecolor="white",
                                                          linewidth=0.8))
                if math.isfinite(v):
                    r, g, b = colour[:3]
                    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                    ax.text(x0 + widths[j] / 2, i + 0.5, _fmt_rank(v, mean=j == n_cols - 1), ha="center", va="center",
                            fontsize=6,
                            color="white" if dark else "black", fontweight="bold" if j == n_cols - 1 else "normal")
        ax.set_xlim(0, xs[-1] + widths[-1])
        ax.set_ylim(n_rows, 0)
        ax.set_yticks(np.arange(n_rows) + 0.5)
        ax.set_yticklabels(list(ranks.index))
        ax.set_xticks([x0 + w / 2 for x0, w in zip(xs, widths)])
        ax.set_xticklabels([k for _, k in col_keys] + ["Mean*" if stretched else "Mean"], rotation=90 if rotate else 0)
        ax.tick_params(length=0)
        for sp in ax.spines.values():
            sp.set_visible(False)
        if multi:
            for d in groups:
                idx = [xs[i] for i, (dd, _) in enumerate(col_keys) if dd == d]
                lo, hi = min(idx), max(idx) + 1
                ax.annotate("", xy=(lo + 0.05, -0.15), xytext=(hi - 0.05, -0.15), xycoords="data",
                            arrowprops={"arrowstyle": "-", "linewidth": 0.6, "color": "black"}, annotation_clip=False)
                ax.text((lo + hi) / 2, -0.3, d, ha="center", va="bottom", fontsize=6.5, clip_on=False)
        cax = fig.add_axes([(label_w + cell * (xs[-1] + widths[-1]) + 0.12) / width, bottom / height, 0.08 / width,
                            row_h * n_rows / height])
        sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        cb = fig.colorbar(sm, cax=cax)
        cb.set_label("rank (1 = best)" + (f"; *: ranks stretched to 1–{n_methods} per column" if stretched else ""),
                     fontsize=6)
        cb.ax.tick_params(labelsize=6, length=2)
        cb.ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        cb.ax.invert_yaxis()
        cb.outline.set_linewidth(0.4)
        if out is None:
            return fig
        return _save(fig, Path(out))


# ----------------------------------------------------------------------------------------------
# everything for a run


FIGURES = ("grid", "dist", "ranks")


def write_figures(run_dir: str | Path, datasets=None, images=None, out_dir: str | Path | None = None, zoom=None,
                  kind: str = "box", width=7.0, n_images: int = 2, which=FIGURES, max_cols: int | None = None) -> list[Path]:
    """Write ``grid_<dataset>``, ``dist_<dataset>`` (PNG + PDF each) and ``ranks`` into ``out_dir``
    (default ``RUN_DIR/figures``). Returns the written paths.

    ``images`` (stems) applies to every dataset that has them; datasets without any of them fall back
    to their first ``n_images``. ``which`` selects among ``grid``, ``dist``, ``ranks``.
    """
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    which = [which] if isinstance(which, str) else list(which)
    bad = [w for w in which if w not in FIGURES]
    if bad:
        raise UsageError(f"unknown figure kind(s) {', '.join(bad)}; choose from {', '.join(FIGURES)}")
    if isinstance(datasets, str):
        datasets = [d.strip() for d in datasets.split(",") if d.strip()]
    for d in datasets or []:
        if d not in run.datasets:
            raise did_you_mean("dataset", d, run.datasets)
    datasets = list(datasets or run.datasets)
    if isinstance(images, str):
        images = [i.strip() for i in images.split(",") if i.strip()]
    if images:
        known = set().union(*[set(dataset_stems(run, d)) for d in datasets])
        unknown = [i for i in images if i not in known]
        if unknown:
            raise did_you_mean("image", unknown[0], sorted(known))
    out_dir = Path(out_dir) if out_dir is not None else run.run_dir / "figures"
    written: list[Path] = []
    for ds in datasets:
        tag = safe_name(ds)
        if "grid" in which:
            here = [i for i in images or [] if i in set(dataset_stems(run, ds))] or None
            written += qualitative_grid(run, ds, images=here, n_images=n_images, zoom=zoom, width=width,
                                        max_cols=max_cols, out=out_dir / f"grid_{tag}")
        if "dist" in which and run.scores is not None:
            written += distributions(run, ds, kind=kind, width=width, out=out_dir / f"dist_{tag}")
    if "ranks" in which:
        written += rank_heatmap(run, datasets, width=width, out=out_dir / "ranks")
    return written
