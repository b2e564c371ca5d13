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
        if target.is_file() and not force and sha256sum(target) == wf.sha256:
            out.append(target)
            continue
        if not wf.url:
            raise WeightsError(f"{info.display}: {wf.name} has no official download URL; {how_to_get(info, wf)}")
        try:
            with atomic_path(target) as tmp:
                with urllib.request.urlopen(wf.url, timeout=60) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
                got = sha256sum(tmp)
                if got != wf.sha256:
                    raise WeightsError(f"{info.display}: {wf.name} from {wf.url} has sha256 {got}, expected {wf.sha256}; not saved")
        except WeightsError:
            raise
        except (OSError, ValueError) as e:
            raise WeightsError(f"{info.display}: cannot download {wf.name} from {wf.url}: {e}") from None
        out.append(target)
    return out


def load_state_dict(path: str | os.PathLike, key: str | None = None) -> dict:
    """``torch.load`` a checkpoint on CPU (weights only), optionally taking ``ckpt[key]``."""
    import pickle

    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({e.__class__.__name__}: {str(e).splitlines()[0][:200]})") from None
    if key is not None:
        if not isinstance(sd, dict) or key not in sd:
            raise WeightsError(f"{path}: expected a dict with key {key!r}, found {type(sd).__name__} with keys {list(sd)[:5] if isinstance(sd, dict) else '-'}")
        sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: expected a state_dict, found {type(sd).__name__}")
    return sd


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
        raise WeightsError(f"{source}: checkpoint does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
