"""The simulation: SimPy control plane (autoscaler, pod lifecycle, sampling) around the
array-based data plane of ``hasim.cluster.gateway`` (``sim.fidelity=batch``) or the
event-driven one of ``hasim.cluster.kernel_plane`` (``sim.fidelity=kernel``: batches run
as kernel sequences on each GPU's token scheduler; pods register with their GPU's
scheduler when ready, quota changes go to it after ``quota_delay``, a removed pod
unregisters, a draining pod finishes its running inference first). A function whose
requests come from a closed-loop client (``workload.client=threadpool``) gets the
event-driven queue of ``hasim.cluster.closed_loop`` in either fidelity: its send times
depend on its completions.

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
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import simpy

from hasim.autoscale.base import (
    Action,
    Autoscaler,
    Call,
    CreatePod,
    DeletePod,
    ReconfigureMig,
    UpdateQuota,
)
from hasim.cluster.closed_loop import ClientQueue, KernelClientQueue
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
from hasim.cluster.mig import DRAINING, PENDING, READY, MigInstance, best_start, cost_fraction
from hasim.cluster.models import ModelFacts, model_facts
from hasim.cluster.placement import first_fit_rows
from hasim.cluster.pod import PHASES, Pod, PodState, sample_cold_start, validate_pod_request
from hasim.config.schema import ClusterConfig, SimConfig
from hasim.errors import HasimError, InputError
from hasim.hardware import mig_layout_fits
from hasim.perf.base import LatencyModel, batch_table
from hasim.sim.rng import Streams
from hasim.sim.view import SimulationView, pod_info
from hasim.workload.base import FunctionSpec, Workload

if TYPE_CHECKING:
    from hasim.cluster.trace import KernelTrace

# SimPy event priorities within one instant (lower runs first)
P_LIFECYCLE, P_DECIDE, P_SAMPLE = 1, 2, 3
TICK_TOL_S = 1e-9  # a call this close before the next tick is that tick (s)


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
    alloc: list[tuple[int, int, str, float, float, float, float, bool, float, int, float]] = field(
        default_factory=list
    )
    mig: list[dict[str, object]] = field(default_factory=list)  # MIG instances (at the end)


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
        price = cluster.price_per_gpu_hour or gt.price_per_hour
        if price is None:
            raise InputError(
                f"cluster.gpu={cluster.gpu!r}: the hardware catalogue has no price for {gt.name}",
                expected="cluster.price_per_gpu_hour=<USD per GPU-hour>",
            )
        self.price_per_hour = float(price)
        self.specs: dict[str, FunctionSpec] = {f.name: f for f in workload.functions}
        # a GPU-blind latency model (synthetic) serves fictitious models; others need facts
        self.toy_models = getattr(perf, "gpu", None) is None
        for f in workload.functions:
            if not perf.knows(f.model):
                raise InputError(
                    f"function {f.name!r} serves unknown model {f.model!r}",
                    expected=f"a model the latency model {perf.name!r} knows",
                )
            model_facts(f.model, toy=self.toy_models)
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
        self.fn_index = {f.name: i for i, f in enumerate(workload.functions)}
        # overhead split: the part the pod's serving process holds per batch, the rest a
        # post-service delay per request (cluster.overhead_held_s / overhead_holds_pod)
        held = cluster.pod_overhead_s()
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
                "fail_s": cluster.fail_s,
            }
            client = workload.clients.get(f.name)
            if client is not None:  # closed loop: arrivals become known as it sends
                common["arrivals"] = np.full(client.total, np.inf)
                if self.backend is not None:
                    self.queues[f.name] = KernelClientQueue(
                        **common, env=self.env, launch=self.backend.run, client=client.start()
                    )
                else:
                    self.queues[f.name] = ClientQueue(**common, client=client.start())
            elif self.backend is not None:
                self.queues[f.name] = KernelQueue(**common, env=self.env, launch=self.backend.run)
            else:
                self.queues[f.name] = FunctionQueue(**common)
        self.queue_list = [self.queues[f.name] for f in workload.functions]
        # functions whose requests come from a closed-loop client (by index)
        self.closed_loop = [i for i, q in enumerate(self.queue_list) if q.closed_loop]
        self.cold_rng = self.streams.get("cold_start")
        self.pods: dict[int, Pod] = {}
        self._next_pod = 0
        self._tables: dict[tuple[str, float, float, int], list[float]] = {}
        self.logs = SimLogs()
        self.live: dict[str, dict[int, Pod]] = {f.name: {} for f in workload.functions}
        n = len(workload.functions)
        # live pods per function and state (the view's pod_counts)
        self.pod_counts = {
            s.value: np.zeros(n, dtype=np.int64)
            for s in (PodState.STARTING, PodState.READY, PodState.DRAINING)
        }
        self.epoch = 0  # bumped whenever pods or GPUs change; the view caches per epoch
        # wakes (wake_on_arrival): pending (time, function) wakes; the functions that may
        # need one (no live pod, no pending wake) are looked at after each decision
        self._wakes: list[tuple[float, int]] = []
        self._wake_check: set[int] = set(range(n))
        self._last_decide = -math.inf
        self._next_tick = -math.inf
        self.end_time = workload.duration_s + sim.drain
        self.view = SimulationView(self)
        # MIG instances by uid (removed ones too), ready events of pending ones
        self.mig: dict[int, MigInstance] = {}
        self._mig_events: dict[int, simpy.Event] = {}
        self._mig_scheduled: set[int] = set()

    def _set_state(self, pod: Pod, state: PodState) -> None:
        """Move a pod to ``state``, keeping the per-function pod counts."""
        counts, i = self.pod_counts, self.fn_index[pod.function]
        if pod.state.value in counts:
            counts[pod.state.value][i] -= 1
        pod.state = state
        if state.value in counts:
            counts[state.value][i] += 1

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

    def _close_alloc(self, pod: Pod) -> None:
        """Log the allocation the pod held since ``pod.alloc_since`` (until now); nothing
        when it held none (NaN: waiting for its MIG instance)."""
        if pod.alloc_since != pod.alloc_since:
            return
        self.logs.alloc.append(
            (
                pod.id,
                pod.gpu_id,
                pod.function,
                pod.sm_pct,
                pod.quota,
                pod.alloc_since,
                self.env.now,
                pod.exclusive,
                pod.mem_mb,
                pod.mig_uid,
                pod.mig_frac,
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
        elif isinstance(action, ReconfigureMig):
            self._reconfigure(action)
        else:
            raise HasimError(f"unknown action {action!r}")
        self._check()

    def _create(self, a: CreatePod) -> None:
        spec = self.specs.get(a.function)
        if spec is None:
            raise HasimError(f"autoscaler created a pod for unknown function {a.function!r}")
        sm, q = (100.0, 1.0) if a.exclusive else (float(a.sm_pct), float(a.quota))
        validate_pod_request(sm, q, a.batch)
        facts = model_facts(spec.model, self.ccfg.model_memory_mb, toy=self.toy_models)
        if a.mig is not None:
            self._create_mig(a, spec, facts)
            return
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
        pod.alloc_since = self.env.now
        self._admit(pod, a, facts)

    def _admit(self, pod: Pod, a: CreatePod, facts: ModelFacts) -> None:
        """Register a placed pod and start its cold start."""
        self.pods[pod.id] = pod
        self.live[pod.function][pod.id] = pod
        self.pod_counts[PodState.STARTING.value][self.fn_index[pod.function]] += 1
        if a.warm:
            pod.phase_s = dict.fromkeys(PHASES, 0.0)
        else:
            pod.phase_s = sample_cold_start(self.ccfg.cold_start, facts.weights_mb, self.cold_rng)
        self._log_action(a, True, pod=pod.id)
        self.env.process(self._start_pod(pod))

    def _start_pod(self, pod: Pod):  # SimPy process
        cold = sum(pod.phase_s.values())
        if pod.mig_uid >= 0 and self.mig[pod.mig_uid].state == PENDING:
            t0 = self.env.now
            yield self._mig_event(self.mig[pod.mig_uid])
            if pod.state is not PodState.STARTING:
                return
            pod.phase_s = {"mig_reconfigure": self.env.now - t0, **pod.phase_s}
        yield _at(self.env, cold, P_LIFECYCLE)
        if pod.state is not PodState.STARTING:
            return
        q = self.queues[pod.function]
        q.advance(self.env.now)
        self._set_state(pod, PodState.READY)
        pod.ready_at = self.env.now
        self.epoch += 1
        if self.backend is not None:
            # the scheduler produces the quota's effect: the table is at quota 1
            self.backend.register(pod.id, pod.gpu_id, pod.model, pod.sm_pct, pod.quota)  # no MIG
            q.add_server(pod.id, self.env.now, self.table(pod.model, pod.sm_pct, 1.0, pod.batch))
            return
        table = self.table(pod.model, pod.sm_effective_pct, pod.quota, pod.batch)
        q.add_server(pod.id, self.env.now, table, self._slot(pod))

    def _slot(self, pod: Pod) -> tuple[int, int, float] | None:
        """Batch-mode slot contention of ``pod`` (sim.contention): its GPU, how many pods of
        its SM size the GPU runs at once, its token (quota x window, s). None for MIG pods
        (not modelled: an instance is isolated from the others)."""
        if not self.scfg.contention or pod.exclusive or pod.mig_uid >= 0:
            return None
        slots = int(math.floor(100.0 / pod.sm_pct + 1e-9))
        return (pod.gpu_id, slots, pod.quota * self.scfg.token_window_s)

    def _update(self, a: UpdateQuota) -> None:
        pod = self.pods.get(a.pod)
        if pod is None or pod.state in (PodState.DRAINING, PodState.REMOVED) or pod.exclusive:
            self._log_action(a, False, "no_such_pod", a.pod)
            return
        if not (0 < a.quota <= 1) or not self.gpus[pod.gpu_id].can_set_quota(pod, a.quota):
            self._log_action(a, False, "no_quota", a.pod)
            return
        self._log_action(a, True, pod=a.pod)
        self.env.process(self._apply_quota(pod, float(a.quota)))

    def _apply_quota(self, pod: Pod, quota: float):  # SimPy process
        yield _at(self.env, self.ccfg.quota_delay, P_LIFECYCLE)
        gpu = self.gpus[pod.gpu_id]
        if pod.state in (PodState.DRAINING, PodState.REMOVED) or not gpu.can_set_quota(pod, quota):
            return
        q = self.queues[pod.function]
        q.advance(self.env.now)
        self._close_alloc(pod)
        gpu.set_quota(pod, quota)
        self.epoch += 1
        pod.alloc_since = self.env.now
        if pod.state is PodState.READY:
            if self.backend is not None:
                self.backend.set_quota(pod.id, quota)
            else:
                table = self.table(pod.model, pod.sm_effective_pct, quota, pod.batch)
                q.set_table(pod.id, table, self._slot(pod))
        self._check()

    def _delete(self, a: DeletePod) -> None:
        pod = self.pods.get(a.pod)
        if pod is None or pod.state in (PodState.DRAINING, PodState.REMOVED):
            self._log_action(a, False, "no_such_pod", a.pod)
            return
        self._log_action(a, True, pod=a.pod)
        pod.delete_at = self.env.now
        if pod.state is PodState.STARTING:
            self._set_state(pod, PodState.DRAINING)
            self._remove(pod)
            return
        q = self.queues[pod.function]
        q.advance(self.env.now)
        self._set_state(pod, PodState.DRAINING)
        busy_until = q.remove_server(pod.id)
        if self.ccfg.stale_endpoint_s > 0:  # the gateway still routes to it for a while
            q.add_stale(self.env.now + self.ccfg.stale_endpoint_s)
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
        if not self.live[pod.function]:
            self._wake_check.add(self.fn_index[pod.function])
        self._close_alloc(pod)
        self.gpus[pod.gpu_id].remove(pod)
        self._set_state(pod, PodState.REMOVED)
        pod.removed_at = self.env.now
        self.epoch += 1
        if pod.mig_uid >= 0:
            inst = self.mig[pod.mig_uid]
            if inst.state == DRAINING and not inst.pods:
                self._drop_instance(inst)
        self._check()

    # ---- MIG instances (hasim.cluster.mig) ------------------------------------------
    def _create_mig(self, a: CreatePod, spec: FunctionSpec, facts: ModelFacts) -> None:
        """Place a CreatePod with ``mig`` (see CreatePod) and admit the pod."""
        if self.backend is not None:
            raise InputError("MIG pods in sim.fidelity=kernel", expected="sim.fidelity=batch")
        if a.exclusive or a.rect is not None:
            raise HasimError("a MIG pod cannot be exclusive or rectangle-placed")
        gt = self.gpus[0].type
        profile = gt.mig_profile(a.mig)  # InputError: no MIG on this GPU, unknown profile
        sm, q = float(a.sm_pct), float(a.quota)
        mem = facts.gpu_mem_mb
        inst: MigInstance | None = None
        row: int | None = None
        if mem <= profile.memory_mb + 1e-9:
            if a.gpu is None:
                for g in sorted(self.gpus, key=lambda g: (not g.mig, g.n_pods == 0, g.id)):
                    if g.n_pods and not g.mig:
                        continue  # row or rectangle pods
                    start = best_start(gt, self._planned(g), profile.name)
                    if start is not None:
                        inst = self._new_instance(g, profile.name, start, a.warm)
                        break
            else:
                if not 0 <= a.gpu < len(self.gpus):
                    raise HasimError(
                        f"CreatePod names GPU {a.gpu}; the cluster has {len(self.gpus)}"
                    )
                g = self.gpus[a.gpu]
                live = [i for i in g.mig if i.state in (PENDING, READY)]
                if a.mig_start is None:
                    inst = next(
                        (
                            i
                            for i in live
                            if i.profile is profile and i.find_row(sm, q, mem) is not None
                        ),
                        None,
                    )
                    start = None if inst else best_start(gt, self._planned(g), profile.name)
                else:
                    inst = next((i for i in live if i.key == (profile.name, a.mig_start)), None)
                    ok = mig_layout_fits(gt, [*self._planned(g), (profile.name, a.mig_start)])
                    start = a.mig_start if inst is None and ok else None
                if inst is None and start is not None and not (g.n_pods and not g.mig):
                    inst = self._new_instance(g, profile.name, start, a.warm)
            row = inst.find_row(sm, q, mem) if inst is not None else None
        if inst is None or row is None:
            self._log_action(a, False, "no_capacity")
            return
        pod = Pod(self._next_pod, a.function, spec.model, sm, q, a.batch, mem, self.env.now)
        self._next_pod += 1
        pod.mig_frac, pod.mig_sm_frac = cost_fraction(profile), profile.sm_fraction(gt)
        self.gpus[inst.gpu_id].add_mig(pod, inst, row)
        pod.alloc_since = self.env.now if inst.state == READY else math.nan
        self._admit(pod, a, facts)

    def _planned(self, g: Gpu) -> list[tuple[str, int]]:
        """The layout GPU ``g`` is heading to: its ready and pending instances."""
        return [i.key for i in g.mig if i.state in (PENDING, READY)]

    def _new_instance(self, g: Gpu, profile: str, start: int, warm: bool = False) -> MigInstance:
        """A new instance on ``g`` (its slices must be free in ``_planned(g)``): ready at
        once when ``warm`` (provisioned before the run) and no drained instance holds its
        slices, else pending."""
        inst = MigInstance(
            len(self.mig), g.id, g.type.mig_profile(profile), start, PENDING, self.env.now
        )
        self.mig[inst.uid] = inst
        g.mig.append(inst)
        self.epoch += 1
        held = any(d.state == DRAINING and d.slots() & inst.slots() for d in g.mig)
        if warm and not held:
            inst.state, inst.ready_at = READY, self.env.now
        else:
            self._mig_progress(g)
        return inst

    def _mig_event(self, inst: MigInstance) -> simpy.Event:
        ev = self._mig_events.get(inst.uid)
        if ev is None:
            ev = self._mig_events[inst.uid] = simpy.Event(self.env)
        return ev

    def _mig_progress(self, g: Gpu) -> None:
        """Start the reconfiguration delay of each pending instance of ``g`` whose slices
        no draining instance holds any more."""
        for inst in g.mig:
            if inst.state != PENDING or inst.uid in self._mig_scheduled:
                continue
            if any(d.state == DRAINING and d.slots() & inst.slots() for d in g.mig):
                continue
            self._mig_scheduled.add(inst.uid)
            self.env.process(self._mig_ready(inst))

    def _mig_ready(self, inst: MigInstance):  # SimPy process
        yield _at(self.env, self.ccfg.mig_reconfigure_s, P_LIFECYCLE)
        if inst.state != PENDING:
            return  # reconfigured away before it was ready
        inst.state, inst.ready_at = READY, self.env.now
        for pod in inst.pods:
            if pod.state is PodState.STARTING and pod.alloc_since != pod.alloc_since:
                pod.alloc_since = self.env.now
        self.epoch += 1
        self._mig_event(inst).succeed()
        self._check()

    def _drop_instance(self, inst: MigInstance) -> None:
        """Remove an instance whose pods are all gone; free its slices."""
        g = self.gpus[inst.gpu_id]
        inst.state, inst.removed_at = "removed", self.env.now
        g.mig.remove(inst)
        self.epoch += 1
        self._mig_progress(g)

    def _reconfigure(self, a: ReconfigureMig) -> None:
        if not 0 <= a.gpu < len(self.gpus):
            raise HasimError(f"ReconfigureMig names GPU {a.gpu}; the cluster has {len(self.gpus)}")
        g = self.gpus[a.gpu]
        layout = [(str(n), int(s)) for n, s in a.layout]
        if not mig_layout_fits(g.type, layout) or (g.n_pods and not g.mig):
            self._log_action(a, False, "bad_layout")
            return
        self._log_action(a, True)
        want = list(layout)
        for inst in list(g.mig):
            if inst.state == DRAINING:
                continue
            if inst.key in want:
                want.remove(inst.key)
                continue
            inst.state = DRAINING
            self.epoch += 1
            for pod in list(inst.pods):
                if pod.state in (PodState.STARTING, PodState.READY):
                    self._delete(DeletePod(pod.id))
            if not inst.pods and inst.state == DRAINING:
                self._drop_instance(inst)
        for name, start in want:
            self._new_instance(g, name, start, a.warm)

    # ---- processes -------------------------------------------------------------
    def _decide(self) -> None:
        now = self.env.now
        if now == self._last_decide:
            return
        self._last_decide = now
        view = self.view
        view.now = now
        if now >= self._next_tick - TICK_TOL_S:
            view.cause = Call.TICK
            self._next_tick = now + (self.autoscaler.period_s or math.inf)
        else:
            view.cause = Call.WAKE
        woken = []
        while self._wakes and self._wakes[0][0] <= now:  # wakes due (fired or not yet)
            woken.append(heapq.heappop(self._wakes)[1])
        view.woken = np.array(sorted(woken), dtype=np.int64)
        for action in self.autoscaler.decide(now, view):
            self.apply(action)
        if getattr(self.autoscaler, "wake_on_arrival", False):
            self._wake_check.update(woken)
            self._schedule_wakes(now)

    def _schedule_wakes(self, now: float) -> None:
        """Wake the autoscaler at the next arrival of every function that has no pods and
        no wake pending: only functions that lost their last pod, were just woken or never
        had a pod can be such."""
        check = self._wake_check
        for i in check:
            q = self.queue_list[i]
            if self.live[q.name]:
                continue  # looked at again when it loses its last pod
            t = q.next_arrival_after(now)
            if t <= self.end_time:
                heapq.heappush(self._wakes, (t, i))
                self.env.process(self._wake(t - now))
        check.clear()

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

    @property
    def window_s(self) -> float:
        """The workload's window (s from 0) over which cost, occupancy, mean GPU share and
        throughput are counted: the workload's duration, or, when a closed-loop client
        stretched its stages, the time its last stage ended (the run's end if it had not
        finished). Read after ``run``."""
        end = self.workload.duration_s
        for i in self.closed_loop:
            done = self.queue_list[i].client.done_at  # type: ignore[attr-defined]
            end = max(end, self.end_time if done is None else done)
        return min(end, self.end_time) if self.closed_loop else end

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
                    "gpu": pod.gpu_id,
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
                    **({"mig": pod.mig_uid} if pod.mig_uid >= 0 else {}),
                }
            )
        for inst in self.mig.values():
            self.logs.mig.append(
                {
                    "mig": inst.uid,
                    "gpu": inst.gpu_id,
                    "profile": inst.profile.name,
                    "start": inst.start,
                    "created_at": inst.created_at,
                    "ready_at": inst.ready_at,
                    "removed_at": inst.removed_at,
                }
            )
        if self.progress is not None:
            self.progress(self.end_time)
        return self


def slo_for(spec: FunctionSpec, perf: LatencyModel, overhead: float, slo_scale: float) -> float:
    """A function's SLO (s): its own, else slo_scale x (batch-1 full-GPU latency + overhead)."""
    if spec.slo_s is not None:
        return float(spec.slo_s)
    return slo_scale * (perf.mean_latency_s(spec.model, 1, 100.0, 1.0) + overhead)


__all__ = ["Simulation", "pod_info", "slo_for"]
