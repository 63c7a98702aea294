"""cluster.overhead_cv: per-request variability of the post-service overhead.

Off (0, the default) the overhead is the constant it always was; on, each request's
post-service delay is lognormal with mean ``overhead - held`` and the configured cv,
drawn from its own RNG stream, so a seed fixes it and the pods' schedule is unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

import hasim
from hasim.analysis import validate as v
from hasim.cluster.gateway import FunctionQueue
from hasim.errors import HasimError

OVERHEAD = 0.07
BASE = [
    "output.write=false",
    "output.quiet=true",
    "sim.progress=false",
    "perf=synthetic",
    "perf.distribution=deterministic",
    "perf.mean=0.01",
    "cluster.max_batch=1",
    f"cluster.overhead={OVERHEAD}",
    "workload.rate=10",
    "workload.duration=300",
]


def run(*extra: str):
    return hasim.run([*BASE, *extra]).requests


def done(req):
    return req[req["status"] == "completed"]


def test_knob_off_is_the_constant_overhead():
    off = run()
    zero = run("cluster.overhead_cv=0")
    assert off.equals(zero)
    # GPU time is exactly 0.01 s per request: each request leaves 0.07 s after its batch
    d = done(off)
    np.testing.assert_allclose(d["finish"] - d["start"], 0.01 + OVERHEAD, rtol=0, atol=1e-12)


def test_queue_without_cv_keeps_the_scalar_delay():
    q = FunctionQueue("f", np.arange(5.0), 0.0, None, 0.0, OVERHEAD, lambda n: np.ones(n))
    assert q._delays is None and q.request_delay(np.arange(3)) == OVERHEAD


@pytest.mark.parametrize("cv", [0.068, 0.3])
def test_queue_draws_the_configured_mean_and_cv(cv):
    rng = np.random.default_rng(1)
    n = 200_000
    q = FunctionQueue(
        "f", np.arange(float(n)), 0.0, None, 0.0, OVERHEAD, lambda k: np.ones(k), cv, rng
    )
    d = q.request_delay(slice(None))
    assert d.shape == (n,) and (d > 0).all()
    assert d.mean() == pytest.approx(OVERHEAD, rel=0.005)
    assert d.std() / d.mean() == pytest.approx(cv, rel=0.02)


@pytest.mark.parametrize("fidelity", ["batch", "kernel"])
def test_knob_on_gives_mean_and_cv_and_leaves_the_schedule(fidelity):
    cv = 0.2
    f = f"sim.fidelity={fidelity}"
    off, on = done(run(f)), done(run(f, f"cluster.overhead_cv={cv}"))
    # the delay does not hold the pod: same batches, same starts
    assert len(on) == len(off) > 2000
    np.testing.assert_array_equal(on["start"].to_numpy(), off["start"].to_numpy())
    delay = (on["finish"] - off["finish"]).to_numpy() + OVERHEAD  # each request's draw
    assert delay.mean() == pytest.approx(OVERHEAD, rel=0.02)
    assert delay.std() / delay.mean() == pytest.approx(cv, rel=0.08)
    assert on["latency"].mean() == pytest.approx(off["latency"].mean(), rel=0.01)


def test_knob_on_is_deterministic_for_a_seed():
    a = run("cluster.overhead_cv=0.1", "seed=3")
    b = run("cluster.overhead_cv=0.1", "seed=3")
    c = run("cluster.overhead_cv=0.1", "seed=4")
    assert a.equals(b)
    # another seed: other arrivals and other draws
    assert not np.array_equal(a["latency"].to_numpy()[:50], c["latency"].to_numpy()[:50])


def test_the_overhead_stream_is_its_own():
    """Turning the knob on changes no other random stream: arrivals are the same."""
    a, b = run(), run("cluster.overhead_cv=0.1")
    np.testing.assert_array_equal(a["arrival"].to_numpy(), b["arrival"].to_numpy())


def test_held_overhead_stays_constant():
    held = ["cluster.overhead_holds_pod=true"]
    assert run(*held).equals(run(*held, "cluster.overhead_cv=0.2"))


def test_negative_cv_is_refused():
    with pytest.raises(HasimError, match="overhead_cv"):
        run("cluster.overhead_cv=-0.1")


def test_validate_replays_use_the_estimated_cv(monkeypatch, tmp_path):
    seen = []

    def fake_compare(
        results,
        workload,
        seed=0,
        system=None,
        model=None,
        extra=None,
        client=None,
        per_system=None,
    ):
        seen.append(list(extra or []))
        raise HasimError("stop")

    monkeypatch.setattr(v, "compare", fake_compare)
    assert v.main(["has-gpu", "--results", str(tmp_path)]) == 2
    assert v.main(["has-gpu", "--results", str(tmp_path), "--overhead-cv", "0"]) == 2
    assert v.main(["has-gpu", "--results", str(tmp_path), "--set", "cluster.overhead_cv=0.1"]) == 2
    assert seen[0] == [f"cluster.overhead_cv={v.OVERHEAD_CV!r}"]
    assert seen[1] == []
    # a --set comes after the default and wins
    assert seen[2] == [f"cluster.overhead_cv={v.OVERHEAD_CV!r}", "cluster.overhead_cv=0.1"]
    assert v.main(["has-gpu", "--results", str(tmp_path), "--overhead-cv", "-1"]) == 2
    assert len(seen) == 3
