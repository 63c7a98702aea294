"""`hasim validate has-gpu`: replays with the real runs' configurations, compared to them."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from hasim.analysis.real_runs import (
    deployed_config,
    real_run_metrics,
    request_files,
    usage_share,
)
from hasim.analysis.validate import (
    by_system,
    compare,
    main,
    run_overrides,
    sim_overrides,
    simulate,
    spread,
    targets,
    whole_stages,
)
from hasim.errors import HasimError


def stage_file(tmp_path):
    p = tmp_path / "rps.json"
    p.write_text(
        json.dumps(
            {
                "parameters": {"duration": "5s", "function_name": "resnet50"},
                "processed_request_counts": [4, 6, 2],
            }
        )
    )
    return p


def fake_results(tmp_path):
    run = tmp_path / "result" / "HAS" / "1-resnet"
    run.mkdir(parents=True)
    pd.DataFrame(
        {
            "duration": [0.1, 0.3, 0.2, 0.6],
            "mode": "image",
            "status_code": [200, 200, 200, 0],
            "success": [True, True, True, False],
            "timestamp": ["t"] * 4,
        }
    ).to_csv(run / "has-120-50-50-15.csv", index=False)
    pd.DataFrame(
        {
            "timestamp": ["a", "a", "b"],
            "node_name": "n",
            "gpu_id": "g",
            "pod_name": ["p1", "p2", "p1"],
            "function_name": "resnet50",
            "sm_partition": [30, 50, 30],
            "quota": [30, 20, 50],
        }
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
    pd.DataFrame(
        {
            "timestamp": ["a"],
            "node_name": "n",
            "gpu_id": "g",
            "sm_partition": [90],
            "quota": [30],
            "pod_counts": [3],
        }
    ).to_csv(per_gpu, index=False)
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


def timed_run(tmp_path, system="HAS", name="2-bert", layout="per_gpu"):
    """A run with ISO time stamps: the usage recorder starts 10 s before the first
    request and records the deployed pod (SM 50 %, quota 30 %), then quota 100 %."""
    run = tmp_path / "result" / system / name
    run.mkdir(parents=True)
    t0 = pd.Timestamp("2025-03-17T10:00:00")
    sent = [t0 + pd.Timedelta(seconds=10 + k) for k in range(6)]
    prefix = {"HAS": "has", "fast-gshare": "fastgshare"}[system]
    pd.DataFrame(
        {
            "duration": 0.1,
            "mode": "bert",
            "status_code": 200,
            "success": True,
            "timestamp": [t.isoformat() for t in sent],
        }
    ).to_csv(run / f"{prefix}-120-50-50-15.csv", index=False)
    stamps = [
        (t0 + pd.Timedelta(seconds=2 * k)).strftime("%Y-%m-%dT%H:%M:%SZ") for k in range(9)
    ]  # 0..16 s
    quota = [30] * 6 + [100] * 3  # 100 from 12 s
    if layout == "per_gpu":
        u = pd.DataFrame(
            {
                "timestamp": stamps,
                "node_name": "n",
                "gpu_id": "g",
                "sm_usage": 50,
                "quota_usage": quota,
                "pod_count": 1,
            }
        )
    else:  # FaST-GShare: sums over 2 pods of (SM 30, quota 0.2)
        u = pd.DataFrame(
            {
                "timestamp": stamps,
                "node_name": "n",
                "gpu_id": "g",
                "sm_partition": 60,
                "quota": 40,
                "pod_counts": 2,
            }
        )
    u.to_csv(run / f"{prefix}-usage-120-50-50-15.csv", index=False)
    return run


def test_share_over_client_window_lead_and_deployed_config(tmp_path):
    run = timed_run(tmp_path)
    m = real_run_metrics(run)
    # whole file: 6 samples at 0.5 x 0.3, 3 at 0.5 x 1.0; client window 10..15 s holds
    # the samples at 10 (0.15), 12 and 14 s (0.5)
    assert m["gpu_share_mean_file"] == pytest.approx((6 * 0.15 + 3 * 0.5) / 9)
    assert m["gpu_share_mean"] == pytest.approx((0.15 + 0.5 + 0.5) / 3)
    assert m["gpu_share_window"] == "client" and m["lead_s"] == pytest.approx(10.0)
    assert deployed_config(run) == {"sm": 50.0, "quota": 0.3, "pods": 1.0}
    assert run_overrides("has", run) == ["autoscaler.default_sm=50", "autoscaler.default_quota=0.3"]
    fg = timed_run(tmp_path, "fast-gshare", "1-bert", layout="fastgshare")
    assert deployed_config(fg) == {"sm": 30.0, "quota": 0.2, "pods": 2.0}
    assert run_overrides("fastgshare", fg) == ["autoscaler.sm=30", "autoscaler.quota=0.2"]
    assert run_overrides("kserve", fg, gpus_max=1) == ["autoscaler.max_scale=1"]
    assert run_overrides("kserve", fg) == []
    # a usage file from another run (no overlap with the requests): not this run's config
    _, other = fake_results(tmp_path / "x")
    assert deployed_config(other) is None
    assert real_run_metrics(other)["gpu_share_window"] == "file"


def test_every_request_file_named_after_the_system_is_a_run(tmp_path):
    k = tmp_path / "result" / "kserve" / "1-resnet"
    k.mkdir(parents=True)
    for name, lat in (("kserve-15.csv", 0.1), ("kserve-15-2.csv", 0.7)):
        pd.DataFrame(
            {
                "duration": [lat],
                "mode": "image",
                "status_code": 200,
                "success": True,
                "timestamp": "t",
            }
        ).to_csv(k / name, index=False)
    assert [f.name for f in request_files(k)] == ["kserve-15-2.csv", "kserve-15.csv"]
    runs = {real_run_metrics(k, request_file=f)["run"] for f in request_files(k)}
    assert runs == {"1-resnet/kserve-15-2", "1-resnet/kserve-15"}
    fg = tmp_path / "result" / "fast-gshare" / "2-resnet"
    fg.mkdir(parents=True)
    for name in ("fastgshare-120-50-50-15.csv", "has-120-50-50-15.csv"):
        (fg / name).write_text((k / "kserve-15.csv").read_text())
    assert [f.name for f in request_files(fg)] == ["fastgshare-120-50-50-15.csv"]
    assert real_run_metrics(fg)["run"] == "2-resnet"


def test_lead_is_rounded_to_whole_stages(tmp_path):
    assert whole_stages(stage_file(tmp_path), 14.0) == 15.0
    assert whole_stages(stage_file(tmp_path), 2.0) == 0.0


def test_lead_replay_keeps_requests_and_averages_share_over_the_client_window(tmp_path):
    w = stage_file(tmp_path)
    plain = simulate("has", "resnet50", w)
    led = simulate("has", "resnet50", w, lead_s=10.0)
    assert plain["lead_s"] == 0.0 and led["lead_s"] == 10.0
    assert led["requests"] == plain["requests"] == led["sent"] == 60
    assert 0 < led["gpu_share_mean"] <= 1.0
    # the client's window: first send to last answer (the last request is due at 14.5 s)
    assert 14.5 < led["client_s"] < 15.5 and plain["client"] == "threadpool"


def test_by_system_and_targets():
    table = pd.DataFrame(
        {
            "system": ["has", "has", "kserve"],
            "run": ["1-r", "2-r", "1-r"],
            "model": ["resnet50"] * 3,
            "config": "",
            **{
                f"{s}_{m}": [1.0, 3.0, 1.0] if s == "real" else [1.05, 3.0, 2.0]
                for s in ("real", "sim")
                for m in (
                    "latency_mean_s",
                    "latency_p95_s",
                    "latency_p99_s",
                    "slo_violation_rate_0.2s",
                    "slo_violation_rate_0.5s",
                    "gpu_share_mean",
                )
            },
        }
    )
    for m in ("latency_mean_s", "latency_p95_s", "gpu_share_mean"):
        table[f"err_{m}"] = (table[f"sim_{m}"] - table[f"real_{m}"]) / table[f"real_{m}"]
    b = by_system(table).set_index("system")
    assert b.loc["has", "runs"] == 2
    assert b.loc["has", "real_latency_mean_s"] == pytest.approx(2.0)
    assert b.loc["has", "err_latency_mean_s"] == pytest.approx(0.0125)  # 2.025 vs 2
    t = targets(table)
    assert list(t["run"]) == ["1-r", "2-r"] and t["met"].all()
    sp = spread(table).set_index("model")
    # HAS real runs span [1, 3]; the simulated mean over the replays is 2.025: inside
    assert sp.loc["resnet50", "real_min_latency_mean_s"] == 1.0
    assert sp.loc["resnet50", "real_max_latency_mean_s"] == 3.0
    assert sp.loc["resnet50", "in_latency_mean_s"]
    table.loc[table["system"] == "has", "sim_gpu_share_mean"] = 3.4  # > 3 x 1.1
    assert not spread(table).set_index("model").loc["resnet50", "in_gpu_share_mean"]


@pytest.mark.parametrize("system", ["fastgshare", "kserve"])
def test_json_contract_every_system(tmp_path, capsys, system):
    w = stage_file(tmp_path)
    assert (
        main(["has-gpu", "--workload", str(w), "--system", system, "--model", "resnet50", "--json"])
        == 0
    )
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ("latency_mean_s", "latency_p95_s", "slo_violation_rate_0.2s", "gpu_share_mean"):
        assert k in d
    assert d["requests"] == 60


def test_cli_json_needs_no_real_results(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hasim.cli",
            "validate",
            "has-gpu",
            "--workload",
            str(stage_file(tmp_path)),
            "--system",
            "has",
            "--model",
            "resnet50",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout.strip().splitlines()[-1])
    for k in ("latency_mean_s", "latency_p95_s", "slo_violation_rate_0.2s", "gpu_share_mean"):
        assert k in d
    assert d["requests"] == 60


def test_sim_overrides_fidelity_launch_gating_and_sets():
    assert sim_overrides() == []
    assert sim_overrides("kernel", True, ["cluster.overhead_held_s=0.02"]) == [
        "sim.fidelity=kernel",
        "sim.launch_gated=true",
        "cluster.overhead_held_s=0.02",
    ]
    with pytest.raises(HasimError, match="launch-gated"):
        sim_overrides("batch", True)
    with pytest.raises(HasimError, match="key=value"):
        sim_overrides(sets=["cluster.overhead_held_s"])
    assert sim_overrides("kernel", synchronous=True) == [
        "sim.fidelity=kernel",
        "sim.launch_gated=false",
    ]
    with pytest.raises(HasimError, match="synchronous"):
        sim_overrides("batch", synchronous=True)
    with pytest.raises(HasimError, match="exclude"):
        sim_overrides("kernel", True, synchronous=True)


def test_compare_passes_the_replay_overrides(tmp_path, monkeypatch):
    import hasim.analysis.validate as v

    seen = []

    def fake(system, model, workload, seed=0, overrides=None, lead_s=0.0, client=None, replay=None):
        seen.append((list(overrides or []), client, replay))
        return {m: 1.0 for m in v.METRICS} | {"lead_s": 0.0}

    monkeypatch.setattr(v, "simulate", fake)
    results, run = fake_results(tmp_path)
    table = compare(results, None, extra=["sim.fidelity=kernel", "sim.launch_gated=true"])
    assert seen and all(
        o[-2:] == ["sim.fidelity=kernel", "sim.launch_gated=true"] for o, _, _ in seen
    )
    assert all(c is None and r is None for _, c, r in seen)  # the presets' client
    assert "fidelity=kernel" in table.iloc[0]["config"]
    seen.clear()
    compare(results, None, client="replay")  # each run replays its own request file
    assert [(c, r) for _, c, r in seen] == [("replay", run / "has-120-50-50-15.csv")]


def test_json_replay_in_kernel_mode(tmp_path, capsys):
    w = stage_file(tmp_path)
    argv = ["has-gpu", "--workload", str(w), "--system", "has", "--model", "resnet50", "--json"]
    assert main([*argv, "--fidelity", "kernel", "--launch-gated"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["requests"] == 60 and d["latency_mean_s"] > 0


def json_replay(capsys, *argv):
    assert main(["has-gpu", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("client", [None, "open", "threadpool", "replay"])
def test_json_contract_with_each_client(tmp_path, capsys, client):
    w = stage_file(tmp_path)
    argv = ["--workload", str(w), "--system", "has", "--model", "resnet50"]
    if client:
        argv += ["--client", client]
    if client == "replay":
        sent = pd.Timestamp("2025-03-17T10:00:00") + pd.to_timedelta([0.0, 0.5, 0.75], "s")
        f = tmp_path / "has-120-50-50-15.csv"
        pd.DataFrame(
            {
                "duration": 0.1,
                "mode": "image",
                "status_code": 200,
                "success": True,
                "timestamp": [(t + pd.Timedelta(0.1, "s")).isoformat() for t in sent],
            }
        ).to_csv(f, index=False)
        argv += ["--replay", str(f)]
    d = json_replay(capsys, *argv)
    for k in ("latency_mean_s", "latency_p95_s", "gpu_share_mean", "client_s", "sent"):
        assert k in d
    assert d["client"] == (client or "threadpool")
    assert d["sent"] == (3 if client == "replay" else 60) == d["requests"]
    assert d["latency_mean_s"] > 0 and 0 < d["gpu_share_mean"] <= 1


def test_overloaded_threadpool_replay_stretches_bounds_latency_and_leaves_requests_unsent(
    tmp_path, capsys
):
    """KServe with one replica (about 11 req/s) under two 30 req/s stages: open loop the
    queue grows for the whole run; the validation client keeps at most 60 requests out,
    stretches the stages and never sends the requests its shut pool could not submit."""
    w = tmp_path / "rps.json"
    w.write_text(
        json.dumps({"parameters": {"duration": "5s"}, "processed_request_counts": [30, 30, 5]})
    )
    argv = [
        "--workload",
        str(w),
        "--system",
        "kserve",
        "--model",
        "resnet50",
        "--set",
        "autoscaler.max_scale=1",
    ]
    op = json_replay(capsys, *argv, "--client", "open")
    tp = json_replay(capsys, *argv)
    assert op["sent"] == op["requests"] == tp["requests"] == 325 and op["unsent"] == 0
    assert tp["unsent"] > 0 and tp["sent"] + tp["unsent"] == 325
    assert tp["client_s"] > 15.0 and tp["window_s"] > 15.0 == op["window_s"]
    assert tp["latency_mean_s"] < op["latency_mean_s"] / 2


def test_replay_client_needs_a_request_file(tmp_path, capsys):
    argv = [
        "has-gpu",
        "--workload",
        str(stage_file(tmp_path)),
        "--system",
        "has",
        "--model",
        "resnet50",
        "--json",
        "--client",
        "replay",
    ]
    assert main(argv) == 2
    assert "--replay FILE" in capsys.readouterr().err
