"""Training and evaluation of the per-operator latency model (:mod:`hasim.perf.operators`).

Reads RaPP's runtime-feature files (:func:`load_operator_data`), builds the scale and share
training tables, fits the two LightGBM regressors (:func:`fit_boosters`), scores them
grouped by model (:func:`evaluate_operator_model`) and writes the artifact the run-time
:class:`hasim.perf.operators.KernelModel` loads (:func:`train_operator_model`). Times in ms.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hasim.errors import InputError, MissingDataError
from hasim.paths import FETCH_HINT
from hasim.perf.common import import_lightgbm
from hasim.perf.operators import (
    ARTIFACT,
    DEFAULT_MAX_KERNELS,
    FORMAT,
    GPU,
    MIN_TIME_MS,
    OP_TYPES,
    REF_BATCH,
    REF_SM,
    SCALE_FEATURES,
    SCALE_MONOTONE,
    SHARE_FEATURES,
    VERSION,
    Boosters,
    OperatorParams,
    Profile,
    merge_groups,
    op_order,
    predict_ops_ms,
)

OP_DIR = "op_runtime_features_all_models"
RT_DIR = "runtime_features"
RAPP_SUBDIR = "measurements/rapp-has-gpu-v100"
FALLBACK_POINTS = 257

SOURCES = [
    {
        "dataset": "RaPP runtime features: per-operator times (ms) and end-to-end latency (ms, "
        "mean of 150 runs) of torchvision models, batch 1/2/4, MPS SM 5..100 %, NVIDIA V100 16 GB",
        "repository": "https://github.com/KontonGu/RaPP",
        "commit": "600348c1e0e16ab57eba0ba8938528985442495e",
        "paths": ["data/op_runtime_features_all_models/", "data/runtime_features/"],
        "license": "Apache-2.0",
        "copyright": "Copyright 2025 HAS-GPU Authors, KontonGu (Jianfeng Gu)",
    }
]


# --------------------------------------------------------------------------- data


@dataclass
class OperatorData:
    """Per-operator times and end-to-end latencies of RaPP runtime-feature files."""

    ops: pd.DataFrame
    """model, batch, sm_pct (%), op_type, op_index, time_ms, source."""
    latency: pd.DataFrame
    """model, batch, sm_pct (%), latency_ms (measured end to end)."""
    paths: list[str] = field(default_factory=list)


def _op_folders(data_path: str | Path | None) -> list[Path]:
    """The runtime-feature folders under ``data_path`` (op folder first)."""
    from hasim.data.locate import data_path as locate

    if data_path is None:
        base = locate(RAPP_SUBDIR)
    else:
        base = Path(data_path).expanduser()
        if not base.exists():
            raise MissingDataError(base, FETCH_HINT)
    for root in (base / RAPP_SUBDIR, base):
        found = [root / d for d in (OP_DIR, RT_DIR) if (root / d).is_dir()]
        if found:
            return found
    return [base]


def load_operator_data(data_path: str | Path | None = None) -> OperatorData:
    """Operator times and latencies from a data dir, the RaPP folder, one folder or a file.

    When a (model, batch, SM) is in both RaPP folders, ``op_runtime_features_all_models``
    wins (for the operator times and the latency alike).
    """
    from hasim.perf.measurements import load_measurements, load_operator_times

    ops_parts, lat_parts = [], []
    seen: set[tuple[str, int, float]] = set()
    folders = _op_folders(data_path)
    for folder in folders:
        ops = load_operator_times(folder)
        lat = load_measurements(folder)
        lat = lat[(lat.statistic == "mean") & lat.source.str.startswith("rapp_")]
        lat = lat[["model", "batch", "sm_pct", "latency_ms"]].drop_duplicates(
            ["model", "batch", "sm_pct"]
        )
        keys = list(zip(lat.model, lat.batch.astype(int), lat.sm_pct.astype(float), strict=True))
        new = np.array([k not in seen for k in keys], dtype=bool)
        okeys = pd.MultiIndex.from_arrays([ops.model, ops.batch, ops.sm_pct])
        fresh = pd.MultiIndex.from_tuples([k for k, n in zip(keys, new, strict=True) if n])
        ops_parts.append(ops[okeys.isin(fresh)])
        lat_parts.append(lat[new])
        seen.update(k for k, n in zip(keys, new, strict=True) if n)
    ops = pd.concat(ops_parts, ignore_index=True)
    lat = pd.concat(lat_parts, ignore_index=True)
    ops = ops[["model", "batch", "sm_pct", "op_type", "op_index", "time_ms", "source"]]
    return OperatorData(
        ops.reset_index(drop=True), lat.reset_index(drop=True), [str(f) for f in folders]
    )


def _static() -> pd.DataFrame:
    from hasim.perf.offline.features import model_features

    try:
        return model_features().set_index("model")
    except (MissingDataError, InputError):  # pragma: no cover - packaged file
        return pd.DataFrame(columns=["flops", "activation_bytes"])


def reference_profiles(data: OperatorData) -> dict[str, Profile]:
    """Each model's reference profile (batch 1, SM 100 %), ops in :func:`op_order`."""
    ops = data.ops
    ref = ops[(ops.batch == REF_BATCH) & (ops.sm_pct == REF_SM)]
    lat = data.latency
    lat = lat[(lat.batch == REF_BATCH) & (lat.sm_pct == REF_SM)].set_index("model").latency_ms
    static = _static()
    out: dict[str, Profile] = {}
    for model, g in ref.groupby("model", sort=True):
        counts = g.groupby("op_type").size().to_dict()
        times = dict(zip(zip(g.op_type, g.op_index, strict=True), g.time_ms, strict=True))
        order = op_order({str(k): int(v) for k, v in counts.items()})
        st = static.loc[model] if model in static.index else {}
        out[str(model)] = Profile.from_ops(
            [t for t, _ in order],
            [float(times[k]) for k in order],
            float(lat[model]) if model in lat.index else None,
            float(st.get("flops", math.nan)),
            float(st.get("activation_bytes", math.nan)),
        )
    return out


@dataclass
class TrainingFrames:
    """The two training tables: per-inference scale and per-op share."""

    scale: pd.DataFrame
    """SCALE_FEATURES, ``y = log(latency / latency_ref)``, model, batch, sm_pct, latency_ms."""
    share: pd.DataFrame
    """SHARE_FEATURES, ``y`` (log share change), ``w``, model, batch, sm_pct, time_ms, t_ref_ms."""


def training_frames(data: OperatorData, profiles: dict[str, Profile]) -> TrainingFrames:
    """Both training tables for every (model, batch, SM) except the reference one."""
    ops, lat = data.ops, data.latency
    scale_parts, share_parts = [], []
    for model, prof in profiles.items():
        lm = lat[(lat.model == model) & ~((lat.batch == REF_BATCH) & (lat.sm_pct == REF_SM))]
        if not lm.empty:
            f = prof.scale_features(lm.batch.to_numpy(float), lm.sm_pct.to_numpy(float))
            f["y"] = np.log(lm.latency_ms.to_numpy(float) / prof.latency_ref_ms)
            f["model"] = model
            f["batch_i"] = lm.batch.to_numpy(int)
            f["sm_pct"] = lm.sm_pct.to_numpy(float)
            f["latency_ms"] = lm.latency_ms.to_numpy(float)
            scale_parts.append(f)
        idx = {}
        seen: dict[str, int] = {}
        for k, t in enumerate(prof.types):
            i = seen.get(t, 0)
            seen[t] = i + 1
            idx[(t, i)] = k
        g = ops[(ops.model == model) & ~((ops.batch == REF_BATCH) & (ops.sm_pct == REF_SM))]
        if g.empty:
            continue
        k = np.array(
            [idx.get(key, -1) for key in zip(g.op_type, g.op_index, strict=True)], dtype=np.int64
        )
        ok = k >= 0
        g, k = g[ok], k[ok]
        base = prof.share_features(1, 100.0)
        f = base.iloc[k].reset_index(drop=True)
        f["log_sm"] = np.log(g.sm_pct.to_numpy(dtype=float))
        f["batch"] = g.batch.to_numpy(dtype=float)
        t = np.maximum(g.time_ms.to_numpy(dtype=float), MIN_TIME_MS)
        t_ref = np.maximum(prof.t_ref_ms[k], MIN_TIME_MS)
        key = pd.MultiIndex.from_arrays([g.batch.to_numpy(), g.sm_pct.to_numpy()])
        tot = pd.Series(t).groupby(key).transform("sum").to_numpy()
        f["y"] = np.log((t / tot) / (t_ref / t_ref.sum()))
        f["w"] = t_ref / t_ref.sum()
        f["model"] = model
        f["batch_i"] = g.batch.to_numpy(dtype=int)
        f["sm_pct"] = g.sm_pct.to_numpy(dtype=float)
        f["time_ms"] = g.time_ms.to_numpy(dtype=float)
        f["t_ref_ms"] = prof.t_ref_ms[k]
        f["op_k"] = k
        share_parts.append(f)
    if not scale_parts or not share_parts:
        raise InputError("no operator rows beside the batch-1 SM-100 % reference profiles")
    return TrainingFrames(
        pd.concat(scale_parts, ignore_index=True), pd.concat(share_parts, ignore_index=True)
    )


def fit_boosters(frames: TrainingFrames, params: OperatorParams) -> Boosters:
    """Train both LightGBM predictors (deterministic for ``params.seed``)."""
    lgb = import_lightgbm()
    sc = frames.scale
    p = params.lgb_params()
    p_scale = {**p, "num_leaves": 7, "learning_rate": 0.05}
    p_scale["min_data_in_leaf"] = max(2, params.min_data_in_leaf // 10)
    p_scale["monotone_constraints"] = list(SCALE_MONOTONE)
    ds = lgb.Dataset(sc[list(SCALE_FEATURES)], sc.y.to_numpy(), free_raw_data=True)
    scale = lgb.train(p_scale, ds, params.scale_estimators)
    sh = frames.share
    if len(sh) > params.max_rows:
        sh = sh.sample(n=params.max_rows, random_state=params.seed).sort_index()
    ds = lgb.Dataset(
        sh[list(SHARE_FEATURES)],
        sh.y.to_numpy(),
        weight=sh.w.to_numpy(),
        categorical_feature=["op_type"],
        free_raw_data=True,
    )
    share = lgb.train(p, ds, params.n_estimators)
    return Boosters(scale, share)


# --------------------------------------------------------------------------- evaluation


def grouped_folds(models: Iterable[str], k: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """``k`` (train models, test models) splits; each model is tested in exactly one fold."""
    names = sorted(set(models))
    if not 2 <= k <= len(names):
        raise InputError(f"{k} folds for {len(names)} models", expected="2 <= folds <= models")
    perm = np.random.default_rng(seed).permutation(len(names))
    out = []
    for c in np.array_split(perm, k):
        test = sorted(names[i] for i in c)
        out.append(([m for m in names if m not in set(test)], test))
    return out


def _subset(frames: TrainingFrames, models: Sequence[str]) -> TrainingFrames:
    return TrainingFrames(
        frames.scale[frames.scale.model.isin(models)], frames.share[frames.share.model.isin(models)]
    )


@dataclass
class OperatorEvaluation:
    """Held-out (grouped by model) errors of the per-operator predictor (fractions)."""

    per_op_mape: float
    per_op_wape: float
    """sum |error| / sum time over the scored op rows (time-weighted)."""
    per_inference_mape: float
    """summed predicted op times vs the measured end-to-end latency."""
    by_sm: dict[str, dict[str, float]]
    baselines: dict[str, float]
    splits: list[tuple[list[str], list[str]]]
    n_op_rows: int
    n_inferences: int
    train_seconds: float

    def lines(self) -> list[str]:
        """The human-readable report."""
        out = [
            f"grouped {len(self.splits)}-fold over models; {self.n_op_rows} op rows and "
            f"{self.n_inferences} inferences scored (the batch-1 SM-100 % reference is input)",
            f"per-op MAPE {100 * self.per_op_mape:.2f}%, time-weighted (WAPE) "
            f"{100 * self.per_op_wape:.2f}%",
            "per-inference MAPE (sum of predicted ops vs measured latency) "
            f"{100 * self.per_inference_mape:.2f}%",
            "by SM %: per-op MAPE / per-op WAPE / per-inference MAPE",
        ]
        for s, d in self.by_sm.items():
            out.append(
                f"  SM {s:>3}: {100 * d['per_op_mape']:7.2f}% / {100 * d['per_op_wape']:6.2f}% / "
                f"{100 * d['per_inference_mape']:6.2f}%"
            )
        out.append("baselines (same rows):")
        for k, v in self.baselines.items():
            out.append(f"  {k}: {100 * v:.2f}%")
        out.append(f"training time {self.train_seconds:.1f} s over all folds")
        return out


def evaluate_operator_model(
    data: OperatorData,
    *,
    folds: int = 5,
    seed: int = 0,
    params: OperatorParams | None = None,
    log: Callable[[str], None] | None = None,
) -> OperatorEvaluation:
    """Grouped k-fold over models: train on the other models, score the held-out ones."""
    params = params or OperatorParams(seed=seed)
    profiles = reference_profiles(data)
    frames = training_frames(data, profiles)
    splits = grouped_folds(frames.share.model.unique(), folds, seed)
    sh = frames.share
    pred = np.full(len(sh), np.nan)
    secs = 0.0
    for j, (train, test) in enumerate(splits):
        if set(train) & set(test):  # pragma: no cover - guarded by grouped_folds
            raise AssertionError("a held-out model is in the training set")
        t0 = time.perf_counter()
        boosters = fit_boosters(_subset(frames, train), params)
        secs += time.perf_counter() - t0
        for model in test:
            prof = profiles[model]
            m = (sh.model == model).to_numpy()
            for (b, s), gi in sh[m].groupby(["batch_i", "sm_pct"]).groups.items():
                ops_ms = predict_ops_ms(boosters, prof, int(b), float(s))
                pred[sh.index.get_indexer(gi)] = ops_ms[sh.loc[gi, "op_k"].to_numpy()]
        if log:
            log(f"fold {j + 1}/{len(splits)}: {len(test)} held-out models")
    f = sh.assign(pred_ms=pred)
    f = f[np.isfinite(f.pred_ms)]
    pos = f.time_ms > MIN_TIME_MS
    ape = ((f.pred_ms - f.time_ms).abs() / f.time_ms)[pos]
    lat = data.latency.set_index(["model", "batch", "sm_pct"]).latency_ms
    lat.index = lat.index.set_names(["model", "batch_i", "sm_pct"])
    flat_scale = {
        m: p.latency_ref_ms / max(p.t_ref_ms.sum(), MIN_TIME_MS) for m, p in profiles.items()
    }
    f = f.assign(flat_ms=f.t_ref_ms * f.model.map(flat_scale))
    sums = (
        f.groupby(["model", "batch_i", "sm_pct"])[["pred_ms", "time_ms", "flat_ms"]]
        .sum()
        .join(lat, how="inner")
    )
    inf_ape = (sums.pred_ms - sums.latency_ms).abs() / sums.latency_ms
    by_sm: dict[str, dict[str, float]] = {}
    for s in sorted(f.sm_pct.unique()):
        g = f[f.sm_pct == s]
        gp = g[g.time_ms > MIN_TIME_MS]
        si = sums.index.get_level_values("sm_pct") == s
        by_sm[f"{s:g}"] = {
            "per_op_mape": float(((gp.pred_ms - gp.time_ms).abs() / gp.time_ms).mean()),
            "per_op_wape": float((g.pred_ms - g.time_ms).abs().sum() / g.time_ms.sum()),
            "per_inference_mape": float(inf_ape[si].mean()),
        }
    gf = f[pos]
    baselines = {
        "per-op MAPE, reference profile at every SM/batch (no SM dependence)": float(
            ((gf.flat_ms - gf.time_ms).abs() / gf.time_ms).mean()
        ),
        "per-op WAPE, reference profile at every SM/batch": float(
            (f.flat_ms - f.time_ms).abs().sum() / f.time_ms.sum()
        ),
        "per-inference MAPE, reference profile at every SM/batch": float(
            ((sums.flat_ms - sums.latency_ms).abs() / sums.latency_ms).mean()
        ),
        "per-inference MAPE, measured ops summed (the data's own floor)": float(
            ((sums.time_ms - sums.latency_ms).abs() / sums.latency_ms).mean()
        ),
    }
    return OperatorEvaluation(
        per_op_mape=float(ape.mean()),
        per_op_wape=float((f.pred_ms - f.time_ms).abs().sum() / f.time_ms.sum()),
        per_inference_mape=float(inf_ape.mean()),
        by_sm=by_sm,
        baselines=baselines,
        splits=splits,
        n_op_rows=len(f),
        n_inferences=len(sums),
        train_seconds=secs,
    )


# --------------------------------------------------------------------------- artifact


def _round(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant digits (for a compact artifact)."""
    return float(f"{x:.{digits - 1}e}") if x else 0.0


def _cum_shape(times: np.ndarray, points: int) -> np.ndarray:
    """Normalized cumulative time at ``points`` evenly spaced kernel positions in [0, 1]."""
    cum = np.concatenate([[0.0], np.cumsum(times)])
    cum /= max(cum[-1], MIN_TIME_MS)
    x = np.linspace(0.0, 1.0, len(cum))
    return np.interp(np.linspace(0.0, 1.0, points), x, cum)


def _finite(x: float) -> float | None:
    return _round(x) if math.isfinite(x) else None


def train_operator_model(
    data_path: str | Path | None = None,
    out_path: str | Path | None = None,
    seed: int = 0,
    *,
    params: OperatorParams | None = None,
    metrics: dict[str, Any] | None = None,
    max_kernels: int = DEFAULT_MAX_KERNELS,
) -> Path:
    """Fit on all operator data under ``data_path`` and write the artifact (gzip JSON).

    ``data_path``: a data dir, the RaPP folder, one runtime-features folder or file
    (default: ``<data dir>/measurements/rapp-has-gpu-v100``). ``out_path`` defaults to the
    committed :data:`ARTIFACT`; ``metrics`` (e.g. held-out figures) are stored as given.
    For the same data and seed the output differs only in ``created`` and
    ``train_seconds``. Returns the path written.
    """
    params = params or OperatorParams(seed=seed)
    lgb = import_lightgbm()
    data = load_operator_data(data_path)
    profiles = reference_profiles(data)
    frames = training_frames(data, profiles)
    t0 = time.perf_counter()
    boosters = fit_boosters(frames, params)
    secs = time.perf_counter() - t0
    lat = data.latency
    models: dict[str, Any] = {}
    counts, shapes = [], []
    for name, prof in profiles.items():
        g = lat[lat.model == name]
        by_b: dict[str, dict[str, float]] = {}
        for b, gb in g.groupby("batch"):
            pts = sorted(zip(gb.sm_pct, gb.latency_ms, strict=True))
            by_b[str(int(b))] = {f"{s:g}": _round(float(v)) for s, v in pts}
        models[name] = {
            "ops": [OP_TYPES.index(t) if t in OP_TYPES else t for t in prof.types],
            "t_ref_ms": [_round(float(t), 3) for t in prof.t_ref_ms],
            "latency_ref_ms": _round(prof.latency_ref_ms),
            "flops": _finite(prof.flops),
            "activation_bytes": _finite(prof.activation_bytes),
            "latency_ms": by_b,
        }
        grouped = np.add.reduceat(prof.t_ref_ms, merge_groups(prof.t_ref_ms, max_kernels))
        counts.append(len(grouped))
        shapes.append(_cum_shape(grouped, FALLBACK_POINTS))
    shape = np.median(np.vstack(shapes), axis=0)
    shape = shape / shape[-1]
    sm_grid = set(frames.share.sm_pct.unique().tolist()) | {REF_SM}
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "gpu": GPU,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_by": "hasim.perf.operators.train_operator_model",
        "sources": SOURCES,
        "params": asdict(params),
        "lightgbm_version": getattr(lgb, "__version__", "?"),
        "scale_features": list(SCALE_FEATURES),
        "share_features": list(SHARE_FEATURES),
        "op_types": list(OP_TYPES),
        "sm_grid": sorted(float(v) for v in sm_grid),
        "batch_grid": sorted({int(b) for b in frames.share.batch_i.unique()} | {REF_BATCH}),
        "max_kernels": max_kernels,
        "train_rows": {"scale": len(frames.scale), "share": len(frames.share)},
        "train_seconds": round(secs, 1),
        "metrics": metrics or {},
        "fallback": {
            "kernels": int(np.median(counts)),
            "cum_shape": [round(float(v), 5) for v in shape],
            "rule": "pointwise median of the known models' normalized cumulative kernel time "
            "(batch 1, SM 100 %) over kernel positions scaled to [0, 1]",
        },
        "models": models,
        "scale_model": boosters.scale.model_to_string(num_iteration=-1),
        "share_model": boosters.share.model_to_string(num_iteration=-1),
    }
    out = Path(out_path) if out_path is not None else ARTIFACT
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out, "wb", mtime=0) as fh:
        fh.write(json.dumps(doc, separators=(",", ":")).encode("utf-8"))
    return out
