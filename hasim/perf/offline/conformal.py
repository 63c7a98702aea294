"""Calibration of the predictor's prediction intervals (grouped conformal; see
:mod:`hasim.perf.intervals`, which loads and applies the result at run time).

Residuals are log-ratios ``log(measured / predicted)``; bounds are log-ratio bounds,
widths and coverages fractions.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hasim.errors import InputError
from hasim.perf.intervals import LEVELS, Intervals


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
