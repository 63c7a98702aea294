"""Plain time sharing: SM-100 % pods with fixed time slices, horizontal scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from hasim.autoscale.base import GpuInfo, PodInfo
from hasim.autoscale.timeshare import (
    TimeshareAutoscaler,
    TimeshareConfig,
    build,
    free_slots,
    pod_capacity,
    removal_order,
    target_pods,
)
from hasim.config.schema import ClusterConfig
from hasim.config.typed import to_typed
from hasim.errors import InputError
from hasim.sim import metrics
from hasim.workload.base import FunctionSpec, Workload
from tests.simkit import StubLatency, simulate

# ---- the rule --------------------------------------------------------------------------


def test_pod_capacity_is_full_batches_over_latency_plus_overhead():
    assert pod_capacity(0.08, 4, 0.07) == pytest.approx(4 / 0.15)
    assert pod_capacity(0.1, 1, 0.0) == pytest.approx(10.0)


def test_target_pods_scales_out_at_once():
    cfg = TimeshareConfig(target_utilization=0.5)
    # capacity 10 req/s per pod, 50 % target: 34 req/s needs ceil(34 / 5) = 7 pods
    assert target_pods(1, 34.0, 10.0, cfg, cooled=False) == 7
    assert target_pods(7, 34.0, 10.0, cfg, cooled=True) == 7  # no change
    # the short-window rate drives scale-out
    assert target_pods(2, 5.0, 10.0, cfg, cooled=False, rate_up=40.0) == 8


def test_target_pods_scales_in_slowly_with_hysteresis():
    cfg = TimeshareConfig(target_utilization=0.7, scale_in_utilization=0.4, max_scale_in_step=1)
    # 10 req/s per pod; 5 pods; 10 req/s: 0.4 x 10 x 4 = 16 > 10 -> one pod less
    assert target_pods(5, 10.0, 10.0, cfg, cooled=True) == 4
    assert target_pods(5, 10.0, 10.0, cfg, cooled=False) == 5  # cooldown
    # within the band (needs 2 at 70 %, but 0.4 x 10 x 2 = 8 < 14): keep 3
    assert target_pods(3, 14.0, 10.0, cfg, cooled=True) == 3
    big = TimeshareConfig(max_scale_in_step=10)
    assert target_pods(10, 1.0, 10.0, big, cooled=True) == 1  # down to min_pods
    assert target_pods(1, 0.0, 10.0, big, cooled=True) == 1


def test_target_pods_bounds():
    cfg = TimeshareConfig(min_pods=2, max_pods=3)
    assert target_pods(0, 0.0, 10.0, cfg, cooled=True) == 2
    assert target_pods(2, 1000.0, 10.0, cfg, cooled=True) == 3


def gpu(i: int, rows: tuple[tuple[float, float], ...], rects=()) -> GpuInfo:
    return GpuInfo(i, "V100", rows, rects, 0.0, 16_000.0, ())


def test_free_slots_counts_room_in_sm100_rows_and_empty_gpus():
    gpus = [
        gpu(0, ((0.0, 1.0), (0.0, 1.0))),  # empty: 4 slots of 0.25
        gpu(1, ((100.0, 0.5), (0.0, 1.0))),  # SM-100 row half used: 2
        gpu(2, ((50.0, 1.0), (0.0, 1.0))),  # another SM size in use: none
        gpu(3, ((0.0, 1.0), (0.0, 1.0)), rects=((0, 0, 100, 50),)),  # rectangles: none
    ]
    assert free_slots(gpus, 0.25) == 6
    assert free_slots(gpus, 0.3) == 3 + 1


def test_removal_order():
    def p(i, state, g, created):
        return PodInfo(i, "f", "m", 100.0, 0.25, 4, state, g, 0, created, math.nan)

    pods = [p(0, "ready", 0, 0.0), p(1, "ready", 1, 1.0), p(2, "ready", 0, 2.0)]
    pods.append(p(3, "starting", 1, 0.5))
    per_gpu = {0: 4, 1: 1}
    assert [x.id for x in removal_order(pods, per_gpu)] == [3, 1, 2, 0]


@pytest.mark.parametrize(
    "kw",
    [
        {"quota": 0.0},
        {"quota": 1.5},
        {"period": 0.0},
        {"scale_in_utilization": 0.8},
        {"min_pods": 0},
        {"min_pods": 3, "max_pods": 2},
        {"idle_timeout": 0.0},
    ],
)
def test_invalid_settings_are_rejected(kw):
    with pytest.raises(InputError, match="autoscaler"):
        TimeshareAutoscaler(TimeshareConfig(**kw), 4, 0.07)


def test_yaml_matches_the_dataclass_and_builds():
    node = OmegaConf.load("conf/autoscaler/timeshare.yaml")
    cfg = to_typed(node, TimeshareConfig, "autoscaler")
    assert cfg == TimeshareConfig()
    assert set(node.keys()) == set(TimeshareConfig.__dataclass_fields__)
    cc = ClusterConfig(max_batch=8, overhead=0.05)
    a = build(cfg, cc)
    assert a.batch == 8 and a.period_s == 5.0 and a.wake_on_arrival
    # the overhead counts only where it holds the pod
    assert a.overhead == (0.05 if getattr(cc, "overhead_holds_pod", True) else 0.0)


# ---- simulation ------------------------------------------------------------------------


def stages(rates: list[float], seconds: list[int], offset: float = 0.0) -> np.ndarray:
    """Evenly spaced arrivals: rates[i] req/s held for seconds[i] s."""
    per_s = np.repeat(rates, seconds)
    return np.concatenate([i + offset + np.arange(int(r)) / r for i, r in enumerate(per_s)])


def pods_at(sim, function: str, t: float) -> int:
    return sum(
        1
        for p in sim.pods.values()
        if p.function == function and p.created_at <= t and not p.removed_at <= t
    )


def test_scales_out_under_load_and_in_when_it_drops():
    f = stages([5.0, 80.0, 5.0], [60, 60, 120])
    g = stages([5.0], [240], offset=0.01)
    w = Workload(
        [FunctionSpec("f", "resnet50", 5.0), FunctionSpec("g", "resnet50", 5.0)],
        {"f": f, "g": g},
        240.0,
    )
    a = TimeshareAutoscaler(TimeshareConfig(), 4, 0.07)
    sim, req = simulate(w, a, latency=StubLatency(0.02, "deterministic"), overhead=0.07)
    assert len(req) == w.total_requests and (req["status"] == "completed").all()
    alloc = metrics.alloc_frame(sim)
    assert (alloc["sm_pct"] == 100.0).all() and (alloc["quota"] == 0.25).all()
    assert not alloc["exclusive"].any()
    # capacity 4 / (0.02 / 0.25 + 0.07) = 26.7 req/s: 80 req/s needs ceil(80 / 18.7) = 5
    assert pods_at(sim, "f", 55.0) == 1
    assert pods_at(sim, "f", 100.0) == 5
    assert pods_at(sim, "f", 239.0) == 1  # scaled back in after the load dropped
    assert pods_at(sim, "g", 239.0) == 1
    # several pods time-share one GPU row; the quotas of a row never exceed 1
    for t in np.arange(0.0, 240.0, 1.0):
        live = alloc[(alloc["t_start"] <= t) & (alloc["t_end"] > t)]
        assert (live.groupby(["gpu"])["quota"].sum() <= 1.0 + 1e-9).all()
    at100 = alloc[(alloc["t_start"] <= 100.0) & (alloc["t_end"] > 100.0)]
    assert at100.groupby("gpu").size().max() == 4
    assert at100["gpu"].nunique() == 2  # 6 pods of 1/4 on two GPUs
    shared = at100.groupby("gpu")["function"].nunique()
    assert shared.max() == 2  # f and g time-share a GPU
    # cost: a quarter GPU-second per pod-second
    life = sum(np.fmin(p.removed_at, sim.end_time) - p.created_at for p in sim.pods.values())
    assert ((alloc["t_end"] - alloc["t_start"]) * alloc["share"]).sum() == pytest.approx(life / 4)
    # scale-in cooldown: the removals of f are at least 30 s apart
    gone = sorted(p.delete_at for p in sim.pods.values() if p.function == "f" and p.delete_at > 0)
    assert len(gone) == 4 and (np.diff(gone) >= 30.0 - 1e-9).all()


def test_first_arrival_wakes_a_pod():
    arr = np.array([10.3, 10.4, 50.0])
    w = Workload([FunctionSpec("f", "resnet50", 5.0)], {"f": arr}, 60.0)
    sim, req = simulate(
        w,
        TimeshareAutoscaler(TimeshareConfig(), 4, 0.0),
        latency=StubLatency(0.1, "deterministic"),
        overhead=0.0,
    )
    assert len(sim.pods) == 1
    assert sim.pods[0].created_at == pytest.approx(10.3)
    assert req["start"].iloc[0] == pytest.approx(10.3)  # no cold start in simkit
    assert (req["status"] == "completed").all()


def test_idle_timeout_removes_all_pods_and_traffic_brings_one_back():
    arr = np.array([1.0, 2.0, 100.0])
    w = Workload([FunctionSpec("f", "resnet50", 5.0)], {"f": arr}, 110.0)
    sim, req = simulate(
        w,
        TimeshareAutoscaler(TimeshareConfig(idle_timeout=20.0), 4, 0.0),
        latency=StubLatency(0.1, "deterministic"),
        overhead=0.0,
    )
    assert (req["status"] == "completed").all()
    p0, p1 = sim.pods[0], sim.pods[1]
    assert 22.0 <= p0.delete_at <= 27.0 + 1e-9  # first decision 20 s after the last arrival
    assert p1.created_at == pytest.approx(100.0)


def test_full_cluster_does_not_spam_failed_actions():
    arr = stages([200.0], [40])
    w = Workload([FunctionSpec("f", "resnet50", 5.0)], {"f": arr}, 40.0)
    sim, req = simulate(
        w,
        TimeshareAutoscaler(TimeshareConfig(), 4, 0.07),
        latency=StubLatency(0.02, "deterministic"),
        nodes=1,
        timeout=5.0,
    )
    assert len(req) == w.total_requests
    assert set(req["status"].unique()) <= {"completed", "dropped", "in_flight"}
    assert len(sim.pods) == 4  # one GPU: four quarter slices
    assert all(x["ok"] for x in sim.logs.actions)


def test_through_hasim_run(tmp_path):
    """Selectable as autoscaler=timeshare (registered in hasim.autoscale.registry)."""
    import hasim

    r = hasim.run(
        [
            "sim.progress=false",
            f"output.dir={tmp_path}",
            "output.write=false",
            "autoscaler=timeshare",
            "workload.duration=60",
            "workload.rate=20",
            "workload.functions=2",
        ]
    )
    s = r.summary
    assert s["completed"] + s["dropped"] + s["in_flight"] == s["requests_total"] > 0
    assert s["cost_gpu_seconds"] > 0
