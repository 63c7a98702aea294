"""The static policy: a fixed number of pods per function, created at t = 0."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hasim.autoscale.base import Action, ClusterView, CreatePod
from hasim.autoscale.kit import require
from hasim.cluster.pod import validate_pod_request
from hasim.config.schema import ClusterConfig
from hasim.errors import InputError
from hasim.hardware import gpu_spec


@dataclass
class StaticConfig:
    """pods: pods per function; sm: SM partition (%); quota: time quota (fraction);
    batch: max batch per pod (null: cluster.max_batch); active_only: skip functions
    with no arrivals at all; exclusive: each pod holds a whole GPU; prewarmed: the pods
    exist before the run starts (no cold start), as a static deployment would.
    mig: a MIG profile (``3g.40gb``; null: none): each pod gets its own MIG instance of
    that profile (the cluster's GPU must have MIG); ``sm`` is then percent of the
    instance and the pod's GPU share is compute slices / 7 x sm / 100 x quota."""

    kind: str = "static"
    pods: int = 1
    sm: float = 100.0
    quota: float = 1.0
    batch: int | None = None
    active_only: bool = True
    exclusive: bool = False
    prewarmed: bool = True
    mig: str | None = None


class StaticAutoscaler:
    """Creates ``pods`` pods of every function at t = 0 and never changes them."""

    period_s: float | None = None

    def __init__(
        self, cfg: StaticConfig, default_batch: int, cluster: ClusterConfig | None = None
    ) -> None:
        self.cfg = cfg
        self.batch = default_batch if cfg.batch is None else cfg.batch
        require(cfg, [(cfg.pods >= 0, "pods", "an integer >= 0")])
        if cfg.mig is not None:
            if cfg.exclusive:
                raise InputError("autoscaler.mig with autoscaler.exclusive=true", expected="one")
            gpu = gpu_spec(cluster.gpu if cluster is not None else "V100")
            try:
                gpu.mig_profile(cfg.mig)
            except InputError as e:
                raise InputError(f"autoscaler.mig={cfg.mig!r}: {e}") from None
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
                fns[i].name,
                c.sm,
                c.quota,
                self.batch,
                exclusive=c.exclusive,
                warm=c.prewarmed,
                mig=c.mig,
            )
            for i in np.flatnonzero(chosen).tolist()
            for _ in range(c.pods)
        ]
