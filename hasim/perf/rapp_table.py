"""``rapp_table``: the measured RaPP / HAS-GPU V100 latency table, interpolated.

Data (fetched with ``hasim data fetch``; Apache-2.0, github.com/KontonGu/RaPP commit
600348c, github.com/KontonGu/HAS-GPU commit fe7105e):

* ``measurements/rapp-has-gpu-v100/graph_features_all_models/<model>_<sm>.json``: one file
  per (model, SM partition); ``{"model_name": str, "profiling_result": [{"batch": int,
  "sm": int, "quota": int percent, "latency": float ms}, ...]}``, the mean of 180 timed
  runs on a V100. 69 torchvision models x SM 5..100 % step 5 x batch 1, 2, 4, 8 x quota
  10..100 % step 10 = 55,200 cells, 54,928 measured (regnet_y_128gf has no batch 8,
  out of memory; efficientnet_b7 lacks quota < 100 % at SM 5 and 10 %).
* ``measurements/has-gpu-bert-table/bert_qt.csv``: BERT QA at batch 4, SM 30/50 %, quota
  10..100 % (two cells missing), served here as model ``bert``.

Prediction, per model, in milliseconds (seconds at the protocol boundary):

* Inside the grid: piecewise-linear interpolation in the coordinates ``1/sm``, ``batch``
  and ``1/quota``. Measured latency follows ``A + K/sm`` (GPU phase spread over the SM
  share, plus a constant launch/host part) and ``H/quota`` (token waits), so linear
  interpolation in the reciprocal coordinates is exact for those laws and at worst a
  convex combination of the neighbouring cells (never outside them).
* SM below the grid: continue linearly in ``1/sm`` from the two lowest SM levels with a
  non-negative slope (the SM-dependent part grows as 1/sm, the constant part stays).
  SM above the grid (only the BERT table): the same law from the top two levels, never
  below half the top value.
* Quota below the grid (< 10 %): the token mechanism makes the wait grow as 1/quota, so
  the excess over the full-quota latency scales as ``q_min / q``:
  ``L(q) = L(q_min) + max(0, L(q_min) - L(q_max)) * (q_min / q - 1)``. Above the grid:
  flat.
* Batch above the grid (> 8): linear extrapolation from the two largest batches (4 and
  8) with a non-negative slope; batches between grid points interpolate linearly; below
  the grid: the smallest batch's value.

Missing cells are filled before prediction (the fill is recorded in ``measured``):

1. a quota gap between two measured quotas of the same (SM, batch): interpolation in
   ``1/quota``;
2. a missing full-quota cell: along the batch axis (interpolation, or extrapolation
   from the two nearest measured batches with a non-negative slope), else the nearest
   measured SM level;
3. any other cell: ``max(full-quota latency of that (SM, batch), the same (batch, quota)
   at the nearest measured SM level)``, else the nearest measured batch at that (SM,
   quota). In this data the token-throttled time at low quota does not depend on the SM
   partition or the batch, while the full-quota latency is a lower bound.

BERT: the table has batch 4 only. Other batches borrow the batch scaling of the RaPP
models of similar weight (mean batch-4 latency >= 60 ms at SM 30..50 %, full quota; 4 of
69 models): ``r_b`` = the median of ``L(b) / L(4)`` over those models at SM 30..50 %, full
quota (about 0.31, 0.57, 1, 1.76 for b = 1, 2, 4, 8), and ``L_bert(b, s, q) = r_b *
L_bert(4, s, q)`` at every quota. This is an assumption (no BERT measurement exists at
other batches); the ``compact`` model uses the same rule.

The parsed, filled table is cached as ``<cache dir>/rapp_table-<key>.npz`` where the key
hashes the source files' names, sizes and modification times (and this module's format
version), so the second load takes milliseconds.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hasim.data.locate import data_path
from hasim.errors import InputError, MissingDataError
from hasim.paths import FETCH_HINT, data_dir
from hasim.perf.base import check_point
from hasim.perf.common import (
    bracket,
    check_number,
    lognormal_noise,
    unknown_model,
)
from hasim.perf.measurements import RAPP_GRAPH_RE, read_flat_csv, read_rapp_graphs

DEFAULT_DIR = "measurements/rapp-has-gpu-v100/graph_features_all_models"
DEFAULT_BERT = "measurements/has-gpu-bert-table/bert_qt.csv"
BERT_MODEL = "bert"
RAPP_GPU = "V100-16GB"
"""The GPU the RaPP and HAS-GPU BERT tables were measured on."""
CACHE_VERSION = 4
"""Bump when parsing or filling changes so stale caches are ignored."""

BERT_HEAVY_MS = 60.0
"""RaPP models whose mean batch-4, full-quota latency at SM 30..50 % is at least this (ms)
lend BERT their batch scaling."""
BERT_SM_RANGE = (30.0, 50.0)


@dataclass
class RaPPTableConfig:
    """The measured RaPP V100 table (plus HAS-GPU's BERT table), interpolated."""

    kind: str = "rapp_table"
    dir: str = DEFAULT_DIR  # folder of <model>_<sm>.json files; relative to the data dir
    bert_table: str = DEFAULT_BERT  # HAS-GPU BERT csv, relative to the data dir; "" = no bert
    noise_cv: float = 0.03  # coefficient of variation of the mean-1 lognormal noise, >= 0
    cache: bool = True  # keep the parsed table as an .npz file for fast reloads
    cache_dir: str = ""  # folder of the cache file; "" = <data dir>/cache
    transfer: str = ""  # rule for GPUs without data: flops|bandwidth|roofline|same; "" = refuse


# --------------------------------------------------------------------------- grids


@dataclass
class Grid:
    """One model's latency grid in ms: ``values[s, b, q]`` on ascending axes.

    ``sm`` in percent, ``batch`` in requests, ``quota`` as fractions; ``measured`` marks
    cells that come straight from the data (the others were filled).
    """

    sm: tuple[float, ...]
    batch: tuple[float, ...]
    quota: tuple[float, ...]
    values: np.ndarray
    measured: np.ndarray
    _rows: list[list[list[float]]] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rows = self.values.tolist()

    def latency_ms(self, batch: float, sm_pct: float, quota: float) -> float:
        """Interpolated/extrapolated mean latency (ms); see the module docstring for rules."""
        sm = self.sm
        i, j = bracket(sm, sm_pct)
        if i == j:
            return self._at_sm(i, batch, quota)
        n = len(sm)
        if n == 1:
            return self._at_sm(0, batch, quota)
        if i < 0:  # below the grid: continue A + K/s from the two lowest levels
            v0, v1 = self._at_sm(0, batch, quota), self._at_sm(1, batch, quota)
            slope = max(0.0, v0 - v1) / (1.0 / sm[0] - 1.0 / sm[1])
            return v0 + slope * (1.0 / sm_pct - 1.0 / sm[0])
        if j >= n:  # above the grid
            v0, v1 = self._at_sm(n - 2, batch, quota), self._at_sm(n - 1, batch, quota)
            slope = max(0.0, v0 - v1) / (1.0 / sm[n - 2] - 1.0 / sm[n - 1])
            return max(0.5 * v1, v1 - slope * (1.0 / sm[n - 1] - 1.0 / sm_pct))
        vi, vj = self._at_sm(i, batch, quota), self._at_sm(j, batch, quota)
        w = (1.0 / sm_pct - 1.0 / sm[i]) / (1.0 / sm[j] - 1.0 / sm[i])
        return vi + w * (vj - vi)

    def _at_sm(self, si: int, batch: float, quota: float) -> float:
        bs = self.batch
        i, j = bracket(bs, batch)
        rows = self._rows[si]
        if i == j:
            return self._at_quota(rows[i], quota)
        n = len(bs)
        if i < 0 or n == 1:
            return self._at_quota(rows[0], quota)
        if j >= n:
            v0, v1 = self._at_quota(rows[n - 2], quota), self._at_quota(rows[n - 1], quota)
            return v1 + max(0.0, v1 - v0) * (batch - bs[n - 1]) / (bs[n - 1] - bs[n - 2])
        vi, vj = self._at_quota(rows[i], quota), self._at_quota(rows[j], quota)
        return vi + (vj - vi) * (batch - bs[i]) / (bs[j] - bs[i])

    def _at_quota(self, row: list[float], quota: float) -> float:
        qs = self.quota
        i, j = bracket(qs, quota)
        if i == j:
            return row[i]
        if i < 0:  # below the grid: the token-wait excess scales as 1/q
            return row[0] + max(0.0, row[0] - row[-1]) * (qs[0] / quota - 1.0)
        if j >= len(qs):
            return row[-1]
        w = (1.0 / quota - 1.0 / qs[i]) / (1.0 / qs[j] - 1.0 / qs[i])
        return row[i] + w * (row[j] - row[i])


@dataclass
class RaPPTables:
    """Everything loaded: per-model grids plus where they came from."""

    grids: dict[str, Grid]
    rapp_models: list[str]
    bert_ratios: dict[float, float]
    sources: list[str]

    @property
    def models(self) -> list[str]:
        """All model names, sorted."""
        return sorted(self.grids)


# --------------------------------------------------------------------------- reading


def _rapp_files(directory: Path) -> list[tuple[Path, str, int]]:
    """The ``<model>_<sm>.json[.gz]`` files of a RaPP folder (MissingDataError when none)."""
    if not directory.is_dir():
        raise MissingDataError(directory, FETCH_HINT)
    out = []
    seen: dict[tuple[str, int], Path] = {}
    for p in sorted(directory.iterdir()):
        if not (p.name.endswith(".json") or p.name.endswith(".json.gz")):
            continue
        m = RAPP_GRAPH_RE.match(p.name)
        if m is None:
            raise InputError(
                "unexpected file name in the RaPP folder", path=p, expected="<model>_<sm>.json"
            )
        model, sm = m.group("model"), int(m.group("sm"))
        if not 0 < sm <= 100:
            raise InputError(f"SM {sm} in the file name", path=p, expected="a percent in (0, 100]")
        if (model, sm) in seen:
            raise InputError(f"duplicates {seen[(model, sm)].name}", path=p)
        seen[(model, sm)] = p
        out.append((p, model, sm))
    if not out:
        raise MissingDataError(directory / "<model>_<sm>.json", FETCH_HINT)
    return out


@dataclass
class RawTable:
    """Measured cells on common axes: ``values[model, s, b, q]`` in ms, NaN where absent."""

    models: list[str]
    sm: list[float]
    batch: list[float]
    quota: list[float]
    values: np.ndarray


def _raw_table(models: list[str], rows: pd.DataFrame) -> RawTable:
    """Rows of the measurement schema onto common (SM, batch, quota) axes."""
    sms = sorted(set(rows.sm_pct.tolist()))
    bs = sorted(set(rows.batch.tolist()))
    qs = sorted(set(rows.quota_pct.tolist()))
    si = {v: k for k, v in enumerate(sms)}
    bi = {v: k for k, v in enumerate(bs)}
    qi = {v: k for k, v in enumerate(qs)}
    mi = {v: k for k, v in enumerate(models)}
    values = np.full((len(models), len(sms), len(bs), len(qs)), np.nan)
    cols = (rows.model, rows.sm_pct, rows.batch, rows.quota_pct, rows.latency_ms)
    for m, s, b, q, lat in zip(*(c.tolist() for c in cols), strict=True):
        values[mi[m], si[s], bi[b], qi[q]] = lat
    return RawTable(
        models=models,
        sm=[float(s) for s in sms],
        batch=[float(b) for b in bs],
        quota=[q / 100.0 for q in qs],
        values=values,
    )


def read_rapp_dir(directory: Path) -> RawTable:
    """Every RaPP JSON file of ``directory`` (parsed by
    :func:`hasim.perf.measurements.read_rapp_graphs`) onto common (SM, batch, quota) axes."""
    files = _rapp_files(directory)
    rows = read_rapp_graphs([p for p, _, _ in files], [m for _, m, _ in files])
    if rows.empty:
        raise InputError("no profiling entries in the RaPP folder", path=directory)
    return _raw_table(sorted({m for _, m, _ in files}), rows)


def read_bert_csv(path: Path) -> RawTable:
    """HAS-GPU's BERT table (``model,sm_pct,batch,quota_pct,latency_ms_mean``, parsed by
    :func:`hasim.perf.measurements.read_flat_csv`) as the one model ``bert``."""
    rows = read_flat_csv(path)
    return _raw_table([BERT_MODEL], rows.assign(model=BERT_MODEL))


# --------------------------------------------------------------------------- filling


def _nearest(candidates: np.ndarray, axis: list[float], k: int) -> int | None:
    """Index of the True entry of ``candidates`` nearest to axis[k] (ties: the lower)."""
    idx = np.flatnonzero(candidates)
    if idx.size == 0:
        return None
    d = np.abs(np.asarray(axis)[idx] - axis[k])
    return int(idx[int(np.argmin(d))])


def fill_missing(
    values: np.ndarray, sm: list[float], batch: list[float], quota: list[float]
) -> np.ndarray:
    """Fill NaN cells of one model's ``values[s, b, q]`` (ms) by the module's rules 1-3."""
    v = values.copy()
    ns, nb, nq = v.shape
    if not np.isfinite(v).any():
        raise InputError("a model has no measured latency at all")
    inv_q = 1.0 / np.asarray(quota)
    # 1. interior quota gaps
    for s in range(ns):
        for b in range(nb):
            row = v[s, b]
            ok = np.isfinite(row)
            if ok.sum() >= 2 and not ok.all():
                lo, hi = np.flatnonzero(ok)[[0, -1]]
                inner = np.arange(lo, hi + 1)
                gap = inner[~ok[inner]]
                # np.interp needs ascending x: 1/q descends along the quota axis
                xs, ys = inv_q[ok][::-1], row[ok][::-1]
                row[gap] = np.interp(inv_q[gap], xs, ys)
    # 2. full-quota cells
    full = v[:, :, nq - 1]
    known = np.isfinite(full)
    for s in range(ns):
        for b in range(nb):
            if known[s, b]:
                continue
            have = np.flatnonzero(known[s])
            val = math.nan
            if have.size:
                below, above = have[have < b], have[have > b]
                if below.size and above.size:
                    b0, b1 = below[-1], above[0]
                    w = (batch[b] - batch[b0]) / (batch[b1] - batch[b0])
                    val = full[s, b0] + w * (full[s, b1] - full[s, b0])
                elif below.size >= 2:
                    b0, b1 = below[-2], below[-1]
                    slope = max(0.0, full[s, b1] - full[s, b0]) / (batch[b1] - batch[b0])
                    val = full[s, b1] + slope * (batch[b] - batch[b1])
                else:
                    val = full[s, int(have[np.argmin(np.abs(have - b))])]
            if math.isnan(val):
                s2 = _nearest(known[:, b], sm, s)
                if s2 is not None:
                    val = full[s2, b]
            if math.isnan(val):
                row = v[s, b]
                val = float(np.nanmin(row)) if np.isfinite(row).any() else float(np.nanmin(v))
            full[s, b] = val
    known_after1 = np.isfinite(v)
    # 3. remaining cells
    for s in range(ns):
        for b in range(nb):
            for q in range(nq - 1):
                if known_after1[s, b, q]:
                    continue
                s2 = _nearest(known_after1[:, b, q], sm, s)
                if s2 is not None:
                    other = v[s2, b, q]
                else:
                    b2 = _nearest(known_after1[s, :, q], batch, b)
                    other = v[s, b2, q] if b2 is not None else full[s, b] * quota[-1] / quota[q]
                v[s, b, q] = max(full[s, b], other)
    return v


def bert_batch_ratios(raw: RawTable, ref_batch: float) -> dict[float, float]:
    """Median ``L(b) / L(ref_batch)`` at full quota, SM 30..50 %, over heavy RaPP models."""
    if ref_batch not in raw.batch:
        return {b: 1.0 for b in raw.batch}
    r = raw.batch.index(ref_batch)
    s_idx = [k for k, s in enumerate(raw.sm) if BERT_SM_RANGE[0] <= s <= BERT_SM_RANGE[1]]
    if not s_idx:
        s_idx = list(range(len(raw.sm)))
    full = raw.values[:, s_idx][..., -1]  # (models, s, b)
    ref = full[:, :, r]
    ok = np.isfinite(ref)
    mean_ref = np.where(ok, ref, 0.0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)
    heavy = np.flatnonzero(mean_ref >= BERT_HEAVY_MS)
    if heavy.size == 0:
        heavy = np.arange(len(raw.models))
    out: dict[float, float] = {}
    for k, b in enumerate(raw.batch):
        ratio = full[heavy, :, k] / ref[heavy]
        ratio = ratio[np.isfinite(ratio)]
        out[b] = float(np.median(ratio)) if ratio.size else float(b / ref_batch)
    out[ref_batch] = 1.0
    return out


def expand_bert(
    raw: RawTable, ratios: dict[float, float]
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Filled BERT grid on the batch axis of ``ratios`` (values, measured mask, batch axis):
    ``L(b, s, q) = r_b * L(b0, s, q)`` for the table's single batch ``b0``."""
    measured0 = np.isfinite(raw.values[0])
    base = fill_missing(raw.values[0], raw.sm, raw.batch, raw.quota)
    if len(raw.batch) != 1:
        return base, measured0, list(raw.batch)
    b0 = raw.batch[0]
    batches = sorted(set(ratios) | {b0})
    ns, _, nq = base.shape
    vals = np.empty((ns, len(batches), nq))
    measured = np.zeros((ns, len(batches), nq), dtype=bool)
    for k, b in enumerate(batches):
        vals[:, k, :] = base[:, 0, :] * (ratios.get(b, 1.0) / ratios.get(b0, 1.0))
        if b == b0:
            measured[:, k, :] = measured0[:, 0, :]
    return vals, measured, batches


# --------------------------------------------------------------------------- loading + cache


def _stat_key(paths: list[Path]) -> str:
    h = hashlib.sha256(f"hasim-rapp-table/{CACHE_VERSION}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"\0{p.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _build(directory: Path, bert: Path | None) -> dict[str, np.ndarray]:
    raw = read_rapp_dir(directory)
    filled = np.empty_like(raw.values)
    for m in range(len(raw.models)):
        filled[m] = fill_missing(raw.values[m], raw.sm, raw.batch, raw.quota)
    arrays: dict[str, np.ndarray] = {
        "models": np.asarray(raw.models),
        "sm": np.asarray(raw.sm),
        "batch": np.asarray(raw.batch),
        "quota": np.asarray(raw.quota),
        "values": filled,
        "measured": np.isfinite(raw.values),
    }
    if bert is not None:
        braw = read_bert_csv(bert)
        ratios = bert_batch_ratios(raw, braw.batch[0])
        bvals, bmeas, bbatch = expand_bert(braw, ratios)
        arrays.update(
            {
                "bert_sm": np.asarray(braw.sm),
                "bert_batch": np.asarray(bbatch),
                "bert_quota": np.asarray(braw.quota),
                "bert_values": bvals,
                "bert_measured": bmeas,
                "bert_ratio_batch": np.asarray(list(ratios)),
                "bert_ratio": np.asarray(list(ratios.values())),
            }
        )
    return arrays


def _tables(arrays: dict[str, np.ndarray], sources: list[str]) -> RaPPTables:
    axes = tuple(float(x) for x in arrays["sm"]), tuple(float(x) for x in arrays["batch"])
    quota = tuple(float(x) for x in arrays["quota"])
    models = [str(m) for m in arrays["models"]]
    grids = {
        m: Grid(axes[0], axes[1], quota, arrays["values"][k], arrays["measured"][k])
        for k, m in enumerate(models)
    }
    ratios: dict[float, float] = {}
    if "bert_values" in arrays:
        grids[BERT_MODEL] = Grid(
            tuple(float(x) for x in arrays["bert_sm"]),
            tuple(float(x) for x in arrays["bert_batch"]),
            tuple(float(x) for x in arrays["bert_quota"]),
            arrays["bert_values"],
            arrays["bert_measured"],
        )
        ratios = dict(
            zip(
                (float(b) for b in arrays["bert_ratio_batch"]),
                (float(r) for r in arrays["bert_ratio"]),
                strict=True,
            )
        )
    return RaPPTables(grids, models, ratios, sources)


def default_cache_dir() -> Path:
    """``<data dir>/cache``."""
    return data_dir() / "cache"


def load_rapp_tables(
    directory: str | Path = DEFAULT_DIR,
    bert_table: str | Path | None = DEFAULT_BERT,
    *,
    cache_dir: str | Path | None = None,
    cache: bool = True,
) -> RaPPTables:
    """Load (or read from cache) the RaPP grids plus BERT.

    ``directory`` and ``bert_table`` are relative to the data dir unless absolute;
    ``bert_table`` None or "" leaves BERT out. Raises MissingDataError (with the fetch
    command) when a source is absent and InputError naming the file when one is malformed.
    """
    d = data_path(directory)
    bert = data_path(bert_table) if bert_table else None
    files = [p for p, _, _ in _rapp_files(d)]
    sources = [str(d)] + ([str(bert)] if bert is not None else [])
    key_paths = files + ([bert] if bert is not None else [])
    cdir = Path(cache_dir) if cache_dir else default_cache_dir()
    cfile = cdir / f"rapp_table-{_stat_key(key_paths)}.npz"
    if cache and cfile.is_file():
        try:
            with np.load(cfile, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            return _tables(arrays, sources)
        except (OSError, ValueError, KeyError):
            pass  # unreadable or stale cache: rebuild
    arrays = _build(d, bert)
    if cache:
        _write_cache(cfile, arrays)
    return _tables(arrays, sources)


def _write_cache(cfile: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically (temporary file + rename); failures only cost speed."""
    tmp: str | None = None
    try:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".rapp_table-", suffix=".npz", dir=cfile.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.chmod(tmp, 0o644)
        os.replace(tmp, cfile)
        tmp = None
    except OSError:
        pass  # e.g. a read-only data dir
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


# --------------------------------------------------------------------------- the model


class RaPPTableLatency:
    """LatencyModel interpolating the measured RaPP V100 table (and the BERT table)."""

    name = "rapp_table"
    gpu = RAPP_GPU

    def __init__(self, cfg: RaPPTableConfig) -> None:
        check_number("noise_cv", cfg.noise_cv)
        self.cfg = cfg
        self.tables = load_rapp_tables(
            cfg.dir, cfg.bert_table or None, cache_dir=cfg.cache_dir or None, cache=cfg.cache
        )
        self.grids = self.tables.grids
        self.noise_cv = float(cfg.noise_cv)

    @property
    def models(self) -> list[str]:
        """Known model names, sorted."""
        return self.tables.models

    def knows(self, model: str) -> bool:
        """True for the 69 RaPP models and ``bert`` (when its table is configured)."""
        return model in self.grids

    def latency_ms(self, model: str, batch: float, sm_pct: float, quota: float) -> float:
        """Mean latency in ms (no input checks; see :meth:`mean_latency_s`)."""
        g = self.grids.get(model)
        if g is None:
            raise unknown_model(self.name, model, self.grids)
        return g.latency_ms(batch, sm_pct, quota)

    def mean_latency_s(self, model: str, batch: int, sm_pct: float, quota: float) -> float:
        """Mean latency (s) of a batch at SM partition ``sm_pct`` (%) and time quota (fraction)."""
        check_point(batch, sm_pct, quota)
        return self.latency_ms(model, batch, sm_pct, quota) / 1000.0

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` lognormal factors with mean 1 and coefficient of variation ``noise_cv``."""
        return lognormal_noise(rng, n, self.noise_cv)


def build_rapp_table(cfg: RaPPTableConfig) -> RaPPTableLatency:
    """Build the table latency model (loads or reads the cached table)."""
    return RaPPTableLatency(cfg)
