"""The kernel-fidelity data plane (``sim.fidelity=kernel``).

In batch mode (``hasim.cluster.gateway``) a batch's end is known when it starts: the
latency table gives it. Here a batch is one inference, a sequence of GPU kernels run by
the token scheduler of the pod's GPU (SYSTEMS.md section 1), so its end depends on
the other pods on that GPU and is known only when the scheduler says so. The data
plane is therefore driven by events:

* ``KernelQueue`` is a ``FunctionQueue`` with the same batching rule, the same batch
  and drop logs and the same noise stream (one draw per batch, in start order). A busy
  pod's ``free_at`` is ``+inf`` and its batch's ``b_end`` is ``+inf`` until the
  inference completes; then ``b_end`` gets the real end, the pod is free and the queue
  advances again. An idle pod whose next batch starts in the future (the next arrival,
  or the ``max_wait`` fill time) gets a SimPy wake event at that time: no polling.
  Because every batch is started at its own start time, a batch never starts in the
  past (in batch mode ``advance`` may start batches retroactively).
* A batch's kernels: the perf model's latency of the batch at quota 1 (the pod's SM
  partition), times the batch's noise factor, split into kernels by a
  ``KernelSource``; the scheduler turns the pod's quota and the other pods into the
  time the sequence really takes. With ``overhead_holds_pod`` the pod then stays busy
  ``overhead`` s after its last kernel, as in batch mode.
* ``KernelBackend`` holds one scheduler per GPU (created on first use), registers a
  pod when it becomes ready, passes quota changes on and unregisters a removed pod.

Requests still in service when the run ends have ``b_end = nan`` (batch mode knows
their future end; kernel mode does not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import simpy

from hasim.cluster.gateway import FunctionQueue, Server
from hasim.errors import InputError

if TYPE_CHECKING:
    from hasim.cluster.trace import KernelTrace

P_DATA = 0  # SimPy priority of data-plane wakes: before lifecycle events at one instant

FIDELITIES = ("batch", "kernel")
KERNEL_MODELS = ("operators", "uniform")


class GpuScheduler(Protocol):
    """What the kernel plane needs from one GPU's token scheduler
    (``hasim.cluster.tokens.TokenScheduler``)."""

    def add_client(self, pod_id: int, sm_pct: float, quota: float) -> None: ...

    def set_quota(self, pod_id: int, quota: float) -> None: ...

    def remove_client(self, pod_id: int) -> None: ...

    def run(
        self,
        pod_id: int,
        kernels_s: Sequence[float] | np.ndarray,
        launch_s: Sequence[float] | np.ndarray | None = None,
    ) -> simpy.Event: ...


# (model, batch, sm_pct, total_s) -> kernel durations (s) at quota 1, summing to total_s
KernelSource = Callable[[str, int, float, float], np.ndarray]
# (env, gpu_id) -> that GPU's scheduler
SchedulerFactory = Callable[[simpy.Environment, int], GpuScheduler]


def uniform_kernels(per_inference: int) -> KernelSource:
    """``per_inference`` equal kernels per inference (the simplest kernel model)."""
    if int(per_inference) != per_inference or per_inference < 1:
        raise InputError(
            f"sim.kernels_per_inference={per_inference!r} is invalid", expected="an integer >= 1"
        )
    n = int(per_inference)

    def kernels(model: str, batch: int, sm_pct: float, total_s: float) -> np.ndarray:
        return np.full(n, total_s / n)

    return kernels


def operator_kernels() -> KernelSource:
    """Kernel sequences from ``hasim.perf.operators`` (per-model operator lists; its
    fallback sequence for models without operator data), scaled to each batch's latency."""
    from hasim.perf.operators import default_kernel_model

    km = default_kernel_model()
    shapes: dict[tuple[str, int, float], np.ndarray] = {}

    def kernels(model: str, batch: int, sm_pct: float, total_s: float) -> np.ndarray:
        # kernels_s scales linearly in total_s: cache each sequence's shape (sum 1) once
        key = (model, batch, sm_pct)
        shape = shapes.get(key)
        if shape is None:
            shape = shapes[key] = np.asarray(
                km.kernels_s(model, batch, sm_pct, total_s=1.0), dtype=float
            )
        return shape * total_s

    return kernels


def kernel_source(name: str, per_inference: int) -> KernelSource:
    """The kernel source named by ``sim.kernel_model`` (operators | uniform)."""
    if name == "uniform":
        return uniform_kernels(per_inference)
    if name == "operators":
        return operator_kernels()
    raise InputError(f"sim.kernel_model={name!r} is unknown", expected=" or ".join(KERNEL_MODELS))


def token_schedulers(
    window_s: float = 0.040,
    launch_margin_s: float = 0.001,
    adaptive: bool = False,
    trace: KernelTrace | None = None,
) -> SchedulerFactory:
    """A factory of ``TokenScheduler`` per GPU with the given token window (s), launch
    margin (s) and token policy, all recording into ``trace`` when given."""
    if not window_s > 0:
        raise InputError(f"sim.token_window_s={window_s!r} is invalid", expected="a time > 0 s")
    if not launch_margin_s >= 0:
        raise InputError(
            f"sim.launch_margin_s={launch_margin_s!r} is invalid", expected="a time >= 0 s"
        )

    def make(env: simpy.Environment, gpu_id: int) -> GpuScheduler:
        from hasim.cluster.tokens import TokenScheduler

        return TokenScheduler(
            env,
            gpu_id,
            window_s=window_s,
            launch_margin_s=launch_margin_s,
            trace=trace,
            adaptive=adaptive,
        )

    return make


class KernelBackend:
    """One scheduler per GPU and the pods registered with them."""

    def __init__(
        self,
        env: simpy.Environment,
        schedulers: SchedulerFactory,
        kernels: KernelSource,
        launch_total: Callable[[str, int], float] | None = None,
    ) -> None:
        """``launch_total`` (launch-gated mode, ``sim.launch_gated``): the latency (s) of
        a batch of the model at SM 100 %, quota 1; the host then launches the kernels
        paced like that run and the token gates the launches (``TokenScheduler.run``'s
        ``launch_s``). None: kernels run synchronously under the token (SYSTEMS.md)."""
        self.env = env
        self._make = schedulers
        self.kernels = kernels
        self.launch_total = launch_total
        self.schedulers: dict[int, GpuScheduler] = {}
        self._pods: dict[int, tuple[GpuScheduler, str, float]] = {}

    def register(self, pod_id: int, gpu_id: int, model: str, sm_pct: float, quota: float) -> None:
        """A pod became ready on ``gpu_id`` with SM partition ``sm_pct`` (%) and ``quota``."""
        sched = self.schedulers.get(gpu_id)
        if sched is None:
            sched = self.schedulers[gpu_id] = self._make(self.env, gpu_id)
        sched.add_client(pod_id, sm_pct, quota)
        self._pods[pod_id] = (sched, model, sm_pct)

    def registered(self, pod_id: int) -> bool:
        return pod_id in self._pods

    def set_quota(self, pod_id: int, quota: float) -> None:
        """A quota change (fraction of the window) reaches the scheduler; it applies it at
        the pod's next token."""
        self._pods[pod_id][0].set_quota(pod_id, quota)

    def unregister(self, pod_id: int) -> None:
        """The pod was removed (its last inference has ended)."""
        sched, _, _ = self._pods.pop(pod_id)
        sched.remove_client(pod_id)

    def run(self, pod_id: int, batch: int, total_s: float) -> simpy.Event:
        """Run one inference of ``batch`` requests whose kernels take ``total_s`` s at quota
        1; the event succeeds with the end time (s) of its last kernel."""
        sched, model, sm = self._pods[pod_id]
        kernels = self.kernels(model, batch, sm, total_s)
        if self.launch_total is None:
            return sched.run(pod_id, kernels)
        launch = self.kernels(model, batch, 100.0, self.launch_total(model, batch))
        if launch.size != kernels.size:  # a source whose grouping depends on SM
            launch = kernels * (launch.sum() / max(kernels.sum(), 1e-12))
        return sched.run(pod_id, kernels, launch)


@dataclass
class KernelServer(Server):
    """A ready pod in kernel mode; ``free_at`` is inf while an inference runs."""

    batch: int = -1  # index (in the batch log) of the running batch; -1 when idle
    done: simpy.Event | None = None  # succeeds when the running batch ends (pod free)


# the run's function: (pod_id, batch size, GPU time at quota 1 in s) -> completion event
Launch = Callable[[int, int, float], simpy.Event]


@dataclass
class KernelQueue(FunctionQueue):
    """A function's queue whose batches run on the token scheduler (module docstring).

    ``table`` of a server: mean latency (s) at quota 1 of the pod's SM partition, by
    batch size; ``launch`` starts an inference and returns its completion event.
    """

    env: simpy.Environment = field(kw_only=True)
    launch: Launch = field(kw_only=True)
    event_driven = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._wake_t = math.inf  # earliest pending wake (s)

    # ---- control-plane hooks -------------------------------------------------
    def add_server(self, pod_id: int, now: float, table: list[float]) -> None:
        """A pod is ready at ``now`` (s): it takes work at once or is woken for it."""
        self.servers.append(KernelServer(pod_id, now, table))
        self.servers.sort(key=lambda s: s.pod_id)
        self.advance(now)

    def set_table(self, pod_id: int, table: list[float]) -> None:
        raise TypeError("kernel mode: quota changes go to the token scheduler, not the table")

    def remove_server(self, pod_id: int) -> float:
        """Stop giving batches to a pod; returns +inf while its batch runs (its end comes
        from the GPU: ``done_event``), else now (s): an idle pod leaves at once."""
        t = super().remove_server(pod_id)
        return t if t == math.inf else self.env.now

    def done_event(self, pod_id: int) -> simpy.Event | None:
        """The event that fires when a draining pod's running batch ends (None if idle)."""
        for s in self.draining:
            if s.pod_id == pod_id:
                return s.done if s.batch >= 0 else None  # type: ignore[attr-defined]
        raise KeyError(pod_id)

    # ---- the event-driven hooks of FunctionQueue.advance ------------------------
    def _start(  # type: ignore[override]
        self, srv: KernelServer, first: int, nb: int, start: float, gpu_s: float
    ) -> None:
        idx = len(self.b_first)
        self.b_first.append(first)
        self.b_n.append(nb)
        self.b_start.append(start)
        self.b_end.append(math.inf)
        self.b_pod.append(srv.pod_id)
        srv.free_at = math.inf
        srv.last_n = nb
        srv.batch = idx
        srv.done = self.env.event()
        ev = self.launch(srv.pod_id, nb, gpu_s)
        ev.callbacks.append(lambda e, srv=srv: self._gpu_done(srv, e))

    def _gpu_done(self, srv: KernelServer, ev: simpy.Event) -> None:
        t = float(ev.value) if isinstance(ev.value, int | float) else self.env.now
        if self.overhead > 0.0:
            hold = self.env.timeout(self.overhead)
            hold.callbacks.append(lambda e, srv=srv, t=t: self._finish(srv, t + self.overhead))
        else:
            self._finish(srv, t)

    def _finish(self, srv: KernelServer, end: float) -> None:
        """The pod's batch ended at ``end`` (s): log it, free the pod, serve the queue."""
        idx = srv.batch
        self.b_end[idx] = end
        self._batch_ended(idx)
        srv.free_at = end
        srv.batch = -1
        done, srv.done = srv.done, None
        if any(s is srv for s in self.servers):  # not draining
            self.advance(max(end, self.env.now))
        if done is not None:
            done.succeed(end)

    def _wake(self, t: float) -> None:
        """Call ``advance(t)`` at simulated time ``t`` (s), unless an earlier wake is due."""
        now = self.env.now
        if now < self._wake_t <= t:
            return
        self._wake_t = t
        ev = simpy.Event(self.env)
        ev._ok = True
        ev._value = None
        self.env.schedule(ev, P_DATA, max(0.0, t - now))
        ev.callbacks.append(lambda e, t=t: self._woken(t))

    def _woken(self, t: float) -> None:
        if self._wake_t == t:
            self._wake_t = math.inf
        # advance to the target time itself: now + (t - now) can differ from t by an ulp
        self.advance(max(t, self.env.now))

    def finalize(self) -> None:
        """At the end of a run: batches still running have an unknown end (nan)."""
        for i, e in enumerate(self.b_end):
            if e == math.inf:
                self.b_end[i] = math.nan
                self._batch_ended(i)
