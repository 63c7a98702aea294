"""FaST-GShare autoscaler (hasim.autoscale.fastgshare): profile, scaling rules, placement,
config, and a full simulation with rectangle-placed pods."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from hasim.autoscale.base import CreatePod, DeletePod, GpuInfo
from hasim.autoscale.fastgshare import (
    FaSTGShareAutoscaler,
    FaSTGShareConfig,
    ProfileEntry,
    build,
    residual_config,
    rpr_order,
    scale_down_plan,
    split_gap,
    trend_factor,
)
from hasim.autoscale.kit import deletion_order, live
from hasim.cluster.models import model_facts
from hasim.cluster.placement import RectBins, RectPacker
from hasim.cluster.pod import PodState
from hasim.config.schema import ClusterConfig
from hasim.config.typed import to_typed
from hasim.errors import InputError
from tests.fakes import FakeCluster
from tests.simkit import StubLatency, poisson_workload, simulate

CONF = Path(__file__).resolve().parents[1] / "conf" / "autoscaler" / "fastgshare.yaml"
MEM = model_facts("resnet50").gpu_mem_mb
STARTING = PodState.STARTING


# ---- a cluster to decide on -------------------------------------------------------------
def flat(model: str, batch: int, sm: float, quota: float) -> float:
    """GPU time 0.05 / quota s, flat in SM and batch (like StubLatency): the most
    efficient config is the smallest box, so every pod has it."""
    return 0.05 / quota


def curved(model: str, batch: int, sm: float, quota: float) -> float:
    """GPU time 1.75 / (SM x quota)^2 s: the most efficient config is a middle one, so
    residual pods are smaller and functions hold several configs."""
    return 1.75 / (sm * quota) ** 2


def cluster(arrivals=None, n_gpus=4, functions=("f",), latency=flat, **kw) -> FakeCluster:
    """A FakeCluster of ResNet-50 functions (latency ``flat`` by default) ticking every
    second."""
    arrivals = arrivals if arrivals is not None else {f: [] for f in functions}
    return FakeCluster(
        n_gpus=n_gpus,
        functions=[(f, "resnet50") for f in arrivals],
        latency=latency,
        arrivals=arrivals,
        period=1.0,
        **kw,
    )


def gpu(i, rects=(), pods=None, mem_free=16_384.0, rows=((0.0, 1.0), (0.0, 1.0))):
    pods = tuple(range(100 * i, 100 * i + len(rects))) if pods is None else pods
    return GpuInfo(i, "V100", rows, tuple(rects), 0.0, mem_free, pods)


def scaler(**kw) -> FaSTGShareAutoscaler:
    return FaSTGShareAutoscaler(FaSTGShareConfig(**kw), default_batch=4, overhead_s=0.07)


def creates(actions):
    return [a for a in actions if isinstance(a, CreatePod)]


# T of a pod in cluster() (saturated, batch 4, overhead 0.07): 4 / (0.05 / q + 0.07)
def t_of(q: float) -> float:
    return 4 / (0.05 / q + 0.07)


# ---- the rules as pure functions ------------------------------------------------------
PROFILE = [
    ProfileEntry(6, 0.2, 13.5),  # RPR 11.25: the most efficient
    ProfileEntry(12, 0.2, 14.0),  # RPR 5.83
    ProfileEntry(6, 0.4, 20.0),  # RPR 8.33
    ProfileEntry(24, 0.4, 25.0),  # RPR 2.60
    ProfileEntry(50, 1.0, 75.0),  # RPR 1.50
]


def test_rpr_is_throughput_per_resource_and_orders_configs():
    assert PROFILE[0].rpr == pytest.approx(13.5 / (6 * 0.2))
    assert [(e.sm_pct, e.quota) for e in rpr_order(PROFILE)] == [
        (6, 0.2),
        (6, 0.4),
        (12, 0.2),
        (24, 0.4),
        (50, 1.0),
    ]
    # equal RPR: the larger T first
    tie = [ProfileEntry(6, 0.2, 12.0), ProfileEntry(6, 0.4, 24.0)]
    assert rpr_order(tie)[0].quota == 0.4


def test_floor_plus_residual_rule():
    # gap 30 with T_e 13.5: 2 replicas of e, residual 3 -> the smallest config with T > 3
    prof = [*PROFILE, ProfileEntry(6, 0.1, 4.0)]  # area 0.6, RPR 6.7
    plan = split_gap(30.0, prof)
    assert [(e.sm_pct, e.quota, n) for e, n in plan] == [(6, 0.2, 2), (6, 0.1, 1)]
    # residual 4.5 > 4.0: the smallest config above it is e itself -> 3 of e
    assert [(e.sm_pct, e.quota, n) for e, n in split_gap(31.5, prof)] == [(6, 0.2, 3)]
    # gap 40.5 = 3 x 13.5 exactly: no residual pod
    assert [(e.quota, n) for e, n in split_gap(40.5, PROFILE)] == [(0.2, 3)]
    # gap below T_e: only the residual pod
    assert [(e.quota, n) for e, n in split_gap(3.5, prof)] == [(0.1, 1)]
    assert split_gap(0.0, PROFILE) == [] and split_gap(-3.0, PROFILE) == []
    # residual choice: "area" = least S*Q with T > r; "throughput" = least T > r;
    # none above r -> the largest T
    prof = [*PROFILE, ProfileEntry(100, 0.2, 16.0)]  # area 20, T 16
    assert residual_config(15.0, prof) == ProfileEntry(6, 0.4, 20.0)  # area 2.4
    assert residual_config(15.0, prof, "throughput") == ProfileEntry(100, 0.2, 16.0)
    assert residual_config(13.7, prof) == ProfileEntry(12, 0.2, 14.0)  # area tie: smaller T
    assert residual_config(100.0, prof) == ProfileEntry(50, 1.0, 75.0)


def test_rising_trend_multiplier():
    assert trend_factor(20.0, 10.0, "ratio") == 2.0
    assert trend_factor(20.0, 10.0, "squared") == 4.0
    assert trend_factor(20.0, 10.0, "off") == 1.0
    assert trend_factor(10.0, 20.0, "ratio") == 1.0  # falling
    assert trend_factor(10.0, 0.0, "ratio") == 1.0  # no history


def test_scale_down_removes_least_efficient_first():
    groups = [(PROFILE[0], 3), (PROFILE[3], 2), (PROFILE[4], 1)]  # RPR 11.25, 2.6, 1.5
    # surplus 110: (50, 1.0) T 75 first -> 1 pod (35 left); (24, 0.4) T 25 -> 1 (10 left);
    # e T 13.5 -> 0
    assert scale_down_plan(110.0, groups) == [0, 1, 1]
    assert scale_down_plan(60.0, groups) == [0, 2, 0]  # 60 < 75: two of T 25, 10 < 13.5
    assert scale_down_plan(5.0, groups) == [0, 0, 0]
    assert scale_down_plan(1e6, groups) == [3, 2, 1]  # never more than a config has


# ---- decide() on a FakeCluster ------------------------------------------------------
def test_no_traffic_no_pods_then_first_request_creates_one_box():
    a = scaler()
    v = cluster({"f": [5.0]})
    assert a.wake_on_arrival and a.period_s == 1.0
    assert v.step(a, 0.0) == []
    assert v.step(a, 4.0) == []  # no request yet
    acts = v.step(a, 5.0)  # the first arrival: gap = 0.1 + 1 > 0 -> one residual pod
    assert len(acts) == 1 and isinstance(acts[0], CreatePod)
    c = acts[0]
    assert (c.sm_pct, c.quota, c.batch, c.gpu) == (6.0, 0.2, 4, 0)
    assert c.rect == (0, 0, 200, 6)
    assert not v.failed and len(v.live("f")) == 1


def test_gap_counts_starting_pods_and_scales_up_by_floor_and_residual():
    a = scaler(trend="off")
    t_e = t_of(0.2)  # e = (SM 6, q 0.2): flat latency in SM, T/(S Q) largest at SM 6
    v = cluster({"f": np.linspace(0.01, 10.0, 400)})  # 40 req/s over the last 10 s
    e = rpr_order(a.profile(v, "resnet50"))[0]
    assert (e.sm_pct, e.quota) == (6.0, 0.2) and e.rps == pytest.approx(t_e)
    v.add_rect_pod("f", 6, 0.2, gpu=0, rect=(0, 0, 200, 6), state=STARTING)
    acts = creates(v.step(a, 10.0))
    gap = 40 + 1 - t_e
    n = int(gap // t_e)
    assert len(acts) == n + 1
    assert all((c.sm_pct, c.quota) == (6.0, 0.2) for c in acts[:n])
    assert t_of(acts[-1].quota) > gap - n * t_e  # the residual pod
    # all go onto GPU 0 beside the starting pod's box, and the cluster takes every box
    assert all(c.gpu == 0 for c in acts) and not v.failed


def test_rising_trend_multiplies_new_replicas():
    arr = np.concatenate([np.linspace(0.5, 30, 60), np.linspace(30.05, 60, 600)])  # 2 -> 20
    for mode, factor in (("off", 1.0), ("ratio", 10.0), ("squared", 100.0)):
        a = scaler(trend=mode)
        v = cluster({"f": arr}, n_gpus=20)
        gap = 20.0 + 1.0
        base = [n for _, n in split_gap(gap, a.profile(v, "resnet50"))]
        expected = sum(int(np.ceil(n * factor - 1e-9)) for n in base)
        got = creates(v.step(a, 60.0))
        assert len(got) + len(a.unplaced) == expected, mode


def test_scale_down_least_efficient_first_newest_first_and_never_to_zero():
    a = scaler()
    v = cluster({"f": [0.5]})
    v.add_rect_pod("f", 6, 0.2, 0, (0, 0, 200, 6), created=1.0)
    v.add_rect_pod("f", 6, 0.2, 0, (200, 0, 200, 6), created=2.0)
    v.add_rect_pod("f", 50, 1.0, 1, (0, 0, 1000, 50), created=3.0)
    v.add_rect_pod("f", 50, 1.0, 1, (0, 50, 1000, 50), state=STARTING, created=4.0)
    acts = v.step(a, 20.0)  # rate 0: gap = 1 - capacity
    # (50, 1.0) is least efficient: both go (the starting pod 3 first); then one
    # (6, 0.2), the newest; the capacity left, T(0.2), covers the headroom
    assert [x.pod for x in acts if isinstance(x, DeletePod)] == [3, 2, 1]
    assert v.step(a, 21.0) == []  # nothing more to remove
    one = cluster({"f": [0.5]})
    one.add_rect_pod("f", 100, 1.0, 0, (0, 0, 1000, 100))
    assert one.step(a, 100.0) == []  # the last pod stays


def test_scale_down_hysteresis_option():
    t = t_of(0.2)
    cap = 10 * t
    rate = cap - 1.0 - 1.6 * t  # gap = -1.6 T: the original rule removes one pod
    n = int(round(rate * 10))

    def ten_pods(arrivals) -> FakeCluster:
        v = cluster({"f": arrivals})
        for j in range(10):
            v.add_rect_pod("f", 6, 0.2, 0, (200 * (j % 5), 6 * (j // 5), 200, 6))
        return v

    gap = n / 10 + 1 - cap
    assert t <= -gap < 0.2 * cap
    busy = np.linspace(0.01, 10.0, n)
    assert len(ten_pods(busy).step(scaler(), 10.0)) == 1
    assert ten_pods(busy).step(scaler(scale_down_threshold=0.2), 10.0) == []
    # a large surplus acts under both: all but one pod go
    assert len(ten_pods([0.5]).step(scaler(scale_down_threshold=0.2), 50.0)) == 9


def test_placement_prefers_the_fullest_gpu_then_unused_then_fails():
    full = [(0, 0, 1000, 100)]
    half = [(0, 0, 1000, 50)]
    most = [(0, 0, 1000, 90)]
    gpus = [gpu(0, full), gpu(1, half), gpu(2, most), gpu(3)]
    p = RectPacker(gpus)
    assert p.place(200, 6, MEM) == (2, (0, 90, 200, 6))  # least free area left
    assert p.place(200, 20, MEM) == (1, (0, 50, 200, 20))
    assert p.place(1000, 60, MEM) == (3, (0, 0, 1000, 60))  # a new GPU
    assert p.place(1000, 60, MEM) is None  # nothing left
    # memory is respected, also for boxes placed in the same decision
    q = RectPacker([gpu(0, half, mem_free=MEM * 1.5), gpu(1)])
    assert q.place(100, 6, MEM)[0] == 0
    assert q.place(100, 6, MEM)[0] == 1
    # a GPU holding row-placed pods is never used
    rows = RectPacker([gpu(0, (), pods=(7,), rows=((50.0, 0.5), (0.0, 1.0))), gpu(1)])
    assert rows.place(200, 6, MEM)[0] == 1


def test_rect_bins_rebuild_a_gpu_only_when_its_boxes_changed():
    v = cluster({"f": []}, n_gpus=3)
    v.add_rect_pod("f", 50, 0.5, 0, (0, 0, 500, 50))
    p = v.add_rect_pod("f", 50, 0.5, 0, (500, 0, 500, 50))
    bins = RectBins()
    # the same choices as a packer rebuilt from gpus(), memory included
    assert bins.packer(v).place(500, 50, MEM) == RectPacker(v.gpus()).place(500, 50, MEM)
    first = bins.cache[0][1]
    v.apply([CreatePod("f", 50, 0.5, 4, gpu=0, rect=(0, 50, 500, 50))])
    packer = bins.packer(v)
    assert packer.place(500, 50, MEM) == (0, (500, 50, 500, 50))
    assert bins.cache[0][1] is first  # the bin placed into last time, not rebuilt
    v.apply([DeletePod(p.id)])  # its box frees: GPU 0 is rebuilt from the boxes left
    assert bins.packer(v).place(500, 50, MEM) == (0, (500, 0, 500, 50))
    assert bins.cache[0][1] is not first


def test_unplaced_pods_are_recorded_not_created():
    a = scaler(trend="off")
    v = cluster({"f": np.linspace(0.01, 10, 1000), "g": []}, n_gpus=1)
    v.add_rect_pod("g", 100, 1.0, 0, (0, 0, 1000, 100))  # the only GPU is full
    assert creates(v.step(a, 10.0)) == []
    assert a.unplaced and a.unplaced[0][1] == "f"


def test_a_request_between_calls_farther_apart_than_the_rate_window_counts():
    a = scaler()
    v = cluster({"f": [3.0]})
    assert v.step(a, 0.0) == []
    # the only request is outside the rate window now, but the function has had traffic
    assert len(creates(v.step(a, 20.0))) == 1


def test_a_function_whose_first_pod_found_no_gpu_keeps_asking():
    a = scaler()
    v = cluster({"f": [1.0], "g": []}, n_gpus=1)
    full = v.add_rect_pod("g", 100, 1.0, 0, (0, 0, 1000, 100))
    assert v.step(a, 0.0) == []
    assert v.step(a, 1.0) == [] and len(a.unplaced) == 1  # its first request
    v.apply([DeletePod(full.id)])  # the GPU frees 14 s later, long after the request
    assert len(creates(v.step(a, 15.0))) == 1


def test_pods_changed_behind_the_policy_are_read_again():
    a = scaler(trend="off")
    v = cluster({"f": np.linspace(0.01, 20.0, 800)})  # 40 req/s
    assert len(creates(v.step(a, 10.0))) == 4
    assert v.step(a, 11.0) == []
    for j in range(5):  # five more pods placed by someone else
        v.add_rect_pod("f", 6, 0.2, 1, (200 * j, 0, 200, 6))
    assert len(v.step(a, 12.0)) == 5  # the surplus goes: five deletions
    gone = [p.id for p in v.live("f")[:3]]
    v.apply([DeletePod(i) for i in gone])  # and three removed behind its back
    assert len(creates(v.step(a, 13.0))) == 3


# ---- the array decisions against the rule, function by function -------------------------
def reference_decide(a: FaSTGShareAutoscaler, now: float, view: FakeCluster) -> list:
    """The module docstring's rule decided per function over the per-function view API
    (the implementation before the array port), with ``a``'s profile: the oracle."""
    c, eps = a.cfg, 1e-9
    packer = RectPacker(view.gpus)
    out: list = []

    def create(name: str, e: ProfileEntry, warm: bool = False) -> None:
        spot = packer.place(e.width, e.height, MEM)
        if spot is not None:
            out.append(
                CreatePod(name, e.sm_pct, e.quota, a.batch, gpu=spot[0], rect=spot[1], warm=warm)
            )

    for f in view.functions():
        name = f.name
        pods = live(view.pods(name))
        if now == 0.0 and c.prewarm and not pods and view.total_arrivals(name) > 0:
            create(name, rpr_order(a.profile(view, f.model))[0], warm=True)
            continue
        if not pods and view.arrivals(name, -1.0, now) == 0:
            continue
        rate = view.arrivals(name, now - c.rate_window, now) / c.rate_window
        rates = [a.throughput(view, p.model, p.batch, p.sm_pct, p.quota) for p in pods]
        gap = rate + c.headroom - sum(rates)
        if gap > eps:
            w = c.trend_window
            past = view.arrivals(name, now - w, now) / w
            old = view.arrivals(name, now - 2 * w, now - w) / w
            factor = trend_factor(past, old, c.trend)
            for e, n in split_gap(gap, a.profile(view, f.model), c.residual):
                for _ in range(math.ceil(n * factor - 1e-9)):
                    create(name, e)
        elif rates and -gap + eps < min(rates):
            continue
        elif gap < -eps and -gap > c.scale_down_threshold * sum(rates):
            groups: dict[tuple, list] = {}
            for p in pods:
                groups.setdefault((p.sm_pct, p.quota, p.batch), []).append(p)
            plan = [
                (ProfileEntry(sm, q, a.throughput(view, f.model, b, sm, q)), ps)
                for (sm, q, b), ps in groups.items()
            ]
            plan.sort(key=lambda g: (g[0].rpr, -g[0].size, -g[0].sm_pct, -g[0].quota))
            counts = scale_down_plan(-gap, [(e, len(ps)) for e, ps in plan])
            for (_, ps), n in zip(plan, counts, strict=True):
                out.extend(DeletePod(p.id) for p in deletion_order(ps)[:n])
    return out


class Reference:
    """``reference_decide`` as a policy."""

    def __init__(self, a: FaSTGShareAutoscaler) -> None:
        self.a = a

    def decide(self, now: float, view: FakeCluster) -> list:
        return reference_decide(self.a, now, view)


CONFIGS = [
    {},
    {"headroom": 0.0},
    {"scale_down_threshold": 0.2, "trend": "squared"},
    {"residual": "throughput", "trend": "off", "prewarm": True},
    {"throughput": "closed_loop", "rate_window": 5.0, "headroom": 2.5},
]


@pytest.mark.parametrize("seed", range(10))
def test_array_decisions_match_the_rule_function_by_function(seed):
    """Random bursts, late and silent functions, irregular calls (wakes between ticks,
    skipped ticks longer than the rate window), pods that start slowly, functions with
    several configs, a cluster that fills up: every call's actions equal the
    per-function rule's."""
    rng = np.random.default_rng(seed)
    arrivals: dict[str, np.ndarray] = {}
    for j in range(int(rng.integers(3, 7))):
        start = float(rng.choice([0.0, 0.0, rng.uniform(10, 150), 1e9]))
        edges = np.sort(rng.uniform(0, 300, 6))
        parts = []
        for t0, t1 in zip(np.r_[0.0, edges], np.r_[edges, 300.0], strict=True):
            rate = float(rng.choice([0.0, 0.3, 3.0, 15.0, 40.0]))
            parts.append(
                np.sort(
                    rng.uniform(
                        max(t0, start),
                        max(t1, start),
                        rng.poisson(rate * max(0.0, t1 - max(t0, start))),
                    )
                )
            )
        arrivals[f"f{j}"] = np.concatenate(parts)
    cfg = CONFIGS[seed % len(CONFIGS)]
    n_gpus = int(rng.integers(2, 8))
    ready = float(rng.choice([0.0, 3.0]))
    times = sorted({*np.arange(0.0, 300.0, 1.0), *np.round(rng.uniform(0, 300, 40), 3)})
    skip = rng.uniform(50, 250)
    times = [t for t in times if not skip < t < skip + 14]  # no call for 14 s > the window
    new, ref = scaler(**cfg), scaler(**cfg)
    kw = {"n_gpus": n_gpus, "ready_delay": ready, "latency": (flat, curved)[seed % 2]}
    fast, slow = cluster(arrivals, **kw), cluster(arrivals, **kw)
    acted = 0
    for t in times:
        got = fast.step(new, float(t))
        want = slow.step(Reference(ref), float(t))
        assert got == want, f"t = {t}"
        acted += bool(got)
    assert acted > 5 and not fast.failed


# ---- config ------------------------------------------------------------------------
def test_yaml_matches_the_dataclass_and_build_uses_cluster_defaults():
    cfg = to_typed(OmegaConf.load(CONF), FaSTGShareConfig, "autoscaler")
    assert cfg == FaSTGShareConfig()
    a = build(cfg, ClusterConfig(max_batch=8, overhead=0.05))
    assert (a.batch, a.overhead, a.period_s) == (8, 0.05, 1.0)
    b = build(replace(cfg, batch=1, overhead=0.0), ClusterConfig())
    assert (b.batch, b.overhead) == (1, 0.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"throughput": "nope"},
        {"trend": "cubed"},
        {"residual": "x"},
        {"token_window": "1s"},
        {"period": 0.0},
        {"quotas": [0.0]},
        {"sms": [120.0]},
        {"scale_down_threshold": -1.0},
        {"headroom": -1.0},
    ],
)
def test_invalid_config_raises(bad):
    with pytest.raises(InputError):
        scaler(**bad)


def test_throughput_modes():
    v = cluster()
    lat = 0.05 / 0.5
    expect = {
        "saturated": 4 / (lat + 0.07),
        "has": 2.5 / (lat + 0.07),
        "closed_loop": 1 / (lat + 0.07),
        "gpu": 1 / lat,
    }
    for mode, t in expect.items():
        assert scaler(throughput=mode).throughput(v, "resnet50", 4, 24, 0.5) == pytest.approx(t)


# ---- a simulation --------------------------------------------------------------------
def test_simulation_places_pods_as_boxes_and_accounts_for_every_request():
    w = poisson_workload({"a": 30.0, "b": 8.0}, 120.0, seed=4)
    a = build(FaSTGShareConfig(), ClusterConfig())
    sim, req = simulate(
        w, a, latency=StubLatency(0.02, per_item=0.005), nodes=4, max_batch=4, drain=60.0
    )
    # simkit runs with check_invariants: GPU invariants held after every action
    assert len(req) == w.total_requests
    assert (req["status"] == "completed").all()
    pods = sim.logs.pods
    assert pods and all(p["row"] == -1 for p in pods)  # every pod was a box
    created = [x for x in sim.logs.actions if x["action"] == "CreatePod"]
    assert created and all(x["ok"] for x in created)
    assert not a.unplaced
    for name in ("a", "b"):  # each function got a pod only once traffic came
        first = min(p["created_at"] for p in pods if p["function"] == name)
        assert first == pytest.approx(w.arrivals[name][0])
    # boxes stayed inside the GPUs and the end state holds no overlaps
    for g in sim.gpus:
        g.check()
        assert not any(r.pods for r in g.rows)

    # capacity follows the load: at t = 100 s function a (30 req/s) holds more pods
    def alive(name: str, t: float) -> int:
        return sum(
            p["function"] == name
            and p["created_at"] <= t
            and not (p["removed_at"] <= t)  # NaN: never removed
            for p in pods
        )

    assert alive("a", 100.0) > alive("b", 100.0) >= 1
    assert alive("a", sim.end_time) >= 1 and alive("b", sim.end_time) >= 1  # never to zero
