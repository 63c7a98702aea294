"""The read-only view of the cluster an autoscaler gets (``ClusterView``, in
``hasim.autoscale.base``), over a running ``Simulation``.

Per-function questions (``arrivals(name, ...)``, ``pods(name)``) are answered from that
function's queue and pods (a closed-loop client's queue is first brought to ``now``, so
its sends so far are known); questions about all functions at once come as arrays indexed
like ``functions()``: arrival counts over any window from the merged arrival index
(``hasim.sim.arrivals``), pod counts per state kept by the simulation as pods change.
Data-plane quantities (queued, in flight, request-seconds) first bring the asked
functions' queues up to ``now``. Pod and GPU snapshots are cached until the cluster
changes (the simulation's ``epoch``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hasim.autoscale.base import Call, GpuInfo, MigInfo, PodInfo
from hasim.cluster.gateway import in_system_many
from hasim.cluster.gpu import Gpu
from hasim.cluster.pod import Pod
from hasim.sim.arrivals import ArrivalIndex
from hasim.workload.base import FunctionSpec

if TYPE_CHECKING:
    from hasim.sim.engine import Simulation

NO_FUNCTIONS = np.empty(0, dtype=np.int64)


def pod_info(p: Pod) -> PodInfo:
    """The read-only view of a pod that autoscalers get."""
    return PodInfo(
        p.id,
        p.function,
        p.model,
        p.sm_pct,
        p.quota,
        p.batch,
        p.state.value,
        p.gpu_id if p.gpu_id >= 0 else None,
        p.row,
        p.created_at,
        p.ready_at,
        p.mig_uid if p.mig_uid >= 0 else None,
    )


def gpu_info(g: Gpu) -> GpuInfo:
    """The read-only view of a GPU that autoscalers get."""
    return GpuInfo(
        g.id,
        g.type.name,
        tuple((r.sm_pct, r.free_quota) for r in g.rows),
        tuple(b for _, b in g.rects.values()),
        g.occupancy,
        g.mem_free_mb,
        tuple(p.id for p in g.pods),
        tuple(
            MigInfo(i.uid, i.profile.name, i.start, i.state, tuple(p.id for p in i.pods), i.sm_used)
            for i in g.mig
        ),
    )


class SimulationView:
    """The ClusterView of one simulation; ``now``, ``cause`` and ``woken`` are set by the
    simulation before each ``decide``."""

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim
        self.now = 0.0
        self.cause = Call.TICK
        self.woken = NO_FUNCTIONS
        self._epoch = -1
        self._pods: dict[str | None, list[PodInfo]] = {}
        self._gpus: list[GpuInfo] | None = None
        self._index: ArrivalIndex | None = None
        self._index_sent = 0  # closed-loop sends the index was built with
        self._totals: np.ndarray | None = None
        self._gpu_pods: np.ndarray | None = None
        self._gpu_infos: dict[int, GpuInfo] = {}

    @property
    def duration_s(self) -> float:
        """The workload's duration (s): what a policy sized from known rates divides by."""
        return float(self._sim.workload.duration_s)

    def _fresh(self) -> None:
        if self._epoch != self._sim.epoch:
            self._epoch = self._sim.epoch
            self._pods.clear()
            self._gpus = None
            self._gpu_pods = None
            self._gpu_infos.clear()

    # ---- functions ---------------------------------------------------------------
    def functions(self) -> list[FunctionSpec]:
        return self._sim.workload.functions

    def function_index(self, name: str) -> int:
        return self._sim.fn_index[name]

    # ---- arrays over all functions -------------------------------------------------
    def _sync_clients(self) -> None:
        """Closed-loop functions (``workload.client=threadpool``): bring their queues to
        ``now``, so that their sends up to now are known, and drop the merged index when
        any was sent since it was built (such workloads are small)."""
        sim = self._sim
        if not sim.closed_loop:
            return
        sent = 0
        for i in sim.closed_loop:
            q = sim.queue_list[i]
            q.advance(self.now)
            sent += q.sent  # type: ignore[attr-defined]
        if sent != self._index_sent:
            self._index = None
            self._index_sent = sent

    @property
    def arrival_index(self) -> ArrivalIndex:
        """The merged arrival index (built on first use; rebuilt after closed-loop
        sends)."""
        self._sync_clients()
        if self._index is None:
            self._index = ArrivalIndex([q.arrivals for q in self._sim.queue_list])
        return self._index

    def arrival_counts(self, t0: float, t1: float | None = None) -> np.ndarray:
        t1 = self.now if t1 is None else min(t1, self.now)
        return self.arrival_index.between(t0, t1)

    def workload_arrivals(self) -> np.ndarray:
        if self._totals is None:
            self._totals = np.array([q.arrivals.size for q in self._sim.queue_list], np.int64)
            self._totals.setflags(write=False)
        return self._totals

    def pod_counts(self, state: str) -> np.ndarray:
        return self._sim.pod_counts[state]

    def in_system_seconds(self, fns: np.ndarray, t0: float, t1: float) -> np.ndarray:
        t1 = min(t1, self.now)
        qs = self._sim.queue_list
        out = np.zeros(len(fns))
        for k, i in enumerate(np.asarray(fns).tolist()):
            q = qs[i]
            q.advance(self.now)
            out[k] = q.concurrency_seconds(t0, t1)
        return out

    def in_system_since(
        self, fns: np.ndarray, t0: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        qs = self._sim.queue_list
        idx = np.asarray(fns).tolist()
        starts = np.asarray(t0, dtype=float).tolist() if np.ndim(t0) else [float(t0)] * len(idx)
        seconds, busy = in_system_many([qs[i] for i in idx], starts, self.now)
        return np.array(seconds, dtype=float), np.array(busy, dtype=bool)

    def queued_counts(self, fns: np.ndarray) -> np.ndarray:
        return self._counts(fns, "queue_length")

    def in_flight_counts(self, fns: np.ndarray) -> np.ndarray:
        return self._counts(fns, "in_flight")

    def _counts(self, fns: np.ndarray, what: str) -> np.ndarray:
        """Per function of ``fns``: its queue advanced to now, then ``queue.<what>(now)``
        (a count of requests)."""
        qs, now = self._sim.queue_list, self.now
        out = np.zeros(len(fns), dtype=np.int64)
        for k, i in enumerate(np.asarray(fns).tolist()):
            q = qs[i]
            q.advance(now)
            out[k] = getattr(q, what)(now)
        return out

    # ---- pods and GPUs --------------------------------------------------------------
    def pods(self, function: str | None = None) -> list[PodInfo]:
        self._fresh()
        cached = self._pods.get(function)
        if cached is None:
            if function is None:
                pods = sorted(
                    (p for live in self._sim.live.values() for p in live.values()),
                    key=lambda p: p.id,
                )
            else:
                pods = list(self._sim.live[function].values())  # created in id order
            cached = self._pods[function] = [pod_info(p) for p in pods]
        return list(cached)

    def pods_of(self, fn: int) -> list[PodInfo]:
        return self.pods(self._sim.queue_list[fn].name)

    def gpus(self) -> list[GpuInfo]:
        self._fresh()
        if self._gpus is None:
            self._gpus = [gpu_info(g) for g in self._sim.gpus]
        return list(self._gpus)

    # ---- one function ------------------------------------------------------------------
    def arrivals(self, function: str, t0: float, t1: float) -> int:
        q = self._sim.queues[function]
        if q.closed_loop:
            q.advance(self.now)
        return q.arrivals_between(t0, min(t1, self.now))

    def concurrency(self, function: str, t0: float, t1: float) -> float:
        t1 = min(t1, self.now)
        if t1 <= t0:
            return 0.0
        q = self._sim.queues[function]
        q.advance(self.now)
        return q.concurrency_seconds(t0, t1) / (t1 - t0)

    def total_arrivals(self, function: str) -> int:
        return int(self._sim.workload.arrivals[function].size)

    def queue_length(self, function: str) -> int:
        q = self._sim.queues[function]
        q.advance(self.now)
        return q.queue_length(self.now)

    def in_flight(self, function: str) -> int:
        q = self._sim.queues[function]
        q.advance(self.now)
        return q.in_flight(self.now)

    def latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        return self._sim.perf.mean_latency_s(model, batch, sm_pct, quota)

    # ---- GPUs by id (for policies that read only the GPUs they need) ---------------------
    def gpu_pod_counts(self) -> np.ndarray:
        self._fresh()
        if self._gpu_pods is None:
            self._gpu_pods = np.array([g.n_pods for g in self._sim.gpus], dtype=np.int64)
            self._gpu_pods.setflags(write=False)
        return self._gpu_pods

    def gpus_of(self, ids: np.ndarray) -> list[GpuInfo]:
        self._fresh()
        gpus, infos = self._sim.gpus, self._gpu_infos
        out = []
        for i in np.asarray(ids).tolist():
            info = infos.get(i)
            if info is None:
                info = infos[i] = gpu_info(gpus[i]) if self._gpus is None else self._gpus[i]
            out.append(info)
        return out

    def gpu_rects(self, ids: np.ndarray) -> list[tuple[tuple[int, int, int, int], ...]]:
        gpus = self._sim.gpus
        return [gpus[i].rect_boxes for i in np.asarray(ids).tolist()]

    def gpu_mem_free_mb(self, ids: np.ndarray) -> np.ndarray:
        gpus = self._sim.gpus
        return np.array([gpus[i].mem_free_mb for i in np.asarray(ids).tolist()], dtype=float)
