"""``synthetic``: a resource-blind latency model for tests and queueing sanity checks.

Every model name is known. The mean latency of a batch of ``b`` requests is
``mean + per_item * (b - 1)`` seconds, independent of the SM partition and the quota
(the point is a known service-time law, e.g. M/M/1 or M/D/1 when batches are 1). The
noise factors have mean 1: Exp(1) for ``exponential`` (so service times are
exponential with that mean), ones for ``deterministic``, lognormal with coefficient of
variation ``cv`` for ``lognormal``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hasim.perf.base import check_point
from hasim.perf.common import check_cfg, check_number, lognormal_noise

DISTRIBUTIONS = ("exponential", "deterministic", "lognormal")


@dataclass
class SyntheticConfig:
    """A fixed service-time law, blind to SM partition and quota."""

    kind: str = "synthetic"
    distribution: str = "exponential"  # "exponential" | "deterministic" | "lognormal"
    mean: float = 0.05  # s, mean latency of a batch of 1 request, > 0
    cv: float = 0.5  # coefficient of variation (std / mean) of the lognormal noise, >= 0
    per_item: float = 0.0  # s added per request beyond the first in a batch, >= 0


class SyntheticLatency:
    """LatencyModel with ``mean + per_item * (batch - 1)`` seconds and i.i.d. noise."""

    name = "synthetic"
    gpu = None  # resource-blind: the same latencies on every GPU

    def __init__(self, cfg: SyntheticConfig) -> None:
        check_cfg(
            cfg.distribution in DISTRIBUTIONS,
            "distribution",
            cfg.distribution,
            "one of " + ", ".join(DISTRIBUTIONS),
        )
        check_number("mean", cfg.mean, strict=True)
        check_number("cv", cfg.cv)
        check_number("per_item", cfg.per_item)
        self.cfg = cfg
        self.distribution = cfg.distribution
        self.mean = float(cfg.mean)
        self.per_item = float(cfg.per_item)
        self.cv = float(cfg.cv)

    def knows(self, model: str) -> bool:
        """Every model name is known."""
        return True

    def mean_latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        """``mean + per_item * (batch - 1)`` seconds; sm_pct (%) and quota are only checked."""
        check_point(batch, sm_pct, quota)
        return self.mean + self.per_item * (batch - 1)

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` mean-1 factors: Exp(1), ones, or lognormal with coefficient of variation cv."""
        if self.distribution == "exponential":
            return rng.exponential(1.0, size=n)
        if self.distribution == "deterministic":
            return np.ones(n)
        return lognormal_noise(rng, n, self.cv)


def build_synthetic(cfg: SyntheticConfig) -> SyntheticLatency:
    """Build the synthetic latency model from its config."""
    return SyntheticLatency(cfg)
