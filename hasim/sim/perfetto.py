"""Kernel-level trace of the token schedulers and its Chrome / Perfetto export.

:class:`KernelTrace` collects what :class:`hasim.cluster.tokens.TokenScheduler` does, per
GPU and pod, with every time in seconds of simulated time:

* token holds: grant, release, nominal token length, the pod's SM partition and quota;
* kernel bursts: the kernels one token ran back to back (start time and durations);
  :meth:`KernelTrace.kernel_spans` expands them into one row per kernel;
* waits: from a pod's token request to its grant (only waits longer than zero);
* inferences: from :meth:`~hasim.cluster.tokens.TokenScheduler.run` to the last kernel's end;
* counters: the GPU's SM occupancy (percent) and a pod's window usage (fraction of the
  window) sampled at token grants and releases.

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

US_PER_S = 1e6


class KernelTrace:
    """A record of token grants/releases, kernel runs, waits and inferences (times in s).

    One trace may serve several GPUs' schedulers. Memory: one tuple per token, wait and
    inference, one array view per kernel burst (the kernels themselves are not copied).
    """

    def __init__(self) -> None:
        # gpu, pod, grant (s), release (s), nominal token length (s), sm_pct, quota
        self.tokens: list[tuple[int, int, float, float, float, float, float]] = []
        # gpu, pod, start (s), kernel durations (s) run back to back from start, or from
        # the given start times (s; launch-gated mode) when the last item is not None
        self.bursts: list[tuple[int, int, float, np.ndarray, np.ndarray | None]] = []
        # gpu, pod, request (s), grant (s)
        self.waits: list[tuple[int, int, float, float]] = []
        # gpu, pod, start (s), end (s), number of kernels
        self.inferences: list[tuple[int, int, float, float, int]] = []
        # gpu, time (s), SM percent held by token holders
        self.sm_counter: list[tuple[int, float, float]] = []
        # gpu, pod, time (s), window usage as a fraction of the window
        self.usage_counter: list[tuple[int, int, float, float]] = []

    # ---- recording (called by the scheduler) --------------------------------
    def token(
        self,
        gpu: int,
        pod: int,
        grant_s: float,
        release_s: float,
        length_s: float,
        sm_pct: float,
        quota: float,
    ) -> None:
        """A token held from ``grant_s`` to ``release_s`` (nominal length ``length_s``)."""
        self.tokens.append((gpu, pod, grant_s, release_s, length_s, sm_pct, quota))

    def burst(
        self,
        gpu: int,
        pod: int,
        start_s: float,
        durations_s: np.ndarray,
        starts_s: np.ndarray | None = None,
    ) -> None:
        """Kernels of durations ``durations_s`` (s) granted a token at ``start_s``: they run
        back to back from ``start_s``, or from ``starts_s`` (s) when given."""
        self.bursts.append((gpu, pod, start_s, durations_s, starts_s))

    @staticmethod
    def _starts(t0: float, d: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
        if starts is not None:
            return np.asarray(starts, dtype=float)
        s = np.empty_like(d)
        s[:1] = t0
        s[1:] = t0 + np.cumsum(d)[:-1]
        return s

    def wait(self, gpu: int, pod: int, request_s: float, grant_s: float) -> None:
        """A pod waited for a token from ``request_s`` to ``grant_s``."""
        if grant_s > request_s:
            self.waits.append((gpu, pod, request_s, grant_s))

    def inference(self, gpu: int, pod: int, start_s: float, end_s: float, kernels: int) -> None:
        """One inference (``kernels`` kernels) ran from ``start_s`` to ``end_s``."""
        self.inferences.append((gpu, pod, start_s, end_s, kernels))

    def sm(self, gpu: int, t_s: float, sm_pct: float) -> None:
        """The GPU's SM occupancy became ``sm_pct`` percent at ``t_s``."""
        self.sm_counter.append((gpu, t_s, sm_pct))

    def usage(self, gpu: int, pod: int, t_s: float, fraction: float) -> None:
        """The pod's window usage was ``fraction`` of the window at ``t_s``."""
        self.usage_counter.append((gpu, pod, t_s, fraction))

    # ---- views -------------------------------------------------------------
    def kernel_spans(self) -> np.ndarray:
        """Every kernel as a row ``(gpu, pod, start_s, end_s)``, float array of shape (n, 4)."""
        parts = []
        for gpu, pod, t0, d, st in self.bursts:
            d = np.asarray(d, dtype=float)
            starts = self._starts(t0, d, st)
            ends = starts + d
            block = np.empty((d.size, 4))
            block[:, 0] = gpu
            block[:, 1] = pod
            block[:, 2] = starts
            block[:, 3] = ends
            parts.append(block)
        if not parts:
            return np.empty((0, 4))
        return np.concatenate(parts)

    def token_spans(self) -> np.ndarray:
        """Every token hold as ``(gpu, pod, grant_s, release_s, length_s, sm_pct, quota)``."""
        if not self.tokens:
            return np.empty((0, 7))
        return np.asarray(self.tokens, dtype=float)

    def busy_intervals(self, gpu: int, pod: int) -> np.ndarray:
        """GPU-busy intervals ``(start_s, end_s)`` of one pod (one per kernel), in time order."""
        k = self.kernel_spans()
        k = k[(k[:, 0] == gpu) & (k[:, 1] == pod)]
        return k[np.argsort(k[:, 2], kind="stable"), 2:4]


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
