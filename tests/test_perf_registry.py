"""Perf registry dispatch and the conf/perf YAML files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hasim.errors import InputError
from hasim.perf.base import LatencyModel
from hasim.perf.compact import CompactLatency
from hasim.perf.registry import PERF_KINDS, build_latency_model, perf_config
from hasim.perf.synthetic import SyntheticConfig, SyntheticLatency

CONF = Path(__file__).resolve().parents[1] / "conf" / "perf"


@pytest.mark.parametrize("kind", sorted(PERF_KINDS))
def test_yaml_matches_dataclass(kind: str) -> None:
    cls, builder = PERF_KINDS[kind]
    assert callable(builder)
    fields = dataclasses.fields(cls)
    assert fields[0].name == "kind" and fields[0].default == kind
    yaml = OmegaConf.load(CONF / f"{kind}.yaml")
    assert set(yaml.keys()) == {f.name for f in fields}
    assert perf_config(yaml) == cls()


def test_synthetic_defaults() -> None:
    assert SyntheticConfig().distribution == "exponential"
    assert SyntheticConfig().mean == 0.05


def test_acceptance_override_contract() -> None:
    # `perf=synthetic perf.distribution=deterministic perf.mean=0.02`
    yaml = OmegaConf.load(CONF / "synthetic.yaml")
    cfg = OmegaConf.merge(yaml, OmegaConf.from_dotlist(["distribution=deterministic", "mean=0.02"]))
    m = build_latency_model(cfg)
    assert isinstance(m, SyntheticLatency) and isinstance(m, LatencyModel)
    assert m.mean_latency_s("resnet50", 1, 100.0, 1.0) == pytest.approx(0.02)
    cfg = OmegaConf.merge(yaml, OmegaConf.from_dotlist(["distribution=exponential", "mean=0.1"]))
    assert build_latency_model(cfg).mean_latency_s("m", 1, 50, 0.5) == pytest.approx(0.1)


def test_build_from_dict_and_dataclass() -> None:
    assert isinstance(build_latency_model({"kind": "compact"}), CompactLatency)
    m = build_latency_model(SyntheticConfig(mean=0.3))
    assert m.mean_latency_s("x", 1, 10, 0.1) == pytest.approx(0.3)


def test_unknown_kind_and_bad_fields() -> None:
    with pytest.raises(InputError, match="unknown perf kind"):
        build_latency_model({"kind": "nope"})
    with pytest.raises(InputError, match="perf"):
        build_latency_model({"kind": "synthetic", "bogus": 1})
    with pytest.raises(InputError, match="perf"):
        build_latency_model({"kind": "synthetic", "mean": "fast"})
