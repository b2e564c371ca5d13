"""Training configuration: YAML files checked against ``configs/default.yaml``.

A config is a nested plain dict (YAML-serialisable) with the sections of ``default.yaml``. A user file
may give any subset of keys; missing keys take the defaults, an unknown key is a
:class:`fusionbench.errors.UsageError` naming it (with a did-you-mean), a value of the wrong kind too.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import yaml

from fusionbench.errors import UsageError, did_you_mean

__all__ = ["default_config", "load_config", "merge", "apply_overrides", "fingerprint", "diff", "dump",
           "DEFAULT_PATH", "IGNORED_FOR_IDENTITY"]

DEFAULT_PATH = Path(__file__).resolve().parent / "configs" / "default.yaml"
# Keys that may change between a run and its resumption: they do not change the trajectory.
IGNORED_FOR_IDENTITY = {("train", "max_steps"), ("train", "num_threads"), ("train", "max_memory_gb"),
                        ("train", "ckpt_every_steps"), ("train", "world_size"),
                        ("meta", "collapse_threshold"), ("meta", "collapse_order_gap"), ("meta", "collapse_window")}
# Keys whose value is free-form (constructor keyword arguments).
_FREE = {("model", "fusion"), ("model", "recon"), ("model", "proposal")}
# Keys with a null default and the kinds they accept when set.
_NULLABLE = {
    ("data", "root"): (str,), ("data", "a"): (str,), ("data", "b"): (str,),
    ("data", "exclude"): (str, list),
    ("train", "max_steps"): (int,), ("train", "num_threads"): (int,),
    ("meta", "inner_lr"): (int, float), ("meta", "p_lr"): (int, float),
    ("train", "max_memory_gb"): (int, float), ("meta", "collapse_threshold"): (int, float),
}
_CHOICES = {
    ("train", "scheduler"): ("step", "cosine", "none"),
    ("meta", "inner_loss"): ("separate", "joint"),
    ("meta", "p_optimizer"): ("adam", "normalized_sgd"),
    ("meta", "p_norm"): ("global", "per_net"),
    ("meta", "p_grad"): ("outer", "outer+inner"),
    ("meta", "p_schedule"): ("constant", "follow"),
    ("meta", "prior"): ("none", "brighter_stronger"),
    ("loss", "c_grad_ramp"): ("linear", "constant"),
}


def _read_yaml(path: Path, what: str) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        msg = str(e).replace("\n", " ")
        raise UsageError(f"{path}: not valid YAML ({msg})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a config must be a mapping of sections, found {type(data).__name__}")
    return data


def default_config() -> dict:
    return _read_yaml(DEFAULT_PATH, "the default config")


def _kind_ok(value, default, key) -> bool:
    if key in _FREE:
        return isinstance(value, dict)
    if value is None:
        return key in _NULLABLE or default is None
    if key in _NULLABLE:
        kinds = _NULLABLE[key]
        if isinstance(value, bool):
            return False
        return isinstance(value, kinds) or (float in kinds and isinstance(value, int))
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def _coerce_float(v, default, key):
    """PyYAML reads ``1e-4`` (no dot) as a string: accept it for float keys."""
    wants_float = isinstance(default, float) or float in _NULLABLE.get(key, ())
    if wants_float and isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def merge(base: dict, user: dict, source: str = "config") -> dict:
    """``base`` updated by ``user`` after checking every key and value kind. Returns a new dict."""
    out = copy.deepcopy(base)
    for section, values in user.items():
        if section not in base:
            raise did_you_mean(f"config section ({source})", str(section), base)
        if not isinstance(values, dict):
            raise UsageError(f"{source}: section {section!r} must be a mapping, found {type(values).__name__}")
        for k, v in values.items():
            key = (section, k)
            if k not in base[section]:
                raise did_you_mean(f"config key ({source})", f"{section}.{k}",
                                   [f"{section}.{n}" for n in base[section]])
            v = _coerce_float(v, base[section][k], key)
            if not _kind_ok(v, base[section][k], key):
                want = type(base[section][k]).__name__ if base[section][k] is not None else \
                    "/".join(t.__name__ for t in _NULLABLE.get(key, (object,)))
                raise UsageError(f"{source}: {section}.{k} = {v!r} has the wrong type (expected {want})")
            if key in _CHOICES and v not in _CHOICES[key]:
                raise UsageError(f"{source}: {section}.{k} = {v!r}; choose one of {', '.join(_CHOICES[key])}")
            if key in _FREE:  # constructor keyword arguments: the user's keys update the defaults
                out[section][k] = {**out[section][k], **copy.deepcopy(v)}
            else:
                out[section][k] = copy.deepcopy(v)
    _check_values(out, source)
    return out


def _check_values(cfg: dict, source: str) -> None:
    def pos(sec, k, allow_zero=False, integer=False):
        v = cfg[sec][k]
        if v is None:
            return
        if v < 0 or (v == 0 and not allow_zero):
            raise UsageError(f"{source}: {sec}.{k} must be {'>= 0' if allow_zero else '> 0'}, got {v}")
    for sec, k in [("data", "crop"), ("data", "repeats"), ("train", "epochs"), ("train", "batch_size"),
                   ("train", "lr"), ("meta", "meta_every"), ("validation", "every_epochs"),
                   ("train", "step_size"), ("train", "max_steps"), ("train", "num_threads"),
                   ("meta", "inner_lr"), ("meta", "p_lr"), ("train", "max_memory_gb"),
                   ("meta", "collapse_window"), ("meta", "collapse_order_gap")]:
        pos(sec, k)
    for sec, k in [("data", "val_count"), ("train", "ckpt_every_steps"), ("meta", "prior_steps"), ("train", "weight_decay"),
                   ("train", "min_lr"), ("loss", "c_int"), ("loss", "c_grad"), ("loss", "c_r_int"),
                   ("loss", "c_r_grad")]:
        pos(sec, k, allow_zero=True)
    ct = cfg["meta"]["collapse_threshold"]
    if ct is not None and not 0.5 < ct <= 1:
        raise UsageError(f"{source}: meta.collapse_threshold must lie in (0.5, 1] or be null, got {ct}")
    r = cfg["data"]["meta_test_ratio"]
    if not 0 < r < 1:
        raise UsageError(f"{source}: data.meta_test_ratio must lie in (0, 1), got {r}")
    ex = cfg["data"]["exclude"]
    if isinstance(ex, str) and ex != "auto":
        cfg["data"]["exclude"] = [ex]


def load_config(path: str | Path | None = None) -> dict:
    """The default config, updated by the YAML file at ``path`` (if given)."""
    base = default_config()
    if path is None:
        return merge(base, {}, "default config")
    return merge(base, _read_yaml(Path(path), "config"), str(path))


def apply_overrides(cfg: dict, **kv) -> dict:
    """Command-line overrides ``section__key=value`` (None values are skipped)."""
    user: dict = {}
    for name, v in kv.items():
        if v is None:
            continue
        sec, key = name.split("__", 1)
        user.setdefault(sec, {})[key] = v
    return merge(cfg, user, "command line")


def _identity(cfg: dict) -> dict:
    out = copy.deepcopy(cfg)
    for sec, k in IGNORED_FOR_IDENTITY:
        out.get(sec, {}).pop(k, None)
    return out


def fingerprint(cfg: dict) -> str:
    """sha256 of the config without the keys that may change on resume (``IGNORED_FOR_IDENTITY``)."""
    blob = json.dumps(_identity(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def diff(a: dict, b: dict) -> list[str]:
    """``section.key: a -> b`` for every identity key that differs."""
    ia, ib = _identity(a), _identity(b)
    out = []
    for sec in sorted(set(ia) | set(ib)):
        sa, sb = ia.get(sec, {}), ib.get(sec, {})
        for k in sorted(set(sa) | set(sb)):
            if sa.get(k, "<missing>") != sb.get(k, "<missing>"):
                out.append(f"{sec}.{k}: {sa.get(k, '<missing>')!r} -> {sb.get(k, '<missing>')!r}")
    return out


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
