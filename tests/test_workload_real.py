"""The real shared traces (skipped when ../shared is absent)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from hasim.workload.azure2019 import Azure2019Config, azure2019_workload
from hasim.workload.azure2021 import Azure2021Config, azure2021_workload
from hasim.workload.stages import StagesConfig, stages_workload

SHARED = Path(__file__).resolve().parents[2] / "shared"
TRACES = SHARED / "traces"
pytestmark = pytest.mark.skipif(not TRACES.is_dir(), reason="../shared is not available")


def test_azure2019_500fn_slice() -> None:
    path = TRACES / "azure_functions_2019/invitro_500fn_minutes480-959/invocations.csv"
    durations = path.with_name("durations.csv")
    cfg = Azure2019Config(path=str(path), durations_path=str(durations))
    t0 = time.perf_counter()
    w = azure2019_workload(cfg, np.random.default_rng(0))
    elapsed = time.perf_counter() - t0
    assert w.total_requests == 3_037_902
    assert len(w.functions) == 500
    assert w.duration_s == 480 * 60.0
    assert elapsed < 5.0
    assert all(a.size == 0 or a[-1] < w.duration_s for a in w.arrivals.values())


def test_azure2019_legacy_1350fn() -> None:
    path = TRACES / "azure_functions_2019/invitro_legacy_1350fn_24h/1350_inv.csv"
    w = azure2019_workload(Azure2019Config(path=str(path)), np.random.default_rng(0))
    assert w.total_requests == 927_272
    assert len(w.functions) == 1350
    assert w.duration_s == 86400.0


def test_azure2021_fixture() -> None:
    path = TRACES / "azure_functions_2021/AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv"
    w = azure2021_workload(Azure2021Config(path=str(path)), np.random.default_rng(0))
    assert w.total_requests == 998
    assert len(w.functions) == 49


def test_rps_json_stages() -> None:
    path = SHARED / "validation/has-gpu-v100/client/rps.json"
    if not path.exists():
        pytest.skip("rps.json is not available")
    w = stages_workload(StagesConfig(path=str(path)), np.random.default_rng(0))
    assert w.total_requests == 2690
    assert w.duration_s == 250.0
    assert w.functions[0].name == "resnet50" and w.functions[0].model == "resnet50"
