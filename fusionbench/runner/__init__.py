"""Run folders: planning a run (:mod:`.plan`: which method runs on which dataset), the eval runner
(:mod:`.evaluate`), reading a run (:mod:`.rundir`), tables in every
registered format (:mod:`.tables`; :mod:`.report` re-exports both for older imports), figures
(:mod:`.figures`) and the score regression check (:mod:`.check`).

The helpers below are imported on first use, so ``import fusionbench.runner`` stays cheap::

    from fusionbench.runner import write_tables, write_figures, compare
    write_tables(run_dir)        # table_<dataset>.{csv,tex,md} and table_all.* for several datasets
    write_figures(run_dir)       # figures/grid_*, dist_*, ranks (.png at 300 dpi and .pdf)
"""
from __future__ import annotations

import importlib

_LAZY = {
    "build_plan": ".plan",
    "load_run": ".rundir",
    "render_table": ".tables", "write_tables": ".tables", "register_format": ".tables", "TableFormat": ".tables",
    "write_figures": ".figures", "qualitative_grid": ".figures", "distributions": ".figures", "rank_heatmap": ".figures",
    "compare": ".check", "update_baseline": ".check",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
