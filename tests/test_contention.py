"""Slot contention in batch mode (sim.contention): a batch whose function has more pods
busy on its GPU than the GPU runs at once waits for an SM slot in its last token window
(hasim.cluster.gateway.slot_wait_s), as the token scheduler makes it wait."""

from __future__ import annotations

import numpy as np
import pytest

import hasim
from hasim.cluster.gateway import slot_wait_s

BASE = [
    "sim.progress=false",
    "output.write=false",
    "output.quiet=true",
    "workload=poisson",
    "workload.rate=15",
    "workload.duration=60",
    "perf=compact",
    "cluster.overhead=0",
    "cluster.max_batch=1",
    "cluster.nodes=1",
    "autoscaler=static",
    "autoscaler.pods=2",
    "autoscaler.sm=100",
    "autoscaler.quota=0.5",
]


def test_slot_wait_is_the_mean_rank_delay():
    assert slot_wait_s(3, 3, 0.004) == 0.0  # three SM-30 % pods run together
    assert slot_wait_s(2, 1, 0.02) == pytest.approx(0.01)  # ranks 0 and 1: (0 + 1) / 2
    # 26 SM-30 % pods (3 slots, 4-ms tokens): ranks 0..25 start floor(r / 3) tokens late
    want = 0.004 * sum(r // 3 for r in range(26)) / 26
    assert slot_wait_s(26, 3, 0.004) == pytest.approx(want) == pytest.approx(0.0154, abs=1e-4)


def test_two_full_gpu_pods_sharing_a_gpu_wait_for_each_other():
    on = hasim.run(BASE).requests
    off = hasim.run([*BASE, "sim.contention=false"]).requests
    lat_on, lat_off = on["latency"].to_numpy(), off["latency"].to_numpy()
    # a batch started while the other pod is busy waits half a token on average (quota
    # 0.5 x 40 ms / 2 = 10 ms); one started alone does not; at this light load the
    # queueing the waits add stays small
    extra = np.nanmean(lat_on) - np.nanmean(lat_off)
    assert 0.0 < extra < 0.015
    assert np.nanmin(lat_on) == pytest.approx(np.nanmin(lat_off), abs=1e-3)


def test_kernel_mode_agrees_in_size():
    """The token scheduler itself (kernel fidelity) shows a wait of the same size."""
    base = [*BASE, "workload.rate=25"]
    batch_on = hasim.run(base).summary["latency_mean_s"]
    batch_off = hasim.run([*base, "sim.contention=false"]).summary["latency_mean_s"]
    kernel = hasim.run([*base, "sim.fidelity=kernel"]).summary["latency_mean_s"]
    assert batch_on > batch_off
    assert abs(kernel - batch_on) < abs(kernel - batch_off) + 0.005
