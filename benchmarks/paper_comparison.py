"""The papers' headline comparisons, simulated.

    hasim data fetch --mirror ../shared --only traces
    python benchmarks/paper_comparison.py [--policies has,fastgshare,kserve,...]
    python benchmarks/paper_comparison.py --no-calibration   # the presets' parameters
    python benchmarks/paper_comparison.py --replicas 8       # ratios with 90 % bands
    python benchmarks/paper_comparison.py --a100             # A100 80 GB, with ParvaGPU (MIG)

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

With ``--a100`` the same slice runs on A100 80 GB GPUs (latencies from the A100
measurements) with a zoo those measurements cover (MobileNet-V2, ResNet-50, ResNet-152,
BERT-large: ``A100_ZOO``), ``parvagpu`` (MIG x MPS segments, ``experiment=paper/parvagpu``)
beside the others; it prints each policy's cost and SLO violations relative to HAS-GPU and
to ParvaGPU (the papers make no A100 claims). The deployed FaST-GShare's per-model
configurations name the V100 zoo, so on this zoo its pods take its defaults (SM 30 %,
quota 0.2); the calibration (fitted on V100 runs) applies as on the V100.

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


A100_ZOO = "[mobilenet_v2,resnet50,resnet152,bert]"
"""The A100 runs' models, fastest first (A100 batch-1 full-GPU latency 5.0 / 5.1 / 13.1 /
13.7 ms): the A100 data have no MobileNet-V3-L or ConvNeXt-L."""
A100_POLICIES = "has,fastgshare,fastgshare_profiled,kserve,kpa,timeshare,parvagpu"


def a100_overrides(policy: str) -> list[str]:
    """Overrides that move ``policy``'s paper run onto the A100 cluster and zoo."""
    if policy == "parvagpu":  # its preset is the A100 one already
        return []
    return [
        "cluster=a100",
        "cluster.nodes=600",
        f"workload.mapping.zoo={A100_ZOO}",
        f"run={policy}_a100",
    ]


def a100_table(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Each A100 run's cost and SLO violations relative to HAS-GPU and to ParvaGPU."""
    head = ("cost/HAS", "SLO/HAS", "cost/Parva", "SLO/Parva")
    out = [f"{'A100 80 GB':22s} " + " ".join(f"{h:>10s}" for h in head)]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b else ("inf" if a else "-")

    for p, s in summaries.items():
        cells = []
        for ref in ("has", "parvagpu"):
            r = summaries.get(ref)
            for key in ("cost_gpu_seconds", "slo_violation_rate"):
                cells.append(ratio(s[key], r[key]) if r is not None else "-")
        out.append(f"{p:22s} " + " ".join(f"{c:>10s}" for c in cells))
    return out


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


DEFAULT_POLICIES = "has,fastgshare,fastgshare_profiled,kserve,kserve_unbounded,kpa,timeshare"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--policies",
        default=DEFAULT_POLICIES,
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
        "--a100",
        action="store_true",
        help="run on A100 80 GB GPUs (A100 data, A100_ZOO) with parvagpu; no saturation runs",
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
    policies = A100_POLICIES if args.a100 and args.policies == DEFAULT_POLICIES else args.policies
    for p in policies.split(","):
        ov = VARIANTS.get(p, [f"experiment=paper/{p}"])
        extra = a100_overrides(p) if args.a100 else []
        summaries[p], wall = _run([*ov, *calibrated(p, cal), *extra], args.replicas)
        print(_line(p, summaries[p], wall), flush=True)
    if args.a100:
        print()
        print("\n".join(a100_table(summaries)))
        return
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
