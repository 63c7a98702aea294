"""The workload contract: per-function sorted arrival times plus what each function serves."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """

    functions: list[FunctionSpec]
    arrivals: dict[str, np.ndarray]
    duration_s: float
    source: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [f.name for f in self.functions]
        if len(set(names)) != len(names):
            raise ValueError("function names in a workload must be unique")
        for f in self.functions:
            arr = np.ascontiguousarray(self.arrivals.get(f.name, np.empty(0)), dtype=np.float64)
            if arr.size > 1 and np.any(np.diff(arr) < 0):
                raise ValueError(f"arrivals of {f.name} are not sorted")
            self.arrivals[f.name] = arr

    @property
    def total_requests(self) -> int:
        return int(sum(a.size for a in self.arrivals.values()))
