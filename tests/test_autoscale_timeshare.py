"""Plain time sharing: SM-100 % pods with fixed time slices, horizontal scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from hasim.autoscale.base import Call, CreatePod, DeletePod, GpuInfo, PodInfo
from hasim.autoscale.kit import deletion_order, live, pods_by_function, pods_per_gpu
from hasim.autoscale.timeshare import (
    TimeshareAutoscaler,
    TimeshareConfig,
    build,
    free_slots,
    slots_per_gpu,
    target_pods,
)
from hasim.config.schema import ClusterConfig
from hasim.config.typed import to_typed
from hasim.errors import InputError
from hasim.sim import metrics
from hasim.workload.base import FunctionSpec, Workload
from tests.fakes import FakeCluster
from tests.simkit import StubLatency, simulate


def cluster(arrivals, n_gpus=2, period=5.0, **kw) -> FakeCluster:
    """A FakeCluster of ResNet-50 functions with GPU time 0.02 / quota s per batch."""
    return FakeCluster(
        n_gpus=n_gpus,
        functions=[(f, "resnet50") for f in arrivals],
        latency=lambda m, b, s, q: 0.02 / q,
        arrivals=arrivals,
        period=period,
        **kw,
    )


# ---- the rule --------------------------------------------------------------------------


def test_pod_capacity_is_full_batches_over_latency_plus_overhead():
    v = cluster({"f": []})
    # GPU time 0.02 / 0.25 = 0.08 s per batch of 4, plus 0.07 s held per batch
    assert TimeshareAutoscaler(TimeshareConfig(), 4, 0.07).capacity(v, "resnet50") == (
        pytest.approx(4 / 0.15)
    )
    one = TimeshareAutoscaler(TimeshareConfig(quota=0.2), 1, 0.0)
    assert one.capacity(v, "resnet50") == pytest.approx(10.0)


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
    assert slots_per_gpu(0.25) == 4 and slots_per_gpu(0.3) == 3


def test_deletion_order_frees_whole_gpus():
    def p(i, state, g, created):
        return PodInfo(i, "f", "m", 100.0, 0.25, 4, state, g, 0, created, math.nan)

    pods = [p(0, "ready", 0, 0.0), p(1, "ready", 1, 1.0), p(2, "ready", 0, 2.0)]
    pods.append(p(3, "starting", 1, 0.5))
    per_gpu = {0: 4, 1: 1}
    assert [x.id for x in deletion_order(pods, per_gpu)] == [3, 1, 2, 0]


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


# ---- decide() on a FakeCluster --------------------------------------------------------


def test_off_tick_wakes_serve_only_functions_at_zero():
    a = TimeshareAutoscaler(TimeshareConfig(), 4, 0.07)
    busy = np.r_[np.linspace(0.01, 6.0, 60), np.linspace(6.01, 20.0, 2000)]  # 10, 140 req/s
    v = cluster({"busy": busy, "late": [7.0]}, n_gpus=4)
    assert v.step(a, 0.0) == []  # a tick: no request yet
    v.queued["busy"] = 1
    assert [c.function for c in v.step(a, 0.5)] == ["busy"]  # a wake: its first pod
    v.queued["busy"] = 0
    assert v.step(a, 5.0) == []  # the tick: one pod serves 10 req/s
    v.queued["late"] = 1
    acts = v.step(a, 7.0)  # a wake: late gets a pod; busy (overloaded now) waits
    assert [c.function for c in acts] == ["late"]
    v.queued["late"] = 0
    grow = v.step(a, 10.0)  # the tick: busy scales out at once
    assert len(grow) > 1 and {c.function for c in grow} == {"busy"}


def test_scale_out_stops_at_the_rows_room_and_resumes():
    a = TimeshareAutoscaler(TimeshareConfig(), 4, 0.07)
    v = cluster({"f": np.linspace(0.01, 60.0, 12000)}, n_gpus=1)  # 200 req/s
    v.queued["f"] = 1
    assert len(v.step(a, 0.5)) == 2  # the first call, a tick: 20 req/s so far
    v.queued["f"] = 0
    assert len(v.step(a, 5.5)) == 2  # wants 11: one GPU takes four quarter pods
    assert v.step(a, 10.5) == [] and not v.failed  # full: nothing asked for
    v.gpu_objs.append(type(v.gpu_objs[0])(1, "n1", v.gpu_objs[0].type))  # a GPU more
    assert len(v.step(a, 15.5)) == 4 and not v.failed


def test_early_in_the_run_the_rate_spans_the_time_so_far():
    a = TimeshareAutoscaler(TimeshareConfig(), 4, 0.07)
    v = cluster({"f": np.linspace(0.01, 1.0, 120)})  # a burst in the first second
    v.queued["f"] = 1
    assert len(v.step(a, 0.5)) == 1  # 60 requests over the first period: 12 req/s
    v.queued["f"] = 0
    # 120 requests over the 5.5 s so far: 21.8 req/s need a second pod (over the
    # window they would be 4 req/s, over the last period 12)
    assert len(v.step(a, 5.5)) == 1


def reference_decide(a: TimeshareAutoscaler, now: float, view, last: dict[str, float]) -> list:
    """The module docstring's rule per function over the per-function view API (the
    implementation before the array port): the oracle. ``last``: last scaling per
    function (s)."""
    cfg, eps = a.cfg, 1e-9
    tick = view.cause is Call.TICK
    by_fn, per_gpu = pods_by_function(view), pods_per_gpu(view.pods())
    slots = free_slots(view.gpus(), cfg.quota)
    out: list = []
    for f in view.functions():
        name = f.name
        pods = live(by_fn.get(name, []))
        if not tick and pods:
            continue
        n = len(pods)
        arrived = view.arrivals(name, max(0.0, now - cfg.window), now)
        queued = view.queue_length(name)
        if n == 0:
            if queued == 0:
                continue
        elif cfg.idle_timeout is not None:
            idle = view.arrivals(name, now - cfg.idle_timeout, now) == 0
            if idle and queued == 0 and view.in_flight(name) == 0:
                out.extend(DeletePod(p.id) for p in pods)
                last[name] = now
                continue
        rate = arrived / min(cfg.window, max(now, cfg.period))
        rate_up = view.arrivals(name, now - cfg.period, now) / cfg.period
        cooled = now - last.get(name, -math.inf) >= cfg.scale_in_cooldown - eps
        want = target_pods(n, rate, a.capacity(view, f.model), cfg, cooled, rate_up)
        if want > n and slots > 0:
            k = min(want - n, slots)
            slots -= k
            out.extend(CreatePod(name, 100.0, cfg.quota, a.batch) for _ in range(k))
            last[name] = now
        elif want < n:
            out.extend(DeletePod(p.id) for p in deletion_order(pods, per_gpu)[: n - want])
            last[name] = now
    return out


class Reference:
    """``reference_decide`` as a policy."""

    def __init__(self, a: TimeshareAutoscaler) -> None:
        self.a, self.last = a, {}

    def decide(self, now: float, view) -> list:
        return reference_decide(self.a, now, view, self.last)


CONFIGS = [
    {},
    {"idle_timeout": 20.0},
    {"min_pods": 2, "max_pods": 4, "max_scale_in_step": 3, "scale_in_cooldown": 0.0},
    {"period": 2.0, "window": 10.0, "target_utilization": 0.5, "scale_in_utilization": 0.3},
    {"quota": 0.3, "max_pods": 2, "idle_timeout": 8.0, "period": 1.0},
]


def drive(policy, v: FakeCluster, t: float) -> list:
    """One call at ``t``: requests wait while a function has no pods (all that came
    since it last had some), now and then one is queued or in flight beside live pods."""
    for f in v.specs:
        name = f.name
        if v.live(name):
            v.last_live[name] = t
            v.queued[name] = int(int(t * 10) % 11 == 0)
            v.flight[name] = int(int(t * 10) % 13 == 0)
        else:
            v.queued[name] = v.arrivals(name, v.last_live[name], t)
            v.flight[name] = 0
    return v.step(policy, t)


@pytest.mark.parametrize("seed", range(10))
def test_array_decisions_match_the_rule_function_by_function(seed):
    """Random loads with idle spells, late and silent functions, wakes between ticks,
    pods that start slowly, bounds, a cluster that fills up: every call's actions
    equal the per-function rule's."""
    rng = np.random.default_rng(seed)
    arrivals: dict[str, np.ndarray] = {}
    for j in range(int(rng.integers(3, 7))):
        start = float(rng.choice([0.0, 0.0, rng.uniform(10, 150), 1e9]))
        edges = np.sort(rng.uniform(0, 400, 6))
        parts = []
        for t0, t1 in zip(np.r_[0.0, edges], np.r_[edges, 400.0], strict=True):
            t0, t1 = max(t0, start), max(t1, start)
            rate = float(rng.choice([0.0, 0.0, 0.2, 3.0, 15.0, 60.0]))
            parts.append(np.sort(rng.uniform(t0, t1, rng.poisson(rate * (t1 - t0)))))
        arrivals[f"f{j}"] = np.concatenate(parts)
    cfg = TimeshareConfig(**CONFIGS[seed % len(CONFIGS)])
    ticks = np.arange(0.0, 400.0, cfg.period)
    times = sorted({*ticks, *np.round(rng.uniform(0, 400, 60), 3)})
    kw = {"n_gpus": int(rng.integers(1, 5)), "period": cfg.period, "ready_delay": 3.0}
    fast, slow = cluster(arrivals, **kw), cluster(arrivals, **kw)
    for v in (fast, slow):
        v.last_live = dict.fromkeys(arrivals, -1.0)
    new = TimeshareAutoscaler(cfg, 4, 0.07)
    ref = Reference(TimeshareAutoscaler(cfg, 4, 0.07))
    acted = 0
    for t in times:
        got, want = drive(new, fast, float(t)), drive(ref, slow, float(t))
        assert got == want, f"t = {t}"
        acted += bool(got)
    assert acted > 2 and not fast.failed


@pytest.mark.parametrize("n", [1, 3])
def test_counts_at_the_edges_of_the_bands_decide_like_the_rule(n):
    """A tick at 40 s with n ready pods and k arrivals, for every k near the counts
    where the rule starts to scale in (k over the window) or out (k over the window,
    or all in the last period): the same actions as the rule."""
    cfg = TimeshareConfig()
    cap = 4 / (0.02 / cfg.quota + 0.07)

    def both(arrivals: np.ndarray) -> tuple[list, list]:
        out = []
        for policy in (TimeshareAutoscaler(cfg, 4, 0.07), None):
            v = cluster({"f": arrivals}, n_gpus=4)
            for j in range(n):
                v.add_pod("f", 100.0, cfg.quota, gpu=j, row=0)
            policy = policy or Reference(TimeshareAutoscaler(cfg, 4, 0.07))
            out.append(v.step(policy, 40.0))
        return out[0], out[1]

    edges = [  # the count where it changes (about), arrivals in (t0, t1]
        (0.4 * cap * (n - 1) * cfg.window, 10.0, 40.0),  # scale in: the window's rate
        (0.7 * cap * n * cfg.window, 10.0, 35.0),  # scale out: the window's rate
        (0.7 * cap * n * cfg.period, 35.0, 40.0),  # scale out: the last period's
    ]
    seen = set()
    for estimate, t0, t1 in edges:
        for k in range(max(1, int(estimate) - 3), int(estimate) + 4):
            got, want = both(np.linspace(t0, t1, k + 1)[1:])
            assert got == want, (estimate, k)
            seen.add(bool(got))
    assert seen == {True, False}


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
        contention=False,  # exact service times below; the slot wait: test_contention.py
    )
    assert len(sim.pods) == 4  # one GPU: four quarter slices
    assert all(x["ok"] for x in sim.logs.actions)
    # the backlog (200 req/s offered, about 190 served) is served first come, first
    # served within the timeout; each batch takes 0.08 s on a quarter slice, then 0.07 s
    # of post-service delay; a pod runs one batch of at most 4 at a time
    assert (req["status"] == "completed").all() and req["pod"].nunique() == 4
    assert (req["start"] >= req["arrival"]).all() and req["wait"].max() < 5.0
    assert (np.diff(req.sort_values("arrival")["start"].to_numpy()) >= 0).all()
    assert np.allclose(req["finish"] - req["start"], 0.15)
    batches = req.groupby(["pod", "start"]).size()
    assert batches.max() == 4
    for _, starts in batches.reset_index().groupby("pod")["start"]:
        assert (np.diff(starts.to_numpy()) >= 0.08 - 1e-9).all()


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
