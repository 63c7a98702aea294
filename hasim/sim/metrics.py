"""Turn a finished Simulation into tables and the summary.

Request statuses: ``completed`` (finished by the end of the run), ``dropped`` (with a
``reason``: ``timeout``, queued longer than ``cluster.timeout``; ``unsent``, a
closed-loop client never sent it: its pool had shut for the stage, or the run ended
first; such a request has no arrival), ``in_flight`` (still queued or being served when
the run ended), ``failed`` (the system answered with an error: reason ``pod_removed``,
routed to a removed pod, ``cluster.stale_endpoint_s``; finish = when it failed).
Latency = finish - arrival (s) of completed requests; wait = start - arrival (s).
SLO violation rate = (completed slower than their SLO + dropped + failed) / (completed +
dropped + failed): the real clients counted HTTP errors as failed requests.
Cost: GPU-seconds weighted by each pod's share (sm/100 x quota; 1 for an exclusive
pod) from its creation (it holds the share while cold-starting) to its removal,
counted over the workload window [0, window] (``Simulation.window_s``: the workload's
duration, or the end of a closed-loop client's last stage; the drain after it only lets
queued requests finish); in USD at ``price_per_gpu_hour``. Throughput = completed
requests / window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hasim.cluster.gateway import FunctionQueue, expand_runs
from hasim.sim.engine import Simulation, slo_for

STATUSES = ["completed", "dropped", "in_flight", "failed"]
REASONS = ["", "timeout", "unsent", "pod_removed"]


COLUMNS = ("arrival", "start", "finish", "pod", "batch", "status", "reason")
_DTYPES = {
    "arrival": np.float64,
    "start": np.float64,
    "finish": np.float64,
    "pod": np.int32,
    "batch": np.int16,
    "status": np.int8,
    "reason": np.int8,
}


def request_arrays(
    q: FunctionQueue, end: float, out: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Per-request columns of one function (``finish``: ``FunctionQueue.leave_times``;
    ``status``/``reason``: codes into STATUSES/REASONS), written into ``out`` (arrays of
    the function's length, e.g. slices of the run's columns) when given."""
    n = q.arrivals.size
    if out is None:
        out = {k: np.empty(n, dtype=t) for k, t in _DTYPES.items()}
    out["arrival"][:] = q.arrivals
    finish = out["finish"]
    finish[:] = q.leave_times()
    status, reason = out["status"], out["reason"]
    status.fill(STATUSES.index("in_flight"))
    reason.fill(0)
    start, pod, batch = out["start"], out["pod"], out["batch"]
    if q.b_first:
        rows = q.batch_rows()
        idx = rows.idx
        start.fill(np.nan)
        start[idx] = rows.spread(q.b_start)
        pod.fill(-1)
        pod[idx] = rows.spread(q.b_pod, np.int32)
        batch.fill(0)
        batch[idx] = rows.spread(rows.counts)  # (a request's batch size: its run's count)
        status[idx] = np.where(finish[idx] <= end, 0, 2)
    else:
        start.fill(np.nan)
        pod.fill(-1)
        batch.fill(0)
    if q.d_first:
        rows = expand_runs(q.d_first, q.d_n)
        code = rows.spread(np.array([REASONS.index(r) for r in q.d_reason], dtype=np.int8))
        reason[rows.idx] = code
        failed = code == REASONS.index("pod_removed")
        status[rows.idx] = np.where(failed, STATUSES.index("failed"), STATUSES.index("dropped"))
    if q.closed_loop:  # requests the client never sent keep arrival +inf
        unsent = ~np.isfinite(out["arrival"])
        status[unsent] = STATUSES.index("dropped")
        reason[unsent] = REASONS.index("unsent")
        out["arrival"][unsent] = np.nan
    return out


def requests_frame(sim: Simulation, slos: dict[str, float]) -> pd.DataFrame:
    """One row per request of the run (all functions), functions in workload order."""
    names = [f.name for f in sim.workload.functions]
    sizes = np.array([sim.queues[n].arrivals.size for n in names], dtype=np.int64)
    total = int(sizes.sum())
    data = {k: np.empty(total, dtype=t) for k, t in _DTYPES.items()}
    at = 0
    for name, size in zip(names, sizes.tolist(), strict=True):
        part = {k: v[at : at + size] for k, v in data.items()}
        request_arrays(sim.queues[name], sim.end_time, part)
        at += size
    code = np.repeat(np.arange(len(names), dtype=np.int32), sizes)
    status, arrival = data["status"], data["arrival"]
    latency = data["finish"] - arrival
    latency[status != STATUSES.index("completed")] = np.nan
    wait = data["start"] - arrival
    return pd.DataFrame(
        {
            "function": pd.Categorical.from_codes(code, categories=names, validate=False),
            "arrival": arrival,
            "start": data["start"],
            "finish": data["finish"],
            "pod": data["pod"],
            "batch": data["batch"],
            "status": pd.Categorical.from_codes(status, categories=STATUSES, validate=False),
            "reason": pd.Categorical.from_codes(data["reason"], categories=REASONS, validate=False),
            "slo_s": np.repeat(np.array([slos[n] for n in names], dtype=float), sizes),
            "latency": latency,
            "wait": wait,
        },
        copy=False,
    )


def _lat_stats(lat: np.ndarray) -> dict[str, float]:
    if lat.size == 0:
        return {
            "latency_mean_s": float("nan"),
            "latency_p50_s": float("nan"),
            "latency_p95_s": float("nan"),
            "latency_p99_s": float("nan"),
        }
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    return {
        "latency_mean_s": float(lat.mean()),
        "latency_p50_s": float(p50),
        "latency_p95_s": float(p95),
        "latency_p99_s": float(p99),
    }


def alloc_frame(sim: Simulation) -> pd.DataFrame:
    """Allocation segments: a pod's (sm, quota) held on a GPU over [t_start, t_end)."""
    cols = ["pod", "gpu", "function", "sm_pct", "quota", "t_start", "t_end", "exclusive", "mem_mb"]
    df = pd.DataFrame(sim.logs.alloc, columns=[*cols, "mig", "mig_frac"])
    # a MIG pod's sm_pct is percent of its instance; mig_frac (1 otherwise) its cost share
    share = df["mig_frac"] * df["sm_pct"] / 100.0 * df["quota"]
    df["share"] = np.where(df["exclusive"], 1.0, share)
    return df


USAGE_COLUMNS = ["time", "gpus_used", "pods", "sm_pct_sum", "quota_sum", "share", "mem_mb"]


def _busy_transitions(alloc: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Times at which a GPU becomes used (+1) or unused (-1), over all GPUs."""
    a = alloc[alloc["gpu"] >= 0]
    if a.empty:
        return np.empty(0), np.empty(0)
    gpu = np.concatenate([a["gpu"].to_numpy(), a["gpu"].to_numpy()])
    t = np.concatenate([a["t_start"].to_numpy(), a["t_end"].to_numpy()])
    d = np.concatenate([np.ones(len(a)), -np.ones(len(a))])
    order = np.lexsort((t, gpu))
    gpu, t, d = gpu[order], t[order], d[order]
    level = np.cumsum(d)  # each GPU's deltas sum to 0, so this is the per-GPU pod count
    last = np.ones(t.size, dtype=bool)  # the last event of each (gpu, time) group
    last[:-1] = (gpu[1:] != gpu[:-1]) | (t[1:] != t[:-1])
    gpu, t, level = gpu[last], t[last], level[last]
    prev = np.concatenate([[0.0], level[:-1]])
    prev[np.concatenate([[True], gpu[1:] != gpu[:-1]])] = 0.0
    busy, was = level > 0.5, prev > 0.5
    change = busy != was
    return t[change], np.where(busy[change], 1.0, -1.0)


def usage_frame(alloc: pd.DataFrame, period: float, end: float) -> pd.DataFrame:
    """Cluster utilisation every ``period`` s (the real runs sample every 2 s): GPUs
    holding pods, pods, sums of SM % and of quotas over pods, share (GPUs: sum of
    sm/100 x quota, exclusive pods count 1) and memory (MB). A sample at t sees every
    allocation change made at or before t. Per-pod detail: the allocations table."""
    times = np.arange(0.0, end + 1e-9, period)
    out = {"time": times}
    t = np.concatenate([alloc["t_start"].to_numpy(), alloc["t_end"].to_numpy()])
    order = np.argsort(t, kind="stable")
    idx = np.searchsorted(t[order], times, side="right") - 1
    cols = {
        "pods": np.ones(len(alloc)),
        "sm_pct_sum": alloc["sm_pct"].to_numpy(),
        "quota_sum": alloc["quota"].to_numpy(),
        "share": alloc["share"].to_numpy(),
        "mem_mb": alloc["mem_mb"].to_numpy(),
    }
    for name, x in cols.items():
        x = np.asarray(x, dtype=float)
        level = np.cumsum(np.concatenate([x, -x])[order])
        out[name] = np.where(idx >= 0, level[np.clip(idx, 0, None)] if level.size else 0.0, 0.0)
    bt, bd = _busy_transitions(alloc)
    border = np.argsort(bt, kind="stable")
    blevel = np.cumsum(bd[border])
    bidx = np.searchsorted(bt[border], times, side="right") - 1
    out["gpus_used"] = np.where(bidx >= 0, blevel[np.clip(bidx, 0, None)] if blevel.size else 0, 0)
    frame = pd.DataFrame(out)[USAGE_COLUMNS]
    frame["pods"] = frame["pods"].round().astype(int)
    frame["gpus_used"] = frame["gpus_used"].round().astype(int)
    for c in ("sm_pct_sum", "quota_sum", "share", "mem_mb"):
        frame[c] = frame[c].round(9)
    return frame


def _occupied_gpu_seconds(alloc: pd.DataFrame, horizon: float) -> float:
    """Seconds during which each GPU held at least one pod, summed over GPUs, in [0, horizon]."""
    bt, bd = _busy_transitions(alloc)
    if bt.size == 0:
        return 0.0
    order = np.argsort(bt, kind="stable")
    t = np.clip(bt[order], 0.0, horizon)
    level = np.cumsum(bd[order])
    return float((level[:-1] * np.diff(t)).sum())


def summarize(
    sim: Simulation, req: pd.DataFrame, alloc: pd.DataFrame, usage: pd.DataFrame
) -> dict[str, object]:
    """The run's headline numbers (the keys of summary.json)."""
    end = sim.end_time
    status = req["status"].cat.codes.to_numpy()
    done = status == STATUSES.index("completed")
    dropped = status == STATUSES.index("dropped")
    failed = status == STATUSES.index("failed")
    lat = req["latency"].to_numpy()[done]
    viol = int((lat > req["slo_s"].to_numpy()[done]).sum()) + int(dropped.sum() + failed.sum())
    judged = int(done.sum() + dropped.sum() + failed.sum())
    horizon = sim.window_s  # cost and occupancy are counted over the workload window
    seg = (alloc["t_end"].clip(0, horizon) - alloc["t_start"].clip(0, horizon)).to_numpy()
    cost_gs = float((seg * alloc["share"].to_numpy()).sum())
    in_run = usage[usage["time"] < horizon]
    share_mean = float(in_run["share"].mean()) if len(in_run) else 0.0
    out: dict[str, object] = {
        "requests_total": int(len(req)),
        "completed": int(done.sum()),
        "dropped": int(dropped.sum()),
        "in_flight": int((status == STATUSES.index("in_flight")).sum()),
        "failed": int(failed.sum()),
        "duration_s": float(sim.workload.duration_s),
        "window_s": float(horizon),
        "simulated_s": float(end),
        "throughput_rps": float(done.sum() / horizon) if horizon > 0 else 0.0,
        **_lat_stats(lat),
        "wait_mean_s": float(req["wait"].to_numpy()[done].mean()) if done.any() else float("nan"),
        "slo_violation_rate": float(viol / judged) if judged else 0.0,
        "slo_violations": viol,
        "cost_gpu_seconds": cost_gs,
        "cost_usd": cost_gs * sim.price_per_hour / 3600.0,
        "gpu_seconds_occupied": _occupied_gpu_seconds(alloc, horizon),
        "gpu_share_mean": share_mean,
        "gpus_used_max": int(usage["gpus_used"].max()) if len(usage) else 0,
        "pods_created": len(sim.pods),
        "cold_starts": int(
            sum(
                1
                for p in sim.pods.values()
                if p.ready_at == p.ready_at and sum(p.phase_s.values()) > 0
            )
        ),
        "actions_failed": int(sum(1 for a in sim.logs.actions if not a["ok"])),
        "functions": len(sim.workload.functions),
        "gpu": sim.gpus[0].type.name,
        "price_per_gpu_hour": sim.price_per_hour,
    }
    return out


def functions_frame(sim: Simulation, req: pd.DataFrame, slos: dict[str, float]) -> pd.DataFrame:
    """Per-function metrics (``req`` as made by ``requests_frame``: functions in workload
    order, each function's rows together)."""
    names = [f.name for f in sim.workload.functions]
    code = req["function"].cat.codes.to_numpy()
    status = req["status"].cat.codes.to_numpy()
    lat = req["latency"].to_numpy()
    slo = req["slo_s"].to_numpy()
    k = len(names)
    done = status == STATUSES.index("completed")
    dropped = status == STATUSES.index("dropped")
    failed = status == STATUSES.index("failed")
    count = np.bincount(code, minlength=k)
    if code.size and not (np.diff(code) >= 0).all():
        raise ValueError("functions_frame needs each function's requests together")
    bounds = np.concatenate([[0], np.cumsum(count)])
    stats = np.full((k, 3), np.nan)
    for i in range(k):
        x = lat[bounds[i] : bounds[i + 1]]
        x = x[~np.isnan(x)]
        if x.size:
            stats[i, 0] = x.mean()
            stats[i, 1:] = np.percentile(x, [95, 99])
    completed = np.bincount(code, weights=done, minlength=k).astype(np.int64)
    n_dropped = np.bincount(code, weights=dropped, minlength=k).astype(np.int64)
    n_failed = np.bincount(code, weights=failed, minlength=k).astype(np.int64)
    viol = np.bincount(code, weights=(done & (lat > slo)) | dropped | failed, minlength=k)
    judged = np.clip(completed + n_dropped + n_failed, 1, None)
    pods = pd.Series([p.function for p in sim.pods.values()], dtype=object).value_counts()
    frame = pd.DataFrame(
        {
            "function": names,
            "model": [sim.specs[f].model for f in names],
            "slo_s": [slos[f] for f in names],
            "requests": count.astype(np.int64),
            "completed": completed,
            "dropped": n_dropped,
            "failed": n_failed,
            "latency_mean_s": stats[:, 0],
            "latency_p95_s": stats[:, 1],
            "latency_p99_s": stats[:, 2],
            "slo_violation_rate": viol / judged,
            "throughput_rps": completed / max(sim.window_s, 1e-9),
            "pods_created": pods.reindex(names).fillna(0).astype(int).to_numpy(),
        }
    )
    return frame


def slos(sim: Simulation) -> dict[str, float]:
    """SLO (s) per function; a latency replica's targets are its unperturbed model's
    (``perf.reference``, see :mod:`hasim.sim.replicas`)."""
    perf = getattr(sim.perf, "reference", sim.perf)
    return {
        f.name: slo_for(f, perf, sim.ccfg.overhead, sim.scfg.slo_scale)
        for f in sim.workload.functions
    }
