"""FaST-GShare as HAS-GPU's comparison deployed it (VALIDATION.md section 2), beside the
profile-searching autoscaler of the FaST-GShare paper (``hasim.autoscale.fastgshare``).

The comparison used a prebuilt autoscaler image with no public source. What its runs
show (``validation/has-gpu-v100/result/fast-gshare/*/fastgshare-usage-*.csv``: every 2 s,
per GPU, the sums of SM % and quota % over its pods and the pod count; t counted from
the client's first request) and how this policy models it:

* **One fixed configuration per function** (``sm`` %, ``quota``, ``batch`` 1; per model
  in ``configs``): every usage sample of a run is a multiple of one (SM, quota) pair,
  set by the function's deployment annotations: 1-mobilenet (30, 10 %), 2-mobilenet
  (30, 20 %), 2-convnext (30, 10 %), 1-bert (30, 20 %), 2/3/4-bert (30, 30 %). No profile
  search, no resizing.
* **At most one new pod per period** (``period_s`` 2 s, ``max_step_up`` 1):
  1-mobilenet grows 1 -> 26 pods in 25 consecutive +1 steps of the 2-s samples (t = -4 to
  44 s); 2-convnext has 15 +1 steps and four +2 steps (sampling jitter, inference).
* **Desired pods** = ceil((rate + ``headroom_rps``) / c), at least ``min_pods``: rate =
  requests sent in the last ``rate_window_s`` / the window, c = the pod's capacity as
  the autoscaler assumes it. Headroom 0 [inferred]: before the client starts (rate 0)
  every run keeps its one pod for 14-28 s, which FaST-GShare's published gap rule (rate
  + 1 req/s) would not. The image's profile is not published; ``capacity_rps`` holds
  per-quota values [inferred] bracketed by when the runs added pods and when they kept
  their count (10-s send rates): quota 0.2: 2-mobilenet kept 2 pods at 5.9 req/s (c >=
  2.95) and went 4 -> 5 pods at 14.6 (c < 3.65); 1-bert went 3 -> 4 at 8.8 (c < 2.93) and
  kept 5 at 14.7 (c >= 2.94): c = 2.95. Quota 0.3: 2-bert kept 4 pods at 14.8 (c >= 3.7)
  and went 3 -> 4 at 14.2 (c < 4.73): c = 4.2. Quota 0.1: 1-mobilenet kept adding pods at
  5 req/s up to 25 pods (c < 0.2): c = 0.15 (its count stops at 26, ConvNeXt's at 23:
  memory, below). Quotas missing from the table use ``capacity_rule`` (a
  ``kit.capacity_rps`` rule) x ``capacity_scale`` [inferred].
* **Scale-down is rare, one pod at a time** (``scale_down_delay_s``, ``max_step_down``
  1): one in nine runs (2-convnext 11 -> 10 pods at t = 136 s, after the rate fell from
  ~9 to ~7 req/s); 1-mobilenet kept 26 pods at 5 req/s for 100 s. A pod goes only after
  the desired count stayed below the current one for ``scale_down_delay_s`` [inferred];
  never below ``min_pods``.
* **All pods of a function on one GPU** (``max_gpus`` per function, 1 [inferred]):
  every run's usage file names one GPU, and the pod count stops growing when that GPU is
  full although the cluster had ten. Pods are boxes (ceil(1000 q) x SM) packed by
  MaxRects (``RectPacker``), on the GPUs already holding the function's pods first. How
  many fit is bounded by the box area and by memory: 26 MobileNet-V3 and 23 ConvNeXt-L
  pods shared a 16-GB V100, so this system's pods hold far less memory than a standalone
  pod (its model store shares weights): set per model in ``cluster.model_memory_mb``
  (the rps presets do).
* **Deployed before the run** (``prewarm``): each function with requests has one running
  pod at t = 0 (the usage files start with one pod 14-28 s before the client); a
  function without pods gets one at its first request (``wake_on_arrival``).

Failures after a scale-down (HTTP 502 for tens of seconds, 2-convnext) are the gateway's
routing, a cluster mechanism, not this policy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hasim.autoscale.base import Action, Call, ClusterView, CreatePod, DeletePod
from hasim.autoscale.kit import CAPACITY_RULES, capacity_rps, deletion_order, live, require
from hasim.cluster.gpu import rect_width
from hasim.cluster.models import model_facts
from hasim.cluster.placement import RectBins, RectPacker
from hasim.cluster.pod import validate_pod_request
from hasim.config.schema import ClusterConfig

EPS = 1e-9


def _default_capacity() -> dict[str, float]:
    # req/s per pod by quota (module docstring: the runs' steady states)
    return {"0.1": 0.15, "0.2": 2.95, "0.3": 4.2}


@dataclass
class DeployedFaSTGShareConfig:
    """The deployed FaST-GShare baseline (module docstring; [inferred] marks inferences).

    sm (%), quota (fraction), batch (requests): every pod's configuration; ``configs``
    overrides them per model (``{model: [sm, quota]}``). period_s (s) between decisions;
    rate_window_s (s) of the measured rate; headroom_rps (req/s) added to it;
    capacity_rps: the autoscaler's capacity per pod (req/s) by quota (the key is the
    quota as written, e.g. "0.2"); capacity_rule / capacity_scale: for quotas not in the
    table, a kit capacity rule (saturated | has | closed_loop | gpu) times a factor;
    max_step_up / max_step_down: pods added / removed per decision and function;
    max_gpus: how many GPUs one function's pods may occupy (null: no limit);
    scale_down_delay_s (s) the desired count must stay below the current one before a pod
    goes; min_pods: the floor once a function has had traffic; prewarm: one running pod
    per function with requests at t = 0.
    """

    kind: str = "fastgshare_deployed"
    sm: float = 30.0  # SM %
    quota: float = 0.2  # fraction of the token window
    batch: int = 1  # requests
    configs: dict[str, list[float]] = field(default_factory=dict)  # model -> [sm %, quota]
    period_s: float = 2.0  # s
    rate_window_s: float = 10.0  # s
    headroom_rps: float = 0.0  # req/s [inferred]
    capacity_rps: dict[str, float] = field(default_factory=_default_capacity)  # [inferred]
    capacity_rule: str = "closed_loop"  # [inferred]
    capacity_scale: float = 1.0  # [inferred]
    max_step_up: int = 1  # pods per decision
    max_step_down: int = 1  # pods per decision
    scale_down_delay_s: float = 60.0  # s [inferred]
    min_pods: int = 1  # pods
    max_gpus: int | None = 1  # GPUs one function's pods may use; null = any [inferred]
    prewarm: bool = True

    def validate(self) -> None:
        require(
            self,
            [
                (self.period_s > 0, "period_s", "seconds > 0"),
                (self.rate_window_s > 0, "rate_window_s", "seconds > 0"),
                (self.headroom_rps >= 0, "headroom_rps", "req/s >= 0"),
                (self.capacity_rule in CAPACITY_RULES, "capacity_rule", " | ".join(CAPACITY_RULES)),
                (self.capacity_scale > 0, "capacity_scale", "a factor > 0"),
                (self.max_step_up >= 1, "max_step_up", "an integer >= 1"),
                (self.max_step_down >= 1, "max_step_down", "an integer >= 1"),
                (self.scale_down_delay_s >= 0, "scale_down_delay_s", "seconds >= 0"),
                (self.min_pods >= 1, "min_pods", "an integer >= 1"),
                (self.max_gpus is None or self.max_gpus >= 1, "max_gpus", ">= 1 or null"),
                (
                    all(v > 0 for v in self.capacity_rps.values()),
                    "capacity_rps",
                    "req/s > 0 per quota",
                ),
                (
                    all(len(v) == 2 for v in self.configs.values()),
                    "configs",
                    "model: [sm %, quota] pairs",
                ),
            ],
        )
        validate_pod_request(self.sm, self.quota, self.batch)
        for sm, q in self.configs.values():
            validate_pod_request(float(sm), float(q), self.batch)


class DeployedFaSTGShareAutoscaler:
    """Horizontal one-step scaling of fixed-configuration pods packed on few GPUs (module
    docstring). State per function in arrays: when its desired count first fell below its
    current one (nan: not below)."""

    wake_on_arrival = True

    def __init__(self, cfg: DeployedFaSTGShareConfig, cluster: ClusterConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.period_s: float | None = cfg.period_s
        self.memory_overrides = dict(cluster.model_memory_mb)
        self.overhead_s = cluster.overhead
        self._fn: dict[str, np.ndarray] | None = None  # per-function constants
        self._below_since = np.empty(0)
        self._bins = RectBins()  # the GPUs' packings, kept between decisions

    def config_of(self, model: str) -> tuple[float, float]:
        """(SM %, quota) of ``model``'s pods."""
        sm, q = self.cfg.configs.get(model, (self.cfg.sm, self.cfg.quota))
        return float(sm), float(q)

    def capacity(self, view: ClusterView, model: str) -> float:
        """The autoscaler's capacity of one pod of ``model`` (req/s)."""
        sm, q = self.config_of(model)
        for key, value in self.cfg.capacity_rps.items():
            if abs(float(key) - q) < EPS:
                return float(value)
        b = self.cfg.batch
        lat = view.latency_s(model, b, sm, q)
        lat1 = view.latency_s(model, 1, sm, q)
        t = capacity_rps(self.cfg.capacity_rule, lat, b, self.overhead_s, lat1)
        return t * self.cfg.capacity_scale

    def _constants(self, view: ClusterView) -> dict[str, np.ndarray]:
        if self._fn is None:
            fns = view.functions()
            models = sorted({f.model for f in fns})
            cap = {m: self.capacity(view, m) for m in models}
            self._fn = {"capacity": np.array([cap[f.model] for f in fns])}
            self._below_since = np.full(len(fns), np.nan)
        return self._fn

    def decide(self, now: float, view: ClusterView) -> list[Action]:
        c = self.cfg
        const = self._constants(view)
        current = view.pod_counts("starting") + view.pod_counts("ready")
        fns = view.functions()
        packer = self._bins.packer(view)
        actions: list[Action] = []
        if view.cause is Call.WAKE:
            # first pods of functions without any that just got requests
            seen = view.arrival_counts(-math.inf) > 0
            for i in np.flatnonzero(seen & (current == 0)):
                actions.extend(self._create(view, int(i), 1, packer))
            return actions
        if now == 0.0 and c.prewarm:
            warm = (view.workload_arrivals() > 0) & (current == 0)
            for i in np.flatnonzero(warm):
                actions.extend(self._create(view, int(i), 1, packer, warm=True))
            current = current + warm
        rate = view.arrival_counts(now - c.rate_window_s) / c.rate_window_s
        desired = np.ceil((rate + c.headroom_rps) / const["capacity"] - EPS)
        had_traffic = (current > 0) | (view.arrival_counts(-math.inf) > 0)
        desired = np.where(had_traffic, np.maximum(desired, c.min_pods), 0)
        up = desired > current
        for i in np.flatnonzero(up):
            n = int(min(c.max_step_up, desired[i] - current[i]))
            actions.extend(self._create(view, int(i), n, packer))
        below = (desired < current) & (current > c.min_pods)
        since = self._below_since
        since[~below] = np.nan
        start = below & np.isnan(since)
        since[start] = now
        due = below & (now - since >= c.scale_down_delay_s - EPS)
        for i in np.flatnonzero(due):
            n = int(min(c.max_step_down, current[i] - max(desired[i], c.min_pods)))
            pods = deletion_order(live(view.pods(fns[i].name)))
            actions.extend(DeletePod(p.id) for p in pods[:n])
            since[i] = now  # the next pod goes only after another delay
        return actions

    def _create(
        self, view: ClusterView, i: int, n: int, packer: RectPacker, warm: bool = False
    ) -> list[Action]:
        """Up to ``n`` pods of function ``i``, packed (preferring its GPUs)."""
        f = view.functions()[i]
        sm, q = self.config_of(f.model)
        mem = model_facts(f.model, self.memory_overrides).gpu_mem_mb
        w, h = rect_width(q), int(math.ceil(sm - EPS))
        mine = sorted({p.gpu for p in view.pods(f.name) if p.gpu is not None})
        out: list[Action] = []
        limit = self.cfg.max_gpus
        for _ in range(n):
            spot = packer.place(w, h, mem, prefer=mine)
            if spot is None or (limit is not None and spot[0] not in mine and len(mine) >= limit):
                break
            gid, box = spot
            if gid not in mine:
                mine.append(gid)
            out.append(CreatePod(f.name, sm, q, self.cfg.batch, gpu=gid, rect=box, warm=warm))
        return out


def build(
    cfg: DeployedFaSTGShareConfig, cluster_cfg: ClusterConfig
) -> DeployedFaSTGShareAutoscaler:
    """The registry's factory."""
    return DeployedFaSTGShareAutoscaler(cfg, cluster_cfg)
