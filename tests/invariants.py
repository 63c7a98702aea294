"""Checks of a finished simulation that a wrong engine would fail (shared by the tests).

``check_run(sim, req)`` verifies, from what the run recorded:

* conservation: one row per arrival of the workload, arrival times equal to the
  workload's, each request in exactly one status with a consistent record (completed:
  arrival <= start <= finish <= end of run; dropped: a reason, not started; failed: sent
  to a removed pod, not started, failing after it arrived; in flight: not finished by the
  end);
* service: a started request ran on a pod of its own function that existed and was
  ready when its batch started and was not yet removed; batch sizes within the pod's
  limit; a pod runs one batch at a time (its next batch starts after the previous one
  ended); a function serves its requests in arrival
  order (FIFO: start times never decrease along the arrivals);
* resources, at every allocation change: per GPU, the held SM x quota shares sum to at
  most one GPU and memory to at most its capacity; each row's pods share one SM size
  and their quotas sum to <= 1; the rows' SM sizes sum to <= 100 %;
* MIG (any run that used MIG instances): per instance at every allocation change, its
  rows share one SM size each with quotas <= 1, the rows' SM sizes sum to <= 100 % of
  the instance and memory <= the instance's; a pod holds a share only while its
  instance is ready (not before it was ready, not after it was removed); per GPU at
  every instance change, the instances holding slices fit the placement rules
  (``mig_layout_fits``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hasim.hardware import mig_layout_fits
from hasim.sim import metrics

EPS = 1e-9


def check_run(sim, req: pd.DataFrame) -> None:
    """Assert the invariants of the module docstring for a finished ``Simulation``."""
    _conservation(sim, req)
    _service(sim, req)
    _resources(sim)
    _mig(sim)


def _conservation(sim, req: pd.DataFrame) -> None:
    w = sim.workload
    assert len(req) == w.total_requests
    for f in w.functions:
        rows = req[req["function"] == f.name]
        np.testing.assert_array_equal(rows["arrival"].to_numpy(), w.arrivals[f.name])
    st = req["status"].astype(str)
    assert set(st.unique()) <= set(metrics.STATUSES)
    done = req[st == "completed"]
    assert (done["start"] >= done["arrival"] - EPS).all()
    assert (done["finish"] >= done["start"] - EPS).all()
    assert (done["finish"] <= sim.end_time + EPS).all()
    dropped = req[st == "dropped"]
    assert (dropped["reason"].astype(str) != "").all()
    assert dropped["pod"].eq(-1).all() and dropped["start"].isna().all()
    failed = req[st == "failed"]
    assert (failed["reason"].astype(str) == "pod_removed").all()
    assert failed["pod"].eq(-1).all() and failed["start"].isna().all()
    assert (failed["finish"] >= failed["arrival"] - EPS).all()
    flight = req[st == "in_flight"]
    assert not (flight["finish"] <= sim.end_time).any()


def _service(sim, req: pd.DataFrame) -> None:
    started = req[req["start"].notna()]
    pods = sim.pods
    for (pod_id, start), batch in started.groupby(["pod", "start"], sort=False):
        pod = pods[int(pod_id)]
        assert (batch["function"].astype(str) == pod.function).all()
        assert len(batch) == batch["batch"].iloc[0] and (batch["batch"] == len(batch)).all()
        assert len(batch) <= pod.batch
        assert pod.ready_at <= start + EPS, (pod_id, start, pod.ready_at)
        removed = pod.removed_at if pod.removed_at == pod.removed_at else np.inf
        assert start <= removed + EPS
    if sim.ccfg.overhead_cv == 0.0:
        # one batch at a time: a pod's next batch starts after its previous one ended
        # (batch end = a completed request's finish less the constant post-service delay)
        delay = sim.ccfg.overhead - sim.ccfg.pod_overhead_s()
        done = started[started["status"].astype(str) == "completed"]
        for _, g in done.groupby("pod"):
            b = g.groupby("start")["finish"].min().sort_index()
            ends = b.to_numpy() - delay
            assert (b.index.to_numpy()[1:] >= ends[:-1] - 1e-6).all()
    for _, g in started.groupby("function", observed=True):
        s = g.sort_values("arrival", kind="stable")["start"].to_numpy()
        assert (np.diff(s) >= -EPS).all()  # FIFO


def _resources(sim) -> None:
    a = metrics.alloc_frame(sim)
    if a.empty:
        return
    cap = {g.id: g.type.memory_mb for g in sim.gpus}
    for gid, g in a[a["gpu"] >= 0].groupby("gpu"):
        times = np.unique(np.concatenate([g["t_start"], g["t_end"]]))
        for t in times:
            held = g[(g["t_start"] <= t) & (g["t_end"] > t)]
            assert held["share"].sum() <= 1.0 + 1e-6, (gid, t)
            assert held["mem_mb"].sum() <= cap[gid] + 1e-6, (gid, t)
            row = np.array([sim.pods[int(p)].row for p in held["pod"]])
            rowed = (row >= 0) & ~held["exclusive"].to_numpy() & (held["mig"].to_numpy() < 0)
            in_rows = held[rowed]
            if len(in_rows):
                by_row = in_rows.groupby(row[rowed])
                assert (by_row["sm_pct"].nunique() == 1).all(), (gid, t)
                assert (by_row["quota"].sum() <= 1.0 + 1e-6).all(), (gid, t)
                assert by_row["sm_pct"].first().sum() <= 100.0 + 1e-6, (gid, t)


def _mig(sim) -> None:
    insts = {i.uid: i for i in getattr(sim, "mig", {}).values()}
    if not insts:
        return
    a = metrics.alloc_frame(sim)
    a = a[a["mig"] >= 0]
    for uid, g in a.groupby("mig"):
        inst = insts[int(uid)]
        removed = inst.removed_at if inst.removed_at == inst.removed_at else np.inf
        assert (g["t_start"] >= inst.ready_at - EPS).all(), ("share before ready", uid)
        assert (g["t_end"] <= removed + EPS).all(), ("share after removal", uid)
        assert (g["gpu"] == inst.gpu_id).all()
        times = np.unique(np.concatenate([g["t_start"], g["t_end"]]))
        for t in times:
            held = g[(g["t_start"] <= t) & (g["t_end"] > t)]
            if held.empty:
                continue
            rows = np.array([sim.pods[int(p)].row for p in held["pod"]])
            by_row = held.groupby(rows)
            assert (by_row["sm_pct"].nunique() == 1).all(), (uid, t)
            assert (by_row["quota"].sum() <= 1.0 + 1e-6).all(), (uid, t)
            assert by_row["sm_pct"].first().sum() <= 100.0 + 1e-6, (uid, t)
            assert held["mem_mb"].sum() <= inst.profile.memory_mb + 1e-6, (uid, t)
    spec = sim.gpus[0].type
    for gid in {i.gpu_id for i in insts.values()}:
        on = [i for i in insts.values() if i.gpu_id == gid and i.ready_at == i.ready_at]
        times = {i.ready_at for i in on} | {
            i.removed_at for i in on if i.removed_at == i.removed_at
        }
        for t in times:
            held = [
                i.key
                for i in on
                if i.ready_at <= t and not (i.removed_at == i.removed_at and i.removed_at <= t)
            ]
            assert mig_layout_fits(spec, held), (gid, t, held)
