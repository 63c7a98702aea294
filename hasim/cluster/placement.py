"""Default placement: pack pods into GPU rows (first fit, used GPUs first).

Order of preference for a pod (sm %, quota, memory MB):
1. a used GPU's row that already has this SM size and enough free quota;
2. an empty row of a used GPU where the SM size still fits beside the other row(s);
3. row 0 of the first unused GPU.
Exclusive pods (whole GPU) take the first unused GPU. Policies that need a different
layout (HAS-GPU's occupancy order, FaST-GShare's MaxRects) pin ``gpu``/``row`` in
their CreatePod actions or plug in their own function with this signature.
"""

from __future__ import annotations

from collections.abc import Sequence

from hasim.cluster.gpu import EPS, Gpu


def first_fit_rows(
    gpus: Sequence[Gpu], sm_pct: float, quota: float, mem_mb: float, exclusive: bool = False
) -> tuple[Gpu, int] | None:
    """Where to put a pod, or None when no GPU can take it."""
    if exclusive:
        for g in gpus:
            if not g.used and mem_mb <= g.type.memory_mb:
                return g, 0
        return None
    used = [g for g in gpus if g.n_pods]
    for g in used:
        for i, r in enumerate(g.rows):
            if r.pods and abs(r.sm_pct - sm_pct) < EPS and g.fits(i, sm_pct, quota, mem_mb):
                return g, i
    for g in used:
        for i, r in enumerate(g.rows):
            if not r.pods and g.fits(i, sm_pct, quota, mem_mb):
                return g, i
    for g in gpus:
        if not g.n_pods and g.fits(0, sm_pct, quota, mem_mb):
            return g, 0
    return None
