"""One SM partition's measurements, in its own process: ``python -m calibration.worker SPEC``.

Started by :mod:`calibration.profile` once per SM level, with the partition set up in
its environment (MPS: ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``; the C gate: ``LD_PRELOAD``)
or by the worker itself (green context, CPU threads). ``SPEC`` is a JSON file (see
:func:`run`); results go to the part file ``spec["out"]`` (JSON, rewritten after every
point so a run cut short keeps what it measured) and the trace rows to
``spec["trace_out"]`` (Parquet). ``python -m calibration.worker --probe [--green]`` prints
the device facts as JSON (used before and under MPS; ``--green`` tries a green context).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

STATISTICS = ("mean", "p50", "p95", "p99")
MIN_ITERS = 3


def summarize(lat_ms: list[float]) -> dict[str, float]:
    """mean, p50, p95, p99 (linear interpolation) of the timed runs, in ms."""
    import numpy as np

    a = np.asarray(lat_ms, dtype=float)
    return {
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
    }


def _err(e: BaseException) -> str:
    """An exception as one short line."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def _atomic_json(path: Path, doc: Any) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)


def probe(try_green: bool = False) -> dict[str, Any]:
    """Device facts from inside a (possibly MPS-client) process; ``try_green``: also
    create a green context of half the SMs and run a kernel in it (``green_ok``)."""
    out: dict[str, Any] = {"ok": False}
    try:
        import torch

        out["torch"] = torch.__version__
        out["torch_cuda"] = torch.version.cuda
        out["cuda_available"] = bool(torch.cuda.is_available())
        if out["cuda_available"]:
            torch.zeros(1, device="cuda")  # creates the context (connects to MPS)
            p = torch.cuda.get_device_properties(0)
            out.update(
                name=p.name,
                sm_count=int(p.multi_processor_count),
                total_memory=int(p.total_memory),
                capability=[int(p.major), int(p.minor)],
                device_count=torch.cuda.device_count(),
            )
            try:
                from torch.cuda import green_contexts as gc

                out["green_contexts"] = bool(getattr(gc, "SUPPORTED", True))
            except Exception:
                out["green_contexts"] = False
            if try_green and out["green_contexts"]:  # can one really be made here?
                from calibration.partition import green_sm_count

                n = green_sm_count(50.0, int(p.multi_processor_count), int(p.major))
                try:
                    g = GreenPartition(n)
                    with torch.cuda.stream(g.stream):
                        torch.ones(1024, device="cuda").sum().item()
                    out["green_ok"] = True
                except Exception as e:
                    out["green_ok"] = False
                    out["green_error"] = _err(e)
            out["ok"] = True
        else:
            out["error"] = "torch.cuda.is_available() is False"
    except Exception as e:
        out["error"] = f"{_err(e)}"
    return out


# --------------------------------------------------------------------------- partitions


class GreenPartition:
    """A green context of ``num_sms`` SMs; work runs on its stream (or as the current
    context with its default stream, on torch versions without ``Stream()``)."""

    def __init__(self, num_sms: int) -> None:
        import torch
        from torch.cuda.green_contexts import GreenContext

        try:
            self.ctx = GreenContext.create(num_sms=num_sms, device_id=0)
        except TypeError:  # torch 2.10: create(num_sms, device_id=0)
            self.ctx = GreenContext.create(num_sms, 0)
        self.num_sms = num_sms
        self.stream = None
        if hasattr(self.ctx, "Stream"):
            try:
                self.stream = self.ctx.Stream()
            except Exception:
                self.stream = None
        if self.stream is None:
            self.ctx.set_context()
            self.stream = torch.cuda.current_stream()
            self.how = "set_context"
        else:
            self.how = "stream"


# --------------------------------------------------------------------------- measuring


class Measurer:
    def __init__(self, spec: dict[str, Any]) -> None:
        import torch

        self.torch = torch
        self.spec = spec
        self.device = spec["device"]
        self.cuda = self.device == "cuda"
        self.dev = torch.device("cuda:0" if self.cuda else "cpu")
        self.info: dict[str, Any] = {"pid": os.getpid()}
        self.notes: list[str] = []
        self.stream: Any = None
        self.green: GreenPartition | None = None
        self.hook: Any = None
        self.gate_name = spec["gate"]

    # ---------------------------------------------------------------- set-up

    def setup(self) -> None:
        torch = self.torch
        spec = self.spec
        torch.manual_seed(int(spec.get("seed", 0)))
        if not self.cuda:
            n = int(spec["threads"])
            torch.set_num_threads(n)
            with contextlib.suppress(RuntimeError):
                torch.set_num_interop_threads(1)
            self.info.update(threads=n, num_threads=torch.get_num_threads())
            self.info["sm_count"] = n
            self.info["sm_pct_effective"] = 100.0 * n / max(1, int(spec["cores"]))
        else:
            torch.zeros(1, device=self.dev)
            p = torch.cuda.get_device_properties(0)
            total = int(spec.get("total_sms") or p.multi_processor_count)
            self.info.update(
                device_name=p.name,
                sm_count_seen=int(p.multi_processor_count),
                total_sms=total,
                capability=[int(p.major), int(p.minor)],
            )
            method = spec["method"]
            if method == "green" and float(spec["sm_pct"]) >= 100:
                # the whole GPU: no green context (its SM counts come in multiples of 8
                # on Hopper, and 132 is not one)
                self.info.update(sm_count=total, sm_pct_effective=100.0, green_how="whole GPU")
            elif method == "green":
                from calibration.partition import green_sm_count

                n = green_sm_count(float(spec["sm_pct"]), total, int(p.major))
                self.green = GreenPartition(n)
                self.stream = self.green.stream
                self.info.update(sm_count=n, green_how=self.green.how)
                self.info["sm_pct_effective"] = 100.0 * n / total
            else:
                seen = int(p.multi_processor_count)
                if method == "mps" and seen < total:
                    self.info["sm_pct_effective"] = 100.0 * seen / total
                    self.info["sm_count"] = seen
                else:  # MPS does not always report the limit; the percentage is the setting
                    self.info["sm_pct_effective"] = float(spec["sm_pct"])
                    self.info["sm_count"] = round(total * float(spec["sm_pct"]) / 100.0)
        from calibration.gate import HookControl, TokenGate

        if self.gate_name == "hook":
            self.hook = HookControl.loaded()
            if self.hook is None:
                self.notes.append("the C hook is not preloaded here: Python gate instead")
                self.gate_name = "python"
            else:
                self.info["hook_version"] = self.hook.version()
        sync = None
        if self.cuda:  # the stream the work runs on (a green context's), else the device
            sync = self.stream.synchronize if self.stream is not None else torch.cuda.synchronize
        self.pygate = TokenGate(1.0, float(spec["window_ms"]), sync=sync)

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Where the work runs: the green context's stream, else the current stream."""
        if self.stream is None:
            return contextlib.nullcontext()
        return self.torch.cuda.stream(self.stream)

    def gate_label(self) -> str:
        return "ld-preload" if self.gate_name == "hook" else "python-prehook"

    def set_quota(self, q: float) -> None:
        w = float(self.spec["window_ms"])
        if self.gate_name == "hook":
            self.hook.set_quota(q, w)
            self.hook.reset()
        else:
            from calibration.gate import GateStats

            self.pygate.set_quota(q, w)
            self.pygate.reset()
            self.pygate.stats = GateStats()  # per point, like the hook's reset

    # ---------------------------------------------------------------- one point

    def build(self, ms: Any) -> Any:
        torch = self.torch
        if self.cuda:
            with self.scope(), torch.device(self.dev):
                model = ms.build()
        else:
            model = ms.build()
        model = model.to(self.dev).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def run_once(self, model: Any, x: Any) -> None:
        with self.torch.inference_mode():
            model(x)

    def timed(self, model: Any, x: Any, warmup: int, iters: int, deadline: float) -> list[float]:
        torch = self.torch
        gap = float(self.spec.get("gap_ms", 0.0)) / 1e3
        max_s = self.spec.get("max_point_s")
        lat: list[float] = []
        with self.scope():
            for _ in range(warmup):
                self.run_once(model, x)
            if self.cuda:
                torch.cuda.synchronize()
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
            t_start = time.perf_counter()
            for i in range(iters):
                if gap:
                    time.sleep(gap)
                if self.cuda:
                    start.record()
                    self.run_once(model, x)
                    end.record()
                    end.synchronize()
                    lat.append(float(start.elapsed_time(end)))
                else:
                    t = time.perf_counter()
                    self.run_once(model, x)
                    lat.append((time.perf_counter() - t) * 1e3)
                now = time.perf_counter()
                if i + 1 >= MIN_ITERS and (
                    (max_s and now - t_start > float(max_s)) or time.time() > deadline
                ):
                    break
        return lat

    def check_hook(self, model: Any, x: Any) -> None:
        """The C gate must see this model's launches; else use the Python gate."""
        if self.gate_name != "hook":
            return
        self.hook.set_quota(1.0, float(self.spec["window_ms"]))
        self.hook.reset()
        with self.scope():
            self.run_once(model, x)
        if self.cuda:
            self.torch.cuda.synchronize()
        n = self.hook.launches()
        self.info["hook_launches_per_inference"] = n
        self.info["hook_stats_check"] = self.hook.stats()
        if n == 0:
            self.notes.append(
                "the C hook intercepted no kernel launch of an inference: Python gate instead"
            )
            self.gate_name = "python"


def run(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    t_begin = time.time()
    deadline = float(spec.get("deadline") or math.inf)
    part: dict[str, Any] = {
        "sm_pct": spec["sm_pct"],
        "method": spec["method"],
        "device": spec["device"],
        "points": [],
        "skipped": [],
        "errors": [],
        "notes": [],
        "info": {},
        "done": False,
    }
    _atomic_json(out, part)
    try:
        m = Measurer(spec)
        m.setup()
    except Exception as e:
        part["errors"].append(f"set-up: {_err(e)}")
        part["traceback"] = traceback.format_exc()
        _atomic_json(out, part)
        print(f"[sm {spec['sm_pct']:g}] set-up failed: {e}", file=sys.stderr)
        return 1
    part["info"] = m.info
    part["notes"] = m.notes
    from calibration.zoo import n_params, resolve

    trace_rows: list[dict[str, Any]] = []
    shape = tuple(int(v) for v in spec["input_shape"])
    tag = f"[{spec['method']} sm {float(spec['sm_pct']):g}%]"
    quotas = [float(q) for q in spec["quotas"]]
    for mspec in spec["models"]:
        if time.time() > deadline:
            part["skipped"].append({"model": mspec, "reason": "deadline"})
            continue
        try:
            ms = resolve(mspec, spec.get("zoo", "auto"))
            model = m.build(ms)
        except Exception as e:
            part["errors"].append(f"{mspec}: build: {_err(e)}")
            _atomic_json(out, part)
            continue
        part["info"].setdefault("models", {})[ms.name] = {
            "impl": ms.impl,
            "params": n_params(model),
        }
        if m.hook is not None and "hook_launches_per_inference" not in m.info:
            x1 = m.torch.randn(1, *shape, device=m.dev)
            m.check_hook(model, x1)
        for b in spec["batches"]:
            b = int(b)
            try:
                with m.scope():
                    x = m.torch.randn(b, *shape, device=m.dev)
            except Exception as e:
                part["errors"].append(f"{ms.name} b{b}: input: {_err(e)}")
                continue
            handles = []
            if m.gate_name == "python":
                from calibration.gate import attach

                handles = attach(model, m.pygate)
            for q in quotas:
                if time.time() > deadline:
                    part["skipped"].append(
                        {"model": ms.name, "batch": b, "quota": q, "reason": "deadline"}
                    )
                    continue
                try:
                    m.set_quota(q)
                    lat = m.timed(model, x, int(spec["warmup"]), int(spec["iters"]), deadline)
                except Exception as e:  # e.g. out of memory: skip the point
                    part["errors"].append(f"{ms.name} b{b} q{q:g}: {_err(e)}")
                    if m.cuda:
                        m.torch.cuda.empty_cache()
                    continue
                stats = summarize(lat)
                gstats = m.hook.stats() if m.gate_name == "hook" else m.pygate.stats.as_dict()
                point = {
                    "model": ms.name,
                    "impl": ms.impl,
                    "batch": b,
                    "quota": q,
                    "n_runs": len(lat),
                    "stats": stats,
                    "gate": m.gate_label(),
                    "gate_waits": gstats.get("waits", 0),
                }
                part["points"].append(point)
                _atomic_json(out, part)
                print(
                    f"{tag} {ms.name} b{b} q{q:.2f}: mean {stats['mean']:.2f} ms "
                    f"p99 {stats['p99']:.2f} ms ({len(lat)} runs)",
                    flush=True,
                )
            for h in handles:
                h.remove()
            if spec.get("traces") and time.time() < deadline:
                try:
                    m.set_quota(1.0)
                    with m.scope():
                        m.run_once(model, x)  # warm
                        rows = _trace(m, model, x)
                    for r in rows:
                        r.update(model=ms.name, batch=b)
                    trace_rows += rows
                    _write_traces(spec, trace_rows)
                except Exception as e:
                    part["errors"].append(f"{ms.name} b{b}: trace: {_err(e)}")
        del model
        if m.cuda:
            m.torch.cuda.empty_cache()
    part["info"] = m.info
    part["notes"] = m.notes
    part["gate_final"] = m.gate_label()
    part["trace_rows"] = len(trace_rows)
    part["wall_s"] = round(time.time() - t_begin, 2)
    part["done"] = True
    _atomic_json(out, part)
    return 0


def _trace(m: Measurer, model: Any, x: Any) -> list[dict[str, Any]]:
    from calibration.traces import profile_once

    return profile_once(lambda: m.run_once(model, x), m.device)


def _write_traces(spec: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    df["sm_pct"] = float(spec["sm_pct"])
    df["method"] = spec["method"]
    df["device"] = spec["device"]
    df["gpu"] = spec["gpu"]
    df["trace"] = "kernels" if spec["device"] == "cuda" else "cpu-operators"
    path = Path(spec["trace_out"])
    tmp = path.with_name("." + path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--probe":
        print(json.dumps(probe(try_green="--green" in argv[1:])))
        return 0
    if len(argv) != 1:
        print("usage: python -m calibration.worker SPEC.json | --probe", file=sys.stderr)
        return 2
    return run(argv[0])


if __name__ == "__main__":
    sys.exit(main())
