"""FaST-GShare's autoscaler and 2-D placement (SYSTEMS.md 3; ICPP 2023 and its code).

Profile (FaST-Profiler): per (model, batch) the grid quota x SM (default {0.2, 0.4, 0.6,
0.8, 1.0} x {6, 12, 24, 50, 60, 80, 100} %) gets a throughput ``T`` in requests/s,
computed here from the simulation's latency model (``view.latency_s``) by the
configured throughput model (``throughput``):

* ``saturated`` (default): ``T = b / (L(b, s, q) + overhead)``. The sustained rate a
  closed loop of >= b clients (FaST-Profiler used 10) measures on one *simulated* pod:
  the pod serves full batches of ``b`` back to back and each holds ``L + overhead``
  seconds. So the autoscaler's T is exactly the simulated pod's capacity.
* ``has``: HAS-GPU's capacity formula ``T = (b + 1) / 2 / (L(b) + overhead)``.
* ``closed_loop``: batch-1 closed loop, ``T = 1 / (L(1) + overhead)``.
* ``gpu``: batch-1, GPU time only, ``T = 1 / L(1)`` (overhead fully overlapped).

SYSTEMS.md quotes ResNet-50 on a V100 at ~13.5 req/s at (q 0.2, SM 6 %) rising to ~75
at q 1.0, flat above SM 24 %. With the default ``compact`` latency model (ResNet-50:
L(1) = 78 ms at q 0.2 and 21 ms at q 1.0; L(4) = 79 ms at (q 0.2, SM 6)), batch 4 and
70 ms overhead the modes give at (q 0.2, SM 6) / (q 1.0, SM 100): saturated 27 / 44,
has 17 / 28, closed_loop 6.7 / 11, gpu 12.8 / 48 req/s. ``gpu`` matches the figure best
but ignores the per-request overhead; of the modes that include it, ``saturated`` has
the smallest squared log error (it is within 2x at both ends and flat above SM 24 %,
as measured), and it is the only one consistent with the simulated pods' capacity,
hence the default.

Efficiency of a config: RPR = T / (S * Q) (S in %, Q a fraction).

Every ``period`` s (1 s), per function (all pods of the function count, starting ones
included; draining ones do not):

    gap = arrivals in the last rate_window (10 s) / rate_window + headroom (1 req/s)
          - sum of T over the function's pods

(All rates divide by the full window: before t = 0 there was no traffic. Profiles are
computed once per (model, batch) and cached for the run.)

* ``gap > 0``: the most efficient config ``e`` (max RPR; ties: larger T, then smaller
  SM) gets ``floor(gap / T_e)`` more replicas; a residual ``r = gap - n T_e > 0`` gets one
  pod of the smallest config with ``T > r`` (``residual: area``: the least S * Q, ties:
  smaller T; ``residual: throughput``: the least T above r, the argmin_p (T_p - r)
  noted in FaST-GShare's code); when no config has ``T > r``, the one with the largest T (a
  residual pod of config e counts as one more replica of e). If the
  average rate of the last ``trend_window`` (30 s) is higher than that of the 30 s
  before (both > 0), each config's new replica count is multiplied by past/old
  (``trend: ratio``, the 2024 code), by (past/old)^2 (``trend: squared``, the 2023
  code squares it) or not at all (``off``), rounded up.
* ``gap < 0``: (only when |gap| > ``scale_down_threshold`` x capacity; 0 = the
  original, 0.2 = the later variant's hysteresis) the function's configs are visited
  least efficient (lowest RPR) first and each loses ``floor(remaining / T)`` pods (at
  most all of its pods); ``remaining`` drops by what was removed. Within a config the
  newest pods go first (starting pods before ready ones).

Scale to zero: never. The rule itself keeps capacity >= rate + headroom > 0, so the
last pod of a function is never removed once it has traffic; a function's first pod is
created when its first request arrives (``wake_on_arrival``), since before that the
function is skipped.

Placement: every GPU is a 1000 (quota, thousandths of the token window) x 100 (SM %)
bin, every pod a ``ceil(1000 q) x ceil(s)`` box (:func:`hasim.cluster.gpu.rect_width`).
At each decision the bins are rebuilt from the boxes of the pods on the GPUs (draining
pods still hold theirs), plus the boxes placed earlier in the same decision. A new pod
goes to the GPU in use that leaves the least free area after placing it by MaxRects
best-area-fit (:func:`hasim.cluster.maxrects.choose_bin`) and has the memory, else to
the unused GPU (no pods) with the lowest id, else it is not created (recorded in
``unplaced``). GPUs holding row-placed pods are never used.

The token window (``token_window``: 40 ms as in HAS-GPU's comparison, 10 s as
published) is recorded for documentation; the latency model fixes its effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hasim.autoscale.base import Action, ClusterView, CreatePod, DeletePod, PodInfo
from hasim.autoscale.kit import (
    CAPACITY_RULES,
    capacity_rps,
    deletion_order,
    last_true,
    live,
    require,
)
from hasim.cluster.gpu import rect_width
from hasim.cluster.models import model_facts
from hasim.cluster.placement import RectBins, RectPacker
from hasim.cluster.pod import validate_pod_request
from hasim.config.schema import ClusterConfig
from hasim.errors import HasimError

THROUGHPUT_MODES = CAPACITY_RULES
TREND_MODES = ("ratio", "squared", "off")
RESIDUAL_MODES = ("area", "throughput")
TOKEN_WINDOWS = ("40ms", "10s")
_EPS = 1e-9


@dataclass
class FaSTGShareConfig:
    """FaST-GShare autoscaler settings (units in the comments)."""

    kind: str = "fastgshare"
    period: float = 1.0  # s between decisions
    rate_window: float = 10.0  # s; current rate = arrivals in the window / window
    headroom: float = 1.0  # req/s added to the current rate
    quotas: list[float] = field(
        default_factory=lambda: [0.2, 0.4, 0.6, 0.8, 1.0]
    )  # profiled time quotas, fractions of the token window
    sms: list[float] = field(
        default_factory=lambda: [6.0, 12.0, 24.0, 50.0, 60.0, 80.0, 100.0]
    )  # profiled SM partitions, percent
    batch: int | None = None  # max batch per pod (requests); null = cluster.max_batch
    throughput: str = "saturated"  # saturated | has | closed_loop | gpu (module docstring)
    overhead: float | None = None  # s non-GPU time per batch in T; null = cluster.overhead
    residual: str = "area"  # area | throughput: which "smallest config with T > r"
    trend: str = "ratio"  # ratio (past/old) | squared ((past/old)^2) | off
    trend_window: float = 30.0  # s; past = last window, old = the window before it
    scale_down_threshold: float = 0.0  # scale down only if |gap| > this x capacity (0.2 later)
    token_window: str = "40ms"  # 40ms | 10s; documentation only
    prewarm: bool = False  # true: at t = 0 each function with requests gets one warm pod of
    # its most efficient config (deployed before the trace starts, as in the real runs)


@dataclass(frozen=True)
class ProfileEntry:
    """One profiled configuration: SM partition (%), quota (fraction), T (requests/s)."""

    sm_pct: float
    quota: float
    rps: float

    @property
    def size(self) -> float:
        """Resources S * Q (percent x fraction)."""
        return self.sm_pct * self.quota

    @property
    def rpr(self) -> float:
        """Efficiency RPR = T / (S * Q)."""
        return self.rps / self.size

    @property
    def width(self) -> int:
        """Box width, thousandths of the token window."""
        return rect_width(self.quota)

    @property
    def height(self) -> int:
        """Box height, SM percent (rounded up to an integer)."""
        return int(math.ceil(self.sm_pct - 1e-9))


def rpr_order(profile: list[ProfileEntry]) -> list[ProfileEntry]:
    """Configs most efficient first: RPR descending, ties by T descending, SM ascending."""
    return sorted(profile, key=lambda e: (-e.rpr, -e.rps, e.sm_pct, e.quota))


def split_gap(
    gap: float, profile: list[ProfileEntry], residual: str = "area"
) -> list[tuple[ProfileEntry, int]]:
    """FaST-GShare's scale-up plan for a positive gap (req/s): ``floor(gap / T_e)``
    replicas of the most efficient config e, plus one pod of the smallest config with
    T > r for a residual r > 0 (counted with e when it is e). Returns (config, count)
    pairs with count >= 1."""
    if gap <= _EPS or not profile:
        return []
    e = rpr_order(profile)[0]
    n = int(math.floor(gap / e.rps + _EPS))
    r = gap - n * e.rps
    extra = residual_config(r, profile, residual) if r > 1e-6 else None
    if extra == e:  # the residual pod is one more of e
        n, extra = n + 1, None
    plan: list[tuple[ProfileEntry, int]] = [(e, n)] if n > 0 else []
    if extra is not None:
        plan.append((extra, 1))
    return plan


def residual_config(r: float, profile: list[ProfileEntry], mode: str = "area") -> ProfileEntry:
    """The config for a residual load ``r`` (req/s): the smallest one with T > r
    (``area``: least S * Q, ties smaller T; ``throughput``: least T, ties smaller S * Q);
    the largest-T config when none exceeds r."""
    above = [p for p in profile if p.rps > r]
    if not above:
        return max(profile, key=lambda p: (p.rps, -p.size, -p.sm_pct))
    if mode == "throughput":
        return min(above, key=lambda p: (p.rps, p.size, p.sm_pct))
    return min(above, key=lambda p: (p.size, p.rps, p.sm_pct))


def trend_factor(past: float, old: float, mode: str = "ratio") -> float:
    """Rising-trend multiplier from the average rates (req/s) of the last window (past)
    and the one before (old): past/old, its square, or 1 (off, no rise, or old = 0)."""
    if mode == "off" or old <= 0 or past <= old:
        return 1.0
    ratio = past / old
    return ratio * ratio if mode == "squared" else ratio


def scale_down_plan(surplus: float, groups: list[tuple[ProfileEntry, int]]) -> list[int]:
    """Pods to remove per group for a surplus ``|gap|`` (req/s), in the order given:
    groups (config, pod count) are visited least efficient (lowest RPR) first and each
    loses ``floor(remaining / T)`` pods (at most its count); remaining drops by n T."""
    out = [0] * len(groups)
    remaining = surplus
    for i in sorted(range(len(groups)), key=lambda i: (_down_key(groups[i][0]), i)):
        cfg, count = groups[i]
        n = min(count, int(math.floor(remaining / cfg.rps + _EPS)))
        if n > 0:
            out[i] = n
            remaining -= n * cfg.rps
    return out


def _down_key(e: ProfileEntry) -> tuple[float, float, float, float]:
    """Scale-down order: lowest RPR first, ties by larger S * Q, then larger SM."""
    return (e.rpr, -e.size, -e.sm_pct, -e.quota)


class FaSTGShareAutoscaler:
    """FaST-GShare: horizontal scaling with profiled fixed configs, 2-D MaxRects placement.

    Decides at every call (tick or wake) for all functions at once: each function keeps,
    until its pods change, its capacity and the band of rate-window arrival counts for
    which its gap asks for nothing (``_band``, exact); a call compares every function's
    count with its band and decides one by one only for those outside it.

    ``unplaced``: (time s, function, sm %, quota) of pods the packer found no GPU for.
    """

    wake_on_arrival = True

    def __init__(
        self,
        cfg: FaSTGShareConfig,
        default_batch: int = 4,
        overhead_s: float = 0.07,
        model_memory_mb: dict[str, float] | None = None,
    ) -> None:
        self.cfg = cfg
        self.batch = default_batch if cfg.batch is None else cfg.batch
        self.overhead = overhead_s if cfg.overhead is None else cfg.overhead
        self.memory_overrides = dict(model_memory_mb or {})
        self._check()
        self.period_s: float | None = cfg.period
        self._profiles: dict[tuple[str, int], list[ProfileEntry]] = {}
        self._rps: dict[tuple[str, int, float, float], float] = {}
        self._mem: dict[str, float] = {}
        self.unplaced: list[tuple[float, str, float, float]] = []
        self._bins = RectBins()
        # per function, as of the last call: live (starting + ready) pods, the sum of
        # their T (req/s, added in pod id order), the least T (inf: no pod), whether it
        # had a request (by ``_seen_at``, s), its quiet band (``_lo``, ``_hi``); and the
        # functions the last call acted on (read again at the next)
        self._view: ClusterView | None = None
        self._reset(None, 0)

    def _check(self) -> None:
        c = self.cfg
        modes = {
            "throughput": THROUGHPUT_MODES,
            "trend": TREND_MODES,
            "residual": RESIDUAL_MODES,
            "token_window": TOKEN_WINDOWS,
        }
        require(
            c,
            [
                (c.period > 0, "period", "a number of seconds > 0"),
                (c.rate_window > 0, "rate_window", "a number of seconds > 0"),
                (c.trend_window > 0, "trend_window", "a number of seconds > 0"),
                (c.headroom >= 0, "headroom", "req/s >= 0"),
                (self.overhead >= 0, "overhead", "seconds >= 0"),
                (c.scale_down_threshold >= 0, "scale_down_threshold", "a fraction >= 0"),
                *((getattr(c, k) in v, k, "one of " + ", ".join(v)) for k, v in modes.items()),
                (bool(c.quotas), "quotas", "a non-empty list"),
                (bool(c.sms), "sms", "a non-empty list"),
            ],
        )
        for q in c.quotas:
            for s in c.sms:
                validate_pod_request(float(s), float(q), self.batch)

    # ---- profile -----------------------------------------------------------------
    def throughput(
        self, view: ClusterView, model: str, batch: int, sm_pct: float, quota: float
    ) -> float:
        """Profiled T (requests/s) of a pod (model, batch, sm_pct %, quota) by the
        configured rule (``kit.capacity_rps``; closed_loop and gpu at batch 1), cached."""
        key = (model, batch, float(sm_pct), float(quota))
        t = self._rps.get(key)
        if t is None:
            rule = self.cfg.throughput
            b = batch if rule in ("saturated", "has") else 1
            lat = view.latency_s(model, b, sm_pct, quota)
            t = capacity_rps(rule, lat, b, self.overhead, lat if b == 1 else None)
            if not math.isfinite(t) or t <= 0:
                t = 0.0
            self._rps[key] = t
        return t

    def profile(self, view: ClusterView, model: str) -> list[ProfileEntry]:
        """The profiled grid of ``model`` (configs with T > 0 only), cached per model."""
        key = (model, self.batch)
        prof = self._profiles.get(key)
        if prof is None:
            prof = []
            for q in self.cfg.quotas:
                for s in self.cfg.sms:
                    t = self.throughput(view, model, self.batch, float(s), float(q))
                    if t > 0:  # a failed trial is dropped
                        prof.append(ProfileEntry(float(s), float(q), t))
            if not prof:
                raise HasimError(f"FaST-GShare: no profiled configuration of {model!r} works")
            self._profiles[key] = prof
        return prof

    def _mem_mb(self, model: str) -> float:
        if model not in self._mem:
            self._mem[model] = model_facts(model, self.memory_overrides).gpu_mem_mb
        return self._mem[model]

    # ---- decision ----------------------------------------------------------------
    def gap(self, count: int, capacity: float) -> float:
        """A function's gap (req/s) for ``count`` arrivals in the rate window and pods of
        total T ``capacity`` (req/s)."""
        return count / self.cfg.rate_window + self.cfg.headroom - capacity

    def decide(self, now: float, view: ClusterView) -> list[Action]:
        c = self.cfg
        self._refresh(view, now)
        counts = view.arrival_counts(now - c.rate_window)
        self._see(view, now)
        # exact pre-check: a count outside the function's quiet band changes its pods
        hot = (counts > self._hi) | (counts < self._lo)
        warm: set[int] = set()
        if now == 0.0 and c.prewarm:
            warm = set(np.flatnonzero((self._pods == 0) & (view.workload_arrivals() > 0)).tolist())
            hot[list(warm)] = True
        if not hot.any():
            return []
        fns = view.functions()
        packer = self._bins.packer(view)
        actions: list[Action] = []
        acting = np.flatnonzero(hot)
        for i, k in zip(acting.tolist(), counts[acting].tolist(), strict=True):
            self._acted.append(i)  # its pods, capacity and band are read at the next call
            f = fns[i]
            if i in warm:
                best = rpr_order(self.profile(view, f.model))[0]
                actions.extend(self._create(now, f.name, f.model, best, packer, warm=True))
                continue
            self._seen[i] |= k > 0
            if not (self._pods[i] or self._seen[i]):
                continue  # no traffic yet: the first pod comes with the first request
            capacity = float(self._capacity[i])
            gap = self.gap(k, capacity)
            if gap > _EPS:
                actions.extend(self._scale_up(now, view, f.name, f.model, gap, packer))
            elif self._pods[i] and -gap + _EPS < self._min_t[i]:
                continue  # the surplus is smaller than any pod: nothing to remove
            elif gap < -_EPS and -gap > c.scale_down_threshold * capacity:
                actions.extend(self._scale_down(view, -gap, live(view.pods_of(i))))
        return actions

    def _reset(self, view: ClusterView | None, size: int) -> None:
        """Per-function state for a new view (a new run) of ``size`` functions; every
        function is read at the next call."""
        self._view = view
        self._pods = np.zeros(size, dtype=np.int64)
        self._capacity = np.zeros(size)
        self._min_t = np.full(size, math.inf)
        self._seen = np.zeros(size, dtype=bool)
        self._seen_at = -math.inf
        self._lo = np.zeros(size, dtype=np.int64)
        self._hi = np.zeros(size, dtype=np.int64)
        self._acted = list(range(size))

    def _refresh(self, view: ClusterView, now: float) -> None:
        """Bring the per-function pods, capacity, least T and quiet band up to date: for
        the functions the last call acted on and any whose live pod count changed."""
        n = view.pod_counts("starting") + view.pod_counts("ready")
        if view is not self._view or self._pods.size != n.size or now < self._seen_at:
            self._reset(view, n.size)
        if not (self._acted or (n != self._pods).any()):
            return
        stale = sorted({*self._acted, *np.flatnonzero(n != self._pods).tolist()})
        self._acted = []
        for i in stale:
            rates = [
                self.throughput(view, p.model, p.batch, p.sm_pct, p.quota)
                for p in live(view.pods_of(i))
            ]
            self._pods[i] = len(rates)
            self._capacity[i] = sum(rates)
            self._min_t[i] = min(rates, default=math.inf)
        zero = [i for i in stale if not self._pods[i]]
        if zero:  # whether a function without pods had a request in (-1, now]
            self._seen[zero] = view.arrival_counts(-1.0)[zero] > 0
        for i in stale:
            self._lo[i], self._hi[i] = self._band(i)

    def _see(self, view: ClusterView, now: float) -> None:
        """Keep ``_seen`` exact for the functions without pods: the rate window covers the
        time since the last call (a first request there puts the count above the band
        (0, 0) of such a function); else read the arrivals so far."""
        if self._seen_at < now - self.cfg.rate_window:
            new = np.flatnonzero(
                (self._pods == 0) & ~self._seen & (view.arrival_counts(-1.0) > 0)
            ).tolist()
            self._seen[new] = True
            for i in new:
                self._lo[i], self._hi[i] = self._band(i)
        self._seen_at = now

    def _band(self, i: int) -> tuple[int, int]:
        """The counts of arrivals in the rate window (lo, hi) for which function ``i``
        neither scales up nor down. ``decide``'s tests are monotone in the count (the
        gap is a chain of rounded, monotone operations), so they hold outside an
        interval; lo/hi are found exactly around the real-valued bounds. A function
        without pods or traffic: (0, 0), until its first request."""
        if not (self._pods[i] or self._seen[i]):
            return 0, 0
        c = self.cfg
        capacity, min_t = float(self._capacity[i]), float(self._min_t[i])

        def quiet_up(k: int) -> bool:
            return not self.gap(k, capacity) > _EPS

        def down(k: int) -> bool:
            gap = self.gap(k, capacity)
            return -gap + _EPS >= min_t and gap < -_EPS and -gap > c.scale_down_threshold * capacity

        hi = last_true(quiet_up, (capacity + _EPS - c.headroom) * c.rate_window)
        floor = min(_EPS - min_t, -_EPS, -c.scale_down_threshold * capacity)
        lo = last_true(down, (capacity - c.headroom + floor) * c.rate_window) + 1
        return lo, hi

    def _scale_up(
        self, now: float, view: ClusterView, name: str, model: str, gap: float, packer: RectPacker
    ) -> list[Action]:
        c = self.cfg
        plan = split_gap(gap, self.profile(view, model), c.residual)
        w = c.trend_window
        past = view.arrivals(name, now - w, now) / w
        old = view.arrivals(name, now - 2 * w, now - w) / w
        factor = trend_factor(past, old, c.trend)
        out: list[Action] = []
        for entry, k in plan:
            for _ in range(int(math.ceil(k * factor - 1e-9))):
                out.extend(self._create(now, name, model, entry, packer))
        return out

    def _create(
        self,
        now: float,
        name: str,
        model: str,
        entry: ProfileEntry,
        packer: RectPacker,
        warm: bool = False,
    ) -> list[Action]:
        spot = packer.place(entry.width, entry.height, self._mem_mb(model))
        if spot is None:
            self.unplaced.append((now, name, entry.sm_pct, entry.quota))
            return []
        gid, box = spot
        return [
            CreatePod(name, entry.sm_pct, entry.quota, self.batch, gpu=gid, rect=box, warm=warm)
        ]

    def _scale_down(self, view: ClusterView, surplus: float, pods: list[PodInfo]) -> list[Action]:
        groups: dict[tuple[float, float, int], list[PodInfo]] = {}
        for p in pods:
            groups.setdefault((p.sm_pct, p.quota, p.batch), []).append(p)
        plan: list[tuple[ProfileEntry, list[PodInfo]]] = []
        for (sm, q, b), ps in groups.items():
            t = self.throughput(view, ps[0].model, b, sm, q)
            if t > 0:
                plan.append((ProfileEntry(sm, q, t), ps))
        plan.sort(key=lambda g: _down_key(g[0]))  # emit least efficient first
        counts = scale_down_plan(surplus, [(e, len(ps)) for e, ps in plan])
        out: list[Action] = []
        for (_, ps), k in zip(plan, counts, strict=True):
            out.extend(DeletePod(p.id) for p in deletion_order(ps)[:k])  # newest first
        return out


def build(cfg: FaSTGShareConfig, cluster_cfg: ClusterConfig) -> FaSTGShareAutoscaler:
    """The autoscaler for ``cfg`` on ``cluster_cfg`` (batch, overhead, memory defaults)."""
    return FaSTGShareAutoscaler(
        cfg,
        default_batch=cluster_cfg.max_batch,
        overhead_s=cluster_cfg.overhead,
        model_memory_mb=dict(cluster_cfg.model_memory_mb),
    )
