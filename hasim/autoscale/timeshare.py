"""Plain time sharing: pods without SM partitions sharing GPUs by time slices.

The baseline of GPU sharing without spatial partitioning (the token scheduler of
SYSTEMS.md section 1 with every pod at SM 100 %): each pod may use all of a GPU's SMs
while it holds the token, and holds it for a fixed slice ``quota`` of every window.
Pods of any function stack in one row of a GPU until the slices sum to 1 (the
cluster's default first-fit placement: a used GPU with room first, then a new one).
Only the number of pods changes (horizontal scaling); nothing is resized.

Capacity rule, every ``period`` s, per function (``target_pods``):

    capacity per pod  c = batch / (L(model, batch, 100 %, quota) + overhead)   (req/s)
    measured rate     r = arrivals in the last ``window`` s / window (req/s; early in the
                      run, over the time so far, at least ``period`` s);
                      r_up = max(r, arrivals in the last ``period`` s / period)
    needed            k = ceil(r_up / (target_utilization x c))
    scale out         to k (at once) when k > n, the pods ready or starting (fast up);
    scale in          by up to ``max_scale_in_step`` pods, to the smallest n' with
                      r < scale_in_utilization x c x n', when ``scale_in_cooldown`` s
                      passed since the function's last scaling and n' < n (slow down);
    bounds            [min_pods, max_pods] once the function has had traffic; a function
                      at zero gets one pod at its first arrival (wake_on_arrival).

``c`` is the throughput of a pod whose batches are full: what one slice of the GPU
can serve. ``overhead`` (s per batch) is the time a pod is held besides its GPU time:
cluster.overhead when ``cluster.overhead_holds_pod``, else 0 (``build``).
With ``idle_timeout`` set, a function without arrivals or queued requests for that
long loses all its pods.
New pods are asked for only while the GPUs' rows have room for them (``free_slots``),
so a full cluster does not fill the action log with failures; the next decision
tries again.
Pods to remove: not-yet-ready ones first (newest first), then ready ones on the GPUs
holding the fewest pods (to free whole GPUs), newest first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hasim.autoscale.base import Action, Call, ClusterView, CreatePod, DeletePod, GpuInfo
from hasim.autoscale.kit import (
    capacity_rps,
    deletion_order,
    last_true,
    live,
    pods_per_gpu,
    require,
)
from hasim.cluster.pod import validate_pod_request
from hasim.config.schema import ClusterConfig
from hasim.errors import InputError

EPS = 1e-9


@dataclass
class TimeshareConfig:
    """Time-sharing baseline settings (see the module docstring for the rule)."""

    kind: str = "timeshare"
    quota: float = 0.25  # time slice per pod, fraction of the token window (4 pods per GPU)
    batch: int | None = None  # max batch per pod (requests); null = cluster.max_batch
    period: float = 5.0  # s between decisions
    window: float = 30.0  # s over which the arrival rate is measured
    target_utilization: float = 0.7  # scale out when rate > this x capacity of the pods
    scale_in_utilization: float = 0.4  # scale in while rate < this x capacity of fewer pods
    min_pods: int = 1  # pods per function once it has had traffic
    max_pods: int = 0  # pods per function; 0 = unbounded
    scale_in_cooldown: float = 30.0  # s after a function's last scaling before a scale in
    max_scale_in_step: int = 1  # pods removed per decision and function
    idle_timeout: float | None = None  # s without requests before all pods go; null = never

    def validate(self) -> None:
        require(
            self,
            [
                (0 < self.quota <= 1, "quota", "a fraction in (0, 1]"),
                (self.period > 0, "period", "seconds > 0"),
                (self.window > 0, "window", "seconds > 0"),
                (0 < self.target_utilization <= 1, "target_utilization", "a fraction in (0, 1]"),
                (
                    0 <= self.scale_in_utilization < self.target_utilization,
                    "scale_in_utilization",
                    "a fraction in [0, target_utilization)",
                ),
                (self.min_pods >= 1, "min_pods", "an integer >= 1"),
                (
                    self.max_pods == 0 or self.max_pods >= self.min_pods,
                    "max_pods",
                    "0 (unbounded) or >= min_pods",
                ),
                (self.scale_in_cooldown >= 0, "scale_in_cooldown", "seconds >= 0"),
                (self.max_scale_in_step >= 1, "max_scale_in_step", "an integer >= 1"),
                (
                    self.idle_timeout is None or self.idle_timeout > 0,
                    "idle_timeout",
                    "seconds > 0 or null",
                ),
            ],
        )


def target_pods(
    n: int,
    rate: float,
    capacity: float,
    cfg: TimeshareConfig,
    cooled: bool,
    rate_up: float | None = None,
) -> int:
    """Pods a function should have, given ``n`` pods now (ready or starting), the
    arrival rate over the window (req/s), the rate for scaling out (req/s; default
    ``rate``), one pod's capacity (req/s) and whether the scale-in cooldown has
    passed. Bounds [min_pods, max_pods] included."""
    up = rate if rate_up is None else max(rate, rate_up)
    need = math.ceil(up / (cfg.target_utilization * capacity) - EPS) if up > 0 else 0
    out = n
    if need > n:
        out = need
    elif cooled and n > cfg.min_pods:
        smallest = max(cfg.min_pods, n - cfg.max_scale_in_step)
        k = n
        while k - 1 >= smallest and rate < cfg.scale_in_utilization * capacity * (k - 1) - EPS:
            k -= 1
        out = k
    if cfg.max_pods > 0:
        out = min(out, cfg.max_pods)
    return max(out, cfg.min_pods)


def free_slots(gpus: list[GpuInfo], quota: float) -> int:
    """How many more SM-100 % pods with time slice ``quota`` the GPUs' rows can take
    (memory aside): the free quota of rows already at SM 100 %, whole empty GPUs."""
    slots = 0
    for g in gpus:
        if g.rects:
            continue
        used = [(sm, free) for sm, free in g.rows if sm > 0]
        if not used:
            slots += slots_per_gpu(quota)
        else:
            slots += sum(int(math.floor(free / quota + EPS)) for sm, free in used if sm >= 100)
    return slots


def slots_per_gpu(quota: float) -> int:
    """Pods with time slice ``quota`` an empty GPU takes."""
    return int(math.floor(1.0 / quota + EPS))


class TimeshareAutoscaler:
    """Horizontal scaling of SM-100 % pods with fixed time slices (module docstring).

    Each call first finds, over all functions at once, those whose pod count may change
    (``_candidates``: an exact superset from bands of arrival counts); only those are
    decided one by one, by the rule above."""

    wake_on_arrival = True

    def __init__(self, cfg: TimeshareConfig, default_batch: int, overhead: float) -> None:
        cfg.validate()
        self.cfg = cfg
        self.batch = default_batch if cfg.batch is None else cfg.batch
        validate_pod_request(100.0, cfg.quota, self.batch)
        if overhead < 0:
            raise InputError(f"cluster.overhead={overhead}", expected="seconds >= 0")
        self.overhead = overhead
        self.period_s: float | None = cfg.period
        self._capacity: dict[str, float] = {}
        self._view: ClusterView | None = None
        self._reset(None, 0)

    def capacity(self, view: ClusterView, model: str) -> float:
        """One pod's capacity for ``model`` (req/s): full batches at SM 100 % and the
        slice ``quota`` (``kit.capacity_rps``, saturated), cached per model."""
        c = self._capacity.get(model)
        if c is None:
            lat = view.latency_s(model, self.batch, 100.0, self.cfg.quota)
            c = self._capacity[model] = capacity_rps("saturated", lat, self.batch, self.overhead)
        return c

    def decide(self, now: float, view: ClusterView) -> list[Action]:
        cfg = self.cfg
        tick = view.cause is Call.TICK
        fns = view.functions()
        plan: list[tuple[int, int, int]] = []  # (function, pods now, pods wanted)
        for i in self._candidates(now, view, tick).tolist():
            name, n = fns[i].name, int(self._pods[i])
            if n == 0:
                if view.queue_length(name) == 0:
                    continue  # nothing waits for a pod
            elif cfg.idle_timeout is not None:
                idle = view.arrivals(name, now - cfg.idle_timeout, now) == 0
                if idle and view.queue_length(name) == 0 and view.in_flight(name) == 0:
                    plan.append((i, n, 0))
                    continue
            arrived = view.arrivals(name, max(0.0, now - cfg.window), now)
            rate = arrived / min(cfg.window, max(now, cfg.period))
            rate_up = view.arrivals(name, now - cfg.period, now) / cfg.period
            cooled = now - self._last_scale[i] >= cfg.scale_in_cooldown - EPS
            want = target_pods(
                n, rate, self.capacity(view, fns[i].model), cfg, bool(cooled), rate_up
            )
            if want != n:
                plan.append((i, n, want))
        return self._act(now, view, plan) if plan else []

    # ---- which functions to look at ----------------------------------------------------
    def _candidates(self, now: float, view: ClusterView, tick: bool) -> np.ndarray:
        """Indices of the functions whose pods may change now (every one that will, in
        function order): without pods, those with requests since they last had pods
        (one may wait); on a tick, those with pods whose window counts leave their
        band, that are out of bounds, early in the run (the rate's span still grows)
        or idle."""
        cfg = self.cfg
        self._refresh(view)
        hot = view.arrival_counts(-1.0) > self._zero_above
        if tick:
            counts = view.arrival_counts(max(0.0, now - cfg.window))
            hot |= (counts > self._window_hi) | (counts < self._window_lo)
            hot |= view.arrival_counts(now - cfg.period) > self._period_hi
            if max(now, cfg.period) < cfg.window:
                hot |= self._pods > 0
            if cfg.idle_timeout is not None:
                hot |= (self._pods > 0) & (view.arrival_counts(now - cfg.idle_timeout) == 0)
        return np.flatnonzero(hot)

    def _reset(self, view: ClusterView | None, size: int) -> None:
        """Per-function state for a new view (a new run) of ``size`` functions."""
        self._view = view
        big = np.iinfo(np.int64).max
        self._pods = np.zeros(size, dtype=np.int64)  # live pods at the last refresh
        self._last_scale = np.full(size, -math.inf)  # s; -inf: never scaled
        # arrivals so far when the function last had no pods: a request can wait for a
        # pod only if more came since; no pods and no traffic yet: 0
        self._arrived_at_zero = np.zeros(size, dtype=np.int64)
        self._zero_above = np.zeros(size, dtype=np.int64)
        # bands of window / period counts that change nothing (see _bands)
        self._window_lo = np.zeros(size, dtype=np.int64)
        self._window_hi = np.full(size, big)
        self._period_hi = np.full(size, big)

    def _refresh(self, view: ClusterView) -> None:
        """Pod counts and bands of the functions whose live pod count changed (the bands
        depend on nothing else that changes)."""
        n = view.pod_counts("starting") + view.pod_counts("ready")
        if view is not self._view or self._pods.size != n.size:
            self._reset(view, n.size)
        changed = n != self._pods
        if not changed.any():
            return
        stale = np.flatnonzero(changed).tolist()
        self._pods[stale] = n[stale]
        fns = view.functions()
        for i in stale:
            bands = self._bands(int(n[i]), self.capacity(view, fns[i].model))
            self._window_lo[i], self._window_hi[i], self._period_hi[i] = bands
            self._zero_above[i] = np.iinfo(np.int64).max if n[i] else self._arrived_at_zero[i]

    def _bands(self, n: int, capacity: float) -> tuple[int, int, int]:
        """For a function with ``n`` > 0 pods of ``capacity`` req/s each, once the rate's
        span is the full window: counts in the window below ``lo`` may scale in (the
        first step's test; the cooldown is checked later), above ``hi`` or counts in the
        last period above the third value scale out (``target_pods``' tests, monotone in
        the count). Without pods: never (the queue decides)."""
        cfg = self.cfg
        big = int(np.iinfo(np.int64).max)
        if n == 0:
            return 0, big, big
        if n < cfg.min_pods or 0 < cfg.max_pods < n:
            return 0, -1, -1

        def quiet(span: float) -> Callable[[int], bool]:
            return lambda k: not target_pods(n, k / span, capacity, cfg, False) > n

        hi = period_hi = big  # at max_pods: never more
        if not 0 < cfg.max_pods <= n:
            guess = cfg.target_utilization * capacity * n
            hi = last_true(quiet(cfg.window), guess * cfg.window)
            period_hi = last_true(quiet(cfg.period), guess * cfg.period)
        lo = 0
        if n > cfg.min_pods:
            limit = cfg.scale_in_utilization * capacity * (n - 1) - EPS
            lo = last_true(lambda k: k / cfg.window < limit, limit * cfg.window) + 1
        return lo, hi, period_hi

    # ---- actions --------------------------------------------------------------------------
    def _act(self, now: float, view: ClusterView, plan: list[tuple[int, int, int]]) -> list[Action]:
        """The actions for ``plan`` (function, pods now, pods wanted), in function order:
        new pods while the GPUs' rows have room, removals in the kit's deletion order
        (by pods per GPU, to free whole GPUs); an idle function (0 wanted) loses all."""
        cfg = self.cfg
        fns = view.functions()
        wanted = sum(want - n for _, n, want in plan if want > n)
        slots = 0
        if wanted:
            # the exact count matters only when the empty GPUs cannot take them all
            slots = int((view.gpu_pod_counts() == 0).sum()) * slots_per_gpu(cfg.quota)
            if slots < wanted:
                slots = free_slots(view.gpus(), cfg.quota)
        per_gpu: dict[int, int] | None = None
        actions: list[Action] = []
        for i, n, want in plan:
            if want > n:
                if slots <= 0:
                    continue
                add = min(want - n, slots)
                slots -= add
                actions.extend(
                    CreatePod(fns[i].name, 100.0, cfg.quota, self.batch) for _ in range(add)
                )
            else:
                pods = live(view.pods_of(i))
                if want == 0:  # idle: all pods go, in id order
                    self._arrived_at_zero[i] = view.arrivals(fns[i].name, -1.0, now)
                else:
                    if per_gpu is None:
                        per_gpu = pods_per_gpu(view.pods())
                    pods = deletion_order(pods, per_gpu)[: n - want]
                actions.extend(DeletePod(p.id) for p in pods)
            self._last_scale[i] = now
        return actions


def build(cfg: TimeshareConfig, cluster_cfg: ClusterConfig) -> TimeshareAutoscaler:
    """The registry's factory: time sharing with the cluster's batch and the per-batch
    time a pod is held besides the GPU (``ClusterConfig.pod_overhead_s``)."""
    return TimeshareAutoscaler(cfg, cluster_cfg.max_batch, cluster_cfg.pod_overhead_s())
