"""Training of the mean-latency predictor (:class:`hasim.perf.predictor.LatencyPredictor`).

LightGBM runs with ``deterministic=True``, a fixed ``num_threads`` and fixed seeds, so the
same table, parameters and seed give the same model (bit for bit on the same machine and
LightGBM version). Times in ms.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hasim.errors import InputError
from hasim.perf.common import import_lightgbm
from hasim.perf.offline.tables import default_static_features, extract_profiles, normalize_table
from hasim.perf.predictor import (
    CATEGORICAL,
    BoosterSet,
    LatencyPredictor,
    PriorProfile,
    clean_static,
)


def fit_predictor(
    pred: LatencyPredictor,
    table: pd.DataFrame,
    *,
    profiles: Mapping[tuple[str, str], PriorProfile] | None = None,
    static: pd.DataFrame | None | str = "default",
    sources: Sequence[Mapping[str, Any]] | None = None,
    model_weight: Mapping[str, float] | None = None,
) -> LatencyPredictor:
    """Train ``pred`` in place on a measurement table (see :func:`normalize_table`).

    ``model_weight``: per-model row weights (default 1), e.g. to let a model with few
    rows (BERT's 18 cells) count like one with hundreds.
    ``profiles``: the prior profiles to use (default: extracted from ``table``; pass
    the profiles of held-out models too so they can be predicted later). ``static``:
    architecture features (index or column ``model``), None for none, ``"default"``
    for :func:`default_static_features`. Rows of models without a profile are dropped.
    """
    lgb = import_lightgbm()
    t0 = time.perf_counter()
    tab = normalize_table(table)
    if profiles is None:
        profiles = extract_profiles(tab)
    pred.profiles = dict(profiles)
    if isinstance(static, str):
        static = default_static_features() if pred.params.use_static else None
    pred.static = clean_static(static) if static is not None else None
    pred._prior = None
    pred._index()
    keep = np.array(
        [(g, m) in pred._keys for g, m in zip(tab.gpu, tab.model, strict=True)], dtype=bool
    )
    tab = tab[keep].reset_index(drop=True)
    if tab.empty:
        raise InputError("no training rows with a prior profile", expected="RaPP-like rows")
    X, anchors, _ = pred._features(tab.model, tab.batch, tab.sm_pct, tab.quota_pct, tab.gpu)
    ylog = np.log(tab.latency_ms.to_numpy())
    pred.feature_names = list(X.columns)
    w = None
    if model_weight:
        w = tab.model.map(lambda m: float(model_weight.get(m, 1.0))).to_numpy()
    cat = [c for c in CATEGORICAL if c in X.columns]
    boosters, anchor_of = [], []
    for a, lanchor in enumerate(anchors):
        ds = lgb.Dataset(
            X, ylog - lanchor, weight=w, categorical_feature=cat or "auto", free_raw_data=True
        )
        for k in range(max(1, pred.params.n_boosters)):
            params = pred.params.lgb_params(pred.params.seed + k)
            boosters.append(lgb.train(params, ds, pred.params.n_estimators))
            anchor_of.append(a)
    pred.booster = BoosterSet(boosters, anchor_of)
    pred.meta = {
        "trained": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "train_seconds": round(time.perf_counter() - t0, 2),
        "n_rows": len(tab),
        "n_models": int(tab.model.nunique()),
        "gpus": sorted(tab.gpu.unique().tolist()),
        "sources": list(sources) if sources is not None else [],
        "model_weight": dict(model_weight or {}),
        "lightgbm_version": getattr(lgb, "__version__", "?"),
    }
    return pred
