"""Exception types. Every error a user can cause is one of these, with a one-line message.

The CLI turns ``UsageError`` into exit code 2 and every other ``FusionBenchError`` into exit
code 1, printing only the message (never a traceback).
"""
from __future__ import annotations


class FusionBenchError(Exception):
    """Base class; ``str(err)`` is a complete one-line message for the user."""

    exit_code = 1


class UsageError(FusionBenchError):
    """Bad command-line usage or an unknown name (exit code 2)."""

    exit_code = 2


class DataError(FusionBenchError):
    """A problem with input data: unreadable, missing counterpart, size mismatch (exit code 1)."""


class OutputError(FusionBenchError):
    """An output location cannot be written (permission denied, read-only, full): names the path."""


class InputError(DataError):
    """A tensor given to a public entry point breaks the input contract (:mod:`fusionbench.contract`)."""


class ShapeError(InputError):
    """Not an (H, W), (C, H, W) or (N, C, H, W) image with 1 or 3 channels."""


class DTypeError(InputError):
    """Not a tensor, or of a dtype images cannot have (bool, complex)."""


class DataRangeError(InputError):
    """A float image without ``data_range`` (or a ``data_range`` that does not apply)."""


class ValueRangeError(InputError):
    """Values outside the stated range, or NaN / inf."""


class ImageTooSmallError(InputError):
    """Images below the minimum size of a metric or a method."""


class ImageReadError(DataError):
    """An image file cannot be decoded (corrupt, truncated, unsupported mode)."""


class SizeMismatchError(InputError):
    """Images that must share a size do not."""


class MetricUndefinedError(DataError):
    """A metric is not defined for this input as its reference computes it (the reference itself fails,
    e.g. the CDDFuse evaluator's VIF on some images with a side under 41 pixels). ``metric`` names it."""

    def __init__(self, message: str, metric: str = ""):
        super().__init__(message)
        self.metric = metric


class UnknownNameError(UsageError, KeyError):
    """An unknown metric, preset, method or dataset name. The message includes suggestions."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0] if self.args else ""


class WeightsError(FusionBenchError):
    """Checkpoint missing, corrupt, of the wrong shape or failing its sha256 check."""


def did_you_mean(kind: str, name: str, choices) -> UnknownNameError:
    """Build an :class:`UnknownNameError` with close-match suggestions (case-insensitive)."""
    import difflib

    choices = sorted(set(choices))
    lower = {c.lower(): c for c in choices}
    near = difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(lower[n] for n in near)}?" if near else ""
    shown = ", ".join(choices[:30]) + (" ..." if len(choices) > 30 else "")
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {shown}")
