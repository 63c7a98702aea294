"""The papers' headline comparisons, simulated.

    hasim data fetch --mirror ../shared --only traces
    python benchmarks/paper_comparison.py [--policies has,fastgshare,kserve,kpa,timeshare]

Runs `hasim run experiment=paper/<policy>` on the Azure 2019 500-function slice for each
policy (results in results/paper/<policy>/; finished runs with the same config are reused)
and `experiment=paper/saturation` (one V100 overloaded by four ResNet-50 functions) under
FaST-GShare and time sharing, then prints cost, SLO violations and throughput side by side
with the papers' claims: HAS vs KServe cost 10.8x lower (with better SLO compliance); HAS
vs FaST-GShare 4.8x fewer SLO violations and 1.72x lower cost; FaST-GShare vs time sharing
throughput 3.15x (on packed GPUs). `kserve` is KServe as HAS-GPU's validation runs configured it
(min 1 / max 2 replicas per function, one request at a time per replica, as measured on
the real KServe runs); `kserve_unbounded` the same without the replica cap; `kpa` is
Knative's defaults (scale to zero, batching replicas).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import hasim

# label, numerator run, denominator run, summary key, the paper's ratio (nan: qualitative)
CLAIMS = [
    ("cost KServe / HAS", "kserve", "has", "cost_gpu_seconds", 10.8),
    ("SLO violations KServe / HAS", "kserve", "has", "slo_violation_rate", math.nan),
    ("cost KServe, no replica cap / HAS", "kserve_unbounded", "has", "cost_gpu_seconds", math.nan),
    (
        "SLO violations KServe, no replica cap / HAS",
        "kserve_unbounded",
        "has",
        "slo_violation_rate",
        math.nan,
    ),
    ("cost KServe (Knative defaults) / HAS", "kpa", "has", "cost_gpu_seconds", math.nan),
    ("SLO violations FaST-GShare / HAS", "fastgshare", "has", "slo_violation_rate", 4.8),
    ("cost FaST-GShare / HAS", "fastgshare", "has", "cost_gpu_seconds", 1.72),
    (
        "throughput FaST-GShare / time sharing, trace",
        "fastgshare",
        "timeshare",
        "throughput_rps",
        math.nan,
    ),
    (
        "throughput FaST-GShare / time sharing, 1 GPU",
        "sat_fastgshare",
        "sat_timeshare",
        "throughput_rps",
        3.15,
    ),
]


# runs that are a preset plus overrides
VARIANTS = {
    "kserve_unbounded": [
        "experiment=paper/kserve",
        "autoscaler.max_scale=0",
        "run=kserve_unbounded",
    ],
}


def _run(overrides: list[str]) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    r = hasim.run(
        [
            *overrides,
            "sim.progress=false",
            "output.quiet=true",
            "output.skip_existing=true",
            "output.requests=false",
        ]
    )
    return r.summary, time.perf_counter() - t0


def _line(name: str, s: dict[str, Any], wall: float) -> str:
    return (
        f"{name:15s} {wall:7.1f} s wall  cost {s['cost_gpu_seconds']:12.0f} GPU-s  "
        f"SLO viol {s['slo_violation_rate']:.4f}  p95 {s['latency_p95_s']:.3f} s  "
        f"throughput {s['throughput_rps']:.2f} req/s  GPUs max {s['gpus_used_max']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--policies",
        default="has,fastgshare,kserve,kserve_unbounded,kpa,timeshare",
        help="policies to run on the Azure slice (conf/experiment/paper/<name>)",
    )
    ap.add_argument(
        "--no-saturation",
        action="store_true",
        help="skip the one-GPU saturation runs (FaST-GShare vs time sharing)",
    )
    args = ap.parse_args()
    summaries: dict[str, dict[str, Any]] = {}
    for p in args.policies.split(","):
        summaries[p], wall = _run(VARIANTS.get(p, [f"experiment=paper/{p}"]))
        print(_line(p, summaries[p], wall), flush=True)
    if not args.no_saturation:
        for p in ("fastgshare", "timeshare"):
            key = f"sat_{p}"
            summaries[key], wall = _run(
                ["experiment=paper/saturation", f"autoscaler={p}", f"run={p}"]
            )
            print(_line(key, summaries[key], wall), flush=True)
    print()
    print(f"{'comparison':46s} {'ours':>9s} {'paper':>7s}")
    for label, a, b, key, paper in CLAIMS:
        if a in summaries and b in summaries:
            num, den = summaries[a][key], summaries[b][key]
            ours = num / den if den else math.inf
            claim = (
                "  >1"
                if math.isnan(paper) and label.startswith("SLO violations KServe")
                else ("     -" if math.isnan(paper) else f"{paper:7.2f}")
            )
            print(f"{label:46s} {ours:9.2f} {claim:>7s}")


if __name__ == "__main__":
    main()
