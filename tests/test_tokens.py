"""The per-GPU token scheduler (hasim.cluster.tokens) and its Chrome trace export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasim.cluster.tokens import TokenScheduler
from hasim.cluster.trace import KernelTrace
from hasim.errors import HasimError, InputError
from hasim.sim.perfetto import write_chrome_trace

W = 0.040
MS = 1e-3


def scheduler(*clients, gpu=0, **kw):
    """(env, trace, scheduler) on GPU ``gpu`` with ``clients`` = (pod, SM %, quota) added."""
    env = simpy.Environment()
    tr = KernelTrace()
    s = TokenScheduler(env, gpu, trace=tr, **kw)
    for pod, sm, quota in clients:
        s.add_client(pod, sm, quota)
    return env, tr, s


def lone(kernels, quota, *, runs=1, gap=0.0, window=W, margin=1 * MS, launch_s=None, **kw):
    """Latencies (s) of ``runs`` inferences of a lone pod, plus the trace."""
    env = simpy.Environment()
    tr = KernelTrace()
    s = TokenScheduler(env, 0, window_s=window, launch_margin_s=margin, trace=tr, **kw)
    s.add_client(7, 100.0, quota)
    out = []

    def loop():
        for _ in range(runs):
            t0 = env.now
            end = yield s.run(7, kernels, launch_s)
            out.append(end - t0)
            if gap:
                yield env.timeout(gap)

    env.process(loop())
    env.run()
    return out, tr


def max_window_busy(iv: np.ndarray, window: float) -> float:
    """The most busy time of ``iv`` (rows start, end) inside any window of length ``window``."""
    if len(iv) == 0:
        return 0.0
    starts = np.concatenate([iv[:, 0], iv[:, 1] - window])
    best = 0.0
    for a in starts:
        b = a + window
        busy = np.clip(np.minimum(iv[:, 1], b) - np.maximum(iv[:, 0], a), 0, None).sum()
        best = max(best, float(busy))
    return best


# ---- lone pod ----------------------------------------------------------------------


def test_lone_pod_quota_one_runs_back_to_back():
    rng = np.random.default_rng(1)
    k = rng.uniform(0.01 * MS, 3 * MS, size=400)  # 600 ms: many windows
    lat, tr = lone(k, 1.0, runs=3)
    assert lat == pytest.approx([k.sum()] * 3, abs=1e-12)
    spans = tr.kernel_spans()
    assert np.allclose(spans[1:, 2], spans[:-1, 3])  # no gap between kernels
    assert not tr.waits


def test_lone_pod_hand_computed_quota_quarter():
    # W 40 ms, q 0.25 -> 10 ms tokens, margin 1 ms: a kernel launches at offset <= 9 ms.
    lat, tr = lone([1 * MS] * 30, 0.25)
    # tokens at 0, 40, 80 ms each run 10 kernels; the pod waits for its usage to fall
    # below 10 ms, i.e. until the previous token starts leaving the window
    assert lat[0] == pytest.approx(90 * MS, abs=1e-7)
    grants = tr.token_spans()[:, 2]
    assert grants == pytest.approx([0, 40 * MS, 80 * MS], abs=1e-7)
    # 1.5 ms kernels: 7 per token (offsets 0..9 ms), the 7th runs 0.5 ms past the token
    # (overuse, charged): the next grant is 0.5 ms later
    lat, tr = lone([1.5 * MS] * 20, 0.25)
    assert tr.token_spans()[:, 2] == pytest.approx([0, 40.5 * MS, 81 * MS], abs=1e-7)
    assert lat[0] == pytest.approx(90 * MS, abs=1e-7)


def test_lone_pod_stretches_about_one_over_quota():
    k = np.full(2000, 0.1 * MS)  # 200 ms of small kernels
    for q in (0.2, 0.3, 0.5, 0.7):
        lat, _ = lone(k, q)
        token = q * W
        per_token = token - 1 * MS  # the margin is lost at the end of each token
        expect = k.sum() / per_token * W
        assert lat[0] == pytest.approx(expect, rel=0.12), q
        assert lat[0] > k.sum() / q * 0.9


def test_jump_at_small_quota():
    # an AlexNet-like 5 ms inference fits one 8 ms token (q 20 %) but not a 4 ms one
    k = np.full(50, 0.1 * MS)
    lat20, _ = lone(k, 0.2)
    lat10, _ = lone(k, 0.1)
    assert lat20[0] == pytest.approx(5 * MS, abs=1e-9)
    assert lat10[0] > 40 * MS


def test_lone_pod_window_usage_is_bounded_by_the_quota():
    rng = np.random.default_rng(3)
    k = rng.uniform(0.05 * MS, 2 * MS, size=600)
    for q in (0.15, 0.4, 0.8):
        _, tr = lone(k, q)
        busy = tr.busy_intervals(0, 7)
        assert max_window_busy(busy, W) <= q * W + k.max() + 1e-9


def test_gap_between_runs_changes_the_next_run():
    # usage of the previous inference still in the window delays the next one
    k = np.full(30, 1 * MS)
    lat, _ = lone(k, 0.25, runs=3, gap=5 * MS)
    assert lat[0] == pytest.approx(90 * MS, abs=1e-7)
    assert lat[1] > lat[0]


# ---- quota changes, adaptive tokens --------------------------------------------------


def test_quota_change_applies_at_next_grant():
    env, tr, s = scheduler((1, 100.0, 0.25))
    done = s.run(1, [1 * MS] * 30)

    def change():
        yield env.timeout(5 * MS)
        s.set_quota(1, 0.5)

    env.process(change())
    env.run()
    # first token keeps its 10 ms; at 10 ms usage 10 < 20 ms: a 20 ms token at once
    assert tr.token_spans()[:, 4] == pytest.approx([10 * MS, 20 * MS])
    assert done.value == pytest.approx(30 * MS, abs=1e-9)


def test_raised_quota_wakes_a_waiting_pod_at_once():
    """A pod waiting (usage >= its old limit) gets a token as soon as a raised quota makes it
    a candidate, not at the wake time computed under the old quota."""
    env, tr, s = scheduler((1, 100.0, 0.25))
    done = s.run(1, [1 * MS] * 30)

    def change():
        yield env.timeout(15 * MS)  # the first 10 ms token is spent; it waits until 40 ms
        s.set_quota(1, 0.5)

    env.process(change())
    env.run()
    grants = tr.token_spans()[:, 2]
    # the second token starts at 15 ms (usage 10 ms < 20 ms), not at 40 ms
    assert grants[1] == pytest.approx(15 * MS)
    assert done.value < 40 * MS


def test_adaptive_tokens():
    # FaST-GShare ICPP'23: W 10 s, token = 0.5 burst + 0.5 previous, 300 ms at first
    env, tr, s = scheduler((1, 100.0, 0.5), window_s=10.0, adaptive=True)
    k = np.full(100, 0.010)

    def loop():
        yield s.run(1, k)
        yield s.run(1, k)

    env.process(loop())
    env.run()
    lengths = tr.token_spans()[:, 4]
    # 300 ms init; burst 0.3 -> 0.3; burst 0.6 -> 0.45; then the next inference starts
    # from the whole first inference (1 s): 0.5 * 1.0 + 0.5 * 0.45
    assert lengths[:4] == pytest.approx([0.3, 0.3, 0.45, 0.725])
    assert env.now == pytest.approx(2.0)
    # clamped to [adaptive_min, q W]
    # q W = 0.2 s < 0.3 s init
    env, tr, s = scheduler((1, 100.0, 0.02), window_s=10.0, adaptive=True)
    s.run(1, np.full(10, 0.001))
    env.run()
    assert tr.token_spans()[0, 4] == pytest.approx(0.2)


# ---- several pods ------------------------------------------------------------------------


def test_partitions_that_fit_run_at_once():
    env, tr, s = scheduler((1, 50.0, 0.5), (2, 50.0, 0.5))
    a = s.run(1, [1 * MS] * 10)
    b = s.run(2, [1 * MS] * 10)
    env.run()
    assert a.value == pytest.approx(10 * MS) and b.value == pytest.approx(10 * MS)


def test_partitions_that_do_not_fit_take_turns():
    env, tr, s = scheduler((1, 60.0, 1.0), (2, 60.0, 1.0))
    a = s.run(1, [1 * MS] * 10)
    b = s.run(2, [1 * MS] * 10)
    env.run()
    assert sorted([a.value, b.value]) == pytest.approx([10 * MS, 20 * MS])
    assert len(tr.waits) == 1


def test_candidate_order_prefers_the_less_served_pod():
    env, tr, s = scheduler((1, 100.0, 0.5), (2, 100.0, 0.5))
    s.run(1, [1 * MS] * 5)  # pod 1 alone first: usage 5 ms
    env.run()
    s.run(1, [1 * MS] * 5)
    s.run(2, [1 * MS] * 5)
    env.run()
    toks = tr.token_spans()
    assert toks[1, 1] == 2 and toks[2, 1] == 1  # pod 2 (usage 0) before pod 1


pods_st = st.lists(
    st.tuples(
        st.sampled_from([10.0, 25.0, 40.0, 50.0, 60.0, 75.0, 100.0]),
        st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.8, 1.0]),
        st.lists(st.lists(st.floats(0.02, 6.0), min_size=1, max_size=25), min_size=1, max_size=3),
        st.floats(0.0, 0.03),
    ),
    min_size=2,
    max_size=4,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods=pods_st)
def test_random_pods_respect_partitions_and_quotas(pods):
    env = simpy.Environment()
    tr = KernelTrace()
    s = TokenScheduler(env, 3, trace=tr)
    ends: dict[int, list[float]] = {}

    def client(pid, runs, gap):
        for ks in runs:
            end = yield s.run(pid, np.asarray(ks) * MS)
            ends.setdefault(pid, []).append(end)
            yield env.timeout(gap)

    for pid, (sm, q, runs, gap) in enumerate(pods):
        s.add_client(pid, sm, q)
        env.process(client(pid, runs, gap))
    env.run()
    spans = tr.kernel_spans()
    toks = tr.token_spans()
    # every inference finished, every kernel ran once at its duration
    for pid, (_sm, _q, runs, _gap) in enumerate(pods):
        assert len(ends[pid]) == len(runs)
        mine = spans[spans[:, 1] == pid]
        assert len(mine) == sum(len(r) for r in runs)
        assert (mine[:, 3] - mine[:, 2]).sum() == pytest.approx(sum(map(sum, runs)) * MS)
        assert not s.busy(pid)
    # SM partitions: token holders never exceed 100 % at any instant
    for t in toks[:, 2]:
        held = toks[(toks[:, 2] <= t) & (toks[:, 3] > t)]
        assert held[:, 5].sum() <= 100 + 1e-9
    # kernels of two pods with SM sum > 100 never overlap
    for i in range(len(pods)):
        for j in range(i + 1, len(pods)):
            if pods[i][0] + pods[j][0] <= 100:
                continue
            a = spans[spans[:, 1] == i]
            b = spans[spans[:, 1] == j]
            ov = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 2], b[None, :, 2])
            assert (ov <= 1e-12).all()
    # quota: the busy time in any window is below q W plus one token plus one kernel's
    # overuse (a token may be granted while usage is just under q W); for a pod that
    # never released a token early it is below q W plus one kernel
    for pid, (_sm, q, runs, _gap) in enumerate(pods):
        if q >= 1:
            continue
        kmax = max(max(r) for r in runs) * MS
        busy = tr.busy_intervals(3, pid)
        assert max_window_busy(busy, W) <= 2 * q * W + kmax + 1e-9


def test_fastgshare_interference_partitions_keep_throughput():
    """FaST-GShare's motivation: ResNet-50 (q 0.8) with RNNT (q 0.5) on one V100.

    Kernel sequences are synthetic: ResNet-50 batch 4 takes 21.1 ms at SM 100 % and
    21.4 ms at SM 50 % (RaPP V100, quota 100 %), split into 160 kernels with a fixed
    lognormal shape; RNNT (not in RaPP) is modelled as 30 ms at SM 100 % and 33 ms at
    SM 50 % in 300 kernels. Each pod serves requests in a closed loop for 10 s.
    """
    rng = np.random.default_rng(0)
    shape_r = rng.lognormal(0, 1, 160)
    shape_n = rng.lognormal(0, 0.5, 300)

    def kernels(shape, total):
        return shape / shape.sum() * total

    def throughput(config):
        env = simpy.Environment()
        s = TokenScheduler(env, 0)
        count = {}

        def loop(pid, ks):
            while True:
                yield s.run(pid, ks)
                count[pid] = count.get(pid, 0) + 1

        for pid, (sm, q, shape, total) in config.items():
            s.add_client(pid, sm, q)
            env.process(loop(pid, kernels(shape, total)))
        env.run(until=10.0)
        return {pid: count.get(pid, 0) / 10.0 for pid in config}

    solo = throughput({0: (100, 0.8, shape_r, 21.1 * MS)})[0]
    shared = throughput({0: (100, 0.8, shape_r, 21.1 * MS), 1: (100, 0.5, shape_n, 30 * MS)})
    parts = throughput({0: (50, 0.8, shape_r, 21.4 * MS), 1: (50, 0.5, shape_n, 33 * MS)})
    assert shared[0] < 0.8 * solo  # time sharing alone: ResNet loses a big share
    assert parts[0] > 0.9 * solo  # SM partitions: near its solo throughput
    assert parts[1] > shared[1]  # and RNNT gains too


# ---- launch-gated (asynchronous) mode --------------------------------------------------


def test_launch_gated_small_partition_flattens():
    # the host launches 438 kernels in 43.8 ms (the SM-100 % pace); at a small SM
    # partition the GPU needs 157.6 ms for them: the quota throttles the launches only
    launch = np.full(438, 0.1 * MS)
    gpu = np.full(438, 157.6 / 438 * MS)
    lat = {}
    for q in (1.0, 0.4, 0.1):
        lat[q], _ = lone(gpu, q, launch_s=launch)
    sync01, _ = lone(launch, 0.1)
    assert lat[1.0][0] == pytest.approx(gpu.sum() + launch[0], abs=1e-9)
    assert lat[0.4][0] == pytest.approx(lat[1.0][0], abs=1e-9)  # flat: GPU-bound
    # launch-bound: the launch stream of the synchronous case plus the GPU tail of the
    # last token (4 kernels launched in 0.4 ms take 1.44 ms on the GPU)
    assert lat[0.1][0] == pytest.approx(sync01[0] + 1.14 * MS, abs=1e-6)


def test_launch_gated_kernels_follow_their_launches():
    rng = np.random.default_rng(5)
    launch = rng.uniform(0.05 * MS, 0.3 * MS, 300)
    gpu = rng.uniform(0.05 * MS, 0.6 * MS, 300)
    lat, tr = lone(gpu, 0.3, launch_s=launch)
    k = tr.kernel_spans()
    assert (k[1:, 2] >= k[:-1, 3] - 1e-12).all()  # in order, one at a time
    assert (k[:, 3] - k[:, 2]).sum() == pytest.approx(gpu.sum())
    toks = tr.token_spans()
    # every token's hold covers launches only; the last kernel ends after the last hold
    assert k[-1, 3] >= toks[-1, 3]
    assert lat[0] == pytest.approx(k[-1, 3])
    with pytest.raises(InputError):
        TokenScheduler(simpy.Environment(), 0).run(0, gpu)  # unknown pod
    env = simpy.Environment()
    s = TokenScheduler(env, 0)
    s.add_client(0, 50.0, 0.5)
    with pytest.raises(InputError):
        s.run(0, gpu, launch[:-1])


# ---- API errors ----------------------------------------------------------------------------


def test_api_errors():
    env = simpy.Environment()
    s = TokenScheduler(env, 0)
    s.add_client(1, 50.0, 0.5)
    with pytest.raises(InputError):
        s.add_client(1, 50.0, 0.5)
    with pytest.raises(InputError):
        s.add_client(2, 0.0, 0.5)
    with pytest.raises(InputError):
        s.add_client(2, 50.0, 1.5)
    with pytest.raises(InputError):
        s.run(9, [1 * MS])
    with pytest.raises(InputError):
        s.run(1, [-1.0])
    s.run(1, [1 * MS])
    assert s.busy(1)
    with pytest.raises(HasimError):
        s.run(1, [1 * MS])
    with pytest.raises(HasimError):
        s.remove_client(1)
    env.run()
    assert not s.busy(1)
    s.remove_client(1)
    assert 1 not in s.clients
    ev = TokenScheduler(env, 1)
    ev.add_client(1, 10.0, 0.1)
    assert ev.run(1, []).value == env.now


# ---- trace export ----------------------------------------------------------------------------


def test_chrome_trace_export(tmp_path):
    env, tr, s = scheduler((1, 60.0, 0.25), (2, 60.0, 0.5), gpu=2)
    s.run(1, [1 * MS] * 15)
    s.run(2, [2 * MS] * 5)
    env.run()
    path = tmp_path / "sub" / "trace.json"
    write_chrome_trace(tr, path, names={1: "resnet-0"})
    doc = json.loads(path.read_text())
    evs = doc["traceEvents"]
    phases = {e["ph"] for e in evs}
    assert {"M", "X", "C"} <= phases
    cats = {e["cat"] for e in evs if e["ph"] == "X"}
    assert {"kernel", "token", "wait", "inference"} <= cats
    names = {e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "thread_name"}
    assert "resnet-0" in names and "pod 2" in names
    assert {e["pid"] for e in evs if e["ph"] == "X"} == {2}
    kern = [e for e in evs if e.get("cat") == "kernel" and e["tid"] == 1]
    assert len(kern) == 15
    assert kern[0]["dur"] == pytest.approx(1000.0)  # microseconds
    # grouped kernels: one slice per token burst
    write_chrome_trace(tr, path, group_kernels=True)
    evs = json.loads(path.read_text())["traceEvents"]
    assert not [e for e in evs if e.get("cat") == "kernel"]
    assert len([e for e in evs if e.get("cat") == "kernels"]) == len(tr.bursts)
    # launch-gated kernels go to a "<pod> GPU" thread
    tr = KernelTrace()
    env = simpy.Environment()
    s = TokenScheduler(env, 0, trace=tr)
    s.add_client(4, 30.0, 0.5)
    s.run(4, [2 * MS] * 5, launch_s=[0.5 * MS] * 5)
    env.run()
    write_chrome_trace(tr, path)
    evs = json.loads(path.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "thread_name"}
    assert "pod 4 GPU" in names
    assert len([e for e in evs if e.get("cat") == "kernel"]) == 5
