"""benchmarks/paper_comparison.py's A100 helpers (the runs themselves take minutes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from omegaconf import OmegaConf

from hasim.sim.runner import compose

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_comparison.py"
_spec = importlib.util.spec_from_file_location("paper_comparison", _PATH)
assert _spec is not None and _spec.loader is not None
pc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pc)


def test_a100_overrides_move_a_paper_run_onto_a100() -> None:
    cfg = compose(["experiment=paper/has", *pc.a100_overrides("has")])
    assert cfg.cluster.gpu == "A100-80GB" and cfg.cluster.nodes == 600
    assert list(cfg.workload.mapping.zoo) == ["mobilenet_v2", "resnet50", "resnet152", "bert"]
    assert cfg.run == "has_a100"
    parva = compose(["experiment=paper/parvagpu", *pc.a100_overrides("parvagpu")])
    assert parva.cluster.gpu == "A100-80GB" and parva.autoscaler.kind == "parvagpu"
    assert OmegaConf.to_container(parva.workload.mapping.zoo) == list(cfg.workload.mapping.zoo)


def test_a100_table_ratios() -> None:
    s = {
        "has": {"cost_gpu_seconds": 100.0, "slo_violation_rate": 0.02},
        "kserve": {"cost_gpu_seconds": 500.0, "slo_violation_rate": 0.0},
        "parvagpu": {"cost_gpu_seconds": 200.0, "slo_violation_rate": 0.0},
    }
    rows = {line.split()[0]: line.split()[1:] for line in pc.a100_table(s)[1:]}
    assert rows["kserve"] == ["5.00", "0.00", "2.50", "-"]
    assert rows["has"] == ["1.00", "1.00", "0.50", "inf"]
