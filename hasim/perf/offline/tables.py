"""Training tables of the predictor: measurements -> rows, prior profiles, static features.

What ``hasim perf train`` / ``evaluate`` build before fitting
(:func:`hasim.perf.offline.train.fit_predictor`); a run only loads an artifact
(:mod:`hasim.perf.predictor`). Times in ms, SM and quota in percent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hasim.errors import InputError
from hasim.perf.predictor import (
    DEFAULT_GPU,
    PROFILE_QUOTA,
    PROFILE_QUOTA_BATCH,
    PROFILE_QUOTA_SM,
    PROFILE_SM,
    PROFILE_SM_BATCH,
    PriorProfile,
    clean_static,
)

RAPP_SOURCE = {
    "dataset": "RaPP graph_features_all_models: mean latency (ms, 180 runs) of 69 torchvision "
    "models x SM 5..100 % x batch 1,2,4,8 x quota 10..100 %, NVIDIA V100 16 GB",
    "repository": "https://github.com/KontonGu/RaPP",
    "commit": "600348c1e0e16ab57eba0ba8938528985442495e",
    "path": "data/graph_features_all_models/",
    "license": "Apache-2.0",
    "copyright": "Copyright 2025 HAS-GPU Authors, KontonGu (Jianfeng Gu)",
}
BERT_SOURCE = {
    "dataset": "HAS-GPU BERT table: bert-qt, batch 4, SM 30/50 %, quota 10..100 % (ms, V100)",
    "repository": "https://github.com/KontonGu/HAS-GPU",
    "commit": "fe7105e",
    "path": "internal/controller/tmp_database.go",
    "license": "Apache-2.0",
}

TABLE_COLUMNS = ("gpu", "model", "batch", "sm_pct", "quota_pct", "latency_ms", "source")

# --------------------------------------------------------------------------- tables


def normalize_table(table: pd.DataFrame, gpu: str | None = None) -> pd.DataFrame:
    """The rows usable for training, in the columns :data:`TABLE_COLUMNS`.

    Accepts the one-schema measurement table of :mod:`hasim.perf.measurements` (``gpu,
    model, batch, sm_pct, quota_pct, mig_slice, statistic, latency_ms, source``) or any
    frame with at least ``model, batch, sm_pct, quota_pct, latency_ms``. Keeps mean
    latencies measured on a whole GPU under an MPS limit (``sm_pct`` set, no MIG slice);
    ``gpu`` keeps one GPU only. Duplicated keys are averaged.
    """
    need = {"model", "batch", "sm_pct", "quota_pct", "latency_ms"}
    missing = need - set(table.columns)
    if missing:
        raise InputError(
            f"measurement table lacks columns {sorted(missing)}",
            expected="columns " + ", ".join(TABLE_COLUMNS),
        )
    df = table.copy()
    if "gpu" not in df:
        df["gpu"] = DEFAULT_GPU
    if "source" not in df:
        df["source"] = ""
    if "statistic" in df:
        df = df[df["statistic"].astype(str) == "mean"]
    if "mig_slice" in df:
        df = df[df["mig_slice"].fillna("").astype(str) == ""]
    if "procs" in df:
        df = df[pd.to_numeric(df["procs"], errors="coerce").fillna(1) == 1]
    if gpu is not None:
        df = df[df["gpu"] == gpu]
    for c in ("batch", "sm_pct", "quota_pct", "latency_ms"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    ok = (
        df["sm_pct"].between(0, 100, inclusive="right")
        & df["quota_pct"].between(0, 100, inclusive="right")
        & (df["batch"] >= 1)
        & (df["latency_ms"] > 0)
        & np.isfinite(df["latency_ms"])
    )
    df = df[ok]
    keys = ["gpu", "model", "batch", "sm_pct", "quota_pct"]
    out = df.groupby(keys, as_index=False, sort=True).agg(
        latency_ms=("latency_ms", "mean"), source=("source", "first")
    )
    out["model"] = out["model"].astype(str)
    out["gpu"] = out["gpu"].astype(str)
    return out[list(TABLE_COLUMNS)].reset_index(drop=True)


def raw_frame(raw: Any, source: str) -> pd.DataFrame:
    """The measured (non-NaN) cells of a :class:`hasim.perf.rapp_table.RawTable` as a table
    in :data:`TABLE_COLUMNS`."""
    m, s, b, q = np.nonzero(np.isfinite(raw.values))
    return normalize_table(
        pd.DataFrame(
            {
                "gpu": DEFAULT_GPU,
                "model": np.asarray(raw.models, dtype=object)[m],
                "batch": np.asarray(raw.batch)[b],
                "sm_pct": np.asarray(raw.sm)[s],
                "quota_pct": np.round(np.asarray(raw.quota)[q] * 100.0, 6),
                "latency_ms": raw.values[m, s, b, q],
                "source": source,
            }
        )
    )


def rapp_table_frame(directory: str | Path) -> pd.DataFrame:
    """The measured cells of a RaPP ``graph_features_all_models`` folder (no filled cells),
    source ``rapp_graph``."""
    from hasim.perf.rapp_table import read_rapp_dir

    return raw_frame(read_rapp_dir(Path(directory)), "rapp_graph")


def bert_table_frame(path: str | Path) -> pd.DataFrame:
    """HAS-GPU's BERT csv (batch 4, SM 30/50 %) as rows, source ``hasgpu_bert``."""
    from hasim.perf.rapp_table import read_bert_csv

    return raw_frame(read_bert_csv(Path(path)), "hasgpu_bert")


def profile_mask(batch: Any, sm_pct: Any, quota_pct: Any) -> np.ndarray:
    """True for the cells of the 11-point prior profile."""
    b = np.asarray(batch, dtype=float)
    s = np.asarray(sm_pct, dtype=float)
    q = np.asarray(quota_pct, dtype=float)
    sm_curve = (b == PROFILE_SM_BATCH) & np.isclose(q, 100.0) & np.isin(s, PROFILE_SM)
    q_curve = (
        (b == PROFILE_QUOTA_BATCH) & np.isclose(s, PROFILE_QUOTA_SM) & np.isin(q, PROFILE_QUOTA)
    )
    return sm_curve | q_curve


def _nearest_value(cells: pd.DataFrame, batch: float, sm: float, quota: float) -> float:
    """The latency at (batch, sm, quota), else the nearest measured cell (log distance)."""
    exact = cells[(cells.batch == batch) & (cells.sm_pct == sm) & (cells.quota_pct == quota)]
    if len(exact):
        return float(exact.latency_ms.iloc[0])
    d = (
        np.abs(np.log(cells.batch / batch)) * 2.0
        + np.abs(np.log(cells.sm_pct / sm))
        + np.abs(np.log(cells.quota_pct / quota)) * 4.0
    )
    return float(cells.latency_ms.iloc[int(np.argmin(d.to_numpy()))])


def extract_profiles(table: pd.DataFrame) -> dict[tuple[str, str], PriorProfile]:
    """Prior profiles of every (gpu, model) in a normalized table.

    A missing profile point takes the nearest measured cell of that model and the profile
    records it in ``note``; a model with none of its 11 points measured gets no profile.
    """
    out: dict[tuple[str, str], PriorProfile] = {}
    for (gpu, model), cells in table.groupby(["gpu", "model"], sort=True):
        have = profile_mask(cells.batch, cells.sm_pct, cells.quota_pct)
        if not have.any():
            continue
        sm_curve = tuple(_nearest_value(cells, PROFILE_SM_BATCH, s, 100.0) for s in PROFILE_SM)
        q_curve = tuple(
            _nearest_value(cells, PROFILE_QUOTA_BATCH, PROFILE_QUOTA_SM, q) for q in PROFILE_QUOTA
        )
        note = "" if have.sum() == 11 else f"{11 - int(have.sum())} point(s) from nearest cells"
        out[(str(gpu), str(model))] = PriorProfile(str(model), str(gpu), sm_curve, q_curve, note)
    return out


def derived_profile(
    latency_ms: Callable[[float, float, float], float], model: str, gpu: str, note: str
) -> PriorProfile:
    """A prior profile computed by ``latency_ms(batch, sm_pct, quota_fraction)`` at the 11
    profile points (for a model that was not profiled this way; ``note`` says how)."""
    sm_curve = tuple(float(latency_ms(PROFILE_SM_BATCH, s, 1.0)) for s in PROFILE_SM)
    q_curve = tuple(
        float(latency_ms(PROFILE_QUOTA_BATCH, PROFILE_QUOTA_SM, q / 100.0)) for q in PROFILE_QUOTA
    )
    return PriorProfile(model, gpu, sm_curve, q_curve, note)


# --------------------------------------------------------------------------- static features

StaticSource = Callable[[], pd.DataFrame | None]
"""A callable returning per-model architecture features (index: model name) or None."""


def default_static_features() -> pd.DataFrame | None:
    """Per-model architecture features of the packaged ``hasim/perf/data/model_features.csv``
    (:func:`hasim.perf.offline.features.model_features`), the numeric columns of
    :data:`hasim.perf.predictor.STATIC_COLUMNS` only; None when it has none."""
    from hasim.perf.offline.features import model_features

    return clean_static(model_features())


def prepare_table(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple[str, str], Any]]:
    """The normalised rows (``normalize_table``) of the (GPU, model) pairs with a prior
    profile, renumbered, and the profiles (``extract_profiles``): what the evaluations
    score."""
    tab = normalize_table(table)
    profiles = extract_profiles(tab)
    tab = tab[[(g, m) in profiles for g, m in zip(tab.gpu, tab.model, strict=True)]]
    return tab.reset_index(drop=True), profiles
