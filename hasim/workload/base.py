"""The workload contract: per-function sorted arrival times plus what each function serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FunctionSpec:
    """One serverless function.

    name: function id (unique in a workload).
    model: the DNN it serves (a name the latency model knows, e.g. ``resnet50``).
    slo_s: end-to-end latency bound in seconds; ``None`` lets the simulation derive it
        (``sim.slo_scale`` x the model's batch-1 full-GPU latency plus overhead).
    trigger: the Azure trigger type where known (http, timer, queue, ...).
    """

    name: str
    model: str
    slo_s: float | None = None
    trigger: str | None = None


@dataclass
class Workload:
    """Arrivals per function.

    arrivals[name] is a sorted float64 array of arrival times in seconds from the start
    of the run (0 <= t < duration_s). ``functions`` lists every function, in a stable
    order, including functions with no arrivals.

    clients[name], where present, is the closed-loop client that sends the function's
    requests (``hasim.workload.client.ThreadPoolClient``): its send times depend on the
    system's responses and are known only as the simulation runs; arrivals[name] then
    holds the schedule it would follow if every response were instant (its due times,
    one per request) and ``duration_s`` that schedule's length.
    """

    functions: list[FunctionSpec]
    arrivals: dict[str, np.ndarray]
    duration_s: float
    source: str = ""
    meta: dict[str, object] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [f.name for f in self.functions]
        if len(set(names)) != len(names):
            raise ValueError("function names in a workload must be unique")
        for f in self.functions:
            arr = np.ascontiguousarray(self.arrivals.get(f.name, np.empty(0)), dtype=np.float64)
            if arr.size > 1 and np.any(np.diff(arr) < 0):
                raise ValueError(f"arrivals of {f.name} are not sorted")
            self.arrivals[f.name] = arr
            client = self.clients.get(f.name)
            if client is not None and client.total != arr.size:
                raise ValueError(
                    f"the client of {f.name} sends {client.total} requests, "
                    f"its schedule holds {arr.size}"
                )
        unknown = set(self.clients) - set(names)
        if unknown:
            raise ValueError(f"clients of unknown functions: {sorted(unknown)}")

    @property
    def total_requests(self) -> int:
        return int(sum(a.size for a in self.arrivals.values()))
