"""The Hydra application behind ``hasim run``."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from hasim.errors import HasimError
from hasim.paths import conf_dir
from hasim.sim.runner import run_config


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> float | None:
    """Run one simulation; in a sweep (-m) Hydra calls this once per job."""
    try:
        hc = HydraConfig.get()
        sweep = hc.mode == RunMode.MULTIRUN
        result = run_config(cfg, list(hc.overrides.task), sweep=sweep)
    except HasimError as e:
        print(f"hasim: error: {e}", file=sys.stderr)
        sys.exit(2)
    return result.summary.get("slo_violation_rate")  # type: ignore[return-value]
