"""KServe/Knative Pod Autoscaler: Knative's decider scenarios on the pure decider, the
decision over arrays for many functions at once, the metric buckets and the autoscaler's
decisions on tests.fakes.FakeCluster, then whole-GPU scaling in the simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from hasim.autoscale.base import Call, CreatePod, DeletePod, PodInfo
from hasim.autoscale.kit import Rings, deletion_order
from hasim.autoscale.kpa import (
    ConcurrencyWindows,
    KPAAutoscaler,
    KPAConfig,
    KPADecider,
    KPADeciders,
    build,
    create_pods,
    delete_pods,
)
from hasim.cluster.pod import PodState
from hasim.config.schema import ClusterConfig, ColdStartConfig, DistConfig
from hasim.config.typed import to_typed
from hasim.errors import InputError
from hasim.sim import metrics
from hasim.workload.base import FunctionSpec, Workload
from tests.fakes import FakeCluster
from tests.simkit import StubLatency, poisson_workload, simulate

TICK = 2.0


def decider(**kw) -> KPADecider:
    """A decider with target concurrency 1 per pod (as Knative's scenario tests use)."""
    return KPADecider(KPAConfig(**{"target": 1.0, **kw}))


# ---- the pure decider: Knative's scenarios --------------------------------------------


def test_target_is_container_concurrency_times_utilisation():
    assert KPAConfig().target_per_pod == pytest.approx(10.5)  # 15 x 0.7
    assert KPAConfig(container_concurrency=0).target_per_pod == pytest.approx(70.0)
    assert KPAConfig(target=3.0).target_per_pod == 3.0
    assert KPAConfig().panic_window == pytest.approx(6.0)
    d = KPADecider(KPAConfig(container_concurrency=10, target_utilization=0.5))
    assert d.decide(0.0, stable=12.0, panic=12.0, ready=3) == 3  # ceil(12 / 5)


def test_stable_mode_tracks_concurrency():
    d = decider()
    assert d.decide(0.0, stable=50.0, panic=10.0, ready=50) == 50
    assert not d.in_panic
    assert d.decide(2.0, stable=49.5, panic=49.5, ready=50) == 50  # ceil
    assert d.decide(4.0, stable=30.0, panic=30.0, ready=50) == 30


def test_panic_mode_exponential_tracking():
    """6 -> 36 -> 216 -> 1296: concurrency keeps up with the capacity every step."""
    d = decider()
    t = 0.0
    assert d.decide(t, stable=1.0, panic=6.0, ready=1) == 6
    assert d.in_panic and d.panic_time == t
    for ready, want in ((6, 36), (36, 216), (216, 1296)):
        t += TICK
        assert d.decide(t, stable=float(want), panic=float(want), ready=ready) == want
        assert d.panic_time == t  # each step crosses the threshold again: panic extended
    # stabilised: 1296 pods ready, still in panic, concurrency drops -> no scale-down
    t += TICK
    assert d.decide(t, stable=1296.0, panic=1296.0, ready=1296) == 1296
    t += TICK
    assert d.decide(t, stable=100.0, panic=100.0, ready=1296) == 1296
    assert d.in_panic


def test_rate_limited_scale_up():
    d = decider(max_scale_up_rate=10.0)
    assert d.decide(0.0, stable=1000.0, panic=1000.0, ready=1) == 10
    assert d.decide(TICK, stable=1000.0, panic=1000.0, ready=10) == 100
    assert d.decide(2 * TICK, stable=1000.0, panic=1000.0, ready=100) == 1000


def test_rate_limit_allows_at_least_one_more_pod():
    """Knative: maxUp = ceil(rate x ready), so a low rate still grows by a pod."""
    d = decider(max_scale_up_rate=1.1)
    assert d.decide(0.0, stable=3.0, panic=3.0, ready=2) == 3


def test_rate_limited_scale_down():
    d = decider()
    ready, seen = 100, []
    for i in range(8):
        ready = d.decide(i * TICK, stable=1.0, panic=1.0, ready=ready)
        seen.append(ready)
    assert seen == [50, 25, 12, 6, 3, 1, 1, 1]
    d4 = decider(max_scale_down_rate=4.0)
    assert d4.decide(0.0, stable=1.0, panic=1.0, ready=100) == 25


def test_unpanic_after_slow_increase():
    """Jump 10 -> 25 pods (panic), then add a pod per tick (below the threshold): panic
    ends a full stable window after the jump, not later, and the ratchet holds until
    then."""
    d = decider()
    assert d.decide(0.0, stable=11.0, panic=25.0, ready=10) == 25
    assert d.panic_time == 0.0
    t, pods = 0.0, 25
    while t + TICK <= 60.0:
        t += TICK
        pods += 1  # slow growth: never twice the ready pods
        assert d.decide(t, stable=float(pods), panic=float(pods), ready=pods - 1) == pods
        assert d.in_panic and d.panic_time == 0.0  # not extended by the slow growth
    # at t = 60 a full stable window has not yet passed (Knative: strictly after)
    assert t == 60.0 and d.in_panic
    # panic ends at the next tick; the stable decision (rate-limited) takes over
    assert d.decide(62.0, stable=20.0, panic=20.0, ready=pods) == max(20, pods // 2)
    assert not d.in_panic and d.max_panic_pods == 0


def test_panic_ratchet_never_scales_down():
    d = decider()
    assert d.decide(0.0, stable=5.0, panic=40.0, ready=10) == 40
    assert d.decide(2.0, stable=5.0, panic=5.0, ready=40) == 40
    assert d.decide(4.0, stable=30.0, panic=50.0, ready=40) == 50  # grows
    assert d.decide(6.0, stable=1.0, panic=1.0, ready=50) == 50


def test_panic_window_extension():
    d = decider()
    assert d.decide(0.0, stable=10.0, panic=25.0, ready=10) == 25
    assert d.decide(30.0, stable=30.0, panic=60.0, ready=25) == 60  # re-crossed
    assert d.panic_time == 30.0
    assert d.decide(70.0, stable=10.0, panic=10.0, ready=60) == 60  # 40 s after: panic
    assert d.decide(90.0, stable=10.0, panic=10.0, ready=60) == 60  # exactly 60 s: panic
    assert d.in_panic
    assert d.decide(92.0, stable=10.0, panic=10.0, ready=60) == 30  # out: stable, rate-limited
    assert not d.in_panic


def test_start_in_panic():
    """A decider created over more than one ready pod starts panicking at that count."""
    d = KPADecider(KPAConfig(target=1.0), now=0.0, ready=10)
    assert d.in_panic and d.max_panic_pods == 10
    assert d.decide(2.0, stable=1.0, panic=1.0, ready=10) == 10
    assert d.decide(60.0, stable=1.0, panic=1.0, ready=10) == 10
    assert d.decide(62.0, stable=1.0, panic=1.0, ready=10) == 5
    assert not d.in_panic
    # 0 or 1 ready pods: normal start
    assert not KPADecider(KPAConfig(), now=0.0, ready=1).in_panic


def test_scale_to_zero_after_grace_not_before():
    d = decider()
    # traffic, then none: desired 0 from t = 100 (stable window empty); grace 30 s
    assert d.decide(98.0, stable=0.2, panic=0.0, ready=1) == 1
    for t in np.arange(100.0, 130.0, TICK):
        assert d.decide(float(t), stable=0.0, panic=0.0, ready=1) == 1
    assert d.decide(130.0, stable=0.0, panic=0.0, ready=1) == 0
    # once at zero, nothing more to do
    assert d.decide(132.0, stable=0.0, panic=0.0, ready=0, current=0) == 0


def test_traffic_during_grace_resets_the_zero_clock():
    d = decider()
    assert d.decide(100.0, stable=0.0, panic=0.0, ready=1) == 1
    assert d.decide(120.0, stable=0.01, panic=0.01, ready=1) == 1
    assert d.decide(122.0, stable=0.0, panic=0.0, ready=1) == 1
    assert d.decide(150.0, stable=0.0, panic=0.0, ready=1) == 1
    assert d.decide(152.0, stable=0.0, panic=0.0, ready=1) == 0


def test_scale_to_zero_disabled_or_min_scale_keeps_a_pod():
    assert decider(min_scale=1).decide(500.0, stable=0.0, panic=0.0, ready=1) == 1
    assert decider(scale_to_zero=False).decide(500.0, stable=0.0, panic=0.0, ready=1) == 1
    d = decider(scale_to_zero_grace=0.0)
    assert d.decide(500.0, stable=0.0, panic=0.0, ready=1) == 0


def test_scale_down_is_gradual_before_zero():
    d = decider(scale_to_zero_grace=0.0)
    got = [d.decide(t, stable=0.0, panic=0.0, ready=r) for t, r in ((0.0, 4), (2.0, 2), (4.0, 1))]
    assert got == [2, 1, 0]


def test_min_max_scale_clamps():
    assert decider(max_scale=3).decide(0.0, stable=100.0, panic=100.0, ready=1) == 3
    assert decider(min_scale=2).decide(0.0, stable=0.0, panic=0.0, ready=2) == 2
    # min_scale also at zero with no traffic
    assert decider(min_scale=2).decide(0.0, stable=0.0, panic=0.0, ready=0, current=0) == 2


def test_activation_scale_from_zero():
    d = decider(activation_scale=3)
    assert d.decide(10.0, stable=0.5, panic=0.5, ready=0, current=0) == 3
    assert d.decide(12.0, stable=0.5, panic=0.5, ready=3, current=3) == 1  # floor(3/2)


def test_scale_down_delay_holds_the_maximum():
    d = decider(scale_down_delay=10.0)
    assert d.decide(0.0, stable=10.0, panic=10.0, ready=10) == 10
    for t in (2.0, 6.0, 10.0):
        assert d.decide(t, stable=1.0, panic=1.0, ready=10) == 10
    assert d.decide(12.0, stable=1.0, panic=1.0, ready=10) == 5


@pytest.mark.parametrize(
    "kw",
    [
        {"target_utilization": 0.0},
        {"stable_window": 0.0},
        {"panic_threshold_pct": 100.0},
        {"max_scale_down_rate": 1.0},
        {"min_scale": 3, "max_scale": 2},
        {"tick": 0.0},
        {"container_concurrency": -1},
    ],
)
def test_invalid_settings_are_rejected(kw):
    with pytest.raises(InputError, match="autoscaler"):
        KPADecider(KPAConfig(**kw))


# ---- actuation -------------------------------------------------------------------------


def pod(i: int, state: str, created: float) -> PodInfo:
    return PodInfo(i, "f", "resnet50", 100.0, 1.0, 4, state, i, 0, created, math.nan)


def test_deletion_order_not_ready_then_newest():
    pods = [
        pod(0, "ready", 0.0),
        pod(1, "ready", 5.0),
        pod(2, "starting", 6.0),
        pod(3, "starting", 1.0),
    ]
    assert [p.id for p in deletion_order(pods)] == [2, 3, 1, 0]
    acts = delete_pods([*pods, pod(4, "draining", 7.0)], 1)  # a draining pod is gone already
    assert acts == [DeletePod(2), DeletePod(3), DeletePod(1)]
    assert delete_pods([pod(0, "starting", 0.0)], 1) == []


def test_new_pods_are_whole_gpus():
    acts = create_pods("f", 2, batch=4, warm=1)
    assert len(acts) == 2
    assert all(a.exclusive and a.sm_pct == 100.0 and a.quota == 1.0 for a in acts)
    assert [a.warm for a in acts] == [True, False]


# ---- many functions at once -------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [{}, {"scale_down_delay": 7.0}, {"min_scale": 1, "max_scale": 4}, {"activation_scale": 2}],
)
def test_deciders_for_many_functions_equal_one_at_a_time(kw):
    """KPADeciders deciding a random subset of 40 functions per step (random
    concurrencies and pods) gives each function what its own KPADecider gives."""
    rng = np.random.default_rng(7)
    n = 40
    cfg = KPAConfig(target=1.0, **kw)
    ready0 = rng.integers(0, 4, n)
    many = KPADeciders(cfg, n)
    many.start(np.arange(n), 0.0, ready0)
    one = [KPADecider(cfg, 0.0, int(r)) for r in ready0]
    for step in range(1, 120):
        now = 2.0 * step + (0.5 if step % 7 == 0 else 0.0)
        fns = np.flatnonzero(rng.random(n) < 0.7)
        scale = rng.choice([0.0, 0.5, 5.0, 40.0], fns.size)
        stable = rng.random(fns.size) * scale
        panic = rng.random(fns.size) * scale * 2.0
        ready = rng.integers(0, 30, fns.size)
        current = ready + rng.integers(0, 3, fns.size) * (rng.random(fns.size) < 0.8)
        got = many.decide(fns, now, stable, panic, ready, current)
        want = [
            one[i].decide(now, float(s), float(p), int(r), int(c))
            for i, s, p, r, c in zip(fns, stable, panic, ready, current, strict=True)
        ]
        assert got.tolist() == want
        assert [d.in_panic for d in one] == many.in_panic(np.arange(n)).tolist()


def test_rings_keep_each_fifo_in_order_while_growing():
    r = Rings(3, ("v",), capacity=2)
    want: list[list[float]] = [[], [], []]
    rng = np.random.default_rng(1)
    for step in range(60):
        fns = np.flatnonzero(rng.random(3) < 0.6)
        r.push(fns, v=float(step))
        for i in fns:
            want[i].append(float(step))
        pop = np.array([i for i in range(3) if want[i] and rng.random() < 0.3], dtype=np.int64)
        r.pop(pop)
        for i in pop:
            want[i].pop(0)
        for i in range(3):
            at, exists = r.newest(np.array([i]), 4)
            got = r.take("v", at)[0][exists[0]].tolist()
            assert got == want[i][::-1][:4]
            if want[i]:
                assert r.front(np.array([i]), "v")[0] == want[i][0]
    assert r.capacity > 2


# ---- collection ------------------------------------------------------------------------

ONE = np.zeros(1, dtype=np.int64)


def step_cluster(functions: int = 1, queries: list | None = None) -> FakeCluster:
    """Function i: 3 requests in the system on [10 + i, 20 + i), 0 elsewhere; its one
    arrival at 10 + i. ``queries`` collects (function, t0, t1) of every request-seconds
    query."""

    def conc(f: str, t0: float, t1: float) -> float:
        if queries is not None:
            queries.append((f, t0, t1))
        start = 10.0 + int(f[1:])
        return 3.0 * max(0.0, min(t1, start + 10.0) - max(t0, start)) / (t1 - t0)

    names = [(f"f{i}", "resnet50") for i in range(functions)]
    return FakeCluster(
        functions=names, arrivals={f"f{i}": [10.0 + i] for i in range(functions)}, concurrency=conc
    )


def sample(w: ConcurrencyWindows, fc: FakeCluster, fns: np.ndarray, t: float) -> None:
    fc.now = t
    w.sample(fc, fns, t, fc.arrival_counts(-math.inf))


def test_windows_give_exact_window_averages():
    fc, w = step_cluster(), ConcurrencyWindows(1, 60.0)
    w.restart(ONE, 0.0, fc.arrival_counts(-math.inf))
    for t in np.arange(2.0, 100.0, 2.0):
        sample(w, fc, ONE, float(t))
        for win in (6.0, 60.0):
            t0 = max(0.0, t - win)
            want = fc.concurrency("f0", t0, float(t))
            assert w.average(ONE, float(t), win)[0] == pytest.approx(want, abs=1e-12)
    # buckets older than the stable window are dropped: the requests on [10, 20) are
    # out of (40, 100]
    assert w.total[0] == pytest.approx(0.0, abs=1e-12)
    # a window start inside a bucket counts it pro rata
    fc2, w2 = step_cluster(), ConcurrencyWindows(1, 60.0)
    w2.restart(ONE, 0.0, fc2.arrival_counts(-math.inf))
    sample(w2, fc2, ONE, 12.0)  # 6 request-seconds over (0, 12]
    assert w2.average(ONE, 12.0, 6.0)[0] == pytest.approx(6.0 * 6.0 / 12.0 / 6.0)


def test_idle_windows_count_the_idle_window_as_zero():
    """ConcurrencyWindows.idle: the stable window before ``now`` held no request, and a
    later window average is exact (the idle time is its own bucket, not spread over the
    first samples)."""
    fc, w = step_cluster(), ConcurrencyWindows(1, 60.0)
    fc.now = 8.0
    counts = fc.arrival_counts(-math.inf)
    w.idle(ONE, 8.0, counts, fc.arrival_counts(-math.inf, 8.0 - 60.0))
    assert w.average(ONE, 8.0, 6.0)[0] == 0.0
    sample(w, fc, ONE, 12.0)  # 3 requests over [10, 12)
    assert w.average(ONE, 12.0, 6.0)[0] == pytest.approx(3.0 * 2.0 / 6.0)
    assert w.average(ONE, 12.0, 60.0)[0] == pytest.approx(3.0 * 2.0 / 60.0)


def test_windows_skip_queries_while_quiet():
    queries: list = []
    fc, w = step_cluster(queries=queries), ConcurrencyWindows(1, 60.0)
    w.restart(ONE, 0.0, fc.arrival_counts(-math.inf))
    for t in (2.0, 4.0, 6.0, 8.0):
        sample(w, fc, ONE, t)
    assert len(queries) == 1  # the first bucket had no request and nothing arrived since
    sample(w, fc, ONE, 12.0)  # the arrival at 10 forces a query
    assert len(queries) == 2 and w.average(ONE, 12.0, 6.0)[0] == pytest.approx(6.0 / 6.0)


def test_windows_of_many_functions_equal_one_at_a_time():
    """Functions sampled on their own schedules (ticks and wakes, restarts, more buckets
    than the first ring capacity) keep the averages each would have alone."""
    n, rng = 6, np.random.default_rng(3)
    fc = step_cluster(n)
    alone = [step_cluster(n) for _ in range(n)]
    many = ConcurrencyWindows(n, 60.0, capacity=4)  # compacted and grown on the way
    many.restart(np.arange(n), 0.0, fc.arrival_counts(-math.inf))
    single = [ConcurrencyWindows(n, 60.0, capacity=4) for _ in range(n)]
    for i, s in enumerate(single):
        s.restart(np.array([i]), 0.0, alone[i].arrival_counts(-math.inf))
    t = 0.0
    for _ in range(150):
        t += float(rng.choice([2.0, 0.3, 0.7]))
        fns = np.flatnonzero(rng.random(n) < 0.6)
        sample(many, fc, fns, t)
        restart = fns[rng.random(fns.size) < 0.02]
        many.restart(restart, t, fc.arrival_counts(-math.inf))
        for i in fns:
            f = np.array([i])
            sample(single[i], alone[i], f, t)
            if i in restart:
                single[i].restart(f, t, alone[i].arrival_counts(-math.inf))
        for win in (6.0, 60.0):
            got = many.average(fns, t, win)
            want = [single[i].average(np.array([i]), t, win)[0] for i in fns]
            assert got.tolist() == want


class RequestView:
    """A view over explicit requests (arrival, leave) per function: the request-seconds
    over (t0, now] summed request by request, busy when one that arrived by now has
    not left."""

    def __init__(self, requests: list[list[tuple[float, float]]]) -> None:
        self.requests = requests
        self.now = 0.0
        self.asked = 0

    def counts(self, t: float | None = None) -> np.ndarray:
        t = self.now if t is None else t
        return np.array([sum(a <= t for a, _ in r) for r in self.requests])

    def in_system_since(self, fns, t0):
        seconds, busy = [], []
        for f, start in zip(fns.tolist(), np.broadcast_to(t0, fns.shape).tolist(), strict=True):
            total = 0.0
            for a, e in self.requests[f]:
                x = min(e, self.now) - max(a, start) if a <= self.now else 0.0
                total += x if x > 0.0 else 0.0
            seconds.append(total)
            busy.append(any(a <= self.now < e for a, e in self.requests[f]))
        self.asked += fns.size
        return np.array(seconds), np.array(busy, dtype=bool)


class OneFunctionBuckets:
    """The metric buckets of one function, one Python list, every sample a bucket (empty
    ones too), every bucket asked of the view: the reference ConcurrencyWindows
    reproduces bit for bit."""

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self.restart(0.0)

    def restart(self, now: float) -> None:
        self.origin = self.last = now
        self.total = 0.0
        self.buckets: list[tuple[float, float, float]] = []

    def idle(self, now: float) -> None:
        self.restart(now)
        self.origin = now - self.keep
        self.buckets = [(now - self.keep, now, 0.0)]

    def sample(self, view: RequestView, f: int, now: float) -> None:
        if self.last >= now:
            return
        span = now - self.last
        rs = float(view.in_system_since(np.array([f]), self.last)[0][0]) / span * span
        self.buckets.append((self.last, now, rs))
        self.total += rs
        self.last = now
        while self.buckets[0][1] <= now - self.keep + 1e-9:
            self.total -= self.buckets.pop(0)[2]

    def average(self, now: float, window: float) -> float:
        t0 = max(self.origin, now - window)
        if not (now > t0 and self.buckets):
            return 0.0
        if window >= self.keep:
            rs = self.total
            b0, b1, brs = self.buckets[0]
            if b0 < t0:
                rs -= brs * (t0 - b0) / (b1 - b0)
        else:
            rs = 0.0  # newest first
            for b0, b1, brs in reversed(self.buckets):
                if b1 > t0:
                    rs += brs * (b1 - t0) / (b1 - b0) if b0 < t0 else brs
        return max(0.0, rs) / (now - t0)


@pytest.mark.parametrize("seed", range(4))
def test_windows_equal_per_function_bucket_lists_bit_for_bit(seed):
    """ConcurrencyWindows (empty buckets not stored, one log for all functions, quiet
    functions not asked) gives exactly the averages of plain per-function bucket lists
    over the same samples: ticks of all functions, wakes of a few, restarts, idle
    restarts, a small log that is compacted and grown."""
    rng = np.random.default_rng(seed)
    n, keep = 6, 60.0
    requests = []
    for f in range(n):
        t, reqs = rng.uniform(0.0, 30.0), []
        while t < 600.0:
            reqs.append((t, t + rng.choice([0.05, 0.7, 3.0, 40.0]) * rng.uniform(0.5, 1.5)))
            t += rng.exponential([0.3, 2.0, 15.0, 90.0, 5.0, 40.0][f])
        requests.append(reqs)
    view = RequestView(requests)
    windows = ConcurrencyWindows(n, keep, capacity=4)
    reference = [OneFunctionBuckets(keep) for _ in range(n)]
    every = np.arange(n)
    windows.idle(every[:2], 0.0, view.counts(), np.zeros(n, dtype=np.int64))
    for f in range(2):
        reference[f].idle(0.0)
    now, asked, samples = 0.0, 0, 0
    while now < 700.0:
        now = round(now + float(rng.choice([2.0, 2.0, 0.37, 1.1])), 6)
        view.now = now
        fns = every if rng.random() < 0.6 else np.flatnonzero(rng.random(n) < 0.3)
        restart = fns[rng.random(fns.size) < 0.03]
        windows.restart(restart[::2], now, view.counts())
        windows.idle(restart[1::2], now, view.counts(), view.counts(now - keep))
        for k, f in enumerate(restart):
            (reference[f].idle if k % 2 else reference[f].restart)(now)
        before = view.asked
        windows.sample(view, fns, now, view.counts())
        asked += view.asked - before
        for f in fns:
            samples += reference[f].last < now
            reference[f].sample(view, f, now)
        for window in (6.0, keep):
            got = windows.average(fns, now, window).tolist()
            assert got == [reference[f].average(now, window) for f in fns]
    assert asked < 0.7 * samples  # quiet functions were not asked


def test_windows_match_the_simulation_view():
    """In a simulation the buckets reproduce view.concurrency over both windows."""
    from hasim.autoscale.static import StaticAutoscaler, StaticConfig

    errors: list[float] = []

    class Probe:
        period_s = 2.0

        def __init__(self) -> None:
            self.static = StaticAutoscaler(StaticConfig(pods=1), 4)
            self.w = ConcurrencyWindows(1, 60.0)

        def decide(self, now, view):
            self.w.sample(view, ONE, now, view.arrival_counts(-math.inf))
            for win in (6.0, 60.0):
                direct = view.concurrency("a", max(0.0, now - win), now)
                errors.append(abs(self.w.average(ONE, now, win)[0] - direct))
            return self.static.decide(now, view)

    w = poisson_workload({"a": 30.0}, 200.0, seed=4)
    simulate(w, Probe(), latency=StubLatency(0.1), drain=0.0)
    assert len(errors) > 150 and max(errors) < 1e-9


# ---- the autoscaler's decisions (FakeCluster) ---------------------------------------------


class Recorder(FakeCluster):
    """A FakeCluster that records which functions each array query asks about."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.asked: list[tuple[str, list[int]]] = []

    def in_system_seconds(self, fns, t0, t1):
        self.asked.append(("in_system_seconds", list(fns)))
        return super().in_system_seconds(fns, t0, t1)

    def queued_counts(self, fns):
        self.asked.append(("queued_counts", list(fns)))
        return super().queued_counts(fns)

    def in_flight_counts(self, fns):
        self.asked.append(("in_flight_counts", list(fns)))
        return super().in_flight_counts(fns)

    def asked_about(self) -> set[int]:
        return {i for _, fns in self.asked for i in fns}


def test_scale_from_zero_at_a_wake_and_idle_functions_cost_nothing():
    """Three functions: f0 never gets traffic, f1 a request at 3.1 s (between ticks),
    f2 none until 40 s. The wake at 3.1 s creates one whole-GPU pod for f1 only; f0
    is never asked about, f2 only once its request is there."""
    names = [("f0", "resnet50"), ("f1", "resnet50"), ("f2", "resnet50")]
    fc = Recorder(functions=names, arrivals={"f0": [], "f1": [3.1], "f2": [40.0]}, period=2.0)
    fc.totals = {"f0": 1, "f1": 1, "f2": 1}  # every function has a decider (active)
    kpa = KPAAutoscaler(KPAConfig(), 4)
    for t in (0.0, 2.0):
        assert fc.step(kpa, t) == []
    fc.queued = {"f1": 1}
    acts = fc.step(kpa, 3.1)
    assert fc.cause is Call.WAKE
    assert acts == [CreatePod("f1", 100.0, 1.0, 4, exclusive=True)]
    fc.queued = {}
    for t in np.arange(4.0, 40.0, 2.0):
        fc.step(kpa, float(t))
    assert fc.asked_about() == {1}
    fc.queued = {"f2": 1}
    acts = fc.step(kpa, 40.0)
    assert [a.function for a in acts] == ["f2"]
    assert 0 not in fc.asked_about()


def test_only_functions_whose_count_changes_act_and_new_pods_fit_the_free_gpus():
    """Two functions need 3 pods each on a 5-GPU cluster whose GPU 0 holds two pods of a
    function without traffic: after one warm pod each for a, b and c, one GPU is free, so
    a (first in function order) gets one more pod and b none; c, at its count, nothing."""
    names = [("x", "resnet50"), ("a", "resnet50"), ("b", "resnet50"), ("c", "resnet50")]
    arrivals = {"x": [], "a": [1.0], "b": [1.0], "c": [1.0]}
    fc = FakeCluster(n_gpus=5, functions=names, arrivals=arrivals)
    fc.totals = {"x": 0, "a": 1, "b": 1, "c": 1}
    for row in (0, 1):
        fc.add_pod("x", 50.0, 0.5, gpu=0, row=row)
    kpa = KPAAutoscaler(KPAConfig(target=1.0, min_scale=1, max_scale=3), 4)
    fc.step(kpa, 0.0)  # prewarmed: one warm pod each, GPUs 1-3
    assert [len(fc.live(f)) for f in "xabc"] == [2, 1, 1, 1]
    heavy = {"a": 20.0, "b": 20.0, "c": 0.0}
    fc.conc = lambda f, t0, t1: heavy[f]
    acts = fc.step(kpa, 2.0)  # panic: a and b want 3 pods (max_scale) each, c stays at 1
    assert [(type(x).__name__, x.function) for x in acts] == [("CreatePod", "a")]
    assert not fc.failed


def test_scale_down_deletes_starting_pods_first_then_the_newest_ready():
    fc = FakeCluster(n_gpus=8, arrivals={"f": [0.5]}, ready_delay=100.0)
    fc.totals = {"f": 1}
    kpa = KPAAutoscaler(KPAConfig(target=1.0, max_scale_down_rate=8.0), 4)
    for t in range(3):
        fc.now = float(t)
        fc.add_pod("f", 100.0, 1.0, gpu=t, row=0)
    fc.conc = lambda f, t0, t1: 0.0
    fc.step(kpa, 3.0)  # a decider over 3 ready pods starts in panic: no change yet
    fc.conc = lambda f, t0, t1: 5.0
    acts = fc.step(kpa, 5.0)  # 5 pods wanted: 2 start (ready only after 100 s)
    assert sum(isinstance(a, CreatePod) for a in acts) == 2
    starting = sorted(p.id for p in fc.live("f") if p.state is PodState.STARTING)
    fc.conc = lambda f, t0, t1: 0.0
    t, deleted = 5.0, []
    while not deleted:
        t += 2.0
        deleted = [a.pod for a in fc.step(kpa, t) if isinstance(a, DeletePod)]
    assert deleted[: len(starting)] == starting[::-1]  # newest starting pod first
    if len(deleted) > len(starting):
        assert deleted[len(starting)] == 2  # then the newest ready one


def test_inactive_functions_get_no_decider():
    fc = FakeCluster(
        functions=[("a", "resnet50"), ("b", "resnet50")], arrivals={"a": [], "b": [1.0]}
    )
    fc.totals = {"a": 0, "b": 1}
    kpa = KPAAutoscaler(KPAConfig(min_scale=1), 4)
    acts = fc.step(kpa, 0.0)
    assert [a.function for a in acts] == ["b"] and acts[0].warm


# ---- configuration ---------------------------------------------------------------------


def test_yaml_matches_the_dataclass_and_builds():
    node = OmegaConf.load("conf/autoscaler/kpa.yaml")
    cfg = to_typed(node, KPAConfig, "autoscaler")
    assert cfg == KPAConfig()
    assert set(node.keys()) == set(KPAConfig.__dataclass_fields__)
    a = build(cfg, ClusterConfig(max_batch=8))
    assert a.batch == 8 and a.period_s == 2.0 and a.wake_on_arrival


# ---- simulation ------------------------------------------------------------------------


def cold(seconds: float) -> ColdStartConfig:
    c, z = DistConfig("constant", seconds), DistConfig("constant", 0.0)
    return ColdStartConfig(z, c, z, z, 0.0, z)


def check_accounting(sim, w: Workload, req) -> None:
    """Checks a wrong engine fails: every request of the workload once; each function's
    requests start in arrival order (one FIFO), at or after arrival; a served request ran
    on one of its function's pods that was ready and not yet deleted when its batch
    started, in a batch no larger than the pod's, whose requests share that start."""
    assert len(req) == w.total_requests
    for name, part in req.groupby("function", observed=True):
        assert np.array_equal(part["arrival"].to_numpy(), w.arrivals[name])
        started = part.dropna(subset=["start"])
        assert (np.diff(started["start"].to_numpy()) >= 0).all()
    done = req[req["status"] == "completed"]
    assert (done["start"] >= done["arrival"]).all() and (done["finish"] > done["start"]).all()
    for (pod_id, start), batch in done.groupby(["pod", "start"]):
        pod = sim.pods[int(pod_id)]
        assert (batch["function"] == pod.function).all()
        assert pod.ready_at <= start and not pod.delete_at < start
        assert len(batch) == batch["batch"].iloc[0] <= pod.batch
    dropped = req[req["status"] == "dropped"]
    assert dropped["start"].isna().all() and (dropped["reason"] == "timeout").all()


def check_exclusive(sim) -> None:
    """Every pod holds a whole GPU, and no GPU ever holds two pods at once."""
    a = metrics.alloc_frame(sim)
    assert a["exclusive"].all() and (a["share"] == 1.0).all()
    assert (a["sm_pct"] == 100.0).all() and (a["quota"] == 1.0).all()
    for _, g in a.groupby("gpu"):
        g = g.sort_values("t_start")
        assert (g["t_start"].to_numpy()[1:] >= g["t_end"].to_numpy()[:-1] - 1e-9).all()


def max_gpus_at_once(sim) -> int:
    """The most whole-GPU pods held at one instant (from the allocation log)."""
    a = metrics.alloc_frame(sim)
    ev = sorted([(t, 1) for t in a["t_start"]] + [(t, -1) for t in a["t_end"]])
    return int(max(np.cumsum([d for _, d in ev])))


def test_burst_gets_whole_gpu_pods_and_every_request_is_served():
    rng = np.random.default_rng(0)
    arr = np.sort(rng.uniform(10.0, 13.0, 300))
    w = Workload([FunctionSpec("f", "resnet50", 5.0)], {"f": arr}, 20.0)
    sim, req = simulate(
        w,
        KPAAutoscaler(KPAConfig(), 4),
        latency=StubLatency(0.05, "deterministic"),
        cold_start=cold(5.0),
        drain=200.0,
    )
    check_accounting(sim, w, req)
    assert (req["status"] == "completed").all()
    pods = list(sim.pods.values())
    assert 1 < len(pods) <= 8
    assert min(p.created_at for p in pods) == pytest.approx(arr[0])  # woken by the first
    first_ready = min(p.ready_at for p in pods)
    assert first_ready == pytest.approx(arr[0] + 5.0)
    assert req["start"].min() >= first_ready - 1e-9  # buffered until a pod was ready
    check_exclusive(sim)
    # all gone again after the stable window + grace
    assert all(p.removed_at == p.removed_at for p in pods)
    # cost: one GPU-second per second of each pod's life
    a = metrics.alloc_frame(sim)
    life = sum(np.fmin(p.removed_at, sim.end_time) - p.created_at for p in pods)
    assert ((a["t_end"] - a["t_start"]) * a["share"]).sum() == pytest.approx(life)
    assert not any(not x["ok"] for x in sim.logs.actions)


def test_scale_from_zero_and_back_to_zero():
    arr = np.array([5.0, 5.1, 200.0])
    w = Workload([FunctionSpec("f", "resnet50", 5.0)], {"f": arr}, 210.0)
    sim, req = simulate(
        w,
        KPAAutoscaler(KPAConfig(), 4),
        latency=StubLatency(0.05, "deterministic"),
        cold_start=cold(3.0),
        overhead=0.0,
        drain=10.0,
    )
    check_accounting(sim, w, req)
    assert req["start"].tolist() == pytest.approx([8.0, 8.0, 203.0])
    p0, p1 = sim.pods[0], sim.pods[1]
    assert len(sim.pods) == 2
    last_leave = req["finish"].iloc[1]  # 8.05
    # the stable window must pass without traffic, then the grace
    assert p0.delete_at >= last_leave + 60.0 + 30.0 - 1e-9
    assert p0.delete_at <= last_leave + 60.0 + 30.0 + 2 * TICK
    assert p1.created_at == pytest.approx(200.0)
    check_exclusive(sim)


def test_has_gpu_runs_setting_min_1_max_2():
    rates = np.repeat([5.0, 60.0, 5.0], 40)  # req/s per second
    arr = np.concatenate([i + np.arange(r) / r for i, r in enumerate(rates)])
    w = Workload([FunctionSpec("f", "resnet50", 5.0)], {"f": arr}, 120.0)
    cfg = KPAConfig(min_scale=1, max_scale=2)
    sim, req = simulate(
        w, KPAAutoscaler(cfg, 4), latency=StubLatency(0.08, "deterministic"), cold_start=cold(5.0)
    )
    check_accounting(sim, w, req)
    p0 = sim.pods[0]
    assert p0.created_at == 0.0 and p0.ready_at == 0.0  # prewarmed min_scale pod
    assert math.isnan(p0.removed_at)  # never below min_scale
    assert max_gpus_at_once(sim) == 2  # scaled out, capped at 2
    check_exclusive(sim)


def test_prewarmed_revision_starts_with_an_idle_history():
    """A prewarmed min_scale pod stands for a revision deployed before the trace: a
    request at t = 0 does not start a second replica (no activator floor), and the
    stable window holds the idle time before t = 0, so a light load that stays under
    the target (8 req/s x 80 ms = 0.64 < 0.7 requests) never scales out, while 15 req/s
    (1.2 requests, panic at 2 x) does, once the panic window sees it."""

    def run(rates: list[float]) -> tuple[object, object]:
        per_s = np.repeat(rates, 20)
        arr = np.concatenate([i + np.arange(r) / r for i, r in enumerate(per_s)])
        w = Workload([FunctionSpec("f", "resnet50", 5.0)], {"f": arr}, float(len(per_s)))
        cfg = KPAConfig(min_scale=1, max_scale=2, target=0.7, batch=1)
        return simulate(
            w,
            KPAAutoscaler(cfg, 1),
            latency=StubLatency(0.08, "deterministic"),
            cold_start=cold(5.0),
            overhead=0.0,
        )

    sim, req = run([8.0, 8.0, 8.0])
    assert len(sim.pods) == 1  # the light load never needs a second replica
    assert sim.pods[0].ready_at == 0.0
    sim, req = run([8.0, 15.0, 15.0])
    assert len(sim.pods) == 2
    p1 = sim.pods[1]
    assert 20.0 <= p1.created_at <= 30.0  # scaled out for the 15 req/s stage, not at t = 0


def test_no_free_gpu_means_no_failed_actions():
    w = poisson_workload({"a": 200.0, "b": 200.0}, 30.0, seed=3)
    sim, req = simulate(
        w, KPAAutoscaler(KPAConfig(), 4), latency=StubLatency(0.05), nodes=3, timeout=20.0
    )
    check_accounting(sim, w, req)
    assert not any(not x["ok"] for x in sim.logs.actions)
    assert max_gpus_at_once(sim) == 3
    assert {"a", "b"} <= {p.function for p in sim.pods.values()}
    check_exclusive(sim)


def test_startup_aware_does_not_panic_over_the_startup_queue():
    """25 s GPU cold starts, 20 req/s from zero: Knative's panic keeps adding pods for
    the queue that waits for the first one (knative/serving #13284); counting starting
    pods as capacity sizes the function for its traffic (one pod serves 40 req/s)."""
    arr = np.arange(30.0, 150.0, 1 / 20)
    w = Workload([FunctionSpec("f", "resnet50", 30.0)], {"f": arr}, 160.0)
    out = {}
    for aware in (False, True):
        sim, req = simulate(
            w,
            KPAAutoscaler(KPAConfig(startup_aware=aware), 4, overhead=0.07),
            latency=StubLatency(0.03, "deterministic"),
            cold_start=cold(25.0),
            overhead=0.07,
            nodes=64,
            drain=150.0,
        )
        check_accounting(sim, w, req)
        assert (req["status"] == "completed").all()
        out[aware] = len(sim.pods)
    assert out[False] >= 10
    assert out[True] == 1


def test_same_seed_same_decisions():
    w = poisson_workload({"a": 40.0, "b": 5.0}, 60.0, seed=9)
    runs = [
        simulate(w, KPAAutoscaler(KPAConfig(), 4), latency=StubLatency(0.05), cold_start=cold(4.0))
        for _ in range(2)
    ]
    assert runs[0][1].equals(runs[1][1])
    assert runs[0][0].logs.actions == runs[1][0].logs.actions


def test_through_hasim_run(tmp_path):
    """Selectable as autoscaler=kpa (registered in hasim.autoscale.registry)."""
    import hasim

    r = hasim.run(
        [
            "sim.progress=false",
            f"output.dir={tmp_path}",
            "output.write=false",
            "autoscaler=kpa",
            "autoscaler.min_scale=1",
            "autoscaler.max_scale=2",
            "workload.duration=60",
            "workload.rate=20",
        ]
    )
    s = r.summary
    assert s["completed"] + s["dropped"] + s["in_flight"] == s["requests_total"] > 0
    assert 1 <= s["gpus_used_max"] <= 2


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"scale_down_delay": 7.0},
        {"min_scale": 1, "max_scale": 4},
        {"activation_scale": 2, "max_scale": 3},
        {"scale_to_zero": False, "target": 0.7},
    ],
)
def test_decide_one_equals_decide(kw):
    """The scalar decision (``decide_one``, a wake's) gives what the array decision gives
    for that one function, state (panic, ratchet, zero clock) included."""
    rng = np.random.default_rng(11)
    n = 6
    cfg = KPAConfig(**{"target": 1.0, **kw})
    ready0 = rng.integers(0, 4, n)
    arrays, scalars = KPADeciders(cfg, n), KPADeciders(cfg, n)
    for d in (arrays, scalars):
        d.start(np.arange(n), 0.0, ready0)
    for step in range(1, 400):
        now = 2.0 * step + (0.5 if step % 7 == 0 else 0.0)
        i = int(rng.integers(0, n))
        scale = float(rng.choice([0.0, 0.0, 0.5, 1.4, 5.0, 40.0]))
        stable, panic = float(rng.random() * scale), float(rng.random() * scale * 2.0)
        ready = int(rng.integers(0, 30) * (rng.random() < 0.7))
        current = ready + int(rng.integers(0, 3) * (rng.random() < 0.8))
        one = np.array([i])
        want = arrays.decide(
            one, now, np.array([stable]), np.array([panic]), np.array([ready]), np.array([current])
        )
        assert scalars.decide_one(i, now, stable, panic, ready, current) == int(want[0])
        np.testing.assert_array_equal(scalars.panic_time, arrays.panic_time)
        np.testing.assert_array_equal(scalars.max_panic_pods, arrays.max_panic_pods)
        np.testing.assert_array_equal(scalars.zero_since, arrays.zero_since)


@pytest.mark.parametrize("nodes", [40, 3])
def test_wake_fast_path_matches_the_general_path(nodes):
    """Bursts separated by quiet spells (scale to zero, then a wake per burst; with 3
    GPUs some wakes find no GPU): the one-function wake path (``_wake_one``) gives the
    same actions, pods and requests as the general path."""
    rng = np.random.default_rng(5)
    arrivals = {}
    for k in range(8):
        starts = np.cumsum(rng.uniform(20.0, 200.0, 12))
        parts = [
            s + np.sort(rng.uniform(0.0, rng.uniform(0.5, 20.0), rng.integers(1, 40)))
            for s in starts
        ]
        arrivals[f"f{k}"] = np.concatenate(parts)
    duration = float(max(a[-1] for a in arrivals.values())) + 1.0
    w = Workload([FunctionSpec(n, "resnet50", 5.0) for n in arrivals], arrivals, duration)

    woken = []

    def run(fast: bool):
        a = KPAAutoscaler(KPAConfig(), 4)
        a.fast_paths = fast
        one = a._wake_one
        a._wake_one = lambda *args: woken.append(1) or one(*args)  # type: ignore[method-assign]
        return simulate(
            w, a, latency=StubLatency(0.3), cold_start=cold(3.0), timeout=30.0, nodes=nodes
        )

    (fast, req_fast), (slow, req_slow) = run(True), run(False)
    assert len(woken) > 40  # (all from the fast run)
    assert fast.logs.actions == slow.logs.actions
    assert str(fast.logs.pods) == str(slow.logs.pods)  # (nan == nan as text)
    assert req_fast.equals(req_slow)
