"""Arrival counts of every function over any window, in a few vectorised operations.

Autoscalers read, every tick, how many requests each function received over a window
(HAS-GPU's 10-s rate, FaST-GShare's 10-s and 30-s rates, Knative's activity). Asking
each function's queue costs a Python call per function and tick; here all arrivals are
merged once in time order (a stable sort of the per-function arrays, whose runs are
already sorted) and a count over (t0, t1] for all functions is a difference of two
cumulative count vectors. A cumulative vector at time t is the nearest cached one plus
a ``bincount`` of the arrivals in between, so a tick costs O(arrivals since the last
tick + functions).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort

import numpy as np

SNAPSHOTS = 512
"""Cumulative count vectors kept (the most recently made first in line to stay)."""


class ArrivalIndex:
    """All functions' arrivals (s) merged in time order; counts per function (int64)."""

    def __init__(self, arrivals: list[np.ndarray]) -> None:
        """``arrivals``: one sorted array of arrival times (s) per function, in the order
        of the workload's functions."""
        self.n_functions = len(arrivals)
        sizes = np.array([a.size for a in arrivals], dtype=np.int64)
        times = np.concatenate(arrivals) if arrivals else np.empty(0)
        fid = np.repeat(np.arange(self.n_functions, dtype=np.int32), sizes)
        order = np.argsort(times, kind="stable")
        self.times = times[order]
        self.function = fid[order]
        self.totals = sizes
        self._zero = np.zeros(self.n_functions, dtype=np.int64)
        self._zero.setflags(write=False)
        self._positions: list[int] = []  # sorted positions of the cached vectors
        self._counts: dict[int, np.ndarray] = {}
        self._made: list[int] = []  # positions in the order they were cached

    def position(self, t: float) -> int:
        """Number of arrivals (all functions) at or before ``t`` (s)."""
        if t == -math.inf:
            return 0
        return int(np.searchsorted(self.times, t, side="right"))

    def counts_at(self, t: float) -> np.ndarray:
        """Per function, the arrivals at or before ``t`` (s). Read-only: do not modify."""
        return self._at(self.position(t))

    def between(self, t0: float, t1: float) -> np.ndarray:
        """Per function, the arrivals in (t0, t1] (s); zeros when t1 <= t0."""
        p0, p1 = self.position(t0), self.position(t1)
        if p1 <= p0:
            return np.zeros(self.n_functions, dtype=np.int64)
        if p1 - p0 < 64:  # few arrivals: count them directly
            return np.bincount(self.function[p0:p1], minlength=self.n_functions)
        return self._at(p1) - self._at(p0)

    def _at(self, p: int) -> np.ndarray:
        if p <= 0:
            return self._zero
        hit = self._counts.get(p)
        if hit is not None:
            return hit
        k = bisect_left(self._positions, p)
        # the nearest cached vector (or 0 / the totals) and the arrivals in between
        best, base = 0, self._zero
        if p >= self.times.size:
            best, base = self.times.size, self.totals
        for i in (k - 1, k):
            if 0 <= i < len(self._positions):
                q = self._positions[i]
                if abs(q - p) < abs(best - p):
                    best, base = q, self._counts[q]
        f = self.function
        if best <= p:
            out = base + np.bincount(f[best:p], minlength=self.n_functions)
        else:
            out = base - np.bincount(f[p:best], minlength=self.n_functions)
        out.setflags(write=False)
        self._cache(p, out)
        return out

    def _cache(self, p: int, counts: np.ndarray) -> None:
        self._counts[p] = counts
        insort(self._positions, p)
        self._made.append(p)
        if len(self._made) > SNAPSHOTS:
            old = self._made.pop(0)
            del self._counts[old]
            self._positions.pop(bisect_left(self._positions, old))
