"""MIG as a resource (hasim.cluster.mig, the engine's MIG path) and the parvagpu policy."""

from __future__ import annotations

import numpy as np
import pytest

from hasim.autoscale.base import CreatePod, ReconfigureMig
from hasim.autoscale.parvagpu import Menu, ParvaGPUAutoscaler, ParvaGPUConfig, Segment
from hasim.autoscale.static import StaticAutoscaler, StaticConfig
from hasim.cluster.mig import best_start, room
from hasim.config.schema import ClusterConfig, SimConfig
from hasim.errors import InputError
from hasim.hardware import gpu_spec, mig_layout_fits
from hasim.sim import metrics
from hasim.sim.engine import Simulation
from hasim.workload.base import FunctionSpec, Workload
from tests.invariants import check_run
from tests.simkit import StubLatency, no_cold_start

A100 = "A100-80GB"


def test_layout_rules():
    assert mig_layout_fits(A100, [("4g.40gb", 0), ("3g.40gb", 4)])
    assert not mig_layout_fits(A100, [("4g.40gb", 0), ("4g.40gb", 4)])  # 4g starts at 0 only
    assert not mig_layout_fits(A100, [("4g.40gb", 0), ("4g.40gb", 0)])
    assert mig_layout_fits(A100, [("3g.40gb", 0), ("3g.40gb", 4)])
    assert not mig_layout_fits(A100, [("7g.80gb", 0), ("1g.10gb", 6)])
    assert mig_layout_fits(A100, [("1g.10gb", s) for s in range(7)])
    with pytest.raises(InputError, match="1g.10gb"):
        mig_layout_fits(A100, [("3g.20gb", 0)])  # a 40 GB name on the 80 GB part
    with pytest.raises(InputError, match="no MIG"):
        mig_layout_fits("V100", [("1g.10gb", 0)])


def test_best_start_leaves_room():
    spec = gpu_spec(A100)
    # a 1g beside nothing: slice 6 keeps 4g (0..3) and 2g (4..5) possible
    s = best_start(spec, (), "1g.10gb")
    assert room(spec, (("1g.10gb", s),)) == 6
    assert best_start(spec, (("4g.40gb", 0),), "3g.40gb") == 4
    assert best_start(spec, (("7g.80gb", 0),), "1g.10gb") is None


def _workload(rate: float, duration: float, model: str = "resnet50") -> Workload:
    t = np.arange(0.0, duration, 1.0 / rate) if rate else np.empty(0)
    return Workload([FunctionSpec("f", model, 0.5)], {"f": t}, duration)


def _sim(policy, workload, **cluster) -> Simulation:
    cc = ClusterConfig(**{"gpu": A100, "nodes": 2, "cold_start": no_cold_start(), **cluster})
    scfg = SimConfig(progress=False, check_invariants=True, drain=5.0)
    return Simulation(workload, StubLatency(0.02, "deterministic"), policy, cc, scfg, 0).run()


def test_static_mig_cost_and_errors():
    w = _workload(5.0, 20.0)
    cfg = StaticConfig(pods=2, sm=50.0, quota=0.5, mig="3g.40gb")
    sim = _sim(StaticAutoscaler(cfg, 4, ClusterConfig(gpu=A100)), w)
    a = metrics.alloc_frame(sim)
    assert len(a) == 2 and (a["mig"] >= 0).all() and a["mig"].nunique() == 2  # own instances
    np.testing.assert_allclose(a["share"], 3 / 7 * 0.5 * 0.5)
    # cost: GPU-seconds over the workload window (20 s) of two pods
    req = metrics.requests_frame(sim, metrics.slos(sim))
    summary = metrics.summarize(sim, req, a, metrics.usage_frame(a, 2.0, sim.end_time))
    assert summary["cost_gpu_seconds"] == pytest.approx(2 * 20.0 * 3 / 7 * 0.25)
    check_run(sim, req)
    with pytest.raises(InputError, match="no MIG"):
        StaticAutoscaler(StaticConfig(mig="3g.40gb"), 4, ClusterConfig(gpu="V100"))
    with pytest.raises(InputError, match="one of 1g.10gb"):
        StaticAutoscaler(StaticConfig(mig="3g.20gb"), 4, ClusterConfig(gpu=A100))


class _Script:
    """A policy replaying fixed actions at given times."""

    def __init__(self, plan: dict[float, list]) -> None:
        self.plan = plan
        self.period_s = 1.0

    def decide(self, now, view):
        return self.plan.get(round(now, 6), [])


def test_reconfiguration_drains_then_waits():
    delay = 3.0
    plan = {
        0.0: [CreatePod("f", 100.0, 1.0, 1, gpu=0, warm=True, mig="7g.80gb", mig_start=0)],
        10.0: [
            ReconfigureMig(0, (("4g.40gb", 0), ("3g.40gb", 4))),
            CreatePod("f", 100.0, 1.0, 1, gpu=0, mig="3g.40gb", mig_start=4),
        ],
    }
    # one long batch (2 s) running across t = 10 s: the 7g pod drains until it ends
    w = Workload([FunctionSpec("f", "resnet50", 50.0)], {"f": np.array([9.5])}, 30.0)
    cc = ClusterConfig(gpu=A100, nodes=1, cold_start=no_cold_start(), mig_reconfigure_s=delay)
    sim = Simulation(
        w, StubLatency(2.0, "deterministic"), _Script(plan), cc,
        SimConfig(progress=False, check_invariants=True, drain=5.0), 0,
    ).run()  # fmt: skip
    old, new = sim.pods[0], sim.pods[1]
    assert old.removed_at == pytest.approx(11.5)  # drained: its batch (9.5 + 2 s) ended
    assert new.ready_at == pytest.approx(11.5 + delay)
    assert new.phase_s["mig_reconfigure"] == pytest.approx(1.5 + delay)
    insts = {i.key: i for i in sim.mig.values()}
    assert insts[("7g.80gb", 0)].removed_at == pytest.approx(11.5)
    assert insts[("3g.40gb", 4)].ready_at == pytest.approx(11.5 + delay)
    a = metrics.alloc_frame(sim)
    assert a[a["pod"] == 1]["t_start"].iloc[0] == pytest.approx(11.5 + delay)  # no share before
    check_run(sim, metrics.requests_frame(sim, metrics.slos(sim)))


def test_parvagpu_more_load_more_segments():
    p = ParvaGPUAutoscaler(ParvaGPUConfig(), ClusterConfig(gpu=A100))
    small = Segment("1g.10gb", 1, 1, 4, 50.0, 0.01)
    big = Segment("7g.80gb", 7, 3, 16, 800.0, 0.02)
    opt = Segment("3g.40gb", 3, 2, 8, 400.0, 0.02)
    menu = Menu(opt, {1: small, 3: opt, 7: big})
    counts = [len(p.plan(menu, r)) for r in (0.0, 10.0, 300.0, 900.0, 4000.0)]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] >= 10
    assert p.plan(menu, 10.0) == [small]  # the smallest segment covering the rest
    assert sum(s.rps for s in p.plan(menu, 900.0)) >= 900.0
    with pytest.raises(InputError, match="no MIG"):
        ParvaGPUAutoscaler(ParvaGPUConfig(), ClusterConfig(gpu="V100"))


class _SmLatency(StubLatency):
    """5 ms x (1 + 0.5 (b - 1)) at the full GPU, inversely proportional to the SM share."""

    def mean_latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        return 0.005 * (1 + 0.5 * (batch - 1)) * 100.0 / sm_pct / quota


def test_parvagpu_run_scales_with_load():
    def run(rate: float) -> Simulation:
        pol = ParvaGPUAutoscaler(
            ParvaGPUConfig(period_s=10.0, window_s=10.0), ClusterConfig(gpu=A100)
        )
        cc = ClusterConfig(gpu=A100, nodes=4, cold_start=no_cold_start())
        scfg = SimConfig(progress=False, check_invariants=True, drain=5.0)
        return Simulation(
            _workload(rate, 40.0), _SmLatency(0.0, "deterministic"), pol, cc, scfg, 0
        ).run()

    lo, hi = run(5.0), run(400.0)
    share = [metrics.alloc_frame(s)["share"].sum() for s in (lo, hi)]
    assert share[1] > share[0]
    for s in (lo, hi):
        check_run(s, metrics.requests_frame(s, metrics.slos(s)))


class _MenuView:
    """The one view method ``ParvaGPUAutoscaler.menu`` uses."""

    def latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        return _SmLatency(0.0, "deterministic").mean_latency_s(model, batch, sm_pct, quota)


def test_parvagpu_segments_fit_instance_memory():
    # a held overhead makes more MPS pods per instance pay (they overlap it); BERT-large
    # pods hold ~3.4 GB: three do not fit a 1g.10gb instance, they fit a 7g.80gb one
    cfg = ParvaGPUConfig(profiles=["1g.10gb", "7g.80gb"], batches=[1])
    cc = ClusterConfig(gpu=A100, overhead_held_s=0.05)
    menu = ParvaGPUAutoscaler(cfg, cc).menu(_MenuView(), "bert", 10.0)  # type: ignore[arg-type]
    assert menu.by_size[1].procs == 2 and menu.by_size[7].procs == 3
    huge = ClusterConfig(gpu=A100, overhead_held_s=0.05, model_memory_mb={"bert": 30000.0})
    menu = ParvaGPUAutoscaler(cfg, huge).menu(_MenuView(), "bert", 10.0)  # type: ignore[arg-type]
    assert set(menu.by_size) == {7} and menu.by_size[7].procs == 2


@pytest.mark.parametrize("to_zero", [False, True])
def test_parvagpu_keeps_a_segment_unless_scale_to_zero(to_zero: bool):
    # requests only in the first 5 s of 60: the segment stays (ParvaGPU serves what it is
    # given) unless scale_to_zero removes it once a window passes without arrivals
    w = Workload([FunctionSpec("f", "resnet50", 0.5)], {"f": np.arange(0.0, 5.0, 0.5)}, 60.0)
    cfg = ParvaGPUConfig(period_s=10.0, window_s=10.0, scale_to_zero=to_zero)
    sim = _sim(ParvaGPUAutoscaler(cfg, ClusterConfig(gpu=A100)), w)
    alive = [p for p in sim.pods.values() if not p.removed_at < sim.end_time]  # nan: kept
    assert (len(alive) == 0) == to_zero
