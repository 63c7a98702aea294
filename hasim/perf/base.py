"""The latency protocol every performance model implements.

Units: SM partition ``sm_pct`` in percent of the GPU's SMs (0, 100]; time quota
``quota`` as a fraction of the token window (0, 1]; ``batch`` >= 1 requests;
latencies in **seconds**.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class LatencyModel(Protocol):
    """Mean GPU latency of one batch plus a multiplicative noise process."""

    name: str

    def knows(self, model: str) -> bool:
        """True when ``model`` can be predicted."""
        ...

    def mean_latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        """Mean latency (s) of one inference of ``batch`` requests at (sm_pct, quota)."""
        ...

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` i.i.d. multiplicative factors with mean 1 applied to sampled latencies."""
        ...


def check_point(batch: int, sm_pct: float, quota: float) -> None:
    """Raise InputError unless batch >= 1, 0 < sm_pct <= 100 and 0 < quota <= 1."""
    from hasim.errors import InputError

    if int(batch) != batch or batch < 1:
        raise InputError(f"batch size {batch!r} is invalid", expected="an integer >= 1")
    if not 0 < sm_pct <= 100:
        raise InputError(f"SM partition {sm_pct!r} % is invalid", expected="a percent in (0, 100]")
    if not 0 < quota <= 1:
        raise InputError(f"time quota {quota!r} is invalid", expected="a fraction in (0, 1]")


def batch_table(
    model: LatencyModel, name: str, sm_pct: float, quota: float, max_batch: int
) -> list[float]:
    """Mean latencies (s) for batch sizes 0..max_batch (index = batch; index 0 is 0.0)."""
    return [0.0] + [model.mean_latency_s(name, b, sm_pct, quota) for b in range(1, max_batch + 1)]
