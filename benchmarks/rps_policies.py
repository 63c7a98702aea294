"""Run the rps.json validation workload under every policy and model, and print the
simulated figures next to the real runs' (../shared/validation/has-gpu-v100).

    hasim data fetch --mirror ../shared --only validation
    python benchmarks/rps_policies.py [--out table.csv]

Real figures are the mean over the repeats of each (system, model) in result/; the
real runs' latency statistics include failed requests, as the validation README does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from hasim.analysis.real_runs import find_runs, real_run_metrics
from hasim.analysis.validate import simulate as replay
from hasim.data.locate import data_path

POLICIES = {"has": "has", "fastgshare": "fastgshare", "kserve": "kserve", "timeshare": "timeshare"}
MODELS = {"resnet": "resnet50", "mobilenet": "mobilenet_v3_large",
          "convnext": "convnext_large", "bert": "bert"}


def simulate(policy: str, short: str, seed: int) -> dict[str, object]:
    m = replay(policy, MODELS[short], None, seed)
    return {
        "system": policy, "model": MODELS[short], "source": "sim",
        **{k: m[k] for k in ("latency_mean_s", "latency_p95_s", "latency_p99_s")},
        "slo_violation_rate@0.2s": m["slo_violation_rate_0.2s"],
        "slo_violation_rate@0.5s": m["slo_violation_rate_0.5s"],
        **{k: m[k] for k in ("gpu_share_mean", "cost_gpu_seconds", "pods", "cold_starts")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the table as CSV")
    args = ap.parse_args()
    rows = [simulate(p, m, args.seed) for p in POLICIES for m in MODELS]
    real = pd.DataFrame([real_run_metrics(r) for r in
                         find_runs(data_path("validation/has-gpu-v100/result"))])
    cols = ["latency_mean_s", "latency_p95_s", "latency_p99_s", "slo_violation_rate@0.2s",
            "slo_violation_rate@0.5s", "gpu_share_mean"]
    agg = real.groupby(["system", "model"])[cols].mean().reset_index()
    repeats = real.groupby(["system", "model"]).size().astype(str).to_numpy()
    agg["source"] = "real (mean of " + repeats + ")"
    table = pd.concat([pd.DataFrame(rows), agg], ignore_index=True)
    table = table.sort_values(["model", "system", "source"], ignore_index=True)
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
