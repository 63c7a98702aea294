"""The notebooks in notebooks/ run headless (nbclient, kernel python3) on tiny inputs and
draw their figures: no cell errors, at least one image/png display per notebook."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat not installed (pip install nbformat)")
nbclient = pytest.importorskip("nbclient", reason="nbclient not installed (pip install nbclient)")
pytest.importorskip("ipykernel", reason="ipykernel not installed (pip install ipykernel)")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 300


def execute(name: str, env: dict[str, str], tmp_path: Path, monkeypatch) -> nbformat.NotebookNode:
    """Run notebooks/<name> in a fresh python3 kernel with ``env`` set; return it executed."""
    from jupyter_client.kernelspec import NoSuchKernel

    for k in ("HASIM_NB_SWEEP", "HASIM_NB_RESULTS", "HASIM_NB_WORKLOAD", "HASIM_NB_SEED"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HASIM_RESULTS_DIR", str(tmp_path / "results"))  # nothing in the repo
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except NoSuchKernel as e:
        pytest.skip(f"no python3 Jupyter kernel ({e}); pip install ipykernel")
    return nb


def outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def images(nb) -> int:
    return sum(1 for o in outputs(nb)
               if o.get("output_type") == "display_data" and "image/png" in o.get("data", {}))


@pytest.mark.parametrize("name", ["cost_slo_curves.ipynb", "validation.ipynb"])
def test_notebook_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, name


def test_cost_slo_curves_runs_its_own_tiny_sweep(tmp_path, monkeypatch):
    nb = execute("cost_slo_curves.ipynb", {}, tmp_path, monkeypatch)
    assert not [o for o in outputs(nb) if o.get("output_type") == "error"]
    assert images(nb) >= 2  # frontier + latency percentiles


def test_cost_slo_curves_reads_a_given_sweep(tmp_path, monkeypatch):
    import hasim

    sweep = tmp_path / "sweep"
    for a in ("static", "timeshare"):
        for rate in (5, 10):
            hasim.run([f"autoscaler={a}", f"workload.rate={rate}", "workload.duration=20",
                       "sim.progress=false", "output.quiet=true", "output.plot=false",
                       f"output.dir={sweep}"])
    nb = execute("cost_slo_curves.ipynb", {"HASIM_NB_SWEEP": str(sweep)}, tmp_path, monkeypatch)
    assert images(nb) >= 2
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", ""))
                   for o in outputs(nb))
    assert "4 runs under" in text and "timeshare" in text


def test_validation_runs_on_fake_results(tmp_path, monkeypatch):
    nb = execute("validation.ipynb", {"HASIM_NB_RESULTS": "fake"}, tmp_path, monkeypatch)
    assert images(nb) >= 3  # latency bars, share bars, sim vs real scatter
    text = "".join(str(o.get("text", "")) for o in outputs(nb))
    assert "(FAKE)" in text and "orderings agreeing" in text


@pytest.mark.skipif(os.environ.get("HASIM_NB_REAL") != "1",
                    reason="set HASIM_NB_REAL=1 to run on the data dir's real runs")
def test_validation_runs_on_real_data(tmp_path, monkeypatch):
    nb = execute("validation.ipynb", {}, tmp_path, monkeypatch)
    assert images(nb) >= 3
