"""Replicas (``sim.replicas``): 90 % bands, the latency draws, the unchanged plain run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hasim
from hasim.errors import InputError
from hasim.perf.intervals import PACKAGED_INTERVALS, Intervals, ScaledLatency, load_intervals
from hasim.sim import replicas as rp

QUIET = ["sim.progress=false", "output.quiet=true"]
needs_intervals = pytest.mark.skipif(
    not PACKAGED_INTERVALS.is_file(), reason="no packaged intervals file"
)


def _iv() -> Intervals:
    levels = np.linspace(0.0, 1.0, 11)
    q = {"seen": np.linspace(-0.1, 0.1, 11), "unseen": np.linspace(-0.3, 0.3, 11)}
    return Intervals(levels, q, frozenset({"resnet50"}))


# --------------------------------------------------------------------------- pieces


def test_band_contains_the_point() -> None:
    assert rp.band([1.0, 2.0, 3.0, 4.0], 2.5)[0] <= 2.5 <= rp.band([1.0, 2.0, 3.0, 4.0], 2.5)[1]
    lo, hi = rp.band(list(range(101)), 50.0)
    assert (lo, hi) == (5.0, 95.0)
    assert rp.band([1.0, 1.1, 1.2], 5.0) == [pytest.approx(1.01), 5.0]  # widened to the point
    assert all(math.isnan(x) for x in rp.band([float("nan")], float("nan")))
    assert rp.band([float("nan"), 1.0, 3.0], 2.0) == [pytest.approx(1.1), pytest.approx(2.9)]


def test_one_latency_factor_per_model_and_replica() -> None:
    iv = _iv()
    f1 = rp.latency_factors(iv, ["resnet50", "vgg16", "resnet50"], seed=7, r=1)
    assert sorted(f1) == ["resnet50", "vgg16"]  # one per model, not per function or request
    assert f1 == rp.latency_factors(iv, ["vgg16", "resnet50"], seed=7, r=1)  # deterministic
    # a model's draw does not depend on which other models run
    assert rp.latency_factors(iv, ["vgg16"], seed=7, r=1)["vgg16"] == f1["vgg16"]
    f2 = rp.latency_factors(iv, ["resnet50", "vgg16"], seed=7, r=2)
    assert f2 != f1
    assert rp.latency_factors(iv, ["resnet50"], seed=7, r=0) == {"resnet50": 1.0}
    # seen models draw inside the seen interval, unseen ones inside the wider one
    draws = [rp.latency_factors(iv, ["resnet50", "mine"], 1, r) for r in range(1, 200)]
    seen = np.log([d["resnet50"] for d in draws])
    unseen = np.log([d["mine"] for d in draws])
    assert seen.min() >= -0.1 - 1e-12 and seen.max() <= 0.1 + 1e-12
    assert unseen.std() > 2 * seen.std()


def test_scaled_latency_is_one_factor_per_model() -> None:
    from hasim.perf.compact import CompactConfig, CompactLatency

    base = CompactLatency(CompactConfig())
    m = ScaledLatency(base, {"resnet50": 1.25})
    for b, s, q in ((1, 100.0, 1.0), (4, 30.0, 0.5), (8, 10.0, 0.2)):
        ratio = m.mean_latency_s("resnet50", b, s, q) / base.mean_latency_s("resnet50", b, s, q)
        assert ratio == pytest.approx(1.25, rel=1e-12)
        assert m.mean_latency_s("vgg16", b, s, q) == base.mean_latency_s("vgg16", b, s, q)
    assert m.name == base.name and m.knows("resnet50") and m.reference is base
    rng = np.random.default_rng(0)
    assert m.noise(rng, 3).shape == (3,)
    with pytest.raises(InputError):
        ScaledLatency(base, {"resnet50": 0.0})


def test_bad_replica_settings_get_clear_errors() -> None:
    for over, pat in (
        ("sim.replicas=0", "sim.replicas=0"),
        ("sim.replicas=-2", "sim.replicas=-2"),
        ("sim.replica_mode=sometimes", "replica_mode"),
        ("sim.replica_jobs=-1", "replica_jobs"),
    ):
        with pytest.raises(InputError, match=pat):
            hasim.run([*QUIET, "workload.duration=5", "output.write=false", over])
    # latency replicas need intervals: the compact law has none
    with pytest.raises(InputError, match="needs prediction intervals"):
        hasim.run([*QUIET, "workload.duration=5", "output.write=false", "sim.replicas=2",
                   "sim.replica_mode=latency"])  # fmt: skip


# --------------------------------------------------------------------------- runs


def test_replicas_one_is_the_plain_run() -> None:
    base = ["workload=poisson", "workload.duration=60", "output.write=false", *QUIET]
    a = hasim.run(base)
    b = hasim.run([*base, "sim.replicas=1"])
    assert a.summary == {**b.summary, "run": a.summary["run"]}
    assert b.replicas is None and not any(k.endswith("_ci90") for k in b.summary)
    pd.testing.assert_frame_equal(a.requests, b.requests)


def test_seed_replicas_write_bands_and_parquet(tmp_path: Path) -> None:
    r = hasim.run([*QUIET, f"output.dir={tmp_path}", "workload.duration=60",
                   "workload.rate=30", "sim.replicas=3", "sim.replica_jobs=1"])  # fmt: skip
    s = r.summary
    assert s["replicas"] == 3 and s["replica_mode"] == "seed"
    plain = hasim.run([*QUIET, "output.write=false", "workload.duration=60", "workload.rate=30"])
    for k in rp.CI_KEYS:
        assert s[k] == plain.summary[k]  # the headline is the plain run
        lo, hi = s[f"{k}_ci90"]
        assert lo <= s[k] <= hi, k
    reps = pd.read_parquet(r.path / "replicas.parquet")
    assert list(reps.replica) == [0, 1, 2] and reps.seed.iloc[0] == 0
    assert reps.seed.nunique() == 3 and not reps.latency_perturbed.any()
    assert reps.latency_mean_s.iloc[0] == s["latency_mean_s"]
    assert reps.latency_mean_s.nunique() == 3  # the seeds differ
    back = hasim.sim.runner.load_run(r.path)
    assert back.replicas is not None and len(back.replicas) == 3


@needs_intervals
def test_contract_rapp_replicas_give_ci90() -> None:
    r = hasim.run(["workload=poisson", "workload.duration=300", "perf=rapp", "sim.replicas=4",
                   "output.write=false", *QUIET])  # fmt: skip
    s = r.summary
    assert s["replica_mode"] == "both"
    for key in ("cost_gpu_seconds", "latency_mean_s"):
        band = s[f"{key}_ci90"]
        assert isinstance(band, list) and len(band) == 2
        assert band[0] <= s[key] <= band[1]
    reps = r.replicas
    assert reps is not None and len(reps) == 4
    # one latency factor per model and replica: the poisson workload serves resnet50
    factors = reps.filter(like="factor_")
    assert list(factors.columns) == ["factor_resnet50"]
    assert factors.iloc[0, 0] == 1.0 and factors.iloc[1:, 0].nunique() == 3
    q = load_intervals().quantiles["seen"]  # resnet50 trained the predictor: "seen"
    f = factors.iloc[1:, 0]
    assert ((f >= math.exp(q[0]) - 1e-12) & (f <= math.exp(q[-1]) + 1e-12)).all()
    # slower replicas have the longer mean latency (the factor is systematic)
    order = np.argsort(factors.iloc[1:, 0].to_numpy())
    lat = reps.latency_mean_s.iloc[1:].to_numpy()[order]
    assert lat[0] < lat[-1]


def test_latency_replica_keeps_the_slo_targets() -> None:
    from hasim.sim.runner import compose, replica_summary, run_config

    cfg = compose(["workload.duration=60", "workload.rate=20", "output.write=false", *QUIET])
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True)
    base = rp.figures(run_config(cfg).summary)
    same = replica_summary(plain, 0, {"resnet50": 1.0})
    assert same == base  # factor 1: the plain run, bit for bit
    slow = replica_summary(plain, 0, {"resnet50": 20.0})  # 22 ms -> 0.44 s, SLO 0.46 s
    assert slow["latency_mean_s"] > base["latency_mean_s"]
    assert slow["slo_violation_rate"] > base["slo_violation_rate"]  # targets did not move


def test_ratio_band_pairs_replicas_by_index() -> None:
    num = pd.DataFrame({"replica": [0, 1, 2, 3], "cost_gpu_seconds": [10.0, 20.0, 30.0, 40.0]})
    den = pd.DataFrame({"replica": [3, 2, 1, 0], "cost_gpu_seconds": [4.0, 3.0, 2.0, 1.0]})
    lo, hi = rp.ratio_band(num, den, "cost_gpu_seconds")  # every paired ratio is 10
    assert lo == pytest.approx(10.0) and hi == pytest.approx(10.0)
    den2 = den.assign(cost_gpu_seconds=[1.0, 1.0, 1.0, 2.0])  # replica 0: 5, others 20..40
    lo, hi = rp.ratio_band(num, den2, "cost_gpu_seconds")
    assert lo == 5.0 and 38.0 < hi <= 40.0
    with pytest.raises(InputError):
        rp.ratio_band(num, den.iloc[:2], "cost_gpu_seconds")


def test_report_shows_bands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hasim.analysis.report import main

    hasim.run([*QUIET, f"output.dir={tmp_path}", "workload.duration=30", "sim.replicas=2",
               "sim.replica_jobs=1", "output.plot=false"])  # fmt: skip
    hasim.run([*QUIET, f"output.dir={tmp_path}", "workload.duration=30", "output.plot=false"])
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count(" [") >= 3  # p95, SLO and cost of the replicated run carry bands
    runs = pd.read_parquet(tmp_path / "report" / "runs.parquet")
    assert {"cost_gpu_seconds_ci90_low", "cost_gpu_seconds_ci90_high"} <= set(runs.columns)
    withband = runs.dropna(subset=["cost_gpu_seconds_ci90_low"])
    assert len(withband) == 1
    row = withband.iloc[0]
    assert row.cost_gpu_seconds_ci90_low <= row.cost_gpu_seconds <= row.cost_gpu_seconds_ci90_high
