"""Small building blocks for core-simulation tests (no data files needed)."""

from __future__ import annotations

import numpy as np

from hasim.config.schema import ClusterConfig, ColdStartConfig, DistConfig, SimConfig
from hasim.sim import metrics
from hasim.sim.engine import Simulation
from hasim.workload.base import FunctionSpec, Workload

ZERO = DistConfig("constant", 0.0)


def no_cold_start() -> ColdStartConfig:
    """Every start-up phase 0 s (fresh objects: a test may change one)."""

    def zero() -> DistConfig:
        return DistConfig("constant", 0.0)

    return ColdStartConfig(zero(), zero(), zero(), zero(), 0.0, zero())


class StubLatency:
    """Latency = mean (+ per_item per extra request); exponential or deterministic noise."""

    name = "stub"

    def __init__(self, mean: float, dist: str = "exponential", per_item: float = 0.0) -> None:
        self.mean, self.dist, self.per_item = mean, dist, per_item

    def knows(self, model: str) -> bool:
        return model != "unknown_model"

    def mean_latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        return (self.mean + self.per_item * (batch - 1)) / quota

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(1.0, n) if self.dist == "exponential" else np.ones(n)


def poisson_workload(rates: dict[str, float], duration: float, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    arrivals = {}
    for name, rate in rates.items():
        n = rng.poisson(rate * duration)
        arrivals[name] = np.sort(rng.uniform(0, duration, n))
    return Workload([FunctionSpec(n, "resnet50", 1.0) for n in rates], arrivals, duration)


def simulate(
    workload: Workload,
    autoscaler,
    *,
    latency=None,
    seed: int = 0,
    drain: float = 100.0,
    contention: bool = True,
    **cluster,
) -> tuple:
    """Run ``workload`` under ``autoscaler`` (no cold starts, no timeout unless given;
    ``cluster``: ClusterConfig fields; ``contention``: sim.contention)."""
    cc = ClusterConfig(**{"cold_start": no_cold_start(), "timeout": None, **cluster})
    scfg = SimConfig(progress=False, check_invariants=True, drain=drain, contention=contention)
    sim = Simulation(workload, latency or StubLatency(0.05), autoscaler, cc, scfg, seed).run()
    req = metrics.requests_frame(sim, metrics.slos(sim))
    return sim, req
