"""Read the real HAS-GPU / FaST-GShare / KServe runs (``validation/has-gpu-v100/result``).

Layout: ``result/<system>/<run>/``; per-request files ``*-120-50-50-15*.csv`` (no
"usage" in the name) with ``duration`` (s, client end-to-end), ``status_code``,
``success``, ``timestamp``; usage files ``*usage*.csv`` sampled every 2 s in one of
three layouts:

* per pod: ``timestamp,...,pod_name,function_name,sm_partition,quota``
  -> share = sum over pods of sm/100 x quota/100;
* per GPU (HAS): ``timestamp,node_name,gpu_id,sm_usage,quota_usage,pod_count``;
* per GPU (FaST-GShare): ``timestamp,node_name,gpu_id,sm_partition,quota,pod_counts``
  -> sums over the GPU's pods; share = (sm_sum/100)(quota_sum/100)/pods, exact when
  the GPU's pods share one configuration (true in every run here).

KServe runs hold whole GPUs and have no usage file: their share is NaN and
``gpus_max`` is the replica limit in the run name (``-2-gpu``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from hasim.errors import InputError

SYSTEM_DIRS = {"HAS": "has", "fast-gshare": "fastgshare", "kserve": "kserve"}
MODEL_OF = {"resnet": "resnet50", "mobilenet": "mobilenet_v3_large",
            "convnext": "convnext_large", "bert": "bert"}


def model_of_run(name: str) -> str:
    """Model served in a run named like ``2-resnet`` or ``1-bert-2-gpu``."""
    for key, model in MODEL_OF.items():
        if key in name:
            return model
    raise InputError(f"cannot tell the model of run {name!r}",
                     expected="a run name containing resnet, mobilenet, convnext or bert")


def find_runs(result_dir: Path) -> list[Path]:
    """Every ``<system>/<run>`` directory below ``result_dir``, sorted."""
    return sorted(p for p in Path(result_dir).glob("*/*") if p.is_dir())


def _request_file(run: Path) -> Path | None:
    files = sorted(f for f in run.glob("*.csv") if "usage" not in f.name)
    own = [f for f in files if f.name.startswith(("has", "fastgshare", "kserve"))]
    return (own or files or [None])[0]


def usage_share(path: Path) -> pd.Series:
    """GPU share held (GPUs) per sample time of a usage file (any of the 3 layouts)."""
    u = pd.read_csv(path)
    if u.empty:
        return pd.Series(dtype=float)
    cols = set(u.columns)
    if {"pod_name", "sm_partition", "quota"} <= cols:
        share = u["sm_partition"] / 100 * u["quota"] / 100
    elif {"sm_usage", "quota_usage", "pod_count"} <= cols:
        share = u["sm_usage"] / 100 * u["quota_usage"] / 100 / u["pod_count"].clip(lower=1)
    elif {"sm_partition", "quota", "pod_counts"} <= cols:
        share = u["sm_partition"] / 100 * u["quota"] / 100 / u["pod_counts"].clip(lower=1)
    else:
        raise InputError("unknown usage file layout", path=path,
                         expected="per-pod or per-GPU usage columns")
    return share.groupby(u["timestamp"]).sum()


def real_run_metrics(run: Path, slos: tuple[float, ...] = (0.2, 0.5)) -> dict[str, object]:
    """Latency (all requests, failed ones included, as the validation README computes
    them), success rate, SLO violation rates (failed requests count as violations) and
    mean GPU share of one real run."""
    run = Path(run)
    req_file = _request_file(run)
    if req_file is None:
        raise InputError("no request file in run directory", path=run,
                         expected="a *-120-50-50-15*.csv file")
    d = pd.read_csv(req_file)
    missing = {"duration", "success"} - set(d.columns)
    if missing:
        raise InputError(f"missing columns {sorted(missing)}", path=req_file)
    lat = d["duration"].to_numpy(dtype=float)
    ok = d["success"].astype(str).str.lower().eq("true").to_numpy()
    out: dict[str, object] = {
        "system": SYSTEM_DIRS.get(run.parent.name, run.parent.name),
        "run": run.name,
        "model": model_of_run(run.name),
        "requests": int(len(d)),
        "success_rate": float(ok.mean()) if len(d) else float("nan"),
        "latency_mean_s": float(lat.mean()),
        "latency_p95_s": float(np.percentile(lat, 95)),
        "latency_p99_s": float(np.percentile(lat, 99)),
    }
    for s in slos:
        out[f"slo_violation_rate@{s:g}s"] = float(((lat > s) | ~ok).mean())
    usage = sorted(run.glob("*usage*.csv"))
    share = usage_share(usage[0]) if usage else pd.Series(dtype=float)
    out["gpu_share_mean"] = float(share.mean()) if len(share) else float("nan")
    m = re.search(r"(\d+)-gpu", run.name)
    out["gpus_max"] = int(m.group(1)) if m else None  # KServe: max replicas (whole GPUs)
    return out
