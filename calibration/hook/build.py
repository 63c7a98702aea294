"""Build the hook: ``python -m calibration.hook.build [--out DIR] [--cuda-home DIR]``.

Compiles ``hasim_hook.c`` with ``gcc`` (``$CC``) against CUDA's headers, found in
``--cuda-home``/``$CUDA_HOME``/``$CUDA_PATH`` (``include/``), else the newest
``/usr/local/cuda*/include``, else beside ``nvcc`` on the PATH. No nvcc, no driver and
no GPU are needed. Without headers (or without a C compiler) the build is skipped with
a message and exit status 0 (``--strict``: 1), so a calibration run falls back to the
Python gate. ``--check`` also verifies the exported symbols (``nm -D``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HOOK_DIR = Path(__file__).resolve().parent
SOURCE = HOOK_DIR / "hasim_hook.c"
LIB_PATH = HOOK_DIR / "build" / "libhasim_hook.so"
SYMBOLS = (
    "cuLaunchKernel",
    "cuLaunchKernel_ptsz",
    "cuLaunchKernelEx",
    "cuLaunchKernelEx_ptsz",
    "cuGetProcAddress",
    "cuGetProcAddress_v2",
    "dlsym",
    "cudaLaunchKernel",
    "cudaLaunchKernel_ptsz",
    "cudaLaunchKernelExC",
    "cudaLaunchKernelExC_ptsz",
    "hasim_hook_set_quota",
    "hasim_hook_get_stats",
    "hasim_hook_reset",
    "hasim_hook_version",
)
"""The dynamic symbols the built library exports (CUDA 12+ headers)."""


def cuda_include(cuda_home: str | os.PathLike[str] | None = None) -> Path | None:
    """A CUDA include directory holding ``cuda.h`` and ``cuda_runtime_api.h``, or None."""
    cands: list[Path] = []
    for v in (cuda_home, os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if v:
            cands.append(Path(v) / "include")
    cands.append(Path("/usr/local/cuda/include"))
    versioned = sorted(
        Path("/usr/local").glob("cuda-*"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name[5:].split(".")],
        reverse=True,
    )
    cands += [p / "include" for p in versioned]
    nvcc = shutil.which("nvcc")
    if nvcc:
        cands.append(Path(nvcc).resolve().parent.parent / "include")
    for c in cands:
        if (c / "cuda.h").is_file() and (c / "cuda_runtime_api.h").is_file():
            return c
    return None


def compiler() -> str | None:
    cc = os.environ.get("CC") or "gcc"
    return shutil.which(cc) or shutil.which("cc")


def build(
    out: str | os.PathLike[str] | None = None,
    *,
    cuda_home: str | os.PathLike[str] | None = None,
    force: bool = False,
    quiet: bool = False,
) -> Path | None:
    """Build the hook; its path, or None (with a printed reason) when it cannot be built.

    Rebuilds only when the source is newer than the library (or ``force``). Raises
    RuntimeError when the compiler fails.
    """
    say = (lambda *_a: None) if quiet else (lambda m: print(m, file=sys.stderr))
    lib = Path(out) / LIB_PATH.name if out else LIB_PATH
    inc = cuda_include(cuda_home)
    if inc is None:
        say(
            "hasim hook: build skipped: no CUDA headers (cuda.h, cuda_runtime_api.h) "
            "in $CUDA_HOME/include or /usr/local/cuda*/include; the calibration falls "
            "back to the Python gate"
        )
        return None
    cc = compiler()
    if cc is None:
        say("hasim hook: build skipped: no C compiler (gcc/cc) on the PATH")
        return None
    if lib.exists() and not force and lib.stat().st_mtime >= SOURCE.stat().st_mtime:
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        cc, "-O2", "-foptimize-sibling-calls", "-std=gnu11", "-fPIC", "-fvisibility=hidden",
        "-Wall", "-Wextra", "-Wno-unused-parameter", f"-I{inc}", "-shared", "-o", str(lib),
        str(SOURCE),
        "-ldl", "-lpthread",
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"hasim hook: {' '.join(cmd)} failed:\n{r.stderr}")
    say(f"hasim hook: built {lib} against {inc}")
    return lib


def exported(lib: str | os.PathLike[str]) -> set[str]:
    """The defined dynamic symbols of ``lib`` (``nm -D --defined-only``)."""
    r = subprocess.run(
        ["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True
    )
    return {parts[-1] for line in r.stdout.splitlines() if len(parts := line.split()) >= 3}


SELFTEST_DIR = HOOK_DIR / "selftest"
SELFTEST_MODES = ("procaddr", "nested", "direct", "runtime")
"""How the self-test program reaches a launch: cuGetProcAddress_v2 from dlsym, the
same fetched through itself, dlsym("cuLaunchKernel") on the libcuda handle, and the
runtime's cudaLaunchKernel (a dynamically linked libcudart)."""


def build_selftest(workdir: str | os.PathLike[str], inc: Path | None = None) -> Path:
    """Compile the fake libcuda.so.1 / libcudart.so.13 and the driver program into
    ``workdir``; returns the program's path (run it with LD_LIBRARY_PATH=workdir)."""
    inc = inc or cuda_include()
    cc = compiler()
    if inc is None or cc is None:
        raise RuntimeError("self-test needs CUDA headers and a C compiler")
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    src = SELFTEST_DIR
    steps = [
        [cc, "-O2", "-fPIC", "-shared", f"-I{inc}", "-o", str(d / "libcuda.so.1"),
         str(src / "fake_cuda.c"), "-ldl"],
        [cc, "-O2", "-fPIC", "-shared", f"-I{inc}", "-Wl,-soname,libcudart.so.13", "-o",
         str(d / "libcudart.so.13"), str(src / "fake_cudart.c")],
        [cc, "-O2", f"-I{inc}", "-o", str(d / "selftest"), str(src / "selftest.c"),
         str(d / "libcudart.so.13"), "-ldl", f"-Wl,-rpath,{d}"],
    ]  # fmt: skip
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return d / "selftest"


def run_selftest(
    program: Path,
    lib: Path | None,
    mode: str,
    n: int,
    *,
    quota: float = 1.0,
    window_ms: float = 40.0,
    kernel_ms: float = 1.0,
) -> dict:
    """Run the self-test program once (under the hook when ``lib``); its JSON result,
    with ``stats`` as a dict (``calibration.gate.HOOK_STATS`` names)."""
    import json

    env = dict(os.environ)
    env.update(
        LD_LIBRARY_PATH=str(program.parent),
        HASIM_QUOTA=str(quota),
        HASIM_WINDOW_MS=str(window_ms),
        FAKE_KERNEL_MS=str(kernel_ms),
    )
    env.pop("LD_PRELOAD", None)
    if lib is not None:
        env["LD_PRELOAD"] = str(lib)
    r = subprocess.run(
        [str(program), mode, str(n)], capture_output=True, text=True, env=env, timeout=120
    )
    if r.returncode != 0:
        raise RuntimeError(f"selftest {mode} exited {r.returncode}: {r.stderr.strip()}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    from calibration.gate import HOOK_STATS

    if "stats" in out:
        out["stats"] = dict(zip(HOOK_STATS, out["stats"], strict=False))
    return out


def selftest(lib: Path, workdir: str | os.PathLike[str]) -> list[str]:
    """Check every interception path against fake CUDA libraries (no GPU needed):
    launches counted on the right path, the caller's dlsym scope kept, and a quota of
    0.25 stretching 2 ms kernels about 4x (to within a window). Returns the problems."""
    prog = build_selftest(workdir)
    want = {"procaddr": "launch_procaddr", "nested": "launch_procaddr",
            "direct": "launch_driver", "runtime": "launch_runtime"}  # fmt: skip
    problems = []
    n, w, k = 50, 100.0, 2.0  # 50 kernels of 2 ms: 100 ms busy, 400 ms at quota 0.25
    for mode in SELFTEST_MODES:
        base = run_selftest(prog, lib, mode, n, window_ms=w, kernel_ms=k)
        if base["stats"][want[mode]] != n or base["fake_launches"] != n:
            problems.append(f"{mode}: {base['stats'][want[mode]]:g} of {n} launches seen")
        if base.get("scope_ok") != 1:
            problems.append(f"{mode}: dlsym(RTLD_DEFAULT) lost the caller's scope")
        slow = run_selftest(prog, lib, mode, n, quota=0.25, window_ms=w, kernel_ms=k)
        expect = base["elapsed_ms"] / 0.25
        if abs(slow["elapsed_ms"] - expect) > w + 25:
            problems.append(
                f"{mode}: quota 0.25 took {slow['elapsed_ms']:.0f} ms, expected "
                f"{expect:.0f} +- {w:.0f} (one window)"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m calibration.hook.build",
        description="Build the LD_PRELOAD time-quota gate (libhasim_hook.so) with gcc "
        "against CUDA's headers. Skipped (exit 0) where there are no headers.",
    )
    ap.add_argument("--out", help=f"output directory (default {LIB_PATH.parent})")
    ap.add_argument("--cuda-home", help="CUDA root holding include/cuda.h (default: search)")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    ap.add_argument("--check", action="store_true", help="verify the exported symbols (nm -D)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the build is skipped")
    ap.add_argument(
        "--selftest",
        action="store_true",
        help="run the interception self-test against fake CUDA libraries (no GPU needed)",
    )
    a = ap.parse_args(argv)
    try:
        lib = build(a.out, cuda_home=a.cuda_home, force=a.force)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    if lib is None:
        return 1 if a.strict else 0
    if a.check:
        missing = [s for s in SYMBOLS if s not in exported(lib)]
        if missing:
            print(f"hasim hook: {lib} lacks {', '.join(missing)}", file=sys.stderr)
            return 1
        print(f"hasim hook: {lib} exports {len(SYMBOLS)} symbols", file=sys.stderr)
    if a.selftest:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="hasim-hook-selftest-") as tmp:
            try:
                problems = selftest(lib, tmp)
            except RuntimeError as e:
                problems = [str(e)]
        for p in problems:
            print(f"hasim hook self-test: {p}", file=sys.stderr)
        if problems:
            return 1
        print("hasim hook self-test: all interception paths OK", file=sys.stderr)
    print(lib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
