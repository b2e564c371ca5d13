"""Finding, downloading, verifying and loading checkpoints.

Resolution order for each :class:`~fusionbench.registry.WeightFile` of a method:

1. ``--weights PATH``: a file (methods with a single file) or a folder holding
   ``<method>/<file>`` or ``<file>``;
2. ``$FUSIONBENCH_WEIGHTS/<method>/<file>`` (a folder laid out like ``shared/weights``);
3. the user cache, ``<cache>/weights/<method>/<file>`` (where ``fusionbench weights download`` puts it);
4. weights bundled inside an installed package (``WeightFile.bundled``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

from .errors import WeightsError
from .io import atomic_path
from .paths import cache_dir
from .registry import MethodInfo, WeightFile


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def weights_cache() -> Path:
    return cache_dir() / "weights"


def _bundled_path(spec: str) -> Path | None:
    if not spec:
        return None
    pkg, _, rel = spec.partition(":")
    from importlib.resources import files

    try:
        p = Path(str(files(pkg) / rel))
    except ModuleNotFoundError:
        return None
    return p if p.is_file() else None


def candidates(info: MethodInfo, wf: WeightFile, override: str | os.PathLike | None = None) -> list[Path]:
    out: list[Path] = []
    if override:
        o = Path(override)
        if o.is_file():
            out.append(o)
        else:
            out += [o / info.name / wf.name, o / wf.name]
    env = os.environ.get("FUSIONBENCH_WEIGHTS")
    if env:
        out.append(Path(env) / info.name / wf.name)
    out.append(weights_cache() / info.name / wf.name)
    b = _bundled_path(wf.bundled)
    if b:
        out.append(b)
    return out


def how_to_get(info: MethodInfo, wf: WeightFile) -> str:
    where = f"put it at $FUSIONBENCH_WEIGHTS/{info.name}/{wf.name} or {weights_cache() / info.name / wf.name}, or pass --weights"
    if wf.url:
        return f"run `fusionbench weights download {info.name}` ({wf.url}) or {where}"
    src = f" (from {wf.origin})" if wf.origin else ""
    return f"no official download URL; get {wf.name}{src} and {where}"


def resolve(info: MethodInfo, task: str | None = None, override: str | os.PathLike | None = None) -> dict[str, Path]:
    """Map each weight file name of ``info`` (for ``task``) to an existing path, or raise :class:`WeightsError`."""
    files = info.weights_for(task)
    if override and Path(override).is_file() and len(files) != 1:
        raise WeightsError(f"{info.display} needs {len(files)} weight files; pass a folder to --weights, not a file")
    found: dict[str, Path] = {}
    for wf in files:
        for c in candidates(info, wf, override):
            if c.is_file():
                found[wf.name] = c
                break
        else:
            raise WeightsError(f"{info.display}: weights file {wf.name} not found; {how_to_get(info, wf)}")
    return found


def status(info: MethodInfo, task: str | None = None) -> tuple[str, str]:
    """("runnable" | "needs weights" | "results-folder only", detail) for listings."""
    if info.factory is None:
        return "results-folder only", info.results_howto
    try:
        resolve(info, task)
    except WeightsError as e:
        return "needs weights", str(e)
    return "runnable", ""


def download(info: MethodInfo, task: str | None = None, dest: Path | None = None, force: bool = False) -> list[Path]:
    """Fetch every weight file of ``info`` with a URL into the cache, verifying sha256.

    Works with http(s) and file:// URLs. The file is written atomically: a failed or corrupt
    download leaves nothing behind.
    """
    dest = dest or weights_cache()
    files = info.weights_for(task) if task else info.weights
    if not files:
        raise WeightsError(f"{info.display} has no weights to download")
    out = []
    for wf in files:
        target = dest / info.name / wf.name
        if target.is_file() and not force and (not wf.sha256 or sha256sum(target) == wf.sha256):
            out.append(target)
            continue
        if not wf.url:
            raise WeightsError(f"{info.display}: {wf.name} has no official download URL; {how_to_get(info, wf)}")
        try:
            with atomic_path(target) as tmp:
                with urllib.request.urlopen(wf.url, timeout=60) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
                got = sha256sum(tmp)
                if wf.sha256 and got != wf.sha256:  # ("" = the registry cannot pin this file's hash)
                    raise WeightsError(f"{info.display}: {wf.name} from {wf.url} has sha256 {got}, expected {wf.sha256}; not saved")
        except WeightsError:
            raise
        except (OSError, ValueError) as e:
            raise WeightsError(f"{info.display}: cannot download {wf.name} from {wf.url}: {e}") from None
        out.append(target)
    return out


def load_state_dict(path: str | os.PathLike, key: str | None = None) -> dict:
    """``torch.load`` a checkpoint on CPU (weights only), optionally taking ``ckpt[key]``."""
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load fails on damaged files with all kinds of errors
        raise WeightsError(f"{path}: {describe_unreadable(path, e)}") from None
    if key is not None:
        if not isinstance(sd, dict) or key not in sd:
            raise WeightsError(f"{path}: expected a dict with key {key!r}, found {type(sd).__name__} with keys {list(sd)[:5] if isinstance(sd, dict) else '-'}")
        sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: expected a state_dict, found {type(sd).__name__}")
    return sd


def describe_unreadable(path: str | os.PathLike, e: BaseException) -> str:
    """What is wrong with a checkpoint file ``torch.load`` (weights only) could not read, in one line.

    Never passes on torch's advice to load with ``weights_only=False``: that would run arbitrary code from
    the file. Says whether the file is missing, empty, not a PyTorch checkpoint at all, a truncated or
    damaged archive, or a pickle holding more than tensors; and when the file name is a registered weight
    file whose sha256 differs, says that too.
    """
    import zipfile

    path = Path(path)
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a folder, not a checkpoint file"
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes): an interrupted download? fetch it again"
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK"):  # torch's zip format
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            what = f"damaged archive (member {bad} fails its CRC)" if bad else None
        except zipfile.BadZipFile:
            what = f"truncated or damaged PyTorch archive ({size} bytes): an interrupted download? fetch it again"
        if what is None:
            what = _weights_only_reason(e)
    elif head[:1] == b"\x80":  # a (legacy) pickle
        what = _weights_only_reason(e)
        if what.startswith("not readable"):
            what = f"truncated or damaged pickle ({size} bytes)"
    elif head.startswith(b"\x89HDF") or head[:4] in (b"\x00\x00\x00\x00",):
        what = "not a PyTorch checkpoint (an HDF5/TensorFlow file?)"
    else:
        shown = head.decode("ascii", "replace") if all(32 <= c < 127 for c in head) else head.hex()
        what = f"not a PyTorch checkpoint (it starts with {shown!r})"
    mismatch = _registry_sha_mismatch(path)
    return what + (f"; {mismatch}" if mismatch else "")


def _weights_only_reason(e: BaseException) -> str:
    msg = str(e)
    if "weights_only" in msg or "Unsupported global" in msg or "GLOBAL" in msg:
        import re

        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg)
        obj = f" ({m.group(1)})" if m else ""
        return (f"holds Python objects besides tensors{obj}; fusionbench loads weights only (never arbitrary "
                f"pickled code): save the model's state_dict() instead")
    return f"not readable ({e.__class__.__name__}: {msg.splitlines()[0][:160] if msg else ''})"


def _registry_sha_mismatch(path: Path) -> str | None:
    """'sha256 ... does not match the registry's ... for METHOD' when the file name is a registered weight file."""
    try:
        from .registry import list_methods

        for info in list_methods():
            for wf in info.weights:
                if wf.name == path.name and wf.sha256:
                    got = sha256sum(path)
                    if got != wf.sha256:
                        return (f"its sha256 {got[:12]}... does not match the registry's {wf.sha256[:12]}... for "
                                f"{info.display}'s {wf.name} (`fusionbench weights download {info.name}` fetches it)")
                    return None
    except Exception:  # noqa: BLE001 - a diagnosis must never hide the original problem
        return None
    return None


def load_into(model, state: dict, source: str | os.PathLike, remap=None) -> None:
    """Load ``state`` into ``model`` strictly, after an optional explicit key remap.

    Any missing or unexpected key or shape mismatch raises one :class:`WeightsError` naming the
    file, the first offending keys and the expected and found shapes.
    """
    if remap is not None:
        state = remap(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [(k, tuple(own[k].shape), tuple(state[k].shape)) for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or shapes:
        parts = []
        if shapes:
            parts.append("shape mismatch " + "; ".join(f"{k}: expected {e}, found {f}" for k, e, f in shapes[:3]))
        if missing:
            parts.append(f"missing keys {missing[:3]}" + (f" (+{len(missing) - 3})" if len(missing) > 3 else ""))
        if extra:
            parts.append(f"unexpected keys {extra[:3]}" + (f" (+{len(extra) - 3})" if len(extra) > 3 else ""))
        mismatch = _registry_sha_mismatch(Path(source)) if Path(str(source)).is_file() else None
        raise WeightsError(f"{source}: checkpoint does not fit {type(model).__name__}: " + "; ".join(parts)
                           + (f"; {mismatch}" if mismatch else ""))
    model.load_state_dict(state, strict=True)
