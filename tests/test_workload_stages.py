"""Stepped-rate stage files (HAS-GPU rps.json layout)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hasim.errors import InputError, MissingDataError
from hasim.workload.base import Workload
from hasim.workload.stages import StagesConfig, stages_workload


def _write(tmp_path: Path, rates: list, duration: object = "2s", fn: str = "mobilenet") -> Path:
    doc = {
        "parameters": {"duration": duration, "function_name": fn},
        "processed_request_counts": rates,
    }
    p = tmp_path / "rps.json"
    p.write_text(json.dumps(doc, indent=2))
    return p


def _build(path: Path | str, **kw: object) -> Workload:
    return stages_workload(StagesConfig(path=str(path), **kw), np.random.default_rng(0))


def test_even_spacing_per_stage(tmp_path: Path) -> None:
    w = _build(_write(tmp_path, [2, 3, 0]))
    assert w.duration_s == 6.0
    (spec,) = w.functions
    assert (spec.name, spec.model, spec.slo_s) == ("mobilenet", "mobilenet_v3_large", None)
    expected = [0, 0.5, 1, 1.5] + [2 + k / 3 for k in range(6)]
    np.testing.assert_allclose(w.arrivals["mobilenet"], expected)


def test_overrides(tmp_path: Path) -> None:
    p = _write(tmp_path, [2, 3], fn="bert")
    w = _build(p, stage_s=1.0, scale=2.0, function="qa", slo=0.3)
    assert w.duration_s == 2.0
    assert w.functions[0].name == "qa" and w.functions[0].slo_s == 0.3
    assert w.total_requests == 4 + 6
    assert _build(p).functions[0].model == "bert"
    assert _build(p, model="custom").functions[0].model == "custom"
    # A fractional rate keeps 1/rate spacing across the stage.
    a = _build(p, scale=0.75, stage_s=2.0).arrivals["bert"]
    np.testing.assert_allclose(a[:4], [0, 2 / 3, 4 / 3, 2])


def test_relative_path_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    (data / "client").mkdir(parents=True)
    _write(data / "client", [1])
    monkeypatch.setenv("HASIM_TRACES_DIR", str(tmp_path / "traces"))
    monkeypatch.setenv("HASIM_DATA_DIR", str(data))
    assert _build("client/rps.json").total_requests == 2
    with pytest.raises(MissingDataError, match="hasim data fetch"):
        _build("client/absent.json")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"processed_request_counts": [1, 2,]}', ":1:36: Expecting value"),
        ('{"parameters": {}}', ": no list 'processed_request_counts'"),
        ('{"processed_request_counts": [1, -2]}', " column processed_request_counts[1]: rate -2"),
        ('{"processed_request_counts": []}', ": 'processed_request_counts' is empty"),
        (
            '{"parameters": {"duration": "5 parsecs"}, "processed_request_counts": [1]}',
            " column parameters.duration: stage duration '5 parsecs' is not understood",
        ),
    ],
)
def test_bad_files(tmp_path: Path, content: str, problem: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(InputError) as err:
        _build(p)
    assert str(err.value).startswith(f"{p}{problem}")
    assert "(expected " in str(err.value)


def test_clients(tmp_path: Path) -> None:
    p = _write(tmp_path, [2, 3, 0])
    opened = _build(p)
    assert opened.clients == {} and opened.meta["client"] == "open"
    tp = _build(p, client="threadpool", workers_per_rps=1.5, unsent_hold_s=0.2, lead_s=3.0)
    c = tp.clients["mobilenet"]
    assert (c.rates, c.stage_s, c.start_s, c.workers_per_rps, c.unsent_hold_s) == (
        (2.0, 3.0, 0.0),
        2.0,
        3.0,
        1.5,
        0.2,
    )
    assert c.total == tp.total_requests == 10 and tp.duration_s == 9.0
    # the schedule the client would follow with instant answers: the open one, shifted
    np.testing.assert_allclose(tp.arrivals["mobilenet"], 3.0 + opened.arrivals["mobilenet"])
    with pytest.raises(InputError, match="workload.client = 'closed'"):
        _build(p, client="closed")
    with pytest.raises(InputError, match="workload.replay = None"):
        _build(p, client="replay")
    with pytest.raises(InputError, match="replay request file not found"):
        _build(p, client="replay", replay=str(tmp_path / "absent.csv"))


def test_replay_client_sends_at_the_run_s_send_times(tmp_path: Path) -> None:
    p = _write(tmp_path, [2, 3])
    f = tmp_path / "run.csv"
    f.write_text(
        "duration,mode,status_code,success,timestamp\n"
        "0.2,image,200,True,2025-03-17T01:00:00.300000\n"
        "0.1,image,200,True,2025-03-17T01:00:01.100000\n"
    )
    w = _build(p, client="replay", replay=str(f), lead_s=2.0)
    np.testing.assert_allclose(w.arrivals["mobilenet"], [2.0, 2.9])
    assert w.duration_s == pytest.approx(2.0 + 1.0) and w.clients == {}
