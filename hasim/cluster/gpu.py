"""GPU types and one GPU's spatial layout: rows of SM partitions holding time-sharing pods.

A GPU holds up to ``rows`` rows (HAS-GPU's SM partition alignment, SYSTEMS.md 2.1).
All pods in a row share one SM size (percent) and time-share it: their quotas
(fractions of the token window) sum to <= 1. Pods in different rows run at the same
time, so the SM sizes of the non-empty rows sum to <= 100 %. Memory (MB) is bounded by
the GPU's capacity. ``check()`` asserts all of this.

A GPU may instead hold pods as rectangles (FaST-GShare's 2-D packing): a pod is a
``(x, y, w, h)`` box in a 1000 x 100 area, x/w in thousandths of the token window
(w = ceil(1000 q)), y/h in SM percent. Boxes must lie inside the area and not
overlap, so pods that run at the same moment never hold more than 100 % of the SMs.
A GPU holds either row pods or rectangle pods, never both.

A GPU of a MIG-capable type may instead be split into MIG instances
(:mod:`hasim.cluster.mig`); its pods then live in the instances (rows per instance) and
it takes no row or rectangle pods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hasim.hardware import GpuSpec, gpu_spec

if TYPE_CHECKING:
    from hasim.cluster.mig import MigInstance
    from hasim.cluster.pod import Pod

EPS = 1e-9
AREA_W, AREA_H = 1000, 100

Rect = tuple[int, int, int, int]  # x, y, w, h


def rect_width(quota: float) -> int:
    """Width (thousandths of the window) of a pod with time quota ``quota``."""
    return int(math.ceil(round(quota * AREA_W, 6)))


def overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


GpuType = GpuSpec
"""A GPU model (the hardware catalogue's entry: SMs, memory MB, price USD/GPU-hour...)."""


def gpu_type(name: str) -> GpuSpec:
    """Look up a GPU type by name in the hardware catalogue (any accepted spelling)."""
    return gpu_spec(name)


@dataclass
class Row:
    """One SM partition slot of a GPU; ``sm_pct`` is 0 while the row is empty."""

    sm_pct: float = 0.0
    pods: list[Pod] = field(default_factory=list)

    @property
    def quota_used(self) -> float:
        return sum(p.quota for p in self.pods)

    @property
    def free_quota(self) -> float:
        return max(0.0, 1.0 - self.quota_used)

    @property
    def empty(self) -> bool:
        return not self.pods

    def put(self, pod: Pod) -> None:
        """Add ``pod``; the first pod sets the row's SM size."""
        if not self.pods:
            self.sm_pct = pod.sm_pct
        self.pods.append(pod)

    def take(self, pod: Pod) -> None:
        """Remove ``pod``; an emptied row has no SM size."""
        self.pods.remove(pod)
        if not self.pods:
            self.sm_pct = 0.0


def release_mb(used_mb: float, mb: float) -> float:
    """Memory in use (MB) after ``mb`` is freed, rounding leftovers to 0."""
    left = used_mb - mb
    return 0.0 if abs(left) < 1e-6 else left


@dataclass
class Gpu:
    """One physical GPU on a node."""

    id: int
    node: str
    type: GpuType
    n_rows: int = 2
    rows: list[Row] = field(default_factory=list)
    mem_used_mb: float = 0.0
    rects: dict[int, tuple[Pod, Rect]] = field(default_factory=dict)
    n_pods: int = 0  # pods placed on this GPU (rows, rectangles and MIG instances)
    mig: list[MigInstance] = field(default_factory=list)  # MIG instances (not removed)

    def __post_init__(self) -> None:
        if not self.rows:
            self.rows = [Row() for _ in range(self.n_rows)]
        self._boxes: tuple[Rect, ...] | None = None  # rect_boxes (None: changed since)

    @property
    def rect_boxes(self) -> tuple[Rect, ...]:
        """The boxes of the rectangle-placed pods, in placement order (kept until they
        change)."""
        if self._boxes is None:
            self._boxes = tuple(b for _, b in self.rects.values())
        return self._boxes

    @property
    def pods(self) -> list[Pod]:
        out = [p for r in self.rows for p in r.pods] + [p for p, _ in self.rects.values()]
        for inst in self.mig:
            out += inst.pods
        return out

    @property
    def used(self) -> bool:
        return self.n_pods > 0

    @property
    def sm_used(self) -> float:
        """Sum of the SM sizes (percent) of the non-empty rows."""
        return sum(r.sm_pct for r in self.rows if r.pods)

    @property
    def occupancy(self) -> float:
        """HGO: sum over pods of (sm/100) * quota, as a fraction of one GPU (a MIG pod:
        its share, ``Pod.share``)."""
        return sum(p.share if p.mig_uid >= 0 else p.sm_pct / 100.0 * p.quota for p in self.pods)

    @property
    def mem_free_mb(self) -> float:
        return self.type.memory_mb - self.mem_used_mb

    def fits(self, row: int, sm_pct: float, quota: float, mem_mb: float) -> bool:
        """Could a pod (sm_pct, quota, mem_mb) go into ``row`` without breaking an invariant?"""
        r = self.rows[row]
        if mem_mb > self.mem_free_mb + EPS or self.rects or self.mig:
            return False
        if r.pods:
            return abs(r.sm_pct - sm_pct) < EPS and quota <= r.free_quota + EPS
        other = sum(x.sm_pct for i, x in enumerate(self.rows) if i != row and x.pods)
        return other + sm_pct <= 100.0 + EPS and quota <= 1.0 + EPS

    def add(self, pod: Pod, row: int) -> None:
        if not self.fits(row, pod.sm_pct, pod.quota, pod.mem_mb):
            raise RuntimeError(f"pod {pod.id} does not fit GPU {self.id} row {row}")
        self.rows[row].put(pod)
        self.n_pods += 1
        self.mem_used_mb += pod.mem_mb
        pod.gpu_id, pod.row = self.id, row

    # ---- rectangle layout --------------------------------------------------------
    def fits_rect(self, rect: Rect, mem_mb: float, ignore: int | None = None) -> bool:
        """Could a box ``rect`` (ignoring pod ``ignore``'s own box) go on this GPU?"""
        x, y, w, h = rect
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > AREA_W or y + h > AREA_H:
            return False
        if any(r.pods for r in self.rows) or self.mig or mem_mb > self.mem_free_mb + EPS:
            return False
        return not any(overlaps(rect, b) for pid, (_, b) in self.rects.items() if pid != ignore)

    def add_rect(self, pod: Pod, rect: Rect) -> None:
        if not self.fits_rect(rect, pod.mem_mb):
            raise RuntimeError(f"pod {pod.id} does not fit GPU {self.id} at {rect}")
        self.rects[pod.id] = (pod, rect)
        self._boxes = None
        self.n_pods += 1
        self.mem_used_mb += pod.mem_mb
        pod.gpu_id, pod.row = self.id, -1

    # ---- MIG instances ---------------------------------------------------------------
    def add_mig(self, pod: Pod, inst: MigInstance, row: int) -> None:
        """Place ``pod`` in row ``row`` of MIG instance ``inst`` (from ``inst.find_row``).
        MIG pods' memory counts against their instance, not ``mem_used_mb``."""
        if any(r.pods for r in self.rows) or self.rects or inst not in self.mig:
            raise RuntimeError(f"pod {pod.id} cannot go into MIG instance {inst.uid}")
        inst.add(pod, row)
        self.n_pods += 1
        pod.gpu_id, pod.mig_uid = self.id, inst.uid

    def mig_instance(self, uid: int) -> MigInstance:
        return next(i for i in self.mig if i.uid == uid)

    def remove(self, pod: Pod) -> None:
        self.n_pods -= 1
        if pod.mig_uid >= 0:
            self.mig_instance(pod.mig_uid).remove(pod)
            return
        if pod.id in self.rects:
            del self.rects[pod.id]
            self._boxes = None
        else:
            self.rows[pod.row].take(pod)
        self.mem_used_mb = release_mb(self.mem_used_mb, pod.mem_mb)

    def can_set_quota(self, pod: Pod, quota: float) -> bool:
        if pod.id in self.rects:
            x, y, _, h = self.rects[pod.id][1]
            return 0 < quota <= 1.0 and self.fits_rect((x, y, rect_width(quota), h), 0.0, pod.id)
        r = self.rows[pod.row]
        return 0 < quota <= 1.0 and r.quota_used - pod.quota + quota <= 1.0 + EPS

    def set_quota(self, pod: Pod, quota: float) -> None:
        """Apply a quota change (after ``can_set_quota``); a box changes its width."""
        pod.quota = quota
        if pod.id in self.rects:
            x, y, _, h = self.rects[pod.id][1]
            self.rects[pod.id] = (pod, (x, y, rect_width(quota), h))
            self._boxes = None

    def check(self) -> None:
        """Assert the invariants: row SM sizes sum <= 100, row quotas <= 1, boxes inside the
        area and disjoint, memory <= capacity."""
        assert self.sm_used <= 100.0 + 1e-6, f"GPU {self.id}: SM partitions sum to {self.sm_used}"
        for i, r in enumerate(self.rows):
            assert r.quota_used <= 1.0 + 1e-6, f"GPU {self.id} row {i}: quotas sum {r.quota_used}"
            for p in r.pods:
                assert abs(p.sm_pct - r.sm_pct) < 1e-6, f"pod {p.id} SM differs from its row"
        boxes = [b for _, b in self.rects.values()]
        assert not (boxes and any(r.pods for r in self.rows)), "rows and rectangles mixed"
        for i, a in enumerate(boxes):
            assert 0 <= a[0] and a[0] + a[2] <= AREA_W and 0 <= a[1] and a[1] + a[3] <= AREA_H
            for b in boxes[i + 1 :]:
                assert not overlaps(a, b), f"GPU {self.id}: boxes {a} and {b} overlap"
        assert self.n_pods == len(self.pods), "pod count drifted"
        if self.mig:
            from hasim.cluster.mig import layout_check

            assert not self.rects and not any(r.pods for r in self.rows), "MIG mixed with rows"
            layout_check(self.type, self.mig)
            for inst in self.mig:
                inst.check()
        mem = sum(p.mem_mb for p in self.pods if p.mig_uid < 0)
        assert abs(mem - self.mem_used_mb) < 1e-3, "memory book-keeping drifted"
        assert mem <= self.type.memory_mb + 1e-6, f"GPU {self.id}: memory {mem} > capacity"
