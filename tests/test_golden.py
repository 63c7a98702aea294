"""Golden results (tests/golden): every registered policy on fixed scenarios must
reproduce the committed summaries and request-table hashes exactly.

A change that alters results on purpose regenerates them in the same commit
(``python -m tests.golden``) and says why in its message. Scenarios that need the
traces or the validation data are skipped when ``hasim data fetch`` has not run
(.ci/run fetches from ../shared)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.golden.scenarios import needs_traces, needs_validation, record, scenarios

GOLDENS = json.loads((Path(__file__).parent / "golden" / "goldens.json").read_text())


def _have(relative: str, traces: bool) -> bool:
    from hasim.data.locate import data_path, trace_path

    try:
        (trace_path if traces else data_path)(relative)
    except Exception:
        return False
    return True


HAVE_TRACES = _have("azure_functions_2019/invitro_500fn_minutes480-959/invocations.csv", True)
HAVE_RPS = _have("validation/has-gpu-v100/client/rps.json", False)


def test_every_scenario_has_a_golden_record():
    assert sorted(GOLDENS) == sorted(scenarios())
    for name, ov in scenarios().items():
        assert GOLDENS[name]["overrides"] == ov, name


@pytest.mark.parametrize("name", sorted(scenarios()))
def test_golden(name: str) -> None:
    if needs_traces(name) and not HAVE_TRACES:
        pytest.skip("needs the Azure traces (hasim data fetch)")
    if needs_validation(name) and not HAVE_RPS:
        pytest.skip("needs the validation data (hasim data fetch)")
    want = GOLDENS[name]
    got = record(want["overrides"])
    diffs = []
    for key, value in got.items():
        ref = want[key]
        same = ref == value or (
            isinstance(ref, float)
            and isinstance(value, float)
            and math.isnan(ref)
            and math.isnan(value)
        )
        if not same:
            diffs.append(f"{key}: golden {ref!r}, now {value!r}")
    assert not diffs, f"{name} differs from its golden record:\n  " + "\n  ".join(diffs)
