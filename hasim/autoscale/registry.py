"""Autoscaler kinds: ``kind -> (config dataclass, factory(cfg, cluster_cfg))``.

Add your own policy by registering it here (or with ``register``) and adding a YAML
file under ``conf/autoscaler/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hasim.autoscale import fastgshare, fastgshare_deployed, has, kpa, parvagpu, timeshare
from hasim.autoscale.base import Autoscaler
from hasim.autoscale.static import StaticAutoscaler, StaticConfig
from hasim.config.schema import ClusterConfig

Factory = Callable[[Any, ClusterConfig], Autoscaler]

AUTOSCALER_KINDS: dict[str, tuple[type, Factory]] = {
    "static": (
        StaticConfig,
        lambda cfg, cluster: StaticAutoscaler(cfg, cluster.max_batch, cluster),
    ),
    "fastgshare": (fastgshare.FaSTGShareConfig, fastgshare.build),
    "fastgshare_deployed": (
        fastgshare_deployed.DeployedFaSTGShareConfig,
        fastgshare_deployed.build,
    ),
    "has": (has.HASConfig, has.build),
    "kpa": (kpa.KPAConfig, kpa.build),
    "parvagpu": (parvagpu.ParvaGPUConfig, parvagpu.build),
    "timeshare": (timeshare.TimeshareConfig, timeshare.build),
}


def register(kind: str, schema: type, factory: Factory) -> None:
    """Make a user-defined autoscaler selectable as ``autoscaler.kind=<kind>``."""
    AUTOSCALER_KINDS[kind] = (schema, factory)
