"""The array data plane (hasim.cluster.gateway): the lone-pod loop and its idle fast path
give exactly what the general loop gives; leave times, in-flight counts and
concurrency integrals are exact however long requests stay (no look-back horizon)."""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hasim.cluster.gateway import (
    FunctionQueue,
    expand_runs,
    in_system_many,
    pairwise_sum,
    timed_out,
)


def queue(arrivals, *, timeout=None, overhead=0.0, delay=0.0, seed=0, cv=0.3) -> FunctionQueue:
    rng = np.random.default_rng(seed)
    return FunctionQueue(
        name="f",
        arrivals=np.asarray(arrivals, dtype=float),
        max_wait=0.0,
        timeout=timeout,
        overhead=overhead,
        delay=delay,
        noise=lambda n: rng.lognormal(0.0, cv, n),
    )


def delayed_queue(arrivals, timeout, delay_cv: float, seed: int) -> FunctionQueue:
    """A queue with overhead 0.01 s and a post-service delay of 0.02 s, per request
    lognormal with ``delay_cv`` (0: the same for all)."""
    rng = np.random.default_rng(seed)
    return FunctionQueue(
        "f",
        np.asarray(arrivals, dtype=float),
        0.0,
        timeout,
        0.01,
        0.02,
        lambda n: rng.lognormal(0.0, 0.3, n),
        delay_cv=delay_cv,
        delay_rng=np.random.default_rng(seed + 1),
    )


def run(q: FunctionQueue, table, steps) -> FunctionQueue:
    q.add_server(7, 0.0, list(table))
    for t in steps:
        q.advance(t)
    q.advance(math.inf)
    q.expire(math.inf)
    return q


def logs(q: FunctionQueue):
    return (q.b_first, q.b_n, q.b_start, q.b_end, q.b_pod, q.d_first, q.d_n, q.d_time)


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(
        st.one_of(st.floats(0.0, 0.5), st.just(0.0), st.floats(0.5, 30.0)), min_size=1, max_size=400
    ),
    lat=st.floats(0.001, 0.4),
    batch=st.integers(1, 6),
    timeout=st.one_of(st.none(), st.floats(0.05, 3.0)),
    steps=st.lists(st.floats(0.0, 2000.0), max_size=6),
    seed=st.integers(0, 5),
)
def test_lone_pod_loop_and_fast_path_match_the_general_loop(gaps, lat, batch, timeout, steps, seed):
    arr = np.cumsum(gaps)
    table = [0.0] + [lat * (1 + 0.3 * (b - 1)) for b in range(1, batch + 1)]
    fast = run(queue(arr, timeout=timeout, overhead=0.01, seed=seed), table, sorted(steps))
    slow = queue(arr, timeout=timeout, overhead=0.01, seed=seed)
    slow.fast_paths = False
    slow = run(slow, table, sorted(steps))
    assert logs(fast) == logs(slow)
    np.testing.assert_array_equal(fast.leave_times(), slow.leave_times())


@settings(max_examples=80, deadline=None)
@given(
    gaps=st.lists(
        st.one_of(st.floats(0.0, 0.3), st.just(0.0), st.floats(0.3, 20.0)), min_size=1, max_size=400
    ),
    lats=st.lists(st.floats(0.001, 2.0), min_size=1, max_size=4),
    batch=st.integers(1, 5),
    max_wait=st.sampled_from([0.0, 0.0, 0.05]),
    timeout=st.one_of(st.none(), st.floats(0.05, 3.0)),
    steps=st.lists(st.floats(0.0, 2000.0), max_size=8),
    seed=st.integers(0, 5),
)
def test_pool_loop_matches_the_general_loop(gaps, lats, batch, max_wait, timeout, steps, seed):
    """Several pods (each its own table, one added late, one removed), no stale
    endpoints or slot waits: the batch loop (``_advance_batch``) logs exactly what the
    general loop logs."""
    arr = np.cumsum(gaps)

    def play(fast: bool) -> FunctionQueue:
        q = queue(arr, timeout=timeout, overhead=0.01, seed=seed)
        q.max_wait = max_wait
        q.fast_paths = fast
        tables = [[0.0] + [lat * (1 + 0.3 * (b - 1)) for b in range(1, batch + 1)] for lat in lats]
        for p, table in enumerate(tables[:-1] or tables):
            q.add_server(p + 3, 0.0, table)
        cuts = sorted(steps)
        for k, t in enumerate(cuts):
            q.advance(t)
            if k == len(cuts) // 2 and len(tables) > 1:
                q.add_server(1, t, tables[-1])  # a late pod with the lowest id
            if k == len(cuts) - 1 and len(q.servers) > 1:
                q.remove_server(q.servers[-1].pod_id)
        q.advance(math.inf)
        q.expire(math.inf)
        return q

    fast, slow = play(True), play(False)
    assert logs(fast) == logs(slow) and fast.d_reason == slow.d_reason
    assert [(s.pod_id, s.free_at, s.last_n) for s in fast.servers + fast.draining] == [
        (s.pod_id, s.free_at, s.last_n) for s in slow.servers + slow.draining
    ]
    np.testing.assert_array_equal(fast.leave_times(), slow.leave_times())


def test_timed_out_is_bisect_left():
    rng = np.random.default_rng(0)
    for _ in range(300):
        arr = np.sort(rng.choice([0.0, 1.0, 2.0, 2.5, 3.0], 1)[0] * rng.random(rng.integers(1, 60)))
        arr = arr.tolist()
        head = int(rng.integers(0, len(arr)))
        x = arr[head] + float(rng.random()) * 3.0 + 1e-12
        assert timed_out(arr, x, head) == bisect_left(arr, x, head)


def test_the_fast_path_takes_idle_stretches_in_bulk():
    arr = np.arange(5000) * 1.0  # one request a second, each served in 50 ms
    q = run(queue(arr), [0.0, 0.05], [])
    assert len(q.b_first) == 5000 and q._run_chunk > 64  # long stretches were taken whole
    np.testing.assert_array_equal(q.b_start, arr)


def brute_in_system(arr, leave, t0, t1):
    """Request-seconds in the system during (t0, t1], one request at a time."""
    total = 0.0
    for a, e in zip(arr, leave, strict=True):
        e = math.inf if math.isnan(e) else e
        total += max(0.0, min(e, t1) - max(a, t0))
    return total


def test_concurrency_and_in_flight_are_exact_for_requests_older_than_any_horizon():
    # 60 requests at t = 0..59 s on a pod that needs 40 s each, no timeout: the queue
    # holds requests for up to ~2,400 s, far beyond the old (600 + 120) s look-back
    arr = np.arange(60) * 1.0
    q = queue(arr, delay=0.5, cv=0.0)
    q.add_server(1, 0.0, [0.0, 40.0])
    for now in (100.0, 900.0, 1500.0, 2000.0, 2300.0):
        q.advance(now)
        leave = q.leave_times()
        for t0 in (0.0, now - 800.0, now - 60.0):
            got = q.concurrency_seconds(t0, now)
            want = brute_in_system(arr, leave, t0, now)
            assert got == np.float64(want) or abs(got - want) < 1e-6 * max(1.0, want)
        started_not_left = ((np.arange(60) < q.head) & ~(leave <= now)).sum()
        assert q.in_flight(now) == started_not_left
    assert q.concurrency_seconds(2000.0, 2300.0) > 0.0  # the oldest waiting ones still count


@settings(max_examples=80, deadline=None)
@given(
    gaps=st.lists(
        st.one_of(st.floats(0.0, 0.3), st.just(0.0), st.floats(0.3, 20.0)), min_size=1, max_size=300
    ),
    lat=st.floats(0.001, 1.5),
    pods=st.integers(1, 2),
    timeout=st.one_of(st.none(), st.floats(0.05, 5.0)),
    delay_cv=st.sampled_from([0.0, 0.5]),
    step=st.floats(0.2, 5.0),
    seed=st.integers(0, 5),
)
def test_in_system_is_advance_then_concurrency_seconds_and_knows_when_empty(
    gaps, lat, pods, timeout, delay_cv, step, seed
):
    """``in_system(t0, now)`` gives the very number of ``advance(now)`` then
    ``concurrency_seconds(t0, now)`` on a twin queue, and says busy exactly when some
    request that arrived by ``now`` has not left by then; after an empty answer, the next
    interval without arrivals holds 0 request-seconds."""
    arr = np.cumsum(gaps)

    def make() -> FunctionQueue:
        q = delayed_queue(arr, timeout, delay_cv, seed)
        for p in range(pods):
            q.add_server(p, 0.0, [0.0, lat, 1.2 * lat])
        return q

    fused, twin = make(), make()
    t0, idle_at = 0.0, None
    for now in np.arange(step, arr[-1] + 10.0, step).tolist():
        got, busy = fused.in_system(t0, now)
        twin.advance(now)
        assert got == twin.concurrency_seconds(t0, now)
        leave = twin.leave_times()
        arrived = arr <= now
        assert busy == bool((arrived & ~(leave <= now)).any())
        if idle_at is not None and not ((arr > idle_at) & arrived).any():
            assert got == 0.0  # empty since the previous answer, nothing arrived since
        idle_at = None if busy else now
        t0 = now


def test_pairwise_sum_is_numpys_sum():
    rng = np.random.default_rng(3)
    for n in list(range(300)) + [1000, 4097]:
        x = rng.lognormal(0.0, 3.0, n) * rng.choice([1.0, 1e-9, 1e6], n)
        x[rng.random(n) < 0.3] = 0.0
        assert 0.0 + pairwise_sum(x.tolist()) == x.sum()


def test_request_seconds_in_python_are_numpys():
    """``_seconds`` (summed in Python up to PAIRWISE_FEW requests) gives bit for bit the
    numpy expression it stands for, queued (nan) requests and clipped ones included."""
    rng = np.random.default_rng(4)
    for n in range(1, 120):
        arr = np.sort(rng.uniform(0.0, 10.0, n))
        leave = arr + rng.exponential(1.0, n)
        leave[rng.random(n) < 0.2] = np.nan
        q = queue(arr)
        for _ in range(5):
            lo, hi = sorted(rng.integers(0, n + 1, 2).tolist())
            t0, t1 = sorted(rng.uniform(-1.0, 12.0, 2).tolist())
            x = np.fmin(leave[lo:hi], t1) - np.maximum(arr[lo:hi], t0)
            assert q._seconds(leave, lo, hi, t0, t1) == float(np.maximum(x, 0.0).sum())


@settings(max_examples=80, deadline=None)
@given(
    gaps=st.lists(
        st.one_of(st.floats(0.0, 0.3), st.just(0.0), st.floats(0.3, 20.0)), min_size=1, max_size=300
    ),
    lat=st.floats(0.001, 2.0),
    timeout=st.one_of(st.none(), st.floats(0.05, 5.0)),
    step=st.floats(0.2, 5.0),
    pods=st.lists(st.integers(0, 3), min_size=1, max_size=12),
    back=st.lists(st.floats(0.0, 8.0), min_size=1, max_size=12),
    seed=st.integers(0, 5),
)
def test_in_system_many_is_in_system(gaps, lat, timeout, step, pods, back, seed):
    """``in_system_many`` (the fused path for plain queues) answers bit for bit what
    ``in_system`` answers on twin queues, for plain queues and one with per-request
    delays, while pods come and go (none at times: requests then time out waiting) and
    windows start before, at or after the previous query."""
    arr = np.cumsum(gaps)

    kinds = [(0.0, 1), (0.0, 4), (0.5, 2)]  # (delay cv, max batch)
    fused = [delayed_queue(arr, timeout, cv, seed) for cv, _ in kinds]
    twins = [delayed_queue(arr, timeout, cv, seed) for cv, _ in kinds]
    assert [q._plain() for q in fused] == [True, True, False]
    next_id = 0
    for k, now in enumerate(np.arange(step, arr[-1] + 10.0, step).tolist()):
        want_pods = pods[k % len(pods)]
        for qs in (fused, twins):
            for q, (_, batch) in zip(qs, kinds, strict=True):
                if len(q.servers) != want_pods:  # (the engine advances before a change)
                    q.advance(now)
                while len(q.servers) > want_pods:
                    q.remove_server(q.servers[-1].pod_id)
                while len(q.servers) < want_pods:
                    q.add_server(next_id + len(q.servers), now, [0.0] + [lat] * batch)
        next_id += 10
        now += step / 3.0
        t0 = now - back[k % len(back)]
        got = in_system_many(fused, [t0] * len(fused), now)
        want = [q.in_system(t0, now) for q in twins]
        assert list(zip(*got, strict=True)) == want
        for f, t in zip(fused, twins, strict=True):
            assert logs(f) == logs(t) and f.head == t.head and f._noise_i == t._noise_i
            assert f._max_sojourn == t._max_sojourn
            assert [(s.free_at, s.last_n) for s in f.servers] == [
                (s.free_at, s.last_n) for s in t.servers
            ]
            np.testing.assert_array_equal(f.leave_times(), t.leave_times())


@settings(max_examples=80, deadline=None)
@given(
    gaps=st.lists(
        st.one_of(st.floats(0.0, 0.3), st.just(0.0), st.floats(0.3, 20.0)), min_size=1, max_size=400
    ),
    lats=st.lists(st.floats(0.001, 2.0), min_size=1, max_size=5),
    gpus=st.lists(st.integers(0, 2), min_size=5, max_size=5),
    slots=st.integers(1, 3),
    token=st.floats(0.001, 0.1),
    batch=st.integers(1, 5),
    max_wait=st.sampled_from([0.0, 0.0, 0.05]),
    timeout=st.one_of(st.none(), st.floats(0.05, 3.0)),
    stale=st.lists(st.floats(0.0, 500.0), max_size=3),
    steps=st.lists(st.floats(0.0, 2000.0), max_size=8),
    seed=st.integers(0, 5),
)
def test_batch_loop_with_slot_waits_and_stale_endpoints_matches_the_general_loop(
    gaps, lats, gpus, slots, token, batch, max_wait, timeout, stale, steps, seed
):
    """Pods sharing GPUs (slot waits) and stale endpoints: the batch-mode loop
    (``_advance_batch``) logs exactly what the general loop (``_advance_many``) logs."""
    arr = np.cumsum(gaps)

    def play(fast: bool) -> FunctionQueue:
        q = queue(arr, timeout=timeout, overhead=0.01, seed=seed)
        q.max_wait = max_wait
        q.fast_paths = fast
        q.fail_s = 0.02
        for t in stale:
            q.add_stale(t)
        tables = [[0.0] + [lat * (1 + 0.3 * (b - 1)) for b in range(1, batch + 1)] for lat in lats]
        for p, table in enumerate(tables[:-1] or tables):
            q.add_server(p + 3, 0.0, table, slot=(gpus[p], slots, token))
        cuts = sorted(steps)
        for k, t in enumerate(cuts):
            q.advance(t)
            if k == len(cuts) // 2 and len(tables) > 1:
                q.add_server(1, t, tables[-1], slot=(gpus[-1], slots, token))
            if k == len(cuts) - 1 and len(q.servers) > 1:
                q.remove_server(q.servers[-1].pod_id)
        q.advance(math.inf)
        q.expire(math.inf)
        return q

    fast, slow = play(True), play(False)
    assert logs(fast) == logs(slow) and fast.d_reason == slow.d_reason
    assert fast._rr == slow._rr
    assert [(s.pod_id, s.free_at, s.last_n) for s in fast.servers + fast.draining] == [
        (s.pod_id, s.free_at, s.last_n) for s in slow.servers + slow.draining
    ]
    np.testing.assert_array_equal(fast.leave_times(), slow.leave_times())


@settings(max_examples=200, deadline=None)
@given(
    runs=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 6)), max_size=30),
    values=st.lists(st.floats(-1e6, 1e6), min_size=30, max_size=30),
)
def test_expand_runs_is_the_runs_written_out(runs, values):
    """``expand_runs``: the indices of runs (first, count) one after the other (gaps
    between runs allowed), and ``Runs.spread`` gives each index its run's value."""
    first, counts, at = [], [], 0
    for gap, c in runs:
        at += gap
        first.append(at)
        counts.append(c)
        at += c
    rows = expand_runs(first, counts)
    want_idx = [f + k for f, c in zip(first, counts, strict=True) for k in range(c)]
    want_val = [v for v, c in zip(values, counts, strict=False) for _ in range(c)]
    assert rows.idx.tolist() == want_idx
    assert rows.spread(values[: len(first)]).tolist() == want_val
    assert rows.unit == all(c == 1 for c in counts)
