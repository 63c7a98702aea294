"""Prediction intervals: conformal bounds, coverage, the run-time file, ``--json``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hasim.errors import InputError, MissingDataError
from hasim.perf.cli import main
from hasim.perf.intervals import PACKAGED_INTERVALS, Intervals, load_intervals
from hasim.perf.offline.conformal import (
    conformal_bounds,
    coverage_share,
    cross_conformal,
    interval_report,
    intervals_from_residuals,
    log_residuals,
)
from hasim.perf.offline.evaluate import config_fold_splits, evaluate, out_of_fold
from hasim.perf.offline.tables import normalize_table, profile_mask
from hasim.perf.predictor import PredictorParams
from tests.test_perf_predictor import FAST, toy_table, write_toy_rapp


@pytest.fixture(scope="module")
def tab() -> pd.DataFrame:
    return normalize_table(toy_table(9))


# --------------------------------------------------------------------------- coverage


def test_coverage_on_a_tiny_synthetic_example() -> None:
    measured = np.array([10.0, 11.0, 9.0, 20.0, 5.0])
    low = np.array([9.5, 9.5, 9.5, 9.5, 9.5])
    high = np.array([10.5, 11.0, 10.5, 10.5, 10.5])
    # inside: 10 (yes), 11 (on the edge: yes), 9 (no), 20 (no), 5 (no)
    assert coverage_share(measured, low, high) == pytest.approx(0.4)
    assert math.isnan(coverage_share([], [], []))
    rep = interval_report([10.0, 30.0], [10.0, 10.0], [-0.1, -0.1], [0.1, 0.1], "toy")
    assert rep["coverage"] == 0.5 and rep["n"] == 2
    assert rep["mean_width"] == pytest.approx(math.exp(0.1) - math.exp(-0.1))


def test_conformal_bounds_ranks() -> None:
    r = np.arange(1.0, 20.0)  # 19 residuals 1..19
    # a = 0.05: ranks floor(20 * 0.05) = 1 and ceil(20 * 0.95) = 19
    assert conformal_bounds(r, 0.9) == (1.0, 19.0)
    # a = 0.25: ranks 5 and 15
    assert conformal_bounds(r, 0.5) == (5.0, 15.0)
    lo, hi = conformal_bounds([0.0, 1.0], 0.9)  # too few for 90 %: unbounded
    assert lo == -math.inf and hi == math.inf
    with pytest.raises(InputError):
        conformal_bounds([], 0.9)
    with pytest.raises(InputError):
        conformal_bounds(r, 1.0)


def test_conformal_coverage_holds_on_exchangeable_data() -> None:
    rng = np.random.default_rng(3)
    cal, test = rng.normal(0, 0.1, 2000), rng.normal(0, 0.1, 20000)
    lo, hi = conformal_bounds(cal, 0.9)
    assert 0.88 < coverage_share(test, lo, hi) < 0.92
    # a shifted test population is not covered: the check can fail
    assert coverage_share(test + 0.3, lo, hi) < 0.5


def test_cross_conformal_never_uses_own_group() -> None:
    r = np.array([0.0] * 50 + [5.0] * 50)
    g = np.array([0] * 50 + [1] * 50)
    lo, hi = cross_conformal(r, g, 0.8)
    assert (lo[:50] == 5.0).all() and (hi[50:] == 0.0).all()
    with pytest.raises(InputError):
        cross_conformal(r, np.zeros(100), 0.9)


def test_log_residuals_checks() -> None:
    assert log_residuals([2.0], [1.0])[0] == pytest.approx(math.log(2))
    with pytest.raises(InputError):
        log_residuals([0.0], [1.0])
    with pytest.raises(InputError):
        log_residuals([1.0, 2.0], [1.0])


# --------------------------------------------------------------------------- run-time table


def test_intervals_roundtrip_and_draws(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    iv = intervals_from_residuals(
        {"seen": rng.normal(0, 0.03, 5000), "unseen": rng.normal(0.02, 0.1, 5000)},
        ["resnet50"],
        {"artifact_sha256": "x"},
    )
    p = iv.save(tmp_path / "iv.json")
    back = load_intervals(p)
    assert back.seen_models == frozenset({"resnet50"})
    assert back.kind_of("resnet50") == "seen" and back.kind_of("mine") == "unseen"
    lo_s, hi_s = back.bounds("seen", 0.9)
    lo_u, hi_u = back.bounds("unseen", 0.9)
    assert lo_u < lo_s < 1 < hi_s < hi_u
    assert hi_s == pytest.approx(math.exp(1.645 * 0.03), rel=0.01)
    assert back.factor("resnet50", 0.95) == pytest.approx(hi_s)
    assert back.factor("mine", 0.0) == pytest.approx(math.exp(back.quantiles["unseen"][0]))
    assert back.factor("mine", 0.0) == back.factor("mine", -1.0)  # clamped
    with pytest.raises(InputError):
        Intervals([0.1, 0.9], {"seen": [1.0, 0.0]})
    with pytest.raises(InputError):
        Intervals([0.1, 0.9], {"other": [0.0, 1.0]})
    with pytest.raises(MissingDataError):
        load_intervals(tmp_path / "none.json")


def test_packaged_intervals_match_the_artifact() -> None:
    if not PACKAGED_INTERVALS.is_file():
        pytest.skip("no packaged intervals file")
    from hasim.perf.predictor import artifact_hash
    from hasim.perf.rapp import PACKAGED

    iv = load_intervals()
    assert iv.meta["artifact_sha256"] == artifact_hash(PACKAGED)
    lo_s, hi_s = iv.bounds("seen")
    lo_u, hi_u = iv.bounds("unseen")
    assert 0.5 < lo_u < lo_s < 1.0 < hi_s < hi_u < 2.0
    assert {"resnet50", "bert"} <= iv.seen_models


# --------------------------------------------------------------------------- evaluation


def test_evaluate_scores_intervals_for_every_protocol(tab: pd.DataFrame) -> None:
    params = PredictorParams(**{**FAST, "n_estimators": 15})
    tab = tab[tab.model.isin([f"toy{k}" for k in range(6)])]
    for proto, kw in (
        ("random", {}),
        ("unseen-config", {}),
        ("unseen-model", {"folds": 3}),
        ("unseen-model", {"holdout_models": ["toy2", "toy5"], "calib_folds": 2}),
    ):
        res = evaluate(tab, proto, params=params, static=None, **kw)
        iv = res.intervals
        assert iv is not None, proto
        assert 0.5 < iv["coverage"] <= 1.0 and iv["mean_width"] > 0, (proto, iv)
        assert set(iv["coverage_by_batch"]) == {f"{b:g}" for b in sorted(set(tab.batch))}
        lo = iv["mean_low"]
        assert lo < 1 < iv["mean_high"]


def test_out_of_fold_covers_each_scored_row_once(tab: pd.DataFrame) -> None:
    prof = profile_mask(tab.batch, tab.sm_pct, tab.quota_pct)
    splits = config_fold_splits(tab, 3, seed=1)
    tests = np.stack([sp.test for sp in splits])
    assert (tests.sum(axis=0) == (~prof).astype(int)).all()
    small = tab[tab.model.isin(["toy0", "toy1", "toy2", "toy3"])]
    oof = out_of_fold(small, "unseen", folds=2, params=PredictorParams(**FAST), static=None)
    assert len(oof) == int((~profile_mask(small.batch, small.sm_pct, small.quota_pct)).sum())
    assert set(oof.fold) == {0, 1}
    with pytest.raises(InputError):
        out_of_fold(small, "other", params=PredictorParams(**FAST), static=None)


def test_cli_json_prints_one_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toy_rapp(tmp_path, 6)
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path))
    base = ["evaluate", "--trees", "10", "--static", "none", "--calib-folds", "2"]
    for proto in ("random", "unseen-config", "unseen-model"):
        extra = ["--holdout-models", "toy1,toy4"] if proto == "unseen-model" else []
        assert main([*base, "--protocol", proto, *extra, "--json"]) == 0
        cap = capsys.readouterr()
        doc = json.loads(cap.out)  # stdout is exactly one JSON object
        assert isinstance(doc, dict) and doc["protocol"] == proto
        assert 0 < doc["mape_pct"] < 100 and 0 <= doc["coverage90_pct"] <= 100
        assert doc["mean_width90_pct"] > 0
        assert "MAPE by quota" in cap.err  # the report went to stderr
    # without --json: the last line stays "MAPE x%", the interval line before it
    assert main([*base, "--protocol", "unseen-model", "--holdout-models", "toy1,toy4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("MAPE ") and out[-1].endswith("%")
    assert out[-2].startswith("90% interval: coverage ")
    # --json FILE writes the same fields
    f = tmp_path / "s.json"
    assert main([*base, "--protocol", "random", "--json", str(f)]) == 0
    assert {"mape_pct", "coverage90_pct"} <= set(json.loads(f.read_text()))
    assert main([*base, "--protocol", "random", "--calib-folds", "1"]) == 1
    assert "--calib-folds" in capsys.readouterr().err


def test_cli_calibrate_intervals_on_toy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toy_rapp(tmp_path, 6)
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path))
    art = tmp_path / "art" / "m.json"
    assert main(["train", "--out", str(art), "--trees", "30", "--static", "none"]) == 0
    out = tmp_path / "iv.json"
    rc = main(
        ["calibrate-intervals", "--artifact", str(art), "--out", str(out), "--folds", "2",
         "--trees", "10", "--static", "none"]
    )  # fmt: skip
    assert rc == 0
    iv = load_intervals(out, artifact=art)
    assert iv.seen_models == {f"toy{k}" for k in range(6)}
    assert set(iv.quantiles) == {"seen", "unseen"}
    chk = iv.meta["cross_conformal_check"]
    assert 0 < chk["unseen"]["coverage90_pct"] <= 100
