"""FaST-GShare as HAS-GPU's comparison deployed it (hasim.autoscale.fastgshare_deployed):
fixed configuration, one pod per period, delayed one-pod scale-down, one GPU per
function, first pods prewarmed or at the first request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from hasim.autoscale.base import Call, CreatePod, DeletePod
from hasim.autoscale.fastgshare_deployed import (
    DeployedFaSTGShareAutoscaler,
    DeployedFaSTGShareConfig,
)
from hasim.config.schema import ClusterConfig
from hasim.config.typed import to_typed
from hasim.errors import InputError
from tests.fakes import FakeCluster

CONF = Path(__file__).resolve().parents[1] / "conf" / "autoscaler" / "fastgshare_deployed.yaml"


def scaler(**kw) -> DeployedFaSTGShareAutoscaler:
    return DeployedFaSTGShareAutoscaler(DeployedFaSTGShareConfig(**kw), ClusterConfig())


def creates(acts):
    return [a for a in acts if isinstance(a, CreatePod)]


def test_yaml_matches_the_dataclass():
    cfg = to_typed(OmegaConf.load(CONF), DeployedFaSTGShareConfig, "autoscaler")
    assert cfg == DeployedFaSTGShareConfig()


def test_capacity_from_the_table_or_the_rule():
    f = FakeCluster()
    assert scaler(quota=0.2).capacity(f, "resnet50") == 2.95
    # quota 0.5 is not in the table: closed loop 1 / (L(1) + overhead) x scale
    got = scaler(quota=0.5, capacity_scale=0.5).capacity(f, "resnet50")
    assert got == pytest.approx(0.5 / (0.02 / 0.5 + 0.07))


def test_one_pod_per_period_up_to_the_desired_count_on_one_gpu():
    f = FakeCluster(n_gpus=3, period=2.0)
    auto = scaler(quota=0.2, capacity_rps={"0.2": 1.0})
    f.step(auto, 0.0)  # no workload totals: nothing prewarmed
    assert not f.live("f")
    f.set_rate("f", 0.0, 4.0)
    counts = []
    for t in np.arange(2.0, 20.0, 2.0):
        acts = f.step(auto, float(t))
        assert len(creates(acts)) <= 1
        counts.append(len(f.live("f")))
    assert counts[:4] == [1, 2, 3, 4] and counts[-1] == 4  # desired = ceil(4 / 1)
    assert {p.gpu_id for p in f.live("f")} == {0}
    assert not f.failed


def test_a_full_gpu_stops_the_function_at_max_gpus():
    f = FakeCluster(n_gpus=2, period=2.0)
    f.set_rate("f", 0.0, 100.0)
    auto = scaler(quota=0.5, capacity_rps={"0.5": 1.0})  # boxes 500 x 30: 6 per GPU
    for t in np.arange(2.0, 40.0, 2.0):
        f.step(auto, float(t))
    assert len(f.live("f")) == 6 and {p.gpu_id for p in f.live("f")} == {0}
    wide = scaler(quota=0.5, capacity_rps={"0.5": 1.0}, max_gpus=None)
    g = FakeCluster(n_gpus=2, period=2.0)
    g.set_rate("f", 0.0, 100.0)
    for t in np.arange(2.0, 60.0, 2.0):
        g.step(wide, float(t))
    assert len(g.live("f")) == 12


def test_scale_down_waits_and_removes_one_pod_at_a_time():
    f = FakeCluster(period=2.0)
    auto = scaler(quota=0.2, capacity_rps={"0.2": 1.0}, scale_down_delay_s=10.0)
    f.set_rate("f", 0.0, 3.0)
    for t in np.arange(2.0, 20.0, 2.0):
        f.step(auto, float(t))
    assert len(f.live("f")) == 3
    f.set_rate("f", 20.0, 0.0)
    seen = []
    for t in np.arange(20.0, 80.0, 2.0):
        acts = f.step(auto, float(t))
        assert sum(isinstance(a, DeletePod) for a in acts) <= 1
        seen.append((float(t), len(f.live("f"))))
    # the 10-s rate falls to 1.8 req/s at t = 24 (desired 2 < 3 pods): one pod goes
    # 10 s later, the next another 10 s on; never below one pod
    n = dict(seen)
    assert n[32.0] == 3 and n[34.0] == 2 and n[42.0] == 2 and n[44.0] == 1
    assert seen[-1][1] == 1


def test_first_pod_prewarmed_or_at_the_first_request():
    f = FakeCluster(period=2.0, totals={"f": 10})
    auto = scaler()
    acts = f.step(auto, 0.0)
    assert [a.warm for a in creates(acts)] == [True]
    g = FakeCluster(period=10.0, arrivals={"f": [3.1]})
    g.step(auto2 := scaler(prewarm=False), 0.0)
    assert not g.live("f")
    acts = g.step(auto2, 3.1)  # a wake between ticks
    assert g.cause is Call.WAKE and len(creates(acts)) == 1 and not creates(acts)[0].warm


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="capacity_rule"):
        scaler(capacity_rule="magic")
    with pytest.raises(InputError, match="max_gpus"):
        scaler(max_gpus=0)
    with pytest.raises(InputError, match="SM partition"):
        scaler(sm=120.0)
