"""SM partitions: MPS (one client process per partition), CUDA green contexts, CPU threads.

* ``mps``: the parent starts a private MPS control daemon (``nvidia-cuda-mps-control
  -d`` with its own ``CUDA_MPS_PIPE_DIRECTORY``/``CUDA_MPS_LOG_DIRECTORY``), checks that
  a client can connect (a probe process), runs one worker process per SM level with
  ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=<sm>`` (RaPP's way), and stops the daemon
  (``echo quit | nvidia-cuda-mps-control``) at the end, on errors and on signals.
* ``green``: where no MPS daemon can run (no binary, no permission, a sandbox), each
  worker carves its partition with ``torch.cuda.green_contexts`` (torch >= 2.10,
  CUDA 12.8+ driver): ``num_sms`` rounded to the architecture's granularity (below),
  so the effective SM % is recorded too.
* ``cpu-threads``: on CPU, threads stand in for SMs: ``torch.set_num_threads(max(1,
  round(cores * sm / 100)))`` in a worker process per partition. A coarse stand-in
  (2 cores give two distinct levels), labelled as such in every row.
* ``none``: a GPU with neither: only SM 100 % can be measured (other levels refused).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

MPS_CONTROL = "nvidia-cuda-mps-control"
METHODS = ("mps", "green", "cpu-threads", "none")


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_threads(sm_pct: float, cores: int | None = None) -> int:
    """Threads standing in for ``sm_pct`` % of the SMs: round(cores * sm / 100), >= 1."""
    n = cores or cpu_count()
    return max(1, min(n, round(n * sm_pct / 100.0)))


def green_granularity(major: int) -> tuple[int, int]:
    """(minimum SMs, multiple) of a green-context SM partition for compute capability
    ``major`` (CUDA driver API docs, cuDevSmResourceSplitByCount)."""
    if major >= 9:
        return 8, 8
    if major == 8:
        return 4, 2
    if major == 7:
        return 2, 2
    return 1, 1


def green_sm_count(sm_pct: float, total_sms: int, major: int) -> int:
    """The SM count to request for ``sm_pct`` %: nearest allowed multiple, clamped."""
    lo, mult = green_granularity(major)
    want = total_sms * sm_pct / 100.0
    n = int(round(want / mult)) * mult
    top = (total_sms // mult) * mult
    return max(lo, min(n, top))


@dataclass
class MPSDaemon:
    """A private MPS control daemon (pipe and log directories of its own)."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hasim-mps-")))
    started: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            "CUDA_MPS_PIPE_DIRECTORY": str(self.root / "pipe"),
            "CUDA_MPS_LOG_DIRECTORY": str(self.root / "log"),
        }

    @staticmethod
    def available() -> bool:
        return shutil.which(MPS_CONTROL) is not None

    def _control(self, command: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MPS_CONTROL],
            input=command + "\n",
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
        )

    def start(self) -> bool:
        """Start the daemon; False (reason in ``log``) when it cannot run."""
        if not self.available():
            self.log.append(f"{MPS_CONTROL} not on the PATH")
            return False
        for d in ("pipe", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        try:
            r = subprocess.run(
                [MPS_CONTROL, "-d"],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, **self.env},
            )
        except (OSError, subprocess.SubprocessError) as e:
            self.log.append(f"{MPS_CONTROL} -d: {e}")
            return False
        if r.returncode != 0:
            self.log.append(f"{MPS_CONTROL} -d exited {r.returncode}: {r.stderr.strip()}")
            return False
        self.started = True
        self.log.append(
            f"MPS control daemon started (pipe dir {self.env['CUDA_MPS_PIPE_DIRECTORY']})"
        )
        return True

    def servers(self) -> str:
        """``get_server_list`` output ('' when none or no daemon)."""
        try:
            r = self._control("get_server_list")
        except (OSError, subprocess.SubprocessError):
            return ""
        return r.stdout.strip() if r.returncode == 0 else ""

    def server_log(self) -> str:
        p = self.root / "log" / "server.log"
        try:
            return p.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if not self.started:
            return
        try:
            self._control("quit", timeout=30)
            self.log.append("MPS control daemon stopped")
        except (OSError, subprocess.SubprocessError) as e:
            self.log.append(f"stopping MPS: {e}")
        self.started = False
        shutil.rmtree(self.root, ignore_errors=True)
