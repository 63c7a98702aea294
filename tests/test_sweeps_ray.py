"""Sweeps on Ray: ``hasim run -m hydra/launcher=ray_cluster`` (Hydra's Ray launcher) on a
one-node Ray cluster that the test starts on the loopback address, as a user would start
one with ``ray start``, and joins by address (HASIM_RAY_ADDRESS), as a cluster node and
through Ray Client (ray://).

The cluster runs in another directory than the one the sweep is submitted from, so the
runs must still land under the submitting directory; a restarted sweep reuses the
finished runs; a job that fails leaves no run directory and does not stop the others
(checked with the joblib launcher too). The Ray tests are skipped only where the ray
extra is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

RUNS = ["workload.duration=20,workload.rate=2", "workload.duration=20,workload.rate=4"]
# the test's Ray processes: no token file in ~/.ray, no usage report
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _session_pids(sid: int) -> list[int]:
    """Live processes of the session ``sid`` (the cluster's, started with setsid)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session
            pids.append(int(d.name))
    return pids


@pytest.fixture(scope="module")
def ray_address():
    """A one-node Ray cluster (2 CPUs, no dashboard, loopback only) for this module's
    tests, run by ``ray start --block`` in its own session and directory; stopped, with
    every process it started, at the end."""
    for module in ("ray", "hydra_plugins.hydra_ray_launcher"):
        pytest.importorskip(module, reason="needs the ray extra: pip install -e '.[ray]'")
    home = Path(tempfile.mkdtemp(prefix="hasim-ray-"))  # short: Ray's socket paths
    gcs, client, agent, dash = _free_ports(4)
    log = open(home / "ray-start.log", "w")  # closed at teardown
    cmd = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={gcs}", f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-port={dash}",
        "--include-dashboard=false", "--num-cpus=2", "--object-store-memory=100000000",
        f"--temp-dir={home / 'tmp'}", "--disable-usage-stats",
    ]  # fmt: skip
    (home / "cwd").mkdir()
    proc = subprocess.Popen(
        cmd, cwd=home / "cwd", stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, **RAY_ENV}, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in (home / "ray-start.log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start failed:\n" + (home / "ray-start.log").read_text()[-3000:])
            time.sleep(0.5)
        yield {
            "address": f"127.0.0.1:{gcs}",
            "client": f"ray://127.0.0.1:{client}",
            "cwd": home / "cwd",
        }
    finally:
        proc.send_signal(signal.SIGTERM)  # ray start --block stops what it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 15
        while _session_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = _session_pids(proc.pid)
        for pid in left:  # what did not stop by itself
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def _sweep(
    ray_address, cwd: Path, *overrides: str, via: str = "address", results_env: str | None = None
) -> subprocess.CompletedProcess:
    """``hasim run -m`` on the test's cluster from ``cwd``; the results root given by
    HASIM_RESULTS_DIR=``results_env`` (passed on to the workers) or else output.dir=out."""
    cmd = [
        sys.executable, "-m", "hasim.cli", "run", "-m", "hydra/launcher=ray_cluster",
        "workload.duration=20", "sim.progress=false", *overrides,
    ]  # fmt: skip
    env = {**os.environ, **RAY_ENV, "HASIM_RAY_ADDRESS": ray_address[via]}
    env.pop("HASIM_RESULTS_DIR", None)
    if results_env is None:
        cmd.append("output.dir=out")
    else:
        env["HASIM_RESULTS_DIR"] = results_env
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


RAY_CLIENT_FLAKE = "Starting Ray client server failed"
"""Ray Client's proxy could not start the per-client server process (Ray-internal)."""


def _runs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_a_failing_job_does_not_stop_a_joblib_sweep(tmp_path):
    # (first in the file: runs before the module's Ray cluster starts)
    cmd = [
        sys.executable, "-m", "hasim.cli", "run", "-m", "workload.rate=2,-1",
        "workload.duration=20", "sim.progress=false", "output.dir=out",
        "hydra.launcher.n_jobs=2",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "HASIM_RESULTS_DIR"}
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "workload.rate = -1.0 is invalid" in res.stderr
    assert _runs(tmp_path / "out" / "default") == [RUNS[0]]


def test_ray_sweep_lands_in_the_submitting_dir_and_a_restart_reuses_it(ray_address, tmp_path):
    first = _sweep(ray_address, tmp_path, "workload.rate=2,4", results_env="out")
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "out" / "default"
    assert _runs(out) == RUNS  # no hidden temporary folders either
    for run in RUNS:
        assert {"summary.json", "config.yaml", "requests.parquet"} <= set(_runs(out / run))
    assert not list(ray_address["cwd"].iterdir())  # nothing where the workers run
    stamps = {run: (out / run / "summary.json").stat().st_mtime_ns for run in RUNS}

    again = _sweep(ray_address, tmp_path, "workload.rate=2,4", results_env="out")
    assert again.returncode == 0, again.stderr[-3000:]
    assert {run: (out / run / "summary.json").stat().st_mtime_ns for run in RUNS} == stamps
    assert _runs(out) == RUNS


def test_a_failing_ray_job_leaves_no_run_and_the_others_finish(ray_address, tmp_path):
    # through Ray Client (ray://); workload.rate=-1 fails in its worker (a config error
    # found when the run is built)
    res = _sweep(ray_address, tmp_path, "workload.rate=2,-1", via="client")
    if RAY_CLIENT_FLAKE in res.stdout + res.stderr:  # Ray's own per-client server did not
        # start (seen once on a loaded 2-core machine; nothing of ours ran): try once more
        tmp_path = tmp_path / "again"
        tmp_path.mkdir()
        res = _sweep(ray_address, tmp_path, "workload.rate=2,-1", via="client")
    assert res.returncode != 0
    assert "workload.rate = -1.0 is invalid" in res.stdout + res.stderr
    assert _runs(tmp_path / "out" / "default") == [RUNS[0]]  # the failed job: nothing
    assert not list(ray_address["cwd"].iterdir())
