"""One table for every measured inference latency: loaders for the public data sets.

Schema (one row per measured latency; :data:`COLUMNS` then :data:`CONTEXT_COLUMNS`):

============  =========  ===============================================================
column        type       meaning
============  =========  ===============================================================
gpu           str        GPU the measurement ran on, e.g. ``V100-16GB``, ``A100-80GB``
model         str        model name (torchvision names for the CNNs; ``bert`` ...)
batch         int >= 1   requests per inference call
sm_pct        float      MPS SM limit in % of the GPU's SMs, (0, 100]; NaN for rows
                         measured in a MIG slice without an MPS limit
quota_pct     float      time quota in % of the scheduling window, (0, 100]; 100 where
                         no time slicing was applied
mig_slice     str        MIG slice (``1g.10gb``, ``7g.80gb``...), ``""`` for a whole GPU
statistic     str        ``mean``, ``min``, ``max`` or ``p<q>`` (``p50``, ``p99``...)
latency_ms    float > 0  the latency statistic in milliseconds
source        str        data set id (see below)
seq_len       int >= 0   input sequence length of a language model; 0 = not applicable
procs         int >= 1   copies of the model running at once in the same GPU / slice
                         (ParvaGPU's "Workload Number"); 1 = alone
============  =========  ===============================================================

``seq_len`` and ``procs`` are context columns: they distinguish measurements that the
nine main columns would otherwise merge (MIGProfiler's sequence-length sweeps,
ParvaGPU's co-located processes). Tables without them (e.g. calibration output) get
the defaults 0 and 1.

Sources (``source`` id: where, units, what is kept):

* ``rapp_graph``: ``rapp-has-gpu-v100/graph_features_all_models/<model>_<sm>.json``
  (RaPP / HAS-GPU, Apache-2.0): mean of 180 runs, ms, V100, SM x quota x batch;
  54,928 rows.
* ``rapp_runtime`` / ``rapp_opruntime``: ``runtime_features/<model>_<b>_<sm>.json.gz``
  and ``op_runtime_features_all_models/...``: the end-to-end ``latency`` field only
  (mean of 150 runs, ms, MPS SM only: quota 100). Per-operator times:
  :func:`load_operator_times`.
* ``hasgpu_bert``: ``has-gpu-bert-table/bert_qt.csv`` (HAS-GPU, Apache-2.0): BERT QA at
  batch 4, mean ms, V100; ``seq_len`` 384 (MLPerf BERT's fixed input length; not stated
  in the file). Any CSV with the columns ``model,sm_pct,batch,quota_pct,latency_ms_mean``
  is read the same way (a V100 table).
* ``migprof_40g`` / ``migprof_80g``: ``migprofiler-a100-mig`` (MIT) CSVs, mean latency
  in ms per MIG slice; the slice comes from a ``mig_profile`` or ``instance_memory``
  column or from the file name (``_MIG_profile_<id>``, ``_infer_<mem>g_``); the GPU from a
  folder named ``A100-40g``/``A100-80g`` or from the slice names.
* ``parvagpu``: ``parvagpu-a100-mig-mps/prof_data/<model>.csv`` (MIT), A100 80 GB,
  ``Latency`` in **seconds** (converted to ms; 1 ms resolution), the mean over the run
  (``total_time / steps`` in the authors' ``dl_infer_runtime.py``); rows ``0,0`` (not run)
  are dropped; ``Workload Number`` -> ``procs``; BERT there is bert-large at 128 tokens.
  Model names follow torchvision (``inceptionv3`` -> ``inception_v3``,
  ``mobilenetv2`` -> ``mobilenet_v2``).
* our own tables (calibration output): Parquet (or CSV) files already in this schema,
  validated and passed through with their own ``source``.

Not latencies, so not in this table: FaST-GShare's QPS profiles (read them with
:func:`load_fastgshare_qps`), Orion kernel profiles, Vidur operator profiles, and the
``DERIVED_*`` flattened views (copies of the raw files beside them). A directory scan
lists every file it skipped, with the reason, in ``df.attrs["skipped"]``.

When several files hold the same measurement (identical in every column but
``source``: MIGProfiler's per-profile and merged CSVs, the 312 identical files of the
two RaPP runtime folders) only the copy from the first file is kept, in the order of
:data:`SOURCE_ORDER` then path; ``df.attrs["duplicates_dropped"]`` counts the rest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hasim import hardware
from hasim.errors import InputError, MissingDataError
from hasim.paths import FETCH_HINT, data_dir
from hasim.perf.common import read_json

COLUMNS = (
    "gpu",
    "model",
    "batch",
    "sm_pct",
    "quota_pct",
    "mig_slice",
    "statistic",
    "latency_ms",
    "source",
)
"""The main columns of a measurement table, in order."""
CONTEXT_COLUMNS = ("seq_len", "procs")
"""Optional context columns (defaults 0 and 1)."""
ALL_COLUMNS = COLUMNS + CONTEXT_COLUMNS
CONTEXT_DEFAULTS = {"seq_len": 0, "procs": 1}
TEXT_COLUMNS = ("gpu", "model", "mig_slice", "statistic", "source")
RUN_ID = "_run"
"""Optional hidden per-row run identity (e.g. a start timestamp) used to drop copies."""

SOURCE_ORDER = (
    "rapp_graph",
    "rapp_runtime",
    "rapp_opruntime",
    "hasgpu_bert",
    "migprof_40g",
    "migprof_80g",
    "parvagpu",
)
"""Preference order when the same measurement appears in several sources."""

RAPP_GPU = "V100-16GB"
PARVA_GPU = "A100-80GB"
HASGPU_BERT_SEQ_LEN = 384
PARVA_BERT_SEQ_LEN = 128

FLAT_HEADER = ("model", "sm_pct", "batch", "quota_pct", "latency_ms_mean")
PARVA_HEADER = ("Mig instance", "Batch size", "Workload Number", "Throughput", "Latency")
QPS_HEADER = ("gpuName", "model", "quota", "sm", "qps")

PARVA_SLICES = {p.compute_slices: p.name for p in reversed(hardware.gpu_spec(PARVA_GPU).mig)}
"""ParvaGPU's ``Mig instance`` (GPCs) -> A100 80 GB MIG slice (the smallest-memory profile
of that size: 1g.10gb .. 7g.80gb)."""
PARVA_MODELS = {"inceptionv3": "inception_v3", "mobilenetv2": "mobilenet_v2"}
PARVA_MAX_LATENCY_S = 100.0
"""A ParvaGPU ``Latency`` above this many seconds means the file is not in seconds."""
PARVA_RATIO_TOL = 3.0
"""``Latency x Throughput / Batch size`` is 0.8..1.33 in the real files (1 ms rounding);
outside [1/3, 3] the units are wrong (milliseconds give ~1000)."""

_A100_SLICES = {g: {p.name for p in hardware.gpu_spec(g).mig} for g in ("A100-40GB", "A100-80GB")}
MIG_SLICE_GPUS = {
    name: tuple(g for g, names in _A100_SLICES.items() if name in names)
    for names in _A100_SLICES.values()
    for name in names
}
"""The A100 variants a MIG slice name exists on (``1g.10gb``: both)."""
MIG_PROFILE_IDS = {
    gpu: {p.profile_id: p.name for p in hardware.gpu_spec(gpu).mig}
    for gpu in ("A100-40GB", "A100-80GB")
}
"""NVIDIA's MIG GPU-instance profile ids (``nvidia-smi mig -lgip``) -> slice names."""
MIG_MEMORY = {
    "A100-40GB": {5: "1g.5gb", 10: "2g.10gb", 20: "3g.20gb", 40: "7g.40gb"},
    "A100-80GB": {10: "1g.10gb", 20: "2g.20gb", 40: "3g.40gb", 80: "7g.80gb"},
}
"""MIGProfiler's ``instance_memory`` (GB) -> slice names (the slices it measured)."""

SLICE_RE = re.compile(r"^[1-7]g\.\d+gb$")
STAT_RE = re.compile(r"^(mean|min|max|p(100|\d{1,2}(\.\d+)?))$")
RAPP_GRAPH_RE = re.compile(r"^(?P<model>.+)_(?P<sm>\d+)\.json(\.gz)?$")
RAPP_RUNTIME_RE = re.compile(r"^(?P<model>.+)_(?P<batch>\d+)_(?P<sm>\d+)\.json(\.gz)?$")
MIGPROF_GPU_RE = re.compile(r"^a100-(40|80)g(b)?$", re.IGNORECASE)


# --------------------------------------------------------------------------- helpers


def _resolve(path: str | Path) -> Path:
    """``path`` as given when it exists, else relative to the data dir; else MissingDataError."""
    p = Path(path).expanduser()
    if p.exists():
        return p
    if not p.is_absolute():
        q = data_dir() / p
        if q.exists():
            return q
    raise MissingDataError(p, FETCH_HINT)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _read_csv(path: Path, **kw: Any) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise InputError(f"unreadable CSV: {msg}", path=path) from None


def _csv_header(path: Path) -> tuple[str, ...] | None:
    """The first line of a CSV file split on commas (None when unreadable or empty)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError):
        return None
    line = line.strip().lstrip("\ufeff")
    if not line:
        return None
    return tuple(c.strip() for c in line.split(","))


def _numeric(
    df: pd.DataFrame, col: str, path: Path, *, line0: int = 2, integer: bool = False
) -> np.ndarray:
    """Column ``col`` as floats; InputError at the first value that is not a finite number."""
    raw = df[col]
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(vals)
    if integer:
        bad |= np.isfinite(vals) & (vals != np.round(vals))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{col} = {raw.iloc[k]!r}",
            path=path,
            line=k + line0,
            column=col,
            expected="an integer" if integer else "a finite number",
        )
    return vals


def _first_bad(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


Rows = dict[str, np.ndarray]
"""One file's rows: the schema's columns as equally long arrays."""


def _rows(**cols: Any) -> Rows:
    """Rows from column arrays/scalars (scalars broadcast; context columns default)."""
    n = max((len(v) for v in cols.values() if isinstance(v, np.ndarray | list)), default=0)
    out: Rows = {}
    for c in ALL_COLUMNS:
        v = cols.get(c, CONTEXT_DEFAULTS.get(c))
        if v is None:
            raise KeyError(c)
        if isinstance(v, np.ndarray | list):
            arr = np.asarray(v, dtype=object if c in TEXT_COLUMNS else float)
        else:
            arr = np.full(n, v, dtype=object if c in TEXT_COLUMNS else float)
        out[c] = arr
    return out


def _rows_of(df: pd.DataFrame) -> Rows:
    return {c: df[c].to_numpy(dtype=object if c in TEXT_COLUMNS else float) for c in ALL_COLUMNS}


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    """Cast validated columns to the schema's dtypes."""
    out = pd.DataFrame(
        {
            "gpu": df["gpu"].astype(str).to_numpy(dtype=object),
            "model": df["model"].astype(str).to_numpy(dtype=object),
            "batch": df["batch"].to_numpy(dtype=float).astype(np.int64),
            "sm_pct": df["sm_pct"].to_numpy(dtype=float),
            "quota_pct": df["quota_pct"].to_numpy(dtype=float),
            "mig_slice": df["mig_slice"].astype(str).to_numpy(dtype=object),
            "statistic": df["statistic"].astype(str).to_numpy(dtype=object),
            "latency_ms": df["latency_ms"].to_numpy(dtype=float),
            "source": df["source"].astype(str).to_numpy(dtype=object),
            "seq_len": df["seq_len"].to_numpy(dtype=float).astype(np.int64),
            "procs": df["procs"].to_numpy(dtype=float).astype(np.int64),
        }
    )
    return out


def empty_table() -> pd.DataFrame:
    """A measurement table with no rows (right columns and dtypes)."""
    return _coerce(pd.DataFrame({c: np.zeros(0) for c in ALL_COLUMNS}))


# --------------------------------------------------------------------------- validation


def validate_measurements(
    df: pd.DataFrame, *, path: str | Path | None = None, line0: int | None = None
) -> pd.DataFrame:
    """Check a table against the schema and return it with the schema's dtypes.

    Missing context columns get their defaults; ``statistic`` ``median`` becomes ``p50``;
    a missing ``mig_slice`` (None/NaN) becomes ``""``. Raises InputError naming ``path``,
    the first offending row (``line0`` + row index as the line, when given; else
    ``row <i>``) and what was expected. Extra columns are dropped.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}",
            path=path,
            expected="the columns " + ", ".join(COLUMNS),
        )
    d = df.copy()
    for c, v in CONTEXT_DEFAULTS.items():
        if c not in d.columns:
            d[c] = v
    d["mig_slice"] = d["mig_slice"].where(d["mig_slice"].notna(), "")

    def fail(k: int, col: str, problem: str, expected: str) -> InputError:
        if line0 is not None:
            return InputError(problem, path=path, line=k + line0, column=col, expected=expected)
        return InputError(f"row {k}: {problem}", path=path, column=col, expected=expected)

    for col in ("gpu", "model", "source", "statistic"):
        s = d[col]
        ok = s.map(lambda v: isinstance(v, str) and v.strip() != "").to_numpy(dtype=bool)
        k = _first_bad(~ok)
        if k is not None:
            raise fail(k, col, f"{col} = {s.iloc[k]!r}", "a non-empty string")
    d["statistic"] = d["statistic"].str.strip().str.lower().replace({"median": "p50"})
    ok = d["statistic"].map(lambda v: STAT_RE.match(v) is not None).to_numpy(dtype=bool)
    k = _first_bad(~ok)
    if k is not None:
        raise fail(
            k, "statistic", f"statistic = {df['statistic'].iloc[k]!r}", "mean, min, max or p<q>"
        )
    ok = (
        d["mig_slice"]
        .map(lambda v: isinstance(v, str) and (v == "" or SLICE_RE.match(v) is not None))
        .to_numpy(dtype=bool)
    )
    k = _first_bad(~ok)
    if k is not None:
        raise fail(
            k, "mig_slice", f"mig_slice = {d['mig_slice'].iloc[k]!r}", "'' or like '1g.10gb'"
        )

    nums: dict[str, np.ndarray] = {}
    for col in ("batch", "sm_pct", "quota_pct", "latency_ms", "seq_len", "procs"):
        s = d[col]
        if s.dtype == bool or s.map(lambda v: isinstance(v, bool | str)).any():
            k = int(np.flatnonzero(s.map(lambda v: isinstance(v, bool | str)).to_numpy())[0])
            raise fail(k, col, f"{col} = {s.iloc[k]!r}", "a number")
        nums[col] = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    checks: list[tuple[str, np.ndarray, str]] = []
    b = nums["batch"]
    checks.append(("batch", ~(np.isfinite(b) & (b >= 1) & (b == np.round(b))), "an integer >= 1"))
    sm = nums["sm_pct"]
    sm_ok = (np.isfinite(sm) & (sm > 0) & (sm <= 100)) | (
        np.isnan(sm) & (d["mig_slice"] != "").to_numpy()
    )
    checks.append(("sm_pct", ~sm_ok, "a percent in (0, 100] (NaN only with a mig_slice)"))
    q = nums["quota_pct"]
    checks.append(("quota_pct", ~(np.isfinite(q) & (q > 0) & (q <= 100)), "a percent in (0, 100]"))
    lat = nums["latency_ms"]
    checks.append(("latency_ms", ~(np.isfinite(lat) & (lat > 0)), "a finite latency > 0 ms"))
    sl = nums["seq_len"]
    checks.append(
        ("seq_len", ~(np.isfinite(sl) & (sl >= 0) & (sl == np.round(sl))), "an integer >= 0")
    )
    pr = nums["procs"]
    checks.append(
        ("procs", ~(np.isfinite(pr) & (pr >= 1) & (pr == np.round(pr))), "an integer >= 1")
    )
    for col, bad, expected in checks:
        k = _first_bad(bad)
        if k is not None:
            raise fail(k, col, f"{col} = {d[col].iloc[k]!r}", expected)
    for col, v in nums.items():
        d[col] = v
    return _coerce(d)


# --------------------------------------------------------------------------- RaPP


def _rapp_graph_rows(path: Path, doc: Any) -> Rows:
    expected = '{"model_name": str, "profiling_result": [{"batch", "sm", "quota", "latency"}, ...]}'
    if not isinstance(doc, dict) or not isinstance(doc.get("profiling_result"), list):
        raise InputError("not a RaPP profiling file", path=path, expected=expected)
    model = doc.get("model_name")
    if not isinstance(model, str) or not model:
        raise InputError(f"model_name = {model!r}", path=path, expected="a non-empty string")
    m = RAPP_GRAPH_RE.match(path.name)
    name_sm = int(m.group("sm")) if m and m.group("model") == model else None
    entries = doc["profiling_result"]
    n = len(entries)
    fields = ("batch", "sm", "quota", "latency")
    try:  # fast path: every entry an object with four plain numbers
        arr = np.array([[e[f] for f in fields] for e in entries], dtype=float).reshape(n, 4)
        ok = all(type(e[f]) in (int, float) for e in entries for f in fields)
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok or not np.isfinite(arr).all():
        for k, e in enumerate(entries):
            where = f"profiling_result[{k}]"
            if not isinstance(e, dict):
                raise InputError(f"{where} is not an object", path=path, expected=expected)
            for key in fields:
                v = e.get(key)
                if not _is_number(v):
                    raise InputError(
                        f"{where}.{key} = {v!r} is missing or not a number",
                        path=path,
                        expected="a finite number",
                    )
        arr = np.array([[e[f] for f in fields] for e in entries], dtype=float).reshape(n, 4)
    b, s, q, lat = arr.T
    bad: list[tuple[np.ndarray, str, str]] = [
        ((b < 1) | (b != np.round(b)), "batch", "an integer >= 1"),
        ((s <= 0) | (s > 100), "sm", "a percent in (0, 100]"),
        ((q <= 0) | (q > 100), "quota", "a percent in (0, 100]"),
        (lat <= 0, "latency", "a latency > 0 ms"),
    ]
    if name_sm is not None:
        bad.append((s != name_sm, "sm", f"the file name's SM {name_sm}"))
    for mask, key, exp in bad:
        k = _first_bad(mask)
        if k is not None:
            raise InputError(
                f"profiling_result[{k}].{key} = {entries[k][key]!r}", path=path, expected=exp
            )
    seen: set[tuple[float, float, float]] = set()
    for k, key in enumerate(zip(b.tolist(), s.tolist(), q.tolist(), strict=True)):
        if key in seen:
            raise InputError(
                f"profiling_result[{k}]: batch {b[k]:g}, sm {s[k]:g}, quota {q[k]:g} appears twice",
                path=path,
                expected="one entry per (batch, sm, quota)",
            )
        seen.add(key)
    return _rows(
        gpu=RAPP_GPU, model=model, batch=b, sm_pct=s, quota_pct=q, mig_slice="",
        statistic="mean", latency_ms=lat, source="rapp_graph", seq_len=np.zeros(n),
        procs=np.ones(n),
    )  # fmt: skip


RUNTIME_KEYS = ("model_name", "batch_size", "sm_partition", "latency")


def _runtime_doc(path: Path, doc: Any) -> tuple[str, int, float, float, dict[str, list[float]]]:
    """Checked (model, batch, sm %, latency ms, {op type: [ms, ...]}) of a runtime file."""
    expected = '{"model_name", "batch_size", "sm_partition", "latency", "<op type>": [ms, ...]}'
    if not isinstance(doc, dict) or not all(k in doc for k in RUNTIME_KEYS):
        raise InputError("not a RaPP runtime-features file", path=path, expected=expected)
    model, b, s, lat = (doc[k] for k in RUNTIME_KEYS)
    if not isinstance(model, str) or not model:
        raise InputError(f"model_name = {model!r}", path=path, expected="a non-empty string")
    if not _is_number(b) or b < 1 or int(b) != b:
        raise InputError(f"batch_size = {b!r}", path=path, expected="an integer >= 1")
    if not _is_number(s) or not 0 < s <= 100:
        raise InputError(f"sm_partition = {s!r}", path=path, expected="a percent in (0, 100]")
    if not _is_number(lat) or lat <= 0:
        raise InputError(f"latency = {lat!r}", path=path, expected="a latency > 0 ms")
    m = RAPP_RUNTIME_RE.match(path.name)
    if m and m.group("model") == model:
        if int(m.group("batch")) != b or int(m.group("sm")) != s:
            raise InputError(
                f"batch_size {b!r} / sm_partition {s!r} differ from the file name",
                path=path,
                expected=f"batch {m.group('batch')}, SM {m.group('sm')}",
            )
    ops: dict[str, list[float]] = {}
    for key, v in doc.items():
        if key in RUNTIME_KEYS:
            continue
        if not isinstance(v, list):
            raise InputError(f"{key} = {v!r}", path=path, expected="a list of times in ms")
        for k, t in enumerate(v):
            if not _is_number(t) or t < 0:
                raise InputError(f"{key}[{k}] = {t!r}", path=path, expected="a time >= 0 ms")
        ops[key] = [float(t) for t in v]
    return model, int(b), float(s), float(lat), ops


def _runtime_source(path: Path) -> str:
    return "rapp_opruntime" if any("op_runtime" in p for p in path.parent.parts) else "rapp_runtime"


def _rapp_runtime_rows(path: Path, doc: Any) -> Rows:
    model, b, s, lat, _ = _runtime_doc(path, doc)
    return _rows(
        gpu=RAPP_GPU, model=[model], batch=[b], sm_pct=[s], quota_pct=100.0, mig_slice="",
        statistic="mean", latency_ms=[lat], source=_runtime_source(path),
    )  # fmt: skip


# --------------------------------------------------------------------------- CSV kinds


def _flat_rows(path: Path) -> Rows:
    """``model,sm_pct,batch,quota_pct,latency_ms_mean`` (V100; HAS-GPU's BERT table)."""
    df = _read_csv(path, dtype=str, keep_default_na=False)
    if tuple(df.columns) != FLAT_HEADER:
        raise InputError(
            f"header {','.join(df.columns)}", path=path, line=1, expected=",".join(FLAT_HEADER)
        )
    if df.empty:
        raise InputError("no rows", path=path, expected="rows of latencies")
    if path.name == "DERIVED_graph_features_flat.csv":
        source = "rapp_graph"
    elif "bert_qt" in path.name or path.parent.name == "has-gpu-bert-table":
        source = "hasgpu_bert"
    else:
        source = path.stem
    model = df["model"].str.strip()
    seq = np.where(model.str.lower().str.startswith("bert"), HASGPU_BERT_SEQ_LEN, 0)
    if source == "rapp_graph":
        seq = np.zeros(len(df))
    raw = pd.DataFrame(
        {
            "gpu": RAPP_GPU,
            "model": model,
            "batch": _numeric(df, "batch", path, integer=True),
            "sm_pct": _numeric(df, "sm_pct", path),
            "quota_pct": _numeric(df, "quota_pct", path),
            "mig_slice": "",
            "statistic": "mean",
            "latency_ms": _numeric(df, "latency_ms_mean", path),
            "source": source,
            "seq_len": seq,
            "procs": 1,
        }
    )
    out = validate_measurements(raw, path=path, line0=2)
    dup = _first_bad(out.duplicated(subset=["model", "batch", "sm_pct", "quota_pct"]).to_numpy())
    if dup is not None:
        raise InputError(
            "this (model, batch, sm_pct, quota_pct) appears twice", path=path, line=dup + 2
        )
    return _rows_of(out)


def _parva_rows(path: Path) -> Rows:
    """ParvaGPU ``prof_data/<model>.csv``: Latency in seconds; rows 0,0 = not run."""
    df = _read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    if tuple(df.columns) != PARVA_HEADER:
        raise InputError(
            f"header {','.join(df.columns)}", path=path, line=1, expected=",".join(PARVA_HEADER)
        )
    mig = _numeric(df, "Mig instance", path, integer=True)
    b = _numeric(df, "Batch size", path, integer=True)
    procs = _numeric(df, "Workload Number", path, integer=True)
    thr = _numeric(df, "Throughput", path)
    lat_s = _numeric(df, "Latency", path)
    k = _first_bad(~np.isin(mig, list(PARVA_SLICES)))
    if k is not None:
        raise InputError(
            f"Mig instance = {df['Mig instance'].iloc[k]!r}", path=path, line=k + 2,
            column="Mig instance", expected="one of 1, 2, 3, 4, 7 (GPCs)",
        )  # fmt: skip
    for col, bad, exp in (
        ("Batch size", b < 1, "an integer >= 1"),
        ("Workload Number", procs < 1, "an integer >= 1"),
        ("Throughput", thr < 0, "a throughput >= 0 per s"),
        ("Latency", lat_s < 0, "a latency >= 0 s"),
        (
            "Latency",
            lat_s > PARVA_MAX_LATENCY_S,
            f"a latency in seconds (<= {PARVA_MAX_LATENCY_S:g})",
        ),
        (
            "Latency",
            (lat_s == 0) & (thr > 0),
            "a latency > 0 s, or 0,0 for a run that did not happen",
        ),
    ):
        k = _first_bad(bad)
        if k is not None:
            raise InputError(
                f"{col} = {df[col].iloc[k]!r}", path=path, line=k + 2, column=col, expected=exp
            )
    ran = lat_s > 0
    # each process runs back-to-back calls, so Latency (s) x Throughput (1/s) ~ Batch size
    ratio = np.where(ran, lat_s * thr / b, 1.0)
    k = _first_bad((ratio < 1 / PARVA_RATIO_TOL) | (ratio > PARVA_RATIO_TOL))
    if k is not None:
        raise InputError(
            f"Latency x Throughput / Batch size = {ratio[k]:.3g}",
            path=path,
            line=k + 2,
            column="Latency",
            expected="about 1: Latency in seconds, Throughput in inferences per second",
        )
    model = PARVA_MODELS.get(path.stem, path.stem)
    n = int(ran.sum())
    return _rows(
        gpu=PARVA_GPU, model=model, batch=b[ran], sm_pct=np.full(n, np.nan),
        quota_pct=100.0, mig_slice=[PARVA_SLICES[int(m)] for m in mig[ran]],
        statistic="mean", latency_ms=lat_s[ran] * 1000.0, source="parvagpu",
        seq_len=np.full(n, PARVA_BERT_SEQ_LEN if model == "bert" else 0), procs=procs[ran],
    )  # fmt: skip


def _is_migprof_header(header: tuple[str, ...]) -> bool:
    return {"model_name", "batch_size", "latency", "latency_std"} <= set(header)


def _migprof_gpu_from_path(path: Path) -> str | None:
    for part in reversed(path.parent.parts):
        m = MIGPROF_GPU_RE.match(part)
        if m:
            return f"A100-{m.group(1)}GB"
    return None


def _migprof_rows(path: Path) -> Rows:
    """MIGProfiler inference CSVs: mean latency (ms) per MIG slice."""
    df = _read_csv(path, dtype=str, keep_default_na=False)
    if not _is_migprof_header(tuple(df.columns)):
        raise InputError(
            f"header {','.join(df.columns)}", path=path, line=1,
            expected="MIGProfiler columns model_name, batch_size, latency, latency_std, ...",
        )  # fmt: skip
    if df.empty:
        raise InputError("no rows", path=path, expected="rows of latencies")
    gpu = _migprof_gpu_from_path(path)
    n = len(df)
    if "mig_profile" in df.columns:
        slices = df["mig_profile"].str.strip().str.lower().to_numpy(dtype=object)
        k = _first_bad(np.array([s not in MIG_SLICE_GPUS for s in slices]))
        if k is not None:
            raise InputError(
                f"mig_profile = {df['mig_profile'].iloc[k]!r}", path=path, line=k + 2,
                column="mig_profile", expected="an A100 MIG slice such as 1g.10gb",
            )  # fmt: skip
        gpus = set.intersection(*(set(MIG_SLICE_GPUS[s]) for s in slices))
        if gpu is None and len(gpus) == 1:
            gpu = gpus.pop()
        elif gpu is None or gpu not in gpus:
            raise InputError(
                f"mig_profile slices {sorted(set(slices))} do not tell one A100 variant"
                if gpu is None
                else f"mig_profile slices {sorted(set(slices))} do not belong to the {gpu} "
                "of the path",
                path=path,
            )
    else:
        if gpu is None:
            raise InputError(
                "cannot tell the GPU", path=path,
                expected="a mig_profile column or the file under a folder named A100-40g/A100-80g",
            )  # fmt: skip
        m_id = re.search(r"_MIG_profile_(\d+)", path.name)
        m_mem = re.search(r"_infer_(\d+)g_", path.name)
        if "instance_memory" in df.columns:
            mem = _numeric(df, "instance_memory", path, integer=True)
            table = MIG_MEMORY[gpu]
            k = _first_bad(~np.isin(mem, list(table)))
            if k is not None:
                raise InputError(
                    f"instance_memory = {df['instance_memory'].iloc[k]!r}", path=path, line=k + 2,
                    column="instance_memory", expected=f"one of {sorted(table)} (GB) on a {gpu}",
                )  # fmt: skip
            slices = np.array([table[int(v)] for v in mem], dtype=object)
        elif m_id:
            pid = int(m_id.group(1))
            if pid not in MIG_PROFILE_IDS[gpu]:
                raise InputError(
                    f"MIG profile id {pid} in the file name", path=path,
                    expected=f"one of {sorted(MIG_PROFILE_IDS[gpu])}",
                )  # fmt: skip
            slices = np.array([MIG_PROFILE_IDS[gpu][pid]] * n, dtype=object)
        elif m_mem:
            mem_gb = int(m_mem.group(1))
            if mem_gb not in MIG_MEMORY[gpu]:
                raise InputError(
                    f"instance memory {mem_gb} GB in the file name", path=path,
                    expected=f"one of {sorted(MIG_MEMORY[gpu])}",
                )  # fmt: skip
            slices = np.array([MIG_MEMORY[gpu][mem_gb]] * n, dtype=object)
        else:
            raise InputError(
                "cannot tell the MIG slice", path=path,
                expected="a mig_profile or instance_memory column, or a file name with "
                "_MIG_profile_<id> or _infer_<mem>g_",
            )  # fmt: skip
    seq = (
        _numeric(df, "seq_length", path, integer=True)
        if "seq_length" in df.columns
        else np.zeros(n)
    )
    raw = pd.DataFrame(
        {
            "gpu": gpu,
            "model": df["model_name"].str.strip(),
            "batch": _numeric(df, "batch_size", path, integer=True),
            "sm_pct": np.nan,
            "quota_pct": 100.0,
            "mig_slice": slices,
            "statistic": "mean",
            "latency_ms": _numeric(df, "latency", path),
            "source": "migprof_40g" if gpu == "A100-40GB" else "migprof_80g",
            "seq_len": seq,
            "procs": 1,
        }
    )
    rows = _rows_of(validate_measurements(raw, path=path, line0=2))
    if "start_timestamp" in df.columns:  # the run's identity: tells copies from repeats
        rows[RUN_ID] = np.asarray("migprof@" + df["start_timestamp"].str.strip(), dtype=object)
    return rows


def _table_rows(path: Path) -> Rows:
    """Our own schema, as Parquet or CSV: validated, passed through."""
    if path.suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for damaged files
            raise InputError(f"unreadable Parquet file: {e}", path=path) from None
        return _rows_of(validate_measurements(df, path=path))
    df = _read_csv(path, keep_default_na=True)
    return _rows_of(validate_measurements(df, path=path, line0=2))


# --------------------------------------------------------------------------- dispatch


@dataclass(frozen=True)
class _Kind:
    name: str
    load: Callable[[Path], Rows] | None  # None: recognised but not a latency table
    why: str = ""


_SKIP_NAMES = ("readme", "license", "notice")


def _classify(path: Path) -> tuple[_Kind, Any]:
    """What kind of file ``path`` is (plus its parsed JSON document, if any)."""
    name = path.name
    low = name.lower()
    if name.startswith("DERIVED_") and name != "DERIVED_graph_features_flat.csv":
        return _Kind(
            "derived", None, "a derived flat view of raw files that are loaded instead"
        ), None
    if low.endswith(".parquet"):
        return _Kind("table", _table_rows), None
    if low.endswith(".json") or low.endswith(".json.gz"):
        doc = read_json(path)
        if isinstance(doc, dict) and "profiling_result" in doc:
            return _Kind("rapp_graph", None), doc
        if isinstance(doc, dict) and "sm_partition" in doc and "latency" in doc:
            return _Kind("rapp_runtime", None), doc
        return _Kind(
            "unknown", None, "JSON that is neither RaPP profiling nor runtime features"
        ), None
    if low.endswith(".csv"):
        header = _csv_header(path)
        if header is None:
            return _Kind("unknown", None, "empty or unreadable CSV"), None
        if header == FLAT_HEADER:
            if name == "DERIVED_graph_features_flat.csv":
                return _Kind("derived", None, "a derived flat view of the RaPP JSON files"), None
            return _Kind("flat", _flat_rows), None
        if header == PARVA_HEADER:
            return _Kind("parvagpu", _parva_rows), None
        if header == QPS_HEADER:
            return _Kind(
                "qps", None, "FaST-GShare QPS profile, not latency: load_fastgshare_qps"
            ), None
        if _is_migprof_header(header):
            return _Kind("migprofiler", _migprof_rows), None
        if set(COLUMNS) <= set(header):
            return _Kind("table", _table_rows), None
        return _Kind(
            "unknown", None, "CSV with an unknown header (e.g. Orion, Vidur profiles)"
        ), None
    if low.startswith(_SKIP_NAMES) or low.endswith((".md", ".txt")):
        return _Kind("doc", None, "documentation"), None
    return _Kind(
        "unknown", None, "not a measurement file type (.json, .json.gz, .csv, .parquet)"
    ), None


SUPPORTED = (
    "RaPP <model>_<sm>.json(.gz), RaPP runtime <model>_<b>_<sm>.json(.gz), "
    "a model,sm_pct,batch,quota_pct,latency_ms_mean CSV, ParvaGPU prof_data CSV, "
    "MIGProfiler CSV, or a Parquet/CSV table in the hasim measurement schema"
)


def _load_file(path: Path, *, direct: bool) -> tuple[Rows | None, str]:
    kind, doc = _classify(path)
    if kind.name == "rapp_graph":
        return _rapp_graph_rows(path, doc), ""
    if kind.name == "rapp_runtime":
        return _rapp_runtime_rows(path, doc), ""
    if kind.load is not None:
        return kind.load(path), ""
    if direct:
        raise InputError(f"not a supported latency file: {kind.why}", path=path, expected=SUPPORTED)
    return None, kind.why


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _concat(parts: list[Rows]) -> tuple[pd.DataFrame, int]:
    """Concatenate per-file rows; drop cross-file copies of the same measurement."""
    if not parts:
        return empty_table(), 0
    cols = {c: np.concatenate([p[c] for p in parts]) for c in ALL_COLUMNS}
    df = _coerce(pd.DataFrame(cols))
    run = [p.get(RUN_ID, np.full(len(p["latency_ms"]), "", dtype=object)) for p in parts]
    df[RUN_ID] = np.concatenate(run)
    df["_file"] = np.repeat(np.arange(len(parts)), [len(p["latency_ms"]) for p in parts])
    rank = {s: k for k, s in enumerate(SOURCE_ORDER)}
    df["_rank"] = df["source"].map(lambda s: rank.get(s, len(rank))).to_numpy()
    df = df.sort_values(["_rank", "_file"], kind="stable").reset_index(drop=True)
    data_cols = [c for c in ALL_COLUMNS if c != "source"] + [RUN_ID]
    first = df.groupby(data_cols, dropna=False, sort=False)["_file"].transform("first")
    keep = (df["_file"] == first).to_numpy()
    out = df.loc[keep, list(ALL_COLUMNS)].reset_index(drop=True)
    return out, int((~keep).sum())


def load_measurements(path: str | Path) -> pd.DataFrame:
    """Every supported latency measurement under ``path`` (a file or a directory).

    A directory is searched recursively; each file's kind is told from its name and
    contents (see the module docstring); files that are not latency tables are skipped
    and listed with the reason in ``df.attrs["skipped"]`` (``{path: reason}``).
    ``path`` may be relative to the current directory or to the data dir. Returns the
    schema's columns (:data:`ALL_COLUMNS`), validated. Raises MissingDataError (with the
    fetch command) when ``path`` does not exist, and InputError naming the file, the
    line/entry and what was expected when a file is malformed, when a file given
    directly is not a supported kind, or when a directory holds no latency file.
    """
    root = _resolve(path)
    skipped: dict[str, str] = {}
    parts: list[Rows] = []
    if root.is_dir():
        for p in _files(root):
            rows, why = _load_file(p, direct=False)
            if rows is None:
                skipped[str(p)] = why
            else:
                parts.append(rows)
        if not parts:
            raise InputError("no latency measurement file found", path=root, expected=SUPPORTED)
    else:
        rows, _ = _load_file(root, direct=True)
        assert rows is not None
        parts.append(rows)
    out, dropped = _concat(parts)
    out.attrs["skipped"] = skipped
    out.attrs["duplicates_dropped"] = dropped
    out.attrs["files"] = len(parts)
    return out


def read_rapp_graphs(
    paths: Sequence[str | Path], models: Sequence[str] | None = None
) -> pd.DataFrame:
    """RaPP ``<model>_<sm>.json[.gz]`` profiling files as rows of the schema (validated;
    latency in ms, SM and quota in percent) plus ``file``, the index of each row's file in
    ``paths``; ``models``: the ``model_name`` each file must hold. InputError names the
    file and the entry."""
    parts = []
    for k, p in enumerate(Path(p) for p in paths):
        doc = read_json(p)
        parts.append(_rapp_graph_rows(p, doc))
        if models is not None and doc.get("model_name") != models[k]:
            raise InputError(
                f"model_name {doc.get('model_name')!r} does not match the file name",
                path=p,
                expected=f"model_name {models[k]!r}",
            )
    cols = {c: np.concatenate([r[c] for r in parts]) for c in ALL_COLUMNS} if parts else None
    out = _coerce(pd.DataFrame(cols)) if cols is not None else empty_table()
    out["file"] = np.repeat(np.arange(len(parts)), [len(r["latency_ms"]) for r in parts])
    return out


def read_flat_csv(path: str | Path) -> pd.DataFrame:
    """One ``model,sm_pct,batch,quota_pct,latency_ms_mean`` CSV (HAS-GPU's BERT table) as
    rows of the schema (validated); InputError names the file, line and column."""
    return _coerce(pd.DataFrame(_flat_rows(Path(path))))


def counts_by_source(df: pd.DataFrame) -> dict[str, int]:
    """Rows per ``source``, in :data:`SOURCE_ORDER` then alphabetical order."""
    counts = df["source"].value_counts()
    order = [s for s in SOURCE_ORDER if s in counts] + sorted(set(counts.index) - set(SOURCE_ORDER))
    return {s: int(counts[s]) for s in order}


# --------------------------------------------------------------------------- operators


OPERATOR_COLUMNS = ("gpu", "model", "batch", "sm_pct", "op_type", "op_index", "time_ms", "source")


def load_operator_times(path: str | Path) -> pd.DataFrame:
    """Per-operator times of RaPP's runtime-feature files (a file or a directory).

    One row per operator instance: ``gpu`` (V100-16GB), ``model``, ``batch``,
    ``sm_pct`` (%), ``op_type`` (TVM Relay op name, e.g. ``nn.conv2d``), ``op_index``
    (position among that model's ops of the type), ``time_ms`` and ``source``
    (``rapp_opruntime`` / ``rapp_runtime``). The times are semi-derived: each operator's
    share of TVM's debug-executor time times the measured PyTorch end-to-end latency.
    When a directory holds both RaPP folders, a (model, batch, SM) present in both is
    taken from ``op_runtime_features_all_models`` only.
    """
    root = _resolve(path)
    if root.is_dir():
        files = [p for p in _files(root) if p.name.endswith((".json", ".json.gz"))]
    else:
        files = [root]
    cols: dict[str, list[Any]] = {c: [] for c in OPERATOR_COLUMNS}
    seen: set[tuple[str, int, float]] = set()
    docs = []
    for p in files:
        doc = read_json(p)
        if root.is_dir() and not (isinstance(doc, dict) and "sm_partition" in doc):
            continue
        model, b, s, _, ops = _runtime_doc(p, doc)
        docs.append(
            (0 if _runtime_source(p) == "rapp_opruntime" else 1, str(p), model, b, s, ops, p)
        )
    if not docs:
        raise InputError("no RaPP runtime-features file found", path=root, expected=SUPPORTED)
    for _, _, model, b, s, ops, p in sorted(docs, key=lambda t: (t[0], t[1])):
        if (model, b, s) in seen:
            continue
        seen.add((model, b, s))
        src = _runtime_source(p)
        for op, times in ops.items():
            n = len(times)
            cols["gpu"] += [RAPP_GPU] * n
            cols["model"] += [model] * n
            cols["batch"] += [b] * n
            cols["sm_pct"] += [s] * n
            cols["op_type"] += [op] * n
            cols["op_index"] += list(range(n))
            cols["time_ms"] += times
            cols["source"] += [src] * n
    out = pd.DataFrame(cols)
    out["batch"] = out["batch"].astype(np.int64)
    out["sm_pct"] = out["sm_pct"].astype(float)
    out["op_index"] = out["op_index"].astype(np.int64)
    out["time_ms"] = out["time_ms"].astype(float)
    return out


# --------------------------------------------------------------------------- FaST-GShare QPS


QPS_COLUMNS = ("gpu", "model", "quota", "sm", "qps", "source")


def load_fastgshare_qps(path: str | Path) -> pd.DataFrame:
    """FaST-GShare profiler tables (``gpuName,model,quota,sm,qps``; a file or a directory).

    Throughput, not latency, so kept out of :func:`load_measurements`. Columns: ``gpu``
    (upper case as in the file, e.g. ``A100``; the memory variant is not recorded),
    ``model``, ``quota`` (fraction of the time window, (0, 1]), ``sm`` (%; in
    ``a100_mig.csv`` MIG slice sizes expressed as % of SMs), ``qps`` (requests/s > 0;
    rows with ``-1`` = not measured are dropped) and ``source`` (the file's path
    relative to ``path``'s folder).
    """
    root = _resolve(path)
    if root.is_dir():
        files = [p for p in _files(root) if p.suffix == ".csv" and _csv_header(p) == QPS_HEADER]
        base = root
    else:
        files = [root]
        base = root.parent
    if not files:
        raise InputError("no FaST-GShare profile found", path=root, expected=",".join(QPS_HEADER))
    frames = []
    for p in files:
        df = _read_csv(p, dtype=str, keep_default_na=False)
        if tuple(c.strip() for c in df.columns) != QPS_HEADER:
            raise InputError(
                f"header {','.join(df.columns)}", path=p, line=1, expected=",".join(QPS_HEADER)
            )
        q = _numeric(df, "quota", p)
        sm = _numeric(df, "sm", p)
        qps = _numeric(df, "qps", p)
        for col, bad, exp in (
            ("quota", (q <= 0) | (q > 1), "a fraction in (0, 1]"),
            ("sm", (sm <= 0) | (sm > 100), "a percent in (0, 100]"),
            ("qps", (qps <= 0) & (qps != -1), "a rate > 0, or -1 for not measured"),
        ):
            k = _first_bad(bad)
            if k is not None:
                raise InputError(
                    f"{col} = {df[col].iloc[k]!r}", path=p, line=k + 2, column=col, expected=exp
                )
        ok = qps > 0
        rel = p.relative_to(base).as_posix() if p.is_relative_to(base) else p.name
        frames.append(
            pd.DataFrame(
                {
                    "gpu": df["gpuName"].str.strip().str.upper()[ok].to_numpy(dtype=object),
                    "model": df["model"].str.strip()[ok].to_numpy(dtype=object),
                    "quota": q[ok],
                    "sm": sm[ok],
                    "qps": qps[ok],
                    "source": rel,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
