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
see :func:`hasim.perf.offline.conformal.conformal_bounds`, which calibrates them). Pooled
quantiles were chosen over quantile boosting: they need no further model and reached the
asked coverage on held-out models (README, section "Prediction intervals").

The run-time file (``hasim/perf/data/rapp_v100.intervals.json``, made by ``hasim perf
calibrate-intervals``) stores the residual quantiles at :data:`LEVELS` for ``seen`` and
``unseen``, the models the artifact trained on, and the artifact's hash. A simulation
replica (``sim.replicas``) draws one factor ``exp(Q(u))``, ``u ~ U(0, 1)``, per model: a
model's error is systematic, not per-request noise.
"""

from __future__ import annotations

import json
import math
import warnings
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


__all__ = [
    "FORMAT",
    "Intervals",
    "KINDS",
    "LEVELS",
    "PACKAGED_INTERVALS",
    "ScaledLatency",
    "intervals_for",
    "intervals_path",
    "load_intervals",
]
