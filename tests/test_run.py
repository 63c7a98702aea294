"""The user-facing entry points: hasim.run, `hasim run`, results on disk, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from math import factorial
from pathlib import Path

import pandas as pd
import pytest

import hasim
from hasim.errors import HasimError, InputError

QUIET = ["sim.progress=false"]


def run(tmp_path: Path, *overrides: str):
    return hasim.run([*QUIET, f"output.dir={tmp_path}", *overrides])


def test_offline_default_runs_and_writes_results(tmp_path):
    r = run(tmp_path, "workload.duration=60")
    s = r.summary
    for key in (
        "requests_total",
        "completed",
        "dropped",
        "latency_mean_s",
        "latency_p95_s",
        "latency_p99_s",
        "wait_mean_s",
        "slo_violation_rate",
        "cost_gpu_seconds",
        "gpu_share_mean",
        "cold_starts",
    ):
        assert key in s
    assert s["requests_total"] == len(r.requests) > 0
    assert s["completed"] + s["dropped"] + s["in_flight"] == s["requests_total"]
    d = r.path
    assert d is not None and d.parent.name == "default"
    on_disk = json.loads((d / "summary.json").read_text())
    assert on_disk["requests_total"] == s["requests_total"]
    for f in ("requests", "functions", "pods", "allocations", "usage", "actions"):
        assert not pd.read_parquet(d / f"{f}.parquet").empty or f == "actions"
    assert (d / "config.yaml").exists() and (d / "plot.png").stat().st_size > 1000
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".tmp")]


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    a = lam / mu
    top = a**c / factorial(c) / (1 - a / c)
    return top / (sum(a**k / factorial(k) for k in range(c)) + top) / (c * mu - lam)


def test_contract_mmc_through_hasim_run(tmp_path):
    r = run(
        tmp_path,
        "workload=poisson",
        "workload.rate=6",
        "workload.duration=40000",
        "perf=synthetic",
        "perf.distribution=exponential",
        "perf.mean=0.25",
        "autoscaler=static",
        "autoscaler.pods=2",
        "cluster.max_batch=1",
        "cluster.overhead=0",
        "cluster.timeout=null",
        "seed=1",
        "output.write=false",
    )
    want = erlang_c_wait(6.0, 4.0, 2)
    assert r.summary["wait_mean_s"] == pytest.approx(want, rel=0.05)


def test_seed_determinism_through_run(tmp_path):
    a = run(tmp_path, "workload.duration=100", "seed=4", "output.write=false")
    b = run(tmp_path, "workload.duration=100", "seed=4", "output.write=false")
    c = run(tmp_path, "workload.duration=100", "seed=5", "output.write=false")
    assert a.requests.equals(b.requests)
    assert a.summary["latency_mean_s"] == b.summary["latency_mean_s"]
    assert a.summary["latency_mean_s"] != c.summary["latency_mean_s"]


@pytest.mark.parametrize(
    "override,pattern",
    [
        ("autoscaler.sm=150", r"SM partition 150"),
        ("autoscaler.sm=0", r"SM partition 0"),
        ("autoscaler.quota=1.5", r"quota 1.5"),
        ("autoscaler.quota=0", r"quota 0"),
        ("autoscaler.batch=0", r"batch size 0"),
        ("workload.model=no_such_net", r"no_such_net"),
        ("cluster.gpu=K80", r"unknown GPU 'K80'"),
        ("cluster.nodez=3", r"nodez"),
    ],
)
def test_bad_config_values_get_clear_errors(tmp_path, override, pattern):
    with pytest.raises((InputError, HasimError, Exception), match=pattern):
        run(tmp_path, "workload.duration=10", override)
    assert not any(tmp_path.rglob("*.parquet"))


def test_missing_trace_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HASIM_TRACES_DIR", str(tmp_path / "empty"))
    with pytest.raises(HasimError, match="hasim data fetch"):
        run(tmp_path, "workload=azure2019")


def test_crash_leaves_nothing_half_written(tmp_path, monkeypatch):
    from hasim.sim import results

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(RuntimeError):
        run(tmp_path, "workload.duration=10", "run=crash")
    assert not (tmp_path / "default" / "crash").exists()
    assert not [p for p in (tmp_path / "default").iterdir()]
    assert results.run_name(["b=1", "a=2", "output.dir=x"]) == "a=2,b=1"


def test_rerun_replaces_a_finished_run_atomically(tmp_path):
    first = run(tmp_path, "workload.duration=10", "run=same")
    second = run(tmp_path, "workload.duration=20", "run=same")
    assert first.path == second.path
    assert json.loads((second.path / "summary.json").read_text())["duration_s"] == 20.0
    assert sorted(p.name for p in second.path.parent.iterdir()) == ["same"]


def test_cli_run_and_help(tmp_path):
    env_cmd = [sys.executable, "-m", "hasim.cli"]
    out = subprocess.run(
        [*env_cmd, "run", "workload.duration=20", f"output.dir={tmp_path}", "sim.progress=false"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "latency mean" in out.stdout
    assert (tmp_path / "default" / "workload.duration=20" / "summary.json").exists()
    h = subprocess.run([*env_cmd, "run", "--help"], capture_output=True, text=True, timeout=120)
    assert h.returncode == 0 and "workload" in h.stdout and "Examples" in h.stdout
    bad = subprocess.run(
        [*env_cmd, "run", "autoscaler.quota=2", f"output.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "quota" in bad.stderr and "Traceback" not in bad.stderr


def test_sweep_with_joblib_launcher(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hasim.cli",
            "run",
            "-m",
            "workload.rate=2,4",
            "workload.duration=20",
            f"output.dir={tmp_path}",
            "sim.progress=false",
            "hydra.launcher.n_jobs=2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    runs = sorted(p.name for p in (tmp_path / "default").iterdir())
    assert runs == ["workload.duration=20,workload.rate=2", "workload.duration=20,workload.rate=4"]


def test_finished_runs_are_reused_only_with_the_same_config(tmp_path):
    first = run(tmp_path, "workload.duration=10", "run=r", "output.skip_existing=true")
    stamp = (first.path / "summary.json").stat().st_mtime_ns
    again = run(tmp_path, "workload.duration=10", "run=r", "output.skip_existing=true")
    assert (again.path / "summary.json").stat().st_mtime_ns == stamp  # not recomputed
    assert again.summary["requests_total"] == first.summary["requests_total"]
    assert len(again.requests) == len(first.requests)
    # a different config under the same name is recomputed
    other = run(tmp_path, "workload.duration=12", "run=r", "output.skip_existing=true")
    assert other.summary["duration_s"] == 12.0
    # single runs recompute by default
    plain = run(tmp_path, "workload.duration=12", "run=r")
    assert (plain.path / "summary.json").stat().st_mtime_ns != stamp


def test_restarted_sweep_skips_finished_runs(tmp_path):
    cmd = [sys.executable, "-m", "hasim.cli", "run", "-m", "workload.rate=2,4",
           "workload.duration=20", f"output.dir={tmp_path}", "sim.progress=false",
           "hydra/launcher=basic"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("already finished with this config, reused") == 2
