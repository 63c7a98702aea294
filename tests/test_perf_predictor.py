"""The learned latency predictor, its artifact and the ``rapp`` LatencyModel."""

from __future__ import annotations

import json
import math
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hasim.errors import InputError
from hasim.perf.base import LatencyModel
from hasim.perf.offline.tables import extract_profiles, normalize_table, profile_mask
from hasim.perf.predictor import (
    FORMAT,
    PROFILE_QUOTA,
    PROFILE_SM,
    LatencyPredictor,
    PredictorParams,
    PriorProfile,
    family_code,
    model_file,
)
from hasim.perf.rapp import (
    PACKAGED,
    QUOTA_GRID,
    RaPPConfig,
    RaPPLatency,
    build,
    ordered,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (data mirror) absent")

TOY_SM = (5, 10, 20, 30, 50, 60, 80, 100)
TOY_B = (1, 2, 4, 8)
TOY_Q = tuple(range(10, 101, 10))
FAST = {"n_estimators": 40, "num_leaves": 15, "min_data_in_leaf": 5, "anchors": ("full",)}


def toy_law(k: int, b: float, s: float, q: float) -> float:
    """A max(GPU phase, quota phase) law per toy model ``k`` (ms), with a fixed wobble."""
    a, kk, h = 2.0 + k, 40.0 * (1 + k % 3), 3.0 + 2.0 * k
    g = max(4.0 + k, a + kk * b / s)
    qp = h / (q / 100 - 0.03)
    wobble = 1.0 + 0.02 * math.sin(7 * k + b + s / 7 + q / 11)
    return max(g, qp) * wobble


def toy_table(n_models: int = 8) -> pd.DataFrame:
    rows = [
        ("V100-16GB", f"toy{k}", b, s, q, toy_law(k, b, s, q), "toy")
        for k in range(n_models)
        for b, s, q in product(TOY_B, TOY_SM, TOY_Q)
    ]
    cols = ["gpu", "model", "batch", "sm_pct", "quota_pct", "latency_ms", "source"]
    return pd.DataFrame(rows, columns=cols)


def write_toy_rapp(root: Path, n_models: int = 6) -> Path:
    """A RaPP-like folder (<model>_<sm>.json) with the toy law."""
    d = root / "measurements" / "rapp-has-gpu-v100" / "graph_features_all_models"
    d.mkdir(parents=True, exist_ok=True)
    for k in range(n_models):
        for s in TOY_SM:
            res = [
                {"batch": b, "sm": s, "quota": q, "latency": toy_law(k, b, s, q)}
                for b, q in product(TOY_B, TOY_Q)
            ]
            doc = {"model_name": f"toy{k}", "profiling_result": res}
            (d / f"toy{k}_{s}.json").write_text(json.dumps(doc))
    return d


@pytest.fixture(scope="module")
def toy() -> pd.DataFrame:
    return toy_table()


@pytest.fixture(scope="module")
def fitted(toy: pd.DataFrame) -> LatencyPredictor:
    return LatencyPredictor(PredictorParams(**FAST)).fit(toy, static=None)


# --------------------------------------------------------------------------- tables, profiles


def test_profile_mask_and_extraction(toy: pd.DataFrame) -> None:
    mask = profile_mask(toy.batch, toy.sm_pct, toy.quota_pct)
    assert mask.sum() == 11 * toy.model.nunique()
    prof = extract_profiles(normalize_table(toy))
    p = prof[("V100-16GB", "toy3")]
    assert p.sm_curve == pytest.approx([toy_law(3, 1, s, 100) for s in PROFILE_SM])
    assert p.quota_curve == pytest.approx([toy_law(3, 4, 100, q) for q in PROFILE_QUOTA])
    assert p.note == ""


def test_missing_profile_point_uses_nearest_cell(toy: pd.DataFrame) -> None:
    t = toy[
        ~((toy.model == "toy1") & (toy.batch == 1) & (toy.sm_pct == 30) & (toy.quota_pct == 100))
    ]
    p = extract_profiles(normalize_table(t))[("V100-16GB", "toy1")]
    assert "1 point" in p.note and all(v > 0 for v in p.sm_curve)


def test_normalize_filters_other_statistics_and_mig(toy: pd.DataFrame) -> None:
    t = toy.assign(statistic="mean", mig_slice="")
    extra = t.iloc[:3].assign(statistic="p99")
    mig = t.iloc[:3].assign(mig_slice="1g.10gb")
    n = normalize_table(pd.concat([t, extra, mig]))
    assert len(n) == len(toy)
    with pytest.raises(InputError, match="lacks columns"):
        normalize_table(toy.drop(columns=["latency_ms"]))


def test_bad_profile_rejected() -> None:
    with pytest.raises(InputError):
        PriorProfile("m", "V100-16GB", (1.0,) * 5, (1.0,) * 5)
    with pytest.raises(InputError):
        PriorProfile("m", "V100-16GB", (1.0,) * 6, (1.0, 1.0, 1.0, 1.0, -2.0))


# --------------------------------------------------------------------------- fit / predict


def test_deterministic_for_a_seed(toy: pd.DataFrame, fitted: LatencyPredictor) -> None:
    again = LatencyPredictor(PredictorParams(**FAST)).fit(toy, static=None)
    assert fitted.booster.model_to_string() == again.booster.model_to_string()
    other = LatencyPredictor(PredictorParams(**FAST, seed=7)).fit(toy, static=None)
    x = (toy.model, toy.batch, toy.sm_pct, toy.quota_pct / 100)
    assert np.array_equal(fitted.predict(*x), again.predict(*x))
    assert not np.array_equal(fitted.predict(*x), other.predict(*x))


def test_fits_the_toy_law(toy: pd.DataFrame, fitted: LatencyPredictor) -> None:
    pred = fitted.predict(toy.model, toy.batch, toy.sm_pct, toy.quota_pct / 100)
    assert np.mean(np.abs(pred / toy.latency_ms - 1)) < 0.05


def test_unseen_toy_model_from_its_profile(toy: pd.DataFrame) -> None:
    prof = extract_profiles(normalize_table(toy))
    p = LatencyPredictor(PredictorParams(**FAST)).fit(
        toy[toy.model != "toy5"], profiles=prof, static=None
    )
    held = toy[(toy.model == "toy5") & ~profile_mask(toy.batch, toy.sm_pct, toy.quota_pct)]
    pred = p.predict(held.model, held.batch, held.sm_pct, held.quota_pct / 100)
    assert np.mean(np.abs(pred / held.latency_ms - 1)) < 0.15


def test_predict_shapes_and_errors(fitted: LatencyPredictor) -> None:
    one = fitted.predict("toy0", 4, 30.0, 0.5)
    assert np.shape(one) == () and float(one) > 0
    grid = fitted.predict("toy0", np.array([[1], [2]]), np.array([10.0, 50.0, 100.0]), 1.0)
    assert grid.shape == (2, 3)
    pct = fitted.predict("toy0", 4, 30.0, 50.0, quota_in_percent=True)
    assert float(pct) == float(one)
    with pytest.raises(InputError, match="no prior profile"):
        fitted.predict("gpt-5", 1, 50, 1.0)
    with pytest.raises(InputError, match="not trained"):
        LatencyPredictor().predict("toy0", 1, 50, 1.0)
    # a new model: its profile is enough
    new = PriorProfile(
        "newnet",
        "V100-16GB",
        tuple(toy_law(9, 1, s, 100) for s in PROFILE_SM),
        tuple(toy_law(9, 4, 100, q) for q in PROFILE_QUOTA),
    )
    fitted.add_profile(new)
    assert fitted.knows("newnet") and float(fitted.predict("newnet", 2, 40, 0.5)) > 0
    del fitted.profiles[("V100-16GB", "newnet")]
    fitted._index()


def test_static_features_are_pluggable(toy: pd.DataFrame) -> None:
    static = pd.DataFrame(
        {
            "model": [f"toy{k}" for k in range(8)],
            "macs": [1e9 * (k + 1) for k in range(8)],
            "kernel_ops": [50 + 10 * k for k in range(8)],
        }
    )
    p = LatencyPredictor(PredictorParams(**FAST)).fit(toy, static=static)
    assert "st_log_macs" in p.feature_names and "st_host_per_op" in p.feature_names
    q = LatencyPredictor(PredictorParams(**FAST)).fit(toy, static=None)
    assert not any(n.startswith("st_") for n in q.feature_names)


def test_family_feature_is_categorical(toy: pd.DataFrame) -> None:
    static = pd.DataFrame(
        {
            "model": [f"toy{k}" for k in range(8)],
            "macs": [1e9 * (k + 1) for k in range(8)],
            "family": ["vgg", "vgg", "resnet", "resnet", "regnet_y", "regnet_y", "vit", ""],
        }
    )
    assert family_code("ResNet ") == family_code("resnet") == 14.0
    assert math.isnan(family_code("")) and math.isnan(family_code("a"))
    p = LatencyPredictor(PredictorParams(**FAST, use_family=True)).fit(toy, static=static)
    assert "st_family" in p.feature_names
    X, _ = p.features("toy7", 1, 50, 100)
    assert math.isnan(X["st_family"].iloc[0])  # no family: missing, not a category
    q = LatencyPredictor(PredictorParams(**FAST, use_family=False)).fit(toy, static=static)
    assert "st_family" not in q.feature_names


def test_bagged_boosters_average(toy: pd.DataFrame, tmp_path: Path) -> None:
    p = LatencyPredictor(PredictorParams(**FAST, n_boosters=3)).fit(toy, static=None)
    assert len(p.booster.boosters) == 3
    X, lbase = p.features(toy.model, toy.batch, toy.sm_pct, toy.quota_pct)
    each = [b.predict(X) for b in p.booster.boosters]
    got = p.predict(toy.model, toy.batch, toy.sm_pct, toy.quota_pct / 100)
    assert np.allclose(np.log(got), np.mean(each, axis=0) + lbase)
    assert not np.array_equal(each[0], each[1])  # different seeds
    back = LatencyPredictor.load(p.save(tmp_path / "bag.json"))
    assert np.array_equal(back.predict("toy1", 2, 40, 0.5), p.predict("toy1", 2, 40, 0.5))


def test_anchor_boosters_average_in_log_space(toy: pd.DataFrame, tmp_path: Path) -> None:
    """One booster per anchor, each correcting its own estimate; the prediction is the
    mean of (anchor + correction) in log space, and it survives save / load."""
    from hasim.perf.predictor import ANCHORS

    kw = FAST | {"anchors": ("full", "gpu", "quota"), "n_boosters": 2}
    p = LatencyPredictor(PredictorParams(**kw)).fit(toy, static=None)
    assert len(p.booster.boosters) == 6 and p.booster.anchor_of == [0, 0, 1, 1, 2, 2]
    X, _ = p.features(toy.model, toy.batch, toy.sm_pct, toy.quota_pct)
    logs = [ANCHORS[a](X) for a in kw["anchors"]]
    pairs = zip(p.booster.boosters, p.booster.anchor_of, strict=True)
    each = [b.predict(X) + logs[a] for b, a in pairs]
    got = p.predict(toy.model, toy.batch, toy.sm_pct, toy.quota_pct / 100)
    assert np.allclose(np.log(got), np.mean(each, axis=0))
    assert not np.allclose(logs[0], logs[1])  # the anchors differ on this table
    back = LatencyPredictor.load(p.save(tmp_path / "anchors.json"))
    assert back.params.anchors == kw["anchors"]
    assert np.array_equal(back.predict("toy1", 2, 40, 0.5), p.predict("toy1", 2, 40, 0.5))
    with pytest.raises(InputError, match="anchors"):
        PredictorParams(anchors=("full", "nope"))


def test_reads_single_model_files(tmp_path: Path, fitted: LatencyPredictor) -> None:
    """Artifacts written before bagging (format .../1, one ``lightgbm_model``) still load."""
    import gzip
    import hashlib

    path = fitted.save(tmp_path / "v1.json")
    text = fitted.booster.boosters[0].model_to_string(num_iteration=-1)
    with gzip.GzipFile(model_file(path), "wb") as f:
        f.write(
            json.dumps({"format": "hasim-perf-predictor-lgbm/1", "lightgbm_model": text}).encode()
        )
    doc = json.loads(path.read_text())
    doc["model_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    path.write_text(json.dumps(doc))
    back = LatencyPredictor.load(path)
    assert float(back.predict("toy0", 4, 30, 0.5)) == float(fitted.predict("toy0", 4, 30, 0.5))


# --------------------------------------------------------------------------- artifact


def test_artifact_round_trip(tmp_path: Path, toy: pd.DataFrame, fitted: LatencyPredictor) -> None:
    path = fitted.save(tmp_path / "art.json", {"note": "toy"})
    assert model_file(path).is_file()
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["metrics"] == {"note": "toy"}
    for key in ("hyperparameters", "features", "profiles", "training", "model_sha256"):
        assert key in doc
    assert doc["hyperparameters"]["seed"] == 0 and doc["training"]["trained"]
    back = LatencyPredictor.load(path)
    x = (toy.model, toy.batch, toy.sm_pct, toy.quota_pct / 100)
    assert np.array_equal(back.predict(*x), fitted.predict(*x))
    assert back.feature_names == fitted.feature_names
    assert back.profiles == fitted.profiles


def test_artifact_errors(tmp_path: Path, fitted: LatencyPredictor) -> None:
    path = fitted.save(tmp_path / "a.json")
    doc = json.loads(path.read_text())
    doc["model_sha256"] = "0" * 64
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps(doc))
    model_file(bad).write_bytes(model_file(path).read_bytes())
    with pytest.raises(InputError, match="sha256"):
        LatencyPredictor.load(bad)
    (tmp_path / "c.json").write_text('{"format": "nope"}')
    with pytest.raises(InputError, match="format"):
        LatencyPredictor.load(tmp_path / "c.json")
    with pytest.raises(FileNotFoundError):
        LatencyPredictor.load(tmp_path / "missing.json")


# --------------------------------------------------------------------------- the rapp LatencyModel


@pytest.fixture(scope="module")
def toy_artifact(tmp_path_factory: pytest.TempPathFactory, fitted: LatencyPredictor) -> Path:
    return fitted.save(tmp_path_factory.mktemp("art") / "toy.json")


def test_rapp_model_lookup_equals_predictor(toy_artifact: Path, tmp_path: Path) -> None:
    cfg = RaPPConfig(artifact=str(toy_artifact), cache_dir=str(tmp_path))
    m = build(cfg)
    assert isinstance(m, LatencyModel) and m.name == "rapp" and m.knows("toy2")
    assert not m.knows("gpt-5") and m.models == [f"toy{k}" for k in range(8)]
    pred = m.predictor
    for b, s, q in [(1, 5, 0.1), (4, 30, 0.3), (8, 100, 1.0), (16, 1, 0.05), (3, 77, 0.65)]:
        want = float(pred.predict("toy2", b, s, q)) / 1000
        assert m.mean_latency_s("toy2", b, s, q) == pytest.approx(want, rel=1e-12)
    # between grid points: interpolation in 1/s and 1/q, within the neighbours
    v = m.latency_ms("toy2", 4, 33.5, 0.37)
    corners = [m.latency_ms("toy2", 4, s, q) for s in (33, 34) for q in (0.35, 0.40)]
    assert min(corners) - 1e-9 <= v <= max(corners) + 1e-9
    # outside the grid: the predictor itself
    assert m.latency_ms("toy2", 32, 50, 0.5) == pytest.approx(
        float(pred.predict("toy2", 32, 50, 0.5))
    )
    assert m.latency_ms("toy2", 2, 0.5, 0.02) == pytest.approx(
        float(pred.predict("toy2", 2, 0.5, 0.02))
    )
    # the grid was cached on disk and is reused
    files = list(tmp_path.glob("rapp_pred-*-toy2.npy"))
    assert len(files) == 1
    again = RaPPLatency(cfg)
    assert np.array_equal(again.grid("toy2"), m.grid("toy2"))
    with pytest.raises(InputError):
        m.mean_latency_s("gpt-5", 1, 50, 1.0)
    with pytest.raises(InputError):
        m.mean_latency_s("toy2", 1, 50, 0.0)
    noise = m.noise(np.random.default_rng(0), 20000)
    assert noise.mean() == pytest.approx(1.0, abs=0.002) and noise.std() == pytest.approx(
        0.03, rel=0.05
    )


def test_rapp_monotone_option(toy_artifact: Path, tmp_path: Path) -> None:
    m = RaPPLatency(RaPPConfig(artifact=str(toy_artifact), cache_dir=str(tmp_path), monotone=True))
    g = m.grid("toy1")
    assert (np.diff(g, axis=2) <= 1e-9).all()  # quota up -> latency down
    rng = np.random.default_rng(1)
    noisy = np.exp(rng.normal(size=(4, 6, 5)) * 0.05) * np.arange(1, 5)[:, None, None]
    o = ordered(noisy)
    assert (np.diff(o, axis=2) <= 1e-12).all()
    assert np.mean(np.abs(o / noisy - 1)) < 0.1
    raw = RaPPLatency(RaPPConfig(artifact=str(toy_artifact), cache_dir=str(tmp_path)))
    assert raw.key != m.key  # separate cache entries


def test_rapp_config_defaults() -> None:
    cfg = RaPPConfig()
    assert cfg.kind == "rapp" and cfg.gpu == "V100-16GB" and cfg.noise_cv == 0.03
    assert len(QUOTA_GRID) == 20 and QUOTA_GRID[0] == 0.05 and QUOTA_GRID[-1] == 1.0
    with pytest.raises(InputError):
        RaPPLatency(RaPPConfig(noise_cv=-1))


def test_packaged_artifact() -> None:
    assert PACKAGED.is_file()
    size = PACKAGED.stat().st_size + model_file(PACKAGED).stat().st_size
    assert size < 4 * 1024 * 1024  # four anchors x 600 trees: ~2.7 MiB (one anchor: 0.7)
    doc = json.loads(PACKAGED.read_text())
    assert doc["format"] == FORMAT
    licenses = {s.get("license") for s in doc["training"]["sources"]}
    assert licenses == {"Apache-2.0"}
    assert any("600348c" in s.get("commit", "") for s in doc["training"]["sources"])
    models = doc["profiles"]["V100-16GB"]
    assert len(models) == 70 and "bert" in models and "resnet50" in models
    assert "unseen_model" in doc["metrics"].get("held_out", {})


def test_packaged_rapp_model_is_plausible(tmp_path: Path) -> None:
    m = RaPPLatency(RaPPConfig(cache_dir=str(tmp_path)))
    # measured (RaPP V100): resnet152, batch 4, SM 100 %: q 20 % -> 251 ms, 100 % -> 43.8 ms
    assert m.latency_ms("resnet152", 4, 100, 0.2) == pytest.approx(251, rel=0.1)
    assert m.latency_ms("resnet152", 4, 100, 1.0) == pytest.approx(43.8, rel=0.1)
    assert m.latency_ms("resnet152", 4, 100, 0.1) > m.latency_ms("resnet152", 4, 100, 0.5)


# --------------------------------------------------------------------------- real data


@needs_shared
def test_real_subset_unseen_model(tmp_path: Path) -> None:
    from hasim.perf.offline.tables import rapp_table_frame

    rdir = SHARED / "measurements" / "rapp-has-gpu-v100" / "graph_features_all_models"
    tab = rapp_table_frame(rdir)
    keep = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg11", "vgg16"]
    tab = tab[tab.model.isin(keep)]
    prof = extract_profiles(tab)
    p = LatencyPredictor(PredictorParams(n_estimators=80)).fit(
        tab[tab.model != "resnet101"], profiles=prof, static=None
    )
    held = tab[(tab.model == "resnet101") & ~profile_mask(tab.batch, tab.sm_pct, tab.quota_pct)]
    pred = p.predict(held.model, held.batch, held.sm_pct, held.quota_pct / 100)
    assert np.mean(np.abs(pred / held.latency_ms - 1)) < 0.2
