"""Azure Functions 2019 per-minute invocation counts -> arrivals.

Two layouts are read (the column order does not matter):

* original: ``HashOwner,HashApp,HashFunction,Trigger,<minute columns>`` with minute
  columns named by number (``1..1440``, or a contiguous subset such as ``480..959``);
* invitro legacy: ``HashFunction,HashOwner,HashApp,minute_1..minute_1440`` (no Trigger).

Minute columns must be consecutive and increasing. Time 0 of the workload is the start
of the first selected minute. Each count is spread over its minute by ``within_minute``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hasim.data.locate import trace_path
from hasim.errors import InputError
from hasim.workload.base import Workload
from hasim.workload.common import (
    check,
    check_choice,
    check_time_scale,
    clip_below,
    select_indices,
    split_rng,
)
from hasim.workload.csvio import Table, numeric_matrix, read_table
from hasim.workload.mapping import MappingConfig, assign_models

DEFAULT_PATH = "azure_functions_2019/invitro_500fn_minutes480-959/invocations.csv"
TRIGGERS = ("http", "timer", "event", "queue", "storage", "orchestration", "others")
ID_COLUMNS = ("HashOwner", "HashApp", "HashFunction")
WITHIN_MINUTE = ("poisson", "uniform", "even")
LAYOUTS = (
    "HashOwner,HashApp,HashFunction,Trigger and minute columns 1..1440, or "
    "HashFunction,HashOwner,HashApp and minute_1..minute_1440"
)
_MINUTE = re.compile(r"^(?:minute_)?(\d+)$")


@dataclass
class Azure2019Config:
    """Replay of an Azure Functions 2019 invocation-count file."""

    kind: str = "azure2019"
    path: str = DEFAULT_PATH  # invocations CSV, relative to the traces dir (or absolute)
    durations_path: str | None = None  # durations CSV (Average in ms) for mapping by duration
    # How a minute's count c becomes arrivals inside the minute:
    #   "poisson": a Poisson process of rate c/60 per s (the count varies, mean c);
    #   "uniform": exactly c i.i.d. uniform points (= Poisson conditioned on the count);
    #   "even":    exactly c points at (k + 0.5) / c of the minute, k = 0..c-1.
    within_minute: str = "uniform"
    select: str = "all"  # "all" | "top" (n busiest) | "random" (n at random) | "trigger"
    n: int = 0  # number of functions for select=top/random
    triggers: list[str] = field(default_factory=list)  # keep only these triggers (any select)
    start_minute: int = 0  # first minute, as an offset from the file's first minute column
    end_minute: int | None = None  # end offset (exclusive); None -> through the last column
    time_scale: float = 1.0  # compresses time: t -> t / time_scale (2.0 = twice as fast)
    mapping: MappingConfig = field(default_factory=MappingConfig)  # function -> model


@dataclass
class MinuteTrace:
    """An invocation-count file: one row per function, counts[f, m] invocations."""

    path: Path
    names: list[str]
    apps: list[str]
    functions: list[str]
    triggers: list[str | None] | None
    counts: np.ndarray
    first_minute: int


def _minute_columns(table: Table) -> tuple[list[str], int]:
    """Names of the minute columns (file order) and the number of the first one."""
    cols: list[str] = []
    numbers: list[int] = []
    for name in table.header:
        if name in ID_COLUMNS or name == "Trigger":
            continue
        m = _MINUTE.match(name)
        if m is None:
            raise InputError(
                f"unexpected column {name!r}",
                path=table.path,
                line=table.header_line,
                column=name,
                expected=LAYOUTS,
            )
        if numbers and int(m.group(1)) != numbers[-1] + 1:
            raise InputError(
                f"minute column {name!r} does not follow {cols[-1]!r}",
                path=table.path,
                line=table.header_line,
                column=name,
                expected="consecutive, increasing minute columns",
            )
        cols.append(name)
        numbers.append(int(m.group(1)))
    if not cols:
        raise InputError(
            "no minute columns", path=table.path, line=table.header_line, expected=LAYOUTS
        )
    return cols, numbers[0]


def _unique_names(table: Table, apps: list[str], funcs: list[str]) -> list[str]:
    """HashFunction when unique in the file, else ``HashApp:HashFunction`` for every row."""
    names = funcs
    if len(set(funcs)) != len(funcs):
        names = [f"{a}:{f}" for a, f in zip(apps, funcs, strict=True)]
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            raise InputError(
                f"function {name!r} repeats line {table.lines[first[name]]}",
                path=table.path,
                line=int(table.lines[i]),
                column="HashFunction",
                expected="one row per function",
            )
        first[name] = i
    return names


def read_minute_trace(path: Path) -> MinuteTrace:
    """Read and check an invocation-count file in either layout."""
    table = read_table(path, text_columns=(*ID_COLUMNS, "Trigger"))
    table.require(ID_COLUMNS, expected=LAYOUTS)
    cols, first_minute = _minute_columns(table)
    counts = numeric_matrix(table, cols, integer=True, what="invocation count")
    frame = table.frame
    apps = frame["HashApp"].astype(str).tolist()
    funcs = frame["HashFunction"].astype(str).tolist()
    triggers = None
    if "Trigger" in table.header:
        triggers = [str(t).strip().lower() for t in frame["Trigger"].tolist()]
    return MinuteTrace(
        path=path,
        names=_unique_names(table, apps, funcs),
        apps=apps,
        functions=funcs,
        triggers=triggers,
        counts=counts,
        first_minute=first_minute,
    )


def read_mean_durations(path: Path) -> dict[tuple[str, str], float]:
    """Mean execution time (s) per (HashApp, HashFunction) from a durations file (ms).

    When the file has no HashApp column the key is ("", HashFunction).
    """
    table = read_table(path, text_columns=ID_COLUMNS)
    table.require(("HashFunction", "Average"), expected="HashFunction and Average (ms) columns")
    avg = numeric_matrix(table, ["Average"], integer=False, what="mean duration (ms)")[:, 0]
    funcs = table.frame["HashFunction"].astype(str).tolist()
    if "HashApp" in table.header:
        apps = table.frame["HashApp"].astype(str).tolist()
    else:
        apps = [""] * len(funcs)
    return {(a, f): ms / 1000.0 for a, f, ms in zip(apps, funcs, avg.tolist(), strict=True)}


def counts_to_arrivals(
    counts: np.ndarray, mode: str, rng: np.random.Generator, bin_s: float = 60.0
) -> list[np.ndarray]:
    """Per-row sorted arrival times (s) from per-bin counts (rows x bins), per ``mode``
    (see ``Azure2019Config.within_minute``). Fully vectorized over all rows."""
    rows, bins = counts.shape
    if mode == "poisson":
        counts = rng.poisson(counts)
    flat = counts.ravel()
    total = int(flat.sum())
    cell = np.repeat(np.arange(flat.size, dtype=np.int64), flat)
    if mode == "even":
        start = np.cumsum(flat) - flat
        k = np.arange(total, dtype=np.int64) - start[cell]
        frac = (k + 0.5) / flat[cell]
    else:
        frac = rng.random(total)
    times = ((cell % bins) + frac) * bin_s
    bounds = np.concatenate(([0], np.cumsum(counts.sum(axis=1))))
    out = []
    for r in range(rows):
        seg = times[bounds[r] : bounds[r + 1]]
        out.append(seg if mode == "even" else np.sort(seg))
    return out


def _check_config(cfg: Azure2019Config) -> None:
    check_choice("within_minute", cfg.within_minute, WITHIN_MINUTE)
    check_choice("select", cfg.select, ("all", "top", "random", "trigger"))
    check_time_scale(cfg.time_scale)
    for t in cfg.triggers:
        check(
            str(t).lower() in TRIGGERS,
            "triggers",
            list(cfg.triggers),
            "triggers among " + ", ".join(TRIGGERS),
        )
    check(
        cfg.select != "trigger" or bool(cfg.triggers),
        "triggers",
        list(cfg.triggers),
        "a non-empty list of triggers with select=trigger",
    )


def _window(cfg: Azure2019Config, trace: MinuteTrace) -> tuple[int, int]:
    minutes = trace.counts.shape[1]
    start = cfg.start_minute
    end = minutes if cfg.end_minute is None else cfg.end_minute
    ok = isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= minutes
    check(
        ok,
        "start_minute/end_minute",
        (cfg.start_minute, cfg.end_minute),
        f"0 <= start_minute < end_minute <= {minutes} (offsets from the file's first "
        f"minute column, {trace.first_minute})",
    )
    return start, end


def _candidates(cfg: Azure2019Config, trace: MinuteTrace) -> np.ndarray:
    """Rows passing the trigger filter."""
    if not cfg.triggers:
        return np.arange(len(trace.names))
    if trace.triggers is None:
        raise InputError(
            "missing column(s) Trigger",
            path=trace.path,
            line=1,
            expected="a Trigger column to filter by workload.triggers",
        )
    wanted = {str(t).lower() for t in cfg.triggers}
    return np.array([i for i, t in enumerate(trace.triggers) if t in wanted], dtype=np.int64)


def azure2019_workload(cfg: Azure2019Config, rng: np.random.Generator) -> Workload:
    """Arrivals replaying an Azure 2019 invocation-count file (see Azure2019Config)."""
    _check_config(cfg)
    path = trace_path(cfg.path)
    trace = read_minute_trace(path)
    start, end = _window(cfg, trace)
    counts = trace.counts[:, start:end]
    sel_rng, map_rng, arr_rng = split_rng(rng, 3)
    cand = _candidates(cfg, trace)
    what = f"the rows with triggers {list(cfg.triggers)}" if cfg.triggers else "the file"
    mode = "all" if cfg.select == "trigger" else cfg.select
    rows = cand[
        select_indices(mode, cfg.n, counts[cand].sum(axis=1), sel_rng, what=what, path=path)
    ]
    names = [trace.names[i] for i in rows]
    durations = None
    if cfg.durations_path is not None:
        durations = _durations_for(trace, rows, trace_path(cfg.durations_path))
    specs = assign_models(
        cfg.mapping,
        names,
        map_rng,
        invocations=counts[rows].sum(axis=1),
        mean_duration_s=durations,
        known_names=trace.names,
        triggers=None if trace.triggers is None else [trace.triggers[i] for i in rows],
        source=str(path),
    )
    duration_s = (end - start) * 60.0 / cfg.time_scale
    arrays = counts_to_arrivals(counts[rows], cfg.within_minute, arr_rng)
    arrivals = {
        n: clip_below(a / cfg.time_scale, duration_s) for n, a in zip(names, arrays, strict=True)
    }
    return Workload(
        functions=specs,
        arrivals=arrivals,
        duration_s=duration_s,
        source=str(path),
        meta={
            "kind": cfg.kind,
            "first_minute": trace.first_minute + start,
            "minutes": end - start,
            "time_scale": cfg.time_scale,
            "within_minute": cfg.within_minute,
        },
    )


def _durations_for(trace: MinuteTrace, rows: np.ndarray, path: Path) -> list[float]:
    """Mean duration (s) of each selected row, joined on (HashApp, HashFunction)."""
    table = read_mean_durations(path)
    by_func = {f: s for (a, f), s in table.items()} if all(a == "" for a, _ in table) else None
    out = []
    for i in rows:
        key = (trace.apps[i], trace.functions[i])
        value = table.get(key) if by_func is None else by_func.get(key[1])
        if value is None:
            raise InputError(
                f"function {trace.names[i]!r} has no row in the durations file",
                path=path,
                expected="a durations row for every selected function",
            )
        out.append(value)
    return out
