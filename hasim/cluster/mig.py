"""MIG instances as a cluster resource, and the layout arithmetic policies plan with.

A GPU of a MIG-capable type (:mod:`hasim.hardware`: A100, H100, H200) may be split into
MIG GPU instances. An instance has a profile (``3g.40gb``) and a start memory slice; the
instances of a GPU must fit the placement rules (:func:`hasim.hardware.mig_layout_fits`).
Inside an instance, pods are MPS processes with an SM partition (percent *of the
instance*) and a time quota, arranged in rows exactly like a whole GPU's rows
(:mod:`hasim.cluster.gpu`): pods of one row share one SM size and time-share it (quotas
sum to <= 1), the SM sizes of the instance's non-empty rows sum to <= 100 %; the pods'
memory stays within the instance's memory.

Two shares of the GPU per instance (both fixed by the profile):

* latency: the law (:mod:`hasim.perf.fit_gpu`) reads a MIG instance as its SMs over the
  GPU's SMs (``MigProfile.sm_fraction``: A100 3g = 42 / 108); a pod of SM ``s`` % of its
  instance is computed at ``sm_fraction x s`` % of the GPU;
* cost: ``compute_slices / 7`` (``cost_fraction``); a full layout is one GPU. On the
  A100 both are proportional to the compute slices (14 SMs each); the cost share
  charges the SMs that MIG mode leaves idle (108 - 98) pro rata, so a 7g instance costs
  what the whole GPU costs.

A pod's GPU share (cost, occupancy) is ``cost_fraction x sm / 100 x quota``.

Instance life: ``pending`` (created, its slices may still be held by instances being
drained away; it becomes ``ready`` ``cluster.mig_reconfigure_s`` after its slices are
free), ``ready``, ``draining`` (reconfigured away: its pods drain; it is gone when its
last pod is removed). Pods placed in a pending instance start their cold start when it is
ready and hold no share before.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hasim.cluster.gpu import EPS, Row, release_mb
from hasim.hardware import MIG_COMPUTE_SLICES, GpuSpec, MigProfile, mig_layout_fits

if TYPE_CHECKING:
    from hasim.cluster.pod import Pod

PENDING, READY, DRAINING = "pending", "ready", "draining"

Layout = tuple[tuple[str, int], ...]
"""MIG instances of one GPU as ``((profile name, start memory slice), ...)``."""


def cost_fraction(profile: MigProfile) -> float:
    """Share of one GPU an instance of ``profile`` is charged for (compute slices / 7)."""
    return profile.compute_slices / MIG_COMPUTE_SLICES


@dataclass(eq=False)
class MigInstance:
    """One MIG GPU instance. Times in simulated s; memory in MB."""

    uid: int
    gpu_id: int
    profile: MigProfile
    start: int
    state: str
    created_at: float
    ready_at: float = math.nan
    removed_at: float = math.nan
    rows: list[Row] = field(default_factory=list)
    mem_used_mb: float = 0.0

    @property
    def key(self) -> tuple[str, int]:
        return (self.profile.name, self.start)

    @property
    def pods(self) -> list[Pod]:
        return [p for r in self.rows for p in r.pods]

    @property
    def sm_used(self) -> float:
        """Sum of the SM sizes (percent of the instance) of the non-empty rows."""
        return sum(r.sm_pct for r in self.rows if r.pods)

    def slots(self) -> set[int]:
        return set(self.profile.slots(self.start))

    def find_row(self, sm_pct: float, quota: float, mem_mb: float) -> int | None:
        """A row index for a pod (SM % of the instance, quota, memory MB), or None. A row
        index equal to ``len(rows)`` means a new row."""
        if mem_mb > self.profile.memory_mb - self.mem_used_mb + EPS:
            return None
        for i, r in enumerate(self.rows):
            if r.pods and abs(r.sm_pct - sm_pct) < EPS and quota <= r.free_quota + EPS:
                return i
        if self.sm_used + sm_pct > 100.0 + EPS or quota > 1.0 + EPS:
            return None
        for i, r in enumerate(self.rows):
            if not r.pods:
                return i
        return len(self.rows)

    def add(self, pod: Pod, row: int) -> None:
        if row == len(self.rows):
            self.rows.append(Row())
        self.rows[row].put(pod)
        self.mem_used_mb += pod.mem_mb
        pod.row = row

    def remove(self, pod: Pod) -> None:
        self.rows[pod.row].take(pod)
        self.mem_used_mb = release_mb(self.mem_used_mb, pod.mem_mb)

    def check(self) -> None:
        """Assert the per-instance invariants: rows' SM sizes <= 100 % of the instance, row
        quotas <= 1, one SM size per row, memory <= the instance's."""
        assert self.sm_used <= 100.0 + 1e-6, f"MIG {self.uid}: SM sum {self.sm_used}"
        for r in self.rows:
            assert r.quota_used <= 1.0 + 1e-6, f"MIG {self.uid}: quotas {r.quota_used}"
            assert all(abs(p.sm_pct - r.sm_pct) < 1e-6 for p in r.pods)
        mem = sum(p.mem_mb for p in self.pods)
        assert mem <= self.profile.memory_mb + 1e-6, f"MIG {self.uid}: memory {mem}"


def layout_check(spec: GpuSpec, instances: list[MigInstance]) -> None:
    """Assert that the instances holding slices (ready, draining) and those that will
    (ready, pending) each fit the placement rules."""
    held = [i.key for i in instances if i.state != PENDING]
    planned = [i.key for i in instances if i.state != DRAINING]
    assert mig_layout_fits(spec, held), f"MIG layout {held} breaks the placement rules"
    assert mig_layout_fits(spec, planned), f"MIG layout {planned} breaks the placement rules"


# ---- layout planning ----------------------------------------------------------------------
def free_starts(spec: GpuSpec, layout: Layout, profile: str) -> list[int]:
    """Starts where an instance of ``profile`` can join ``layout``, ascending."""
    p = spec.mig_profile(profile)
    return [s for s in p.placements if mig_layout_fits(spec, [*layout, (profile, s)])]


def used_slices(spec: GpuSpec, layout: Layout) -> int:
    """Compute slices used by ``layout``."""
    return sum(spec.mig_profile(n).compute_slices for n, _ in layout)


@functools.lru_cache(maxsize=4096)
def _room(spec: GpuSpec, layout: frozenset[tuple[str, int]]) -> int:
    """Most compute slices that can still be added to ``layout`` (exhaustive search)."""
    best = 0
    base = list(layout)
    for p in spec.mig:
        for s in p.placements:
            if mig_layout_fits(spec, [*base, (p.name, s)]):
                best = max(best, p.compute_slices + _room(spec, layout | {(p.name, s)}))
                if best + used_slices(spec, tuple(base)) >= MIG_COMPUTE_SLICES:
                    return best
    return best


def room(spec: GpuSpec, layout: Layout) -> int:
    """Compute slices still placeable beside ``layout`` (0..7): a layout whose free
    slices are fragmented (cannot all be used at once) has less room than 7 - used."""
    return _room(spec, frozenset(layout))


def best_start(spec: GpuSpec, layout: Layout, profile: str) -> int | None:
    """The start for a new ``profile`` instance that leaves the most room afterwards
    (least fragmentation; ties: lowest start), or None when it does not fit."""
    return _best_start(spec, tuple(layout), profile)


@functools.lru_cache(maxsize=65536)
def _best_start(spec: GpuSpec, layout: Layout, profile: str) -> int | None:
    """``best_start`` (a pure function of its arguments: remembered; policies ask it of
    the same few layouts at every decision)."""
    starts = free_starts(spec, layout, profile)
    if not starts:
        return None
    return max(starts, key=lambda s: (room(spec, (*layout, (profile, s))), -s))
