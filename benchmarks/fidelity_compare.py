"""Fast path vs kernel mode on the rps.json experiments (issue: kernel-level fidelity).

    hasim data fetch --mirror ../shared --only validation
    python benchmarks/fidelity_compare.py [--experiments rps/has_resnet,...] [--out t.csv]

Runs every ``conf/experiment/rps/*`` preset (HAS-GPU's validation workload, 2,690
requests in 250 s) four times: ``sim.fidelity=batch`` without and with slot contention
(``sim.contention``; a batch's latency from the perf table at the pod's SM and quota,
plus the wait for an SM slot when more of the function's pods are busy on the GPU than it
runs at once), ``sim.fidelity=kernel`` with ``sim.launch_gated=false``
(the quota-1 latency split into kernels run synchronously under the GPU's token
scheduler) and kernel mode with ``sim.launch_gated=true`` (the default: the token gates
the launches); prints mean and p95 latency (s), GPU share, wall time and the kernel/batch
ratio of the mean. Where pods run alone at quota 1 (KServe) the modes agree; where they
differ, the difference is how the quota (token) is turned into latency: the table's
measured quota curve vs the scheduler's explicit tokens.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import hasim

MODES = {
    "batch_no_contention": ["sim.fidelity=batch", "sim.contention=false"],
    "batch": ["sim.fidelity=batch"],
    "kernel": ["sim.fidelity=kernel", "sim.launch_gated=false"],
    "kernel_gated": ["sim.fidelity=kernel", "sim.launch_gated=true"],
}


def presets() -> list[str]:
    root = Path(__file__).resolve().parents[1] / "conf" / "experiment" / "rps"
    return [f"rps/{p.stem}" for p in sorted(root.glob("*.yaml"))]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--experiments", default=None, help="comma-separated; default: all rps/*")
    ap.add_argument("--out", default=None, help="also write the table as CSV")
    args = ap.parse_args()
    names = args.experiments.split(",") if args.experiments else presets()
    rows = []
    for exp in names:
        row: dict[str, object] = {"experiment": exp}
        for mode, extra in MODES.items():
            t0 = time.perf_counter()
            r = hasim.run(
                [
                    f"experiment={exp}",
                    *extra,
                    "output.write=false",
                    "sim.progress=false",
                    "output.quiet=true",
                ]
            )
            s = r.summary
            row[f"{mode}_mean_s"] = s["latency_mean_s"]
            row[f"{mode}_p95_s"] = s["latency_p95_s"]
            row[f"{mode}_share"] = s["gpu_share_mean"]
            row[f"{mode}_wall_s"] = time.perf_counter() - t0
        row["kernel/batch"] = row["kernel_mean_s"] / row["batch_mean_s"]  # type: ignore[operator]
        row["gated/batch"] = row["kernel_gated_mean_s"] / row["batch_mean_s"]  # type: ignore[operator]
        rows.append(row)
        print(
            f"{exp:24s} mean batch {row['batch_mean_s']:.3f}  kernel {row['kernel_mean_s']:.3f}"
            f"  gated {row['kernel_gated_mean_s']:.3f} s  (x{row['kernel/batch']:.2f},"
            f" x{row['gated/batch']:.2f})  wall {row['batch_wall_s']:.1f}/"
            f"{row['kernel_wall_s']:.1f}/{row['kernel_gated_wall_s']:.1f} s",
            flush=True,
        )
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print()
        print(df.round(3).to_string(index=False))
    if args.out:
        df.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
