"""The data plane of one function: its FIFO queue, dynamic batching and its pods.

This is the simulation's hot loop, written without per-request objects or SimPy
events (DESIGN.md "fast path"). Requests are indices into the function's sorted
arrival array. The control plane (SimPy) calls ``advance(t)`` before it changes the
function's pods at time ``t``; ``advance`` starts every batch whose start time is
<= t. Between two control events the pod set is constant, so every batch start is
decided with the pods that really existed at that moment.

Batching rule: a pod that is free at ``t_free`` serves the queue head ``a0`` at
``start = max(t_free, a0)``; with ``max_wait > 0`` it waits until the batch is full or
the head has waited ``max_wait``: ``start = max(t_free, a0, min(a0 + max_wait,
arrival of the max_batch-th queued request))``. The batch holds every queued request
that arrived by ``start``, up to ``max_batch``. The pod is busy for the batch latency
(mean x noise) plus ``overhead`` (non-GPU time held by the pod's serving process);
each request finishes ``delay`` s after the batch's end (non-GPU time spent outside the
pod's serial path, e.g. HTTP and pre/post-processing in parallel workers); with
``delay_cv > 0`` each request draws its own delay, lognormal with mean ``delay`` and that
coefficient of variation, from ``delay_rng`` (one draw per request, in arrival order, at
construction: the draws do not depend on the dynamics; cluster.overhead_cv). Among
free pods the one free the longest takes the head (ties: lowest pod id). A request
still queued ``timeout`` s after it arrived is dropped (reason ``timeout``).

Kernel fidelity reuses this loop (``event_driven``): a batch's end is not computed at its
start but reported later by the GPU's token scheduler (hasim.cluster.kernel_plane). So
does a closed-loop client's queue (hasim.cluster.closed_loop), whose arrivals become
known only as the client sends: it starts batches one instant at a time (``_limit``).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hasim.errors import InputError
from hasim.perf.common import lognormal_noise

NOISE_BLOCK = 8192
# leave times of new batches spanning at most this many requests (dropped ones between
# them included) are filled one request at a time (cheaper than the array path below it)
FEW = 48
FEW_SUM = 7  # request-seconds of at most this many requests summed in Python (exact)
# request-seconds of at most this many requests summed in Python as numpy sums them
# (pairwise_sum); more: in numpy
PAIRWISE_FEW = 40
SCAN = 16  # FunctionQueue._scan_gone: more requests started since are checked as an array
FAILED_REASON = "pod_removed"  # drop-log reason of requests sent to a removed pod
# the idle fast path (FunctionQueue._idle_run): stretches shorter than IDLE_RUN_MIN are
# left to the loop, which then takes IDLE_COOL steps before trying again; the chunk
# looked at grows from IDLE_CHUNK_MIN to IDLE_CHUNK_MAX requests while stretches last
IDLE_RUN_MIN = 8
IDLE_COOL = 16
IDLE_CHUNK_MIN = 64
IDLE_CHUNK_MAX = 16384


@dataclass(frozen=True)
class Runs:
    """Runs (first index, count) of consecutive requests, expanded: ``idx`` the indices
    they cover (in run order) and ``counts`` the run lengths (int64)."""

    idx: np.ndarray
    counts: np.ndarray
    unit: bool  # every run holds one request (idx is the runs' first indices)

    def spread(self, per_run: list | np.ndarray, dtype: type | None = None) -> np.ndarray:
        """A per-run value for each index of ``idx`` (the same element order)."""
        x = np.asarray(per_run, dtype=dtype)
        return x if self.unit else np.repeat(x, self.counts)


def expand_runs(first: list[int], counts: list[int]) -> Runs:
    """The indices covered by runs (first, count) and how to line per-run values up
    with them (``Runs.spread``)."""
    f = np.asarray(first, dtype=np.int64)
    c = np.asarray(counts, dtype=np.int64)
    total = int(c.sum())
    if total == c.size:  # runs of one (batches of one request)
        return Runs(f, c, True)
    # index = first of its run + its position in the run: one repeat of the runs'
    # (first - requests before the run), plus the running position
    idx = np.repeat(f - (np.cumsum(c) - c), c)
    idx += np.arange(total, dtype=np.int64)
    return Runs(idx, c, False)


def pairwise_sum(xs: list[float]) -> float:
    """The sum of ``xs`` exactly as numpy's float64 ``add.reduce`` forms it (its pairwise
    summation: fewer than 8 numbers in sequence, up to 128 in eight interleaved partial
    sums, more split in two at a multiple of 8), for short lists where numpy's fixed cost
    dominates. ``np.sum(a) == 0.0 + pairwise_sum(a.tolist())`` (tests/test_gateway.py)."""
    n = len(xs)
    if n < 8:
        total = 0.0
        for x in xs:
            total += x
        return total
    if n > 128:
        half = n // 2
        half -= half % 8
        return pairwise_sum(xs[:half]) + pairwise_sum(xs[half:])
    r0, r1, r2, r3, r4, r5, r6, r7 = xs[:8]
    i, m = 8, n - n % 8
    while i < m:
        r0 += xs[i]
        r1 += xs[i + 1]
        r2 += xs[i + 2]
        r3 += xs[i + 3]
        r4 += xs[i + 4]
        r5 += xs[i + 5]
        r6 += xs[i + 6]
        r7 += xs[i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for x in xs[m:]:
        total += x
    return total


def timed_out(arr: list[float], x: float, head: int) -> int:
    """``bisect_left(arr, x, head)`` for ``arr[head] < x`` (the head timed out): the
    first request from ``head`` that arrived at or after ``x`` (s), by a galloping search
    from the head (a saturated queue drops a few requests per batch)."""
    n = len(arr)
    j = head + 1
    if j >= n or arr[j] >= x:
        return j
    lo, step = j + 1, 2  # arr[lo - 1] < x
    hi = lo + step
    while hi < n and arr[hi] < x:
        lo = hi + 1
        step *= 2
        hi = lo + step
    return bisect_left(arr, x, lo, hi if hi < n else n)


# mean rank waits of slot_wait_s (in tokens x busy pods) by (busy pods, slots)
_RANK_WAITS: dict[tuple[int, int], int] = {}


@dataclass
class Server:
    """A ready pod as the gateway sees it: when it is free and its latency per batch size
    (the table's length - 1 is the pod's max batch)."""

    pod_id: int
    free_at: float
    table: list[float]  # mean GPU latency (s) by batch size; index 0 unused
    last_n: int = 0  # size of the batch that ends at free_at
    # slot contention (FunctionQueue.slot_wait): the pod's GPU, how many pods of its SM
    # size the GPU runs at once (floor(100 / SM %)), its token (quota x window, s)
    slot: tuple[int, int, float] | None = None


def slot_wait_s(busy: int, slots: int, token_s: float) -> float:
    """The mean wait (s) of a batch for an SM slot in its last token window when
    ``busy`` pods of one SM size (itself included) want the GPU and it runs ``slots`` at
    once: the scheduler serves them ``slots`` at a time, each for its token
    (``token_s``), in no fixed order, so a pod of rank r starts floor(r / slots) tokens
    into the window; the mean over the ranks 0 .. busy - 1."""
    if busy <= slots:
        return 0.0
    waits = sum(r // slots for r in range(busy))
    return token_s * waits / busy


@dataclass
class FunctionQueue:
    """Queue, batching and dispatch of one function (see module docstring)."""

    name: str
    arrivals: np.ndarray
    max_wait: float
    timeout: float | None
    overhead: float
    delay: float
    noise: Callable[[int], np.ndarray]
    # per-request post-service delay variability (cluster.overhead_cv): cv and the stream
    delay_cv: float = 0.0
    delay_rng: np.random.Generator | None = None
    servers: list[Server] = field(default_factory=list)
    draining: list[Server] = field(default_factory=list)
    # routing to removed pods (cluster.stale_endpoint_s): when each stale endpoint stops
    # being a target (s, ascending), and how long a request sent there takes to fail (s)
    stale: list[float] = field(default_factory=list)
    fail_s: float = 0.011
    head: int = 0
    # batch log: first request index, size, start (s), end (s), pod id
    b_first: list[int] = field(default_factory=list)
    b_n: list[int] = field(default_factory=list)
    b_start: list[float] = field(default_factory=list)
    b_end: list[float] = field(default_factory=list)
    b_pod: list[int] = field(default_factory=list)
    # drop log: first request index, count, time (s), reason
    d_first: list[int] = field(default_factory=list)
    d_n: list[int] = field(default_factory=list)
    d_time: list[float] = field(default_factory=list)
    d_reason: list[str] = field(default_factory=list)

    # batch ends known at their start (False) or reported later by the GPU (kernel mode:
    # ``_start`` launches the batch, ``_wake`` is called when an idle pod's next batch
    # starts in the future); hasim.cluster.kernel_plane.KernelQueue sets it
    event_driven = False
    # use the lone-pod loop and its idle fast path where they apply (tests compare both)
    fast_paths = True
    # arrivals known in advance (open loop); a closed-loop client's queue
    # (hasim.cluster.closed_loop) learns them as the client sends
    closed_loop = False

    def __post_init__(self) -> None:
        self._arr: list[float] = self.arrivals.tolist()
        # noise factors in draw order: a numpy buffer, a list of part of it (the loops read
        # it), where the list starts in the buffer and the next unused factor in the list
        self._noise_buf = np.empty(0)
        self._noise: list[float] = []
        self._noise_base = 0  # position of _noise[0] in _noise_buf
        self._noise_i = 0
        self.synced_to = -math.inf
        # event-driven mode: the latest batch start allowed in the running advance (s); a
        # batch's ``_start`` may lower it (a closed-loop client's event comes first)
        self._limit = math.inf
        self._rr = 0  # batches routed while stale endpoints exist (round-robin counter)
        self._slots_full = False  # some GPU holds more of its pods than it runs at once
        # leave times (leave_times): materialised batches / drops, the first request
        # that had not left by the last query, the longest sojourn seen (s)
        self._leave: np.ndarray | None = None
        self._rows: Runs | None = None  # batch_rows(), for the first _rows_nb batches
        self._rows_nb = 0
        self._mat_b = self._mat_d = 0
        self._gone = 0
        self._max_sojourn = -math.inf
        # the idle fast path of a lone pod (_idle_run): next chunk size, batches to skip
        self._run_chunk = IDLE_CHUNK_MIN
        self._run_cool = 0
        # per-request delays (s) or None (every request: ``delay``)
        self._delays: np.ndarray | None = None
        if not self.delay_cv >= 0.0:
            raise InputError(f"cluster.overhead_cv={self.delay_cv!r}", expected="a number >= 0")
        if self.delay_cv > 0.0 and self.delay > 0.0:
            if self.delay_rng is None:
                raise ValueError("delay_cv > 0 needs delay_rng")
            self._delays = self.delay * lognormal_noise(
                self.delay_rng, len(self._arr), self.delay_cv
            )

    def request_delay(self, idx: np.ndarray | slice) -> float | np.ndarray:
        """Post-service delay (s) of the requests ``idx``: ``delay`` (a scalar) unless
        ``delay_cv`` > 0, then each request's own draw."""
        return self.delay if self._delays is None else self._delays[idx]

    # ---- control-plane hooks -------------------------------------------------
    def add_server(
        self,
        pod_id: int,
        now: float,
        table: list[float],
        slot: tuple[int, int, float] | None = None,
    ) -> None:
        """A pod is ready at ``now`` (s) with latencies ``table``; ``slot``: (GPU id, pods
        of its SM size the GPU runs at once, token s) for the slot wait."""
        self.servers.append(Server(pod_id, now, table, slot=slot))
        self.servers.sort(key=lambda s: s.pod_id)
        self._update_slots()

    def _update_slots(self) -> None:
        """Whether a batch can wait for a slot: some GPU holds more of this function's
        ready pods than it runs at once."""
        per_gpu: dict[int, int] = {}
        self._slots_full = False
        for s in self.servers:
            if s.slot is not None:
                n = per_gpu[s.slot[0]] = per_gpu.get(s.slot[0], 0) + 1
                if n > s.slot[1]:
                    self._slots_full = True

    def remove_server(self, pod_id: int) -> float:
        """Stop giving batches to a pod; returns when its running batch ends (s)."""
        for i, s in enumerate(self.servers):
            if s.pod_id == pod_id:
                del self.servers[i]
                self.draining.append(s)
                self._update_slots()
                return s.free_at
        raise KeyError(pod_id)

    def done_event(self, pod_id: int) -> object | None:
        """An event that fires when a draining pod's running batch ends; None when the end
        is already known (batch mode: ``remove_server``'s value) or the pod is idle."""
        return None

    def finalize(self) -> None:
        """End of a run, after the last ``advance`` and ``expire`` (a hook for kernel
        mode, whose unfinished batches have no end yet)."""

    def set_table(
        self, pod_id: int, table: list[float], slot: tuple[int, int, float] | None = None
    ) -> None:
        """A quota change: the pod's latencies (and its slot's token) from now on."""
        for s in self.servers:
            if s.pod_id == pod_id:
                s.table = table
                if slot is not None:
                    s.slot = slot
                return
        raise KeyError(pod_id)

    def queue_length(self, now: float) -> int:
        """Arrived, not started and not timed out by ``now`` (call after advance(now))."""
        lo = self.head
        if self.timeout is not None:
            lo = max(lo, bisect_left(self._arr, now - self.timeout, lo))
        return max(0, bisect_right(self._arr, now, lo) - lo)

    def in_flight(self, now: float) -> int:
        """Requests started by ``now`` that have not finished (GPU batch plus the
        post-service delay) at ``now`` (call after advance(now))."""
        if self.delay <= 0.0:
            self.draining = [s for s in self.draining if s.free_at > now]
            return sum(s.last_n for s in self.servers + self.draining if s.free_at > now)
        leave = self.leave_times()
        lo = self._oldest_in_system(now, now)
        return int((leave[lo : self.head] > now).sum())

    def arrivals_between(self, t0: float, t1: float) -> int:
        """Arrivals with t0 < t <= t1."""
        return bisect_right(self._arr, t1) - bisect_right(self._arr, t0)

    def next_arrival_after(self, t: float) -> float:
        """The first arrival time > t (inf when none)."""
        i = bisect_right(self._arr, t)
        return self._arr[i] if i < len(self._arr) else math.inf

    def leave_times(self) -> np.ndarray:
        """Per-request leave times (s): batch end plus the request's post-service delay,
        or arrival + timeout for a dropped request; nan while queued (and, in kernel mode,
        inf while its batch runs). The one place leave times are computed: filled lazily
        from the batch and drop logs, updated when a batch's end becomes known later
        (``_batch_ended``). Also tracks the longest sojourn (leave - arrival) so far."""
        if self._leave is None:
            self._leave = np.full(len(self._arr), np.nan)
        leave = self._leave
        nb, m = len(self.b_first), self._mat_b
        if m < nb:
            if self.b_first[nb - 1] + self.b_n[nb - 1] - self.b_first[m] <= FEW:
                self._materialize_few(nb)
            else:
                rows = self.batch_rows() if m == 0 else expand_runs(self.b_first[m:], self.b_n[m:])
                idx = rows.idx
                t = rows.spread(self.b_end[m:]) + self.request_delay(idx)
                leave[idx] = t
                self._note_sojourn(t - self.arrivals[idx])
                self._mat_b = nb
        if self._mat_d < len(self.d_first):
            m = self._mat_d
            rows = expand_runs(self.d_first[m:], self.d_n[m:])
            idx = rows.idx
            t = self.arrivals[idx] + (self.timeout or 0.0)
            if FAILED_REASON in self.d_reason[m:]:  # sent to a removed pod: left when it failed
                failed = rows.spread(np.asarray(self.d_reason[m:]) == FAILED_REASON)
                t = np.where(failed, rows.spread(self.d_time[m:]), t)
            leave[idx] = t
            self._note_sojourn(t - self.arrivals[idx])
            self._mat_d = len(self.d_first)
        return leave

    def _materialize_few(self, nb: int) -> None:
        """``leave_times`` for new batches of a few requests: the same sums as the array
        path (batch end + the request's delay), without its fixed cost; with one delay
        for all, a batch's requests share one leave time and its first request (the
        earliest arrival) has the longest sojourn."""
        leave, arr = self._leave, self._arr
        assert leave is not None
        delays, delay, top = self._delays, self.delay, self._max_sojourn
        b_first, b_n, b_end = self.b_first, self.b_n, self.b_end
        for b in range(self._mat_b, nb):
            f = b_first[b]
            c = b_n[b]
            if delays is None:
                t = b_end[b] + delay
                if c == 1:
                    leave[f] = t
                else:
                    leave[f : f + c] = t
                s = t - arr[f]
                if top < s < math.inf:
                    top = s
                continue
            end = b_end[b]
            for i in range(f, f + c):
                t = end + delays[i]
                leave[i] = t
                s = t - arr[i]
                if top < s < math.inf:
                    top = s
        self._max_sojourn = top
        self._mat_b = nb

    def batch_rows(self) -> Runs:
        """The requests of every batch logged so far (``Runs`` over the batch log; kept
        while no batch is added)."""
        nb = len(self.b_first)
        if self._rows is None or self._rows_nb != nb:
            self._rows = expand_runs(self.b_first, self.b_n)
            self._rows_nb = nb
        return self._rows

    def _note_sojourn(self, sojourn: np.ndarray) -> None:
        if sojourn.size:
            top = float(sojourn.max())
            if not math.isfinite(top):  # (kernel mode: batches still running)
                top = float(np.max(sojourn, initial=-math.inf, where=np.isfinite(sojourn)))
            if top > self._max_sojourn:
                self._max_sojourn = top

    def _batch_ended(self, idx: int) -> None:
        """Batch ``idx``'s end (``b_end[idx]``) became known after its start (kernel mode)."""
        if self._leave is None or idx >= self._mat_b:
            return  # filled when the leave times are next materialised
        f, n = self.b_first[idx], self.b_n[idx]
        t = self.b_end[idx] + self.request_delay(slice(f, f + n))
        self._leave[f : f + n] = t
        self._note_sojourn(np.asarray(t - self.arrivals[f : f + n], dtype=float).reshape(-1))

    def _oldest_in_system(self, t0: float, now: float) -> int:
        """Index of the first request that may be in the system at some time >= ``t0``
        (s), at simulated time ``now``: every request before it left by ``t0``. Exact: a
        request that has left did so within the longest sojourn seen so far, and
        ``_gone`` (monotone in ``now``) is the first request that had not left by
        ``now``. Call after ``leave_times()``."""
        g = self._scan_gone(now)
        if self._max_sojourn == -math.inf:
            return g
        return min(g, bisect_left(self._arr, t0 - self._max_sojourn))

    def _scan_gone(self, now: float) -> int:
        """``_gone`` brought to simulated time ``now`` (s): the first request that had not
        left by then (the queue head at most)."""
        leave = self._leave
        assert leave is not None
        g, head = self._gone, self.head
        if head - g > SCAN:  # many started since: look at them at once
            left = leave[g:head] <= now
            k = int(left.argmin())
            g = head if left[k] else g + k
        else:
            while g < head and leave[g] <= now:
                g += 1
        self._gone = g
        return g

    def concurrency_seconds(self, t0: float, t1: float) -> float:
        """Request-seconds spent in the system (queued or in service) during (t0, t1]:
        the integral of concurrency, for time-weighted averages (call after advance(t1),
        with t1 the current simulated time or earlier)."""
        if t1 <= t0:
            return 0.0
        leave = self.leave_times()
        lo = self._oldest_in_system(t0, max(t1, self.synced_to))
        return self._seconds(leave, lo, bisect_right(self._arr, t1), t0, t1)

    def in_system(self, t0: float, now: float) -> tuple[float, bool]:
        """``advance(now)``, then the request-seconds in the system during (t0, now] (the
        number ``concurrency_seconds(t0, now)`` gives) and whether any request is in the
        system (queued or not yet left) at ``now``, the current simulated time (s). When
        none is and nothing arrives after ``now``, every later interval holds 0
        request-seconds."""
        self.advance(now)
        leave = self.leave_times()
        arr, hi = self._arr, self.head  # requests up to the head have arrived by now ...
        if hi < len(arr) and arr[hi] <= now:  # ... and so have those queued
            hi = bisect_right(arr, now, hi)
        elif hi and arr[hi - 1] > now:  # (a drop that ran ahead of now)
            hi = bisect_right(arr, now)
        g = self._scan_gone(self.synced_to)
        busy = g < hi  # the first request that had not left by now arrived by now
        if now <= t0:
            return 0.0, busy
        x = t0 - self._max_sojourn  # requests that arrived before x left by t0
        if g >= hi - FEW_SUM and (hi <= FEW_SUM or arr[hi - FEW_SUM - 1] < x):
            # _oldest_in_system is among the last few: found by a short scan
            lo = max(0, hi - FEW_SUM)
            while lo < g and arr[lo] < x:
                lo += 1
        else:
            lo = min(g, bisect_left(arr, x))
        return self._seconds(leave, lo, hi, t0, now), busy

    def _plain(self) -> bool:
        """Whether ``in_system_many`` may take this queue's fused path: batch mode, open
        loop, one post-service delay for all requests, the fast paths on."""
        return (
            type(self) is FunctionQueue
            and self.fast_paths
            and self._delays is None
            and not self.event_driven
            and not self.closed_loop
        )

    def _seconds(self, leave: np.ndarray, lo: int, hi: int, t0: float, t1: float) -> float:
        """The request-seconds during (t0, t1] (t0 < t1) of requests ``lo`` .. ``hi - 1``
        (those outside have none), summed in index order as numpy sums them."""
        if hi - lo <= FEW_SUM:
            # a few requests: numpy's sum of fewer than 8 numbers is this sequential sum
            total = 0.0
            for e, a in zip(leave[lo:hi].tolist(), self._arr[lo:hi], strict=True):
                x = (e if e <= t1 else t1) - (a if a > t0 else t0)  # nan (queued): t1
                if x > 0.0:
                    total += x
            return total
        if hi - lo <= PAIRWISE_FEW:
            xs = [
                x if x > 0.0 else 0.0
                for x in [
                    (e if e <= t1 else t1) - (a if a > t0 else t0)
                    for e, a in zip(leave[lo:hi].tolist(), self._arr[lo:hi], strict=True)
                ]
            ]
            return 0.0 + pairwise_sum(xs)
        # fmin: a queued request (nan) is in the system until t1
        x = np.fmin(leave[lo:hi], t1) - np.maximum(self.arrivals[lo:hi], t0)
        return float(np.maximum(x, 0.0, out=x).sum())

    # ---- the hot loop ----------------------------------------------------------
    def _refill_noise(self) -> None:
        """Make ``_noise`` list the next unused factors (up to a block; at least one),
        drawing a new block when the buffer is used up. Call with ``_noise_i`` at the
        first unused factor of the current list; it is reset to 0."""
        pos = self._noise_base + self._noise_i
        if pos >= self._noise_buf.size:
            self._noise_buf = np.asarray(self.noise(NOISE_BLOCK), dtype=float)
            pos = 0
        self._noise = self._noise_buf[pos : pos + NOISE_BLOCK].tolist()
        self._noise_base, self._noise_i = pos, 0

    def _peek_noise(self, n: int) -> np.ndarray:
        """The next ``n`` unused noise factors, drawing blocks as needed; consumes none
        (the caller adds what it uses to ``_noise_i``). The same sequence as one factor at
        a time: factors are drawn in blocks, in order, whoever reads them."""
        pos = self._noise_base + self._noise_i
        have = self._noise_buf.size - pos
        if have < n:
            parts = [self._noise_buf[pos:]]
            while have < n:
                block = np.asarray(self.noise(NOISE_BLOCK), dtype=float)
                parts.append(block)
                have += block.size
            self._noise_buf = np.concatenate(parts)
            self._noise, self._noise_base, self._noise_i = [], 0, 0  # listed when needed
            pos = 0
        return self._noise_buf[pos : pos + n]

    def advance(self, until: float, fill_leave: bool = False) -> None:
        """Start every batch whose start time is <= ``until`` (s). ``fill_leave``: the
        caller reads the leave times next (``in_system_many``): where they are up to date,
        the lone-pod loop fills them as it logs each batch (``_advance_one``)."""
        if until > self.synced_to:
            self.synced_to = until
        servers = self.servers
        if not servers:
            self.expire(until)  # no pod: requests still time out while they wait
            return
        if self.head >= len(self._arr):
            return
        if not self.event_driven and self._arr[self.head] > until:
            return  # the queue head has not arrived: no batch can start by then
        if (
            self.fast_paths
            and len(servers) == 1
            and not self.stale
            and not self._slots_full
            and not self.event_driven
            and (self.max_wait <= 0.0 or len(servers[0].table) <= 2)
        ):
            self._advance_one(until, fill_leave)
        elif self.fast_paths and not self.event_driven and not self.closed_loop:
            self._advance_batch(until)
        else:
            self._advance_many(until)

    def _advance_one(self, until: float, fill_leave: bool = False) -> None:
        """``advance`` for a function with one pod and no batch-fill wait: the same rule,
        with the pod's state in local variables, a batch of one found without a search,
        and stretches where the pod is idle at each arrival done in bulk
        (``_idle_run``). ``fill_leave`` with every earlier batch and drop materialised:
        each batch's leave times (and the longest sojourn) are filled as it is logged,
        the sums ``_materialize_few`` would make next, until a bulk stretch (left to
        ``leave_times``)."""
        leave = None
        if (
            fill_leave
            and self._delays is None
            and self._mat_b == len(self.b_first)
            and self._mat_d == len(self.d_first)
        ):
            leave = self._leave
        delay, top, inf = self.delay, self._max_sojourn, math.inf
        srv = self.servers[0]
        arr = self._arr
        n = len(arr)
        head = self.head
        free = srv.free_at
        table = srv.table
        max_batch = len(table) - 1
        multi = max_batch > 1
        overhead, timeout = self.overhead, self.timeout
        b_first, b_n, b_start = self.b_first.append, self.b_n.append, self.b_start.append
        b_end = self.b_end.append
        noise, ni = self._noise, self._noise_i
        n_noise = len(noise)
        nb = srv.last_n
        while head < n:
            if free > until:
                break
            a0 = arr[head]
            if free <= a0:  # the pod is idle when the head arrives: start at its arrival
                if a0 > until:
                    break
                if self._run_cool:
                    self._run_cool -= 1
                else:
                    self._flush_pod(srv.pod_id)
                    self._noise_i = ni
                    filled = len(self.b_first)
                    got, end = self._idle_run(srv, head, until, free)
                    noise, ni = self._noise, self._noise_i
                    n_noise = len(noise)
                    if got:
                        if leave is not None:  # (the stretch is materialised later)
                            self._max_sojourn, self._mat_b, leave = top, filled, None
                        head += got
                        free, nb = end, 1
                        continue
                start = a0
            else:
                start = free
                if timeout is not None and a0 < start - timeout:
                    j = timed_out(arr, start - timeout, head)
                    self._drop(head, j - head, arr, timeout)
                    head = j
                    continue
            # arr[head] <= start: the batch holds the head and whoever arrived by start
            k = head + 1
            if multi and k < n and arr[k] <= start:
                hi = head + max_batch
                k = bisect_right(arr, start, k + 1, hi if hi < n else n)
            nb = k - head
            if ni >= n_noise:
                self._noise_i = ni
                self._refill_noise()
                noise, ni = self._noise, 0
                n_noise = len(noise)
            free = start + table[nb] * noise[ni] + overhead
            ni += 1
            b_first(head)
            b_n(nb)
            b_start(start)
            b_end(free)
            if leave is not None:
                t = free + delay
                if nb == 1:
                    leave[head] = t
                else:
                    leave[head:k] = t
                x = t - a0
                if top < x < inf:
                    top = x
            head = k
        self._flush_pod(srv.pod_id)
        srv.free_at = free
        srv.last_n = nb
        self.head = head
        self._noise_i = ni
        if leave is not None:
            self._max_sojourn = top
            self._mat_b = len(self.b_first)

    def _flush_pod(self, pod_id: int) -> None:
        """Log ``pod_id`` as the pod of the batches logged without one (``_advance_one``
        leaves the pod column out of its loop: it is the same for all its batches)."""
        missing = len(self.b_first) - len(self.b_pod)
        if missing > 0:
            self.b_pod.extend([pod_id] * missing)

    def _idle_run(self, srv: Server, head: int, until: float, free: float) -> tuple[int, float]:
        """Bulk-start the stretch of requests from ``head`` that each arrive while the lone
        pod is idle (free at ``free`` <= the head's arrival) and that are alone in their
        batch: request i starts at its arrival a_i, ends at a_i + L(1) x noise_i +
        overhead, and the next one arrives after that end and after a_i. Only requests
        arriving by ``until``. Returns (requests started, the last one's end); (0, nan)
        when the stretch is too short to be worth it (the loop then takes one step).
        Bit-identical to the one-at-a-time loop: same arithmetic, same noise order."""
        n = len(self._arr)
        chunk = self._run_chunk
        hi = bisect_right(self._arr, until, head, min(n, head + chunk))
        c = hi - head
        if c < IDLE_RUN_MIN:
            self._run_cool = IDLE_COOL
            return 0, math.nan
        a = self.arrivals[head:hi]
        t1 = srv.table[1]
        end = a + t1 * self._peek_noise(c) + self.overhead
        late = end[:-1] > a[1:]  # request i + 1 arrives before request i has ended
        j = int(np.argmax(late)) + 1 if late.any() else c
        if len(srv.table) > 2:
            # request i would share its batch with request i + 1 arriving at the same time
            tie = a[1:] <= a[:-1]
            if tie.any():
                j = min(j, int(np.argmax(tie)))
            if hi < n and self._arr[hi] <= a[-1]:
                j = min(j, c - 1)
        if j < IDLE_RUN_MIN:
            self._run_cool = IDLE_COOL
            self._run_chunk = IDLE_CHUNK_MIN
            return 0, math.nan
        self._run_chunk = min(IDLE_CHUNK_MAX, chunk * 2) if j == hi - head else IDLE_CHUNK_MIN
        self.b_first.extend(range(head, head + j))
        self.b_n.extend([1] * j)
        self.b_start.extend(self._arr[head : head + j])
        self.b_end.extend(end[:j].tolist())
        self.b_pod.extend([srv.pod_id] * j)
        self._noise_i += j
        return j, float(end[j - 1])

    def _advance_many(self, until: float) -> None:
        """``advance`` in general: several pods, batch-fill waits, kernel mode. The pod
        free the longest (ties: the lowest id) comes from a heap of (free at, pod id)."""
        servers = self.servers
        arr = self._arr
        n = len(arr)
        head = self.head
        max_wait, overhead = self.max_wait, self.overhead
        timeout = self.timeout
        b_first, b_n, b_start = self.b_first.append, self.b_n.append, self.b_start.append
        b_end, b_pod = self.b_end.append, self.b_pod.append
        noise, ni = self._noise, self._noise_i
        event_driven = self.event_driven
        single = servers[0] if len(servers) == 1 else None
        heap: list[tuple[float, int, Server]] = []
        if single is None:
            heap = [(s.free_at, s.pod_id, s) for s in servers]
            heapq.heapify(heap)
        busy = self._busy_ends() if self._slots_full else None
        while head < n:
            srv = single if single is not None else heap[0][2]
            t_free = srv.free_at
            if t_free > until:
                break
            a0 = arr[head]
            start = t_free if t_free > a0 else a0
            max_batch = len(srv.table) - 1
            if max_wait > 0.0 and max_batch > 1:
                k = head + max_batch - 1
                fill = a0 + max_wait
                if k < n and arr[k] < fill:
                    fill = arr[k]
                if fill > start:
                    start = fill
            if timeout is not None and a0 < start - timeout:
                j = timed_out(arr, start - timeout, head)
                self._drop(head, j - head, arr, timeout)
                head = j
                continue
            if start > until:
                if event_driven:
                    self._noise_i = ni
                    self._wake(start)
                break
            hi = head + max_batch
            k = bisect_right(arr, start, head, hi if hi < n else n)
            nb = k - head
            if self.stale and self._routed_to_stale(start, len(servers)):
                self._fail(head, nb, start + self.fail_s)
                head = k
                continue
            if ni >= len(noise):
                self._noise_i = ni
                self._refill_noise()
                noise, ni = self._noise, 0
            gpu_s = srv.table[nb] * noise[ni]
            ni += 1
            if busy is not None and srv.slot is not None:
                gpu_s += self._slot_wait(srv, start, busy[srv.slot[0]])
            old = t_free
            if event_driven:  # the batch's end comes from its GPU's scheduler later
                self.head = k
                self._noise_i = ni
                self._start(srv, head, nb, start, gpu_s)
                noise, ni = self._noise, self._noise_i
                head = k
                if self._limit < until:
                    until = self._limit
            else:
                end = start + gpu_s + overhead
                b_first(head)
                b_n(nb)
                b_start(start)
                b_end(end)
                b_pod(srv.pod_id)
                srv.free_at = end
                srv.last_n = nb
                head = k
            if single is None:
                heapq.heapreplace(heap, (srv.free_at, srv.pod_id, srv))
            if busy is not None and srv.slot is not None:
                ends = busy[srv.slot[0]]
                ends.remove(old)
                insort(ends, srv.free_at)
        self.head = head
        self._noise_i = ni

    def _advance_batch(self, until: float) -> None:
        """``_advance_many`` in batch mode (not event-driven, open loop): the same rule
        (the pod free the longest takes the head; ties: the lowest id) and arithmetic,
        with the loop's state in local variables and each pod's latencies, max batch and
        slot in its heap entry, a batch of one found without a search, timed-out runs
        found by a galloping search from the head, the stale-endpoint routing and the
        slot wait (``_slot_wait``) inlined and the mean rank waits of ``slot_wait_s``
        cached by (busy pods, slots); the pods' free times and last batch sizes are
        written back from the heap at the end."""
        servers = self.servers
        arr = self._arr
        n = len(arr)
        head = self.head
        max_wait, overhead = self.max_wait, self.overhead
        timeout = self.timeout
        b_first, b_n, b_start = self.b_first.append, self.b_n.append, self.b_start.append
        b_end, b_pod = self.b_end.append, self.b_pod.append
        noise, ni = self._noise, self._noise_i
        n_noise = len(noise)
        # (free at, pod id, table, max batch, slot, server, size of its last batch)
        heap = [
            (s.free_at, s.pod_id, s.table, len(s.table) - 1, s.slot, s, s.last_n) for s in servers
        ]
        heapq.heapify(heap)
        replace = heapq.heapreplace
        busy = self._busy_ends() if self._slots_full else None
        waits = _RANK_WAITS
        stale = self.stale
        ready = len(servers)
        fail_s = self.fail_s
        rr = self._rr
        while head < n:
            t_free, pod_id, table, max_batch, slot, srv, _ = heap[0]
            if t_free > until:
                break
            a0 = arr[head]
            start = t_free if t_free > a0 else a0
            if max_wait > 0.0 and max_batch > 1:
                k = head + max_batch - 1
                fill = a0 + max_wait
                if k < n and arr[k] < fill:
                    fill = arr[k]
                if fill > start:
                    start = fill
            if timeout is not None and a0 < start - timeout:
                j = timed_out(arr, start - timeout, head)
                self._drop(head, j - head, arr, timeout)
                head = j
                continue
            if start > until:
                break
            # arr[head] <= start: the batch holds the head and whoever arrived by start
            k = head + 1
            if max_batch > 1 and k < n and arr[k] <= start:
                hi = head + max_batch
                k = bisect_right(arr, start, k + 1, hi if hi < n else n)
            nb = k - head
            if stale:
                while stale and stale[0] <= start:
                    stale.pop(0)
                if stale:
                    rr += 1
                    if rr % (ready + len(stale)) < len(stale):
                        self._fail(head, nb, start + fail_s)
                        head = k
                        continue
            if ni >= n_noise:
                self._noise_i = ni
                self._refill_noise()
                noise, ni = self._noise, 0
                n_noise = len(noise)
            gpu_s = table[nb] * noise[ni]
            ni += 1
            if busy is not None and slot is not None:
                ends = busy[slot[0]]
                nbusy = 1 + len(ends) - bisect_right(ends, start)
                slots = slot[1]
                if nbusy > slots:
                    w = waits.get((nbusy, slots))
                    if w is None:
                        w = waits[(nbusy, slots)] = sum(r // slots for r in range(nbusy))
                    gpu_s += slot[2] * w / nbusy
                end = start + gpu_s + overhead
                ends.remove(t_free)
                insort(ends, end)
            else:
                end = start + gpu_s + overhead
            b_first(head)
            b_n(nb)
            b_start(start)
            b_end(end)
            b_pod(pod_id)
            head = k
            replace(heap, (end, pod_id, table, max_batch, slot, srv, nb))
        for t, _, _, _, _, srv, last in heap:
            srv.free_at = t
            srv.last_n = last
        self.head = head
        self._noise_i = ni
        self._rr = rr

    def _busy_ends(self) -> dict[int, list[float]]:
        """Per GPU, the sorted free times (s) of this function's pods on it (for the slot
        wait: those free later than a batch's start are busy then)."""
        out: dict[int, list[float]] = {}
        for s in self.servers:
            if s.slot is not None:
                out.setdefault(s.slot[0], []).append(s.free_at)
        for ends in out.values():
            ends.sort()
        return out

    def _start(self, srv: Server, first: int, nb: int, start: float, gpu_s: float) -> None:
        """Event-driven mode: start a batch of ``nb`` requests from ``first`` at ``start``
        (s) needing ``gpu_s`` s of GPU time at quota 1 (mean x noise)."""
        raise NotImplementedError

    def _wake(self, t: float) -> None:
        """Event-driven mode: call ``advance(t)`` at simulated time ``t`` (s)."""
        raise NotImplementedError

    def _slot_wait(self, srv: Server, start: float, ends: list[float]) -> float:
        """Slot contention in batch mode (``slot_wait_s``): the pods of this function on
        ``srv``'s GPU busy at ``start`` (s; ``ends``: their sorted free times), ``srv``
        included, against the pods of its SM size the GPU runs at once. Pods of other
        functions on the GPU are not counted (kernel mode schedules them all)."""
        _, slots, token = srv.slot  # type: ignore[misc]
        busy = 1 + len(ends) - bisect_right(ends, start)
        return slot_wait_s(busy, slots, token)

    def add_stale(self, until: float) -> None:
        """A removed pod stays a routing target until ``until`` (s)."""
        self.stale.append(until)
        self.stale.sort()

    def _routed_to_stale(self, start: float, ready: int) -> bool:
        """Round-robin routing of the batch dispatched at ``start`` (s) over the ``ready``
        pods and the stale endpoints still targeted then: True when it goes to a stale
        one."""
        stale = self.stale
        while stale and stale[0] <= start:
            stale.pop(0)
        if not stale:
            return False
        self._rr += 1
        return self._rr % (ready + len(stale)) < len(stale)

    def _fail(self, first: int, count: int, t: float) -> None:
        """Requests ``first`` .. ``first + count - 1`` were sent to a removed pod and fail
        at ``t`` (s)."""
        self.d_first.append(first)
        self.d_n.append(count)
        self.d_time.append(t)
        self.d_reason.append(FAILED_REASON)

    def _drop(self, first: int, count: int, arr: list[float], timeout: float) -> None:
        # dropped requests leave at arrival + timeout; one record per run keeps it compact
        self.d_first.append(first)
        self.d_n.append(count)
        self.d_time.append(arr[first] + timeout)
        self.d_reason.append("timeout")

    def expire(self, now: float) -> None:
        """Drop queued requests whose timeout passed by ``now`` (used at the end of a run)."""
        if self.timeout is None or self.head >= len(self._arr):
            return
        j = bisect_left(self._arr, now - self.timeout, self.head)
        if j > self.head:
            self._drop(self.head, j - self.head, self._arr, self.timeout)
            self.head = j


def in_system_many(
    queues: list[FunctionQueue], starts: list[float], now: float
) -> tuple[list[float], list[bool]]:
    """``q.in_system(t0, now)`` for each queue and its ``t0`` (s) at the current simulated
    time ``now`` (s), as two lists (request-seconds, busy). One call for all the queues
    a decision samples: for plain queues (``FunctionQueue._plain``) the steps of
    ``in_system`` (leave times of a few new batches, the first request not yet left, the
    oldest request in the system, a sum over a few requests) run inline, with the same
    arithmetic in the same order; the rest go through ``in_system``. Bit for bit equal
    (tests/test_gateway.py)."""
    seconds: list[float] = []
    busies: list[bool] = []
    inf = math.inf
    for q, t0 in zip(queues, starts, strict=True):
        if not (  # (_plain, inline)
            q._delays is None
            and type(q) is FunctionQueue
            and q.fast_paths
            and not q.event_driven
            and not q.closed_loop
        ):
            got, busy = q.in_system(t0, now)
            seconds.append(got)
            busies.append(busy)
            continue
        arr = q._arr
        n = len(arr)
        # advance(now)
        if q.servers:
            if q.head < n and arr[q.head] <= now:
                q.advance(now, fill_leave=True)
            elif now > q.synced_to:
                q.synced_to = now
        else:
            q.advance(now)  # (requests time out while they wait)
        # leave_times(): new batches of a few requests inline (_materialize_few)
        leave = q._leave
        b_first = q.b_first
        nb, m = len(b_first), q._mat_b
        if leave is None or q._mat_d < len(q.d_first):
            leave = q.leave_times()
        elif m < nb:
            b_n = q.b_n
            if b_first[nb - 1] + b_n[nb - 1] - b_first[m] <= FEW:
                b_end, delay, top = q.b_end, q.delay, q._max_sojourn
                for b in range(m, nb):
                    f = b_first[b]
                    c = b_n[b]
                    t = b_end[b] + delay
                    if c == 1:
                        leave[f] = t
                    else:
                        leave[f : f + c] = t
                    s = t - arr[f]
                    if top < s < inf:
                        top = s
                q._max_sojourn = top
                q._mat_b = nb
            else:
                q.leave_times()
        # the requests that arrived by now
        hi = q.head
        if hi < n and arr[hi] <= now:
            hi = bisect_right(arr, now, hi)
        elif hi and arr[hi - 1] > now:
            hi = bisect_right(arr, now)
        # _scan_gone(synced_to)
        g, head = q._gone, q.head
        if head - g > SCAN:
            g = q._scan_gone(q.synced_to)
        else:
            until = q.synced_to
            while g < head and leave[g] <= until:
                g += 1
            q._gone = g
        busy = g < hi
        busies.append(busy)
        if now <= t0:
            seconds.append(0.0)
            continue
        x = t0 - q._max_sojourn
        if g >= hi - FEW_SUM and (hi <= FEW_SUM or arr[hi - FEW_SUM - 1] < x):
            lo = hi - FEW_SUM if hi > FEW_SUM else 0
            while lo < g and arr[lo] < x:
                lo += 1
        else:
            lo = bisect_left(arr, x)
            if g < lo:
                lo = g
        if hi - lo > FEW_SUM:
            seconds.append(q._seconds(leave, lo, hi, t0, now))
            continue
        total = 0.0  # _seconds for a few requests
        for e, a in zip(leave[lo:hi].tolist(), arr[lo:hi], strict=True):
            x = (e if e <= now else now) - (a if a > t0 else t0)
            if x > 0.0:
                total += x
        seconds.append(total)
    return seconds, busies
