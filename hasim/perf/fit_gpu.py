"""Fit the ``compact`` latency law for one GPU from a measurement table (A100 and others).

The law is the one of :mod:`hasim.perf.compact` (times in ms)::

    L(b, s, q) = smax( smax(F, A_b + K_b / s), Q(q) )

fitted per model on the rows of one GPU that :func:`hasim.perf.load_measurements`
reads (mean latencies, one process, the model's most common sequence length):

* ``s`` is the SM share in %: the MPS limit of an MPS row, and for a MIG row the SMs
  of its instance over the GPU's SMs (:meth:`hasim.hardware.MigProfile.sm_fraction`:
  an A100 7g instance computes with 98 of 108 SMs, 90.7 %). A MIG instance also gets
  only its slices of memory bandwidth and L2, so an MPS partition of the same SM share
  is read as at most as slow as that instance (the law is fitted on MIG rows where
  the GPU has no MPS rows: the A100 sets).
* ``F``, ``A_b``, ``K_b`` (>= 0) minimise the squared log errors over the model's
  full-quota cells, with a weak smoothness term across batches so that batches measured
  at one SM level only still get an SM dependence.
* ``Q(q)``: from the GPU's own quota rows where it has some (the profile of the measured
  quotas); else borrowed from the V100 (no public A100 measurement crosses MIG/MPS with a
  time quota): ``Q`` is set so that a quota slows a batch-1 full-SM
  request on the new GPU by the factor it does on the V100 (the median factor over the
  V100 models for a model the V100 law does not know).

:func:`holdout_report` holds out a random share of each source's cells, fits on the rest
and reports the MAPE per source; ``hasim perf gpu-fit`` prints it with the comparison of
overlapping sources and the error of the transfer rules.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hasim.errors import InputError
from hasim.hardware import canonical_gpu, gpu_spec
from hasim.perf.compact import FORMAT, CompactConfig, CompactLatency

SMOOTH_P = 8.0
SMOOTH_WEIGHT = 0.05
"""Weight of the log second-difference penalty on ``A_b`` and ``K_b`` across batches."""

A100_SOURCES = (
    "measurements/parvagpu-a100-mig-mps",
    "measurements/migprofiler-a100-mig",
)
"""The A100 latency sets (relative to the data dir) the packaged A100 laws are fitted on."""


def gpu_rows(table: pd.DataFrame, gpu: str) -> pd.DataFrame:
    """The rows of ``table`` usable for ``gpu``'s law, with an ``s`` column (SM %).

    Mean latencies of one process; per model the most common ``seq_len``."""
    target = canonical_gpu(gpu)
    spec = gpu_spec(target)
    gpus = table["gpu"].map(lambda g: _canon_or_none(g))
    d = table[(gpus == target) & (table["statistic"] == "mean") & (table["procs"] == 1)].copy()
    if d.empty:
        return d.assign(s=np.zeros(0))
    seq = d.groupby("model")["seq_len"].agg(lambda v: v.value_counts().index[0])
    d = d[d["seq_len"].to_numpy() == seq.reindex(d["model"]).to_numpy()]
    s = d["sm_pct"].to_numpy(dtype=float).copy()
    mig = d["mig_slice"].to_numpy(dtype=object)
    for i in np.flatnonzero(~np.isfinite(s)):
        s[i] = 100.0 * spec.mig_profile(str(mig[i])).sm_fraction(spec)
    return d.assign(s=s).reset_index(drop=True)


def _canon_or_none(g: str) -> str | None:
    try:
        return canonical_gpu(g)
    except InputError:
        return None


def _fit_gpu_phase(
    b_idx: np.ndarray, s: np.ndarray, lat: np.ndarray, n_b: int, p: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """``F``, ``A[n_b]``, ``K[n_b]`` (ms) minimising squared log errors (+ smoothness)."""
    from scipy.optimize import least_squares

    y = np.log(lat)
    f0 = float(np.log(lat.min()))
    a0 = np.full(n_b, f0 - 1.0)
    k0 = np.full(n_b, f0 + 2.0)
    for j in range(n_b):
        hit = b_idx == j
        if hit.any():
            a0[j] = math.log(max(lat[hit].min() * 0.3, 1e-3))
            k0[j] = math.log(max(lat[hit].max() * s[hit].min() * 0.7, 1e-3))

    def resid(x: np.ndarray) -> np.ndarray:
        f, a, k = x[0], x[1 : 1 + n_b], x[1 + n_b :]
        g = np.exp(a[b_idx]) + np.exp(k[b_idx]) / s
        ff = np.exp(f)
        m = np.maximum(g, ff)
        pred = m * ((g / m) ** p + (ff / m) ** p) ** (1.0 / p)
        out = [np.log(pred) - y]
        if n_b > 2:
            out.append(SMOOTH_WEIGHT * np.diff(a, 2))
            out.append(SMOOTH_WEIGHT * np.diff(k, 2))
        return np.concatenate(out)

    # the floor lies at or below the fastest cell (it is the launch-bound limit)
    x0 = np.concatenate([[f0 - 0.05], np.clip(a0, -14, 14), np.clip(k0, -14, 19)])
    lo = np.concatenate([[f0 - 3.0], np.full(2 * n_b, -15.0)])
    hi = np.concatenate([[f0 + 0.01], np.full(n_b, 15.0), np.full(n_b, 20.0)])
    sol = least_squares(resid, x0, bounds=(lo, hi), method="trf", max_nfev=4000)
    x = sol.x
    return float(np.exp(x[0])), np.exp(x[1 : 1 + n_b]), np.exp(x[1 + n_b :])


def _v100_quota_multiples(v100: CompactLatency) -> tuple[tuple[float, ...], dict[str, np.ndarray]]:
    """Per V100 model: its batch-1 full-SM latency at each quota over the one at full
    quota (the slow-down a quota causes, >= 1)."""
    out = {}
    for m in v100.models:
        full = v100.latency_ms(m, 1.0, 100.0, 1.0)
        out[m] = np.array([v100.latency_ms(m, 1.0, 100.0, q) for q in v100.quotas]) / full
    return v100.quotas, out


def _phase_for_slowdown(g1: float, slowdown: np.ndarray, p: float) -> np.ndarray:
    """Quota phase ``Q`` with ``smax(g1, Q) = g1 * slowdown`` (0 where no slow-down)."""
    r = np.maximum(np.asarray(slowdown, dtype=float), 1.0)
    return g1 * (r**p - 1.0) ** (1.0 / p)


def fit_document(table: pd.DataFrame, gpu: str, *, sources: str = "") -> dict[str, Any]:
    """The compact coefficient document (``hasim-compact-latency/1``) of ``gpu``."""
    target = canonical_gpu(gpu)
    d = gpu_rows(table, target)
    if d.empty:
        raise InputError(
            f"no mean single-process latencies for GPU {target!r} in the measurements",
            expected="rows of that GPU (hasim.perf.load_measurements schema)",
        )
    full = d[d["quota_pct"] >= 100.0]
    batches = sorted({float(b) for b in full["batch"]})
    v100 = CompactLatency(CompactConfig())
    quotas, multiples = _v100_quota_multiples(v100)
    median_mult = np.median(np.stack(list(multiples.values())), axis=0)
    models: dict[str, Any] = {}
    quota_from: dict[str, str] = {}
    for model, g in full.groupby("model", sort=True):
        b_idx = np.searchsorted(batches, g["batch"].to_numpy(dtype=float))
        f, a, k = _fit_gpu_phase(
            b_idx, g["s"].to_numpy(float), g["latency_ms"].to_numpy(float), len(batches), SMOOTH_P
        )
        g1 = _smax(f, a[0] + k[0] / 100.0, SMOOTH_P)
        own_q = d[(d["model"] == model) & (d["quota_pct"] < 100.0)]
        if not own_q.empty:
            prof = _own_quota_profile(own_q, quotas, g1)
            quota_from[str(model)] = "measured"
        elif model in multiples:
            prof = _phase_for_slowdown(g1, multiples[str(model)], SMOOTH_P)
            quota_from[str(model)] = "V100 slow-down of the same model"
        else:
            prof = _phase_for_slowdown(g1, median_mult, SMOOTH_P)
            quota_from[str(model)] = "median V100 slow-down"
        prof = np.minimum.accumulate(np.asarray(prof, dtype=float))
        models[str(model)] = {
            "F": round(f, 5),
            "A": [round(float(v), 5) for v in a],
            "K": [round(float(v), 5) for v in k],
            "Q": [max(round(float(v), 5), 1e-5) for v in prof],
        }
    doc = {
        "format": FORMAT,
        "gpu": target,
        "description": f"compact {target} latency law, see hasim/perf/fit_gpu.py; times in ms",
        "smooth_p": SMOOTH_P,
        "batches": batches,
        "quotas": list(quotas),
        "models": models,
        "provenance": {
            "fitted_by": "hasim.perf.fit_gpu",
            "fit_command": f"hasim perf gpu-fit --gpu {target} --out FILE",
            "fit_date": date.today().isoformat(),
            "sources": sources,
            "rows": int(len(full)),
            "sm_from_mig": "MIG rows: s = SMs of the instance / SMs of the GPU (hasim.hardware)",
            "quota_phase": quota_from,
        },
    }
    return doc


def _own_quota_profile(rows: pd.DataFrame, quotas: tuple[float, ...], g1: float) -> np.ndarray:
    """Quota profile (ms) from a GPU's own quota rows: per quota the lowest measured
    latency at batch 1 (any SM), interpolated in 1/q, ``g1`` at full quota."""
    q = rows["quota_pct"].to_numpy(float) / 100.0
    lat = rows["latency_ms"].to_numpy(float)
    pts = {1.0: g1}
    for qq in sorted(set(q)):
        pts[float(qq)] = float(lat[q == qq].min())
    xs = np.array(sorted(1.0 / np.array(list(pts))))
    ys = np.array([pts[1.0 / x] for x in xs])
    return np.interp(1.0 / np.asarray(quotas), xs, ys)


def _smax(x: float, y: float, p: float) -> float:
    m = max(x, y)
    return m * ((x / m) ** p + (y / m) ** p) ** (1.0 / p) if m > 0 else 0.0


def predict_rows(doc: dict[str, Any], rows: pd.DataFrame) -> np.ndarray:
    """Latencies (ms) the law ``doc`` predicts for ``rows`` (with an ``s`` column)."""
    from hasim.perf.compact import coefficients_from_doc

    lat = CompactLatency(CompactConfig(), coefficients_from_doc(doc))
    return np.array(
        [
            lat.latency_ms(m, float(b), float(s), float(q) / 100.0)
            for m, b, s, q in zip(
                rows["model"], rows["batch"], rows["s"], rows["quota_pct"], strict=True
            )
        ]
    )


def load_a100(data: str | Path | None = None) -> pd.DataFrame:
    """The A100 latency sets through the one measurement loader (``data``: a data dir,
    default hasim's)."""
    from hasim.paths import data_dir
    from hasim.perf.measurements import load_measurements

    base = Path(data) if data else data_dir()
    parts = [load_measurements(base / rel) for rel in A100_SOURCES]
    return pd.concat(parts, ignore_index=True)


def fit_for_gpu(measurements: str | Path, gpu: str) -> dict[str, Any]:
    """The compact coefficient document of ``gpu`` fitted on a measurement file/dir."""
    from hasim.perf.measurements import load_measurements

    return fit_document(load_measurements(measurements), gpu, sources=str(measurements))


def holdout_report(
    table: pd.DataFrame, gpu: str, *, share: float = 0.2, seed: int = 0
) -> pd.DataFrame:
    """Fit on all but a random ``share`` of each source's cells; per source: held-out
    cells, MAPE (%), median and p90 absolute percentage error (%), and in-sample MAPE of
    the fit on every cell."""
    d = gpu_rows(table, gpu)
    d = d[d["quota_pct"] >= 100.0].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(d), dtype=bool)
    for _, idx in d.groupby("source").groups.items():
        idx = np.asarray(list(idx))
        n = max(1, int(round(share * len(idx))))
        test[rng.choice(idx, size=n, replace=False)] = True
    doc = fit_document(d[~test], gpu)
    known = d["model"].isin(doc["models"]).to_numpy()  # a model with no training cell
    t = d[test & known]
    ape = np.abs(predict_rows(doc, t) / t["latency_ms"].to_numpy(float) - 1.0) * 100.0
    full_doc = fit_document(d, gpu)
    ape_in = np.abs(predict_rows(full_doc, d) / d["latency_ms"].to_numpy(float) - 1.0) * 100.0
    out = []
    for src in sorted(set(d["source"])):
        h = (t["source"] == src).to_numpy()
        i = (d["source"] == src).to_numpy()
        out.append(
            {
                "source": src,
                "gpu": canonical_gpu(gpu),
                "models": int(d.loc[i, "model"].nunique()),
                "cells": int(i.sum()),
                "held_out": int(h.sum()),
                "mape_pct": float(ape[h].mean()) if h.any() else math.nan,
                "median_ape_pct": float(np.median(ape[h])) if h.any() else math.nan,
                "p90_ape_pct": float(np.percentile(ape[h], 90)) if h.any() else math.nan,
                "in_sample_mape_pct": float(ape_in[i].mean()),
            }
        )
    return pd.DataFrame(out)


def source_overlap(table: pd.DataFrame, gpu: str) -> pd.DataFrame:
    """Cells (model, batch, MIG slice) measured by two sources of ``gpu``: both latencies
    (ms) and the ratio second / first (sources in alphabetical order)."""
    d = gpu_rows(table, gpu)
    d = d[(d["quota_pct"] >= 100.0) & (d["mig_slice"] != "")]
    d = d.assign(key=d["model"].map(_overlap_name))
    srcs = sorted(set(d["source"]))
    rows = []
    for i, a in enumerate(srcs):
        for b in srcs[i + 1 :]:
            x = d[d["source"] == a].groupby(["key", "batch", "mig_slice"])["latency_ms"].mean()
            y = d[d["source"] == b].groupby(["key", "batch", "mig_slice"])["latency_ms"].mean()
            both = x.to_frame(a).join(y.to_frame(b), how="inner")
            for (m, bb, sl), r in both.iterrows():
                rows.append(
                    {"model": m, "batch": bb, "mig_slice": sl, "first": a, "second": b,
                     "first_ms": r[a], "second_ms": r[b], "ratio": r[b] / r[a]}
                )  # fmt: skip
    return pd.DataFrame(rows)


def _overlap_name(model: str) -> str:
    """Model names two sources share: ``bert-base`` and ParvaGPU's ``bert`` (bert-large,
    128 tokens) are different models, so only identical names match."""
    return model


def transfer_errors(table: pd.DataFrame, gpu: str = "A100-80GB") -> pd.DataFrame:
    """Error of each transfer rule from the V100 law to ``gpu``: on ``gpu``'s full-GPU
    MIG cells (7g, one process) of the models the V100 law knows, V100 latency at SM
    100 %, full quota, times the rule's ratio vs measured; MAPE (%) per rule."""
    from hasim.perf.transfer import TRANSFER_RULES, transfer_ratio

    d = gpu_rows(table, gpu)
    d = d[d["mig_slice"].str.startswith("7g") & (d["quota_pct"] >= 100.0)]
    v100 = CompactLatency(CompactConfig())
    d = d[d["model"].isin(v100.models)]
    base = np.array([v100.latency_ms(m, float(b), 100.0, 1.0) for m, b in zip(
        d["model"], d["batch"], strict=True)])  # fmt: skip
    meas = d["latency_ms"].to_numpy(float)
    out = []
    for rule in TRANSFER_RULES:
        r = transfer_ratio(rule, "V100-16GB", gpu)
        ape = np.abs(base * r / meas - 1.0) * 100.0
        small = d["batch"].to_numpy() <= 8
        out.append(
            {"rule": rule, "ratio": r, "cells": len(d), "models": d["model"].nunique(),
             "mape_pct": float(ape.mean()), "mape_batch_le8_pct": float(ape[small].mean()),
             "mape_batch_gt8_pct": float(ape[~small].mean()) if (~small).any() else math.nan}
        )  # fmt: skip
    return pd.DataFrame(out)


def fastgshare_check(data: str | Path | None = None) -> pd.DataFrame:
    """FaST-GShare's A100 profile (requests/s through its whole serving stack, batch 1)
    beside the A100-80GB law for ResNet-50 (its ``resnet``; the variant is not stated):
    per (quota, SM %): the QPS relative to quota 1 / SM 100 % and the law's batch-1
    speed relative to the same point (1 / latency)."""
    from hasim.paths import data_dir
    from hasim.perf.measurements import load_fastgshare_qps

    base = Path(data) if data else data_dir()
    q = load_fastgshare_qps(base / "measurements/fastgshare-autoscaler-qps/internal")
    q = q[(q["gpu"] == "A100") & (q["model"] == "resnet") & (q["source"].str.endswith("a100.csv"))]
    law = CompactLatency(CompactConfig(), PACKAGED_A100)
    ref_qps = float(q[(q["quota"] == 1.0) & (q["sm"] == 100.0)]["qps"].iloc[0])
    ref_lat = law.latency_ms("resnet50", 1.0, 100.0, 1.0)
    rows = []
    for _, r in q.sort_values(["quota", "sm"]).iterrows():
        lat = law.latency_ms("resnet50", 1.0, float(r["sm"]), float(r["quota"]))
        rows.append(
            {"quota": r["quota"], "sm_pct": r["sm"], "qps": r["qps"],
             "qps_rel": r["qps"] / ref_qps, "law_ms": lat, "law_speed_rel": ref_lat / lat}
        )  # fmt: skip
    return pd.DataFrame(rows)


PACKAGED_A100 = Path(__file__).resolve().parent / "data" / "compact_a100_80gb.json"
PACKAGED_A100_40 = Path(__file__).resolve().parent / "data" / "compact_a100_40gb.json"
