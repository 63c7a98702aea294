#!/usr/bin/env bash
# One-shot GPU calibration for a lent GPU machine (e.g. one H100):
#   1. builds the LD_PRELOAD time-quota hook (gcc + CUDA headers) and runs its
#      self-test against fake CUDA libraries (no GPU involved);
#   2. a 10-second hook smoke test on the real GPU (matmuls under quota 1 and 0.25:
#      launches must be intercepted and the quota must stretch the run);
#   3. python -m calibration.profile --device cuda --quick (under 8 minutes on one H100);
#   4. checks that the output loads as hasim measurements (hasim's loader when it can be
#      imported there, else a schema check with pandas).
# Output under $OUT (default ./results/gpu-quick): cal/latency.parquet,
# cal/kernel_traces.pq, cal/manifest.json, run.log, hook_smoke.json: 5 files, 1 folder.
#
# usage: OUT=/path bash calibration/run_gpu_quick.sh [--dry-run] [extra profile options]
#   --dry-run: build + self-test the hook, print the plan; no GPU needed, nothing measured.
# PYTHON picks the interpreter (default: python3, the one holding CUDA torch there).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/results/gpu-quick}
PY=${PYTHON:-python3}
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
mkdir -p "$OUT"
LOG=$OUT/run.log
: >"$LOG"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
say() { echo "== $*" | tee -a "$LOG"; }
run() { "$@" 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; }

say "environment ($(date -u +%FT%TZ))"
if command -v nvidia-smi >/dev/null; then
    run nvidia-smi --query-gpu=name,memory.total,driver_version,mig.mode.current,compute_mode \
        --format=csv
else
    echo "(no nvidia-smi)" | tee -a "$LOG"
fi
run "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
if command -v nvidia-cuda-mps-control >/dev/null; then
    echo "MPS control: yes" | tee -a "$LOG"
else
    echo "MPS control: not found (green contexts will be tried)" | tee -a "$LOG"
fi

say "hook: build, exports, self-test (fake CUDA libraries)"
if run "$PY" -m calibration.hook.build --check --selftest; then
    HOOK=$ROOT/calibration/hook/build/libhasim_hook.so
else
    HOOK=""
    echo "hook unavailable: the calibration will use the Python gate" | tee -a "$LOG"
fi

if [[ $DRY == 1 ]]; then
    say "plan (dry run)"
    run "$PY" -m calibration.profile --device cuda --quick --out "$OUT/cal" --dry-run "$@"
    rc=$?
    say "dry run done (rc $rc); nothing measured"
    exit $rc
fi

if [[ -n "$HOOK" ]]; then
    say "hook smoke test on the GPU"
    cat >"$OUT/.smoke.py" <<'EOF'
import json, os, sys, time
import torch
from calibration.gate import HookControl
h = HookControl.loaded()
x = torch.randn(2048, 2048, device="cuda")
def burst(n=200):
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n):  # cuBLAS (driver entry points) + a native kernel (cudaLaunchKernel)
        y = (x @ x).relu_()
    torch.cuda.synchronize(); return (time.perf_counter() - t) * 1e3
burst(20)
res = {"preloaded": h is not None}
if h:
    for q in (1.0, 0.25):
        h.set_quota(q, 40.0); h.reset()
        res[f"q{q:g}_ms"] = burst()
        res[f"q{q:g}_stats"] = h.stats()
    res["stretch"] = res["q0.25_ms"] / max(res["q1_ms"], 1e-9)
print(json.dumps(res, indent=1))
EOF
    LD_PRELOAD="$HOOK" HASIM_HOOK_PATH="$HOOK" timeout 120 "$PY" "$OUT/.smoke.py" \
        >"$OUT/hook_smoke.json" 2>>"$LOG"
    cat "$OUT/hook_smoke.json" | tee -a "$LOG"
    rm -f "$OUT/.smoke.py"
fi

say "calibration --quick on cuda"
start=$(date +%s)
run "$PY" -m calibration.profile --device cuda --quick --out "$OUT/cal" "$@"
rc=$?
say "calibration exited $rc after $(( $(date +%s) - start )) s"

say "output check"
run "$PY" - "$OUT/cal" <<'EOF'
import sys
import pandas as pd
d = sys.argv[1]
try:
    from hasim.perf.measurements import load_measurements
    df = load_measurements(d)
    print(f"hasim loader: {len(df)} rows, sources {sorted(df.source.unique())}")
except ImportError as e:
    df = pd.read_parquet(f"{d}/latency.parquet")
    need = ["gpu", "model", "batch", "sm_pct", "quota_pct", "mig_slice", "statistic",
            "latency_ms", "source"]
    missing = [c for c in need if c not in df.columns]
    assert not missing, missing
    assert (df.latency_ms > 0).all() and df.sm_pct.between(0, 100).all()
    print(f"hasim not importable here ({e}); schema checked with pandas: {len(df)} rows")
print(df.groupby(["model"]).size().to_string())
EOF
say "done: $(ls "$OUT" "$OUT/cal" 2>/dev/null | tr '\n' ' ')"
exit $rc
