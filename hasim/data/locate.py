"""Resolve data files inside the traces and data directories, with a fix-it message when absent.

Layout (mirrors ``../shared``): ``shared/traces/X`` lives at ``traces_dir()/X``;
``shared/measurements/X`` at ``data_dir()/measurements/X``; ``shared/validation/X`` at
``data_dir()/validation/X``.
"""

from __future__ import annotations

from pathlib import Path

from hasim.errors import MissingDataError
from hasim.paths import FETCH_HINT, data_dir, traces_dir


def trace_path(relative: str | Path, *, must_exist: bool = True) -> Path:
    """Path of a trace file given relative to the traces dir (absolute paths pass through)."""
    p = Path(relative)
    if not p.is_absolute():
        p = traces_dir() / p
    if must_exist and not p.exists():
        raise MissingDataError(p, FETCH_HINT)
    return p


def data_path(relative: str | Path, *, must_exist: bool = True) -> Path:
    """Path of a measurement/validation file relative to the data dir.

    Absolute paths pass through."""
    p = Path(relative)
    if not p.is_absolute():
        p = data_dir() / p
    if must_exist and not p.exists():
        raise MissingDataError(p, FETCH_HINT)
    return p
