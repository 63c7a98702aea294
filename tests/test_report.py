"""`hasim report`: runs collected into runs.parquet and the figures written."""

from __future__ import annotations

import pandas as pd
import pytest

import hasim
from hasim.analysis.report import main, pareto

FIGURES = ("frontier", "latency_cdf", "timeline", "actions", "load")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    base = ["workload.duration=30", "sim.progress=false", "output.quiet=true", f"output.dir={tmp}"]
    hasim.run([*base, "run=a"])
    hasim.run([*base, "autoscaler=has", "run=b"])
    return tmp


def test_report_collects_runs_and_writes_figures(results, capsys):
    out = results / "rep"
    assert main([str(results), "--out", str(out)]) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 2
    for col in ("path", "experiment", "run", "autoscaler", "workload", "perf", "cluster.gpu",
                "seed", "requests_total", "latency_p95_s", "slo_violation_rate",
                "cost_gpu_seconds"):
        assert col in runs.columns, col
    assert sorted(runs["run"]) == ["a", "b"]
    assert set(runs["experiment"]) == {"default"}
    assert "has" in set(runs["autoscaler"])
    assert runs["cluster.gpu"].notna().all()
    for name in FIGURES:
        for ext in ("png", "svg"):
            p = out / f"{name}.{ext}"
            assert p.is_file() and p.stat().st_size > 0, p
    text = capsys.readouterr().out
    assert "runs.parquet" in text and "default" in text


def test_report_timeline_choice_and_skips(results, capsys):
    out = results / "rep2"
    (results / "default" / "b" / "actions.parquet").rename(results / "actions.bak")
    try:
        assert main([str(results), "--out", str(out), "--timeline", "default/b"]) == 0
    finally:
        (results / "actions.bak").rename(results / "default" / "b" / "actions.parquet")
    text = capsys.readouterr().out
    assert "skipped actions" in text
    assert (out / "timeline.png").stat().st_size > 0
    assert not (out / "actions.png").exists()


def test_report_no_run_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(tmp_path), "--timeline", "x"]) == 2


def test_pareto():
    import numpy as np

    pts = np.array([[1.0, 0.5], [2.0, 0.2], [3.0, 0.3], [0.5, 0.9]])
    assert pareto(pts).tolist() == [[0.5, 0.9], [1.0, 0.5], [2.0, 0.2]]
