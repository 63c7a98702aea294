"""HAS-GPU's hybrid autoscaler (SYSTEMS.md 2.1-2.4): vertical quota scaling first, then
horizontal pods, pinned to GPU rows by HGO order.

Units: rates and capacities in requests per second (req/s); SM partitions in percent
of the GPU's SMs; time quotas as fractions of the token window (hasim's unit; the
spec's "quota 10" is 0.1 here); times in simulated seconds; latencies from the view
in seconds, turned into milliseconds for the capacity formula.

Per decision (every ``period_s``, 2 s):

* every function's load predictor gets the measured rate m = arrivals over the last
  ``rate_window_s`` / ``rate_window_s`` (2.3);
* a function with no pods that has seen a request gets its first pod (scale to 1,
  never to 0), also between periods through ``wake_on_arrival``;
* a function with >= 1 ready pod is scaled (2.4) with capacity
  T = 1000 / (L + 70) * (b + 1) / 2 per pod, L = mean batch latency in ms (2.2).

The decision keeps a local copy of the GPU layout and updates it with its own
actions, so functions decided later in the same call see the quota and pods granted
earlier. Quota changes still in flight (issued less than ``cluster.quota_delay`` ago,
so the view still shows the old quota) are remembered: increases count as already
taken from their row, decreases free nothing until applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hasim.autoscale.base import (
    Action,
    ClusterView,
    CreatePod,
    DeletePod,
    PodInfo,
    UpdateQuota,
)
from hasim.autoscale.predictors import Predictor, make_predictor
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


def pod_capacity_rps(latency_ms: float, batch: int, overhead_ms: float = 70.0) -> float:
    """HAS-GPU pod capacity (req/s): 1000 / (L + overhead) * (b + 1) / 2 (SYSTEMS.md 2.2).

    latency_ms: mean batch latency L (ms); batch: max batch b; overhead_ms: fixed
    per-request time outside the GPU (ms).
    """
    return 1000.0 / (latency_ms + overhead_ms) * (batch + 1) / 2.0


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
        self.predictors: dict[str, Predictor] = {}
        self.predictions: dict[str, float] = {}
        self.measured: dict[str, float] = {}
        self.last_scale_down: dict[str, float] = {}
        self.history: list[tuple[float, str, float, float, float]] | None = [] if record else None
        self._pending: dict[int, tuple[float, float]] = {}  # pod -> (quota, applied by)
        self._next_tick = -math.inf
        self._seen: set[str] = set()  # functions that have had a request
        self._in_system: dict[str, list[tuple[float, int]]] = {}  # (s, queued + in service)
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
                t = pod_capacity_rps(lat_ms, batch, self.cfg.overhead_ms)
            self._cap_cache[key] = t
        return t

    def _zero_capacity(self, model: str) -> bool:
        name = model.lower()
        return any(k.lower() in name for k in self.cfg.zero_capacity_models)

    def measured_rate(self, view: ClusterView, name: str, now: float) -> float:
        """The measured rate m (req/s) of function ``name`` over the last rate_window_s:
        arrivals, or (rate_source ``completions``) requests that left the system:
        arrivals minus the growth of the queued + in-service count over the window
        (the count is recorded at every decision; 0 before the first)."""
        window = float(self.cfg.rate_window_s)
        arrived = view.arrivals(name, now - window, now)
        if self.cfg.rate_source == "arrivals":
            return arrived / window
        hist = self._in_system.setdefault(name, [])
        n_now = view.queue_length(name) + view.in_flight(name)
        n_then = 0
        for t, n in hist:  # the last record at or before now - window
            if t <= now - window + 1e-6:
                n_then = n
            else:
                break
        hist.append((now, n_now))
        while len(hist) > 1 and hist[1][0] <= now - window + 1e-6:
            hist.pop(0)
        return max(0.0, arrived - (n_now - n_then)) / window

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
        """Actions for this instant: periodic scaling on the 2-s ticks, and first pods
        for functions seen without pods at any call."""
        self._bind(view)
        first_call = self._next_tick == -math.inf
        tick = now >= self._next_tick - 1e-6
        if tick:
            self._next_tick = now + float(self.cfg.period_s)
        layout, by_fn = self._snapshot(now, view, tick)
        actions: list[Action] = []
        for spec in view.functions():
            name = spec.name
            if tick:
                m = self.measured_rate(view, name, now)
                pred = self._predictor(name).update(m)
                self.measured[name] = m
                self.predictions[name] = pred
            pods = by_fn.get(name)
            if pods is None:
                if first_call and self.cfg.prewarm_first_pod and view.total_arrivals(name) > 0:
                    self._first_pod(name, spec.model, layout.get(), actions, warm=True)
                elif name in self._seen or view.arrivals(name, -math.inf, now) > 0:
                    self._seen.add(name)
                    self._first_pod(name, spec.model, layout.get(), actions)
                continue
            if tick and any(p.ready for p in pods):
                self._scale(now, name, spec.model, pods, layout, actions)
        return actions

    def _predictor(self, name: str) -> Predictor:
        p = self.predictors.get(name)
        if p is None:
            c = self.cfg
            p = make_predictor(
                c.predictor,
                q=c.kalman_q,
                r=c.kalman_r,
                x0=c.kalman_x0,
                p0=c.kalman_p0,
                sqrt_gain=c.kalman_sqrt_gain,
                min_margin=c.kalman_min_margin_rps,
            )
            self.predictors[name] = p
        return p

    def _snapshot(
        self, now: float, view: ClusterView, full: bool
    ) -> tuple[RowLayout, dict[str, list[_Pod]]]:
        """A lazy copy of the layout and every function's live pods (effective quotas:
        in-flight targets); with ``full`` False (a wake between periods) the pod lists
        are left empty: only which functions have pods matters then."""
        gpus = RowLayout(view)
        by_fn: dict[str, list[_Pod]] = {}
        seen: set[int] = set()
        for p in view.pods():
            if p.state == "draining" or p.gpu is None or p.row < 0:
                continue
            seen.add(p.id)
            pods = by_fn.setdefault(p.function, [])
            if not full and p.id not in self._pending:
                continue
            q = float(p.quota)
            pend = self._pending.get(p.id)
            if pend is not None:
                if now >= pend[1] - 1e-9 or abs(pend[0] - q) < EPS:
                    del self._pending[p.id]
                else:
                    if pend[0] > q:  # an increase not yet applied: already taken
                        gpus.increases.append((p.gpu, p.row, float(p.sm_pct), pend[0] - q))
                    q = pend[0]
            if full:
                pods.append(_pod(p, q))
        for pid in [k for k in self._pending if k not in seen]:
            del self._pending[pid]
        return gpus, by_fn

    # ---- scaling -------------------------------------------------------------------
    def _scale(
        self,
        now: float,
        name: str,
        model: str,
        pods: list[_Pod],
        layout: RowLayout,
        actions: list[Action],
    ) -> None:
        c = self.cfg
        counted = pods if c.count_starting_pods else [p for p in pods if p.ready]
        cap = sum(self._cap(model, p.batch, p.sm, p.quota) for p in counted)
        pred = self.predictions.get(name, 0.0)
        if self.history is not None:
            self.history.append((now, name, self.measured.get(name, 0.0), pred, cap))
        if pred > c.scale_up_threshold * cap:
            demand = pred - c.scale_up_threshold * cap
            self._scale_up(now, name, model, pods, layout.get(), actions, demand)
        elif (
            pred < c.scale_down_threshold * cap
            and now - self.last_scale_down.get(name, -math.inf) >= c.cooldown_s - 1e-9
        ):
            demand = c.scale_up_threshold * cap - pred
            if self._scale_down(now, model, pods, actions, demand):
                self.last_scale_down[name] = now

    def _set_quota(
        self, now: float, pod: _Pod, quota: float, gpus: dict[int, RowGpu], actions: list[Action]
    ) -> None:
        quota = _r6(min(1.0, max(quota, self.cfg.update_min_quota)))
        delta = quota - pod.quota
        if delta > 0:
            g = gpus[pod.gpu]
            g.rows[pod.row].free = max(0.0, g.rows[pod.row].free - delta)
            g.hgo += pod.sm / 100.0 * delta
        pod.quota = quota
        self._pending[pod.id] = (quota, now + self.quota_delay_s)
        actions.append(UpdateQuota(pod.id, quota))

    def _scale_up(
        self,
        now: float,
        name: str,
        model: str,
        pods: list[_Pod],
        gpus: dict[int, RowGpu],
        actions: list[Action],
        demand: float,
    ) -> None:
        c = self.cfg
        step = c.quota_step
        # (a) vertical: pods by SM descending, quota up in steps to the row's free quota
        for pod in sorted(pods, key=lambda p: (-p.sm, p.id)):
            if demand <= EPS:
                return
            row = gpus[pod.gpu].rows[pod.row]
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
                self._set_quota(now, pod, best, gpus, actions)
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
            (g for g in gpus.values() if g.used and g.usable and g.hgo < c.hgo_threshold),
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
        for g in sorted(gpus.values(), key=lambda g: g.id):
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
            not g.used and g.usable and g.mem_free + EPS >= mem for g in gpus.values()
        ):
            return
        # (d) no unused GPU: least-HGO GPU regardless, small quota, empty row SM 50
        made = 0
        for g in sorted(gpus.values(), key=lambda g: (g.hgo, g.id)):
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

    def _scale_down(
        self,
        now: float,
        model: str,
        pods: list[_Pod],
        actions: list[Action],
        demand: float,
    ) -> bool:
        c = self.cfg
        step = c.quota_step
        acted = False
        # (a) vertical: pods by SM ascending, quota down in steps while the loss < D
        for pod in sorted(pods, key=lambda p: (p.sm, p.id)):
            if demand <= EPS:
                break
            if pod.quota <= c.min_quota + EPS:
                continue
            t0 = self._cap(model, pod.batch, pod.sm, pod.quota)
            best, loss = pod.quota, 0.0
            k = 1
            while True:
                q_new = _r6(max(pod.quota - k * step, c.min_quota))
                lost = t0 - self._cap(model, pod.batch, pod.sm, q_new)
                if lost >= demand:
                    break
                best, loss = q_new, lost
                if q_new <= c.min_quota + EPS:
                    break
                k += 1
            if best < pod.quota - EPS:
                # a decrease frees nothing locally until the scheduler applies it
                pod.quota = _r6(max(best, c.update_min_quota))
                self._pending[pod.id] = (pod.quota, now + self.quota_delay_s)
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
        name: str,
        model: str,
        gpus: dict[int, RowGpu],
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
            sm, quota = self.optimal_sm(model, self.predictions.get(name, 0.0)), c.default_quota
        else:
            sm, quota = c.default_sm, c.default_quota
        mem = self._mem(model)
        ok = [g for g in gpus.values() if g.usable and g.mem_free + EPS >= mem]
        used = sorted((g for g in ok if g.used), key=lambda g: (g.hgo, g.id))
        order = [g for g in used if g.hgo < c.first_pod_hgo]
        order += sorted((g for g in ok if not g.used), key=lambda g: g.id)
        if c.first_pod_fallback:
            order += [g for g in used if g.hgo >= c.first_pod_hgo]
        for g in order:
            spot = self._choose_row(g, sm, quota)
            if spot is not None:
                ri, s, q = spot
                self._create(name, model, batch, s, q, g, ri, mem, actions, warm)
                return


def _pod(p: PodInfo, quota: float) -> _Pod:
    return _Pod(
        p.id, float(p.sm_pct), quota, int(p.batch), int(p.gpu), int(p.row), p.state == "ready"
    )


def _validate(cfg: HASConfig) -> None:
    def bad(key: str, expected: str) -> InputError:
        return InputError(f"autoscaler.{key}={getattr(cfg, key)!r}", expected=expected)

    if not cfg.period_s > 0:
        raise bad("period_s", "a period in s > 0")
    if not cfg.rate_window_s > 0:
        raise bad("rate_window_s", "a window in s > 0")
    if cfg.predictor not in ("kalman", "last"):
        raise bad("predictor", "kalman or last")
    if cfg.rate_source not in ("arrivals", "completions"):
        raise bad("rate_source", "arrivals or completions")
    if cfg.max_pods is not None and cfg.max_pods < 1:
        raise bad("max_pods", "an integer >= 1 or null")
    if cfg.first_pod_config not in ("default", "optimal_sm", "efficient"):
        raise bad("first_pod_config", "default, optimal_sm or efficient")
    if not 0 < cfg.scale_down_threshold < cfg.scale_up_threshold:
        raise bad("scale_down_threshold", "0 < scale_down_threshold < scale_up_threshold")
    for key in ("quota_step", "min_quota", "update_min_quota", "default_quota", "fallback_quota"):
        if not 0 < getattr(cfg, key) <= 1:
            raise bad(key, "a quota fraction in (0, 1]")
    for key in ("default_sm", "fallback_sm", "optimal_sm_default"):
        if not 0 < getattr(cfg, key) <= 100:
            raise bad(key, "an SM percent in (0, 100]")
    if not cfg.grid_sm or any(not 0 < s <= 100 for s in cfg.grid_sm):
        raise bad("grid_sm", "a non-empty list of SM percents in (0, 100]")
    if not cfg.grid_quota or any(not 0 < q <= 1 for q in cfg.grid_quota):
        raise bad("grid_quota", "a non-empty list of quota fractions in (0, 1]")
    if cfg.default_batch < 1 or any(b < 1 for b in cfg.batch_by_model.values()):
        raise bad("default_batch", "batch sizes >= 1")
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
