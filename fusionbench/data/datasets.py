"""Paired-image datasets: folder layouts, named datasets, and ``data check`` reports.

A :class:`PairedDataset` is a list of :class:`Pair` (stem, first source ``a``, second source ``b``)
plus the folders of published fused outputs that come with it. ``a``/``b`` follow the Fuser
contract (see :mod:`fusionbench.registry`): a = IR / CT-PET-SPECT / near-focus / under-exposed,
b = VIS / MRI / far-focus / over-exposed.

:func:`open_dataset` takes a registered name (``fusionbench data list``) or a folder in any of the
common layouts; folder names are matched case-insensitively:

==================  ==========================================  =====
layout              subfolders (a / b)                          task
==================  ==========================================  =====
roadscene           cropinfrared/ + crop_LR_visible/            ivif
llvip               infrared/ + visible/ (optionally /test)     ivif
ir-vi               ir/ + vi/ or vis/ (MSRS, M3FD, TNO, VIFB,    ivif
                    ../shared/data, CDDFuse test_img/TNO)
medical             CT/, PET/, SPECT/ or CT_PET_SPECT/ + MRI/   mif
multi-focus         near/ + far/                                mfif
multi-exposure      under/ (ue/) + over/ (oe/)                  meif
generic             A/ + B/, src1/ + src2/, source_1/+source_2/  (task=)
==================  ==========================================  =====

``fused/<Method>/`` beside the source folders holds published outputs (``PairedDataset.published``).
When the modality folders hold no images but a ``test/`` split (MSRS, LLVIP), that split is used
(``split=`` picks another). ``a=``/``b=`` name the two subfolders explicitly for anything else.
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import DataError, ImageReadError, UsageError, did_you_mean
from ..io import IMAGE_EXTS, list_images, pair_folders

#: the fusion tasks: the one list that the method registry, the datasets and the CLI choices use
TASKS = ("ivif", "mif", "mfif", "meif")


@dataclass(frozen=True)
class Pair:
    """One source pair: ``a`` is the first source (IR / CT-PET-SPECT / near / under), ``b`` the second."""

    stem: str
    a: Path
    b: Path


@dataclass
class PairedDataset:
    """Pairs of registered source images and the published fused outputs that come with them."""

    name: str
    task: str
    a_label: str
    b_label: str
    root: Path
    pairs: list[Pair]
    published: dict[str, Path] = field(default_factory=dict)  # method display name -> folder
    a_dir: Path | None = None
    b_dir: Path | None = None
    layout: str = ""
    unpaired: dict[str, list[str]] = field(default_factory=dict)  # label -> stems with no counterpart
    notes: list[str] = field(default_factory=list)
    description: str = ""
    subset_of: str = ""  # name of the full dataset when this is a subset

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    def __getitem__(self, key: int | str) -> Pair:
        if isinstance(key, str):
            for p in self.pairs:
                if p.stem == key:
                    return p
            raise KeyError(f"{self.name}: no pair with stem {key!r}")
        return self.pairs[key]

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.pairs]

    def subset(self, stems: Iterable[str], name: str | None = None) -> PairedDataset:
        """The pairs with the given stems, in the given order (duplicates dropped).

        Raises :class:`DataError` naming the stems that are not in the dataset.
        """
        by_stem = {p.stem: p for p in self.pairs}
        wanted = list(dict.fromkeys(str(s) for s in stems))
        absent = [s for s in wanted if s not in by_stem]
        if absent:
            shown = ", ".join(absent[:10]) + (f" (+{len(absent) - 10} more)" if len(absent) > 10 else "")
            raise DataError(f"{self.name}: subset names {len(absent)} stem(s) not in the dataset ({self.root}): {shown}")
        if not wanted:
            raise DataError(f"{self.name}: empty subset")
        return replace(self, name=name or f"{self.name}[{len(wanted)}]", pairs=[by_stem[s] for s in wanted],
                       unpaired={}, notes=list(self.notes), subset_of=self.subset_of or self.name)


# ---------------------------------------------------------------------------------------------
# layouts

@dataclass(frozen=True)
class _Layout:
    name: str
    a_names: tuple[str, ...]
    b_names: tuple[str, ...]
    a_label: str
    b_label: str
    task: str | None  # None: generic, task from the caller (default ivif)


_LAYOUTS = (
    _Layout("roadscene", ("cropinfrared",), ("crop_lr_visible",), "ir", "vi", "ivif"),
    _Layout("llvip", ("infrared",), ("visible",), "ir", "vi", "ivif"),
    _Layout("ir-vi", ("ir", "inf", "infrared_images"), ("vi", "vis", "visible_images"), "ir", "vi", "ivif"),
    _Layout("medical", ("ct",), ("mri", "mr"), "ct", "mri", "mif"),
    _Layout("medical", ("pet",), ("mri", "mr"), "pet", "mri", "mif"),
    _Layout("medical", ("spect",), ("mri", "mr"), "spect", "mri", "mif"),
    _Layout("medical", ("ct_pet_spect",), ("mri", "mr"), "ct_pet_spect", "mri", "mif"),
    _Layout("multi-focus", ("near", "near_focus"), ("far", "far_focus"), "near", "far", "mfif"),
    _Layout("multi-exposure", ("under", "ue", "underexposed", "under_exposure"),
            ("over", "oe", "overexposed", "over_exposure"), "under", "over", "meif"),
    _Layout("generic", ("a",), ("b",), "a", "b", None),
    _Layout("generic", ("src1", "source1", "source_1"), ("src2", "source2", "source_2"), "src1", "src2", None),
)

_SPLITS = ("test", "val", "eval")


def _subdirs(folder: Path) -> dict[str, Path]:
    """lower-case name -> subfolder (hidden ones skipped)."""
    try:
        return {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    except OSError as e:
        raise DataError(f"{folder}: cannot list folder ({e})") from None


def _has_images(folder: Path) -> bool:
    try:
        return any(p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") for p in folder.iterdir())
    except OSError:
        return False


def _find(subs: dict[str, Path], names: Iterable[str]) -> Path | None:
    for n in names:
        if n in subs:
            return subs[n]
    return None


def _resolve_split(a_dir: Path, b_dir: Path, split: str | None, notes: list[str]) -> tuple[Path, Path]:
    """Descend into ``<mod>/<split>/`` when the modality folders hold splits instead of images (LLVIP)."""
    if split is None and (_has_images(a_dir) or _has_images(b_dir)):
        return a_dir, b_dir
    sa, sb = _subdirs(a_dir), _subdirs(b_dir)
    common = sorted(set(sa) & set(sb))
    if split is not None:
        if split.lower() not in common:
            raise DataError(f"{a_dir.parent}: no split {split!r} in both {a_dir.name}/ and {b_dir.name}/ "
                            f"(found: {', '.join(common) or 'none'})")
        return sa[split.lower()], sb[split.lower()]
    for s in _SPLITS:
        if s in common and _has_images(sa[s]):
            notes.append(f"using the {s!r} split ({a_dir.name}/{sa[s].name}, {b_dir.name}/{sb[s].name}); split= picks another")
            return sa[s], sb[s]
    raise DataError(f"{a_dir}: no images ({', '.join(IMAGE_EXTS)})"
                    + (f"; splits found: {', '.join(common)} (pass split=NAME)" if common else ""))


def detect_layout(root: Path) -> tuple[_Layout, Path, Path] | None:
    """The first known layout whose two subfolders exist in ``root`` (case-insensitive), else None."""
    subs = _subdirs(root)
    medical_hits = [lay for lay in _LAYOUTS if lay.name == "medical" and _find(subs, lay.a_names) and _find(subs, lay.b_names)]
    if len(medical_hits) > 1:
        raise DataError(f"{root}: several medical modalities beside MRI ({', '.join(hit.a_label.upper() for hit in medical_hits)}); "
                        "pass a=<folder> (e.g. a=CT) to choose one")
    for lay in _LAYOUTS:
        a, b = _find(subs, lay.a_names), _find(subs, lay.b_names)
        if a is not None and b is not None:
            return lay, a, b
    return None


def _published_dirs(root: Path) -> dict[str, Path]:
    subs = _subdirs(root)
    fused = subs.get("fused")
    if fused is None:
        return {}
    return {p.name: p for p in sorted(fused.iterdir()) if p.is_dir() and not p.name.startswith(".") and _has_images(p)}


def open_folder(root: str | os.PathLike, *, name: str | None = None, task: str | None = None,
                a: str | None = None, b: str | None = None, split: str | None = None,
                a_label: str | None = None, b_label: str | None = None, strict: bool = False) -> PairedDataset:
    """Open a folder in one of the known layouts (see module docstring).

    ``a``/``b`` name the two source subfolders explicitly (relative to ``root``); ``task`` overrides
    the task the layout implies (required information for the generic A/B layout, default "ivif").
    Stems present on one side only are recorded in ``unpaired`` (``strict=True`` raises instead).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise UsageError(f"{root}: no such folder")
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    if task is not None and task not in TASKS:
        raise UsageError(f"task {task!r}: use one of {', '.join(TASKS)}")
    notes: list[str] = []
    if a or b:
        if not (a and b):
            raise UsageError("give both a= and b= (the two source subfolders)")
        subs = _subdirs(root)
        dirs = []
        for s in (a, b):
            p = root / s
            if not p.is_dir():
                p = subs.get(s.lower(), p)
            if not p.is_dir():
                raise UsageError(f"{root / s}: no such folder")
            dirs.append(p)
        a_dir, b_dir = dirs
        layout_name = "explicit"
        lay_task = None
        la, lb = a_label or Path(a).name.lower(), b_label or Path(b).name.lower()
    else:
        found = detect_layout(root)
        if found is None:
            # a split folder above the modality folders (MSRS: test/ir, test/vi)
            subs = _subdirs(root)
            chosen = None
            for s in ([split.lower()] if split else list(_SPLITS)):
                if s in subs and detect_layout(subs[s]) is not None:
                    chosen = subs[s]
                    break
            if chosen is None:
                shown = ", ".join(sorted(p.name for p in _subdirs(root).values())) or "none"
                raise DataError(
                    f"{root}: cannot recognise the layout (subfolders: {shown}). Expected ir/+vi/, "
                    "cropinfrared/+crop_LR_visible/, infrared/+visible/, MRI/ with CT/, PET/ or SPECT/, near/+far/, "
                    "under/+over/, or A/+B/; or pass a=<folder> b=<folder>")
            if split is None:
                notes.append(f"using the {chosen.name!r} split folder")
            root = chosen
            found = detect_layout(root)
            split = None
        lay, a_dir, b_dir = found  # type: ignore[misc]
        layout_name, lay_task = lay.name, lay.task
        la, lb = a_label or lay.a_label, b_label or lay.b_label
        a_dir, b_dir = _resolve_split(a_dir, b_dir, split, notes)
    if task is None:
        task = lay_task
        if task is None:
            task = "ivif"
            notes.append("task not implied by the folder names; assuming ivif (pass task=...)")
    if la == lb:
        la, lb = f"{la}_a", f"{lb}_b"
    pairing = pair_folders({la: a_dir, lb: b_dir}, skip_missing=not strict)
    unpaired = {}
    if pairing.missing.get(lb):
        unpaired[la] = pairing.missing[lb]  # in a, missing from b
    if pairing.missing.get(la):
        unpaired[lb] = pairing.missing[la]
    pairs = [Pair(s, *pairing.files[s]) for s in pairing.stems]
    published = _published_dirs(root)
    return PairedDataset(name=name or root.name, task=task, a_label=la, b_label=lb, root=root.resolve(), pairs=pairs,
                         published=published, a_dir=a_dir.resolve(), b_dir=b_dir.resolve(), layout=layout_name,
                         unpaired=unpaired, notes=notes)


# ---------------------------------------------------------------------------------------------
# named datasets

@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset name. ``rel`` is relative to :func:`fusionbench.paths.data_dir` (or to the
    bundled sample when ``bundled``)."""

    name: str
    rel: str
    task: str
    a: str
    b: str
    a_label: str
    b_label: str
    pairs: int
    description: str
    subset: str = ""  # file (relative to the data folder) listing the stems
    bundled: bool = False

    def location(self) -> Path | None:
        if self.bundled:
            from ..paths import SAMPLE_DIR

            return SAMPLE_DIR
        from ..paths import data_dir

        d = data_dir()
        return (d / self.rel) if d is not None else None

    @property
    def available(self) -> bool:
        loc = self.location()
        if loc is None or not loc.is_dir():
            return False
        subs = _subdirs(loc)
        return self.a.lower() in subs and self.b.lower() in subs


DATASETS: dict[str, DatasetEntry] = {e.name: e for e in (
    DatasetEntry("sample", "", "ivif", "ir", "vi", "ir", "vi", 6,
                 "bundled TNO sample (6 small pairs, CC BY 4.0); works without ../shared", bundled=True),
    DatasetEntry("tno", "tno", "ivif", "ir", "vi", "ir", "vi", 42, "TNO-42 (Linfeng-Tang/Image-Fusion), 10 published methods"),
    DatasetEntry("tno25", "tno", "ivif", "ir", "vi", "ir", "vi", 25, "CDDFuse 25-pair TNO test split (as TNO-42 stems)",
                 subset="tno/subsets/cddfuse_test25.csv"),
    DatasetEntry("roadscene", "roadscene", "ivif", "ir", "vi", "ir", "vi", 221, "RoadScene 221 aligned pairs"),
    DatasetEntry("roadscene50", "roadscene", "ivif", "ir", "vi", "ir", "vi", 50, "CDDFuse 50-pair RoadScene test split",
                 subset="roadscene/subsets/cddfuse_test50.txt"),
    DatasetEntry("msrs", "msrs", "ivif", "ir", "vi", "ir", "vi", 19, "19 MSRS test-split pairs, 640x480"),
    DatasetEntry("vifb", "vifb", "ivif", "ir", "vi", "ir", "vi", 21, "VIFB 21 pairs with 14 published methods"),
    DatasetEntry("llvip", "llvip", "ivif", "ir", "vi", "ir", "vi", 3, "3 LLVIP pairs (DRMF val split, 640x512)"),
    DatasetEntry("ifcnn_iv", "ifcnn_iv", "ivif", "ir", "vi", "ir", "vi", 14, "14 IR/VIS pairs from uzeful/IFCNN"),
    DatasetEntry("mri_ct", "medical/mri_ct", "mif", "ct", "mri", "ct", "mri", 21, "Harvard MRI-CT (CDDFuse test set)"),
    DatasetEntry("mri_pet", "medical/mri_pet", "mif", "pet", "mri", "pet", "mri", 42, "Harvard MRI-PET (CDDFuse test set)"),
    DatasetEntry("mri_spect", "medical/mri_spect", "mif", "spect", "mri", "spect", "mri", 73,
                 "Harvard MRI-SPECT (CDDFuse test set)"),
    DatasetEntry("ifcnn_md", "medical/ifcnn_md", "mif", "src1", "src2", "src1", "src2", 8, "8 medical pairs from uzeful/IFCNN"),
    DatasetEntry("refusion_mif", "refusion_samples/mif", "mif", "ct_pet_spect", "mri", "pet", "mri", 2,
                 "ReFusion MIF test cases (MRI-PET)"),
    DatasetEntry("refusion_mfif", "refusion_samples/mfif", "mfif", "near", "far", "near", "far", 2,
                 "ReFusion MFIF test cases"),
    DatasetEntry("refusion_meif", "refusion_samples/meif", "meif", "under", "over", "under", "over", 2,
                 "ReFusion MEIF test cases"),
)}


def list_datasets() -> list[dict]:
    """Every registered name with its task, expected pair count, location and availability."""
    out = []
    for e in DATASETS.values():
        loc = e.location()
        out.append({"name": e.name, "task": e.task, "a": e.a_label, "b": e.b_label, "pairs": e.pairs,
                    "available": e.available, "path": str(loc) if loc is not None else None,
                    "subset": e.subset or None, "description": e.description})
    return out


def read_subset_file(path: str | os.PathLike) -> list[str]:
    """Stems listed in a subset file.

    ``.txt``: one stem per line, ``#`` comments. ``.csv`` with a header: the column ``tno_stem`` /
    ``roadscene_stem`` / ``stem`` (the first column whose name ends in ``stem`` and is not the
    source-repo's own numbering), otherwise the first column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: subset file not found")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")))
        if not rows:
            raise DataError(f"{path}: empty subset file")
        header = [h.strip().lower() for h in rows[0]]
        col = None
        for pref in ("tno_stem", "roadscene_stem", "stem"):
            if pref in header:
                col = header.index(pref)
                break
        if col is None:
            stems_cols = [i for i, h in enumerate(header) if h.endswith("_stem")]
            col = stems_cols[-1] if stems_cols else 0
        stems = [r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip()]
    else:
        stems = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not stems:
        raise DataError(f"{path}: no stems listed")
    return stems


def _data_missing_message(e: DatasetEntry) -> str:
    from ..paths import data_dir

    d = data_dir()
    env = os.environ.get("FUSIONBENCH_DATA")
    if d is None:
        where = (f"FUSIONBENCH_DATA={env} is not a folder" if env else
                 "no data folder found (looked for FUSIONBENCH_DATA, then ../shared/data beside the current "
                 "directory and beside the source tree)")
        return f"dataset {e.name!r} is not available: {where}. Set FUSIONBENCH_DATA to a folder holding {e.rel}/{e.a}/ and {e.rel}/{e.b}/"
    return (f"dataset {e.name!r} is not available: {d / e.rel} has no {e.a}/ and {e.b}/ folders "
            f"(data folder {d}{' from FUSIONBENCH_DATA' if env else ''}; set FUSIONBENCH_DATA to change it)")


def open_dataset(spec: str | os.PathLike, *, task: str | None = None, subset=None, strict: bool = False,
                 a: str | None = None, b: str | None = None, split: str | None = None) -> PairedDataset:
    """A registered dataset name (``list_datasets()``) or a folder in a known layout.

    ``subset`` is a list of stems or a subset file (see :func:`read_subset_file`). A registered name
    whose data is absent raises :class:`DataError` saying where it was looked for; an unknown name that
    is not a folder raises :class:`~fusionbench.errors.UnknownNameError` with suggestions.
    """
    s = os.fspath(spec)
    key = s.strip().lower()
    entry = DATASETS.get(key)
    explicit_path = ("/" in s or os.sep in s) and Path(s).is_dir()
    if entry is not None and not explicit_path:
        loc = entry.location()
        if loc is None or not entry.available:
            raise DataError(_data_missing_message(entry))
        ds = open_folder(loc, name=entry.name, task=task or entry.task, a=entry.a, b=entry.b,
                         a_label=entry.a_label, b_label=entry.b_label, strict=strict)
        ds.layout = "bundled sample" if entry.bundled else "shared data"
        ds.description = entry.description
        if entry.subset:
            from ..paths import data_dir

            ds = ds.subset(read_subset_file(data_dir() / entry.subset), name=entry.name)  # type: ignore[operator]
            ds.subset_of = next((e.name for e in DATASETS.values() if e.rel == entry.rel and not e.subset), entry.rel)
    else:
        p = Path(s).expanduser()
        if not p.exists():
            looks_like_path = any(c in s for c in "/\\.~") or os.sep in s
            if looks_like_path:
                raise UsageError(f"{s}: no such folder")
            raise did_you_mean("dataset", s, list(DATASETS))
        ds = open_folder(p, task=task, a=a, b=b, split=split, strict=strict)
    if subset is not None:
        stems = read_subset_file(subset) if isinstance(subset, (str, os.PathLike)) else list(subset)
        ds = ds.subset(stems, name=ds.name)
    return ds


# ---------------------------------------------------------------------------------------------
# data check

def _bit_depth(mode: str) -> str:
    return {"1": "1", "I;16": "16", "I;16B": "16", "I;16L": "16", "I;16N": "16", "I": "32", "F": "32f"}.get(mode, "8")


def _inspect(path: Path) -> dict:
    """size (w, h), mode class, bit depth and format of one file; ``error`` when it cannot be decoded."""
    from PIL import Image

    from ..io import read_image

    info: dict = {"ext": path.suffix.lower()}
    try:
        with Image.open(path) as im:
            info["bits"] = _bit_depth(im.mode)
            info["size"] = im.size
        arr = read_image(path)
    except ImageReadError as e:
        info["error"] = str(e)
        return info
    except Exception as e:  # PIL raises many types for broken headers
        info["error"] = f"{path}: cannot decode image ({e.__class__.__name__}: {e})"
        return info
    info["size"] = (arr.shape[1], arr.shape[0])
    if arr.shape[2] == 1:
        info["mode"] = "grey"
    elif (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
        info["mode"] = "grey-stored-as-RGB"
    else:
        info["mode"] = "colour"
    return info


def _fmt_size(wh) -> str:
    return f"{wh[0]}x{wh[1]}"


def check_dataset(ds: PairedDataset, published: bool = True) -> dict:
    """Decode every file of ``ds`` and report pairs, sizes, modes, bit depths and problems.

    ``problems`` lists every unpaired file, size mismatch and unreadable file by name; it is empty
    for a clean dataset. Published outputs are checked too (stems with no source pair, size
    mismatches, unreadable files count as problems; sources without an output do not).
    """
    problems: list[str] = []
    sides = {ds.a_label: {"folder": str(ds.a_dir), "files": 0, "modes": Counter(), "bit_depth": Counter(), "formats": Counter()},
             ds.b_label: {"folder": str(ds.b_dir), "files": 0, "modes": Counter(), "bit_depth": Counter(), "formats": Counter()}}
    for label, stems in ds.unpaired.items():
        other = ds.b_label if label == ds.a_label else ds.a_label
        for s in stems:
            problems.append(f"unpaired: {label}/{s} has no counterpart in {other}/")
    sizes: Counter = Counter()
    src_size: dict[str, tuple[int, int]] = {}
    for p in ds.pairs:
        got = {}
        for label, path in ((ds.a_label, p.a), (ds.b_label, p.b)):
            info = _inspect(path)
            side = sides[label]
            side["files"] += 1
            side["formats"][info["ext"]] += 1
            if "bits" in info:
                side["bit_depth"][info["bits"]] += 1
            if "error" in info:
                problems.append(f"unreadable: {info['error']}")
                continue
            side["modes"][info["mode"]] += 1
            got[label] = info["size"]
        if len(got) == 2:
            sa, sb = got[ds.a_label], got[ds.b_label]
            if sa != sb:
                problems.append(f"size mismatch: {p.stem}: {ds.a_label} {_fmt_size(sa)} ({p.a.name}) vs "
                                f"{ds.b_label} {_fmt_size(sb)} ({p.b.name})")
            sizes[_fmt_size(sa)] += 1
            src_size[p.stem] = sa
    pub_report = {}
    if published:
        for method, folder in ds.published.items():
            try:
                files = list_images(folder)
            except (DataError, UsageError) as e:
                problems.append(f"published {method}: {e}")
                continue
            extra = sorted(set(files) - set(ds.stems))
            rep = {"folder": str(folder), "files": len(files), "matched": 0, "without_output": 0,
                   "outside_subset": len(extra) if ds.subset_of else 0, "modes": Counter()}
            for s, f in files.items():
                if s not in ds.stems:
                    continue
                info = _inspect(f)
                if "error" in info:
                    problems.append(f"unreadable: {info['error']}")
                    continue
                rep["matched"] += 1
                rep["modes"][info["mode"]] += 1
                if s in src_size and info["size"] != src_size[s]:
                    problems.append(f"size mismatch: published {method}/{f.name} is {_fmt_size(info['size'])}, "
                                    f"sources are {_fmt_size(src_size[s])}")
            rep["without_output"] = sum(1 for s in ds.stems if s not in files)
            if not ds.subset_of:  # a subset's published folders hold the whole set
                for s in extra:
                    problems.append(f"published {method}/{files[s].name} has no source pair")
            rep["modes"] = dict(rep["modes"])
            pub_report[method] = rep
    for side in sides.values():
        for k in ("modes", "bit_depth", "formats"):
            side[k] = dict(side[k])
    return {
        "name": ds.name, "root": str(ds.root), "layout": ds.layout, "task": ds.task,
        "a_label": ds.a_label, "b_label": ds.b_label, "pairs": len(ds.pairs),
        "sizes": {"distinct": len(sizes), "most_common": [[k, v] for k, v in sizes.most_common(5)]},
        "sides": sides, "published": pub_report, "notes": list(ds.notes), "problems": problems,
    }


def format_check(report: dict) -> str:
    """Human-readable text of a :func:`check_dataset` report."""
    lines = [f"dataset   {report['name']}  ({report['root']}; layout {report['layout']}; task {report['task']})",
             f"pairs     {report['pairs']}"]
    sz = report["sizes"]
    common = ", ".join(f"{k} ({v})" for k, v in sz["most_common"][:3])
    lines.append(f"sizes     {sz['distinct']} distinct" + (f"; most common {common}" if common else ""))
    for label, side in report["sides"].items():
        modes = ", ".join(f"{k} {v}" for k, v in sorted(side["modes"].items())) or "-"
        bits = ", ".join(f"{k}-bit {v}" for k, v in sorted(side["bit_depth"].items())) or "-"
        fmts = ", ".join(f"{k} {v}" for k, v in sorted(side["formats"].items()))
        lines.append(f"{label:<9} {side['files']} files in {side['folder']}: {modes}; {bits}; {fmts}")
    for method, rep in report["published"].items():
        lines.append(f"fused     {method}: {rep['files']} files, {rep['matched']} matched"
                     + (f", {rep['without_output']} pair(s) without output" if rep["without_output"] else ""))
    for n in report["notes"]:
        lines.append(f"note      {n}")
    if report["problems"]:
        lines.append(f"problems  {len(report['problems'])}:")
        lines.extend(f"  - {p}" for p in report["problems"])
    else:
        lines.append("problems  none")
    return "\n".join(lines)
