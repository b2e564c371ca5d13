"""Native CPU kernels for the ``cddfuse`` preset: compiled once with the system C compiler, loaded by ctypes.

The kernels (C source in :mod:`._native_src`) take the decoded uint8 images, compute the rounded
luma themselves and score a whole batch in a few streaming passes per image, with every working
buffer cache-resident. They reproduce the eager torch kernels of
:mod:`fusionbench.metrics.functional` (SSIM bit for bit, the other metrics from exact integer
moments or double arithmetic); the eager kernels remain the path for CUDA, for non-uint8 input
and whenever the native library is unavailable.

* Built on first use with ``$CC`` (default ``cc``, then ``gcc``) into a per-user cache directory
  (``$FUSIONBENCH_CACHE`` or ``~/.cache/fusionbench``), keyed by the source, the compiler and
  the CPU's feature flags, so later processes just load it (compiling takes about a second).
* ``FUSIONBENCH_NATIVE=0`` disables it (everything then runs on the eager torch path).
* Any failure (no compiler, compile error, load error) is remembered and the eager path is used;
  :func:`status` says why.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

from ._native_src import C_SOURCE

ABI_VERSION = 7
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-std=gnu99"]

#: output slots of fb_cddfuse_core, in order
CORE_SLOTS = ("EN", "SD", "SF", "AG", "SCD", "SSIM", "MI", "MSE", "CC", "PSNR", "RMSE", "VIF", "Qabf")
_ALL_SLOTS = CORE_SLOTS
_FLAG = {"SSIM": 2, "MI": 4, "VIF": 8, "Qabf": 16}  # every other slot comes from the moments pass (flag 1)
_F32 = 32  # float32 results asked for

_lock = threading.Lock()
_lib = None
_status = "not loaded yet"


def enabled() -> bool:
    return os.environ.get("FUSIONBENCH_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def _cache_dir() -> Path:
    root = os.environ.get("FUSIONBENCH_CACHE")
    if root:
        return Path(root) / "native"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fusionbench" / "native"


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc):
        return cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _check_private(path: Path) -> None:
    """Refuse a library folder or file another user could have written: it must be this user's and no symbolic
    link (a predictable folder in a shared /tmp could otherwise be planted by someone else). The folder must be
    mode 0700: a folder of ours with any group/other permission is made 0700 and every library in it removed
    (it could have been replaced), so it is compiled again; a file others could write is removed."""
    if not hasattr(os, "getuid"):
        return
    import stat as _stat

    st = os.lstat(path)
    if _stat.S_ISLNK(st.st_mode):
        raise RuntimeError(f"{path} is a symbolic link: not loading native code through it")
    if st.st_uid != os.getuid():
        raise RuntimeError(f"{path} belongs to uid {st.st_uid}, not to this user: not loading native code from it")
    if _stat.S_ISDIR(st.st_mode):
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
            for old in Path(path).glob("fb_cddfuse_*.so*"):
                old.unlink()
    elif st.st_mode & 0o022:
        Path(path).unlink()


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _verified(so: Path) -> bool:
    """The library is the one this process family built: its content hash equals the one recorded beside it
    (``<name>.sha256``, written with the library). Anything else is removed, to be compiled again."""
    rec = so.with_name(so.name + ".sha256")
    try:
        _check_private(so)
        if so.is_file() and rec.is_file():
            _check_private(rec)
            if rec.is_file() and rec.read_text().strip() == _sha256(so):
                return True
    except OSError:
        pass
    for p in (so, rec):
        p.unlink(missing_ok=True)
    return False


def _build() -> ctypes.CDLL:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC)")
    ver = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256("\0".join([C_SOURCE, " ".join(CFLAGS), cc, ver, _cpu_key(), sys.platform]).encode())
    name = f"fb_cddfuse_{key.hexdigest()[:20]}.so"
    d = _cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(d, os.W_OK):
            raise PermissionError(d)
    except OSError:  # read-only home: a per-user temporary directory
        d = Path(tempfile.gettempdir()) / f"fusionbench-native-{os.getuid() if hasattr(os, 'getuid') else 0}"
        d.mkdir(exist_ok=True, mode=0o700)
    _check_private(d)
    so = d / name
    if not (so.exists() and _verified(so)):  # (an unverified library is removed and built again)
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            src = Path(tmp) / "fb_kernels.c"
            src.write_text(C_SOURCE)
            out = Path(tmp) / so.name
            r = subprocess.run([cc, *CFLAGS, str(src), "-o", str(out), "-lm"], capture_output=True, text=True,
                               timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"{cc} failed: {r.stderr.strip()[-2000:]}")
            os.chmod(out, 0o700)
            digest = _sha256(out)
            rec = Path(tmp) / (so.name + ".sha256")
            rec.write_text(digest + "\n")
            os.chmod(rec, 0o600)
            os.replace(rec, so.with_name(so.name + ".sha256"))
            os.replace(out, so)  # atomic: concurrent builders agree on the content
    _check_private(d)  # verified again right before loading
    if not _verified(so):
        raise RuntimeError(f"{so}: content hash differs from the one recorded when it was built; not loading it")
    lib = ctypes.CDLL(str(so))
    lib.fb_abi_version.restype = ctypes.c_int
    if lib.fb_abi_version() != ABI_VERSION:
        raise RuntimeError("stale native library (ABI version mismatch)")
    i64, ptr, cint, f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    lib.fb_cddfuse_core.restype = cint
    lib.fb_cddfuse_core.argtypes = [i64, i64, i64, ptr, cint, ptr, cint, ptr, cint, cint, f32, f32, f32, ptr, ptr]
    lib.fb_luma.restype = None
    lib.fb_luma.argtypes = [i64, i64, ptr, cint, ptr]
    return lib


def library():
    """The loaded native library, or None (disabled or unavailable; see :func:`status`)."""
    global _lib, _status
    if not enabled():
        return None
    if _lib is not None or _status != "not loaded yet":
        return _lib
    with _lock:
        if _lib is None and _status == "not loaded yet":
            try:
                _lib = _build()
                _status = "loaded"
            except Exception as e:  # noqa: BLE001 - any failure means: use the eager path
                _status = f"unavailable: {e.__class__.__name__}: {e}"
    return _lib


def status() -> str:
    if not enabled():
        return "disabled (FUSIONBENCH_NATIVE=0)"
    library()
    return _status


def _u8(x: Tensor) -> tuple[Tensor, int]:
    """(tensor whose memory the kernel reads, channel code): 1 grey, 3 planar RGB, -3 interleaved RGB, -4 RGBX.

    A channels-last batch (e.g. decoded (N, H, W, 3) arrays viewed as NCHW) is read in place.
    """
    c = x.shape[1]
    if c == 1 or x.is_contiguous():
        return (x if x.is_contiguous() else x.contiguous()), c
    nhwc = x.permute(0, 2, 3, 1)
    if nhwc.is_contiguous():
        return nhwc, -3
    n, _, h, w = x.shape
    if x.stride() == (4 * h * w, 1, 4 * w, 4):  # RGB channels of an RGBX buffer (Pillow's layout)
        return x, -4
    return x.contiguous(), c


def usable(*xs: Tensor) -> bool:
    """Whether the native kernels can take these decoded batches (CPU uint8 (N, 1|3, H, W))."""
    return all(isinstance(x, Tensor) and x.device.type == "cpu" and x.dtype == torch.uint8 and x.ndim == 4
               and x.shape[1] in (1, 3) for x in xs) and library() is not None


def luma(x: Tensor) -> Tensor:
    """Rounded BT.601 luma of a CPU uint8 (N, 1|3, H, W) batch as uint8 (N, 1, H, W)."""
    lib = library()
    n, _, h, w = x.shape
    x, c = _u8(x)
    out = torch.empty((n, 1, h, w), dtype=torch.uint8)
    lib.fb_luma(n, h * w, x.data_ptr(), c, out.data_ptr())
    return out


def cddfuse_core(f: Tensor, a: Tensor, b: Tensor, names, dtype=torch.float64) -> dict[str, Tensor]:
    """The metrics of :data:`CORE_SLOTS` that are in ``names``, for CPU uint8 batches: ``{name: float64 (N,)}``.

    Everything is computed in double (or exactly, in integers), except that with ``dtype``
    float32 AG's per-pixel square roots are float32 ones.
    """
    import numpy as np

    lib = library()
    n, _, h, w = f.shape
    (f, cf), (a, ca), (b, cb) = _u8(f), _u8(a), _u8(b)
    want = [s for s in _ALL_SLOTS if s in names]
    flags = 0
    for s in want:
        flags |= _FLAG.get(s, 1)
    if dtype == torch.float32:
        flags |= _F32
    out = torch.empty((n, len(_ALL_SLOTS)), dtype=torch.float64)
    win = 49
    cn, c1, c2 = np.float32(win / (win - 1)), np.float32((0.01 * 2.0) ** 2), np.float32((0.03 * 2.0) ** 2)
    rc = lib.fb_cddfuse_core(n, h, w, f.data_ptr(), cf, a.data_ptr(), ca, b.data_ptr(), cb, flags, float(cn), float(c1), float(c2), _VIF_TAPS.data_ptr(), out.data_ptr())
    if rc != 0:
        raise RuntimeError(f"native cddfuse kernel failed ({rc})")
    return {s: out[:, _ALL_SLOTS.index(s)] for s in want}


def _vif_taps() -> Tensor:
    from .filters import fspecial_gaussian_1d

    taps = [t for size in (17, 9, 5, 3) for t in fspecial_gaussian_1d(size, size / 5.0)]
    return torch.tensor(taps, dtype=torch.float64)


_VIF_TAPS = _vif_taps()
