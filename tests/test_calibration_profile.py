"""The calibration runner (python -m calibration.profile): input checks, the CPU path end
to end on a tiny model, the measurement-schema round trip, traces and metadata."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("torch")

from calibration import meta, partition, profile, traces  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _loader():
    try:
        from hasim.perf import load_measurements  # the public name, where exported
    except ImportError:
        from hasim.perf.measurements import load_measurements
    return load_measurements


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--models", "resnet9000"], "unknown model 'resnet9000'"),
        (["--models", "nope.nope:f"], "cannot import"),
        (["--sms", "0,50"], "SM percentages must be in (0, 100]"),
        (["--sms", "120"], "SM percentages must be in (0, 100]"),
        (["--quotas", "40"], "quotas are fractions of the window in (0, 1]"),
        (["--quotas", "0"], "quotas are fractions"),
        (["--quotas", "-0.5"], "quotas are fractions"),
        (["--batches", "0"], "every batch must be an integer >= 1"),
        (["--batches", "two"], "is not a int"),
        (["--iters", "0"], "--iters must be >= 1"),
        (["--window-ms", "0"], "--window-ms must be > 0"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(tmp_path, capsys, args, msg):
    out = tmp_path / "cal"
    t = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        profile.main(["--device", "cpu", "--quick", "--out", str(out), *args])
    assert e.value.code == 2
    assert msg in capsys.readouterr().err
    assert not out.exists()  # nothing ran, nothing written
    assert time.perf_counter() - t < 5


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        profile.main(["--help"])
    text = capsys.readouterr().out
    for opt in (
        "--device",
        "--quick",
        "--full",
        "--models",
        "--batches",
        "--sms",
        "--quotas",
        "--warmup",
        "--iters",
        "--window-ms",
        "--out",
        "cpu-threads",
        "ld-preload",
    ):
        assert opt in text


def test_dry_run_prints_the_plan(tmp_path, capsys):
    assert (
        profile.main(["--device", "cuda", "--quick", "--out", str(tmp_path / "x"), "--dry-run"])
        == 0
    )
    text = capsys.readouterr().out
    assert "540 points" in text and "budget 450 s" in text
    assert not (tmp_path / "x").exists()


def test_quick_cpu_grid_is_shrunk_and_says_so():
    a = profile.build_parser().parse_args(["--device", "cpu", "--quick", "--out", "/tmp/x"])
    plan = profile.make_plan(a)
    assert plan.points <= 12 and plan.iters <= 8
    assert any("shrunk" in n for n in plan.notes)
    a = profile.build_parser().parse_args(["--device", "cuda", "--quick", "--out", "/tmp/x"])
    gpu = profile.make_plan(a)
    assert (len(gpu.models), len(gpu.batches), len(gpu.sms), len(gpu.quotas)) == (6, 3, 6, 5)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal")
    args = [
        "--device",
        "cpu",
        "--models",
        "calibration.zoo:tinycnn",
        "--input-shape",
        "3,32,32",
        "--batches",
        "1",
        "--sms",
        "50,100",
        "--quotas",
        "0.5,1",
        "--warmup",
        "1",
        "--iters",
        "3",
        "--window-ms",
        "20",
        "--gap-ms",
        "0",
        "--out",
        str(out),
    ]
    t = time.perf_counter()
    rc = profile.main(args)
    return out, rc, time.perf_counter() - t


def test_cpu_run_end_to_end(cpu_run):
    out, rc, took = cpu_run
    assert rc == 0
    assert took < 60
    df = pd.read_parquet(out / profile.LATENCY_FILE)
    assert len(df) == 2 * 2 * 4  # SM x quota x statistic
    assert set(df.statistic) == {"mean", "p50", "p95", "p99"}
    assert set(df.sm_pct) == {50.0, 100.0} and set(df.quota_pct) == {50.0, 100.0}
    assert (df.method == "cpu-threads").all() and (df.gate == "python-prehook").all()
    assert (df.window_ms == 20).all() and (df.device == "cpu").all()
    assert (df.source == "calibration-cpu").all() and (df.mig_slice == "").all()
    assert (df.latency_ms > 0).all() and (df.n_runs == 3).all()
    assert (df.model == "tinycnn").all() and (df.model_impl == "user").all()
    wide = df.pivot_table(index=["sm_pct", "quota_pct"], columns="statistic", values="latency_ms")
    assert (wide["p50"] <= wide["p99"] + 1e-9).all()


def test_cpu_output_round_trips_through_the_measurement_loader(cpu_run):
    out, _, _ = cpu_run
    df = _loader()(out)
    assert len(df) == 16
    assert set(df.source) == {"calibration-cpu"}
    assert (df.seq_len == 0).all() and (df.procs == 1).all()
    assert df.attrs["files"] == 1  # the traces and the manifest are skipped, not misread
    raw = pd.read_parquet(out / profile.LATENCY_FILE)
    key = ["model", "batch", "sm_pct", "quota_pct", "statistic"]
    merged = df.merge(raw, on=key, suffixes=("", "_raw"))
    assert len(merged) == 16
    assert (merged.latency_ms == merged.latency_ms_raw).all()


def test_cpu_run_writes_traces_and_manifest(cpu_run):
    out, _, _ = cpu_run
    tr = pd.read_parquet(out / profile.TRACE_FILE)
    assert set(tr.kind) == {"cpu_op"} and set(tr.trace) == {"cpu-operators"}
    assert set(tr.sm_pct) == {50.0, 100.0}
    assert "aten::conv2d" in set(tr.name)
    assert (tr.dur_us >= 0).all() and (tr.depth >= 0).all()
    m = json.loads((out / profile.MANIFEST).read_text())
    assert m["device"] == "cpu" and m["method"] == "cpu-threads"
    assert m["gate"] == "python-prehook" and m["grid"]["window_ms"] == 20
    assert m["host"]["cpu_model"] and m["torch"]["torch"]
    assert m["cpu"]["cores_usable"] >= 1
    assert len(m["partitions"]) == 2 and all(p["complete"] for p in m["partitions"])
    threads = {p["sm_pct"]: p["info"]["threads"] for p in m["partitions"]}
    assert threads[100.0] == partition.cpu_count()
    assert m["files"] == {"latency": "latency.parquet", "traces": "kernel_traces.pq"}


def test_module_entry_point_runs(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "calibration.profile",
            "--device",
            "cpu",
            "--quick",
            "--models",
            "resnet18",
            "--out",
            str(tmp_path / "c"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "cpu-threads" in r.stdout and "resnet18" in r.stdout


# --------------------------------------------------------------------------- pieces


def test_cuda_trace_parsing_keeps_grid_block_and_op():
    doc = {
        "traceEvents": [
            {
                "ph": "X",
                "cat": "cpu_op",
                "name": "aten::conv2d",
                "ts": 0,
                "dur": 50,
                "args": {"External id": 7},
            },
            {
                "ph": "X",
                "cat": "cuda_runtime",
                "name": "cudaLaunchKernel",
                "ts": 5,
                "dur": 3,
                "args": {"correlation": 11, "External id": 7},
            },
            {
                "ph": "X",
                "cat": "kernel",
                "name": "implicit_gemm",
                "ts": 100,
                "dur": 12.5,
                "args": {
                    "correlation": 11,
                    "grid": [64, 2, 1],
                    "block": [128, 1, 1],
                    "registers per thread": 96,
                    "shared memory": 4096,
                    "stream": 7,
                },
            },
            {
                "ph": "X",
                "cat": "gpu_memcpy",
                "name": "Memcpy HtoD",
                "ts": 90,
                "dur": 2,
                "args": {"stream": 7},
            },
        ]
    }
    rows = traces.parse_trace(doc, "cuda")
    assert [r["kind"] for r in rows] == ["gpu_memcpy", "kernel"]
    k = rows[1]
    assert (k["grid_x"], k["grid_y"], k["block_x"]) == (64, 2, 128)
    assert k["op"] == "aten::conv2d" and k["dur_us"] == 12.5 and k["start_us"] == 10.0
    assert k["registers"] == 96 and k["shared_mem_bytes"] == 4096 and k["seq"] == 1


def test_points_become_schema_rows():
    a = profile.build_parser().parse_args(["--device", "cpu", "--quick", "--out", "/tmp/x"])
    plan = profile.make_plan(a)
    part = {
        "sm_pct": 30.0,
        "method": "mps",
        "info": {"sm_count": 40, "sm_pct_effective": 30.3},
        "points": [
            {
                "model": "resnet18",
                "impl": "torchvision",
                "batch": 4,
                "quota": 0.2,
                "n_runs": 15,
                "gate": "ld-preload",
                "stats": {"mean": 5.0, "p50": 4.0, "p95": 9.0, "p99": 10.0},
            }
        ],
    }
    rows = profile.points_to_rows(part, plan, "H100-80GB")
    assert len(rows) == 4
    r = rows[0]
    assert r["gpu"] == "H100-80GB" and r["quota_pct"] == 20.0 and r["sm_pct"] == 30.0
    assert r["gate"] == "ld-preload" and r["sm_count"] == 40 and r["mig_slice"] == ""


def test_labels_and_partitions():
    assert meta.gpu_label("NVIDIA H100 80GB HBM3", 85520809984) == "H100-80GB"
    assert meta.gpu_label("Tesla V100-SXM2-16GB", 16945512448) == "V100-16GB"
    assert meta.gpu_label("NVIDIA H200", 150754820096) == "H200-140GB"
    assert meta.cpu_label("Intel(R) Xeon(R) Processor @ 2.80GHz") == "CPU-Intel-Xeon"
    assert partition.cpu_threads(50, 2) == 1 and partition.cpu_threads(100, 2) == 2
    assert partition.cpu_threads(1, 16) == 1
    # H100 (cc 9.0, 132 SMs): multiples of 8, at least 8
    assert partition.green_sm_count(10, 132, 9) == 16
    assert partition.green_sm_count(1, 132, 9) == 8
    assert partition.green_sm_count(100, 132, 9) == 128
    assert partition.green_sm_count(50, 80, 7) == 40


def test_gpu_script_dry_run(tmp_path):
    """run_gpu_quick.sh --dry-run: hook build + self-test + the cuda --quick plan, no GPU."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    r = subprocess.run(
        ["bash", str(ROOT / "calibration" / "run_gpu_quick.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "device cuda, preset quick: 540 points" in r.stdout
    assert "dry run done" in r.stdout
    log = (tmp_path / "run.log").read_text()
    assert "plan (dry run)" in log
    assert not (tmp_path / "cal").exists()  # nothing measured


def test_cuda_without_a_gpu_stops_before_writing(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    out = tmp_path / "cal"
    rc = profile.main(
        [
            "--device",
            "cuda",
            "--models",
            "tinycnn",
            "--sms",
            "50",
            "--quotas",
            "1",
            "--batches",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 2
    assert "no usable CUDA device" in capsys.readouterr().err
    assert not out.exists()
