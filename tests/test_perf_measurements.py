"""The measurement schema and its loaders: small files written here, plus the real mirror."""

from __future__ import annotations

import gzip
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hasim.errors import InputError, MissingDataError
from hasim.perf.measurements import (
    ALL_COLUMNS,
    COLUMNS,
    counts_by_source,
    load_fastgshare_qps,
    load_measurements,
    load_operator_times,
    validate_measurements,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
MEAS = SHARED / "measurements"
needs_shared = pytest.mark.skipif(not MEAS.is_dir(), reason="../shared (data mirror) absent")


# --------------------------------------------------------------------------- writers


def write_rapp(d: Path, model: str = "toynet", sm: int = 50, **override: object) -> Path:
    """A RaPP graph-features file: batch 1, 2 x quota 50, 100 (latency in ms)."""
    d.mkdir(parents=True, exist_ok=True)
    entries = [
        {"batch": b, "sm": sm, "quota": q, "latency": 10.0 * b + 100.0 / q}
        for b in (1, 2)
        for q in (50, 100)
    ]
    doc: dict[str, object] = {"model_name": model, "profiling_result": entries}
    doc.update(override)
    p = d / f"{model}_{sm}.json"
    p.write_text(json.dumps(doc))
    return p


def write_runtime(d: Path, model: str = "toynet", batch: int = 1, sm: int = 30, lat: float = 7.5):
    d.mkdir(parents=True, exist_ok=True)
    doc = {
        "nn.conv2d": [1.0, 2.0, 3.0],
        "nn.relu": [0.25, 0.25],
        "nn.dense": [],
        "latency": lat,
        "batch_size": batch,
        "model_name": model,
        "sm_partition": sm,
    }
    p = d / f"{model}_{batch}_{sm}.json.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        json.dump(doc, f)
    return p


PARVA = """Mig instance,Batch size,Workload Number,Throughput,Latency
1,1,1,74.408,0.013
1,2,1,120.5,0.017
7,8,2,900.0,0.009
7,256,1,0,0
"""

BERT = """model,sm_pct,batch,quota_pct,latency_ms_mean
bert,30,4,50,92.8406
bert,30,4,100,75.1591
bert,50,4,100,71.1591
"""

MIGPROF_80 = (
    ",model_name,batch_size,latency,latency_std,throughput,start_timestamp,end_timestamp,"
    "mig_profile\n"
    """0,resnet50,1,3.5,0.1,280.0,1661684399,1661684520,7g.80gb
0,resnet50,1,9.25,0.2,108.0,1661684530,1661684651,1g.10gb
"""
)

MIGPROF_40 = (
    "model_name,total_params,seq_length,batch_size,latency,latency_std,throughput,"
    "start_timestamp,end_timestamp\n"
    """bert-base-multilingual-cased,177853440,64,1,11.17,0.08,89.53,1656800896,1656801016
bert-base-multilingual-cased,177853440,64,2,11.23,0.05,178.07,1656801026,1656801146
"""
)

QPS = """gpuName,model,quota,sm,qps
v100,resnet,0.2,100,12.37
v100,resnet,1.0,50,-1
"""


def our_table(n: int = 3, **override: object) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "gpu": ["H100"] * n,
            "model": ["resnet50"] * n,
            "batch": list(range(1, n + 1)),
            "sm_pct": [50.0] * n,
            "quota_pct": [100.0] * n,
            "mig_slice": [""] * n,
            "statistic": ["p99"] * n,
            "latency_ms": [1.5 * (k + 1) for k in range(n)],
            "source": ["calib_h100"] * n,
        }
    )
    for k, v in override.items():
        df[k] = v
    return df


# --------------------------------------------------------------------------- RaPP


def test_rapp_graph_dir(tmp_path: Path) -> None:
    d = tmp_path / "graph_features_all_models"
    write_rapp(d, sm=50)
    write_rapp(d, sm=100)
    df = load_measurements(d)
    assert list(df.columns) == list(ALL_COLUMNS)
    assert len(df) == 8
    assert set(df["source"]) == {"rapp_graph"} and set(df["gpu"]) == {"V100-16GB"}
    assert set(df["statistic"]) == {"mean"} and set(df["mig_slice"]) == {""}
    assert df["batch"].dtype == np.int64 and df["latency_ms"].dtype == np.float64
    assert set(df["sm_pct"]) == {50.0, 100.0} and set(df["quota_pct"]) == {50.0, 100.0}
    row = df[(df.batch == 2) & (df.quota_pct == 50) & (df.sm_pct == 100)]
    assert row["latency_ms"].item() == pytest.approx(22.0)
    assert (df["seq_len"] == 0).all() and (df["procs"] == 1).all()


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"profiling_result": [{"batch": 1, "sm": 50, "quota": 100, "latency": -2.0}]}, "latency"),
        ({"profiling_result": [{"batch": 1, "sm": 50, "quota": 100}]}, "latency"),
        ({"profiling_result": [{"batch": 0, "sm": 50, "quota": 100, "latency": 1.0}]}, "batch"),
        ({"profiling_result": [{"batch": 1, "sm": 50, "quota": 250, "latency": 1.0}]}, "quota"),
        ({"profiling_result": [{"batch": 1, "sm": 60, "quota": 100, "latency": 1.0}]}, "sm"),
        ({"profiling_result": "oops"}, "profiling"),
        ({"model_name": ""}, "model_name"),
    ],
)
def test_rapp_graph_malformed(tmp_path: Path, override: dict, needle: str) -> None:
    p = write_rapp(tmp_path, sm=50, **override)
    with pytest.raises(InputError) as e:
        load_measurements(p)
    msg = str(e.value)
    assert p.name in msg and needle in msg and "expected" in msg


def test_rapp_duplicate_entry(tmp_path: Path) -> None:
    entry = {"batch": 1, "sm": 50, "quota": 100, "latency": 1.0}
    p = write_rapp(tmp_path, profiling_result=[entry, dict(entry)])
    with pytest.raises(InputError, match=r"profiling_result\[1\].*twice"):
        load_measurements(p)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    p = tmp_path / "toynet_5.json"
    p.write_text('{"model_name": "toynet",\n "profiling_result": [,]}')
    with pytest.raises(InputError, match=r"toynet_5\.json:2:.*invalid JSON"):
        load_measurements(p)


def test_runtime_files_and_copies(tmp_path: Path) -> None:
    rt = tmp_path / "runtime_features"
    op = tmp_path / "op_runtime_features_all_models"
    write_runtime(rt, sm=30, lat=7.5)
    write_runtime(op, sm=30, lat=7.5)  # a byte-identical copy: kept once
    write_runtime(op, sm=60, lat=5.0)  # only here
    write_runtime(op, batch=2, sm=30, lat=9.0)
    write_runtime(rt, batch=2, sm=30, lat=9.5)  # same key, another run: both kept
    df = load_measurements(tmp_path)
    assert counts_by_source(df) == {"rapp_runtime": 2, "rapp_opruntime": 2}
    assert df.attrs["duplicates_dropped"] == 1
    assert (df["quota_pct"] == 100).all()
    one = load_measurements(op / "toynet_1_60.json.gz")
    assert one["latency_ms"].tolist() == [5.0] and one["source"].item() == "rapp_opruntime"


def test_runtime_malformed(tmp_path: Path) -> None:
    p = tmp_path / "toynet_1_30.json"
    p.write_text(json.dumps({"model_name": "toynet", "batch_size": 1, "sm_partition": 30,
                             "latency": "fast"}))  # fmt: skip
    with pytest.raises(InputError, match=r"toynet_1_30\.json: latency = 'fast'.*expected"):
        load_measurements(p)
    p.write_text(json.dumps({"model_name": "toynet", "batch_size": 2, "sm_partition": 30,
                             "latency": 1.0}))  # fmt: skip
    with pytest.raises(InputError, match="file name"):
        load_measurements(p)


def test_operator_times(tmp_path: Path) -> None:
    write_runtime(tmp_path / "op_runtime_features_all_models", sm=30)
    write_runtime(tmp_path / "runtime_features", sm=30)  # same key: op folder wins
    write_runtime(tmp_path / "runtime_features", sm=60)
    ops = load_operator_times(tmp_path)
    assert list(ops.columns) == [
        "gpu", "model", "batch", "sm_pct", "op_type", "op_index", "time_ms", "source"
    ]  # fmt: skip
    assert len(ops) == 10
    at30 = ops[ops.sm_pct == 30]
    assert set(at30["source"]) == {"rapp_opruntime"}
    conv = at30[at30.op_type == "nn.conv2d"]
    assert conv["op_index"].tolist() == [0, 1, 2] and conv["time_ms"].sum() == 6.0


# --------------------------------------------------------------------------- CSV kinds


def test_parvagpu_seconds(tmp_path: Path) -> None:
    p = tmp_path / "prof_data" / "mobilenetv2.csv"
    p.parent.mkdir()
    p.write_text(PARVA)
    df = load_measurements(p)
    assert len(df) == 3  # the 0,0 row (not run) is dropped
    assert df["latency_ms"].tolist() == pytest.approx([13.0, 17.0, 9.0])
    assert set(df["model"]) == {"mobilenet_v2"} and set(df["gpu"]) == {"A100-80GB"}
    assert df["mig_slice"].tolist() == ["1g.10gb", "1g.10gb", "7g.80gb"]
    assert df["procs"].tolist() == [1, 1, 2]
    assert df["sm_pct"].isna().all() and (df["quota_pct"] == 100).all()


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("1,1,1,74.4,13.0", "seconds"),  # milliseconds by mistake
        ("5,1,1,74.4,0.013", "Mig instance"),
        ("1,1,1,74.4,abc", "Latency"),
        ("1,1,1,74.4,0", "0,0"),
    ],
)
def test_parvagpu_malformed(tmp_path: Path, line: str, needle: str) -> None:
    p = tmp_path / "resnet50.csv"
    p.write_text(PARVA.splitlines()[0] + "\n1,1,1,74.408,0.013\n" + line + "\n")
    with pytest.raises(InputError) as e:
        load_measurements(p)
    msg = str(e.value)
    assert "resnet50.csv:3" in msg and needle in msg and "expected" in msg


def test_bert_table(tmp_path: Path) -> None:
    p = tmp_path / "bert_qt.csv"
    p.write_text(BERT)
    df = load_measurements(p)
    assert len(df) == 3 and set(df["source"]) == {"hasgpu_bert"}
    assert (df["batch"] == 4).all() and (df["seq_len"] == 384).all()
    assert df["latency_ms"].max() == pytest.approx(92.8406)


def test_bert_table_malformed(tmp_path: Path) -> None:
    p = tmp_path / "bert_qt.csv"
    p.write_text(BERT + "bert,50,4,100x,70.0\n")
    with pytest.raises(InputError, match=r"bert_qt\.csv:5.*quota_pct.*expected a finite number"):
        load_measurements(p)
    p.write_text(BERT + "bert,150,4,100,70.0\n")
    with pytest.raises(InputError, match=r"bert_qt\.csv:5.*sm_pct.*\(0, 100\]"):
        load_measurements(p)


def test_migprofiler(tmp_path: Path) -> None:
    a = tmp_path / "A100-80g" / "cv_infer.csv"
    a.parent.mkdir()
    a.write_text(MIGPROF_80)
    b = tmp_path / "A100-40g" / "bert" / "bert-base-multilingual-cased_MIG_profile_19.csv"
    b.parent.mkdir(parents=True)
    b.write_text(MIGPROF_40)
    c = b.with_name("bert_base_infer_05g_bsz.csv")  # the same runs again, merged file
    c.write_text(MIGPROF_40)
    df = load_measurements(tmp_path)
    assert counts_by_source(df) == {"migprof_40g": 2, "migprof_80g": 2}
    assert df.attrs["duplicates_dropped"] == 2
    d40 = df[df.source == "migprof_40g"]
    assert set(d40["mig_slice"]) == {"1g.5gb"} and (d40["seq_len"] == 64).all()
    assert set(df[df.source == "migprof_80g"]["mig_slice"]) == {"7g.80gb", "1g.10gb"}


def test_migprofiler_unknown_slice(tmp_path: Path) -> None:
    p = tmp_path / "lonely.csv"
    p.write_text(MIGPROF_40)  # no slice column, no telling name, no GPU folder
    with pytest.raises(InputError, match=r"lonely\.csv.*cannot tell"):
        load_measurements(p)


# --------------------------------------------------------------------------- our schema


def test_parquet_pass_through(tmp_path: Path) -> None:
    p = tmp_path / "calib.parquet"
    our_table().to_parquet(p)
    df = load_measurements(p)
    assert list(df.columns) == list(ALL_COLUMNS) and len(df) == 3
    assert set(df["statistic"]) == {"p99"} and set(df["source"]) == {"calib_h100"}
    assert (df["seq_len"] == 0).all() and (df["procs"] == 1).all()  # defaults


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"sm_pct": [50.0, 150.0, 50.0]}, "row 1: sm_pct"),
        ({"latency_ms": [1.0, 2.0, 0.0]}, "row 2: latency_ms"),
        ({"batch": [1.0, 2.5, 3.0]}, "row 1: batch"),
        ({"statistic": ["mean", "avg", "mean"]}, "row 1: statistic"),
        ({"mig_slice": ["", "half", ""]}, "row 1: mig_slice"),
        ({"sm_pct": [50.0, math.nan, 50.0]}, "row 1: sm_pct"),  # NaN needs a MIG slice
        ({"quota_pct": [100.0, 100.0, -5.0]}, "row 2: quota_pct"),
        ({"model": ["a", "", "c"]}, "row 1: model"),
    ],
)
def test_parquet_malformed(tmp_path: Path, override: dict, needle: str) -> None:
    p = tmp_path / "bad.parquet"
    our_table(**override).to_parquet(p)
    with pytest.raises(InputError) as e:
        load_measurements(p)
    msg = str(e.value)
    assert "bad.parquet" in msg and needle in msg and "expected" in msg


def test_parquet_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "bad.parquet"
    our_table().drop(columns=["quota_pct"]).to_parquet(p)
    with pytest.raises(InputError, match=r"bad\.parquet.*quota_pct.*expected the columns"):
        load_measurements(p)


def test_validate_normalises() -> None:
    df = validate_measurements(our_table(statistic=["median", "Mean", "p99.9"], mig_slice=None))
    assert df["statistic"].tolist() == ["p50", "mean", "p99.9"]
    assert df["mig_slice"].tolist() == ["", "", ""]


# --------------------------------------------------------------------------- directories


def test_mixed_directory(tmp_path: Path) -> None:
    root = tmp_path / "measurements"
    write_rapp(root / "rapp" / "graph_features_all_models", sm=50)
    write_runtime(root / "rapp" / "runtime_features")
    (root / "parva").mkdir()
    (root / "parva" / "vgg16.csv").write_text(PARVA)
    (root / "has-gpu-bert-table").mkdir()
    (root / "has-gpu-bert-table" / "bert_qt.csv").write_text(BERT)
    (root / "has-gpu-bert-table" / "README.md").write_text("# notes\n")
    (root / "fast").mkdir()
    (root / "fast" / "v100.csv").write_text(QPS)
    our_table().to_parquet(root / "calib.parquet")
    (root / "DERIVED_unified_latency.csv").write_text("source_id,gpu\nx,y\n")
    df = load_measurements(root)
    assert counts_by_source(df) == {
        "rapp_graph": 4, "rapp_runtime": 1, "hasgpu_bert": 3, "parvagpu": 3, "calib_h100": 3,
    }  # fmt: skip
    skipped = df.attrs["skipped"]
    assert any("v100.csv" in k and "load_fastgshare_qps" in v for k, v in skipped.items())
    assert any(k.endswith("README.md") for k in skipped)
    assert any("DERIVED_unified" in k for k in skipped)
    # a sub-directory loads just that kind
    assert set(load_measurements(root / "rapp" / "graph_features_all_models")["source"]) == {
        "rapp_graph"
    }


def test_unsupported_and_missing(tmp_path: Path) -> None:
    q = tmp_path / "v100.csv"
    q.write_text(QPS)
    with pytest.raises(InputError, match="load_fastgshare_qps"):
        load_measurements(q)
    with pytest.raises(MissingDataError, match="hasim data fetch"):
        load_measurements(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no latency measurement file"):
        load_measurements(empty)


def test_fastgshare_qps(tmp_path: Path) -> None:
    d = tmp_path / "internal"
    d.mkdir()
    (d / "v100.csv").write_text(QPS)
    qps = load_fastgshare_qps(tmp_path)
    assert list(qps.columns) == ["gpu", "model", "quota", "sm", "qps", "source"]
    assert len(qps) == 1  # -1 = not measured
    assert qps.iloc[0].to_dict() == {
        "gpu": "V100", "model": "resnet", "quota": 0.2, "sm": 100.0, "qps": 12.37,
        "source": "internal/v100.csv",
    }  # fmt: skip
    (d / "v100.csv").write_text(QPS + "v100,resnet,1.5,50,3.0\n")
    with pytest.raises(InputError, match=r"v100\.csv:4.*quota.*\(0, 1\]"):
        load_fastgshare_qps(d / "v100.csv")


# --------------------------------------------------------------------------- real data


@needs_shared
def test_real_rapp_graph() -> None:
    t = time.perf_counter()
    df = load_measurements(MEAS / "rapp-has-gpu-v100" / "graph_features_all_models")
    elapsed = time.perf_counter() - t
    assert len(df) == 54_928
    assert df["model"].nunique() == 69
    assert sorted(df["sm_pct"].unique()) == list(range(5, 101, 5))
    assert sorted(df["batch"].unique()) == [1, 2, 4, 8]
    assert sorted(df["quota_pct"].unique()) == list(range(10, 101, 10))
    # units: milliseconds (resnet50 at 50 % SM, full quota, batch 1: ~20 ms)
    r50 = df[(df.model == "resnet50") & (df.sm_pct == 50) & (df.batch == 1) & (df.quota_pct == 100)]
    assert 10 < r50["latency_ms"].item() < 40
    assert 1 < df["latency_ms"].median() < 200 and df["latency_ms"].max() < 5000
    assert elapsed < 10  # about 1 s here; the target is < 3 s


@needs_shared
def test_real_everything() -> None:
    df = load_measurements(MEAS)
    counts = counts_by_source(df)
    assert counts["rapp_graph"] == 54_928
    assert counts["rapp_runtime"] == 1_116
    assert counts["rapp_opruntime"] == 90  # 66 only there + 24 that differ from runtime_features
    assert counts["hasgpu_bert"] == 18
    assert counts["parvagpu"] == 1_747
    assert counts["migprof_80g"] == 124
    assert counts["migprof_40g"] == 280
    assert list(df.columns) == list(ALL_COLUMNS)
    mig = df[df.mig_slice != ""]
    assert mig["sm_pct"].isna().all() and set(mig["gpu"]) == {"A100-40GB", "A100-80GB"}
    # parvagpu converted from seconds: resnet50 batch 1 alone in 7g.80gb is a few ms
    pv = df[(df.source == "parvagpu") & (df.model == "resnet50") & (df.batch == 1)]
    pv = pv[(pv.procs == 1) & (pv.mig_slice == "7g.80gb")]
    assert 1 <= pv["latency_ms"].item() < 50
    assert not any(k.endswith(".json") for k in df.attrs["skipped"])
    assert df[list(COLUMNS)].notna().drop(columns="sm_pct").all().all()


@needs_shared
def test_real_operator_times() -> None:
    ops = load_operator_times(MEAS / "rapp-has-gpu-v100" / "op_runtime_features_all_models")
    assert ops.groupby(["model", "batch", "sm_pct"]).ngroups == 402
    assert ops["model"].nunique() == 67 and (ops["time_ms"] >= 0).all()
    lat = load_measurements(MEAS / "rapp-has-gpu-v100" / "op_runtime_features_all_models")
    per = ops.groupby(["model", "sm_pct"])["time_ms"].sum()
    e2e = lat.set_index(["model", "sm_pct"])["latency_ms"]
    ratio = (per / e2e).dropna()
    assert 0.8 < ratio.median() < 1.1  # operator shares times the end-to-end latency


@needs_shared
def test_real_fastgshare() -> None:
    qps = load_fastgshare_qps(MEAS / "fastgshare-autoscaler-qps")
    assert len(qps) == 313 and (qps["qps"] > 0).all()
    assert {"A100", "V100", "T1000", "RTX2080TI"} <= set(qps["gpu"])
