"""The time-quota token gate (calibration/gate.py): its arithmetic, on a fake and a real clock."""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from calibration.gate import TokenGate, attach  # noqa: E402


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s

    def at(self, ms: float) -> None:
        self.t = ms / 1e3


def fake_gate(q: float, w: float = 40.0, sync=None) -> tuple[TokenGate, FakeClock]:
    c = FakeClock()
    return TokenGate(q, w, clock=c, sleep=c.sleep, sync=sync), c


def test_launches_while_elapsed_plus_margin_fits_the_token():
    g, c = fake_gate(0.5)  # token 20 ms of 40
    assert g.check() == 0.0 and g.stats.tokens == 1  # the first check takes a token
    c.at(18.9)
    assert g.check() == 0.0  # 18.9 + 1 <= 20
    g.done()
    c.at(19.5)  # 19.5 + 1 > 20: expired; the work ended at 18.9 -> no overuse
    waited = g.check()
    assert waited == pytest.approx(0.0205)  # until 0 + W = 40 ms
    assert c.t == pytest.approx(0.040)
    assert g.stats.tokens == 2 and g.stats.waits == 1 and g.stats.overuse_s == 0.0


def test_overuse_is_charged_to_the_next_window():
    g, c = fake_gate(0.5)
    c.at(40)
    g.check()  # token at 40 ms, ends at 60
    c.at(70)  # a 30 ms unit of work: 10 ms past the token
    g.done()
    g.check()  # next token at 40 + 40 + 10 = 90
    assert c.t == pytest.approx(0.090)
    assert g.stats.overuse_s == pytest.approx(0.010)


def test_sync_measures_the_device_overrun():
    clock = FakeClock()

    def sync() -> None:  # the device was still busy for 7 ms
        clock.t += 0.007

    g = TokenGate(0.25, 40.0, clock=clock, sleep=clock.sleep, sync=sync)
    g.check()  # token 0..10 ms
    clock.at(10.5)
    g.check()  # expired: sync ends at 17.5 -> overuse 7.5 -> next at 47.5
    assert g.stats.syncs == 1
    assert g.stats.overuse_s == pytest.approx(0.0075)
    assert clock.t == pytest.approx(0.0475)


def test_a_token_shorter_than_the_margin_still_progresses():
    g, c = fake_gate(0.01, 40.0)  # 0.4 ms token < 1 ms margin
    for _ in range(5):
        g.check()
        c.t += 0.0001
        g.done()
    assert g.stats.tokens == 5  # one launch per window
    assert c.t == pytest.approx(4 * 0.040 + 0.0001, abs=1e-3)


def test_full_quota_never_waits():
    g, c = fake_gate(1.0)
    for k in range(100):
        c.at(k * 7.0)
        assert g.check() == 0.0
    assert g.stats.waits == 0 and g.stats.tokens == 0


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_quota_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        TokenGate(bad, 40.0)
    g = TokenGate(0.5, 40.0)
    with pytest.raises(ValueError):
        g.set_quota(bad)


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1e3
    while time.perf_counter() < end:
        pass


def _busy_loop(gate: TokenGate, n: int, unit_ms: float) -> float:
    t = time.perf_counter()
    for _ in range(n):
        gate.check()
        _busy(unit_ms)
        gate.done()
    return (time.perf_counter() - t) * 1e3


@pytest.mark.parametrize("q", [0.25, 0.5])
def test_busy_loop_under_quota_takes_about_1_over_q_as_long(q):
    """50 units of 2 ms of work (100 ms) under quota q and W = 100 ms: about 100/q ms,
    to within one window (the last window's idle tail is not waited for)."""
    w = 100.0
    base = _busy_loop(TokenGate(1.0, w), 50, 2.0)
    gated = TokenGate(q, w)
    took = _busy_loop(gated, 50, 2.0)
    assert abs(took - base / q) <= w + 25, (took, base / q)
    assert gated.stats.waits >= 1


def test_module_hooks_gate_every_forward_and_leave_outputs_alone():
    class Busy(torch.nn.Module):
        def forward(self, x):
            _busy(2.0)
            return x + 1

    model = torch.nn.Sequential(*[Busy() for _ in range(10)])
    x = torch.zeros(3)
    gate = TokenGate(1.0, 100.0)
    handles = attach(model, gate)
    y = model(x)
    assert torch.equal(y, torch.full((3,), 10.0))  # the pre-hook must not replace inputs
    assert gate.stats.checks == 11  # the Sequential and its 10 children
    gate.set_quota(0.25)
    gate.reset()
    t = time.perf_counter()
    for _ in range(5):
        model(x)
    took = (time.perf_counter() - t) * 1e3
    assert gate.stats.waits >= 3  # 100 ms of work in 25 ms tokens
    assert took > 250
    for h in handles:
        h.remove()
    checks = gate.stats.checks
    model(x)
    assert gate.stats.checks == checks
