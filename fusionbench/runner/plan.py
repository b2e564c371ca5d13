"""Run planning: which methods take part in an eval run, on which dataset, and how.

:func:`build_plan` turns datasets, a method pattern and ``--results`` folders into a plan, one
``(dataset, [MethodRun, ...])`` per dataset, that :func:`fusionbench.runner.evaluate.run_eval`
executes. Per dataset and method supporting the dataset's task, the plan takes, in this order:

1. outputs given for it (``results``, keyed by registry or display name, case-insensitive);
2. the method itself when it has a factory and its weights resolve (:func:`fusionbench.weights.resolve`);
   the fuser is built once per (method, task) on first use, the weight files' sha256 go into the cache key;
3. the published outputs shipped with the dataset (``PairedDataset.published``) for a results-folder-only
   method;

and otherwise records why the method is skipped. Published outputs of methods the registry does not
know (with ``pattern`` 'all') and ``results`` folders under unknown names take part as they are.

:func:`split_skips` then tells the skips a user must hear about as errors (missing weights of a
method named exactly) from the ones that are only reported.

>>> from fusionbench.data import open_dataset
>>> plan, skipped = build_plan([open_dataset("sample")], "average", {}, "cpu")
>>> [(ds.name, [r.name for r in runs]) for ds, runs in plan]
[('sample', ['Average'])]
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UnknownNameError, WeightsError, did_you_mean
from ..registry import MethodInfo, get_method, list_methods
from ..weights import resolve, sha256sum
from .evaluate import MethodRun


def build_plan(datasets, pattern: str | None, results: dict | None, device, weights_override=None,
               options: dict | None = None) -> tuple[list, dict[str, str]]:
    """Decide, per dataset, which methods run natively, which use a results folder, and which are skipped.

    ``datasets``: :class:`~fusionbench.data.PairedDataset` list. ``pattern``: ``'all'``/None or
    comma-separated names and fnmatch patterns (:func:`fusionbench.registry.list_methods`).
    ``results``: ``{name: folder}`` of outputs made elsewhere. ``device``: where fusers are built.
    ``weights_override``: a folder searched first for checkpoints. ``options``: ``{method: {key: value}}``
    passed to the method's factory.

    Returns ``(plan, skipped)``: ``plan`` is ``[(dataset, [MethodRun, ...]), ...]`` in the order of
    ``datasets``; ``skipped`` maps a method (``"method [dataset]"`` when it runs on other datasets of
    the run) to the reason it cannot take part. Raises the "did you mean" error when a pattern names
    no registered method and no results are given.
    """
    infos = list_methods(pattern)
    if pattern and pattern != "all" and not infos and not results:
        raise did_you_mean("method", pattern, [m.name for m in list_methods()])
    fusers: dict = {}
    skipped: dict[tuple[str, str], str] = {}
    plan = []
    results = dict(results or {})
    for ds in datasets:
        runs = []
        names_here = set()
        for info in infos:
            if ds.task not in info.tasks:
                continue
            given = next((d for k, d in results.items() if k.lower() in (info.name, info.display.lower())), None)
            if given is not None:
                runs.append(MethodRun(info.display, info.name, results_dir=given))
            elif info.factory is not None:
                try:
                    paths = resolve(info, ds.task, weights_override)
                except WeightsError as e:
                    skipped.setdefault((info.display, ds.name), f"needs weights: {e}")
                    continue
                wsha = {n: sha256sum(p) for n, p in paths.items()}

                def factory(task, info=info, paths=paths):
                    key = (info.name, task)
                    if key not in fusers:
                        fusers[key] = info.build(weights=paths, device=device, task=task,
                                                 **(options or {}).get(info.name, {}))
                    return fusers[key]

                runs.append(MethodRun(info.display, info.name, fuser_factory=factory, weights=wsha))
            else:
                pub = _published(ds, info)
                if pub is None:
                    skipped.setdefault((info.display, ds.name), "results-folder only: no outputs given (--results "
                                       f"{info.name}=DIR); {info.results_howto}".strip())
                    continue
                runs.append(MethodRun(info.display, info.name, results_dir=pub))
            names_here.add(info.display.lower())
        # published outputs shipped with a dataset for methods the registry does not know
        if pattern in (None, "all"):
            for label, folder in sorted(getattr(ds, "published", {}).items()):
                if label.lower() not in names_here and not _known(label):
                    runs.append(MethodRun(label, label, results_dir=folder))
        for k, d in results.items():
            if not any(r.key == k.lower() or r.name.lower() == k.lower() for r in runs) and not _known(k):
                runs.append(MethodRun(k, k, results_dir=d))
        plan.append((ds, runs))
    return plan, _label_skips(skipped, plan)


def split_skips(skipped: dict[str, str], pattern: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """Split :func:`build_plan`'s skips into ``(skipped, errors)``.

    Missing weights of a method the user named exactly (not through 'all' or a wildcard) are an
    error: the user asked for that method. Every other skip stays a skip.
    """
    asked = asked_by_name(pattern)
    errors = {k: v for k, v in skipped.items() if k.split(" [")[0].lower() in asked and v.startswith("needs weights")}
    return {k: v for k, v in skipped.items() if k not in errors}, errors


def asked_by_name(pattern: str | None) -> set[str]:
    """Method names (lower case, as displayed or registered) that ``pattern`` names exactly, not through
    'all' or a wildcard; unknown names are left out."""
    if not pattern or pattern == "all":
        return set()
    out = set()
    for part in pattern.split(","):
        part = part.strip()
        if part and not any(c in part for c in "*?["):
            try:
                info = get_method(part)
            except UnknownNameError:
                continue
            out |= {info.name.lower(), info.display.lower()}
    return out


def _label_skips(skipped: dict, plan) -> dict[str, str]:
    """Key skips by method, or by "method [dataset]" when the method runs on other datasets of the run."""
    ran = {r.name for _, runs in plan for r in runs}
    out: dict[str, str] = {}
    for (name, ds), why in skipped.items():
        out.setdefault(f"{name} [{ds}]" if name in ran else name, why)
    return out


def _published(ds, info: MethodInfo) -> Path | None:
    """The dataset's published-outputs folder for ``info`` (matched by registry or display name), or None."""
    pub = getattr(ds, "published", {}) or {}
    for label, folder in pub.items():
        if label.lower() in (info.name, info.display.lower()):
            return folder
    return None


def _known(label: str) -> bool:
    """Whether ``label`` names a registered method (registry name or alias, case-insensitive)."""
    try:
        get_method(label)
        return True
    except UnknownNameError:
        return False
