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
operations. Intra-operation threading (one synchronisation point per tensor operation) was
measured to be up to 10x slower on a loaded 2-core machine.

On CPU, the ``cddfuse`` preset's metrics EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM, MSE, RMSE, CC
and PSNR run in a native kernel straight on the decoded uint8 images (see
:mod:`fusionbench.metrics._native`; same values as the eager torch kernels, SSIM bit for bit);
everything else, and everything on CUDA, runs the eager torch kernels on the prepared tensors.
"""
from __future__ import annotations

import os
import sys
import threading
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..contract import check_min_size, check_triple
from ..errors import FusionBenchError, ImageReadError, MetricUndefinedError
from ..io import SIXTEEN_BIT_RULES, to_8bit
from .presets import DEFAULT_PRESET, Preset, get_preset
from .registry import MetricRequest, parse_metrics

#: images smaller than this (in either dimension) are rejected, so that every metric of every
#: preset is defined (cddfuse SSIM needs 7x7, VIFB's SSIM 11x11, Qcv works on 16x16 blocks)
MIN_SIZE = 16

#: bytes of decoded images that :func:`score_files` keeps for files several triples share (the
#: sources of many fused images), so that none is decoded twice; beyond it the oldest are dropped
SHARED_DECODE_BYTES = 512 * 2 ** 20

#: on CPU, batches are scored in chunks of about this many pixels per image stack, so that every
#: intermediate map stays in cache (measured: 16 images of 640x480 at once cost about 3x more per
#: image than 2 at a time). Each chunk is still scored vectorised; CUDA batches are not split.
CPU_CHUNK_PIXELS = 600_000


_ALLOCATOR_TUNED = False


def tune_allocator() -> bool:
    """Ask glibc malloc to keep freed memory for reuse (Linux only; a no-op elsewhere).

    Metric kernels allocate and free many image-sized temporaries. By default glibc serves blocks
    above 128 KiB to 32 MiB with fresh ``mmap`` pages or trims the heap after a free, so every
    temporary costs page faults and page zeroing; on 640x480 images that was measured to make VIF
    and Qabf up to 1.7x slower. This raises the mmap and trim thresholds for the whole process, so the
    library never calls it on its own: the ``fusionbench`` commands that score (``score``, ``eval``) do,
    and library users may opt in. Returns whether the setting was applied.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok


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


_HELPERS_LOCK = threading.Lock()
_HELPERS: ThreadPoolExecutor | None = None
_HELPERS_SIZE = 0


def _helper_pool(n: int) -> ThreadPoolExecutor:
    """A process-wide pool of at least ``n`` single-threaded helper threads, kept between calls
    (starting threads anew cost about 3 ms per ``score_batch`` call, some 4 % of a 64-image batch)."""
    global _HELPERS, _HELPERS_SIZE
    with _HELPERS_LOCK:
        if _HELPERS is None or _HELPERS_SIZE < n:
            old = _HELPERS
            _HELPERS = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fusionbench-score",
                                          initializer=_single_threaded_worker)
            _HELPERS_SIZE = n
            if old is not None:
                old.shutdown(wait=False)
        return _HELPERS


def _run_parallel(run: Callable[[int, bool], dict], starts: list[int], nthreads: int) -> list[dict]:
    """``[run(i, True) for i in starts]`` on ``nthreads`` threads: the calling one and helpers
    from :func:`_helper_pool`, each taking the next chunk as it becomes free. The caller always
    takes part, so a nested call cannot wait on a busy pool."""
    results: list = [None] * len(starts)
    todo = iter(range(len(starts)))
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                k = next(todo, None)
            if k is None:
                return
            results[k] = run(starts[k], True)

    helpers = [_helper_pool(nthreads - 1).submit(drain) for _ in range(nthreads - 1)]
    own = torch.get_num_threads()
    try:
        drain()  # run(..., True) makes this thread's torch operations single-threaded: restored below
    finally:
        torch.set_num_threads(own)
        for h in helpers:
            h.result()  # waits; re-raises a helper's exception
    return results


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Probe:
    h: int
    w: int
    c: int
    sixteen_bit: bool


class DecodeCache:
    """Decoded files kept across :func:`score_files` calls that share them, e.g. a dataset's sources
    scored against one method's outputs after another (``fusionbench eval`` keeps one per
    dataset). Least recently used decodings go first beyond ``max_bytes``; a file whose size or
    modification time changed is decoded again. Pass the same instance to each call and drop it
    to free the memory."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = SHARED_DECODE_BYTES if max_bytes is None else max_bytes
        self._items: OrderedDict[tuple, tuple] = OrderedDict()  # (path, mtime, size) -> (future, bytes)
        self._bytes = 0

    @staticmethod
    def _key(path: Path) -> tuple:
        st = path.stat()
        return (str(path), st.st_mtime_ns, st.st_size)

    def get(self, path: Path):
        """The future of a kept decoding of ``path``, or None."""
        try:
            key = self._key(path)
        except OSError:
            return None
        item = self._items.get(key)
        if item is None or item[0].cancelled():  # (a cancelled one: a run that was interrupted)
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, path: Path, future, nbytes: int) -> None:
        try:
            key = self._key(path)
        except OSError:
            return
        old = self._items.pop(key, None)
        self._bytes += nbytes - (old[1] if old else 0)
        self._items[key] = (future, nbytes)
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, (_, nb) = self._items.popitem(last=False)
            self._bytes -= nb

    def drop(self, path: Path) -> None:
        try:
            item = self._items.pop(self._key(path), None)
        except OSError:
            return
        if item is not None:
            self._bytes -= item[1]

    def __len__(self) -> int:
        return len(self._items)


def probe_image(path: Path) -> _Probe:
    """Size, channel count (as :func:`fusionbench.io.read_image` will return) and bit depth from the header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            mode = im.mode
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: cannot decode image ({e.__class__.__name__}: {e})") from None
    c = 1 if mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16") else 3
    return _Probe(h, w, c, mode.startswith("I;16") or mode == "I")


def _decode(path: Path) -> np.ndarray:
    """:func:`fusionbench.io.read_image` (16-bit files kept as uint16), without its copies for plain 8-bit
    RGB and grey files.

    Pillow's ``np.asarray(im)`` repacks RGBX to RGB through ``tobytes`` (about as costly as
    decoding the JPEG). Pillow >= 11.2 exports the decoded pixels through the Arrow C data
    interface: a zero-copy view, returned as (H, W, 4) RGBX for RGB images (the 4th byte is
    padding; :func:`_score_chunk` drops it as a strided view), (H, W, 1) for grey ones. The batch
    assembly then copies each image once, contiguously. Anything else (other modes, old Pillow,
    errors) takes ``read_image``, so values and error messages are the same.
    """
    from ..io import read_image

    try:
        arr = _decode_view(path)
    except Exception:  # noqa: BLE001 - the general path reports the problem properly
        arr = None
    return arr if arr is not None else read_image(path, sixteen_bit="keep")  # 16-bit: each preset's rule


def _pixels(im) -> np.ndarray:
    """The pixels of a loaded RGB or L image the ordinary way (one ``tobytes`` copy), as read_image gives them."""
    arr = np.asarray(im, dtype=np.uint8)
    return np.ascontiguousarray(arr if arr.ndim == 3 else arr[..., None])


class _PixelView:
    """Owner of a zero-copy view of a Pillow image's pixels (keeps the image and its export alive)."""

    def __init__(self, im, capsules, ptr: int, shape: tuple, strides: tuple):
        self._keep = (im, capsules)
        self.__array_interface__ = {"data": (ptr, True), "shape": shape, "strides": strides, "typestr": "|u1",
                                    "version": 3}


def _arrow_structs():
    import ctypes

    class Schema(ctypes.Structure):
        pass

    Schema._fields_ = [("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
                       ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64),
                       ("children", ctypes.POINTER(ctypes.POINTER(Schema))), ("dictionary", ctypes.c_void_p),
                       ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p)]

    class Array(ctypes.Structure):
        pass

    Array._fields_ = [("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
                      ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
                      ("buffers", ctypes.POINTER(ctypes.c_void_p)), ("children", ctypes.POINTER(ctypes.POINTER(Array))),
                      ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p)]
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return Schema, Array, get


_ARROW = None


def _decode_view(path: Path) -> np.ndarray | None:
    global _ARROW
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("RGB", "L") or not hasattr(im, "__arrow_c_array__"):
            return None
        im.load()
        im = im.copy() if im.readonly else im  # noqa: PLW2901 - a readonly (mmapped) image may go away
    w, h = im.size
    if _ARROW is None:
        _ARROW = _arrow_structs()
    Schema, Array, get = _ARROW
    try:
        caps = im.__arrow_c_array__()
    except ValueError:  # e.g. a large image held in several memory blocks: no zero-copy view
        return _pixels(im)
    schema = Schema.from_address(get(caps[0], b"arrow_schema"))
    arr = Array.from_address(get(caps[1], b"arrow_array"))
    if arr.length != w * h or arr.offset != 0:
        return _pixels(im)
    if im.mode == "RGB":
        if schema.format != b"+w:4" or arr.n_children != 1:
            return _pixels(im)
        child = arr.children[0].contents
        if child.length != 4 * w * h or child.offset != 0 or child.n_buffers < 2 or schema.children[0].contents.format != b"C":
            return _pixels(im)
        view = _PixelView(im, caps, child.buffers[1], (h, w, 4), (4 * w, 4, 1))  # RGB + a pad byte
    else:
        if schema.format != b"C" or arr.n_buffers < 2:
            return _pixels(im)
        view = _PixelView(im, caps, arr.buffers[1], (h, w, 1), (w, 1, 1))
    return np.asarray(view)


def _single_threaded_worker() -> None:
    torch.set_num_threads(1)  # applies to this worker thread only


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
    probes: dict[Path, _Probe] = {}
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
        cache = decode_cache if decode_cache is not None else DecodeCache()

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


__all__ = ["score_batch", "score_files", "score_folders", "probe_image", "tune_allocator", "backend", "MIN_SIZE"]
