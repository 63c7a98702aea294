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

import gzip
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hasim.errors import InputError, MissingDataError
from hasim.perf.common import LgbmParams, import_lightgbm

ARTIFACT = Path(__file__).resolve().parent / "data" / "operators_v100.json.gz"
"""The committed artifact (see :func:`hasim.perf.offline.operators.train_operator_model`)."""
FORMAT = "hasim-operator-model"
VERSION = 1
GPU = "V100-16GB"
DEFAULT_MAX_KERNELS = 256
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


@dataclass
class OperatorParams(LgbmParams):
    """LightGBM settings of the per-operator predictor (the share model; the scale model
    uses 7 leaves, rate 0.05 and a tenth of ``min_data_in_leaf``)."""

    n_estimators: int = 100
    num_leaves: int = 15
    learning_rate: float = 0.08
    min_data_in_leaf: int = 100
    bagging_fraction: float = 0.7
    feature_fraction: float = 0.9
    scale_estimators: int = 200  # boosting rounds of the scale model
    max_rows: int = 60_000
    """Training rows are subsampled (by the seed) to at most this many."""

    def lgb_params(self) -> dict[str, Any]:
        """The LightGBM parameter dict (deterministic for a seed)."""
        return {"objective": "l2", **self.base_lgb_params()}


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


@dataclass
class Boosters:
    """The fitted per-inference scale and per-op share predictors."""

    scale: Any
    share: Any


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
