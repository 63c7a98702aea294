"""Latency-model kinds by name: config dataclass + builder, and dispatch on ``cfg.kind``.

* ``compact``: the offline default, a fitted per-model law (:mod:`hasim.perf.compact`).
* ``rapp_table``: the measured RaPP V100 table, interpolated (needs ``hasim data fetch``).
* ``synthetic``: a resource-blind service-time law for tests (:mod:`hasim.perf.synthetic`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import is_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hasim.errors import InputError
from hasim.perf.base import LatencyModel
from hasim.perf.compact import CompactConfig, build_compact
from hasim.perf.rapp_table import RaPPTableConfig, build_rapp_table
from hasim.perf.synthetic import SyntheticConfig, build_synthetic

PERF_KINDS: dict[str, tuple[type, Callable[[Any], LatencyModel]]] = {
    "compact": (CompactConfig, build_compact),
    "rapp_table": (RaPPTableConfig, build_rapp_table),
    "synthetic": (SyntheticConfig, build_synthetic),
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
    if isinstance(cfg, cls):
        return cfg
    if is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = OmegaConf.structured(cfg)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), cfg)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        where = f"perf.{key}" if key else "perf config"
        raise InputError(
            f"{where}: {str(exc).splitlines()[0]}",
            expected=f"the fields of {cls.__name__}",
        ) from exc


def build_latency_model(cfg: Any) -> LatencyModel:
    """Build the latency model of kind ``cfg.kind`` (dataclass instance, dict or DictConfig)."""
    _, builder = PERF_KINDS[_kind_of(cfg)]
    return builder(perf_config(cfg))
