"""A shared stand-in for the simulation's ClusterView, for decision-level policy tests.

``FakeCluster`` holds real ``Gpu`` and ``Pod`` objects (so placement and the GPU
invariants are the real ones) and answers every question of
``hasim.autoscale.base.ClusterView``, per function and as arrays. Arrivals come from
explicit arrival times (``arrivals={...}``) or from piecewise-constant rates
(``set_rate``; the count over a window is the rate's integral, rounded). Concurrency
(request-seconds) comes from ``concurrency`` (a function of (name, t0, t1) giving the
time-averaged number of requests in the system; default 0), queue lengths and
in-flight counts from ``queued`` / ``flight`` dicts. Actions apply at once (pods become
ready after ``ready_delay`` s); ``step(policy, t)`` sets the time, readies pods, asks
the policy and applies what it returns. Actions the cluster refuses are kept in
``failed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from hasim.autoscale.base import Call, CreatePod, DeletePod, GpuInfo, PodInfo, UpdateQuota
from hasim.cluster.gpu import Gpu, gpu_type
from hasim.cluster.placement import first_fit_rows
from hasim.cluster.pod import Pod, PodState
from hasim.sim.view import gpu_info, pod_info
from hasim.workload.base import FunctionSpec

MEM_MB = 1525.0  # GPU memory of every fake pod (MB)


class FakeCluster:
    """A synchronous ClusterView over real GPUs and pods (module docstring)."""

    def __init__(
        self,
        n_gpus: int = 4,
        functions: Sequence[tuple[str, str]] = (("f", "resnet50"),),
        latency: Callable[[str, int, float, float], float] = lambda m, b, s, q: 0.02 / q,
        ready_delay: float = 0.0,
        arrivals: dict[str, Sequence[float]] | None = None,
        totals: dict[str, int] | None = None,
        concurrency: Callable[[str, float, float], float] | None = None,
        period: float | None = None,
    ) -> None:
        """``period``: the policy's tick period (s) for ``view.cause``; None: every
        ``step`` is a tick."""
        self.gpu_objs = [Gpu(i, f"n{i}", gpu_type("V100")) for i in range(n_gpus)]
        self.specs = [FunctionSpec(n, m, 1.0) for n, m in functions]
        self.model = dict(functions)
        self.pod_objs: dict[int, Pod] = {}
        self.rates: dict[str, list[tuple[float, float]]] = {n: [(0.0, 0.0)] for n, _ in functions}
        self.arr = (
            {k: np.sort(np.asarray(v, float)) for k, v in arrivals.items()} if arrivals else None
        )
        self.totals = totals or {}
        self.lat = latency
        self.conc = concurrency
        self.ready_delay = ready_delay
        self.period = period
        self.now = 0.0
        self.cause = Call.TICK
        self.woken = np.empty(0, dtype=np.int64)
        self._next_tick = -math.inf
        self.queued: dict[str, int] = {}
        self.flight: dict[str, int] = {}
        self.failed: list[object] = []
        self.log: list[tuple[float, object]] = []

    # ---- functions and arrivals --------------------------------------------------
    def functions(self) -> list[FunctionSpec]:
        return self.specs

    def function_index(self, name: str) -> int:
        return [f.name for f in self.specs].index(name)

    def set_rate(self, f: str, t: float, rate: float) -> None:
        """From ``t`` (s) on, ``f`` receives ``rate`` req/s."""
        self.rates[f].append((t, rate))

    def _integral(self, f: str, t: float) -> float:
        segs = sorted(self.rates[f])
        total = 0.0
        for i, (t0, r) in enumerate(segs):
            t1 = segs[i + 1][0] if i + 1 < len(segs) else math.inf
            if t <= t0:
                break
            total += r * (min(t, t1) - t0)
        return total

    def arrivals(self, f: str, t0: float, t1: float) -> int:
        t1 = min(t1, self.now)
        if self.arr is not None:
            a = self.arr[f]
            return int(np.searchsorted(a, t1, "right") - np.searchsorted(a, t0, "right"))
        if t1 <= t0:
            return 0
        return int(round(self._integral(f, t1) - self._integral(f, max(t0, 0.0))))

    def arrival_counts(self, t0: float, t1: float | None = None) -> np.ndarray:
        t1 = self.now if t1 is None else t1
        return np.array([self.arrivals(f.name, t0, t1) for f in self.specs], dtype=np.int64)

    def total_arrivals(self, f: str) -> int:
        if f in self.totals:
            return self.totals[f]
        return int(self.arr[f].size) if self.arr is not None else 0

    def workload_arrivals(self) -> np.ndarray:
        return np.array([self.total_arrivals(f.name) for f in self.specs], dtype=np.int64)

    # ---- data plane -------------------------------------------------------------------
    def concurrency(self, f: str, t0: float, t1: float) -> float:
        return 0.0 if self.conc is None or t1 <= t0 else float(self.conc(f, t0, min(t1, self.now)))

    def in_system_seconds(self, fns: np.ndarray, t0: float, t1: float) -> np.ndarray:
        t1 = min(t1, self.now)
        return np.array(
            [self.concurrency(self.specs[i].name, t0, t1) * max(0.0, t1 - t0) for i in fns]
        )

    def in_system_since(
        self, fns: np.ndarray, t0: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The request-seconds of ``in_system_seconds`` over (t0, now]; every function
        counts as busy at ``now`` (the concurrency function says nothing about later)."""
        starts = np.broadcast_to(t0, (len(fns),))
        seconds = [
            self.in_system_seconds(np.array([i]), s, self.now)[0]
            for i, s in zip(fns, starts, strict=True)
        ]
        return np.array(seconds, dtype=float), np.ones(len(fns), dtype=bool)

    def queue_length(self, f: str) -> int:
        return self.queued.get(f, 0)

    def in_flight(self, f: str) -> int:
        return self.flight.get(f, 0)

    def queued_counts(self, fns: np.ndarray) -> np.ndarray:
        return np.array([self.queue_length(self.specs[i].name) for i in fns], dtype=np.int64)

    def in_flight_counts(self, fns: np.ndarray) -> np.ndarray:
        return np.array([self.in_flight(self.specs[i].name) for i in fns], dtype=np.int64)

    def latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        return self.lat(model, batch, sm_pct, quota)

    # ---- pods and GPUs ------------------------------------------------------------------
    def _live(self) -> list[Pod]:
        return [p for p in self.pod_objs.values() if p.state is not PodState.REMOVED]

    def pods(self, function: str | None = None) -> list[PodInfo]:
        return [pod_info(p) for p in self._live() if function in (None, p.function)]

    def pods_of(self, fn: int) -> list[PodInfo]:
        return self.pods(self.specs[fn].name)

    def pod_counts(self, state: str) -> np.ndarray:
        """Pods per function in ``state``; pods of functions outside ``functions()`` (placed
        by hand with ``add_pod``) are not counted."""
        index = {f.name: i for i, f in enumerate(self.specs)}
        out = np.zeros(len(index), dtype=np.int64)
        for p in self._live():
            if p.state.value == state and p.function in index:
                out[index[p.function]] += 1
        return out

    def gpus(self) -> list[GpuInfo]:
        return [gpu_info(g) for g in self.gpu_objs]

    def gpu_pod_counts(self) -> np.ndarray:
        return np.array([g.n_pods for g in self.gpu_objs], dtype=np.int64)

    def gpus_of(self, ids: np.ndarray) -> list[GpuInfo]:
        return [gpu_info(self.gpu_objs[i]) for i in np.asarray(ids).tolist()]

    def live(self, f: str) -> list[Pod]:
        """``f``'s pods that are not removed."""
        return [p for p in self._live() if p.function == f]

    def add_pod(
        self, function: str, sm: float, quota: float, gpu: int, row: int, batch: int = 4
    ) -> Pod:
        """A ready pod placed by hand in row ``row`` of GPU ``gpu``."""
        p = self._new_pod(function, sm, quota, batch, PodState.READY, self.now)
        self.gpu_objs[gpu].add(p, row)
        return p

    def _new_pod(
        self, function: str, sm: float, quota: float, batch: int, state: PodState, t: float
    ) -> Pod:
        """A pod created at ``t`` (s), ready then or starting (until a later ``step``)."""
        pid = len(self.pod_objs)
        ready_at = t if state is PodState.READY else math.inf
        p = Pod(
            pid,
            function,
            self.model.get(function, "resnet50"),
            sm,
            quota,
            batch,
            MEM_MB,
            t,
            state=state,
            ready_at=ready_at,
        )
        self.pod_objs[pid] = p
        return p

    # ---- driving --------------------------------------------------------------------------
    def apply(self, actions: Sequence[object]) -> None:
        """Apply actions at once; refused ones go to ``failed``."""
        for a in actions:
            self.log.append((self.now, a))
            if isinstance(a, CreatePod):
                self._create(a)
            elif isinstance(a, UpdateQuota):
                p = self.pod_objs[a.pod]
                g = self.gpu_objs[p.gpu_id]
                if p.state is PodState.REMOVED or not g.can_set_quota(p, a.quota):
                    self.failed.append(a)
                    continue
                g.set_quota(p, a.quota)
            elif isinstance(a, DeletePod):
                p = self.pod_objs[a.pod]
                if p.state is PodState.REMOVED:
                    self.failed.append(a)
                    continue
                self.gpu_objs[p.gpu_id].remove(p)
                p.state = PodState.REMOVED
        for g in self.gpu_objs:
            g.check()

    def _create(self, a: CreatePod) -> None:
        sm, q = (100.0, 1.0) if a.exclusive else (float(a.sm_pct), float(a.quota))
        if a.rect is not None:
            g = self.gpu_objs[a.gpu]
            if not g.fits_rect(tuple(a.rect), MEM_MB):
                self.failed.append(a)
                return
            spot = (g, -1)
        elif a.gpu is not None:
            g = self.gpu_objs[a.gpu]
            row = a.row if a.row is not None else 0
            if not g.fits(row, sm, q, MEM_MB):
                self.failed.append(a)
                return
            spot = (g, row)
        else:
            spot = first_fit_rows(self.gpu_objs, sm, q, MEM_MB, a.exclusive)
            if spot is None:
                self.failed.append(a)
                return
        pid = len(self.pod_objs)
        p = Pod(
            pid,
            a.function,
            self.model[a.function],
            sm,
            q,
            a.batch,
            MEM_MB,
            self.now,
            exclusive=a.exclusive,
        )
        p.ready_at = self.now + (0.0 if a.warm else self.ready_delay)
        if a.warm or self.ready_delay == 0.0:
            p.state = PodState.READY
        if a.rect is not None:
            spot[0].add_rect(p, tuple(a.rect))
        else:
            spot[0].add(p, spot[1])
        self.pod_objs[pid] = p

    def step(self, policy: object, t: float) -> list:
        """Time ``t`` (s): ready the pods whose start-up is over, ask the policy, apply."""
        self.now = t
        if self.period is None or t >= self._next_tick - 1e-9:
            self.cause = Call.TICK
            self._next_tick = t + (self.period or 0.0)
        else:
            self.cause = Call.WAKE
        for p in self.pod_objs.values():
            if p.state is PodState.STARTING and p.ready_at <= t:
                p.state = PodState.READY
        acts = policy.decide(t, self)  # type: ignore[attr-defined]
        self.apply(acts)
        return acts

    # ---- GPUs as arrays -------------------------------------------------------------------
    def gpu_rects(self, ids: np.ndarray) -> list[tuple[tuple[int, int, int, int], ...]]:
        return [
            tuple(b for _, b in self.gpu_objs[i].rects.values()) for i in np.asarray(ids).tolist()
        ]

    def gpu_mem_free_mb(self, ids: np.ndarray) -> np.ndarray:
        return np.array([self.gpu_objs[i].mem_free_mb for i in np.asarray(ids).tolist()], float)

    def add_rect_pod(
        self,
        function: str,
        sm: float,
        quota: float,
        gpu: int,
        rect: tuple[int, int, int, int],
        batch: int = 4,
        state: PodState = PodState.READY,
        created: float | None = None,
    ) -> Pod:
        """A pod placed by hand as the box ``rect`` on GPU ``gpu`` (ready, or starting
        until a later ``step``), created at ``created`` (s; default now)."""
        t = self.now if created is None else created
        p = self._new_pod(function, sm, quota, batch, state, t)
        self.gpu_objs[gpu].add_rect(p, rect)
        return p
