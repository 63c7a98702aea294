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

Every protocol also scores 90 % prediction intervals (:mod:`hasim.perf.intervals`),
calibrated on residuals of cells that neither trained the predictor nor are scored:

* ``random``: the validation rows (split conformal);
* ``unseen-config``: the scored configurations in two random halves, each half's
  intervals from the other half's residuals;
* ``unseen-model`` folds: each fold's from the other folds' residuals (grouped
  cross-conformal); ``holdout_models``: from an inner grouped ``calib_folds``-fold over
  the training models (``calib_folds`` more fits, on fewer models: slightly wide).
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
from hasim.perf.offline.conformal import (
    conformal_bounds,
    cross_conformal,
    interval_report,
    log_residuals,
)
from hasim.perf.offline.tables import prepare_table, profile_mask
from hasim.perf.predictor import LatencyPredictor, PredictorParams

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


def _config_keys(rows: pd.DataFrame) -> np.ndarray:
    """One string per row naming its (gpu, model, SM %, quota %) configuration."""
    return (
        rows.gpu.astype(str)
        + "\0"
        + rows.model.astype(str)
        + "\0"
        + rows.sm_pct.astype(str)
        + "\0"
        + rows.quota_pct.astype(str)
    ).to_numpy()


def _held_config_rows(table: pd.DataFrame, test: np.ndarray) -> np.ndarray:
    """Rows (non-profile) sharing a held-out (model, SM, quota) configuration with ``test``:
    none may train, so a configuration is unseen at every batch."""
    keys = _config_keys(table)
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
    predictions: pd.DataFrame  # scored rows with "pred" and "fold" (for plots)
    intervals: dict[str, Any] | None = None  # coverage and width of the prediction intervals

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


def protocol_splits(
    tab: pd.DataFrame,
    protocol: str,
    seed: int = 0,
    folds: int = 5,
    holdout_models: Sequence[str] | None = None,
) -> list[Split]:
    """The splits ``protocol`` scores (the GNN's evaluation scores the same), over a table
    as ``prepare_table`` gives it."""
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol {protocol!r}", expected="one of " + ", ".join(PROTOCOLS))
    if protocol == "random":
        return [random_split(tab, seed)]
    if protocol == "unseen-config":
        return [config_split(tab, seed)]
    if holdout_models:
        return [model_split(tab, holdout_models)]
    return [
        model_split(tab, grp, f"fold {k + 1}/{folds}")
        for k, grp in enumerate(model_folds(tab.model.unique(), folds, seed))
    ]


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
    coverage: float = 0.9,
    calib_folds: int = 3,
) -> EvalResult:
    """Run one protocol on a measurement table; returns pooled and per-fold errors and
    the coverage of ``coverage`` prediction intervals (see the module docstring)."""
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol {protocol!r}", expected="one of " + ", ".join(PROTOCOLS))
    tab, profiles = prepare_table(table)
    params = params or PredictorParams(seed=seed)
    say = log or (lambda msg: None)
    unknown = sorted(set(holdout_models or ()) - set(tab.model))
    if protocol == "unseen-model" and unknown:
        raise InputError(
            f"--holdout-models names unknown models {unknown}",
            expected="models of the table, e.g. " + ", ".join(sorted(set(tab.model))[:5]),
        )
    splits = protocol_splits(tab, protocol, seed, folds, holdout_models)
    preds = []
    fold_rows = []
    val_report = None
    val_pred: pd.DataFrame | None = None
    total_fit = 0.0
    for k_fold, sp in enumerate(splits):
        check_split(tab, sp)
        model, secs = _fit(tab[sp.train], profiles, params, static)
        total_fit += secs
        te = tab[sp.test]
        pr = model.predict(
            te.model, te.batch, te.sm_pct, te.quota_pct, te.gpu, quota_in_percent=True
        )
        preds.append(te.assign(pred=pr, fold=k_fold))
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
            val_pred = va.assign(pred=vp)
    allp = pd.concat(preds, ignore_index=True)
    report = error_report(allp, allp.pred.to_numpy())
    ivs, secs = _score_intervals(
        tab, splits, allp, val_pred, profiles, params, static, coverage, calib_folds, seed, say
    )
    return EvalResult(protocol, report, fold_rows, val_report, total_fit + secs, allp, ivs)


# --------------------------------------------------------------------------- intervals


def _score_intervals(
    tab: pd.DataFrame,
    splits: list[Split],
    allp: pd.DataFrame,
    val_pred: pd.DataFrame | None,
    profiles: Mapping[tuple[str, str], Any],
    params: PredictorParams,
    static: Any,
    coverage: float,
    calib_folds: int,
    seed: int,
    say: Any,
) -> tuple[dict[str, Any], float]:
    """Coverage and mean width (fractions) of ``coverage`` intervals on the scored rows,
    and the seconds spent fitting for calibration."""
    res = log_residuals(allp.latency_ms, allp.pred)
    secs = 0.0
    name = splits[0].name
    if name == "random":
        if val_pred is None or val_pred.empty:
            raise InputError("the random split has no validation rows to calibrate on")
        lo, hi = conformal_bounds(log_residuals(val_pred.latency_ms, val_pred.pred), coverage)
        lo_r, hi_r = np.full(len(res), lo), np.full(len(res), hi)
        how = f"split conformal on the {len(val_pred)} validation rows"
    elif name == "unseen-config":
        half = _config_halves(allp, seed)
        lo_r, hi_r = cross_conformal(res, half, coverage)
        how = "scored configurations in two random halves, each calibrated on the other"
    elif len(splits) > 1:
        lo_r, hi_r = cross_conformal(res, allp.fold.to_numpy(), coverage)
        how = f"grouped cross-conformal over the {len(splits)} model folds"
    else:
        sp = splits[0]
        inner = sorted(set(tab.model[sp.train]))
        k = min(calib_folds, len(inner))
        if k < 2:
            raise InputError(
                f"{len(inner)} training model(s) cannot calibrate intervals",
                expected="at least two training models",
            )
        cal = []
        for j, grp in enumerate(model_folds(inner, k, seed)):
            train = sp.train & ~tab.model.isin(grp).to_numpy()
            test = sp.train & tab.model.isin(grp).to_numpy() & ~_profile_rows(tab)
            model, s = _fit(tab[train], profiles, params, static)
            secs += s
            te = tab[test]
            pr = model.predict(
                te.model, te.batch, te.sm_pct, te.quota_pct, te.gpu, quota_in_percent=True
            )
            cal.append(log_residuals(te.latency_ms, pr))
            say(f"calibration fold {j + 1}/{k}: {len(te)} rows of {len(grp)} models "
                f"(fit {s:.1f} s)")  # fmt: skip
        lo, hi = conformal_bounds(np.concatenate(cal), coverage)
        lo_r, hi_r = np.full(len(res), lo), np.full(len(res), hi)
        how = f"inner grouped {k}-fold over the {len(inner)} training models"
    rep = interval_report(allp.latency_ms, allp.pred, lo_r, hi_r, how)
    inside = (res >= lo_r) & (res <= hi_r)
    for col in ("batch", "quota_pct", "sm_pct"):
        g = pd.Series(inside).groupby(allp[col].to_numpy()).mean()
        rep[f"coverage_by_{col.removesuffix('_pct')}"] = {f"{k:g}": float(v) for k, v in g.items()}
    rep["level"] = coverage
    return rep, secs


def _config_halves(rows: pd.DataFrame, seed: int) -> np.ndarray:
    """0/1 per row: its (gpu, model, SM, quota) configuration's random half."""
    keys = _config_keys(rows)
    uniq, inv = np.unique(keys, return_inverse=True)
    half = np.random.default_rng(seed + 1).permutation(uniq.size) % 2
    return half[inv]


def config_fold_splits(table: pd.DataFrame, k: int, seed: int = 0) -> list[Split]:
    """``k`` unseen-config splits whose tests cover every non-profile row once: each
    model's (SM, quota) configurations dealt at random into ``k`` folds."""
    if k < 2:
        raise InputError(f"{k} configuration folds", expected="at least 2")
    rng = np.random.default_rng(seed)
    fold = np.full(len(table), -1)
    keys = table[["gpu", "model"]].astype(str).agg("\0".join, axis=1).to_numpy()
    conf = (table.sm_pct.to_numpy() * 1000 + table.quota_pct.to_numpy()).round(6)
    for key in sorted(set(keys)):
        rows = np.flatnonzero(keys == key)
        configs, inv = np.unique(conf[rows], return_inverse=True)
        deal = rng.permutation(configs.size) % k
        fold[rows] = deal[inv]
    prof = _profile_rows(table)
    out = []
    for j in range(k):
        test = (fold == j) & ~prof
        out.append(Split("unseen-config", ~test & ~_held_config_rows(table, test), test))
    return out


def out_of_fold(
    table: pd.DataFrame,
    kind: str,
    *,
    folds: int = 5,
    seed: int = 0,
    params: PredictorParams | None = None,
    static: Any = "default",
    log: Any = None,
) -> pd.DataFrame:
    """Every non-profile row predicted once by a predictor that did not train on it:
    ``kind`` ``unseen`` (grouped ``folds``-fold over models) or ``seen`` (``folds``-fold
    over each model's configurations). Columns of the table plus ``pred`` (ms), ``fold``."""
    tab, profiles = prepare_table(table)
    params = params or PredictorParams(seed=seed)
    say = log or (lambda msg: None)
    if kind == "unseen":
        splits = [
            model_split(tab, grp, f"fold {j + 1}/{folds}")
            for j, grp in enumerate(model_folds(tab.model.unique(), folds, seed))
        ]
    elif kind == "seen":
        splits = config_fold_splits(tab, folds, seed)
    else:
        raise InputError(f"kind {kind!r}", expected="seen or unseen")
    out = []
    for j, sp in enumerate(splits):
        check_split(tab, sp)
        model, secs = _fit(tab[sp.train], profiles, params, static)
        te = tab[sp.test]
        pr = model.predict(
            te.model, te.batch, te.sm_pct, te.quota_pct, te.gpu, quota_in_percent=True
        )
        out.append(te.assign(pred=pr, fold=j))
        ape = np.abs(pr / te.latency_ms.to_numpy() - 1.0)
        say(f"{kind} fold {j + 1}/{folds}: {len(te)} rows, MAPE {100 * ape.mean():.2f} % "
            f"(fit {secs:.1f} s)")  # fmt: skip
    return pd.concat(out, ignore_index=True)


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
    if res.intervals is not None:
        iv = res.intervals
        lines.append(
            f"{100 * iv['level']:g} % intervals: coverage {pct(iv['coverage'])}, mean width "
            f"{pct(iv['mean_width'])} of the prediction (x{iv['mean_low']:.3f} .. "
            f"x{iv['mean_high']:.3f}); calibration: {iv['calibration']}"
        )
        for key, title in (("coverage_by_batch", "batch"), ("coverage_by_quota", "quota %")):
            lines.append(
                f"coverage by {title}: " + "  ".join(f"{k}: {pct(v)}" for k, v in iv[key].items())
            )
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
