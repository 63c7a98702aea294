"""A run loads the runtime half of hasim.perf only: no training, evaluation, feature building."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
from hasim.perf.registry import build_latency_model
from hasim.perf import default_kernel_model
m = build_latency_model({"kind": "rapp", "cache": False})
m.mean_latency_s("resnet50", 2, 50.0, 0.5)
default_kernel_model().kernels_s("resnet50", 1, 50.0)
print(json.dumps(sorted(k for k in sys.modules if k.startswith("hasim"))))
"""


def test_rapp_run_does_not_import_offline_modules() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    mods = json.loads(out.stdout.strip().splitlines()[-1])
    assert "hasim.perf.predictor" in mods and "hasim.perf.operators" in mods
    offline = [m for m in mods if m.startswith("hasim.perf.offline")]
    offline += [
        m for m in mods if m in ("hasim.perf.evaluate", "hasim.perf.cli", "hasim.perf.fit_compact")
    ]
    assert not offline, f"a run imported offline modules: {offline}"
