"""Fit the ``compact`` latency law to the RaPP V100 table and write its coefficient file.

Usage::

    python -m hasim.perf.fit_compact --data-dir DIR --out hasim/perf/data/compact_v100.json

``DIR`` is a data dir laid out like ``../shared`` (``DIR/measurements/rapp-has-gpu-v100/
graph_features_all_models`` and ``DIR/measurements/has-gpu-bert-table/bert_qt.csv``).
Per model, a robust least-squares fit (soft-L1 on log latency, so errors are relative)
of the form documented in :mod:`hasim.perf.compact` runs on the *measured* cells only;
batches with no measurement (regnet_y_128gf batch 8, out of memory on the V100) get
``A_b``/``K_b`` extrapolated linearly from the two nearest batches with non-negative
slope. BERT is fitted to HAS-GPU's batch-4 table (18 cells) only; its ``A_b`` and
``K_b`` for batches 1, 2, 8 are the batch-4 values times the ratios ``r_b`` borrowed from
RaPP models of similar weight (:func:`hasim.perf.rapp_table.bert_batch_ratios`), and its
quota profile is batch independent as in the RaPP data. The printed and stored
errors are those of the *written* (rounded) coefficients, evaluated by
:class:`hasim.perf.compact.CompactLatency`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from hasim.perf.compact import FORMAT, CompactConfig, CompactLatency
from hasim.perf.rapp_table import BERT_MODEL, DEFAULT_BERT, DEFAULT_DIR, Grid, load_rapp_tables

SMOOTH_P = 8.0
"""Exponent of the smooth maximum (a sweep over 4..32 changed the MAPE by < 0.2 points)."""
SIG_DIGITS = 5
PROVENANCE = {
    "source_dataset": "RaPP graph_features_all_models: mean latency (ms, 180 runs) of 69 "
    "torchvision models x SM 5..100 % x batch 1,2,4,8 x quota 10..100 %, NVIDIA V100 16 GB, "
    "PyTorch eager FP32, MPS + HAS/FaST quota hook",
    "source_repository": "https://github.com/KontonGu/RaPP",
    "source_commit": "600348c1e0e16ab57eba0ba8938528985442495e",
    "source_path": "data/graph_features_all_models/",
    "license": "Apache-2.0",
    "copyright": "Copyright 2025 HAS-GPU Authors, KontonGu (Jianfeng Gu)",
    "bert_source": "https://github.com/KontonGu/HAS-GPU commit fe7105e, "
    "internal/controller/tmp_database.go (bert-qt: batch 4, SM 30/50 %, quota 10..100 %), "
    "Apache-2.0; fitted at batch 4 (no floor); batches 1, 2, 8 scale the whole law (A_b, K_b "
    "and Q via Qscale) by bert_batch_ratios (median L(b)/L(4) of the RaPP models with "
    "L(4) >= 60 ms at SM 30..50 %, full quota); an assumption shared with rapp_table",
}


# --------------------------------------------------------------------------- the law (vectorised)


def _smax(x: np.ndarray, y: np.ndarray, p: float) -> np.ndarray:
    m = np.maximum(np.maximum(x, y), 1e-12)
    return m * ((x / m) ** p + (y / m) ** p) ** (1.0 / p)


def _profile(rest: np.ndarray, form: str, quota: np.ndarray) -> np.ndarray:
    """Quota profile Q at the grid quotas from the free parameters (non-increasing)."""
    if form == "profile":  # rest[k] >= 0: decrements; rest[-1] = Q at the top quota
        return np.cumsum(rest[::-1])[::-1]
    h, g, k = rest  # token law: H (1/q)^g (1 + k * step below the second quota)
    step = np.clip((quota[1] - quota) / (quota[1] - quota[0]), 0.0, None) if len(quota) > 1 else 0
    return h * (1.0 / quota) ** g * (1.0 + k * step)


def _predict(theta: np.ndarray, x: dict[str, Any], form: str, p: float) -> np.ndarray:
    nb = x["nb"]
    f, a, k = theta[0], theta[1 : 1 + nb], theta[1 + nb : 1 + 2 * nb]
    q = _profile(theta[1 + 2 * nb :], form, x["quota"])
    g = _smax(np.full(x["s"].shape, f), a[x["bi"]] + k[x["bi"]] / x["s"], p)
    return _smax(g, q[x["qi"]], p)


def fit_grid(
    values: np.ndarray,
    mask: np.ndarray,
    sm: tuple[float, ...],
    batch: tuple[float, ...],
    quota: tuple[float, ...],
    form: str = "profile",
    p: float = SMOOTH_P,
    floor: bool = True,
    q_top_max: float | None = None,
) -> dict[str, list[float]]:
    """Fit F, A_b, K_b and the quota profile Q to ``values[s, b, q]`` (ms) where ``mask``.

    ``floor=False`` pins F to 0 (the GPU phase is all ``A_b + K_b / s``); ``q_top_max``
    bounds Q at the top quota (``profile``) or H (``token``), so the full-quota latency
    goes to G."""
    si, bi, qi = np.nonzero(mask)
    lat = values[si, bi, qi]
    sm_a, q_a = np.asarray(sm), np.asarray(quota)
    nb, nq = len(batch), len(quota)
    x = {"s": sm_a[si], "bi": bi, "qi": qi, "nb": nb, "quota": q_a}
    # initial guess: floor from the full-quota minimum, K from the smallest SM level
    full = np.where(mask[:, :, -1], values[:, :, -1], np.nan)
    f0 = float(np.nanmin(full)) if np.isfinite(full).any() else float(lat.min())
    a0 = np.full(nb, 0.5 * f0)
    k0 = np.empty(nb)
    for b in range(nb):
        col = full[:, b]
        ok = np.flatnonzero(np.isfinite(col))
        k0[b] = sm_a[ok[0]] * max(col[ok[0]] - 0.5 * f0, 0.1) if ok.size else 5 * f0
    if form == "profile":
        env = np.array([lat[qi == j].min() if np.any(qi == j) else np.nan for j in range(nq)])
        env = np.where(np.isfinite(env), env, np.nanmin(env))
        env = np.minimum.accumulate(env[::-1])[::-1] * 0.8  # non-increasing in q
        rest0 = np.r_[env[:-1] - env[1:], env[-1]]
        lo_r, hi_r = np.zeros(nq), np.full(nq, np.inf)
    else:
        rest0 = np.array([0.7 * f0, 1.0, 0.3])
        lo_r, hi_r = np.array([0.0, 0.3, 0.0]), np.array([np.inf, 3.0, 5.0])
    theta0 = np.r_[0.9 * f0 if floor else 0.0, a0, k0, rest0]
    lo = np.r_[np.zeros(1 + 2 * nb), lo_r]
    hi = np.r_[np.full(1 + 2 * nb, np.inf), hi_r]
    if not floor:
        hi[0] = 2e-9
    if q_top_max is not None:
        hi[-1 if form == "profile" else 1 + 2 * nb] = q_top_max
    theta0 = np.clip(theta0, lo + 1e-9, np.where(np.isfinite(hi), hi - 1e-9, np.inf))
    log_lat = np.log(lat)

    def resid(theta: np.ndarray) -> np.ndarray:
        return np.log(_predict(theta, x, form, p)) - log_lat

    r = least_squares(resid, theta0, bounds=(lo, hi), loss="soft_l1", f_scale=0.05)
    th = r.x
    a, k = th[1 : 1 + nb].copy(), th[1 + nb : 1 + 2 * nb].copy()
    # batches without any measurement: extrapolate A, K from the nearest measured batches
    have = [b for b in range(nb) if mask[:, b, :].any()]
    for b in range(nb):
        if b in have:
            continue
        below = [h for h in have if h < b]
        if len(below) >= 2:
            h0, h1 = below[-2], below[-1]
            t = (batch[b] - batch[h1]) / (batch[h1] - batch[h0])
            a[b] = a[h1] + max(0.0, a[h1] - a[h0]) * t
            k[b] = k[h1] + max(0.0, k[h1] - k[h0]) * t
        elif have:
            h = min(have, key=lambda h: abs(batch[h] - batch[b]))
            a[b], k[b] = a[h], k[h]
    prof = np.minimum.accumulate(_profile(th[1 + 2 * nb :], form, q_a))
    return {"F": [float(th[0])], "A": a.tolist(), "K": k.tolist(), "Q": prof.tolist()}


def _round(v: float) -> float:
    """``SIG_DIGITS`` significant digits; below 1e-6 ms (numerically zero) -> 0."""
    return 0.0 if abs(v) < 1e-6 else float(f"{v:.{SIG_DIGITS}g}")


def _fit_one(
    args: tuple[str, Grid, dict[float, float] | None, str],
) -> tuple[str, dict[str, list[float]]]:
    """Fit one model. With ``ratios`` (BERT): fit the measured batch only (no floor), then
    scale the whole law by the borrowed batch ratios ``r_b``: ``A_b``, ``K_b`` and the
    quota profile (``Qscale``), matching the ``rapp_table`` model's BERT rule."""
    name, g, ratios, form = args
    if ratios is None:
        return name, fit_grid(g.values, g.measured, g.sm, g.batch, g.quota, form)
    have = [k for k in range(len(g.batch)) if g.measured[:, k, :].any()]
    k0 = have[0]
    sub = fit_grid(
        g.values[:, k0 : k0 + 1],
        g.measured[:, k0 : k0 + 1],
        g.sm,
        (g.batch[k0],),
        g.quota,
        form,
        floor=False,  # a floor would not scale with the batch
    )
    sub["F"] = [0.0]
    ref = ratios.get(g.batch[k0], 1.0)
    scale = [ratios.get(b, b / g.batch[k0]) / ref for b in g.batch]
    sub["A"] = [sub["A"][0] * r for r in scale]
    sub["K"] = [sub["K"][0] * r for r in scale]
    sub["Qscale"] = scale
    return name, sub


# --------------------------------------------------------------------------- evaluation


def _errors(model: CompactLatency, name: str, g: Grid, mask: np.ndarray) -> np.ndarray:
    """Relative errors (pred / measured - 1) of ``model`` on the ``mask`` cells of ``g``."""
    out = np.empty(int(mask.sum()))
    k = 0
    for s, b, q in zip(*np.nonzero(mask), strict=True):
        pred = model.latency_ms(name, g.batch[b], g.sm[s], g.quota[q])
        out[k] = pred / g.values[s, b, q] - 1.0
        k += 1
    return out


def evaluate(model: CompactLatency, grids: dict[str, Grid], names: list[str]) -> dict[str, Any]:
    """MAPE of ``model`` on the measured cells of ``grids[names]``: overall, per quota, per
    batch, per model (fractions, not percent)."""
    per_model: dict[str, float] = {}
    by_q: dict[float, list[np.ndarray]] = {}
    by_b: dict[float, list[np.ndarray]] = {}
    all_err = []
    for name in names:
        g = grids[name]
        e = np.abs(_errors(model, name, g, g.measured))
        per_model[name] = float(e.mean())
        all_err.append(e)
        si, bi, qi = np.nonzero(g.measured)
        for j, q in enumerate(g.quota):
            by_q.setdefault(q, []).append(e[qi == j])
        for j, b in enumerate(g.batch):
            by_b.setdefault(b, []).append(e[bi == j])
    err = np.concatenate(all_err)
    return {
        "n_cells": int(err.size),
        "mape": float(err.mean()),
        "median_ape": float(np.median(err)),
        "p95_ape": float(np.quantile(err, 0.95)),
        "by_quota": {
            f"{q:g}": float(np.concatenate(v).mean())
            for q, v in sorted(by_q.items())
            if sum(x.size for x in v)
        },
        "by_batch": {
            f"{b:g}": float(np.concatenate(v).mean())
            for b, v in sorted(by_b.items())
            if sum(x.size for x in v)
        },
        "by_model": per_model,
    }


# --------------------------------------------------------------------------- file writing


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def render(doc: dict[str, Any]) -> str:
    """JSON text with one line per model (small and diff-friendly)."""
    models = doc["models"]
    head = {k: v for k, v in doc.items() if k != "models"}
    text = json.dumps(head, indent=2)
    lines = [
        f"  {json.dumps(n)}: {json.dumps(m, separators=(', ', ': '))}" for n, m in models.items()
    ]
    return text[:-2] + ',\n  "models": {\n  ' + ",\n  ".join(lines) + "\n  }\n}\n"


def main(argv: list[str] | None = None) -> int:
    """Fit, evaluate, print the errors and write the coefficient file."""
    ap = argparse.ArgumentParser(
        prog="python -m hasim.perf.fit_compact", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--data-dir", required=True, type=Path, help="data dir holding measurements/")
    ap.add_argument("--out", required=True, type=Path, help="coefficient JSON to write")
    ap.add_argument(
        "--quota-form",
        choices=("profile", "token"),
        default="profile",
        help="quota phase: monotone per-model profile (default) or the 3-parameter token law",
    )
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1), help="parallel fits")
    ap.add_argument(
        "--models", nargs="*", help="fit only these models, e.g. resnet50 bert (quick checks)"
    )
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    tables = load_rapp_tables(
        (args.data_dir / DEFAULT_DIR).resolve(),
        (args.data_dir / DEFAULT_BERT).resolve(),
        cache=False,
    )
    grids = tables.grids
    names = [m for m in tables.rapp_models if not args.models or m in args.models]
    with_bert = BERT_MODEL in grids and (not args.models or BERT_MODEL in args.models)
    if not names:
        ap.error("--models names no RaPP model")
    fit_names = names + ([BERT_MODEL] if with_bert else [])
    work = [
        (n, grids[n], tables.bert_ratios if n == BERT_MODEL else None, args.quota_form)
        for n in fit_names
    ]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as ex:
            fitted = dict(ex.map(_fit_one, work, chunksize=2))
    else:
        fitted = dict(map(_fit_one, work))
    t_fit = time.perf_counter() - t0

    models = {
        n: {k: [_round(v) for v in vals] if k != "F" else _round(vals[0]) for k, vals in c.items()}
        for n, c in fitted.items()
    }
    g0 = grids[names[0]]
    doc: dict[str, Any] = {
        "format": FORMAT,
        "description": "compact V100 latency law, see hasim/perf/compact.py; times in ms",
        "form": "L = smax(G_b(s), Q(q)); G_b(s) = smax(F, A_b + K_b / s); smax(x, y) = "
        "(x^p + y^p)^(1/p); Q non-increasing over `quotas`, linear in 1/q between them, "
        "Q(q_min) q_min / q below",
        "units": {"F, A, K/s, Q": "ms", "s": "SM percent", "q": "quota fraction", "b": "requests"},
        "window_ms": 40.0,
        "smooth_p": SMOOTH_P,
        "batches": list(g0.batch),
        "quotas": list(g0.quota),
        "provenance": {},
        "models": models,
    }
    # evaluate the rounded coefficients through the runtime model
    tmp = args.out.with_suffix(".tmp.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(render(doc), encoding="utf-8")
    try:
        model = CompactLatency(CompactConfig(coefficients=str(tmp)))
        rapp = evaluate(model, grids, names)
        bert = None
        if BERT_MODEL in models:
            bert = evaluate(model, grids, [BERT_MODEL])  # vs the 18 measured batch-4 cells
    finally:
        tmp.unlink(missing_ok=True)
    for n, e in rapp["by_model"].items():
        models[n]["mape"] = round(e, 4)
    if bert is not None:
        models[BERT_MODEL]["mape"] = round(bert["mape"], 4)
    doc["provenance"] = {
        **PROVENANCE,
        "fitted_by": "hasim.perf.fit_compact",
        "fit_command": "python -m hasim.perf.fit_compact --data-dir DIR --out "
        + str(args.out)
        + ("" if args.quota_form == "profile" else " --quota-form token"),
        "quota_form": args.quota_form,
        "fit_date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "hasim_commit": _git_commit(),
        "fit_error": {
            "what": "absolute relative error of the written coefficients vs the measured "
            "RaPP cells (fractions)",
            "n_cells": rapp["n_cells"],
            "mape": round(rapp["mape"], 4),
            "median_ape": round(rapp["median_ape"], 4),
            "p95_ape": round(rapp["p95_ape"], 4),
            "mape_by_quota": {k: round(v, 4) for k, v in rapp["by_quota"].items()},
            "mape_by_batch": {k: round(v, 4) for k, v in rapp["by_batch"].items()},
            "bert_mape_vs_table": None if bert is None else round(bert["mape"], 4),
        },
        "bert_batch_ratios": {f"{b:g}": round(r, 4) for b, r in tables.bert_ratios.items()},
    }
    text = render(doc)
    args.out.write_text(text, encoding="utf-8")

    pct = lambda v: f"{100 * v:.2f} %"  # noqa: E731
    print(f"fitted {len(fitted)} models ({args.quota_form}) in {t_fit:.1f} s")
    print(
        f"RaPP cells: {rapp['n_cells']}  MAPE {pct(rapp['mape'])}  median {pct(rapp['median_ape'])}"
        f"  p95 {pct(rapp['p95_ape'])}"
    )
    print("MAPE by quota: " + "  ".join(f"{k}: {pct(v)}" for k, v in rapp["by_quota"].items()))
    print("MAPE by batch: " + "  ".join(f"{k}: {pct(v)}" for k, v in rapp["by_batch"].items()))
    if bert is not None:
        print(f"bert vs its {bert['n_cells']} measured cells: MAPE {pct(bert['mape'])}")
    print("per model:")
    for n, e in sorted(rapp["by_model"].items(), key=lambda kv: kv[1]):
        print(f"  {n:22s} {pct(e)}")
    print(f"wrote {args.out} ({len(text.encode()) / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
