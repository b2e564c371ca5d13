"""Decoding image files for scoring: header probes, a zero-copy pixel view of Pillow's Arrow export, and
a cache of decoded files shared between scoring calls.

:func:`probe_image` reads only a file's header (size, channels, bit depth), so that
:func:`~fusionbench.metrics.scoring.score_files` can group images into batches before decoding any.
:func:`decode` returns exactly what :func:`fusionbench.io.read_image` returns (16-bit files kept as
uint16), without its copies for plain 8-bit RGB and grey files. :class:`DecodeCache` keeps decoded
files that several triples share (a dataset's sources).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageReadError

__all__ = ["SHARED_DECODE_BYTES", "Probe", "DecodeCache", "probe_image", "decode"]

#: bytes of decoded images that :func:`~fusionbench.metrics.scoring.score_files` keeps for files several
#: triples share (the sources of many fused images), so that none is decoded twice; beyond it the oldest
#: are dropped
SHARED_DECODE_BYTES = 512 * 2 ** 20


@dataclass(frozen=True)
class Probe:
    """What a file's header says: size, channel count as decoded, whether it is 16-bit."""

    h: int
    w: int
    c: int
    sixteen_bit: bool


class DecodeCache:
    """Decoded files kept across :func:`~fusionbench.metrics.scoring.score_files` calls that share
    them, e.g. a dataset's sources scored against one method's outputs after another
    (``fusionbench eval`` keeps one per dataset). Least recently used decodings go first beyond ``max_bytes``; a file whose size or
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


def probe_image(path: Path) -> Probe:
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
    return Probe(h, w, c, mode.startswith("I;16") or mode == "I")


def decode(path: Path) -> np.ndarray:
    """:func:`fusionbench.io.read_image` (16-bit files kept as uint16), without its copies for plain 8-bit
    RGB and grey files.

    Pillow's ``np.asarray(im)`` repacks RGBX to RGB through ``tobytes`` (about as costly as
    decoding the JPEG). Pillow >= 11.2 exports the decoded pixels through the Arrow C data
    interface: a zero-copy view, returned as (H, W, 4) RGBX for RGB images (the 4th byte is
    padding; the scorer drops it as a strided view), (H, W, 1) for grey ones. The batch
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
