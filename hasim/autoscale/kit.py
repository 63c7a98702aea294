"""The autoscaler kit: the pieces every policy shares, so that a policy module holds only
its own decisions.

Shaped like Knative's autoscaler (``pkg/autoscaler/metrics`` apart from ``scaling``):
a policy *collects* its metrics from the view (arrays over all functions:
``view.arrival_counts``, ``view.pod_counts``, ``view.in_system_seconds`` ...), *decides*
with pure functions of those metrics and its own state, and *acts* only for the
functions whose decision changes something. The view says why it calls
(``view.cause``: ``Call.TICK`` or ``Call.WAKE``), so no policy keeps its own tick clock.

Shared here:

* ``require``: one validation style for policy configs (errors name ``autoscaler.<key>``).
* ``capacity_rps`` / ``has_capacity_rps``: the throughput rules a policy sizes pods with.
* ``live`` / ``pods_by_function``: pods grouped by function.
* ``deletion_order``: which pods go first when a function scales in.
* ``ModelTable``: per-model values (a capacity, a memory footprint) spread over the
  functions, for vectorised decisions.
* ``Rings``: one FIFO of records per function over arrays, for sliding windows kept for
  all functions at once (Knative's recent decisions for the scale-down delay).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from hasim.autoscale.base import ClusterView, PodInfo
from hasim.errors import InputError

CAPACITY_RULES = ("saturated", "has", "closed_loop", "gpu")


# ---- validation -------------------------------------------------------------------------
def require(cfg: object, checks: Iterable[tuple[bool, str, str]]) -> None:
    """Raise InputError for the first ``(ok, key, expected)`` that is not ok, naming
    ``autoscaler.<key>`` and its value in ``cfg``."""
    for ok, key, expected in checks:
        if not ok:
            raise InputError(f"autoscaler.{key}={getattr(cfg, key, '?')!r}", expected=expected)


# ---- capacity ---------------------------------------------------------------------------
def has_capacity_rps(latency_ms: float, batch: int, overhead_ms: float = 70.0) -> float:
    """HAS-GPU's pod capacity (req/s): 1000 / (L + overhead) x (b + 1) / 2 (SYSTEMS.md 2.2),
    in milliseconds as its controller computes it: L the mean batch latency (ms), b the
    max batch, overhead the fixed per-request time outside the GPU (ms)."""
    return 1000.0 / (latency_ms + overhead_ms) * (batch + 1) / 2.0


def capacity_rps(
    rule: str,
    latency_s: float,
    batch: int,
    overhead_s: float,
    latency1_s: float | None = None,
) -> float:
    """Requests/s one pod serves, by ``rule``:

    * ``saturated``: full batches back to back, ``b / (L(b) + overhead)``;
    * ``has``: HAS-GPU's formula (``has_capacity_rps``, with L and overhead in ms);
    * ``closed_loop``: one request at a time, ``1 / (L(1) + overhead)``;
    * ``gpu``: one request at a time, GPU time only, ``1 / L(1)``.

    latency_s: mean latency (s) of a batch of ``batch``; latency1_s: of a batch of 1
    (needed by closed_loop and gpu); overhead_s: s per batch besides the GPU time."""
    if rule == "saturated":
        return batch / (latency_s + overhead_s)
    if rule == "has":
        return has_capacity_rps(1000.0 * latency_s, batch, 1000.0 * overhead_s)
    if latency1_s is None:
        raise ValueError(f"capacity rule {rule!r} needs the batch-1 latency")
    if rule == "closed_loop":
        return 1.0 / (latency1_s + overhead_s)
    if rule == "gpu":
        return 1.0 / latency1_s
    raise InputError(f"capacity rule {rule!r} is unknown", expected=" | ".join(CAPACITY_RULES))


# ---- pods -------------------------------------------------------------------------------
LIVE = ("starting", "ready")


def live(pods: Iterable[PodInfo]) -> list[PodInfo]:
    """The pods that serve or will serve (starting or ready; not draining)."""
    return [p for p in pods if p.state in LIVE]


def pods_by_function(view: ClusterView) -> dict[str, list[PodInfo]]:
    """Every pod of the view (draining ones too) grouped by function, by id."""
    out: dict[str, list[PodInfo]] = {}
    for p in view.pods():
        out.setdefault(p.function, []).append(p)
    return out


def pods_per_gpu(pods: Iterable[PodInfo]) -> dict[int, int]:
    """How many of ``pods`` each GPU holds."""
    out: dict[int, int] = {}
    for p in pods:
        if p.gpu is not None:
            out[p.gpu] = out.get(p.gpu, 0) + 1
    return out


def deletion_order(pods: Sequence[PodInfo], per_gpu: dict[int, int] | None = None) -> list[PodInfo]:
    """Pods to remove first: not-yet-ready ones before ready ones; then, with
    ``per_gpu`` (pods per GPU), those on the GPUs holding the fewest pods (to free whole
    GPUs); newest first."""
    if per_gpu is None:
        return sorted(pods, key=lambda p: (p.state == "ready", -p.created_at, -p.id))
    return sorted(
        pods,
        key=lambda p: (
            p.state == "ready",
            per_gpu.get(p.gpu, 0) if p.gpu is not None else 0,
            -p.created_at,
            -p.id,
        ),
    )


# ---- per-model values over functions -------------------------------------------------------
class ModelTable:
    """A per-model value spread over the functions (for vectorised decisions): computed
    once per model by ``value(model)``, then ``ModelTable.of(view)`` is a float array
    indexed like ``view.functions()``."""

    def __init__(self, value: Callable[[str], float]) -> None:
        self._value = value
        self._per_model: dict[str, float] = {}
        self._arrays: dict[int, np.ndarray] = {}

    def __call__(self, model: str) -> float:
        v = self._per_model.get(model)
        if v is None:
            v = self._per_model[model] = float(self._value(model))
        return v

    def of(self, view: ClusterView) -> np.ndarray:
        fns = view.functions()
        key = id(fns)
        out = self._arrays.get(key)
        if out is None:
            out = np.array([self(f.model) for f in fns], dtype=float)
            out.setflags(write=False)
            self._arrays[key] = out
        return out


# ---- exact pre-checks ---------------------------------------------------------------------
def last_true(pred: Callable[[int], bool], guess: float) -> int:
    """The largest k >= 0 with ``pred(k)``, for a predicate that holds up to some k and
    not above it (-1: not even at 0), searched from ``guess`` (a real-valued estimate).

    A policy whose test is monotone in an integer count (arrivals in a window) turns it
    into a band of counts that change nothing, then checks all functions at once with
    two comparisons; the band is exact because the test itself is evaluated here."""
    k = int(min(max(guess, 0.0), 1e15)) if math.isfinite(guess) else 0
    if pred(k):
        while pred(k + 1):
            k += 1
        return k
    while k >= 0 and not pred(k):
        k -= 1
    return k


# ---- per-function FIFOs over arrays ---------------------------------------------------------
class Rings:
    """One FIFO of records per function, as ring buffers over arrays (for sliding windows
    kept for all functions at once, e.g. Knative's recent decisions). Every record has the
    float fields named at creation; the capacity grows as needed. ``fns`` arguments are
    int arrays of distinct function indices."""

    def __init__(self, n: int, fields: Sequence[str], capacity: int = 8) -> None:
        self.capacity = capacity
        self.data = {name: np.zeros((n, capacity)) for name in fields}
        self.head = np.zeros(n, dtype=np.int64)  # slot of each FIFO's oldest record
        self.count = np.zeros(n, dtype=np.int64)  # records held

    def clear(self, fns: np.ndarray) -> None:
        self.count[fns] = 0

    def push(self, fns: np.ndarray, **values: np.ndarray | float) -> None:
        """Append one record to each FIFO of ``fns`` (field name -> values)."""
        if not fns.size:
            return
        held = self.count[fns]
        if int(held.max()) >= self.capacity:
            self._grow()
        at = fns * self.capacity + (self.head[fns] + held) % self.capacity
        for name, v in values.items():
            self.data[name].ravel()[at] = v
        self.count[fns] = held + 1

    def front(self, fns: np.ndarray, name: str) -> np.ndarray:
        """Field ``name`` of each FIFO's oldest record (meaningless where it is empty)."""
        return np.take(self.data[name], fns * self.capacity + self.head[fns])

    def pop(self, fns: np.ndarray) -> None:
        """Drop the oldest record of each FIFO of ``fns`` (each must hold one)."""
        self.head[fns] = (self.head[fns] + 1) % self.capacity
        self.count[fns] -= 1

    def newest(self, fns: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Where the ``k`` newest records of each FIFO of ``fns`` are, newest first, as a
        (len(fns), k) array of positions for ``take``, and which of them exist."""
        back = np.arange(k)
        slots = (self.head[fns] + self.count[fns] - 1)[:, None] - back
        at = (fns * self.capacity)[:, None] + slots % self.capacity
        return at, back < self.count[fns][:, None]

    def take(self, name: str, at: np.ndarray) -> np.ndarray:
        """Field ``name`` at positions from ``newest``."""
        return np.take(self.data[name], at)

    def _grow(self) -> None:
        cap, n = self.capacity, self.head.size
        order = (self.head[:, None] + np.arange(cap)) % cap
        rows = np.arange(n)[:, None]
        for name, a in self.data.items():
            grown = np.zeros((n, 2 * cap))
            grown[:, :cap] = a[rows, order]
            self.data[name] = grown
        self.head[:] = 0
        self.capacity = 2 * cap
