"""The golden scenarios: every registered policy on a 1-h window of the Azure 2019 slice,
on the rps.json validation stages, and on a synthetic burst; plus kernel fidelity on one
rps experiment. Each scenario is a list of Hydra overrides for ``hasim.run``."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

QUIET = ["sim.progress=false", "output.write=false", "output.plot=false", "output.quiet=true"]

# Azure Functions 2019 slice, its first hour (500 functions, cold starts and all)
AZURE_1H = ["workload.end_minute=60"]
# a synthetic burst: 4 ResNet-50 functions, each alternating 2 and 40 req/s (MMPP),
# 10 minutes on a 6-GPU cluster (queues build while pods start)
BURST = [
    "workload=mmpp",
    "workload.functions=4",
    "workload.rate_low=2",
    "workload.rate_high=40",
    "workload.sojourn_low=60",
    "workload.sojourn_high=20",
    "workload.duration=600",
    "cluster.nodes=6",
    "seed=5",
]
POLICIES = {
    "static": [
        "autoscaler=static",
        "autoscaler.pods=1",
        "autoscaler.sm=50",
        "autoscaler.quota=0.5",
    ],
    "has": ["autoscaler=has"],
    "fastgshare": ["autoscaler=fastgshare"],
    "kpa": ["autoscaler=kpa"],
    "kserve": [
        "autoscaler=kpa",
        "autoscaler.min_scale=1",
        "autoscaler.max_scale=2",
        "autoscaler.target=0.7",
        "autoscaler.batch=1",
        "cluster.overhead_holds_pod=true",
    ],
    "timeshare": ["autoscaler=timeshare"],
    "fastgshare_deployed": ["autoscaler=fastgshare_deployed"],
}
AZURE_PRESET = {
    "static": ["experiment=azure500", *POLICIES["static"]],
    "has": ["experiment=paper/has"],
    "fastgshare": ["experiment=paper/fastgshare_profiled"],
    "kpa": ["experiment=paper/kpa"],
    "kserve": ["experiment=paper/kserve"],
    "timeshare": ["experiment=paper/timeshare"],
    "fastgshare_deployed": ["experiment=paper/fastgshare"],
    "parvagpu": ["experiment=paper/parvagpu"],  # A100 80 GB, MIG (no burst scenario: V100)
}
RPS_SYSTEMS = ("has", "fastgshare", "kserve", "timeshare")
RPS_MODELS = ("resnet", "bert")
# the FaST-GShare paper's profile-searching policy on the validation workload, pinned to
# one pod configuration (what the rps presets did before they moved to the deployed
# baseline, fastgshare_deployed)
RPS_PROFILED = {
    m: [
        "workload=stages",
        f"workload.model={model}",
        "workload.slo=0.5",
        "autoscaler=fastgshare",
        "autoscaler.sms=[30.0]",
        f"autoscaler.quotas=[{q}]",
        "autoscaler.prewarm=true",
        "autoscaler.throughput=closed_loop",
    ]
    for m, model, q in (("resnet", "resnet50", 0.2), ("bert", "bert", 0.3))
}
# the rps presets replay the validation runs' closed-loop client (workload.client=
# threadpool, a long drain); these scenarios pin the open-loop data plane they recorded
OPEN_LOOP = ["workload.client=open", "sim.drain=60"]


def scenarios() -> dict[str, list[str]]:
    """Scenario name -> overrides (without the quiet/no-output ones)."""
    out: dict[str, list[str]] = {}
    for p, ov in AZURE_PRESET.items():
        out[f"azure1h/{p}"] = [*ov, *AZURE_1H]
    for s in RPS_SYSTEMS:
        for m in RPS_MODELS:
            out[f"rps/{s}_{m}"] = (
                RPS_PROFILED[m] if s == "fastgshare" else [f"experiment=rps/{s}_{m}", *OPEN_LOOP]
            )
    for m in RPS_MODELS:  # the deployed baseline with the validation runs' client
        out[f"rps/fastgshare_deployed_{m}"] = [f"experiment=rps/fastgshare_{m}"]
    for p, ov in POLICIES.items():
        out[f"burst/{p}"] = [*BURST, *ov]
    out["kernel/rps_has_resnet"] = ["experiment=rps/has_resnet", *OPEN_LOOP, "sim.fidelity=kernel"]
    out["kernel/burst_fastgshare"] = [
        *BURST,
        *POLICIES["fastgshare"],
        "workload.duration=120",
        "sim.fidelity=kernel",
    ]
    return out


def needs_traces(name: str) -> bool:
    return name.startswith("azure1h/")


def needs_validation(name: str) -> bool:
    return name.startswith(("rps/", "kernel/rps"))


SUMMARY_KEYS = (
    "requests_total",
    "completed",
    "dropped",
    "in_flight",
    "latency_mean_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "wait_mean_s",
    "slo_violation_rate",
    "cost_gpu_seconds",
    "gpu_share_mean",
    "gpus_used_max",
    "pods_created",
    "cold_starts",
    "actions_failed",
)
REQUEST_COLUMNS = ("arrival", "start", "finish", "pod", "batch", "status", "reason")


def frame_hash(df: pd.DataFrame, columns: tuple[str, ...]) -> str:
    """sha256 over the columns' values (categoricals by label), in row order."""
    h = hashlib.sha256()
    for c in columns:
        col = df[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            h.update("\x1f".join(col.astype(str)).encode())
        else:
            h.update(np.ascontiguousarray(col.to_numpy()).tobytes())
    return h.hexdigest()


def record(overrides: list[str]) -> dict[str, Any]:
    """Run one scenario; its golden record (summary figures, hashes, counts)."""
    import hasim

    r = hasim.run([*overrides, *QUIET])
    s = r.summary
    out: dict[str, Any] = {k: s[k] for k in SUMMARY_KEYS}
    out["requests_sha256"] = frame_hash(r.requests, REQUEST_COLUMNS)
    acts = r.actions
    out["actions"] = int(len(acts))
    if len(acts):
        a = acts[["time", "action", "pod", "ok"]].copy()
        a["action"] = a["action"].astype("category")
        a["pod"] = a["pod"].fillna(-1).astype(np.int64)
        a["ok"] = a["ok"].astype(bool)
        out["actions_sha256"] = frame_hash(a, ("time", "action", "pod", "ok"))
    else:
        out["actions_sha256"] = ""
    return out
