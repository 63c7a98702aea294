"""Client models of stage workloads (``workload.client``): who sends the requests, and when.

* ``open`` (the default): every request is sent at its due time, known in advance
  (``hasim.workload.stages.stage_arrivals``), whatever the system does: open loop.
* ``threadpool``: HAS-GPU's validation client (``ThreadPoolClient``), closed loop: the
  system's responses decide when requests are sent, when a stage ends and which
  requests are never sent (VALIDATION.md section 1).
* ``replay``: the send times of a real run, read from its request file
  (``read_send_times``), sent open loop: the client's effect as it happened, so that a
  replay compares the system alone.

The thread-pool client is the one that wrote the real request files
(KontonGu/HAS-GPU ``validation/client/test_batch.py``, ``run_request_counts`` and
``send_rate_limited_requests``; its CSV columns ``duration,mode,status_code,success,
timestamp`` are the files' and its log lines are the runs' ``*.log``). Per stage of
rate r (req/s) it opens a ``ThreadPoolExecutor(max_workers=2 x r)`` and, for the stage
length, submits one task every 1/r s; each task submits the real send to the same pool
(``send_with_retry`` -> ``executor.submit(send_request)``). Leaving the ``with`` block
shuts the pool down and waits for every task. Hence, per stage i (start S_i, n_i
requests due at S_i + k / r_i, P_i = ``workers_per_rps`` x r_i workers, one FIFO task
queue):

* a worker is held by a request from its send to its response (the request's leave
  time in the simulation: completion plus post-service delay, or its drop); requests
  are sent in order, request k when a worker takes its send task: at max(due time, a
  worker becomes free), so its recorded latency excludes the wait for a worker;
* a submission task taken after the stage's submission loop ended (S_i + stage length:
  the pool has shut down) cannot submit the send: after three retries ("cannot schedule
  new futures after shutdown", back-off 0.1 + 0.2 + 0.4 s, holding its worker:
  ``unsent_hold_s``) the request is lost, never sent nor recorded (HAS 1-bert: 99 such
  requests, 2,591 rows of 2,690; the logs show the retries);
* the stage ends when the submission loop has ended and every task has finished (the
  ``with`` block's shutdown waits); the next stage starts then. A rate-0 stage lasts the
  stage length (the real client would fail on ``max_workers=0``; none of its files has
  one).

Times are in seconds from the start of the run.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hasim.errors import InputError

CLIENTS = ("open", "threadpool", "replay")
WORKERS_PER_RPS = 2.0
"""Pool size per req/s of a stage: test_batch.py ``max_workers=requests_per_second * 2``."""
UNSENT_HOLD_S = 0.7
"""s a worker is held by a request that found the pool shut: test_batch.py's retry
back-off, 0.1 x (1 + 2 + 4) s."""

_SUBMIT, _SEND = 0, 1  # the two kinds of task in the pool's queue


def stage_counts(rates: np.ndarray, stage_s: float) -> np.ndarray:
    """Requests per stage: rate x stage length, rounded up unless within 1e-9 of an
    integer (the rule of ``hasim.workload.stages.stage_arrivals``)."""
    out = []
    for r in np.asarray(rates, dtype=float):
        if r <= 0:
            out.append(0)
            continue
        x = r * stage_s
        out.append(int(round(x)) if abs(x - round(x)) < 1e-9 else math.ceil(x))
    return np.array(out, dtype=np.int64)


@dataclass(frozen=True)
class ThreadPoolClient:
    """The validation client's model (module docstring): its stages and pool settings.
    Immutable: ``start()`` gives the state of one run.

    rates: req/s per stage; stage_s: s per stage (the submission loop's length);
    start_s: s before the first stage starts (idle lead-in); workers_per_rps: pool size
    per req/s (rounded up, at least 1 for a rate > 0); unsent_hold_s: s a worker is held
    by a request that found the pool shut."""

    rates: tuple[float, ...]
    stage_s: float
    start_s: float = 0.0
    workers_per_rps: float = WORKERS_PER_RPS
    unsent_hold_s: float = UNSENT_HOLD_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.stage_s) and self.stage_s > 0):
            raise InputError(f"stage length {self.stage_s!r}", expected="a time > 0 s")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise InputError(f"client start {self.start_s!r}", expected="a time >= 0 s")
        if not (math.isfinite(self.workers_per_rps) and self.workers_per_rps > 0):
            raise InputError(
                f"workload.workers_per_rps={self.workers_per_rps!r} is invalid",
                expected="a number > 0",
            )
        if not (math.isfinite(self.unsent_hold_s) and self.unsent_hold_s >= 0):
            raise InputError(
                f"workload.unsent_hold_s={self.unsent_hold_s!r} is invalid",
                expected="a time >= 0 s",
            )
        if any(not (math.isfinite(r) and r >= 0) for r in self.rates):
            raise InputError(f"stage rates {self.rates!r}", expected="numbers >= 0 (req/s)")

    @property
    def counts(self) -> np.ndarray:
        """Requests per stage."""
        return stage_counts(np.asarray(self.rates, dtype=float), self.stage_s)

    @property
    def total(self) -> int:
        """Requests of the whole workload (sent or not)."""
        return int(self.counts.sum())

    def workers(self, rate: float) -> int:
        """Pool size of a stage of ``rate`` req/s."""
        return max(1, math.ceil(self.workers_per_rps * rate - 1e-9)) if rate > 0 else 0

    def start(self) -> ThreadPoolRun:
        """The state of one run of this client, before its first stage."""
        return ThreadPoolRun(self)


class ThreadPoolRun:
    """One run of a ``ThreadPoolClient``: an event-driven state machine, no SimPy.

    The data plane reports each sent request's leave time (``leave``) as soon as it
    knows it, asks when the client's next own event is (``next_time``: a due
    submission, a worker freed by a reported leave or a retry, the end of a stage's
    submission loop) and processes the client's events up to a time (``advance``). Sends
    come out in order in ``sends`` (times, non-decreasing): the i-th send is the data
    plane's request i. ``lost`` counts the requests that found the pool shut; ``done_at``
    is the time the last stage ended (None before).

    Same-time order: workers freed at t, then submissions due at t, then the stage's end
    (and the next stage's start and first submission, also at t)."""

    def __init__(self, client: ThreadPoolClient) -> None:
        self.client = client
        self.sends: list[float] = []
        self.lost = 0
        self.done_at: float | None = None
        self.now = -math.inf  # the last event time processed
        self._rates = [float(r) for r in client.rates]
        self._counts = client.counts.tolist()
        self._stage = -1
        self._begin = 0.0  # the stage's start (s)
        self._close = 0.0  # when its submission loop ends (s): S_i + stage_s
        self._rate = 0.0
        self._n = 0  # the stage's requests
        self._due = 0  # the next submission to make (index in the stage)
        self._workers = 0
        self._idle = 0
        self._tasks: deque[int] = deque()  # _SUBMIT / _SEND, FIFO
        self._free: list[float] = []  # heap: times busy workers become free
        self._next_stage(client.start_s)

    # ---- what the data plane calls --------------------------------------------------
    @property
    def done(self) -> bool:
        return self.done_at is not None

    def next_time(self) -> float:
        """The time (s) of the client's next own event; inf when none is pending (done,
        or every busy worker waits for a leave the data plane has not reported)."""
        if self.done_at is not None:
            return math.inf
        t = self._free[0] if self._free else math.inf
        if self._due < self._n:
            d = self._due_time(self._due)
            if d < t:
                t = d
        if self.now < self._close < t:
            t = self._close
        return t

    def leave(self, t: float) -> None:
        """A sent request left at ``t`` (s): its worker is free then. A leave reported
        for a time already processed counts at the last processed time."""
        if math.isfinite(t):
            heapq.heappush(self._free, t if t > self.now else self.now)

    def advance(self, until: float) -> None:
        """Process every client event at or before ``until`` (s), in time order."""
        while self.done_at is None:
            t = self.next_time()
            if t > until:
                return
            self._step(t)

    def fork(self) -> ThreadPoolRun:
        """An independent copy of this state (for look-ahead)."""
        other = ThreadPoolRun.__new__(ThreadPoolRun)
        other.__dict__.update(self.__dict__)
        other.sends = list(self.sends)
        other._tasks = deque(self._tasks)
        other._free = list(self._free)
        return other

    # ---- the model -------------------------------------------------------------------
    def _due_time(self, k: int) -> float:
        return self._begin + k / self._rate

    def _stage_over(self) -> bool:
        return (
            self.now >= self._close
            and self._due >= self._n
            and not self._tasks
            and self._idle == self._workers
        )

    def _step(self, t: float) -> None:
        self.now = t
        free = self._free
        while free and free[0] <= t:
            heapq.heappop(free)
            self._idle += 1
        self._dispatch(t)
        self._submit_due(t)
        while self.done_at is None and self._stage_over():
            self._next_stage(t)  # the next stage starts at t; its first submission is due
            self._submit_due(t)

    def _submit_due(self, t: float) -> None:
        """Make the submissions due at or before ``t``."""
        while self._due < self._n and self._due_time(self._due) <= t:
            self._tasks.append(_SUBMIT)
            self._due += 1
            self._dispatch(t)

    def _dispatch(self, t: float) -> None:
        """Idle workers take tasks in FIFO order at ``t``: a submission task before the
        pool shut queues the send (the worker goes on to the next task), after it the
        request is lost and the worker is held; a send task is sent."""
        tasks = self._tasks
        while self._idle > 0 and tasks:
            if tasks.popleft() == _SUBMIT:
                if t < self._close:
                    tasks.append(_SEND)
                else:
                    self.lost += 1
                    self._idle -= 1
                    heapq.heappush(self._free, t + self.client.unsent_hold_s)
            else:
                self.sends.append(t)
                self._idle -= 1

    def _next_stage(self, t: float) -> None:
        self._stage += 1
        if self._stage >= len(self._rates):
            self.done_at = t
            return
        self._begin = t
        self._close = t + self.client.stage_s
        self._rate = self._rates[self._stage]
        self._n = self._counts[self._stage]
        self._due = 0
        self._workers = self._idle = self.client.workers(self._rate)
        self.now = t


REPLAY_COLUMNS = ("timestamp", "duration")


def _refuse_first(
    bad: np.ndarray, column: Any, problem: str, path: Path, expected: str, what: str = ""
) -> None:
    """Raise an InputError naming the first row of a CSV file (header on line 1) where
    ``bad`` holds: its value in ``column`` (a pandas Series) and ``problem``."""
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"{what or column.name} {column.iloc[i]!r} {problem}",
            path=path,
            line=i + 2,
            column=str(column.name),
            expected=expected,
        )


def read_send_times(
    path: str | Path, with_span: bool = False
) -> np.ndarray | tuple[np.ndarray, float]:
    """Send times (s, sorted, the first at 0) of a real run's request file; with
    ``with_span`` also the client's window (s): first send to last completion.

    The file (HAS-GPU's ``validation/result/<system>/<run>/*-120-50-50-15*.csv``) has a
    row per recorded request with ``timestamp``, the completion time (ISO 8601; naive
    stamps are read as UTC), and ``duration``, the latency in s measured from the send
    (VALIDATION.md section 1): a request was sent at ``timestamp - duration``."""
    import pandas as pd

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(
            "replay request file not found",
            path=p,
            expected="a real run's request CSV (workload.replay=<path>)",
        )
    try:
        d = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(
            f"not a readable CSV file ({exc.__class__.__name__})",
            path=p,
            expected="a CSV file with columns timestamp, duration",
        ) from exc
    missing = [c for c in REPLAY_COLUMNS if c not in d.columns]
    if missing:
        raise InputError(
            f"no column {missing[0]!r} (columns: {', '.join(map(str, d.columns))})",
            path=p,
            column=missing[0],
            expected="columns timestamp (completion time, ISO 8601) and duration (s)",
        )
    if d.empty:
        raise InputError("no requests in the file", path=p, expected="at least one row")
    stamps = pd.to_datetime(d["timestamp"].astype(str), utc=True, errors="coerce", format="ISO8601")
    _refuse_first(
        stamps.isna().to_numpy(), d["timestamp"], "is not understood", p,
        "an ISO 8601 time such as 2025-03-17T01:11:08.031699", "time stamp",
    )  # fmt: skip
    dur = pd.to_numeric(d["duration"], errors="coerce").to_numpy(dtype=float)
    _refuse_first(
        ~(np.isfinite(dur) & (dur >= 0)), d["duration"], "is invalid", p, "a latency in s >= 0"
    )
    done = (stamps - stamps.min()).dt.total_seconds().to_numpy(dtype=float)
    sent = np.sort(done - dur)
    first = sent[0]
    sent = sent - first
    return (sent, float(done.max() - first)) if with_span else sent
