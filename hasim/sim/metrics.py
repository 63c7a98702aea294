"""Turn a finished Simulation into tables and the summary.

Request statuses: ``completed`` (finished by the end of the run), ``dropped`` (with a
``reason``), ``in_flight`` (still queued or being served when the run ended).
Latency = finish - arrival (s); wait = start - arrival (s).
SLO violation rate = (completed slower than their SLO + dropped) / (completed + dropped).
Cost: GPU-seconds weighted by each pod's share (sm/100 x quota; 1 for an exclusive
pod) from its creation (it holds the share while cold-starting) to its removal,
clipped to the run; in USD at ``price_per_gpu_hour``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hasim.cluster.gateway import FunctionQueue, expand_runs
from hasim.sim.engine import Simulation, slo_for

STATUSES = ["completed", "dropped", "in_flight"]
REASONS = ["", "timeout"]


def request_arrays(q: FunctionQueue, end: float) -> dict[str, np.ndarray]:
    """Per-request columns of one function."""
    arr = q.arrivals
    n = arr.size
    start = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    pod = np.full(n, -1, dtype=np.int32)
    batch = np.zeros(n, dtype=np.int16)
    status = np.full(n, 2, dtype=np.int8)  # in_flight
    reason = np.zeros(n, dtype=np.int8)
    if q.b_first:
        idx, run = expand_runs(q.b_first, q.b_n)
        start[idx] = np.asarray(q.b_start)[run]
        finish[idx] = np.asarray(q.b_end)[run]
        pod[idx] = np.asarray(q.b_pod, dtype=np.int32)[run]
        batch[idx] = np.asarray(q.b_n, dtype=np.int16)[run]
        status[idx] = np.where(finish[idx] <= end, 0, 2)
    if q.d_first:
        idx, _ = expand_runs(q.d_first, q.d_n)
        status[idx] = 1
        reason[idx] = REASONS.index("timeout")
        finish[idx] = arr[idx] + (q.timeout or 0.0)
    return {
        "arrival": arr,
        "start": start,
        "finish": finish,
        "pod": pod,
        "batch": batch,
        "status": status,
        "reason": reason,
    }


def requests_frame(sim: Simulation, slos: dict[str, float]) -> pd.DataFrame:
    """One row per request of the run (all functions)."""
    names = [f.name for f in sim.workload.functions]
    parts = []
    for code, name in enumerate(names):
        cols = request_arrays(sim.queues[name], sim.end_time)
        cols["function"] = np.full(cols["arrival"].size, code, dtype=np.int32)
        cols["slo_s"] = np.full(cols["arrival"].size, slos[name])
        parts.append(cols)
    if parts:
        data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
        data = {
            k: np.empty(0)
            for k in (
                "arrival",
                "start",
                "finish",
                "pod",
                "batch",
                "status",
                "reason",
                "function",
                "slo_s",
            )
        }
    df = pd.DataFrame(
        {
            "function": pd.Categorical.from_codes(
                data["function"].astype(np.int32), categories=names
            ),
            "arrival": data["arrival"],
            "start": data["start"],
            "finish": data["finish"],
            "pod": data["pod"],
            "batch": data["batch"],
            "status": pd.Categorical.from_codes(
                data["status"].astype(np.int8), categories=STATUSES
            ),
            "reason": pd.Categorical.from_codes(data["reason"].astype(np.int8), categories=REASONS),
            "slo_s": data["slo_s"],
        }
    )
    df["latency"] = np.where(df["status"] == "completed", df["finish"] - df["arrival"], np.nan)
    df["wait"] = df["start"] - df["arrival"]
    return df


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
    df = pd.DataFrame(sim.logs.alloc, columns=cols)
    df["share"] = np.where(df["exclusive"], 1.0, df["sm_pct"] / 100.0 * df["quota"])
    return df


USAGE_COLUMNS = ["time", "gpu", "pods", "sm_pct_sum", "quota_sum", "share", "mem_mb"]


def usage_frame(alloc: pd.DataFrame, period: float, end: float) -> pd.DataFrame:
    """Utilisation every ``period`` s, one row per GPU holding pods at that instant, like
    the real runs' usage files: pods, sum of SM % and of quotas over its pods, share
    (GPUs: sum of sm/100 x quota; exclusive pods count 1) and memory (MB).
    A sample at t sees every allocation change made at or before t."""
    times = np.arange(0.0, end + 1e-9, period)
    rows = []
    for gpu, g in alloc[alloc["gpu"] >= 0].groupby("gpu"):
        t = np.concatenate([g["t_start"].to_numpy(), g["t_end"].to_numpy()])
        order = np.argsort(t, kind="stable")
        t = t[order]
        idx = np.searchsorted(t, times, side="right") - 1
        vals = {}
        for col in ("pods", "sm_pct_sum", "quota_sum", "share", "mem_mb"):
            x = {
                "pods": np.ones(len(g)),
                "sm_pct_sum": g["sm_pct"].to_numpy(),
                "quota_sum": g["quota"].to_numpy(),
                "share": g["share"].to_numpy(),
                "mem_mb": g["mem_mb"].to_numpy(),
            }[col]
            level = np.cumsum(np.concatenate([x, -x])[order])
            vals[col] = np.where(idx >= 0, level[np.clip(idx, 0, None)], 0.0)
        keep = vals["pods"] > 0.5
        rows.append(
            pd.DataFrame(
                {"time": times[keep], "gpu": int(gpu), **{k: v[keep] for k, v in vals.items()}}
            )
        )
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in USAGE_COLUMNS})
    out = pd.concat(rows, ignore_index=True).sort_values(["time", "gpu"], ignore_index=True)
    out["pods"] = out["pods"].round().astype(int)
    for c in ("sm_pct_sum", "quota_sum", "share", "mem_mb"):
        out[c] = out[c].round(9)
    return out


def _occupied_gpu_seconds(alloc: pd.DataFrame, end: float) -> float:
    """Seconds during which each GPU held at least one pod, summed over GPUs."""
    total = 0.0
    for _, g in alloc.groupby("gpu"):
        iv = g[["t_start", "t_end"]].clip(0, end).sort_values("t_start").to_numpy()
        cur_s, cur_e = None, None
        for s, e in iv:
            if cur_e is None or s > cur_e:
                if cur_e is not None:
                    total += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_e is not None:
            total += cur_e - cur_s
    return float(total)


def summarize(
    sim: Simulation, req: pd.DataFrame, alloc: pd.DataFrame, usage: pd.DataFrame
) -> dict[str, object]:
    """The run's headline numbers (the keys of summary.json)."""
    end = sim.end_time
    status = req["status"].to_numpy()
    done = status == "completed"
    dropped = status == "dropped"
    lat = req["latency"].to_numpy()[done]
    viol = int((lat > req["slo_s"].to_numpy()[done]).sum()) + int(dropped.sum())
    judged = int(done.sum() + dropped.sum())
    seg = (alloc["t_end"].clip(0, end) - alloc["t_start"].clip(0, end)).to_numpy()
    cost_gs = float((seg * alloc["share"].to_numpy()).sum())
    in_run = usage[usage["time"] < sim.workload.duration_s]
    n_samples = int(np.ceil(sim.workload.duration_s / sim.scfg.sample_period)) or 1
    share_mean = float(in_run["share"].sum() / n_samples)
    gpus_per_sample = (
        in_run.groupby("time")["gpu"].nunique() if len(in_run) else pd.Series(dtype=float)
    )
    out: dict[str, object] = {
        "requests_total": int(len(req)),
        "completed": int(done.sum()),
        "dropped": int(dropped.sum()),
        "in_flight": int((status == "in_flight").sum()),
        "duration_s": float(sim.workload.duration_s),
        "simulated_s": float(end),
        "throughput_rps": float(done.sum() / end) if end > 0 else 0.0,
        **_lat_stats(lat),
        "wait_mean_s": float(req["wait"].to_numpy()[done].mean()) if done.any() else float("nan"),
        "slo_violation_rate": float(viol / judged) if judged else 0.0,
        "slo_violations": viol,
        "cost_gpu_seconds": cost_gs,
        "cost_usd": cost_gs * sim.price_per_hour / 3600.0,
        "gpu_seconds_occupied": _occupied_gpu_seconds(alloc, end),
        "gpu_share_mean": share_mean,
        "gpus_used_max": int(gpus_per_sample.max()) if len(gpus_per_sample) else 0,
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
    """Per-function metrics."""
    g = req.groupby("function", observed=False)
    done = req["status"] == "completed"
    frame = pd.DataFrame(
        {
            "model": [sim.specs[f].model for f in g.groups],
            "slo_s": [slos[f] for f in g.groups],
            "requests": g.size().to_numpy(),
        },
        index=list(g.groups),
    )
    frame["completed"] = (
        done.groupby(req["function"], observed=False).sum().reindex(frame.index).to_numpy()
    )
    frame["dropped"] = (
        (req["status"] == "dropped")
        .groupby(req["function"], observed=False)
        .sum()
        .reindex(frame.index)
        .to_numpy()
    )
    lat = req["latency"]
    gl = lat.groupby(req["function"], observed=False)
    frame["latency_mean_s"] = gl.mean().reindex(frame.index).to_numpy()
    frame["latency_p95_s"] = gl.quantile(0.95).reindex(frame.index).to_numpy()
    frame["latency_p99_s"] = gl.quantile(0.99).reindex(frame.index).to_numpy()
    viol = ((lat > req["slo_s"]) & done) | (req["status"] == "dropped")
    judged = done | (req["status"] == "dropped")
    frame["slo_violation_rate"] = (
        (
            viol.groupby(req["function"], observed=False).sum()
            / judged.groupby(req["function"], observed=False).sum().clip(lower=1)
        )
        .reindex(frame.index)
        .to_numpy()
    )
    frame["throughput_rps"] = frame["completed"] / sim.end_time
    pods = pd.Series([p.function for p in sim.pods.values()]).value_counts()
    frame["pods_created"] = pods.reindex(frame.index).fillna(0).astype(int).to_numpy()
    frame.index.name = "function"
    return frame.reset_index()


def slos(sim: Simulation) -> dict[str, float]:
    return {
        f.name: slo_for(f, sim.perf, sim.ccfg.overhead, sim.scfg.slo_scale)
        for f in sim.workload.functions
    }
