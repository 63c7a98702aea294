"""Azure Functions 2021 per-invocation trace (``app,func,end_timestamp,duration``) -> arrivals.

An invocation arrives at ``end_timestamp - duration`` (s from trace start). Rows may be
in any order. The workload keeps arrivals in the window [start, end) of trace time,
shifted so that ``start`` is time 0, then divided by ``time_scale``. Functions are
named ``app:func`` and listed in order of first appearance in the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hasim.data.locate import trace_path
from hasim.workload.base import Workload
from hasim.workload.common import (
    SELECT_MODES,
    check,
    check_choice,
    check_time_scale,
    clip_below,
    select_indices,
    split_rng,
)
from hasim.workload.csvio import numeric_matrix, read_table
from hasim.workload.mapping import MappingConfig, assign_models

DEFAULT_PATH = "azure_functions_2021/AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv"
COLUMNS = ("app", "func", "end_timestamp", "duration")


@dataclass
class Azure2021Config:
    """Replay of an Azure Functions 2021 invocation trace."""

    kind: str = "azure2021"
    path: str = DEFAULT_PATH  # CSV relative to the traces dir (or absolute)
    start: float = 0.0  # s of trace time mapped to t=0; earlier arrivals are dropped
    end: float | None = None  # s of trace time, exclusive; None -> floor(last arrival) + 1
    select: str = "all"  # "all" | "top" (n busiest in the window) | "random" (n at random)
    n: int = 0  # number of functions for select=top/random
    time_scale: float = 1.0  # compresses time: t -> t / time_scale
    mapping: MappingConfig = field(default_factory=MappingConfig)  # function -> model


def azure2021_workload(cfg: Azure2021Config, rng: np.random.Generator) -> Workload:
    """Arrivals replaying an Azure 2021 invocation trace (see Azure2021Config)."""
    check_choice("select", cfg.select, SELECT_MODES)
    check_time_scale(cfg.time_scale)
    check(math.isfinite(cfg.start), "start", cfg.start, "a finite time in s")
    path = trace_path(cfg.path)
    table = read_table(path, text_columns=("app", "func"))
    table.require(COLUMNS, expected="columns " + ",".join(COLUMNS))
    values = numeric_matrix(table, ["end_timestamp", "duration"], integer=False, what="time (s)")
    arrival = values[:, 0] - values[:, 1]
    frame = table.frame
    names = (frame["app"].astype(str) + ":" + frame["func"].astype(str)).to_numpy()
    codes, uniques = pd.factorize(names, sort=False)
    all_names = [str(u) for u in uniques]

    last = float(arrival.max()) if arrival.size else cfg.start
    end = math.floor(last) + 1.0 if cfg.end is None else float(cfg.end)
    check(
        math.isfinite(end) and end > cfg.start,
        "end",
        cfg.end,
        f"an end time in s after start={cfg.start:g}",
    )
    inside = (arrival >= cfg.start) & (arrival < end)
    n_funcs = len(all_names)
    totals = np.bincount(codes[inside], minlength=n_funcs)
    mean_dur = np.bincount(codes, weights=values[:, 1], minlength=n_funcs) / np.maximum(
        np.bincount(codes, minlength=n_funcs), 1
    )

    sel_rng, map_rng, _ = split_rng(rng, 3)
    rows = select_indices(cfg.select, cfg.n, totals, sel_rng, what="the file", path=path)
    names_sel = [all_names[i] for i in rows]
    specs = assign_models(
        cfg.mapping,
        names_sel,
        map_rng,
        invocations=totals[rows],
        mean_duration_s=mean_dur[rows],
        known_names=all_names,
        source=str(path),
    )

    duration_s = (end - cfg.start) / cfg.time_scale
    t = (arrival[inside] - cfg.start) / cfg.time_scale
    c = codes[inside]
    order = np.lexsort((t, c))
    t, c = t[order], c[order]
    bounds = np.concatenate(([0], np.cumsum(np.bincount(c, minlength=n_funcs))))
    arrivals = {all_names[i]: clip_below(t[bounds[i] : bounds[i + 1]], duration_s) for i in rows}
    return Workload(
        functions=specs,
        arrivals=arrivals,
        duration_s=duration_s,
        source=str(path),
        meta={
            "kind": cfg.kind,
            "start_s": cfg.start,
            "end_s": end,
            "time_scale": cfg.time_scale,
            "dropped_outside_window": int((~inside).sum()),
        },
    )
