"""Latency models: ``L(model, batch, SM %, quota)`` and the measurements they come from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def load_measurements(path: str | Path) -> pd.DataFrame:
    """The one-schema measurement table of a file or directory of any supported kind
    (see ``hasim.perf.measurements``)."""
    from hasim.perf.measurements import load_measurements as _load

    return _load(path)


_OPERATOR_EXPORTS = ("KernelModel", "default_kernel_model", "load_operator_model")


def __getattr__(name: str) -> Any:
    """Lazy exports of :mod:`hasim.perf.operators` (per-kernel durations)."""
    if name in _OPERATOR_EXPORTS:
        from hasim.perf import operators

        return getattr(operators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["KernelModel", "default_kernel_model", "load_measurements", "load_operator_model"]
