"""Scoring front end: batches of decoded tensors (:func:`score_batch`) and files (:func:`score_files`).

:func:`score_batch` takes the images exactly as decoded (uint8, (N, 1|3, H, W), channel counts may
differ between fused and sources), lets each preset prepare its colour handling once per batch,
then runs every requested metric vectorised over the batch.

:func:`score_files` is what ``fusionbench score`` and ``fusionbench eval`` use: it reads only image
headers first, groups the images by size and channel layout into batches of at most
``batch_size``, decodes files in worker threads while other worker threads score earlier batches
(at most ``workers + 1`` batches in memory), and yields one result per image. A file that cannot
be decoded or whose size differs from its counterparts yields an error message for that image
only.

On CPU, parallelism comes from threads that each score whole images with single-threaded torch
operations (:mod:`fusionbench.metrics.parallel`); files are probed and decoded by
:mod:`fusionbench.metrics.decoding`. Either function takes the preset as a name or as a
:class:`~fusionbench.metrics.spec.Preset` object.

On CPU, the ``cddfuse`` preset's metrics EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM, MSE, RMSE, CC
and PSNR run in a native kernel straight on the decoded uint8 images (see
:mod:`fusionbench.metrics._native`; same values as the eager torch kernels, SSIM bit for bit);
everything else, and everything on CUDA, runs the eager torch kernels on the prepared tensors.
"""
from __future__ import annotations

import os
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..contract import check_min_size, check_triple
from ..errors import FusionBenchError, ImageReadError, MetricUndefinedError
from ..io import SIXTEEN_BIT_RULES, to_8bit
from . import parallel as _parallel
from .decoding import SHARED_DECODE_BYTES, DecodeCache, Probe, probe_image
from .decoding import decode as _decode  # looked up here at each call (tests count decodings by patching it)
from .parallel import run_parallel as _run_parallel
from .parallel import single_threaded_worker as _single_threaded_worker
from .parallel import tune_allocator
from .presets import DEFAULT_PRESET, Preset, get_preset
from .registry import MetricRequest, parse_metrics

#: images smaller than this (in either dimension) are rejected, so that every metric of every
#: preset is defined (cddfuse SSIM needs 7x7, VIFB's SSIM 11x11, Qcv works on 16x16 blocks)
MIN_SIZE = 16

#: on CPU, batches are scored in chunks of about this many pixels per image stack, so that every
#: intermediate map stays in cache (measured: 16 images of 640x480 at once cost about 3x more per
#: image than 2 at a time). Each chunk is still scored vectorised; CUDA batches are not split.
CPU_CHUNK_PIXELS = 600_000


def backend(device="cpu", presets=("cddfuse",)) -> dict:
    """Which code computes scores for ``presets`` on ``device``, for provenance and ``--json`` output:
    ``{"device", "kernels": "native" | "eager", "native": status of the compiled CPU kernels, "native_metrics":
    the metrics they compute (uint8 inputs, CPU, a preset with native kernels), "detail"}``. Values do not depend
    on it (the native kernels equal the eager torch path, ``tests/test_native_kernels.py``)."""
    from . import _native

    dev = torch.device(device)
    ps = [get_preset(p) for p in presets]  # names or Preset objects
    st = _native.status() if dev.type == "cpu" else "not used (not CPU)"
    native = sorted({m for p in ps if p.native for m in p.native_metrics})
    used = dev.type == "cpu" and st == "loaded" and bool(native)
    detail = (f"native CPU kernels for {', '.join(native)} ({', '.join(p.name for p in ps if p.native)} "
              "preset, uint8 inputs), eager torch for the rest") if used else f"eager torch on {dev}"
    return {"device": str(dev), "kernels": "native" if used else "eager", "native": st,
            "native_metrics": native if used else [], "detail": detail}


def _as_requests(requests, preset: str | Preset | None) -> list[MetricRequest]:
    if isinstance(requests, str) or (isinstance(requests, (list, tuple)) and requests
                                     and all(isinstance(r, str) for r in requests)):
        return parse_metrics(requests, preset if preset is not None else DEFAULT_PRESET)
    return list(requests)


def score_batch(fused: Tensor, a: Tensor, b: Tensor, requests, dtype: torch.dtype | None = None,
                preset: str | Preset | None = None, chunk_pixels: int | None = None, workers: int = 1,
                data_range: float | None = None) -> dict[str, Tensor]:
    """Score a batch of same-size images: ``{label: Tensor (N,)}`` in ``dtype`` on the input device.

    ``dtype`` None (the default) computes each metric in its preset's default precision
    (``Preset.default_dtype``: cddfuse float32, vifb float64, the lowest that reproduces each reference).

    ``fused``, ``a``, ``b``: images under the input contract of :mod:`fusionbench.contract` — uint8
    tensors (N, 1|3, H, W) as decoded by :func:`fusionbench.io.read_image` (the channel counts may differ
    between the three; a source with N = 1 is shared by all fused images), uint16 tensors as 16-bit
    images (each preset turns them into 8 bit as its reference reads such a file: cddfuse ``v >> 8`` as
    ``cv2.imread``, vifb ``round(v / 257)``), or float tensors with ``data_range`` (quantised to 8 bit as
    saving them would). A float tensor without ``data_range`` raises
    :class:`~fusionbench.errors.DataRangeError`: the range is never guessed. Images must be at least
    :data:`MIN_SIZE` pixels on each side. ``requests``
    is a list of :class:`~fusionbench.metrics.registry.MetricRequest` (from
    :func:`~fusionbench.metrics.parse_metrics`) or a spec string such as ``"EN,SD,SSIM@vifb"``
    (then ``preset``, a name or a :class:`~fusionbench.metrics.spec.Preset` object, is the run preset,
    default ``cddfuse``). Each preset involved prepares the
    colour once per image, then every metric runs vectorised over the images.

    On CPU the batch is processed in cache-sized chunks of about ``chunk_pixels`` pixels
    (default :data:`CPU_CHUNK_PIXELS`; 0 disables chunking); the results do not depend on it.
    With ``workers > 1`` (CPU only) the chunks are scored concurrently by that many threads, each
    running its torch operations single-threaded: coarse-grained parallelism over images, which
    keeps every core busy without a synchronisation point per operation.

    >>> g = torch.Generator().manual_seed(0)
    >>> f, a, b = (torch.randint(0, 256, (2, 1, 32, 32), generator=g, dtype=torch.uint8) for _ in range(3))
    >>> out = score_batch(f, a, b, "EN,SSIM")
    >>> sorted(out), out["EN"].shape
    (['EN', 'SSIM'], torch.Size([2]))
    """
    reqs = _as_requests(requests, preset)
    fused, a, b = check_triple(fused, a, b, data_range)
    check_min_size(*fused.shape[-2:], MIN_SIZE, "the metrics")
    groups: OrderedDict[str, list[MetricRequest]] = OrderedDict()
    for r in reqs:
        groups.setdefault(r.preset, []).append(r)
    n = fused.shape[0]
    presets = []
    for rs in groups.values():
        p = rs[0].resolved_preset
        if not p.available:
            raise FusionBenchError(f"preset {p.name!r} is not available: {p.unavailable_reason}")
        presets.append((p, rs))
    # requests a preset's native kernel computes straight from the decoded images (CPU uint8; 16-bit
    # images are made 8 bit first, by each preset's rule)
    native_ok = fused.device.type == "cpu" and all(t.dtype in (torch.uint8, torch.uint16) for t in (fused, a, b))
    all_native = native_ok and all(p.native is not None and r.metric.name in p.native_metrics
                                   for p, rs in presets for r in rs)
    if chunk_pixels is None:
        chunk_pixels = CPU_CHUNK_PIXELS if fused.device.type == "cpu" else 0
    step = n if chunk_pixels <= 0 else max(1, chunk_pixels // (fused.shape[-1] * fused.shape[-2]))
    if all_native and chunk_pixels > 0:
        # the native kernels stream each image through cache-sized buffers: no need for small
        # chunks, only enough of them to keep every worker busy
        step = max(step, -(-n // (4 * max(1, workers))))

    def run(i: int, single_thread: bool) -> dict[str, Tensor]:
        if single_thread:
            torch.set_num_threads(1)  # this worker thread only (OpenMP settings are per thread)
        res = {}
        with torch.inference_mode():
            chunk = fused[i: i + step], a[i: i + step], b[i: i + step]
            for p, rs in presets:
                fc, ac, bc = (to_8bit(t, p.sixteen_bit) if t.dtype == torch.uint16 else t for t in chunk)
                rest = rs
                pdt = dtype if dtype is not None else p.dtype
                if native_ok and p.native is not None:
                    got = p.native(fc, ac, bc, [r.metric.name for r in rs if r.metric.name in p.native_metrics], pdt)
                    if got:
                        for r in rs:
                            if r.metric.name in got:
                                res[r.label] = got[r.metric.name].to(pdt)
                        rest = [r for r in rs if r.label not in res]
                if not rest:
                    continue
                # e.g. channels-last views of decoded arrays (no-op for contiguous tensors)
                fc, ac, bc = fc.contiguous(), ac.contiguous(), bc.contiguous()
                prepared = {}  # colour preparation once per preset (and per variant some metrics use)
                for r in rest:
                    prep = p.prepare_for(r.metric.name)
                    if prep not in prepared:
                        prepared[prep] = prep(fc, ac, bc, pdt)
                    res[r.label] = p.metrics[r.metric.name].fn(*prepared[prep]).to(pdt)
                del prepared
        return res

    starts = list(range(0, n, step))  # cache-sized chunks of the batch; each is scored vectorised
    if workers > 1 and len(starts) > 1 and fused.device.type == "cpu":
        chunks = _run_parallel(run, starts, min(workers, len(starts)))
    else:
        chunks = [run(i, False) for i in starts]
    out = {r.label: (chunks[0][r.label] if len(chunks) == 1 else torch.cat([c[r.label] for c in chunks]))
           for r in reqs}
    return {r.label: out[r.label] for r in reqs}


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def _score_chunk(chunk, reqs, device, dtype, want_notes: bool):
    """Runs in a scoring worker: wait for the chunk's decoded arrays, batch them, score them.

    Returns ``(results, notes)``: results are ``(stem, values or None, error or None)``.
    """
    results, notes = [], []
    good: OrderedDict[tuple, list] = OrderedDict()
    for stem, futs in chunk:
        try:
            arrs = [fu.result() for fu in futs]
        except FusionBenchError as e:
            results.append((stem, None, str(e)))
            continue
        key = tuple((x.shape, x.dtype.str) for x in arrs)
        if len({sh[:2] for sh, _ in key}) > 1:  # header and pixels disagree: trust the pixels
            results.append((stem, None, f"size mismatch for {stem!r}: decoded sizes {[sh[:2] for sh, _ in key]}"))
            continue
        good.setdefault(key, []).append((stem, arrs))
    for items in good.values():
        stems = [st for st, _ in items]
        tensors = []
        for j in range(3):
            x = torch.from_numpy(np.stack([arrs[j] for _, arrs in items])).permute(0, 3, 1, 2)
            if x.shape[1] == 4:  # RGBX from _decode: the RGB channels, as a view
                x = x[:, :3]
            # on CPU the channels-last view is scored in place (the native kernels read interleaved
            # RGB; eager torch ops take any strides): no transposing copy
            tensors.append(x if device.type == "cpu" else x.contiguous().to(device, non_blocking=True))
        if want_notes:
            for j, role in enumerate(("fused", "a", "b")):
                flat = tensors[j].flatten(1)
                flat = flat.to(torch.int32) if flat.dtype == torch.uint16 else flat  # (no uint16 amax on CPU)
                for st, const in zip(stems, (flat.amax(1) == flat.amin(1)).tolist()):
                    if const:
                        notes.append((st, f"constant {role} image (metrics take their documented values; "
                                          "see `fusionbench metrics --json`)"))
        try:
            try:
                vals = score_batch(*tensors, reqs, dtype=dtype)
            except MetricUndefinedError:  # one metric is undefined at this size: the others still count
                vals = {}
                for r in reqs:
                    try:
                        vals.update(score_batch(*tensors, [r], dtype=dtype))
                    except MetricUndefinedError as e:
                        vals[r.label] = torch.full((len(stems),), float("nan"), dtype=torch.float64)
                        notes += [(st, f"{r.label} left undefined (NaN): {e}") for st in stems] if want_notes else []
        except FusionBenchError as e:
            results += [(st, None, f"{st}: {e}") for st in stems]
            continue
        host = {k: v.detach().to("cpu", torch.float64).tolist() for k, v in vals.items()}
        results += [(st, {k: host[k][i] for k in host}, None) for i, st in enumerate(stems)]
    return results, notes


def score_files(triples: Iterable[tuple], requests, device=None, dtype: torch.dtype | None = None, batch_size: int = 16,
                progress: bool = True, label: str = "scoring", preset: str | Preset | None = None,
                workers: int | None = None, on_note: Callable[[str, str], None] | None = None,
                decode_cache: DecodeCache | None = None) -> Iterator[tuple[str, dict | None, str | None]]:
    """Score image files; yield ``(stem, {label: float}, None)`` or ``(stem, None, error)`` per image.

    ``triples`` are ``(stem, fused_path, a_path, b_path)``; ``requests`` and ``preset`` (a name or a
    :class:`~fusionbench.metrics.spec.Preset` object) are as for :func:`score_batch`. Only the headers are read first; images
    are grouped by size and channel layout (fused, a, b) into batches of at most ``batch_size``.
    ``workers`` threads (default: the number of CPUs, at most 8) decode files, and on CPU as many
    threads score batches concurrently, each running its torch operations single-threaded (no
    per-operation synchronisation; a dataset whose images all differ in size still uses every
    core). At most ``workers + 1`` batches are in memory, plus up to :data:`SHARED_DECODE_BYTES` of
    decoded files that later triples share: every file is decoded once. ``decode_cache`` (a
    :class:`DecodeCache`) keeps the sources' decodings for later calls too. Results come
    batch by batch, not in input order. ``on_note(stem, message)`` receives non-fatal observations
    (16-bit files scaled to 8 bit, constant images); it is called from the consuming thread.
    """
    from collections import deque

    reqs = _as_requests(requests, preset)
    device = torch.device(device) if device is not None else torch.device("cpu")
    cpu = device.type == "cpu"
    triples = [(str(s), Path(f), Path(a), Path(b)) for s, f, a, b in triples]
    rules = OrderedDict((r.preset, r.resolved_preset.sixteen_bit) for r in reqs)
    rule16 = " / ".join(f"{SIXTEEN_BIT_RULES[rule]} ({name})" for name, rule in rules.items())
    batches: OrderedDict[tuple, list] = OrderedDict()
    errors: list[tuple[str, str]] = []
    probes: dict[Path, Probe] = {}
    for stem, fp, ap, bp in triples:
        try:
            pf, pa, pb = probe_image(fp), probe_image(ap), probe_image(bp)
        except ImageReadError as e:
            errors.append((stem, str(e)))
            continue
        sizes = {fp: pf, ap: pa, bp: pb}
        probes.update(sizes)
        if len({(p.h, p.w) for p in sizes.values()}) > 1:
            desc = ", ".join(f"{p} is {q.w}x{q.h}" for p, q in sizes.items())
            errors.append((stem, f"size mismatch for {stem!r}: {desc}"))
            continue
        if pf.h < MIN_SIZE or pf.w < MIN_SIZE:
            errors.append((stem, f"{fp}: {pf.w}x{pf.h} pixels is too small to score (at least {MIN_SIZE}x{MIN_SIZE})"))
            continue
        if on_note is not None:
            for role, q in zip(("fused", "a", "b"), (pf, pa, pb)):
                if q.sixteen_bit:
                    on_note(stem, f"16-bit {role} image scaled to 8 bit with {rule16}")
        batches.setdefault((pf.h, pf.w, pf.c, pa.c, pb.c), []).append((stem, fp, ap, bp))
    chunks = [items[i: i + batch_size] for items in batches.values() for i in range(0, len(items), batch_size)]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(triples), desc=label, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False)
    nw = workers or min(8, os.cpu_count() or 1)
    decode_pool = score_pool = None
    try:
        for stem, msg in errors:
            if bar is not None:
                bar.update(1)
            yield stem, None, msg
        if not chunks:
            return
        decode_pool = ThreadPoolExecutor(max_workers=nw, thread_name_prefix="fusionbench-decode")
        n_score = nw if cpu else 1
        score_pool = ThreadPoolExecutor(max_workers=n_score, thread_name_prefix="fusionbench-score",
                                        initializer=_single_threaded_worker if cpu else None)

        # a file used by several triples (the sources, when many fused images share them) is
        # decoded once: its decoding is kept until the last triple using it has been handed out,
        # within SHARED_DECODE_BYTES (the oldest kept decodings are dropped beyond that, and a
        # dropped file is decoded again if it is still needed). With a caller's decode_cache the
        # sources are kept in it past this call, for the next one.
        uses = Counter(p for c in chunks for t in c for p in t[1:])
        sources = {p for c in chunks for t in c for p in t[2:]}
        cache = decode_cache if decode_cache is not None else DecodeCache(SHARED_DECODE_BYTES)

        def decoding_of(path: Path):
            uses[path] -= 1
            fut = cache.get(path)
            if fut is None:
                fut = decode_pool.submit(_decode, path)
                if uses[path] > 0 or (decode_cache is not None and path in sources):
                    q = probes[path]
                    cache.put(path, fut, q.h * q.w * (4 if q.c == 3 else q.c))
            elif uses[path] == 0 and decode_cache is None:
                cache.drop(path)  # its last use in this call
            return fut

        def submit(chunk):
            decoding = [(t[0], [decoding_of(p) for p in t[1:]]) for t in chunk]
            return score_pool.submit(_score_chunk, decoding, reqs, device, dtype, on_note is not None)

        todo = iter(chunks)
        pending = deque(submit(c) for _, c in zip(range(n_score + 1), todo))
        while pending:
            results, notes = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(submit(nxt))
            for st, msg in notes:
                on_note(st, msg)
            for res in results:
                if bar is not None:
                    bar.update(1)
                yield res
    finally:
        for pool in (score_pool, decode_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()


def score_folders(folders: dict, requests, skip_missing: bool = False, **kwargs):
    """Pair ``{"fused": dir, "a": dir, "b": dir}``-style folders by stem and score them.

    The dict must have three entries in the order fused, first source, second source (labels are
    used in error messages). Returns ``(pairing, generator)`` where the generator is
    :func:`score_files` over the paired stems.
    """
    from ..io import pair_folders

    if len(folders) != 3:
        raise ValueError("folders must map three labels (fused, a, b) to folders")
    pairing = pair_folders(folders, skip_missing=skip_missing)
    triples = [(s, *pairing.files[s]) for s in pairing.stems]
    return pairing, score_files(triples, requests, **kwargs)


__all__ = ["score_batch", "score_files", "score_folders", "probe_image", "tune_allocator", "backend", "MIN_SIZE",
           "DecodeCache", "SHARED_DECODE_BYTES", "CPU_CHUNK_PIXELS"]


def __getattr__(name):
    if name == "_ALLOCATOR_TUNED":  # the allocator state lives in .parallel; read it there, current
        return _parallel._ALLOCATOR_TUNED
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
