"""``compact``: the offline default latency model, a small fitted law per model.

Form (all times in ms; ``s`` SM partition in %, ``q`` quota fraction, ``b`` batch)::

    L(b, s, q) = smax( G_b(s), Q(q) )            smax(x, y) = (x^p + y^p)^(1/p), p = 8
    G_b(s)     = smax( F, A_b + K_b / s )        GPU phase at full quota
    Q(q)       = token-throttled host phase, a non-increasing profile over the
                 measured quotas 10..100 %, linear in 1/q between them

* ``G_b(s)``: the kernels' work ``K_b`` spreads over the SM share, ``A_b`` is the part
  that does not (memory-bound and tail kernels), ``F`` the launch-bound floor (in this
  PyTorch-eager data many models are limited by kernel launches through the quota hook,
  e.g. resnet50 at ~20 ms for any batch <= 8 at SM >= 35 %).
* ``Q(q)``: the quota hook throttles the host side that launches kernels; its time
  does not depend on SM or batch in the data (resnet50: 245 ms at q = 10 % for every SM
  and batch). With window W = 40 ms a phase of H ms needs about H / (qW - delta) tokens,
  so ``Q ~ H / q``; the measured profile also has a step below 20 % and per-model
  token-boundary stairs (e.g. vgg11_bn: 15 ms flat for q = 20..40 %, 5 ms from 50 %),
  hence a fitted monotone profile (10 numbers per model): MAPE 4.6 % over the 54,928
  measured cells, against 6.8 % for the 3-parameter law
  ``H q^-g (1 + k step(q < 20 %))`` (``fit_compact --quota-form token``).
* Below the measured quotas (q < 10 %): ``Q(q) = Q(10 %) * 0.1 / q`` (the token
  mechanism: waiting grows as 1/q). Batches between 1, 2, 4, 8 interpolate ``A_b`` and
  ``K_b`` linearly; above 8 they extrapolate linearly from 4 and 8 with non-negative
  slopes. SM below 5 % follows ``A_b + K_b / s``.

``bert`` is fitted to HAS-GPU's batch-4 table (SM 30/50 %) without a floor; for other
batches its whole law (``A_b``, ``K_b`` and ``Q`` via the per-batch ``Qscale``) scales by
ratios borrowed from the heaviest RaPP models (an assumption shared with the
``rapp_table`` model, see ``provenance.bert_batch_ratios``); its SM dependence outside
30..50 % is the fitted ``A + K/s`` law (weak: only two SM levels were measured).

By construction the latency is non-increasing in ``s`` (``K_b >= 0``) and in ``q``
(``Q`` non-increasing, the 1/q extension continuous). The coefficients come from
``python -m hasim.perf.fit_compact`` run on the RaPP V100 table (Apache-2.0), see the
``provenance`` block of ``hasim/perf/data/compact_v100.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hasim.errors import InputError, MissingDataError
from hasim.hardware import canonical_gpu
from hasim.perf.base import check_point
from hasim.perf.common import bracket, check_number, lognormal_noise, smooth_max, unknown_model

PACKAGED = Path(__file__).resolve().parent / "data" / "compact_v100.json"
PACKAGED_BY_GPU: dict[str, Path] = {
    "V100-16GB": PACKAGED,
    "A100-80GB": PACKAGED.with_name("compact_a100_80gb.json"),
    "A100-40GB": PACKAGED.with_name("compact_a100_40gb.json"),
}
"""The packaged coefficient file of each GPU with data (canonical names)."""
DEFAULT_GPU = "V100-16GB"
"""The GPU of a coefficient file without a ``gpu`` key, and of the default file."""
FORMAT = "hasim-compact-latency/1"


@dataclass
class CompactConfig:
    """Fitted per-model law for V100 latency under SM partition x time quota (offline)."""

    kind: str = "compact"
    coefficients: str = ""  # coefficient JSON file; "" = the packaged file of the cluster's GPU
    noise_cv: float = 0.03  # coefficient of variation of the mean-1 lognormal noise, >= 0
    measurements: str = ""  # measurement file/dir to fit the law on for the cluster's GPU
    transfer: str = ""  # rule for GPUs without data: flops|bandwidth|roofline|same; "" = refuse


@dataclass(frozen=True)
class ModelCoef:
    """One model's coefficients (ms): floor ``F``, per-batch ``A``/``K``, quota profile ``Q``."""

    F: float
    A: tuple[float, ...]
    K: tuple[float, ...]
    Q: tuple[float, ...]
    Qscale: tuple[float, ...] | None = None  # per-batch factor on Q (None = 1 for all)


def _bad(path: Path, problem: str, expected: str | None = None) -> InputError:
    return InputError(problem, path=path, expected=expected)


def _floats(path: Path, where: str, value: Any, n: int) -> tuple[float, ...]:
    ok = isinstance(value, list) and len(value) == n
    ok = ok and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in value
    )
    if not ok:
        raise _bad(path, f"{where} = {value!r}", f"a list of {n} finite numbers >= 0")
    return tuple(float(v) for v in value)


def load_coefficients(path: str | Path | None = None) -> dict[str, Any]:
    """Read and check a compact coefficient file (default: the packaged one)."""
    p = Path(path) if path else PACKAGED
    if not p.is_file():
        if not path:
            raise MissingDataError(p, "reinstall hasim (the file ships with the package)")
        raise InputError("coefficient file not found", path=p, expected="an existing JSON file")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg}", path=p, line=e.lineno, column=e.colno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"unreadable file: {e}", path=p) from None
    return coefficients_from_doc(doc, p)


def coefficients_from_doc(doc: Any, p: Path | str = "<fitted coefficients>") -> dict[str, Any]:
    """Check a coefficient document (the parsed JSON) and return its coefficients."""
    p = Path(p)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(p, f"format {doc.get('format') if isinstance(doc, dict) else None!r}", FORMAT)
    for key in ("batches", "quotas", "models", "smooth_p"):
        if key not in doc:
            raise _bad(p, f"missing key {key!r}")
    batches = doc["batches"]
    quotas = doc["quotas"]
    for key, axis in (("batches", batches), ("quotas", quotas)):
        ok = (
            isinstance(axis, list)
            and len(axis) >= 1
            and all(isinstance(v, int | float) and v > 0 for v in axis)
        )
        if not ok or list(axis) != sorted(set(axis)):
            raise _bad(p, f"{key} = {axis!r}", "an ascending list of positive numbers")
    if max(quotas) > 1:
        raise _bad(p, f"quotas = {quotas!r}", "fractions in (0, 1]")
    if not isinstance(doc["smooth_p"], int | float) or not doc["smooth_p"] >= 1:
        raise _bad(p, f"smooth_p = {doc['smooth_p']!r}", "a number >= 1")
    if not isinstance(doc["models"], dict) or not doc["models"]:
        raise _bad(p, "models is empty or not an object")
    models: dict[str, ModelCoef] = {}
    for name, m in doc["models"].items():
        where = f"models.{name}"
        if not isinstance(m, dict):
            raise _bad(p, f"{where} is not an object")
        f = _floats(p, f"{where}.F", [m.get("F")], 1)[0]
        a = _floats(p, f"{where}.A", m.get("A"), len(batches))
        k = _floats(p, f"{where}.K", m.get("K"), len(batches))
        q = _floats(p, f"{where}.Q", m.get("Q"), len(quotas))
        if any(q[i] < q[i + 1] for i in range(len(q) - 1)) or q[-1] <= 0:
            raise _bad(p, f"{where}.Q = {list(q)!r}", "a non-increasing list of positive numbers")
        qscale = None
        if m.get("Qscale") is not None:
            qscale = _floats(p, f"{where}.Qscale", m.get("Qscale"), len(batches))
            if min(qscale) <= 0:
                raise _bad(p, f"{where}.Qscale = {list(qscale)!r}", "positive numbers")
        models[name] = ModelCoef(f, a, k, q, qscale)
    try:
        gpu = canonical_gpu(str(doc.get("gpu", DEFAULT_GPU)))
    except InputError as e:
        raise _bad(p, f"gpu = {doc.get('gpu')!r}", e.expected) from None
    return {
        "path": p,
        "gpu": gpu,
        "batches": tuple(float(b) for b in batches),
        "quotas": tuple(float(q) for q in quotas),
        "p": float(doc["smooth_p"]),
        "models": models,
        "provenance": doc.get("provenance", {}),
    }


def _lerp_b(values: tuple[float, ...], batches: tuple[float, ...], b: float) -> float:
    """A per-batch coefficient at batch ``b``: linear between grid batches, linear
    extrapolation with non-negative slope above, the first value below."""
    i, j = bracket(batches, b)
    if i == j:
        return values[i]
    n = len(batches)
    if i < 0 or n == 1:
        return values[0]
    if j >= n:
        slope = max(0.0, values[-1] - values[-2]) / (batches[-1] - batches[-2])
        return values[-1] + slope * (b - batches[-1])
    w = (b - batches[i]) / (batches[j] - batches[i])
    return values[i] + w * (values[j] - values[i])


class CompactLatency:
    """LatencyModel evaluating the fitted compact law; needs no downloaded data."""

    name = "compact"

    def __init__(self, cfg: CompactConfig, path: str | Path | dict[str, Any] | None = None) -> None:
        """``path``: the coefficient file (default ``cfg.coefficients``, else the packaged
        V100 file), or coefficients already checked (:func:`coefficients_from_doc`) or a
        coefficient document (a dict)."""
        check_number("noise_cv", cfg.noise_cv)
        self.cfg = cfg
        if isinstance(path, dict):
            loaded = path if "p" in path else coefficients_from_doc(path)
        else:
            loaded = load_coefficients(path or cfg.coefficients or None)
        self.path: Path = loaded["path"]
        self.gpu: str = loaded["gpu"]
        self.batches: tuple[float, ...] = loaded["batches"]
        self.quotas: tuple[float, ...] = loaded["quotas"]
        self.p: float = loaded["p"]
        self.coef: dict[str, ModelCoef] = loaded["models"]
        self.provenance: dict[str, Any] = loaded["provenance"]
        self.noise_cv = float(cfg.noise_cv)

    @property
    def models(self) -> list[str]:
        """Known model names, sorted."""
        return sorted(self.coef)

    def knows(self, model: str) -> bool:
        """True for every model in the coefficient file (69 RaPP models plus ``bert``)."""
        return model in self.coef

    def gpu_phase_ms(self, model: str, batch: float, sm_pct: float) -> float:
        """``G_b(s)`` (ms): the full-quota latency without the host/quota phase."""
        c = self.coef.get(model)
        if c is None:
            raise unknown_model(self.name, model, self.coef)
        a = _lerp_b(c.A, self.batches, batch)
        k = _lerp_b(c.K, self.batches, batch)
        return smooth_max(c.F, a + k / sm_pct, self.p)

    def quota_phase_ms(self, model: str, quota: float, batch: float = 1.0) -> float:
        """``Q(q)`` (ms): the token-throttled host phase at quota fraction ``quota``
        (times the model's per-batch ``Qscale``, if it has one: only ``bert``)."""
        c = self.coef.get(model)
        if c is None:
            raise unknown_model(self.name, model, self.coef)
        qs, prof = self.quotas, c.Q
        i, j = bracket(qs, quota)
        if i == j:
            v = prof[i]
        elif i < 0:
            v = prof[0] * qs[0] / quota
        elif j >= len(qs):
            v = prof[-1]
        else:
            w = (1.0 / quota - 1.0 / qs[i]) / (1.0 / qs[j] - 1.0 / qs[i])
            v = prof[i] + w * (prof[j] - prof[i])
        if c.Qscale is not None:
            v *= _lerp_b(c.Qscale, self.batches, batch)
        return v

    def latency_ms(self, model: str, batch: float, sm_pct: float, quota: float) -> float:
        """Mean latency in ms (no input checks; see :meth:`mean_latency_s`)."""
        return smooth_max(
            self.gpu_phase_ms(model, batch, sm_pct),
            self.quota_phase_ms(model, quota, batch),
            self.p,
        )

    def mean_latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        """Mean latency (s) of a batch at SM partition ``sm_pct`` (%) and time quota (fraction)."""
        check_point(batch, sm_pct, quota)
        return self.latency_ms(model, batch, sm_pct, quota) / 1000.0

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` lognormal factors with mean 1 and coefficient of variation ``noise_cv``."""
        return lognormal_noise(rng, n, self.noise_cv)


def build_compact(cfg: CompactConfig, gpu: str | None = None) -> CompactLatency:
    """The compact latency model for ``gpu``: ``cfg.coefficients`` when set, else a law
    fitted on ``cfg.measurements`` for ``gpu``, else the packaged file of ``gpu``; a GPU
    without packaged data (and ``gpu=None``) gets the V100 file (its ``gpu`` then says
    V100-16GB, so :func:`hasim.perf.transfer.bind_to_gpu` refuses or transfers)."""
    if cfg.coefficients:
        return CompactLatency(cfg)
    target = canonical_gpu(gpu) if gpu else DEFAULT_GPU
    if cfg.measurements and gpu:
        from hasim.perf.fit_gpu import fit_for_gpu

        return CompactLatency(cfg, fit_for_gpu(cfg.measurements, target))
    return CompactLatency(cfg, PACKAGED_BY_GPU.get(target, PACKAGED))
