"""The static policy: a fixed number of pods per function, created at t = 0."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hasim.autoscale.base import Action, ClusterView, CreatePod
from hasim.autoscale.kit import require
from hasim.cluster.pod import validate_pod_request


@dataclass
class StaticConfig:
    """pods: pods per function; sm: SM partition (%); quota: time quota (fraction);
    batch: max batch per pod (null: cluster.max_batch); active_only: skip functions
    with no arrivals at all; exclusive: each pod holds a whole GPU; prewarmed: the pods
    exist before the run starts (no cold start), as a static deployment would."""

    kind: str = "static"
    pods: int = 1
    sm: float = 100.0
    quota: float = 1.0
    batch: int | None = None
    active_only: bool = True
    exclusive: bool = False
    prewarmed: bool = True


class StaticAutoscaler:
    """Creates ``pods`` pods of every function at t = 0 and never changes them."""

    period_s: float | None = None

    def __init__(self, cfg: StaticConfig, default_batch: int) -> None:
        self.cfg = cfg
        self.batch = default_batch if cfg.batch is None else cfg.batch
        require(cfg, [(cfg.pods >= 0, "pods", "an integer >= 0")])
        if not cfg.exclusive:
            validate_pod_request(cfg.sm, cfg.quota, self.batch)
        else:
            validate_pod_request(100.0, 1.0, self.batch)

    def decide(self, now: float, view: ClusterView) -> list[Action]:
        if now > 0:
            return []
        c = self.cfg
        fns = view.functions()
        chosen = view.workload_arrivals() > 0 if c.active_only else np.ones(len(fns), bool)
        return [
            CreatePod(
                fns[i].name, c.sm, c.quota, self.batch, exclusive=c.exclusive, warm=c.prewarmed
            )
            for i in np.flatnonzero(chosen).tolist()
            for _ in range(c.pods)
        ]
