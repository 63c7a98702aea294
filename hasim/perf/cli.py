"""``hasim perf``: evaluate and train the learned latency predictor.

    hasim perf evaluate --protocol {random,unseen-config,unseen-model}
                        [--holdout-models a,b,c] [--folds K] [--seed S] [--data DIR]
                        [--plot FILE] [--static default|none|FILE] [--models a,b,...]
                        [--trees N] [--calib-folds K] [--json [FILE]]
    hasim perf train [--out PATH] [--data DIR] [--no-bert] [--static ...] [--trees N]
    hasim perf train-operators [--data DIR] [--out FILE] [--seed N]
    hasim perf evaluate-operators [--data DIR] [--folds K] [--seed N]
    hasim perf calibrate-intervals [--artifact PATH] [--out PATH] [--data DIR] [--folds K]
    hasim perf gpu-fit [--gpu A100-80GB] [--data DIR] [--holdout 0.2] [--seed N] [--out FILE]
    hasim perf gnn-evaluate --protocol {random,unseen-config,unseen-model} [--folds K]
                        [--seed S] [--data DIR] [--steps N] [--no-baseline] [--json [FILE]]

``evaluate`` also scores 90 % prediction intervals (coverage: the share of scored cells
inside their interval; mean width relative to the prediction; see
:mod:`hasim.perf.offline.evaluate`). ``--json`` alone prints one JSON object (``mape_pct``,
``coverage90_pct``, ``mean_width90_pct``, ...) on stdout and the report on stderr;
``--json FILE`` writes it to FILE and prints as usual.

``calibrate-intervals`` predicts every cell out of fold (grouped folds over models:
``unseen``; folds over each model's configurations: ``seen``) with the artifact's
hyperparameters and writes the residual quantiles the simulation's latency replicas draw
from (default: beside the artifact, ``<stem>.intervals.json``; for the packaged one
``hasim/perf/data/rapp_v100.intervals.json``).

``evaluate`` prints the errors (MAPE, median and p90 absolute percentage error, by quota,
SM, batch and model) and, as its last line, ``MAPE <x>%`` (for ``unseen-model``: over the
rows of every held-out model). ``train`` fits on every row of the data and writes the
artifact (default: the packaged ``hasim/perf/data/rapp_v100.json``).

``--data``: a RaPP ``graph_features_all_models`` folder, a data dir holding
``measurements/rapp-has-gpu-v100/graph_features_all_models``, or a measurement table
(file or folder) that :func:`hasim.perf.measurements.load_measurements` reads. Default:
``<data dir>/measurements/rapp-has-gpu-v100/graph_features_all_models`` (``hasim data
fetch`` puts it there).

``gpu-fit``: the compact law of one GPU fitted on the A100 measurement sets
(:mod:`hasim.perf.fit_gpu`; ``--data`` a data dir): held-out MAPE per source, where
sources overlap, the error of the transfer rules from the V100 law, FaST-GShare's A100
profile beside the law; ``--out`` writes the coefficients (the packaged files are
``hasim/perf/data/compact_a100_80gb.json`` / ``compact_a100_40gb.json``).

``gnn-evaluate``: RaPP's graph approach (:mod:`hasim.perf.offline.gnn`, needs torch: the
``calibrate`` extra) -- a graph attention network over each model's operator chain plus an
MLP, scored on the same splits as ``evaluate`` alone, beside today's LightGBM predictor and
as their log-space ensemble (weight 0.5, fixed). Prints MAPE, median and p90 APE per
predictor and the training times; its last line is the ensemble's ``MAPE <x>%``.

``train-operators`` / ``evaluate-operators``: the per-operator (kernel) model of
:mod:`hasim.perf.operators`; ``--data`` is a data dir, the ``rapp-has-gpu-v100`` folder or a
runtime-features folder (default ``<data dir>/measurements/rapp-has-gpu-v100``). Evaluation
is grouped k-fold over models; its last line is ``MAPE <x>%`` (per-inference: the summed
predicted operator times vs the measured end-to-end latency).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from hasim.errors import HasimError, InputError, MissingDataError
from hasim.paths import FETCH_HINT

RAPP_DIR = "measurements/rapp-has-gpu-v100/graph_features_all_models"
BERT_CSV = "measurements/has-gpu-bert-table/bert_qt.csv"


def _is_rapp_dir(p: Path) -> bool:
    return p.is_dir() and any(p.glob("*_*.json")) and not any(p.glob("*.csv"))


def resolve_data(data: str | None) -> tuple[pd.DataFrame, list[dict[str, Any]], Path | None]:
    """(normalized table, sources with licenses, BERT csv path or None) for ``--data``."""
    from hasim.data.locate import data_path
    from hasim.perf.offline.tables import RAPP_SOURCE, normalize_table, rapp_table_frame

    if data is None:
        rdir = data_path(RAPP_DIR)  # MissingDataError with the fetch hint
        bert = data_path(BERT_CSV, must_exist=False)
        return rapp_table_frame(rdir), [RAPP_SOURCE], bert if bert.is_file() else None
    p = Path(data).expanduser()
    if not p.exists():
        raise MissingDataError(p, FETCH_HINT)
    if (p / RAPP_DIR).is_dir():
        bert = p / BERT_CSV
        return rapp_table_frame(p / RAPP_DIR), [RAPP_SOURCE], bert if bert.is_file() else None
    if _is_rapp_dir(p):
        bert = p.parents[1] / "has-gpu-bert-table" / "bert_qt.csv" if len(p.parents) > 1 else None
        ok = bert is not None and bert.is_file()
        return rapp_table_frame(p), [RAPP_SOURCE], bert if ok else None
    from hasim.perf.measurements import load_measurements

    tab = normalize_table(load_measurements(p))
    if tab.empty:
        raise InputError("no MPS mean latencies in the table", path=p)
    sources = [{"dataset": s, "path": str(p)} for s in sorted(tab.source.unique())]
    return tab, sources, None


def _static(arg: str) -> Any:
    if arg == "default":
        return "default"
    if arg == "none":
        return None
    p = Path(arg)
    if not p.is_file():
        raise InputError("static feature file not found", path=p, expected="a CSV with model")
    return pd.read_csv(p)


def _params(args: argparse.Namespace) -> Any:
    from hasim.perf.predictor import PredictorParams

    kw: dict[str, Any] = {"seed": args.seed}
    if args.trees is not None:
        kw["n_estimators"] = args.trees
    if args.static == "none":
        kw["use_static"] = False
    return PredictorParams(**kw)


def _models_filter(tab: pd.DataFrame, models: str | None) -> pd.DataFrame:
    if not models:
        return tab
    want = [m.strip() for m in models.split(",") if m.strip()]
    unknown = sorted(set(want) - set(tab.model))
    if unknown:
        raise InputError(f"--models names unknown models {unknown}")
    return tab[tab.model.isin(want)].reset_index(drop=True)


def _eval_inputs(args: argparse.Namespace) -> tuple[pd.DataFrame, list[str] | None]:
    """The table an evaluation scores (``--data``, ``--models``) and its
    ``--holdout-models`` (only with ``--protocol unseen-model``)."""
    tab, _, _ = resolve_data(args.data)
    tab = _models_filter(tab, args.models)
    held = [m.strip() for m in args.holdout_models.split(",")] if args.holdout_models else None
    if held and args.protocol != "unseen-model":
        raise InputError("--holdout-models needs --protocol unseen-model")
    return tab, held


def cmd_evaluate(args: argparse.Namespace) -> int:
    from hasim.perf.offline.evaluate import evaluate, format_report, plot_predictions

    to_stdout = args.json == "-"
    say = (lambda msg: print(msg, file=sys.stderr)) if to_stdout else print
    if args.calib_folds < 2:
        raise InputError(f"--calib-folds {args.calib_folds}", expected="an integer >= 2")
    tab, held = _eval_inputs(args)
    t0 = time.perf_counter()
    res = evaluate(
        tab,
        args.protocol,
        seed=args.seed,
        folds=args.folds,
        holdout_models=held,
        params=_params(args),
        static=_static(args.static),
        log=say,
        calib_folds=args.calib_folds,
    )
    for line in format_report(res):
        say(line)
    if args.plot:
        say(f"plot: {plot_predictions(res, args.plot)}")
    doc = summary(res, argv_of(args))
    if to_stdout:
        say(f"wall time: {time.perf_counter() - t0:.1f} s")
        print(json.dumps(doc))
        return 0
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"summary: {args.json}")
    print(f"wall time: {time.perf_counter() - t0:.1f} s")
    if res.intervals is not None:
        iv = res.intervals
        print(
            f"90% interval: coverage {100 * iv['coverage']:.1f}%, "
            f"mean width {100 * iv['mean_width']:.1f}% of the prediction"
        )
    print(f"MAPE {100 * res.mape:.2f}%")
    return 0


def cmd_gnn_evaluate(args: argparse.Namespace) -> int:
    from hasim.perf.offline.gnn import GNNParams, evaluate_gnn

    to_stdout = args.json == "-"
    say = (lambda msg: print(msg, file=sys.stderr)) if to_stdout else print
    tab, held = _eval_inputs(args)
    params = GNNParams(seed=args.seed, val_by_model=args.protocol == "unseen-model")
    if args.steps is not None:
        params.max_steps = args.steps
    t0 = time.perf_counter()
    res = evaluate_gnn(
        tab,
        args.protocol,
        seed=args.seed,
        folds=args.folds,
        holdout_models=held,
        params=params,
        lgbm_params=_params(args),
        baseline=not args.no_baseline,
        static=_static(args.static),
        log=say,
    )
    for line in res.lines():
        say(line)
    doc = {"argv": argv_of(args), **res.summary()}
    if to_stdout:
        print(json.dumps(doc))
        return 0
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"summary: {args.json}")
    print(f"wall time: {time.perf_counter() - t0:.1f} s")
    best = "ensemble" if "ensemble" in res.reports else "gnn"
    print(f"MAPE {100 * res.reports[best]['mape']:.2f}%")
    return 0


def argv_of(args: argparse.Namespace) -> str:
    """The command line that reproduces ``args`` (for the record)."""
    parts = ["hasim perf", args.cmd]
    for k, v in sorted(vars(args).items()):
        if k in ("cmd", "json", "plot") or v is None or v is False:
            continue
        if k == "calib_folds" and not (args.protocol == "unseen-model" and args.holdout_models):
            continue
        if k == "folds" and args.protocol != "unseen-model":
            continue
        flag = "--" + k.replace("_", "-")
        parts += [flag] if v is True else [flag, str(v)]
    return " ".join(parts)


def summary(res: Any, command: str) -> dict[str, Any]:
    """The headline figures of an evaluation (fractions), JSON-ready."""
    import numpy as np

    r = res.report
    out: dict[str, Any] = {
        "protocol": res.protocol,
        "command": command,
        "n_scored": r["n"],
        "mape": round(r["mape"], 5),
        "median_ape": round(r["median_ape"], 5),
        "p90_ape": round(r["p90_ape"], 5),
        "train_seconds": round(res.train_seconds, 1),
        "fits": len(res.folds),
        "mape_pct": round(100 * r["mape"], 3),
    }
    if res.intervals is not None:
        iv = res.intervals
        out["coverage90_pct"] = round(100 * iv["coverage"], 2)
        out["mean_width90_pct"] = round(100 * iv["mean_width"], 2)
        out["interval_calibration"] = iv["calibration"]
        out["coverage90_by_batch_pct"] = {
            k: round(100 * v, 2) for k, v in iv["coverage_by_batch"].items()
        }
    if len(res.folds) > 1:
        out["mape_per_fold"] = [round(f["mape"], 5) for f in res.folds]
        out["mape_mean_over_folds"] = round(float(np.mean(out["mape_per_fold"])), 5)
    if res.protocol == "unseen-model":
        out["mape_mean_over_models"] = round(float(np.mean(list(r["by_model"].values()))), 5)
    if res.val is not None:
        out["validation_mape"] = round(res.val["mape"], 5)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from hasim.perf.compact import CompactConfig, CompactLatency
    from hasim.perf.offline.evaluate import error_report
    from hasim.perf.offline.tables import (
        BERT_SOURCE,
        bert_table_frame,
        derived_profile,
        extract_profiles,
    )
    from hasim.perf.predictor import LatencyPredictor
    from hasim.perf.rapp import PACKAGED

    tab, sources, bert = resolve_data(args.data)
    tab = _models_filter(tab, args.models)
    profiles = extract_profiles(tab)
    if bert is not None and not args.no_bert:
        bt = bert_table_frame(bert)
        compact = CompactLatency(CompactConfig())
        if compact.knows("bert"):
            gpu = str(bt.gpu.iloc[0])
            profiles[(gpu, "bert")] = derived_profile(
                lambda b, s, q: compact.latency_ms("bert", b, s, q),
                "bert",
                gpu,
                "derived: the compact law (hasim/perf/data/compact_v100.json) fitted to HAS-GPU's "
                "batch-4 BERT table (SM 30/50 %) with batch ratios borrowed from heavy RaPP "
                "models; not measured",
            )
            tab = pd.concat([tab, bt], ignore_index=True)
            sources = [*sources, BERT_SOURCE]
    weights = None
    if "bert" in set(tab.model):  # 18 cells: weigh them like a typical model's rows
        counts = tab.model.value_counts()
        weights = {"bert": round(float(counts.drop("bert").median()) / counts["bert"], 3)}
    t0 = time.perf_counter()
    pred = LatencyPredictor(_params(args)).fit(
        tab, profiles=profiles, static=_static(args.static), sources=sources, model_weight=weights
    )
    secs = time.perf_counter() - t0
    fit = pred.predict(
        tab.model, tab.batch, tab.sm_pct, tab.quota_pct, tab.gpu, quota_in_percent=True
    )
    rep = error_report(tab, fit)
    metrics: dict[str, Any] = {
        "train_seconds": round(secs, 1),
        "in_sample": {
            "what": "absolute percentage error on the training rows (fractions)",
            "n": rep["n"],
            "mape": round(rep["mape"], 4),
            "median_ape": round(rep["median_ape"], 4),
            "p90_ape": round(rep["p90_ape"], 4),
        },
    }
    if "bert" in set(tab.model):
        metrics["in_sample"]["bert_mape"] = round(rep["by_model"].get("bert", float("nan")), 4)
    if args.metrics:
        metrics["held_out"] = json.loads(Path(args.metrics).read_text(encoding="utf-8"))
    out = Path(args.out) if args.out else PACKAGED
    path = pred.save(out, metrics)
    size = path.stat().st_size + path.with_name(path.stem + ".lgbm.json.gz").stat().st_size
    print(f"trained on {len(tab)} rows of {tab.model.nunique()} models in {secs:.1f} s")
    print(f"in-sample MAPE {100 * rep['mape']:.2f} %, median {100 * rep['median_ape']:.2f} %")
    print(f"wrote {path} (+ model file; {size / 1024:.0f} KiB together)")
    return 0


def cmd_calibrate_intervals(args: argparse.Namespace) -> int:
    """Out-of-fold residuals of the artifact's predictor -> the run-time intervals file."""
    import numpy as np

    from hasim.perf.intervals import intervals_path
    from hasim.perf.offline.conformal import (
        cross_conformal,
        interval_report,
        intervals_from_residuals,
        log_residuals,
    )
    from hasim.perf.offline.evaluate import out_of_fold
    from hasim.perf.predictor import LatencyPredictor, PredictorParams, artifact_hash
    from hasim.perf.rapp import PACKAGED

    art = Path(args.artifact) if args.artifact else PACKAGED
    if not art.is_file():
        raise InputError("predictor artifact not found", path=art, expected="a .json file")
    pred = LatencyPredictor.load(art)
    params = PredictorParams.from_dict(
        {**json.loads(art.read_text(encoding="utf-8"))["hyperparameters"], "seed": args.seed}
    )
    if args.trees is not None:
        params.n_estimators = args.trees
    if args.static == "none":
        params.use_static = False
    tab, sources, _ = resolve_data(args.data)
    tab = _models_filter(tab, args.models)
    t0 = time.perf_counter()
    residuals: dict[str, np.ndarray] = {}
    measured: dict[str, Any] = {}
    for kind in ("unseen", "seen"):
        oof = out_of_fold(
            tab,
            kind,
            folds=args.folds,
            seed=args.seed,
            params=params,
            static=_static(args.static),
            log=print,
        )
        r = log_residuals(oof.latency_ms, oof.pred)
        residuals[kind] = r
        lo, hi = cross_conformal(r, oof.fold.to_numpy(), 0.9)
        rep = interval_report(oof.latency_ms, oof.pred, lo, hi, "cross-conformal over folds")
        measured[kind] = {
            "mape_pct": round(100 * float(np.mean(np.abs(oof.pred / oof.latency_ms - 1))), 3),
            "coverage90_pct": round(100 * rep["coverage"], 2),
            "mean_width90_pct": round(100 * rep["mean_width"], 2),
            "n": rep["n"],
        }
        print(
            f"{kind}: {len(r)} out-of-fold cells, MAPE {measured[kind]['mape_pct']:.2f} %, "
            f"90 % interval coverage {measured[kind]['coverage90_pct']:.1f} % "
            f"(cross-conformal over folds), mean width {measured[kind]['mean_width90_pct']:.1f} %"
        )
    seen = pred.models  # the artifact trained on every model it holds a profile of
    iv = intervals_from_residuals(
        residuals,
        seen,
        {
            "command": "hasim perf calibrate-intervals "
            + " ".join(f"--{k} {v}" for k, v in (("folds", args.folds), ("seed", args.seed))),
            "artifact": art.name,
            "artifact_sha256": artifact_hash(art),
            "hyperparameters": "the artifact's (LightGBM seed = --seed)",
            "folds": {
                "unseen": f"grouped {args.folds}-fold over models (seed {args.seed})",
                "seen": f"{args.folds}-fold over each model's (SM, quota) configurations, "
                f"all batches together (seed {args.seed})",
            },
            "sources": sources,
            "cross_conformal_check": measured,
            "seconds": round(time.perf_counter() - t0, 1),
        },
    )
    out = iv.save(args.out or intervals_path(art))
    for kind in ("seen", "unseen"):
        lo, hi = iv.bounds(kind, 0.9)
        print(f"{kind} 90 % interval: x{lo:.3f} .. x{hi:.3f} of the prediction")
    print(f"wrote {out}")
    return 0


def cmd_train_operators(args: argparse.Namespace) -> int:
    from hasim.perf.offline.operators import train_operator_model
    from hasim.perf.operators import OperatorParams, load_operator_model

    t0 = time.perf_counter()
    metrics = json.loads(Path(args.metrics).read_text(encoding="utf-8")) if args.metrics else None
    path = train_operator_model(
        args.data, args.out, args.seed, params=OperatorParams(seed=args.seed), metrics=metrics
    )
    km = load_operator_model(path)
    print(f"trained on {len(km.models)} models in {time.perf_counter() - t0:.1f} s")
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


def cmd_evaluate_operators(args: argparse.Namespace) -> int:
    from hasim.perf.offline.operators import evaluate_operator_model, load_operator_data
    from hasim.perf.operators import OperatorParams

    t0 = time.perf_counter()
    data = load_operator_data(args.data)
    res = evaluate_operator_model(
        data, folds=args.folds, seed=args.seed, params=OperatorParams(seed=args.seed), log=print
    )
    for line in res.lines():
        print(line)
    if args.json:
        out = {
            "protocol": f"grouped {args.folds}-fold over models, seed {args.seed}",
            "per_op_mape": round(res.per_op_mape, 4),
            "per_op_wape": round(res.per_op_wape, 4),
            "per_inference_mape": round(res.per_inference_mape, 4),
            "by_sm": {s: {k: round(v, 4) for k, v in d.items()} for s, d in res.by_sm.items()},
            "baselines": {k: round(v, 4) for k, v in res.baselines.items()},
            "n_op_rows": res.n_op_rows,
            "n_inferences": res.n_inferences,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        print(f"summary: {args.json}")
    print(f"wall time: {time.perf_counter() - t0:.1f} s")
    print(f"MAPE {100 * res.per_inference_mape:.2f}%")
    return 0


def cmd_gpu_fit(args: argparse.Namespace) -> int:
    """Fit one GPU's compact law on the A100 sets and print its errors."""
    from hasim.hardware import canonical_gpu
    from hasim.perf import fit_gpu

    gpu = canonical_gpu(args.gpu)
    table = fit_gpu.load_a100(args.data)
    with pd.option_context("display.width", 160, "display.precision", 2):
        rep = fit_gpu.holdout_report(table, gpu, share=args.holdout, seed=args.seed)
        print(f"{gpu}: held-out MAPE per source ({args.holdout:.0%} of each source's cells "
              f"held out, seed {args.seed})")  # fmt: skip
        print(rep.to_string(index=False))
        ov = fit_gpu.source_overlap(table, gpu)
        if len(ov):
            print("\nsources on the same cells (second / first latency):")
            g = ov.groupby(["first", "second", "model", "mig_slice"])["ratio"]
            print(g.agg(["count", "median", "min", "max"]).to_string())
        if gpu == "A100-80GB":
            print("\ntransfer rules V100 law -> A100-80GB (7g cells, V100 at SM 100 %):")
            print(fit_gpu.transfer_errors(table, gpu).to_string(index=False))
            if fit_gpu.PACKAGED_A100.is_file():
                print("\nFaST-GShare A100 profile (resnet, batch 1) beside the law (resnet50):")
                print(fit_gpu.fastgshare_check(args.data).to_string(index=False))
    if args.out:
        doc = fit_gpu.fit_document(table, gpu, sources=", ".join(fit_gpu.A100_SOURCES))
        doc["provenance"]["holdout_mape_pct"] = {
            r["source"]: round(r["mape_pct"], 2) for _, r in rep.iterrows()
        }
        doc["provenance"]["licenses"] = (
            "ParvaGPU (github.com/MunQ-Lee/ParvaGPU_SC24 5f3de1e, MIT); MIGProfiler "
            "(github.com/HuaizhengZhang/MIGProfiler bd5f2d0, MIT); quota slow-down from the "
            "RaPP V100 law (Apache-2.0)"
        )
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"\nwrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hasim perf", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", help="RaPP folder, data dir or measurement table")
        p.add_argument("--seed", type=int, default=0, help="split and LightGBM seed (0)")
        p.add_argument(
            "--static",
            default="default",
            help="architecture features: default (hasim.perf.offline.features), none, or a CSV",
        )
        p.add_argument("--trees", type=int, help="LightGBM rounds (default 600)")
        p.add_argument("--models", help="use only these models (comma-separated)")

    ev = sub.add_parser("evaluate", help="run an evaluation protocol")
    ev.add_argument(
        "--protocol", required=True, choices=("random", "unseen-config", "unseen-model")
    )
    ev.add_argument("--holdout-models", help="unseen-model: test on these, train on the rest")
    ev.add_argument("--folds", type=int, default=5, help="unseen-model: grouped folds (5)")
    ev.add_argument("--plot", help="write predicted vs measured as a PNG")
    ev.add_argument(
        "--json",
        nargs="?",
        const="-",
        help="print the headline figures as one JSON object (the report goes to stderr); "
        "with FILE: write them there",
    )
    ev.add_argument(
        "--calib-folds",
        type=int,
        default=3,
        help="unseen-model with --holdout-models: inner grouped folds that calibrate the "
        "intervals (3)",
    )
    common(ev)
    ci = sub.add_parser(
        "calibrate-intervals", help="out-of-fold residual quantiles for prediction intervals"
    )
    ci.add_argument("--artifact", help="predictor .json (default: the packaged one)")
    ci.add_argument(
        "--out", help="intervals .json (default: <artifact stem>.intervals.json beside it)"
    )
    ci.add_argument("--folds", type=int, default=5, help="folds per kind (5)")
    common(ci)
    gn = sub.add_parser(
        "gnn-evaluate",
        help="RaPP's graph approach: GNN alone, LightGBM and their ensemble (needs torch)",
    )
    gn.add_argument(
        "--protocol", required=True, choices=("random", "unseen-config", "unseen-model")
    )
    gn.add_argument("--holdout-models", help="unseen-model: test on these, train on the rest")
    gn.add_argument("--folds", type=int, default=5, help="unseen-model: grouped folds (5)")
    gn.add_argument("--steps", type=int, help="GNN: most training steps (default 800)")
    gn.add_argument(
        "--no-baseline", action="store_true", help="score the GNN alone (no LightGBM fits)"
    )
    gn.add_argument(
        "--json", nargs="?", const="-", help="print (or with FILE: write) the figures as JSON"
    )
    common(gn)
    tr = sub.add_parser("train", help="fit on all data and write the artifact")
    tr.add_argument("--out", help="artifact .json (default: the packaged rapp_v100.json)")
    tr.add_argument("--no-bert", action="store_true", help="leave HAS-GPU's BERT table out")
    tr.add_argument("--metrics", help="JSON of held-out figures to store in the artifact (a dict)")
    common(tr)
    to = sub.add_parser("train-operators", help="fit the per-operator (kernel) model")
    to.add_argument("--data", help="data dir, rapp-has-gpu-v100 folder or runtime-features folder")
    to.add_argument("--out", help="artifact (default: hasim/perf/data/operators_v100.json.gz)")
    to.add_argument("--seed", type=int, default=0, help="LightGBM seed (0)")
    to.add_argument("--metrics", help="JSON of held-out figures to store in the artifact")
    eo = sub.add_parser("evaluate-operators", help="grouped k-fold of the per-operator model")
    eo.add_argument("--data", help="data dir, rapp-has-gpu-v100 folder or runtime-features folder")
    eo.add_argument("--folds", type=int, default=5, help="grouped folds over models (5)")
    eo.add_argument("--seed", type=int, default=0, help="split and LightGBM seed (0)")
    eo.add_argument("--json", help="write the headline figures as JSON")
    gf = sub.add_parser("gpu-fit", help="fit/evaluate a GPU's compact law on the A100 sets")
    gf.add_argument("--gpu", default="A100-80GB", help="A100-80GB (default) or A100-40GB")
    gf.add_argument("--data", help="data dir (default: hasim's)")
    gf.add_argument("--holdout", type=float, default=0.2, help="share of cells held out (0.2)")
    gf.add_argument("--seed", type=int, default=0, help="split seed (0)")
    gf.add_argument("--out", help="write the coefficients fitted on every cell here")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hasim perf``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "evaluate":
            return cmd_evaluate(args)
        if args.cmd == "train-operators":
            return cmd_train_operators(args)
        if args.cmd == "evaluate-operators":
            return cmd_evaluate_operators(args)
        if args.cmd == "gnn-evaluate":
            return cmd_gnn_evaluate(args)
        if args.cmd == "calibrate-intervals":
            return cmd_calibrate_intervals(args)
        if args.cmd == "gpu-fit":
            return cmd_gpu_fit(args)
        return cmd_train(args)
    except HasimError as e:
        print(f"hasim perf: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
