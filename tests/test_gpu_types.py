"""The cluster's GPU reaches the latency model: own data, a named transfer rule, or a
clear refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hasim
from hasim.errors import InputError
from hasim.perf.compact import CompactConfig, build_compact
from hasim.perf.transfer import (
    NoLatencyDataError,
    TransferredLatency,
    bind_to_gpu,
    transfer_ratio,
)

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["output.write=false", "output.quiet=true", "sim.progress=false"]
SHORT = ["workload.duration=20", "workload.rate=2", *QUIET]


def test_transfer_ratios_come_from_the_catalogue() -> None:
    assert transfer_ratio("flops", "V100-16GB", "H100") == pytest.approx(15.7 / 67.0)
    assert transfer_ratio("bandwidth", "V100", "A100-80GB") == pytest.approx(900 / 2039)
    r = transfer_ratio("roofline", "V100", "H100")
    assert r == pytest.approx(((15.7 / 67.0) * (900 / 3350)) ** 0.5)
    assert transfer_ratio("same", "V100", "H100") == 1.0
    with pytest.raises(InputError, match="perf.transfer='magic'"):
        transfer_ratio("magic", "V100", "H100")


def test_h100_without_data_is_refused_with_the_fix() -> None:
    with pytest.raises(NoLatencyDataError) as e:
        hasim.run(["cluster=h100", *SHORT])
    msg = str(e.value)
    parts = ("'H100'", "resnet50", "perf.transfer=", "perf.measurements=", "calibration.profile")
    for part in parts:
        assert part in msg


def test_refusal_on_the_command_line_is_clean() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-m", "hasim.cli", "run", "cluster=h100", *SHORT],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert p.returncode != 0
    assert "no latency data for GPU 'H100'" in p.stderr
    assert "Traceback" not in p.stderr


def test_transfer_rule_scales_and_warns() -> None:
    v100 = hasim.run(["cluster=v100", "seed=1", *SHORT])
    h100 = hasim.run(["cluster=h100", "perf.transfer=flops", "seed=1", *SHORT])
    assert "warning" not in v100.summary
    w = h100.summary["warning"]
    assert "resnet50" in w and "H100" in w and "V100-16GB" in w and "flops" in w
    assert h100.summary["gpu"] == "H100"
    assert h100.summary["latency_mean_s"] < v100.summary["latency_mean_s"]
    printed = hasim.sim.runner.format_summary(h100)
    assert "WARNING: latencies of resnet50 on H100" in printed


def test_own_data_wins_over_the_transfer_and_unknown_rules_fail() -> None:
    cfg = CompactConfig(transfer="roofline")
    model, warnings = bind_to_gpu(cfg, build_compact, "V100", ["resnet50"])
    assert warnings == [] and model.gpu == "V100-16GB"
    model, warnings = bind_to_gpu(cfg, build_compact, "H100", ["resnet50", "vgg16"])
    assert isinstance(model, TransferredLatency) and len(warnings) == 2
    base = build_compact(CompactConfig())
    want = base.mean_latency_s("vgg16", 2, 50.0, 0.5) * transfer_ratio("roofline", "V100", "H100")
    assert model.mean_latency_s("vgg16", 2, 50.0, 0.5) == pytest.approx(want)
    with pytest.raises(InputError, match="perf.transfer='fast'"):
        bind_to_gpu(CompactConfig(transfer="fast"), build_compact, "H100", ["resnet50"])


def test_synthetic_is_gpu_blind() -> None:
    r = hasim.run(["cluster=h100", "perf=synthetic", *SHORT])
    assert "warning" not in r.summary


def test_other_perf_kinds_refuse_too() -> None:
    from hasim.perf.rapp import RaPPConfig
    from hasim.perf.registry import PERF_KINDS

    _, build = PERF_KINDS["rapp"]
    with pytest.raises(NoLatencyDataError, match="perf=compact perf.measurements"):
        bind_to_gpu(RaPPConfig(), build, "H100", ["resnet50"])
