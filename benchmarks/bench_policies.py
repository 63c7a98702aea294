"""Benchmark: every policy on the full Azure 2019 500-function 8-hour slice (3,037,902
requests), end to end, one core; and, in the same run as the reference, a plain
per-request SimPy loop over the same arrivals.

    hasim data fetch --mirror ../shared --only traces
    python benchmarks/bench_policies.py [--only has,kpa] [--repeat 3] [--kernel]

Each measurement runs in a fresh Python process (so peak memory is its own): the wall
time of ``hasim.run([...])`` (composing the config, building the workload, simulating,
building the result tables; no writing), requests/s = requests / wall, and the peak
resident set size. The reference loop walks every function's arrivals in a SimPy process
with one event per request and serves them FIFO on one server for the compact model's
batch-1 full-GPU latency of the function's model: the per-request design hasim's data
plane exists to beat (a SimPy process per request, with a Resource, is ~40x slower
still). ``--kernel`` adds kernel fidelity on the rps.json stages and on a 10-minute
window of the slice. Targets (issue 13): >= 500,000
requests/s for every policy, >= 1,000,000 for static, >= 2x the reference, <= 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

QUIET = ["sim.progress=false", "output.write=false", "output.plot=false", "output.quiet=true"]
RUNS: dict[str, list[str]] = {
    "static": ["experiment=azure500", "autoscaler=static", "autoscaler.pods=1"],
    "has": ["experiment=paper/has"],
    "fastgshare": ["experiment=paper/fastgshare"],
    "fastgshare_profiled": ["experiment=paper/fastgshare_profiled"],
    "kpa": ["experiment=paper/kpa"],
    "kserve": ["experiment=paper/kserve"],
    "timeshare": ["experiment=paper/timeshare"],
}
KERNEL: dict[str, list[str]] = {
    "kernel_rps_has_resnet": ["experiment=rps/has_resnet", "sim.fidelity=kernel"],
    "kernel_azure_10min_has": [
        "experiment=paper/has",
        "workload.end_minute=10",
        "sim.fidelity=kernel",
    ],
}


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(name: str) -> dict[str, object]:
    """One policy run in this process."""
    import hasim

    overrides = {**RUNS, **KERNEL}[name]
    t0 = time.perf_counter()
    r = hasim.run([*overrides, *QUIET])
    wall = time.perf_counter() - t0
    n = int(r.summary["requests_total"])
    return {"name": name, "wall_s": wall, "requests": n, "rps": n / wall, "peak_mb": peak_mb()}


def reference() -> dict[str, object]:
    """The plain per-request SimPy loop on the slice's arrivals (module docstring)."""
    import simpy

    from hasim.config.typed import pick_kind, to_typed
    from hasim.perf.compact import CompactConfig, build_compact
    from hasim.sim.rng import Streams
    from hasim.sim.runner import compose
    from hasim.workload.registry import WORKLOAD_KINDS

    cfg = compose(RUNS["static"])
    schema, build = pick_kind(cfg.workload, WORKLOAD_KINDS, "workload")
    t0 = time.perf_counter()
    w = build(to_typed(cfg.workload, schema, "workload"), Streams(0).get("arrivals"))
    perf = build_compact(CompactConfig())
    env = simpy.Environment()
    done = [0]

    def serve(arrivals, service: float):
        # one event per request: wait for its arrival, then FIFO on one server
        free = 0.0
        for t in arrivals.tolist():
            yield env.timeout(t - env.now)
            free = max(free, t) + service
            done[0] += 1

    for f in w.functions:
        service = perf.mean_latency_s(f.model, 1, 100.0, 1.0)
        env.process(serve(w.arrivals[f.name], service))
    env.run()
    wall = time.perf_counter() - t0
    n = w.total_requests
    assert done[0] == n
    return {
        "name": "simpy_per_request",
        "wall_s": wall,
        "requests": n,
        "rps": n / wall,
        "peak_mb": peak_mb(),
    }


def child(name: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default="", help="comma-separated runs (default: all)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per policy; the fastest counts")
    ap.add_argument("--kernel", action="store_true", help="also kernel fidelity runs")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        res = reference() if args.one == "simpy_per_request" else measure(args.one)
        print(json.dumps(res))
        return
    names = [n for n in args.only.split(",") if n] or list(RUNS)
    if args.kernel:
        names += list(KERNEL)
    rows = [
        min((child("simpy_per_request") for _ in range(args.repeat)), key=lambda r: r["wall_s"])
    ]
    ref = rows[0]["rps"]
    print(f"{'run':26s} {'wall s':>8s} {'requests/s':>12s} {'x loop':>7s} {'peak MB':>8s}")
    print(
        f"{rows[0]['name']:26s} {rows[0]['wall_s']:8.2f} {rows[0]['rps']:12,.0f} "
        f"{1.0:7.2f} {rows[0]['peak_mb']:8.0f}",
        flush=True,
    )
    for name in names:
        best = min((child(name) for _ in range(args.repeat)), key=lambda r: r["wall_s"])
        rows.append(best)
        print(
            f"{name:26s} {best['wall_s']:8.2f} {best['rps']:12,.0f} "
            f"{best['rps'] / ref:7.2f} {best['peak_mb']:8.0f}",
            flush=True,
        )
    print("\n| run | wall (s) | requests/s | x per-request loop | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['wall_s']:.2f} | {r['rps']:,.0f} | {r['rps'] / ref:.2f} | "
            f"{r['peak_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
