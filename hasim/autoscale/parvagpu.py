"""ParvaGPU (SC'24): MIG instances carrying MPS processes, sized per function to its SLO
and request rate, packed onto GPUs with little fragmentation.

Our own implementation of the paper's three steps, re-run every ``period_s``:

1. *Segment configuration.* A segment is (MIG profile, MPS processes n, batch b): one
   instance whose n pods each hold 100 / n % of it at quota 1. From the simulation's
   latency model, its batch latency L (at SM ``sm_fraction x 100 / n`` % of the GPU) must
   stay within ``slo_fraction x slo_margin`` of the function's GPU-time budget (SLO less
   the request overhead); its throughput is ``n x b / (L + held overhead)``. The
   *optimal* segment has the most throughput per compute slice; per profile the best
   feasible segment is kept too.
2. *Demand matching.* ``floor(rate / optimal throughput)`` optimal segments, and for the
   rest the smallest profile whose best segment covers it (the paper's "last segment").
   The rate is the arrivals of the last ``window_s`` x ``headroom``. A function without
   arrivals in the window keeps its smallest feasible segment (ParvaGPU serves every
   service it is given), or with ``scale_to_zero`` gets none (``wake_on_arrival`` then
   brings the first back).
3. *Allocation.* Segments that already run and are still wanted stay where they are;
   unwanted ones are reconfigured away (``ReconfigureMig``: drain, then the slices are
   free); new ones are placed largest first on the used GPU that they fill best (least
   compute slices left), at the start that leaves the most usable room
   (:func:`hasim.cluster.mig.best_start`), else on a fresh GPU. Then the paper's
   *allocation optimiser*: a fresh GPU filled to at most ``consolidate_below`` compute
   slices is dissolved, its segments' throughput re-expressed as segments of the
   function's 1g/2g profiles and packed into the other GPUs' holes when they all fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hasim.autoscale.base import Action, ClusterView, CreatePod, GpuInfo, ReconfigureMig
from hasim.autoscale.kit import require
from hasim.cluster.mig import best_start, used_slices
from hasim.cluster.models import model_facts
from hasim.config.schema import ClusterConfig
from hasim.errors import InputError
from hasim.hardware import MIG_COMPUTE_SLICES, GpuSpec, gpu_spec
from hasim.sim.engine import slo_for


@dataclass
class ParvaGPUConfig:
    """period_s: s between re-decisions; window_s: s of arrivals the rate is measured
    over; headroom: factor on the measured rate; slo_fraction, slo_margin: a segment's
    batch latency must be <= slo_fraction x slo_margin x (SLO - overhead); batches: batch
    sizes searched; max_procs: MPS processes per instance searched (1..max_procs);
    profiles: MIG profiles searched (empty: one per compute size, the first listed by
    the catalogue); consolidate_below: a fresh GPU using at most this many compute slices
    is dissolved into small segments when they fit elsewhere (0: off); slo_scale: SLO
    = slo_scale x (batch-1 full-GPU latency + overhead) for functions without their own;
    prewarmed: the first decision's pods exist before the run (no cold start)."""

    kind: str = "parvagpu"
    period_s: float = 30.0
    window_s: float = 30.0
    headroom: float = 1.2
    slo_fraction: float = 0.5
    slo_margin: float = 0.9
    batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    max_procs: int = 3
    profiles: list[str] = field(default_factory=list)
    consolidate_below: int = 4
    slo_scale: float = 5.0
    prewarmed: bool = True
    scale_to_zero: bool = False


@dataclass(frozen=True)
class Segment:
    """A MIG profile with ``procs`` MPS pods of batch ``batch``; rps: its throughput
    (req/s); latency_s: its batch latency."""

    profile: str
    slices: int
    procs: int
    batch: int
    rps: float
    latency_s: float

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.profile, self.procs, self.batch)


@dataclass
class Menu:
    """A function's feasible segments: the optimal one and the best per compute size."""

    optimal: Segment | None
    by_size: dict[int, Segment]


class ParvaGPUAutoscaler:
    """ParvaGPU's segment sizing and MIG packing (module docstring)."""

    wake_on_arrival = True

    def __init__(self, cfg: ParvaGPUConfig, cluster: ClusterConfig) -> None:
        require(
            cfg,
            [
                (cfg.period_s > 0, "period_s", "> 0 s"),
                (cfg.window_s > 0, "window_s", "> 0 s"),
                (cfg.headroom > 0, "headroom", "> 0"),
                (0 < cfg.slo_fraction <= 1, "slo_fraction", "in (0, 1]"),
                (0 < cfg.slo_margin <= 1, "slo_margin", "in (0, 1]"),
                (bool(cfg.batches) and min(cfg.batches) >= 1, "batches", "batch sizes >= 1"),
                (cfg.max_procs >= 1, "max_procs", "an integer >= 1"),
                (0 <= cfg.consolidate_below <= 7, "consolidate_below", "0..7 compute slices"),
            ],
        )
        self.cfg = cfg
        self.period_s = cfg.period_s
        self.gpu: GpuSpec = gpu_spec(cluster.gpu)
        if not self.gpu.mig:
            raise InputError(
                f"autoscaler=parvagpu on cluster.gpu={cluster.gpu!r}: {self.gpu.name} has no MIG",
                expected="a MIG-capable GPU (cluster=a100)",
            )
        if cfg.profiles:
            self.profiles = [self.gpu.mig_profile(p) for p in cfg.profiles]
        else:  # one profile per compute size: the first of each size in the catalogue
            seen: dict[int, object] = {}
            for p in self.gpu.mig:
                seen.setdefault(p.compute_slices, p)
            self.profiles = list(seen.values())  # type: ignore[arg-type]
        self.overhead_s = cluster.overhead
        self.held_s = cluster.pod_overhead_s()
        self.max_batch = cluster.max_batch
        self.model_memory_mb = dict(cluster.model_memory_mb or {})
        self._menus: dict[str, Menu] = {}
        self._fn_menu: dict[str, Menu] = {}  # function -> its menu (fixed for the run)
        # segments placed: instance uid -> (function, segment); and those asked for, not
        # yet seen in the view: (gpu, (profile, start), function, segment)
        self.segments: dict[int, tuple[str, Segment]] = {}
        self._pending: list[tuple[int, tuple[str, int], str, Segment]] = []
        self.decisions = 0

    # ---- 1. segment configuration ---------------------------------------------------
    def menu(self, view: ClusterView, model: str, slo_s: float) -> Menu:
        """The feasible segments of ``model`` under ``slo_s`` (cached per model, SLO)."""
        key = f"{model}|{slo_s:.6g}"
        m = self._menus.get(key)
        if m is not None:
            return m
        budget = self.cfg.slo_fraction * self.cfg.slo_margin * (slo_s - self.overhead_s)
        optimal: Segment | None = None
        by_size: dict[int, Segment] = {}
        mem_mb = model_facts(model, self.model_memory_mb, toy=True).gpu_mem_mb
        for p in self.profiles:
            frac = p.sm_fraction(self.gpu)
            for n in range(1, self.cfg.max_procs + 1):
                if n * mem_mb > p.memory_mb:  # the instance cannot hold n pods
                    break
                for b in sorted(set(self.cfg.batches)):
                    lat = view.latency_s(model, b, 100.0 * frac / n, 1.0)
                    if lat > budget:
                        continue
                    seg = Segment(p.name, p.compute_slices, n, b, n * b / (lat + self.held_s), lat)
                    if optimal is None or _per_slice(seg) > _per_slice(optimal) + 1e-12:
                        optimal = seg
                    best = by_size.get(p.compute_slices)
                    if best is None or seg.rps > best.rps + 1e-12:
                        by_size[p.compute_slices] = seg
        m = self._menus[key] = Menu(optimal, by_size)
        return m

    # ---- 2. demand matching -----------------------------------------------------------
    def plan(self, menu: Menu, rate: float) -> list[Segment]:
        """Segments for ``rate`` req/s: optimal ones, then the smallest covering the rest
        (the largest segment when none covers it)."""
        if rate <= 0 or menu.optimal is None:
            return []
        opt = menu.optimal
        k = int(math.floor(rate / opt.rps))
        rest = rate - k * opt.rps
        out = [opt] * k
        if rest > 1e-9:
            sizes = sorted(menu.by_size)
            last = next((menu.by_size[s] for s in sizes if menu.by_size[s].rps >= rest), None)
            out.append(last if last is not None else menu.by_size[sizes[-1]])
        return out

    # ---- decisions ------------------------------------------------------------------------
    def decide(self, now: float, view: ClusterView) -> list[Action]:
        fns = view.functions()
        c = self.cfg
        t0 = max(0.0, now - c.window_s)
        if now <= 0:  # the first decision: the workload's mean rate (known in advance)
            span = float(getattr(view, "duration_s", 0.0) or c.window_s)
            rates = view.workload_arrivals().astype(float) / span
        else:
            rates = view.arrival_counts(t0).astype(float) / max(now - t0, 1e-9)
        wake = view.cause == "wake"
        woken: set[int] = set()
        if wake:  # a function without pods got a request: its rate is at least 1 / window
            woken = set(view.woken.tolist())
            rates = np.array(
                [max(r, 1.0 / c.window_s) if i in woken else 0.0 for i, r in enumerate(rates)]
            )
        self.decisions += 1
        # without scale to zero every function of the workload keeps a segment
        deployed = (
            np.zeros(len(fns), dtype=bool) if c.scale_to_zero else view.workload_arrivals() > 0
        )
        want: dict[str, list[Segment]] = {}
        for i, f in enumerate(fns):
            if wake and i not in woken:
                continue
            menu = self._fn_menu.get(f.name)
            if menu is None:  # a function's model and SLO are fixed for the run
                slo = slo_for(f, _ViewPerf(view), self.overhead_s, c.slo_scale)
                menu = self._fn_menu[f.name] = self.menu(view, f.model, slo)
            plan = self.plan(menu, rates[i] * c.headroom)
            if not plan and deployed[i] and menu.by_size:  # kept: its smallest segment
                plan = [menu.by_size[min(menu.by_size)]]
            want[f.name] = plan
        return self._allocate(view, want, warm=c.prewarmed and now <= 0, only=wake)

    # ---- 3. allocation ---------------------------------------------------------------------
    def _allocate(
        self, view: ClusterView, want: dict[str, list[Segment]], warm: bool, only: bool
    ) -> list[Action]:
        gpus = view.gpus()
        for gid, key, fn, seg in self._pending:  # instances asked for last time
            uid = next(
                (
                    m.uid
                    for m in gpus[gid].mig
                    if (m.profile, m.start) == key
                    and m.state != "draining"
                    and m.uid not in self.segments
                ),
                None,
            )
            if uid is not None:
                self.segments[uid] = (fn, seg)
        self._pending = []
        layouts: dict[int, list[tuple[str, int]]] = {}
        live_uids: set[int] = set()
        for g in gpus:
            for m in g.mig:
                if m.state != "draining":
                    layouts.setdefault(g.id, []).append((m.profile, m.start))
                    live_uids.add(m.uid)
        self.segments = {u: s for u, s in self.segments.items() if u in live_uids}
        where = {m.uid: (g.id, (m.profile, m.start)) for g in gpus for m in g.mig}
        # keep wanted running segments, drop the rest
        drop: dict[int, list[tuple[str, int]]] = {}
        new: list[tuple[str, Segment]] = []
        running: dict[str, list[tuple[int, Segment]]] = {}  # per function, by instance uid
        for uid, (f2, seg) in sorted(self.segments.items()):
            running.setdefault(f2, []).append((uid, seg))
        for fn, segs in want.items():
            todo = list(segs)
            for uid, seg in running.get(fn, ()):
                if seg in todo:
                    todo.remove(seg)
                else:
                    gid, key = where[uid]
                    drop.setdefault(gid, []).append(key)
                    layouts[gid].remove(key)
                    del self.segments[uid]
            new += [(fn, s) for s in todo]
        if not only:  # functions no longer wanted at all (rate 0): drop their segments
            for uid, (fn, _) in list(self.segments.items()):
                if fn not in want:
                    gid, key = where[uid]
                    drop.setdefault(gid, []).append(key)
                    layouts[gid].remove(key)
                    del self.segments[uid]
        placed = self._place(gpus, layouts, new)
        actions: list[Action] = []
        changed = set(drop) | {gid for gid, _, _, _ in placed}
        for gid in sorted(changed):
            actions.append(ReconfigureMig(gid, tuple(layouts.get(gid, [])), warm=warm))
        for gid, start, fn, seg in placed:
            for _ in range(seg.procs):
                actions.append(
                    CreatePod(
                        fn,
                        100.0 / seg.procs,
                        1.0,
                        seg.batch,
                        gpu=gid,
                        warm=warm,
                        mig=seg.profile,
                        mig_start=start,
                    )
                )
            self._pending.append((gid, (seg.profile, start), fn, seg))
        return actions

    def _place(
        self,
        gpus: list[GpuInfo],
        layouts: dict[int, list[tuple[str, int]]],
        new: list[tuple[str, Segment]],
    ) -> list[tuple[int, int, str, Segment]]:
        """Place ``new`` segments (largest first), updating ``layouts``; returns (gpu,
        start, function, segment) for each placed one (those that find no room are not)."""
        spec = self.gpu
        free = [g.id for g in gpus if not g.pods and g.id not in layouts and not g.mig]
        out: list[tuple[int, int, str, Segment]] = []
        fresh: set[int] = set()
        for fn, seg in sorted(new, key=lambda x: (-x[1].slices, x[0])):
            spot = self._best_gpu(layouts, seg.profile)
            if spot is None and free:
                gid = free.pop(0)
                layouts[gid] = []
                fresh.add(gid)
                spot = (gid, best_start(spec, (), seg.profile))
            if spot is None or spot[1] is None:
                continue
            gid, start = spot
            layouts[gid].append((seg.profile, start))
            out.append((gid, start, fn, seg))
        if self.cfg.consolidate_below:
            out = self._consolidate(layouts, out, fresh, free)
        return out

    def _best_gpu(
        self, layouts: dict[int, list[tuple[str, int]]], profile: str, skip: int | None = None
    ) -> tuple[int, int] | None:
        """The used GPU the profile fills best (fewest slices left), with its start."""
        best = None
        for gid, lay in layouts.items():
            if gid == skip or not lay:
                continue
            start = best_start(self.gpu, tuple(lay), profile)
            if start is None:
                continue
            left = MIG_COMPUTE_SLICES - used_slices(self.gpu, tuple(lay))
            if best is None or left < best[0]:
                best = (left, gid, start)
        return None if best is None else (best[1], best[2])

    def _consolidate(
        self,
        layouts: dict[int, list[tuple[str, int]]],
        out: list[tuple[int, int, str, Segment]],
        fresh: set[int],
        free: list[int],
    ) -> list[tuple[int, int, str, Segment]]:
        """The allocation optimiser: dissolve a fresh, little-used GPU into 1g/2g
        segments of the same functions when they all fit into other GPUs' holes."""
        for gid in sorted(fresh):
            mine = [o for o in out if o[0] == gid]
            if used_slices(self.gpu, tuple(layouts[gid])) > self.cfg.consolidate_below:
                continue
            trial = {k: list(v) for k, v in layouts.items() if k != gid}
            moved: list[tuple[int, int, str, Segment]] = []
            ok = True
            for _, _, fn, seg in mine:
                menu = self._fn_menu.get(fn)
                small = [menu.by_size[s] for s in (1, 2) if menu and s in menu.by_size]
                if not small:
                    ok = False
                    break
                unit = max(small, key=_per_slice)
                for _ in range(max(1, math.ceil(seg.rps / unit.rps - 1e-9))):
                    spot = self._best_gpu(trial, unit.profile)
                    if spot is None:
                        ok = False
                        break
                    trial[spot[0]].append((unit.profile, spot[1]))
                    moved.append((spot[0], spot[1], fn, unit))
                if not ok:
                    break
            if ok and moved:
                layouts.clear()
                layouts.update(trial)
                out = [o for o in out if o[0] != gid] + moved
                free.insert(0, gid)
        return out


class _ViewPerf:
    """The view's latency model as ``slo_for`` needs it."""

    def __init__(self, view: ClusterView) -> None:
        self.view = view

    def mean_latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        return self.view.latency_s(model, batch, sm_pct, quota)


def _per_slice(s: Segment) -> float:
    return s.rps / s.slices


def build(cfg: ParvaGPUConfig, cluster: ClusterConfig) -> ParvaGPUAutoscaler:
    return ParvaGPUAutoscaler(cfg, cluster)
