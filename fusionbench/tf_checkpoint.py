"""Read TensorFlow checkpoints (the tensor-bundle format, ``NAME.index`` + ``NAME.data-0000i-of-0000n``) without
TensorFlow, for ports that load official TF1/TF2 weights (SDNet, MURF).

The format, as TensorFlow documents it (``tensorflow/core/util/tensor_bundle``):

* ``.index`` is an immutable sorted table in LevelDB's SSTable layout: data blocks of prefix-compressed
  key/value entries with a restart array, an index block mapping the last key of each data block to its
  (offset, size) handle, and a 48-byte footer (metaindex handle, index handle, magic 0xdb4775248b80fb57).
  Each block is followed by a 5-byte trailer (compression type, CRC-32C); TF writes them uncompressed.
* Key ``""`` holds a ``BundleHeaderProto`` (number of shards, endianness); every other key is a tensor name
  whose value is a ``BundleEntryProto``: dtype (1), shape (2), shard_id (3), offset (4), size (5), crc32c (6).
  Partitioned tensors (``slices``, field 7) are not supported (the fusion checkpoints have none).
* ``.data-SSSSS-of-NNNNN`` shards hold the raw little-endian tensor bytes at those offsets.

:func:`read_checkpoint` returns ``{name: numpy array}``; :func:`list_variables` only the names, dtypes and
shapes. Every error is a :class:`~fusionbench.errors.WeightsError` naming the file and the problem.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .errors import WeightsError

__all__ = ["read_checkpoint", "list_variables", "checkpoint_prefix"]

_MAGIC = 0xDB4775248B80FB57
# DataType enum of tensorflow/core/framework/types.proto -> numpy dtype (little-endian)
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 14: "<u2", 17: "<u2",
           19: "<f2", 22: "<u4", 23: "<u8"}
_DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string", 9: "int64",
                10: "bool", 14: "bfloat16", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64"}


def checkpoint_prefix(path: str | os.PathLike) -> Path:
    """The checkpoint prefix (``dir/model.ckpt``) of a prefix, an ``.index`` file or a ``.data-*`` file."""
    p = Path(path)
    name = p.name
    if name.endswith(".index"):
        return p.with_name(name[: -len(".index")])
    if ".data-" in name:
        return p.with_name(name[: name.index(".data-")])
    return p


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(msg: bytes):
    """(field number, wire type, value) of a protobuf message; value: int, or bytes for length-delimited."""
    pos = 0
    while pos < len(msg):
        key, pos = _varint(msg, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(msg, pos)
        elif wire == 1:
            val, pos = struct.unpack_from("<Q", msg, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(msg, pos)
            val, pos = msg[pos: pos + n], pos + n
        elif wire == 5:
            val, pos = struct.unpack_from("<I", msg, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, val


def _block_entries(data: bytes, offset: int, size: int):
    """Key/value pairs of one SSTable block."""
    if offset + size + 5 > len(data):
        raise ValueError("block beyond the end of the file")
    if data[offset + size] != 0:
        raise ValueError(f"compressed block (type {data[offset + size]}): not supported")
    block = data[offset: offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + block[pos: pos + non_shared]
        pos += non_shared
        yield key, block[pos: pos + vlen]
        pos += vlen


def _entries(index: Path):
    data = index.read_bytes()
    if len(data) < 48:
        raise ValueError(f"{len(data)} bytes is too short for a checkpoint index")
    footer = data[-48:]
    if struct.unpack("<Q", footer[40:])[0] != _MAGIC:
        raise ValueError("not a TensorFlow checkpoint index (bad table magic)")
    pos = 0
    _, pos = _varint(footer, pos)  # metaindex handle (unused)
    _, pos = _varint(footer, pos)
    idx_off, pos = _varint(footer, pos)
    idx_size, pos = _varint(footer, pos)
    for _, handle in _block_entries(data, idx_off, idx_size):
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        yield from _block_entries(data, off, size)


def _parse_entry(value: bytes) -> dict:
    e = {"dtype": 0, "shape": [], "shard": 0, "offset": 0, "size": 0, "slices": False}
    for field, _, val in _fields(value):
        if field == 1:
            e["dtype"] = val
        elif field == 2:  # TensorShapeProto: dim (2) {size (1)}, unknown_rank (3)
            for f2, _, dim in _fields(val):
                if f2 == 2:
                    size = next((v for f3, _, v in _fields(dim) if f3 == 1), 0)
                    e["shape"].append(size - (1 << 64) if size >= 1 << 63 else size)
        elif field == 3:
            e["shard"] = val
        elif field == 4:
            e["offset"] = val
        elif field == 5:
            e["size"] = val
        elif field == 7:
            e["slices"] = True
    return e


def _read_index(prefix: Path) -> tuple[int, dict[str, dict]]:
    index = prefix.with_name(prefix.name + ".index")
    if not index.is_file():
        raise WeightsError(f"{index}: no such file (a TensorFlow checkpoint is NAME.index + NAME.data-*)")
    try:
        shards, entries = 1, {}
        for key, value in _entries(index):
            if key == b"":
                for field, _, val in _fields(value):
                    if field == 1:
                        shards = val
                        continue
                    if field == 2 and val == 1:
                        raise WeightsError(f"{index}: big-endian checkpoint, not supported")
                continue
            entries[key.decode("utf-8")] = _parse_entry(value)
    except WeightsError:
        raise
    except (ValueError, struct.error, UnicodeDecodeError, IndexError) as e:
        raise WeightsError(f"{index}: not a readable TensorFlow checkpoint index ({e})") from None
    return shards, entries


def list_variables(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype name, shape)}`` of every tensor in the checkpoint (as ``tf.train.list_variables``)."""
    _, entries = _read_index(checkpoint_prefix(path))
    return {k: (_DTYPE_NAMES.get(e["dtype"], f"dtype {e['dtype']}"), tuple(e["shape"])) for k, e in sorted(entries.items())}


def read_checkpoint(path: str | os.PathLike, names=None) -> dict[str, np.ndarray]:
    """``{name: array}`` of the checkpoint at ``path`` (its prefix, ``.index`` or a ``.data-*`` file).

    ``names`` restricts the result (default: every numeric tensor; string tensors are skipped). The arrays
    are copies, in the checkpoint's dtype and shape (TF's layout: convolution kernels are HWIO).
    """
    prefix = checkpoint_prefix(path)
    shards, entries = _read_index(prefix)
    want = sorted(entries) if names is None else list(names)
    missing = [n for n in want if n not in entries]
    if missing:
        raise WeightsError(f"{prefix}: no tensor {missing[0]!r} (+{len(missing) - 1} more)" if len(missing) > 1 else
                           f"{prefix}: no tensor {missing[0]!r}")
    files: dict[int, bytes] = {}
    out = {}
    for name in want:
        e = entries[name]
        if e["dtype"] == 7 and names is None:
            continue
        if e["slices"]:
            raise WeightsError(f"{prefix}: tensor {name!r} is partitioned (slices): not supported")
        if e["dtype"] not in _DTYPES:
            raise WeightsError(f"{prefix}: tensor {name!r} has {_DTYPE_NAMES.get(e['dtype'], e['dtype'])}: not supported")
        if e["shard"] not in files:
            shard = prefix.with_name(f"{prefix.name}.data-{e['shard']:05d}-of-{shards:05d}")
            if not shard.is_file():
                raise WeightsError(f"{shard}: no such file (shard {e['shard'] + 1} of {shards} of {prefix.name})")
            files[e["shard"]] = shard.read_bytes()
        buf = files[e["shard"]]
        dt = np.dtype(_DTYPES[e["dtype"]])
        count = int(np.prod(e["shape"], dtype=np.int64)) if e["shape"] else 1
        if e["size"] != count * dt.itemsize or e["offset"] + e["size"] > len(buf):
            raise WeightsError(f"{prefix}: tensor {name!r}: {e['size']} bytes at {e['offset']} do not fit shape "
                               f"{tuple(e['shape'])} {dt} or the data file ({len(buf)} bytes): truncated?")
        out[name] = np.frombuffer(buf, dtype=dt, count=count, offset=e["offset"]).reshape(e["shape"]).copy()
    return out
