"""FaST-GShare autoscaler (hasim.autoscale.fastgshare): profile, scaling rules, placement,
config, and a full simulation with rectangle-placed pods."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from hasim.autoscale.base import CreatePod, DeletePod, GpuInfo, PodInfo
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
from hasim.cluster.models import model_facts
from hasim.cluster.placement import RectPacker
from hasim.config.schema import ClusterConfig
from hasim.config.typed import to_typed
from hasim.errors import InputError
from hasim.workload.base import FunctionSpec
from tests.simkit import StubLatency, poisson_workload, simulate

CONF = Path(__file__).resolve().parents[1] / "conf" / "autoscaler" / "fastgshare.yaml"
MEM = model_facts("resnet50").gpu_mem_mb


# ---- a hand-made cluster view -------------------------------------------------------
class FakeView:
    """ClusterView stand-in: arrival times per function, pods, GPUs; latency = GPU time
    ``base / quota`` (flat in SM and batch, like StubLatency)."""

    def __init__(self, arrivals=None, pods=(), gpus=None, base=0.05, n_gpus=4):
        self.now = 0.0
        self.arr = {k: np.sort(np.asarray(v, float)) for k, v in (arrivals or {"f": []}).items()}
        self._pods = list(pods)
        self._gpus = gpus if gpus is not None else [gpu(i) for i in range(n_gpus)]
        self.base = base

    def functions(self):
        return [FunctionSpec(n, "resnet50") for n in self.arr]

    def pods(self, function=None):
        return [p for p in self._pods if function is None or p.function == function]

    def gpus(self):
        return self._gpus

    def arrivals(self, function, t0, t1):
        a = self.arr[function]
        t1 = min(t1, self.now)
        return int(np.searchsorted(a, t1, "right") - np.searchsorted(a, t0, "right"))

    def latency_s(self, model, batch, sm_pct, quota):
        return self.base / quota


def gpu(i, rects=(), pods=None, mem_free=16_384.0, rows=((0.0, 1.0), (0.0, 1.0))):
    pods = tuple(range(100 * i, 100 * i + len(rects))) if pods is None else pods
    return GpuInfo(i, "V100", rows, tuple(rects), 0.0, mem_free, pods)


def pod(i, sm, q, state="ready", created=0.0, function="f", batch=4):
    return PodInfo(i, function, "resnet50", sm, q, batch, state, 0, -1, created, 0.0)


def scaler(**kw) -> FaSTGShareAutoscaler:
    return FaSTGShareAutoscaler(FaSTGShareConfig(**kw), default_batch=4, overhead_s=0.07)


def creates(actions):
    return [a for a in actions if isinstance(a, CreatePod)]


# T of a pod under FakeView(base 0.05), saturated, batch 4, overhead 0.07: 4/(0.05/q + 0.07)
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


# ---- decide() on a hand-made view -----------------------------------------------------
def test_no_traffic_no_pods_then_first_request_creates_one_box():
    a = scaler()
    v = FakeView({"f": [5.0]})
    assert a.wake_on_arrival and a.period_s == 1.0
    v.now = 0.0
    assert a.decide(0.0, v) == []
    v.now = 5.0  # woken at the first arrival: gap = 0.1 + 1 > 0 -> one residual pod
    acts = a.decide(5.0, v)
    assert len(acts) == 1 and isinstance(acts[0], CreatePod)
    c = acts[0]
    assert (c.sm_pct, c.quota, c.batch, c.gpu) == (6.0, 0.2, 4, 0)
    assert c.rect == (0, 0, 200, 6)


def test_gap_counts_starting_pods_and_scales_up_by_floor_and_residual():
    a = scaler(trend="off")
    t_e = t_of(0.2)  # e = (SM 6, q 0.2): flat latency in SM, T/(S Q) largest at SM 6
    e = rpr_order(a.profile(FakeView(), "resnet50"))[0]
    assert (e.sm_pct, e.quota) == (6.0, 0.2) and e.rps == pytest.approx(t_e)
    arr = np.linspace(0.01, 10.0, 400)  # 40 req/s over the last 10 s
    v = FakeView({"f": arr}, pods=[pod(1, 6, 0.2, "starting")])
    v.now = 10.0
    gap = 40 + 1 - t_e
    n = int(gap // t_e)
    acts = creates(a.decide(10.0, v))
    assert len(acts) == n + 1
    assert all((c.sm_pct, c.quota) == (6.0, 0.2) for c in acts[:n])
    r = gap - n * t_e
    last = acts[-1]
    assert t_of(last.quota) > r
    # boxes of one decision never overlap and all go onto GPU 0 while it has room
    boxes = [c.rect for c in acts if c.gpu == 0]
    assert len(boxes) == len(acts)
    for i, b in enumerate(boxes):
        for o in boxes[i + 1 :]:
            assert not (b[0] < o[0] + o[2] and o[0] < b[0] + b[2] and b[1] < o[1] + o[3])


def test_rising_trend_multiplies_new_replicas():
    arr = np.concatenate([np.linspace(0.5, 30, 60), np.linspace(30.05, 60, 600)])  # 2 -> 20
    for mode, factor in (("off", 1.0), ("ratio", 10.0), ("squared", 100.0)):
        a = scaler(trend=mode)
        v = FakeView({"f": arr}, n_gpus=20)
        v.now = 60.0
        gap = 20.0 + 1.0
        base = [n for _, n in split_gap(gap, a.profile(v, "resnet50"))]
        expected = sum(int(np.ceil(n * factor - 1e-9)) for n in base)
        got = creates(a.decide(60.0, v))
        assert len(got) + len(a.unplaced) == expected, mode


def test_scale_down_least_efficient_first_newest_first_and_never_to_zero():
    a = scaler()
    pods = [
        pod(1, 6, 0.2, created=1.0),
        pod(2, 6, 0.2, created=2.0),
        pod(3, 50, 1.0, created=3.0),
        pod(4, 50, 1.0, "starting", created=4.0),
    ]
    v = FakeView({"f": [0.5]}, pods=pods)
    v.now = 20.0  # rate 0: gap = 1 - capacity
    acts = a.decide(20.0, v)
    deleted = [x.pod for x in acts if isinstance(x, DeletePod)]
    # (50, 1.0) is least efficient; both go (starting pod 4 first); then one (6, 0.2),
    # the newest; capacity left = T(0.2) >= 1
    assert deleted == [4, 3, 2]
    one = FakeView({"f": [0.5]}, pods=[pod(1, 100, 1.0)])
    one.now = 100.0
    assert a.decide(100.0, one) == []  # the last pod stays


def test_scale_down_hysteresis_option():
    pods = [pod(i, 6, 0.2) for i in range(10)]
    t = t_of(0.2)
    cap = 10 * t
    rate = cap - 1.0 - 1.6 * t  # gap = -1.6 T: the original rule removes one pod
    n = int(round(rate * 10))
    v = FakeView({"f": np.linspace(0.01, 10.0, n)}, pods=pods)
    v.now = 10.0
    gap = n / 10 + 1 - cap
    assert t <= -gap < 0.2 * cap
    assert len(scaler().decide(10.0, v)) == 1
    assert scaler(scale_down_threshold=0.2).decide(10.0, v) == []
    # a large surplus acts under both: all but one pod go
    idle = FakeView({"f": [0.5]}, pods=pods)
    idle.now = 50.0
    assert len(scaler(scale_down_threshold=0.2).decide(50.0, idle)) == 9


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


def test_unplaced_pods_are_recorded_not_created():
    a = scaler(trend="off")
    v = FakeView({"f": np.linspace(0.01, 10, 1000)}, gpus=[gpu(0, [(0, 0, 1000, 100)])])
    v.now = 10.0
    assert creates(a.decide(10.0, v)) == []
    assert a.unplaced and a.unplaced[0][1] == "f"


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
    v = FakeView(base=0.05)
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
