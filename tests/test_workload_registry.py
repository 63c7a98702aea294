"""Registry dispatch and the conf/workload YAML files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from hasim.errors import InputError
from hasim.workload.registry import WORKLOAD_KINDS, build_workload, workload_config
from hasim.workload.synthetic import PoissonConfig

CONF = Path(__file__).resolve().parents[1] / "conf" / "workload"


@pytest.mark.parametrize("kind", sorted(WORKLOAD_KINDS))
def test_yaml_matches_dataclass(kind: str) -> None:
    cls, builder = WORKLOAD_KINDS[kind]
    assert callable(builder)
    fields = dataclasses.fields(cls)
    assert fields[0].name == "kind" and fields[0].default == kind
    yaml = OmegaConf.load(CONF / f"{kind}.yaml")
    assert set(yaml.keys()) == {f.name for f in fields}
    assert workload_config(yaml) == cls()


def test_build_from_dataclass_dict_and_overrides() -> None:
    rng = np.random.default_rng
    w = build_workload(PoissonConfig(rate=2.0, duration=30.0), rng(0))
    assert w.duration_s == 30.0
    w2 = build_workload({"kind": "poisson", "rate": 2, "duration": 30}, rng(0))
    np.testing.assert_array_equal(w.arrivals["fn0"], w2.arrivals["fn0"])
    # Hydra-style: the group file plus `workload.rate=... workload.duration=...` overrides.
    yaml = OmegaConf.load(CONF / "poisson.yaml")
    merged = OmegaConf.merge(yaml, OmegaConf.from_dotlist(["rate=2", "duration=30"]))
    w3 = build_workload(merged, rng(0))
    np.testing.assert_array_equal(w.arrivals["fn0"], w3.arrivals["fn0"])


def test_bad_kind_and_fields() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="unknown workload kind 'trace'") as err:
        build_workload({"kind": "trace"}, rng)
    assert "poisson" in str(err.value)
    with pytest.raises(InputError, match="bogus"):
        build_workload({"kind": "poisson", "bogus": 1}, rng)
    with pytest.raises(InputError, match="rate"):
        build_workload({"kind": "poisson", "rate": "fast"}, rng)
