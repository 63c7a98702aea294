"""KServe on Knative: the Knative Pod Autoscaler (KPA) with whole-GPU replicas.

SYSTEMS.md section 4. The port keeps Knative's three layers apart:

1. **Collection** (``collect``): the time-weighted concurrency (requests queued or in
   service) of a function over the stable window and the panic window, from
   ``view.concurrency``, plus its ready / starting pods. Windows start no earlier
   than the function's metric history: t = 0, or the instant a function at zero gets
   traffic after a stable window without any (Knative's buckets restart then and
   average over the data they hold). At zero scale the requests wait in the
   activator, which reports them at once: the instantaneous count (queued + in
   flight) is a floor for both averages (the "poke", so the immediate tick at zero
   scale sees the request that woke it).
2. **Decision** (``KPADecider``): a pure function of (time, stable concurrency, panic
   concurrency, ready pods, current pods) and its own state (panic start, the panic
   ratchet, the scale-to-zero clock). No simulation inside: Knative's scenario tests
   are transcribed against it (tests/test_autoscale_kpa.py).
3. **Actuation** (``actuate``): the Deployment's replica count follows the decision:
   new pods are whole GPUs (``CreatePod(exclusive=True)``); surplus pods are deleted,
   not-yet-ready ones first, then the newest ready ones; deleted pods drain.

The decision (knative/serving pkg/autoscaler/scaling/autoscaler.go, our own code):

    ready   = max(1, ready pods)                   (startup_aware: ready + starting)
    maxUp   = ceil(max_scale_up_rate x ready);  maxDown = floor(ready / max_scale_down_rate)
    dspc    = ceil(stable / target);             dppc   = ceil(panic / target)
    stable_pods = clamp(dspc, maxDown, maxUp);   panic_pods = clamp(dppc, maxDown, maxUp)
    over    = dppc / ready >= panic_threshold_pct / 100
    over            -> panic starts (or is extended) now
    not over, and more than a stable window since the last time over -> panic ends
    in panic: desired = max(stable_pods, panic_pods), never below the panic maximum
    else:     desired = stable_pods

then (pkg/reconciler/autoscaling/kpa/scaler.go): the scale-down delay (the maximum
desired over the last ``scale_down_delay`` s), scale to zero (desired 0 with pods
still there: keep one pod until desired has been 0 for ``scale_to_zero_grace`` s;
since desired can only reach 0 when the stable window held no request at all, a
function scales to zero after a stable window without traffic plus the grace), the
activation scale when leaving zero, and the min/max scale bounds.

``startup_aware`` (off by default; not Knative's behaviour): pods on their way count
as capacity. They count as ready pods in the decision (panic threshold, rate limits),
and while pods start, and until the queue that built up for them has drained (at most
a stable window after the last start), the concurrencies are capped at what the
arrival rate needs at a pod's batch throughput (``KPAAutoscaler._startup_cap``); the
metric history restarts when the cap lifts. Without it, slow GPU cold starts make
panic mode add pods for the queue that waits for the first ones (knative/serving
#13284).

Not modelled: the activator's routing and the target burst capacity (the simulated
queue is one central FIFO per function, so where requests wait does not change who
serves them); containerConcurrency as a hard per-pod limit (a pod serves up to
``batch`` requests at once; containerConcurrency only sets the scaling target).
Kubernetes would keep pods that find no GPU Pending; the actuator asks only for as
many new pods as there are unused GPUs and retries at the next tick.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from hasim.autoscale.base import Action, ClusterView, CreatePod, DeletePod, PodInfo
from hasim.cluster.pod import validate_pod_request
from hasim.config.schema import ClusterConfig
from hasim.errors import InputError
from hasim.workload.base import FunctionSpec

EPS = 1e-9
# Knative's container-concurrency-target-default: the per-pod target when
# containerConcurrency is 0 (unlimited), before target utilisation (requests)
UNLIMITED_CC_TARGET = 100.0


@dataclass
class KPAConfig:
    """Knative Pod Autoscaler settings (defaults: Knative's; HAS-GPU's KServe runs used
    min_scale 1, max_scale 2, container_concurrency 15 (20 for BERT))."""

    kind: str = "kpa"
    container_concurrency: int = 15  # requests per pod (containerConcurrency); 0 = unlimited
    target_utilization: float = 0.7  # fraction of container_concurrency aimed for per pod
    target: float | None = None  # target concurrency per pod (requests); null = cc x utilisation
    stable_window: float = 60.0  # s, averaging window of the stable concurrency
    panic_window_pct: float = 10.0  # percent of stable_window: the panic window (6 s)
    panic_threshold_pct: float = 200.0  # percent: panic when panic pods / ready pods >= this
    max_scale_up_rate: float = 1000.0  # factor: at most ceil(rate x ready) pods per decision
    max_scale_down_rate: float = 2.0  # factor: at least floor(ready / rate) pods per decision
    min_scale: int = 0  # pods (0 = may scale to zero)
    max_scale: int = 0  # pods; 0 = unbounded
    scale_to_zero: bool = True  # enable-scale-to-zero
    scale_to_zero_grace: float = 30.0  # s desired must stay 0 before the last pod goes
    scale_down_delay: float = 0.0  # s; scale down only to the max desired over this time
    activation_scale: int = 1  # pods, at least, when scaling up from zero
    tick: float = 2.0  # s between decisions (plus an immediate one at zero scale)
    batch: int | None = None  # max batch per pod (requests); null = cluster.max_batch
    startup_aware: bool = False  # starting pods count as capacity (not Knative; see _startup_cap)
    prewarm_min: bool = True  # min_scale pods at t = 0, no cold start, idle history before
    active_only: bool = True  # skip functions that get no request in the whole run

    @property
    def target_per_pod(self) -> float:
        """Target concurrency per pod (requests)."""
        if self.target is not None:
            return float(self.target)
        cc = self.container_concurrency if self.container_concurrency > 0 else UNLIMITED_CC_TARGET
        return cc * self.target_utilization

    @property
    def min_pods(self) -> int:
        """The effective lower bound (pods): min_scale, at least 1 without scale to zero."""
        return self.min_scale if self.scale_to_zero else max(self.min_scale, 1)

    @property
    def panic_window(self) -> float:
        """The panic window in s."""
        return self.stable_window * self.panic_window_pct / 100.0

    def validate(self) -> None:
        """Raise InputError for settings Knative would reject."""
        checks: list[tuple[bool, str, str]] = [
            (self.container_concurrency >= 0, "container_concurrency", "an integer >= 0"),
            (0 < self.target_utilization <= 1, "target_utilization", "a fraction in (0, 1]"),
            (self.target is None or self.target > 0, "target", "a positive number or null"),
            (self.stable_window > 0, "stable_window", "seconds > 0"),
            (0 < self.panic_window_pct <= 100, "panic_window_pct", "a percent in (0, 100]"),
            (self.panic_threshold_pct > 100, "panic_threshold_pct", "a percent > 100"),
            (self.max_scale_up_rate > 1, "max_scale_up_rate", "a factor > 1"),
            (self.max_scale_down_rate > 1, "max_scale_down_rate", "a factor > 1"),
            (self.min_scale >= 0, "min_scale", "an integer >= 0"),
            (self.max_scale >= 0, "max_scale", "an integer >= 0 (0 = unbounded)"),
            (
                self.max_scale == 0 or self.max_scale >= self.min_scale,
                "max_scale",
                "0 or >= min_scale",
            ),
            (self.scale_to_zero_grace >= 0, "scale_to_zero_grace", "seconds >= 0"),
            (self.scale_down_delay >= 0, "scale_down_delay", "seconds >= 0"),
            (self.activation_scale >= 1, "activation_scale", "an integer >= 1"),
            (self.tick > 0, "tick", "seconds > 0"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise InputError(f"autoscaler.{key}={getattr(self, key)!r}", expected=expected)


# ---- decision (pure) --------------------------------------------------------------------


class KPADecider:
    """Knative's scaling decision for one function (revision); no simulation inside.

    ``decide(now, stable, panic, ready, current)`` takes the time (s), the stable- and
    panic-window average concurrencies (requests), the ready pod count and the current
    replica count (pods existing, ready or starting; default = ready) and returns the
    desired replica count. State: ``panic_time`` (s, the last time the panic threshold
    was crossed; None when not panicking), ``max_panic_pods`` (the ratchet) and
    ``zero_since`` (s, when desired first became 0 with pods still there).

    Like Knative's ``New``, a decider created over more than one ready pod starts in
    panic mode with the ratchet at that count, so a restart never scales down before it
    has a stable window of data.
    """

    def __init__(self, cfg: KPAConfig, now: float = 0.0, ready: int = 0) -> None:
        cfg.validate()
        self.cfg = cfg
        self.target = cfg.target_per_pod
        self.threshold = cfg.panic_threshold_pct / 100.0
        self.panic_time: float | None = now if ready > 1 else None
        self.max_panic_pods = ready if ready > 1 else 0
        self.zero_since: float | None = None
        self._recent: deque[tuple[float, int]] = deque()  # (s, desired) for the delay
        # the last decision's inputs and intermediate values, for inspection
        self.last: dict[str, float] = {}

    @property
    def in_panic(self) -> bool:
        return self.panic_time is not None

    def decide(
        self, now: float, stable: float, panic: float, ready: int, current: int | None = None
    ) -> int:
        """Desired replica count at ``now`` (see the module docstring for the rule)."""
        cfg = self.cfg
        current = ready if current is None else current
        ready_f = float(max(1, ready))
        max_up = math.ceil(cfg.max_scale_up_rate * ready_f - EPS)
        max_down = math.floor(ready_f / cfg.max_scale_down_rate + EPS)
        dspc = math.ceil(stable / self.target - EPS) if stable > 0 else 0
        dppc = math.ceil(panic / self.target - EPS) if panic > 0 else 0
        stable_pods = min(max(dspc, max_down), max_up)
        panic_pods = min(max(dppc, max_down), max_up)
        over = dppc / ready_f >= self.threshold - EPS

        if over:
            self.panic_time = now  # enter, or extend, the panic
        elif self.panic_time is not None and now - self.panic_time > cfg.stable_window + EPS:
            # more than a full stable window below the threshold (Knative: strictly after
            # panic time + stable window): the surge has reached the stable window
            self.panic_time = None
            self.max_panic_pods = 0

        desired = stable_pods
        if self.panic_time is not None:
            desired = max(desired, panic_pods)
            if desired > self.max_panic_pods:
                self.max_panic_pods = desired
            else:
                desired = self.max_panic_pods  # never scale down in panic
        self.last = {
            "now": now,
            "stable": stable,
            "panic": panic,
            "ready": ready,
            "dspc": dspc,
            "dppc": dppc,
            "max_up": max_up,
            "max_down": max_down,
            "decided": desired,
        }
        return self._scaler(now, desired, current)

    def _scaler(self, now: float, desired: int, current: int) -> int:
        """The PodAutoscaler reconciler's part: delay, scale to zero, activation, bounds."""
        cfg = self.cfg
        if cfg.scale_down_delay > 0:
            self._recent.append((now, desired))
            while self._recent and self._recent[0][0] < now - cfg.scale_down_delay - EPS:
                self._recent.popleft()
            desired = max(d for _, d in self._recent)
        min_pods = cfg.min_pods
        if desired == 0:
            if current == 0:
                self.zero_since = None
            elif min_pods == 0:
                if self.zero_since is None:
                    self.zero_since = now
                if now - self.zero_since < cfg.scale_to_zero_grace - EPS:
                    desired = 1  # at most one pod for the rest of the grace period
        else:
            self.zero_since = None
            if current == 0:
                desired = max(desired, cfg.activation_scale)
        if cfg.max_scale > 0:
            desired = min(desired, cfg.max_scale)
        return max(desired, min_pods)


# ---- collection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KPAMetrics:
    """What the decider needs of one function at one instant: concurrencies in requests
    (time-weighted averages over the stable and panic windows), pod counts."""

    stable: float
    panic: float
    ready: int
    starting: int


class ConcurrencyHistory:
    """One function's metric buckets (Knative's 1 s buckets, here one per decision):
    the request-seconds in the system over each interval between two samples, kept for
    one stable window. Window averages from them equal ``view.concurrency`` over the
    same window (a bucket cut by the window's start counts pro rata), at one view query
    per decision instead of one per window."""

    def __init__(self, origin: float, keep: float) -> None:
        self.origin = origin  # s: the history starts here (nothing before counts)
        self.keep = keep  # s of buckets kept
        self.last = origin  # s: end of the newest bucket
        self.buckets: deque[tuple[float, float, float]] = deque()  # (t0 s, t1 s, req x s)
        self.total = 0.0  # request-seconds over all kept buckets
        self.quiet_since: float | None = None  # s: no request in the system since then

    @classmethod
    def idle(cls, now: float, keep: float) -> ConcurrencyHistory:
        """A history whose last ``keep`` s before ``now`` held no request (one empty
        bucket), e.g. a revision deployed and idle before the trace starts."""
        h = cls(now - keep, keep)
        h.buckets.append((now - keep, now, 0.0))
        h.last = now
        h.quiet_since = now - keep
        return h

    def sample(self, view: ClusterView, function: str, now: float) -> None:
        """Add the bucket (last, now] from ``view.concurrency``; no query when the
        previous bucket held no request and nothing arrived since it began."""
        if now <= self.last:
            return
        quiet = self.quiet_since
        if quiet is not None and view.arrivals(function, quiet, now) == 0:
            rs = 0.0
        else:
            rs = view.concurrency(function, self.last, now) * (now - self.last)
        self.quiet_since = (self.last if quiet is None else quiet) if rs == 0.0 else None
        self.buckets.append((self.last, now, rs))
        self.total += rs
        self.last = now
        while self.buckets and self.buckets[0][1] <= now - self.keep + EPS:
            self.total -= self.buckets.popleft()[2]
        if not self.buckets:
            self.total = 0.0

    def average(self, now: float, window: float) -> float:
        """Time-averaged concurrency (requests) over (max(origin, now - window), now]."""
        t0 = max(self.origin, now - window)
        if now <= t0 or not self.buckets:
            return 0.0
        if window >= self.keep - EPS:
            rs = self.total
            b0, b1, brs = self.buckets[0]
            if b0 < t0:
                rs -= brs * (t0 - b0) / (b1 - b0)
        else:
            rs = 0.0
            for b0, b1, brs in reversed(self.buckets):
                if b1 <= t0:
                    break
                rs += brs if b0 >= t0 else brs * (b1 - t0) / (b1 - b0)
        return max(0.0, rs) / (now - t0)


def collect(
    view: ClusterView,
    function: str,
    now: float,
    cfg: KPAConfig,
    pods: list[PodInfo],
    history: ConcurrencyHistory,
    per_rps: float | None = None,
) -> KPAMetrics:
    """Window averages of ``function``'s concurrency at ``now`` (requests) and its pods.

    ``history`` (sampled here) holds the concurrency since the function's metric
    history began: Knative averages over the data it has, and its history restarts
    after a window without any (the autoscaler then starts a new one).
    ``per_rps`` (startup_aware, while its cap holds): cap each average at the arrival
    rate over its window (req/s) x ``per_rps`` (requests per req/s), the concurrency
    that sizes the function for its traffic rather than for its queue.
    With no pod at all the activator holds the requests and reports them at once: the
    instantaneous queued + in-flight count is a floor for both averages."""
    ready = sum(1 for p in pods if p.state == "ready")
    starting = sum(1 for p in pods if p.state == "starting")
    history.sample(view, function, now)
    out = []
    for window in (cfg.stable_window, cfg.panic_window):
        c = history.average(now, window)
        t0 = max(history.origin, now - window)
        if per_rps is not None and now > t0:
            c = min(c, view.arrivals(function, t0, now) / (now - t0) * per_rps)
        out.append(c)
    stable, panic = out
    if ready == 0 and starting == 0:
        waiting = float(view.queue_length(function) + view.in_flight(function))
        stable, panic = max(stable, waiting), max(panic, waiting)
    return KPAMetrics(stable, panic, ready, starting)


# ---- actuation ----------------------------------------------------------------------------


def deletion_order(pods: list[PodInfo]) -> list[PodInfo]:
    """Pods to delete first: not yet ready ones, then ready ones; newest first in each."""
    return sorted(pods, key=lambda p: (p.state == "ready", -p.created_at, -p.id))


def actuate(
    function: str, desired: int, pods: list[PodInfo], free_gpus: int, batch: int, warm: int = 0
) -> list[Action]:
    """Actions that move ``function``'s live (ready or starting) ``pods`` to ``desired``:
    whole-GPU pods to create (at most ``free_gpus``; the first ``warm`` of them without
    a cold start) or pods to delete (``deletion_order``)."""
    live = [p for p in pods if p.state in ("ready", "starting")]
    if desired > len(live):
        n = min(desired - len(live), max(0, free_gpus))
        return [
            CreatePod(function, 100.0, 1.0, batch, exclusive=True, warm=i < warm) for i in range(n)
        ]
    if desired < len(live):
        return [DeletePod(p.id) for p in deletion_order(live)[: len(live) - desired]]
    return []


# ---- the autoscaler ---------------------------------------------------------------------


class KPAAutoscaler:
    """KServe/Knative: one ``KPADecider`` per function, ticking every ``cfg.tick`` s, and
    an immediate tick when a function at zero scale gets a request (wake_on_arrival;
    the simulation's queue buffers requests meanwhile, as the activator does).

    ``overhead`` (s per batch a pod is held besides its GPU time,
    ``ClusterConfig.pod_overhead_s``)
    enters only the startup_aware cap (``_startup_cap``)."""

    wake_on_arrival = True

    def __init__(self, cfg: KPAConfig, default_batch: int, overhead: float = 0.0) -> None:
        cfg.validate()
        self.cfg = cfg
        self.batch = default_batch if cfg.batch is None else cfg.batch
        validate_pod_request(100.0, 1.0, self.batch)
        self.overhead = overhead
        self.period_s: float | None = cfg.tick
        self.deciders: dict[str, KPADecider] = {}
        self.history: dict[str, ConcurrencyHistory] = {}  # each function's metric history
        self._starting_seen: dict[str, float] = {}  # s: last decision with pods starting
        self._next_tick = 0.0
        self._started = False
        self._n_gpus: int | None = None  # the cluster's GPU count (fixed for a run)
        self._prev_call = 0.0  # s: the previous decide call

    def _startup_cap(
        self, view: ClusterView, f: FunctionSpec, live: list[PodInfo], now: float
    ) -> float | None:
        """startup_aware: concurrency per req/s of arrivals (s) while the startup cap
        holds for ``f``, else None; restarts the metric history when the cap lifts.

        The cap holds while pods are starting, and after that while the queue built up
        for them drains (more requests queued than the live pods take in one batch
        each), for at most one stable window after the last start. Under it a
        function is sized for its arrival rate: a pod (starting or ready) is taken to
        serve mu = batch / (L(model, batch, 100 %, 1) + overhead) req/s, and the
        concurrency is capped at rate x target / (target_utilization x mu), which the
        decision turns into ceil(rate / (target_utilization x mu)) pods."""
        cfg = self.cfg
        if not cfg.startup_aware:
            return None
        if any(p.state == "starting" for p in live):
            self._starting_seen[f.name] = now
        seen = self._starting_seen.get(f.name)
        if seen is None:
            return None
        holds = seen == now
        if not holds and now - seen < cfg.stable_window:
            holds = view.queue_length(f.name) > len(live) * self.batch
        if not holds:
            del self._starting_seen[f.name]
            self._restart_history(f.name, now)  # do not replay the startup backlog
            return None
        lat = view.latency_s(f.model, self.batch, 100.0, 1.0)
        mu = self.batch / (lat + self.overhead)
        return cfg.target_per_pod / (cfg.target_utilization * mu)

    def _restart_history(self, function: str, now: float) -> None:
        self.history[function] = ConcurrencyHistory(now, self.cfg.stable_window)

    def decide(self, now: float, view: ClusterView) -> list[Action]:
        cfg = self.cfg
        first = not self._started
        self._started = True
        tick = now >= self._next_tick - EPS
        if tick:
            self._next_tick = now + cfg.tick
        by_fn: dict[str, list[PodInfo]] = {}
        used_gpus: set[int] = set()
        for p in view.pods():
            by_fn.setdefault(p.function, []).append(p)
            if p.gpu is not None:
                used_gpus.add(p.gpu)
        if self._n_gpus is None:
            self._n_gpus = len(view.gpus())
        free = self._n_gpus - len(used_gpus)  # whole GPUs without any pod
        actions: list[Action] = []
        prev, self._prev_call = self._prev_call, now
        for f in view.functions():
            pods = by_fn.get(f.name, [])
            live = [p for p in pods if p.state != "draining"]
            if not tick and (live or view.arrivals(f.name, prev, now) == 0):
                continue  # an off-tick wake serves functions at zero that just got traffic
            dec = self.deciders.get(f.name)
            if dec is None:
                if cfg.active_only and view.total_arrivals(f.name) == 0:
                    continue
                n_ready = sum(1 for p in live if p.state == "ready")
                dec = self.deciders[f.name] = KPADecider(cfg, now, n_ready)
                self._restart_history(f.name, now)
            if not live and not dec.in_panic and cfg.min_pods == 0:
                if view.queue_length(f.name) == 0 and (not pods or view.in_flight(f.name) == 0):
                    continue  # idle at zero: nothing to decide (saves work on big traces)
                if view.concurrency(f.name, now - cfg.stable_window, now) == 0.0:
                    self._restart_history(f.name, now)  # traffic after an empty window
            warm = cfg.min_pods if first and cfg.prewarm_min else 0
            if warm and not live:
                # prewarm_min: the revision was deployed (and idle) before the trace
                # starts, so its min_scale pods are already there and serving; the
                # autoscaler has no metric data yet, so it changes nothing (the activator
                # floor of a function at zero does not apply).
                acts = actuate(f.name, warm, pods, free, self.batch, warm)
                free -= len(acts)
                actions.extend(acts)
                # ... and its metric history holds the idle stable window before t = 0
                self.history[f.name] = ConcurrencyHistory.idle(now, cfg.stable_window)
                continue
            cap = self._startup_cap(view, f, live, now)
            history = self.history[f.name]
            if live and history.origin >= now:
                continue  # the history restarts now: no data yet, no change (Knative)
            m = collect(view, f.name, now, cfg, pods, history, cap)
            ready = m.ready + m.starting if cfg.startup_aware else m.ready
            desired = dec.decide(now, m.stable, m.panic, ready, len(live))
            acts = actuate(f.name, desired, pods, free, self.batch)
            free -= sum(1 for a in acts if isinstance(a, CreatePod))
            actions.extend(acts)
        return actions


def build(cfg: KPAConfig, cluster_cfg: ClusterConfig) -> KPAAutoscaler:
    """The registry's factory: a KPA autoscaler with the cluster's default batch and the
    per-batch time a pod is held besides the GPU (``ClusterConfig.pod_overhead_s``)."""
    return KPAAutoscaler(cfg, cluster_cfg.max_batch, cluster_cfg.pod_overhead_s())
