"""Metadata for ``manifest.json``: host, CPU, GPU (pynvml when importable), torch.

Nothing here initialises CUDA (the parent process must not hold a CUDA context while
it runs MPS): GPU facts come from NVML; the CUDA-side facts (SM count, compute
capability) from the worker's probe (:func:`calibration.worker.probe`).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import socket
import sys
import warnings
from typing import Any

from calibration.partition import cpu_count


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_label(model: str | None = None) -> str:
    """A short ``gpu``-column label for a CPU run, e.g. ``CPU-Intel-Xeon``."""
    s = model or cpu_model()
    s = re.sub(r"\((R|TM|tm|r)\)", "", s)
    s = re.sub(r"@.*$", "", s)
    s = re.sub(r"\b(CPU|Processor|processor)\b", "", s)
    s = re.sub(r"[^A-Za-z0-9.]+", "-", s).strip("-")
    return ("CPU-" + s)[:40] if s else "CPU"


def gpu_label(name: str, total_bytes: int | None) -> str:
    """hasim's ``gpu`` label, e.g. ``H100-80GB`` from ``NVIDIA H100 80GB HBM3``."""
    s = re.sub(r"^(NVIDIA|Tesla|Quadro|GeForce)\s+", "", name.strip(), flags=re.I)
    s = re.sub(r"^(NVIDIA|Tesla)\s+", "", s, flags=re.I)
    m = re.search(r"(\d+)\s*GB", s, flags=re.I)
    core = re.split(r"[\s-]+", s)[0] if s else "GPU"
    if m:
        gb = int(m.group(1))
    elif total_bytes:
        gb = round(total_bytes / 2**30)
    else:
        return core
    return f"{core}-{gb}GB"


def host_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": cpu_count(),
    }
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return info


def torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"torch": None}
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "green_contexts": _has_green_contexts(torch),
    }
    try:
        out["cudnn"] = (
            torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        )
    except Exception:
        out["cudnn"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, get in (
            ("cudnn_allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
            ("matmul_allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
        ):
            try:
                out[key] = bool(get())
            except Exception:
                out[key] = None
    try:
        import torchvision

        out["torchvision"] = torchvision.__version__
    except Exception:
        out["torchvision"] = None
    return out


def _has_green_contexts(torch: Any) -> bool:
    try:
        from torch.cuda import green_contexts

        return bool(getattr(green_contexts, "SUPPORTED", True)) and hasattr(
            green_contexts, "GreenContext"
        )
    except Exception:
        return False


def _dec(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def nvml_info(index: int = 0) -> dict[str, Any]:
    """GPU facts from NVML (pynvml / nvidia-ml-py); ``{"nvml": "unavailable: ..."}`` else."""
    try:
        import pynvml as nv
    except Exception as e:
        return {"nvml": f"unavailable: {type(e).__name__}: {e}"}
    try:
        nv.nvmlInit()
    except Exception as e:
        return {"nvml": f"unavailable: {e}"}
    out: dict[str, Any] = {"nvml": "ok"}

    def q(key: str, fn: Any, *args: Any) -> None:
        try:
            out[key] = _dec(fn(*args))
        except Exception:
            out[key] = None

    try:
        q("driver_version", nv.nvmlSystemGetDriverVersion)
        q("cuda_driver_version", nv.nvmlSystemGetCudaDriverVersion)
        q("device_count", nv.nvmlDeviceGetCount)
        h = nv.nvmlDeviceGetHandleByIndex(index)
        q("name", nv.nvmlDeviceGetName, h)
        q("uuid", nv.nvmlDeviceGetUUID, h)
        try:
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            out["memory_total_bytes"] = int(mem.total)
        except Exception:
            out["memory_total_bytes"] = None
        for key, clk in (("sm", "NVML_CLOCK_SM"), ("mem", "NVML_CLOCK_MEM")):
            c = getattr(nv, clk, None)
            if c is None:
                continue
            q(f"clock_{key}_max_mhz", nv.nvmlDeviceGetMaxClockInfo, h, c)
            q(f"clock_{key}_mhz", nv.nvmlDeviceGetClockInfo, h, c)
            q(f"clock_{key}_app_mhz", nv.nvmlDeviceGetApplicationsClock, h, c)
        try:
            cur, pending = nv.nvmlDeviceGetMigMode(h)
            out["mig_mode"] = {"current": int(cur), "pending": int(pending)}
        except Exception as e:
            out["mig_mode"] = f"n/a ({type(e).__name__})"
        q("compute_mode", nv.nvmlDeviceGetComputeMode, h)
        q("persistence_mode", nv.nvmlDeviceGetPersistenceMode, h)
        q("power_limit_mw", nv.nvmlDeviceGetPowerManagementLimit, h)
        q("cuda_compute_capability", nv.nvmlDeviceGetCudaComputeCapability, h)
        q("pci_bus_id", lambda hh: nv.nvmlDeviceGetPciInfo(hh).busId, h)
    finally:
        try:
            nv.nvmlShutdown()
        except Exception:
            pass
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
