"""The LD_PRELOAD gate (calibration/hook): build, exported symbols, and every interception
path exercised against fake CUDA libraries (no GPU, no driver needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from calibration.hook import build as hb

needs_headers = pytest.mark.skipif(
    hb.cuda_include() is None or hb.compiler() is None or shutil.which("nm") is None,
    reason="no CUDA headers / C compiler / nm here",
)


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if hb.cuda_include() is None or hb.compiler() is None:
        pytest.skip("no CUDA headers or C compiler")
    out = hb.build(tmp_path_factory.mktemp("hook"), force=True, quiet=True)
    assert out is not None and out.is_file()
    return out


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory, lib: Path) -> Path:
    return hb.build_selftest(tmp_path_factory.mktemp("selftest"))


@needs_headers
def test_hook_exports_the_intercepted_symbols(lib):
    syms = hb.exported(lib)
    for s in (
        "cuLaunchKernel",
        "cuLaunchKernelEx",
        "cuGetProcAddress",
        "cuGetProcAddress_v2",
        "cudaLaunchKernel",
        "dlsym",
        "hasim_hook_set_quota",
        "hasim_hook_get_stats",
    ):
        assert s in syms, s
    assert set(hb.SYMBOLS) <= syms
    internal = {"gate", "after_lookup", "swap_in", "pa_cuLaunchKernel"}
    assert not internal & syms  # only the API is exported (-fvisibility=hidden)


@needs_headers
def test_dlsym_passthrough_is_a_tail_call(lib):
    """Unredirected dlsym lookups leave by a jump, so glibc still sees the real caller."""
    if shutil.which("objdump") is None:
        pytest.skip("no objdump")
    dis = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True
    ).stdout
    body = dis.split("<dlsym>:", 1)[1].split("\n\n", 1)[0]
    assert "jmp    *%" in body or "jmp *%" in body or "br\tx" in body


@needs_headers
@pytest.mark.parametrize(
    ("mode", "counter"),
    [
        ("procaddr", "launch_procaddr"),  # cuGetProcAddress_v2 from dlsym(libcuda handle)
        ("nested", "launch_procaddr"),  # cuGetProcAddress fetched through itself
        ("direct", "launch_driver"),  # dlsym(libcuda handle, "cuLaunchKernel")
        ("runtime", "launch_runtime"),  # cudaLaunchKernel of a linked libcudart
    ],
)
def test_every_launch_path_is_intercepted(lib, prog, mode, counter):
    plain = hb.run_selftest(prog, None, mode, 5, kernel_ms=0.1)
    assert plain["fake_launches"] == 5 and "stats" not in plain
    r = hb.run_selftest(prog, lib, mode, 20, kernel_ms=0.1)
    assert r["fake_launches"] == 20  # the real (fake) function still ran
    assert r["stats"][counter] == 20
    assert r["scope_ok"] == 1  # dlsym(RTLD_DEFAULT) from a local library still works


@needs_headers
def test_quota_stretches_kernels_about_1_over_q(lib, prog):
    """50 kernels of 2 ms (100 ms) under quota 0.25, W = 100 ms: about 400 ms, within a window."""
    base = hb.run_selftest(prog, lib, "procaddr", 50, window_ms=100, kernel_ms=2)
    slow = hb.run_selftest(prog, lib, "procaddr", 50, quota=0.25, window_ms=100, kernel_ms=2)
    assert abs(slow["elapsed_ms"] - base["elapsed_ms"] / 0.25) <= 100 + 25
    st = slow["stats"]
    assert st["quota"] == 0.25 and st["window_ms"] == 100
    assert st["tokens"] >= 4 and st["waits"] >= 3


@needs_headers
def test_selftest_reports_no_problem(lib, tmp_path):
    assert hb.selftest(lib, tmp_path) == []


def test_build_is_skipped_without_headers(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(hb, "cuda_include", lambda *_a, **_k: None)
    assert hb.build(tmp_path) is None
    assert "build skipped: no CUDA headers" in capsys.readouterr().err
    assert hb.main(["--out", str(tmp_path)]) == 0
    assert hb.main(["--out", str(tmp_path), "--strict"]) == 1


def test_cuda_include_honours_cuda_home(tmp_path):
    inc = tmp_path / "include"
    inc.mkdir()
    (inc / "cuda.h").write_text("")
    (inc / "cuda_runtime_api.h").write_text("")
    assert hb.cuda_include(tmp_path) == inc


@needs_headers
def test_make_builds_the_same_library(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make")
    r = subprocess.run(
        ["make", "-C", str(hb.HOOK_DIR), f"OUT={tmp_path}", "check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "exports OK" in r.stdout
    assert (tmp_path / "libhasim_hook.so").is_file()
