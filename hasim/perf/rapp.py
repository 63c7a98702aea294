"""``rapp``: the learned RaPP-style latency predictor as a LatencyModel, at lookup speed.

The predictor (:mod:`hasim.perf.predictor`, artifact ``hasim/perf/data/rapp_v100.json`` +
``rapp_v100.lgbm.json.gz``) is evaluated once per model on a dense grid -- batch 1..16 x
SM 1..100 % (integers) x quota 5..100 % (step 5 %) = 32,000 cells, about a second
-- the first time the model is asked for, and the grid is cached on disk
(``<cache dir>/rapp_pred-<key>-<model>.npy``, the key hashing the artifact files, the GPU,
the grid and the ``monotone`` flag). A latency is then a lookup:

* on the grid: the stored value;
* SM or quota between grid points (inside 1..100 % and 5..100 %): linear interpolation in
  ``1/s`` and ``1/q`` between the neighbouring grid values (the laws ``A + K/s`` and
  ``H/q`` are linear there);
* batch above 16, SM below 1 % or quota below 5 %: the predictor itself (memoised).

Grid values equal the predictor's. Like the measurements (neighbouring cells differ by
about 4 % in the RaPP data) they are not exactly monotone; ``monotone: true`` orders the
grid (non-decreasing in batch, non-increasing in SM and quota: see :func:`ordered`; mean
change about 1.5 %) for policies that assume a monotone latency.

The model covers the models with a prior profile in the artifact: the 69 torchvision
models of the RaPP V100 data and ``bert`` (whose profile is derived, see
``hasim perf train``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hasim.errors import InputError, MissingDataError
from hasim.hardware import canonical_gpu
from hasim.paths import data_dir
from hasim.perf.base import check_point
from hasim.perf.common import check_cfg, check_number, lognormal_noise, unknown_model

PACKAGED = Path(__file__).resolve().parent / "data" / "rapp_v100.json"
BATCH_MAX = 16
SM_GRID = np.arange(1.0, 101.0)  # 1..100 %
QUOTA_STEP = 0.05
QUOTA_GRID = np.round(np.arange(1, 21) * QUOTA_STEP, 10)  # 0.05..1.00
CACHE_VERSION = 1
_TOL = 1e-9
_EXACT_MEMO = 65536


@dataclass
class RaPPConfig:
    """Learned predictor (11-point prior profile + LightGBM correction), V100 RaPP data."""

    kind: str = "rapp"
    artifact: str = ""  # predictor metadata JSON; "" = packaged hasim/perf/data/rapp_v100.json
    gpu: str = "V100-16GB"  # GPU whose prior profiles to use (its latencies are for it)
    noise_cv: float = 0.03  # coefficient of variation of the mean-1 lognormal noise, >= 0
    monotone: bool = False  # order the dense grid: up in batch, down in SM and in quota
    cache: bool = True  # keep dense grids on disk
    cache_dir: str = ""  # folder of the grid cache; "" = <data dir>/cache
    transfer: str = ""  # rule for GPUs without data: flops|bandwidth|roofline|same; "" = refuse


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class RaPPLatency:
    """LatencyModel backed by :class:`hasim.perf.predictor.LatencyPredictor`."""

    name = "rapp"

    def __init__(self, cfg: RaPPConfig) -> None:
        from hasim.perf.predictor import LatencyPredictor, artifact_hash

        check_number("noise_cv", cfg.noise_cv)
        check_cfg(isinstance(cfg.gpu, str) and bool(cfg.gpu), "gpu", cfg.gpu, "a GPU name")
        self.cfg = cfg
        self.gpu = canonical_gpu(cfg.gpu)
        path = Path(cfg.artifact) if cfg.artifact else PACKAGED
        if not path.is_file():
            if not cfg.artifact:
                raise MissingDataError(path, "hasim perf train (or reinstall hasim)")
            raise InputError("predictor artifact not found", path=path, expected="a .json file")
        self.path = path
        self.predictor = LatencyPredictor.load(path)
        self.gpu = cfg.gpu
        self._models = sorted(m for g, m in self.predictor.profiles if g == self.gpu)
        if not self._models:
            gpus = sorted({g for g, _ in self.predictor.profiles})
            raise InputError(
                f"perf.gpu = {self.gpu!r}: the artifact has no profile for it",
                expected="one of " + ", ".join(gpus),
            )
        self.noise_cv = float(cfg.noise_cv)
        self.monotone = bool(cfg.monotone)
        h = hashlib.sha256(f"hasim-rapp-grid/{CACHE_VERSION}".encode())
        h.update(artifact_hash(path).encode())
        h.update(f"\0{self.gpu}\0{BATCH_MAX}\0{QUOTA_STEP}\0{self.monotone}".encode())
        self.key = h.hexdigest()[:20]
        self._grids: dict[str, np.ndarray] = {}
        self._exact: dict[tuple[str, int, float, float], float] = {}

    # ----------------------------------------------------------------- models

    @property
    def models(self) -> list[str]:
        """Known model names, sorted."""
        return list(self._models)

    def knows(self, model: str) -> bool:
        """True when the artifact holds a prior profile of ``model`` for this GPU."""
        return self.predictor.knows(model, self.gpu)

    # ----------------------------------------------------------------- grids

    def _cache_file(self, model: str) -> Path:
        d = Path(self.cfg.cache_dir) if self.cfg.cache_dir else data_dir() / "cache"
        return d / f"rapp_pred-{self.key}-{_safe(model)}.npy"

    def compute_grid(self, model: str) -> np.ndarray:
        """Predictor values (ms) on the dense grid ``[batch - 1, sm - 1, quota index]``."""
        b, s, q = np.meshgrid(np.arange(1.0, BATCH_MAX + 1), SM_GRID, QUOTA_GRID, indexing="ij")
        vals = self.predictor.predict(model, b.ravel(), s.ravel(), q.ravel(), self.gpu)
        grid = vals.reshape(b.shape)
        if self.monotone:
            grid = ordered(grid)
        return np.ascontiguousarray(grid, dtype=float)

    def grid(self, model: str) -> np.ndarray:
        """The dense grid of ``model`` (computed, or read from the disk cache)."""
        g = self._grids.get(model)
        if g is not None:
            return g
        if not self.knows(model):
            raise unknown_model(self.name, model, self._models)
        shape = (BATCH_MAX, len(SM_GRID), len(QUOTA_GRID))
        f = self._cache_file(model)
        if self.cfg.cache and f.is_file():
            try:
                g = np.load(f, allow_pickle=False)
                if g.shape != shape or not np.isfinite(g).all():
                    g = None
            except (OSError, ValueError):
                g = None
        if g is None:
            g = self.compute_grid(model)
            if self.cfg.cache:
                _write(f, g)
        self._grids[model] = g
        return g

    # ----------------------------------------------------------------- lookup

    def _exact_ms(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        key = (model, batch, sm_pct, quota)
        v = self._exact.get(key)
        if v is None:
            v = float(self.predictor.predict(model, batch, sm_pct, quota, self.gpu))
            if len(self._exact) >= _EXACT_MEMO:
                self._exact.clear()
            self._exact[key] = v
        return v

    def latency_ms(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        """Mean latency (ms); no input checks (see :meth:`mean_latency_s`)."""
        g = self.grid(model)
        b = int(batch)
        if b > BATCH_MAX or sm_pct < SM_GRID[0] - _TOL or quota < QUOTA_GRID[0] - _TOL:
            v = self._exact_ms(model, b, float(sm_pct), float(quota))
            if self.monotone:  # keep the order against the grid's edge
                be = min(b, BATCH_MAX) - 1
                v = max(v, self._lookup(g[be], max(sm_pct, 1.0), max(quota, QUOTA_GRID[0])))
            return v
        return self._lookup(g[b - 1], sm_pct, quota)

    @staticmethod
    def _lookup(plane: np.ndarray, sm_pct: float, quota: float) -> float:
        """Bilinear in (1/s, 1/q) on one batch's (SM, quota) plane."""
        x = sm_pct - 1.0
        i = int(round(x))
        if abs(x - i) <= _TOL * max(1.0, sm_pct):
            si = (i, i, 0.0)
        else:
            lo = int(math.floor(x))
            s0, s1 = lo + 1.0, lo + 2.0
            si = (lo, lo + 1, (1.0 / sm_pct - 1.0 / s0) / (1.0 / s1 - 1.0 / s0))
        y = quota / QUOTA_STEP - 1.0
        k = int(round(y))
        if abs(y - k) <= 1e-7:
            qi = (k, k, 0.0)
        else:
            lo = int(math.floor(y))
            q0, q1 = (lo + 1) * QUOTA_STEP, (lo + 2) * QUOTA_STEP
            qi = (lo, lo + 1, (1.0 / quota - 1.0 / q0) / (1.0 / q1 - 1.0 / q0))
        a0, a1, wa = si
        c0, c1, wc = qi
        v00 = plane[a0, c0]
        if wa == 0.0 and wc == 0.0:
            return float(v00)
        v01, v10, v11 = plane[a0, c1], plane[a1, c0], plane[a1, c1]
        top = v00 + wc * (v01 - v00)
        bot = v10 + wc * (v11 - v10)
        return float(top + wa * (bot - top))

    def mean_latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        """Mean latency (s) of a batch at SM partition ``sm_pct`` (%) and time quota (fraction)."""
        check_point(batch, sm_pct, quota)
        if not self.knows(model):
            raise unknown_model(self.name, model, self._models)
        return self.latency_ms(model, batch, sm_pct, quota) / 1000.0

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` lognormal factors with mean 1 and coefficient of variation ``noise_cv``."""
        return lognormal_noise(rng, n, self.noise_cv)


def _non_increasing(a: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the lower envelope (running minimum from the start) and the upper envelope
    (running maximum from the end) along ``axis``: non-increasing, and unlike either
    envelope alone not biased to one side."""
    lower = np.minimum.accumulate(a, axis=axis)
    rev = np.flip(a, axis=axis)
    upper = np.flip(np.maximum.accumulate(rev, axis=axis), axis=axis)
    return 0.5 * (lower + upper)


def ordered(grid: np.ndarray) -> np.ndarray:
    """The grid ``[batch, SM, quota]`` made non-decreasing in batch and non-increasing in SM
    and in quota (one pass per axis, quota last: the quota order always holds, the other
    two up to what the quota pass moves)."""
    g = -_non_increasing(-grid, 0)  # batch: non-decreasing
    g = _non_increasing(g, 1)  # SM
    return _non_increasing(g, 2)  # quota


def _write(path: Path, grid: np.ndarray) -> None:
    """Atomic write (temporary file + rename); failures only cost speed."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".rapp_pred-", suffix=".npy", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, grid, allow_pickle=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def build(cfg: Any) -> RaPPLatency:
    """Build the ``rapp`` latency model (for ``hasim.perf.registry.PERF_KINDS``)."""
    return RaPPLatency(cfg)


build_rapp = build
