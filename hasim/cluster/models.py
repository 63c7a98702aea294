"""Static facts about the served DNNs that the cluster needs: weights and GPU memory.

Read from the derived table ``hasim/cluster/data/model_facts.csv`` (built by
``python -m hasim.cluster.build_model_facts``, which documents its sources): one row per
model any packaged latency model knows. ``weights_mb`` is the FP32 parameter size in MB
(drives model-load time); ``gpu_mem_mb`` the GPU memory one pod of the model holds (CUDA
context, weights, activations, allocator cache; measured for ResNet-50, estimated from
the weights for the others). A model not in the table is an error naming it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hasim.errors import InputError

FACTS_CSV = Path(__file__).resolve().parent / "data" / "model_facts.csv"


@dataclass(frozen=True)
class ModelFacts:
    """params: parameters; weights_mb: FP32 weights in MB; gpu_mem_mb: one pod's GPU
    memory in MB."""

    name: str
    weights_mb: float
    gpu_mem_mb: float
    params: int = 0


@lru_cache(maxsize=1)
def _table() -> dict[str, ModelFacts]:
    with open(FACTS_CSV, encoding="utf-8", newline="") as f:
        return {
            r["model"]: ModelFacts(
                r["model"], float(r["weights_mb"]), float(r["gpu_mem_mb"]), int(r["params"])
            )
            for r in csv.DictReader(f)
        }


def known_models() -> list[str]:
    """Models with facts, sorted."""
    return sorted(_table())


TOY_PARAMS = 30_000_000
"""Parameters of a fictitious model (a name not in the table) served by a GPU-blind
latency model (``perf=synthetic``, whose service times are made up too)."""


def toy_facts(name: str) -> ModelFacts:
    """Facts of a fictitious model of :data:`TOY_PARAMS` parameters (FP32), memory by the
    table's rule (ResNet-50's measured pod minus its weights, plus 1.5 x the weights)."""
    r50 = _table()["resnet50"]
    weights = TOY_PARAMS * 4 / 1e6
    return ModelFacts(name, weights, r50.gpu_mem_mb - r50.weights_mb + 1.5 * weights, TOY_PARAMS)


def model_facts(
    name: str, overrides: dict[str, float] | None = None, *, toy: bool = False
) -> ModelFacts:
    """Facts for ``name``; ``overrides`` maps model -> gpu_mem_mb (cluster.model_memory_mb).
    ``toy``: a name not in the table is a fictitious model (:func:`toy_facts`; only for
    GPU-blind latency models), else an error naming it."""
    facts = _table().get(name)
    if facts is None and toy:
        facts = toy_facts(name)
    if facts is None:
        names = known_models()
        raise InputError(
            f"no model facts (parameters, weights, memory) for model {name!r}",
            expected=f"one of the {len(names)} models of {FACTS_CSV.name} "
            f"(e.g. {', '.join(names[:4])}, ...); add it with python -m "
            "hasim.cluster.build_model_facts",
        )
    if overrides and name in overrides:
        return ModelFacts(name, facts.weights_mb, float(overrides[name]), facts.params)
    return facts
