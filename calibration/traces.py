"""Per-kernel traces: the kernel sequence of one inference, from the PyTorch profiler.

On a GPU each row is one device activity (``kind`` = ``kernel``, ``gpu_memcpy`` or
``gpu_memset``) in launch order, with its duration, grid and block sizes, registers
per thread, shared memory, stream, and ``op`` (the aten operator that launched it,
through the profiler's correlation ids). On CPU there are no kernels: the rows are the
profiler's operator sequence (``kind = "cpu_op"``, with nesting ``depth`` and input
shapes), labelled ``trace = "cpu-operators"``.

Stored as Parquet in ``kernel_traces.pq`` (the ``.pq`` suffix keeps the file out of
``hasim.perf.load_measurements``, which reads every ``*.parquet`` under a directory as a
latency table); read it with ``pandas.read_parquet``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

TRACE_COLUMNS = (
    "seq",
    "kind",
    "name",
    "op",
    "start_us",
    "dur_us",
    "grid_x",
    "grid_y",
    "grid_z",
    "block_x",
    "block_y",
    "block_z",
    "registers",
    "shared_mem_bytes",
    "stream",
    "depth",
    "input_dims",
)
"""Per-event columns (the worker adds gpu, model, batch, sm_pct, method, device...)."""

DEVICE_KINDS = ("kernel", "gpu_memcpy", "gpu_memset")


def _xyz(v: Any) -> tuple[int, int, int]:
    if isinstance(v, list | tuple) and len(v) == 3:
        try:
            return int(v[0]), int(v[1]), int(v[2])
        except (TypeError, ValueError):
            pass
    return -1, -1, -1


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return -1


def parse_trace(doc: dict[str, Any], device: str) -> list[dict[str, Any]]:
    """Rows (:data:`TRACE_COLUMNS`) from a Chrome trace exported by ``torch.profiler``."""
    events = [e for e in doc.get("traceEvents", []) if isinstance(e, dict) and e.get("ph") == "X"]
    cpu_ops = [e for e in events if e.get("cat") == "cpu_op"]
    rows: list[dict[str, Any]] = []
    if device == "cuda":
        by_ext: dict[int, str] = {}
        for e in cpu_ops:  # innermost op wins: later (nested) ops overwrite outer ones
            ext = e.get("args", {}).get("External id")
            if ext is not None:
                by_ext[int(ext)] = e.get("name", "")
        by_corr: dict[int, int] = {}
        for e in events:
            if e.get("cat") in ("cuda_runtime", "cuda_driver"):
                a = e.get("args", {})
                if "correlation" in a and "External id" in a:
                    by_corr[int(a["correlation"])] = int(a["External id"])
        dev = sorted((e for e in events if e.get("cat") in DEVICE_KINDS), key=lambda e: e["ts"])
        t0 = dev[0]["ts"] if dev else 0.0
        for i, e in enumerate(dev):
            a = e.get("args", {})
            ext = a.get("External id")
            if ext is None and "correlation" in a:
                ext = by_corr.get(int(a["correlation"]))
            gx, gy, gz = _xyz(a.get("grid"))
            bx, by, bz = _xyz(a.get("block"))
            rows.append(
                {
                    "seq": i,
                    "kind": e.get("cat"),
                    "name": e.get("name", ""),
                    "op": by_ext.get(int(ext), "") if ext is not None else "",
                    "start_us": float(e["ts"] - t0),
                    "dur_us": float(e.get("dur", 0.0)),
                    "grid_x": gx,
                    "grid_y": gy,
                    "grid_z": gz,
                    "block_x": bx,
                    "block_y": by,
                    "block_z": bz,
                    "registers": _int(a.get("registers per thread")),
                    "shared_mem_bytes": _int(a.get("shared memory")),
                    "stream": _int(a.get("stream")),
                    "depth": -1,
                    "input_dims": "",
                }
            )
        return rows
    ops = sorted(cpu_ops, key=lambda e: (e.get("tid", 0), e["ts"], -e.get("dur", 0.0)))
    stacks: dict[Any, list[float]] = {}
    depth_of = []
    for e in ops:
        st = stacks.setdefault(e.get("tid", 0), [])
        while st and st[-1] <= e["ts"]:
            st.pop()
        depth_of.append(len(st))
        st.append(e["ts"] + e.get("dur", 0.0))
    order = sorted(range(len(ops)), key=lambda k: (ops[k]["ts"], depth_of[k]))
    t0 = ops[order[0]]["ts"] if ops else 0.0
    for i, k in enumerate(order):
        e = ops[k]
        dims = e.get("args", {}).get("Input Dims")
        rows.append(
            {
                "seq": i,
                "kind": "cpu_op",
                "name": e.get("name", ""),
                "op": e.get("name", ""),
                "start_us": float(e["ts"] - t0),
                "dur_us": float(e.get("dur", 0.0)),
                "grid_x": -1,
                "grid_y": -1,
                "grid_z": -1,
                "block_x": -1,
                "block_y": -1,
                "block_z": -1,
                "registers": -1,
                "shared_mem_bytes": -1,
                "stream": -1,
                "depth": depth_of[k],
                "input_dims": json.dumps(dims) if dims is not None else "",
            }
        )
    return rows


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the profiler's own start/stop lines (written to fd 2 by kineto)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profile_once(run: Callable[[], Any], device: str) -> list[dict[str, Any]]:
    """Profile one call of ``run`` (one inference) and return its trace rows."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if device == "cuda":
        acts.append(ProfilerActivity.CUDA)
    with _quiet_stderr(), profile(activities=acts, record_shapes=device != "cuda") as prof:
        run()
        if device == "cuda":
            torch.cuda.synchronize()
    fd, path = tempfile.mkstemp(suffix=".json", prefix="hasim-trace-")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    finally:
        os.unlink(path)
    return parse_trace(doc, device)
