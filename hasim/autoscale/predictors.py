"""Load predictors for autoscalers: HAS-GPU's scalar Kalman filter (SYSTEMS.md 2.3) and a
trivial "last measured rate" predictor.

All rates are in requests per second (req/s). A predictor is fed one measured rate ``m``
per decision period and returns the predicted rate. Keep one predictor per function
(the public HAS-GPU code shares one filter between functions by mistake). A bank
(``make_predictor_bank``) holds one predictor per function in arrays and updates them all
at once, with the same arithmetic as one scalar predictor per function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hasim.errors import InputError


class Predictor(Protocol):
    """Turns a stream of measured rates (req/s) into predicted rates (req/s)."""

    def update(self, measured: float) -> float:
        """Feed one measured rate (req/s); return the new prediction (req/s)."""
        ...

    @property
    def prediction(self) -> float:
        """The latest prediction (req/s); the initial state before any update."""
        ...


class PredictorBank(Protocol):
    """One predictor per function: an array of measured rates (req/s) in, an array of
    predicted rates (req/s) out."""

    def update(self, measured: np.ndarray) -> np.ndarray:
        """Feed one measured rate per function (req/s); return the predictions (req/s).
        The returned array is the bank's state: read it, do not modify it."""
        ...


class _KalmanConstants:
    """What a scalar filter and a bank share: Q, R ((req/s)^2), the headroom constants
    and the variance P ((req/s)^2), whose recursion does not depend on the measurements."""

    q: float
    r: float
    p: float
    sqrt_gain: float
    min_margin: float

    def __init__(self, q: float, r: float, p0: float, sqrt_gain: float, min_margin: float) -> None:
        if q < 0 or r <= 0 or p0 < 0:
            raise ValueError("Kalman filter needs Q >= 0, R > 0 and P0 >= 0")
        self.q, self.r, self.p = float(q), float(r), float(p0)
        self.sqrt_gain, self.min_margin = float(sqrt_gain), float(min_margin)

    def _gain(self) -> float:
        """One step of the variance recursion: updates P and returns the gain K."""
        p_prior = self.p + self.q
        k = p_prior / (p_prior + self.r)
        self.p = (1.0 - k) * p_prior
        return k


class KalmanPredictor(_KalmanConstants):
    """HAS-GPU's scalar Kalman filter with A = H = 1 (SYSTEMS.md 2.3).

    Per update with measured rate m (req/s)::

        x- = x;  P- = P + Q;  K = P- / (P- + R)
        x = x- + K (m - x-);  P = (1 - K) P-
        x = x + sqrt_gain * sqrt(P);  x = max(x, m + min_margin)

    The padded ``x`` is the filter's state for the next step and the prediction.
    q: process noise variance Q ((req/s)^2); r: measurement noise variance R
    ((req/s)^2); x0: initial state (req/s); p0: initial variance P0 ((req/s)^2);
    sqrt_gain: multiple of sqrt(P) added as headroom; min_margin: the prediction is at
    least m + min_margin (req/s).
    """

    def __init__(
        self,
        q: float = 1.0,
        r: float = 10.0,
        x0: float = 0.0,
        p0: float = 1.0,
        sqrt_gain: float = 1.0,
        min_margin: float = 5.0,
    ) -> None:
        _KalmanConstants.__init__(self, q, r, p0, sqrt_gain, min_margin)
        self.x = float(x0)

    def update(self, measured: float) -> float:
        m = float(measured)
        x_prior = self.x
        k = self._gain()
        x = x_prior + k * (m - x_prior)
        x += self.sqrt_gain * math.sqrt(self.p)
        self.x = max(x, m + self.min_margin)
        return self.x

    @property
    def prediction(self) -> float:
        return self.x


class LastRatePredictor:
    """Predicts the last measured rate (req/s) unchanged; ``x0`` before any update."""

    def __init__(self, x0: float = 0.0) -> None:
        self.x = float(x0)

    def update(self, measured: float) -> float:
        self.x = float(measured)
        return self.x

    @property
    def prediction(self) -> float:
        return self.x


class KalmanBank(_KalmanConstants):
    """``n`` KalmanPredictors (one per function) updated together: the states x (req/s)
    in an array; the variance P ((req/s)^2) and gain K are one number, since their
    recursion does not depend on the measurements and all filters start together.
    Element for element the same floating-point operations as KalmanPredictor, so the
    predictions are bit-identical to one scalar filter per function."""

    def __init__(
        self,
        n: int,
        q: float = 1.0,
        r: float = 10.0,
        x0: float = 0.0,
        p0: float = 1.0,
        sqrt_gain: float = 1.0,
        min_margin: float = 5.0,
    ) -> None:
        _KalmanConstants.__init__(self, q, r, p0, sqrt_gain, min_margin)
        self.x = np.full(n, float(x0))

    def update(self, measured: np.ndarray) -> np.ndarray:
        m = np.asarray(measured, dtype=float)
        k = self._gain()
        x = self.x + k * (m - self.x)
        x += self.sqrt_gain * math.sqrt(self.p)
        self.x = np.maximum(x, m + self.min_margin)
        return self.x


class LastRateBank:
    """``n`` LastRatePredictors: the predictions are the last measured rates (req/s)."""

    def __init__(self, n: int, x0: float = 0.0) -> None:
        self.x = np.full(n, float(x0))

    def update(self, measured: np.ndarray) -> np.ndarray:
        self.x = np.array(measured, dtype=float)
        return self.x


@dataclass(frozen=True)
class KalmanSteadyState:
    """Fixed point of KalmanPredictor under a constant measured rate.

    p: steady-state variance P ((req/s)^2); gain: steady-state Kalman gain K;
    offset: steady-state prediction minus the measured rate (req/s).
    """

    p: float
    gain: float
    offset: float


def kalman_steady_state(
    q: float = 1.0, r: float = 10.0, sqrt_gain: float = 1.0, min_margin: float = 5.0
) -> KalmanSteadyState:
    """Closed-form steady state of KalmanPredictor for a constant measured rate m.

    P solves P = R (P + Q) / (P + Q + R), i.e. P^2 + Q P - Q R = 0, so
    P = (-Q + sqrt(Q^2 + 4 Q R)) / 2 and K = (P + Q) / (P + Q + R). The state then
    satisfies x = x + K (m - x) + sqrt_gain * sqrt(P), so x - m = sqrt_gain * sqrt(P) / K,
    unless the m + min_margin floor is larger. With Q = 1, R = 10: P = 2.7016,
    K = 0.2702, offset = 1.6437 / 0.2702 = 6.084 req/s (above the 5 req/s floor).
    """
    p = (-q + math.sqrt(q * q + 4.0 * q * r)) / 2.0
    k = (p + q) / (p + q + r)
    offset = sqrt_gain * math.sqrt(p) / k if k > 0 else math.inf
    return KalmanSteadyState(p, k, max(offset, min_margin))


def make_predictor(
    kind: str,
    *,
    q: float = 1.0,
    r: float = 10.0,
    x0: float = 0.0,
    p0: float = 1.0,
    sqrt_gain: float = 1.0,
    min_margin: float = 5.0,
) -> Predictor:
    """A fresh predictor: ``kind`` is ``kalman`` (SYSTEMS.md 2.3) or ``last``."""
    if kind == "kalman":
        return KalmanPredictor(q, r, x0, p0, sqrt_gain, min_margin)
    if kind == "last":
        return LastRatePredictor(x0)
    raise InputError(f"unknown predictor {kind!r}", expected="kalman or last")


def make_predictor_bank(
    kind: str,
    n: int,
    *,
    q: float = 1.0,
    r: float = 10.0,
    x0: float = 0.0,
    p0: float = 1.0,
    sqrt_gain: float = 1.0,
    min_margin: float = 5.0,
) -> PredictorBank:
    """A fresh bank of ``n`` predictors of ``kind`` (as ``make_predictor``), one per
    function, updated all at once."""
    if kind == "kalman":
        return KalmanBank(n, q, r, x0, p0, sqrt_gain, min_margin)
    if kind == "last":
        return LastRateBank(n, x0)
    raise InputError(f"unknown predictor {kind!r}", expected="kalman or last")
