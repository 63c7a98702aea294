"""Evaluation protocols (splits never leak), error reports and the ``hasim perf`` CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hasim.errors import InputError
from hasim.perf.cli import main
from hasim.perf.offline.evaluate import (
    check_split,
    config_split,
    error_report,
    evaluate,
    format_report,
    model_folds,
    model_split,
    plot_predictions,
    random_split,
)
from hasim.perf.offline.tables import normalize_table, profile_mask
from hasim.perf.predictor import PredictorParams
from tests.test_perf_predictor import FAST, toy_table, write_toy_rapp

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (data mirror) absent")
MAPE_LINE = re.compile(r"^MAPE \d+(\.\d+)?%$")


@pytest.fixture(scope="module")
def tab() -> pd.DataFrame:
    return normalize_table(toy_table(9))


# --------------------------------------------------------------------------- splits


def test_random_split_fractions_and_no_leak(tab: pd.DataFrame) -> None:
    sp = random_split(tab, seed=3)
    check_split(tab, sp)
    assert sp.val is not None
    parts = sp.train.astype(int) + sp.test.astype(int) + sp.val.astype(int)
    assert (parts == 1).all()
    assert sp.test.sum() == round(0.05 * len(tab)) and sp.val.sum() == round(0.10 * len(tab))
    prof = profile_mask(tab.batch, tab.sm_pct, tab.quota_pct)
    assert sp.train[prof].all()
    assert not np.array_equal(sp.test, random_split(tab, seed=4).test)
    assert np.array_equal(sp.test, random_split(tab, seed=3).test)


def test_config_split_holds_out_whole_configurations(tab: pd.DataFrame) -> None:
    sp = config_split(tab, seed=1)
    check_split(tab, sp)
    prof = profile_mask(tab.batch, tab.sm_pct, tab.quota_pct)
    key = ["model", "sm_pct", "quota_pct"]
    held = set(map(tuple, tab.loc[sp.test, key].to_numpy()))
    train_conf = set(map(tuple, tab.loc[sp.train & ~prof, key].to_numpy()))
    assert held and not held & train_conf
    # every batch of a held configuration is held (bar the profile cells)
    for m, s, q in list(held)[:20]:
        rows = (tab.model == m) & (tab.sm_pct == s) & (tab.quota_pct == q) & ~prof
        assert sp.test[rows.to_numpy()].all()
    # different models hold out different configurations
    per_model = (
        tab.loc[sp.test]
        .groupby("model")
        .apply(lambda d: frozenset(zip(d.sm_pct, d.quota_pct, strict=True)), include_groups=False)
    )
    assert per_model.nunique() > 1
    share = tab.loc[sp.test].groupby("model").size() / tab.groupby("model").size()
    assert share.between(0.08, 0.2).all()


def test_model_folds_cover_each_model_once(tab: pd.DataFrame) -> None:
    models = sorted(tab.model.unique())
    folds = model_folds(models, 4, seed=2)
    flat = [m for f in folds for m in f]
    assert sorted(flat) == models and len(set(flat)) == len(flat)
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for grp in folds:
        sp = model_split(tab, grp)
        check_split(tab, sp)
        assert not set(tab.model[sp.train]) & set(grp)
        assert set(tab.model[sp.test]) == set(grp)
    with pytest.raises(InputError):
        model_folds(models, 1)


def test_check_split_catches_leaks(tab: pd.DataFrame) -> None:
    sp = model_split(tab, ["toy1"])
    sp.train = sp.train | (tab.model == "toy1").to_numpy()
    with pytest.raises(AssertionError):
        check_split(tab, sp)
    sp = config_split(tab, seed=0)
    sp.train = sp.train | sp.test
    with pytest.raises(AssertionError):
        check_split(tab, sp)


# --------------------------------------------------------------------------- reports


def test_error_report() -> None:
    t = pd.DataFrame(
        {
            "model": ["a", "a", "b", "b"],
            "batch": [1, 2, 1, 2],
            "sm_pct": [10.0, 10.0, 50.0, 50.0],
            "quota_pct": [100.0, 50.0, 100.0, 50.0],
            "latency_ms": [10.0, 10.0, 20.0, 20.0],
        }
    )
    r = error_report(t, np.array([11.0, 9.0, 20.0, 30.0]))
    assert r["mape"] == pytest.approx((0.1 + 0.1 + 0 + 0.5) / 4)
    assert r["by_model"] == pytest.approx({"a": 0.1, "b": 0.25})
    assert r["by_quota"]["50"] == pytest.approx(0.3)
    assert r["median_ape"] == pytest.approx(0.1)


def test_protocols_run_on_toy(tab: pd.DataFrame, tmp_path: Path) -> None:
    params = PredictorParams(**FAST)
    for proto in ("random", "unseen-config", "unseen-model"):
        res = evaluate(tab, proto, params=params, static=None, folds=3)
        assert 0 < res.mape < 0.3
        assert len(res.folds) == (3 if proto == "unseen-model" else 1)
        assert any(line.startswith("MAPE by quota") for line in format_report(res))
    res = evaluate(tab, "unseen-model", params=params, static=None, holdout_models=["toy2"])
    assert set(res.predictions.model) == {"toy2"}
    png = plot_predictions(res, tmp_path / "p.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError):
        evaluate(tab, "unseen-model", holdout_models=["nope"], static=None)
    with pytest.raises(InputError):
        evaluate(tab, "bogus", static=None)


# --------------------------------------------------------------------------- CLI


def test_cli_evaluate_and_train_on_toy_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toy_rapp(tmp_path, 6)
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path))
    rc = main(
        ["evaluate", "--protocol", "unseen-model", "--folds", "3", "--trees", "30",
         "--static", "none", "--plot", str(tmp_path / "p.png")]
    )  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and MAPE_LINE.match(out[-1]), out[-1]
    assert (tmp_path / "p.png").is_file()
    art = tmp_path / "art" / "m.json"
    rc = main(["train", "--out", str(art), "--trees", "30", "--static", "none"])
    assert rc == 0 and art.is_file()
    from hasim.perf.rapp import RaPPConfig, RaPPLatency

    m = RaPPLatency(RaPPConfig(artifact=str(art), cache_dir=str(tmp_path / "c")))
    assert m.knows("toy0") and m.mean_latency_s("toy0", 2, 40, 0.5) > 0


def test_cli_missing_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path / "empty"))
    assert main(["evaluate", "--protocol", "random"]) == 1
    err = capsys.readouterr().err
    assert "missing data file" in err and "hasim data fetch" in err
    assert main(["evaluate", "--protocol", "random", "--holdout-models", "a"]) == 1


@needs_shared
@pytest.mark.parametrize("protocol", ["random", "unseen-config", "unseen-model"])
def test_cli_real_data_subset(protocol: str, capsys: pytest.CaptureFixture[str]) -> None:
    models = "resnet18,resnet34,resnet50,resnet101,vgg16,densenet121,mobilenet_v2,alexnet"
    args = ["evaluate", "--protocol", protocol, "--data", str(SHARED), "--models", models,
            "--trees", "60"]  # fmt: skip
    if protocol == "unseen-model":
        args += ["--holdout-models", "resnet50,vgg16"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert MAPE_LINE.match(out[-1]), out[-1]
    assert float(out[-1].split()[1].rstrip("%")) < 30
