"""CPU parallelism for scoring: kept helper threads, single-threaded workers, and the opt-in allocator tuning.

On CPU, parallelism comes from threads that each score whole images with single-threaded torch
operations. Intra-operation threading (one synchronisation point per tensor operation) was
measured to be up to 10x slower on a loaded 2-core machine.

Nothing here runs on import. :func:`tune_allocator` changes a process-wide setting, so the library
never calls it: the ``fusionbench`` commands that score do, and library users may opt in.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["tune_allocator", "helper_pool", "run_parallel", "single_threaded_worker"]

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


def single_threaded_worker() -> None:
    """Thread-pool initializer: this worker thread's torch operations run single-threaded."""
    torch.set_num_threads(1)  # applies to this worker thread only


_HELPERS_LOCK = threading.Lock()
_HELPERS: ThreadPoolExecutor | None = None
_HELPERS_SIZE = 0


def helper_pool(n: int) -> ThreadPoolExecutor:
    """A process-wide pool of at least ``n`` single-threaded helper threads, kept between calls
    (starting threads anew cost about 3 ms per ``score_batch`` call, some 4 % of a 64-image batch)."""
    global _HELPERS, _HELPERS_SIZE
    with _HELPERS_LOCK:
        if _HELPERS is None or _HELPERS_SIZE < n:
            old = _HELPERS
            _HELPERS = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fusionbench-score",
                                          initializer=single_threaded_worker)
            _HELPERS_SIZE = n
            if old is not None:
                old.shutdown(wait=False)
        return _HELPERS


def run_parallel(run: Callable[[int, bool], dict], starts: list[int], nthreads: int) -> list[dict]:
    """``[run(i, True) for i in starts]`` on ``nthreads`` threads: the calling one and helpers
    from :func:`helper_pool`, each taking the next chunk as it becomes free. The caller always
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

    helpers = [helper_pool(nthreads - 1).submit(drain) for _ in range(nthreads - 1)]
    own = torch.get_num_threads()
    try:
        drain()  # run(..., True) makes this thread's torch operations single-threaded: restored below
    finally:
        torch.set_num_threads(own)
        for h in helpers:
            h.result()  # waits; re-raises a helper's exception
    return results
