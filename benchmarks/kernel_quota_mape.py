"""Benchmark: predict RaPP's measured latencies at quotas 10..90 % from quota 100 % alone
with the kernel-level token scheduler (hasim.cluster.tokens), and report the MAPE.

For every (model, SM, batch) of the RaPP V100 table (graph_features_all_models), the
measured latency at quota 100 % is split into kernels (``hasim.perf.operators``'
``default_kernel_model`` when importable, else ``--kernels`` equal kernels); a lone pod
then runs ``--warmup + --runs`` inferences back to back with ``--gap-ms`` of idle time
between them (RaPP's measurement loop sleeps 5 ms between runs; the sliding window
remembers the previous run's usage, so the gap matters) under a token scheduler with
``W = --window-ms``; the mean latency of the last ``--runs`` runs is the prediction for
each quota. Nothing is fitted.

``--launch-gated`` uses the scheduler's launch-gated mode: the host launches the kernels
paced like the same (model, batch) at SM 100 % (quota 100 %), the token gates those
launches, and the GPU runs each kernel at the configuration's SM durations once launched.
This reproduces the measured flattening at small SM partitions (latency ~ max(the SM-100 %
quota curve, the SM's own quota-100 % latency)); the synchronous default charges GPU time.

    python benchmarks/kernel_quota_mape.py                       # every model
    python benchmarks/kernel_quota_mape.py --models alexnet resnet152 --kernels 200
    python benchmarks/kernel_quota_mape.py --gap-ms 0             # no idle gap

Prints MAPE per quota and overall, per-model MAPE with ``--per-model``, and the curves
of a few configurations (AlexNet SM 5 % batch 1 shows the sharp jump at quota 10 %).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import simpy  # noqa: E402

from hasim.cluster.tokens import TokenScheduler  # noqa: E402

RAPP_DIR = "measurements/rapp-has-gpu-v100/graph_features_all_models"
SHOW = (("alexnet", 5.0, 1), ("resnet152", 100.0, 4), ("resnet152", 5.0, 4))


def simulate_lone(
    kernels_s: np.ndarray,
    quota: float,
    *,
    window_s: float = 0.040,
    margin_s: float = 0.001,
    gap_s: float = 0.005,
    warmup: int = 3,
    runs: int = 10,
    launch_s: np.ndarray | None = None,
) -> float:
    """Mean latency (s) of ``runs`` inferences of a lone pod at ``quota`` after ``warmup``
    runs, with ``gap_s`` idle between consecutive inferences; ``launch_s`` (s per kernel)
    selects the launch-gated mode."""
    env = simpy.Environment()
    sched = TokenScheduler(env, 0, window_s=window_s, launch_margin_s=margin_s)
    sched.add_client(0, 100.0, quota)
    lat: list[float] = []

    def loop():
        for i in range(warmup + runs):
            t0 = env.now
            end = yield sched.run(0, kernels_s, launch_s)
            if i >= warmup:
                lat.append(end - t0)
            if gap_s > 0:
                yield env.timeout(gap_s)

    env.process(loop())
    env.run()
    return float(np.mean(lat))


def kernel_source(
    n_equal: int | None,
) -> tuple[str, Callable[[str, int, float, float], np.ndarray], set[str]]:
    """(description, fn(model, batch, sm_pct, total_s) -> kernel durations in s, the set
    that fills with the models the kernel model has no operator data for)."""

    def equal(model: str, batch: int, sm: float, total_s: float) -> np.ndarray:
        n = n_equal or 100
        return np.full(n, total_s / n)

    if n_equal is not None:
        return f"{n_equal} equal kernels", equal, set()
    try:
        from hasim.perf.operators import default_kernel_model

        km = default_kernel_model()
    except Exception as e:  # noqa: BLE001 - the fallback is documented
        print(f"(hasim.perf.operators unavailable: {type(e).__name__}: {e}; using 100 equal)")
        return "100 equal kernels (fallback)", equal, set()

    def modelled(model: str, batch: int, sm: float, total_s: float) -> np.ndarray:
        if not km.knows(model):
            fallback.add(model)
        try:
            return np.asarray(km.kernels_s(model, batch, sm, total_s=total_s), dtype=float)
        except Exception as e:  # noqa: BLE001 - fall back per configuration, reported
            fallback.add(f"{model} ({type(e).__name__}: equal kernels)")
            return equal(model, batch, sm, total_s)

    fallback: set[str] = set()
    return "default_kernel_model()", modelled, fallback


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=None, help="RaPP graph_features_all_models directory")
    ap.add_argument("--models", nargs="*", default=None, help="subset of models")
    ap.add_argument("--sm", nargs="*", type=float, default=None, help="subset of SM percents")
    ap.add_argument("--batches", nargs="*", type=int, default=None, help="subset of batches")
    ap.add_argument("--kernels", type=int, default=None, help="N equal kernels per inference")
    ap.add_argument("--window-ms", type=float, default=40.0)
    ap.add_argument("--margin-ms", type=float, default=1.0, help="hook launch margin")
    ap.add_argument("--gap-ms", type=float, default=5.0, help="idle time between runs")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--quotas", nargs="*", type=float, default=[q / 10 for q in range(1, 10)])
    ap.add_argument("--per-model", action="store_true", help="also print MAPE per model")
    ap.add_argument(
        "--launch-gated",
        action="store_true",
        help="the hook gates kernel launches paced like the SM-100 %% run of the same "
        "(model, batch) at quota 100 %%; the GPU runs them at the SM's durations",
    )
    args = ap.parse_args()

    from hasim.data.locate import data_path
    from hasim.perf.measurements import load_measurements

    t_start = time.perf_counter()
    path = args.data or data_path(RAPP_DIR)
    df = load_measurements(path)
    df = df[(df["statistic"] == "mean") & (df["mig_slice"] == "")]
    if args.models:
        df = df[df["model"].isin(args.models)]
    if args.sm:
        df = df[df["sm_pct"].isin(args.sm)]
    if args.batches:
        df = df[df["batch"].isin(args.batches)]
    if df.empty:
        sys.exit("no measurements match the selection")
    table = df.pivot_table(
        index=["model", "sm_pct", "batch"], columns="quota_pct", values="latency_ms"
    )
    if 100.0 not in table.columns:
        sys.exit("no quota-100 % measurements in the selection")
    desc, kfn, fallback = kernel_source(args.kernels)
    quotas = sorted(args.quotas)
    t_load = time.perf_counter()

    rows = []  # model, sm, batch, quota, measured ms, predicted ms
    for (model, sm, batch), meas in table.iterrows():
        solo = meas.get(100.0)
        if not np.isfinite(solo):
            continue
        k = kfn(str(model), int(batch), float(sm), solo / 1e3)
        launch = None
        ref = table[100.0].get((model, 100.0, batch), np.nan)
        if args.launch_gated:
            if not np.isfinite(ref):
                continue
            launch = kfn(str(model), int(batch), 100.0, ref / 1e3)
            if launch.size != k.size:
                launch = k * (ref / solo)
        for q in quotas:
            m = meas.get(round(q * 100, 6))
            if m is None or not np.isfinite(m):
                continue
            p = simulate_lone(
                k,
                q,
                window_s=args.window_ms / 1e3,
                margin_s=args.margin_ms / 1e3,
                gap_s=args.gap_ms / 1e3,
                warmup=args.warmup,
                runs=args.runs,
                launch_s=launch,
            )
            rows.append((model, sm, batch, q, m, p * 1e3, solo, ref))
    t_sim = time.perf_counter()

    arr_m = np.array([r[4] for r in rows])
    arr_p = np.array([r[5] for r in rows])
    arr_q = np.array([r[3] for r in rows])
    ape = np.abs(arr_p - arr_m) / arr_m * 100
    # analytic baselines from the same inputs: solo / q, and max(solo, SM-100 % solo / q)
    arr_s = np.array([r[6] for r in rows])
    arr_r = np.array([r[7] for r in rows])
    ape_inv = np.abs(arr_s / arr_q - arr_m) / arr_m * 100
    ape_max = np.abs(np.fmax(arr_s, arr_r / arr_q) - arr_m) / arr_m * 100
    print(
        f"kernels: {desc}; W = {args.window_ms} ms, margin {args.margin_ms} ms, "
        f"gap {args.gap_ms} ms, warmup {args.warmup}, runs {args.runs}"
        + (", launch-gated (SM-100 % launch pacing)" if args.launch_gated else ", synchronous")
    )
    print(f"{len(table)} (model, SM, batch) configurations, {len(rows)} predicted points")
    if fallback:
        print(f"models without operator data (fallback kernels): {sorted(fallback)}")
    print(
        f"{'quota %':>8} {'n':>6} {'MAPE %':>8} {'median APE %':>13} {'bias %':>8} "
        f"{'MAPE 1/q':>9} {'MAPE max':>9}"
    )
    for q in quotas:
        sel = np.isclose(arr_q, q)
        if not sel.any():
            continue
        bias = np.mean((arr_p[sel] - arr_m[sel]) / arr_m[sel]) * 100
        print(
            f"{q * 100:>8.0f} {sel.sum():>6d} {ape[sel].mean():>8.2f} "
            f"{np.median(ape[sel]):>13.2f} {bias:>+8.2f} "
            f"{ape_inv[sel].mean():>9.2f} {np.nanmean(ape_max[sel]):>9.2f}"
        )
    bias = np.mean((arr_p - arr_m) / arr_m) * 100
    print(
        f"{'all':>8} {len(rows):>6d} {ape.mean():>8.2f} {np.median(ape):>13.2f} {bias:>+8.2f} "
        f"{ape_inv.mean():>9.2f} {np.nanmean(ape_max):>9.2f}"
    )
    print(
        "(MAPE 1/q: the analytic solo / q; MAPE max: max(solo, SM-100 % solo / q); "
        "bias: mean signed error of the simulation)"
    )
    if args.per_model:
        print(f"\n{'model':<22} {'MAPE %':>8}")
        models = np.array([r[0] for r in rows])
        for mname in sorted(set(models)):
            sel = models == mname
            print(f"{mname:<22} {ape[sel].mean():>8.2f}")

    print("\nmeasured / predicted latency (ms) by quota %:")
    index = {(r[0], r[1], r[2], round(r[3], 6)): (r[4], r[5]) for r in rows}
    for model, sm, batch in SHOW:
        if (model, sm, batch) not in table.index:
            continue
        solo = table.loc[(model, sm, batch)].get(100.0)
        cells = []
        for q in quotas:
            mp = index.get((model, sm, batch, round(q, 6)))
            if mp:
                cells.append(f"{q * 100:.0f}%: {mp[0]:.1f}/{mp[1]:.1f}")
        print(f"  {model} SM {sm:g} % batch {batch} (q 100 %: {solo:.1f}): " + ", ".join(cells))
    print(
        f"\nwall time: load {t_load - t_start:.1f} s, simulate {t_sim - t_load:.1f} s "
        f"({len(rows) / max(t_sim - t_load, 1e-9):.0f} points/s)"
    )


if __name__ == "__main__":
    main()
