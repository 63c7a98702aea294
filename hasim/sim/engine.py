"""The simulation: SimPy control plane (autoscaler, pod lifecycle, sampling) around the
array-based data plane of ``hasim.cluster.gateway`` (``sim.fidelity=batch``) or the
event-driven one of ``hasim.cluster.kernel_plane`` (``sim.fidelity=kernel``: batches run
as kernel sequences on each GPU's token scheduler; pods register with their GPU's
scheduler when ready, quota changes go to it after ``quota_delay``, a removed pod
unregisters, a draining pod finishes its running inference first).

Same-time order (pinned by a test): at one instant the data plane comes first
(batches that start by then are started, completions and arrivals up to then are
seen), then pod lifecycle events (a pod becoming ready, a quota applied, a drained
pod removed), then the autoscaler's decision; utilisation samples at that instant see
the state after all of these. In kernel mode an inference that ends at the same instant
as a lifecycle event may be seen after it (its end is an event of the scheduler); the
autoscaler's decision always sees it.
Simulated time only: nothing reads the wall clock.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import simpy

from hasim.autoscale.base import (
    Action,
    Autoscaler,
    CreatePod,
    DeletePod,
    GpuInfo,
    PodInfo,
    UpdateQuota,
)
from hasim.autoscale.kpa import pod_overhead
from hasim.cluster.gateway import FunctionQueue
from hasim.cluster.gpu import Gpu, gpu_type
from hasim.cluster.kernel_plane import (
    FIDELITIES,
    KernelBackend,
    KernelQueue,
    SchedulerFactory,
    kernel_source,
    token_schedulers,
)
from hasim.cluster.models import model_facts
from hasim.cluster.placement import first_fit_rows
from hasim.cluster.pod import PHASES, Pod, PodState, sample_cold_start, validate_pod_request
from hasim.config.schema import ClusterConfig, SimConfig
from hasim.errors import HasimError, InputError
from hasim.perf.base import LatencyModel, batch_table
from hasim.sim.rng import Streams
from hasim.workload.base import FunctionSpec, Workload

if TYPE_CHECKING:
    from hasim.sim.perfetto import KernelTrace

# SimPy event priorities within one instant (lower runs first)
P_LIFECYCLE, P_DECIDE, P_SAMPLE = 1, 2, 3


def _at(env: simpy.Environment, delay: float, priority: int) -> simpy.Event:
    """An event ``delay`` s from now that fires after lower-priority-number events."""
    ev = simpy.Event(env)
    ev._ok = True
    ev._value = None
    env.schedule(ev, priority, delay)
    return ev


@dataclass
class SimLogs:
    """Everything a run records besides the per-function batch logs."""

    pods: list[dict[str, object]] = field(default_factory=list)
    actions: list[dict[str, object]] = field(default_factory=list)
    alloc: list[tuple[int, int, str, float, float, float, float, bool, float]] = field(
        default_factory=list
    )


class Simulation:
    """One run: ``Simulation(...).run()`` returns itself with queues and logs filled."""

    def __init__(
        self,
        workload: Workload,
        perf: LatencyModel,
        autoscaler: Autoscaler,
        cluster: ClusterConfig,
        sim: SimConfig,
        seed: int,
        progress: Callable[[float], None] | None = None,
        schedulers: SchedulerFactory | None = None,
        trace: KernelTrace | None = None,
    ) -> None:
        """``schedulers`` (kernel mode): makes each GPU's token scheduler, by default a
        ``TokenScheduler`` with the ``sim`` settings recording into ``trace``."""
        if sim.fidelity not in FIDELITIES:
            raise InputError(
                f"sim.fidelity={sim.fidelity!r} is unknown", expected=" or ".join(FIDELITIES)
            )
        self.workload = workload
        self.perf = perf
        self.autoscaler = autoscaler
        self.ccfg = cluster
        self.scfg = sim
        self.streams = Streams(seed)
        self.progress = progress
        self.env = simpy.Environment()
        gt = gpu_type(cluster.gpu)
        if cluster.nodes < 1 or cluster.gpus_per_node < 1:
            raise InputError(
                "the cluster needs at least one GPU", expected="nodes >= 1, gpus_per_node >= 1"
            )
        if cluster.max_batch < 1:
            raise InputError(f"cluster.max_batch={cluster.max_batch}", expected="an integer >= 1")
        self.gpus = [
            Gpu(i, f"node{i // cluster.gpus_per_node}", gt, cluster.rows_per_gpu)
            for i in range(cluster.nodes * cluster.gpus_per_node)
        ]
        self.price_per_hour = cluster.price_per_gpu_hour or gt.price_per_hour
        self.specs: dict[str, FunctionSpec] = {f.name: f for f in workload.functions}
        for f in workload.functions:
            if not perf.knows(f.model):
                raise InputError(
                    f"function {f.name!r} serves unknown model {f.model!r}",
                    expected=f"a model the latency model {perf.name!r} knows",
                )
        self.backend: KernelBackend | None = None  # kernel mode: the GPUs' schedulers
        if sim.fidelity == "kernel":
            self.backend = KernelBackend(
                self.env,
                schedulers
                or token_schedulers(
                    sim.token_window_s, sim.launch_margin_s, sim.adaptive_tokens, trace
                ),
                kernel_source(sim.kernel_model, sim.kernels_per_inference),
                functools.cache(lambda m, b: perf.mean_latency_s(m, b, 100.0, 1.0))
                if sim.launch_gated
                else None,
            )
        self.queues: dict[str, FunctionQueue] = {}
        # overhead split: the part the pod's serving process holds per batch, the rest a
        # post-service delay per request (cluster.overhead_held_s / overhead_holds_pod)
        held = pod_overhead(cluster)
        for f in workload.functions:
            rng = self.streams.get("service", f.name)
            common = {
                "name": f.name,
                "arrivals": workload.arrivals[f.name],
                "max_wait": cluster.max_wait,
                "timeout": cluster.timeout,
                "overhead": held,
                "delay": cluster.overhead - held,
                "noise": (lambda n, rng=rng: perf.noise(rng, n)),
                # per-request overhead variability (cluster.overhead_cv), own stream
                "delay_cv": cluster.overhead_cv,
                "delay_rng": self.streams.get("overhead", f.name) if cluster.overhead_cv else None,
            }
            if self.backend is not None:
                self.queues[f.name] = KernelQueue(**common, env=self.env, launch=self.backend.run)
            else:
                self.queues[f.name] = FunctionQueue(**common)
        self.cold_rng = self.streams.get("cold_start")
        self.pods: dict[int, Pod] = {}
        self._next_pod = 0
        self._tables: dict[tuple[str, float, float, int], list[float]] = {}
        self.logs = SimLogs()
        self.live: dict[str, dict[int, Pod]] = {f.name: {} for f in workload.functions}
        self.epoch = 0  # bumped whenever pods or GPUs change; the view caches per epoch
        self._wake_at: dict[str, float] = {}
        self._last_decide = -math.inf
        self.end_time = workload.duration_s + sim.drain
        self.view = _View(self)

    # ---- helpers -------------------------------------------------------------
    def table(self, model: str, sm_pct: float, quota: float, batch: int) -> list[float]:
        key = (model, sm_pct, quota, batch)
        t = self._tables.get(key)
        if t is None:
            t = batch_table(self.perf, model, sm_pct, quota, batch)
            self._tables[key] = t
        return t

    def _log_action(self, action: Action, ok: bool, note: str = "", pod: int | None = None) -> None:
        self.logs.actions.append(
            {
                "time": self.env.now,
                "action": type(action).__name__,
                "pod": pod,
                "function": getattr(action, "function", None)
                or (self.pods[pod].function if pod is not None and pod in self.pods else None),
                "sm_pct": getattr(action, "sm_pct", math.nan),
                "quota": getattr(action, "quota", math.nan),
                "ok": ok,
                "note": note,
            }
        )

    def _open_alloc(self, pod: Pod) -> None:
        pod._alloc_since = self.env.now  # type: ignore[attr-defined]

    def _close_alloc(self, pod: Pod) -> None:
        t0 = pod._alloc_since  # type: ignore[attr-defined]
        gid = pod.gpu.id if pod.gpu is not None else -1
        self.logs.alloc.append(
            (
                pod.id,
                gid,
                pod.function,
                pod.sm_pct,
                pod.quota,
                t0,
                self.env.now,
                pod.exclusive,
                pod.mem_mb,
            )
        )

    def _check(self) -> None:
        if self.scfg.check_invariants:
            for g in self.gpus:
                g.check()

    # ---- actions ---------------------------------------------------------------
    def apply(self, action: Action) -> None:
        self.epoch += 1
        if isinstance(action, CreatePod):
            self._create(action)
        elif isinstance(action, UpdateQuota):
            self._update(action)
        elif isinstance(action, DeletePod):
            self._delete(action)
        else:
            raise HasimError(f"unknown action {action!r}")
        self._check()

    def _create(self, a: CreatePod) -> None:
        spec = self.specs.get(a.function)
        if spec is None:
            raise HasimError(f"autoscaler created a pod for unknown function {a.function!r}")
        sm, q = (100.0, 1.0) if a.exclusive else (float(a.sm_pct), float(a.quota))
        validate_pod_request(sm, q, a.batch)
        facts = model_facts(spec.model, self.ccfg.model_memory_mb)
        if a.rect is not None:
            if a.gpu is None or not 0 <= a.gpu < len(self.gpus):
                raise HasimError(f"CreatePod with rect {a.rect} needs a valid gpu, got {a.gpu}")
            g = self.gpus[a.gpu]
            spot = (g, -1) if g.fits_rect(tuple(a.rect), facts.gpu_mem_mb) else None
        elif a.gpu is not None:
            if not 0 <= a.gpu < len(self.gpus):
                raise HasimError(f"CreatePod names GPU {a.gpu}; the cluster has {len(self.gpus)}")
            g = self.gpus[a.gpu]
            row = (
                a.row
                if a.row is not None
                else next((i for i in range(len(g.rows)) if g.fits(i, sm, q, facts.gpu_mem_mb)), -1)
            )
            spot = (g, row) if row >= 0 and g.fits(row, sm, q, facts.gpu_mem_mb) else None
        else:
            spot = first_fit_rows(self.gpus, sm, q, facts.gpu_mem_mb, a.exclusive)
        if spot is None:
            self._log_action(a, False, "no_capacity")
            return
        pod = Pod(
            self._next_pod,
            a.function,
            spec.model,
            sm,
            q,
            a.batch,
            facts.gpu_mem_mb,
            self.env.now,
            exclusive=a.exclusive,
        )
        self._next_pod += 1
        if a.rect is not None:
            spot[0].add_rect(pod, tuple(a.rect))
        else:
            spot[0].add(pod, spot[1])
        self.pods[pod.id] = pod
        self.live[pod.function][pod.id] = pod
        self._open_alloc(pod)
        if a.warm:
            pod.phase_s = dict.fromkeys(PHASES, 0.0)
        else:
            pod.phase_s = sample_cold_start(self.ccfg.cold_start, facts.weights_mb, self.cold_rng)
        self._log_action(a, True, pod=pod.id)
        self.env.process(self._start_pod(pod))

    def _start_pod(self, pod: Pod):  # SimPy process
        yield _at(self.env, sum(pod.phase_s.values()), P_LIFECYCLE)
        if pod.state is not PodState.STARTING:
            return
        q = self.queues[pod.function]
        q.advance(self.env.now)
        pod.state = PodState.READY
        pod.ready_at = self.env.now
        self.epoch += 1
        if self.backend is not None:
            # the scheduler produces the quota's effect: the table is at quota 1
            self.backend.register(pod.id, pod.gpu.id, pod.model, pod.sm_pct, pod.quota)
            q.add_server(pod.id, self.env.now, self.table(pod.model, pod.sm_pct, 1.0, pod.batch))
            return
        q.add_server(pod.id, self.env.now, self.table(pod.model, pod.sm_pct, pod.quota, pod.batch))

    def _update(self, a: UpdateQuota) -> None:
        pod = self.pods.get(a.pod)
        if pod is None or pod.state in (PodState.DRAINING, PodState.REMOVED) or pod.exclusive:
            self._log_action(a, False, "no_such_pod", a.pod)
            return
        if not (0 < a.quota <= 1) or not pod.gpu.can_set_quota(pod, a.quota):
            self._log_action(a, False, "no_quota", a.pod)
            return
        self._log_action(a, True, pod=a.pod)
        self.env.process(self._apply_quota(pod, float(a.quota)))

    def _apply_quota(self, pod: Pod, quota: float):  # SimPy process
        yield _at(self.env, self.ccfg.quota_delay, P_LIFECYCLE)
        if pod.state in (PodState.DRAINING, PodState.REMOVED) or not pod.gpu.can_set_quota(
            pod, quota
        ):
            return
        q = self.queues[pod.function]
        q.advance(self.env.now)
        self._close_alloc(pod)
        pod.gpu.set_quota(pod, quota)
        self.epoch += 1
        self._open_alloc(pod)
        if pod.state is PodState.READY:
            if self.backend is not None:
                self.backend.set_quota(pod.id, quota)
            else:
                q.set_table(pod.id, self.table(pod.model, pod.sm_pct, quota, pod.batch))
        self._check()

    def _delete(self, a: DeletePod) -> None:
        pod = self.pods.get(a.pod)
        if pod is None or pod.state in (PodState.DRAINING, PodState.REMOVED):
            self._log_action(a, False, "no_such_pod", a.pod)
            return
        self._log_action(a, True, pod=a.pod)
        pod.delete_at = self.env.now
        if pod.state is PodState.STARTING:
            pod.state = PodState.DRAINING
            self._remove(pod)
            return
        q = self.queues[pod.function]
        q.advance(self.env.now)
        pod.state = PodState.DRAINING
        busy_until = q.remove_server(pod.id)
        done = q.done_event(pod.id)
        if done is not None:  # kernel mode: the running inference ends when the GPU says
            self.env.process(self._drain_kernel(pod, done))
            return
        self.env.process(self._drain(pod, max(0.0, busy_until - self.env.now)))

    def _drain(self, pod: Pod, delay: float):  # SimPy process
        yield _at(self.env, delay, P_LIFECYCLE)
        self._remove(pod)

    def _drain_kernel(self, pod: Pod, done: simpy.Event):  # SimPy process
        yield done
        self._remove(pod)

    def _remove(self, pod: Pod) -> None:
        if self.backend is not None and self.backend.registered(pod.id):
            self.backend.unregister(pod.id)
        del self.live[pod.function][pod.id]
        self._close_alloc(pod)
        pod.gpu.remove(pod)
        pod.state = PodState.REMOVED
        pod.removed_at = self.env.now
        self.epoch += 1
        self._check()

    # ---- processes -------------------------------------------------------------
    def _decide(self) -> None:
        now = self.env.now
        if now == self._last_decide:
            return
        self._last_decide = now
        self.view.now = now
        for action in self.autoscaler.decide(now, self.view):
            self.apply(action)
        if getattr(self.autoscaler, "wake_on_arrival", False):
            self._schedule_wakes(now)

    def _schedule_wakes(self, now: float) -> None:
        """Wake the autoscaler at the next arrival of every function that has no pods."""
        for name, q in self.queues.items():
            if self.live[name] or self._wake_at.get(name, -1.0) > now:
                continue
            t = q.next_arrival_after(now)
            if t <= self.end_time:
                self._wake_at[name] = t
                self.env.process(self._wake(t - now))

    def _wake(self, delay: float):  # SimPy process
        yield _at(self.env, delay, P_DECIDE)
        self._decide()

    def _decide_loop(self):  # SimPy process
        yield _at(self.env, 0.0, P_DECIDE)
        period = self.autoscaler.period_s
        while True:
            self._decide()
            if not period or self.env.now + period > self.end_time:
                return
            yield _at(self.env, period, P_DECIDE)

    def _progress_loop(self):  # SimPy process
        # utilisation samples are computed exactly from the allocation log after the run
        # (hasim.sim.metrics.usage_frame); this process only reports progress
        step = max(self.end_time / 200.0, 1.0)
        while self.env.now + step <= self.end_time:
            yield _at(self.env, step, P_SAMPLE)
            self.progress(self.env.now)

    def run(self) -> Simulation:
        """Run to ``workload.duration + sim.drain`` and finish the data plane."""
        self.env.process(self._decide_loop())
        if self.progress is not None:
            self.env.process(self._progress_loop())
        self.env.run(until=self.end_time)
        for q in self.queues.values():
            q.advance(self.end_time)
            q.expire(self.end_time)
            q.finalize()
        for pod in self.pods.values():
            if pod.state is not PodState.REMOVED:
                self._close_alloc(pod)
            self.logs.pods.append(
                {
                    "pod": pod.id,
                    "function": pod.function,
                    "model": pod.model,
                    "gpu": pod.gpu.id if pod.gpu else -1,
                    "row": pod.row,
                    "sm_pct": pod.sm_pct,
                    "quota_final": pod.quota,
                    "batch": pod.batch,
                    "mem_mb": pod.mem_mb,
                    "exclusive": pod.exclusive,
                    "created_at": pod.created_at,
                    "ready_at": pod.ready_at,
                    "delete_at": pod.delete_at,
                    "removed_at": pod.removed_at,
                    **{f"phase_{k}_s": v for k, v in pod.phase_s.items()},
                }
            )
        if self.progress is not None:
            self.progress(self.end_time)
        return self


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
        p.gpu.id if p.gpu else None,
        p.row,
        p.created_at,
        p.ready_at,
    )


class _View:
    """The read-only ClusterView an autoscaler gets; data-plane queries sync lazily."""

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim
        self.now = 0.0
        self._epoch = -1
        self._pods: dict[str | None, list[PodInfo]] = {}
        self._gpus: list[GpuInfo] | None = None

    def _fresh(self) -> None:
        if self._epoch != self._sim.epoch:
            self._epoch = self._sim.epoch
            self._pods.clear()
            self._gpus = None

    def functions(self) -> list[FunctionSpec]:
        return self._sim.workload.functions

    def pods(self, function: str | None = None) -> list[PodInfo]:
        self._fresh()
        cached = self._pods.get(function)
        if cached is None:
            if function is None:
                pods = [p for live in self._sim.live.values() for p in live.values()]
            else:
                pods = list(self._sim.live[function].values())
            cached = self._pods[function] = self._pod_infos(pods)
        return list(cached)

    @staticmethod
    def _pod_infos(pods: list[Pod]) -> list[PodInfo]:
        return [pod_info(p) for p in sorted(pods, key=lambda p: p.id)]

    def gpus(self) -> list[GpuInfo]:
        self._fresh()
        if self._gpus is None:
            self._gpus = self._gpu_infos()
        return list(self._gpus)

    def _gpu_infos(self) -> list[GpuInfo]:
        return [
            GpuInfo(
                g.id,
                g.type.name,
                tuple((r.sm_pct, r.free_quota) for r in g.rows),
                tuple(b for _, b in g.rects.values()),
                g.occupancy,
                g.mem_free_mb,
                tuple(p.id for p in g.pods),
            )
            for g in self._sim.gpus
        ]

    def arrivals(self, function: str, t0: float, t1: float) -> int:
        return self._sim.queues[function].arrivals_between(t0, min(t1, self.now))

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


def slo_for(spec: FunctionSpec, perf: LatencyModel, overhead: float, slo_scale: float) -> float:
    """A function's SLO (s): its own, else slo_scale x (batch-1 full-GPU latency + overhead)."""
    if spec.slo_s is not None:
        return float(spec.slo_s)
    return slo_scale * (perf.mean_latency_s(spec.model, 1, 100.0, 1.0) + overhead)


__all__ = ["Simulation", "pod_info", "slo_for", "np"]
