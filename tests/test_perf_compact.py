"""The compact (offline default) latency model: loading, shape guarantees, accuracy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hasim.errors import InputError
from hasim.perf.base import LatencyModel
from hasim.perf.compact import PACKAGED, CompactConfig, CompactLatency

SHARED = Path(__file__).resolve().parents[2] / "shared"
REPORTED_MAPE = 0.0459  # python -m hasim.perf.fit_compact --data-dir ../shared --out ...
M = CompactLatency(CompactConfig())
MODELS = ["alexnet", "resnet50", "resnet152", "vgg16", "convnext_large", "mobilenet_v2", "bert"]


@pytest.fixture(scope="module")
def model() -> CompactLatency:
    return M


def test_loads_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path / "empty"))
    m = CompactLatency(CompactConfig())
    assert isinstance(m, LatencyModel) and m.name == "compact"
    assert len(m.models) == 70 and m.knows("bert") and m.knows("resnet152")
    assert not m.knows("gpt-5")


def test_packaged_file_is_small_and_documented() -> None:
    assert PACKAGED.stat().st_size < 200 * 1024
    prov = json.loads(PACKAGED.read_text())["provenance"]
    assert prov["license"] == "Apache-2.0"
    assert prov["source_commit"].startswith("600348c")
    assert prov["fit_date"] and prov["fit_error"]["mape"] == pytest.approx(REPORTED_MAPE, abs=0.002)


def test_resnet152_anchor_points(model: CompactLatency) -> None:
    # RaPP, ResNet-152 batch 4 SM 100 %: 43.8 ms at q 100 %, 750 ms at q 10 %
    assert model.mean_latency_s("resnet152", 4, 100, 1.0) == pytest.approx(0.0438, rel=0.15)
    assert model.mean_latency_s("resnet152", 4, 100, 0.1) == pytest.approx(0.750, rel=0.25)
    for q, ms in [(0.2, 251), (0.3, 160), (0.5, 90), (0.8, 49)]:
        assert model.latency_ms("resnet152", 4, 100, q) == pytest.approx(ms, rel=0.15)


@pytest.mark.parametrize("name", MODELS)
def test_monotone_in_quota_and_sm(model: CompactLatency, name: str) -> None:
    sms = np.r_[1.0, 2.5, np.arange(5, 101, 2.5)]
    qs = np.r_[0.01, 0.05, 0.08, np.linspace(0.1, 1.0, 37)]
    for b in (1, 2, 3, 4, 6, 8, 12, 32):
        lat = np.array([[model.latency_ms(name, b, s, q) for q in qs] for s in sms])
        assert (lat > 0).all() and np.isfinite(lat).all()
        assert (np.diff(lat, axis=0) <= 1e-9 * lat[1:]).all(), f"{name} b{b} not monotone in SM"
        assert (np.diff(lat, axis=1) <= 1e-9 * lat[:, 1:]).all(), f"{name} b{b} not monotone in q"


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(MODELS + ["regnet_y_128gf", "efficientnet_b7", "densenet121"]),
    b=st.integers(1, 64),
    s=st.tuples(st.floats(0.5, 100), st.floats(0.5, 100)),
    q=st.tuples(st.floats(0.005, 1), st.floats(0.005, 1)),
)
def test_monotone_property(
    name: str, b: int, s: tuple[float, float], q: tuple[float, float]
) -> None:
    m = M
    s1, s2 = sorted(s)
    q1, q2 = sorted(q)
    lo = m.latency_ms(name, b, s2, q2)
    assert m.latency_ms(name, b, s1, q2) >= lo * (1 - 1e-12)
    assert m.latency_ms(name, b, s2, q1) >= lo * (1 - 1e-12)


def test_below_grid_quota_scales_like_tokens(model: CompactLatency) -> None:
    q10 = model.quota_phase_ms("resnet152", 0.1)
    assert model.quota_phase_ms("resnet152", 0.05) == pytest.approx(2 * q10)
    assert model.latency_ms("resnet152", 4, 100, 0.05) == pytest.approx(2 * q10, rel=0.01)


def test_batch_extrapolation_is_linear_above_eight(model: CompactLatency) -> None:
    g = [model.gpu_phase_ms("vgg16", b, 20) for b in (4, 8, 12, 16)]
    assert g[3] - g[2] == pytest.approx(g[2] - g[1], rel=1e-6)
    assert g[2] >= g[1]


def test_unknown_model_and_invalid_inputs(model: CompactLatency) -> None:
    with pytest.raises(InputError, match="gpt-5") as e:
        model.mean_latency_s("gpt-5", 1, 50, 0.5)
    assert "resnet50" in str(e.value)
    for bad in [
        (0, 50, 0.5),
        (2.5, 50, 0.5),
        (1, 0, 0.5),
        (1, 120, 0.5),
        (1, 50, 0.0),
        (1, 50, 1.5),
    ]:
        with pytest.raises(InputError):
            model.mean_latency_s("resnet50", *bad)  # type: ignore[arg-type]


def test_noise_mean_one(model: CompactLatency) -> None:
    f = model.noise(np.random.default_rng(0), 100_000)
    assert f.mean() == pytest.approx(1.0, abs=0.002)
    assert f.std() == pytest.approx(0.03, abs=0.002)


def test_malformed_coefficient_file_names_it(tmp_path: Path) -> None:
    doc = json.loads(PACKAGED.read_text())
    doc["models"]["resnet50"]["Q"] = doc["models"]["resnet50"]["Q"][::-1]  # increasing
    bad = tmp_path / "coef.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="coef.json.*resnet50.Q"):
        CompactLatency(CompactConfig(coefficients=str(bad)))
    bad.write_text("{ not json")
    with pytest.raises(InputError, match="coef.json:1:3"):
        CompactLatency(CompactConfig(coefficients=str(bad)))
    with pytest.raises(InputError, match="not found"):
        CompactLatency(CompactConfig(coefficients=str(tmp_path / "absent.json")))


def test_speed(model: CompactLatency) -> None:
    n = 5000
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for i in range(n):
            model.mean_latency_s("resnet152", 1 + i % 8, 5.0 + (i % 96), 0.05 + (i % 20) * 0.0475)
        best = min(best, (time.perf_counter() - t) / n)
    assert best < 50e-6


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (the data mirror) is absent")
def test_mape_against_the_measured_table(
    model: CompactLatency, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from hasim.perf.rapp_table import DEFAULT_BERT, DEFAULT_DIR, load_rapp_tables

    meas = SHARED / "measurements"
    tables = load_rapp_tables(
        meas.parent / DEFAULT_DIR,
        meas.parent / DEFAULT_BERT,
        cache_dir=tmp_path_factory.mktemp("cache"),
    )
    errs, by_q = [], {}
    for name in tables.rapp_models:
        g = tables.grids[name]
        for s, b, q in zip(*np.nonzero(g.measured), strict=True):
            e = abs(model.latency_ms(name, g.batch[b], g.sm[s], g.quota[q]) / g.values[s, b, q] - 1)
            errs.append(e)
            by_q.setdefault(q, []).append(e)
    assert len(errs) == 54_928
    assert np.mean(errs) < REPORTED_MAPE + 0.005
    assert max(np.mean(v) for v in by_q.values()) < 0.08
    gb = tables.grids["bert"]
    e_bert = [
        abs(model.latency_ms("bert", gb.batch[b], gb.sm[s], gb.quota[q]) / gb.values[s, b, q] - 1)
        for s, b, q in zip(*np.nonzero(gb.measured), strict=True)
    ]
    assert len(e_bert) == 18 and np.mean(e_bert) < 0.05
    # both models derive BERT's other batches by the same rule: they agree there too
    diff = [
        abs(model.latency_ms("bert", b, s, q) / tables.grids["bert"].latency_ms(b, s, q) - 1)
        for b in (1, 2, 8)
        for s in (30, 50)
        for q in gb.quota
    ]
    assert np.mean(diff) < 0.05
