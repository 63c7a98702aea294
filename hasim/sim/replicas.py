"""Replicas of a run (``sim.replicas=N``): 90 % bands beside the headline figures.

Replica 0 is the run itself (seed ``cfg.seed``, the latency model as configured): its
figures stay the headline (point) values, so ``sim.replicas=1`` is the plain run.
Replicas 1..N-1 differ, by ``sim.replica_mode``, in

* ``seed``: the seed (every random stream: arrivals, service noise, cold starts, ...);
* ``latency``: the latency model -- each model's mean latencies are multiplied by one
  factor per (model, replica), drawn from the predictor's prediction interval
  (:mod:`hasim.perf.intervals`; the ``seen`` interval for a model the predictor was
  trained on, else ``unseen``): a model's error is systematic, not per-request noise;
* ``both`` (seed and latency);
* ``auto`` (default): ``both`` where the latency model has intervals (``perf=rapp`` with
  its ``<artifact>.intervals.json``), else ``seed`` (measured tables, fitted laws).

SLO targets stay those of the unperturbed latency model in every replica: an SLO is a
fixed requirement in seconds, so a slower replica violates it more often.

Band: for each figure of :data:`CI_KEYS`, ``<key>_ci90 = [low, high]`` is the 5th-95th
percentile (linear interpolation) of the N replica values, the point run included,
widened where needed to contain the point value, so ``low <= point <= high`` always holds.
With few replicas this is close to their range. The per-replica values go to
``replicas.parquet``. Replicas run in parallel processes (joblib) where
``sim.replica_jobs`` and the cores allow, else one after the other.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hasim.errors import HasimError, InputError
from hasim.sim.rng import Streams

MODES = ("auto", "seed", "latency", "both")
CI_KEYS = (
    "cost_gpu_seconds",
    "cost_usd",
    "slo_violation_rate",
    "latency_mean_s",
    "latency_p95_s",
    "latency_p99_s",
    "gpu_share_mean",
)
"""Summary figures that get a ``<key>_ci90`` band."""
BAND = (5.0, 95.0)
"""Percentiles (%) of the replica values that bound the band."""
INTERVAL_NOTE = (
    "5th-95th percentile of the replica values (the point run included), widened to "
    "contain the point value"
)


def check_replicas(replicas: Any, mode: Any, jobs: Any) -> None:
    """Raise InputError for a bad ``sim.replicas`` / ``replica_mode`` / ``replica_jobs``."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise InputError(
            f"sim.replicas={replicas!r} is invalid",
            expected="an integer >= 1 (1: the plain run, no bands)",
        )
    if mode not in MODES:
        raise InputError(f"sim.replica_mode={mode!r} is unknown", expected=" | ".join(MODES))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise InputError(
            f"sim.replica_jobs={jobs!r} is invalid", expected="an integer >= 0 (0: automatic)"
        )


def resolve_mode(mode: str, intervals: Any, perf_kind: str) -> str:
    """The replica mode to use (``auto`` resolved); InputError when latency replicas are
    asked of a latency model without intervals."""
    if mode == "auto":
        return "both" if intervals is not None else "seed"
    if mode in ("latency", "both") and intervals is None:
        raise InputError(
            f"sim.replica_mode={mode} needs prediction intervals, which perf={perf_kind} "
            "does not have",
            expected="perf=rapp (with its .intervals.json) or sim.replica_mode=seed",
        )
    return mode


def replica_seed(seed: int, r: int) -> int:
    """The seed of replica ``r`` (0: ``seed`` itself; else a 31-bit integer derived from
    ``(seed, r)``, so replicas of neighbouring seeds do not share runs)."""
    if r == 0:
        return int(seed)
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, r]).generate_state(1, np.uint32)
    return int(state[0] >> 1)


def latency_factors(intervals: Any, models: Sequence[str], seed: int, r: int) -> dict[str, float]:
    """One multiplicative latency factor per model for replica ``r`` (1.0 for ``r = 0``):
    ``exp(Q(u))`` with ``u`` uniform from the stream ``("replica_latency", r, model)``."""
    if r == 0:
        return {m: 1.0 for m in models}
    out = {}
    for m in sorted(set(models)):
        u = float(Streams(seed).get("replica_latency", r, m).random())
        out[m] = intervals.factor(m, u)
    return out


def band(values: Sequence[float], point: float) -> list[float]:
    """``[low, high]``: the :data:`BAND` percentiles of ``values`` widened to hold ``point``
    (NaN values ignored; ``[nan, nan]`` when all are NaN)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(v, BAND)
    if point == point:  # not NaN
        lo, hi = min(lo, point), max(hi, point)
    return [float(lo), float(hi)]


def figures(summary: dict[str, Any]) -> dict[str, float]:
    """The :data:`CI_KEYS` figures of a summary (floats)."""
    return {k: float(summary[k]) if summary.get(k) is not None else float("nan") for k in CI_KEYS}


def _job_count(n: int, jobs: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    want = jobs if jobs > 0 else (cores or 1)
    return max(1, min(n, want))


def run_replicas(
    cfg: dict[str, Any],
    tasks: list[tuple[int, int, dict[str, float] | None]],
    jobs: int,
) -> list[dict[str, float]]:
    """Figures of each task ``(replica, seed, factors or None)`` of the plain config
    ``cfg``; in parallel processes when more than one job fits, else serially (also the
    fallback when the process pool cannot start)."""
    from hasim.sim.runner import replica_summary

    n = _job_count(len(tasks), jobs)
    if n > 1:
        try:
            from joblib import Parallel, delayed

            return list(
                Parallel(n_jobs=n, backend="loky")(
                    delayed(replica_summary)(cfg, seed, fac) for _, seed, fac in tasks
                )
            )
        except HasimError:
            raise
        except Exception as e:  # no process pool here (sandbox, pickling): run serially
            warnings.warn(f"replicas run serially: the process pool failed ({e})", stacklevel=2)
    return [replica_summary(cfg, seed, fac) for _, seed, fac in tasks]


def replicas_frame(
    rows: list[tuple[int, int, bool, dict[str, float] | None, dict[str, float]]],
) -> pd.DataFrame:
    """One row per replica: ``replica``, ``seed``, ``latency_perturbed``, the figures and
    ``factor_<model>`` (the latency factors; 1.0 where unperturbed)."""
    recs = []
    for r, seed, perturbed, factors, figs in rows:
        rec: dict[str, Any] = {"replica": r, "seed": seed, "latency_perturbed": perturbed}
        rec.update(figs)
        for m, f in sorted((factors or {}).items()):
            rec[f"factor_{m}"] = f
        recs.append(rec)
    return pd.DataFrame(recs)


def add_bands(summary: dict[str, Any], frame: pd.DataFrame, mode: str) -> None:
    """Write ``<key>_ci90`` for every :data:`CI_KEYS` figure plus the replica notes into
    ``summary`` (the point values stay)."""
    for k in CI_KEYS:
        point = summary.get(k)
        p = float(point) if point is not None else float("nan")
        summary[f"{k}_ci90"] = band(frame[k].to_numpy(), p)
    summary["replicas"] = int(len(frame))
    summary["replica_mode"] = mode
    summary["replica_band"] = INTERVAL_NOTE


def ratio_band(num: pd.DataFrame, den: pd.DataFrame, key: str) -> list[float]:
    """90 % band of the ratio ``num[key] / den[key]`` of two runs' replica frames, the
    replicas paired by index (replica ``r`` of both runs shares its seed and latency
    factors); the point ratio is replica 0's. InputError when the frames' replica counts
    differ."""
    a = num.sort_values("replica")
    b = den.sort_values("replica")
    if list(a.replica) != list(b.replica):
        raise InputError(
            f"replica runs differ: {len(a)} vs {len(b)} replicas", expected="the same sim.replicas"
        )
    x, y = a[key].to_numpy(dtype=float), b[key].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(y != 0, x / np.where(y != 0, y, 1.0), np.where(x > 0, np.inf, np.nan))
    finite = np.where(np.isfinite(r), r, np.nan)
    return band(finite, float(finite[0]))


def format_bands(summary: dict[str, Any]) -> str | None:
    """One line of the printout with the bands, or None without replicas."""
    if "cost_gpu_seconds_ci90" not in summary:
        return None

    def b(key: str, fmt: str) -> str:
        lo, hi = summary[f"{key}_ci90"]
        if lo is None or lo != lo:
            return "-"
        return f"[{fmt.format(lo)}, {fmt.format(hi)}]"

    return (
        f"  90 % band over {summary['replicas']} replicas ({summary['replica_mode']}): "
        f"cost {b('cost_gpu_seconds', '{:.1f}')} GPU-s  SLO viol. "
        f"{b('slo_violation_rate', '{:.2%}')}  latency mean {b('latency_mean_s', '{:.4f}')} s"
        f"  p95 {b('latency_p95_s', '{:.4f}')} s  GPU share {b('gpu_share_mean', '{:.3f}')}"
    )


__all__ = [
    "BAND",
    "CI_KEYS",
    "MODES",
    "add_bands",
    "band",
    "check_replicas",
    "figures",
    "format_bands",
    "latency_factors",
    "ratio_band",
    "replica_seed",
    "replicas_frame",
    "resolve_mode",
    "run_replicas",
]
