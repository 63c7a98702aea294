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
start but reported later by the GPU's token scheduler (hasim.cluster.kernel_plane).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hasim.errors import InputError
from hasim.perf.common import lognormal_noise

NOISE_BLOCK = 8192


def expand_runs(first: list[int], counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Indices covered by runs (first, count) and, for each, the index of its run."""
    f = np.asarray(first, dtype=np.int64)
    c = np.asarray(counts, dtype=np.int64)
    run = np.repeat(np.arange(c.size), c)
    offset = np.arange(run.size) - np.repeat(np.cumsum(c) - c, c)
    return f[run] + offset, run


@dataclass
class Server:
    """A ready pod as the gateway sees it: when it is free and its latency per batch size
    (the table's length - 1 is the pod's max batch)."""

    pod_id: int
    free_at: float
    table: list[float]  # mean GPU latency (s) by batch size; index 0 unused
    last_n: int = 0  # size of the batch that ends at free_at


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

    def __post_init__(self) -> None:
        self._arr: list[float] = self.arrivals.tolist()
        self._noise: list[float] = []
        self._noise_i = 0
        self.synced_to = -math.inf
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
    def add_server(self, pod_id: int, now: float, table: list[float]) -> None:
        self.servers.append(Server(pod_id, now, table))
        self.servers.sort(key=lambda s: s.pod_id)

    def remove_server(self, pod_id: int) -> float:
        """Stop giving batches to a pod; returns when its running batch ends (s)."""
        for i, s in enumerate(self.servers):
            if s.pod_id == pod_id:
                del self.servers[i]
                self.draining.append(s)
                return s.free_at
        raise KeyError(pod_id)

    def done_event(self, pod_id: int) -> object | None:
        """An event that fires when a draining pod's running batch ends; None when the end
        is already known (batch mode: ``remove_server``'s value) or the pod is idle."""
        return None

    def finalize(self) -> None:
        """End of a run, after the last ``advance`` and ``expire`` (a hook for kernel
        mode, whose unfinished batches have no end yet)."""

    def set_table(self, pod_id: int, table: list[float]) -> None:
        for s in self.servers:
            if s.pod_id == pod_id:
                s.table = table
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
        leave = self._materialize()
        horizon = (self.timeout if self.timeout is not None else 600.0) + 120.0
        lo = bisect_left(self._arr, now - horizon)
        return int((leave[lo : self.head] > now).sum())

    def arrivals_between(self, t0: float, t1: float) -> int:
        """Arrivals with t0 < t <= t1."""
        return bisect_right(self._arr, t1) - bisect_right(self._arr, t0)

    def next_arrival_after(self, t: float) -> float:
        """The first arrival time > t (inf when none)."""
        i = bisect_right(self._arr, t)
        return self._arr[i] if i < len(self._arr) else math.inf

    def _materialize(self) -> np.ndarray:
        """Per-request leave times (batch end or drop time; nan while queued), filled
        lazily from the batch and drop logs."""
        if not hasattr(self, "_leave"):
            self._leave = np.full(len(self._arr), np.nan)
            self._mat_b = self._mat_d = 0
        if self._mat_b < len(self.b_first):
            idx, run = expand_runs(self.b_first[self._mat_b :], self.b_n[self._mat_b :])
            self._leave[idx] = np.asarray(self.b_end[self._mat_b :])[run] + self.request_delay(idx)
            self._mat_b = len(self.b_first)
        if self._mat_d < len(self.d_first):
            idx, _ = expand_runs(self.d_first[self._mat_d :], self.d_n[self._mat_d :])
            self._leave[idx] = self.arrivals[idx] + (self.timeout or 0.0)
            self._mat_d = len(self.d_first)
        return self._leave

    def concurrency_seconds(self, t0: float, t1: float) -> float:
        """Request-seconds spent in the system (queued or in service) during (t0, t1]:
        the integral of concurrency, for time-weighted averages (call after advance(t1))."""
        if t1 <= t0:
            return 0.0
        leave = self._materialize()
        horizon = (self.timeout if self.timeout is not None else 600.0) + 120.0
        lo = bisect_left(self._arr, t0 - horizon)
        hi = bisect_right(self._arr, t1)
        a = self.arrivals[lo:hi]
        e = np.nan_to_num(leave[lo:hi], nan=np.inf)
        return float(np.clip(np.minimum(e, t1) - np.maximum(a, t0), 0.0, None).sum())

    # ---- the hot loop ----------------------------------------------------------
    def _draw_noise(self) -> None:
        self._noise = self.noise(NOISE_BLOCK).tolist()
        self._noise_i = 0

    def advance(self, until: float) -> None:
        """Start every batch whose start time is <= ``until`` (s)."""
        self.synced_to = max(self.synced_to, until)
        servers = self.servers
        if not servers:
            self.expire(until)  # no pod: requests still time out while they wait
            return
        arr = self._arr
        n = len(arr)
        head = self.head
        if head >= n:
            return
        max_wait, overhead = self.max_wait, self.overhead
        timeout = self.timeout
        b_first, b_n, b_start, b_end, b_pod = (
            self.b_first,
            self.b_n,
            self.b_start,
            self.b_end,
            self.b_pod,
        )
        noise, ni = self._noise, self._noise_i
        event_driven = self.event_driven
        single = servers[0] if len(servers) == 1 else None
        while head < n:
            if single is not None:
                srv = single
            else:
                srv = servers[0]
                for s in servers:
                    if s.free_at < srv.free_at:
                        srv = s
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
                j = bisect_left(arr, start - timeout, head)
                self._drop(head, j - head, arr, timeout)
                head = j
                continue
            if start > until:
                if event_driven:
                    self._wake(start)
                break
            hi = head + max_batch
            k = bisect_right(arr, start, head, hi if hi < n else n)
            nb = k - head
            if ni >= len(noise):
                self._draw_noise()
                noise, ni = self._noise, 0
            gpu_s = srv.table[nb] * noise[ni]
            ni += 1
            if event_driven:  # the batch's end comes from its GPU's scheduler later
                self.head = k
                self._start(srv, head, nb, start, gpu_s)
                head = k
                continue
            end = start + gpu_s + overhead
            b_first.append(head)
            b_n.append(nb)
            b_start.append(start)
            b_end.append(end)
            b_pod.append(srv.pod_id)
            srv.free_at = end
            srv.last_n = nb
            head = k
        self.head = head
        self._noise_i = ni

    def _start(self, srv: Server, first: int, nb: int, start: float, gpu_s: float) -> None:
        """Event-driven mode: start a batch of ``nb`` requests from ``first`` at ``start``
        (s) needing ``gpu_s`` s of GPU time at quota 1 (mean x noise)."""
        raise NotImplementedError

    def _wake(self, t: float) -> None:
        """Event-driven mode: call ``advance(t)`` at simulated time ``t`` (s)."""
        raise NotImplementedError

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
