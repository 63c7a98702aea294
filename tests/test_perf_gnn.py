"""The GNN latency predictor (RaPP's graph approach): layers, training, evaluation wiring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from hasim.perf.offline.evaluate import config_split, evaluate, random_split  # noqa: E402
from hasim.perf.offline.gnn import (  # noqa: E402
    GNNParams,
    GNNPredictor,
    OpGraph,
    batch_graphs,
    chain_edges,
    evaluate_gnn,
    layers,
    log_ensemble,
    prepare_table,
    protocol_splits,
)
from hasim.perf.predictor import PredictorParams  # noqa: E402
from tests.test_perf_predictor import FAST, toy_table  # noqa: E402

D_NODE = 5
TINY = {"max_steps": 60, "eval_every": 10, "patience": 1000, "hidden": 16, "graph_hidden": 4}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def toy_graphs(n_models: int, seed: int = 0) -> dict[str, OpGraph]:
    """Random chain graphs for toy models ``toy0``.. (one without a graph)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(n_models - 1):
        n = 4 + k
        src, dst = chain_edges(n)
        out[f"toy{k}"] = OpGraph(f"toy{k}", rng.normal(size=(n, D_NODE)).astype("f4"), src, dst)
    return out


def test_chain_edges() -> None:
    src, dst = chain_edges(3)
    assert sorted(zip(src.tolist(), dst.tolist(), strict=True)) == [
        (0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2),
    ]  # fmt: skip


def test_gat_layer_shapes_and_permutation_equivariance() -> None:
    torch.manual_seed(0)
    gat = layers()["GATLayer"](D_NODE, 3, heads=2)
    n = 6
    x = torch.randn(n, D_NODE)
    src, dst = (torch.as_tensor(a) for a in chain_edges(n))
    out = gat(x, src, dst)
    assert out.shape == (n, 6)
    perm = torch.randperm(n)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)  # node i of the original is node inv[i] of the permuted
    out_p = gat(x[perm], inv[src], inv[dst])
    assert torch.allclose(out_p, out[perm], atol=1e-6)


def test_encoder_pooling_is_permutation_invariant_and_batches() -> None:
    torch.manual_seed(0)
    enc = layers()["GraphEncoder"](D_NODE, hidden=4, heads=2)
    g = toy_graphs(3)
    gb = batch_graphs([g["toy0"], None, g["toy1"]], D_NODE)
    emb = enc(gb["x"], gb["src"], gb["dst"], gb["graph"], gb["n"])
    assert emb.shape == (3, enc.dim)
    assert torch.all(emb[1] == 0)  # a model without a graph: zeros
    one = batch_graphs([g["toy1"]], D_NODE)
    alone = enc(one["x"], one["src"], one["dst"], one["graph"], 1)
    assert torch.allclose(alone[0], emb[2], atol=1e-6)  # batching does not mix graphs
    n = len(g["toy1"].x)
    perm = np.random.default_rng(1).permutation(n)
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    shuffled = OpGraph("p", g["toy1"].x[perm], inv[g["toy1"].src], inv[g["toy1"].dst])
    pb = batch_graphs([shuffled], D_NODE)
    assert torch.allclose(enc(pb["x"], pb["src"], pb["dst"], pb["graph"], 1), alone, atol=1e-5)


def test_training_reduces_loss_and_is_deterministic() -> None:
    tab = toy_table(4)
    graphs = toy_graphs(4)
    p = GNNParams(**TINY, val_by_model=False)
    m = GNNPredictor(p).fit(tab, graphs=graphs, static=None)
    y = tab.latency_ms.to_numpy()
    pred = m.predict(tab.model, tab.batch, tab.sm_pct, tab.quota_pct, quota_in_percent=True)
    untrained = GNNPredictor(GNNParams(**{**TINY, "max_steps": 1}, val_by_model=False))
    p0 = untrained.fit(tab, graphs=graphs, static=None).predict(
        tab.model, tab.batch, tab.sm_pct, tab.quota_pct, quota_in_percent=True
    )
    assert np.abs(pred / y - 1).mean() < np.abs(p0 / y - 1).mean()
    again = GNNPredictor(p).fit(tab, graphs=graphs, static=None)
    pred2 = again.predict(tab.model, tab.batch, tab.sm_pct, tab.quota_pct, quota_in_percent=True)
    np.testing.assert_array_equal(pred, pred2)
    frac = m.predict("toy1", 2, 50.0, 0.5)
    assert frac.shape == (1,) and frac[0] == pytest.approx(
        m.predict("toy1", 2, 50.0, 50.0, quota_in_percent=True)[0]
    )


def test_log_ensemble() -> None:
    a, b = np.array([1.0, 4.0]), np.array([4.0, 1.0])
    np.testing.assert_allclose(log_ensemble(a, b), [2.0, 2.0])
    np.testing.assert_allclose(log_ensemble(a, b, 1.0), a)


def test_same_splits_as_evaluate() -> None:
    raw = toy_table(4)
    tab, _ = prepare_table(raw)
    ours = protocol_splits(tab, "unseen-model", seed=2, folds=2)
    res = evaluate(
        raw, "unseen-model", seed=2, folds=2, params=PredictorParams(**FAST), static=None
    )
    assert [sp.held_models for sp in ours] == [f["held_models"] for f in res.folds]
    for proto, fn in (("random", random_split), ("unseen-config", config_split)):
        (sp,) = protocol_splits(tab, proto, seed=2)
        np.testing.assert_array_equal(sp.test, fn(tab, 2).test)


def test_evaluate_gnn_wiring() -> None:
    raw = toy_table(4)
    res = evaluate_gnn(
        raw,
        "unseen-model",
        seed=0,
        folds=2,
        params=GNNParams(**{**TINY, "max_steps": 20}),
        lgbm_params=PredictorParams(**FAST),
        static=None,
        graphs=toy_graphs(4),
    )
    assert set(res.reports) == {"gnn", "lgbm", "ensemble"}
    assert len(res.folds) == 2 and all("mape_ensemble" in f for f in res.folds)
    d = res.predictions
    np.testing.assert_allclose(d.pred_ensemble, np.sqrt(d.pred_gnn * d.pred_lgbm))
    assert all(np.isfinite(r["mape"]) for r in res.reports.values())
    assert isinstance(res.summary()["gnn_mape_pct"], float)
    assert any(line.startswith("ensemble") for line in res.lines())
    held = {m for f in res.folds for m in f["held_models"]}
    assert held == set(pd.unique(raw.model))
