"""Function -> model mapping: the ranking rule, tables, SLOs and config checks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hasim.errors import InputError
from hasim.workload.mapping import DEFAULT_ZOO, MappingConfig, assign_models

NAMES = [f"f{i}" for i in range(8)]


def _models(cfg: MappingConfig, seed: int = 0, **kw: object) -> list[str]:
    kw.setdefault("invocations", np.arange(8)[::-1])
    specs = assign_models(cfg, NAMES, np.random.default_rng(seed), **kw)
    return [s.model for s in specs]


def test_rule_by_duration_groups_fastest_first() -> None:
    durations = [5.0, 0.1, 3.0, 0.2, 9.0, 0.3, 7.0, 1.0]
    got = _models(MappingConfig(), mean_duration_s=durations)
    # Shortest two -> mobilenet_v3_large, next two -> resnet50, ...
    assert got == [
        "convnext_large",
        "mobilenet_v3_large",
        "convnext_large",
        "mobilenet_v3_large",
        "bert",
        "resnet50",
        "bert",
        "resnet50",
    ]
    assert DEFAULT_ZOO == ["mobilenet_v3_large", "resnet50", "convnext_large", "bert"]


def test_rule_by_invocations_busiest_fastest() -> None:
    got = _models(MappingConfig(zoo=["a", "b"]), invocations=[1, 2, 3, 4, 5, 6, 7, 8])
    assert got == ["b"] * 4 + ["a"] * 4
    cfg = MappingConfig(zoo=["a", "b"], rank_by="invocations")
    assert _models(cfg, mean_duration_s=[0.0] * 8, invocations=[8, 7, 6, 5, 4, 3, 2, 1]) == (
        ["a"] * 4 + ["b"] * 4
    )


def test_ties_are_seeded() -> None:
    cfg = MappingConfig()
    tied = {"invocations": [5] * 8}
    runs = {tuple(_models(cfg, seed=s, **tied)) for s in range(10)}
    assert len(runs) > 1
    assert _models(cfg, seed=3, **tied) == _models(cfg, seed=3, **tied)
    assert all(sorted(Counter(r).values()) == [2, 2, 2, 2] for r in runs)


def test_table_with_fallbacks() -> None:
    table = {"f0": "bert", "f1": "resnet50"}
    got = _models(MappingConfig(kind="table", table=table, zoo=["x"]))
    assert got[:2] == ["bert", "resnet50"] and got[2:] == ["x"] * 6
    with pytest.raises(InputError, match="'f2' \\(and 5 more\\) has no entry"):
        _models(MappingConfig(kind="table", table=table, fallback="error"))
    with pytest.raises(InputError, match="names function 'g9', which is not in the trace"):
        _models(MappingConfig(kind="table", table={"g9": "bert"}))
    with pytest.raises(InputError, match="maps function 'f0' to an empty model name"):
        _models(MappingConfig(kind="table", table={"f0": " "}))


def test_table_keys_checked_against_known_names() -> None:
    cfg = MappingConfig(kind="table", table={"other": "bert"})
    specs = assign_models(
        cfg, NAMES, np.random.default_rng(0), invocations=[1] * 8, known_names=[*NAMES, "other"]
    )
    assert len(specs) == 8


def test_slo_per_model() -> None:
    cfg = MappingConfig(zoo=["a", "b"], slo={"a": 0.05})
    specs = assign_models(cfg, NAMES, np.random.default_rng(0), invocations=np.arange(8))
    assert {s.model: s.slo_s for s in specs} == {"a": 0.05, "b": None}


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        (MappingConfig(kind="guess"), "mapping.kind"),
        (MappingConfig(fallback="skip"), "mapping.fallback"),
        (MappingConfig(rank_by="memory"), "mapping.rank_by"),
        (MappingConfig(zoo=[]), "mapping.zoo"),
        (MappingConfig(table={"f0": "bert"}), "mapping.table"),
        (MappingConfig(slo={"bert": -1.0}), "mapping.slo.bert"),
        (MappingConfig(rank_by="duration"), "mapping.rank_by"),
    ],
)
def test_bad_config(cfg: MappingConfig, field: str) -> None:
    with pytest.raises(InputError, match=f"workload.{field}"):
        _models(cfg)
