"""`hasim validate fit`: the loss, the calibration file, and the recovery of known
parameters from synthetic "real" runs that the simulator itself produced."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hasim.analysis import fit, validate

BASE = pd.Timestamp("2025-03-17T10:00:00")


def stage_file(tmp_path):
    p = tmp_path / "rps.json"
    p.write_text(
        json.dumps(
            {
                "parameters": {"duration": "5s", "function_name": "resnet50"},
                "processed_request_counts": [4, 8, 4, 6],
            }
        )
    )
    return p


def synthetic_runs(tmp_path, workload, values, names=("1-resnet", "2-resnet")):
    """HAS-GPU "real" runs: replays of ``workload`` with ``values`` set, written in the real
    runs' file layout (per-request durations with completion time stamps, 2-s usage)."""
    import hasim

    r = hasim.run(
        [
            "experiment=rps/has_resnet",
            f"workload.path={workload}",
            "sim.progress=false",
            "output.write=false",
            "output.quiet=true",
            *fit.overrides(values, "has"),
        ]
    )
    req, usage = r.requests, r.usage
    done = req[req["status"] == "completed"]
    for name in names:
        run = tmp_path / "result" / "HAS" / name
        run.mkdir(parents=True)
        stamp = BASE + pd.to_timedelta(done["arrival"] + done["latency"], unit="s")
        pd.DataFrame(
            {
                "duration": done["latency"].to_numpy(),
                "mode": "image",
                "status_code": 200,
                "success": True,
                "timestamp": [t.isoformat() for t in stamp],
            }
        ).to_csv(run / "has-120-50-50-15.csv", index=False)
        u = usage[usage["time"] < float(done["arrival"].max()) + 1e-9]
        pd.DataFrame(
            {
                "timestamp": [
                    (BASE + pd.Timedelta(seconds=float(t))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    for t in u["time"]
                ],
                "node_name": "n",
                "gpu_id": "g",
                "sm_usage": u["sm_pct_sum"].to_numpy(),
                "quota_usage": 100 * u["quota_sum"].to_numpy(),
                "pod_count": u["pods"].to_numpy(),
            }
        ).to_csv(run / "has-usage-120-50-50-15.csv", index=False)
    return tmp_path / "result"


def test_loss_is_zero_inside_the_widened_range_and_grows_outside():
    table = pd.DataFrame(
        {
            "system": "has",
            "run": ["1", "2"],
            "model": "m",
            **{f"real_{m}": [1.0, 2.0] for m in fit.METRICS},
            **{f"sim_{m}": [1.4, 1.4] for m in fit.METRICS},
        }
    )
    terms = fit.group_terms(table, {})
    assert terms["met"].all() and len(terms) == 3
    inside = fit.loss(table, {})
    assert inside == pytest.approx(3 * fit.LAMBDA * abs(math.log(1.4 / math.sqrt(2.0))))
    far = table.assign(**{f"sim_{m}": [4.0, 4.0] for m in fit.METRICS})
    assert fit.loss(far, {}) > inside + 3 + 3 * math.log(4.0 / 2.3) - 1e-9  # 3 misses
    # an excluded metric does not count
    assert (
        len(
            fit.group_terms(
                far, {("has", "1"): ("gpu_share_mean",), ("has", "2"): ("gpu_share_mean",)}
            )
        )
        == 2
    )


def test_params_scale_both_ways_and_overrides_per_system():
    for p in fit.PARAMS:
        for v in (p.low, p.start, p.high):
            assert p.from_unit(p.to_unit(v)) == pytest.approx(v, abs=1e-12)
    vals = {"overhead_s": 0.05, "overhead_held_s": 0.08, "fgs_scale_down_delay_s": 30.0}
    has = fit.overrides(vals, "has")
    assert "cluster.overhead=0.05" in has and "cluster.overhead_held_s=0.05" in has  # clipped
    assert not any("scale_down" in o for o in has)
    assert fit.overrides(vals, "fastgshare")[-1] == "autoscaler.scale_down_delay_s=30.0"
    assert fit.overrides(vals, "kserve") == []


def test_fit_recovers_a_known_overhead_from_synthetic_runs(tmp_path):
    workload = stage_file(tmp_path)
    truth = {"overhead_s": 0.098}
    results = synthetic_runs(tmp_path, workload, truth)
    chosen = [p for p in fit.PARAMS if p.name == "overhead_s"]

    def replay(vals):
        return validate.compare(
            results, workload, 0, per_system={s: fit.overrides(vals, s, chosen) for s in fit.ALL}
        )

    res = fit.fit(replay, {}, chosen, max_evals=25)
    assert res.start_loss > 0.01 and res.loss < res.start_loss / 5
    assert res.values["overhead_s"] == pytest.approx(0.098, rel=0.05)
    # leave-one-run-out: either run alone pins the same overhead
    assert len(res.loro) == 2 and np.abs(res.loro["err_latency_mean_s"]).max() < 0.05
    out = fit.write_calibration(
        tmp_path / "cal.yaml", res, ["has/1-resnet", "has/2-resnet"], {}, "test"
    )
    loaded = fit.load_calibration(out)
    assert loaded["has"] == [f"cluster.overhead={res.values['overhead_s']!r}"]
    assert loaded["kserve"] == []
    assert fit.load_calibration(tmp_path / "absent.yaml") == {}


def test_failed_requests_enter_the_loss_except_for_kserve():
    table = pd.DataFrame(
        {
            "system": ["has", "fastgshare", "kserve"],
            "run": ["1", "1", "1"],
            "model": "m",
            **{f"real_{m}": [1.0, 1.0, 1.0] for m in fit.METRICS},
            **{f"sim_{m}": [1.0, 1.0, 1.0] for m in fit.METRICS},
            "real_failed_rate": [0.0, 0.06, 0.2],
            "sim_failed_rate": [0.0, 0.16, 0.0],
        }
    )
    terms = fit.failure_terms(table).set_index("system")
    assert set(terms.index) == {"has", "fastgshare"}  # KServe's 500s are not modelled
    assert terms.loc["fastgshare", "term"] == pytest.approx(fit.FAIL_WEIGHT * 0.1)
    base = fit.loss(table.drop(columns=["real_failed_rate", "sim_failed_rate"]), {})
    assert fit.loss(table, {}) == pytest.approx(base + fit.FAIL_WEIGHT * 0.1)
