"""Prediction intervals of the learned latency predictor (conformal, grouped by model).

A cell's *residual* is ``r = log(measured / predicted)`` for a cell the predictor did not
train on. Its distribution differs between

* ``seen`` models (the predictor trained on other cells of the model: the run-time case of
  every model in the packaged artifact, whose dense grid is mostly configurations that
  were never measured): residuals of held-out *configurations* (SM %, quota, all batches)
  from a K-fold over each model's configurations, and
* ``unseen`` models (only the 11-point prior profile is known): residuals of held-out
  *models* from a grouped K-fold over models.

A two-sided interval at coverage ``c`` is ``[pred * exp(Q(a)), pred * exp(Q(1 - a))]``,
``a = (1 - c) / 2``, with ``Q`` the quantile function of the calibration residuals
(split conformal: the finite-sample ranks ``floor((n + 1) a)`` and ``ceil((n + 1)(1 - a))``,
see :func:`conformal_bounds`). Pooled quantiles were chosen over quantile boosting: they
need no further model and reached the asked coverage on held-out models (README, section
"Prediction intervals").

The run-time file (``hasim/perf/data/rapp_v100.intervals.json``, made by ``hasim perf
calibrate-intervals``) stores the residual quantiles at :data:`LEVELS` for ``seen`` and
``unseen``, the models the artifact trained on, and the artifact's hash. A simulation
replica (``sim.replicas``) draws one factor ``exp(Q(u))``, ``u ~ U(0, 1)``, per model: a
model's error is systematic, not per-request noise.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hasim.errors import InputError, MissingDataError

FORMAT = "hasim-perf-intervals/1"
KINDS = ("seen", "unseen")
LEVELS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
    0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 0.995,
)  # fmt: skip
"""Quantile levels stored per kind (a draw below 0.005 or above 0.995 takes the end)."""
PACKAGED_INTERVALS = Path(__file__).resolve().parent / "data" / "rapp_v100.intervals.json"


def log_residuals(measured: Any, predicted: Any) -> np.ndarray:
    """``log(measured / predicted)`` per cell (both in the same unit, > 0)."""
    m = np.asarray(measured, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if m.shape != p.shape:
        raise InputError(f"{m.shape} measured vs {p.shape} predicted values")
    if (m <= 0).any() or (p <= 0).any() or not (np.isfinite(m).all() and np.isfinite(p).all()):
        raise InputError("latencies must be finite and > 0")
    return np.log(m / p)


def conformal_bounds(residuals: Any, coverage: float = 0.9) -> tuple[float, float]:
    """(low, high) log-ratio bounds of a split-conformal interval at ``coverage``.

    The ``floor((n + 1) a)``-th and ``ceil((n + 1)(1 - a))``-th smallest of the ``n``
    calibration residuals, ``a = (1 - coverage) / 2``; ``-inf`` / ``+inf`` where the rank
    falls outside ``1..n`` (too few residuals for that coverage)."""
    if not 0 < coverage < 1:
        raise InputError(f"coverage {coverage!r}", expected="a fraction in (0, 1)")
    r = np.sort(np.asarray(residuals, dtype=float).ravel())
    r = r[np.isfinite(r)]
    n = r.size
    if n == 0:
        raise InputError("no calibration residuals", expected="at least one held-out cell")
    a = (1.0 - coverage) / 2.0
    k_lo = math.floor((n + 1) * a + 1e-9)
    k_hi = math.ceil((n + 1) * (1.0 - a) - 1e-9)
    lo = float(r[k_lo - 1]) if k_lo >= 1 else -math.inf
    hi = float(r[k_hi - 1]) if k_hi <= n else math.inf
    return lo, hi


def coverage_share(measured: Any, low: Any, high: Any) -> float:
    """Share (fraction) of ``measured`` values inside ``[low, high]`` (elementwise)."""
    m = np.asarray(measured, dtype=float)
    if m.size == 0:
        return float("nan")
    inside = (m >= np.asarray(low, dtype=float)) & (m <= np.asarray(high, dtype=float))
    return float(np.mean(inside))


def cross_conformal(
    residuals: Any, groups: Any, coverage: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-ratio bounds: each group's from the residuals of all *other* groups
    (grouped cross-conformal: a row never calibrates its own interval)."""
    r = np.asarray(residuals, dtype=float)
    g = np.asarray(groups)
    lo = np.empty_like(r)
    hi = np.empty_like(r)
    uniq = np.unique(g)
    if uniq.size < 2:
        raise InputError("cross-conformal calibration needs at least two groups")
    for k in uniq:
        mine = g == k
        lo[mine], hi[mine] = conformal_bounds(r[~mine], coverage)
    return lo, hi


def interval_report(
    measured: Any, predicted: Any, lo_log: Any, hi_log: Any, how: str
) -> dict[str, Any]:
    """Coverage and mean width of intervals ``pred * exp([lo_log, hi_log])`` (fractions;
    width relative to the prediction)."""
    p = np.asarray(predicted, dtype=float)
    lo = p * np.exp(np.asarray(lo_log, dtype=float))
    hi = p * np.exp(np.asarray(hi_log, dtype=float))
    width = np.exp(np.asarray(hi_log, dtype=float)) - np.exp(np.asarray(lo_log, dtype=float))
    return {
        "coverage": coverage_share(measured, lo, hi),
        "mean_width": float(np.mean(width)) if width.size else float("nan"),
        "mean_low": float(np.mean(np.exp(lo_log))) if width.size else float("nan"),
        "mean_high": float(np.mean(np.exp(hi_log))) if width.size else float("nan"),
        "n": int(p.size),
        "calibration": how,
    }


# --------------------------------------------------------------------------- run-time table


@dataclass
class Intervals:
    """Residual quantiles (log-ratio) at ``levels`` per kind (``seen``/``unseen``)."""

    levels: np.ndarray
    quantiles: dict[str, np.ndarray]
    seen_models: frozenset[str] = frozenset()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.levels = np.asarray(self.levels, dtype=float)
        if self.levels.ndim != 1 or self.levels.size < 2 or (np.diff(self.levels) <= 0).any():
            raise InputError("interval levels must increase", expected="e.g. 0.005 .. 0.995")
        for kind, q in list(self.quantiles.items()):
            if kind not in KINDS:
                raise InputError(f"interval kind {kind!r}", expected=" or ".join(KINDS))
            q = np.asarray(q, dtype=float)
            if q.shape != self.levels.shape or (np.diff(q) < 0).any():
                raise InputError(f"{kind} quantiles", expected="non-decreasing, one per level")
            self.quantiles[kind] = q

    def kind_of(self, model: str) -> str:
        """``seen`` when the predictor trained on ``model``, else ``unseen``."""
        return "seen" if model in self.seen_models else "unseen"

    def quantile(self, kind: str, u: Any) -> np.ndarray:
        """Log-ratio quantile(s) at level(s) ``u`` (linear between stored levels, clamped)."""
        if kind not in self.quantiles:
            raise InputError(f"no {kind!r} intervals", expected=", ".join(self.quantiles))
        return np.interp(np.asarray(u, dtype=float), self.levels, self.quantiles[kind])

    def bounds(self, kind: str, coverage: float = 0.9) -> tuple[float, float]:
        """(low, high) multiplicative factors of the interval at ``coverage``."""
        a = (1.0 - coverage) / 2.0
        if not self.levels[0] - 1e-12 <= a <= 0.5:
            raise InputError(f"coverage {coverage!r}", expected=f"<= {1 - 2 * self.levels[0]:g}")
        lo, hi = self.quantile(kind, [a, 1.0 - a])
        return float(math.exp(lo)), float(math.exp(hi))

    def factor(self, model: str, u: float) -> float:
        """The latency factor ``exp(Q(u))`` of ``model`` at level ``u`` in [0, 1]."""
        return float(math.exp(float(self.quantile(self.kind_of(model), u))))

    def to_json(self) -> dict[str, Any]:
        """The JSON document (see :func:`load_intervals`)."""
        return {
            "format": FORMAT,
            "what": "quantiles of log(measured / predicted mean latency) of cells the "
            "predictor did not train on; seen: held-out configurations of trained models, "
            "unseen: held-out models (grouped folds)",
            **self.meta,
            "levels": [float(x) for x in self.levels],
            "quantiles": {k: [round(float(x), 6) for x in v] for k, v in self.quantiles.items()},
            "seen_models": sorted(self.seen_models),
        }

    def save(self, path: str | Path) -> Path:
        """Write the JSON document; returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return p


def load_intervals(path: str | Path | None = None, artifact: str | Path | None = None) -> Intervals:
    """Read an intervals file (default: the packaged one). With ``artifact`` (predictor
    metadata JSON), warn when the file was calibrated for a different artifact."""
    p = Path(path) if path else PACKAGED_INTERVALS
    if not p.is_file():
        raise MissingDataError(p, "hasim perf calibrate-intervals")
    d = json.loads(p.read_text(encoding="utf-8"))
    if d.get("format") != FORMAT:
        raise InputError(f"intervals format {d.get('format')!r}", path=p, expected=FORMAT)
    meta = {
        k: v
        for k, v in d.items()
        if k not in ("format", "what", "levels", "quantiles", "seen_models")
    }
    iv = Intervals(d["levels"], dict(d["quantiles"]), frozenset(d.get("seen_models", ())), meta)
    if artifact is not None and d.get("artifact_sha256"):
        from hasim.perf.predictor import artifact_hash

        if artifact_hash(artifact) != d["artifact_sha256"]:
            warnings.warn(
                f"{p.name} was calibrated for another predictor artifact than {artifact}; "
                "rerun hasim perf calibrate-intervals",
                stacklevel=2,
            )
    return iv


def intervals_path(artifact: str | Path) -> Path:
    """The intervals file that belongs to a predictor artifact: ``<stem>.intervals.json``
    beside it (``rapp_v100.json`` -> ``rapp_v100.intervals.json``)."""
    a = Path(artifact)
    return a.with_name(a.stem + ".intervals.json")


def intervals_for(perf: Any) -> Intervals | None:
    """The intervals of a latency model, or None: only the learned predictor
    (``perf=rapp``) has them, from the file beside its artifact."""
    path = getattr(perf, "path", None)
    if getattr(perf, "name", None) != "rapp" or path is None:
        return None
    p = intervals_path(path)
    return load_intervals(p, artifact=path) if p.is_file() else None


class ScaledLatency:
    """A latency model whose mean latencies are the base model's times a factor per model
    (1 for models not in ``factors``): one replica's draw inside the prediction intervals.
    ``reference`` is the base model (the SLO targets stay its)."""

    def __init__(self, base: Any, factors: dict[str, float]) -> None:
        bad = {m: f for m, f in factors.items() if not (math.isfinite(f) and f > 0)}
        if bad:
            raise InputError(f"latency factors {bad}", expected="finite and > 0")
        self.reference = base
        self.factors = dict(factors)
        self.name = base.name

    def knows(self, model: str) -> bool:
        """As the base model."""
        return bool(self.reference.knows(model))

    def mean_latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        """Mean latency (s): the base model's times the model's factor."""
        base = self.reference.mean_latency_s(model, batch, sm_pct, quota)
        return base * self.factors.get(model, 1.0)

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The base model's per-request noise (factors with mean 1)."""
        return self.reference.noise(rng, n)

    def __getattr__(self, attr: str) -> Any:
        if attr == "reference":  # not yet set (unpickling): no recursion
            raise AttributeError(attr)
        return getattr(self.reference, attr)


def intervals_from_residuals(
    residuals: dict[str, np.ndarray],
    seen_models: Sequence[str],
    meta: dict[str, Any] | None = None,
    levels: Sequence[float] = LEVELS,
) -> Intervals:
    """An :class:`Intervals` from out-of-fold log residuals per kind."""
    q = {k: np.quantile(np.asarray(r, dtype=float), levels) for k, r in residuals.items()}
    extra = {
        "n_residuals": {k: int(np.asarray(r).size) for k, r in residuals.items()},
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return Intervals(np.asarray(levels), q, frozenset(seen_models), {**extra, **(meta or {})})


__all__ = [
    "FORMAT",
    "Intervals",
    "KINDS",
    "LEVELS",
    "PACKAGED_INTERVALS",
    "ScaledLatency",
    "conformal_bounds",
    "coverage_share",
    "cross_conformal",
    "interval_report",
    "intervals_for",
    "intervals_from_residuals",
    "intervals_path",
    "load_intervals",
    "log_residuals",
]
