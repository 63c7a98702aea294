"""Evaluation protocols of the latency predictor (RaPP's three, on the RaPP V100 table).

* ``random``: rows split 85 / 10 / 5 % into train / validation / test at random.
* ``unseen-config``: per model, a random 15 % of its resource configurations (SM %, quota)
  -- every batch size at those -- is held out; each model holds out different ones.
* ``unseen-model``: grouped K-fold over models (every model is held out exactly once), or
  ``holdout_models``: train on every other model, test on these.

In every protocol the 11 prior-profile cells of each model are inputs, not targets: they
are always in the training side (for a held-out model only its profile is used, as the
predictor's input) and never scored. Errors are absolute percentage errors
``|pred / measured - 1|``; MAPE is their mean over the scored rows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hasim.errors import InputError
from hasim.perf.predictor import (
    LatencyPredictor,
    PredictorParams,
    extract_profiles,
    normalize_table,
    profile_mask,
)

PROTOCOLS = ("random", "unseen-config", "unseen-model")
RANDOM_FRACTIONS = (0.85, 0.10, 0.05)
CONFIG_HOLDOUT = 0.15


# --------------------------------------------------------------------------- splits


@dataclass
class Split:
    """Row masks over a normalized table (train, validation, test) plus a label."""

    name: str
    train: np.ndarray
    test: np.ndarray
    val: np.ndarray | None = None
    held_models: list[str] = field(default_factory=list)


def _profile_rows(table: pd.DataFrame) -> np.ndarray:
    return profile_mask(table.batch, table.sm_pct, table.quota_pct)


def random_split(
    table: pd.DataFrame, seed: int = 0, fractions: Sequence[float] = RANDOM_FRACTIONS
) -> Split:
    """Rows at random into train / val / test (profile cells always train)."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise InputError(f"fractions {fractions!r}", expected="three shares summing to 1")
    n = len(table)
    prof = _profile_rows(table)
    cand = np.flatnonzero(~prof)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(cand)
    n_test = int(round(fractions[2] * n))
    n_val = int(round(fractions[1] * n))
    test = np.zeros(n, dtype=bool)
    val = np.zeros(n, dtype=bool)
    test[perm[:n_test]] = True
    val[perm[n_test : n_test + n_val]] = True
    return Split("random", ~(test | val), test, val)


def config_split(table: pd.DataFrame, seed: int = 0, holdout: float = CONFIG_HOLDOUT) -> Split:
    """Per model, hold out a random ``holdout`` share of its (SM %, quota) configurations
    (all batches at them); profile cells stay in training."""
    if not 0 < holdout < 1:
        raise InputError(f"holdout share {holdout!r}", expected="a fraction in (0, 1)")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(table), dtype=bool)
    keys = table[["gpu", "model"]].astype(str).agg("\0".join, axis=1).to_numpy()
    conf = (table.sm_pct.to_numpy() * 1000 + table.quota_pct.to_numpy()).round(6)
    for key in sorted(set(keys)):
        rows = np.flatnonzero(keys == key)
        configs = np.unique(conf[rows])
        k = max(1, int(round(holdout * len(configs))))
        held = rng.choice(configs, size=k, replace=False)
        test[rows[np.isin(conf[rows], held)]] = True
    test &= ~_profile_rows(table)
    return Split("unseen-config", ~test & ~_held_config_rows(table, test), test)


def _held_config_rows(table: pd.DataFrame, test: np.ndarray) -> np.ndarray:
    """Rows (non-profile) sharing a held-out (model, SM, quota) configuration with ``test``:
    none may train, so a configuration is unseen at every batch."""
    keys = (
        table.gpu.astype(str)
        + "\0"
        + table.model.astype(str)
        + "\0"
        + table.sm_pct.astype(str)
        + "\0"
        + table.quota_pct.astype(str)
    ).to_numpy()
    held = np.isin(keys, keys[test])
    return held & ~_profile_rows(table)


def model_folds(models: Sequence[str], k: int, seed: int = 0) -> list[list[str]]:
    """``k`` disjoint groups covering ``models`` (seeded shuffle, sizes differ by <= 1)."""
    ms = sorted(set(models))
    if not 2 <= k <= len(ms):
        raise InputError(f"{k} folds over {len(ms)} models", expected="2 <= folds <= models")
    perm = np.random.default_rng(seed).permutation(len(ms))
    return [sorted(ms[i] for i in part) for part in np.array_split(perm, k)]


def model_split(table: pd.DataFrame, held: Sequence[str], name: str = "unseen-model") -> Split:
    """Train on every model but ``held``; test on the held models' non-profile rows."""
    is_held = table.model.isin(list(held)).to_numpy()
    return Split(name, ~is_held, is_held & ~_profile_rows(table), held_models=sorted(held))


def check_split(table: pd.DataFrame, split: Split) -> None:
    """Raise AssertionError when a split leaks (used by tests and every evaluation)."""
    tr = split.train
    assert not (tr & split.test).any(), "a row is both train and test"
    if split.val is not None:
        assert not (tr & split.val).any() and not (split.val & split.test).any()
    assert not (split.test & _profile_rows(table)).any(), "a profile cell is scored"
    if split.held_models:
        leaked = set(table.model[tr]) & set(split.held_models)
        assert not leaked, f"held-out models in training: {sorted(leaked)}"
    if split.name == "unseen-config":
        key = ["gpu", "model", "sm_pct", "quota_pct"]
        tr_conf = set(map(tuple, table.loc[tr & ~_profile_rows(table), key].to_numpy()))
        te_conf = set(map(tuple, table.loc[split.test, key].to_numpy()))
        assert not (tr_conf & te_conf), "a held-out configuration trains"


# --------------------------------------------------------------------------- metrics


def error_report(table: pd.DataFrame, pred: np.ndarray) -> dict[str, Any]:
    """MAPE, median and p90 APE, and MAPE by quota, SM, batch and model (fractions)."""
    ape = np.abs(pred / table.latency_ms.to_numpy() - 1.0)
    df = table.assign(ape=ape)

    def by(col: str) -> dict[str, float]:
        g = df.groupby(col, sort=True).ape.mean()
        return {f"{k:g}" if isinstance(k, float) else str(k): float(v) for k, v in g.items()}

    return {
        "n": int(len(df)),
        "mape": float(ape.mean()) if len(ape) else float("nan"),
        "median_ape": float(np.median(ape)) if len(ape) else float("nan"),
        "p90_ape": float(np.quantile(ape, 0.9)) if len(ape) else float("nan"),
        "by_quota": by("quota_pct"),
        "by_sm": by("sm_pct"),
        "by_batch": by("batch"),
        "by_model": by("model"),
    }


# --------------------------------------------------------------------------- protocols


@dataclass
class EvalResult:
    """What one protocol run measured."""

    protocol: str
    report: dict[str, Any]  # pooled over all scored rows
    folds: list[dict[str, Any]]  # per fold: held models, n, mape, seconds
    val: dict[str, Any] | None
    train_seconds: float
    predictions: pd.DataFrame  # scored rows with "pred" (for plots)

    @property
    def mape(self) -> float:
        return float(self.report["mape"])


def _fit(
    train: pd.DataFrame,
    profiles: Mapping[tuple[str, str], Any],
    params: PredictorParams,
    static: Any,
) -> tuple[LatencyPredictor, float]:
    t0 = time.perf_counter()
    p = LatencyPredictor(params).fit(train, profiles=profiles, static=static)
    return p, time.perf_counter() - t0


def evaluate(
    table: pd.DataFrame,
    protocol: str,
    *,
    seed: int = 0,
    folds: int = 5,
    holdout_models: Sequence[str] | None = None,
    params: PredictorParams | None = None,
    static: Any = "default",
    log: Any = None,
) -> EvalResult:
    """Run one protocol on a measurement table; returns pooled and per-fold errors."""
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol {protocol!r}", expected="one of " + ", ".join(PROTOCOLS))
    tab = normalize_table(table)
    profiles = extract_profiles(tab)
    tab = tab[[(g, m) in profiles for g, m in zip(tab.gpu, tab.model, strict=True)]]
    tab = tab.reset_index(drop=True)
    params = params or PredictorParams(seed=seed)
    say = log or (lambda msg: None)
    if protocol == "random":
        splits = [random_split(tab, seed)]
    elif protocol == "unseen-config":
        splits = [config_split(tab, seed)]
    elif holdout_models:
        unknown = sorted(set(holdout_models) - set(tab.model))
        if unknown:
            raise InputError(
                f"--holdout-models names unknown models {unknown}",
                expected="models of the table, e.g. " + ", ".join(sorted(set(tab.model))[:5]),
            )
        splits = [model_split(tab, holdout_models)]
    else:
        splits = [
            model_split(tab, grp, f"fold {k + 1}/{folds}")
            for k, grp in enumerate(model_folds(tab.model.unique(), folds, seed))
        ]
    preds = []
    fold_rows = []
    val_report = None
    total_fit = 0.0
    for sp in splits:
        check_split(tab, sp)
        model, secs = _fit(tab[sp.train], profiles, params, static)
        total_fit += secs
        te = tab[sp.test]
        pr = model.predict(
            te.model, te.batch, te.sm_pct, te.quota_pct, te.gpu, quota_in_percent=True
        )
        preds.append(te.assign(pred=pr))
        ape = np.abs(pr / te.latency_ms.to_numpy() - 1.0)
        fold_rows.append(
            {
                "split": sp.name,
                "held_models": sp.held_models,
                "n_train": int(sp.train.sum()),
                "n_test": int(sp.test.sum()),
                "mape": float(ape.mean()),
                "fit_seconds": round(secs, 2),
            }
        )
        say(
            f"{sp.name}: train {int(sp.train.sum())} rows, test {int(sp.test.sum())} rows, "
            f"MAPE {100 * ape.mean():.2f} % (fit {secs:.1f} s)"
        )
        if sp.val is not None and sp.val.any():
            va = tab[sp.val]
            vp = model.predict(
                va.model, va.batch, va.sm_pct, va.quota_pct, va.gpu, quota_in_percent=True
            )
            val_report = error_report(va, vp)
    allp = pd.concat(preds, ignore_index=True)
    report = error_report(allp, allp.pred.to_numpy())
    return EvalResult(protocol, report, fold_rows, val_report, total_fit, allp)


# --------------------------------------------------------------------------- output


def format_report(res: EvalResult) -> list[str]:
    """Human-readable lines (percentages) for a result; the CLI adds the MAPE line."""
    pct = lambda v: f"{100 * v:.2f} %"  # noqa: E731
    r = res.report
    lines = [
        f"protocol {res.protocol}: {r['n']} scored rows "
        f"(the 11 prior-profile cells per model are inputs, never scored)",
        f"MAPE {pct(r['mape'])}  median APE {pct(r['median_ape'])}  p90 APE {pct(r['p90_ape'])}",
    ]
    if res.val is not None:
        v = res.val
        lines.append(
            f"validation: {v['n']} rows, MAPE {pct(v['mape'])}, "
            f"median {pct(v['median_ape'])}, p90 {pct(v['p90_ape'])}"
        )
    if len(res.folds) > 1:
        fm = [f["mape"] for f in res.folds]
        lines.append(
            "per fold: "
            + "  ".join(pct(m) for m in fm)
            + f"   mean over folds {pct(float(np.mean(fm)))}"
        )
    if res.protocol == "unseen-model":
        bm = list(r["by_model"].values())
        lines.append(f"mean over {len(bm)} held-out models: {pct(float(np.mean(bm)))}")
    lines.append(f"training time: {res.train_seconds:.1f} s over {len(res.folds)} fit(s)")
    for key, title in (("by_quota", "quota %"), ("by_sm", "SM %"), ("by_batch", "batch")):
        lines.append(f"MAPE by {title}: " + "  ".join(f"{k}: {pct(v)}" for k, v in r[key].items()))
    worst = sorted(r["by_model"].items(), key=lambda kv: -kv[1])
    lines.append("MAPE by model (worst first): " + "  ".join(f"{k}: {pct(v)}" for k, v in worst))
    return lines


def plot_predictions(res: EvalResult, path: str | Path) -> Path:
    """Predicted vs measured latency (log-log scatter) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    d = res.predictions
    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    sc = ax.scatter(
        d.latency_ms, d.pred, s=3, alpha=0.35, c=np.log10(d.quota_pct), cmap="viridis", linewidths=0
    )
    lo = float(min(d.latency_ms.min(), d.pred.min())) * 0.8
    hi = float(max(d.latency_ms.max(), d.pred.max())) * 1.25
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    for f in (0.9, 1.1):
        ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured mean latency (ms)")
    ax.set_ylabel("predicted mean latency (ms)")
    ax.set_title(f"{res.protocol}: MAPE {100 * res.mape:.2f} % over {len(d)} rows")
    cb = fig.colorbar(sc, ax=ax, shrink=0.8)
    cb.set_label("log10 quota %")
    fig.tight_layout()
    fig.savefig(p)
    plt.close(fig)
    return p
