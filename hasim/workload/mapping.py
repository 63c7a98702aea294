"""Which DNN model each trace function serves, and its SLO.

Two kinds (``MappingConfig.kind``):

* ``rule`` (default): rank the functions and split the ranking into ``len(zoo)``
  groups of equal size (sizes differ by at most one), assigned to ``zoo`` in order.
  ``zoo`` lists models fastest first, so the first group gets the fastest model.
  The ranking key (``rank_by``):

  - ``duration``: mean execution time of the function in the trace (the ``Average``
    column of an Azure 2019 durations file, or the mean ``duration`` of an Azure 2021
    function), shortest first -> short functions serve fast models;
  - ``invocations``: invocations in the selected window, busiest first -> busy
    functions serve fast models;
  - ``auto``: ``duration`` when durations are known, else ``invocations``.

  Exact ties are ordered by a shuffle drawn from the reader's generator, so the result
  is a deterministic function of the seed. Rank r of n functions goes to
  ``zoo[r * len(zoo) // n]``.
* ``table``: ``table`` maps function name -> model. A table key that is not a function
  of the trace is an error; functions not in the table get the rule (``fallback:
  rule``, ranked among themselves) or raise (``fallback: error``).

``slo`` maps model -> SLO in seconds; models not listed get ``slo_s=None`` (the
simulation derives it). Whether a model name is known to the latency model is checked
by the simulation, not here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from hasim.errors import InputError
from hasim.workload.base import FunctionSpec

DEFAULT_ZOO = ["mobilenet_v3_large", "resnet50", "convnext_large", "bert"]


@dataclass
class MappingConfig:
    """Function -> model assignment (see the module docstring)."""

    kind: str = "rule"  # "rule" | "table"
    table: dict[str, str] = field(default_factory=dict)  # function name -> model name
    fallback: str = "rule"  # for functions missing from the table: "rule" | "error"
    rank_by: str = "auto"  # rule key: "auto" | "duration" | "invocations"
    zoo: list[str] = field(default_factory=lambda: list(DEFAULT_ZOO))  # fastest model first
    slo: dict[str, float] = field(default_factory=dict)  # model -> SLO (s); absent -> derived


def _bad(field_name: str, value: object, expected: str) -> InputError:
    return InputError(f"workload.mapping.{field_name} = {value!r} is invalid", expected=expected)


def check_mapping(cfg: MappingConfig) -> None:
    """Validate the config fields on their own (table keys are checked in assign_models)."""
    if cfg.kind not in ("rule", "table"):
        raise _bad("kind", cfg.kind, "rule or table")
    if cfg.fallback not in ("rule", "error"):
        raise _bad("fallback", cfg.fallback, "rule or error")
    if cfg.rank_by not in ("auto", "duration", "invocations"):
        raise _bad("rank_by", cfg.rank_by, "auto, duration or invocations")
    if not cfg.zoo or any(not str(m).strip() for m in cfg.zoo):
        raise _bad("zoo", list(cfg.zoo), "a non-empty list of model names, fastest first")
    if cfg.kind == "rule" and cfg.table:
        raise _bad("table", dict(cfg.table), "an empty table unless mapping.kind=table")
    for fn, model in cfg.table.items():
        if not str(model).strip():
            raise InputError(
                f"workload.mapping.table maps function {fn!r} to an empty model name",
                expected="a model name such as resnet50",
            )
    for model, slo in cfg.slo.items():
        if not (isinstance(slo, int | float) and np.isfinite(slo) and slo > 0):
            raise _bad(f"slo.{model}", slo, "an SLO in seconds > 0")


def rule_models(keys: np.ndarray, zoo: Sequence[str], rng: np.random.Generator) -> list[str]:
    """Models for functions ranked by ascending ``keys`` (ties shuffled by ``rng``)."""
    n = int(keys.size)
    if n == 0:
        return []
    perm = rng.permutation(n)
    order = perm[np.argsort(np.asarray(keys, dtype=np.float64)[perm], kind="stable")]
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n)
    return [zoo[int(g)] for g in ranks * len(zoo) // n]


def _rule_keys(
    cfg: MappingConfig, mean_duration_s: np.ndarray | None, invocations: np.ndarray
) -> np.ndarray:
    by = cfg.rank_by
    if by == "auto":
        by = "duration" if mean_duration_s is not None else "invocations"
    if by == "duration":
        if mean_duration_s is None:
            raise _bad("rank_by", cfg.rank_by, "invocations, or give a durations file")
        return np.asarray(mean_duration_s, dtype=np.float64)
    return -np.asarray(invocations, dtype=np.float64)


def assign_models(
    cfg: MappingConfig,
    names: Sequence[str],
    rng: np.random.Generator,
    *,
    invocations: Sequence[float],
    mean_duration_s: Sequence[float] | None = None,
    known_names: Collection[str] | None = None,
    triggers: Sequence[str | None] | None = None,
    source: str = "the trace",
) -> list[FunctionSpec]:
    """FunctionSpecs for ``names`` (same order) with models and SLOs per ``cfg``.

    invocations: per-function invocation counts in the selected window.
    mean_duration_s: per-function mean execution time (s), when known.
    known_names: every function name of the source (table keys are checked against
        it; default ``names``).
    """
    check_mapping(cfg)
    inv = np.asarray(invocations, dtype=np.float64)
    dur = None if mean_duration_s is None else np.asarray(mean_duration_s, dtype=np.float64)
    keys = _rule_keys(cfg, dur, inv) if cfg.kind == "rule" or cfg.fallback == "rule" else None
    models: list[str | None] = [None] * len(names)
    if cfg.kind == "table":
        known = set(names if known_names is None else known_names)
        for fn in cfg.table:
            if fn not in known:
                raise InputError(
                    f"workload.mapping.table names function {fn!r}, which is not in {source}",
                    expected="function names as the workload reports them",
                )
        for i, name in enumerate(names):
            models[i] = cfg.table.get(name)
    missing = np.array([i for i, m in enumerate(models) if m is None], dtype=np.int64)
    if missing.size and cfg.kind == "table" and cfg.fallback == "error":
        first = names[int(missing[0])]
        raise InputError(
            f"function {first!r} (and {missing.size - 1} more) has no entry in "
            "workload.mapping.table",
            expected="a table entry for every selected function, or mapping.fallback=rule",
        )
    if missing.size:
        assert keys is not None
        for i, model in zip(missing, rule_models(keys[missing], cfg.zoo, rng), strict=True):
            models[int(i)] = model
    trig = triggers if triggers is not None else [None] * len(names)
    return [
        FunctionSpec(name=name, model=str(model), slo_s=cfg.slo.get(str(model)), trigger=t)
        for name, model, t in zip(names, models, trig, strict=True)
    ]
