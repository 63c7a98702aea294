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
from dataclasses import dataclass

from hasim.autoscale.base import Action, ClusterView, CreatePod, DeletePod, GpuInfo, PodInfo
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
        checks: list[tuple[bool, str, str]] = [
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
        ]
        for ok, key, expected in checks:
            if not ok:
                raise InputError(f"autoscaler.{key}={getattr(self, key)!r}", expected=expected)


def pod_capacity(latency_s: float, batch: int, overhead: float) -> float:
    """Requests per second one pod serves with full batches: batch / (L + overhead)."""
    return batch / (latency_s + overhead)


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
            slots += int(math.floor(1.0 / quota + EPS))
        else:
            slots += sum(int(math.floor(free / quota + EPS)) for sm, free in used if sm >= 100)
    return slots


def removal_order(pods: list[PodInfo], pods_per_gpu: dict[int, int]) -> list[PodInfo]:
    """Not-yet-ready pods first (newest first), then ready pods on the GPUs with the
    fewest pods, newest first."""
    return sorted(
        pods,
        key=lambda p: (
            p.state == "ready",
            pods_per_gpu.get(p.gpu, 0) if p.gpu is not None else 0,
            -p.created_at,
            -p.id,
        ),
    )


class TimeshareAutoscaler:
    """Horizontal scaling of SM-100 % pods with fixed time slices (module docstring)."""

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
        self._next_tick = 0.0
        self._last_scale: dict[str, float] = {}
        self._capacity: dict[str, float] = {}

    def capacity(self, view: ClusterView, model: str) -> float:
        """One pod's capacity for ``model`` (req/s), cached per model."""
        c = self._capacity.get(model)
        if c is None:
            lat = view.latency_s(model, self.batch, 100.0, self.cfg.quota)
            c = self._capacity[model] = pod_capacity(lat, self.batch, self.overhead)
        return c

    def decide(self, now: float, view: ClusterView) -> list[Action]:
        cfg = self.cfg
        tick = now >= self._next_tick - EPS
        if tick:
            self._next_tick = now + cfg.period
        by_fn: dict[str, list[PodInfo]] = {}
        per_gpu: dict[int, int] = {}
        for p in view.pods():
            by_fn.setdefault(p.function, []).append(p)
            if p.gpu is not None:
                per_gpu[p.gpu] = per_gpu.get(p.gpu, 0) + 1
        slots = free_slots(view.gpus(), cfg.quota)
        actions: list[Action] = []
        for f in view.functions():
            live = [p for p in by_fn.get(f.name, []) if p.state != "draining"]
            if not tick and live:
                continue  # an off-tick wake only serves functions at zero
            n = len(live)
            arrived = view.arrivals(f.name, max(0.0, now - cfg.window), now)
            queued = view.queue_length(f.name)
            if n == 0:
                if queued == 0:
                    continue  # nothing waits for a pod
            elif cfg.idle_timeout is not None:
                idle = view.arrivals(f.name, now - cfg.idle_timeout, now) == 0
                if idle and queued == 0 and view.in_flight(f.name) == 0:
                    actions.extend(DeletePod(p.id) for p in live)
                    self._last_scale[f.name] = now
                    continue
            rate = arrived / min(cfg.window, max(now, cfg.period))
            rate_up = view.arrivals(f.name, now - cfg.period, now) / cfg.period
            cooled = now - self._last_scale.get(f.name, -math.inf) >= cfg.scale_in_cooldown - EPS
            want = target_pods(n, rate, self.capacity(view, f.model), cfg, cooled, rate_up)
            if want > n and slots > 0:
                k = min(want - n, slots)
                slots -= k
                actions.extend(CreatePod(f.name, 100.0, cfg.quota, self.batch) for _ in range(k))
                self._last_scale[f.name] = now
            elif want < n:
                actions.extend(DeletePod(p.id) for p in removal_order(live, per_gpu)[: n - want])
                self._last_scale[f.name] = now
        return actions


def build(cfg: TimeshareConfig, cluster_cfg: ClusterConfig) -> TimeshareAutoscaler:
    """The registry's factory: time sharing with the cluster's batch and the per-batch
    time a pod is held besides the GPU (``ClusterConfig.pod_overhead_s``)."""
    return TimeshareAutoscaler(cfg, cluster_cfg.max_batch, cluster_cfg.pod_overhead_s())
