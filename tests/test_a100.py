"""A100 latencies from A100 measurements (the packaged laws, and their fit)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hasim
from hasim.perf.compact import PACKAGED_BY_GPU, CompactConfig, CompactLatency, build_compact
from hasim.perf.transfer import NoLatencyDataError


def _have_a100_data() -> bool:
    from hasim.data.locate import data_path

    try:
        data_path("measurements/parvagpu-a100-mig-mps/prof_data/resnet50.csv")
        data_path("measurements/migprofiler-a100-mig")
    except Exception:
        return False
    return True


needs_a100 = pytest.mark.skipif(
    not _have_a100_data(), reason="A100 measurements absent (hasim data fetch)"
)
CONTRACT = [
    "workload=poisson", "workload.rate=1", "workload.duration=600", "cluster.overhead=0",
    "cluster.max_batch=1", "autoscaler=static", "output.write=false",
]  # fmt: skip


def test_a100_run_uses_a100_latencies() -> None:
    """The contract: cluster=a100 differs from cluster=v100 by more than 15 %."""
    quiet = ["output.quiet=true", "sim.progress=false"]
    a100 = hasim.run(["cluster=a100", *CONTRACT, *quiet]).summary
    v100 = hasim.run(["cluster=v100", *CONTRACT, *quiet]).summary
    assert a100["gpu"] == "A100-80GB" and "warning" not in a100
    assert abs(a100["latency_mean_s"] / v100["latency_mean_s"] - 1.0) > 0.15


def test_packaged_a100_law() -> None:
    law = build_compact(CompactConfig(), "A100-80GB")
    assert law.gpu == "A100-80GB"
    assert law.path == PACKAGED_BY_GPU["A100-80GB"]
    doc = json.loads(law.path.read_text())
    assert doc["gpu"] == "A100-80GB" and "ParvaGPU" in doc["provenance"]["licenses"]
    assert {"resnet50", "vgg16", "bert", "densenet121", "mobilenet_v2"} <= set(law.models)
    # monotone: slower with fewer SMs, lower quota, larger batch
    full = law.latency_ms("resnet50", 32, 100.0, 1.0)
    assert law.latency_ms("resnet50", 32, 13.0, 1.0) > 3 * full
    assert law.latency_ms("resnet50", 32, 100.0, 0.2) > full
    assert law.latency_ms("resnet50", 64, 100.0, 1.0) > full
    # the ParvaGPU full-GPU cell: resnet50 batch 32 in 7g.80gb is 13 ms
    assert law.latency_ms("resnet50", 32, 100.0 * 98 / 108, 1.0) == pytest.approx(13.0, rel=0.1)
    v100 = build_compact(CompactConfig(), "V100")
    assert v100.gpu == "V100-16GB" and len(v100.models) == 70


def test_a100_model_without_data_is_refused_or_transferred() -> None:
    short = ["workload.duration=10", "workload.rate=2", "output.write=false",
             "output.quiet=true", "sim.progress=false"]  # fmt: skip
    with pytest.raises(NoLatencyDataError, match="'A100-80GB' \\(model convnext_large\\)"):
        hasim.run(["cluster=a100", "workload.model=convnext_large", *short])
    r = hasim.run(["cluster=a100", "workload.model=convnext_large", "perf.transfer=bandwidth",
                   *short])  # fmt: skip
    assert "convnext_large on A100-80GB are V100-16GB latencies" in r.summary["warning"]
    with pytest.raises(NoLatencyDataError, match="'A100-40GB' \\(model resnet50\\)"):
        hasim.run(["cluster=a100_40gb", *short])


@needs_a100
def test_fit_on_a100_sets_reports_held_out_error_per_source() -> None:
    from hasim.perf import fit_gpu

    table = fit_gpu.load_a100()
    rep = fit_gpu.holdout_report(table, "A100-80GB").set_index("source")
    assert set(rep.index) == {"parvagpu", "migprof_80g"}
    assert (rep["held_out"] > 10).all() and (rep["mape_pct"] < 10).all()
    doc = fit_gpu.fit_document(table, "A100-80GB")
    law = CompactLatency(CompactConfig(), doc)
    packaged = build_compact(CompactConfig(), "A100-80GB")
    for m in ("resnet50", "vgg19", "bert"):
        for b in (1, 8, 64):
            got, want = law.latency_ms(m, b, 50.0, 1.0), packaged.latency_ms(m, b, 50.0, 1.0)
            assert got == pytest.approx(want, rel=1e-3)
    ov = fit_gpu.source_overlap(table, "A100-80GB")
    assert set(ov["model"]) == {"resnet50"} and np.median(ov["ratio"]) < 1.0


@needs_a100
def test_measurements_option_fits_on_the_fly(tmp_path) -> None:
    from hasim.data.locate import data_path

    cfg = CompactConfig(measurements=str(data_path("measurements/parvagpu-a100-mig-mps")))
    law = build_compact(cfg, "A100-80GB")
    assert law.gpu == "A100-80GB" and "resnet50" in law.models and "bert-base" not in law.models
