"""Every registered policy, on random small scenarios, leaves a run that satisfies the
engine's invariants (tests/invariants.py): request conservation, service only by live
pods of the right function in FIFO order with one batch at a time per pod, GPU shares,
row quotas, SM sizes and memory within bounds; for policies that use MIG (parvagpu, and
static with ``mig``, on A100s) the per-instance rules and the placement rules too. The
GPU invariants are also asserted after every control action (sim.check_invariants)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasim.autoscale.registry import AUTOSCALER_KINDS
from hasim.config.schema import ClusterConfig, DistConfig, SimConfig
from hasim.config.typed import to_typed
from hasim.sim import metrics
from hasim.sim.engine import Simulation
from hasim.workload.base import FunctionSpec, Workload
from tests.invariants import check_run
from tests.simkit import StubLatency, no_cold_start

MODELS = ("resnet50", "bert", "mobilenet_v3_large")


@st.composite
def scenarios(draw):
    n_fn = draw(st.integers(1, 3))
    duration = draw(st.floats(20.0, 80.0))
    rng = np.random.default_rng(draw(st.integers(0, 10_000)))
    arrivals, specs = {}, []
    for i in range(n_fn):
        rate = draw(st.sampled_from([0.0, 0.5, 3.0, 15.0, 60.0]))
        burst = draw(st.booleans())
        n = rng.poisson(rate * duration)
        t = rng.uniform(0, duration, n)
        if burst and n:
            t = np.concatenate([t, rng.uniform(duration / 3, duration / 3 + 2.0, n)])
        arrivals[f"f{i}"] = np.sort(t)
        specs.append(FunctionSpec(f"f{i}", MODELS[i % len(MODELS)], 0.5))
    cluster = {
        "nodes": draw(st.integers(1, 3)),
        "timeout": draw(st.sampled_from([None, 2.0, 10.0])),
        "max_batch": draw(st.integers(1, 4)),
        "max_wait": draw(st.sampled_from([0.0, 0.0, 0.01])),
        "overhead_holds_pod": draw(st.booleans()),
    }
    return Workload(specs, arrivals, duration), cluster, draw(st.integers(0, 3))


# policies on MIG GPUs: kind -> (registered kind, config overrides); short periods and a
# short reconfiguration so that reconfigurations happen within the scenarios
MIG_POLICIES = {
    "parvagpu": ("parvagpu", {"period_s": 5.0, "window_s": 5.0}),
    "static_mig": ("static", {"mig": "2g.20gb", "pods": 2, "sm": 50.0, "quota": 0.5}),
}


def run_policy(kind: str, workload: Workload, cluster: dict, seed: int):
    kind, overrides = MIG_POLICIES.get(kind, (kind, {}))
    schema, build = AUTOSCALER_KINDS[kind]
    cold = dataclasses.replace(no_cold_start(), container_start=DistConfig("constant", 1.5))
    if kind == "parvagpu" or "mig" in overrides:
        cluster = {**cluster, "gpu": "A100-80GB", "mig_reconfigure_s": 2.0}
    cc = ClusterConfig(**{"cold_start": cold, **cluster})  # pods take a while to start
    policy = build(to_typed({"kind": kind, **overrides}, schema, "autoscaler"), cc)
    scfg = SimConfig(progress=False, check_invariants=True, drain=30.0)
    sim = Simulation(workload, StubLatency(0.03, per_item=0.01), policy, cc, scfg, seed).run()
    return sim, metrics.requests_frame(sim, metrics.slos(sim))


@pytest.mark.parametrize("kind", sorted(set(AUTOSCALER_KINDS) | set(MIG_POLICIES)))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=scenarios())
def test_every_policy_keeps_the_invariants(kind, case):
    workload, cluster, seed = case
    sim, req = run_policy(kind, workload, cluster, seed)
    check_run(sim, req)


def test_the_checker_catches_a_broken_run():
    w = Workload([FunctionSpec("f", "resnet50", 0.5)], {"f": np.arange(0.0, 10.0, 0.5)}, 10.0)
    sim, req = run_policy("static", w, {"nodes": 1, "timeout": None}, 0)
    check_run(sim, req)
    bad = req.copy()
    bad.loc[3, "start"] = bad.loc[2, "start"] - 0.4  # served out of order
    with pytest.raises(AssertionError):
        check_run(sim, bad)
    lost = req.drop(index=5)
    with pytest.raises(AssertionError):
        check_run(sim, lost)
    # a queue on one pod serving one request at a time: move a start into the
    # previous batch (still after its own arrival and in FIFO order)
    q = Workload([FunctionSpec("f", "resnet50", 0.5)], {"f": np.arange(10) * 1e-3}, 5.0)
    qsim, qreq = run_policy("static", q, {"nodes": 1, "timeout": None, "max_batch": 1}, 0)
    check_run(qsim, qreq)
    overlap = qreq.copy()
    overlap.loc[3, "start"] = overlap.loc[2, "start"] + 1e-4
    with pytest.raises(AssertionError, match=""):
        check_run(qsim, overlap)
    wrong_pod = req.copy()
    wrong_pod.loc[0, "start"] = -1.0  # before its pod was ready
    with pytest.raises(AssertionError):
        check_run(sim, wrong_pod)
