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

The usage recorder runs from the controller's start, 14-25 s before the client's first
request, so the file's mean includes an idle lead-in at the deployed configuration.
``gpu_share_mean`` is therefore taken over the client's window (the samples from the
first to the last request's send time, both clocks read as UTC), the window a replay
of the workload simulates; ``gpu_share_mean_file`` keeps the whole file's mean (the
validation README's figure). Runs whose usage file does not overlap their requests
(two FaST-GShare BERT runs share one usage file from another run) fall back to the
whole file. ``deployed_config`` reads the pod configuration a run started with (its
first usage sample, before any request): configuration, not a result.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from hasim.errors import InputError

SYSTEM_DIRS = {"HAS": "has", "fast-gshare": "fastgshare", "kserve": "kserve"}
MODEL_OF = {
    "resnet": "resnet50",
    "mobilenet": "mobilenet_v3_large",
    "convnext": "convnext_large",
    "bert": "bert",
}


def model_of_run(name: str) -> str:
    """Model served in a run named like ``2-resnet`` or ``1-bert-2-gpu``."""
    for key, model in MODEL_OF.items():
        if key in name:
            return model
    raise InputError(
        f"cannot tell the model of run {name!r}",
        expected="a run name containing resnet, mobilenet, convnext or bert",
    )


def find_runs(result_dir: Path) -> list[Path]:
    """Every ``<system>/<run>`` directory below ``result_dir``, sorted."""
    return sorted(p for p in Path(result_dir).glob("*/*") if p.is_dir())


PREFIX = {"has": "has", "fastgshare": "fastgshare", "kserve": "kserve"}  # request file names


def request_files(run: Path) -> list[Path]:
    """A run directory's request files, each one repeat: the files named after the run's
    system (``kserve/1-resnet`` holds two, ``kserve-15.csv`` and ``kserve-15-2.csv``);
    files named after another system are left out (``fast-gshare/2-resnet`` also holds
    ``has-120-50-50-15.csv``, whose system the upstream repository does not document);
    without any file named after the system, every request file."""
    run = Path(run)
    files = sorted(f for f in run.glob("*.csv") if "usage" not in f.name)
    system = SYSTEM_DIRS.get(run.parent.name, run.parent.name)
    own = [f for f in files if f.name.startswith(PREFIX.get(system, system))]
    return own or files


def _request_file(run: Path) -> Path | None:
    return (request_files(run) or [None])[0]


def usage_share(path: Path) -> pd.Series:
    """GPU share held (GPUs) per sample time of a usage file (any of the 3 layouts)."""
    u = _usage_frame(path)
    if u.empty:
        return pd.Series(dtype=float)
    return (u["sm"] / 100 * u["q"] / 100 * u["n"]).groupby(u["timestamp"]).sum()


def utc_times(values: pd.Series) -> pd.Series:
    """ISO 8601 time stamps as naive UTC times (a "Z" or offset is honoured, a naive
    stamp is read as UTC); anything else becomes NaT."""
    t = pd.to_datetime(values.astype(str), utc=True, errors="coerce", format="ISO8601")
    return t.dt.tz_localize(None)


def _usage_frame(path: Path) -> pd.DataFrame:
    """A usage file with per-sample, per-row SM % and quota % of one pod, the pod count
    of the row and the sample time (UTC, naive)."""
    u = pd.read_csv(path)
    if u.empty:
        return u
    cols = set(u.columns)
    if {"pod_name", "sm_partition", "quota"} <= cols:
        u["sm"], u["q"], u["n"] = u["sm_partition"], u["quota"], 1
    elif {"sm_usage", "quota_usage", "pod_count"} <= cols:
        n = u["pod_count"].clip(lower=1)
        u["sm"], u["q"], u["n"] = u["sm_usage"] / n, u["quota_usage"] / n, n
    elif {"sm_partition", "quota", "pod_counts"} <= cols:
        n = u["pod_counts"].clip(lower=1)
        u["sm"], u["q"], u["n"] = u["sm_partition"] / n, u["quota"] / n, n
    else:
        raise InputError(
            "unknown usage file layout", path=path, expected="per-pod or per-GPU usage columns"
        )
    u["t"] = utc_times(u["timestamp"])
    return u


def deployed_config(run: Path) -> dict[str, float] | None:
    """The pod configuration a run was deployed with: SM partition (%) and quota
    (fraction) of its first usage sample, and the pod count then; None without usage or
    when the usage file does not overlap the run's requests (then it is another run's)."""
    usage = sorted(Path(run).glob("*usage*.csv"))
    if not usage:
        return None
    u = _usage_frame(usage[0])
    win = client_window(run)
    if u.empty or win is None or not ((u["t"] >= win[0]) & (u["t"] <= win[1])).any():
        return None
    first = u[u["t"] == u["t"].min()]  # NaT rows never match
    return {
        "sm": float(first["sm"].iloc[0]),
        "quota": float(first["q"].iloc[0]) / 100.0,
        "pods": float(first["n"].sum()),
    }


def client_window(
    run: Path, request_file: Path | None = None
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """Send times (UTC, naive) of a run's first and last request; None if unreadable."""
    f = request_file or _request_file(Path(run))
    if f is None:
        return None
    return _window(pd.read_csv(f, usecols=["timestamp"])["timestamp"])


def _window(stamps: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """First and last of some time stamps (UTC, naive); None when none parses."""
    t = utc_times(stamps).dropna()
    return (t.min(), t.max()) if len(t) else None


def _client_span(d: pd.DataFrame) -> float:
    """The client's window (s): first send (``timestamp - duration``; ``timestamp`` is
    the completion time, VALIDATION.md section 1) to last completion; nan when the time
    stamps do not parse."""
    if "timestamp" not in d or d.empty:
        return float("nan")
    t = utc_times(d["timestamp"])
    if t.isna().any():
        return float("nan")
    done = (t - t.min()).dt.total_seconds().to_numpy(dtype=float)
    return float(done.max() - (done - d["duration"].to_numpy(dtype=float)).min())


def real_run_metrics(
    run: Path, slos: tuple[float, ...] = (0.2, 0.5), request_file: Path | None = None
) -> dict[str, object]:
    """Latency (all requests, failed ones included, as the validation README computes
    them), success rate, SLO violation rates (failed requests count as violations), mean
    GPU share, the client's window (``client_s``: first send to last completion, s) and
    the requests it sent (``sent``: the file's rows) of one real run. ``request_file``:
    which of the directory's repeats (``request_files``; default the first); the run is
    named ``<dir>/<file stem>`` when the directory holds several."""
    run = Path(run)
    req_file = Path(request_file) if request_file is not None else _request_file(run)
    if req_file is None:
        raise InputError(
            "no request file in run directory", path=run, expected="a *-120-50-50-15*.csv file"
        )
    d = pd.read_csv(req_file)
    missing = {"duration", "success"} - set(d.columns)
    if missing:
        raise InputError(f"missing columns {sorted(missing)}", path=req_file)
    lat = d["duration"].to_numpy(dtype=float)
    ok = d["success"].astype(str).str.lower().eq("true").to_numpy()
    out: dict[str, object] = {
        "system": SYSTEM_DIRS.get(run.parent.name, run.parent.name),
        "run": run.name if len(request_files(run)) <= 1 else f"{run.name}/{req_file.stem}",
        "model": model_of_run(run.name),
        "requests": int(len(d)),
        "sent": int(len(d)),  # the client records sent requests only
        "client_s": _client_span(d),
        "success_rate": float(ok.mean()) if len(d) else float("nan"),
        "failed_rate": float(1.0 - ok.mean()) if len(d) else float("nan"),
        "latency_mean_s": float(lat.mean()),
        "latency_p95_s": float(np.percentile(lat, 95)),
        "latency_p99_s": float(np.percentile(lat, 99)),
    }
    for s in slos:
        out[f"slo_violation_rate@{s:g}s"] = float(((lat > s) | ~ok).mean())
    usage = sorted(run.glob("*usage*.csv"))
    share = usage_share(usage[0]) if usage else pd.Series(dtype=float)
    out["gpu_share_mean_file"] = float(share.mean()) if len(share) else float("nan")
    out["gpu_share_mean"] = out["gpu_share_mean_file"]
    out["gpu_share_window"] = "file" if len(share) else "none"
    out["lead_s"] = float("nan")  # s from the usage recorder's start to the first request
    win = _window(d["timestamp"]) if len(share) and "timestamp" in d else None
    if win is not None:
        t = utc_times(pd.Series(share.index))
        sel = ((t >= win[0]) & (t <= win[1])).to_numpy()
        if sel.any():
            out["gpu_share_mean"] = float(share.to_numpy()[sel].mean())
            out["gpu_share_window"] = "client"
            out["lead_s"] = float((win[0] - t.min()).total_seconds())
    m = re.search(r"(\d+)-gpu", run.name)
    out["gpus_max"] = int(m.group(1)) if m else None  # KServe: max replicas (whole GPUs)
    return out
