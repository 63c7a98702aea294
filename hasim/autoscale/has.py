"""HAS-GPU's hybrid autoscaler (SYSTEMS.md 2.1-2.4): vertical quota scaling first, then
horizontal pods, pinned to GPU rows by HGO order.

Units: rates and capacities in requests per second (req/s); SM partitions in percent
of the GPU's SMs; time quotas as fractions of the token window (hasim's unit; the
spec's "quota 10" is 0.1 here); times in simulated seconds; latencies from the view
in seconds, turned into milliseconds for the capacity formula.

Per decision (every ``period_s``, 2 s: ``view.cause`` is ``Call.TICK``):

* every function's load predictor gets the measured rate m = arrivals over the last
  ``rate_window_s`` / ``rate_window_s`` (2.3);
* a function with no pods that has seen a request gets its first pod (scale to 1,
  never to 0), also between periods through ``wake_on_arrival`` (``Call.WAKE``);
* a function with >= 1 ready pod is scaled (2.4) with capacity
  T = 1000 / (L + 70) * (b + 1) / 2 per pod, L = mean batch latency in ms (2.2).

The decision runs over arrays of all functions: arrival counts from the view, the
predictions (one Kalman filter per function, updated together), each function's
capacity sum, pod counts and the two quantities that say whether a scale-down can act
(the capacity one quota step down loses, the smallest deletable pod's capacity). These
are kept per function and recomputed only for the functions whose pods changed (an
action of ours, a pod become ready, a quota change come due). Python-level work is
done only for the functions that act: a first pod, a scale-up (prediction above
``scale_up_threshold`` x capacity), or a scale-down that lowers a quota or deletes a
pod; they are decided in the order of ``view.functions()``.

The decision keeps a local copy of the GPU layout (read from the view only when a
function acts) and updates it with its own actions, so functions decided later in the
same call see the quota and pods granted earlier. Quota changes still in flight
(issued less than ``cluster.quota_delay`` ago, so the view still shows the old quota)
are remembered: increases count as already taken from their row, decreases free
nothing until applied.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from hasim.autoscale.base import (
    Action,
    Call,
    ClusterView,
    CreatePod,
    DeletePod,
    PodInfo,
    UpdateQuota,
)
from hasim.autoscale.kit import has_capacity_rps, require
from hasim.autoscale.predictors import PredictorBank, make_predictor_bank
from hasim.cluster.models import model_facts
from hasim.cluster.placement import RowGpu, RowLayout, row_order
from hasim.config.schema import ClusterConfig
from hasim.errors import InputError

EPS = 1e-9


@dataclass
class OptimalSMRule:
    """SM partition (%) for a new row of a model family: ``high`` when the demand still
    to cover D (req/s) is > ``threshold`` (req/s), else ``low``."""

    threshold: float = 0.0
    high: float = 50.0
    low: float = 50.0


def _default_optimal_sm() -> dict[str, OptimalSMRule]:
    # SYSTEMS.md 2.4: ResNet 50 if D > 25 else 30; BERT 70 if D > 30 else 50;
    # ConvNeXt 70 if D > 30 else 30; MobileNet 70 if D > 40 else 30; GPT 80.
    return {
        "resnet": OptimalSMRule(25.0, 50.0, 30.0),
        "bert": OptimalSMRule(30.0, 70.0, 50.0),
        "convnext": OptimalSMRule(30.0, 70.0, 30.0),
        "mobilenet": OptimalSMRule(40.0, 70.0, 30.0),
        "gpt": OptimalSMRule(0.0, 80.0, 80.0),
    }


def _grid_sm() -> list[float]:
    return [float(s) for s in range(10, 101, 10)]


def _grid_quota() -> list[float]:
    return [round(0.1 * k, 6) for k in range(1, 11)]


@dataclass
class HASConfig:
    """HAS-GPU autoscaler settings (SYSTEMS.md 2.1-2.4). Facts marked [inferred] are our
    reading, not the authors' statement.

    Prediction (2.3): period_s (s) between decisions; rate_window_s (s) of the measured
    rate; predictor ``kalman`` (2.3) or ``last`` (the last measured rate); kalman_q,
    kalman_r: process / measurement noise variances ((req/s)^2); kalman_x0 (req/s),
    kalman_p0 ((req/s)^2): initial state; kalman_sqrt_gain: multiple of sqrt(P) added
    to the estimate; kalman_min_margin_rps: the prediction is >= m + this (req/s).

    Capacity (2.2): overhead_ms (ms) of fixed per-request time in
    T = 1000 / (L + overhead_ms) * (b + 1) / 2.

    Scaling (2.4): scale_up_threshold, scale_down_threshold (fractions of capacity);
    quota_step, min_quota, update_min_quota (fractions of the window; updates are
    clamped at update_min_quota); hgo_threshold (GPU occupancy fraction) for
    horizontal scaling on used GPUs; new_gpu_min_capacity_rps (req/s) a new-GPU config
    must reach; default_sm (%), default_quota (fraction): the new-GPU config when no
    grid config reaches that floor, and the first pod's config; default_batch: a pod's
    max batch (requests); batch_by_model: max batch per model family (a key matches
    when it is a substring of the lower-case model name); cooldown_s (s) between
    scale-downs; optimal_sm: per model family, SM (%) of a new row; optimal_sm_default
    (%); fallback_sm (%), fallback_quota (fraction) of step (d); max_delete_sm (%):
    scale-down deletes only pods with SM <= this; grid_sm (%) x grid_quota (fraction):
    the profiled grid for the most efficient config and for a new pod's quota;
    first_pod_hgo: the first pod goes to the least-HGO used GPU below this occupancy,
    else an unused GPU.

    [inferred] knobs: first_pod_config: ``default`` (default_sm, default_quota; what
    the validation runs show), ``optimal_sm`` (optimalSM(model, prediction),
    default_quota) or ``efficient`` (the most efficient config); first_pod_fallback:
    with no GPU below first_pod_hgo and no unused GPU, try the used GPUs regardless
    of HGO; count_starting_pods: starting pods count towards capacity (else only ready
    pods); vertical_partial_step: the last quota step may be partial, up to the row's
    free quota; new_gpu_max_pods: most pods step (c) creates per function and
    decision (null = while the demand lasts and unused GPUs exist);
    fallback_max_pods: most pods step (d) creates per function and decision;
    prewarm_first_pod: at t = 0 every function with requests in the workload gets its
    first pod already running (deployed before the run, as in the validation runs)
    instead of a cold start at its first request.

    Deployment knobs (defaults keep the published algorithm): rate_source: what the
    measured rate m counts, ``arrivals`` (requests sent) or ``completions`` (requests
    answered, as the real controller's Prometheus query on the gateway's invocation
    counter does: under overload it sees the served rate, not the offered one);
    max_pods: most pods per function (null = no limit; steps (b)-(d) stop there);
    zero_capacity_models: model families (substrings of the lower-case model name)
    whose capacity T the controller takes as 0 req/s (the public code's profile lookup
    returns throughput 0 for a model name its profile table lacks): such a function's
    quota goes to its row's free quota at the first decision and never scales down.
    """

    kind: str = "has"
    period_s: float = 2.0  # s between decisions and predictor updates
    rate_window_s: float = 10.0  # s; m = arrivals in the window / window
    predictor: str = "kalman"  # kalman | last
    kalman_q: float = 1.0  # Q, (req/s)^2
    kalman_r: float = 10.0  # R, (req/s)^2
    kalman_x0: float = 0.0  # x0, req/s
    kalman_p0: float = 1.0  # P0, (req/s)^2
    kalman_sqrt_gain: float = 1.0  # x += gain * sqrt(P)
    kalman_min_margin_rps: float = 5.0  # x >= m + margin, req/s
    overhead_ms: float = 70.0  # ms in the capacity formula
    scale_up_threshold: float = 0.9  # fraction of capacity
    scale_down_threshold: float = 0.3  # fraction of capacity
    quota_step: float = 0.1  # quota fraction per step
    min_quota: float = 0.1  # quota fraction floor of scale-down
    update_min_quota: float = 0.05  # quota fraction clamp of every update
    hgo_threshold: float = 0.95  # GPU occupancy fraction
    new_gpu_min_capacity_rps: float = 35.0  # req/s
    default_sm: float = 30.0  # SM %
    default_quota: float = 0.3  # quota fraction
    default_batch: int = 4  # requests
    batch_by_model: dict[str, int] = field(default_factory=lambda: {"shufflenet": 8})
    cooldown_s: float = 10.0  # s between scale-downs of a function
    optimal_sm: dict[str, OptimalSMRule] = field(default_factory=_default_optimal_sm)
    optimal_sm_default: float = 50.0  # SM %
    fallback_sm: float = 50.0  # SM % of an empty row in step (d)
    fallback_quota: float = 0.1  # quota fraction in step (d)
    max_delete_sm: float = 50.0  # SM %
    grid_sm: list[float] = field(default_factory=_grid_sm)  # SM %
    grid_quota: list[float] = field(default_factory=_grid_quota)  # quota fractions
    first_pod_hgo: float = 0.5  # GPU occupancy fraction
    first_pod_config: str = "default"  # [inferred] default | optimal_sm | efficient
    first_pod_fallback: bool = True  # [inferred]
    count_starting_pods: bool = True  # [inferred]
    vertical_partial_step: bool = True  # [inferred]
    new_gpu_max_pods: int | None = None  # [inferred] pods per function and decision
    fallback_max_pods: int = 1  # [inferred] pods per function and decision
    prewarm_first_pod: bool = False  # [inferred]
    rate_source: str = "arrivals"  # arrivals | completions (the gateway counter)
    max_pods: int | None = None  # pods per function; null = no limit
    zero_capacity_models: list[str] = field(default_factory=list)  # T = 0 for these


def _floor6(x: float) -> float:
    """Round a quota down to 1e-6 so float noise never exceeds a row's free quota."""
    return math.floor(x * 1e6 + 1e-6) / 1e6


def _r6(x: float) -> float:
    return round(x, 6)


@dataclass
class _Pod:
    id: int
    sm: float
    quota: float  # effective quota: the pending target when an update is in flight
    batch: int
    gpu: int
    row: int
    ready: bool


class _Functions:
    """Per-function state of the pods, arrays indexed like ``view.functions()``: the
    cached pod lists and what the vectorised decision needs of them."""

    def __init__(self, n: int) -> None:
        self.pods: list[list[_Pod]] = [[] for _ in range(n)]
        self.starting = np.zeros(n, dtype=np.int64)  # view's pod counts when last read
        self.ready = np.zeros(n, dtype=np.int64)
        self.n_pods = np.zeros(n, dtype=np.int64)  # live pods placed in rows
        self.n_ready = np.zeros(n, dtype=np.int64)  # of which ready
        self.cap = np.zeros(n)  # capacity: sum of T over the counted pods, req/s
        self.up_at = np.zeros(n)  # scale_up_threshold x cap, req/s
        self.down_at = np.zeros(n)  # scale_down_threshold x cap, req/s
        self.step_loss = np.full(n, math.inf)  # least T lost by one quota step down, req/s
        self.delete_cap = np.full(n, math.inf)  # least T of a deletable pod, req/s


class HASAutoscaler:
    """HAS-GPU's hybrid autoscaler. ``decide`` every ``period_s`` s and at the first
    arrival of a function with no pods (``wake_on_arrival``)."""

    wake_on_arrival = True

    def __init__(
        self,
        cfg: HASConfig,
        quota_delay_s: float = 0.04,
        model_memory_mb: dict[str, float] | None = None,
        record: bool = False,
    ) -> None:
        """cfg: the settings; quota_delay_s: s until a quota update is applied
        (cluster.quota_delay); model_memory_mb: per-model GPU memory overrides (MB);
        record: keep ``history`` rows (time, function, measured, prediction, capacity)
        of every periodic decision (tests, debugging)."""
        _validate(cfg)
        self.cfg = cfg
        self.period_s: float | None = cfg.period_s
        self.quota_delay_s = float(quota_delay_s)
        self.model_memory_mb = dict(model_memory_mb or {})
        self.history: list[tuple[float, str, float, float, float]] | None = [] if record else None
        # per function (arrays indexed like view.functions(), made at the first call)
        self.measured = np.zeros(0)  # m of the last tick, req/s
        self.predictions = np.zeros(0)  # prediction of the last tick, req/s
        self.last_scale_down = np.zeros(0)  # s; -inf before the first
        self._predictor: PredictorBank | None = None
        self._arrived = np.zeros(0, dtype=bool)  # functions that have had a request
        self._arrived_at = -math.inf  # s; _arrived counts the requests up to then
        self._fns = _Functions(0)
        self._totals: np.ndarray | None = None  # requests per function (prewarm_first_pod)
        self._dirty: set[int] = set()  # functions whose pod cache must be re-read
        self._pending: dict[int, tuple[float, float, int]] = {}  # pod -> quota, by, function
        self._in_system: list[tuple[float, np.ndarray]] = []  # (s, queued + in service)
        self._cap_cache: dict[tuple[str, int, float, float], float] = {}
        self._eff_cache: dict[tuple[str, int], tuple[float, float, float]] = {}
        self._mem_cache: dict[str, float] = {}
        self._cache_view: object | None = None
        self._view: ClusterView | None = None
        self._quotas = sorted({_r6(q) for q in cfg.grid_quota})
        self._sms = sorted({float(s) for s in cfg.grid_sm})

    # ---- lookups (cached) ----------------------------------------------------------
    def _bind(self, view: ClusterView) -> None:
        if view is not self._cache_view:
            self._cap_cache.clear()
            self._eff_cache.clear()
            self._cache_view = view
        self._view = view

    def capacity(self, view: ClusterView, model: str, batch: int, sm: float, quota: float) -> float:
        """Capacity T (req/s) of a pod (model, batch, sm %, quota fraction), cached."""
        self._bind(view)
        return self._cap(model, batch, sm, quota)

    def _cap(self, model: str, batch: int, sm: float, quota: float) -> float:
        key = (model, batch, float(sm), _r6(quota))
        t = self._cap_cache.get(key)
        if t is None:
            assert self._view is not None
            if self._zero_capacity(model):
                t = 0.0
            else:
                lat_ms = 1000.0 * self._view.latency_s(model, batch, key[2], key[3])
                t = has_capacity_rps(lat_ms, batch, self.cfg.overhead_ms)
            self._cap_cache[key] = t
        return t

    def _zero_capacity(self, model: str) -> bool:
        name = model.lower()
        return any(k.lower() in name for k in self.cfg.zero_capacity_models)

    def measured_rates(
        self, view: ClusterView, now: float, arrived: np.ndarray | None = None
    ) -> np.ndarray:
        """The measured rate m (req/s) of every function over the last rate_window_s:
        arrivals, or (rate_source ``completions``) requests that left the system:
        arrivals minus the growth of the queued + in-service count over the window
        (the counts are recorded at every call of this method; 0 before the first).
        arrived: the arrivals of the window, if already read from the view."""
        window = float(self.cfg.rate_window_s)
        if arrived is None:
            arrived = view.arrival_counts(now - window)
        if self.cfg.rate_source == "arrivals":
            return arrived / window
        every = np.arange(arrived.size)
        n_now = view.queued_counts(every) + view.in_flight_counts(every)
        hist = self._in_system
        n_then = np.zeros_like(n_now)
        for t, n in hist:  # the last record at or before now - window
            if t <= now - window + 1e-6:
                n_then = n
            else:
                break
        hist.append((now, n_now))
        while len(hist) > 1 and hist[1][0] <= now - window + 1e-6:
            hist.pop(0)
        return np.maximum(0.0, arrived - (n_now - n_then)) / window

    def batch_for(self, model: str) -> int:
        """Max batch of a new pod of ``model`` (requests)."""
        name = model.lower()
        for key, b in self.cfg.batch_by_model.items():
            if key.lower() in name:
                return int(b)
        return int(self.cfg.default_batch)

    def optimal_sm(self, model: str, demand: float) -> float:
        """SM partition (%) of a new row for ``model`` when ``demand`` req/s remain."""
        name = model.lower()
        for key, rule in self.cfg.optimal_sm.items():
            if key.lower() in name:
                return float(rule.high if demand > rule.threshold else rule.low)
        return float(self.cfg.optimal_sm_default)

    def most_efficient_config(
        self, view: ClusterView, model: str, batch: int
    ) -> tuple[float, float, float]:
        """(sm %, quota, T req/s) maximising T / (sm * quota) over the grid among configs
        with T >= new_gpu_min_capacity_rps; (default_sm, default_quota, T) when none
        reaches it. Ties go to the larger T, then the smaller SM and quota."""
        self._bind(view)
        return self._efficient(model, batch)

    def _efficient(self, model: str, batch: int) -> tuple[float, float, float]:
        key = (model, batch)
        hit = self._eff_cache.get(key)
        if hit is not None:
            return hit
        best: tuple[float, float, float, float] | None = None  # eff, T, -s, -q
        choice = (self.cfg.default_sm, self.cfg.default_quota)
        for s in self._sms:
            for q in self._quotas:
                t = self._cap(model, batch, s, q)
                if t + EPS < self.cfg.new_gpu_min_capacity_rps:
                    continue
                cand = (t / (s * q), t, -s, -q)
                if best is None or cand > best:
                    best, choice = cand, (s, q)
        out = (choice[0], choice[1], self._cap(model, batch, choice[0], choice[1]))
        self._eff_cache[key] = out
        return out

    def _mem(self, model: str) -> float:
        m = self._mem_cache.get(model)
        if m is None:
            m = model_facts(model, self.model_memory_mb).gpu_mem_mb
            self._mem_cache[model] = m
        return m

    # ---- the decision ----------------------------------------------------------------
    def decide(self, now: float, view: ClusterView) -> list[Action]:
        """Actions for this instant: periodic scaling on the ticks, and first pods for
        functions seen without pods at any call."""
        self._bind(view)
        first_call = self._predictor is None
        if first_call:
            self._start(view)
        layout = RowLayout(view)
        self._settle_pending(now, view, layout)
        self._sync(view)
        tick = view.cause is Call.TICK
        window = None
        if tick:
            window = view.arrival_counts(now - self.cfg.rate_window_s)
            self._predict(now, view, window)
        act = self._needs_first_pod(now, view, first_call, window)
        if tick:
            act |= self._needs_scaling(now)
        acting = np.flatnonzero(act)
        if acting.size == 0:
            return []
        specs = view.functions()
        fns = self._fns
        actions: list[Action] = []
        for i in acting.tolist():
            spec = specs[i]
            n0 = len(actions)
            if fns.n_pods[i] == 0:
                warm = bool(first_call and self._totals is not None and self._totals[i] > 0)
                self._first_pod(i, spec.name, spec.model, layout, actions, warm)
            else:
                self._scale(now, i, spec.name, spec.model, layout, actions)
            if len(actions) > n0:
                self._dirty.add(i)
        return actions

    def _start(self, view: ClusterView) -> None:
        """The per-function arrays, at the first call."""
        c = self.cfg
        n = len(view.functions())
        self._predictor = make_predictor_bank(
            c.predictor,
            n,
            q=c.kalman_q,
            r=c.kalman_r,
            x0=c.kalman_x0,
            p0=c.kalman_p0,
            sqrt_gain=c.kalman_sqrt_gain,
            min_margin=c.kalman_min_margin_rps,
        )
        self.measured = np.zeros(n)
        self.predictions = np.zeros(n)
        self.last_scale_down = np.full(n, -math.inf)
        self._fns = _Functions(n)
        self._arrived = np.zeros(n, dtype=bool)
        self._totals = view.workload_arrivals() if c.prewarm_first_pod else None

    def _predict(self, now: float, view: ClusterView, window: np.ndarray) -> None:
        """Feed every function's predictor its measured rate (a tick); ``window``: the
        arrivals of the last rate_window_s."""
        assert self._predictor is not None
        self.measured = self.measured_rates(view, now, window)
        self.predictions = self._predictor.update(self.measured)
        if self.history is not None:
            fns, specs = self._fns, view.functions()
            for i in np.flatnonzero(fns.n_ready > 0).tolist():
                self.history.append(
                    (
                        now,
                        specs[i].name,
                        float(self.measured[i]),
                        float(self.predictions[i]),
                        float(fns.cap[i]),
                    )
                )

    def _needs_first_pod(
        self, now: float, view: ClusterView, first_call: bool, window: np.ndarray | None
    ) -> np.ndarray:
        """Functions with no pods that get their first one now: they have had a request
        (or, at the first call with prewarm_first_pod, have requests in the workload).
        ``window``: at a tick, the arrivals of the last rate_window_s."""
        none = self._fns.n_pods == 0
        if not none.any():
            return none
        if (none & ~self._arrived).any():
            if window is not None and self._arrived_at >= now - self.cfg.rate_window_s:
                self._arrived |= window > 0  # what arrived since the last look is in it
            else:
                self._arrived = view.arrival_counts(-math.inf) > 0
            self._arrived_at = now
        want = self._arrived
        if first_call and self._totals is not None:
            want = want | (self._totals > 0)
        return none & want

    def _needs_scaling(self, now: float) -> np.ndarray:
        """Functions whose scaling acts at this tick (``_scale``): a ready pod and either
        prediction > up x capacity (scale-up: every step (a)-(d) is tried), or
        prediction < down x capacity with the cooldown over, and a quota step down or a
        deletion fits in the demand D = up x capacity - prediction (exactly the
        conditions under which ``_scale_down`` acts)."""
        c, fns, pred = self.cfg, self._fns, self.predictions
        ready = fns.n_ready > 0
        up = pred > fns.up_at
        down = pred < fns.down_at
        if down.any():
            demand = fns.up_at - pred
            down &= (
                (now - self.last_scale_down >= c.cooldown_s - 1e-9)
                & (demand > EPS)
                & ((fns.step_loss < demand) | ((fns.n_pods > 1) & (fns.delete_cap <= demand + EPS)))
            )
            up |= down
        return ready & up

    # ---- the pods of each function ---------------------------------------------------
    def _settle_pending(self, now: float, view: ClusterView, layout: RowLayout) -> None:
        """Forget quota changes that are applied, due or moot (pod gone); the increases
        still in flight are taken from their rows in ``layout`` (in pod id order)."""
        for pid in sorted(self._pending):
            quota, due, fn = self._pending[pid]
            p = next((p for p in view.pods_of(fn) if p.id == pid), None)
            if (
                p is None
                or p.state == "draining"
                or not _placed(p)
                or now >= due - 1e-9
                or abs(quota - p.quota) < EPS
            ):
                del self._pending[pid]
                self._dirty.add(fn)
            elif quota > p.quota:  # an increase not yet applied: already taken
                layout.increases.append((int(p.gpu), p.row, float(p.sm_pct), quota - p.quota))

    def _sync(self, view: ClusterView) -> None:
        """Re-read the pods of the functions that acted, whose quota change came due, or
        whose starting / ready pod counts changed since the last call."""
        fns = self._fns
        starting, ready = view.pod_counts("starting"), view.pod_counts("ready")
        changed = np.flatnonzero((starting != fns.starting) | (ready != fns.ready))
        if changed.size:
            fns.starting[changed] = starting[changed]
            fns.ready[changed] = ready[changed]
            self._dirty.update(changed.tolist())
        if not self._dirty:
            return
        specs = view.functions()
        for i in sorted(self._dirty):
            self._read_pods(view, i, specs[i].model)
        self._dirty.clear()

    def _read_pods(self, view: ClusterView, i: int, model: str) -> None:
        """Function ``i``'s live pods placed in rows (effective quotas: in-flight
        targets) and its per-function summaries."""
        c, fns = self.cfg, self._fns
        pods = []
        for p in view.pods_of(i):
            if p.state != "draining" and _placed(p):
                pend = self._pending.get(p.id)
                pods.append(_pod(p, float(p.quota) if pend is None else pend[0]))
        fns.pods[i] = pods
        counted = pods if c.count_starting_pods else [p for p in pods if p.ready]
        cap = sum(self._cap(model, p.batch, p.sm, p.quota) for p in counted)
        fns.cap[i] = cap
        fns.up_at[i] = c.scale_up_threshold * cap
        fns.down_at[i] = c.scale_down_threshold * cap
        fns.n_pods[i] = len(pods)
        fns.n_ready[i] = sum(p.ready for p in pods)
        fns.step_loss[i] = min(
            (self._step_down(model, p, 1)[1] for p in pods if p.quota > c.min_quota + EPS),
            default=math.inf,
        )
        fns.delete_cap[i] = min(
            (
                self._cap(model, p.batch, p.sm, p.quota)
                for p in pods
                if p.sm <= c.max_delete_sm + EPS
            ),
            default=math.inf,
        )

    # ---- scaling -------------------------------------------------------------------
    def _scale(
        self,
        now: float,
        i: int,
        name: str,
        model: str,
        layout: RowLayout,
        actions: list[Action],
    ) -> None:
        c = self.cfg
        pods = self._fns.pods[i]
        cap = float(self._fns.cap[i])
        pred = float(self.predictions[i])
        if pred > c.scale_up_threshold * cap:
            demand = pred - c.scale_up_threshold * cap
            self._scale_up(now, i, name, model, pods, layout, actions, demand)
        elif (
            pred < c.scale_down_threshold * cap
            and now - self.last_scale_down[i] >= c.cooldown_s - 1e-9
        ):
            demand = c.scale_up_threshold * cap - pred
            if self._scale_down(now, i, model, pods, actions, demand):
                self.last_scale_down[i] = now

    def _set_quota(
        self,
        now: float,
        fn: int,
        pod: _Pod,
        quota: float,
        layout: RowLayout,
        actions: list[Action],
    ) -> None:
        quota = _r6(min(1.0, max(quota, self.cfg.update_min_quota)))
        delta = quota - pod.quota
        if delta > 0:
            g = layout.gpu(pod.gpu)
            g.rows[pod.row].free = max(0.0, g.rows[pod.row].free - delta)
            g.hgo += pod.sm / 100.0 * delta
        pod.quota = quota
        self._pending[pod.id] = (quota, now + self.quota_delay_s, fn)
        actions.append(UpdateQuota(pod.id, quota))

    def _scale_up(
        self,
        now: float,
        fn: int,
        name: str,
        model: str,
        pods: list[_Pod],
        layout: RowLayout,
        actions: list[Action],
        demand: float,
    ) -> None:
        c = self.cfg
        step = c.quota_step
        # (a) vertical: pods by SM descending, quota up in steps to the row's free quota
        for pod in sorted(pods, key=lambda p: (-p.sm, p.id)):
            if demand <= EPS:
                return
            row = layout.gpu(pod.gpu).rows[pod.row]
            q_max = min(1.0, _floor6(pod.quota + row.free))
            if q_max <= pod.quota + EPS:
                continue
            t0 = self._cap(model, pod.batch, pod.sm, pod.quota)
            best, gain = pod.quota, 0.0
            k = 1
            while True:
                q_new = _r6(pod.quota + k * step)
                if q_new > q_max + EPS:
                    if not c.vertical_partial_step or best >= q_max - EPS:
                        break
                    q_new = q_max
                best = q_new
                gain = self._cap(model, pod.batch, pod.sm, q_new) - t0
                if gain >= demand or q_new >= q_max - EPS:
                    break
                k += 1
            if best > pod.quota + EPS:
                self._set_quota(now, fn, pod, best, layout, actions)
                demand -= gain
        room = math.inf if c.max_pods is None else c.max_pods - len(pods)
        if demand <= EPS or room <= 0:
            return
        n0 = len(actions)

        def full() -> bool:  # max_pods reached by the pods created in this decision
            return sum(isinstance(a, CreatePod) for a in actions[n0:]) >= room

        batch = self.batch_for(model)
        mem = self._mem(model)
        # (b) horizontal on used GPUs with HGO < threshold, least HGO first
        used = sorted(
            (g for g in layout.used() if g.usable and g.hgo < c.hgo_threshold),
            key=lambda g: (g.hgo, g.id),
        )
        for g in used:
            if demand <= EPS:
                return
            sm_pref = self.optimal_sm(model, demand)
            for ri in row_order(g, sm_pref):
                if demand <= EPS or g.hgo >= c.hgo_threshold or g.mem_free + EPS < mem:
                    break
                if full():
                    return
                row = g.rows[ri]
                if row.sm > 0:
                    sm, free = row.sm, _floor6(row.free)
                else:
                    sm, free = self.optimal_sm(model, demand), 1.0
                    if g.other_sm(ri) + sm > 100.0 + EPS:
                        continue
                q = self._best_quota(model, batch, sm, free)
                if q is None:
                    continue
                demand -= self._create(name, model, batch, sm, q, g, ri, mem, actions)
        if demand <= EPS:
            return
        # (c) unused GPUs: the most efficient config
        made = 0
        for g in layout.by_id():
            if demand <= EPS or (c.new_gpu_max_pods is not None and made >= c.new_gpu_max_pods):
                return
            if full():
                return
            if g.used or not g.usable or g.mem_free + EPS < mem:
                continue
            sm, q, _ = self._efficient(model, batch)
            demand -= self._create(name, model, batch, sm, q, g, 0, mem, actions)
            made += 1
        if demand <= EPS or any(
            not g.used and g.usable and g.mem_free + EPS >= mem for g in layout.by_id()
        ):
            return
        # (d) no unused GPU: least-HGO GPU regardless, small quota, empty row SM 50
        made = 0
        for g in sorted(layout.by_id(), key=lambda g: (g.hgo, g.id)):
            if made >= c.fallback_max_pods or demand <= EPS or full():
                return
            if not g.usable or g.mem_free + EPS < mem:
                continue
            spot = self._choose_row(g, c.fallback_sm, c.fallback_quota)
            if spot is None:
                continue
            ri, sm, q = spot
            demand -= self._create(name, model, batch, sm, q, g, ri, mem, actions)
            made += 1

    def _best_quota(self, model: str, batch: int, sm: float, free: float) -> float | None:
        """The grid quota <= ``free`` giving the most capacity (ties: the smaller)."""
        best: tuple[float, float] | None = None
        for q in self._quotas:
            if q > free + EPS:
                break
            t = self._cap(model, batch, sm, q)
            if best is None or t > best[0] + EPS:
                best = (t, q)
        return None if best is None else best[1]

    def _choose_row(self, g: RowGpu, sm: float, quota: float) -> tuple[int, float, float] | None:
        """SYSTEMS.md 2.1: a row with the same SM size and room for ``quota``, else an
        empty row the SM size fits, else the row with the most free quota (inheriting its
        SM size, quota cut to what is free, >= update_min_quota). (row, sm, quota)."""
        for i, r in enumerate(g.rows):
            if r.sm > 0 and abs(r.sm - sm) < EPS and r.free + EPS >= quota:
                return i, sm, quota
        for i, r in enumerate(g.rows):
            if r.sm == 0 and g.other_sm(i) + sm <= 100.0 + EPS:
                return i, sm, quota
        rows = [(r.free, -i) for i, r in enumerate(g.rows) if r.sm > 0]
        if rows:
            free, neg = max(rows)
            q = _floor6(min(quota, free))
            if q + EPS >= self.cfg.update_min_quota:
                return -neg, g.rows[-neg].sm, q
        return None

    def _create(
        self,
        name: str,
        model: str,
        batch: int,
        sm: float,
        quota: float,
        g: RowGpu,
        row: int,
        mem: float,
        actions: list[Action],
        warm: bool = False,
    ) -> float:
        """Emit a pinned CreatePod, book it in the local layout; returns its T (req/s)."""
        r = g.rows[row]
        if r.sm == 0:
            r.sm, r.free = sm, 1.0
        r.free = max(0.0, r.free - quota)
        g.hgo += sm / 100.0 * quota
        g.mem_free -= mem
        g.used = True
        actions.append(CreatePod(name, sm, quota, batch, gpu=g.id, row=row, warm=warm))
        return self._cap(model, batch, sm, quota)

    def _step_down(self, model: str, pod: _Pod, k: int) -> tuple[float, float]:
        """Quota ``k`` steps below the pod's (not below min_quota) and the capacity lost
        (req/s)."""
        c = self.cfg
        q_new = _r6(max(pod.quota - k * c.quota_step, c.min_quota))
        t0 = self._cap(model, pod.batch, pod.sm, pod.quota)
        return q_new, t0 - self._cap(model, pod.batch, pod.sm, q_new)

    def _scale_down(
        self,
        now: float,
        fn: int,
        model: str,
        pods: list[_Pod],
        actions: list[Action],
        demand: float,
    ) -> bool:
        c = self.cfg
        acted = False
        # (a) vertical: pods by SM ascending, quota down in steps while the loss < D
        for pod in sorted(pods, key=lambda p: (p.sm, p.id)):
            if demand <= EPS:
                break
            if pod.quota <= c.min_quota + EPS:
                continue
            best, loss = pod.quota, 0.0
            k = 1
            while True:
                q_new, lost = self._step_down(model, pod, k)
                if lost >= demand:
                    break
                best, loss = q_new, lost
                if q_new <= c.min_quota + EPS:
                    break
                k += 1
            if best < pod.quota - EPS:
                # a decrease frees nothing locally until the scheduler applies it
                pod.quota = _r6(max(best, c.update_min_quota))
                self._pending[pod.id] = (pod.quota, now + self.quota_delay_s, fn)
                actions.append(UpdateQuota(pod.id, pod.quota))
                demand -= loss
                acted = True
        # (b) delete small pods whose capacity fits in what remains, never the last pod
        left = len(pods)
        for pod in sorted(pods, key=lambda p: (p.sm, p.id)):
            if left <= 1 or demand <= EPS:
                break
            if pod.sm > c.max_delete_sm + EPS:
                continue
            t = self._cap(model, pod.batch, pod.sm, pod.quota)
            if t <= demand + EPS:
                actions.append(DeletePod(pod.id))
                self._pending.pop(pod.id, None)
                demand -= t
                left -= 1
                acted = True
        return acted

    # ---- scale to one ------------------------------------------------------------------
    def _first_pod(
        self,
        fn: int,
        name: str,
        model: str,
        layout: RowLayout,
        actions: list[Action],
        warm: bool = False,
    ) -> None:
        """The first pod: least-HGO used GPU with HGO < first_pod_hgo, else an unused
        GPU (else, with first_pod_fallback, the least-HGO GPU regardless). warm: the pod
        exists before the run (no cold start)."""
        c = self.cfg
        batch = self.batch_for(model)
        if c.first_pod_config == "efficient":
            sm, quota, _ = self._efficient(model, batch)
        elif c.first_pod_config == "optimal_sm":
            sm, quota = self.optimal_sm(model, float(self.predictions[fn])), c.default_quota
        else:
            sm, quota = c.default_sm, c.default_quota
        mem = self._mem(model)

        def ok(g: RowGpu) -> bool:
            return g.usable and g.mem_free + EPS >= mem

        used = sorted((g for g in layout.used() if ok(g)), key=lambda g: (g.hgo, g.id))
        order = itertools.chain(
            (g for g in used if g.hgo < c.first_pod_hgo),
            (g for g in layout.by_id() if not g.used and ok(g)),  # read as reached
            (g for g in used if g.hgo >= c.first_pod_hgo) if c.first_pod_fallback else (),
        )
        for g in order:
            spot = self._choose_row(g, sm, quota)
            if spot is not None:
                ri, s, q = spot
                self._create(name, model, batch, s, q, g, ri, mem, actions, warm)
                return


def _placed(p: PodInfo) -> bool:
    """The pod sits in a GPU row (not a rectangle-placed pod)."""
    return p.gpu is not None and p.row >= 0


def _pod(p: PodInfo, quota: float) -> _Pod:
    return _Pod(
        p.id, float(p.sm_pct), quota, int(p.batch), int(p.gpu), int(p.row), p.state == "ready"
    )


def _validate(cfg: HASConfig) -> None:
    quota = "a quota fraction in (0, 1]"
    sm = "an SM percent in (0, 100]"
    require(
        cfg,
        [
            (cfg.period_s > 0, "period_s", "a period in s > 0"),
            (cfg.rate_window_s > 0, "rate_window_s", "a window in s > 0"),
            (cfg.predictor in ("kalman", "last"), "predictor", "kalman or last"),
            (
                cfg.rate_source in ("arrivals", "completions"),
                "rate_source",
                "arrivals or completions",
            ),
            (cfg.max_pods is None or cfg.max_pods >= 1, "max_pods", "an integer >= 1 or null"),
            (
                cfg.first_pod_config in ("default", "optimal_sm", "efficient"),
                "first_pod_config",
                "default, optimal_sm or efficient",
            ),
            (
                0 < cfg.scale_down_threshold < cfg.scale_up_threshold,
                "scale_down_threshold",
                "0 < scale_down_threshold < scale_up_threshold",
            ),
            *(
                (0 < getattr(cfg, key) <= 1, key, quota)
                for key in (
                    "quota_step",
                    "min_quota",
                    "update_min_quota",
                    "default_quota",
                    "fallback_quota",
                )
            ),
            *(
                (0 < getattr(cfg, key) <= 100, key, sm)
                for key in ("default_sm", "fallback_sm", "optimal_sm_default")
            ),
            (
                bool(cfg.grid_sm) and all(0 < s <= 100 for s in cfg.grid_sm),
                "grid_sm",
                "a non-empty list of SM percents in (0, 100]",
            ),
            (
                bool(cfg.grid_quota) and all(0 < q <= 1 for q in cfg.grid_quota),
                "grid_quota",
                "a non-empty list of quota fractions in (0, 1]",
            ),
            (
                cfg.default_batch >= 1 and all(b >= 1 for b in cfg.batch_by_model.values()),
                "default_batch",
                "batch sizes >= 1",
            ),
        ],
    )
    for fam, rule in cfg.optimal_sm.items():
        if not (0 < rule.high <= 100 and 0 < rule.low <= 100):
            raise InputError(
                f"autoscaler.optimal_sm.{fam}={rule!r}", expected="SM percents in (0, 100]"
            )


def build(cfg: HASConfig, cluster_cfg: ClusterConfig) -> HASAutoscaler:
    """The HAS-GPU autoscaler for a cluster (quota delay and memory overrides from it)."""
    return HASAutoscaler(
        cfg, quota_delay_s=cluster_cfg.quota_delay, model_memory_mb=cluster_cfg.model_memory_mb
    )
