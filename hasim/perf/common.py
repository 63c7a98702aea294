"""Helpers shared by the latency models: config checks, noise, interpolation brackets.

Units follow :mod:`hasim.perf.base`: ``sm_pct`` in percent, ``quota`` a fraction of
the token window, latencies in seconds at the protocol boundary (the measured tables
are in milliseconds internally).
"""

from __future__ import annotations

import gzip
import json
import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hasim.errors import InputError, MissingDataError

EXACT_TOL = 1e-9
"""Two axis coordinates closer than this (relative) count as the same grid point."""


@dataclass
class LgbmParams:
    """LightGBM settings shared by the latency predictor and the operator model, each under
    LightGBM's own name (subclasses set their defaults and add their own settings)."""

    seed: int = 0
    num_threads: int = 2
    n_estimators: int = 600  # boosting rounds
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 30  # rows
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1  # rounds between re-sampling of the rows

    def base_lgb_params(self, seed: int | None = None) -> dict[str, Any]:
        """The settings above as LightGBM parameters, deterministic: ``seed`` (default
        ``self.seed``) seeds the row and feature sampling, the data binning always uses
        ``self.seed``."""
        seed = self.seed if seed is None else seed
        return {
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_col_wise": True,
            "seed": self.seed,
            "bagging_seed": seed,
            "feature_fraction_seed": seed,
            "data_random_seed": self.seed,
            "verbose": -1,
        }


def check_cfg(ok: bool, field: str, value: object, expected: str) -> None:
    """Raise InputError naming ``perf.<field>`` unless ``ok``."""
    if not ok:
        raise InputError(f"perf.{field} = {value!r} is invalid", expected=expected)


def check_number(field: str, value: object, *, minimum: float = 0.0, strict: bool = False) -> None:
    """Check that a config value is a finite number >= (or > when ``strict``) ``minimum``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)  # type: ignore[operator]
    op = ">" if strict else ">="
    check_cfg(ok, field, value, f"a finite number {op} {minimum:g}")


def lognormal_noise(rng: np.random.Generator, n: int, cv: float) -> np.ndarray:
    """``n`` i.i.d. lognormal factors with mean 1 and coefficient of variation ``cv``.

    ``cv == 0`` gives ones. With ``sigma^2 = ln(1 + cv^2)`` and ``mu = -sigma^2 / 2`` the
    mean is exactly 1 and the standard deviation ``cv``.
    """
    if cv <= 0:
        return np.ones(n)
    sigma2 = math.log1p(cv * cv)
    return rng.lognormal(-sigma2 / 2.0, math.sqrt(sigma2), size=n)


def unknown_model(kind: str, model: str, known: Iterable[str]) -> InputError:
    """The InputError for a model name a latency model does not know (lists a few known)."""
    names = sorted(known)
    preferred = [m for m in ("resnet50", "resnet152", "bert", "vgg16", "alexnet") if m in names]
    sample = preferred + [m for m in names if m not in preferred]
    shown = ", ".join(sample[:6]) + (", ..." if len(names) > 6 else "")
    return InputError(
        f"latency model {kind!r} does not know model {model!r}",
        expected=f"one of its {len(names)} models, e.g. {shown}",
    )


def smooth_max(x: float, y: float, p: float) -> float:
    """``(x^p + y^p)^(1/p)`` for x, y >= 0: a smooth maximum, monotone in both arguments."""
    m = x if x > y else y
    if m <= 0.0:
        return 0.0
    return m * ((x / m) ** p + (y / m) ** p) ** (1.0 / p)


def bracket(axis: Sequence[float], x: float) -> tuple[int, int]:
    """Indices ``(i, j)`` of the grid points around ``x`` on an ascending ``axis``.

    ``i == j`` when ``x`` is (within :data:`EXACT_TOL`) a grid point, ``(-1, 0)`` below the
    axis and ``(n - 1, n)`` above it.
    """
    n = len(axis)
    j = bisect_left(axis, x)
    if j < n and abs(axis[j] - x) <= EXACT_TOL * max(1.0, abs(x)):
        return j, j
    if j > 0 and abs(axis[j - 1] - x) <= EXACT_TOL * max(1.0, abs(x)):
        return j - 1, j - 1
    return j - 1, j


def read_json(path: Path) -> Any:
    """Parse a JSON file (``.gz`` transparently); malformed or unreadable files raise
    InputError naming the file (and the line/column of a syntax error)."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return json.load(f)
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(
            f"invalid JSON: {e.msg}", path=path, line=e.lineno, column=e.colno
        ) from None
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise InputError(f"unreadable file: {e}", path=path) from None


def import_lightgbm() -> Any:
    """The ``lightgbm`` module (a declared dependency); MissingDataError with the install
    command when it is absent."""
    try:
        import lightgbm
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise MissingDataError("lightgbm", "pip install lightgbm") from e
    return lightgbm
