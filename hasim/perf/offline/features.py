"""Features for learned latency models: per-model static features, GPU specs, and the
RaPP-style small per-model profile.

* :func:`model_features`: the committed table ``hasim/perf/data/model_features.csv``
  (MACs, parameters, activation bytes, operator counts, depth... of the 69 RaPP models
  plus ``bert``), made by our own code (``calibration/model_features.py``) from the
  torchvision architecture definitions; columns and units in
  ``hasim/perf/data/model_features.md``.
* :func:`gpu_features`: datasheet figures of the GPUs hasim simulates (from the hardware
  catalogue, :mod:`hasim.hardware`).
* :func:`prior_profile`: the 11 latencies RaPP's protocol profiles per model (batch 1 at
  six SM levels, full quota; batch 4 at full SM and five quotas), read from a
  measurement table (:func:`hasim.perf.measurements.load_measurements`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hasim import hardware
from hasim.errors import InputError, MissingDataError
from hasim.perf.measurements import COLUMNS as MEASUREMENT_COLUMNS

FEATURES_CSV = Path(__file__).resolve().parents[1] / "data" / "model_features.csv"

FEATURE_COLUMNS = (
    "model", "family", "input_shape", "params", "param_bytes", "macs", "flops",
    "activation_bytes", "activation_max_bytes", "depth", "kernel_ops", "n_conv",
    "n_conv_depthwise", "n_conv_grouped", "n_linear", "n_bn", "n_norm", "n_relu", "n_gelu",
    "n_silu", "n_hardswish", "n_sigmoid", "n_pool", "n_attention", "n_add", "n_mul", "n_cat",
    "n_bmm", "n_softmax",
)  # fmt: skip
"""Columns of ``model_features.csv``; all but the first three are non-negative integers."""


@lru_cache(maxsize=4)
def _read_features(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        if p == FEATURES_CSV:
            raise MissingDataError(p, "reinstall hasim (the file ships with the package)")
        raise InputError("model features file not found", path=p, expected="an existing CSV")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"unreadable CSV: {e}", path=p) from None
    missing = [c for c in FEATURE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}",
            path=p,
            expected="the columns written by calibration/model_features.py",
        )
    for col in FEATURE_COLUMNS[3:]:
        v = pd.to_numeric(df[col], errors="coerce")
        bad = ~(np.isfinite(v.to_numpy(dtype=float)) & (v.to_numpy(dtype=float) >= 0))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{col} = {df[col].iloc[k]!r}", path=p, line=k + 2, column=col,
                expected="a number >= 0",
            )  # fmt: skip
        df[col] = v.astype(np.int64)
    dup = df["model"].duplicated().to_numpy()
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        raise InputError(f"model {df['model'].iloc[k]!r} appears twice", path=p, line=k + 2)
    return df


def model_features(path: str | Path | None = None) -> pd.DataFrame:
    """Static per-model features (one row per model; a copy of the cached table).

    ``path`` defaults to the packaged ``hasim/perf/data/model_features.csv``. Sizes are
    for one input (batch 1): ``macs``/``flops`` of conv/linear/matmul ops, ``params``,
    ``activation_bytes`` (FP32), operator counts ``n_*``, ``depth`` (leaf-module calls),
    ``kernel_ops`` (aten ops, views excluded).
    """
    return _read_features(str(Path(path) if path else FEATURES_CSV)).copy()


# --------------------------------------------------------------------------- GPUs

GPUS: dict[str, dict[str, Any]] = {
    name: {k: v for k, v in spec.features().items() if k != "name"}
    for name, spec in hardware.CATALOGUE.items()
}
"""Datasheet figures per GPU name, read from the hardware catalogue (:mod:`hasim.hardware`)."""

GPU_ALIASES = hardware.ALIASES
"""Other spellings accepted by :func:`gpu_features` (case-insensitive)."""


def known_gpus() -> list[str]:
    """Canonical GPU names :func:`gpu_features` knows."""
    return hardware.known_gpus()


def canonical_gpu(gpu: str) -> str:
    """The canonical name of ``gpu`` (case-insensitive, aliases resolved) or InputError."""
    return hardware.canonical_gpu(gpu)


def gpu_features(gpu: str) -> dict[str, Any]:
    """Datasheet features of ``gpu`` (e.g. ``V100-16GB``, ``A100-80GB``, ``H100``).

    Keys: ``name``, ``sm_count``, ``peak_fp32_tflops``, ``peak_fp16_tensor_tflops``
    (dense), ``mem_bandwidth_gbs`` (GB/s), ``memory_gb``, ``l2_mb``, ``boost_clock_mhz``,
    ``mig_max_instances`` (0 = no MIG), ``form_factor``. A new dict each call.
    """
    return hardware.gpu_spec(gpu).features()


# --------------------------------------------------------------------------- prior profile

PROFILE_SM = (5, 10, 30, 60, 80, 100)
"""SM levels (%) profiled at batch 1, full quota."""
PROFILE_QUOTA = (20, 40, 60, 80, 100)
"""Quotas (%) profiled at batch 4, full SM."""
PROFILE_CELLS: tuple[tuple[str, int, float, float], ...] = tuple(
    [(f"lat_ms_b1_sm{s}_q100", 1, float(s), 100.0) for s in PROFILE_SM]
    + [(f"lat_ms_b4_sm100_q{q}", 4, 100.0, float(q)) for q in PROFILE_QUOTA]
)
"""(feature name, batch, SM %, quota %) of the 11 profiled cells, in order."""


def prior_profile(
    table: pd.DataFrame,
    model: str,
    *,
    gpu: str | None = None,
    source: str | None = None,
    statistic: str = "mean",
) -> dict[str, float]:
    """RaPP's small per-model profile from a measurement table, as a flat dict.

    Latencies (ms) at batch 1, quota 100 %, SM 5/10/30/60/80/100 % (keys
    ``lat_ms_b1_sm<s>_q100``) and at batch 4, SM 100 %, quota 20/40/60/80/100 % (keys
    ``lat_ms_b4_sm100_q<q>``): 11 values in :data:`PROFILE_CELLS` order. Only MPS rows
    are used (no MIG slice, one process, the given ``statistic``). ``gpu`` and
    ``source`` filter the table; when several GPUs remain an InputError asks for
    ``gpu``; when several sources remain, the one with the most rows for the model is
    used (in a full ``load_measurements`` table: ``rapp_graph``). Several rows for one
    cell are averaged; a cell that was not measured is NaN. Raises InputError when the
    table has no such rows for ``model``.
    """
    missing = [c for c in MEASUREMENT_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(
            f"measurement table lacks column(s) {', '.join(missing)}",
            expected="a table from hasim.perf.measurements.load_measurements",
        )
    rows = table[(table["model"] == model) & (table["statistic"] == statistic)]
    rows = rows[rows["mig_slice"].fillna("") == ""]
    if "procs" in rows.columns:
        rows = rows[rows["procs"] == 1]
    if gpu is not None:
        rows = rows[rows["gpu"] == canonical_gpu(gpu)]
    if source is not None:
        rows = rows[rows["source"] == source]
    if rows.empty:
        where = "".join(
            f", {k} {v!r}" for k, v in (("gpu", gpu), ("source", source)) if v is not None
        )
        known = sorted(set(table["model"]))
        shown = ", ".join(known[:6]) + (", ..." if len(known) > 6 else "")
        raise InputError(
            f"no {statistic} MPS latencies for model {model!r}{where}",
            expected=f"a model of the table ({len(known)}: {shown})",
        )
    gpus = sorted(set(rows["gpu"]))
    if len(gpus) > 1:
        raise InputError(
            f"model {model!r} was measured on several GPUs ({', '.join(gpus)})",
            expected="prior_profile(..., gpu=<one of them>)",
        )
    counts = rows["source"].value_counts()
    if len(counts) > 1:
        best = counts.max()
        rows = rows[rows["source"] == sorted(counts.index[counts == best])[0]]
    b = rows["batch"].to_numpy(dtype=float)
    s = rows["sm_pct"].to_numpy(dtype=float)
    q = rows["quota_pct"].to_numpy(dtype=float)
    lat = rows["latency_ms"].to_numpy(dtype=float)
    out: dict[str, float] = {}
    for name, cb, cs, cq in PROFILE_CELLS:
        hit = (b == cb) & np.isclose(s, cs) & np.isclose(q, cq)
        out[name] = float(lat[hit].mean()) if hit.any() else math.nan
    return out
