"""Running a fusion method over many pairs: batching by size, tiling, resuming, atomic writes.

:func:`fuse_pairs` is shared by ``fusionbench fuse`` and ``fusionbench eval``. It never loses work:
each output is written atomically as soon as its batch is done, outputs already present are
skipped (or, with a ``cache``, re-verified by hash), and a pair that fails is reported while the rest
goes on.
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError, FusionBenchError, ImageTooSmallError
from .io import read_image, remove_stale_temps, write_image


@dataclass(frozen=True)
class PairJob:
    stem: str
    a: Path
    b: Path
    out: Path


@dataclass
class FuseReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # results-folder methods: no output provided
    notes: dict[str, list] = field(default_factory=dict)  # observation -> stems (degenerate inputs)

    @property
    def ok(self) -> bool:
        return not self.failed


def image_header(path: Path) -> tuple[int, int, int]:
    """(H, W, C) read from the file header without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            c = 1 if im.mode in ("L", "1", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F") else 3
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read image header ({e.__class__.__name__}: {e})") from None
    return h, w, c


def plan_batches(jobs: list[PairJob], batch_size: int, report: FuseReport) -> list[list[PairJob]]:
    """Group jobs by (size, channels) into batches of at most ``batch_size``; size mismatches go to report."""
    groups: dict[tuple, list[PairJob]] = defaultdict(list)
    for j in jobs:
        try:
            ha, wa, ca = image_header(j.a)
            hb, wb, cb = image_header(j.b)
        except DataError as e:
            report.failed[j.stem] = str(e)
            continue
        if (ha, wa) != (hb, wb):
            report.failed[j.stem] = f"size mismatch: {j.a} is {wa}x{ha}, {j.b} is {wb}x{hb}"
            continue
        groups[(ha, wa, ca, cb)].append(j)
    batches = []
    for key in sorted(groups):
        g = groups[key]
        batches += [g[i : i + batch_size] for i in range(0, len(g), batch_size)]
    return batches


def _to_tensor(arrs: list[np.ndarray], device):
    import torch

    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()
    return x.to(device)


def fuse_tiled(fuser, a, b, tile: int, halo: int):
    """Fuse (N,C,H,W) uint8 tensors tile by tile (core ``tile`` px, ``halo`` px of context each side)."""
    import torch

    n, _, h, w = a.shape
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(0, y0 - halo), max(0, x0 - halo)
            yb, xb = min(h, y1 + halo), min(w, x1 + halo)
            part = fuser.fuse(a[..., ya:yb, xa:xb], b[..., ya:yb, xa:xb])
            if out is None:
                out = torch.empty((n, part.shape[1], h, w), dtype=part.dtype, device=part.device)
            out[..., y0:y1, x0:x1] = part[..., y0 - ya : y0 - ya + (y1 - y0), x0 - xa : x0 - xa + (x1 - x0)]
    return out


def fuse_pairs(
    fuser,
    jobs: Iterable[PairJob],
    batch_size: int = 4,
    max_pixels: int = 4096 * 4096,
    tile: int = 1024,
    is_done: Callable[[PairJob], bool] | None = None,
    on_written: Callable[[PairJob], None] | None = None,
    progress: bool = True,
    label: str = "fusing",
    share: Callable[[list[list[PairJob]]], list[list[PairJob]]] | None = None,
) -> FuseReport:
    """Fuse every job whose output is not done yet; returns what happened to each stem.

    ``is_done(job)`` decides whether an existing output can be kept (default: the file exists).
    Images with more than ``max_pixels`` pixels are fused tile by tile when the method allows it
    (``fuser.tile_halo`` is not None). ``share`` picks this process's batches from the plan (under torchrun:
    :func:`share_across_ranks`): whole batches of the single-process plan, so every output is computed
    exactly as one process computes it.
    """
    import torch
    from tqdm import tqdm

    is_done = is_done or (lambda j: j.out.is_file())
    report = FuseReport()
    todo = []
    for j in jobs:
        (report.skipped.append(j.stem) if is_done(j) else todo.append(j))
    for j in todo:  # half-written files of a killed earlier run
        remove_stale_temps(j.out)
    batches = plan_batches(todo, batch_size, report)
    if share is not None:
        batches = share(batches)
    device = getattr(fuser, "device", None) or torch.device("cpu")
    bar = tqdm(total=sum(len(b) for b in batches), desc=label, unit="pair", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        for batch in batches:
            try:
                arr_a = [read_image(j.a) for j in batch]
                arr_b = [read_image(j.b) for j in batch]
                a, b = _to_tensor(arr_a, device), _to_tensor(arr_b, device)
                h, w = a.shape[-2:]
                info = getattr(fuser, "info", None)
                minimum = int(getattr(info, "min_size", 16))
                if h < minimum or w < minimum:
                    raise ImageTooSmallError(f"{batch[0].a.name}: {w}x{h} pixels is below the {minimum}x{minimum} "
                                             f"{getattr(info, 'display', 'this method')} is run on")
                flat = [(x.flatten(1).amax(1) == x.flatten(1).amin(1)) for x in (a, b)]
                for j, ca, cb in zip(batch, *flat):
                    if bool(ca) and bool(cb):
                        report.notes.setdefault("both sources constant (the output is whatever the method's protocol "
                                                "makes of a flat input, e.g. ReFusion's min-max stretch of its "
                                                "near-constant output)", []).append(j.stem)
                if h * w > max_pixels and fuser.tile_halo is not None:
                    fused = fuse_tiled(fuser, a, b, tile, fuser.tile_halo)
                else:
                    fused = fuser.fuse(a, b)
                fused = fused.to("cpu").permute(0, 2, 3, 1).numpy()
            except (FusionBenchError, RuntimeError, ValueError) as e:
                if len(batch) > 1:  # isolate the bad pair: redo one by one
                    sub = fuse_pairs(fuser, batch, 1, max_pixels, tile, is_done, on_written, progress=False)
                    report.done += sub.done
                    report.failed.update(sub.failed)
                    for k, v in sub.notes.items():
                        report.notes.setdefault(k, []).extend(v)
                else:
                    report.failed[batch[0].stem] = _one_line(e, batch[0])
                bar.update(len(batch))
                continue
            for j, img in zip(batch, fused):
                write_image(j.out, np.ascontiguousarray(img))
                report.done.append(j.stem)
                if on_written:
                    on_written(j)
            bar.update(len(batch))
    finally:
        bar.close()
    return report


def share_across_ranks(batches: list[list[PairJob]]) -> list[list[PairJob]]:
    """This rank's batches under torchrun: the single-process batch plan divided among the ranks, balanced by
    pixels (:func:`fusionbench.distributed.shard`). Waits first until every rank has made its plan, so no rank
    sees another's fresh outputs as already done. Unchanged in one process."""
    from . import distributed as D

    if not D.context().distributed:
        return batches

    def pixels(batch) -> int:
        try:
            h, w, _ = image_header(batch[0].a)
            return h * w * len(batch)
        except DataError:
            return len(batch)

    D.barrier()
    return D.shard(batches, [pixels(b) for b in batches])


def _one_line(e: Exception, job: PairJob) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
    if isinstance(e, FusionBenchError):
        return msg
    return f"{job.a.name}/{job.b.name}: method failed ({e.__class__.__name__}: {msg[:300]})"


def jobs_for(pairs, out_dir: Path, ext: str = ".png") -> list[PairJob]:
    out_dir = Path(out_dir)
    return [PairJob(stem, Path(a), Path(b), out_dir / f"{stem}{ext}") for stem, a, b in pairs]


def summarise(report: FuseReport, out=None) -> str:
    lines = [f"fused {len(report.done)}, kept {len(report.skipped)} existing, failed {len(report.failed)}"]
    for msg, stems in report.notes.items():
        lines.append(f"  note: {msg}: {', '.join(stems[:8])}{' ...' if len(stems) > 8 else ''}")
    for stem, msg in sorted(report.failed.items()):
        lines.append(f"  failed {stem}: {msg}")
    return os.linesep.join(lines)
