"""Measure inference latency over batch x SM % x time quota: ``python -m calibration.profile``.

For every SM level one worker process (:mod:`calibration.worker`) builds each model
(torchvision's with random weights when importable, else :mod:`calibration.zoo`'s own
definitions, or any ``module:factory``), and for every batch and quota runs warm-up
and timed inferences (CUDA events on a GPU, ``perf_counter`` on CPU), recording the
mean, p50, p95 and p99. Then it profiles one inference per (model, batch) at quota 1
for the per-kernel trace.

* SM partitions: MPS (a private control daemon, ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``
  per worker), else CUDA green contexts, else none (SM 100 % only); on CPU, threads
  (``cpu-threads``). See :mod:`calibration.partition`.
* Time quotas: the ``LD_PRELOAD`` gate ``calibration/hook`` (``gate = ld-preload``),
  built on the fly when CUDA headers exist, else a Python forward-pre-hook gate
  (``python-prehook``; always on CPU). Window ``--window-ms`` (40). See
  :mod:`calibration.gate` for the rule and its one-pod simplification.

Output in ``--out`` (default ``results/calibration/<device>-<date>``):

* ``latency.parquet``: hasim's measurement schema (``gpu, model, batch, sm_pct,
  quota_pct, mig_slice, statistic, latency_ms, source`` + ``seq_len`` 0, ``procs`` 1)
  plus ``method, gate, window_ms, device, n_runs, sm_count, sm_pct_effective,
  model_impl``; loads with ``hasim.perf.load_measurements(DIR)``;
* ``kernel_traces.pq``: per-kernel traces (Parquet; see :mod:`calibration.traces`);
* ``manifest.json``: the machine (GPU via NVML, CPU), torch, the grid, per-partition
  method/gate/statistics, notes, errors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hasim.perf.measurements import COLUMNS as MEASUREMENT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SOURCE = {"cpu": "calibration-cpu", "cuda": "calibration-cuda"}
LATENCY_FILE = "latency.parquet"
TRACE_FILE = "kernel_traces.pq"
MANIFEST = "manifest.json"
SCHEMA = MEASUREMENT_COLUMNS  # hasim's measurement schema
EXTRA = (
    "seq_len",
    "procs",
    "method",
    "gate",
    "window_ms",
    "device",
    "n_runs",
    "sm_count",
    "sm_pct_effective",
    "model_impl",
)


@dataclass(frozen=True)
class Preset:
    batches: tuple[int, ...]
    sms: tuple[float, ...]
    quotas: tuple[float, ...]
    warmup: int
    iters: int
    max_point_s: float | None
    budget_s: float | None
    models: tuple[str, ...] | None  # None: the device's default list


TENTHS = tuple(round(0.1 * k, 1) for k in range(1, 11))
PRESETS: dict[tuple[str, str], Preset] = {
    # 6 x 3 x 6 x 5 = 540 points; each point's timed runs capped at 0.4 s and the whole
    # run at 450 s of measuring, so it ends within 8 minutes on one H100
    ("cuda", "quick"): Preset(
        batches=(1, 4, 8),
        sms=(10, 20, 30, 50, 70, 100),
        quotas=(0.2, 0.4, 0.6, 0.8, 1.0),
        warmup=3,
        iters=15,
        max_point_s=0.4,
        budget_s=450.0,
        models=None,
    ),
    ("cuda", "default"): Preset(
        batches=(1, 2, 4, 8),
        sms=tuple(range(10, 101, 10)),
        quotas=TENTHS,
        warmup=10,
        iters=50,
        max_point_s=3.0,
        budget_s=None,
        models=None,
    ),
    # RaPP's grid: SM 5..100 step 5, batch 1,2,4,8, quota 10..100 %, 20 + 180 runs
    ("cuda", "full"): Preset(
        batches=(1, 2, 4, 8),
        sms=tuple(range(5, 101, 5)),
        quotas=TENTHS,
        warmup=20,
        iters=180,
        max_point_s=None,
        budget_s=None,
        models=None,
    ),
    # CPU: shrunk so that one model finishes in about a minute on 2 cores
    ("cpu", "quick"): Preset(
        batches=(1, 4),
        sms=(50, 100),
        quotas=(0.4, 0.7, 1.0),
        warmup=2,
        iters=8,
        max_point_s=3.0,
        budget_s=None,
        models=("resnet18",),
    ),
    ("cpu", "default"): Preset(
        batches=(1, 2, 4),
        sms=(25, 50, 100),
        quotas=(0.25, 0.5, 0.75, 1.0),
        warmup=3,
        iters=20,
        max_point_s=10.0,
        budget_s=None,
        models=("resnet18", "mobilenet_v2"),
    ),
    ("cpu", "full"): Preset(
        batches=(1, 2, 4, 8),
        sms=(25, 50, 75, 100),
        quotas=TENTHS,
        warmup=5,
        iters=50,
        max_point_s=None,
        budget_s=None,
        models=None,
    ),
}
GATE_LABEL = {"hook": "ld-preload", "python": "python-prehook"}
"""The ``gate`` column: the C hook at kernel launches, or the Python module gate."""


class PlanError(ValueError):
    """Bad input, refused before anything runs."""


@dataclass
class Plan:
    device: str
    preset: str
    models: list[str]  # as given (names or module:factory)
    model_names: list[str]
    model_impls: dict[str, str]
    batches: list[int]
    sms: list[float]
    quotas: list[float]
    warmup: int
    iters: int
    window_ms: float
    gap_ms: float
    max_point_s: float | None
    budget_s: float | None
    out: Path
    zoo: str
    partition: str
    gate: str
    traces: bool
    input_shape: tuple[int, ...]
    gpu_label: str | None
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def points(self) -> int:
        return len(self.models) * len(self.batches) * len(self.sms) * len(self.quotas)


# --------------------------------------------------------------------------- parsing


def _list(text: str, kind: type, what: str) -> list[Any]:
    vals = []
    for tok in text.split(","):
        tok = tok.strip()
        if not tok:
            continue
        try:
            vals.append(kind(tok))
        except ValueError:
            raise PlanError(f"{what}: {tok!r} is not a {kind.__name__}") from None
    if not vals:
        raise PlanError(f"{what}: empty list")
    return vals


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m calibration.profile",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Measure inference latency L(model, batch, SM %, time quota) and write it in "
            "hasim's measurement schema (latency.parquet), with per-kernel traces "
            "(kernel_traces.pq) and machine metadata (manifest.json)."
        ),
        epilog="""\
grids (explicit --models/--batches/--sms/--quotas/--warmup/--iters override them):
  cuda --quick   6 models x batch 1,4,8 x SM 10,20,30,50,70,100 x quota .2,.4,.6,.8,1;
                 3 warm-up + up to 15 timed runs, at most 0.4 s per point and 450 s in
                 all: under 8 minutes on one H100
  cuda (default) 6 models x batch 1,2,4,8 x SM 10..100 step 10 x quota .1..1 step .1
  cuda --full    RaPP's grid: SM 5..100 step 5, batch 1,2,4,8, quota .1..1, 20 + 180 runs
  cpu --quick    resnet18 x batch 1,4 x SM 50,100 (threads) x quota .4,.7,1; 2 + 8 runs
                 (shrunk: a CPU stands in for the GPU; about a minute on 2 cores)

SM partitions: MPS, else CUDA green contexts (torch >= 2.10), else SM 100 only; on CPU
threads stand in for SMs (method "cpu-threads"). Time quotas: the LD_PRELOAD gate of
calibration/hook (built with gcc against CUDA headers; "ld-preload"), else a Python
forward-pre-hook gate ("python-prehook", always on CPU). Quotas are fractions of the
window: --quotas 0.2,0.5,1.

examples:
  python -m calibration.profile --device cpu --quick --models resnet18 --out /tmp/cal
  python -m calibration.profile --device cuda --quick --out $OUT/cal
  python -m calibration.profile --device cuda --models resnet50,mypkg.nets:build \\
      --batches 1,8 --sms 20,100 --quotas 0.5,1 --iters 100
""",
    )
    ap.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda", help="where to run (default cuda)"
    )
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="a small grid (see below)")
    g.add_argument("--full", action="store_true", help="the full (RaPP) grid")
    ap.add_argument(
        "--models",
        help="comma-separated names (torchvision/zoo) or "
        "module.path:factory / name=module.path:factory",
    )
    ap.add_argument("--batches", help="comma-separated batch sizes, e.g. 1,4,8")
    ap.add_argument("--sms", help="comma-separated SM percentages in (0, 100]")
    ap.add_argument("--quotas", help="comma-separated time quotas, fractions in (0, 1]")
    ap.add_argument("--warmup", type=int, help="warm-up inferences per point")
    ap.add_argument("--iters", type=int, help="timed inferences per point (at most)")
    ap.add_argument(
        "--window-ms", type=float, default=40.0, help="token window W in ms (default 40, HAS-GPU's)"
    )
    ap.add_argument(
        "--gap-ms",
        type=float,
        default=5.0,
        help="idle time before each timed run (default 5 ms, as RaPP)",
    )
    ap.add_argument(
        "--max-point-s",
        type=float,
        help="stop a point's timed runs after this many seconds (>= 3 runs)",
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        help="stop measuring after this many seconds in all (partial output kept)",
    )
    ap.add_argument("--out", help="output directory (default results/calibration/<device>-<time>)")
    ap.add_argument(
        "--zoo",
        choices=("auto", "torchvision", "hasim"),
        default="auto",
        help="model definitions: torchvision when importable (auto), or only "
        "torchvision, or only ours (calibration/zoo.py)",
    )
    ap.add_argument(
        "--partition",
        choices=("auto", "mps", "green", "none"),
        default="auto",
        help="GPU SM partitioning (auto: MPS, else green contexts, else none)",
    )
    ap.add_argument(
        "--gate",
        choices=("auto", "hook", "python"),
        default="auto",
        help="time-quota gate on a GPU (auto: the C hook when it builds)",
    )
    ap.add_argument("--no-traces", action="store_true", help="skip the per-kernel traces")
    ap.add_argument("--input-shape", default="3,224,224", help="per-sample input shape C,H,W")
    ap.add_argument("--gpu-label", help="the gpu column (default from the device, e.g. H100-80GB)")
    ap.add_argument("--seed", type=int, default=0, help="torch seed (weights, inputs)")
    ap.add_argument(
        "--dry-run", action="store_true", help="check the input and print the plan; run nothing"
    )
    return ap


def make_plan(a: argparse.Namespace) -> Plan:
    """Validate everything the user gave; PlanError before anything runs."""
    from calibration import zoo

    preset_name = "quick" if a.quick else "full" if a.full else "default"
    pre = PRESETS[(a.device, preset_name)]
    if a.models:
        models = _list(a.models, str, "--models")
    elif pre.models is not None:
        models = list(pre.models)
    elif a.device == "cuda" and not a.full:
        models = list(zoo.quick_models(a.zoo))
    else:
        models = list(zoo.full_models(a.zoo))
    names, impls = [], {}
    for m in dict.fromkeys(models):
        try:
            ms = zoo.resolve(m, a.zoo)
        except ValueError as e:
            raise PlanError(str(e)) from None
        if ms.name in impls:
            raise PlanError(f"--models: two models named {ms.name!r}")
        names.append(ms.name)
        impls[ms.name] = ms.impl
    batches = sorted(set(_list(a.batches, int, "--batches"))) if a.batches else list(pre.batches)
    if any(b < 1 for b in batches):
        raise PlanError(f"--batches: {batches}: every batch must be an integer >= 1")
    sms = sorted(set(_list(a.sms, float, "--sms"))) if a.sms else [float(s) for s in pre.sms]
    bad = [s for s in sms if not 0 < s <= 100]
    if bad:
        raise PlanError(f"--sms: {bad}: SM percentages must be in (0, 100]")
    quotas = sorted(set(_list(a.quotas, float, "--quotas"))) if a.quotas else list(pre.quotas)
    bad = [q for q in quotas if not 0 < q <= 1]
    if bad:
        raise PlanError(
            f"--quotas: {bad}: quotas are fractions of the window in (0, 1] (0.4 = 40 %)"
        )
    warmup = pre.warmup if a.warmup is None else a.warmup
    iters = pre.iters if a.iters is None else a.iters
    if warmup < 0:
        raise PlanError("--warmup must be >= 0")
    if iters < 1:
        raise PlanError("--iters must be >= 1")
    if not a.window_ms > 0:
        raise PlanError("--window-ms must be > 0")
    if a.gap_ms < 0:
        raise PlanError("--gap-ms must be >= 0")
    for opt, v in (("--max-point-s", a.max_point_s), ("--budget-s", a.budget_s)):
        if v is not None and not v > 0:
            raise PlanError(f"{opt} must be > 0")
    shape = tuple(_list(a.input_shape, int, "--input-shape"))
    if any(v < 1 for v in shape):
        raise PlanError("--input-shape: every dimension must be >= 1")
    out = (
        Path(a.out)
        if a.out
        else ROOT / "results" / "calibration" / (f"{a.device}-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    if out.exists() and not out.is_dir():
        raise PlanError(f"--out {out}: exists and is not a directory")
    notes = []
    if a.device == "cpu":
        notes.append(
            "CPU run: threads stand in for SMs (method cpu-threads) and the quota gate is "
            "the Python forward-pre-hook gate; the latencies are a CPU's, for testing the "
            "pipeline, not GPU calibration data"
        )
        if preset_name == "quick":
            notes.append(
                "cpu --quick: grid and iterations shrunk (batch 1,4 x SM 50,100 x quota "
                ".4,.7,1; 2 warm-up + up to 8 timed runs) from the GPU --quick grid "
                "(6 models x batch 1,4,8 x SM 10..100 (6) x quota .2..1 (5); 3 + 15 runs)"
            )
    return Plan(
        device=a.device,
        preset=preset_name,
        models=list(dict.fromkeys(models)),
        model_names=names,
        model_impls=impls,
        batches=batches,
        sms=sms,
        quotas=quotas,
        warmup=warmup,
        iters=iters,
        window_ms=float(a.window_ms),
        gap_ms=float(a.gap_ms),
        max_point_s=a.max_point_s if a.max_point_s is not None else pre.max_point_s,
        budget_s=a.budget_s if a.budget_s is not None else pre.budget_s,
        out=out,
        zoo=a.zoo,
        partition=a.partition if a.device == "cuda" else "cpu-threads",
        gate=a.gate if a.device == "cuda" else "python",
        traces=not a.no_traces,
        input_shape=shape,
        gpu_label=a.gpu_label,
        seed=a.seed,
        notes=notes,
    )


# --------------------------------------------------------------------------- output


def points_to_rows(part: dict[str, Any], plan: Plan, gpu: str) -> list[dict[str, Any]]:
    """The schema rows (one per statistic) of a worker's part file."""
    info = part.get("info", {})
    rows = []
    for p in part.get("points", []):
        for stat in ("mean", "p50", "p95", "p99"):
            rows.append(
                {
                    "gpu": gpu,
                    "model": p["model"],
                    "batch": int(p["batch"]),
                    "sm_pct": float(part["sm_pct"]),
                    "quota_pct": round(100.0 * float(p["quota"]), 6),
                    "mig_slice": "",
                    "statistic": stat,
                    "latency_ms": float(p["stats"][stat]),
                    "source": SOURCE[plan.device],
                    "seq_len": 0,
                    "procs": 1,
                    "method": part["method"],
                    "gate": p["gate"],
                    "window_ms": plan.window_ms,
                    "device": plan.device,
                    "n_runs": int(p["n_runs"]),
                    "sm_count": int(info.get("sm_count", -1)),
                    "sm_pct_effective": float(info.get("sm_pct_effective", part["sm_pct"])),
                    "model_impl": p.get("impl", ""),
                }
            )
    return rows


def write_latency(rows: list[dict[str, Any]], out: Path) -> Path | None:
    import pandas as pd

    if not rows:
        return None
    df = pd.DataFrame(rows, columns=list(SCHEMA + EXTRA))
    df = df.sort_values(["model", "batch", "sm_pct", "quota_pct", "statistic"], kind="stable")
    path = out / LATENCY_FILE
    tmp = out / ".latency.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def merge_traces(parts_dir: Path, out: Path) -> Path | None:
    import pandas as pd

    files = sorted(parts_dir.glob("trace-*.pq"))
    frames = [pd.read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True)
    lead = ["gpu", "device", "method", "sm_pct", "model", "batch", "trace"]
    df = df[lead + [c for c in df.columns if c not in lead]]
    path = out / TRACE_FILE
    tmp = out / ".traces.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    tmp = out / ".manifest.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, out / MANIFEST)


# --------------------------------------------------------------------------- device set-up


def _probe(
    env: dict[str, str] | None = None, timeout: float = 120.0, *, green: bool = False
) -> dict[str, Any]:
    """The worker's ``--probe`` in a fresh process (this one never touches CUDA)."""
    try:
        r = subprocess.run(
            [sys.executable, "-m", "calibration.worker", "--probe"]
            + (["--green"] if green else []),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or _worker_env(),
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"probe timed out after {timeout:.0f} s"}
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"ok": False, "error": (r.stderr or r.stdout).strip()[-800:]}
    return json.loads(lines[-1])


def _worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    pp = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + pp if pp else "")
    for k in ("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "HASIM_QUOTA"):
        env.pop(k, None)
    env.update(extra or {})
    return env


def choose_partition(plan: Plan, probe: dict[str, Any], log: list[str]) -> tuple[str, Any]:
    """(method, MPS daemon or None) for a GPU run."""
    from calibration.partition import MPSDaemon

    want = plan.partition
    if want in ("auto", "mps"):
        d = MPSDaemon()
        if d.start():
            env = _worker_env({**d.env, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50"})
            p = _probe(env, timeout=90.0)
            servers = d.servers()
            if p.get("ok"):
                log.extend(d.log)
                log.append(
                    f"MPS client probe ok (servers: {servers or '?'}; "
                    f"SMs seen at 50 %: {p.get('sm_count')})"
                )
                return "mps", d
            log.append(
                f"MPS client probe failed: {p.get('error')}; server log: {d.server_log()[-300:]}"
            )
            d.stop()
        log.extend(d.log)
        if want == "mps":
            raise PlanError(
                "--partition mps: no MPS daemon could serve a client: " + "; ".join(log)
            )
    if want in ("auto", "green"):
        if probe.get("green_contexts"):
            g = _probe(green=True)
            if g.get("green_ok"):
                log.append("green context probe ok")
                return "green", None
            log.append(f"green context probe failed: {g.get('green_error') or g.get('error')}")
        else:
            log.append("green contexts unavailable (torch < 2.10 or built without them)")
        if want == "green":
            raise PlanError("--partition green: " + log[-1])
    return "none", None


def choose_gate(plan: Plan, log: list[str]) -> tuple[str, str | None]:
    """('hook', library path) or ('python', None)."""
    if plan.gate == "python":
        return "python", None
    from calibration.hook.build import build

    try:
        lib = build()
    except RuntimeError as e:
        lib = None
        log.append(str(e))
    if lib is None:
        if plan.gate == "hook":
            raise PlanError("--gate hook: the hook could not be built (see above)")
        log.append("C hook unavailable: Python gate")
        return "python", None
    return "hook", str(lib)


# --------------------------------------------------------------------------- running


def describe(plan: Plan) -> str:
    """The plan in words (``--dry-run``), with what this machine offers for it."""
    from calibration.hook.build import cuda_include
    from calibration.partition import MPS_CONTROL, MPSDaemon, cpu_count, cpu_threads

    fmt = ",".join
    lines = [
        f"device {plan.device}, preset {plan.preset}: {plan.points} points -> {plan.out}",
        "  models: " + ", ".join(f"{n} [{plan.model_impls[n]}]" for n in plan.model_names),
        f"  batches {fmt(map(str, plan.batches))}; SM % {fmt(f'{s:g}' for s in plan.sms)}; "
        f"quotas {fmt(f'{q:g}' for q in plan.quotas)}",
        f"  {plan.warmup} warm-up + up to {plan.iters} timed runs per point"
        + (f" (<= {plan.max_point_s:g} s)" if plan.max_point_s else "")
        + (f"; budget {plan.budget_s:g} s" if plan.budget_s else "")
        + f"; W {plan.window_ms:g} ms; gap {plan.gap_ms:g} ms; traces {plan.traces}",
    ]
    if plan.device == "cpu":
        cores = cpu_count()
        th = ", ".join(f"{s:g}%->{cpu_threads(s, cores)}" for s in plan.sms)
        lines.append(f"  partitions: cpu-threads on {cores} cores ({th}); gate python-prehook")
    else:
        import torch

        from calibration.meta import _has_green_contexts

        green = _has_green_contexts(torch)
        inc = cuda_include()
        lines += [
            f"  partitions: {plan.partition} (MPS: {MPS_CONTROL} "
            f"{'found' if MPSDaemon.available() else 'not found'}; green contexts in torch "
            f"{torch.__version__}: {'yes' if green else 'no'})",
            f"  gate: {plan.gate} (CUDA headers: {inc or 'none'}; else python-prehook)",
        ]
    lines += [f"  note: {n}" for n in plan.notes]
    return "\n".join(lines)


def run(plan: Plan) -> int:
    from calibration import meta
    from calibration.partition import cpu_count, cpu_threads

    t0 = time.time()
    out = plan.out
    probe: dict[str, Any] = {}
    if plan.device == "cuda":  # before anything is written
        probe = _probe()
        if not probe.get("ok"):
            print(
                f"error: no usable CUDA device ({probe.get('error')}); "
                "--device cpu runs the CPU stand-in",
                file=sys.stderr,
            )
            return 2
    out.mkdir(parents=True, exist_ok=True)
    parts = Path(tempfile.mkdtemp(prefix="hasim-calibration-"))  # worker files
    log: list[str] = []
    manifest: dict[str, Any] = {
        "tool": "hasim calibration (calibration/profile.py)",
        "created": meta.now_iso(),
        "command": " ".join(
            [Path(sys.executable).name, "-m", "calibration.profile"] + sys.argv[1:]
        ),
        "device": plan.device,
        "preset": plan.preset,
        "grid": {
            "models": plan.model_names,
            "batches": plan.batches,
            "sm_pct": plan.sms,
            "quotas": plan.quotas,
            "warmup": plan.warmup,
            "iters": plan.iters,
            "window_ms": plan.window_ms,
            "gap_ms": plan.gap_ms,
            "max_point_s": plan.max_point_s,
            "budget_s": plan.budget_s,
            "input_shape": list(plan.input_shape),
            "points": plan.points,
        },
        "model_impl": plan.model_impls,
        "host": meta.host_info(),
        "torch": meta.torch_info(),
        "notes": list(plan.notes),
        "log": log,
        "partitions": [],
        "files": {},
    }
    daemon = None
    env_extra: dict[str, str] = {}
    cores = cpu_count()
    total_sms = None
    if plan.device == "cuda":
        manifest["gpu"] = meta.nvml_info()
        manifest["cuda_probe"] = probe
        total_sms = int(probe["sm_count"])
        gpu = plan.gpu_label or meta.gpu_label(probe["name"], probe.get("total_memory"))
        try:
            gate, lib = choose_gate(plan, log)
            method, daemon = choose_partition(plan, probe, log)
        except PlanError as e:
            print(f"error: {e}", file=sys.stderr)
            _write_manifest(out, manifest)
            return 2
        if method == "none":
            dropped = [s for s in plan.sms if s != 100]
            if dropped:
                log.append(f"no SM partitioning available: SM levels {dropped} skipped")
                plan.sms = [s for s in plan.sms if s == 100]
            if not plan.sms:
                print("error: no SM partitioning here and SM 100 not requested", file=sys.stderr)
                _write_manifest(out, manifest)
                return 2
        if daemon is not None:
            env_extra.update(daemon.env)
        if gate == "hook":
            env_extra.update(
                LD_PRELOAD=lib
                + (" " + os.environ["LD_PRELOAD"] if os.environ.get("LD_PRELOAD") else ""),
                HASIM_HOOK_PATH=lib,
                HASIM_QUOTA="1",
                HASIM_WINDOW_MS=str(plan.window_ms),
            )
    else:
        method, gate = "cpu-threads", "python"
        gpu = plan.gpu_label or meta.cpu_label()
        # passive: spinning OpenMP threads collapse when the cores are shared
        env_extra["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
        manifest["cpu"] = {
            "model": meta.cpu_model(),
            "cores_usable": cores,
            "threads_per_sm_pct": {f"{s:g}": cpu_threads(s, cores) for s in plan.sms},
            "omp_wait_policy": env_extra["OMP_WAIT_POLICY"],
        }
    manifest.update(gpu_label=gpu, method=method, gate=GATE_LABEL[gate], source=SOURCE[plan.device])
    print(
        f"calibration: {plan.device}, {len(plan.model_names)} model(s) x {len(plan.batches)} "
        f"batch x {len(plan.sms)} SM x {len(plan.quotas)} quota = {plan.points} points; "
        f"method {method}, gate {GATE_LABEL[gate]}, W {plan.window_ms:g} ms -> {out}",
        flush=True,
    )
    for n in plan.notes:
        print(f"note: {n}", flush=True)

    rows: list[dict[str, Any]] = []
    deadline = t0 + plan.budget_s if plan.budget_s else None
    child: subprocess.Popen[bytes] | None = None

    def on_term(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, on_term)
    rc = 0
    try:
        for k, sm in enumerate(sorted(plan.sms, reverse=True)):
            now = time.time()
            if deadline and now >= deadline:
                log.append(f"budget spent: SM {sm:g} % and below not measured")
                break
            part_deadline = None
            if deadline:  # share what is left among the partitions still to run
                part_deadline = now + (deadline - now) / (len(plan.sms) - k)
            tag = f"sm{sm:06.2f}".replace(".", "_")
            spec = {
                "device": plan.device,
                "method": method,
                "gate": gate,
                "sm_pct": sm,
                "threads": cpu_threads(sm, cores),
                "cores": cores,
                "total_sms": total_sms,
                "models": plan.models,
                "zoo": plan.zoo,
                "batches": plan.batches,
                "quotas": plan.quotas,
                "window_ms": plan.window_ms,
                "warmup": plan.warmup,
                "iters": plan.iters,
                "gap_ms": plan.gap_ms,
                "max_point_s": plan.max_point_s,
                "deadline": part_deadline,
                "traces": plan.traces,
                "input_shape": list(plan.input_shape),
                "gpu": gpu,
                "seed": plan.seed,
                "out": str(parts / f"part-{tag}.json"),
                "trace_out": str(parts / f"trace-{tag}.pq"),
            }
            spec_path = parts / f"spec-{tag}.json"
            spec_path.write_text(json.dumps(spec, indent=1))
            env = _worker_env(env_extra)
            if method == "mps":
                env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = f"{sm:g}"
            if method == "cpu-threads":
                n = str(spec["threads"])
                env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n)
            t_part = time.time()
            child = subprocess.Popen(
                [sys.executable, "-m", "calibration.worker", str(spec_path)], env=env, cwd=ROOT
            )
            limit = (part_deadline - time.time() + 60) if part_deadline else None
            try:
                wrc = child.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                child.kill()
                wrc = child.wait()
                log.append(f"SM {sm:g} %: worker killed after its time share")
            child = None
            try:
                part = json.loads(Path(spec["out"]).read_text())
            except (OSError, json.JSONDecodeError) as e:
                part = {
                    "sm_pct": sm,
                    "method": method,
                    "points": [],
                    "errors": [f"no part file: {e}"],
                }
            new = points_to_rows(part, plan, gpu)
            rows += new
            manifest["partitions"].append(
                {
                    "sm_pct": sm,
                    "method": method,
                    "gate": part.get("gate_final", gate),
                    "exit": wrc,
                    "wall_s": round(time.time() - t_part, 2),
                    "points": len(part.get("points", [])),
                    "info": part.get("info", {}),
                    "notes": part.get("notes", []),
                    "errors": part.get("errors", []),
                    "skipped": len(part.get("skipped", [])),
                    "complete": bool(part.get("done")),
                }
            )
            if wrc != 0 and not part.get("points"):
                rc = 1
            lat = write_latency(rows, out)
            if lat:
                manifest["files"]["latency"] = lat.name
            _write_manifest(out, manifest)
    except (KeyboardInterrupt, SystemExit) as e:
        log.append(f"interrupted ({type(e).__name__})")
        rc = 130
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
    finally:
        signal.signal(signal.SIGTERM, old)
        if daemon is not None:
            daemon.stop()
            log.extend(x for x in daemon.log if x not in log)
        tr = merge_traces(parts, out)
        if tr:
            manifest["files"]["traces"] = tr.name
        lat = write_latency(rows, out)
        if lat:
            manifest["files"]["latency"] = lat.name
        manifest["wall_s"] = round(time.time() - t0, 1)
        manifest["rows"] = len(rows)
        _write_manifest(out, manifest)
        shutil.rmtree(parts, ignore_errors=True)
    n_pts = len(rows) // 4
    print(
        f"calibration: {n_pts}/{plan.points} points, {len(rows)} rows in "
        f"{manifest['wall_s']:.1f} s -> {out / LATENCY_FILE}",
        flush=True,
    )
    if not rows:
        return rc or 1
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        plan = make_plan(a)
    except PlanError as e:
        ap.error(str(e))
    if a.dry_run:
        print(describe(plan))
        return 0
    return run(plan)


if __name__ == "__main__":
    sys.exit(main())
