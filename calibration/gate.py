"""Time quotas: the token arithmetic, a Python-level gate, and the C hook's control API.

The rule (SYSTEMS.md section 1, reduced to one pod per GPU): in a window of ``W`` ms a
pod holds a token of ``q * W`` ms; it may launch work while ``elapsed + margin <= token``
(``margin`` = 1 ms) and otherwise waits. The wait ends when the pod's GPU time within
the sliding window drops below its limit: with the token taken at ``t0`` and the work
running ``overuse`` ms past the token's end (a kernel that outlives its token is
measured and charged), the next token comes at ``t0 + W + overuse``. The first launch
after a token is granted always goes through, so a token shorter than the margin
still makes progress.

**Simplification.** HAS-GPU's scheduler is per GPU and arbitrates between pods (the
candidate order, the SM-fit rule, several pods holding tokens at once). Calibration
runs one pod on the GPU, so the token holder is always this process and the scheduler
reduces to this local, per-process rule; nothing is exchanged between processes. The
same arithmetic is implemented in C in ``calibration/hook/hasim_hook.c`` (the
``LD_PRELOAD`` gate at kernel launches) and here in :class:`TokenGate`, which
:func:`attach` calls from forward pre-hooks on every module of a model (the fallback on
a GPU, and the CPU path, where the "kernels" are the modules' forward calls).

"When did the work end?" (needed for ``overuse``): on CPU the modules run
synchronously and a forward post-hook records the end of the last one; on a GPU the
gate synchronizes when it finds its token expired: if that wait was real (the GPU was
still busy) the work ended when the synchronization returned, else at the end of the
last host-side call (a lower bound).
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MARGIN_MS = 1.0
"""A launch needs ``elapsed + MARGIN_MS <= token`` (the HAS/FaST hook's rule)."""
BUSY_EPS_S = 50e-6
"""A synchronization longer than this means the device was still busy."""


@dataclass
class GateStats:
    checks: int = 0
    tokens: int = 0
    waits: int = 0
    wait_s: float = 0.0
    overuse_s: float = 0.0
    syncs: int = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "checks": self.checks,
            "tokens": self.tokens,
            "waits": self.waits,
            "wait_ms": round(self.wait_s * 1e3, 3),
            "overuse_ms": round(self.overuse_s * 1e3, 3),
            "syncs": self.syncs,
        }


@dataclass
class TokenGate:
    """The token rule for one process. ``quota`` in (0, 1], ``window_ms`` > 0.

    ``check()`` is called before each unit of work (a module's forward, a kernel);
    ``done()`` after it (optional: marks when work last ended). ``sync`` (optional)
    blocks until the device is idle (``torch.cuda.synchronize``); ``clock``/``sleep``
    are injectable for tests.
    """

    quota: float = 1.0
    window_ms: float = 40.0
    margin_ms: float = MARGIN_MS
    sync: Callable[[], Any] | None = None
    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], Any] = time.sleep
    stats: GateStats = field(default_factory=GateStats)
    _held: bool = False
    _t0: float = 0.0
    _next: float = float("-inf")
    _last_end: float = float("-inf")

    def __post_init__(self) -> None:
        self.set_quota(self.quota, self.window_ms)

    # ------------------------------------------------------------------ control

    def set_quota(self, quota: float, window_ms: float | None = None) -> None:
        """Change the quota (and window) at run time, as vertical scaling does."""
        if not 0.0 < quota <= 1.0:
            raise ValueError(f"quota {quota!r}: expected a fraction in (0, 1]")
        w = self.window_ms if window_ms is None else window_ms
        if not w > 0:
            raise ValueError(f"window {w!r} ms: expected > 0")
        self.quota, self.window_ms = float(quota), float(w)

    def reset(self) -> None:
        """Drop the token and the wait (a fresh pod); statistics are kept."""
        self._held = False
        self._next = float("-inf")
        self._last_end = float("-inf")

    @property
    def token_s(self) -> float:
        return self.quota * self.window_ms / 1e3

    # ------------------------------------------------------------------ the rule

    def _busy_end(self, now: float) -> float:
        """When the work of the expired token ended (see the module docstring)."""
        if self.sync is None:
            return self._last_end
        t_a = self.clock()
        self.sync()
        t_b = self.clock()
        self.stats.syncs += 1
        return t_b if t_b - t_a > BUSY_EPS_S else min(self._last_end, now)

    def check(self) -> float:
        """Block until this process may launch; returns the seconds waited."""
        st = self.stats
        st.checks += 1
        if self.quota >= 1.0:
            return 0.0
        now = self.clock()
        if self._held:
            if (now - self._t0) + self.margin_ms / 1e3 <= self.token_s:
                return 0.0
            token_end = self._t0 + self.token_s
            overuse = max(0.0, self._busy_end(now) - token_end)
            st.overuse_s += overuse
            self._next = self._t0 + self.window_ms / 1e3 + overuse
            self._held = False
            now = self.clock()
        waited = 0.0
        if now < self._next:
            self.sleep(self._next - now)
            after = self.clock()
            waited = after - now
            st.waits += 1
            st.wait_s += waited
            now = after
        self._t0 = now
        self._held = True
        st.tokens += 1
        return waited

    def done(self) -> None:
        """Mark the end of a unit of work (CPU: its real end; GPU: its launch)."""
        self._last_end = self.clock()


# --------------------------------------------------------------------------- module hooks


def attach(model: Any, gate: TokenGate) -> list[Any]:
    """Gate every module's forward with ``gate`` (pre-hook: check; post-hook: done).

    Returns the hook handles (``h.remove()`` detaches). Work done outside modules
    (functional ops in a ``forward``) runs ungated: a small, documented error.
    """

    def pre(_m: Any, _args: Any) -> None:  # must return None: a value replaces the input
        gate.check()

    def post(_m: Any, _args: Any, _out: Any) -> None:
        gate.done()

    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    return handles


# --------------------------------------------------------------------------- the C hook

HOOK_ENV = "HASIM_HOOK_PATH"
HOOK_STATS = (
    "launch_driver",
    "launch_procaddr",
    "launch_runtime",
    "tokens",
    "waits",
    "wait_ms",
    "overuse_ms",
    "syncs",
    "quota",
    "window_ms",
    "procaddr_lookups",
    "dlsym_redirects",
)
"""The order of the values ``hasim_hook_get_stats`` writes."""


class HookControl:
    """The preloaded ``libhasim_hook.so`` of this process, through ctypes.

    :meth:`loaded` is None when the library is not preloaded into this process.
    """

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        lib.hasim_hook_set_quota.argtypes = [ctypes.c_double, ctypes.c_double]
        lib.hasim_hook_set_quota.restype = None
        lib.hasim_hook_get_stats.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_int]
        lib.hasim_hook_get_stats.restype = ctypes.c_int
        lib.hasim_hook_reset.argtypes = []
        lib.hasim_hook_reset.restype = None
        lib.hasim_hook_version.argtypes = []
        lib.hasim_hook_version.restype = ctypes.c_int

    @classmethod
    def loaded(cls, path: str | None = None) -> HookControl | None:
        """The hook if it is preloaded (``LD_PRELOAD``) into this process."""
        path = path or os.environ.get(HOOK_ENV)
        if not path or path not in os.environ.get("LD_PRELOAD", ""):
            return None
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_LAZY)
        except OSError:
            return None
        return cls(lib)

    def set_quota(self, quota: float, window_ms: float) -> None:
        if not 0.0 < quota <= 1.0:
            raise ValueError(f"quota {quota!r}: expected a fraction in (0, 1]")
        self.lib.hasim_hook_set_quota(float(quota), float(window_ms))

    def reset(self) -> None:
        """Drop the token and the wait, and zero the statistics."""
        self.lib.hasim_hook_reset()

    def stats(self) -> dict[str, float]:
        buf = (ctypes.c_double * len(HOOK_STATS))()
        n = self.lib.hasim_hook_get_stats(buf, len(HOOK_STATS))
        return {k: float(buf[i]) for i, k in enumerate(HOOK_STATS[:n])}

    def version(self) -> int:
        return int(self.lib.hasim_hook_version())

    def launches(self) -> int:
        s = self.stats()
        return int(s["launch_driver"] + s["launch_procaddr"] + s["launch_runtime"])
