"""Benchmark: every policy on the full Azure 2019 500-function 8-hour slice (3,037,902
requests), end to end, one core; and, in the same run as the reference, a plain
per-request SimPy loop over the same arrivals.

    hasim data fetch --mirror ../shared --only traces
    python benchmarks/bench_policies.py [--only has,kpa] [--repeat 3] [--kernel]

Each measurement runs in a fresh Python process (so peak memory is its own): the wall
time of ``hasim.run([...])`` (composing the config, building the workload, simulating,
building the result tables; no writing), requests/s = requests / wall, and the peak
resident set size. Two plain per-request SimPy loops over the same arrivals serve each
function FIFO on one server for the compact model's batch-1 full-GPU latency of its
model: ``simpy_process``, SimPy's own example style (a process per request queueing for a
``simpy.Resource``: the per-request design hasim's data plane exists to beat; "x loop"),
and ``simpy_lean``, one event per request in one process per function (the least any
SimPy loop can do per request; "x lean"). ``--kernel`` adds kernel fidelity on the
rps.json stages and on a 10-minute window of the slice. Targets (issue 13): >= 500,000
requests/s for every policy, >= 1,000,000 for static, >= 2x the per-request loop, <= 2 GB.
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
    "parvagpu": ["experiment=paper/parvagpu"],  # A100 80 GB (MIG)
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


def reference(kind: str) -> dict[str, object]:
    """A plain per-request SimPy loop on the slice's arrivals (module docstring):
    ``simpy_lean`` one event per request; ``simpy_process`` SimPy's own example style,
    a process per request queueing for a ``simpy.Resource``."""
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

    def request(server: simpy.Resource, service: float):
        with server.request() as req:
            yield req
            yield env.timeout(service)
        done[0] += 1

    def source(arrivals, server: simpy.Resource, service: float):
        for t in arrivals.tolist():
            yield env.timeout(t - env.now)
            env.process(request(server, service))

    for f in w.functions:
        service = perf.mean_latency_s(f.model, 1, 100.0, 1.0)
        if kind == "simpy_lean":
            env.process(serve(w.arrivals[f.name], service))
        else:
            env.process(source(w.arrivals[f.name], simpy.Resource(env, 1), service))
    env.run()
    wall = time.perf_counter() - t0
    n = w.total_requests
    assert done[0] == n
    return {"name": kind, "wall_s": wall, "requests": n, "rps": n / wall, "peak_mb": peak_mb()}


def child(name: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_of(name: str, repeat: int) -> dict[str, object]:
    return min((child(name) for _ in range(repeat)), key=lambda r: r["wall_s"])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default="", help="comma-separated runs (default: all)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per policy; the fastest counts")
    ap.add_argument("--kernel", action="store_true", help="also kernel fidelity runs")
    ap.add_argument(
        "--no-process-loop",
        action="store_true",
        help="skip the process-per-request reference (it takes minutes)",
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        res = reference(args.one) if args.one.startswith("simpy_") else measure(args.one)
        print(json.dumps(res))
        return
    names = [n for n in args.only.split(",") if n] or list(RUNS)
    if args.kernel:
        names += list(KERNEL)
    refs = ["simpy_lean"] if args.no_process_loop else ["simpy_process", "simpy_lean"]
    rows = [best_of(r, args.repeat) for r in refs]
    loop, lean = rows[0]["rps"], rows[-1]["rps"]
    print(
        f"{'run':26s} {'wall s':>8s} {'requests/s':>12s} {'x loop':>7s} {'x lean':>7s} "
        f"{'peak MB':>8s}"
    )

    def show(r: dict[str, object]) -> None:
        print(
            f"{r['name']:26s} {r['wall_s']:8.2f} {r['rps']:12,.0f} {r['rps'] / loop:7.2f} "
            f"{r['rps'] / lean:7.2f} {r['peak_mb']:8.0f}",
            flush=True,
        )

    for r in rows:
        show(r)
    for name in names:
        rows.append(best_of(name, args.repeat))
        show(rows[-1])
    two = len(refs) == 2
    ratio_head = "x simpy_process | x simpy_lean" if two else "x simpy_lean"
    print(f"\n| run | wall (s) | requests/s | {ratio_head} | peak RSS (MB) | issue 13 targets |")
    print("|---|---|---|---|---|---|" + ("---|" if two else ""))
    for r in rows:
        ratios = f"{r['rps'] / lean:.2f}"
        if two:
            ratios = f"{r['rps'] / loop:.2f} | {ratios}"
        print(
            f"| {r['name']} | {r['wall_s']:.2f} | {r['rps']:,.0f} | {ratios} | "
            f"{r['peak_mb']:.0f} | {meets(r, loop if two else None)} |"
        )


def meets(r: dict[str, object], loop_rps: float | None) -> str:
    """Issue 13's targets for a policy run: >= 500,000 requests/s (static 1,000,000),
    >= 2x the process-per-request loop (when it ran), peak RSS <= 2 GB; "" for others."""
    name = str(r["name"])
    if name not in RUNS:
        return ""
    rps, mb = float(r["rps"]), float(r["peak_mb"])  # type: ignore[arg-type]
    floor = 1_000_000 if name == "static" else 500_000
    ok = rps >= floor and mb <= 2048 and (loop_rps is None or rps >= 2 * loop_rps)
    return "met" if ok else f"not met (< {floor:,} req/s)" if rps < floor else "not met"


if __name__ == "__main__":
    main()
