"""Benchmark: replay the Azure 2019 500-function 8-hour slice (3.04 M requests) with one
static pod per function; print simulated requests per wall-second and peak memory.

    hasim data fetch --mirror ../shared --only traces
    python benchmarks/bench_azure500.py [--sm 30 --quota 0.3 --write]

Runs on one core (the simulation is single-threaded). Target: >= 300,000 requests/s.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sm", type=float, default=50.0, help="SM partition of each pod, percent")
    ap.add_argument("--quota", type=float, default=1.0, help="time quota of each pod, fraction")
    ap.add_argument("--nodes", type=int, default=250, help="V100 GPUs in the cluster")
    ap.add_argument("--write", action="store_true", help="also write the results (Parquet)")
    args = ap.parse_args()

    from hasim.sim import metrics
    from hasim.sim.runner import compose, run_config

    overrides = [
        "workload=azure2019",
        "autoscaler=static",
        "autoscaler.pods=1",
        f"autoscaler.sm={args.sm}",
        f"autoscaler.quota={args.quota}",
        f"cluster.nodes={args.nodes}",
        "sim.progress=false",
        "output.plot=false",
        f"output.write={str(args.write).lower()}",
    ]
    cfg = compose(overrides)

    # phase timings with the same building blocks run_config uses
    from hasim.autoscale.registry import AUTOSCALER_KINDS
    from hasim.config.schema import ClusterConfig, SimConfig
    from hasim.config.typed import pick_kind, to_typed
    from hasim.perf.registry import PERF_KINDS
    from hasim.sim.engine import Simulation
    from hasim.sim.rng import Streams
    from hasim.workload.registry import WORKLOAD_KINDS

    t0 = time.perf_counter()
    ws, wb = pick_kind(cfg.workload, WORKLOAD_KINDS, "workload")
    workload = wb(to_typed(cfg.workload, ws, "workload"), Streams(0).get("arrivals"))
    t1 = time.perf_counter()
    ps, pb = pick_kind(cfg.perf, PERF_KINDS, "perf")
    perf = pb(to_typed(cfg.perf, ps, "perf"))
    ccfg = to_typed(cfg.cluster, ClusterConfig, "cluster")
    scfg = to_typed(cfg.sim, SimConfig, "sim")
    a_s, ab = pick_kind(cfg.autoscaler, AUTOSCALER_KINDS, "autoscaler")
    auto = ab(to_typed(cfg.autoscaler, a_s, "autoscaler"), ccfg)
    t2 = time.perf_counter()
    sim = Simulation(workload, perf, auto, ccfg, scfg, 0).run()
    t3 = time.perf_counter()
    slos = metrics.slos(sim)
    req = metrics.requests_frame(sim, slos)
    alloc = metrics.alloc_frame(sim)
    usage = metrics.usage_frame(alloc, scfg.sample_period, sim.end_time)
    summary = metrics.summarize(sim, req, alloc, usage)
    t4 = time.perf_counter()
    n = workload.total_requests
    print(
        f"requests: {n:,} over {len(workload.functions)} functions, "
        f"{workload.duration_s:.0f} simulated s"
    )
    print(f"workload build   {t1 - t0:7.2f} s")
    print(f"simulation core  {t3 - t2:7.2f} s  -> {n / (t3 - t2):,.0f} requests/s")
    print(f"metrics          {t4 - t3:7.2f} s")
    print(f"end to end       {t4 - t0:7.2f} s  -> {n / (t4 - t0):,.0f} requests/s")
    print(
        f"completed {summary['completed']:,}  dropped {summary['dropped']:,}  "
        f"p95 {summary['latency_p95_s']:.3f} s  GPUs {summary['gpus_used_max']}"
    )
    if args.write:
        with tempfile.TemporaryDirectory() as d:
            t5 = time.perf_counter()
            run_config(compose([*overrides, f"output.dir={d}"]), overrides)
            print(f"full run_config with Parquet writing: {time.perf_counter() - t5:.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS) {peak:,.0f} MB")


if __name__ == "__main__":
    main()
