"""sim.fidelity=kernel: batches run as kernel sequences on each GPU's token scheduler.

The data-plane plumbing is pinned against batch mode with a stand-in scheduler whose
inference takes sum(kernels) / quota (what batch mode assumes for a 1/q latency model):
then both modes must agree exactly, through pod creation, quota changes, deletion with
draining, timeouts and the autoscaler's view. The real token scheduler is then checked
for what only it does: co-located pods interact, quota changes apply at the next token.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simpy

import hasim
from hasim.autoscale.base import CreatePod, DeletePod, UpdateQuota
from hasim.autoscale.static import StaticAutoscaler, StaticConfig
from hasim.cluster.tokens import TokenScheduler
from hasim.config.schema import ClusterConfig, SimConfig
from hasim.errors import InputError
from hasim.sim import metrics
from hasim.sim.engine import Simulation
from hasim.workload.base import FunctionSpec, Workload
from tests.simkit import StubLatency, no_cold_start, poisson_workload
from tests.test_engine import RandomPolicy, Scripted

QUIET = ["sim.progress=false", "output.plot=false", "output.quiet=true"]


class Proportional:
    """Stand-in scheduler: an inference takes sum(kernels) / quota, quota as at its start,
    with no interaction between pods. Checks the API contract (register before run, one
    inference per pod, no removal while running)."""

    def __init__(self, env: simpy.Environment, gpu_id: int) -> None:
        self.env = env
        self.quota: dict[int, float] = {}
        self.running: set[int] = set()

    def add_client(self, pod_id: int, sm_pct: float, quota: float) -> None:
        assert pod_id not in self.quota
        self.quota[pod_id] = quota

    def set_quota(self, pod_id: int, quota: float) -> None:
        self.quota[pod_id] = quota

    def remove_client(self, pod_id: int) -> None:
        assert pod_id not in self.running, "removed with a running inference"
        del self.quota[pod_id]

    def run(self, pod_id: int, kernels_s) -> simpy.Event:
        assert pod_id not in self.running, "two inferences at once"
        self.running.add(pod_id)
        d = float(np.sum(kernels_s)) / self.quota[pod_id]
        ev = self.env.timeout(d, value=self.env.now + d)
        ev.callbacks.append(lambda _e: self.running.discard(pod_id))
        return ev


def simulate(
    workload,
    autoscaler,
    fidelity="batch",
    *,
    latency=None,
    seed=0,
    drain=20.0,
    schedulers=None,
    kernel_model="uniform",
    launch_gated=False,
    **cluster,
):
    cc = ClusterConfig(**{"cold_start": no_cold_start(), "timeout": None, **cluster})
    scfg = SimConfig(
        progress=False,
        check_invariants=True,
        drain=drain,
        fidelity=fidelity,
        # batch mode as the plain table model (no slot wait): the stand-in schedulers
        # below reproduce exactly that
        contention=False,
        kernel_model=kernel_model,
        kernels_per_inference=20,
        launch_gated=launch_gated,
    )
    sim = Simulation(
        workload, latency or StubLatency(0.05), autoscaler, cc, scfg, seed, schedulers=schedulers
    ).run()
    return sim, metrics.requests_frame(sim, metrics.slos(sim))


def static(pods=1, sm=100.0, quota=1.0, batch=4) -> StaticAutoscaler:
    return StaticAutoscaler(StaticConfig(pods=pods, sm=sm, quota=quota), batch)


def same_requests(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a["status"].tolist() == b["status"].tolist()
    assert a["pod"].tolist() == b["pod"].tolist()
    assert a["batch"].tolist() == b["batch"].tolist()
    done = (a["status"] == "completed").to_numpy()
    for col in ("start", "finish"):
        np.testing.assert_allclose(
            a[col].to_numpy()[done], b[col].to_numpy()[done], rtol=0, atol=1e-9
        )


# ---- plumbing: kernel mode == batch mode when the scheduler is the batch model -------


@pytest.mark.parametrize("seed", range(6))
def test_plumbing_matches_batch_mode_under_random_actions(seed):
    """Creates, quota changes, deletes (draining), timeouts, both overhead modes: the
    kernel data plane with a 1/q stand-in scheduler reproduces batch mode."""
    w = poisson_workload({"a": 20.0, "b": 10.0, "c": 1.0}, 30.0, seed=seed)
    kw = {
        "nodes": 1 + seed % 3,
        "timeout": 3.0,
        "overhead_holds_pod": seed % 2 == 0,
        "max_wait": 0.02 * (seed % 3),
        "seed": seed,
    }
    sb, rb = simulate(w, RandomPolicy(seed, ["a", "b", "c"]), **kw)
    sk, rk = simulate(
        w, RandomPolicy(seed, ["a", "b", "c"]), "kernel", schedulers=Proportional, **kw
    )
    same_requests(rb, rk)
    ab, ak = metrics.alloc_frame(sb), metrics.alloc_frame(sk)
    np.testing.assert_allclose(ab["t_end"], ak["t_end"], atol=1e-9)
    assert sb.logs.actions == sk.logs.actions
    assert (rk["status"] == "dropped").any() or seed % 3  # timeouts do happen


@pytest.mark.parametrize("holds", [False, True])
def test_autoscaler_view_matches_batch_mode(holds):
    """in_flight, queue_length and concurrency while batch ends are not yet known."""
    seen: dict[str, list] = {"batch": [], "kernel": []}

    class Probe:
        period_s = 0.05

        def __init__(self, mode: str) -> None:
            self.mode = mode

        def decide(self, now, view):
            seen[self.mode].append(
                (
                    view.in_flight("f"),
                    view.queue_length("f"),
                    round(view.concurrency("f", now - 0.5, now), 9),
                )
            )
            if now < 0.5 or view.pods("f"):
                return []
            return [CreatePod("f", 100, 1.0, 2, warm=True)]

    w = poisson_workload({"f": 30.0}, 10.0, seed=4)
    for mode in seen:
        simulate(
            w,
            Probe(mode),
            mode,
            latency=StubLatency(0.04),
            overhead=0.03,
            overhead_holds_pod=holds,
            timeout=0.3,
            drain=2.0,
            schedulers=Proportional,
        )
    assert seen["batch"] == seen["kernel"]
    assert max(x[0] for x in seen["kernel"]) > 0 and max(x[1] for x in seen["kernel"]) > 0


# ---- the real token scheduler -------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_random_actions_with_the_token_scheduler_keep_the_invariants(seed):
    w = poisson_workload({"a": 20.0, "b": 10.0, "c": 1.0}, 30.0, seed=seed)
    sim, req = simulate(
        w,
        RandomPolicy(seed, ["a", "b", "c"]),
        "kernel",
        nodes=1 + seed % 3,
        timeout=3.0,
        overhead_holds_pod=seed % 2 == 1,
        seed=seed,
    )
    assert len(req) == w.total_requests
    done = req[req["status"] == "completed"]
    assert (done["start"] >= done["arrival"]).all() and (done["finish"] > done["start"]).all()
    gpu_end = done["finish"] - (0.0 if seed % 2 else sim.ccfg.overhead)
    pods = {p.id: p for p in sim.pods.values()}
    for pid, d in done.assign(gpu_end=gpu_end).groupby("pod"):
        s = d.drop_duplicates(["start"]).sort_values("start")
        assert (s["start"].to_numpy()[1:] >= s["gpu_end"].to_numpy()[:-1] - 1e-9).all()
        assert d["start"].min() >= pods[pid].ready_at - 1e-9
        if pods[pid].removed_at == pods[pid].removed_at:
            assert d["gpu_end"].max() <= pods[pid].removed_at + 1e-9
    # removed pods left their GPU's scheduler; live ready pods are registered
    for p in sim.pods.values():
        assert sim.backend.registered(p.id) == (p.state.value in ("ready", "draining"))


@pytest.mark.parametrize("holds", [False, True])
def test_lone_pod_at_quota_one_equals_batch_mode(holds):
    w = poisson_workload({"a": 15.0}, 60.0, seed=2)
    _, rb = simulate(w, static(), latency=StubLatency(0.03), overhead_holds_pod=holds)
    _, rk = simulate(
        w,
        static(),
        "kernel",
        latency=StubLatency(0.03),
        overhead_holds_pod=holds,
        kernel_model="operators",
    )
    same_requests(rb, rk)
    assert (rk["status"] == "completed").all()


def test_pods_that_do_not_interact_match_batch_mode(tmp_path):
    """Two functions, each pod on its own SM half of one GPU at quota 1 (50 + 50 <= 100: they
    run side by side), compact perf model: mean latency within 5 %."""
    base = [
        *QUIET,
        "output.write=false",
        "workload=poisson",
        "workload.functions=2",
        "workload.rate=8",
        "workload.duration=60",
        "perf=compact",
        "autoscaler=static",
        "autoscaler.sm=50",
        "autoscaler.quota=1.0",
        "cluster.nodes=1",
    ]
    b = hasim.run(base)
    k = hasim.run([*base, "sim.fidelity=kernel"])
    assert b.pods["gpu"].tolist() == k.pods["gpu"].tolist() == [0, 0]
    assert k.summary["latency_mean_s"] == pytest.approx(b.summary["latency_mean_s"], rel=0.05)


def test_pods_sharing_sms_interact():
    """Two functions' pods time-share one SM-100 row (quota 0.5 each: SM sum 200 > 100):
    they cannot run at once, so each waits for the other's tokens. Kernel mode is slower
    than the same pod alone on the GPU, and slower than batch mode, which ignores the
    neighbour."""
    from hasim.perf.registry import PERF_KINDS

    _, build = PERF_KINDS["compact"]
    perf = build(PERF_KINDS["compact"][0]())
    both = poisson_workload({"a": 12.0, "b": 12.0}, 60.0, seed=3)
    alone = Workload(both.functions[:1], {"a": both.arrivals["a"]}, both.duration_s)
    kw = {"latency": perf, "nodes": 1, "overhead": 0.0}
    sb, rb = simulate(both, static(sm=100, quota=0.5), **kw)
    sk, rk = simulate(both, static(sm=100, quota=0.5), "kernel", **kw)
    _, ra = simulate(alone, static(sm=100, quota=0.5), "kernel", **kw)
    assert [(p.gpu_id, p.row) for p in sk.pods.values()] == [(0, 0), (0, 0)]
    lat = {
        "batch": rb[rb["function"] == "a"]["latency"].mean(),
        "kernel": rk[rk["function"] == "a"]["latency"].mean(),
        "alone": ra["latency"].mean(),
    }
    assert lat["kernel"] > 1.05 * lat["alone"]
    assert lat["kernel"] > 1.05 * lat["batch"]


def test_quota_change_applies_at_the_next_token():
    """One 0.2 s inference at quota 0.25 (10 ms tokens per 40 ms window); the quota goes to
    1 at 0.5 + quota_delay: the rest of the inference runs at full speed."""
    w = Workload([FunctionSpec("f", "m", 10.0)], {"f": np.array([0.0, 5.0])}, 10.0)
    auto = Scripted([(0.0, CreatePod("f", 100, 0.25, 1, warm=True)), (0.5, UpdateQuota(0, 1.0))])
    sim, req = simulate(
        w, auto, "kernel", latency=StubLatency(0.2, "deterministic"), overhead=0.0, quota_delay=0.04
    )
    lat = req["latency"].to_numpy()
    # by 0.54 s about a quarter of 0.54 s of work is done; the rest (~0.065 s) at quota 1
    assert 0.55 < lat[0] < 0.65
    assert lat[1] == pytest.approx(0.2)  # later inferences at quota 1: exact
    assert sim.pods[0].quota == 1.0


def test_draining_pod_finishes_its_inference_then_leaves_the_scheduler():
    w = Workload([FunctionSpec("f", "m", 10.0)], {"f": np.array([0.0, 0.2, 3.0])}, 4.0)
    auto = Scripted(
        [
            (0.0, CreatePod("f", 50, 1.0, 1, warm=True)),
            (0.0, CreatePod("f", 50, 1.0, 1, warm=True)),
            (0.5, DeletePod(0)),
        ]
    )
    sim, req = simulate(w, auto, "kernel", latency=StubLatency(1.0, "deterministic"), overhead=0.0)
    assert req["pod"].tolist() == [0, 1, 1]
    assert req["finish"].iloc[0] == pytest.approx(1.0)  # the running batch finished
    assert sim.pods[0].removed_at == pytest.approx(1.0)  # then the pod was removed
    sched = sim.backend.schedulers[0]
    assert isinstance(sched, TokenScheduler) and set(sched.clients) == {1}
    assert metrics.alloc_frame(sim)["t_end"].iloc[0] == pytest.approx(1.0)


def test_timeouts_drop_requests_in_kernel_mode():
    arr = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 5.0])
    w = Workload([FunctionSpec("f", "m", 10.0)], {"f": arr}, 6.0)
    kw = {
        "latency": StubLatency(1.0, "deterministic"),
        "overhead": 0.0,
        "timeout": 1.5,
        "max_batch": 1,
    }
    _, rb = simulate(w, static(batch=1), **kw)
    _, rk = simulate(w, static(batch=1), "kernel", **kw)
    assert rk["status"].tolist() == ["completed"] * 2 + ["dropped"] * 3 + ["completed"]
    same_requests(rb, rk)


def test_unknown_fidelity_and_kernel_settings_are_rejected():
    w = poisson_workload({"a": 1.0}, 1.0, seed=0)
    with pytest.raises(InputError, match="sim.fidelity='exact' is unknown"):
        simulate(w, static(), "exact")
    with pytest.raises(InputError, match="sim.kernel_model='magic'"):
        simulate(w, static(), "kernel", kernel_model="magic")


# ---- end to end through hasim.run ---------------------------------------------------

AUTOSCALERS = ["static", "has", "fastgshare", "kpa", "timeshare"]


@pytest.mark.parametrize("autoscaler", AUTOSCALERS)
def test_every_autoscaler_runs_in_kernel_mode_with_the_same_outputs(tmp_path, autoscaler):
    base = [
        *QUIET,
        f"output.dir={tmp_path}",
        "workload=poisson",
        "workload.rate=6",
        "workload.functions=2",
        "workload.duration=40",
        f"autoscaler={autoscaler}",
        "sim.drain=20",
    ]
    b = hasim.run([*base, "run=batch"])
    k = hasim.run([*base, "run=kernel", "sim.fidelity=kernel", "output.trace=true"])
    assert b.path is not None and k.path is not None
    files_b = {p.name for p in b.path.iterdir()}
    files_k = {p.name for p in k.path.iterdir()}
    assert files_k == files_b | {"trace.json"}
    for f in sorted(files_b):
        if f.endswith(".parquet"):
            cols_b = pd.read_parquet(b.path / f).columns.tolist()
            assert pd.read_parquet(k.path / f).columns.tolist() == cols_b, f
    assert set(k.summary) == set(b.summary)
    s = k.summary
    assert s["completed"] + s["dropped"] + s["in_flight"] == s["requests_total"] > 0
    assert s["completed"] > 0.9 * b.summary["completed"]
    assert s["cost_gpu_seconds"] > 0
    doc = json.loads((k.path / "trace.json").read_text())
    threads = {e["args"]["name"] for e in doc["traceEvents"] if e.get("name") == "thread_name"}
    assert any(t.startswith("fn0/pod") for t in threads)
    assert not [p for p in tmp_path.rglob(".tmp*")]


RPS = Path("validation/has-gpu-v100/client/rps.json")


def _have_rps() -> bool:
    from hasim.workload.stages import resolve_path

    try:
        resolve_path(str(RPS))
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _have_rps(), reason="needs the validation data (hasim data fetch)")
def test_rps_experiment_runs_in_kernel_mode():
    t0 = time.perf_counter()
    base = [*QUIET, "output.write=false", "experiment=rps/has_resnet"]
    k = hasim.run([*base, "sim.fidelity=kernel"])
    wall = time.perf_counter() - t0
    b = hasim.run(base)
    assert k.summary["requests_total"] == b.summary["requests_total"] == 2690
    assert k.summary["completed"] == 2690
    assert k.summary["latency_mean_s"] == pytest.approx(b.summary["latency_mean_s"], rel=0.25)
    assert wall < 60.0


def test_launch_gated_mode_runs_and_flattens_a_small_partition():
    """sim.launch_gated (default true): at a small SM partition the GPU phase dominates and
    the token only gates the (fast) launches, so a low quota costs less than in the
    synchronous mode; at quota 1 both modes give the batch latency."""
    base = [
        *QUIET,
        "output.write=false",
        "workload=poisson",
        "workload.rate=2",
        "workload.duration=60",
        "perf=compact",
        "autoscaler=static",
        "autoscaler.sm=10",
        "cluster.nodes=1",
        "sim.fidelity=kernel",
    ]
    sync = hasim.run([*base, "autoscaler.quota=0.2", "sim.launch_gated=false"]).summary
    gated = hasim.run([*base, "autoscaler.quota=0.2"]).summary  # launch-gated: the default
    assert gated["completed"] == sync["completed"] > 0
    assert gated["latency_mean_s"] < sync["latency_mean_s"]
    full_sync = hasim.run([*base, "autoscaler.quota=1.0", "sim.launch_gated=false"])
    full_sync = full_sync.summary["latency_mean_s"]
    full_gated = hasim.run([*base, "autoscaler.quota=1.0"])
    assert full_gated.summary["latency_mean_s"] == pytest.approx(full_sync, rel=0.02)
