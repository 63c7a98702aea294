"""Requests routed to a removed pod fail fast (cluster.stale_endpoint_s): the gateway
keeps routing to a deleted pod for that long, round-robin over the ready pods and the
stale endpoints; such a request fails ``fail_s`` after dispatch (status failed, reason
pod_removed) and counts as an SLO violation."""

from __future__ import annotations

import numpy as np
import pytest

from hasim.autoscale.base import CreatePod, DeletePod
from hasim.cluster.gateway import FunctionQueue
from hasim.sim import metrics
from hasim.workload.base import FunctionSpec, Workload
from tests.invariants import check_run
from tests.simkit import StubLatency, simulate


class Scripted:
    period_s = 0.5

    def __init__(self, script):
        self.script = script

    def decide(self, now, view):
        return [a for t, a in self.script if now - self.period_s < t <= now]


def run(stale_s: float, fail_s: float = 0.011):
    arr = np.arange(0.0, 60.0, 0.25)  # 4 req/s, one at a time
    w = Workload([FunctionSpec("f", "resnet50", 0.5)], {"f": arr}, 60.0)
    script = [(0.0, CreatePod("f", 100, 1.0, 1, warm=True)) for _ in range(3)]
    script.append((20.0, DeletePod(2)))
    return simulate(
        w,
        Scripted(script),
        latency=StubLatency(0.02, "deterministic"),
        overhead=0.0,
        stale_endpoint_s=stale_s,
        fail_s=fail_s,
        drain=5.0,
    )


def test_requests_fail_while_the_removed_pod_is_still_routed_to():
    sim, req = run(stale_s=10.0)
    check_run(sim, req)
    st = req["status"].astype(str)
    failed = req[st == "failed"]
    # only between the deletion and 10 s later; 1 of every 3 endpoints (2 ready + 1 stale)
    assert failed["arrival"].min() >= 20.0 and failed["arrival"].max() < 30.0
    in_window = ((req["arrival"] >= 20.0) & (req["arrival"] < 30.0)).sum()
    assert len(failed) == pytest.approx(in_window / 3, abs=1)
    assert (failed["reason"].astype(str) == "pod_removed").all()
    np.testing.assert_allclose(failed["finish"] - failed["arrival"], 0.011)
    s = metrics.summarize(
        sim,
        req,
        metrics.alloc_frame(sim),
        metrics.usage_frame(metrics.alloc_frame(sim), 2.0, sim.end_time),
    )
    assert s["failed"] == len(failed)
    assert s["slo_violation_rate"] == pytest.approx(len(failed) / len(req))


def test_no_stale_routing_no_failures():
    sim, req = run(stale_s=0.0)
    assert (req["status"].astype(str) == "completed").all()


def test_round_robin_over_ready_and_stale_endpoints():
    q = FunctionQueue("f", np.arange(12) * 1.0, 0.0, None, 0.0, 0.0, lambda n: np.ones(n))
    q.fail_s = 0.011
    q.add_server(1, 0.0, [0.0, 0.1])
    q.add_stale(100.0)
    q.add_stale(6.5)
    q.advance(20.0)
    # one request a second, each its own batch; rr counts dispatches: until 6.5 s three
    # endpoints (one pod, two stale: 2 of 3 fail), then two (one pod, one stale: 1 of 2)
    assert q.d_first == [0, 2, 3, 5, 6, 7, 9, 11]
    assert set(q.d_reason) == {"pod_removed"}
    assert q.b_first == [1, 4, 8, 10] and q.stale == [100.0]
    np.testing.assert_allclose(np.array(q.d_time) - np.array(q.d_first), 0.011)
