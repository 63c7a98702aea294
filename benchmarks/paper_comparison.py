"""The papers' headline comparisons, simulated.

    hasim data fetch --mirror ../shared --only traces
    python benchmarks/paper_comparison.py [--policies has,fastgshare,kserve,...]
    python benchmarks/paper_comparison.py --no-calibration   # the presets' parameters
    python benchmarks/paper_comparison.py --replicas 8       # ratios with 90 % bands

Runs `hasim run experiment=paper/<policy>` on the Azure 2019 500-function slice for each
policy (results in results/paper/<policy>/; finished runs with the same config are reused)
and `experiment=paper/saturation` (one V100 overloaded by four ResNet-50 functions) under
FaST-GShare and time sharing, then prints cost, SLO violations and throughput side by side
with the papers' claims: HAS vs KServe cost 10.8x lower (with better SLO compliance); HAS
vs FaST-GShare 4.8x fewer SLO violations and 1.72x lower cost; FaST-GShare vs time sharing
throughput 3.15x (on packed GPUs). `fastgshare` is the FaST-GShare HAS-GPU compared against
(the deployed baseline, `fastgshare_deployed`); `fastgshare_profiled` the FaST-GShare
paper's profile-searching autoscaler. `kserve` is KServe as HAS-GPU's validation runs
configured it (min 1 / max 2 replicas per function, one request at a time per replica, as
measured on the real KServe runs); `kserve_unbounded` the same without the replica cap;
`kpa` is Knative's defaults (scale to zero, batching replicas).

Every run uses the calibrated parameter set of `hasim validate fit`
(conf/calibration/has_gpu_v100.yaml, fitted to the real rps.json runs only): the
overrides of the system whose real runs it was fitted on (HAS-GPU, the deployed
FaST-GShare, KServe); the other policies' function pods get its cluster-wide values (those
of HAS-GPU's function pods). No knob is set from the papers' ratios.

With ``--replicas N`` every run is made with ``sim.replicas=N`` (hasim/sim/replicas.py)
and each ratio is printed with its 90 % band: the ratios of the two runs' per-replica
values, paired by replica index (the same seed and latency draws), the point ratio
replica 0's.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import pandas as pd

import hasim
from hasim.sim.replicas import ratio_band

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
        "SLO violations FaST-GShare (paper's autoscaler) / HAS",
        "fastgshare_profiled",
        "has",
        "slo_violation_rate",
        math.nan,
    ),
    (
        "cost FaST-GShare (paper's autoscaler) / HAS",
        "fastgshare_profiled",
        "has",
        "cost_gpu_seconds",
        math.nan,
    ),
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


# the calibration's system for each policy (None: the function pods' cluster-wide values)
SYSTEM_OF = {
    "has": "has",
    "fastgshare": "fastgshare",
    "kserve": "kserve",
    "kserve_unbounded": "kserve",
    "kpa": "kserve",
}


def calibrated(policy: str, calibration: dict[str, list[str]]) -> list[str]:
    """The calibration's overrides for ``policy``'s runs (module docstring)."""
    system = SYSTEM_OF.get(policy)
    if system is not None:
        return list(calibration.get(system, []))
    return [o for o in calibration.get("has", []) if o.startswith("cluster.")]


def _run(overrides: list[str], replicas: int = 1) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    r = hasim.run(
        [
            *overrides,
            "sim.progress=false",
            "output.quiet=true",
            "output.skip_existing=true",
            "output.requests=false",
            *([f"sim.replicas={replicas}"] if replicas > 1 else []),
        ]
    )
    if r.replicas is not None:
        REPLICAS[id(r.summary)] = r.replicas
    return r.summary, time.perf_counter() - t0


REPLICAS: dict[int, pd.DataFrame] = {}
"""Per-replica frames of the runs made with replicas, by id of their summary."""


def ratio_cell(num: dict[str, Any], den: dict[str, Any], key: str) -> str:
    """The ratio's 90 % band as text, or "" when either run has no replicas."""
    a, b = REPLICAS.get(id(num)), REPLICAS.get(id(den))
    if a is None or b is None or key not in a.columns:
        return ""
    lo, hi = ratio_band(a, b, key)
    return "" if lo != lo else f"  [{lo:.2f}, {hi:.2f}]"


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
        default="has,fastgshare,fastgshare_profiled,kserve,kserve_unbounded,kpa,timeshare",
        help="policies to run on the Azure slice (conf/experiment/paper/<name>)",
    )
    ap.add_argument(
        "--no-saturation",
        action="store_true",
        help="skip the one-GPU saturation runs (FaST-GShare vs time sharing)",
    )
    ap.add_argument(
        "--no-calibration",
        action="store_true",
        help="run with the presets' parameters (not the calibrated set)",
    )
    ap.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="sim.replicas of every run: ratios get 90 %% bands (default 1: none)",
    )
    args = ap.parse_args()
    if args.replicas < 1:
        ap.error("--replicas must be >= 1")
    from hasim.analysis.fit import load_calibration

    cal = {} if args.no_calibration else load_calibration()
    print(f"calibration: {'none' if not cal else 'conf/calibration/has_gpu_v100.yaml'}")
    summaries: dict[str, dict[str, Any]] = {}
    for p in args.policies.split(","):
        ov = VARIANTS.get(p, [f"experiment=paper/{p}"])
        summaries[p], wall = _run([*ov, *calibrated(p, cal)], args.replicas)
        print(_line(p, summaries[p], wall), flush=True)
    if not args.no_saturation:
        for p in ("fastgshare", "timeshare"):
            key = f"sat_{p}"
            summaries[key], wall = _run(
                [
                    "experiment=paper/saturation",
                    f"autoscaler={p}",
                    f"run={p}",
                    *calibrated(key, cal),
                ],
                args.replicas,
            )
            print(_line(key, summaries[key], wall), flush=True)
    print()
    head = "  90 % band" if args.replicas > 1 else ""
    print(f"{'comparison':46s} {'ours':>9s} {'paper':>7s}{head}")
    for label, a, b, key, paper in CLAIMS:
        if a in summaries and b in summaries:
            num, den = summaries[a][key], summaries[b][key]
            ours = num / den if den else math.inf
            claim = (
                "  >1"
                if math.isnan(paper) and label.startswith("SLO violations KServe")
                else ("     -" if math.isnan(paper) else f"{paper:7.2f}")
            )
            band = ratio_cell(summaries[a], summaries[b], key)
            print(f"{label:46s} {ours:9.2f} {claim:>7s}{band}")


if __name__ == "__main__":
    main()
