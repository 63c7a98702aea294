"""Typed configs of the simulation core (cluster, simulation, output).

Workload, perf and autoscaler configs live beside their implementations and are
found through registries keyed by ``kind``. Units are in the field comments.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DistConfig:
    """A non-negative random duration in seconds.

    dist: constant | exponential | uniform | lognormal | normal (normal is clipped at 0).
    mean: mean in s (constant: the value). cv: coefficient of variation (lognormal, normal).
    low/high: bounds in s for uniform (mean is ignored then).
    """

    dist: str = "constant"
    mean: float = 0.0
    cv: float = 0.0
    low: float = 0.0
    high: float = 0.0


@dataclass
class ColdStartConfig:
    """Pod start-up phases, in order; each a duration distribution (s).

    model_load adds weights_mb / load_bandwidth_mb_s seconds (model facts) to its sample.
    """

    scheduling: DistConfig = field(default_factory=lambda: DistConfig("constant", 0.5))
    container_start: DistConfig = field(default_factory=lambda: DistConfig("lognormal", 2.0, 0.25))
    cuda_context: DistConfig = field(default_factory=lambda: DistConfig("constant", 1.0))
    model_load: DistConfig = field(default_factory=lambda: DistConfig("constant", 0.2))
    load_bandwidth_mb_s: float = 1000.0  # MB/s from storage to GPU memory
    readiness: DistConfig = field(
        default_factory=lambda: DistConfig("uniform", low=3.0, high=4.0)
    )  # readiness probe: initial delay 3 s, period 1 s


@dataclass
class ClusterConfig:
    """GPU cluster, gateway and pod behaviour.

    gpu: GPU type (hasim.hardware: V100-16GB, A100-40GB, A100-80GB, H100, ...; aliases such
    as V100, A100 = A100-40GB accepted). nodes x gpus_per_node GPUs.
    rows_per_gpu: SM partition rows per GPU (HAS-GPU: 2).
    max_batch: dynamic batching limit (requests per batch); max_wait: s a pod waits for a
    batch to fill once a request is queued. timeout: s a request may wait in the queue
    before it is dropped (reason ``timeout``); null = never.
    overhead: non-GPU time per request path, in s (HTTP, decoding, preprocessing; the
    real HAS-GPU runs show ~70 ms). overhead_holds_pod: false (default) adds it to each
    request's latency after its batch without occupying the pod, which is what the real
    runs show (p95 close to the mean at 15 req/s on one pod); true makes the pod's
    serving process hold it per batch, the assumption of HAS-GPU's capacity formula.
    overhead_held_s: s of ``overhead`` the pod's serving process holds per batch (serial
    work: the pod serves no other batch meanwhile); the rest (overhead - overhead_held_s)
    stays a post-service delay per request. null (default): overhead_holds_pod decides
    all (true) or nothing (false). Must lie in [0, overhead].
    overhead_cv: coefficient of variation of the post-service part of the overhead
    (overhead - the held part), drawn per request: lognormal with that mean and cv, from
    the RNG stream ("overhead", function), so a seed fixes it. 0 (default): a constant,
    the draws are not made. The held part stays constant (per batch).
    quota_delay: s from a quota decision until the token scheduler applies it.
    stale_endpoint_s: s a removed pod stays a routing target of its function's gateway
    (0: none). The gateway routes each batch round-robin over the ready pods and these
    stale endpoints; a batch routed to a stale one fails (status ``failed``, reason
    ``pod_removed``) ``fail_s`` s after it was dispatched, as the deployed FaST-GShare's
    HTTP 502s after a scale-down (VALIDATION.md section 4).
    price_per_gpu_hour: USD; null = the GPU type's default.
    model_memory_mb: per-model GPU memory footprint overrides (MB).
    mig_reconfigure_s: s from the moment a new MIG instance's slices are free (instances
    reconfigured away drained) until it is ready (destroying and creating GPU/compute
    instances; hasim.cluster.mig).
    """

    gpu: str = "V100"
    nodes: int = 8
    gpus_per_node: int = 1
    rows_per_gpu: int = 2
    max_batch: int = 4
    max_wait: float = 0.0
    timeout: float | None = 60.0
    overhead: float = 0.07
    overhead_holds_pod: bool = False
    overhead_held_s: float | None = None
    overhead_cv: float = 0.0
    quota_delay: float = 0.04
    stale_endpoint_s: float = 0.0
    fail_s: float = 0.011
    price_per_gpu_hour: float | None = None
    mig_reconfigure_s: float = 5.0
    model_memory_mb: dict[str, float] = field(default_factory=dict)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)

    def pod_overhead_s(self) -> float:
        """Seconds per batch a pod is held besides its GPU time: ``overhead_held_s`` where
        set (in [0, overhead]), else ``overhead`` when ``overhead_holds_pod``, else 0.
        The rest of ``overhead`` delays each request after its batch."""
        held = self.overhead_held_s
        if held is not None:
            if not 0.0 <= held <= self.overhead:
                from hasim.errors import InputError

                raise InputError(
                    f"cluster.overhead_held_s={held!r} is out of range",
                    expected=f"seconds in [0, cluster.overhead={self.overhead!r}]",
                )
            return float(held)
        return float(self.overhead) if self.overhead_holds_pod else 0.0


@dataclass
class SimConfig:
    """Simulation control.

    drain: s simulated after the workload ends so queued requests can finish.
    sample_period: s between utilisation samples (the real usage files: 2 s).
    slo_scale: a function without an explicit SLO gets slo_scale x (batch-1 full-GPU
    latency + overhead) of its model, in s.
    check_invariants: assert GPU invariants after every control action (tests).
    progress: show a progress bar over simulated time.
    fidelity: batch (each batch's latency from the perf model's table, fast) or kernel
    (each batch is one inference, a sequence of kernels run by its GPU's token
    scheduler, SYSTEMS.md section 1: co-located pods interact; slower, for small
    scenarios and for checking the batch path). The settings below are for kernel mode.
    token_window_s: the scheduler's window W in s (HAS-GPU: 0.040); a token lasts q x W.
    launch_margin_s: s; a pod launches a kernel while elapsed + margin <= its token.
    adaptive_tokens: FaST-GShare's published token policy (0.5 x last burst + 0.5 x
    previous token, clamped to [20 ms, q x W]) instead of fixed q x W tokens (as published,
    with token_window_s: 10).
    kernel_model: how a batch's GPU time is split into kernels: operators (per-model
    operator sequences, hasim.perf.operators) or uniform (kernels_per_inference equal
    kernels). Either way the kernels sum to the perf model's latency at quota 1 (x noise);
    the scheduler produces the quota's effect.
    kernels_per_inference: kernels per inference for kernel_model=uniform.
    launch_gated: true (default): the hook gates kernel *launches* (paced like the SM-100 %
    run of the batch) and the GPU runs launched kernels after the token is released, as
    CUDA's asynchronous launches do; false: kernels run synchronously under the token, the
    literal reading of SYSTEMS.md section 1. Launch gating matches the measurements better:
    RaPP V100 quota curves 27.3 vs 37.4 % MAPE (benchmarks/kernel_quota_mape.py; only it
    reproduces the flat quota curve of small SM partitions), HAS-GPU validation runs.
    contention: batch mode: a batch whose function has more pods busy on its GPU than the
    GPU runs at once (floor(100 / SM %) pods of that SM size hold tokens together) waits
    for a slot in its last token window: the mean of floor(rank / slots) tokens over
    the busy pods' ranks (``hasim.cluster.gateway.slot_wait_s``). Legal layouts never hold
    more quota than the slots serve in a window, so only this within-window wait remains
    (time sharing's SM-100 % slices wait for each other; 26 SM-30 % pods wait for the
    three slots). Pods of other functions are not counted; kernel mode schedules all.
    replicas: runs of the scenario behind the 90 % bands (``<figure>_ci90`` in the summary,
    ``replicas.parquet``); 1 (default): the plain run. The headline figures stay the first
    run's (seed, latency model as configured); see hasim/sim/replicas.py.
    replica_mode: what the other replicas vary: seed, latency (one factor per model and
    replica drawn inside the latency predictor's prediction interval), both, or auto
    (both where the latency model has intervals, perf=rapp; else seed).
    replica_jobs: parallel processes for the replicas; 0 = as many as cores.
    """

    drain: float = 60.0
    sample_period: float = 2.0
    slo_scale: float = 5.0
    check_invariants: bool = False
    progress: bool = True
    fidelity: str = "batch"
    token_window_s: float = 0.040
    launch_margin_s: float = 0.001
    adaptive_tokens: bool = False
    kernel_model: str = "operators"
    kernels_per_inference: int = 50
    launch_gated: bool = True
    contention: bool = True
    replicas: int = 1
    replica_mode: str = "auto"
    replica_jobs: int = 0


@dataclass
class OutputConfig:
    """Where and what to write. dir: results root; the run goes to dir/name/run.
    trace: in kernel mode, also write trace.json (every kernel and token as a Chrome /
    Perfetto trace, one track per pod); ignored in batch mode."""

    dir: str = "results"
    write: bool = True
    plot: bool = True
    requests: bool = True  # write the per-request table (can be large)
    quiet: bool = False  # do not print the summary
    # reuse a finished run with the same config instead of recomputing it; null = yes in
    # sweeps (so a restarted sweep skips what is done), no for single runs
    skip_existing: bool | None = None
    trace: bool = False
