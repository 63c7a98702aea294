"""Where hasim finds its configs, traces and data.

Environment variables override the defaults:

* ``HASIM_TRACES_DIR``: trace files (default ``<project>/traces``)
* ``HASIM_DATA_DIR``: measurements and validation runs (default ``<project>/data``)
* ``HASIM_MIRROR``: a local directory laid out like ``../shared`` used by ``hasim data fetch``
* ``HASIM_CONF_DIR``: the Hydra config directory (default ``<project>/conf``)
* ``HASIM_RESULTS_DIR``: where runs are written (default ``<cwd>/results``)
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent


def _env_path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else default


def traces_dir() -> Path:
    """Directory holding trace files (``HASIM_TRACES_DIR`` or ``<project>/traces``)."""
    return _env_path("HASIM_TRACES_DIR", PROJECT_DIR / "traces")


def data_dir() -> Path:
    """Measurements and validation runs (``HASIM_DATA_DIR`` or ``<project>/data``)."""
    return _env_path("HASIM_DATA_DIR", PROJECT_DIR / "data")


def conf_dir() -> Path:
    """Hydra config directory (``HASIM_CONF_DIR`` or ``<project>/conf``)."""
    return _env_path("HASIM_CONF_DIR", PROJECT_DIR / "conf")


def results_dir() -> Path:
    """Default results root (``HASIM_RESULTS_DIR`` or ``./results``)."""
    return _env_path("HASIM_RESULTS_DIR", Path.cwd() / "results")


FETCH_HINT = "hasim data fetch --mirror ../shared   (or: hasim data fetch, to download)"
