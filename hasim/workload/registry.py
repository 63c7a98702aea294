"""Workload kinds by name: config dataclass + builder, and dispatch on ``cfg.kind``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from omegaconf import DictConfig

from hasim.config.typed import to_typed
from hasim.errors import InputError
from hasim.workload.azure2019 import Azure2019Config, azure2019_workload
from hasim.workload.azure2021 import Azure2021Config, azure2021_workload
from hasim.workload.base import Workload
from hasim.workload.stages import StagesConfig, stages_workload
from hasim.workload.synthetic import (
    DiurnalConfig,
    GammaConfig,
    MMPPConfig,
    PoissonConfig,
    diurnal_workload,
    gamma_workload,
    mmpp_workload,
    poisson_workload,
)

WORKLOAD_KINDS: dict[str, tuple[type, Callable[[Any, np.random.Generator], Workload]]] = {
    "poisson": (PoissonConfig, poisson_workload),
    "gamma": (GammaConfig, gamma_workload),
    "mmpp": (MMPPConfig, mmpp_workload),
    "diurnal": (DiurnalConfig, diurnal_workload),
    "azure2019": (Azure2019Config, azure2019_workload),
    "azure2021": (Azure2021Config, azure2021_workload),
    "stages": (StagesConfig, stages_workload),
}


def _kind_of(cfg: Any) -> str:
    kind = cfg.get("kind") if isinstance(cfg, Mapping | DictConfig) else getattr(cfg, "kind", None)
    if kind not in WORKLOAD_KINDS:
        raise InputError(
            f"unknown workload kind {kind!r}", expected="one of " + ", ".join(WORKLOAD_KINDS)
        )
    return str(kind)


def workload_config(cfg: Any) -> Any:
    """The typed config dataclass for ``cfg`` (a dataclass, dict or DictConfig with ``kind``).

    Missing fields take their defaults; unknown fields or values of the wrong type raise
    InputError.
    """
    cls, _ = WORKLOAD_KINDS[_kind_of(cfg)]
    return to_typed(cfg, cls, "workload")


def build_workload(cfg: Any, rng: np.random.Generator) -> Workload:
    """Build the workload of kind ``cfg.kind`` (dataclass instance, dict or DictConfig)."""
    _, builder = WORKLOAD_KINDS[_kind_of(cfg)]
    return builder(workload_config(cfg), rng)
