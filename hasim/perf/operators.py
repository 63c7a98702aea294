"""Per-operator ("per-kernel") latency model: one inference as a sequence of kernel durations.

Data: RaPP's runtime-feature files (V100 16 GB, MPS SM limit only, no quota hook; see
``measurements/README.md`` section 1b): per-operator-type lists of times (ms) for 67
torchvision models at batch 1 and SM 5/10/30/60/80/100 % (``op_runtime_features_all_models``)
and 56 of them at batch 1/2/4 and SM 5/10/20/30/60/80/100 % (``runtime_features``), each
file with its measured end-to-end ``latency`` (ms). The per-operator times are semi-derived
(TVM debug-executor shares times the measured PyTorch latency), so they are noisy.

Predictor (two LightGBM regressors; inputs a new model's *reference profile* alone gives,
i.e. its operators' times at batch 1, SM 100 %, plus the end-to-end latency there):

* scale: ``log(latency(batch, SM) / latency_ref)`` from model-level features (reference
  latency, op count, largest op share, share of ops >= 0.1 ms, conv/dense share, FLOPs per
  ms and activation bytes from ``model_features.csv`` when known), roofline-style loads
  ``log10(FLOPs/ms * batch * 100 / SM)`` and ``log10(activation bytes * batch * 100 / SM /
  latency_ref)``, ``log SM`` and batch, monotone (less SM or a larger batch is never
  faster);
* share: ``log`` of each op's change of share of the inference, from the op type,
  ``log10 t_ref``, its reference share, the model's reference latency and op count, its
  relative position among its type, ``log SM`` and batch (weighted by reference share).

An op's predicted time is the predicted latency times its normalized predicted share. At
SM (batch) values between the trained grid the per-op times are interpolated linearly in
``1/SM`` (in batch); below the smallest SM and above the largest batch they are extrapolated
with each op's elasticity between the last two grid points, clipped to [0, 1]. Without
``total_s``, a known model's kernels sum to its latency at the SM grid points (anchored,
when that batch was measured, to the measured end-to-end latency made non-increasing in SM;
unmeasured batches keep the measured/predicted factor of the nearest smaller measured
batch), made non-increasing in SM and interpolated linearly in ``1/SM``.

Operator order (the true launch order is lost in the data, which lists ops per type): the
i-th of a type's ``n`` ops sits at position ``(i + 0.5) / n`` of the network and ops are
sorted by position, ties in :data:`OP_TYPES` order (conv2d, batch_norm, relu, ...), which
interleaves conv -> bn -> relu -> ... like a CNN runs. Exceptions: a lone ``nn.max_pool2d``
is the stem pool (right after the first conv); in models without ``nn.batch_matmul`` the
last ``nn.adaptive_avg_pool2d`` and every ``nn.dense`` form the classifier head at the end.

Kernels: when a model has more than ``max_kernels`` (default 256) ops, consecutive ops are
merged (:func:`merge_groups`: the smallest threshold ``tau`` for which runs of consecutive
ops shorter than ``tau``, each run totalling <= ``tau``, leave at most ``max_kernels``
kernels). Groups are fixed per model from the reference profile, so they are the same at
every SM and batch.

Models without operator data: ``fallback_kernels`` (default: the median kernel count of
the known models) kernels whose durations follow the pointwise median of the known models'
normalized cumulative-time curves (at batch 1, SM 100 %), scaled to ``total_s`` (required).
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

ARTIFACT = Path(__file__).resolve().parent / "data" / "operators_v100.json.gz"
"""The committed artifact (written by :func:`train_operator_model`)."""
FORMAT = "hasim-operator-model"
VERSION = 1
GPU = "V100-16GB"
OP_DIR = "op_runtime_features_all_models"
RT_DIR = "runtime_features"
RAPP_SUBDIR = "measurements/rapp-has-gpu-v100"
DEFAULT_MAX_KERNELS = 256
FALLBACK_POINTS = 257
REF_BATCH = 1
REF_SM = 100.0
MIN_TIME_MS = 1e-6
"""Operator times are floored at this (ms) before taking logs (a few are 0 in the data)."""

OP_TYPES = (
    "nn.conv2d",
    "nn.conv2d_transpose",
    "nn.batch_norm",
    "nn.layer_norm",
    "nn.bias_add",
    "nn.relu",
    "multiply",
    "add",
    "transpose",
    "reshape",
    "squeeze",
    "nn.batch_matmul",
    "nn.softmax",
    "nn.max_pool2d",
    "nn.adaptive_avg_pool2d",
    "nn.dense",
)
"""Known TVM Relay op types in tie-break (launch-order) rank; others rank after them."""

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


@dataclass(frozen=True)
class OperatorParams:
    """LightGBM settings of the per-operator predictor."""

    n_estimators: int = 100
    scale_estimators: int = 200
    num_leaves: int = 15
    learning_rate: float = 0.08
    min_child_samples: int = 100
    bagging_fraction: float = 0.7
    feature_fraction: float = 0.9
    max_rows: int = 60_000
    """Training rows are subsampled (by the seed) to at most this many."""
    seed: int = 0
    threads: int = 2

    def lgb_params(self) -> dict[str, Any]:
        """The LightGBM parameter dict (deterministic for a seed)."""
        return {
            "objective": "l2",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "feature_fraction": self.feature_fraction,
            "num_threads": self.threads,
            "deterministic": True,
            "force_col_wise": True,
            "seed": self.seed,
            "bagging_seed": self.seed,
            "feature_fraction_seed": self.seed,
            "data_random_seed": self.seed,
            "verbose": -1,
        }


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


# --------------------------------------------------------------------------- order / kernels


def _rank(op_type: str) -> int:
    return OP_TYPES.index(op_type) if op_type in OP_TYPES else len(OP_TYPES)


def op_order(counts: dict[str, int]) -> list[tuple[str, int]]:
    """The assumed launch order ``[(op_type, op_index), ...]`` of a model's ops (module doc)."""
    attention = counts.get("nn.batch_matmul", 0) > 0
    n_conv = counts.get("nn.conv2d", 0)
    keyed = []
    for t, n in counts.items():
        for i in range(n):
            pos = (i + 0.5) / n
            if t == "nn.max_pool2d" and n == 1 and n_conv > 0:
                pos = 1.0 / n_conv
            elif not attention and (
                t == "nn.dense" or (t == "nn.adaptive_avg_pool2d" and i == n - 1)
            ):
                pos = 1.0 + (0.0 if t == "nn.adaptive_avg_pool2d" else (i + 0.5) / n)
            keyed.append((pos, _rank(t), t, i))
    keyed.sort(key=lambda k: (k[0], k[1], k[2], k[3]))
    return [(t, i) for _, _, t, i in keyed]


def _runs(t: np.ndarray, tau: float) -> list[int]:
    """Group starts when consecutive ops shorter than ``tau`` merge into runs of total <= tau."""
    starts, acc = [], math.inf
    for k, x in enumerate(t):
        if x >= tau or acc + x > tau:
            starts.append(k)
            acc = x if x < tau else math.inf
        else:
            acc += x
    return starts


def merge_groups(t_ref: np.ndarray, max_kernels: int) -> np.ndarray:
    """Start index of each kernel group of consecutive ops; at most ``max_kernels`` groups.

    Rule: the smallest threshold ``tau`` (bisection over 50 steps) for which merging
    consecutive ops shorter than ``tau`` into runs of total <= ``tau`` leaves at most
    ``max_kernels`` kernels (ops >= ``tau`` stay alone). Fewer ops: no merging.
    """
    t = np.maximum(np.asarray(t_ref, dtype=float), 0.0)
    n = len(t)
    if n <= max_kernels:
        return np.arange(n)
    lo, hi = 0.0, float(t.sum()) + 1.0
    best = _runs(t, hi)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        starts = _runs(t, mid)
        if len(starts) <= max_kernels:
            hi, best = mid, starts
        else:
            lo = mid
    return np.asarray(best, dtype=np.int64)


# --------------------------------------------------------------------------- profiles / features


@dataclass
class Profile:
    """A model's reference profile: ops in launch order with their time (ms) at batch 1,
    SM 100 %, the measured end-to-end latency there (ms) and static architecture figures."""

    types: list[str]
    t_ref_ms: np.ndarray
    pos: np.ndarray
    latency_ref_ms: float
    flops: float = math.nan
    """FLOPs of one input (``hasim/perf/data/model_features.csv``), NaN when unknown."""
    activation_bytes: float = math.nan

    @classmethod
    def from_ops(
        cls,
        types: Sequence[str],
        t_ref_ms: Sequence[float],
        latency_ref_ms: float | None = None,
        flops: float = math.nan,
        activation_bytes: float = math.nan,
    ) -> Profile:
        """A profile from ops already in launch order (``pos`` recomputed per type)."""
        counts: dict[str, int] = {}
        for t in types:
            counts[t] = counts.get(t, 0) + 1
        seen: dict[str, int] = {}
        pos = []
        for t in types:
            i = seen.get(t, 0)
            seen[t] = i + 1
            pos.append((i + 0.5) / counts[t])
        t = np.asarray(t_ref_ms, dtype=float)
        lat = float(latency_ref_ms) if latency_ref_ms else float(max(t.sum(), MIN_TIME_MS))
        return cls(list(types), t, np.asarray(pos, dtype=float), lat, flops, activation_bytes)

    @property
    def log_flops_per_ms(self) -> float:
        """``log10(FLOPs / reference latency in ms)``; NaN when the FLOPs are unknown."""
        return math.log10(self.flops / self.latency_ref_ms) if self.flops > 0 else math.nan

    def scale_features(self, batch: Sequence[float], sm_pct: Sequence[float]) -> pd.DataFrame:
        """Model-level features (see :data:`SCALE_FEATURES`) at each (batch, SM %)."""
        t = np.maximum(self.t_ref_ms, MIN_TIME_MS)
        share = t / t.sum()
        n = len(np.atleast_1d(batch))
        row = {
            "log_lat_ref": math.log10(self.latency_ref_ms),
            "n_ops": float(len(t)),
            "max_share": float(share.max()),
            "heavy_share": float(share[t >= HEAVY_MS].sum()),
            "conv_share": float(
                sum(x for x, k in zip(share, self.types, strict=True) if k in CONV)
            ),
            "log_flops_per_ms": self.log_flops_per_ms,
            "log_act_bytes": math.log10(self.activation_bytes)
            if self.activation_bytes > 0
            else math.nan,
        }
        f = pd.DataFrame({k: np.full(n, v) for k, v in row.items()})
        b = np.asarray(batch, dtype=float)
        sm = np.asarray(sm_pct, dtype=float)
        # roofline-style load: work per unit of SM share relative to the reference latency
        f["log_work"] = row["log_flops_per_ms"] + np.log10(b * 100.0 / sm)
        f["log_act_work"] = row["log_act_bytes"] + np.log10(b * 100.0 / sm) - row["log_lat_ref"]
        f["log_sm"] = np.log(sm)
        f["batch"] = b
        return f[list(SCALE_FEATURES)]

    def share_features(self, batch: float, sm_pct: float) -> pd.DataFrame:
        """Per-op features (see :data:`SHARE_FEATURES`) of every op at (batch, SM %)."""
        t = np.maximum(self.t_ref_ms, MIN_TIME_MS)
        n = len(t)
        return pd.DataFrame(
            {
                "op_type": np.array([_rank(x) for x in self.types], dtype=np.int64),
                "log_t_ref": np.log10(t),
                "share": t / t.sum(),
                "log_lat_ref": np.full(n, math.log10(self.latency_ref_ms)),
                "n_ops": np.full(n, float(n)),
                "pos": self.pos,
                "log_sm": np.full(n, math.log(sm_pct)),
                "batch": np.full(n, float(batch)),
            },
            columns=list(SHARE_FEATURES),
        )


CONV = ("nn.conv2d", "nn.conv2d_transpose", "nn.dense", "nn.batch_matmul")
HEAVY_MS = 0.1
"""Ops at least this long (ms) at the reference count as heavy (a model-level feature)."""
SCALE_FEATURES = (
    "log_lat_ref",
    "n_ops",
    "max_share",
    "heavy_share",
    "conv_share",
    "log_flops_per_ms",
    "log_act_bytes",
    "log_work",
    "log_act_work",
    "log_sm",
    "batch",
)
SCALE_MONOTONE = (0, 0, 0, 0, 0, 0, 0, 1, 1, -1, 1)
"""Less SM (higher load, lower ``log_sm``) or a larger batch is never faster."""
SHARE_FEATURES = (
    "op_type",
    "log_t_ref",
    "share",
    "log_lat_ref",
    "n_ops",
    "pos",
    "log_sm",
    "batch",
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


@dataclass
class Boosters:
    """The fitted per-inference scale and per-op share predictors."""

    scale: Any
    share: Any


def fit_boosters(frames: TrainingFrames, params: OperatorParams) -> Boosters:
    """Train both LightGBM predictors (deterministic for ``params.seed``)."""
    lgb = import_lightgbm()
    sc = frames.scale
    p = params.lgb_params()
    p_scale = {**p, "num_leaves": 7, "learning_rate": 0.05}
    p_scale["min_child_samples"] = max(2, params.min_child_samples // 10)
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


def predict_ops_ms(boosters: Boosters, prof: Profile, batch: float, sm_pct: float) -> np.ndarray:
    """Predicted op times (ms) at one (batch, SM): shares times the predicted latency."""
    if batch == REF_BATCH and sm_pct == REF_SM:
        return prof.t_ref_ms * (prof.latency_ref_ms / max(prof.t_ref_ms.sum(), MIN_TIME_MS))
    lat = prof.latency_ref_ms * math.exp(
        float(boosters.scale.predict(prof.scale_features([batch], [sm_pct]))[0])
    )
    w = np.maximum(prof.t_ref_ms, MIN_TIME_MS) * np.exp(
        boosters.share.predict(prof.share_features(batch, sm_pct))
    )
    return lat * w / w.sum()


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


# --------------------------------------------------------------------------- kernel model


def _elastic(t_a: np.ndarray, t_b: np.ndarray, x_a: float, x_b: float, x: float) -> np.ndarray:
    """Extrapolate past grid point ``x_a`` (away from ``x_b``): ``t = t_a * r^k`` with
    ``r = |log(x / x_a)|`` as a ratio > 1 and ``k`` the per-op log-log elasticity between the
    two points, clipped to [0, 1] (so farther out is never faster, at most proportional)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.log(np.asarray(t_a) / np.asarray(t_b)) / abs(math.log(x_a / x_b))
    k = np.clip(np.nan_to_num(k, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return np.asarray(t_a) * np.exp(k * abs(math.log(x / x_a)))


def _isotonic_decreasing(y: np.ndarray) -> np.ndarray:
    """Least-squares non-increasing fit of ``y`` (pool adjacent violators)."""
    vals: list[float] = []
    wts: list[int] = []
    for v in y:
        vals.append(float(v))
        wts.append(1)
        while len(vals) > 1 and vals[-2] < vals[-1]:
            w = wts[-2] + wts[-1]
            vals[-2] = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            wts[-2] = w
            vals.pop()
            wts.pop()
    return np.repeat(vals, wts)


class KernelModel:
    """Kernel durations (s) of one inference at an SM partition (see the module doc).

    ``anchor``: without ``total_s``, scale a known model's sequence so that it sums to its
    measured end-to-end latency (made non-increasing in SM, interpolated linearly in 1/SM)
    when that batch was measured.
    """

    def __init__(
        self,
        doc: dict[str, Any] | None = None,
        *,
        name: str = "rapp-operators-v100",
        max_kernels: int | None = None,
        fallback_kernels: int | None = None,
        anchor: bool = True,
    ) -> None:
        self.name = name
        self.doc = doc or {}
        self.anchor = anchor
        self.max_kernels = int(max_kernels or self.doc.get("max_kernels", DEFAULT_MAX_KERNELS))
        fb = self.doc.get("fallback", {})
        self.fallback_kernels = int(fallback_kernels or fb.get("kernels", 100))
        if self.max_kernels < 1 or self.fallback_kernels < 1:
            raise InputError("max_kernels and fallback_kernels must be >= 1")
        self._cum_shape = np.asarray(fb.get("cum_shape", [0.0, 1.0]), dtype=float)
        self.sm_grid = [float(s) for s in self.doc.get("sm_grid", [REF_SM])]
        self.batch_grid = [int(b) for b in self.doc.get("batch_grid", [REF_BATCH])]
        self._boosters: Boosters | None = None
        if self.doc.get("scale_model") and self.doc.get("share_model"):
            lgb = import_lightgbm()
            self._boosters = Boosters(
                lgb.Booster(model_str=self.doc["scale_model"]),
                lgb.Booster(model_str=self.doc["share_model"]),
            )
        types = list(self.doc.get("op_types", OP_TYPES))
        self.profiles: dict[str, Profile] = {}
        self._latency: dict[str, dict[int, dict[float, float]]] = {}
        for m, d in self.doc.get("models", {}).items():
            names = [types[t] if isinstance(t, int) else str(t) for t in d["ops"]]
            self.profiles[m] = Profile.from_ops(
                names,
                d["t_ref_ms"],
                d.get("latency_ref_ms"),
                math.nan if d.get("flops") is None else float(d["flops"]),
                math.nan if d.get("activation_bytes") is None else float(d["activation_bytes"]),
            )
            self._latency[m] = {
                int(b): {float(s): float(v) for s, v in sv.items()}
                for b, sv in d.get("latency_ms", {}).items()
            }
        self._groups: dict[str, np.ndarray] = {}
        self._totals: dict[tuple[str, int], np.ndarray] = {}
        self._grid_cache: dict[tuple[str, int, float], np.ndarray] = {}
        self._cache: dict[tuple[str, int, float], np.ndarray] = {}

    # ----------------------------------------------------------------- public

    def knows(self, model: str) -> bool:
        """Whether ``model`` has operator data (else :meth:`kernels_s` uses the fallback)."""
        return model in self.profiles and self._boosters is not None

    @property
    def models(self) -> list[str]:
        """The models with operator data."""
        return sorted(self.profiles) if self._boosters is not None else []

    def kernels_s(
        self, model: str, batch: int, sm_pct: float, total_s: float | None = None
    ) -> np.ndarray:
        """Durations (s) of one inference's kernels, in launch order, at SM partition sm_pct (%)
        with the whole time window (quota 1). When total_s is given the sequence is scaled so
        that it sums to total_s (the batch latency the simulation's perf model gives)."""
        b, s = self._check(model, batch, sm_pct, total_s)
        if self.knows(model):
            shape = self.shape(model, b, s)
            if total_s is None:
                return shape * (self._total_ms(model, b, s) / 1e3)
            return shape * float(total_s)
        if total_s is None:
            known = ", ".join(self.models[:5]) + (", ..." if len(self.models) > 5 else "")
            raise InputError(
                f"no operator data for model {model!r}: kernels_s needs total_s "
                f"(the generic fallback sequence is scaled to it; known models: {known})"
            )
        return self.shape(model, b, s) * float(total_s)

    def shape(self, model: str, batch: int, sm_pct: float) -> np.ndarray:
        """The kernel durations as fractions of the inference (sum 1; read-only, cached per
        (model, batch, SM)); the fallback shape for unknown models."""
        b, s = self._check(model, batch, sm_pct, None)
        key = (model, b, s) if self.knows(model) else ("", 0, 0.0)
        hit = self._cache.get(key)
        if hit is None:
            if self.knows(model):
                ms = np.add.reduceat(self._op_times_ms(model, b, s), self._group_starts(model))
                hit = ms / ms.sum()
            else:
                hit = self._fallback_shape(self.fallback_kernels)
            hit.flags.writeable = False
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    # ----------------------------------------------------------------- internals

    @staticmethod
    def _check(model: str, batch: int, sm_pct: float, total_s: float | None) -> tuple[int, float]:
        if not isinstance(batch, int | np.integer) or isinstance(batch, bool) or batch < 1:
            raise InputError(f"batch {batch!r} for model {model!r}", expected="an integer >= 1")
        s = float(sm_pct)
        if not (math.isfinite(s) and 0 < s <= 100):
            raise InputError(f"sm_pct {sm_pct!r} for model {model!r}", expected="(0, 100] %")
        if total_s is not None and not (math.isfinite(total_s) and total_s > 0):
            raise InputError(f"total_s {total_s!r} for model {model!r}", expected="> 0 s")
        return int(batch), s

    def _fallback_shape(self, n: int) -> np.ndarray:
        x = np.linspace(0.0, 1.0, len(self._cum_shape))
        cum = np.interp(np.linspace(0.0, 1.0, n + 1), x, self._cum_shape)
        d = np.maximum(np.diff(cum), 0.0)
        if d.sum() <= 0:
            d = np.ones(n)
        return d / d.sum()

    def _group_starts(self, model: str) -> np.ndarray:
        g = self._groups.get(model)
        if g is None:
            g = merge_groups(self.profiles[model].t_ref_ms, self.max_kernels)
            self._groups[model] = g
        return g

    def _grid_ms(self, model: str, batch: int, sm: float) -> np.ndarray:
        """Predicted op times (ms) at a grid (batch, SM)."""
        key = (model, batch, sm)
        hit = self._grid_cache.get(key)
        if hit is None:
            assert self._boosters is not None
            hit = predict_ops_ms(self._boosters, self.profiles[model], batch, sm)
            self._grid_cache[key] = hit
        return hit

    def _at_sm(self, model: str, batch: int, s: float) -> np.ndarray:
        g = self.sm_grid
        if s in g:
            return self._grid_ms(model, batch, s)
        if s < g[0]:
            if len(g) == 1:
                return self._grid_ms(model, batch, g[0])
            t0, t1 = self._grid_ms(model, batch, g[0]), self._grid_ms(model, batch, g[1])
            return _elastic(t0, t1, g[0], g[1], s)
        hi = next(i for i, v in enumerate(g) if v > s)
        lo_s, hi_s = g[hi - 1], g[hi]
        w = (1 / s - 1 / lo_s) / (1 / hi_s - 1 / lo_s)
        t_lo, t_hi = self._grid_ms(model, batch, lo_s), self._grid_ms(model, batch, hi_s)
        return t_lo + w * (t_hi - t_lo)

    def _op_times_ms(self, model: str, batch: int, s: float) -> np.ndarray:
        g = self.batch_grid
        if batch in g:
            return self._at_sm(model, batch, s)
        if batch > g[-1]:
            if len(g) == 1:
                return self._at_sm(model, g[-1], s) * batch / g[-1]
            t_a, t_b = self._at_sm(model, g[-1], s), self._at_sm(model, g[-2], s)
            return _elastic(t_a, t_b, g[-1], g[-2], batch)
        hi = next(i for i, v in enumerate(g) if v > batch)
        w = (batch - g[hi - 1]) / (g[hi] - g[hi - 1])
        t_lo, t_hi = self._at_sm(model, g[hi - 1], s), self._at_sm(model, g[hi], s)
        return t_lo + w * (t_hi - t_lo)

    def _raw_grid_totals_ms(self, model: str, batch: int) -> np.ndarray:
        """Latency (ms) at each SM grid point before the monotone envelope.

        A grid batch: the predicted op times summed, with ``anchor`` times measured /
        predicted. Between grid batches: linear in batch. Past the largest grid batch ``B``:
        ``T(B) * (batch / B)^k`` with ``k`` the elasticity of ``T`` between the last two grid
        batches at that SM, clipped to [0, 1]."""
        bg = self.batch_grid
        if batch in bg:
            raw = []
            for g in self.sm_grid:
                t = float(self._op_times_ms(model, batch, g).sum())
                raw.append(t * self._anchor_factor(model, batch, g, t) if self.anchor else t)
            return np.asarray(raw)
        if batch > bg[-1]:
            top = self._raw_grid_totals_ms(model, bg[-1])
            if len(bg) == 1:
                return top * batch / bg[-1]
            prev = self._raw_grid_totals_ms(model, bg[-2])
            return np.asarray(_elastic(top, prev, bg[-1], bg[-2], batch))
        hi = next(i for i, v in enumerate(bg) if v > batch)
        w = (batch - bg[hi - 1]) / (bg[hi] - bg[hi - 1])
        lo_t, hi_t = (self._raw_grid_totals_ms(model, bg[i]) for i in (hi - 1, hi))
        return lo_t + w * (hi_t - lo_t)

    def _grid_totals_ms(self, model: str, batch: int) -> np.ndarray:
        """:meth:`_raw_grid_totals_ms` made non-increasing in SM (``max`` over larger SMs)."""
        key = (model, batch)
        hit = self._totals.get(key)
        if hit is None:
            raw = self._raw_grid_totals_ms(model, batch)
            hit = np.maximum.accumulate(raw[::-1])[::-1]
            self._totals[key] = hit
        return hit

    def _total_ms(self, model: str, batch: int, s: float) -> float:
        """The latency (ms) a known model's kernels sum to without ``total_s``: the grid
        totals interpolated linearly in 1/SM (below the grid: extrapolated with their
        elasticity, clipped to [0, 1]), so less SM is never faster."""
        g, tot = self.sm_grid, self._grid_totals_ms(model, batch)
        if len(g) == 1 or s >= g[-1]:
            return float(tot[-1]) if s >= g[-1] else float(tot[0])
        if s < g[0]:
            out = float(_elastic(tot[0], tot[1], g[0], g[1], s))
            smaller = [b for b in self.batch_grid if b < batch]
            if smaller:  # keep a larger batch from extrapolating below a smaller one
                out = max(out, self._total_ms(model, smaller[-1], s))
            return out
        return float(np.interp(1 / s, [1 / v for v in g[::-1]], tot[::-1]))

    def _anchor_factor(self, model: str, batch: int, s: float, pred_ms: float) -> float:
        """measured / predicted latency at ``batch``, or at the largest measured batch below
        it (so an unmeasured batch keeps the correction of its nearest measured one)."""
        measured = sorted(b for b in self._latency.get(model, {}) if b <= batch)
        for b in reversed(measured):
            lat = self._measured_ms(model, b, s)
            if lat is None:
                continue
            if b == batch:
                return lat / pred_ms
            ref = float(np.add.reduce(self._op_times_ms(model, b, s)))
            return lat / ref if ref > 0 else 1.0
        return 1.0

    def _measured_ms(self, model: str, batch: int, s: float) -> float | None:
        pts = self._latency.get(model, {}).get(batch)
        if not pts or len(pts) < 2:
            return None
        sms = np.array(sorted(pts))
        lat = _isotonic_decreasing(np.array([pts[v] for v in sms]))
        if s < sms[0]:
            return float(_elastic(lat[0], lat[1], sms[0], sms[1], s))
        return float(np.interp(1 / s, 1 / sms[::-1], lat[::-1]))


# --------------------------------------------------------------------------- loading


def _read_artifact(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingDataError(path, "hasim perf train-operators")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"unreadable operator model: {e}", path=path) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError("not an operator model", path=path, expected=f"format {FORMAT!r}")
    if int(doc.get("version", 0)) > VERSION:
        raise InputError(f"version {doc.get('version')}", path=path, expected=f"<= {VERSION}")
    return doc


def load_operator_model(path: str | Path | None = None, **kw: Any) -> KernelModel:
    """The :class:`KernelModel` of an artifact (default: the committed :data:`ARTIFACT`)."""
    p = Path(path).expanduser() if path is not None else ARTIFACT
    doc = _read_artifact(p)
    return KernelModel(doc, name=f"{p.name.split('.')[0]}", **kw)


_DEFAULT: KernelModel | None = None


def default_kernel_model() -> KernelModel:
    """The committed artifact's model; if it cannot be loaded, a fallback-only model
    (every model unknown; equal-duration kernels, ``total_s`` required)."""
    global _DEFAULT
    if _DEFAULT is None:
        try:
            _DEFAULT = load_operator_model()
        except (MissingDataError, InputError):
            _DEFAULT = KernelModel(None, name="fallback-only", fallback_kernels=100)
    return _DEFAULT
