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

PERF_KINDS: dict[str, tuple[type, Callable[[Any, str | None], LatencyModel]]] = {
    "compact": (CompactConfig, build_compact),
    "rapp_table": (RaPPTableConfig, lambda cfg, gpu=None: build_rapp_table(cfg)),
    "synthetic": (SyntheticConfig, lambda cfg, gpu=None: build_synthetic(cfg)),
    "rapp": (RaPPConfig, lambda cfg, gpu=None: build_rapp(cfg)),
}
"""kind -> (config dataclass, builder(cfg, gpu)): ``gpu`` is the cluster's GPU (a model
with data for it uses them; others build for their own GPU, see ``hasim.perf.transfer``)."""


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


def build_latency_model(cfg: Any, gpu: str | None = None) -> LatencyModel:
    """Build the latency model of kind ``cfg.kind`` (dataclass instance, dict or DictConfig)
    with data for ``gpu`` where it has some (no check: see :func:`build_for_gpu`)."""
    _, builder = PERF_KINDS[_kind_of(cfg)]
    return builder(perf_config(cfg), gpu)


def build_for_gpu(cfg: Any, gpu: str, models: list[str]) -> tuple[LatencyModel, list[str]]:
    """The latency model for a cluster of ``gpu`` serving ``models`` plus its warnings;
    refuses a GPU without data unless ``perf.transfer`` names a rule
    (:func:`hasim.perf.transfer.bind_to_gpu`)."""
    from hasim.perf.transfer import bind_to_gpu

    _, builder = PERF_KINDS[_kind_of(cfg)]
    return bind_to_gpu(perf_config(cfg), builder, gpu, models)
