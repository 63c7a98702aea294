"""Synthetic arrival processes: rates, gap distributions, determinism, config checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hasim.errors import InputError
from hasim.workload.synthetic import (
    DiurnalConfig,
    GammaConfig,
    MMPPConfig,
    PoissonConfig,
    diurnal_workload,
    gamma_workload,
    mmpp_workload,
    poisson_workload,
)


def _rng(seed: int = 1) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_poisson_defaults_match_contract() -> None:
    cfg = PoissonConfig()
    assert (cfg.kind, cfg.rate, cfg.duration, cfg.functions, cfg.model, cfg.slo) == (
        "poisson",
        10.0,
        600.0,
        1,
        "resnet50",
        None,
    )


def test_poisson_rate_and_range() -> None:
    cfg = PoissonConfig(rate=50.0, duration=2000.0, functions=3, slo=0.2)
    w = poisson_workload(cfg, _rng())
    assert [f.name for f in w.functions] == ["fn0", "fn1", "fn2"]
    assert all(f.model == "resnet50" and f.slo_s == 0.2 for f in w.functions)
    assert w.duration_s == 2000.0
    expected = 50.0 * 2000.0
    for a in w.arrivals.values():
        assert a.dtype == np.float64
        assert np.all(np.diff(a) >= 0)
        assert a[0] >= 0 and a[-1] < 2000.0
        assert abs(a.size - expected) < 5 * np.sqrt(expected)


def test_poisson_gaps_are_exponential() -> None:
    w = poisson_workload(PoissonConfig(rate=20.0, duration=1000.0), _rng(7))
    a = w.arrivals["fn0"]
    gaps = np.diff(np.concatenate(([0.0], a)))  # the first gap from 0 is exponential too
    assert stats.kstest(gaps, "expon", args=(0, 1 / 20.0)).pvalue > 0.001
    assert gaps.min() > 0


def test_poisson_seeds() -> None:
    cfg = PoissonConfig(rate=5.0, duration=100.0, functions=2)
    a = poisson_workload(cfg, _rng(3))
    b = poisson_workload(cfg, _rng(3))
    c = poisson_workload(cfg, _rng(4))
    for name in ("fn0", "fn1"):
        np.testing.assert_array_equal(a.arrivals[name], b.arrivals[name])
    assert not np.array_equal(a.arrivals["fn0"], c.arrivals["fn0"])
    assert not np.array_equal(a.arrivals["fn0"], a.arrivals["fn1"])


def test_poisson_zero_rate_is_empty() -> None:
    w = poisson_workload(PoissonConfig(rate=0.0, duration=10.0), _rng())
    assert w.total_requests == 0


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("rate", -1.0, "finite number >= 0"),
        ("duration", 0.0, "finite number > 0"),
        ("functions", 0, "integer >= 1"),
        ("slo", -0.1, "finite number > 0"),
        ("model", "", "model name"),
    ],
)
def test_poisson_bad_config(field: str, value: object, expected: str) -> None:
    cfg = PoissonConfig(**{field: value})
    with pytest.raises(InputError, match=f"workload.{field}") as err:
        poisson_workload(cfg, _rng())
    assert expected in str(err.value)


def test_gamma_cv_and_rate() -> None:
    cfg = GammaConfig(rate=10.0, cv=2.0, duration=5000.0)
    a = gamma_workload(cfg, _rng(2)).arrivals["fn0"]
    gaps = np.diff(a)
    assert abs(gaps.mean() - 0.1) < 0.01
    assert abs(gaps.std() / gaps.mean() - 2.0) < 0.2


def test_gamma_cv1_is_poisson() -> None:
    a = gamma_workload(GammaConfig(rate=8.0, cv=1.0, duration=1000.0), _rng(5)).arrivals["fn0"]
    assert stats.kstest(np.diff(a), "expon", args=(0, 1 / 8.0)).pvalue > 0.001


def test_gamma_is_stationary_from_zero() -> None:
    # Many short, bursty functions: the mean count still matches rate * duration.
    cfg = GammaConfig(rate=1.0, cv=3.0, duration=2.0, functions=5000)
    w = gamma_workload(cfg, _rng(11))
    assert abs(w.total_requests - 10000) < 1500


def test_gamma_bad_cv() -> None:
    with pytest.raises(InputError, match="workload.cv"):
        gamma_workload(GammaConfig(cv=0.0), _rng())


def test_mmpp_long_run_rate() -> None:
    cfg = MMPPConfig(
        rate_low=2.0, rate_high=20.0, sojourn_low=3.0, sojourn_high=1.0, duration=20000.0
    )
    a = mmpp_workload(cfg, _rng(3)).arrivals["fn0"]
    assert np.all(np.diff(a) >= 0) and a[-1] < cfg.duration
    mean_rate = (2.0 * 3.0 + 20.0 * 1.0) / 4.0
    assert abs(a.size / cfg.duration - mean_rate) < 0.05 * mean_rate
    # Bursty: counts per second are over-dispersed compared with Poisson.
    counts = np.bincount(a.astype(int), minlength=int(cfg.duration))
    assert counts.var() > 2 * counts.mean()


def test_mmpp_equal_rates_is_poisson() -> None:
    cfg = MMPPConfig(rate_low=5.0, rate_high=5.0, sojourn_low=0.5, sojourn_high=0.5)
    cfg.duration = 2000.0
    a = mmpp_workload(cfg, _rng(9)).arrivals["fn0"]
    assert stats.kstest(np.diff(a), "expon", args=(0, 0.2)).pvalue > 0.001


def test_mmpp_initial_state() -> None:
    cfg = MMPPConfig(rate_low=0.0, rate_high=100.0, sojourn_low=1e6, sojourn_high=1e6)
    cfg.duration = 10.0
    cfg.initial_state = "low"
    assert mmpp_workload(cfg, _rng()).total_requests == 0
    cfg.initial_state = "high"
    assert mmpp_workload(cfg, _rng()).total_requests > 500
    cfg.initial_state = "middle"
    with pytest.raises(InputError, match="initial_state"):
        mmpp_workload(cfg, _rng())


def test_diurnal_follows_the_sine() -> None:
    cfg = DiurnalConfig(rate=20.0, amplitude=0.8, period=1000.0, phase=0.0, duration=1000.0)
    a = diurnal_workload(cfg, _rng(4)).arrivals["fn0"]
    first, second = np.sum(a < 500.0), np.sum(a >= 500.0)
    # Expected: 500 * 20 * (1 +- 0.8 * 2 / pi) requests per half period.
    assert abs(first - 10000 * (1 + 1.6 / np.pi)) < 5 * np.sqrt(first)
    assert abs(second - 10000 * (1 - 1.6 / np.pi)) < 5 * np.sqrt(second)


def test_diurnal_bad_amplitude() -> None:
    with pytest.raises(InputError, match="amplitude"):
        diurnal_workload(DiurnalConfig(amplitude=1.5), _rng())
