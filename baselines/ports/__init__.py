"""Native PyTorch ports of published fusion networks (one module per method).

Each module defines ``ENTRIES`` (list of MethodInfo) and a ``build`` factory; the network definitions are
written from the papers and the checkpoints' shapes, and each reproduces the method's official inference
protocol (see ``shared/reference/outputs/README.md``).
"""
from __future__ import annotations

import importlib

PORT_MODULES = ("ifcnn", "densefuse", "didfuse", "seafusion", "tardal", "lrrnet", "datfuse", "sdnet", "metafusion", "cddfuse", "murf")


def _collect():
    out = []
    for name in PORT_MODULES:
        out.extend(importlib.import_module(f"{__name__}.{name}").ENTRIES)
    return out


ENTRIES = _collect()
