"""Placement: where a new pod goes, and the layouts policies plan with.

* ``first_fit_rows``: the cluster's default placement (below).
* ``RowLayout`` / ``RowGpu`` / ``row_order``: HAS-GPU's row layout (SYSTEMS.md 2.1) as a
  policy plans with it during one decision.
* ``RectPacker``: FaST-GShare's 2-D packing of (quota x SM) boxes (MaxRects, SYSTEMS.md 3).

Default placement: pack pods into GPU rows (first fit, used GPUs first).

Order of preference for a pod (sm %, quota, memory MB):
1. a used GPU's row that already has this SM size and enough free quota;
2. an empty row of a used GPU where the SM size still fits beside the other row(s);
3. row 0 of the first unused GPU.
Exclusive pods (whole GPU) take the first unused GPU. Policies that need a different
layout (HAS-GPU's occupancy order, FaST-GShare's MaxRects) pin ``gpu``/``row`` in
their CreatePod actions or plug in their own function with this signature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hasim.cluster.gpu import AREA_H, AREA_W, EPS, Gpu
from hasim.cluster.maxrects import Box, MaxRectsBin, choose_bin, split

if TYPE_CHECKING:
    from hasim.autoscale.base import ClusterView, GpuInfo

PREFIX_SEARCH = 8  # RectBins.rebuild: boxes at most left off the end of a known layout


def first_fit_rows(
    gpus: Sequence[Gpu], sm_pct: float, quota: float, mem_mb: float, exclusive: bool = False
) -> tuple[Gpu, int] | None:
    """Where to put a pod, or None when no GPU can take it."""
    if exclusive:
        for g in gpus:  # (n_pods, not the ``used`` property: this scans every GPU)
            if not g.n_pods and not g.mig and mem_mb <= g.type.memory_mb:
                return g, 0
        return None
    # used GPUs that could take the pod at all (memory, no rectangles); cheap tests first
    used = [g for g in gpus if g.n_pods and not g.rects and mem_mb <= g.mem_free_mb + EPS]
    for g in used:
        for i, r in enumerate(g.rows):
            if r.pods and abs(r.sm_pct - sm_pct) < EPS and g.fits(i, sm_pct, quota, mem_mb):
                return g, i
    for g in used:
        if g.sm_used + sm_pct > 100.0 + EPS:
            continue  # an empty row would not fit beside the others
        for i, r in enumerate(g.rows):
            if not r.pods and g.fits(i, sm_pct, quota, mem_mb):
                return g, i
    for g in gpus:
        if not g.n_pods and g.fits(0, sm_pct, quota, mem_mb):
            return g, 0
    return None


# ---- HAS-GPU's row layout ----------------------------------------------------------------
@dataclass
class RowSlot:
    """A row of a GPU as a policy plans with it: its SM size and free quota."""

    sm: float  # SM % of the row; 0 = empty
    free: float  # quota fraction still free for increases and new pods (conservative)


@dataclass
class RowGpu:
    """A GPU's rows, occupancy (HGO, fraction) and free memory (MB) during a decision;
    ``usable`` is False when the GPU holds rectangle-placed pods."""

    id: int
    rows: list[RowSlot]
    hgo: float
    mem_free: float
    used: bool
    usable: bool  # False when the GPU holds rectangle-placed pods

    def other_sm(self, row: int) -> float:
        return sum(r.sm for i, r in enumerate(self.rows) if i != row and r.sm > 0)


class RowLayout:
    """The GPU row layout of one decision, read from the view only as far as the decision
    needs it: the GPUs in use when a GPU is first asked for, an unused GPU when asked for
    or reached by a walk over the GPUs by id. Quota increases still in flight
    (``increases``: gpu, row, SM %, quota delta; to be filled before the first read) are
    taken from their rows. During the decision GPUs change only through the policy's
    bookings (an unused GPU may become used, never the reverse)."""

    def __init__(self, view: ClusterView) -> None:
        self._view = view
        self._gpus: dict[int, RowGpu] = {}
        self._n = -1  # GPUs in the cluster; -1 before the first read
        self.increases: list[tuple[int, int, float, float]] = []  # gpu, row, sm %, delta

    def _read(self) -> None:
        if self._n < 0:
            counts = self._view.gpu_pod_counts()
            self._n = counts.size
            for g in self._view.gpus_of(np.flatnonzero(counts)):
                self._gpus[g.id] = _row_gpu(g)
            for gid, row, sm, delta in self.increases:
                g = self._gpus[gid]
                g.rows[row].free = max(0.0, g.rows[row].free - delta)
                g.hgo += sm / 100.0 * delta

    def gpu(self, gid: int) -> RowGpu:
        """GPU ``gid``."""
        self._read()
        g = self._gpus.get(gid)
        if g is None:
            g = self._gpus[gid] = _row_gpu(self._view.gpus_of(np.array([gid]))[0])
        return g

    def used(self) -> list[RowGpu]:
        """The GPUs holding pods (at the first read or booked since), in no set order."""
        self._read()
        return [g for g in self._gpus.values() if g.used]

    def by_id(self) -> Iterator[RowGpu]:
        """Every GPU, by id (an unused one is read when the walk reaches it)."""
        self._read()
        for gid in range(self._n):
            yield self.gpu(gid)


def _row_gpu(g: GpuInfo) -> RowGpu:
    return RowGpu(
        g.id,
        [RowSlot(float(s) if s > 0 else 0.0, float(f)) for s, f in g.rows],
        float(g.occupancy),
        float(g.mem_free_mb),
        bool(g.pods) or bool(g.rects),
        not g.rects,
    )


def row_order(g: RowGpu, sm: float) -> list[int]:
    """Rows in SYSTEMS.md 2.1 preference for a new pod of SM ``sm``: same SM size, then
    empty rows, then the other rows by free quota (most first)."""
    same = [i for i, r in enumerate(g.rows) if r.sm > 0 and abs(r.sm - sm) < EPS]
    empty = [i for i, r in enumerate(g.rows) if r.sm == 0]
    other = sorted(
        (i for i, r in enumerate(g.rows) if r.sm > 0 and abs(r.sm - sm) >= EPS),
        key=lambda i: (-g.rows[i].free, i),
    )
    return same + empty + other


# ---- FaST-GShare's rectangles -------------------------------------------------------------
class RectPacker:
    """The cluster's boxes during one decision: rebuilt from the GPUs' boxes, updated
    with every box placed in the decision. Memory in MB."""

    def __init__(self, gpus: list[GpuInfo] | Callable[[], list[GpuInfo]]) -> None:
        # the free space is rebuilt lazily, on the first placement of a decision
        self._source = gpus
        self._built = False

    def _build(self) -> None:
        gpus = self._source() if callable(self._source) else self._source
        self._built = True
        self.bins: dict[int, MaxRectsBin] = {}
        self.mem_free: dict[int, float] = {}
        self.unused: list[int] = []
        for g in sorted(gpus, key=lambda g: g.id):
            if g.pods and not g.rects:
                continue  # row-placed pods: not ours to share
            self.mem_free[g.id] = g.mem_free_mb
            if g.pods:
                self.bins[g.id] = MaxRectsBin.from_boxes(AREA_W, AREA_H, g.rects)
            else:
                self.unused.append(g.id)

    def place(
        self, w: int, h: int, mem_mb: float, prefer: Sequence[int] = ()
    ) -> tuple[int, Box] | None:
        """GPU id and box for a ``w x h`` pod needing ``mem_mb``: among the GPUs ``prefer``
        (e.g. those already holding the function's pods) when one has room, else among
        all GPUs in use, the one leaving the least free area; else the first unused GPU;
        None when no GPU has room."""
        if not self._built:
            self._build()
        choice = None
        for ids in ([i for i in prefer if i in self.bins], list(self.bins)):
            if not ids:
                continue
            bins = [self.bins[i] for i in ids]
            choice = choose_bin(
                w, h, bins, lambda k, ids=ids: self.mem_free[ids[k]] + EPS >= mem_mb
            )
            if choice is not None:
                break
        if choice is not None:
            gid, box = ids[choice.index], choice.box
        else:
            gid = next((i for i in self.unused if self.mem_free[i] + EPS >= mem_mb), None)
            if gid is None or w > AREA_W or h > AREA_H:
                return None
            self.unused.remove(gid)
            self.bins[gid] = MaxRectsBin(AREA_W, AREA_H)
            fit = self.bins[gid].fit(w, h)
            assert fit is not None
            box = (fit.x, fit.y, w, h)
        self.bins[gid].add(box)
        self.mem_free[gid] -= mem_mb
        return gid, box


class RectBins:
    """FaST-GShare's bins kept from one decision to the next (SYSTEMS.md 3 rebuilds the
    packing from the running pods at each decision): a GPU's bin is rebuilt from its
    boxes only when they differ from the boxes it was last built or placed with, so a
    decision costs what changed, with the same bins as a rebuild of every GPU. A
    rebuild looks the GPU's set of boxes up first: the maximal free rectangles depend on
    the set only (``maxrects.free_rects``), and a function's pods of one size come and go
    through the same few layouts. The GPUs are read from the view's arrays
    (``gpu_pod_counts``, ``gpu_rects``, ``gpu_mem_free_mb``), not from ``gpus()``."""

    MEMO_MAX = 50_000  # sets of boxes remembered (the memo starts over beyond)

    def __init__(self) -> None:
        # GPU id -> (its boxes in placement order, the bin holding exactly those)
        self.cache: dict[int, tuple[tuple[Box, ...], MaxRectsBin]] = {}
        # a set of boxes -> the maximal free rectangles of a bin holding them
        self.free_memo: dict[frozenset[Box], tuple[Box, ...]] = {}

    def packer(self, view: ClusterView) -> RectPacker:
        """A ``RectPacker`` over the view's GPUs now (read on its first placement)."""
        return _CachedRectPacker(view, self)

    def rebuild(self, boxes: tuple[Box, ...]) -> MaxRectsBin:
        """A bin holding ``boxes`` (``MaxRectsBin.from_boxes``, its free space from the
        memo when this set was seen before)."""
        key = frozenset(boxes)
        free = self.free_memo.get(key)
        if free is None:
            # split from the longest known first part of the boxes (in placement order:
            # a pod removed late in the order leaves a layout seen when it was placed)
            rects, done = [(0, 0, AREA_W, AREA_H)], 0
            for j in range(len(boxes) - 1, max(0, len(boxes) - 1 - PREFIX_SEARCH), -1):
                known = self.free_memo.get(frozenset(boxes[:j]))
                if known is not None:
                    rects, done = list(known), j
                    break
            for box in boxes[done:]:
                rects = split(rects, box)
            free = self._note(key, rects)
        return MaxRectsBin.with_free(AREA_W, AREA_H, boxes, free)

    def remember(self, key: frozenset[Box], b: MaxRectsBin) -> None:
        """Note the free space of ``b``, which holds the boxes ``key``."""
        self._note(key, b.free)

    def _note(self, key: frozenset[Box], free: Sequence[Box]) -> tuple[Box, ...]:
        if len(self.free_memo) >= self.MEMO_MAX:
            self.free_memo.clear()
        out = self.free_memo[key] = tuple(free)
        return out


class _CachedRectPacker(RectPacker):
    """A ``RectPacker`` whose bins come from (and go back to) a ``RectBins`` cache."""

    def __init__(self, view: ClusterView, bins: RectBins):
        super().__init__([])
        self._view = view
        self._store = bins
        self._cache = bins.cache

    def _build(self) -> None:
        view, cache = self._view, self._cache
        self._built = True
        counts = view.gpu_pod_counts()
        used = np.flatnonzero(counts > 0)
        self.bins = {}
        for gid, boxes in zip(used.tolist(), view.gpu_rects(used), strict=True):
            if not boxes:
                continue  # row-placed pods: not ours to share
            hit = cache.get(gid)
            if hit is None or (hit[0] is not boxes and hit[0] != boxes):
                hit = cache[gid] = (boxes, self._store.rebuild(boxes))
            self.bins[gid] = hit[1]
        self.unused = np.flatnonzero(counts == 0).tolist()
        self.mem_free = _FreeMemory(view)  # an unused GPU's is read when it is looked at
        ids = list(self.bins)
        mem = view.gpu_mem_free_mb(np.array(ids, dtype=np.int64)).tolist()
        self.mem_free.update(zip(ids, mem, strict=True))

    def place(
        self, w: int, h: int, mem_mb: float, prefer: Sequence[int] = ()
    ) -> tuple[int, Box] | None:
        spot = super().place(w, h, mem_mb, prefer)
        if spot is not None:
            gid, box = spot
            b = self.bins[gid]
            hit = self._cache.get(gid)
            boxes = (*(hit[0] if hit is not None and hit[1] is b else ()), box)
            self._cache[gid] = (boxes, b)
            self._store.remember(frozenset(boxes), b)
        return spot


class _FreeMemory(dict[int, float]):
    """Free memory (MB) per GPU id, read from the view on first use."""

    def __init__(self, view: ClusterView) -> None:
        super().__init__()
        self._view = view

    def __missing__(self, gid: int) -> float:
        mem = self[gid] = float(self._view.gpu_mem_free_mb(np.array([gid]))[0])
        return mem
