"""Latency-model kinds by name: config dataclass + builder, and dispatch on ``cfg.kind``.

* ``compact``: the offline default, a fitted per-model law (:mod:`hasim.perf.compact`).
* ``rapp_table``: the measured RaPP V100 table, interpolated (needs ``hasim data fetch``).
* ``synthetic``: a resource-blind service-time law for tests (:mod:`hasim.perf.synthetic`).
* ``rapp``: our trained predictor (LightGBM on a physics prior, :mod:`hasim.perf.rapp`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig

from hasim.config.typed import to_typed
from hasim.errors import InputError
from hasim.perf.base import LatencyModel
from hasim.perf.compact import CompactConfig, build_compact
from hasim.perf.rapp import RaPPConfig
from hasim.perf.rapp import build as build_rapp
from hasim.perf.rapp_table import RaPPTableConfig, build_rapp_table
from hasim.perf.synthetic import SyntheticConfig, build_synthetic

PERF_KINDS: dict[str, tuple[type, Callable[[Any], LatencyModel]]] = {
    "compact": (CompactConfig, build_compact),
    "rapp_table": (RaPPTableConfig, build_rapp_table),
    "synthetic": (SyntheticConfig, build_synthetic),
    "rapp": (RaPPConfig, build_rapp),
}


def _kind_of(cfg: Any) -> str:
    kind = cfg.get("kind") if isinstance(cfg, Mapping | DictConfig) else getattr(cfg, "kind", None)
    if kind not in PERF_KINDS:
        raise InputError(
            f"unknown perf kind {kind!r}", expected="one of " + ", ".join(sorted(PERF_KINDS))
        )
    return str(kind)


def perf_config(cfg: Any) -> Any:
    """The typed config dataclass for ``cfg`` (a dataclass, dict or DictConfig with ``kind``).

    Missing fields take their defaults; unknown fields or values of the wrong type raise
    InputError naming ``perf.<field>``.
    """
    cls, _ = PERF_KINDS[_kind_of(cfg)]
    return to_typed(cfg, cls, "perf")


def build_latency_model(cfg: Any) -> LatencyModel:
    """Build the latency model of kind ``cfg.kind`` (dataclass instance, dict or DictConfig)."""
    _, builder = PERF_KINDS[_kind_of(cfg)]
    return builder(perf_config(cfg))
