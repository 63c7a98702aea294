"""Stepped-rate client workloads in the HAS-GPU ``rps.json`` layout.

``processed_request_counts`` lists request rates (requests/s); each is held for one
stage of ``parameters.duration`` (e.g. ``"5s"``). Inside a stage the requests are due
evenly spaced, 1/rate apart, starting at the stage start: for an integer rate r this is
exactly r requests per second at offsets k/r, as the HAS-GPU client submits them. One
function, named after ``parameters.function_name``.

Who sends them (``client``, ``hasim.workload.client``): ``open`` (default) sends each at
its due time, stages back to back; ``threadpool`` is the HAS-GPU validation client, a
pool of ``workers_per_rps`` x rate workers per stage whose stage ends when all its
requests have been answered (closed loop: the simulation decides the send times);
``replay`` sends at a real run's own send times, read from its request file
(``replay``), open loop. ``lead_s`` idle seconds precede the first stage (or the first
replayed send).

Relative ``path`` values are looked up in the traces dir, then the data dir
(``hasim.data.locate.data_path``), then the current directory; the first existing
file wins.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hasim.data.locate import data_path, trace_path
from hasim.errors import InputError, MissingDataError
from hasim.paths import FETCH_HINT
from hasim.workload.base import FunctionSpec, Workload
from hasim.workload.client import (
    CLIENTS,
    UNSENT_HOLD_S,
    WORKERS_PER_RPS,
    ThreadPoolClient,
    read_send_times,
    stage_counts,
)
from hasim.workload.common import check, check_choice, check_finite, check_slo, clip_below

DEFAULT_PATH = "validation/has-gpu-v100/client/rps.json"
MODEL_OF_FUNCTION = {
    "resnet": "resnet50",
    "resnet50": "resnet50",
    "mobilenet": "mobilenet_v3_large",
    "mobilenet_v3_large": "mobilenet_v3_large",
    "convnext": "convnext_large",
    "convnext_large": "convnext_large",
    "bert": "bert",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass
class StagesConfig:
    """Replay of a stepped-rate client workload file."""

    kind: str = "stages"
    path: str = DEFAULT_PATH  # JSON file; relative: traces dir, then data dir, then cwd
    stage_s: float | None = None  # s per stage; None -> parameters.duration of the file
    function: str | None = None  # function name; None -> parameters.function_name
    model: str | None = None  # model; None -> from the function name (resnet -> resnet50 ...)
    scale: float = 1.0  # multiplies every rate
    slo: float | None = None  # s; None -> derived by the simulation
    client: str = "open"  # open | threadpool | replay (hasim.workload.client)
    # threadpool: workers per req/s of a stage (HAS-GPU's test_batch.py: 2 x rate)
    workers_per_rps: float = WORKERS_PER_RPS
    # threadpool: s a worker is held by a request that found the stage's pool shut
    # (test_batch.py's retry back-off 0.1 + 0.2 + 0.4 s); the request is never sent
    unsent_hold_s: float = UNSENT_HOLD_S
    replay: str | None = None  # replay: a real run's request CSV (timestamp, duration)
    lead_s: float = 0.0  # s of idle time before the first stage / replayed send


def resolve_path(relative: str) -> Path:
    """The first existing of traces dir / p, data dir / p, cwd / p (absolute p as is)."""
    p = Path(relative).expanduser()
    if p.is_absolute():
        if not p.exists():
            raise MissingDataError(p, FETCH_HINT)
        return p
    candidates = [
        trace_path(p, must_exist=False),
        data_path(p, must_exist=False),
        Path.cwd() / p,
    ]
    for c in candidates:
        if c.exists():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise MissingDataError(candidates[1], f"{FETCH_HINT}   (looked in: {tried})")


def parse_duration_s(text: object, path: Path) -> float:
    """``"5s"``, ``"500ms"``, ``"2m"``, ``"1h"`` or a bare number of seconds -> seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _DURATION.match(str(text))
        if m is None:
            raise InputError(
                f"stage duration {text!r} is not understood",
                path=path,
                column="parameters.duration",
                expected='a duration such as "5s", "500ms" or "2m"',
            )
        value = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not (math.isfinite(value) and value > 0):
        raise InputError(
            f"stage duration {text!r} is not positive",
            path=path,
            column="parameters.duration",
            expected="a duration > 0",
        )
    return value


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(
            exc.msg, path=path, line=exc.lineno, column=exc.colno, expected="valid JSON"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("processed_request_counts"), list):
        raise InputError(
            "no list 'processed_request_counts'",
            path=path,
            expected="a JSON object with a list of per-second request rates",
        )
    params = data.get("parameters", {})
    if not isinstance(params, dict):
        raise InputError("'parameters' is not an object", path=path, expected="a JSON object")
    return data


def _rates(data: dict, path: Path) -> np.ndarray:
    out = []
    for i, r in enumerate(data["processed_request_counts"]):
        ok = isinstance(r, int | float) and not isinstance(r, bool) and math.isfinite(r) and r >= 0
        if not ok:
            raise InputError(
                f"rate {r!r} is invalid",
                path=path,
                column=f"processed_request_counts[{i}]",
                expected="a non-negative number of requests/s",
            )
        out.append(float(r))
    if not out:
        raise InputError(
            "'processed_request_counts' is empty", path=path, expected="at least one stage"
        )
    return np.array(out)


def stage_arrivals(rates: np.ndarray, stage_s: float) -> np.ndarray:
    """Evenly spaced arrivals: in stage i, t = i * stage_s + k / rates[i] for k / rate < stage_s."""
    chunks = []
    for i, (r, n) in enumerate(zip(rates, stage_counts(rates, stage_s).tolist(), strict=True)):
        if r > 0:
            chunks.append(i * stage_s + np.arange(n) / r)
    return np.concatenate(chunks) if chunks else np.empty(0)


def replay_path(relative: str) -> Path:
    """The request file of ``workload.replay``, looked up like ``path``."""
    p = Path(relative).expanduser()
    candidates = (
        [p]
        if p.is_absolute()
        else [trace_path(p, must_exist=False), data_path(p, must_exist=False), Path.cwd() / p]
    )
    for c in candidates:
        if c.is_file():
            return c
    raise InputError(
        "replay request file not found (looked in: " + ", ".join(map(str, candidates)) + ")",
        path=relative,
        expected="a real run's request CSV, e.g. validation/has-gpu-v100/result/"
        "HAS/1-resnet/has-120-50-50-15.csv (hasim data fetch)",
    )


def stages_workload(cfg: StagesConfig, rng: np.random.Generator) -> Workload:
    """One function whose requests follow the stepped rates of the file, sent by the
    configured client (deterministic; ``rng`` is unused)."""
    del rng
    check_finite("scale", cfg.scale)
    check_slo("slo", cfg.slo)
    check_finite("lead_s", cfg.lead_s)
    check_choice("client", cfg.client, CLIENTS)
    if cfg.stage_s is not None:
        check_finite("stage_s", cfg.stage_s, strict=True)
    if cfg.client == "replay":
        check(
            bool(cfg.replay), "replay", cfg.replay, "a request CSV path with workload.client=replay"
        )
    path = resolve_path(cfg.path)
    data = _load(path)
    params = data.get("parameters", {})
    stage_s = cfg.stage_s
    if stage_s is None:
        stage_s = parse_duration_s(params.get("duration", "1s"), path)
    function = cfg.function or str(params.get("function_name") or "fn0")
    model = cfg.model or MODEL_OF_FUNCTION.get(function.lower(), function)
    check(bool(model.strip()), "model", cfg.model, "a model name such as resnet50")
    rates = _rates(data, path) * cfg.scale
    lead = float(cfg.lead_s)
    meta = {"kind": cfg.kind, "stage_s": stage_s, "stages": int(rates.size), "client": cfg.client}
    spec = FunctionSpec(function, model, cfg.slo)
    if cfg.client == "replay":
        sends, span = read_send_times(replay_path(str(cfg.replay)), with_span=True)
        duration_s = lead + span
        return Workload(
            functions=[spec],
            arrivals={function: clip_below(lead + sends, duration_s)},
            duration_s=duration_s,
            source=str(cfg.replay),
            meta={**meta, "stages_file": str(path)},
        )
    duration_s = float(rates.size * stage_s)
    arrivals = clip_below(stage_arrivals(rates, stage_s), duration_s)
    if lead:
        duration_s += lead
        arrivals = clip_below(lead + arrivals, duration_s)
    clients = {}
    if cfg.client == "threadpool":
        clients[function] = ThreadPoolClient(
            tuple(rates.tolist()), stage_s, lead, cfg.workers_per_rps, cfg.unsent_hold_s
        )
    return Workload(
        functions=[spec],
        arrivals={function: arrivals},
        duration_s=duration_s,
        source=str(path),
        meta=meta,
        clients=clients,
    )
