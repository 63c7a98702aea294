"""Azure 2019 per-minute count files: both layouts, spreading modes, selection, errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hasim.errors import InputError, MissingDataError
from hasim.workload.azure2019 import Azure2019Config, azure2019_workload, counts_to_arrivals
from hasim.workload.base import Workload
from hasim.workload.mapping import MappingConfig

ORIGINAL = """HashOwner,HashApp,HashFunction,Trigger,480,481,482,483
o1,a1,f1,http,3,0,5,2
o1,a1,f2,timer,1,1,1,1
o2,a2,f3,queue,10,20,30,40
"""

LEGACY = """HashFunction,HashOwner,HashApp,minute_1,minute_2,minute_3
g1,g1,g1,4,0,2

g2,g2,g2,0,7,1
"""


def _write(tmp_path: Path, text: str, name: str = "inv.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _build(path: Path, seed: int = 0, **kw: object) -> Workload:
    return azure2019_workload(Azure2019Config(path=str(path), **kw), np.random.default_rng(seed))


def _per_minute(a: np.ndarray, minutes: int, scale: float = 1.0) -> list[int]:
    return np.bincount((a * scale // 60).astype(int), minlength=minutes).tolist()


@pytest.mark.parametrize("mode", ["uniform", "even"])
def test_original_layout_exact_counts(tmp_path: Path, mode: str) -> None:
    w = _build(_write(tmp_path, ORIGINAL), within_minute=mode)
    assert [f.name for f in w.functions] == ["f1", "f2", "f3"]
    assert [f.trigger for f in w.functions] == ["http", "timer", "queue"]
    assert w.duration_s == 240.0
    assert w.meta["first_minute"] == 480
    assert _per_minute(w.arrivals["f1"], 4) == [3, 0, 5, 2]
    assert _per_minute(w.arrivals["f3"], 4) == [10, 20, 30, 40]
    assert w.total_requests == 10 + 4 + 100


def test_even_positions(tmp_path: Path) -> None:
    w = _build(_write(tmp_path, ORIGINAL), within_minute="even")
    np.testing.assert_allclose(w.arrivals["f1"][:3], [10.0, 30.0, 50.0])
    np.testing.assert_allclose(w.arrivals["f2"], [30.0, 90.0, 150.0, 210.0])


def test_uniform_is_random_but_seeded(tmp_path: Path) -> None:
    p = _write(tmp_path, ORIGINAL)
    a = _build(p, seed=1).arrivals["f3"]
    b = _build(p, seed=1).arrivals["f3"]
    c = _build(p, seed=2).arrivals["f3"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.diff(a) >= 0)


def test_poisson_mode_counts_vary_with_right_mean(tmp_path: Path) -> None:
    text = "HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f,http,1000,3000\n"
    p = _write(tmp_path, text)
    totals = [_build(p, seed=s, within_minute="poisson").total_requests for s in range(20)]
    assert len(set(totals)) > 1
    assert abs(np.mean(totals) - 4000) < 5 * np.sqrt(4000 / 20)
    per_minute = _per_minute(_build(p, seed=3, within_minute="poisson").arrivals["f"], 2)
    assert abs(per_minute[0] - 1000) < 5 * np.sqrt(1000)
    assert abs(per_minute[1] - 3000) < 5 * np.sqrt(3000)


def test_legacy_layout(tmp_path: Path) -> None:
    w = _build(_write(tmp_path, LEGACY), within_minute="uniform")
    assert [f.name for f in w.functions] == ["g1", "g2"]
    assert all(f.trigger is None for f in w.functions)
    assert w.duration_s == 180.0
    assert w.meta["first_minute"] == 1
    assert _per_minute(w.arrivals["g1"], 3) == [4, 0, 2]
    assert _per_minute(w.arrivals["g2"], 3) == [0, 7, 1]


def test_time_scale_compresses(tmp_path: Path) -> None:
    p = _write(tmp_path, ORIGINAL)
    a = _build(p, seed=5)
    b = _build(p, seed=5, time_scale=4.0)
    assert b.duration_s == 60.0
    for name in a.arrivals:
        np.testing.assert_allclose(b.arrivals[name] * 4.0, a.arrivals[name])
        assert b.arrivals[name].max() < 60.0


def test_window(tmp_path: Path) -> None:
    w = _build(_write(tmp_path, ORIGINAL), start_minute=1, end_minute=3, within_minute="even")
    assert w.duration_s == 120.0
    assert w.meta["first_minute"] == 481
    assert _per_minute(w.arrivals["f1"], 2) == [0, 5]
    assert _per_minute(w.arrivals["f3"], 2) == [20, 30]
    with pytest.raises(InputError, match="start_minute") as err:
        _build(_write(tmp_path, ORIGINAL), start_minute=2, end_minute=9)
    assert "first minute column, 480" in str(err.value)


def test_top_random_and_trigger_selection(tmp_path: Path) -> None:
    p = _write(tmp_path, ORIGINAL)
    assert [f.name for f in _build(p, select="top", n=2).functions] == ["f1", "f3"]
    r1 = [f.name for f in _build(p, seed=8, select="random", n=2).functions]
    r2 = [f.name for f in _build(p, seed=8, select="random", n=2).functions]
    assert r1 == r2 and len(r1) == 2
    w = _build(p, select="trigger", triggers=["http", "Timer"])
    assert [f.name for f in w.functions] == ["f1", "f2"]
    w = _build(p, select="top", n=1, triggers=["http", "timer"])
    assert [f.name for f in w.functions] == ["f1"]
    with pytest.raises(InputError, match="workload.n") as err:
        _build(p, select="top", n=4)
    assert "between 1 and 3" in str(err.value)


def test_unknown_trigger_and_missing_trigger_column(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="triggers") as err:
        _build(_write(tmp_path, ORIGINAL), select="trigger", triggers=["webhook"])
    assert "http, timer" in str(err.value)
    p = _write(tmp_path, LEGACY, "legacy.csv")
    with pytest.raises(InputError, match="missing column\\(s\\) Trigger") as err:
        _build(p, triggers=["http"])
    assert str(p) in str(err.value)


def test_empty_selection(tmp_path: Path) -> None:
    p = _write(tmp_path, ORIGINAL)
    with pytest.raises(InputError, match="no function selected") as err:
        _build(p, select="trigger", triggers=["storage"])
    assert str(p) in str(err.value) and "expected at least one function" in str(err.value)


def test_duplicate_function_hashes_get_app_prefix(tmp_path: Path) -> None:
    text = "HashOwner,HashApp,HashFunction,Trigger,1\no,a1,f,http,1\no,a2,f,http,2\n"
    w = _build(_write(tmp_path, text))
    assert [f.name for f in w.functions] == ["a1:f", "a2:f"]
    text += "o,a2,f,http,3\n"
    with pytest.raises(InputError, match="repeats line 3") as err:
        _build(_write(tmp_path, text))
    assert ":4:HashFunction:" in str(err.value)


@pytest.mark.parametrize(
    ("row", "where", "problem"),
    [
        ("o2,a2,f3,queue,10,-2,30,40", ":4:481:", "invocation count '-2' is negative"),
        ("o2,a2,f3,queue,10,2.5,30,40", ":4:481:", "invocation count '2.5' is not an integer"),
        ("o2,a2,f3,queue,10,20,abc,40", ":4:482:", "invocation count 'abc' is not a finite"),
        ("o2,a2,f3,queue,10,20,30,", ":4:483:", "empty invocation count"),
    ],
)
def test_bad_counts(tmp_path: Path, row: str, where: str, problem: str) -> None:
    lines = ORIGINAL.splitlines()
    lines[3] = row
    p = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        _build(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}{where} {problem}")
    assert "(expected a non-negative integer invocation count)" in msg


def test_ragged_row_names_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path, LEGACY.replace("g2,g2,g2,0,7,1", "g2,g2,g2,0,7"))
    with pytest.raises(InputError) as err:
        _build(p)
    assert str(err.value) == (
        f"{p}:4: row has 5 fields but the header has 6 (expected 6 comma-separated fields)"
    )


def test_missing_and_unexpected_columns(tmp_path: Path) -> None:
    p = _write(tmp_path, ORIGINAL.replace("HashFunction", "Function"))
    with pytest.raises(InputError, match="missing column\\(s\\) HashFunction") as err:
        _build(p)
    assert str(err.value).startswith(f"{p}:1:") and "minute_1..minute_1440" in str(err.value)
    p = _write(tmp_path, ORIGINAL.replace("Trigger", "Kind"))
    with pytest.raises(InputError, match="unexpected column 'Kind'"):
        _build(p)
    p = _write(tmp_path, ORIGINAL.replace(",482,", ",499,"))
    with pytest.raises(InputError, match="does not follow '481'"):
        _build(p)


def test_bad_options(tmp_path: Path) -> None:
    p = _write(tmp_path, ORIGINAL)
    with pytest.raises(InputError, match="within_minute"):
        _build(p, within_minute="spread")
    with pytest.raises(InputError, match="time_scale"):
        _build(p, time_scale=0.0)
    with pytest.raises(MissingDataError, match="hasim data fetch"):
        _build(tmp_path / "absent.csv")


def test_mapping_by_duration_and_invariance(tmp_path: Path) -> None:
    p = _write(tmp_path, ORIGINAL)
    d = _write(
        tmp_path,
        "HashOwner,HashApp,HashFunction,Average,Count\no1,a1,f1,900,1\no1,a1,f2,50,1\n"
        "o2,a2,f3,400,1\n",
        "dur.csv",
    )
    zoo = ["fast", "mid", "slow"]
    w = _build(p, durations_path=str(d), mapping=MappingConfig(zoo=zoo, slo={"fast": 0.1}))
    assert {f.name: f.model for f in w.functions} == {"f1": "slow", "f2": "fast", "f3": "mid"}
    assert {f.name: f.slo_s for f in w.functions} == {"f1": None, "f2": 0.1, "f3": None}
    # Without durations: busiest function -> fastest model.
    w2 = _build(p, mapping=MappingConfig(zoo=zoo))
    assert {f.name: f.model for f in w2.functions} == {"f3": "fast", "f1": "mid", "f2": "slow"}
    # The mapping does not shift the arrival stream.
    for name in w.arrivals:
        np.testing.assert_array_equal(w.arrivals[name], w2.arrivals[name])
    d.write_text("HashOwner,HashApp,HashFunction,Average\no1,a1,f1,900\n")
    with pytest.raises(InputError, match="'f2' has no row in the durations file"):
        _build(p, durations_path=str(d))


def test_default_zoo_split_is_balanced(tmp_path: Path) -> None:
    header = "HashOwner,HashApp,HashFunction,Trigger,1\n"
    rows = "".join(f"o,a,f{i},http,{i + 1}\n" for i in range(10))
    w = _build(_write(tmp_path, header + rows))
    assert sorted(Counter(f.model for f in w.functions).values()) == [2, 2, 3, 3]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 30), min_size=3, max_size=3), min_size=1, max_size=5),
    st.sampled_from(["uniform", "even"]),
    st.integers(0, 2**32 - 1),
)
def test_counts_to_arrivals_exact(rows: list[list[int]], mode: str, seed: int) -> None:
    counts = np.array(rows, dtype=np.int64)
    out = counts_to_arrivals(counts, mode, np.random.default_rng(seed))
    for row, a in zip(rows, out, strict=True):
        assert np.all(np.diff(a) >= 0)
        assert _per_minute(a, 3) == row
