"""KServe on Knative: the Knative Pod Autoscaler (KPA) with whole-GPU replicas.

SYSTEMS.md section 4. The port keeps Knative's three layers apart, each over arrays
indexed like ``view.functions()`` (all functions decided at once; Python-level work
only for the functions whose replica count changes):

1. **Collection** (``ConcurrencyWindows``, ``collect``): the time-weighted concurrency
   (requests queued or in service) of every function over the stable window and the
   panic window. Each function has metric buckets (Knative's 1 s buckets, here one
   per decision: the request-seconds in the system between two consecutive samples of
   that function, from ``view.in_system_since``), kept for one stable window in one
   log for all functions (only the buckets that hold requests). A window average is
   the buckets' sum over the window (a bucket cut by the window's start counts pro
   rata) divided by its length. Windows start no earlier than the function's metric
   history: t = 0, or the instant a function at zero gets traffic after a stable
   window without any (Knative's buckets restart then and average over the data they
   hold). A bucket is asked of the view only where it can hold a request: not while
   the function has been quiet (an empty bucket, or nothing in the system at the end
   of the last one, and no arrival since). At zero scale the requests wait in the
   activator, which reports them at once: the instantaneous count (queued + in
   flight) is a floor for both averages (the "poke", so the immediate tick at zero
   scale sees the request that woke it).
2. **Decision** (``KPADeciders``): a pure function of (time, stable concurrency, panic
   concurrency, ready pods, current pods) and its own state per function (panic start,
   the panic ratchet, the scale-to-zero clock). No simulation inside: Knative's
   scenario tests are transcribed against it (tests/test_autoscale_kpa.py, through
   ``KPADecider``, the same decision for one function).
3. **Actuation** (``create_pods``, ``delete_pods``), only where the decision differs from
   the live pods: the Deployment's replica count follows the decision: new pods are
   whole GPUs (``CreatePod(exclusive=True)``); surplus pods are deleted in the kit's
   deletion order (not-yet-ready ones first, then the newest ready ones); deleted pods
   drain.

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

When it decides (``KPAAutoscaler.decide``): at every tick (``view.cause`` is
``Call.TICK``) every function that has a decider, and at a wake between ticks the
functions without live pods that got a request since the previous call (Knative's
immediate tick at zero scale). A function at zero with nothing queued or in flight is
not decided (nothing would change); a function whose metric history restarts now is
not decided with pods (no data yet, no change).

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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hasim.autoscale.base import Action, Call, ClusterView, CreatePod, DeletePod, PodInfo
from hasim.autoscale.kit import ModelTable, Rings, deletion_order, live, require
from hasim.cluster.pod import validate_pod_request
from hasim.config.schema import ClusterConfig

EPS = 1e-9
# Knative's container-concurrency-target-default: the per-pod target when
# containerConcurrency is 0 (unlimited), before target utilisation (requests)
UNLIMITED_CC_TARGET = 100.0
POD_STATES = ("starting", "ready", "draining")  # every state in which a pod holds its GPU


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
        require(
            self,
            [
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
            ],
        )


# ---- decision (pure) --------------------------------------------------------------------


class KPADeciders:
    """Knative's scaling decision for ``n`` functions (revisions); no simulation inside.

    ``decide(fns, now, stable, panic, ready, current)`` takes the function indices, the
    time (s), their stable- and panic-window average concurrencies (requests), ready pod
    counts and current replica counts (pods existing, ready or starting), all arrays
    over ``fns``, and returns their desired replica counts. State per function:
    ``panic_time`` (s, the last time the panic threshold was crossed; nan when not
    panicking), ``max_panic_pods`` (the ratchet) and ``zero_since`` (s, when desired
    first became 0 with pods still there; nan otherwise).

    Like Knative's ``New``, a decider started (``start``) over more than one ready pod
    starts in panic mode with the ratchet at that count, so a restart never scales down
    before it has a stable window of data.
    """

    def __init__(self, cfg: KPAConfig, n: int) -> None:
        cfg.validate()
        self.cfg = cfg
        self.target = cfg.target_per_pod
        self.threshold = cfg.panic_threshold_pct / 100.0
        self.panic_time = np.full(n, np.nan)
        self.max_panic_pods = np.zeros(n, dtype=np.int64)
        self.zero_since = np.full(n, np.nan)
        # (s, desired) of the decisions within the scale-down delay
        self._recent = Rings(n, ("t", "desired")) if cfg.scale_down_delay > 0 else None

    def start(self, fns: np.ndarray, now: float, ready: np.ndarray) -> None:
        """New deciders for ``fns`` at ``now`` (s) over ``ready`` pods each."""
        panic = ready > 1
        self.panic_time[fns] = np.where(panic, now, np.nan)
        self.max_panic_pods[fns] = np.where(panic, ready, 0)
        self.zero_since[fns] = np.nan
        if self._recent is not None:
            self._recent.clear(fns)

    def in_panic(self, fns: np.ndarray) -> np.ndarray:
        return ~np.isnan(self.panic_time[fns])

    def decide(
        self,
        fns: np.ndarray,
        now: float,
        stable: np.ndarray,
        panic: np.ndarray,
        ready: np.ndarray,
        current: np.ndarray,
    ) -> np.ndarray:
        """Desired replica counts (int64) of ``fns`` at ``now`` (module docstring)."""
        cfg = self.cfg
        ready_f = np.maximum(ready, 1.0)
        max_up = np.ceil(cfg.max_scale_up_rate * ready_f - EPS)
        max_down = np.floor(ready_f / cfg.max_scale_down_rate + EPS)
        # (0 for a concurrency of 0: ceil(-EPS) is -0.0)
        desired = np.minimum(np.maximum(np.ceil(stable / self.target - EPS), max_down), max_up)
        dppc = np.ceil(panic / self.target - EPS)

        # enter, or extend, the panic; leave it after more than a full stable window
        # below the threshold (Knative: strictly after panic time + stable window)
        since = self.panic_time[fns]
        since[dppc / ready_f >= self.threshold - EPS] = now
        calm = now - since > cfg.stable_window + EPS
        since[calm] = np.nan
        self.panic_time[fns] = since
        self.max_panic_pods[fns[calm]] = 0
        p = (~np.isnan(since)).nonzero()[0]
        if p.size:  # the larger of the stable and panic pods, never below the ratchet
            panic_pods = np.minimum(np.maximum(dppc[p], max_down[p]), max_up[p])
            top = np.maximum(np.maximum(desired[p], panic_pods), self.max_panic_pods[fns[p]])
            self.max_panic_pods[fns[p]] = top
            desired[p] = top
        return self._scaler(fns, now, desired.astype(np.int64), current)

    def decide_one(
        self, i: int, now: float, stable: float, panic: float, ready: int, current: int
    ) -> int:
        """``decide`` for the one function ``i`` with Python scalars (the same arithmetic
        without numpy's per-call cost: a wake decides for one function)."""
        if self._recent is not None:
            one = np.array([i])
            return int(
                self.decide(
                    one,
                    now,
                    np.array([stable]),
                    np.array([panic]),
                    np.array([ready]),
                    np.array([current]),
                )[0]
            )
        cfg = self.cfg
        ready_f = max(float(ready), 1.0)
        max_up = float(math.ceil(cfg.max_scale_up_rate * ready_f - EPS))
        max_down = float(math.floor(ready_f / cfg.max_scale_down_rate + EPS))
        desired = min(max(float(math.ceil(stable / self.target - EPS)), max_down), max_up)
        dppc = float(math.ceil(panic / self.target - EPS))
        since = float(self.panic_time[i])
        if dppc / ready_f >= self.threshold - EPS:
            since = now
        if now - since > cfg.stable_window + EPS:
            since = math.nan
            self.max_panic_pods[i] = 0
        self.panic_time[i] = since
        if not math.isnan(since):
            panic_pods = min(max(dppc, max_down), max_up)
            desired = max(max(desired, panic_pods), float(self.max_panic_pods[i]))
            self.max_panic_pods[i] = int(desired)
        want = int(desired)
        if cfg.min_pods == 0:
            zero, gone = want == 0, current == 0
            since = float(self.zero_since[i])
            if not zero or gone:
                since = math.nan
            wait = zero and not gone
            if wait and math.isnan(since):
                since = now
            if wait and now - since < cfg.scale_to_zero_grace - EPS:
                want = 1
            self.zero_since[i] = since
        if cfg.activation_scale > 1 and want > 0 and current == 0:
            want = max(want, cfg.activation_scale)
        if cfg.max_scale > 0:
            want = min(want, cfg.max_scale)
        return max(want, cfg.min_pods) if cfg.min_pods else want

    def _scaler(
        self, fns: np.ndarray, now: float, desired: np.ndarray, current: np.ndarray
    ) -> np.ndarray:
        """The PodAutoscaler reconciler's part: delay, scale to zero, activation, bounds
        (``desired`` is changed in place)."""
        cfg = self.cfg
        if self._recent is not None:
            desired = self._delayed(fns, now, desired)
        if cfg.min_pods == 0:  # (otherwise zero_since stays nan)
            zero = desired == 0
            gone = current == 0
            since = self.zero_since[fns]
            since[~zero | gone] = np.nan
            wait = zero & ~gone
            since[wait & np.isnan(since)] = now
            # at most one pod for the rest of the grace period
            desired[wait & (now - since < cfg.scale_to_zero_grace - EPS)] = 1
            self.zero_since[fns] = since
        if cfg.activation_scale > 1:
            up = (desired > 0) & (current == 0)
            desired[up] = np.maximum(desired[up], cfg.activation_scale)
        if cfg.max_scale > 0:
            desired = np.minimum(desired, cfg.max_scale)
        return np.maximum(desired, cfg.min_pods) if cfg.min_pods else desired

    def _delayed(self, fns: np.ndarray, now: float, desired: np.ndarray) -> np.ndarray:
        """The largest desired count of each function over the last scale_down_delay s."""
        recent = self._recent
        assert recent is not None
        recent.push(fns, t=now, desired=desired)
        old = now - self.cfg.scale_down_delay - EPS
        while True:
            held = recent.count[fns] > 0
            drop = fns[held & (recent.front(fns, "t") < old)]
            if not drop.size:
                break
            recent.pop(drop)
        at, exists = recent.newest(fns, int(recent.count[fns].max()))
        return np.where(exists, recent.take("desired", at), -1.0).max(axis=1).astype(np.int64)


class KPADecider:
    """``KPADeciders`` for one function: ``decide(now, stable, panic, ready, current)``
    with scalars (s, requests, pods; ``current`` defaults to ``ready``), returning the
    desired replica count; created at ``now`` over ``ready`` pods (Knative's ``New``)."""

    _ONE = np.zeros(1, dtype=np.int64)

    def __init__(self, cfg: KPAConfig, now: float = 0.0, ready: int = 0) -> None:
        self.deciders = KPADeciders(cfg, 1)
        self.deciders.start(self._ONE, now, np.array([ready]))

    @property
    def panic_time(self) -> float | None:
        t = float(self.deciders.panic_time[0])
        return None if math.isnan(t) else t

    @property
    def in_panic(self) -> bool:
        return self.panic_time is not None

    @property
    def max_panic_pods(self) -> int:
        return int(self.deciders.max_panic_pods[0])

    def decide(
        self, now: float, stable: float, panic: float, ready: int, current: int | None = None
    ) -> int:
        """Desired replica count at ``now`` (see the module docstring for the rule)."""
        current = ready if current is None else current
        out = self.deciders.decide(
            self._ONE,
            now,
            np.array([stable], dtype=float),
            np.array([panic], dtype=float),
            np.array([ready]),
            np.array([current]),
        )
        return int(out[0])


# ---- collection ---------------------------------------------------------------------------


class ConcurrencyWindows:
    """Every function's metric buckets (Knative's 1 s buckets, here one per decision): the
    request-seconds in the system over each interval between two samples of a function,
    kept for one stable window (``keep`` s). Window averages from them equal the
    time-averaged concurrency over the same window (a bucket cut by the window's start
    counts pro rata), at one view query per sampled function and decision, and none
    while a function is quiet.

    Only buckets that hold request-seconds are stored: an empty one adds nothing to a
    window's sum (nor, cut, its pro-rata part), so a sample that finds none only moves
    the function's ``last``. The stored buckets of all functions form one log in the
    order they were added (by end time), so a decision costs a few array operations
    whatever the number of functions: the buckets that end inside a window are a
    suffix of the log, summed per function with ``np.bincount`` newest first (the order
    of the per-function sum, from 0.0); a bucket that leaves the stable window is taken
    off its function's running ``total`` when that function is next sampled (oldest
    first, after the new bucket is added: the same sequence of additions whatever the
    other functions do).

    ``counts`` arguments are every function's arrivals up to now (int64, indexed like
    the functions; ``view.arrival_counts(-inf)``): a function is quiet (its next bucket
    is empty) while nothing arrived since ``quiet``, the start of its first empty bucket
    or the last sample that found nothing in the system.
    """

    def __init__(self, n: int, keep: float, capacity: int = 1024) -> None:
        self.keep = keep  # s of buckets kept
        self.origin = np.zeros(n)  # s: each history starts here (nothing before counts)
        self.last = np.zeros(n)  # s: end of the newest bucket (== origin: none yet)
        self.total = np.zeros(n)  # request-seconds over all kept buckets
        self.quiet = np.full(n, np.nan)  # s: no request in the system since then (nan: busy)
        self.restarted = -math.inf  # s: the latest restart of any history
        self._arrived_last = np.zeros(n, dtype=np.int64)  # arrivals up to ``last``
        self._arrived_quiet = np.zeros(n, dtype=np.int64)  # arrivals up to ``quiet``
        self._history = np.zeros(n, dtype=np.int64)  # restarts so far, per function
        # the log: per bucket its function and history, start, end (s), request-seconds;
        # ``_size`` used, ``_kept`` the first that has not left the stable window
        self._fn = np.zeros((2, capacity), dtype=np.int64)
        self._b = np.zeros((3, capacity))
        self._size = self._kept = 0
        # buckets that left the stable window while their function was not sampled:
        # function, history, request-seconds (oldest first)
        self._left = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))

    def restart(self, fns: np.ndarray, now: float, counts: np.ndarray) -> None:
        """Start ``fns``' histories at ``now`` (s) with no bucket."""
        if not fns.size:
            return
        self.origin[fns] = now
        self.last[fns] = now
        self.total[fns] = 0.0
        self.quiet[fns] = np.nan
        self._arrived_last[fns] = counts[fns]
        self._history[fns] += 1  # their logged buckets no longer count
        self.restarted = now

    def idle(self, fns: np.ndarray, now: float, counts: np.ndarray, before: np.ndarray) -> None:
        """Histories whose last ``keep`` s before ``now`` held no request (one empty
        bucket), e.g. a revision deployed and idle before the trace starts. ``before``:
        arrivals up to ``now - keep``, per function like ``counts``."""
        self.restart(fns, now, counts)
        self.origin[fns] = now - self.keep
        self.quiet[fns] = now - self.keep
        self._arrived_quiet[fns] = before[fns]

    def sample(self, view: ClusterView, fns: np.ndarray, now: float, counts: np.ndarray) -> None:
        """Add the bucket (last, now] of each of ``fns`` from ``view.in_system_since``
        (nothing where ``now`` is not after its last bucket); no query for a quiet one."""
        fns = fns[self.last[fns] < now]
        if not fns.size:
            return
        quiet = self.quiet[fns]
        ask = fns[np.isnan(quiet) | (counts[fns] != self._arrived_quiet[fns])]
        if ask.size:
            t0 = self.last[ask]
            span = now - t0
            got, busy_now = view.in_system_since(ask, t0)
            rs = got / span * span  # as a time-averaged concurrency times the bucket's length
            full = rs != 0.0
            # quiet from the start of the first empty bucket on ...
            empty = ask[~full & np.isnan(self.quiet[ask])]
            self.quiet[empty] = self.last[empty]
            self._arrived_quiet[empty] = self._arrived_last[empty]
            add = ask[full]
            self.quiet[add] = np.nan
            # ... or from now on, where nothing is in the system now
            idle = ask[~busy_now]
            self.quiet[idle] = now
            self._arrived_quiet[idle] = counts[idle]
            if add.size:
                self._log(add, t0[full], now, rs[full])
                self.total[add] += rs[full]
        self.last[fns] = now
        self._arrived_last[fns] = counts[fns]
        self._expire(now)

    def _log(self, fns: np.ndarray, t0: np.ndarray, now: float, rs: np.ndarray) -> None:
        """Append the buckets (t0, now] of ``fns`` holding ``rs`` request-seconds."""
        k = fns.size
        if self._size + k > self._b.shape[1]:
            self._compact(k)
        i, j = self._size, self._size + k
        self._fn[0, i:j] = fns
        self._fn[1, i:j] = self._history[fns]
        self._b[0, i:j] = t0
        self._b[1, i:j] = now
        self._b[2, i:j] = rs
        self._size = j

    def _compact(self, more: int) -> None:
        """Drop the buckets that left the stable window; grow to hold ``more`` new ones."""
        lo, hi = self._kept, self._size
        cap = self._b.shape[1]
        if hi - lo + more > cap // 2:
            cap = 2 * max(cap, hi - lo + more)
        fn, b = np.zeros((2, cap), dtype=np.int64), np.zeros((3, cap))
        fn[:, : hi - lo] = self._fn[:, lo:hi]
        b[:, : hi - lo] = self._b[:, lo:hi]
        self._fn, self._b = fn, b
        self._size, self._kept = hi - lo, 0

    def _expire(self, now: float) -> None:
        """Take the buckets that ended a stable window ago or more off their functions'
        totals (oldest first), for the functions sampled at ``now``; keep the others'
        for their next sample."""
        lo, hi = self._kept, self._size
        end = lo + int(np.searchsorted(self._b[1, lo:hi], now - self.keep + EPS, "right"))
        left_fn, left_history, left_rs = self._left
        if end == lo and not left_fn.size:
            return
        fn = np.concatenate((left_fn, self._fn[0, lo:end]))
        history = np.concatenate((left_history, self._fn[1, lo:end]))
        rs = np.concatenate((left_rs, self._b[2, lo:end]))
        current = history == self._history[fn]
        now_ = current & (self.last[fn] == now)
        np.subtract.at(self.total, fn[now_], rs[now_])
        later = current & ~now_
        self._left = (fn[later], history[later], rs[later])
        self._kept = end

    def average(self, fns: np.ndarray, now: float, window: float) -> np.ndarray:
        """Time-averaged concurrency (requests) of ``fns`` over
        (max(origin, now - window), now] (after ``sample`` at ``now`` for ``fns``)."""
        origin = self.origin[fns]
        t0 = np.maximum(origin, now - window)
        valid = (now > t0) & (self.last[fns] > origin)
        if window >= self.keep - EPS:
            rs = self.total[fns] - self._cut(fns, now, window)
        else:
            rs = self._recent(fns, now, window)
        return np.where(valid, np.maximum(0.0, rs) / np.where(valid, now - t0, 1.0), 0.0)

    def _cut(self, fns: np.ndarray, now: float, window: float) -> np.ndarray:
        """Per function of ``fns``: the part of its kept bucket that the window
        (max(origin, now - window), now] cuts off (0.0 where none is cut)."""
        lo, hi = self._kept, self._size
        # a kept bucket ends after now - window; one of the current history starts at or
        # after its origin: one cut by the window's start starts before now - window
        at = lo + np.flatnonzero(self._b[0, lo:hi] < now - window)
        out = np.zeros(self.origin.size)
        if at.size:
            f = self._fn[0, at]
            t0 = np.maximum(self.origin[f], now - window)
            b0, b1 = self._b[0, at], self._b[1, at]
            cut = self._fn[1, at] == self._history[f]  # (not of an earlier history)
            part = self._b[2, at] * (t0 - b0) / (b1 - b0)
            out[f[cut]] = part[cut]
        return out[fns]

    def _recent(self, fns: np.ndarray, now: float, window: float) -> np.ndarray:
        """Per function of ``fns``: the request-seconds of its buckets that end inside the
        window (max(origin, now - window), now], one cut by its start pro rata, summed
        newest first."""
        lo, hi = self._kept, self._size
        at = lo + int(np.searchsorted(self._b[1, lo:hi], now - window, "right"))
        f = self._fn[0, at:hi]
        t0 = np.maximum(self.origin[f], now - window)
        b0, b1, rs = self._b[0, at:hi], self._b[1, at:hi], self._b[2, at:hi]
        terms = np.where(b0 < t0, rs * (b1 - t0) / (b1 - b0), rs)
        terms[self._fn[1, at:hi] != self._history[f]] = 0.0  # of an earlier history
        return np.bincount(f[::-1], terms[::-1], self.origin.size)[fns]


def collect(
    view: ClusterView,
    windows: ConcurrencyWindows,
    fns: np.ndarray,
    now: float,
    counts: np.ndarray,
    cfg: KPAConfig,
    at_zero: np.ndarray,
    per_rps: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stable- and panic-window average concurrencies (requests) of ``fns`` at ``now``.

    ``windows`` (sampled here) holds the concurrency since each function's metric
    history began: Knative averages over the data it has, and its history restarts
    after a window without any (the autoscaler then starts a new one).
    ``per_rps`` (startup_aware; nan where no cap holds): cap each average at the arrival
    rate over its window (req/s) x ``per_rps`` (requests per req/s), the concurrency
    that sizes the function for its traffic rather than for its queue.
    ``at_zero`` (bool over ``fns``): no ready or starting pod at all. The activator then
    holds the requests and reports them at once: the instantaneous queued + in-flight
    count is a floor for both averages."""
    if windows.restarted >= now and (windows.origin[fns] >= now).all():
        # every history restarts now (a wake after a quiet window): no data, averages 0
        out = [np.zeros(fns.size), np.zeros(fns.size)]
    else:
        windows.sample(view, fns, now, counts)
        windows_s = (cfg.stable_window, cfg.panic_window)
        out = [_average(view, windows, fns, now, w, per_rps) for w in windows_s]
    stable, panic = out
    if np.count_nonzero(at_zero):
        z = fns[at_zero]
        waiting = (view.queued_counts(z) + view.in_flight_counts(z)).astype(float)
        stable[at_zero] = np.maximum(stable[at_zero], waiting)
        panic[at_zero] = np.maximum(panic[at_zero], waiting)
    return stable, panic


def _average(
    view: ClusterView,
    windows: ConcurrencyWindows,
    fns: np.ndarray,
    now: float,
    window: float,
    per_rps: np.ndarray | None,
) -> np.ndarray:
    """``windows.average`` over ``window`` s, capped where ``per_rps`` says (``collect``)."""
    c = windows.average(fns, now, window)
    if per_rps is not None:
        t0 = np.maximum(windows.origin[fns], now - window)
        capped = ~np.isnan(per_rps) & (now > t0)
        for start in np.unique(t0[capped]).tolist():
            sel = capped & (t0 == start)
            rate = view.arrival_counts(start, now)[fns[sel]] / (now - start)
            c[sel] = np.minimum(c[sel], rate * per_rps[sel])
    return c


# ---- actuation ----------------------------------------------------------------------------


def create_pods(function: str, n: int, batch: int, warm: int = 0) -> list[Action]:
    """``n`` whole-GPU pods for ``function``, the first ``warm`` of them without a cold
    start."""
    return [CreatePod(function, 100.0, 1.0, batch, exclusive=True, warm=i < warm) for i in range(n)]


def delete_pods(pods: list[PodInfo], desired: int) -> list[Action]:
    """Delete the live (ready or starting) ``pods`` beyond ``desired``, in the kit's
    ``deletion_order``."""
    serving = live(pods)
    return [DeletePod(p.id) for p in deletion_order(serving)[: len(serving) - desired]]


# ---- the autoscaler ---------------------------------------------------------------------


class KPAAutoscaler:
    """KServe/Knative: ``KPADeciders`` over all functions, deciding every ``cfg.tick`` s,
    and an immediate decision when a function at zero scale gets a request
    (wake_on_arrival; the simulation's queue buffers requests meanwhile, as the
    activator does).

    ``overhead`` (s per batch a pod is held besides its GPU time,
    ``ClusterConfig.pod_overhead_s``) enters only the startup_aware cap
    (``_startup_cap``)."""

    wake_on_arrival = True
    fast_paths = True  # scalar paths for one function (tests compare both)

    def __init__(self, cfg: KPAConfig, default_batch: int, overhead: float = 0.0) -> None:
        cfg.validate()
        self.cfg = cfg
        self.batch = default_batch if cfg.batch is None else cfg.batch
        validate_pod_request(100.0, 1.0, self.batch)
        self.overhead = overhead
        self.period_s: float | None = cfg.tick
        self._n = -1  # functions (set at the first call)
        self._n_gpus = 0  # the cluster's GPU count (fixed for a run)

    def _setup(self, view: ClusterView) -> None:
        cfg = self.cfg
        fns = view.functions()
        n = self._n = len(fns)
        self._names = [f.name for f in fns]
        self._n_gpus = len(view.gpus())
        self.deciders = KPADeciders(cfg, n)
        self.windows = ConcurrencyWindows(n, cfg.stable_window)
        self._eligible = view.workload_arrivals() > 0 if cfg.active_only else np.ones(n, dtype=bool)
        self._active = np.flatnonzero(self._eligible)  # the functions decided at ticks
        self._decided = np.zeros(n, dtype=bool)  # has a decider
        self._undecided = self._active.size  # eligible functions without a decider
        self._arrived = np.zeros(n, dtype=np.int64)  # arrivals up to the previous call
        self._previous = -math.inf  # s: the previous call
        # at zero and found idle (nothing queued or in flight) when ``_idle_arrived``
        # requests had arrived; stays idle until the next arrival (no pod meanwhile)
        self._idle = np.ones(n, dtype=bool)
        self._idle_arrived = np.zeros(n, dtype=np.int64)
        self._starting_seen = np.full(n, np.nan)  # s: last decision with pods starting
        self._per_rps = ModelTable(self._startup_concurrency(view))
        self._first = True
        # a wake for one function takes _wake_one (the general path's cases it covers)
        self._one_wake = self.fast_paths and cfg.min_pods == 0 and not cfg.startup_aware

    def _startup_concurrency(self, view: ClusterView) -> Callable[[str], float]:
        """Concurrency per req/s of arrivals (s) under the startup cap, by model: a pod
        serves mu = batch / (L(model, batch, 100 %, 1) + overhead) req/s, and the cap is
        target / (target_utilization x mu)."""
        cfg = self.cfg

        def value(model: str) -> float:
            mu = self.batch / (view.latency_s(model, self.batch, 100.0, 1.0) + self.overhead)
            return cfg.target_per_pod / (cfg.target_utilization * mu)

        return value

    def _startup_cap(
        self,
        view: ClusterView,
        fns: np.ndarray,
        starting: np.ndarray,
        serving: np.ndarray,
        now: float,
        counts: np.ndarray,
    ) -> np.ndarray | None:
        """startup_aware: concurrency per req/s of arrivals (s) of ``fns`` where the
        startup cap holds (nan elsewhere), else None; restarts the metric history of
        those where the cap lifts.

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
        seen = self._starting_seen
        seen[fns[starting[fns] > 0]] = now
        last = seen[fns]
        holds = last == now
        drain = ~holds & (now - last < cfg.stable_window)  # nan: False
        if drain.any():
            d = fns[drain]
            holds[drain] = view.queued_counts(d) > serving[d] * self.batch
        lift = fns[~np.isnan(last) & ~holds]
        seen[lift] = np.nan
        self.windows.restart(lift, now, counts)  # do not replay the startup backlog
        return np.where(holds, self._per_rps.of(view)[fns], np.nan)

    def _idle_at_zero(
        self, view: ClusterView, fns: np.ndarray, draining: np.ndarray, counts: np.ndarray
    ) -> np.ndarray:
        """Which of ``fns`` (functions at zero) have nothing queued and, if they still
        have draining pods, nothing in flight. Asks the view only for functions that
        got a request since they were last found idle."""
        known = self._idle[fns] & (self._idle_arrived[fns] == counts[fns])
        ask = fns[~known]
        if ask.size:
            idle = view.queued_counts(ask) == 0
            pods = draining[ask] > 0
            busy = ask[idle & pods]
            if busy.size:
                idle[idle & pods] = view.in_flight_counts(busy) == 0
            self._idle[ask] = idle
            self._idle_arrived[ask] = counts[ask]
            known[~known] = idle
        return known

    def decide(self, now: float, view: ClusterView) -> list[Action]:
        """At a tick every eligible function, at a wake those without live pods that got
        a request since the previous call: collect, decide, act where the count changes
        (module docstring)."""
        cfg = self.cfg
        if self._n < 0:
            self._setup(view)
        first, self._first = self._first, False
        fresh = view.arrival_counts(self._previous)  # arrivals since the previous call
        self._previous = now
        counts = self._arrived = self._arrived + fresh  # arrivals up to now
        starting, ready = view.pod_counts("starting"), view.pod_counts("ready")
        serving = starting + ready
        if view.cause is Call.TICK:
            fns = self._active
        else:  # a wake serves functions at zero that just got traffic
            fns = ((fresh > 0) & (serving == 0) & self._eligible).nonzero()[0]
        if self._undecided:
            new = fns[~self._decided[fns]]
            self._undecided -= new.size
            self._decided[new] = True
            self.deciders.start(new, now, ready[new])
            self.windows.restart(new, now, counts)
        if view.cause is not Call.TICK and fns.size == 1 and self._one_wake and not first:
            return self._wake_one(view, fns, now, counts, ready, serving)
        if cfg.min_pods == 0:
            zero = (serving[fns] == 0) & ~self.deciders.in_panic(fns)
            if np.count_nonzero(zero):
                z = fns[zero]
                idle = self._idle_at_zero(view, z, view.pod_counts("draining"), counts)
                busy = z[~idle]
                if busy.size:
                    t0 = now - cfg.stable_window
                    quiet = view.in_system_seconds(busy, t0, now) / (now - t0) == 0.0
                    self.windows.restart(busy[quiet], now, counts)  # traffic after a quiet window
                fns = np.concatenate([fns[~zero], busy])
                fns.sort()
            self._idle[fns] = False
        actions: list[tuple[int, int, int]] = []  # (function, desired, warm)
        warm = cfg.min_pods if first and cfg.prewarm_min else 0
        if warm:
            # prewarm_min: the revision was deployed (and idle) before the trace starts,
            # so its min_scale pods are already there and serving; the autoscaler has no
            # metric data yet, so it changes nothing (the activator floor of a function at
            # zero does not apply) ...
            cold = serving[fns] == 0
            w = fns[cold]
            actions.extend((int(i), warm, warm) for i in w)
            # ... and its metric history holds the idle stable window before t = 0
            before = view.arrival_counts(-math.inf, now - cfg.stable_window)
            self.windows.idle(w, now, counts, before)
            fns = fns[~cold]
        per_rps = self._startup_cap(view, fns, starting, serving, now, counts)
        if self.windows.restarted >= now and view.cause is Call.TICK:
            # a history that restarts now has no data yet: no change (Knative; a wake
            # decides only for functions without pods)
            keep = (serving[fns] == 0) | (self.windows.origin[fns] < now)
            fns = fns[keep]
            per_rps = None if per_rps is None else per_rps[keep]
        if fns.size:
            at_zero = serving[fns] == 0
            stable, panic = collect(view, self.windows, fns, now, counts, cfg, at_zero, per_rps)
            pods_in = ready[fns] + starting[fns] if cfg.startup_aware else ready[fns]
            desired = self.deciders.decide(fns, now, stable, panic, pods_in, serving[fns])
            act = desired != serving[fns]
            actions.extend((int(i), int(d), 0) for i, d in zip(fns[act], desired[act], strict=True))
        return self._actuate(view, sorted(actions), serving) if actions else []

    def _wake_one(
        self,
        view: ClusterView,
        fns: np.ndarray,
        now: float,
        counts: np.ndarray,
        ready: np.ndarray,
        serving: np.ndarray,
    ) -> list[Action]:
        """``decide`` at a wake for the one function ``fns[0]`` (at zero scale, decided
        before, scale to zero on, no startup cap): the same steps with Python scalars
        where the general path pays numpy's per-call cost on one-element arrays."""
        cfg, i = self.cfg, int(fns[0])
        if math.isnan(self.deciders.panic_time[i]):  # at zero: is anything waiting?
            if not (self._idle[i] and self._idle_arrived[i] == counts[i]):
                idle = bool(view.queued_counts(fns)[0] == 0)
                if idle and view.pod_counts("draining")[i] > 0:
                    idle = bool(view.in_flight_counts(fns)[0] == 0)
                self._idle[i] = idle
                self._idle_arrived[i] = counts[i]
            if self._idle[i]:
                return []
            t0 = now - cfg.stable_window
            if view.in_system_seconds(fns, t0, now)[0] / (now - t0) == 0.0:
                self.windows.restart(fns, now, counts)  # traffic after a quiet window
        self._idle[i] = False
        windows = self.windows
        if windows.restarted >= now and windows.origin[i] >= now:
            # no data yet (the history restarts now): the activator's count alone
            waiting = float(view.queued_counts(fns)[0] + view.in_flight_counts(fns)[0])
            stable = panic = max(0.0, waiting)
        else:
            at_zero = np.ones(1, dtype=bool)
            s_, p_ = collect(view, windows, fns, now, counts, cfg, at_zero)
            stable, panic = float(s_[0]), float(p_[0])
        have = int(serving[i])
        desired = self.deciders.decide_one(i, now, stable, panic, int(ready[i]), have)
        return self._actuate(view, [(i, desired, 0)], serving) if desired != have else []

    def _actuate(
        self, view: ClusterView, todo: list[tuple[int, int, int]], serving: np.ndarray
    ) -> list[Action]:
        """The actions for ``todo`` ((function, desired, warm) by function index): new
        pods up to the GPUs without any pod, or deletions."""
        grow = sum(max(0, d - int(serving[i])) for i, d, _ in todo)
        if not grow:
            free = 0
        else:
            # every pod holds at most one GPU: at least this many GPUs hold no pod
            free = self._n_gpus - int(sum(view.pod_counts(s).sum() for s in POD_STATES))
            if grow > free:  # the cap may bind: count the GPUs without a pod
                free = self._n_gpus - len({p.gpu for p in view.pods() if p.gpu is not None})
        out: list[Action] = []
        for i, desired, warm in todo:
            have = int(serving[i])
            if desired > have:
                n = min(desired - have, max(0, free))
                free -= n
                out.extend(create_pods(self._names[i], n, self.batch, warm))
            else:
                out.extend(delete_pods(view.pods_of(i), desired))
        return out


def build(cfg: KPAConfig, cluster_cfg: ClusterConfig) -> KPAAutoscaler:
    """The registry's factory: a KPA autoscaler with the cluster's default batch and the
    per-batch time a pod is held besides the GPU (``ClusterConfig.pod_overhead_s``)."""
    return KPAAutoscaler(cfg, cluster_cfg.max_batch, cluster_cfg.pod_overhead_s())
