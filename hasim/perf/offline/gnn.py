"""``gnn``: RaPP's graph approach -- a graph attention network over each model's operators.

RaPP (SYSTEMS.md section 2.5) predicts the mean latency of (model, batch, SM %, quota) from
an operator graph whose nodes carry static features and each operator's measured time at
SM 5/10/30/60/80/100 %, joined with an MLP over whole-model features. This module is our
own plain-torch version of that idea, evaluated on the same protocols and folds as the
LightGBM predictor (:mod:`hasim.perf.offline.evaluate`):

* **Graph** (:func:`op_graphs`): RaPP's runtime-feature files list operators per type, not
  the edges, so the graph is the assumed launch chain of :func:`hasim.perf.operators.op_order`
  (edges to the previous and next operator, plus self loops). Node features: the operator
  type (one-hot), its position in the chain, ``log10`` of its time (ms) and share at batch 1,
  SM 100 %, and ``log(t(s) / t(100 %))`` for s in 5, 10, 30, 60, 80 %.
* **Encoder** (:class:`GraphEncoder`): a linear input layer, two graph-attention layers
  (:class:`GATLayer`, two heads, residual) and attention pooling plus mean pooling into a
  per-model embedding. Models without operator data (efficientnet_b6/b7) get a zero
  embedding and a flag.
* **Head**: an MLP over the embedding, the LightGBM predictor's row features (the 11-point
  prior profile, the physics estimate, the configuration, MACs and operator counts, the
  architecture family one-hot), standardized on the training rows. It predicts the
  correction ``log L - log base`` to the physics estimate ``base`` of
  :mod:`hasim.perf.predictor` (L1 loss in log space, about the MAPE).
* **Training**: Adam, full-batch steps, early stopping on an inner validation split --
  held-out *models* (grouped) for the unseen-model protocol, random rows otherwise -- never
  the scored fold; the best state is kept. CPU, one thread, seeded: same table, parameters
  and seed give the same model.

The ensemble with the LightGBM predictor is the mean in log space with a fixed weight
(``GNNParams.ensemble_weight``, 0.5: chosen before looking at any fold).

Torch is imported lazily (an optional extra, ``pip install hasim[calibrate]``): importing
this module does not need it; fitting does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hasim.errors import InputError
from hasim.perf.offline.evaluate import check_split, error_report, protocol_splits
from hasim.perf.offline.tables import (
    default_static_features,
    extract_profiles,
    normalize_table,
    prepare_table,
)
from hasim.perf.predictor import (
    DEFAULT_GPU,
    FAMILIES,
    PROFILE_SM,
    LatencyPredictor,
    PredictorParams,
    PriorProfile,
    clean_static,
)

NODE_SM = PROFILE_SM
"""SM % levels (batch 1) whose per-operator times are node features (RaPP's six)."""


def import_torch() -> Any:
    """The torch module, or an InputError saying how to install it."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the install
        raise InputError(
            "the GNN predictor needs torch", expected="pip install 'hasim[calibrate]'"
        ) from e
    return torch


# --------------------------------------------------------------------------- graphs


@dataclass
class OpGraph:
    """One model's operator graph: node features and directed edges (with self loops)."""

    model: str
    x: np.ndarray  # (nodes, features)
    src: np.ndarray  # (edges,) int64
    dst: np.ndarray  # (edges,) int64


def chain_edges(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges of a chain of ``n`` nodes in both directions plus a self loop per node."""
    i = np.arange(n, dtype=np.int64)
    src = np.concatenate([i, i[:-1], i[1:]])
    dst = np.concatenate([i, i[1:], i[:-1]])
    return src, dst


def op_graphs(data: Any = None) -> dict[str, OpGraph]:
    """Operator chain graphs of every model with batch-1 operator times at the six SM %
    levels (``data``: :class:`hasim.perf.offline.operators.OperatorData`, default: loaded from the
    data dir)."""
    from hasim.perf.offline.operators import load_operator_data
    from hasim.perf.operators import OP_TYPES, op_order

    if data is None:
        data = load_operator_data()
    ops = data.ops[data.ops.batch == 1]
    types = [*OP_TYPES, "other"]
    out: dict[str, OpGraph] = {}
    for model, g in ops.groupby("model", sort=True):
        per_sm = {
            float(s): dict(zip(zip(gs.op_type, gs.op_index, strict=True), gs.time_ms, strict=True))
            for s, gs in g.groupby("sm_pct")
        }
        if not all(float(s) in per_sm for s in NODE_SM):
            continue
        ref = g[g.sm_pct == 100.0]
        counts = ref.groupby("op_type").size().to_dict()
        order = op_order({str(k): int(v) for k, v in counts.items()})
        n = len(order)
        t = np.array([[per_sm[float(s)].get(k, np.nan) for s in NODE_SM] for k in order])
        t = np.maximum(np.nan_to_num(t, nan=1e-6), 1e-6)
        t100 = t[:, -1]
        x = np.zeros((n, len(types) + 3 + len(NODE_SM) - 1))
        for k, (op, _) in enumerate(order):
            x[k, types.index(op) if op in types else len(types) - 1] = 1.0
        c = len(types)
        x[:, c] = np.arange(n) / max(n - 1, 1)
        x[:, c + 1] = np.log10(t100)
        x[:, c + 2] = np.log10(t100 / t100.sum())
        x[:, c + 3 :] = np.log(t[:, :-1] / t100[:, None])
        src, dst = chain_edges(n)
        out[str(model)] = OpGraph(str(model), x.astype(np.float32), src, dst)
    return out


# --------------------------------------------------------------------------- torch layers


def _layers() -> dict[str, Any]:
    """The torch modules, built on first use (torch is optional)."""
    torch = import_torch()
    nn = torch.nn

    class GATLayer(nn.Module):
        """Graph attention: each node averages its in-neighbours' projections with
        softmax weights of ``LeakyReLU(a_s . z_j + a_d . z_i)``; heads concatenated."""

        def __init__(self, d_in: int, d_out: int, heads: int = 2) -> None:
            super().__init__()
            self.heads, self.d_out = heads, d_out
            self.lin = nn.Linear(d_in, heads * d_out, bias=False)
            self.a_src = nn.Parameter(torch.randn(heads, d_out) * 0.1)
            self.a_dst = nn.Parameter(torch.randn(heads, d_out) * 0.1)
            self.bias = nn.Parameter(torch.zeros(heads * d_out))

        def forward(self, h: Any, src: Any, dst: Any) -> Any:
            n = h.shape[0]
            z = self.lin(h).view(n, self.heads, self.d_out)
            e = nn.functional.leaky_relu(
                (z * self.a_src).sum(-1)[src] + (z * self.a_dst).sum(-1)[dst], 0.2
            )
            idx = dst[:, None].expand(-1, self.heads)
            emax = torch.full((n, self.heads), -math.inf, dtype=h.dtype)
            emax = emax.scatter_reduce(0, idx, e, reduce="amax", include_self=True)
            w = torch.exp(e - emax[dst])
            den = torch.zeros(n, self.heads, dtype=h.dtype).index_add(0, dst, w)
            alpha = w / den[dst]
            out = torch.zeros_like(z).index_add(0, dst, alpha[..., None] * z[src])
            return out.reshape(n, self.heads * self.d_out) + self.bias

    class GraphEncoder(nn.Module):
        """Node features -> per-graph embedding (attention pooling ++ mean pooling)."""

        def __init__(self, d_node: int, hidden: int = 16, heads: int = 2) -> None:
            super().__init__()
            d = hidden * heads
            self.inp = nn.Linear(d_node, d)
            self.gat1 = GATLayer(d, hidden, heads)
            self.gat2 = GATLayer(d, hidden, heads)
            self.gate = nn.Linear(d, 1)
            self.dim = 2 * d

        def forward(self, x: Any, src: Any, dst: Any, graph: Any, n_graphs: int) -> Any:
            act = nn.functional.elu
            h = act(self.inp(x))
            h = act(h + self.gat1(h, src, dst))
            h = act(h + self.gat2(h, src, dst))
            g = self.gate(h).squeeze(-1)
            gmax = torch.full((n_graphs,), -math.inf, dtype=h.dtype)
            gmax = gmax.scatter_reduce(0, graph, g, reduce="amax", include_self=True)
            w = torch.exp(g - gmax[graph])
            den = torch.zeros(n_graphs, dtype=h.dtype).index_add(0, graph, w)
            att = torch.zeros(n_graphs, h.shape[1], dtype=h.dtype).index_add(
                0, graph, (w / den[graph])[:, None] * h
            )
            cnt = torch.zeros(n_graphs, dtype=h.dtype).index_add(0, graph, torch.ones_like(g))
            mean = torch.zeros(n_graphs, h.shape[1], dtype=h.dtype).index_add(0, graph, h)
            return torch.cat([att, mean / cnt.clamp(min=1.0)[:, None]], dim=1)

    class LatencyNet(nn.Module):
        """Graph embedding per model ++ row features -> MLP -> log correction."""

        def __init__(self, d_node: int, d_row: int, hidden: int, graph_hidden: int) -> None:
            super().__init__()
            self.enc = GraphEncoder(d_node, graph_hidden)
            self.mlp = nn.Sequential(
                nn.Linear(d_row + self.enc.dim + 1, hidden),
                nn.ELU(),
                nn.Linear(hidden, hidden),
                nn.ELU(),
                nn.Linear(hidden, 1),
            )

        def embed(self, batch: Mapping[str, Any]) -> Any:
            emb = self.enc(batch["x"], batch["src"], batch["dst"], batch["graph"], batch["n"])
            has = batch["has"][:, None]
            return torch.cat([emb * has, has], dim=1)

        def forward(self, emb: Any, rows: Any, model_idx: Any) -> Any:
            return self.mlp(torch.cat([rows, emb[model_idx]], dim=1)).squeeze(-1)

    return {"GATLayer": GATLayer, "GraphEncoder": GraphEncoder, "LatencyNet": LatencyNet}


_CACHE: dict[str, Any] = {}


def layers() -> dict[str, Any]:
    """``{"GATLayer", "GraphEncoder", "LatencyNet"}`` torch module classes (cached)."""
    if not _CACHE:
        _CACHE.update(_layers())
    return _CACHE


def batch_graphs(graphs: Sequence[OpGraph | None], d_node: int) -> dict[str, Any]:
    """Disjoint union of graphs as torch tensors (None: a model without a graph)."""
    torch = import_torch()
    xs, srcs, dsts, gid, off = [], [], [], [], 0
    for k, g in enumerate(graphs):
        if g is None:
            continue
        xs.append(g.x)
        srcs.append(g.src + off)
        dsts.append(g.dst + off)
        gid.append(np.full(len(g.x), k, dtype=np.int64))
        off += len(g.x)
    cat = lambda parts, shape: np.concatenate(parts) if parts else np.zeros(shape)  # noqa: E731
    return {
        "x": torch.as_tensor(cat(xs, (0, d_node)), dtype=torch.float32),
        "src": torch.as_tensor(cat(srcs, 0), dtype=torch.long),
        "dst": torch.as_tensor(cat(dsts, 0), dtype=torch.long),
        "graph": torch.as_tensor(cat(gid, 0), dtype=torch.long),
        "n": len(graphs),
        "has": torch.as_tensor([g is not None for g in graphs], dtype=torch.float32),
    }


# --------------------------------------------------------------------------- predictor


@dataclass
class GNNParams:
    """Hyperparameters of the GNN predictor (sizes are units, rates per step)."""

    seed: int = 0
    hidden: int = 64  # MLP width
    graph_hidden: int = 16  # per head, two heads
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_steps: int = 800
    patience: int = 300  # steps without a better validation loss before stopping
    eval_every: int = 25
    val_share: float = 0.15  # inner validation: share of training models (or rows)
    val_by_model: bool = True  # grouped by model (unseen-model); False: random rows
    batch_rows: int = 8192  # rows per step (sampled; the graph part is full)
    threads: int = 1
    ensemble_weight: float = 0.5  # weight of the GNN in the log-space ensemble
    trace: bool = False  # log the losses at every evaluation


@dataclass
class GNNPredictor:
    """Mean latency (ms) = physics estimate x exp(GNN correction)."""

    params: GNNParams = field(default_factory=GNNParams)
    graphs: dict[str, OpGraph] = field(default_factory=dict)
    net: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    _feat: LatencyPredictor | None = field(default=None, repr=False)
    _cols: list[str] = field(default_factory=list, repr=False)
    _mu: np.ndarray | None = field(default=None, repr=False)
    _sd: np.ndarray | None = field(default=None, repr=False)
    _nmu: np.ndarray | None = field(default=None, repr=False)
    _nsd: np.ndarray | None = field(default=None, repr=False)

    def _rows(
        self, model: Any, batch: Any, sm_pct: Any, quota_pct: Any, gpu: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """(raw row features, log base) from the LightGBM predictor's feature frame."""
        assert self._feat is not None
        X, lbase = self._feat.features(model, batch, sm_pct, quota_pct, gpu)
        fam = X.pop("st_family").to_numpy() if "st_family" in X.columns else None
        if not self._cols:
            self._cols = list(X.columns)
        mat = X[self._cols].to_numpy(dtype=float)
        onehot = np.zeros((len(X), len(FAMILIES)))
        if fam is not None:
            ok = np.isfinite(fam)
            onehot[np.flatnonzero(ok), fam[ok].astype(int)] = 1.0
        return np.hstack([mat, onehot]), lbase

    def _standard(self, raw: np.ndarray) -> np.ndarray:
        assert self._mu is not None and self._sd is not None
        return np.nan_to_num((raw - self._mu) / self._sd, nan=0.0).astype(np.float32)

    def _graph_batch(self, models: Sequence[str]) -> dict[str, Any]:
        d = next(iter(self.graphs.values())).x.shape[1]
        gs = []
        for m in models:
            g = self.graphs.get(m)
            if g is not None:
                g = OpGraph(m, ((g.x - self._nmu) / self._nsd).astype(np.float32), g.src, g.dst)
            gs.append(g)
        return batch_graphs(gs, d)

    def fit(
        self,
        table: pd.DataFrame,
        *,
        profiles: Mapping[tuple[str, str], PriorProfile] | None = None,
        graphs: Mapping[str, OpGraph] | None = None,
        static: pd.DataFrame | None | str = "default",
        log: Any = None,
    ) -> GNNPredictor:
        """Train on a measurement table (see :func:`hasim.perf.offline.tables.normalize_table`);
        ``profiles`` must include every model to be predicted later, ``graphs`` (default
        :func:`op_graphs`) the operator graphs of any of them."""
        torch = import_torch()
        say = log or (lambda msg: None)
        t0 = time.perf_counter()
        p = self.params
        old_threads = torch.get_num_threads()
        torch.set_num_threads(p.threads)
        try:
            torch.manual_seed(p.seed)
            rng = np.random.default_rng(p.seed)
            tab = normalize_table(table)
            profiles = dict(profiles) if profiles is not None else extract_profiles(tab)
            if isinstance(static, str):
                static = default_static_features()
            feat = LatencyPredictor(PredictorParams(seed=p.seed))
            feat.profiles = profiles
            feat.static = clean_static(static) if static is not None else None
            self._feat, self._cols = feat, []
            self.graphs = dict(graphs) if graphs is not None else op_graphs()
            tab = tab[[(g, m) in profiles for g, m in zip(tab.gpu, tab.model, strict=True)]]
            tab = tab.reset_index(drop=True)
            if tab.empty:
                raise InputError("no training rows with a prior profile")
            raw, lbase = self._rows(tab.model, tab.batch, tab.sm_pct, tab.quota_pct, tab.gpu)
            self._mu = np.nanmean(raw, axis=0)
            sd = np.nanstd(raw, axis=0)
            self._mu = np.nan_to_num(self._mu)
            self._sd = np.where(np.isfinite(sd) & (sd > 1e-9), sd, 1.0)
            rows = self._standard(raw)
            y = (np.log(tab.latency_ms.to_numpy()) - lbase).astype(np.float32)
            models = sorted(set(tab.model))
            train_graphs = [self.graphs[m] for m in models if m in self.graphs]
            if train_graphs:
                allx = np.concatenate([g.x for g in train_graphs])
                self._nmu = allx.mean(axis=0)
                nsd = allx.std(axis=0)
                self._nsd = np.where(nsd > 1e-9, nsd, 1.0)
            else:
                d = next(iter(self.graphs.values())).x.shape[1] if self.graphs else 1
                self._nmu, self._nsd = np.zeros(d), np.ones(d)
            midx = tab.model.map({m: k for k, m in enumerate(models)}).to_numpy()
            if p.val_by_model and len(models) >= 4:
                n_val = max(1, int(round(p.val_share * len(models))))
                val_models = set(rng.choice(models, size=n_val, replace=False).tolist())
                is_val = tab.model.isin(val_models).to_numpy()
            else:
                is_val = rng.random(len(tab)) < p.val_share
            gb = self._graph_batch(models)
            d_node = gb["x"].shape[1]
            self.net = layers()["LatencyNet"](d_node, rows.shape[1], p.hidden, p.graph_hidden)
            opt = torch.optim.Adam(self.net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
            R = torch.as_tensor(rows)
            Y = torch.as_tensor(y)
            M = torch.as_tensor(np.array(midx), dtype=torch.long)
            tr_idx = np.flatnonzero(~is_val)
            va = torch.as_tensor(np.flatnonzero(is_val), dtype=torch.long)
            best, best_state, best_step, step = math.inf, None, 0, 0
            for step in range(1, p.max_steps + 1):
                self.net.train()
                take = rng.choice(tr_idx, size=min(p.batch_rows, len(tr_idx)), replace=False)
                ti = torch.as_tensor(take, dtype=torch.long)
                emb = self.net.embed(gb)
                loss = (self.net(emb, R[ti], M[ti]) - Y[ti]).abs().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if step % p.eval_every and step != p.max_steps:
                    continue
                if len(va) == 0:
                    best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
                    best_step = step
                    continue
                self.net.eval()
                with torch.no_grad():
                    emb = self.net.embed(gb)
                    vl = float((self.net(emb, R[va], M[va]) - Y[va]).abs().mean())
                if p.trace:
                    say(f"step {step}: train L1 {float(loss.detach()):.4f}, val L1 {vl:.4f}")
                if vl < best:
                    best, best_step = vl, step
                    best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
                elif step - best_step >= p.patience:
                    break
            if best_state is not None:
                self.net.load_state_dict(best_state)
            self.net.eval()
            secs = time.perf_counter() - t0
            self.meta = {
                "train_seconds": round(secs, 2),
                "steps": step,
                "best_step": best_step,
                "val_l1_log": best,
                "n_rows": len(tab),
                "n_models": len(models),
            }
            say(f"gnn: {len(tab)} rows, {len(models)} models, {step} steps (best {best_step}, "
                f"val L1 {best:.4f}), {secs:.1f} s")  # fmt: skip
        finally:
            torch.set_num_threads(old_threads)
        return self

    def predict(
        self,
        model: Any,
        batch: Any,
        sm_pct: Any,
        quota: Any,
        gpu: Any = DEFAULT_GPU,
        *,
        quota_in_percent: bool = False,
    ) -> np.ndarray:
        """Mean latency (ms) per row; ``quota`` a fraction (percent with
        ``quota_in_percent``), like :meth:`hasim.perf.predictor.LatencyPredictor.predict`."""
        torch = import_torch()
        if self.net is None:
            raise InputError("the GNN predictor is not trained", expected="fit() first")
        b = np.atleast_1d(np.asarray(batch, dtype=float))
        n = len(b)
        q = np.broadcast_to(np.asarray(quota, dtype=float), (n,)) * (
            1.0 if quota_in_percent else 100.0
        )
        mm = np.broadcast_to(np.asarray(model, dtype=object), (n,))
        gg = np.broadcast_to(np.asarray(gpu, dtype=object), (n,))
        s = np.broadcast_to(np.asarray(sm_pct, dtype=float), (n,))
        raw, lbase = self._rows(mm, b, s, q, gg)
        models = sorted({str(m) for m in mm})
        pos = {m: k for k, m in enumerate(models)}
        old = torch.get_num_threads()
        torch.set_num_threads(self.params.threads)
        try:
            with torch.no_grad():
                emb = self.net.embed(self._graph_batch(models))
                corr = self.net(
                    emb,
                    torch.as_tensor(self._standard(raw)),
                    torch.as_tensor([pos[str(m)] for m in mm], dtype=torch.long),
                ).numpy()
        finally:
            torch.set_num_threads(old)
        return np.exp(lbase + corr.astype(float))


def log_ensemble(a: np.ndarray, b: np.ndarray, weight_a: float = 0.5) -> np.ndarray:
    """Weighted geometric mean ``a^w b^(1-w)`` of two latency predictions (ms)."""
    return np.exp(weight_a * np.log(a) + (1.0 - weight_a) * np.log(b))


# --------------------------------------------------------------------------- evaluation


@dataclass
class GNNEvalResult:
    """One protocol, three predictors: ``gnn``, ``lgbm`` (today's) and ``ensemble``."""

    protocol: str
    reports: dict[str, dict[str, Any]]  # predictor -> error_report (fractions)
    folds: list[dict[str, Any]]  # per fold: held models, n, MAPE per predictor, seconds
    train_seconds: dict[str, float]  # predictor -> total fit seconds
    predictions: pd.DataFrame  # scored rows with pred_gnn, pred_lgbm, pred_ensemble, fold

    def lines(self) -> list[str]:
        """Human-readable summary (percentages)."""
        pct = lambda v: f"{100 * v:.2f} %"  # noqa: E731
        out = [f"protocol {self.protocol}: {len(self.predictions)} scored rows"]
        for name, r in self.reports.items():
            secs = self.train_seconds.get(name)
            t = f", training {secs:.1f} s" if secs is not None else ""
            out.append(
                f"{name:9s} MAPE {pct(r['mape'])}  median APE {pct(r['median_ape'])}  "
                f"p90 APE {pct(r['p90_ape'])}{t}"
            )
        if len(self.folds) > 1:
            for name in self.reports:
                out.append(
                    f"{name} per fold: " + "  ".join(pct(f[f"mape_{name}"]) for f in self.folds)
                )
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready headline figures (percent)."""
        return {
            "protocol": self.protocol,
            "n": len(self.predictions),
            **{
                f"{name}_{k}_pct": round(100 * r[k], 3)
                for name, r in self.reports.items()
                for k in ("mape", "median_ape", "p90_ape")
            },
            **{f"{name}_train_seconds": round(s, 1) for name, s in self.train_seconds.items()},
            "folds": self.folds,
        }


def evaluate_gnn(
    table: pd.DataFrame,
    protocol: str,
    *,
    seed: int = 0,
    folds: int = 5,
    holdout_models: Sequence[str] | None = None,
    params: GNNParams | None = None,
    lgbm_params: PredictorParams | None = None,
    baseline: bool = True,
    static: Any = "default",
    graphs: Mapping[str, OpGraph] | None = None,
    log: Any = None,
) -> GNNEvalResult:
    """Score the GNN, today's LightGBM predictor (``baseline``) and their log-space
    ensemble on the splits of :func:`hasim.perf.offline.evaluate.evaluate` (same seed, same
    folds; the ensemble weight is fixed, never fitted on a scored fold)."""
    say = log or (lambda msg: None)
    tab, profiles = prepare_table(table)
    splits = protocol_splits(tab, protocol, seed, folds, holdout_models)
    if params is None:
        params = GNNParams(seed=seed, val_by_model=protocol == "unseen-model")
    lgbm_params = lgbm_params or PredictorParams(seed=seed)
    if graphs is None:
        graphs = op_graphs()
    if isinstance(static, str):
        static = default_static_features()
    secs = {"gnn": 0.0, "lgbm": 0.0} if baseline else {"gnn": 0.0}
    preds, fold_rows = [], []
    for k, sp in enumerate(splits):
        check_split(tab, sp)
        te = tab[sp.test]
        gnn = GNNPredictor(params).fit(
            tab[sp.train], profiles=profiles, graphs=graphs, static=static, log=say
        )
        secs["gnn"] += gnn.meta["train_seconds"]
        out = te.assign(fold=k)
        out["pred_gnn"] = gnn.predict(
            te.model, te.batch, te.sm_pct, te.quota_pct, te.gpu, quota_in_percent=True
        )
        if baseline:
            t0 = time.perf_counter()
            lg = LatencyPredictor(lgbm_params).fit(tab[sp.train], profiles=profiles, static=static)
            secs["lgbm"] += time.perf_counter() - t0
            out["pred_lgbm"] = lg.predict(
                te.model, te.batch, te.sm_pct, te.quota_pct, te.gpu, quota_in_percent=True
            )
            out["pred_ensemble"] = log_ensemble(
                out.pred_gnn.to_numpy(), out.pred_lgbm.to_numpy(), params.ensemble_weight
            )
        row: dict[str, Any] = {"split": sp.name, "held_models": sp.held_models, "n_test": len(te)}
        meas = te.latency_ms.to_numpy()
        for name in ("gnn", "lgbm", "ensemble"):
            if f"pred_{name}" in out.columns:
                row[f"mape_{name}"] = float(
                    np.abs(out[f"pred_{name}"].to_numpy() / meas - 1).mean()
                )
        fold_rows.append(row)
        say(f"{sp.name}: " + "  ".join(
            f"{n} {100 * row[f'mape_{n}']:.2f} %" for n in ("gnn", "lgbm", "ensemble")
            if f"mape_{n}" in row))  # fmt: skip
        preds.append(out)
    allp = pd.concat(preds, ignore_index=True)
    reports = {
        name: error_report(allp, allp[f"pred_{name}"].to_numpy())
        for name in ("gnn", "lgbm", "ensemble")
        if f"pred_{name}" in allp.columns
    }
    return GNNEvalResult(protocol, reports, fold_rows, secs, allp)
