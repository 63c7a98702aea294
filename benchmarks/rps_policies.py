"""Run the rps.json validation workload under every policy and model, and print the
simulated figures next to the real runs' (../shared/validation/has-gpu-v100).

    hasim data fetch --mirror ../shared --only validation
    python benchmarks/rps_policies.py [--out table.csv]

HAS-GPU, FaST-GShare and KServe are replayed once per real run, with that run's deployed
configuration and lead-in (``hasim.analysis.validate.compare``, as ``hasim validate
has-gpu`` does); their rows are means over the runs of each (system, model), real and
simulated alike. The real runs' latency statistics include failed requests, as the
validation README does; their GPU share is averaged over the client's window. Plain time
sharing has no real run: one replay per model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from hasim.analysis.validate import METRICS, by_system, compare, simulate
from hasim.data.locate import data_path

MODELS = ("resnet50", "mobilenet_v3_large", "convnext_large", "bert")
EXTRA = ("cost_gpu_seconds", "pods", "cold_starts")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the table as CSV")
    args = ap.parse_args()
    table = compare(data_path("validation/has-gpu-v100/result"), None, args.seed)
    agg = by_system(table)
    rows = []
    for d in agg.to_dict("records"):
        for source in ("sim", "real"):
            label = "sim (mean of replays)" if source == "sim" else f"real (mean of {d['runs']})"
            rows.append(
                {
                    "system": d["system"],
                    "model": d["model"],
                    "source": label,
                    **{m: d[f"{source}_{m}"] for m in METRICS},
                }
            )
    for model in MODELS:
        s = simulate("timeshare", model, None, args.seed)
        rows.append(
            {
                "system": "timeshare",
                "model": model,
                "source": "sim",
                **{m: s[m] for m in METRICS},
                **{k: s[k] for k in EXTRA},
            }
        )
    out = pd.DataFrame(rows).sort_values(["model", "system", "source"], ignore_index=True)
    pd.set_option("display.width", 200)
    print(out.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    if args.out:
        out.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
