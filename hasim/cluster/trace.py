"""The kernel-level record of the token schedulers (what Perfetto exports show).

:class:`KernelTrace` collects what :class:`hasim.cluster.tokens.TokenScheduler` does, per
GPU and pod, with every time in seconds of simulated time:

* token holds: grant, release, nominal token length, the pod's SM partition and quota;
* kernel bursts: the kernels one token ran back to back (start time and durations);
  :meth:`KernelTrace.kernel_spans` expands them into one row per kernel;
* waits: from a pod's token request to its grant (only waits longer than zero);
* inferences: from :meth:`~hasim.cluster.tokens.TokenScheduler.run` to the last kernel's end;
* counters: the GPU's SM occupancy (percent) and a pod's window usage (fraction of the
  window) sampled at token grants and releases.

Its export to the Chrome / Perfetto trace format is :mod:`hasim.sim.perfetto`.
"""

from __future__ import annotations

import numpy as np


class KernelTrace:
    """A record of token grants/releases, kernel runs, waits and inferences (times in s).

    One trace may serve several GPUs' schedulers. Memory: one tuple per token, wait and
    inference, one array view per kernel burst (the kernels themselves are not copied).
    """

    def __init__(self) -> None:
        # gpu, pod, grant (s), release (s), nominal token length (s), sm_pct, quota
        self.tokens: list[tuple[int, int, float, float, float, float, float]] = []
        # gpu, pod, start (s), kernel durations (s) run back to back from start, or from
        # the given start times (s; launch-gated mode) when the last item is not None
        self.bursts: list[tuple[int, int, float, np.ndarray, np.ndarray | None]] = []
        # gpu, pod, request (s), grant (s)
        self.waits: list[tuple[int, int, float, float]] = []
        # gpu, pod, start (s), end (s), number of kernels
        self.inferences: list[tuple[int, int, float, float, int]] = []
        # gpu, time (s), SM percent held by token holders
        self.sm_counter: list[tuple[int, float, float]] = []
        # gpu, pod, time (s), window usage as a fraction of the window
        self.usage_counter: list[tuple[int, int, float, float]] = []

    # ---- recording (called by the scheduler) --------------------------------
    def token(
        self,
        gpu: int,
        pod: int,
        grant_s: float,
        release_s: float,
        length_s: float,
        sm_pct: float,
        quota: float,
    ) -> None:
        """A token held from ``grant_s`` to ``release_s`` (nominal length ``length_s``)."""
        self.tokens.append((gpu, pod, grant_s, release_s, length_s, sm_pct, quota))

    def burst(
        self,
        gpu: int,
        pod: int,
        start_s: float,
        durations_s: np.ndarray,
        starts_s: np.ndarray | None = None,
    ) -> None:
        """Kernels of durations ``durations_s`` (s) granted a token at ``start_s``: they run
        back to back from ``start_s``, or from ``starts_s`` (s) when given."""
        self.bursts.append((gpu, pod, start_s, durations_s, starts_s))

    @staticmethod
    def _starts(t0: float, d: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
        if starts is not None:
            return np.asarray(starts, dtype=float)
        s = np.empty_like(d)
        s[:1] = t0
        s[1:] = t0 + np.cumsum(d)[:-1]
        return s

    def wait(self, gpu: int, pod: int, request_s: float, grant_s: float) -> None:
        """A pod waited for a token from ``request_s`` to ``grant_s``."""
        if grant_s > request_s:
            self.waits.append((gpu, pod, request_s, grant_s))

    def inference(self, gpu: int, pod: int, start_s: float, end_s: float, kernels: int) -> None:
        """One inference (``kernels`` kernels) ran from ``start_s`` to ``end_s``."""
        self.inferences.append((gpu, pod, start_s, end_s, kernels))

    def sm(self, gpu: int, t_s: float, sm_pct: float) -> None:
        """The GPU's SM occupancy became ``sm_pct`` percent at ``t_s``."""
        self.sm_counter.append((gpu, t_s, sm_pct))

    def usage(self, gpu: int, pod: int, t_s: float, fraction: float) -> None:
        """The pod's window usage was ``fraction`` of the window at ``t_s``."""
        self.usage_counter.append((gpu, pod, t_s, fraction))

    # ---- views -------------------------------------------------------------
    def kernel_spans(self) -> np.ndarray:
        """Every kernel as a row ``(gpu, pod, start_s, end_s)``, float array of shape (n, 4)."""
        parts = []
        for gpu, pod, t0, d, st in self.bursts:
            d = np.asarray(d, dtype=float)
            starts = self._starts(t0, d, st)
            ends = starts + d
            block = np.empty((d.size, 4))
            block[:, 0] = gpu
            block[:, 1] = pod
            block[:, 2] = starts
            block[:, 3] = ends
            parts.append(block)
        if not parts:
            return np.empty((0, 4))
        return np.concatenate(parts)

    def token_spans(self) -> np.ndarray:
        """Every token hold as ``(gpu, pod, grant_s, release_s, length_s, sm_pct, quota)``."""
        if not self.tokens:
            return np.empty((0, 7))
        return np.asarray(self.tokens, dtype=float)

    def busy_intervals(self, gpu: int, pod: int) -> np.ndarray:
        """GPU-busy intervals ``(start_s, end_s)`` of one pod (one per kernel), in time order."""
        k = self.kernel_spans()
        k = k[(k[:, 0] == gpu) & (k[:, 1] == pod)]
        return k[np.argsort(k[:, 2], kind="stable"), 2:4]
