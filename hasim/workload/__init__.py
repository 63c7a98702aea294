"""Workloads: per-function arrival times (``base``) and the readers that build them.

``registry.build_workload(cfg, rng)`` dispatches on ``cfg.kind``: poisson, gamma, mmpp,
diurnal (``synthetic``), azure2019, azure2021 (trace replays, models from ``mapping``)
and stages (``stages``, the HAS-GPU rps.json client workloads, sent by one of the client
models of ``client``: open loop, HAS-GPU's closed-loop thread-pool client, or a real run's
send times).
"""
