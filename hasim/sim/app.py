"""The Hydra application behind ``hasim run``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hasim.errors import HasimError
from hasim.paths import conf_dir
from hasim.sim.runner import run_config


def _abspath(path: str) -> str:
    """``${hasim.abspath:PATH}``: PATH made absolute from the current directory. Used by
    conf/hydra/launcher/ray_cluster.yaml, whose Ray settings are resolved where the sweep
    is submitted, to pass HASIM_RESULTS_DIR on to the workers as an absolute path."""
    return str(Path(path).expanduser().absolute())


if not OmegaConf.has_resolver("hasim.abspath"):
    OmegaConf.register_new_resolver("hasim.abspath", _abspath)


def _anchor_output_dir(cfg: DictConfig, submit_dir: str) -> None:
    """Make a relative ``output.dir`` relative to the directory the run was submitted from.

    Hydra records that directory (``hydra.runtime.cwd``) when it composes the config, so
    it travels with each job; a launcher's worker (Ray, on a cluster started elsewhere)
    may run in another directory, where a relative path would put the results."""
    out = Path(str(cfg.output.dir)).expanduser()
    if not out.is_absolute() and Path.cwd().resolve() != Path(submit_dir).resolve():
        cfg.output.dir = str(Path(submit_dir) / out)


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> float | None:
    """Run one simulation; in a sweep (-m) Hydra calls this once per job."""
    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    try:
        _anchor_output_dir(cfg, hc.runtime.cwd)
        result = run_config(cfg, list(hc.overrides.task), sweep=sweep)
    except HasimError as e:
        print(f"hasim: error: {e}", file=sys.stderr)
        if sweep:
            # a launcher's worker (joblib, Ray) must not exit: the job is recorded as
            # failed, the other jobs of the sweep go on, and hasim run exits non-zero
            raise
        sys.exit(2)
    return result.summary.get("slo_violation_rate")  # type: ignore[return-value]
