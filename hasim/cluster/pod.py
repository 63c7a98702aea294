"""Pods: one function instance holding an SM partition, a time quota and GPU memory."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from hasim.config.schema import ColdStartConfig, DistConfig
from hasim.errors import InputError

PHASES: tuple[str, ...] = (
    "scheduling",
    "container_start",
    "cuda_context",
    "model_load",
    "readiness",
)


class PodState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    REMOVED = "removed"


@dataclass(eq=False)
class Pod:
    """A function instance.

    sm_pct: SM partition in percent (fixed for the pod's life); quota: time quota as a
    fraction of the token window (changeable); batch: max batch size; mem_mb: GPU memory.
    Times are simulated seconds; ``phase_s`` holds each cold-start phase's duration.
    gpu_id/row: where it is placed (-1: not placed; row -1: a rectangle-placed pod);
    alloc_since: s since when its current allocation (SM, quota) is held (the cost basis;
    NaN: holds nothing yet, a pod waiting for its MIG instance).
    mig_uid: the MIG instance holding the pod (-1: none); then ``sm_pct`` is percent of
    the instance, ``mig_frac`` the instance's cost share of the GPU (compute slices / 7)
    and ``mig_sm_frac`` its SM share for the latency law (SMs / the GPU's SMs).
    """

    id: int
    function: str
    model: str
    sm_pct: float
    quota: float
    batch: int
    mem_mb: float
    created_at: float
    exclusive: bool = False
    state: PodState = PodState.STARTING
    gpu_id: int = -1
    row: int = -1
    ready_at: float = math.nan
    delete_at: float = math.nan
    removed_at: float = math.nan
    phase_s: dict[str, float] = field(default_factory=dict)
    alloc_since: float = math.nan
    mig_uid: int = -1
    mig_frac: float = 1.0
    mig_sm_frac: float = 1.0

    @property
    def share(self) -> float:
        """GPU share held, as a fraction of one GPU: (sm/100) x quota (1 when exclusive); in
        a MIG instance: mig_frac x (sm/100) x quota."""
        if self.exclusive:
            return 1.0
        if self.mig_uid >= 0:
            return self.mig_frac * self.sm_pct / 100.0 * self.quota
        return self.sm_pct / 100.0 * self.quota

    @property
    def sm_effective_pct(self) -> float:
        """SM share (% of the whole GPU) the latency law computes this pod with."""
        return self.sm_pct * self.mig_sm_frac if self.mig_uid >= 0 else self.sm_pct


def validate_pod_request(sm_pct: float, quota: float, batch: int) -> None:
    """Reject impossible pod configurations with a clear message."""
    if not 0 < sm_pct <= 100:
        raise InputError(f"SM partition {sm_pct} % is invalid", expected="a percent in (0, 100]")
    if not 0 < quota <= 1:
        raise InputError(f"quota {quota} is invalid", expected="a fraction in (0, 1]")
    if int(batch) != batch or batch < 1:
        raise InputError(f"batch size {batch} is invalid", expected="an integer >= 1")


def sample_duration(d: DistConfig, rng: np.random.Generator) -> float:
    """One draw (s) from a duration distribution."""
    kind = d.dist
    if kind == "constant":
        return max(0.0, d.mean)
    if kind == "exponential":
        return float(rng.exponential(d.mean)) if d.mean > 0 else 0.0
    if kind == "uniform":
        return float(rng.uniform(d.low, d.high))
    if kind == "lognormal":
        if d.mean <= 0:
            return 0.0
        sigma2 = math.log1p(d.cv**2)
        return float(rng.lognormal(math.log(d.mean) - sigma2 / 2, math.sqrt(sigma2)))
    if kind == "normal":
        return max(0.0, float(rng.normal(d.mean, d.cv * d.mean)))
    raise InputError(
        f"unknown duration distribution {kind!r}",
        expected="constant, exponential, uniform, lognormal or normal",
    )


def sample_cold_start(
    cfg: ColdStartConfig, weights_mb: float, rng: np.random.Generator
) -> dict[str, float]:
    """Durations (s) of each start-up phase, in PHASES order."""
    out: dict[str, float] = {}
    for name in PHASES:
        value = sample_duration(getattr(cfg, name), rng)
        if name == "model_load" and cfg.load_bandwidth_mb_s > 0:
            value += weights_mb / cfg.load_bandwidth_mb_s
        out[name] = value
    return out
