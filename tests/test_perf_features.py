"""Model features (committed CSV), GPU datasheet features and the RaPP prior profile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hasim.errors import InputError
from hasim.perf.measurements import load_measurements
from hasim.perf.offline.features import (
    FEATURE_COLUMNS,
    FEATURES_CSV,
    PROFILE_CELLS,
    gpu_features,
    known_gpus,
    model_features,
    prior_profile,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
RAPP_DIR = SHARED / "measurements" / "rapp-has-gpu-v100" / "graph_features_all_models"
needs_shared = pytest.mark.skipif(not RAPP_DIR.is_dir(), reason="../shared (data mirror) absent")
COMPACT = Path(__file__).resolve().parents[1] / "hasim" / "perf" / "data" / "compact_v100.json"


def rapp_models() -> set[str]:
    """The 69 RaPP model names (from the packaged compact coefficients, minus bert)."""
    names = set(json.loads(COMPACT.read_text())["models"]) - {"bert"}
    assert len(names) == 69
    return names


# --------------------------------------------------------------------------- model features


def test_features_cover_rapp_models_and_bert() -> None:
    mf = model_features()
    assert list(mf.columns) == list(FEATURE_COLUMNS)
    assert set(mf["model"]) == rapp_models() | {"bert"}
    assert len(mf) == 70 and mf["model"].is_unique
    assert (mf["macs"] > 0).all() and (mf["params"] > 0).all()
    assert (mf["activation_bytes"] > 0).all() and (mf["depth"] > 0).all()
    assert (mf["flops"] == 2 * mf["macs"]).all()
    assert (mf["param_bytes"] == 4 * mf["params"]).all()
    assert (mf["n_conv"] >= mf["n_conv_depthwise"] + mf["n_conv_grouped"]).all()


def test_features_known_figures() -> None:
    mf = model_features().set_index("model")
    r50 = mf.loc["resnet50"]
    assert r50["params"] == 25_557_032
    assert r50["macs"] == pytest.approx(4.09e9, rel=0.01)
    assert (r50["n_conv"], r50["n_bn"], r50["n_linear"], r50["n_add"]) == (53, 53, 1, 16)
    bert = mf.loc["bert"]
    assert bert["params"] == 334_094_338 and bert["input_shape"] == "1x384"
    assert bert["n_attention"] == bert["n_softmax"] == 24
    assert bert["macs"] == pytest.approx(123.2e9, rel=0.01)
    assert mf.loc["regnet_y_128gf", "macs"] == pytest.approx(127.5e9, rel=0.01)
    assert mf.loc["efficientnet_b0", "n_conv_depthwise"] == 16
    assert mf.loc["densenet121", "n_cat"] > 0 and mf.loc["maxvit_t", "n_attention"] > 0


def test_features_copy_and_bad_file(tmp_path: Path) -> None:
    a = model_features()
    a.loc[0, "macs"] = -1
    assert (model_features()["macs"] > 0).all()  # callers get copies
    bad = tmp_path / "f.csv"
    df = pd.read_csv(FEATURES_CSV)
    df.loc[3, "params"] = -5
    df.to_csv(bad, index=False)
    with pytest.raises(InputError, match=r"f\.csv:5.*params"):
        model_features(bad)
    df.drop(columns=["macs"]).to_csv(bad, index=False)
    with pytest.raises(InputError, match="missing column.*macs"):
        model_features(bad)


def test_provenance_note_exists() -> None:
    note = FEATURES_CSV.with_suffix(".md").read_text()
    assert "torchvision 0.29.1" in note and "torch 2.14.1" in note and "BSD-3" in note


# --------------------------------------------------------------------------- GPUs


def test_gpu_features() -> None:
    for name in ("V100-16GB", "A100-40GB", "A100-80GB", "H100"):
        g = gpu_features(name)
        assert g["name"] == name
        for key in ("sm_count", "peak_fp32_tflops", "mem_bandwidth_gbs", "memory_gb"):
            assert g[key] > 0
    assert gpu_features("v100")["sm_count"] == 80
    assert (
        gpu_features("a100-80gb")["mem_bandwidth_gbs"]
        > gpu_features("A100-40GB")["mem_bandwidth_gbs"]
    )
    assert gpu_features("H100")["sm_count"] == 132
    assert set(known_gpus()) >= {"V100-16GB", "A100-40GB", "A100-80GB", "H100"}
    g = gpu_features("H100")
    g["sm_count"] = 1
    assert gpu_features("H100")["sm_count"] == 132
    assert gpu_features("A100")["name"] == "A100-40GB"  # the cluster configs' old spelling
    with pytest.raises(InputError, match="unknown GPU 'TPU'"):
        gpu_features("TPU")


# --------------------------------------------------------------------------- prior profile


def toy_table(model: str = "m", source: str = "s1", gpu: str = "V100-16GB") -> pd.DataFrame:
    rows = []
    for sm in (5, 10, 30, 60, 80, 100):
        rows.append((1, sm, 100, 10.0 + 100.0 / sm))
    for q in (20, 40, 60, 80, 100):
        rows.append((4, 100, q, 20.0 * 100.0 / q))
    rows.append((2, 50, 50, 99.0))  # not part of the profile
    b, s, q, lat = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "gpu": gpu, "model": model, "batch": b, "sm_pct": np.asarray(s, dtype=float),
            "quota_pct": np.asarray(q, dtype=float), "mig_slice": "", "statistic": "mean",
            "latency_ms": lat, "source": source, "seq_len": 0, "procs": 1,
        }
    )  # fmt: skip


def test_prior_profile_values() -> None:
    p = prior_profile(toy_table(), "m")
    assert list(p) == [c[0] for c in PROFILE_CELLS] and len(p) == 11
    assert p["lat_ms_b1_sm5_q100"] == pytest.approx(30.0)
    assert p["lat_ms_b1_sm100_q100"] == pytest.approx(11.0)
    assert p["lat_ms_b4_sm100_q20"] == pytest.approx(100.0)
    assert p["lat_ms_b4_sm100_q100"] == pytest.approx(20.0)


def test_prior_profile_missing_cells_and_sources() -> None:
    t = toy_table()
    t = t[~((t.batch == 1) & (t.sm_pct == 10))]
    p = prior_profile(t, "m")
    assert math.isnan(p["lat_ms_b1_sm10_q100"]) and sum(math.isnan(v) for v in p.values()) == 1
    # a second, smaller source for the same model is ignored unless asked for
    other = toy_table(source="s2").iloc[:3].assign(latency_ms=1.0)
    both = pd.concat([toy_table(), other], ignore_index=True)
    assert prior_profile(both, "m")["lat_ms_b1_sm5_q100"] == pytest.approx(30.0)
    assert prior_profile(both, "m", source="s2")["lat_ms_b1_sm5_q100"] == 1.0
    # repeated cells are averaged; MIG rows and other statistics are ignored
    rep = pd.concat([toy_table(), toy_table().assign(latency_ms=lambda d: d.latency_ms + 2)])
    assert prior_profile(rep, "m")["lat_ms_b1_sm100_q100"] == pytest.approx(12.0)
    mig = toy_table().assign(mig_slice="1g.10gb", latency_ms=1e6)
    p99 = toy_table().assign(statistic="p99", latency_ms=1e6)
    assert prior_profile(pd.concat([toy_table(), mig, p99]), "m") == prior_profile(toy_table(), "m")


def test_prior_profile_errors() -> None:
    with pytest.raises(InputError, match="model 'x'"):
        prior_profile(toy_table(), "x")
    two = pd.concat([toy_table(), toy_table(gpu="H100")], ignore_index=True)
    with pytest.raises(InputError, match="several GPUs"):
        prior_profile(two, "m")
    assert prior_profile(two, "m", gpu="h100")["lat_ms_b1_sm5_q100"] == pytest.approx(30.0)
    with pytest.raises(InputError, match="lacks column"):
        prior_profile(toy_table().drop(columns=["quota_pct"]), "m")


@needs_shared
def test_prior_profile_real_rapp() -> None:
    table = load_measurements(RAPP_DIR)
    for model in ("resnet50", "alexnet", "regnet_y_128gf"):
        p = prior_profile(table, model)
        assert len(p) == 11 and all(0 < v < 5000 for v in p.values())
    p = prior_profile(table, "resnet50")
    assert p["lat_ms_b4_sm100_q20"] > p["lat_ms_b4_sm100_q100"]  # throttled at low quota
    big = prior_profile(table, "regnet_y_128gf")
    assert big["lat_ms_b1_sm5_q100"] > 5 * big["lat_ms_b1_sm100_q100"]  # compute-bound
