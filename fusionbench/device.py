"""Device and dtype selection shared by every command."""
from __future__ import annotations

from .errors import UsageError


def pick_device(name: str = "auto"):
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: not a device (use auto, cpu, cuda or cuda:N)") from None


def pick_dtype(name: str = "auto"):
    """``--dtype``: a torch dtype, or None for ``auto`` (each metric preset's own default precision)."""
    import torch

    table = {"auto": None, "float32": torch.float32, "float64": torch.float64}
    if name not in table:
        raise UsageError(f"--dtype {name}: use auto, float32 or float64")
    return table[name]
