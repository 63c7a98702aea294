"""Client models of stage workloads (hasim.workload.client): the thread-pool client's
rules on hand-worked cases, its coupling to the data plane (exact: a closed-loop run
equals the open-loop array path fed with its own send times), the replay reader."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hasim.autoscale.base import Call, CreatePod
from hasim.cluster.closed_loop import drop_instant
from hasim.errors import InputError
from hasim.sim import metrics
from hasim.workload.base import FunctionSpec, Workload
from hasim.workload.client import ThreadPoolClient, read_send_times
from hasim.workload.stages import stage_arrivals
from tests.simkit import StubLatency, simulate
from tests.test_engine import static


def drive(client: ThreadPoolClient, service=None, leaves=None, until=math.inf):
    """Run the client against an infinitely wide server: the i-th send leaves
    ``service(i)`` s after it is sent (or at ``leaves[i]``, s; nan: never), up to
    ``until`` (s). Returns the sends and the client's state."""
    run = client.start()
    seen = 0
    while not run.done:
        t = run.next_time()
        if t > until:
            break
        assert t < math.inf, "the client waits for a leave nobody reports"
        run.advance(t)
        for i in range(seen, len(run.sends)):
            run.leave(run.sends[i] + service(i) if leaves is None else leaves[i])
        seen = len(run.sends)
    return run.sends, run


def tp_workload(rates, stage_s, start_s=0.0, workers_per_rps=2.0, hold=0.7) -> Workload:
    c = ThreadPoolClient(tuple(float(r) for r in rates), stage_s, start_s, workers_per_rps, hold)
    due = start_s + stage_arrivals(np.asarray(rates, dtype=float), stage_s)
    return Workload(
        [FunctionSpec("f", "m", 10.0)],
        {"f": due},
        start_s + len(rates) * stage_s,
        clients={"f": c},
    )


# ---- the client alone ------------------------------------------------------------------
def test_stage_that_finishes_early_ends_at_its_length():
    sends, run = drive(ThreadPoolClient((2.0, 1.0), 2.0), lambda i: 0.1)
    assert sends == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    assert run.done_at == pytest.approx(4.0) and run.lost == 0


def test_slow_service_stretches_the_stage_and_the_next_starts_at_the_last_completion():
    # 4 workers for stage 1 (2 req/s x 2): nobody waits for a worker; every request is
    # answered 3 s after its send, so stage 1 ends with the last answer at 1.5 + 3
    sends, run = drive(ThreadPoolClient((2.0, 1.0), 2.0), lambda i: 3.0)
    assert sends == pytest.approx([0.0, 0.5, 1.0, 1.5, 4.5, 5.5])
    assert run.done_at == pytest.approx(8.5)


def test_pool_limit_delays_sends_in_order():
    # 2 workers (0.5 per req/s x 4 req/s), requests due every 0.25 s, answers after 0.6 s:
    # request 2 waits for the worker freed at 0.6, request 3 for the one freed at 0.85
    sends, run = drive(ThreadPoolClient((4.0,), 1.0, workers_per_rps=0.5), lambda i: 0.6)
    assert sends == pytest.approx([0.0, 0.25, 0.6, 0.85])
    assert run.done_at == pytest.approx(1.45) and run.lost == 0


def test_requests_still_unsubmitted_when_the_pool_shuts_are_never_sent():
    # answers after 2 s: submissions due at 0.5 and 0.75 find no worker before the pool
    # shuts at 1 s; the workers freed at 2 and 2.25 take them, fail, and are held 0.7 s
    sends, run = drive(ThreadPoolClient((4.0,), 1.0, workers_per_rps=0.5), lambda i: 2.0)
    assert sends == pytest.approx([0.0, 0.25])
    assert run.lost == 2 and run.done_at == pytest.approx(2.95)
    _, held0 = drive(ThreadPoolClient((4.0,), 1.0, 0.0, 0.5, 0.0), lambda i: 2.0)
    assert held0.done_at == pytest.approx(2.25)


def test_rate_zero_stage_lasts_its_length_and_start_offset():
    sends, run = drive(ThreadPoolClient((0.0, 1.0), 3.0, start_s=2.0), lambda i: 0.5)
    assert sends == pytest.approx([5.0, 6.0, 7.0])
    assert run.done_at == pytest.approx(8.0)
    assert ThreadPoolClient((0.0, 1.0), 3.0).workers(0.0) == 0
    assert ThreadPoolClient((1.5,), 1.0).workers(1.5) == 3
    with pytest.raises(InputError, match="workers_per_rps"):
        ThreadPoolClient((1.0,), 1.0, workers_per_rps=0.0)


def test_sends_increase_and_every_request_is_sent_or_lost():
    rng = np.random.default_rng(4)
    rates = (5.0, 15.0, 3.0, 12.0, 0.0, 9.0)
    client = ThreadPoolClient(rates, 2.0)
    service = rng.exponential(0.8, 10_000)
    sends, run = drive(client, lambda i: service[i])
    assert np.all(np.diff(sends) >= 0)
    assert len(sends) + run.lost == client.total == int(client.counts.sum()) == 88
    # never more requests outstanding than the largest pool
    ends = np.array(sends) + service[: len(sends)]
    out = [(np.array(sends) <= t).sum() - (ends <= t).sum() for t in sends]
    assert max(out) <= client.workers(15.0)


# ---- coupled to the data plane -----------------------------------------------------------
def test_same_instant_send_joins_the_batch_that_starts_then():
    """One pod, batches of 2, 0.6 s each; 2 workers for 4 requests due every 0.25 s.
    Request 0 runs 0..0.6; request 1 (sent 0.25) waits for the pod; at 0.6 request 0's
    answer frees its worker, which sends request 2 at 0.6: it joins request 1's batch
    (0.6..1.2). Their answers at 1.2 come after the pool shut (1 s): request 3 is never
    sent; the worker that takes it is held 0.7 s, so the client ends at 1.9."""
    w = tp_workload([4], 1.0, workers_per_rps=0.5)
    sim, req = simulate(
        w, static(1, batch=2), latency=StubLatency(0.6, "deterministic"), overhead=0.0, drain=5.0
    )
    assert req["arrival"].tolist()[:3] == pytest.approx([0.0, 0.25, 0.6])
    assert req["start"].tolist()[:3] == pytest.approx([0.0, 0.6, 0.6])
    assert req["batch"].tolist() == [1, 2, 2, 0]
    assert req["latency"].tolist()[:3] == pytest.approx([0.6, 0.95, 0.6])
    last = req.iloc[3]
    assert (last["status"], last["reason"]) == ("dropped", "unsent") and math.isnan(last["arrival"])
    assert sim.window_s == pytest.approx(1.9)
    s = metrics.summarize(
        sim, req, metrics.alloc_frame(sim), metrics.usage_frame(metrics.alloc_frame(sim), 2, 6.9)
    )
    assert (s["completed"], s["dropped"], s["window_s"]) == (3, 1, pytest.approx(1.9))


def test_timeouts_free_the_workers_and_an_unfinished_client_leaves_requests_unsent():
    # no pod: each request is dropped 0.3 s after its send, freeing the only worker
    w = tp_workload([2], 1.0, workers_per_rps=0.5)
    sim, req = simulate(w, static(0), timeout=0.3, overhead=0.0, drain=2.0)
    assert req["arrival"].tolist() == pytest.approx([0.0, 0.5])
    assert req["finish"].tolist() == pytest.approx([0.3, 0.8])
    assert (req["reason"] == "timeout").all() and sim.window_s == pytest.approx(1.0)
    # without a timeout the first request holds the worker to the end of the run
    sim, req = simulate(w, static(0), timeout=None, overhead=0.0, drain=2.0)
    assert req["status"].tolist() == ["in_flight", "dropped"]
    assert req["reason"].tolist() == ["", "unsent"]
    assert sim.window_s == sim.end_time == pytest.approx(3.0)


def replay_open(sim, workload, autoscaler, **kw):
    """The same run on the open-loop array path, with the closed-loop run's sends as
    arrivals."""
    sent = np.array([t for t in sim.queue_list[0].arrivals if math.isfinite(t)])
    w = Workload(workload.functions, {"f": sent}, workload.duration_s)
    return simulate(w, autoscaler, **kw)


@pytest.mark.parametrize("seed", range(6))
def test_closed_loop_equals_the_open_loop_path_on_its_own_sends(seed):
    """Exactness, both ways. Had a batch started before a send that could join it, the
    open-loop path (which knows every arrival in advance) would batch differently; had
    the client seen a leave late (a timeout, a completion), the client alone, fed with
    the run's leave times, would send differently. Several pods, batching with fill
    waits, post-service delays with spread, timeouts, random service."""
    rng = np.random.default_rng(seed)
    rates = rng.integers(0, 25, 8).tolist()
    # small pools and slow service: workers are often all busy, so answers drive sends
    w = tp_workload(rates, 2.0, workers_per_rps=float(rng.choice([0.25, 0.5, 1.0])))
    kw = {
        "latency": StubLatency(float(rng.uniform(0.2, 1.0)), per_item=0.05),
        "overhead": float(rng.choice([0.0, 0.07])),
        "overhead_cv": float(rng.choice([0.0, 0.3])),
        "max_wait": float(rng.choice([0.0, 0.05, 0.2])),
        "timeout": float(rng.choice([0.5, 2.0, 60.0])),
        "seed": seed,
        "drain": 30.0,
    }
    pods = int(rng.integers(1, 4))
    sim, req = simulate(w, static(pods, batch=4), **kw)
    sent = req[np.isfinite(req["arrival"])].reset_index(drop=True)
    _, ref = replay_open(sim, w, static(pods, batch=4), **kw)
    assert len(sent) > 0
    for c in ("arrival", "start", "finish", "pod", "batch"):
        np.testing.assert_array_equal(sent[c].to_numpy(), ref[c].to_numpy(), err_msg=c)
    assert (sent["status"].astype(str) == ref["status"].astype(str)).all()
    leaves = sent["finish"].to_numpy().copy()
    dropped = (sent["reason"] == "timeout").to_numpy()
    leaves[dropped] = [drop_instant(a, kw["timeout"]) for a in sent["arrival"][dropped]]
    sends, _ = drive(w.clients["f"], leaves=leaves, until=sim.end_time)
    np.testing.assert_array_equal(sends, sent["arrival"].to_numpy())


def test_kernel_mode_closed_loop_equals_the_open_loop_kernel_path():
    w = tp_workload([8, 20, 4], 2.0)
    kw = {
        "latency": StubLatency(0.08, per_item=0.02),
        "overhead": 0.02,
        "timeout": None,
        "drain": 20.0,
    }
    from hasim.config.schema import ClusterConfig, SimConfig
    from hasim.sim.engine import Simulation
    from tests.simkit import no_cold_start

    def run(workload):
        cc = ClusterConfig(cold_start=no_cold_start(), timeout=None, overhead=0.02, max_wait=0.02)
        sc = SimConfig(progress=False, drain=20.0, fidelity="kernel", kernel_model="uniform")
        sim = Simulation(workload, kw["latency"], static(2, sm=50, quota=0.5), cc, sc, 0).run()
        return sim, metrics.requests_frame(sim, metrics.slos(sim))

    sim, req = run(w)
    sent = np.array([t for t in sim.queue_list[0].arrivals if math.isfinite(t)])
    _, ref = run(Workload(w.functions, {"f": sent}, w.duration_s))
    got = req[np.isfinite(req["arrival"])].reset_index(drop=True)
    assert len(got) == len(ref) > 0 and sim.queue_list[0].client.done
    for c in ("arrival", "start", "finish", "pod", "batch"):
        np.testing.assert_array_equal(got[c].to_numpy(), ref[c].to_numpy(), err_msg=c)


def test_the_view_sees_sends_and_wakes_at_the_first_send():
    """The autoscaler reads arrival counts that include the sends made so far (the
    merged index is rebuilt), and a function without pods is woken at its first send,
    found by looking ahead in the client (here after a 1-s lead-in)."""
    seen: dict[float, tuple[int, int, str]] = {}

    class Watch:
        period_s = 0.5
        wake_on_arrival = True

        def decide(self, now, view):
            seen[now] = (
                int(view.arrival_counts(-1.0)[0]),
                view.arrivals("f", -1.0, now),
                view.cause,
            )
            if view.cause is Call.WAKE and not view.pods("f"):
                return [CreatePod("f", 100, 1.0, 1, warm=True)]
            return []

    w = tp_workload([4, 2], 1.0, start_s=1.25)
    sim, req = simulate(w, Watch(), latency=StubLatency(0.1, "deterministic"), overhead=0.0)
    assert seen[1.25][2] is Call.WAKE and seen[1.25][:2] == (1, 1)
    assert seen[2.0][:2] == (4, 4)  # sends at 1.25, 1.5, 1.75, 2.0
    assert seen[3.0][:2] == (6, 6)
    assert (req["status"] == "completed").all()


# ---- replay ----------------------------------------------------------------------------
def write_requests(path, rows):
    pd.DataFrame(rows, columns=["duration", "mode", "status_code", "success", "timestamp"]).to_csv(
        path, index=False
    )
    return path


def test_replay_reads_send_times_as_completion_minus_duration(tmp_path):
    f = write_requests(
        tmp_path / "run.csv",
        [
            (0.5, "image", 200, True, "2025-03-17T01:00:01.000000"),
            (0.1, "image", 200, True, "2025-03-17T01:00:00.600000"),
            (2.0, "image", 502, False, "2025-03-17T01:00:04.000000"),
        ],
    )
    sends, span = read_send_times(f, with_span=True)
    assert sends.tolist() == pytest.approx([0.0, 0.0, 1.5])
    assert span == pytest.approx(3.5)


@pytest.mark.parametrize(
    "rows, match",
    [
        ([(0.1, "image", 200, True, "yesterday")], r"run\.csv:2:timestamp: time stamp"),
        ([(-1.0, "image", 200, True, "2025-03-17T01:00:00")], r"run\.csv:2:duration"),
        ([], "no requests"),
    ],
)
def test_replay_reader_names_the_file_row_and_column(tmp_path, rows, match):
    f = write_requests(tmp_path / "run.csv", rows)
    with pytest.raises(InputError, match=match):
        read_send_times(f)


def test_replay_reader_missing_file_or_column(tmp_path):
    with pytest.raises(InputError, match="absent.csv: replay request file not found"):
        read_send_times(tmp_path / "absent.csv")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"timestamp": ["2025-03-17T01:00:00"], "latency": [0.1]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match=r"bad.csv column duration: no column 'duration'"):
        read_send_times(bad)
