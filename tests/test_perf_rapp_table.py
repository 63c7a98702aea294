"""The rapp_table latency model: parsing, filling, interpolation rules, errors, cache."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from hasim.errors import InputError, MissingDataError
from hasim.perf.base import LatencyModel
from hasim.perf.rapp_table import (
    RaPPTableConfig,
    RaPPTableLatency,
    fill_missing,
    load_rapp_tables,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (data mirror) absent")

TOY_SM = [5, 10, 20, 50, 100]
TOY_B = [1, 2, 4, 8]
TOY_Q = [10, 20, 50, 100]


def toy_law(s: float, b: float, q: float) -> float:
    """Additive and linear in (1/s, b, 1/q): multilinear interpolation reproduces it."""
    return 2.0 + 100.0 * b / s + 5.0 / q + 0.5 * b


def write_toy(root: Path, skip: set[tuple[int, int, int]] = frozenset()) -> Path:  # type: ignore[assignment]
    """A data dir with a RaPP-like folder for model 'toy' following toy_law (ms)."""
    d = root / "measurements" / "rapp-has-gpu-v100" / "graph_features_all_models"
    d.mkdir(parents=True, exist_ok=True)
    for s in TOY_SM:
        res = [
            {"batch": b, "sm": s, "quota": q, "latency": toy_law(s, b, q / 100)}
            for b, q in product(TOY_B, TOY_Q)
            if (s, b, q) not in skip
        ]
        (d / f"toy_{s}.json").write_text(json.dumps({"model_name": "toy", "profiling_result": res}))
    return d


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RaPPTableLatency:
    write_toy(tmp_path)
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path))
    return RaPPTableLatency(RaPPTableConfig(bert_table=""))


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaPPTableLatency]:
    if not SHARED.is_dir():
        pytest.skip("../shared (data mirror) absent")
    root = tmp_path_factory.mktemp("data")
    (root / "measurements").symlink_to(SHARED / "measurements")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HASIM_DATA_DIR", str(root))
        yield RaPPTableLatency(RaPPTableConfig())


# --------------------------------------------------------------------------- toy data


def test_toy_exact_on_grid_and_multilinear_between(toy: RaPPTableLatency) -> None:
    assert isinstance(toy, LatencyModel) and toy.models == ["toy"] and not toy.knows("bert")
    for s, b, q in product(TOY_SM, TOY_B, TOY_Q):
        assert toy.latency_ms("toy", b, s, q / 100) == pytest.approx(toy_law(s, b, q / 100))
    for s, b, q in [(7.5, 3, 0.15), (33.0, 5, 0.37), (64.0, 7, 0.9), (12.0, 1, 0.11)]:
        assert toy.latency_ms("toy", b, s, q) == pytest.approx(toy_law(s, b, q), rel=1e-12)
    assert toy.mean_latency_s("toy", 3, 7.5, 0.15) == pytest.approx(toy_law(7.5, 3, 0.15) / 1000)


def test_toy_extrapolation_rules(toy: RaPPTableLatency) -> None:
    # SM below the grid: linear in 1/s from SM 5 and 10 -> exact for A + K/s
    assert toy.latency_ms("toy", 2, 2.0, 0.5) == pytest.approx(toy_law(2.0, 2, 0.5))
    # batch above the grid: linear from batches 4 and 8
    assert toy.latency_ms("toy", 16, 50, 0.5) == pytest.approx(toy_law(50, 16, 0.5))
    # quota below the grid: the excess over full quota scales as 0.1 / q
    l10, l100 = toy.latency_ms("toy", 1, 20, 0.1), toy.latency_ms("toy", 1, 20, 1.0)
    assert toy.latency_ms("toy", 1, 20, 0.05) == pytest.approx(
        l10 + (l10 - l100) * (0.1 / 0.05 - 1)
    )
    assert toy.latency_ms("toy", 1, 20, 0.01) > toy.latency_ms("toy", 1, 20, 0.05) > l10


def test_fill_missing_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    skip = {(20, 2, 50)}  # interior quota gap -> interpolation in 1/q
    skip |= {(100, 8, 100)}  # full-quota cell -> along batch (extrapolated from 2, 4)
    skip |= {(5, 4, q) for q in (10, 20, 50)}  # low quota at low SM -> max rule
    write_toy(tmp_path, skip)
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path))
    m = RaPPTableLatency(RaPPTableConfig(bert_table="", cache=False))
    g = m.grids["toy"]
    assert int((~g.measured).sum()) == len(skip)
    assert g.latency_ms(2, 20, 0.5) == pytest.approx(toy_law(20, 2, 0.5))
    assert g.latency_ms(8, 100, 1.0) == pytest.approx(toy_law(100, 8, 1.0))
    for q in (0.1, 0.2, 0.5):
        want = max(toy_law(5, 4, 1.0), toy_law(10, 4, q))
        assert g.latency_ms(4, 5, q) == pytest.approx(want)


def test_fill_missing_whole_batch() -> None:
    v = np.array([[[30.0, 10.0], [50.0, 20.0], [np.nan, np.nan]]])  # s=1, b=1,2,4, q=.5,1
    out = fill_missing(v, [50.0], [1.0, 2.0, 4.0], [0.5, 1.0])
    assert out[0, 2, 1] == pytest.approx(40.0)  # 20 + (20 - 10) * (4 - 2) / (2 - 1)
    assert out[0, 2, 0] == pytest.approx(50.0)  # max(40, batch 2 at q .5)


@pytest.mark.parametrize(
    "batch,sm,quota",
    [(0, 50, 0.5), (1.5, 50, 0.5), (1, 0, 0.5), (1, 100.5, 0.5), (1, 50, -0.1), (1, 50, 1.01)],
)
def test_invalid_point_raises(toy: RaPPTableLatency, batch: float, sm: float, quota: float) -> None:
    with pytest.raises(InputError):
        toy.mean_latency_s("toy", batch, sm, quota)  # type: ignore[arg-type]


def test_unknown_model_names_it_and_lists_known(toy: RaPPTableLatency) -> None:
    with pytest.raises(InputError, match="'resnet9000'.*toy"):
        toy.mean_latency_s("resnet9000", 1, 50, 0.5)


@pytest.mark.parametrize(
    "content,match",
    [
        ("{ oops", r"toy_5\.json:1:3: invalid JSON"),
        ('{"model_name": "toy"}', r"toy_5\.json: not a RaPP profiling file"),
        ('{"model_name": "other", "profiling_result": []}', r"toy_5\.json: model_name 'other'"),
        (
            '{"model_name": "toy", "profiling_result": [{"batch": 1, "sm": 5, "quota": 10}]}',
            r"toy_5\.json: profiling_result\[0\]\.latency",
        ),
        (
            '{"model_name": "toy", "profiling_result": '
            '[{"batch": 1, "sm": 7, "quota": 10, "latency": 3}]}',
            r"toy_5\.json: .*sm = 7",
        ),
        (
            '{"model_name": "toy", "profiling_result": '
            '[{"batch": 1, "sm": 5, "quota": 10, "latency": -3}]}',
            r"toy_5\.json: .*latency = -3",
        ),
    ],
)
def test_malformed_file_error_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, match: str
) -> None:
    d = write_toy(tmp_path)
    (d / "toy_5.json").write_text(content)
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path))
    with pytest.raises(InputError, match=match):
        RaPPTableLatency(RaPPTableConfig(bert_table="", cache=False))


def test_bad_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = write_toy(tmp_path)
    (d / "notes.json").write_text("{}")
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path))
    with pytest.raises(InputError, match=r"notes\.json.*<model>_<sm>\.json"):
        RaPPTableLatency(RaPPTableConfig(bert_table="", cache=False))


def test_malformed_bert_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toy(tmp_path)
    bert = tmp_path / "measurements" / "has-gpu-bert-table" / "bert_qt.csv"
    bert.parent.mkdir(parents=True)
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path))
    bert.write_text("model,sm_pct,batch,quota_pct,latency_ms_mean\nbert,30,4,10,fast\n")
    with pytest.raises(InputError, match=r"bert_qt\.csv:2:latency_ms_mean"):
        RaPPTableLatency(RaPPTableConfig(cache=False))
    bert.write_text("a,b\n")
    with pytest.raises(InputError, match=r"bert_qt\.csv:1: header"):
        RaPPTableLatency(RaPPTableConfig(cache=False))


def test_missing_data_mentions_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASIM_DATA_DIR", str(tmp_path))
    with pytest.raises(MissingDataError, match="hasim data fetch"):
        RaPPTableLatency(RaPPTableConfig())
    write_toy(tmp_path)  # the RaPP folder exists, the BERT table does not
    with pytest.raises(MissingDataError, match="bert_qt.csv[\\s\\S]*hasim data fetch"):
        RaPPTableLatency(RaPPTableConfig())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingDataError, match="hasim data fetch"):
        RaPPTableLatency(RaPPTableConfig(dir=str(empty), bert_table=""))


def test_cache_is_used_and_invalidated(tmp_path: Path) -> None:
    d = write_toy(tmp_path)
    cache = tmp_path / "cache"
    a = load_rapp_tables(d, None, cache_dir=cache)
    files = list(cache.glob("rapp_table-*.npz"))
    assert len(files) == 1
    b = load_rapp_tables(d, None, cache_dir=cache)
    np.testing.assert_array_equal(a.grids["toy"].values, b.grids["toy"].values)
    # change one file (content and mtime): a new cache entry with the new value
    p = d / "toy_5.json"
    doc = json.loads(p.read_text())
    doc["profiling_result"][0]["latency"] = 999.0
    p.write_text(json.dumps(doc))
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    c = load_rapp_tables(d, None, cache_dir=cache)
    assert c.grids["toy"].values[0, 0, 0] == 999.0
    assert len(list(cache.glob("rapp_table-*.npz"))) == 2


# --------------------------------------------------------------------------- the real table


@needs_shared
def test_real_exact_at_grid_points(real: RaPPTableLatency) -> None:
    assert len(real.models) == 70 and real.knows("bert") and real.knows("alexnet")
    assert real.mean_latency_s("alexnet", 1, 5, 0.1) == pytest.approx(0.024595036506652832)
    assert real.latency_ms("resnet152", 4, 100, 1.0) == pytest.approx(43.8, abs=0.05)
    assert real.latency_ms("resnet152", 4, 100, 0.1) == pytest.approx(750.3, abs=0.1)
    assert real.latency_ms("bert", 4, 30, 0.1) == pytest.approx(240.9081)
    assert real.latency_ms("bert", 4, 50, 1.0) == pytest.approx(71.1591)
    n = sum(int(g.measured.sum()) for k, g in real.grids.items() if k != "bert")
    assert n == 54_928


@needs_shared
def test_real_interpolation_lies_between_neighbours(real: RaPPTableLatency) -> None:
    rng = np.random.default_rng(0)
    names = [m for m in real.models if m != "bert"]
    for _ in range(300):
        name = names[rng.integers(len(names))]
        g = real.grids[name]
        s, b, q = rng.uniform(5, 100), int(rng.integers(1, 9)), rng.uniform(0.1, 1.0)
        si = np.searchsorted(g.sm, s)
        bi = np.searchsorted(g.batch, b)
        qi = np.searchsorted(g.quota, q)
        ss = sorted({max(si - 1, 0), si})
        bb = sorted({max(bi - 1, 0), bi})
        qq = sorted({max(qi - 1, 0), qi})
        corners = g.values[np.ix_(ss, bb, qq)]
        v = real.latency_ms(name, b, s, q)
        assert corners.min() - 1e-9 <= v <= corners.max() + 1e-9


@needs_shared
def test_real_extrapolation(real: RaPPTableLatency) -> None:
    # quota < 10 %: grows about as 1/q for a throttled model
    l10, l5 = real.latency_ms("resnet152", 4, 100, 0.1), real.latency_ms("resnet152", 4, 100, 0.05)
    assert 1.9 * l10 < l5 < 2.0 * l10
    # batch > 8 continues the 4..8 line; a GPU-bound point stays GPU-bound
    l4, l8, l16 = (real.latency_ms("vgg16", b, 20, 1.0) for b in (4, 8, 16))
    assert l16 == pytest.approx(l8 + 2 * (l8 - l4))
    # SM < 5 % grows, bounded by the 1/s law
    l5s, l10s = real.latency_ms("vgg16", 8, 5, 1.0), real.latency_ms("vgg16", 8, 10, 1.0)
    assert real.latency_ms("vgg16", 8, 2.5, 1.0) == pytest.approx(l5s + (l5s - l10s) * 2.0)
    # the missing cells are filled: regnet_y_128gf batch 8, efficientnet_b7 SM 5 low quota
    assert real.latency_ms("regnet_y_128gf", 8, 50, 1.0) > real.latency_ms(
        "regnet_y_128gf", 4, 50, 1.0
    )
    assert real.latency_ms("efficientnet_b7", 8, 5, 0.1) >= real.latency_ms(
        "efficientnet_b7", 8, 5, 1.0
    )
    # BERT at other batches / SM levels comes out finite and ordered
    assert (
        real.latency_ms("bert", 1, 30, 1.0)
        < real.latency_ms("bert", 4, 30, 1.0)
        < real.latency_ms("bert", 8, 30, 1.0)
    )
    assert real.latency_ms("bert", 4, 10, 1.0) > real.latency_ms("bert", 4, 30, 1.0)
    r = real.tables.bert_ratios
    assert r[4.0] == 1.0 and 0 < r[1.0] < r[2.0] < 1.0 < r[8.0]
    for q in (0.1, 0.55, 1.0):
        want = r[1.0] * real.latency_ms("bert", 4, 30, q)
        assert real.latency_ms("bert", 1, 30, q) == pytest.approx(want)


@needs_shared
def test_real_second_load_is_fast(real: RaPPTableLatency) -> None:
    cfg = real.cfg
    t = time.perf_counter()
    again = RaPPTableLatency(cfg)
    assert time.perf_counter() - t < 0.5
    np.testing.assert_array_equal(again.grids["vgg16"].values, real.grids["vgg16"].values)


@needs_shared
def test_real_speed(real: RaPPTableLatency) -> None:
    n = 5000
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for i in range(n):
            real.mean_latency_s("resnet152", 1 + i % 12, 3.0 + (i % 97), 0.05 + (i % 20) * 0.0475)
        best = min(best, (time.perf_counter() - t) / n)
    assert best < 50e-6
