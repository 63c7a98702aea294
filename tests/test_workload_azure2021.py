"""Azure 2021 per-invocation traces: unsorted rows, windows, selection, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hasim.errors import InputError
from hasim.workload.azure2021 import Azure2021Config, azure2021_workload
from hasim.workload.base import Workload
from hasim.workload.mapping import MappingConfig

TRACE = """app,func,end_timestamp,duration
A,x,10.5,0.5
B,y,3.0,1.0
A,x,2.25,0.25
A,z,7.0,6.0
B,y,20.0,2.0
A,x,4.0,1.0
"""


def _build(path: Path, seed: int = 0, **kw: object) -> Workload:
    return azure2021_workload(Azure2021Config(path=str(path), **kw), np.random.default_rng(seed))


def _write(tmp_path: Path, text: str = TRACE) -> Path:
    p = tmp_path / "inv2021.csv"
    p.write_text(text)
    return p


def test_unsorted_rows_give_sorted_arrivals(tmp_path: Path) -> None:
    w = _build(_write(tmp_path))
    assert [f.name for f in w.functions] == ["A:x", "B:y", "A:z"]
    np.testing.assert_allclose(w.arrivals["A:x"], [2.0, 3.0, 10.0])
    np.testing.assert_allclose(w.arrivals["B:y"], [2.0, 18.0])
    np.testing.assert_allclose(w.arrivals["A:z"], [1.0])
    assert w.duration_s == 19.0  # floor(18) + 1
    assert w.total_requests == 6


def test_window_and_time_scale(tmp_path: Path) -> None:
    w = _build(_write(tmp_path), start=2.5, end=12.0, time_scale=2.0)
    assert w.duration_s == pytest.approx(4.75)
    np.testing.assert_allclose(w.arrivals["A:x"], [0.25, 3.75])
    assert w.arrivals["B:y"].size == 0
    assert w.meta["dropped_outside_window"] == 4
    with pytest.raises(InputError, match="workload.end"):
        _build(_write(tmp_path), start=5.0, end=4.0)


def test_top_selection_and_duration_rule(tmp_path: Path) -> None:
    p = _write(tmp_path)
    w = _build(p, select="top", n=2)
    assert [f.name for f in w.functions] == ["A:x", "B:y"]
    w = _build(p, mapping=MappingConfig(zoo=["fast", "mid", "slow"]))
    # Mean durations: A:x 0.58 s, B:y 1.5 s, A:z 6 s -> fastest to slowest.
    assert [f.model for f in w.functions] == ["fast", "mid", "slow"]


def test_table_mapping_uses_app_func_names(tmp_path: Path) -> None:
    p = _write(tmp_path)
    m = MappingConfig(kind="table", table={"A:x": "bert", "B:y": "resnet50", "A:z": "resnet50"})
    w = _build(p, mapping=m)
    assert [f.model for f in w.functions] == ["bert", "resnet50", "resnet50"]
    m = MappingConfig(kind="table", table={"x": "bert"})
    with pytest.raises(InputError, match="names function 'x'"):
        _build(p, mapping=m)


@pytest.mark.parametrize(
    ("old", "new", "where", "problem"),
    [
        ("A,z,7.0,6.0", "A,z,7.0,-6.0", ":5:duration:", "time (s) '-6.0' is negative"),
        ("A,z,7.0,6.0", "A,z,soon,6.0", ":5:end_timestamp:", "time (s) 'soon' is not a finite"),
        ("A,z,7.0,6.0", "A,z,7.0", ":5:", "row has 3 fields but the header has 4"),
        ("duration\n", "dur\n", ":1:", "missing column(s) duration"),
    ],
)
def test_errors(tmp_path: Path, old: str, new: str, where: str, problem: str) -> None:
    p = _write(tmp_path, TRACE.replace(old, new))
    with pytest.raises(InputError) as err:
        _build(p)
    assert str(err.value).startswith(f"{p}{where} {problem}")
    assert "(expected " in str(err.value)


def test_empty_trace(tmp_path: Path) -> None:
    p = _write(tmp_path, "app,func,end_timestamp,duration\n")
    with pytest.raises(InputError, match="no function selected"):
        _build(p)
