"""One GPU's token scheduler and per-kernel execution (SYSTEMS.md section 1), in SimPy.

Pods (clients) hold an SM partition ``sm_pct`` (percent of the GPU's SMs, fixed) and a
time quota ``q`` (fraction of the window ``W``). An inference is a sequence of kernel
durations (s) measured at the pod's SM partition with the whole window (quota 1); the
scheduler decides when they run. Rules:

* **Token.** A token lasts ``q * W`` (fixed mode, HAS-GPU: ``W = 40 ms``) or, in adaptive
  mode (FaST-GShare at ICPP 2023, ``W = 10 s``), ``0.5 * last burst + 0.5 * previous
  token`` clamped to ``[adaptive_min_s, q * W]``, ``adaptive_init_s`` (capped at
  ``q * W``) before any burst is known. The *burst* is the GPU time of the pod's current
  inference so far, measured at each token release (so a finished inference's whole GPU
  time sizes the first token of the next one): a kernel burst ends at the inference's
  synchronisation, as Gemini's hook measures it.
* **Usage.** ``usage(t)`` = the time the pod was charged within the last ``W``: the
  overlap of its charged intervals with ``[t - W, oo)``. A token is charged from its
  grant to its release, extended to the token's nominal end when the pod released it
  because its next kernel did not fit (see below): the scheduler accounts the token it
  granted; the unused tail is shorter than the launch margin. A pod whose inference ends
  releases at once and is charged only up to then.
* **Candidates.** A pod that wants to run is a candidate while
  ``usage < q * W`` (a pod at ``q >= 1`` is always a candidate, so a lone pod at quota 1
  runs back to back). Order: both under their request (``request`` defaults to the
  quota) -> the larger ``missing / (missing + usage)`` first (``missing = request * W -
  usage``); one under -> it first; else the smaller usage first; ties in request order.
  Tokens go, in that order, to every candidate whose SM partition still fits (sum of
  ``sm_pct`` over the token holders <= 100): pods run at the same time only this way.
* **Hook.** With a token granted at ``g`` of length ``L``, the pod launches its next kernel
  at ``t`` while ``t - g + launch_margin <= L`` (the first kernel of a token always
  launches, so tokens shorter than the margin still progress); otherwise it releases the
  token when its running kernel ends and requests the next. A kernel that runs past the
  token's end is charged in full (overuse); the pod keeps its SMs until it ends.
* **Quota changes** (:meth:`TokenScheduler.set_quota`) apply at the pod's next grant.

Bound: a grant needs ``usage < q W`` but gives a whole token, so a pod's busy time in a
window of length ``W`` is below ``q W + token + one kernel's overuse`` (``2 q W + overuse``
in fixed mode); a pod that never releases early (one long inference, no idle gaps) stays
below ``q W + overuse``: its next grant comes when its previous token starts leaving the
window, so it gets ``q`` of the GPU and a lone pod's latency grows as ``1 / q``.

Launch-gated mode (``run(..., launch_s=...)``, optional): the token gates the host's
kernel *launches* (paced by ``launch_s``), the GPU runs the launched kernels in order
at their durations, also after the token is released; the token is held and charged
while the pod launches. It reproduces the RaPP measurement that a small SM partition's
latency flattens at moderate quotas (the launch stream, not the slower GPU work, is what
the quota throttles). The SM rule then constrains launch phases, not kernel execution.

Events happen only at token grants, releases (kernel ends) and at the instants when a
waiting pod's usage falls below its limit (computed from its charged intervals); the
kernels one token runs back to back are one SimPy event (a *burst*: the number that fit
comes from a cumulative sum), the trace still records each kernel. The dispatch that
hands out tokens runs once per instant, after that instant's releases and requests
(SimPy priority :data:`DISPATCH_PRIORITY`). Kernels run at their given durations:
partitions isolate SMs and nothing models memory-bandwidth interference between pods
that run at once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy

from hasim.cluster.trace import KernelTrace
from hasim.errors import HasimError, InputError

DISPATCH_PRIORITY = 2
"""SimPy priority of the token dispatch: after the normal events (1) of the same instant."""
SM_TOTAL = 100.0
"""Percent of the GPU's SMs that token holders may hold at once."""
TOL = 1e-9
"""Time tolerance (s): usage must be below ``limit - TOL`` to be a candidate."""


@dataclass
class _Client:
    """A pod as the scheduler sees it (times in s)."""

    pod_id: int
    sm_pct: float
    quota: float
    request: float | None
    seq: int = 0  # request order, for ties
    charges: deque[tuple[float, float]] = field(default_factory=deque)
    charged: int = 0  # charges appended so far (invalidates the cached wake time)
    wake_key: tuple[int, float] = (-1, 0.0)  # (charged, quota) the cached wake is for
    wake_at: float = 0.0
    # current inference
    cum: np.ndarray | None = None  # cumulative kernel durations, cum[0] = 0
    gate: np.ndarray | None = None  # cumulative launch pacing the hook gates (sync: cum)
    asynchronous: bool = False  # launch-gated mode (run(..., launch_s=...))
    gpu_end: float = 0.0  # async: when the GPU finishes the kernels launched so far
    kernels: np.ndarray | None = None
    pos: int = 0  # next kernel to launch
    done: simpy.Event | None = None
    started: float = 0.0
    # token state
    holding: bool = False
    grant_t: float = 0.0
    token_s: float = 0.0
    token_quota: float = 0.0
    requested_at: float = 0.0
    last_burst_s: float | None = None
    prev_token_s: float | None = None
    infer_gpu_s: float = 0.0  # GPU time of the current inference so far


class TokenScheduler:
    """One GPU's token scheduler (SYSTEMS.md section 1), event-driven (SimPy).

    ``window_s`` is the sliding window ``W`` (s); ``launch_margin_s`` the hook's margin (s):
    a kernel launches while ``elapsed + margin <= token``. ``trace`` (optional) records
    tokens, kernels, waits and inferences. ``adaptive`` switches to FaST-GShare's adaptive
    token (``adaptive_min_s``, ``adaptive_init_s`` in s).

    Counters: ``grants`` (tokens granted), ``kernels_run`` (kernels launched); ``sm_used``
    is the SM percent the token holders hold now.
    """

    def __init__(
        self,
        env: simpy.Environment,
        gpu_id: int,
        window_s: float = 0.040,
        launch_margin_s: float = 0.001,
        trace: KernelTrace | None = None,
        adaptive: bool = False,
        adaptive_min_s: float = 0.020,
        adaptive_init_s: float = 0.300,
    ) -> None:
        if not window_s > 0:
            raise InputError(f"window_s={window_s}", expected="a window > 0 s")
        if not launch_margin_s >= 0:
            raise InputError(f"launch_margin_s={launch_margin_s}", expected="a margin >= 0 s")
        if adaptive and not (adaptive_min_s > 0 and adaptive_init_s > 0):
            raise InputError(
                f"adaptive_min_s={adaptive_min_s}, adaptive_init_s={adaptive_init_s}",
                expected="adaptive token bounds > 0 s",
            )
        self.env = env
        self.gpu_id = gpu_id
        self.window_s = float(window_s)
        self.launch_margin_s = float(launch_margin_s)
        self.trace = trace
        self.adaptive = adaptive
        self.adaptive_min_s = float(adaptive_min_s)
        self.adaptive_init_s = float(adaptive_init_s)
        self.clients: dict[int, _Client] = {}
        self.sm_used = 0.0
        self.waiting: list[_Client] = []
        self._seq = 0
        self._dispatch_pending = False
        self._timer_at = math.inf
        # statistics
        self.grants = 0
        self.kernels_run = 0

    # ---- clients ---------------------------------------------------------------
    def add_client(
        self, pod_id: int, sm_pct: float, quota: float, request: float | None = None
    ) -> None:
        """Register pod ``pod_id`` with SM partition ``sm_pct`` (percent, (0, 100]) and time
        quota ``quota`` (fraction of the window, (0, 1]); ``request`` (fraction, default the
        quota) is the guaranteed share used only to order candidates."""
        if pod_id in self.clients:
            raise InputError(f"pod {pod_id} is already a client of GPU {self.gpu_id}")
        if not 0 < sm_pct <= SM_TOTAL:
            raise InputError(f"sm_pct={sm_pct}", expected="an SM partition in (0, 100] percent")
        self._check_quota(quota)
        if request is not None and not 0 <= request <= quota:
            raise InputError(f"request={request}", expected="a request in [0, quota]")
        self.clients[pod_id] = _Client(pod_id, float(sm_pct), float(quota), request)

    def set_quota(self, pod_id: int, quota: float) -> None:
        """Change a pod's quota (fraction); it applies at the pod's next token grant. A pod
        waiting for a token is reconsidered at once (a raised quota may make it a
        candidate now rather than at the wake time computed under the old quota)."""
        self._check_quota(quota)
        c = self._client(pod_id)
        c.quota = float(quota)
        if c.request is not None:
            c.request = min(c.request, c.quota)
        if c in self.waiting:
            self._kick()

    def remove_client(self, pod_id: int) -> None:
        """Forget a pod; an error while it has a running inference."""
        c = self._client(pod_id)
        if c.done is not None:
            raise HasimError(f"pod {pod_id} on GPU {self.gpu_id} has a running inference")
        del self.clients[pod_id]

    def busy(self, pod_id: int) -> bool:
        """Whether the pod has an inference running (waiting for or holding a token)."""
        return self._client(pod_id).done is not None

    def usage(self, pod_id: int, t: float | None = None) -> float:
        """The pod's charged time (s) within the window ending at ``t`` (default now)."""
        return self._usage(self._client(pod_id), self.env.now if t is None else t)

    # ---- inference -------------------------------------------------------------
    def run(
        self,
        pod_id: int,
        kernels_s: Sequence[float] | np.ndarray,
        launch_s: Sequence[float] | np.ndarray | None = None,
    ) -> simpy.Event:
        """Start one inference: kernels of the given durations (s, at the pod's SM partition,
        whole window) run in order under the token rules. Returns an event that succeeds
        with the end time (s) of the last kernel. One inference at a time per pod.

        ``launch_s`` (optional, s per kernel) switches this inference to the launch-gated
        (asynchronous) mode: the host launches kernel ``i`` ``launch_s[i]`` after the
        previous launch, the hook gates the *launches* with the token (the token is held,
        and charged, while the pod launches), and the GPU runs each kernel once it is
        launched and the previous one has finished, also after the token is released.
        The SM-partition rule then holds for launch phases only (as in the real system,
        where the hook cannot stop kernels already queued)."""
        c = self._client(pod_id)
        if c.done is not None:
            raise HasimError(f"pod {pod_id} on GPU {self.gpu_id} already runs an inference")
        k = np.asarray(kernels_s, dtype=float).ravel()
        if k.size and not (np.all(np.isfinite(k)) and k.min() >= 0):
            raise InputError("kernel durations", expected="finite durations >= 0 s")
        lau = None
        if launch_s is not None:
            lau = np.asarray(launch_s, dtype=float).ravel()
            if lau.size != k.size or (
                lau.size and not (np.all(np.isfinite(lau)) and lau.min() >= 0)
            ):
                raise InputError(
                    "launch_s", expected=f"{k.size} finite launch times >= 0 s, one per kernel"
                )
        done = simpy.Event(self.env)
        now = self.env.now
        if k.size == 0:
            done.succeed(now)
            return done
        c.kernels = k
        c.cum = np.concatenate(([0.0], np.cumsum(k)))
        c.asynchronous = lau is not None
        c.gate = c.cum if lau is None else np.concatenate(([0.0], np.cumsum(lau)))
        c.gpu_end = now
        c.pos = 0
        c.done = done
        c.started = now
        c.infer_gpu_s = 0.0
        self._request(c, now)
        return done

    # ---- internals ------------------------------------------------------------
    @staticmethod
    def _check_quota(quota: float) -> None:
        if not 0 < quota <= 1:
            raise InputError(f"quota={quota}", expected="a time quota in (0, 1]")

    def _client(self, pod_id: int) -> _Client:
        c = self.clients.get(pod_id)
        if c is None:
            raise InputError(f"pod {pod_id} is not a client of GPU {self.gpu_id}")
        return c

    def _at(self, delay: float, priority: int, fn: Callable[[simpy.Event], None]) -> None:
        """Run ``fn`` ``delay`` s from now at SimPy ``priority``."""
        ev = simpy.Event(self.env)
        ev._ok = True
        ev._value = None
        ev.callbacks.append(fn)
        self.env.schedule(ev, priority, delay)

    def _usage(self, c: _Client, t: float) -> float:
        lo = t - self.window_s
        ch = c.charges
        while ch and ch[0][1] <= lo:
            ch.popleft()
        return sum(e - (s if s > lo else lo) for s, e in ch if e > lo)

    def _limit(self, c: _Client) -> float:
        return c.quota * self.window_s

    def _is_candidate(self, c: _Client, usage: float) -> bool:
        return c.quota >= 1.0 or usage < self._limit(c) - TOL

    def _wake_time(self, c: _Client, now: float) -> float:
        """The earliest time (s) >= now when the pod's usage falls below its limit."""
        target = self._limit(c) - 2 * TOL
        ch = list(c.charges)
        w = self.window_s
        if target <= 0:
            return max(now, max(e for _, e in ch) + w) if ch else now

        def f(x: float) -> float:  # usage as a function of the window start x
            return sum(e - max(s, x) for s, e in ch if e > x)

        x_prev = now - w
        f_prev = f(x_prev)
        if f_prev <= target:
            return now
        for b in sorted({p for iv in ch for p in iv if p > x_prev}):
            fb = f(b)
            if fb <= target:
                x = x_prev + (f_prev - target) * (b - x_prev) / (f_prev - fb)
                return max(x + w, now)
            x_prev, f_prev = b, fb
        return now  # unreachable: f is 0 past the last end

    def _request(self, c: _Client, now: float) -> None:
        c.requested_at = now
        self._seq += 1
        c.seq = self._seq
        self.waiting.append(c)
        self._kick()

    def _kick(self) -> None:
        if not self._dispatch_pending:
            self._dispatch_pending = True
            self._at(0.0, DISPATCH_PRIORITY, self._on_dispatch)

    def _on_dispatch(self, _ev: simpy.Event) -> None:
        self._dispatch_pending = False
        self._dispatch()

    def _on_timer(self, _ev: simpy.Event) -> None:
        if self.env.now >= self._timer_at - TOL:
            self._timer_at = math.inf
        self._dispatch()

    def _dispatch(self) -> None:
        if not self.waiting:
            return
        now = self.env.now
        w = self.window_s
        cands: list[tuple[tuple[int, float, int], _Client, float]] = []
        wake = math.inf
        for c in self.waiting:
            u = self._usage(c, now)
            if self._is_candidate(c, u):
                req = c.quota if c.request is None else c.request
                missing = req * w - u
                if missing > 0:
                    key = (0, -missing / (missing + u), c.seq)
                else:
                    key = (1, u, c.seq)
                cands.append((key, c, u))
            else:
                # the charges are fixed while a pod waits: reuse its wake time
                if c.wake_key != (c.charged, c.quota) or c.wake_at <= now:
                    c.wake_key = (c.charged, c.quota)
                    c.wake_at = self._wake_time(c, now)
                wake = min(wake, c.wake_at)
        cands.sort(key=lambda x: x[0])
        granted = False
        for _key, c, u in cands:
            if self.sm_used + c.sm_pct <= SM_TOTAL + 1e-9:
                self._grant(c, now, u)
                granted = True
        if granted:
            self.waiting = [c for c in self.waiting if not c.holding]
        if wake < math.inf and wake < self._timer_at - TOL:
            self._timer_at = max(wake, now + TOL)
            self._at(self._timer_at - now, DISPATCH_PRIORITY, self._on_timer)

    def _token_length(self, c: _Client) -> float:
        cap = c.quota * self.window_s
        if not self.adaptive:
            return cap
        if c.last_burst_s is None or c.prev_token_s is None:
            return min(self.adaptive_init_s, cap)
        t = 0.5 * c.last_burst_s + 0.5 * c.prev_token_s
        return min(max(t, self.adaptive_min_s), cap)

    def _grant(self, c: _Client, now: float, usage: float) -> None:
        assert c.cum is not None and c.gate is not None and c.kernels is not None
        length = self._token_length(c)
        c.holding = True
        c.grant_t = now
        c.token_s = length
        c.token_quota = c.quota
        self.sm_used += c.sm_pct
        self.grants += 1
        gate = c.gate
        n = gate.size - 1
        start = c.pos
        thr = gate[start] + length - self.launch_margin_s + TOL  # TOL: rounding of cumsum
        j = int(np.searchsorted(gate, thr, side="right"))  # kernels start..j-1 launch
        j = min(max(j, start + 1), n)
        dur = float(gate[j] - gate[start])
        starts = None
        if c.asynchronous:
            # GPU: kernel i starts at max(its launch end a_i, end of kernel i-1)
            d = c.kernels[start:j]
            a = now + (gate[start + 1 : j + 1] - gate[start])
            dc = np.cumsum(d)
            ends = dc + np.maximum(np.maximum.accumulate(a - (dc - d)), c.gpu_end)
            starts = ends - d
            c.gpu_end = float(ends[-1])
        tr = self.trace
        if tr is not None:
            tr.wait(self.gpu_id, c.pod_id, c.requested_at, now)
            tr.burst(self.gpu_id, c.pod_id, now, c.kernels[start:j], starts)
            tr.sm(self.gpu_id, now, self.sm_used)
            tr.usage(self.gpu_id, c.pod_id, now, usage / self.window_s)
        self.kernels_run += j - start
        c.pos = j
        self._at(dur, simpy.events.NORMAL, lambda _ev, c=c: self._burst_end(c))

    def _burst_end(self, c: _Client) -> None:
        now = self.env.now
        assert c.cum is not None and c.done is not None
        g = c.grant_t
        c.holding = False
        self.sm_used -= c.sm_pct
        if self.sm_used < 1e-9:
            self.sm_used = 0.0
        finished = c.pos >= c.cum.size - 1
        end_charge = now if finished else max(now, g + c.token_s)
        c.charges.append((g, end_charge))
        c.charged += 1
        c.infer_gpu_s += now - g
        c.last_burst_s = c.infer_gpu_s
        c.prev_token_s = c.token_s
        tr = self.trace
        if tr is not None:
            tr.token(self.gpu_id, c.pod_id, g, now, c.token_s, c.sm_pct, c.token_quota)
            tr.sm(self.gpu_id, now, self.sm_used)
        if not finished:
            self._request(c, now)
        elif c.asynchronous and c.gpu_end > now:
            self._kick()
            self._at(c.gpu_end - now, simpy.events.NORMAL, lambda _ev, c=c: self._finish(c))
        else:
            self._kick()
            self._finish(c)

    def _finish(self, c: _Client) -> None:
        """The inference's last kernel ended now: succeed its event."""
        now = self.env.now
        assert c.cum is not None and c.done is not None
        done = c.done
        if self.trace is not None:
            self.trace.inference(self.gpu_id, c.pod_id, c.started, now, c.cum.size - 1)
        c.done = None
        c.cum = c.gate = c.kernels = None
        c.pos = 0
        done.succeed(now)
