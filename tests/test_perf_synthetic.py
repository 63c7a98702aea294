"""The synthetic latency model: means, noise laws and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from hasim.errors import InputError
from hasim.perf.base import LatencyModel, batch_table
from hasim.perf.synthetic import SyntheticConfig, SyntheticLatency

N = 200_000


def test_is_a_latency_model_and_knows_everything() -> None:
    m = SyntheticLatency(SyntheticConfig())
    assert isinstance(m, LatencyModel)
    assert m.name == "synthetic"
    assert m.knows("resnet50") and m.knows("anything-at-all")


def test_mean_ignores_resources_and_adds_per_item() -> None:
    m = SyntheticLatency(SyntheticConfig(mean=0.02, per_item=0.005))
    assert m.mean_latency_s("x", 1, 100.0, 1.0) == pytest.approx(0.02)
    assert m.mean_latency_s("x", 1, 5.0, 0.1) == pytest.approx(0.02)
    assert m.mean_latency_s("x", 4, 50.0, 0.5) == pytest.approx(0.02 + 3 * 0.005)
    assert batch_table(m, "x", 50.0, 0.5, 3) == pytest.approx([0.0, 0.02, 0.025, 0.03])


def test_exponential_noise_has_mean_one_and_cv_one() -> None:
    f = SyntheticLatency(SyntheticConfig()).noise(np.random.default_rng(1), N)
    assert f.shape == (N,) and (f > 0).all()
    assert f.mean() == pytest.approx(1.0, abs=0.01)
    assert f.std() / f.mean() == pytest.approx(1.0, abs=0.015)


def test_deterministic_noise_is_ones() -> None:
    m = SyntheticLatency(SyntheticConfig(distribution="deterministic", mean=0.02))
    np.testing.assert_array_equal(m.noise(np.random.default_rng(0), 1000), np.ones(1000))


def test_lognormal_noise_has_mean_one_and_the_cv() -> None:
    m = SyntheticLatency(SyntheticConfig(distribution="lognormal", cv=0.3))
    f = m.noise(np.random.default_rng(2), N)
    assert f.mean() == pytest.approx(1.0, abs=0.005)
    assert f.std() / f.mean() == pytest.approx(0.3, abs=0.01)
    m0 = SyntheticLatency(SyntheticConfig(distribution="lognormal", cv=0.0))
    np.testing.assert_array_equal(m0.noise(np.random.default_rng(0), 10), np.ones(10))


def test_noise_is_reproducible_per_seed() -> None:
    m = SyntheticLatency(SyntheticConfig())
    a = m.noise(np.random.default_rng(7), 50)
    b = m.noise(np.random.default_rng(7), 50)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"distribution": "uniform"},
        {"mean": 0.0},
        {"mean": -1.0},
        {"mean": float("nan")},
        {"cv": -0.1},
        {"per_item": -0.001},
    ],
)
def test_bad_config_raises(kwargs: dict) -> None:
    with pytest.raises(InputError, match="perf\\."):
        SyntheticLatency(SyntheticConfig(**kwargs))


@pytest.mark.parametrize(
    "batch,sm,quota",
    [(0, 50, 0.5), (1.5, 50, 0.5), (1, 0, 0.5), (1, 101, 0.5), (1, 50, 0), (1, 50, 1.2)],
)
def test_invalid_point_raises(batch: float, sm: float, quota: float) -> None:
    with pytest.raises(InputError):
        SyntheticLatency(SyntheticConfig()).mean_latency_s("x", batch, sm, quota)  # type: ignore[arg-type]
