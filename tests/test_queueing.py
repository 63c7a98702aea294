"""Analytic checks: M/M/c against Erlang C and M/D/1 against Pollaczek-Khinchine."""

from __future__ import annotations

from math import factorial

import numpy as np
import pytest

from hasim.autoscale.static import StaticAutoscaler, StaticConfig
from hasim.workload.base import FunctionSpec, Workload
from tests.simkit import StubLatency, simulate


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    """Mean wait in queue (s) of M/M/c."""
    a = lam / mu
    rho = a / c
    top = a**c / factorial(c) / (1 - rho)
    p_wait = top / (sum(a**k / factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam)


def pk_wait(lam: float, service: float) -> float:
    """Mean wait in queue (s) of M/D/1."""
    rho = lam * service
    return lam * service**2 / (2 * (1 - rho))


def mean_wait(lam: float, service: float, c: int, dist: str, n: int, seeds: range) -> float:
    waits = []
    for seed in seeds:
        rng = np.random.default_rng(1000 + seed)
        arr = np.cumsum(rng.exponential(1 / lam, n))
        w = Workload([FunctionSpec("f", "m", 10.0)], {"f": arr}, float(arr[-1]) + 1e-9)
        auto = StaticAutoscaler(StaticConfig(pods=c), 1)
        _, req = simulate(
            w,
            auto,
            latency=StubLatency(service, dist),
            seed=seed,
            max_batch=1,
            overhead=0.0,
            drain=2000.0,
        )
        assert (req["status"] == "completed").all()
        waits.append(req["wait"].to_numpy())
    return float(np.concatenate(waits).mean())


@pytest.mark.parametrize("lam,service,c", [(7.0, 0.2, 2), (2.4, 1.0, 4)])
def test_mmc_matches_erlang_c(lam, service, c):
    got = mean_wait(lam, service, c, "exponential", 400_000, range(4))
    want = erlang_c_wait(lam, 1 / service, c)
    assert got == pytest.approx(want, rel=0.02)


def test_md1_matches_pollaczek_khinchine():
    got = mean_wait(7.0, 0.1, 1, "deterministic", 400_000, range(3))
    assert got == pytest.approx(pk_wait(7.0, 0.1), rel=0.02)
