"""The data plane of a function whose requests come from a closed-loop client
(``workload.client=threadpool``: ``hasim.workload.client.ThreadPoolRun``).

An open-loop function knows its arrivals in advance, so its queue
(``hasim.cluster.gateway.FunctionQueue``) may start batches retroactively, in bulk, up to
the instant the control plane asks for. Here a response frees the client's worker, which
may send the next request at once: sends depend on completions, so a batch must never
start before every send that could join it is known. The queue therefore runs
event-driven, in exact time order, and only up to the instant asked for:

* the function's request i is the client's i-th send; its arrival is +inf until the
  client sends it (the arrays stay sorted: sends are in order), so everything that reads
  arrivals (queue length, in flight, request-seconds, the view's arrival index) sees the
  sends made so far. Requests never sent keep +inf: the request table reports them
  ``dropped`` with reason ``unsent``;
* ``advance(until)`` alternates between starting the batches that start before the next
  event of the client or the next queue timeout, and processing those events: at one
  instant, timeouts (their requests leave), then the client's events (freed workers,
  due submissions, stage ends: new sends), then the batches that start then (which see
  those sends). A started batch whose requests leave before the next batch start stops
  the batch loop there (``FunctionQueue._limit``), so the client sees each leave before
  any later batch starts;
* batch mode (``ClientQueue``): a batch's end is known at its start, so its requests'
  leave times (end plus each request's post-service delay) go to the client at once, and
  nothing is scheduled in SimPy: the control plane calls ``advance(now)`` before it
  changes the function's pods, as for open-loop queues, and the view before it reads
  arrivals; the batching rule, noise draws and logs are those of the array path;
* kernel mode (``KernelClientQueue``): leave times reach the client when the GPU's
  scheduler ends the batch, and a SimPy wake at the client's next event (or the next
  timeout) keeps sends at their own instants.

The client's workers are held from a send to the request's leave: its completion plus
post-service delay, or, when the queue drops it, the drop instant (``drop_instant``:
arrival + timeout, after that instant's batches and client events).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from hasim.cluster.gateway import FunctionQueue, Server
from hasim.cluster.kernel_plane import KernelQueue
from hasim.workload.client import ThreadPoolRun


def _before(t: float) -> float:
    """The largest float below ``t``."""
    return math.nextafter(t, -math.inf)


def drop_instant(arrival: float, timeout: float) -> float:
    """When the queue drops a request that arrived at ``arrival`` (s) and is still
    queued: the first time T (s) with arrival < T - timeout, the gateway's rule in
    floating point (at most an ulp or two after arrival + timeout): after every batch
    that could still serve it at arrival + timeout and after the client's own events
    then. The request's leave time stays arrival + timeout; its client worker is free
    at T."""
    t = arrival + timeout
    while not arrival < t - timeout:
        t = math.nextafter(t, math.inf)
    while arrival < _before(t) - timeout:
        t = _before(t)
    return t


class ClosedLoop:
    """What both closed-loop queues add to their data plane (mixed into a
    ``FunctionQueue``; module docstring)."""

    closed_loop = True
    client: ThreadPoolRun

    def _init_client(self: ClosedLoop | FunctionQueue) -> None:  # type: ignore[misc]
        self._sent = 0  # sends copied into the arrival arrays
        self._drop_at = (-1, math.inf)  # (head, its drop time) cache

    @property
    def sent(self) -> int:
        """Requests the client has sent so far."""
        return self._sent

    def advance(self, until: float) -> None:  # type: ignore[override]
        """Process the function's data plane up to ``until`` (s) in time order (module
        docstring); call with ``until`` <= the simulated time."""
        client = self.client
        base = FunctionQueue.advance
        while True:
            t = min(client.next_time(), self._drop_time())
            self._limit = until if until < t else _before(t)
            base(self, self._limit)
            if min(client.next_time(), self._drop_time()) < t:
                continue  # a batch started meanwhile: one of its requests leaves earlier
            if t > until:
                break
            if self._drop_time() <= t:
                self.expire(t)  # leaves reach the client through _drop
            client.advance(t)
            self._take_sends()
        self._limit = math.inf
        if until > self.synced_to:
            self.synced_to = until
        if t < math.inf:
            self._client_wake(t)

    def _client_wake(self, t: float) -> None:
        """Kernel mode: make sure ``advance`` runs at ``t`` (s)."""

    def _take_sends(self) -> None:
        sends = self.client.sends
        n = len(sends)
        if n > self._sent:
            new = sends[self._sent : n]
            self._arr[self._sent : n] = new
            self.arrivals[self._sent : n] = new
            self._sent = n

    def _drop_time(self) -> float:
        """When the queue head times out: the first time T (s) with arrival < T -
        timeout (the gateway's rule, in floating point); inf without one."""
        if self.timeout is None or self.head >= self._sent:
            return math.inf
        head, t = self._drop_at
        if head == self.head:
            return t
        t = drop_instant(self._arr[self.head], self.timeout)
        self._drop_at = (self.head, t)
        return t

    def _leaves(self, first: int, count: int, end: float) -> None:
        """Requests ``first`` .. ``first + count - 1`` left their batch at ``end`` (s):
        each is back at the client after its post-service delay."""
        if not math.isfinite(end):
            return
        d = self.request_delay(slice(first, first + count))
        leave = self.client.leave
        if isinstance(d, np.ndarray):
            for x in (end + d).tolist():
                leave(x)
        else:
            t = end + d
            for _ in range(count):
                leave(t)

    def _batch_ended(self, idx: int) -> None:
        """Kernel mode: a batch's end became known; its requests' leaves go to the
        client, which is woken for them (also when the pod is draining)."""
        FunctionQueue._batch_ended(self, idx)  # type: ignore[arg-type]
        end = self.b_end[idx]
        if math.isfinite(end):
            self._leaves(self.b_first[idx], self.b_n[idx], end)
            self._client_wake(self.client.next_time())

    def _drop(self, first: int, count: int, arr: list[float], timeout: float) -> None:
        FunctionQueue._drop(self, first, count, arr, timeout)  # type: ignore[arg-type]
        leave = self.client.leave
        for j in range(first, first + count):
            leave(drop_instant(arr[j], timeout))

    def _fail(self, first: int, count: int, t: float) -> None:
        """Requests sent to a removed pod fail at ``t`` (s): their workers are free then."""
        FunctionQueue._fail(self, first, count, t)  # type: ignore[arg-type]
        for _ in range(count):
            self.client.leave(t)
        if self.client.next_time() <= self._limit:
            self._limit = _before(self.client.next_time())

    def next_arrival_after(self, t: float) -> float:
        """The first send after ``t`` (s; ``t`` <= the simulated time) if no pod serves
        the function meanwhile (the engine asks for functions without pods): a look-ahead
        on a copy of the client, where queued requests leave only by timeout."""
        self.advance(t)
        i = bisect_right(self._arr, t)
        if i < self._sent:
            return self._arr[i]
        ahead = self.client.fork()
        if self.timeout is not None:
            for j in range(self.head, self._sent):
                ahead.leave(drop_instant(self._arr[j], self.timeout))
        n0 = len(ahead.sends)
        while not ahead.done:
            te = ahead.next_time()
            if te == math.inf:
                break
            ahead.advance(te)
            if len(ahead.sends) > n0:
                return ahead.sends[n0]
        return math.inf


@dataclass
class ClientQueue(ClosedLoop, FunctionQueue):
    """Batch mode: the array data plane's batching, run event by event (module
    docstring). ``arrivals``: an array of +inf, one per request of the client."""

    client: ThreadPoolRun = field(kw_only=True)
    event_driven = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._init_client()

    def _start(self, srv: Server, first: int, nb: int, start: float, gpu_s: float) -> None:
        end = start + gpu_s + self.overhead  # as the array path: known at the start
        self.b_first.append(first)
        self.b_n.append(nb)
        self.b_start.append(start)
        self.b_end.append(end)
        self.b_pod.append(srv.pod_id)
        srv.free_at = end
        srv.last_n = nb
        self._leaves(first, nb, end)
        t = self.client.next_time()
        if t <= self._limit:
            self._limit = _before(t)

    def _wake(self, t: float) -> None:
        """Batch mode needs no wake: the next ``advance`` starts the batch."""


@dataclass
class KernelClientQueue(ClosedLoop, KernelQueue):
    """Kernel mode: batches on the token scheduler, sends at their own instants."""

    client: ThreadPoolRun = field(kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._init_client()

    def _client_wake(self, t: float) -> None:
        self._wake(t)
