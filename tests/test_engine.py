"""Core simulation behaviour: conservation, determinism, batching, ordering, actions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasim.autoscale.base import CreatePod, DeletePod, UpdateQuota
from hasim.autoscale.static import StaticAutoscaler, StaticConfig
from hasim.sim import metrics
from hasim.workload.base import FunctionSpec, Workload
from tests.invariants import check_run
from tests.simkit import StubLatency, poisson_workload, simulate


def static(
    pods: int = 1, sm: float = 100.0, quota: float = 1.0, batch: int = 4, prewarmed: bool = True
) -> StaticAutoscaler:
    return StaticAutoscaler(StaticConfig(pods=pods, sm=sm, quota=quota, prewarmed=prewarmed), batch)


class Scripted:
    """Applies a fixed list of (time, action) pairs; period 0.5 s."""

    period_s = 0.5

    def __init__(self, script):
        self.script = sorted(script, key=lambda x: x[0])
        self.seen: list[float] = []

    def decide(self, now, view):
        self.seen.append(now)
        out = [a for t, a in self.script if now - self.period_s < t <= now]
        return out


def test_every_arrival_is_accounted_for():
    w = poisson_workload({"a": 120.0, "b": 5.0}, 200.0, seed=1)  # "a" overloads its pod
    sim, req = simulate(w, static(1), latency=StubLatency(0.05), timeout=2.0, drain=0.0)
    check_run(sim, req)  # conservation, service by live pods, FIFO, resources
    st = req["status"].astype(str)
    assert {"completed", "dropped", "in_flight"} <= set(st)  # all three occur here
    dropped = req[st == "dropped"]
    assert (dropped["reason"] == "timeout").all()
    # a timed-out request left exactly its timeout after it arrived, never served
    np.testing.assert_allclose(dropped["finish"] - dropped["arrival"], 2.0)


def test_same_seed_same_result_different_seed_differs():
    w = poisson_workload({"a": 20.0}, 100.0, seed=3)
    _, r1 = simulate(w, static(1), seed=7)
    _, r2 = simulate(w, static(1), seed=7)
    _, r3 = simulate(w, static(1), seed=8)
    assert r1.equals(r2)
    assert not np.allclose(r1["finish"].to_numpy(), r3["finish"].to_numpy(), equal_nan=True)


def test_batches_respect_max_batch_and_fifo():
    w = poisson_workload({"a": 200.0}, 20.0, seed=2)
    _, req = simulate(w, static(1, batch=4), latency=StubLatency(0.05, "deterministic"))
    done = req[req["status"] == "completed"]
    assert done["batch"].max() == 4 and done["batch"].min() >= 1
    # FIFO on one pod: start times are non-decreasing in arrival order
    assert (np.diff(done["start"].to_numpy()) >= -1e-12).all()


def test_max_wait_lets_batches_fill():
    arr = np.array([0.0, 0.01, 0.02, 0.03, 5.0])
    w = Workload([FunctionSpec("f", "m", 1.0)], {"f": arr}, 10.0)
    _, req = simulate(
        w,
        static(1, batch=4),
        latency=StubLatency(0.1, "deterministic"),
        max_wait=0.05,
        overhead=0.0,
    )
    assert req["batch"].tolist() == [4, 4, 4, 4, 1]
    assert req["start"].iloc[0] == pytest.approx(0.03)  # 4th request filled the batch
    # the lone request waits max_wait for company
    assert req["start"].iloc[4] == pytest.approx(5.05)


def test_overhead_holds_the_pod_or_only_delays_the_request():
    arr = np.array([0.0, 0.0])
    w = Workload([FunctionSpec("f", "m", 1.0)], {"f": arr}, 1.0)
    lat = StubLatency(0.1, "deterministic")
    _, held = simulate(w, static(1, batch=1), latency=lat, overhead=0.07, overhead_holds_pod=True)
    assert held["finish"].tolist() == pytest.approx([0.17, 0.34])
    assert held["start"].tolist() == pytest.approx([0.0, 0.17])
    _, delay = simulate(w, static(1, batch=1), latency=lat, overhead=0.07)
    assert delay["finish"].tolist() == pytest.approx([0.17, 0.27])
    assert delay["start"].tolist() == pytest.approx([0.0, 0.1])


def test_pod_waits_for_its_cold_start():
    from hasim.config.schema import ClusterConfig, ColdStartConfig, DistConfig, SimConfig
    from hasim.sim.engine import Simulation

    c = DistConfig("constant", 1.0)
    cs = ColdStartConfig(c, c, c, c, 0.0, c)
    w = Workload([FunctionSpec("f", "m", 1.0)], {"f": np.array([0.5, 10.0])}, 20.0)
    sim = Simulation(
        w,
        StubLatency(0.1, "deterministic"),
        static(1, prewarmed=False),
        ClusterConfig(cold_start=cs, overhead=0.0),
        SimConfig(progress=False),
        0,
    ).run()
    req = metrics.requests_frame(sim, metrics.slos(sim))
    assert req["start"].tolist() == pytest.approx([5.0, 10.0])
    assert sim.pods[0].phase_s == {
        "scheduling": 1.0,
        "container_start": 1.0,
        "cuda_context": 1.0,
        "model_load": 1.0,
        "readiness": 1.0,
    }


def test_same_time_order_pod_ready_before_decision():
    """A decision at the instant a pod becomes ready already sees it ready."""
    from hasim.config.schema import ClusterConfig, ColdStartConfig, DistConfig, SimConfig
    from hasim.sim.engine import Simulation

    c = DistConfig("constant", 0.5)
    z = DistConfig("constant", 0.0)
    cs = ColdStartConfig(c, z, z, z, 0.0, z)
    states = {}

    class Probe:
        period_s = 0.5

        def decide(self, now, view):
            if now == 0:
                return [CreatePod("f", 100, 1.0, 1)]
            states[now] = [p.state for p in view.pods("f")]
            return []

    w = Workload([FunctionSpec("f", "m", 1.0)], {"f": np.array([0.5])}, 1.0)
    sim = Simulation(
        w,
        StubLatency(0.1, "deterministic"),
        Probe(),
        ClusterConfig(cold_start=cs, overhead=0.0),
        SimConfig(progress=False, drain=0.5),
        0,
    )
    sim.run()
    assert states[0.5] == ["ready"]
    # and the request arriving at 0.5 started at 0.5 (data plane first)
    req = metrics.requests_frame(sim, metrics.slos(sim))
    assert req["start"].iloc[0] == pytest.approx(0.5)


def test_quota_update_changes_latency_after_delay():
    arr = np.arange(0.0, 20.0, 1.0)
    w = Workload([FunctionSpec("f", "m", 10.0)], {"f": arr}, 20.0)
    auto = Scripted([(0.0, CreatePod("f", 50, 0.5, 1)), (10.0, UpdateQuota(0, 1.0))])
    sim, req = simulate(
        w, auto, latency=StubLatency(0.1, "deterministic"), overhead=0.0, quota_delay=0.04
    )
    lat = req["latency"].to_numpy()
    assert lat[:10] == pytest.approx([0.2] * 10)  # 0.1 / quota 0.5
    assert lat[11:] == pytest.approx([0.1] * 9)
    a = metrics.alloc_frame(sim)
    assert a["quota"].tolist() == [0.5, 1.0]
    assert a["t_end"].iloc[0] == pytest.approx(10.04)


def test_delete_drains_running_batch_then_frees_the_gpu():
    arr = np.array([0.0, 0.95, 3.0])
    w = Workload([FunctionSpec("f", "m", 10.0)], {"f": arr}, 4.0)
    auto = Scripted(
        [(0.0, CreatePod("f", 50, 1.0, 1)), (0.0, CreatePod("f", 50, 1.0, 1)), (1.0, DeletePod(0))]
    )
    sim, req = simulate(w, auto, latency=StubLatency(0.5, "deterministic"), overhead=0.0)
    # request 0 on pod 0, request 1 (t=0.95) on pod 1; at t=1 pod 0 is idle and removed
    assert sim.pods[0].removed_at == pytest.approx(1.0)
    assert req["pod"].tolist() == [0, 1, 1]


def test_unknown_model_is_reported():
    from hasim.errors import InputError

    w = Workload([FunctionSpec("f", "unknown_model", 1.0)], {"f": np.array([0.0])}, 1.0)
    with pytest.raises(InputError, match="unknown model 'unknown_model'"):
        simulate(w, static(1))


def test_no_capacity_is_logged_and_requests_wait():
    w = poisson_workload({"a": 5.0, "b": 5.0}, 30.0, seed=5)
    sim, req = simulate(w, static(1, sm=100, quota=1.0), nodes=1, timeout=5.0)
    assert sum(not a["ok"] for a in sim.logs.actions) == 1
    b = req[req["function"] == "b"]
    assert (b["status"] != "completed").all()


class RandomPolicy:
    """Random create/update/delete actions, for invariant checks."""

    period_s = 1.0

    def __init__(self, seed: int, functions: list[str]):
        self.rng = np.random.default_rng(seed)
        self.functions = functions

    def decide(self, now, view):
        acts = []
        pods = view.pods()
        for _ in range(self.rng.integers(0, 4)):
            r = self.rng.random()
            if r < 0.5 or not pods:
                acts.append(
                    CreatePod(
                        str(self.rng.choice(self.functions)),
                        float(self.rng.choice([10, 20, 30, 50, 60, 100])),
                        float(self.rng.choice([0.1, 0.2, 0.3, 0.5, 1.0])),
                        int(self.rng.integers(1, 5)),
                        exclusive=bool(self.rng.random() < 0.1),
                    )
                )
            elif r < 0.8:
                p = pods[self.rng.integers(len(pods))]
                acts.append(UpdateQuota(p.id, float(self.rng.choice([0.05, 0.1, 0.4, 0.9]))))
            else:
                acts.append(DeletePod(pods[self.rng.integers(len(pods))].id))
        return acts


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), nodes=st.integers(1, 4), rate=st.floats(1.0, 40.0))
def test_invariants_hold_under_random_actions(seed, nodes, rate):
    w = poisson_workload({"a": rate, "b": rate / 2, "c": 1.0}, 30.0, seed=seed)
    # check_invariants=True asserts GPU invariants after every action
    sim, req = simulate(w, RandomPolicy(seed, ["a", "b", "c"]), nodes=nodes, timeout=3.0, seed=seed)
    for g in sim.gpus:
        g.check()
    assert len(req) == w.total_requests
    done = req[req["status"] == "completed"]
    assert (done["start"] >= done["arrival"]).all()
    # a pod never runs two batches at once (its batch ends before the post-service delay)
    done = done.assign(gpu_end=done["finish"] - sim.ccfg.overhead)
    for _, d in done.groupby("pod"):
        s = d.drop_duplicates(["start"]).sort_values("start")
        assert (s["start"].to_numpy()[1:] >= s["gpu_end"].to_numpy()[:-1] - 1e-9).all()
    # no pod served before it was ready or after it was removed
    pods = {p.id: p for p in sim.pods.values()}
    for pid, d in done.groupby("pod"):
        assert d["start"].min() >= pods[pid].ready_at - 1e-9
        if pods[pid].removed_at == pods[pid].removed_at:
            assert d["gpu_end"].max() <= pods[pid].removed_at + 1e-9


def test_wake_on_arrival_and_concurrency_view():
    """An autoscaler with wake_on_arrival is called at the first arrival of a function
    with no pods; concurrency() is the time-weighted number of requests in the system."""
    calls: list[float] = []
    conc: dict[float, float] = {}

    class ScaleFromZero:
        period_s = 10.0
        wake_on_arrival = True

        def decide(self, now, view):
            calls.append(now)
            if now >= 6.0:
                conc[now] = view.concurrency("f", now - 1.0, now)
            if view.arrivals("f", now - 1.0, now) and not view.pods("f"):
                return [CreatePod("f", 100, 1.0, 1, warm=True)]
            return []

    arr = np.array([3.5, 5.0, 5.0])
    w = Workload([FunctionSpec("f", "m", 10.0)], {"f": arr}, 12.0)
    sim, req = simulate(
        w, ScaleFromZero(), latency=StubLatency(2.0, "deterministic"), overhead=0.0, drain=0.0
    )
    assert calls[:2] == [0.0, 3.5]  # woken by the arrival at 3.5 (seen at that instant)
    assert req["start"].tolist() == pytest.approx([3.5, 5.5, 7.5])
    # over (9, 10]: one request in service (7.5..9.5) for 0.5 s -> mean concurrency 0.5
    assert conc[10.0] == pytest.approx(0.5)


def test_cost_usage_and_occupancy_are_exact():
    """Two pods on one GPU (rows of SM 50) then one deleted: cost, samples and occupied
    GPU-seconds follow the allocation log exactly."""
    w = Workload([FunctionSpec("f", "m", 10.0)], {"f": np.array([0.1])}, 10.0)
    auto = Scripted([(0.0, CreatePod("f", 50, 0.5, 1, warm=True)),
                     (0.0, CreatePod("f", 50, 0.4, 1, warm=True)),
                     (4.0, DeletePod(1))])
    sim, req = simulate(w, auto, latency=StubLatency(0.01, "deterministic"), overhead=0.0,
                        drain=0.0)
    alloc = metrics.alloc_frame(sim)
    usage = metrics.usage_frame(alloc, 2.0, sim.end_time)
    s = metrics.summarize(sim, req, alloc, usage)
    # pod 0: 0.5*0.5 for 10 s; pod 1: 0.5*0.4 for 4 s
    assert s["cost_gpu_seconds"] == pytest.approx(0.25 * 10 + 0.2 * 4)
    assert s["gpu_seconds_occupied"] == pytest.approx(10.0)
    assert usage["time"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert usage["share"].tolist() == pytest.approx([0.45, 0.45, 0.25, 0.25, 0.25, 0.0])
    assert usage["gpus_used"].tolist() == [1, 1, 1, 1, 1, 0]
    assert s["gpu_share_mean"] == pytest.approx((0.45 * 2 + 0.25 * 3) / 5)


def test_in_flight_counts_the_post_service_delay_and_waiting_requests_time_out():
    seen = {}

    class Probe:
        period_s = 0.05

        def decide(self, now, view):
            seen[round(now, 2)] = (view.in_flight("f"), view.queue_length("f"))
            return [CreatePod("f", 100, 1.0, 1, warm=True)] if abs(now - 0.5) < 1e-9 else []

    # request 0 waits with no pod and times out at 0.3; request 1 is served at 0.6
    w = Workload([FunctionSpec("f", "m", 10.0)], {"f": np.array([0.1, 0.6])}, 1.0)
    sim, req = simulate(w, Probe(), latency=StubLatency(0.1, "deterministic"), overhead=0.2,
                        timeout=0.2, drain=0.5)
    assert req["status"].tolist() == ["dropped", "completed"]
    assert seen[0.2] == (0, 1) and seen[0.35] == (0, 0)
    assert seen[0.65] == (1, 0)  # on the GPU
    assert seen[0.8] == (1, 0)  # GPU done at 0.7, response path until 0.9
    assert seen[0.95] == (0, 0)
