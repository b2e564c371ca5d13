"""Image reading and writing, pairing of folders, atomic file writes.

``read_image`` returns the pixels exactly as stored (H, W, C) uint8 with C in {1, 3}: grey files
give one channel, colour files three (RGB order), whether or not their channels are equal. Colour
handling is decided later, by the metric preset or the fusion method's protocol.

16-bit images are scaled to 8 bit with ``round(v / 257)``, which maps 0..65535 onto 0..255
exactly (65535 -> 255, 32896 -> 128), unless the caller keeps them (``sixteen_bit="keep"``: uint16
pixels) to apply a reference's own rule later with :func:`to_8bit`. Alpha channels are dropped;
palette images are expanded.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError, ImageReadError, OutputError, UsageError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


#: how 16-bit pixels v become 8 bit: "round" = round(v / 257) (MATLAB ``im2uint8``, exact on 0..65535 onto
#: 0..255); "shift" = v >> 8 (what ``cv2.imread`` returns for a 16-bit PNG read without ANYDEPTH)
SIXTEEN_BIT_RULES = {"round": "round(v / 257)", "shift": "v >> 8"}


def to_8bit(x, rule: str = "round"):
    """16-bit pixels (a uint16 NumPy array or torch tensor, or any integer array of values 0..65535) to
    uint8 by ``rule`` (see :data:`SIXTEEN_BIT_RULES`). 8-bit input is returned unchanged."""
    if rule not in SIXTEEN_BIT_RULES:
        raise UsageError(f"unknown 16-bit rule {rule!r}; use one of {', '.join(SIXTEEN_BIT_RULES)}")
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint8:
            return x
        v = x.astype(np.int64)
        return (v >> 8 if rule == "shift" else (2 * v + 257) // 514).astype(np.uint8)
    import torch

    if x.dtype == torch.uint8:
        return x
    v = x.to(torch.int32)
    # floor(v / 257 + 1/2) = floor((2v + 257) / 514): no ties for integer v
    return (v >> 8 if rule == "shift" else torch.div(2 * v + 257, 514, rounding_mode="floor")).to(torch.uint8)


def read_image(path: str | os.PathLike, sixteen_bit: str = "round") -> np.ndarray:
    """Decode an image file to an (H, W, C) uint8 array, C = 1 or 3.

    16-bit grey files become 8 bit by ``sixteen_bit`` (a rule of :data:`SIXTEEN_BIT_RULES`), or stay
    uint16 with ``sixteen_bit="keep"``. Raises :class:`ImageReadError` naming the file for anything
    that cannot be decoded.
    """
    if sixteen_bit != "keep" and sixteen_bit not in SIXTEEN_BIT_RULES:
        raise UsageError(f"sixteen_bit={sixteen_bit!r}; use keep or one of {', '.join(SIXTEEN_BIT_RULES)}")
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                arr = np.asarray(im, dtype=np.int64)
                if mode == "I" and (arr.max(initial=0) > 65535 or arr.min(initial=0) < 0):
                    raise ImageReadError(f"{path}: 32-bit integer image with values outside 0..65535 is not supported")
                arr = arr.astype(np.uint16)[..., None]
                if sixteen_bit != "keep":
                    arr = to_8bit(arr, sixteen_bit)
            elif mode == "F":
                raise ImageReadError(f"{path}: floating-point images are not supported; save as 8- or 16-bit")
            elif mode in ("L", "1"):
                arr = np.asarray(im.convert("L"), dtype=np.uint8)[..., None]
            elif mode == "LA":
                arr = np.asarray(im.convert("L"), dtype=np.uint8)[..., None]
            elif mode == "RGB":
                arr = np.asarray(im, dtype=np.uint8)
            else:  # P, RGBA, CMYK, YCbCr, RGB;16 ...
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: cannot decode image ({e.__class__.__name__}: {e})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{path}: image is empty")
    return np.ascontiguousarray(arr)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def os_problem(e: OSError) -> str:
    """A short description of a file-system error: "permission denied", "no space left on device", ..."""
    import errno

    known = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
             errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on device",
             errno.EDQUOT: "disk quota exceeded", errno.ENOTDIR: "a parent is not a folder",
             errno.EISDIR: "is a folder", errno.ENOENT: "no such file or folder"}
    return known.get(e.errno, (e.strerror or str(e)).lower())


def ensure_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``mkdir -p`` that raises :class:`OutputError` (one line: the path and the problem) when it cannot."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot use {path} as {what}: a file of that name exists") from None
    except OSError as e:
        raise OutputError(f"cannot create {what} {path}: {os_problem(e)}") from None
    return path


def read_tensor(path: str | os.PathLike, sixteen_bit: str = "round"):
    """An image file as a (1, C, H, W) torch tensor (uint8, or uint16 with ``sixteen_bit="keep"``), pixels
    exactly as :func:`read_image` decodes them: what :func:`fusionbench.score` and
    :func:`fusionbench.load_method` take."""
    import torch

    return torch.from_numpy(np.array(read_image(path, sixteen_bit), copy=True)).permute(2, 0, 1)[None]


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``dest``; on success it is renamed over ``dest``.

    A crash, a kill or Ctrl-C leaves ``dest`` untouched (either the old file or nothing). The file gets
    the permissions of an ordinary new file (0666 less the umask: 0644 under umask 022), not mkstemp's
    0600. File-system errors (unwritable, read-only, full) raise :class:`OutputError` naming ``dest``.
    """
    dest = Path(dest)
    ensure_dir(dest.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or dest.suffix or ".tmp", dir=dest.parent)
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
    except OSError as e:
        raise OutputError(f"cannot write {dest}: {os_problem(e)}") from None
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if _is_write_error(e, tmp):
            raise OutputError(f"cannot write {dest}: {os_problem(e)}") from None
        raise


def _is_write_error(e: BaseException, tmp: str) -> bool:
    """An OSError from writing the temporary file or renaming it (not, say, from reading an input)."""
    import errno

    if not isinstance(e, OSError):
        return False
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    return getattr(e, "filename", None) in (tmp, str(tmp))


def remove_stale_temps(dest: str | os.PathLike) -> int:
    """Delete temporary files :func:`atomic_path` left beside ``dest`` when its process was killed (``kill -9``,
    the OOM killer) between creating and renaming them; returns how many. Call it only where no other process
    writes ``dest`` at the same time."""
    dest = Path(dest)
    n = 0
    for t in dest.parent.glob(f".{dest.name}.*"):
        with contextlib.suppress(OSError):
            t.unlink()
            n += 1
    return n


def write_text_atomic(dest: str | os.PathLike, text: str) -> None:
    with atomic_path(dest) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write (H, W), (H, W, 1) or (H, W, 3) uint8 atomically. The format follows the suffix."""
    from PIL import Image

    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"write_image expects uint8, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    path = Path(path)
    with atomic_path(path) as tmp:
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}.get(path.suffix.lower(), "PNG")
        Image.fromarray(img).save(tmp, format=fmt)


def list_images(folder: str | os.PathLike) -> dict[str, Path]:
    """Map stem -> file for every image in ``folder`` (not recursive).

    Raises :class:`UsageError` for a missing folder, :class:`DataError` for an empty one or for two
    files with the same stem.
    """
    folder = Path(folder)
    if not folder.exists():
        raise UsageError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            if p.stem in out:
                raise DataError(f"{folder}: two images share the stem {p.stem!r} ({out[p.stem].name}, {p.name})")
            out[p.stem] = p
    if not out:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTS)})")
    return out


@dataclass(frozen=True)
class Pairing:
    """Result of matching folders by stem."""

    stems: list[str]
    files: dict[str, tuple[Path, ...]]  # stem -> one path per folder
    missing: dict[str, list[str]]  # folder label -> stems present elsewhere but missing here


def pair_folders(folders: dict[str, str | os.PathLike], skip_missing: bool = False) -> Pairing:
    """Match files across labelled folders by stem (png, jpg, bmp, tif).

    Without ``skip_missing`` a stem missing from any folder raises :class:`DataError` listing them.
    """
    listed = {label: list_images(f) for label, f in folders.items()}
    all_stems = set().union(*[set(v) for v in listed.values()])
    common = sorted(set.intersection(*[set(v) for v in listed.values()]))
    missing = {label: sorted(all_stems - set(v)) for label, v in listed.items() if all_stems - set(v)}
    if missing and not skip_missing:
        parts = []
        for label, stems in missing.items():
            shown = ", ".join(stems[:8]) + (f" (+{len(stems) - 8} more)" if len(stems) > 8 else "")
            parts.append(f"{len(stems)} file(s) have no counterpart in {label} ({folders[label]}): {shown}")
        raise DataError("; ".join(parts) + ". Use --skip-missing to score the rest.")
    if not common:
        raise DataError("no file stem is present in every folder: " + ", ".join(f"{k}={v}" for k, v in folders.items()))
    return Pairing(common, {s: tuple(listed[label][s] for label in folders) for s in common}, missing)
