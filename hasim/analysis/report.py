"""`hasim report <dir>`: collect every run below a folder into one table and draw figures.

A run is a folder holding ``summary.json`` (plus ``config.yaml`` and the Parquet frames
that ``hasim run`` writes). The report writes ``runs.parquet`` (one row per run: the
summary keys flattened, ``path``, ``experiment``, ``run``, ``autoscaler``, ``workload``,
``perf`` and a few config values) and these figures, each as PNG and SVG:

* ``frontier``: cost (GPU-seconds) vs SLO violation rate, one colour and Pareto
  frontier per autoscaler;
* ``latency_cdf``: end-to-end latency CDF of completed requests, one line per run;
* ``timeline``: GPU allocations of one run, each pod's share (sm/100 x quota) stacked
  per GPU over time;
* ``actions``: autoscaler actions (CreatePod, UpdateQuota, DeletePod, ...) per 10 s bin;
* ``load``: arrivals per 10 s bin vs GPU share held, of the same run.

Runs made with ``sim.replicas=N`` carry 90 % bands (``<figure>_ci90 = [low, high]`` in
summary.json): runs.parquet gets them as ``<figure>_ci90_low`` / ``_ci90_high`` columns,
the printed table shows ``point [low, high]`` and the frontier draws them as error bars.

A figure whose input is missing is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

BIN_S = 10.0
MAX_CDF_RUNS = 12
MAX_CDF_POINTS = 2000
MAX_TIMELINE_GPUS = 16
MAX_GRID = 4000
# Config values copied into runs.parquet (dotted path in config.yaml).
CONFIG_KEYS = (
    "seed",
    "cluster.gpu",
    "cluster.nodes",
    "cluster.gpus_per_node",
    "cluster.max_batch",
    "workload.rate",
    "workload.duration",
    "workload.functions",
    "workload.model",
    "sim.sample_period",
)
TABLE_COLUMNS = {
    "experiment": "experiment",
    "run": "run",
    "autoscaler": "autoscaler",
    "requests_total": "requests",
    "latency_p95_s": "p95 (s)",
    "slo_violation_rate": "SLO viol.",
    "cost_gpu_seconds": "cost (GPU-s)",
}


class ReportError(Exception):
    """A problem with the report's input that ends the command with exit status 2."""


# --------------------------------------------------------------------------- collection


def find_runs(root: Path) -> list[Path]:
    """Every run folder (holding ``summary.json``) below ``root``, sorted by path."""
    return sorted(p.parent for p in root.rglob("summary.json") if p.is_file())


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        elif k.endswith("_ci90") and isinstance(v, list | tuple) and len(v) == 2:
            out[f"{key}_low"], out[f"{key}_high"] = (
                float("nan") if x is None else float(x) for x in v
            )
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def _dig(cfg: dict[str, Any], dotted: str) -> Any:
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return json.dumps(cur) if isinstance(cur, dict | list) else cur


def load_config(run: Path) -> dict[str, Any]:
    """The run's resolved config (``config.yaml``), or {} when absent or unreadable."""
    p = run / "config.yaml"
    if not p.is_file():
        return {}
    try:
        cfg = yaml.safe_load(p.read_text())
    except yaml.YAMLError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def run_row(run: Path, root: Path) -> dict[str, Any]:
    """One row of runs.parquet for the run folder ``run``."""
    try:
        summary = json.loads((run / "summary.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"{run / 'summary.json'}: cannot read ({e})") from e
    if not isinstance(summary, dict):
        raise ReportError(f"{run / 'summary.json'}: expected a JSON object")
    cfg = load_config(run)
    row = _flatten(summary)
    rel = run.relative_to(root)
    parts = rel.parts
    row["path"] = str(run)
    row["experiment"] = str(
        summary.get("experiment") or cfg.get("name") or (parts[-2] if len(parts) > 1 else "")
    )
    row["run"] = str(summary.get("run") or (parts[-1] if parts else run.name))
    for section in ("autoscaler", "workload", "perf"):
        v = summary.get(section)
        if v is None:
            v = _dig(cfg, f"{section}.kind")
        row[section] = None if v is None else str(v)
    for key in CONFIG_KEYS:
        if key not in row:
            row[key] = _dig(cfg, key)
    return row


def _clean_types(df: pd.DataFrame) -> pd.DataFrame:
    """Make object columns of mixed types writable to Parquet (non-null values as str)."""
    for c in df.columns:
        if df[c].dtype != object:
            continue
        vals = df[c].dropna()
        kinds = {type(v) for v in vals}
        if kinds <= {str} or kinds <= {bool}:
            continue
        if kinds <= {int, float}:
            df[c] = pd.to_numeric(df[c])
        else:
            df[c] = df[c].map(lambda v: None if v is None or v != v else str(v))
    return df


def collect(root: Path) -> pd.DataFrame:
    """runs.parquet's table: one row per run below ``root``."""
    runs = find_runs(root)
    if not runs:
        raise ReportError(f"no run found under {root} (a run is a folder with summary.json)")
    df = pd.DataFrame([run_row(r, root) for r in runs])
    front = ["experiment", "run", "autoscaler", "workload", "perf", "path"]
    df = df[front + [c for c in df.columns if c not in front]]
    return _clean_types(df)


def _read(run: Path, name: str) -> pd.DataFrame | None:
    p = run / f"{name}.parquet"
    if not p.is_file():
        return None
    try:
        return pd.read_parquet(p)
    except Exception as e:  # noqa: BLE001 - a broken frame only skips its figure
        print(f"  warning: cannot read {p}: {e}", file=sys.stderr)
        return None


def _label(row: pd.Series) -> str:
    return f"{row['experiment']}/{row['run']}"


# ------------------------------------------------------------------------------ figures


def pareto(points: np.ndarray) -> np.ndarray:
    """The Pareto-optimal rows (minimising both columns) of an (n, 2) array, sorted by
    the first column."""
    order = np.lexsort((points[:, 1], points[:, 0]))
    keep, best = [], np.inf
    for i in order:
        if points[i, 1] < best:
            keep.append(i)
            best = points[i, 1]
    return points[keep]


def _err(df: pd.DataFrame, key: str) -> np.ndarray | None:
    """(2, n) distances from the point to its 90 % band's ends (0 where none), or None
    when no run has a band for ``key``."""
    lo_c, hi_c = f"{key}_ci90_low", f"{key}_ci90_high"
    if lo_c not in df.columns or df[lo_c].isna().all():
        return None
    v = df[key].to_numpy(dtype=float)
    lo = np.nan_to_num(v - df[lo_c].to_numpy(dtype=float), nan=0.0)
    hi = np.nan_to_num(df[hi_c].to_numpy(dtype=float) - v, nan=0.0)
    return np.clip(np.stack([lo, hi]), 0.0, None)


def frontier_figure(runs: pd.DataFrame) -> Figure | str:
    """Cost vs SLO violation rate, per autoscaler, with its Pareto frontier."""
    need = {"cost_gpu_seconds", "slo_violation_rate"}
    if not need <= set(runs.columns):
        return f"runs lack {sorted(need - set(runs.columns))}"
    df = runs.dropna(subset=list(need))
    if df.empty:
        return "no run has both cost_gpu_seconds and slo_violation_rate"
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (policy, g) in enumerate(df.groupby(df["autoscaler"].fillna("?"), sort=True)):
        color = f"C{i % 10}"
        pts = g[["cost_gpu_seconds", "slo_violation_rate"]].to_numpy(dtype=float)
        ax.scatter(pts[:, 0], pts[:, 1], color=color, label=str(policy), zorder=3)
        xerr, yerr = _err(g, "cost_gpu_seconds"), _err(g, "slo_violation_rate")
        if xerr is not None or yerr is not None:  # 90 % bands of runs with replicas
            ax.errorbar(pts[:, 0], pts[:, 1], xerr=xerr, yerr=yerr, fmt="none",
                        ecolor=color, alpha=0.5, capsize=2, zorder=2)  # fmt: skip
        front = pareto(pts)
        if len(front) > 1:
            ax.step(front[:, 0], front[:, 1], where="post", color=color, alpha=0.7)
        if len(df) <= 20:
            for (x, y), name in zip(pts, g["run"], strict=True):
                ax.annotate(
                    str(name),
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                    alpha=0.8,
                )
    costs = df["cost_gpu_seconds"].to_numpy(dtype=float)
    if costs.min() > 0 and costs.max() > 20 * costs.min():
        ax.set_xscale("log")
    ax.set_xlabel("cost (GPU-seconds)")
    ax.set_ylabel("SLO violation rate")
    ax.set_title("cost vs SLO violations (lines: Pareto frontier per autoscaler)")
    ax.grid(alpha=0.3)
    ax.legend(title="autoscaler")
    fig.tight_layout()
    return fig


def latency_cdf_figure(runs: pd.DataFrame, max_runs: int = MAX_CDF_RUNS) -> Figure | str:
    """Latency CDF of completed requests, one line per run (at most ``max_runs``)."""
    curves = []
    for _, row in runs.iterrows():
        if len(curves) >= max_runs:
            print(f"  latency_cdf: showing the first {max_runs} of {len(runs)} runs")
            break
        req = _read(Path(row["path"]), "requests")
        if req is None or "latency" not in req.columns:
            continue
        if "status" in req.columns:
            req = req[req["status"] == "completed"]
        lat = np.sort(req["latency"].dropna().to_numpy(dtype=float))
        if lat.size:
            curves.append((_label(row), lat))
    if not curves:
        return "no run has requests.parquet with completed requests"
    fig, ax = plt.subplots(figsize=(8, 5))
    lo, hi = np.inf, 0.0
    for label, lat in curves:
        y = np.arange(1, lat.size + 1) / lat.size
        idx = np.unique(np.linspace(0, lat.size - 1, min(lat.size, MAX_CDF_POINTS)).astype(int))
        ax.plot(lat[idx], y[idx], label=label, drawstyle="steps-post")
        lo, hi = min(lo, lat[0]), max(hi, lat[-1])
    if hi > 20 * max(lo, 1e-6):
        ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency (s)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_title("latency CDF per run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _shares(alloc: pd.DataFrame) -> np.ndarray:
    if "share" in alloc.columns:
        return alloc["share"].to_numpy(dtype=float)
    share = alloc["sm_pct"].to_numpy(dtype=float) / 100.0 * alloc["quota"].to_numpy(dtype=float)
    if "exclusive" in alloc.columns:
        share = np.where(alloc["exclusive"].to_numpy(dtype=bool), 1.0, share)
    return share


def timeline_figure(run: Path, label: str) -> Figure | str:
    """Per GPU (one band each), each pod's share sm/100 x quota stacked over time."""
    alloc = _read(run, "allocations")
    need = {"pod", "gpu", "t_start", "t_end"}
    if alloc is None:
        return f"{run} has no allocations.parquet"
    if not need <= set(alloc.columns) or not (
        "share" in alloc.columns or {"sm_pct", "quota"} <= set(alloc.columns)
    ):
        return f"{run / 'allocations.parquet'} lacks pod/gpu/t_start/t_end/share columns"
    alloc = alloc.assign(share=_shares(alloc))
    alloc = alloc[(alloc["gpu"] >= 0) & (alloc["t_end"] > alloc["t_start"])]
    if alloc.empty:
        return f"{run} holds no GPU allocation"
    gpus = sorted(alloc["gpu"].unique())
    if len(gpus) > MAX_TIMELINE_GPUS:
        print(f"  timeline: showing the first {MAX_TIMELINE_GPUS} of {len(gpus)} GPUs")
        gpus = gpus[:MAX_TIMELINE_GPUS]
    funcs = sorted(alloc["function"].astype(str).unique()) if "function" in alloc else []
    colors = {f: f"C{i % 10}" for i, f in enumerate(funcs)}
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.7 * len(gpus)))
    for band, g in enumerate(gpus):
        a = alloc[alloc["gpu"] == g]
        grid = np.unique(np.concatenate([a["t_start"].to_numpy(), a["t_end"].to_numpy()]))
        if grid.size > MAX_GRID:
            grid = np.linspace(grid[0], grid[-1], MAX_GRID)
        base = np.full(grid.size, float(band))
        for _pod, p in a.groupby("pod", sort=True):
            v = np.zeros(grid.size)
            for ts, te, s in zip(p["t_start"], p["t_end"], p["share"], strict=True):
                v += np.where((grid >= ts) & (grid < te), s, 0.0)
            if not v.any():
                continue
            func = str(p["function"].iloc[0]) if "function" in p else ""
            ax.fill_between(
                grid,
                base,
                base + v,
                step="post",
                alpha=0.75,
                color=colors.get(func, "C0"),
                edgecolor="k",
                linewidth=0.3,
            )
            base = base + v
        ax.axhline(band + 1, color="grey", linewidth=0.5, linestyle=":")
    ax.set_yticks([i + 0.5 for i in range(len(gpus))], [f"GPU {g}" for g in gpus])
    ax.set_ylim(0, len(gpus) + 0.05)
    ax.set_xlabel("simulated time (s)")
    ax.set_title(f"GPU allocations of {label} (pods stacked by sm/100 x quota; band = 1 GPU)")
    if funcs and len(funcs) <= 12:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[f], alpha=0.75) for f in funcs]
        ax.legend(handles, funcs, fontsize=7, loc="upper right", title="function")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def actions_figure(run: Path, label: str) -> Figure | str:
    """Counts of each autoscaler action type per 10 s bin."""
    act = _read(run, "actions")
    if act is None:
        return f"{run} has no actions.parquet"
    if act.empty or not {"time", "action"} <= set(act.columns):
        return f"{run / 'actions.parquet'} holds no action"
    end = float(act["time"].max())
    edges = np.arange(0.0, end + BIN_S + 1e-9, BIN_S)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = BIN_S / (act["action"].nunique() + 1)
    preferred = ["CreatePod", "UpdateQuota", "DeletePod"]
    kinds = [k for k in preferred if k in set(act["action"])]
    kinds += sorted(set(act["action"]) - set(preferred))
    for i, kind in enumerate(kinds):
        counts, _ = np.histogram(act.loc[act["action"] == kind, "time"], bins=edges)
        ax.bar(edges[:-1] + (i + 0.5) * width, counts, width=width, label=kind, align="edge")
    if "ok" in act.columns and (~act["ok"].astype(bool)).any():
        failed, _ = np.histogram(act.loc[~act["ok"].astype(bool), "time"], bins=edges)
        ax.step(
            edges,
            np.append(failed, failed[-1:]),
            where="post",
            color="k",
            linestyle="--",
            label="failed",
        )
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel(f"actions per {BIN_S:.0f} s")
    ax.set_title(f"autoscaler actions of {label}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    return fig


def load_figure(run: Path, label: str) -> Figure | str:
    """Arrival rate per 10 s bin vs GPU share held (GPUs)."""
    req = _read(run, "requests")
    usage = _read(run, "usage")
    if req is None or "arrival" not in req.columns:
        return f"{run} has no requests.parquet with arrivals"
    if usage is None or not {"time", "share"} <= set(usage.columns):
        return f"{run} has no usage.parquet with time and share"
    arrivals = req["arrival"].dropna().to_numpy(dtype=float)
    end = max(float(arrivals.max()) if arrivals.size else 0.0, float(usage["time"].max() or 0))
    edges = np.arange(0.0, end + BIN_S + 1e-9, BIN_S)
    counts, _ = np.histogram(arrivals, bins=edges)
    fig, ax1 = plt.subplots(figsize=(9, 4))
    ax1.step(
        edges,
        np.append(counts, counts[-1:]) / BIN_S,
        where="post",
        color="C0",
        label="arrivals (req/s)",
    )
    ax1.set_xlabel("simulated time (s)")
    ax1.set_ylabel(f"arrivals per second ({BIN_S:.0f} s bins)", color="C0")
    ax2 = ax1.twinx()
    ax2.step(usage["time"], usage["share"], where="post", color="C1", label="GPU share held")
    ax2.set_ylabel("GPU share held (GPUs)", color="C1")
    ax2.set_ylim(bottom=0)
    ax1.set_ylim(bottom=0)
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="upper left")
    ax1.set_title(f"load vs capacity of {label}")
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- CLI


def _pick_run(runs: pd.DataFrame, root: Path, spec: str | None) -> int:
    if spec is None:
        return 0
    paths = [Path(p).resolve() for p in runs["path"]]
    for cand in (Path(spec), root / spec):
        if cand.exists() and cand.resolve() in paths:
            return paths.index(cand.resolve())
    hits = [i for i, (_, r) in enumerate(runs.iterrows()) if spec in (r["run"], _label(r))]
    if len(hits) == 1:
        return hits[0]
    raise ReportError(f"--timeline {spec}: not one of the runs under {root}")


def format_table(runs: pd.DataFrame) -> str:
    cols = [c for c in TABLE_COLUMNS if c in runs.columns]
    t = runs[cols].rename(columns=TABLE_COLUMNS)
    fmts = {
        "p95 (s)": "{:.4f}".format,
        "SLO viol.": "{:.2%}".format,
        "cost (GPU-s)": "{:.1f}".format,
    }
    keys = {v: k for k, v in TABLE_COLUMNS.items()}
    for c, f in fmts.items():
        if c not in t.columns:
            continue
        lo_c, hi_c = f"{keys[c]}_ci90_low", f"{keys[c]}_ci90_high"
        cells = []
        for i, v in enumerate(t[c]):
            cell = "-" if v is None or v != v else f(v)
            if lo_c in runs.columns:
                lo, hi = runs[lo_c].iloc[i], runs[hi_c].iloc[i]
                if lo == lo and hi == hi and lo is not None:
                    cell += f" [{f(lo)}, {f(hi)}]"
            cells.append(cell)
        t[c] = cells
    return t.to_string(index=False)


def _save(fig: Figure, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    try:
        fig.savefig(paths[0], dpi=120)
        fig.savefig(paths[1])
    finally:
        plt.close(fig)
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hasim report",
        description="Collect every run below DIR into runs.parquet and draw figures "
        "(cost vs SLO frontier, latency CDFs, GPU timeline, actions, load vs capacity).",
    )
    p.add_argument("dir", type=Path, help="folder searched for runs (folders with summary.json)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default DIR/report)")
    p.add_argument(
        "--timeline",
        default=None,
        metavar="RUN_PATH",
        help="run for the timeline, actions and load figures (default: the first)",
    )
    p.add_argument(
        "--max-cdf-runs",
        type=int,
        default=MAX_CDF_RUNS,
        help=f"at most this many runs in the latency CDF (default {MAX_CDF_RUNS})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root: Path = args.dir
    try:
        if not root.is_dir():
            raise ReportError(f"no run found under {root}: not a folder")
        runs = collect(root)
        chosen = _pick_run(runs, root, args.timeline)
    except ReportError as e:
        print(f"hasim report: {e}", file=sys.stderr)
        return 2
    out: Path = args.out if args.out is not None else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "runs.parquet"]
    runs.to_parquet(written[0], index=False)

    print(f"{len(runs)} run(s) under {root}:")
    print(format_table(runs))

    row = runs.iloc[chosen]
    run_path, label = Path(row["path"]), _label(row)
    figures = {
        "frontier": lambda: frontier_figure(runs),
        "latency_cdf": lambda: latency_cdf_figure(runs, args.max_cdf_runs),
        "timeline": lambda: timeline_figure(run_path, label),
        "actions": lambda: actions_figure(run_path, label),
        "load": lambda: load_figure(run_path, label),
    }
    for name, make in figures.items():
        fig = make()
        if isinstance(fig, str):
            print(f"skipped {name}: {fig}")
            continue
        written += _save(fig, out, name)
    print("written:")
    for p in written:
        print(f"  {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
