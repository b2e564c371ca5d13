"""Training data for ReFusion: paired folders, luma conversion, splits and random crops.

* Layout detection (:func:`find_layout`): ``<root>/ir`` + ``<root>/vi`` (../shared, MSRS),
  ``infrared/`` + ``visible/`` (LLVIP), ``cropinfrared/`` + ``crop_LR_visible/`` (RoadScene repo),
  ``A/`` + ``B/`` or ``a/`` + ``b/`` (generic), each also one level down in ``train/`` (MSRS release);
  or explicit sub-folders (config ``data.a`` / ``data.b``).
* Every image is read with :func:`fusionbench.io.read_image` and converted to luma with the
  ``cddfuse`` convention (OpenCV ``BGR2GRAY`` on uint8: BT.601, rounded; grey files pass through), the
  same conversion the derivative training code applied (``cv2 ... BGR2GRAY`` then ``/255``).
* Splits (:func:`split_pairs`): a held-out validation split, then the rest into meta-train /
  meta-test; all from a ``torch.Generator`` seeded with ``data.split_seed``.
* :class:`CropSampler`: random square crops (reflect padding for smaller images), batches of a fixed
  size, epochs as random permutations; its whole state (generator, permutation, position) is
  checkpointable, so a resumed run draws exactly the same batches.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import Tensor

from fusionbench.color import luma_cv2_u8
from fusionbench.errors import DataError, SizeMismatchError, UsageError
from fusionbench.io import pair_folders, read_image

__all__ = ["LAYOUTS", "Pair", "Dataset", "find_layout", "load_pairs", "read_exclude", "split_pairs",
           "CropSampler", "default_root", "to_luma_u8", "build_dataset"]

LAYOUTS = [("ir", "vi"), ("infrared", "visible"), ("cropinfrared", "crop_LR_visible"), ("A", "B"), ("a", "b")]
AUTO_EXCLUDE = [("subsets/cddfuse_test50.txt", None), ("subsets/cddfuse_test25.csv", "tno_stem")]


def default_root() -> Path:
    """``<fusionbench data dir>/roadscene``; a UsageError when the data folder is absent."""
    from fusionbench.paths import data_dir

    d = data_dir()
    if d is None or not (d / "roadscene").is_dir():
        raise UsageError("no default training data: ../shared/data/roadscene not found "
                         "(give --data DIR or set FUSIONBENCH_DATA)")
    return d / "roadscene"


def find_layout(root: Path, a: str | None = None, b: str | None = None) -> tuple[Path, Path]:
    """The two source folders of a dataset root."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such data folder")
    if a or b:
        if not (a and b):
            raise UsageError("data.a and data.b must be given together")
        pa, pb = root / a, root / b
        for p in (pa, pb):
            if not p.is_dir():
                raise UsageError(f"{p}: no such folder (data.a / data.b)")
        return pa, pb
    for base in (root, root / "train"):
        for da, db in LAYOUTS:
            if (base / da).is_dir() and (base / db).is_dir():
                return base / da, base / db
    names = ", ".join(f"{x}/+{y}/" for x, y in LAYOUTS)
    raise DataError(f"{root}: no image pairs found: expected one of the folder pairs {names} "
                    f"(directly or under train/), or set data.a and data.b")


def to_luma_u8(img: np.ndarray) -> Tensor:
    """(H, W, C) uint8 -> (H, W) uint8 luma, OpenCV BGR2GRAY convention (rounded BT.601)."""
    t = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).unsqueeze(0)
    return luma_cv2_u8(t)[0, 0]


def read_exclude(root: Path, spec) -> set[str]:
    """Stems listed by ``data.exclude`` (``auto``, null, or a list of .txt/.csv files)."""
    if spec is None:
        return set()
    files: list[tuple[Path, str | None]] = []
    if spec == "auto":
        files = [(root / rel, col) for rel, col in AUTO_EXCLUDE if (root / rel).is_file()]
    else:
        for f in spec:
            p = Path(f)
            p = p if p.is_absolute() else root / p
            if not p.is_file():
                raise UsageError(f"data.exclude: {p}: no such file")
            files.append((p, None))
    stems: set[str] = set()
    for p, col in files:
        if p.suffix.lower() == ".csv":
            with open(p, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            if not rows:
                continue
            names = list(rows[0])
            use = col if col in names else ("stem" if "stem" in names else
                                            next((n for n in reversed(names) if n.endswith("stem")), names[0]))
            stems |= {r[use].strip() for r in rows if r.get(use)}
        else:
            for line in p.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    stems.add(Path(line).stem if Path(line).suffix else line)
    return stems


@dataclass
class Pair:
    stem: str
    a_path: Path
    b_path: Path
    luma: Tensor  # (2, H, W) uint8: [a, b]


@dataclass
class Dataset:
    root: Path
    folders: tuple[Path, Path]
    pairs: list[Pair]
    val: list[int] = field(default_factory=list)
    train: list[int] = field(default_factory=list)
    meta_train: list[int] = field(default_factory=list)
    meta_test: list[int] = field(default_factory=list)
    excluded: int = 0
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        s = (f"{self.root}: {len(self.pairs)} pairs ({self.excluded} excluded as test split) -> "
             f"train {len(self.train)} (meta-train {len(self.meta_train)}, meta-test {len(self.meta_test)}), "
             f"val {len(self.val)}")
        return "\n".join([s, *(f"note: {n}" for n in self.notes)])


def load_pairs(root: Path, a: str | None = None, b: str | None = None, exclude=None) -> tuple[list[Pair], tuple[Path, Path], int]:
    """Read every pair (minus excluded stems) as luma. DataError for no pairs, missing counterparts
    or a pair whose two images differ in size."""
    fa, fb = find_layout(Path(root), a, b)
    pairing = pair_folders({"a": fa, "b": fb})
    skip = read_exclude(Path(root), exclude)
    stems = [s for s in pairing.stems if s not in skip]
    if not stems:
        raise DataError(f"{root}: no training pairs left after excluding {len(skip)} test stems")
    pairs = []
    for s in stems:
        pa, pb = pairing.files[s]
        ia, ib = read_image(pa), read_image(pb)
        if ia.shape[:2] != ib.shape[:2]:
            raise SizeMismatchError(f"mismatched pair {s!r}: {pa} is {ia.shape[1]}x{ia.shape[0]} but {pb} is "
                                    f"{ib.shape[1]}x{ib.shape[0]} (width x height)")
        pairs.append(Pair(s, pa, pb, torch.stack([to_luma_u8(ia), to_luma_u8(ib)])))
    return pairs, (fa, fb), len(pairing.stems) - len(stems)


def effective_val_count(n: int, val_count: int, min_train: int) -> tuple[int, str | None]:
    """How many of ``n`` pairs to hold out when ``val_count`` are asked for. ``val_count`` itself when it
    takes at most half of the pairs and leaves ``min_train``; otherwise a fifth of the pairs (at least one
    when that still leaves ``min_train``). Returns ``(count, note or None)``."""
    if val_count <= n // 2 and n - val_count >= min_train:
        return val_count, None
    k = max(min(val_count, max(n // 5, 1), n - min_train), 0)
    if k == 0:
        return 0, (f"{n} pairs are too few to hold any out: validation is off (data.val_count = {val_count} "
                   f"asked for; at most a fifth of the pairs are held out)")
    return k, (f"data.val_count = {val_count} lowered to {k} for {n} pairs (at most a fifth of the pairs are held "
               f"out, at least {min_train} kept for training)")


def split_pairs(n: int, val_count: int, meta_test_ratio: float, seed: int, need_meta: bool = True):
    """Deterministic split of ``n`` pair indices -> ``(val, train, meta_train, meta_test)``.

    ``train`` is every non-validation pair (phase 3 uses it); meta-train and meta-test partition it.
    """
    if val_count >= n:
        raise DataError(f"data.val_count = {val_count} leaves no training pairs out of {n}")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g).tolist()
    val, train = sorted(perm[:val_count]), perm[val_count:]
    n_test = int(round(meta_test_ratio * len(train)))
    n_test = min(max(n_test, 1), len(train) - 1) if len(train) > 1 else 0
    if need_meta and (n_test < 1 or len(train) - n_test < 1):
        raise DataError(f"meta-training needs at least 2 training pairs (have {len(train)})")
    meta_test, meta_train = sorted(train[:n_test]), sorted(train[n_test:])
    return val, sorted(train), meta_train, meta_test


def build_dataset(cfg: dict) -> Dataset:
    d = cfg["data"]
    root = Path(d["root"]) if d["root"] else default_root()
    pairs, folders, excluded = load_pairs(root, d["a"], d["b"], d["exclude"])
    bs = cfg["train"]["batch_size"]
    min_train = max(bs, 2 if cfg["meta"]["enabled"] else 1)
    if len(pairs) < min_train:
        need = f"train.batch_size = {bs}" if bs >= min_train else "meta-training (a meta-train and a meta-test pair)"
        raise DataError(f"{root}: {len(pairs)} pair{'s' * (len(pairs) != 1)} is too few: {need} needs at least "
                        f"{min_train} training pairs")
    k, note = effective_val_count(len(pairs), d["val_count"], min_train)
    val, train, mtr, mts = split_pairs(len(pairs), k, d["meta_test_ratio"], d["split_seed"],
                                       need_meta=cfg["meta"]["enabled"])
    return Dataset(root, folders, pairs, val, train, mtr, mts, excluded, [note] if note else [])


def _pad_to(img: Tensor, size: int) -> Tensor:
    """Pad a (C, H, W) tensor to at least size x size: reflect where possible, then replicate."""
    _, h, w = img.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph == 0 and pw == 0:
        return img
    x = img.unsqueeze(0).float()
    top, left = ph // 2, pw // 2
    pads = (left, pw - left, top, ph - top)
    mode = "reflect" if max(pads[0], pads[1]) < w and max(pads[2], pads[3]) < h else "replicate"
    return Fn.pad(x, pads, mode=mode)[0].to(img.dtype)


class CropSampler:
    """Fixed-size batches of random crops from a subset of pairs.

    An epoch is ``repeats`` random permutations of ``indices`` concatenated; a batch takes the next
    ``batch_size`` indices (the incomplete tail is dropped), so ``steps_per_epoch`` is
    ``len(indices) * repeats // batch_size``. Crops are drawn from the sampler's own generator.
    """

    def __init__(self, pairs: list[Pair], indices: list[int], crop: int, batch_size: int, seed: int,
                 repeats: int = 1):
        if not indices:
            raise DataError("empty split: no pairs to sample from")
        self.pairs, self.indices = pairs, list(indices)
        self.crop, self.batch_size, self.repeats = int(crop), int(batch_size), int(repeats)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.order: list[int] = []
        self.pos = 0

    @property
    def steps_per_epoch(self) -> int:
        return max(len(self.indices) * self.repeats // self.batch_size, 1)

    def _new_order(self) -> None:
        order: list[int] = []
        for _ in range(self.repeats):
            order += [self.indices[i] for i in torch.randperm(len(self.indices), generator=self.gen).tolist()]
        # an order shorter than a batch (tiny subsets) is repeated until it fills one
        while len(order) < self.batch_size:
            order += order
        self.order, self.pos = order, 0

    def _crop(self, lum: Tensor) -> Tensor:
        img = _pad_to(lum, self.crop)
        _, h, w = img.shape
        top = int(torch.randint(0, h - self.crop + 1, (1,), generator=self.gen))
        left = int(torch.randint(0, w - self.crop + 1, (1,), generator=self.gen))
        return img[:, top:top + self.crop, left:left + self.crop]

    def next(self) -> Tensor:
        """The next batch: float32 (batch_size, 2, crop, crop) in [0, 1]."""
        if not self.order or self.pos + self.batch_size > len(self.order) or \
                self.pos >= self.steps_per_epoch * self.batch_size:
            self._new_order()
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return torch.stack([self._crop(self.pairs[i].luma) for i in idx]).float() / 255.0

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "order": list(self.order), "pos": self.pos}

    def load_state_dict(self, s: dict) -> None:
        self.gen.set_state(s["gen"])
        self.order, self.pos = list(s["order"]), int(s["pos"])
