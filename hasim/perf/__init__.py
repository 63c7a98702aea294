"""Latency models: ``L(model, batch, SM %, quota)`` and the measurements they come from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def load_measurements(path: str | Path) -> pd.DataFrame:
    """The one-schema measurement table of a file or directory of any supported kind
    (see ``hasim.perf.measurements``)."""
    from hasim.perf.measurements import load_measurements as _load

    return _load(path)


__all__ = ["load_measurements"]
