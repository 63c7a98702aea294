"""Build a run from a composed config, simulate it, and write and print the results."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from hasim.autoscale.registry import AUTOSCALER_KINDS
from hasim.config.schema import ClusterConfig, OutputConfig, SimConfig
from hasim.config.typed import pick_kind, to_typed
from hasim.paths import conf_dir
from hasim.perf.transfer import bind_to_gpu
from hasim.sim import metrics
from hasim.sim.engine import Simulation
from hasim.sim.results import run_name, write_run
from hasim.sim.rng import Streams

TRACE_MAX_KERNELS = 250_000
"""trace.json: kernels written one slice each; later ones one slice per token (loadable)."""


@dataclass
class Result:
    """A finished run. ``summary``: the keys of summary.json; ``requests``: one row per
    request; ``path``: the run directory when written."""

    summary: dict[str, Any]
    requests: pd.DataFrame
    functions: pd.DataFrame
    pods: pd.DataFrame
    actions: pd.DataFrame
    allocations: pd.DataFrame
    usage: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    trace: Any = None  # kernel mode with output.trace: the run's KernelTrace
    replicas: pd.DataFrame | None = None  # sim.replicas > 1: one row per replica


def compose(overrides: Sequence[str] | None = None) -> DictConfig:
    """The config Hydra would compose for ``hasim run <overrides>``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="hasim"):
        return hydra_compose(config_name="config", overrides=list(overrides or []))


def run(overrides: Sequence[str] | None = None) -> Result:
    """Run one simulation from Hydra-style overrides, e.g. ``["workload.rate=5"]``."""
    overrides = list(overrides or [])
    return run_config(compose(overrides), overrides)


def _progress_bar(enabled: bool, total: float):
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(
        total=round(total),
        unit="sim-s",
        desc="simulating",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )

    def update(t: float) -> None:
        bar.update(max(0, round(t) - bar.n))

    return bar, update


def _comparable(cfg: DictConfig | dict) -> dict:
    """The parts of a config that determine a run's results (not where or how it prints)."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    c = {k: v for k, v in c.items() if k not in ("output", "hydra")}
    c["sim"] = {k: v for k, v in (c.get("sim") or {}).items() if k != "progress"}
    return c


def load_run(path: Path) -> Result:
    """A finished run read back from its directory."""
    import json

    path = Path(path)

    def frame(name: str) -> pd.DataFrame:
        f = path / f"{name}.parquet"
        return pd.read_parquet(f) if f.exists() else pd.DataFrame()

    return Result(
        summary=json.loads((path / "summary.json").read_text()),
        requests=frame("requests"),
        functions=frame("functions"),
        pods=frame("pods"),
        actions=frame("actions"),
        allocations=frame("allocations"),
        usage=frame("usage"),
        config=OmegaConf.to_container(OmegaConf.load(path / "config.yaml")),  # type: ignore[arg-type]
        path=path,
        replicas=frame("replicas") if (path / "replicas.parquet").exists() else None,
    )


def _finished(target: Path, cfg: DictConfig, extra: Sequence[str] = ()) -> bool:
    """True when ``target`` holds a complete run made with the same config (and the files
    ``extra``)."""
    for name in ("summary.json", "config.yaml", *extra):
        if not (target / name).exists():
            return False
    try:
        return _comparable(OmegaConf.load(target / "config.yaml")) == _comparable(cfg)
    except Exception:  # an unreadable old run is recomputed
        return False


@dataclass
class _Parts:
    """The typed pieces of a composed config."""

    cluster: ClusterConfig
    sim: SimConfig
    output: OutputConfig
    workload: Any
    wbuild: Any
    perf: Any
    pbuild: Any
    autoscaler: Any
    abuild: Any


def _parts(cfg: DictConfig) -> _Parts:
    from hasim.perf.registry import PERF_KINDS
    from hasim.workload.registry import WORKLOAD_KINDS

    ccfg = to_typed(cfg.cluster, ClusterConfig, "cluster")
    scfg = to_typed(cfg.sim, SimConfig, "sim")
    ocfg = to_typed(cfg.output, OutputConfig, "output")
    wschema, wbuild = pick_kind(cfg.workload, WORKLOAD_KINDS, "workload")
    pschema, pbuild = pick_kind(cfg.perf, PERF_KINDS, "perf")
    aschema, abuild = pick_kind(cfg.autoscaler, AUTOSCALER_KINDS, "autoscaler")
    wcfg = to_typed(cfg.workload, wschema, "workload")
    pcfg = to_typed(cfg.perf, pschema, "perf")
    acfg = to_typed(cfg.autoscaler, aschema, "autoscaler")
    return _Parts(ccfg, scfg, ocfg, wcfg, wbuild, pcfg, pbuild, acfg, abuild)


def replica_summary(
    cfg: dict[str, Any], seed: int, factors: dict[str, float] | None
) -> dict[str, float]:
    """The headline figures (:data:`hasim.sim.replicas.CI_KEYS`) of one replica: the plain
    config ``cfg`` run with ``seed`` and, when given, the latency model's mean latencies
    times ``factors`` (per model). Runs in a worker process; writes nothing."""
    from hasim.perf.intervals import ScaledLatency
    from hasim.sim.replicas import figures

    p = _parts(OmegaConf.create(cfg))
    p.sim.progress = False
    workload = p.wbuild(p.workload, Streams(seed).get("arrivals"))
    perf, _ = bind_to_gpu(p.perf, p.pbuild, p.cluster.gpu, [f.model for f in workload.functions])
    if factors is not None:
        perf = ScaledLatency(perf, factors)
    sim = Simulation(workload, perf, p.abuild(p.autoscaler, p.cluster), p.cluster, p.sim, seed)
    sim.run()
    requests = metrics.requests_frame(sim, metrics.slos(sim))
    allocations = metrics.alloc_frame(sim)
    usage = metrics.usage_frame(allocations, p.sim.sample_period, sim.end_time)
    return figures(metrics.summarize(sim, requests, allocations, usage))


def _replicate(
    cfg: DictConfig, scfg: SimConfig, seed: int, perf: Any, models: list[str], kind: str
) -> tuple[pd.DataFrame, str]:
    """Run replicas 1..N-1; (per-replica frame without replica 0's figures, mode)."""
    from hasim.perf.intervals import intervals_for
    from hasim.sim import replicas as rp

    ivs = intervals_for(perf)
    mode = rp.resolve_mode(scfg.replica_mode, ivs, kind)
    tasks = []
    for r in range(1, scfg.replicas):
        rseed = rp.replica_seed(seed, r) if mode in ("seed", "both") else seed
        fac = rp.latency_factors(ivs, models, seed, r) if mode in ("latency", "both") else None
        tasks.append((r, rseed, fac))
    plain = OmegaConf.to_container(cfg, resolve=True)
    figs = rp.run_replicas(plain, tasks, scfg.replica_jobs)  # type: ignore[arg-type]
    rows = [(r, s, fac is not None, fac, f) for (r, s, fac), f in zip(tasks, figs, strict=True)]
    return rp.replicas_frame(rows), mode  # type: ignore[arg-type]


def run_config(
    cfg: DictConfig, overrides: Sequence[str] | None = None, sweep: bool = False
) -> Result:
    """Run the simulation described by a composed config. ``sweep``: called for one job
    of a Hydra multirun (finished runs are then reused unless output.skip_existing=false)."""
    from hasim.sim.replicas import check_replicas

    seed = int(cfg.seed)
    p = _parts(cfg)
    ccfg, scfg, ocfg = p.cluster, p.sim, p.output
    wcfg, pcfg, acfg = p.workload, p.perf, p.autoscaler
    wbuild, pbuild, abuild = p.wbuild, p.pbuild, p.abuild
    check_replicas(scfg.replicas, scfg.replica_mode, scfg.replica_jobs)
    name = cfg.get("run") or run_name(list(overrides or []))
    target = Path(ocfg.dir) / str(cfg.name) / name
    skip = sweep if ocfg.skip_existing is None else ocfg.skip_existing
    want_trace = ocfg.trace and scfg.fidelity == "kernel"
    extra = ("trace.json",) if want_trace else ()
    if scfg.replicas > 1:
        extra = (*extra, "replicas.parquet")
    if skip and ocfg.write and _finished(target, cfg, extra):
        if not ocfg.quiet:
            print(f"run {cfg.name}/{name}: already finished with this config, reused ({target})")
        return load_run(target)

    workload = wbuild(wcfg, Streams(seed).get("arrivals"))
    perf, warnings = bind_to_gpu(pcfg, pbuild, ccfg.gpu, [f.model for f in workload.functions])
    autoscaler = abuild(acfg, ccfg)
    bar, update = _progress_bar(scfg.progress, workload.duration_s + scfg.drain)
    trace = None
    if want_trace:
        from hasim.cluster.trace import KernelTrace

        trace = KernelTrace()
    try:
        sim = Simulation(
            workload, perf, autoscaler, ccfg, scfg, seed, progress=update, trace=trace
        ).run()
    finally:
        if bar is not None:
            bar.close()

    slos = metrics.slos(sim)
    requests = metrics.requests_frame(sim, slos)
    allocations = metrics.alloc_frame(sim)
    usage = metrics.usage_frame(allocations, scfg.sample_period, sim.end_time)
    summary = metrics.summarize(sim, requests, allocations, usage)
    summary.update(
        {
            "experiment": str(cfg.name),
            "seed": seed,
            "workload": wcfg.kind,
            "perf": pcfg.kind,
            "autoscaler": acfg.kind,
        }
    )
    if warnings:
        summary["warning"] = "; ".join(warnings)
    functions = metrics.functions_frame(sim, requests, slos)
    result = Result(
        summary=summary,
        requests=requests,
        functions=functions,
        pods=pd.DataFrame(sim.logs.pods),
        actions=pd.DataFrame(sim.logs.actions),
        allocations=allocations,
        usage=usage,
        config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
        trace=trace,
    )
    summary["run"] = name
    if scfg.replicas > 1:
        from hasim.sim import replicas as rp

        models = sorted({f.model for f in workload.functions})
        rest, mode = _replicate(cfg, scfg, seed, perf, models, pcfg.kind)
        first = rp.replicas_frame(
            [(0, seed, False, dict.fromkeys(models, 1.0), rp.figures(summary))]
        )
        result.replicas = pd.concat([first, rest], ignore_index=True)
        if mode == "seed":
            result.replicas = result.replicas.drop(
                columns=[c for c in result.replicas.columns if c.startswith("factor_")]
            )
        rp.add_bands(summary, result.replicas, mode)
    if ocfg.write:
        frames = {
            "functions": functions,
            "pods": result.pods,
            "actions": result.actions,
            "allocations": allocations,
            "usage": usage,
        }
        if ocfg.requests:
            frames["requests"] = requests
        if result.replicas is not None:
            frames["replicas"] = result.replicas
        files = {}
        if trace is not None:
            from hasim.sim.perfetto import write_chrome_trace

            names = {p.id: f"{p.function}/pod{p.id}" for p in sim.pods.values()}
            files["trace.json"] = lambda path: write_chrome_trace(
                trace, path, names, max_kernels=TRACE_MAX_KERNELS
            )
        figures = {}
        if ocfg.plot:
            from hasim.analysis.plots import run_figure  # matplotlib only when plotting

            figures["plot.png"] = run_figure(requests, usage, f"{cfg.name} / {name}")
        try:
            result.path = write_run(
                target,
                frames,
                summary,
                OmegaConf.to_yaml(cfg, resolve=True),
                figures,
                files,
            )
        finally:
            if figures:
                from hasim.analysis.plots import close

                for fig in figures.values():
                    close(fig)
    if not ocfg.quiet:
        print(format_summary(result))
    return result


def format_summary(result: Result) -> str:
    """A short human-readable table of the run."""
    s = result.summary

    def f(key: str, fmt: str = "{:.4f}") -> str:
        v = s.get(key)
        return "-" if v is None or v != v else fmt.format(v)

    lines = [
        f"run {s.get('experiment')}/{s.get('run')}: {s['functions']} functions, "
        f"{s['requests_total']:,} requests over {s['duration_s']:.0f} s on {s['gpu']}",
        f"  completed {s['completed']:,}  dropped {s['dropped']:,}  in flight {s['in_flight']:,}"
        f"  throughput {f('throughput_rps', '{:.2f}')} req/s",
        f"  latency mean {f('latency_mean_s')} s  p50 {f('latency_p50_s')}"
        f"  p95 {f('latency_p95_s')}  p99 {f('latency_p99_s')}  wait mean {f('wait_mean_s')} s",
        f"  SLO violation rate {f('slo_violation_rate', '{:.2%}')}  cold starts {s['cold_starts']}"
        f"  pods {s['pods_created']}  GPUs used max {s['gpus_used_max']}",
        f"  cost {f('cost_gpu_seconds', '{:.1f}')} GPU-s (${f('cost_usd', '{:.2f}')})"
        f"  mean GPU share {f('gpu_share_mean', '{:.3f}')}",
    ]
    from hasim.sim.replicas import format_bands

    bands = format_bands(s)
    if bands is not None:
        lines.append(bands)
    if s.get("warning"):
        lines.append(f"  WARNING: {s['warning']}")
    failed = result.actions[~result.actions["ok"]] if len(result.actions) else result.actions
    if len(failed):
        notes = ", ".join(f"{n} x {k}" for k, n in failed["note"].value_counts().items())
        lines.append(
            f"  WARNING: {len(failed)} autoscaler actions failed ({notes}); "
            "see actions.parquet (e.g. add GPUs with cluster.nodes=N)"
        )
    if result.path is not None:
        lines.append(f"  results: {result.path}")
    return "\n".join(lines)
