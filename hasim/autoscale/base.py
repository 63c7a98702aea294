"""The autoscaling interface: ``decide(now, view) -> actions``.

Autoscalers are plain objects with no SimPy inside; the simulation calls ``decide``
every ``period_s`` simulated seconds (and once at t = 0) and applies the returned
actions with their delays: a created pod serves after its cold-start phases; a quota
update reaches the token scheduler after ``cluster.quota_delay``; a deleted pod stops
taking batches at once and releases its GPU share when its running batch ends.

``view.cause`` says why a call happens (``Call.TICK``: the periodic decision;
``Call.WAKE``: between ticks, a function without pods got a request, only for policies
with ``wake_on_arrival``; ``view.woken`` lists them). The view answers per function
(``arrivals(name, t0, t1)``, ``pods(name)``) and, for policies that decide for all
functions at once, with arrays indexed like ``view.functions()``
(``arrival_counts``, ``pod_counts``, ``in_system_seconds``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from hasim.workload.base import FunctionSpec


class Call(StrEnum):
    """Why ``decide`` is called: the periodic tick (and the first call, at t = 0) or a
    wake between ticks (a function without pods got a request; ``wake_on_arrival``)."""

    TICK = "tick"
    WAKE = "wake"


@dataclass(frozen=True)
class CreatePod:
    """Start a pod of ``function`` with (sm_pct %, quota fraction, batch).

    gpu/row pin the placement (None: the cluster's placement chooses);
    exclusive: the pod holds a whole GPU (KServe-style).
    warm: the pod is already running (provisioned before the run): no cold start.
    rect: with ``gpu``, place the pod as a box (x, y, w, h) on that GPU (x, w in
    thousandths of the token window, y, h in SM %; see hasim.cluster.gpu).
    mig: a MIG profile name (``"3g.40gb"``): the pod runs in a MIG instance of that
    profile and ``sm_pct`` is percent of the instance (hasim.cluster.mig). Without
    ``gpu``: a new instance for this pod, on the first GPU whose layout has room (GPUs
    already split first, then unused ones; the start that fragments least). With ``gpu``
    and ``mig_start``: into the instance (mig, mig_start) of that GPU, created (pending,
    ``cluster.mig_reconfigure_s``) when absent.
    """

    function: str
    sm_pct: float
    quota: float
    batch: int
    gpu: int | None = None
    row: int | None = None
    exclusive: bool = False
    warm: bool = False
    rect: tuple[int, int, int, int] | None = None
    mig: str | None = None
    mig_start: int | None = None


@dataclass(frozen=True)
class ReconfigureMig:
    """Reconfigure GPU ``gpu`` to the MIG ``layout`` ((profile, start slice), ...):
    instances not in it are drained away (their pods deleted; each is gone when its last
    pod is removed), missing ones are created pending and become ready
    ``cluster.mig_reconfigure_s`` after the slices they need are free. warm: new
    instances on free slices are ready at once (configured before the run)."""

    gpu: int
    layout: tuple[tuple[str, int], ...]
    warm: bool = False


@dataclass(frozen=True)
class UpdateQuota:
    """Change a running pod's time quota (fraction of the window)."""

    pod: int
    quota: float


@dataclass(frozen=True)
class DeletePod:
    """Drain and remove a pod."""

    pod: int


Action = CreatePod | UpdateQuota | DeletePod | ReconfigureMig


@dataclass(frozen=True)
class PodInfo:
    """What an autoscaler may know of a pod. Times in s; quota as a fraction."""

    id: int
    function: str
    model: str
    sm_pct: float
    quota: float
    batch: int
    state: str
    gpu: int | None
    row: int
    created_at: float
    ready_at: float
    mig: int | None = None  # uid of the MIG instance holding it (sm_pct: % of it)


@dataclass(frozen=True)
class MigInfo:
    """A MIG instance: profile name, start memory slice, state (pending, ready,
    draining), its pods' ids and the SM % of the instance its non-empty rows hold."""

    uid: int
    profile: str
    start: int
    state: str
    pods: tuple[int, ...]
    sm_used: float


@dataclass(frozen=True)
class GpuInfo:
    """A GPU: rows as (sm_pct, free quota fraction) (sm_pct 0 = empty row); rects: boxes
    of rectangle-placed pods; occupancy = HGO; memory in MB; mig: its MIG instances."""

    id: int
    type: str
    rows: tuple[tuple[float, float], ...]
    rects: tuple[tuple[int, int, int, int], ...]
    occupancy: float
    mem_free_mb: float
    pods: tuple[int, ...]
    mig: tuple[MigInfo, ...] = ()


class ClusterView(Protocol):
    """Read-only view of the cluster handed to ``decide``. Arrays are indexed like
    ``functions()``; ``fns`` arguments are int arrays of such indices."""

    now: float
    cause: Call
    woken: np.ndarray  # indices of the functions whose arrival woke this call (WAKE)

    def functions(self) -> list[FunctionSpec]: ...

    def function_index(self, name: str) -> int:
        """Position of function ``name`` in ``functions()``."""
        ...

    # ---- arrays over all functions ----------------------------------------------
    def arrival_counts(self, t0: float, t1: float | None = None) -> np.ndarray:
        """int64 per function: requests that arrived in (t0, t1] (t1: now; clipped to
        now)."""
        ...

    def workload_arrivals(self) -> np.ndarray:
        """int64 per function: all requests of the workload (static provisioning)."""
        ...

    def pod_counts(self, state: str) -> np.ndarray:
        """int64 per function: its pods in ``state`` (starting, ready or draining)."""
        ...

    def in_system_seconds(self, fns: np.ndarray, t0: float, t1: float) -> np.ndarray:
        """float64 per function of ``fns``: request-seconds spent queued or in service
        during (t0, t1] (t1 <= now): the integral of the function's concurrency."""
        ...

    def in_system_since(
        self, fns: np.ndarray, t0: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per function of ``fns``: the request-seconds spent queued or in service during
        (t0, now] (float64, as ``in_system_seconds``; ``t0`` one time (s) for all or one
        per function) and whether any request is in the system at ``now`` (bool; False
        promises 0 request-seconds over any later interval without a new arrival)."""
        ...

    def queued_counts(self, fns: np.ndarray) -> np.ndarray:
        """int64 per function of ``fns``: requests waiting at ``now``."""
        ...

    def in_flight_counts(self, fns: np.ndarray) -> np.ndarray:
        """int64 per function of ``fns``: requests being served at ``now``."""
        ...

    # ---- per function and cluster-wide -----------------------------------------------
    def pods(self, function: str | None = None) -> list[PodInfo]:
        """Live pods (starting, ready, draining) of ``function`` (None: all), by id."""
        ...

    def pods_of(self, fn: int) -> list[PodInfo]:
        """Live pods of the function at index ``fn``, by id."""
        ...

    def gpus(self) -> list[GpuInfo]: ...

    def arrivals(self, function: str, t0: float, t1: float) -> int:
        """Requests of ``function`` that arrived in (t0, t1] (t1 is clipped to now)."""
        ...

    def concurrency(self, function: str, t0: float, t1: float) -> float:
        """Time-averaged requests in the system (queued + in service) over (t0, t1]."""
        ...

    def total_arrivals(self, function: str) -> int:
        """All requests of ``function`` in the workload (for static provisioning)."""
        ...

    def queue_length(self, function: str) -> int:
        """Requests waiting (arrived, not started, not dropped) at ``now``."""
        ...

    def in_flight(self, function: str) -> int:
        """Requests being served on a pod at ``now``."""
        ...

    def latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        """Mean batch latency (s) from the simulation's latency model."""
        ...

    # ---- GPUs by id ---------------------------------------------------------------------
    def gpu_pod_counts(self) -> np.ndarray:
        """int64 per GPU, indexed by GPU id like ``gpus()``: the pods placed on it (a GPU
        with none is unused)."""
        ...

    def gpus_of(self, ids: np.ndarray) -> list[GpuInfo]:
        """The GPUs with these ids, in that order (as ``gpus()`` describes them)."""
        ...

    def gpu_rects(self, ids: np.ndarray) -> list[tuple[tuple[int, int, int, int], ...]]:
        """Per GPU of ``ids``: the boxes (x, y, w, h) of its rectangle-placed pods, in
        placement order (empty: none)."""
        ...

    def gpu_mem_free_mb(self, ids: np.ndarray) -> np.ndarray:
        """float64 per GPU of ``ids``: its free memory (MB)."""
        ...


class Autoscaler(Protocol):
    """An autoscaling policy. ``period_s``: decision period in s (None: only at t = 0).

    An autoscaler may also set ``wake_on_arrival = True``: then ``decide`` is called
    additionally at the first arrival of a function that has no pods (Knative's
    immediate tick at zero scale, HAS-GPU's scale-to-1 on first sight).
    """

    period_s: float | None

    def decide(self, now: float, view: ClusterView) -> list[Action]: ...
