"""Chrome / Perfetto export of a kernel-level trace (:class:`hasim.cluster.trace.KernelTrace`).

:func:`write_chrome_trace` writes the Chrome trace-event JSON format (loadable in
https://ui.perfetto.dev and chrome://tracing): one process per GPU, one thread per pod,
``"X"`` complete events (microsecond timestamps) for tokens, kernels (or kernel groups),
waits and inferences, ``"C"`` counter events for the counters. Slices on one pod's thread
nest: a token hold contains its kernels; waits lie between holds; an inference contains
both and is written on a separate ``<pod> inferences`` thread so nesting stays valid.
Kernels of the launch-gated mode (which may run after their token) go to a ``<pod> GPU``
thread. ``group_kernels`` writes one slice per token burst ("kernel group") instead of
one per kernel.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hasim.cluster.trace import KernelTrace

US_PER_S = 1e6


def _x(name: str, cat: str, pid: int, tid: int, start_s: float, end_s: float, **args) -> dict:
    """A Chrome ``"X"`` complete event; times in s, written in microseconds (ns rounded:
    start and end are rounded, so nested slices stay nested)."""
    ts = round(start_s * US_PER_S, 3)
    ev = {
        "name": name,
        "cat": cat,
        "ph": "X",
        "ts": ts,
        "dur": round(max(0.0, round(end_s * US_PER_S, 3) - ts), 3),
        "pid": pid,
        "tid": tid,
    }
    if args:
        ev["args"] = args
    return ev


def chrome_events(
    trace: KernelTrace,
    names: dict[int, str] | None = None,
    *,
    group_kernels: bool = False,
    max_kernels: int | None = None,
) -> list[dict]:
    """The trace as a list of Chrome trace events (see :func:`write_chrome_trace`)."""
    names = names or {}
    events: list[dict] = []

    def pod_name(pod: int) -> str:
        return names.get(pod, f"pod {pod}")

    threads: set[tuple[int, int]] = set()
    gpus: set[int] = set()
    for rec in (*trace.tokens, *trace.bursts, *trace.waits):
        gpus.add(int(rec[0]))
        threads.add((int(rec[0]), int(rec[1])))
    infer_threads: set[tuple[int, int]] = {(int(r[0]), int(r[1])) for r in trace.inferences}
    gpus.update(g for g, _ in infer_threads)
    gpus.update(int(r[0]) for r in trace.sm_counter)

    for gpu in sorted(gpus):
        events.append(
            {"name": "process_name", "ph": "M", "pid": gpu, "args": {"name": f"GPU {gpu}"}}
        )
        events.append(
            {"name": "process_sort_index", "ph": "M", "pid": gpu, "args": {"sort_index": gpu}}
        )
    for gpu, pod in sorted(threads | infer_threads):
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": gpu,
                "tid": pod,
                "args": {"name": pod_name(pod)},
            }
        )
    # inferences on their own thread per pod (an inference spans holds and waits)
    infer_tid: dict[tuple[int, int], int] = {}
    base = 1 + max((p for _, p in threads | infer_threads), default=0)
    for gpu, pod in sorted(infer_threads):
        tid = base + pod
        infer_tid[(gpu, pod)] = tid
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": gpu,
                "tid": tid,
                "args": {"name": f"{pod_name(pod)} inferences"},
            }
        )

    gpu_tids: dict[tuple[int, int], int] = {}

    def gpu_tid(gpu: int, pod: int) -> int:
        tid = gpu_tids.get((gpu, pod))
        if tid is None:
            tid = gpu_tids[(gpu, pod)] = 2 * base + pod
            events.append(
                {
                    "name": "thread_name",
                    "ph": "M",
                    "pid": gpu,
                    "tid": tid,
                    "args": {"name": f"{pod_name(pod)} GPU"},
                }
            )
        return tid

    for gpu, pod, g, r, length, sm, q in trace.tokens:
        events.append(
            _x(
                f"token q={q:.2f}",
                "token",
                gpu,
                pod,
                g,
                r,
                token_ms=length * 1e3,
                sm_pct=sm,
                quota=q,
                overuse_ms=round(max(0.0, (r - g) - length) * 1e3, 6),
            )
        )
    n_kernels = 0
    for gpu, pod, t0, d, st in trace.bursts:
        d = np.asarray(d, dtype=float)
        starts = KernelTrace._starts(t0, d, st)
        ends = starts + d
        # launch-gated kernels may run after the token: on a "<pod> GPU" thread of their own
        tid = pod if st is None else gpu_tid(gpu, pod)
        if group_kernels or (max_kernels is not None and n_kernels + d.size > max_kernels):
            a, b = (float(starts[0]), float(ends[-1])) if d.size else (t0, t0)
            events.append(_x(f"{d.size} kernels", "kernels", gpu, tid, a, b, n=d.size))
            continue
        n_kernels += d.size
        for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            events.append(_x("kernel", "kernel", gpu, tid, a, b, i=i))
    for gpu, pod, a, b in trace.waits:
        events.append(_x("wait", "wait", gpu, pod, a, b))
    for gpu, pod, a, b, n in trace.inferences:
        events.append(_x("inference", "inference", gpu, infer_tid[(gpu, pod)], a, b, kernels=n))
    for gpu, t, sm in trace.sm_counter:
        events.append(
            {
                "name": "SM occupancy %",
                "ph": "C",
                "pid": gpu,
                "ts": round(t * US_PER_S, 3),
                "args": {"sm": sm},
            }
        )
    for gpu, pod, t, frac in trace.usage_counter:
        events.append(
            {
                "name": f"window usage {pod_name(pod)}",
                "ph": "C",
                "pid": gpu,
                "ts": round(t * US_PER_S, 3),
                "args": {"fraction": frac},
            }
        )
    return events


def write_chrome_trace(
    trace: KernelTrace,
    path: str | Path,
    names: dict[int, str] | None = None,
    *,
    group_kernels: bool = False,
    max_kernels: int | None = None,
) -> None:
    """Write ``trace`` as Chrome trace-event JSON to ``path`` (open it in ui.perfetto.dev).

    ``names`` maps pod ids to thread names (default ``pod <id>``). ``group_kernels``
    writes one ``"N kernels"`` slice per token burst instead of one slice per kernel;
    ``max_kernels`` caps the per-kernel slices (later bursts are written grouped) to keep
    big traces loadable.
    """
    events = chrome_events(trace, names, group_kernels=group_kernels, max_kernels=max_kernels)
    doc = {"traceEvents": events, "displayTimeUnit": "ms"}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))
