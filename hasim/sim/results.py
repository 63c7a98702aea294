"""Write a run to ``<root>/<experiment>/<run>/`` atomically.

Everything is written into a hidden temporary sibling directory first, then renamed
into place, so a crash never leaves a half-written run and an existing run with the
same name is replaced only once the new one is complete.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

RESERVED_OVERRIDE_PREFIXES = ("output.", "sim.progress", "name=", "run=", "hydra")


def run_name(overrides: list[str] | None) -> str:
    """A readable, filesystem-safe run name from the overrides (``default`` when none)."""
    parts = [
        o.lstrip("+~")
        for o in (overrides or [])
        if not o.lstrip("+~").startswith(RESERVED_OVERRIDE_PREFIXES)
    ]
    if not parts:
        return "default"
    name = ",".join(sorted(parts))
    name = re.sub(r"[^A-Za-z0-9_.,=+-]", "-", name)
    if len(name) > 120:
        import hashlib

        name = name[:100] + "-" + hashlib.sha1(name.encode()).hexdigest()[:12]
    return name


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return value


def write_run(
    target: Path,
    frames: dict[str, pd.DataFrame],
    summary: dict[str, Any],
    config_yaml: str,
    figures: dict[str, Any] | None = None,
    files: dict[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write frames (Parquet), summary.json, config.yaml, figures and other files;
    atomically. ``files`` maps a file name to a writer called with its (temporary) path,
    e.g. ``{"trace.json": lambda p: write_chrome_trace(trace, p)}``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name, df in frames.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
        (tmp / "config.yaml").write_text(config_yaml)
        for name, fig in (figures or {}).items():
            fig.savefig(tmp / name, dpi=110)
        for name, write in (files or {}).items():
            write(tmp / name)
        old = None
        if target.exists():
            old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
