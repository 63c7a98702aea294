"""``predictor``: mean latency of (model, batch, SM %, quota, GPU) from a small prior profile.

The RaPP protocol gives every model, seen or not, a *prior profile* of 11 measurements:

* ``L(b=1, s, q=100 %)`` for ``s`` in 5, 10, 30, 60, 80, 100 % (the SM curve), and
* ``L(b=4, s=100 %, q)`` for ``q`` in 20, 40, 60, 80, 100 % (the quota curve).

A physically motivated estimate is built from those 11 numbers alone and LightGBM learns a
multiplicative correction (the log-ratio ``log L - log base``) from features of the profile,
of the configuration and, when available, of the architecture (MACs, parameters, kernel
counts: a pluggable *static feature* table). All times are in ms inside this module.

The estimate (``base``), following the measured behaviour on the V100 (see
:mod:`hasim.perf.compact`, whose form ``L = smax(G_b(s), Q(q))`` it mirrors):

* GPU phase at full quota, batch 1: ``G_1(s)``, piecewise linear in ``1/s`` through the six
  SM points (exact there); below 5 % it continues as ``A + K/s`` with a non-negative slope.
* Batch ``b``: "work per SM" -- ``b`` inputs on ``s`` % of the SMs take about as long as one
  input on ``s/b`` %: ``G_b(s) = max(G_1(s), G_1(s / b), KAPPA * GMACs * b / s)``; the last
  term (only with static features) is a lower bound on the compute time that the batch-1
  curve hides when it is launch-bound (e.g. resnet50: 22 ms at every SM for batch 1,
  116 ms at SM 5 % for batch 8).
* Quota phase: the token scheduler gives a pod ``q W`` of every window ``W`` (40 ms) minus a
  per-token loss, so a host phase of ``X`` ms stretches to about ``X / (q - c)``,
  ``c = GUARD_MS / W``. Where the measured quota curve is throttled (above 1.1x its
  full-quota value) ``Q(q)`` is that curve, linear in ``1/q`` between its points; below
  20 % it continues as ``Q(20 %) (0.2 - c) / (q - c)`` (``c`` = 1.9 / 40 matches the
  median step from 20 % to 10 % over the 69 models, x2.9). Elsewhere ``Q = 0`` (the GPU
  phase decides); ``X`` enters the features.
* ``base = max(G_b(s), Q(q))``.

The learned correction then covers what the 11 points cannot pin down: the batch scaling
of each architecture, the token-boundary stairs of the quota curve, the dependence of the
quota phase on the batch (grouped convolutions change kernels above batch 2), ...

Anchors (``PredictorParams.anchors``, see :data:`ANCHORS`): one booster per anchor learns
the log-ratio of the latency to a different estimate -- the full ``base``, the GPU phase
``G_b(s)`` alone, the batch-1 SM curve ``G_1(s)`` alone, the batch-4 quota curve alone --
from the same features, and the prediction is the mean of ``anchor + correction`` in log
space. What was tried, with figures: ``hasim/perf/README.md`` (experiment log).

Determinism: LightGBM runs with ``deterministic=True``, a fixed ``num_threads`` and fixed
seeds, so the same table, parameters and seed give the same model (bit for bit on the same
machine and LightGBM version).

Artifact (see :meth:`LatencyPredictor.save`): ``<name>.json`` (metadata: format version,
training sources + licenses, hyperparameters, feature list, per-model prior profiles and
static features needed at prediction time, training date, metrics) and
``<name>.lgbm.json.gz`` (the LightGBM model text, gzip-compressed JSON with its sha256).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hasim.errors import InputError, MissingDataError
from hasim.perf.common import LgbmParams, import_lightgbm

FORMAT = "hasim-perf-predictor/1"
MODEL_FORMAT = "hasim-perf-predictor-lgbm/2"
"""Model file: ``{"format", "lightgbm_models": [LightGBM model text, ...]}`` (their mean):
``n_boosters`` texts per anchor, in the order of ``hyperparameters.anchors``."""
MODEL_FORMAT_V1 = "hasim-perf-predictor-lgbm/1"
"""Older model file with one ``lightgbm_model`` text (still read)."""
DEFAULT_GPU = "V100-16GB"

PROFILE_SM = (5.0, 10.0, 30.0, 60.0, 80.0, 100.0)
"""SM points (%) of the SM curve: batch 1, quota 100 %."""
PROFILE_SM_BATCH = 1
PROFILE_QUOTA = (20.0, 40.0, 60.0, 80.0, 100.0)
"""Quota points (%) of the quota curve: batch 4, SM 100 %."""
PROFILE_QUOTA_BATCH = 4
PROFILE_QUOTA_SM = 100.0

WINDOW_MS = 40.0
"""Token window of the HAS-GPU scheduler (SYSTEMS.md section 1)."""
GUARD_MS = 1.9
"""Per-token loss (ms): kernels launch only while elapsed + 1 ms <= token, plus overheads."""
THROTTLED = 1.1
"""A quota point counts as throttled when its latency exceeds the full-quota one by 10 %."""
Q_LAW_MIN = 0.1
"""Lowest quota of the token law ``X / (q - c)``; below it the quota phase grows as 1/q."""
KAPPA_MS = 10.0
"""Lower bound of the compute time of one input: ``KAPPA_MS * GMACs / s`` ms at ``s`` % of
a V100's SMs (FP32 eager PyTorch; VGG, the most efficient family in the RaPP data, runs at
about this rate, depthwise-heavy networks up to 8x slower)."""

EXTRA_OPS = (
    "n_relu",
    "n_gelu",
    "n_silu",
    "n_hardswish",
    "n_sigmoid",
    "n_pool",
    "n_bmm",
    "n_softmax",
)
"""Operator counts used only with ``PredictorParams.static_ops``."""

STATIC_COLUMNS = (
    "params",
    "macs",
    "activation_bytes",
    "activation_max_bytes",
    "depth",
    "kernel_ops",
    "n_conv",
    "n_conv_grouped",
    "n_conv_depthwise",
    "n_linear",
    "n_bn",
    "n_norm",
    "n_add",
    "n_mul",
    "n_cat",
    "n_attention",
    "family_code",
    *EXTRA_OPS,
)
"""Architecture columns used when a static feature table provides them (any subset).
``family_code`` is derived from a ``family`` column (see :func:`family_code`)."""

CATEGORICAL = ("st_family",)
"""Features LightGBM treats as categories."""

ANCHORS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "full": lambda X: X["log_base"].to_numpy(),
    "gpu": lambda X: X["log_gb"].to_numpy(),
    "sm1": lambda X: X["log_g1"].to_numpy(),
    "quota": lambda X: np.maximum((X["log_qint_gb"] + X["log_gb"]).to_numpy(), X["log_h4"]),
}
"""Anchors a booster can correct (``PredictorParams.anchors``): the log of the estimate it
learns the log-ratio to, from the feature frame. ``full`` = ``max(G_b(s), Q(q))``, ``gpu``
= ``G_b(s)`` (no quota phase), ``sm1`` = ``G_1(s)`` (the batch-1 SM curve alone),
``quota`` = the measured batch-4 quota curve at every batch and SM (at least its
full-quota point)."""


FAMILIES = (
    "alexnet",
    "bert",
    "convnext",
    "densenet",
    "efficientnet",
    "efficientnet_v2",
    "googlenet",
    "inception",
    "maxvit",
    "mnasnet",
    "mobilenet_v2",
    "mobilenet_v3",
    "regnet_x",
    "regnet_y",
    "resnet",
    "resnext",
    "shufflenet",
    "squeezenet",
    "vgg",
    "wide_resnet",
    "swin",
    "vit",
)
"""Architecture families with a code (the position here; append only, codes are stored in
trained artifacts). The first 20 are those of ``hasim/perf/data/model_features.csv``."""


def family_code(family: Any) -> float:
    """The code of an architecture family name (``resnet``, ``regnet_y``, ...; see
    :data:`FAMILIES`), NaN when missing or not listed (LightGBM treats it as missing)."""
    if not isinstance(family, str):
        return float("nan")
    name = family.strip().lower()
    return float(FAMILIES.index(name)) if name in FAMILIES else float("nan")


# --------------------------------------------------------------------------- prior profiles


@dataclass(frozen=True)
class PriorProfile:
    """One model's 11 measured latencies (ms) on one GPU (see the module docstring)."""

    model: str
    gpu: str
    sm_curve: tuple[float, ...]  # L(b=1, s, q=100 %) at PROFILE_SM
    quota_curve: tuple[float, ...]  # L(b=4, s=100 %, q) at PROFILE_QUOTA
    note: str = ""  # how it was obtained when not measured directly

    def __post_init__(self) -> None:
        ok = len(self.sm_curve) == len(PROFILE_SM) and len(self.quota_curve) == len(PROFILE_QUOTA)
        vals = (*self.sm_curve, *self.quota_curve)
        if not ok or not all(math.isfinite(v) and v > 0 for v in vals):
            raise InputError(
                f"prior profile of {self.model!r} = {self.sm_curve!r}, {self.quota_curve!r}",
                expected=f"{len(PROFILE_SM)} + {len(PROFILE_QUOTA)} latencies > 0 ms",
            )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "sm_curve": [float(v) for v in self.sm_curve],
            "quota_curve": [float(v) for v in self.quota_curve],
        }
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_json(cls, model: str, gpu: str, d: Mapping[str, Any]) -> PriorProfile:
        return cls(
            model,
            gpu,
            tuple(float(v) for v in d["sm_curve"]),
            tuple(float(v) for v in d["quota_curve"]),
            str(d.get("note", "")),
        )


def clean_static(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Index by model, keep the numeric :data:`STATIC_COLUMNS` present (None if none)."""
    if "model" in frame.columns:
        frame = frame.set_index("model")
    if "family" in frame.columns:
        frame = frame.assign(family_code=[family_code(f) for f in frame["family"]])
    cols = [c for c in STATIC_COLUMNS if c in frame.columns]
    if not cols:
        return None
    out = frame[cols].apply(pd.to_numeric, errors="coerce").astype(float)
    out.index = out.index.astype(str)
    return out[~out.index.duplicated()]


# --------------------------------------------------------------------------- features


def _interp_rows(x_grid: np.ndarray, vals: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of ``vals[r, :]`` (on ascending ``x_grid``) at ``x[r]``;
    flat outside the grid."""
    n = len(x_grid)
    xc = np.clip(x, x_grid[0], x_grid[-1])
    j = np.clip(np.searchsorted(x_grid, xc), 1, n - 1)
    r = np.arange(len(x))
    x0, x1 = x_grid[j - 1], x_grid[j]
    v0, v1 = vals[r, j - 1], vals[r, j]
    w = (xc - x0) / (x1 - x0)
    return v0 + w * (v1 - v0)


_INV_SM = 1.0 / np.asarray(PROFILE_SM)[::-1]  # ascending 1/s
_Q_FRAC = np.asarray(PROFILE_QUOTA) / 100.0
_C = GUARD_MS / WINDOW_MS


def sm_curve_at(sm_curve: np.ndarray, sm_pct: np.ndarray) -> np.ndarray:
    """``G_1(s)`` per row: linear in 1/s through the SM points; ``A + K/s`` below 5 %."""
    v = sm_curve[:, ::-1]  # ascending 1/s
    x = 1.0 / sm_pct
    out = _interp_rows(_INV_SM, v, x)
    slope = np.maximum(0.0, (v[:, -1] - v[:, -2]) / (_INV_SM[-1] - _INV_SM[-2]))
    below = x > _INV_SM[-1]
    return np.where(below, v[:, -1] + slope * (x - _INV_SM[-1]), out)


@dataclass
class ModelPrior:
    """Per-model quantities derived from the profile (arrays over models)."""

    sm_curve: np.ndarray  # (n, 6)
    quota_curve: np.ndarray  # (n, 5)
    host_ms: np.ndarray  # X: throttled host phase (ms), Q(q) = X / (q - c)
    throttled: np.ndarray  # number of throttled quota points
    h1: np.ndarray  # batch-1 full-quota floor (median of SM 60, 80, 100 %)
    h4: np.ndarray  # batch-4, SM 100 %, full-quota latency
    static: np.ndarray  # (n, k) log-scaled static features (NaN when absent)
    static_names: list[str]
    gmacs: np.ndarray  # multiply-accumulates per input in 1e9 (NaN when unknown)

    @classmethod
    def build(cls, profiles: Sequence[PriorProfile], static: pd.DataFrame | None) -> ModelPrior:
        p1 = np.array([p.sm_curve for p in profiles], dtype=float).reshape(-1, len(PROFILE_SM))
        p2 = np.array([p.quota_curve for p in profiles], dtype=float).reshape(
            -1, len(PROFILE_QUOTA)
        )
        h4 = p2[:, -1]
        thr = p2[:, :-1] > THROTTLED * h4[:, None]
        xk = p2[:, :-1] * (_Q_FRAC[:-1] - _C)
        # largest X consistent with the 20 % point when nothing is throttled
        x_none = h4 * (_Q_FRAC[0] - _C)
        host = np.where(thr.any(axis=1), np.where(thr, xk, 0.0).max(axis=1), x_none)
        h1 = np.median(p1[:, 3:], axis=1)
        models = [p.model for p in profiles]
        names, cols = _static_matrix(models, static)
        gmacs = np.full(len(models), np.nan)
        if static is not None and "macs" in static.columns:
            gmacs = static["macs"].reindex(models).to_numpy(dtype=float) / 1e9
        return cls(p1, p2, host, thr.sum(axis=1), h1, h4, cols, names, gmacs)


def _static_matrix(models: list[str], static: pd.DataFrame | None) -> tuple[list[str], np.ndarray]:
    """Derived static features per model (NaN where a model has none)."""
    if static is None or static.empty:
        return [], np.zeros((len(models), 0))
    st = static.reindex(models)
    feats: dict[str, np.ndarray] = {}

    def col(c: str) -> np.ndarray | None:
        return st[c].to_numpy(dtype=float) if c in st.columns else None

    for c in ("params", "macs", "activation_bytes", "activation_max_bytes", "depth", "kernel_ops"):
        v = col(c)
        if v is not None:
            feats[f"st_log_{c}"] = np.log1p(np.maximum(v, 0.0))
    n_conv = col("n_conv")
    for c in ("n_conv_grouped", "n_conv_depthwise", "n_linear"):
        v = col(c)
        if v is not None and n_conv is not None:
            feats[f"st_frac_{c[2:]}"] = v / np.maximum(n_conv, 1.0)
    ops = col("kernel_ops")
    for c in ("n_bn", "n_norm", "n_add", "n_mul", "n_cat", "n_attention", *EXTRA_OPS):
        v = col(c)
        if v is not None and ops is not None:
            feats[f"st_frac_{c[2:]}"] = v / np.maximum(ops, 1.0)
    macs = col("macs")
    if macs is not None and ops is not None:
        feats["st_log_macs_per_op"] = np.log1p(macs) - np.log1p(ops)
    act = col("activation_bytes")
    if macs is not None and act is not None:
        feats["st_log_macs_per_act"] = np.log1p(macs) - np.log1p(act)
    fam = col("family_code")
    if fam is not None:
        feats["st_family"] = fam  # categorical (see LatencyPredictor.fit)
    names = list(feats)
    return names, np.column_stack([feats[n] for n in names]) if names else np.zeros(
        (len(models), 0)
    )


def physics(
    prior: ModelPrior, idx: np.ndarray, batch: np.ndarray, sm_pct: np.ndarray, quota: np.ndarray
) -> dict[str, np.ndarray]:
    """The physics estimate and its parts (ms) per row; ``quota`` is a fraction."""
    p1 = prior.sm_curve[idx]
    g1 = sm_curve_at(p1, sm_pct)
    ge = sm_curve_at(p1, sm_pct / batch)
    gc = KAPPA_MS * np.nan_to_num(prior.gmacs[idx]) * batch / sm_pct
    gb = np.maximum(np.maximum(g1, ge), gc)
    host = prior.host_ms[idx]
    q_lo = np.maximum(quota, Q_LAW_MIN)
    qlaw = host / (q_lo - _C) * (q_lo / quota)
    # measured quota curve, linear in 1/q (flat outside 20..100 %)
    p2 = prior.quota_curve[idx]
    inv_q = 1.0 / _Q_FRAC[::-1]
    qint = _interp_rows(inv_q, p2[:, ::-1], 1.0 / quota)
    h4 = prior.h4[idx]
    q20 = p2[:, 0]
    # below 20 %: the token law down to 10 %, then 1/q (waiting grows as 1/q)
    q_lo = np.maximum(quota, Q_LAW_MIN)
    below = q20 * (_Q_FRAC[0] - _C) / (q_lo - _C) * (q_lo / quota)
    measured = np.where(quota < _Q_FRAC[0], below, qint)
    thr = measured > THROTTLED * h4
    qhat = np.where(thr, measured, 0.0)
    base = np.maximum(gb, qhat)
    return {
        "g1": g1,
        "ge": ge,
        "gc": gc,
        "gb": gb,
        "qlaw": qlaw,
        "qint": qint,
        "qhat": qhat,
        "base": base,
    }


def feature_frame(
    prior: ModelPrior, idx: np.ndarray, batch: Any, sm_pct: Any, quota_pct: Any
) -> tuple[pd.DataFrame, np.ndarray]:
    """(features, log base) for rows of (model index, batch, SM %, quota %)."""
    b = np.asarray(batch, dtype=float)
    s = np.asarray(sm_pct, dtype=float)
    q = np.asarray(quota_pct, dtype=float) / 100.0
    idx = np.asarray(idx, dtype=int)
    ph = physics(prior, idx, b, s, q)
    p1 = prior.sm_curve[idx]
    p2 = prior.quota_curve[idx]
    h1, h4, host = prior.h1[idx], prior.h4[idx], prior.host_ms[idx]
    lg = np.log
    f: dict[str, np.ndarray] = {
        "batch": b,
        "log_batch": lg(b),
        "sm": s,
        "log_sm": lg(s),
        "log_sm_per_batch": lg(s / b),
        "quota": q,
        "log_quota": lg(q),
        "log_base": lg(ph["base"]),
        "log_g1": lg(ph["g1"]),
        "log_gb": lg(ph["gb"]),
        "log_ge_g1": lg(ph["ge"] / ph["g1"]),
        "log_qlaw_gb": lg(ph["qlaw"] / ph["gb"]),
        "log_qint_gb": lg(ph["qint"] / ph["gb"]),
        "log_qint_qlaw": lg(ph["qint"] / ph["qlaw"]),
        "log_qhat_gb": lg(np.maximum(ph["qhat"], 1e-3) / ph["gb"]),
        "log_host": lg(host),
        "host_over_token": host / (q * WINDOW_MS),
        "gb_over_token": ph["gb"] / (q * WINDOW_MS),
        "throttled_points": prior.throttled[idx].astype(float),
        "log_h1": lg(h1),
        "log_h4": lg(h4),
        "log_h4_h1": lg(h4 / h1),
        "log_gb_h1": lg(ph["gb"] / h1),
        "log_gb_h4": lg(ph["gb"] / h4),
        "log_g25_h4": lg(sm_curve_at(p1, np.full(len(s), 25.0)) / h4),
    }
    for k, sp in enumerate(PROFILE_SM[:-1]):
        f[f"sm_curve_{int(sp)}"] = lg(p1[:, k] / p1[:, -1])
    qlaw_pts = np.maximum(host[:, None] / (_Q_FRAC[None, :-1] - _C), h4[:, None])
    for k, qp in enumerate(PROFILE_QUOTA[:-1]):
        f[f"quota_curve_{int(qp)}"] = lg(p2[:, k] / h4)
        f[f"quota_resid_{int(qp)}"] = lg(p2[:, k] / qlaw_pts[:, k])
    if prior.static_names:
        st = prior.static[idx]
        for k, name in enumerate(prior.static_names):
            f[name] = st[:, k]
        if "st_log_macs" in prior.static_names:
            macs = st[:, prior.static_names.index("st_log_macs")]
            f["st_work_per_sm"] = macs + lg(b) - lg(s)
            f["st_work_vs_gb"] = f["st_work_per_sm"] - lg(ph["gb"])
            f["st_work_vs_g1"] = macs - lg(s) - lg(ph["g1"])
        if "st_log_kernel_ops" in prior.static_names:
            ops = st[:, prior.static_names.index("st_log_kernel_ops")]
            f["st_host_per_op"] = lg(host) - ops
            f["st_h1_per_op"] = lg(h1) - ops
        if "st_log_activation_bytes" in prior.static_names:
            f["st_act_batch"] = st[:, prior.static_names.index("st_log_activation_bytes")] + lg(b)
    return pd.DataFrame(f), lg(ph["base"])


# --------------------------------------------------------------------------- the predictor


@dataclass
class PredictorParams(LgbmParams):
    """Hyperparameters of the correction model (LightGBM, the shared settings of
    :class:`hasim.perf.common.LgbmParams`) and of the features."""

    lambda_l2: float = 1.0
    objective: str = "l1"
    use_static: bool = True
    exclude_features: tuple[str, ...] = ()
    use_family: bool = True  # the static table's architecture family, categorical
    extra_trees: bool = False
    static_ops: bool = True  # activation, pooling, softmax, bmm shares of the aten ops
    n_boosters: int = 1  # boosters with seeds seed, seed+1, ... averaged (bagging)
    anchors: tuple[str, ...] = ("full", "gpu", "sm1", "quota")  # n_boosters each (ANCHORS)

    def __post_init__(self) -> None:
        self.anchors = tuple(self.anchors)
        bad = sorted(set(self.anchors) - set(ANCHORS))
        if bad or not self.anchors:
            raise InputError(f"anchors {bad or '()'}", expected="names of " + ", ".join(ANCHORS))

    def lgb_params(self, seed: int | None = None) -> dict[str, Any]:
        """LightGBM parameters; ``seed`` (default ``self.seed``) seeds the row and feature
        sampling (the data binning always uses ``self.seed``, shared by bagged boosters)."""
        seed = self.seed if seed is None else seed
        return {
            "objective": self.objective,
            **self.base_lgb_params(seed),
            "lambda_l2": self.lambda_l2,
            "extra_trees": self.extra_trees,
            "extra_seed": seed,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PredictorParams:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("exclude_features", "anchors"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


LEGACY_PARAMS = {
    "use_family": False,
    "static_ops": False,
    "extra_trees": False,
    "n_boosters": 1,
    "anchors": ("full",),
}
"""Values of parameters that artifacts written before they existed were trained with."""


class BoosterSet:
    """LightGBM boosters trained with different seeds; predicts their mean (a bagged
    ensemble: the seeds' bagging and feature sampling differ, averaging lowers the
    variance of the correction for models it has not seen)."""

    def __init__(self, boosters: Sequence[Any], anchor_of: Sequence[int] | None = None) -> None:
        if not boosters:
            raise InputError("no boosters", expected="at least one LightGBM booster")
        self.boosters = list(boosters)
        self.anchor_of = list(anchor_of) if anchor_of is not None else [0] * len(self.boosters)
        if len(self.anchor_of) != len(self.boosters):
            raise InputError("one anchor per booster", expected=f"{len(self.boosters)} anchors")

    def predict(
        self, X: pd.DataFrame, num_threads: int = 1, offsets: np.ndarray | None = None
    ) -> np.ndarray:
        """Mean of the boosters' outputs; with ``offsets`` (one row per anchor, see
        :data:`ANCHORS`), booster ``k`` adds ``offsets[anchor_of[k]]`` first."""
        out = [b.predict(X, num_threads=num_threads) for b in self.boosters]
        if offsets is not None:
            out = [o + offsets[a] for o, a in zip(out, self.anchor_of, strict=True)]
        return np.mean(out, axis=0)

    def model_texts(self) -> list[str]:
        return [b.model_to_string(num_iteration=-1) for b in self.boosters]

    def model_to_string(self, num_iteration: int = -1) -> str:
        """The boosters' model texts, joined (for comparisons and hashing)."""
        return "\n".join(b.model_to_string(num_iteration=num_iteration) for b in self.boosters)

    def feature_name(self) -> list[str]:
        return list(self.boosters[0].feature_name())


@dataclass
class LatencyPredictor:
    """Mean latency (ms) from a prior profile plus a learned correction."""

    params: PredictorParams = field(default_factory=PredictorParams)
    profiles: dict[tuple[str, str], PriorProfile] = field(default_factory=dict)
    static: pd.DataFrame | None = None
    booster: Any = None
    feature_names: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    _prior: ModelPrior | None = field(default=None, repr=False)
    _keys: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------- helpers

    def _index(self) -> None:
        keys = sorted(self.profiles)
        self._keys = {k: i for i, k in enumerate(keys)}
        static = self.static if self.params.use_static else None
        if static is not None and not self.params.use_family:
            static = static.drop(columns=["family_code"], errors="ignore")
        if static is not None and not self.params.static_ops:
            static = static.drop(columns=list(EXTRA_OPS), errors="ignore")
        self._prior = ModelPrior.build([self.profiles[k] for k in keys], static)

    def add_profile(self, profile: PriorProfile, static: Mapping[str, Any] | None = None) -> None:
        """Make a new model predictable from its 11-point profile (and, optionally, its
        architecture features, the columns of :data:`STATIC_COLUMNS` or ``family``, a
        name such as ``"resnet"``)."""
        self.profiles[(profile.gpu, profile.model)] = profile
        if static:
            vals = dict(static)
            if "family" in vals:
                vals["family_code"] = family_code(vals.pop("family"))
            row = pd.DataFrame([vals], index=[profile.model], dtype=float)
            base = self.static if self.static is not None else pd.DataFrame(dtype=float)
            merged = pd.concat([base.drop(index=profile.model, errors="ignore"), row])
            self.static = clean_static(merged.reset_index(names="model"))
        self._prior = None
        self._index()

    def knows(self, model: str, gpu: str = DEFAULT_GPU) -> bool:
        """True when a prior profile of ``model`` on ``gpu`` is stored."""
        return (gpu, model) in self.profiles

    @property
    def models(self) -> list[str]:
        """Model names with a prior profile (any GPU), sorted."""
        return sorted({m for _, m in self.profiles})

    def _rows_index(self, models: np.ndarray, gpus: np.ndarray) -> np.ndarray:
        if self._prior is None:
            self._index()
        out = np.empty(len(models), dtype=int)
        cache: dict[tuple[str, str], int] = {}
        for k, (g, m) in enumerate(zip(gpus, models, strict=True)):
            key = (str(g), str(m))
            i = cache.get(key)
            if i is None:
                i = self._keys.get(key)
                if i is None:
                    known = sorted({mm for gg, mm in self.profiles if gg == key[0]})
                    shown = ", ".join(known[:6]) + (", ..." if len(known) > 6 else "")
                    raise InputError(
                        f"no prior profile for model {key[1]!r} on GPU {key[0]!r}",
                        expected=f"one of {len(known)} models, e.g. {shown}"
                        if known
                        else "a GPU with profiled models",
                    )
                cache[key] = i
            out[k] = i
        return out

    def features(
        self, model: Any, batch: Any, sm_pct: Any, quota_pct: Any, gpu: Any = DEFAULT_GPU
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """(feature frame, log base) for rows; ``quota_pct`` in percent."""
        X, _, lbase = self._features(model, batch, sm_pct, quota_pct, gpu)
        return X, lbase

    def _features(
        self, model: Any, batch: Any, sm_pct: Any, quota_pct: Any, gpu: Any = DEFAULT_GPU
    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """(feature frame, log anchors: one row per ``params.anchors``, log base)."""
        b = np.atleast_1d(np.asarray(batch, dtype=float))
        n = len(b)
        models = np.broadcast_to(np.asarray(model, dtype=object), (n,))
        gpus = np.broadcast_to(np.asarray(gpu, dtype=object), (n,))
        s = np.broadcast_to(np.asarray(sm_pct, dtype=float), (n,))
        q = np.broadcast_to(np.asarray(quota_pct, dtype=float), (n,))
        idx = self._rows_index(models, gpus)
        assert self._prior is not None
        X, lbase = feature_frame(self._prior, idx, b, s, q)
        anchors = np.stack([np.asarray(ANCHORS[a](X), dtype=float) for a in self.params.anchors])
        if self.params.exclude_features:
            X = X.drop(columns=[c for c in self.params.exclude_features if c in X.columns])
        return X, anchors, lbase

    # ----------------------------------------------------------------- fit / predict

    def fit(
        self,
        table: pd.DataFrame,
        *,
        profiles: Mapping[tuple[str, str], PriorProfile] | None = None,
        static: pd.DataFrame | None | str = "default",
        sources: Sequence[Mapping[str, Any]] | None = None,
        model_weight: Mapping[str, float] | None = None,
    ) -> LatencyPredictor:
        """Train on a measurement table: see :func:`hasim.perf.offline.train.fit_predictor`."""
        from hasim.perf.offline.train import fit_predictor

        return fit_predictor(
            self,
            table,
            profiles=profiles,
            static=static,
            sources=sources,
            model_weight=model_weight,
        )

    def predict(
        self,
        model: Any,
        batch: Any,
        sm_pct: Any,
        quota: Any,
        gpu: Any = DEFAULT_GPU,
        *,
        quota_in_percent: bool = False,
    ) -> np.ndarray:
        """Mean latency (ms) for rows of (model, batch, SM %, quota); vectorised.

        ``quota`` is a fraction in (0, 1] (or percent with ``quota_in_percent``); scalars
        broadcast against arrays. Raises InputError for a model without a profile.
        """
        if self.booster is None:
            raise InputError("the predictor is not trained", expected="fit() or load() first")
        q = np.asarray(quota, dtype=float) * (1.0 if quota_in_percent else 100.0)
        b = np.asarray(batch, dtype=float)
        s = np.asarray(sm_pct, dtype=float)
        shape = np.broadcast_shapes(
            np.shape(b), np.shape(s), np.shape(q), np.shape(model), np.shape(gpu)
        )
        n = int(np.prod(shape)) if shape else 1
        bb, ss, qq = (np.broadcast_to(a, shape).reshape(n) for a in (b, s, q))
        mm = np.broadcast_to(np.asarray(model, dtype=object), shape).reshape(n)
        gg = np.broadcast_to(np.asarray(gpu, dtype=object), shape).reshape(n)
        X, anchors, _ = self._features(mm, bb, ss, qq, gg)
        out = np.exp(self.booster.predict(X, num_threads=self.params.num_threads, offsets=anchors))
        return out.reshape(shape)

    def base(self, model: Any, batch: Any, sm_pct: Any, quota: Any, gpu: Any = DEFAULT_GPU):
        """The physics estimate alone (ms), ``quota`` a fraction (for diagnostics)."""
        _, lbase = self.features(model, batch, sm_pct, np.asarray(quota, dtype=float) * 100, gpu)
        return np.exp(lbase)

    # ----------------------------------------------------------------- artifact

    def to_json(self, metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The metadata document (everything but the LightGBM model text)."""
        by_gpu: dict[str, dict[str, Any]] = {}
        for (g, m), p in sorted(self.profiles.items()):
            by_gpu.setdefault(g, {})[m] = p.to_json()
        static = None
        if self.static is not None and self.params.use_static:
            used = sorted({m for _, m in self.profiles} & set(self.static.index))
            static = {
                "columns": list(self.static.columns),
                "models": {
                    m: [None if not math.isfinite(v) else float(v) for v in self.static.loc[m]]
                    for m in used
                },
            }
        return {
            "format": FORMAT,
            "description": "mean-latency predictor: physics estimate from an 11-point prior "
            "profile times a LightGBM correction; see hasim/perf/predictor.py",
            "units": {"latency": "ms", "sm": "percent", "quota": "percent", "batch": "requests"},
            "profile_points": {
                "sm_curve": {"batch": PROFILE_SM_BATCH, "quota_pct": 100, "sm_pct": PROFILE_SM},
                "quota_curve": {
                    "batch": PROFILE_QUOTA_BATCH,
                    "sm_pct": PROFILE_QUOTA_SM,
                    "quota_pct": PROFILE_QUOTA,
                },
            },
            "physics": {"window_ms": WINDOW_MS, "guard_ms": GUARD_MS, "throttled": THROTTLED},
            "hyperparameters": asdict(self.params)
            | {
                "exclude_features": list(self.params.exclude_features),
                "anchors": list(self.params.anchors),
            },
            "features": self.feature_names,
            "training": self.meta,
            "metrics": dict(metrics or self.meta.get("metrics", {})),
            "profiles": by_gpu,
            "static_features": static,
        }

    def save(self, path: str | Path, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write ``path`` (``.json`` metadata) and ``<stem>.lgbm.json.gz`` beside it."""
        if self.booster is None:
            raise InputError("the predictor is not trained", expected="fit() first")
        p = Path(path)
        if p.suffix != ".json":
            p = p.with_suffix(".json")
        p.parent.mkdir(parents=True, exist_ok=True)
        texts = self.booster.model_texts()
        mfile = model_file(p)
        doc = self.to_json(metrics)
        doc["model_file"] = mfile.name
        doc["model_sha256"] = _texts_sha256(texts)
        payload = json.dumps({"format": MODEL_FORMAT, "lightgbm_models": texts})
        with gzip.GzipFile(mfile, "wb", mtime=0) as f:
            f.write(payload.encode())
        p.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> LatencyPredictor:
        """Read an artifact written by :meth:`save` (InputError names what is wrong)."""
        lgb = import_lightgbm()
        p = Path(path)
        if not p.is_file():
            raise MissingDataError(p, "hasim perf train --out " + str(p))
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON: {e.msg}", path=p, line=e.lineno) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            got = doc.get("format") if isinstance(doc, dict) else None
            raise InputError(f"format {got!r}", path=p, expected=FORMAT)
        mfile = p.parent / str(doc.get("model_file", model_file(p).name))
        if not mfile.is_file():
            raise MissingDataError(mfile, "hasim perf train --out " + str(p))
        try:
            with gzip.open(mfile, "rt", encoding="utf-8") as f:
                mdoc = json.load(f)
        except (OSError, json.JSONDecodeError, EOFError) as e:
            raise InputError(f"unreadable model file: {e}", path=mfile) from None
        if mdoc.get("format") not in (MODEL_FORMAT, MODEL_FORMAT_V1):
            raise InputError(f"format {mdoc.get('format')!r}", path=mfile, expected=MODEL_FORMAT)
        texts = mdoc["lightgbm_models"] if "lightgbm_models" in mdoc else [mdoc["lightgbm_model"]]
        if doc.get("model_sha256") not in (None, _texts_sha256(texts)):
            raise InputError("model text does not match model_sha256", path=mfile)
        params = PredictorParams.from_dict(LEGACY_PARAMS | doc.get("hyperparameters", {}))
        profiles = {
            (g, m): PriorProfile.from_json(m, g, d)
            for g, ms in doc["profiles"].items()
            for m, d in ms.items()
        }
        static = None
        st = doc.get("static_features")
        if st:
            static = pd.DataFrame.from_dict(
                {m: [np.nan if v is None else v for v in vals] for m, vals in st["models"].items()},
                orient="index",
                columns=st["columns"],
            ).astype(float)
        per = len(texts) // max(1, len(params.anchors))
        if per * len(params.anchors) != len(texts):
            raise InputError(
                f"{len(texts)} boosters for anchors {list(params.anchors)}",
                path=mfile,
                expected="the same number of boosters per anchor",
            )
        booster = BoosterSet(
            [lgb.Booster(model_str=t) for t in texts], [k // per for k in range(len(texts))]
        )
        pred = cls(
            params=params,
            profiles=profiles,
            static=static,
            booster=booster,
            feature_names=list(doc.get("features", [])),
            meta=dict(doc.get("training", {})) | {"metrics": doc.get("metrics", {})},
        )
        pred._index()
        names = list(booster.feature_name())
        if pred.feature_names and names != pred.feature_names:
            raise InputError("the model's features differ from the metadata", path=p)
        pred.meta["artifact"] = str(p)
        pred.meta["artifact_sha256"] = artifact_hash(p)
        return pred


def _texts_sha256(texts: Sequence[str]) -> str:
    """sha256 of one model text, or of the texts joined by newlines (several boosters)."""
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def model_file(meta_path: Path) -> Path:
    """``<stem>.lgbm.json.gz`` beside the metadata file."""
    return meta_path.with_name(meta_path.stem + ".lgbm.json.gz")


def artifact_hash(meta_path: str | Path) -> str:
    """sha256 over the metadata file and its model file (keys caches on the artifact)."""
    p = Path(meta_path)
    h = hashlib.sha256()
    for f in (p, model_file(p)):
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()
