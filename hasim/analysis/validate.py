"""``hasim validate has-gpu``: replay HAS-GPU's validation workload with the policy and
configuration each real run used (``conf/experiment/rps/<system>_<model>.yaml``) and
compare with the real runs (``validation/has-gpu-v100/result/<system>/<run>/``).

Metrics per run, real and simulated: mean, p95 and p99 latency (s), SLO violation rate
at 0.2 s and 0.5 s (failed requests count as violations), mean GPU share (GPUs), and
relative errors (sim - real) / real.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from hasim.analysis.real_runs import MODEL_OF, find_runs, real_run_metrics
from hasim.errors import HasimError, InputError

SYSTEMS = ("has", "fastgshare", "kserve")  # systems with real runs
SIMULATED = (*SYSTEMS, "timeshare")  # systems with rps experiments
SHORT = {model: short for short, model in MODEL_OF.items()}  # resnet50 -> resnet
THRESHOLDS = (0.2, 0.5)
METRICS = ["latency_mean_s", "latency_p95_s", "latency_p99_s",
           *[f"slo_violation_rate_{t:g}s" for t in THRESHOLDS], "gpu_share_mean"]


def simulate(system: str, model: str, workload: Path | None, seed: int = 0,
             overrides: list[str] | None = None) -> dict[str, float]:
    """One replay of the stage workload under ``system`` for ``model``."""
    import hasim

    if system not in SIMULATED:
        raise InputError(f"unknown system {system!r}", expected=f"one of {', '.join(SIMULATED)}")
    short = SHORT.get(model) or (model if model in MODEL_OF else None)
    if short is None:
        raise InputError(f"unknown model {model!r}",
                         expected=f"one of {', '.join(sorted(SHORT))}")
    ov = [f"experiment=rps/{system}_{short}", f"seed={seed}", "sim.progress=false",
          "output.write=false", "output.quiet=true"]
    if workload is not None:
        ov.append(f"workload.path={Path(workload).resolve()}")
    r = hasim.run([*ov, *(overrides or [])])
    req, s = r.requests, r.summary
    failed = (req["status"] != "completed").to_numpy()
    lat = req["latency"].to_numpy()
    out = {k: float(s[k]) for k in ("latency_mean_s", "latency_p95_s", "latency_p99_s",
                                   "gpu_share_mean", "cost_gpu_seconds")}
    for t in THRESHOLDS:
        out[f"slo_violation_rate_{t:g}s"] = float(((lat > t) | failed).mean())
    out["requests"] = int(len(req))
    out["pods"] = int(s["pods_created"])
    out["cold_starts"] = int(s["cold_starts"])
    return out


def compare(results: Path, workload: Path | None, seed: int = 0,
            system: str | None = None, model: str | None = None) -> pd.DataFrame:
    """Real vs simulated metrics for every run below ``results`` (optionally filtered)."""
    runs = find_runs(results)
    if not runs:
        raise InputError("no runs found", path=results, expected="<system>/<run>/ folders")
    rows, cache = [], {}
    for run in runs:
        real = real_run_metrics(run, THRESHOLDS)
        if real["system"] not in SYSTEMS:
            continue
        if (system and real["system"] != system) or (model and real["model"] != model):
            continue
        key = (real["system"], real["model"])
        if key not in cache:
            cache[key] = simulate(*key, workload, seed)
        sim = cache[key]
        row = {"system": real["system"], "run": real["run"], "model": real["model"]}
        for m in METRICS:
            key = f"slo_violation_rate@{m.rsplit('_', 1)[-1]}" if m.startswith("slo") else m
            rv, sv = real.get(key), sim[m]
            row[f"real_{m}"] = rv
            row[f"sim_{m}"] = sv
            ok = rv is not None and not (isinstance(rv, float) and math.isnan(rv)) and rv != 0
            row[f"err_{m}"] = (sv - rv) / rv if ok else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def ordering_check(table: pd.DataFrame) -> pd.DataFrame:
    """Per model: the systems ordered by real and by simulated mean latency."""
    out = []
    for model, g in table.groupby("model"):
        m = g.groupby("system")[["real_latency_mean_s", "sim_latency_mean_s"]].mean()
        real = list(m["real_latency_mean_s"].sort_values().index)
        sim = list(m["sim_latency_mean_s"].sort_values().index)
        out.append({"model": model, "real_order": " < ".join(real),
                    "sim_order": " < ".join(sim), "same": real == sim})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    from hasim.data.locate import data_path

    ap = argparse.ArgumentParser(
        prog="hasim validate has-gpu",
        description="Replay HAS-GPU's validation workload with each real run's policy and "
        "configuration; print real vs simulated latency, SLO violations and GPU share.",
    )
    ap.add_argument("target", choices=["has-gpu"], help="validation set")
    ap.add_argument("--workload", type=Path, default=None,
                    help="stage file in the rps.json layout (default: the data dir's "
                    "validation/has-gpu-v100/client/rps.json)")
    ap.add_argument("--results", type=Path, default=None,
                    help="folder laid out like result/<system>/<run>/ (default: the data dir's)")
    ap.add_argument("--system", choices=SYSTEMS, help="only this system")
    ap.add_argument("--model", choices=sorted(SHORT), help="only this model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true",
                    help="with --system and --model: simulate one replay and print its "
                    "metrics as JSON (no real results needed)")
    ap.add_argument("--out", type=Path, help="write the comparison table (.csv or .parquet)")
    args = ap.parse_args(argv)
    try:
        if args.json:
            if not (args.system and args.model):
                ap.error("--json needs --system and --model")
            print(json.dumps(simulate(args.system, args.model, args.workload, args.seed)))
            return 0
        results = args.results or data_path("validation/has-gpu-v100/result")
        table = compare(results, args.workload, args.seed, args.system, args.model)
    except HasimError as e:
        print(f"hasim validate: error: {e}", file=sys.stderr)
        return 2
    pd.set_option("display.width", 220)
    show = ["system", "run", "model"]
    for m in ("latency_mean_s", "latency_p95_s", "gpu_share_mean", "slo_violation_rate_0.2s"):
        show += [f"real_{m}", f"sim_{m}", f"err_{m}"]
    print(table[show].to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    print()
    print(ordering_check(table).to_string(index=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        (table.to_parquet if args.out.suffix == ".parquet" else table.to_csv)(args.out, index=False)
    return 0
