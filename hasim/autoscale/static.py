"""The static policy: a fixed number of pods per function, created at t = 0."""

from __future__ import annotations

from dataclasses import dataclass

from hasim.autoscale.base import Action, ClusterView, CreatePod
from hasim.cluster.pod import validate_pod_request
from hasim.errors import InputError


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
        if cfg.pods < 0:
            raise InputError(f"autoscaler.pods={cfg.pods}", expected="an integer >= 0")
        if not cfg.exclusive:
            validate_pod_request(cfg.sm, cfg.quota, self.batch)
        else:
            validate_pod_request(100.0, 1.0, self.batch)

    def decide(self, now: float, view: ClusterView) -> list[Action]:
        if now > 0:
            return []
        actions: list[Action] = []
        for f in view.functions():
            if self.cfg.active_only and view.total_arrivals(f.name) == 0:
                continue
            for _ in range(self.cfg.pods):
                actions.append(
                    CreatePod(
                        f.name,
                        self.cfg.sm,
                        self.cfg.quota,
                        self.batch,
                        exclusive=self.cfg.exclusive,
                        warm=self.cfg.prewarmed,
                    )
                )
        return actions
