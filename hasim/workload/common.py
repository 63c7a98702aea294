"""Helpers shared by the workload readers: config checks, function selection, time clipping."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hasim.errors import InputError

SELECT_MODES = ("all", "top", "random")


def check(ok: bool, field: str, value: object, expected: str) -> None:
    """Raise InputError naming ``workload.<field>`` unless ``ok``."""
    if not ok:
        raise InputError(f"workload.{field} = {value!r} is invalid", expected=expected)


def check_finite(field: str, value: float, *, minimum: float = 0.0, strict: bool = False) -> None:
    """Check that a float config value is finite and >= (or > when ``strict``) ``minimum``."""
    ok = isinstance(value, int | float) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    op = ">" if strict else ">="
    check(ok, field, value, f"a finite number {op} {minimum:g}")


def check_choice(field: str, value: str, choices: Sequence[str]) -> None:
    """Check that ``value`` is one of ``choices``."""
    check(value in choices, field, value, "one of " + ", ".join(choices))


def check_slo(field: str, value: float | None) -> None:
    """An SLO is None (derived by the simulation) or a positive number of seconds."""
    if value is not None:
        check_finite(field, value, strict=True)


def check_time_scale(value: float) -> None:
    """``time_scale`` compresses time (t -> t / time_scale); it must be > 0."""
    check_finite("time_scale", value, strict=True)


def clip_below(times: np.ndarray, duration_s: float) -> np.ndarray:
    """Clamp times into [0, duration_s): float rounding can land a point exactly on the end."""
    if times.size and times[-1] >= duration_s:
        times = np.minimum(times, np.nextafter(duration_s, 0.0))
    return times


def select_indices(
    select: str,
    n: int,
    totals: np.ndarray,
    rng: np.random.Generator,
    *,
    what: str,
    path: str | Path | None = None,
) -> np.ndarray:
    """Indices (ascending, i.e. file order) of the functions to keep.

    ``select``: "all" keeps every candidate; "top" keeps the ``n`` with the most
    invocations (``totals``; ties keep file order); "random" keeps ``n`` drawn uniformly
    without replacement. ``what`` describes the candidates in error messages, ``path``
    names the file they come from.
    """
    count = int(totals.size)
    if count == 0:
        raise InputError(
            f"no function selected from {what}", path=path, expected="at least one function"
        )
    if select == "all":
        return np.arange(count)
    check(
        isinstance(n, int) and 1 <= n <= count,
        "n",
        n,
        f"a number of functions between 1 and {count} for select={select}",
    )
    if select == "top":
        chosen = np.argsort(-np.asarray(totals, dtype=np.float64), kind="stable")[:n]
    else:
        chosen = rng.choice(count, size=n, replace=False)
    return np.sort(chosen)


def split_rng(rng: np.random.Generator, k: int) -> list[np.random.Generator]:
    """``k`` independent child generators, so that e.g. the model mapping does not shift
    the arrival stream."""
    try:
        return list(rng.spawn(k))
    except (TypeError, ValueError, AttributeError):
        return [np.random.default_rng(int(s)) for s in rng.integers(0, 2**63, size=k)]
