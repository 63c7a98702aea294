"""The cluster's GPU meets the latency model: own data, an explicit transfer rule, or an error.

A latency model says which GPU its latencies were measured on (``model.gpu``, a
canonical name of :mod:`hasim.hardware`; ``None`` for a GPU-blind model such as
``synthetic``). :func:`bind_to_gpu` builds the model for the cluster's GPU and checks
that every served DNN has data for that GPU. When one has not, the run is refused with
an error naming the GPU, the DNN and the fixes, unless the user chose a transfer rule
(``perf.transfer``): then the DNN's latencies on the latency model's own GPU (V100 16 GB
for the packaged data) are scaled by a ratio of datasheet figures, and the run carries
a warning.

Rules (``ratio`` multiplies the source GPU's latency; figures from the catalogue):

* ``flops``: peak FP32 TFLOP/s, source / target (the data are PyTorch FP32 eager);
* ``bandwidth``: memory bandwidth GB/s, source / target;
* ``roofline``: the geometric mean of the two (half compute-, half memory-bound);
* ``same``: 1, the source GPU's latencies unchanged (hasim before GPU types were real).

All are approximations: none models launch overheads, which dominate small batches in
the packaged data (see README, "GPU types"); ``hasim perf gpu-transfer`` measures their
error where both GPUs were measured (V100 -> A100).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from hasim.errors import InputError
from hasim.hardware import canonical_gpu, gpu_spec
from hasim.perf.base import LatencyModel

TRANSFER_RULES = ("flops", "bandwidth", "roofline", "same")
"""Accepted values of ``perf.transfer`` ("" = none: refuse a GPU without data)."""


class NoLatencyDataError(InputError):
    """The cluster's GPU has no latency data for a served model and no transfer rule was
    chosen."""


def transfer_ratio(rule: str, source: str, target: str) -> float:
    """Factor on ``source``-GPU latencies that estimates ``target``-GPU latencies."""
    s, t = gpu_spec(source), gpu_spec(target)
    flops = s.peak_fp32_tflops / t.peak_fp32_tflops
    bandwidth = s.mem_bandwidth_gbs / t.mem_bandwidth_gbs
    if rule == "flops":
        return flops
    if rule == "bandwidth":
        return bandwidth
    if rule == "roofline":
        return math.sqrt(flops * bandwidth)
    if rule == "same":
        return 1.0
    raise InputError(
        f"perf.transfer={rule!r} is unknown", expected="one of " + ", ".join(TRANSFER_RULES)
    )


class TransferredLatency:
    """Latencies on ``target``: from ``own`` (the target GPU's data) for the DNNs it
    knows, else ``source``'s latencies (another GPU) times ``ratio``."""

    def __init__(
        self,
        own: LatencyModel | None,
        source: LatencyModel,
        rule: str,
        target: str,
    ) -> None:
        self.own = own
        self.source = source
        self.rule = rule
        self.gpu = target
        self.source_gpu = str(source.gpu)
        self.ratio = transfer_ratio(rule, self.source_gpu, target)
        self.name = source.name

    def knows(self, model: str) -> bool:
        """True when the target's own data or the source GPU's data hold ``model``."""
        return (self.own is not None and self.own.knows(model)) or self.source.knows(model)

    def transferred(self, model: str) -> bool:
        """True when ``model``'s latencies are scaled from the source GPU."""
        return not (self.own is not None and self.own.knows(model))

    def mean_latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        """Mean latency (s): measured on the target, or the source's times ``ratio``."""
        if not self.transferred(model):
            return self.own.mean_latency_s(model, batch, sm_pct, quota)  # type: ignore[union-attr]
        return self.source.mean_latency_s(model, batch, sm_pct, quota) * self.ratio

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The noise of the target's own model (else the source's)."""
        return (self.own or self.source).noise(rng, n)


def _fixes(kind: str) -> str:
    where = "perf.measurements=<dir>"
    if kind != "compact":
        where = "perf=compact " + where
    return (
        f"use perf.transfer=<{'|'.join(TRANSFER_RULES)}> (scales another GPU's latencies: "
        f"approximate, the run is flagged) or {where} (your GPU's measurements, from "
        "`python -m calibration.profile`)"
    )


def bind_to_gpu(
    cfg: Any,
    build: Callable[[Any, str | None], LatencyModel],
    gpu: str,
    models: Iterable[str],
) -> tuple[LatencyModel, list[str]]:
    """The latency model for a cluster of ``gpu`` serving ``models``, and its warnings.

    ``build(cfg, gpu)`` builds ``cfg``'s latency model with data for ``gpu`` where it has
    some (else for its own default GPU); ``build(cfg, None)`` the default one. Raises
    :class:`NoLatencyDataError` when a model lacks data for ``gpu`` and ``cfg.transfer``
    is empty; with a rule, returns a :class:`TransferredLatency` and one warning per
    transferred model.
    """
    target = canonical_gpu(gpu)
    rule = str(getattr(cfg, "transfer", "") or "")
    if rule:
        transfer_ratio(rule, target, target)  # validate the name before anything else
    model = build(cfg, target)
    mgpu = getattr(model, "gpu", None)
    if mgpu is None or canonical_gpu(mgpu) == target:
        own: LatencyModel | None = model
        missing = [m for m in dict.fromkeys(models) if not model.knows(m)]
        if mgpu is None or not missing:
            return model, []
    else:
        own = None
        missing = list(dict.fromkeys(models))
    kind = str(getattr(cfg, "kind", model.name))
    if not missing:
        return model, []
    if not rule:
        raise NoLatencyDataError(
            f"cluster.gpu={gpu}: no latency data for GPU {target!r} (model {missing[0]}) "
            f"in perf={kind}; {_fixes(kind)}"
        )
    source = model if own is None else build(cfg, None)
    if source.gpu is None or canonical_gpu(str(source.gpu)) == target:
        return model, []  # nothing to transfer from: the engine names the unknown model
    bound = TransferredLatency(own, source, rule, target)
    warnings = [
        f"latencies of {m} on {target} are {bound.source_gpu} latencies x {bound.ratio:.3f} "
        f"(perf.transfer={rule}), not measured"
        for m in missing
        if source.knows(m)
    ]
    return bound, warnings
