"""The papers' headline comparisons on the Azure 2019 500-function slice.

    hasim data fetch --mirror ../shared --only traces
    python benchmarks/paper_comparison.py [--policies has,fastgshare,kpa,timeshare]

Runs `hasim run experiment=paper/<policy>` for each policy (results in
results/paper/<policy>/; finished runs with the same config are reused) and prints cost,
SLO violations and throughput side by side with the papers' claims:
HAS vs KServe cost 10.8x lower; HAS vs FaST-GShare 4.8x fewer SLO violations and 1.72x
lower cost; FaST-GShare vs time sharing throughput 3.15x.
"""

from __future__ import annotations

import argparse
import time

import hasim

CLAIMS = [
    ("cost KServe / HAS", "kpa", "has", "cost_gpu_seconds", 10.8),
    ("SLO violations FaST-GShare / HAS", "fastgshare", "has", "slo_violation_rate", 4.8),
    ("cost FaST-GShare / HAS", "fastgshare", "has", "cost_gpu_seconds", 1.72),
    ("throughput FaST-GShare / time sharing", "fastgshare", "timeshare", "throughput_rps", 3.15),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", default="has,fastgshare,kpa,timeshare")
    args = ap.parse_args()
    summaries = {}
    for p in args.policies.split(","):
        t0 = time.perf_counter()
        r = hasim.run([f"experiment=paper/{p}", "sim.progress=false", "output.quiet=true",
                       "output.skip_existing=true", "output.requests=false"])
        summaries[p] = r.summary
        print(f"{p:11s} {time.perf_counter() - t0:7.1f} s wall  "
              f"cost {r.summary['cost_gpu_seconds']:12.0f} GPU-s  "
              f"SLO viol {r.summary['slo_violation_rate']:.4f}  "
              f"p95 {r.summary['latency_p95_s']:.3f} s  "
              f"throughput {r.summary['throughput_rps']:.2f} req/s  "
              f"GPUs max {r.summary['gpus_used_max']}")
    print()
    print(f"{'comparison':40s} {'ours':>9s} {'paper':>7s}")
    for label, a, b, key, paper in CLAIMS:
        if a in summaries and b in summaries:
            num, den = summaries[a][key], summaries[b][key]
            ours = num / den if den else float("inf")
            print(f"{label:40s} {ours:9.2f} {paper:7.2f}")


if __name__ == "__main__":
    main()
