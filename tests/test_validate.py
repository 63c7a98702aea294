"""`hasim validate has-gpu`: replays with the real runs' configurations, compared to them."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from hasim.analysis.real_runs import real_run_metrics, usage_share
from hasim.analysis.validate import compare


def stage_file(tmp_path):
    p = tmp_path / "rps.json"
    p.write_text(json.dumps({"parameters": {"duration": "5s", "function_name": "resnet50"},
                             "processed_request_counts": [4, 6, 2]}))
    return p


def fake_results(tmp_path):
    run = tmp_path / "result" / "HAS" / "1-resnet"
    run.mkdir(parents=True)
    pd.DataFrame({"duration": [0.1, 0.3, 0.2, 0.6], "mode": "image",
                  "status_code": [200, 200, 200, 0], "success": [True, True, True, False],
                  "timestamp": ["t"] * 4}).to_csv(run / "has-120-50-50-15.csv", index=False)
    pd.DataFrame({"timestamp": ["a", "a", "b"], "node_name": "n", "gpu_id": "g",
                  "pod_name": ["p1", "p2", "p1"], "function_name": "resnet50",
                  "sm_partition": [30, 50, 30], "quota": [30, 20, 50]}
                 ).to_csv(run / "has-usage-120-50-50-15.csv", index=False)
    return tmp_path / "result", run


def test_real_run_metrics_and_usage_layouts(tmp_path):
    _, run = fake_results(tmp_path)
    m = real_run_metrics(run)
    assert m["system"] == "has" and m["model"] == "resnet50" and m["requests"] == 4
    assert m["latency_mean_s"] == pytest.approx(0.3)
    assert m["success_rate"] == pytest.approx(0.75)
    assert m["slo_violation_rate@0.2s"] == pytest.approx(0.5)  # 0.3 and the failed one
    # per pod: a -> 0.3*0.3 + 0.5*0.2 = 0.19; b -> 0.3*0.5 = 0.15
    assert m["gpu_share_mean"] == pytest.approx(0.17)
    per_gpu = tmp_path / "g.csv"
    pd.DataFrame({"timestamp": ["a"], "node_name": "n", "gpu_id": "g", "sm_partition": [90],
                  "quota": [30], "pod_counts": [3]}).to_csv(per_gpu, index=False)
    assert usage_share(per_gpu).iloc[0] == pytest.approx(0.9 * 0.3 / 3)


def test_compare_simulates_each_system_model_once(tmp_path):
    results, _ = fake_results(tmp_path)
    table = compare(results, stage_file(tmp_path))
    assert len(table) == 1
    row = table.iloc[0]
    assert row["real_latency_mean_s"] == pytest.approx(0.3)
    assert row["sim_latency_mean_s"] > 0
    want = (row["sim_latency_mean_s"] - 0.3) / 0.3
    assert row["err_latency_mean_s"] == pytest.approx(want)


def test_cli_json_needs_no_real_results(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "hasim.cli", "validate", "has-gpu", "--workload",
         str(stage_file(tmp_path)), "--system", "has", "--model", "resnet50", "--json"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout.strip().splitlines()[-1])
    for k in ("latency_mean_s", "latency_p95_s", "slo_violation_rate_0.2s", "gpu_share_mean"):
        assert k in d
    assert d["requests"] == 60
