"""cluster.overhead_held_s: the part of the per-request overhead the pod's serving process
holds per batch; the rest stays a post-service delay (batch and kernel mode)."""

from __future__ import annotations

import numpy as np
import pytest

from hasim.config.schema import ClusterConfig
from hasim.errors import InputError
from hasim.workload.base import FunctionSpec, Workload
from tests.simkit import StubLatency
from tests.test_kernel_mode import simulate, static


def two_at_once() -> Workload:
    return Workload([FunctionSpec("f", "m", 1.0)], {"f": np.array([0.0, 0.0])}, 1.0)


@pytest.mark.parametrize("fidelity", ["batch", "kernel"])
def test_held_part_delays_the_next_batch_the_rest_only_the_request(fidelity):
    lat = StubLatency(0.1, "deterministic")
    _, req = simulate(
        two_at_once(),
        static(batch=1),
        fidelity,
        latency=lat,
        overhead=0.07,
        overhead_held_s=0.03,
    )
    # batch 1: GPU 0.1, held 0.03 (pod busy until 0.13), then 0.04 delay -> 0.17
    assert req["start"].tolist() == pytest.approx([0.0, 0.13])
    assert req["finish"].tolist() == pytest.approx([0.17, 0.30])


@pytest.mark.parametrize("fidelity", ["batch", "kernel"])
@pytest.mark.parametrize("holds", [False, True])
def test_the_ends_match_overhead_holds_pod(fidelity, holds):
    lat = StubLatency(0.1, "deterministic")
    w = two_at_once()
    _, split = simulate(
        w,
        static(batch=1),
        fidelity,
        latency=lat,
        overhead=0.07,
        overhead_held_s=0.07 if holds else 0.0,
    )
    _, flag = simulate(
        w, static(batch=1), fidelity, latency=lat, overhead=0.07, overhead_holds_pod=holds
    )
    for col in ("start", "finish"):
        assert split[col].tolist() == pytest.approx(flag[col].tolist())


def test_pod_overhead_follows_the_split_and_rejects_out_of_range():
    assert ClusterConfig(overhead=0.07).pod_overhead_s() == 0.0
    assert ClusterConfig(overhead=0.07, overhead_holds_pod=True).pod_overhead_s() == 0.07
    # the split wins over the flag
    assert ClusterConfig(overhead=0.07, overhead_held_s=0.02).pod_overhead_s() == 0.02
    both = ClusterConfig(overhead=0.07, overhead_holds_pod=True, overhead_held_s=0.02)
    assert both.pod_overhead_s() == pytest.approx(0.02)
    for bad in (-0.01, 0.08):
        with pytest.raises(InputError, match="overhead_held_s"):
            ClusterConfig(overhead=0.07, overhead_held_s=bad).pod_overhead_s()


def test_knob_reaches_the_run_config():
    import hasim

    base = [
        "workload=poisson",
        "workload.rate=5.0",
        "workload.duration=5.0",
        "autoscaler=kpa",
        "sim.progress=false",
        "output.write=false",
        "output.quiet=true",
    ]
    r = hasim.run([*base, "cluster.overhead_held_s=0.03"])
    assert (r.requests["status"] == "completed").all()
    with pytest.raises(InputError):
        hasim.run([*base, "cluster.overhead_held_s=1.0"])
