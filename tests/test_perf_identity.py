"""Bit-identity of the packaged latency models against a committed fixture.

``tests/data/perf_identity.json`` holds, computed by the code before the perf/ split
(issue 15 part 4):

* ``predictor``: (model, batch, SM %, quota fraction) -> mean latency (ms) of the packaged
  predictor ``hasim/perf/data/rapp_v100.*`` for a few hundred cells;
* ``kernels``: (model, batch, SM %) -> sha256 of the kernel durations (s, float64) of the
  packaged operator model ``hasim/perf/data/operators_v100.json.gz``, plus one fallback
  sequence scaled to a given total;
* ``rapp_table``: sha256 of the RaPP table as loaded (axes, values, measured masks, BERT
  ratios) from the data dir (skipped when the measurements are absent).

Regenerate (only on purpose, when a change of numbers is intended)::

    PYTHONPATH=. python tests/test_perf_identity.py --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parent / "data" / "perf_identity.json"
COMMAND = "PYTHONPATH=. python tests/test_perf_identity.py --write"


def predictor_cells(models: list[str], n: int = 300, seed: int = 15) -> list[list[Any]]:
    """``n`` cells [model, batch, SM %, quota fraction]: grid points and off-grid ones."""
    rng = np.random.default_rng(seed)
    cells: list[list[Any]] = []
    for k in range(n):
        m = models[k % len(models)]
        b = int(rng.integers(1, 21))  # some above the dense grid's 16
        s = (
            float(rng.choice([5.0, 10.0, 30.0, 60.0, 100.0]))
            if k % 3 == 0
            else float(np.round(rng.uniform(0.5, 100.0), 3))
        )
        q = (
            float(rng.choice([0.2, 0.5, 1.0]))
            if k % 4 == 0
            else float(np.round(rng.uniform(0.03, 1.0), 4))
        )
        cells.append([m, b, s, q])
    return cells


def predictor_values(cells: list[list[Any]]) -> list[float]:
    """Predictions (ms) of the packaged artifact, one vectorised call."""
    from hasim.perf.predictor import LatencyPredictor
    from hasim.perf.rapp import PACKAGED

    pred = LatencyPredictor.load(PACKAGED)
    m, b, s, q = (np.asarray([c[i] for c in cells]) for i in range(4))
    return [float(v) for v in pred.predict(m.astype(object), b, s, q)]


def predictor_models() -> list[str]:
    """Models with a profile in the packaged artifact, sorted."""
    from hasim.perf.predictor import LatencyPredictor
    from hasim.perf.rapp import PACKAGED

    return LatencyPredictor.load(PACKAGED).models


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()


def kernel_cells() -> list[list[Any]]:
    """[model, batch, SM %] for a few known models, on and off the model's grid."""
    from hasim.perf.operators import load_operator_model

    km = load_operator_model()
    models = km.models[::7]
    return [[m, b, s] for m in models for b in (1, 3, 8) for s in (5.0, 17.5, 60.0, 100.0)]


def kernel_hashes(cells: list[list[Any]]) -> dict[str, Any]:
    """sha256 of each cell's kernel durations, and of a fallback sequence."""
    from hasim.perf.operators import load_operator_model

    km = load_operator_model()
    out = {f"{m}|{b}|{s}": _sha(km.kernels_s(m, b, s)) for m, b, s in cells}
    out["<fallback>|4|50.0|0.02"] = _sha(km.kernels_s("no-such-model", 4, 50.0, 0.02))
    return out


def rapp_table_hash() -> str:
    """sha256 over the loaded RaPP table (without the on-disk cache)."""
    from hasim.perf.rapp_table import load_rapp_tables

    t = load_rapp_tables(cache=False)
    h = hashlib.sha256()
    h.update(json.dumps([t.models, t.rapp_models, sorted(t.bert_ratios.items())]).encode())
    for m in t.models:
        g = t.grids[m]
        h.update(json.dumps([m, g.sm, g.batch, g.quota]).encode())
        h.update(_sha(g.values).encode())
        h.update(np.ascontiguousarray(g.measured, dtype=bool).tobytes())
    return h.hexdigest()


def _fixture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_predictor_bit_identical() -> None:
    rows = _fixture()["predictor"]
    got = predictor_values([r[:4] for r in rows])
    assert got == [r[4] for r in rows]


def test_kernel_model_bit_identical() -> None:
    fx = _fixture()["kernels"]
    assert kernel_hashes(fx["cells"]) == fx["sha256"]


def test_rapp_table_bit_identical() -> None:
    from hasim.errors import MissingDataError

    try:
        got = rapp_table_hash()
    except MissingDataError:
        pytest.skip("RaPP measurements absent (hasim data fetch)")
    assert got == _fixture()["rapp_table_sha256"]


def write() -> None:
    """Regenerate the fixture with the code as it is now."""
    cells = predictor_cells(predictor_models())
    kcells = kernel_cells()
    rows = [[*c, v] for c, v in zip(cells, predictor_values(cells), strict=True)]
    kernels = json.dumps({"cells": kcells, "sha256": kernel_hashes(kcells)}, indent=1)
    text = (
        "{\n"
        f'"_generated_by": {json.dumps(COMMAND)},\n'
        '"predictor": [\n' + ",\n".join(json.dumps(r) for r in rows) + "\n],\n"
        f'"kernels": {kernels},\n'
        f'"rapp_table_sha256": {json.dumps(rapp_table_hash())}\n'
        "}\n"
    )
    json.loads(text)
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: " + COMMAND)
    write()
