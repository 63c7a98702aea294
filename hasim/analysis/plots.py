"""Plots of one run: latency CDF and GPU share over time."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def run_figure(requests: pd.DataFrame, usage: pd.DataFrame, title: str = "") -> Figure:
    """Left: CDF of end-to-end latency (s) of completed requests, per model when few.
    Right: total GPU share held (GPUs = sum of sm/100 x quota) per sample time."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    done = requests[requests["status"] == "completed"]
    lat = np.sort(done["latency"].to_numpy())
    if lat.size:
        y = np.arange(1, lat.size + 1) / lat.size
        step = max(1, lat.size // 5000)
        ax1.plot(lat[::step], y[::step], label="all")
        if lat[-1] > 20 * max(lat[0], 1e-6):
            ax1.set_xscale("log")
    ax1.set_xlabel("end-to-end latency (s)")
    ax1.set_ylabel("fraction of completed requests")
    ax1.set_title("latency CDF")
    ax1.grid(alpha=0.3)
    if len(usage):
        t = usage["time"].to_numpy()
        ax2.step(t, usage["share"].to_numpy(), where="post", label="GPU share held")
        ax2.step(t, usage["gpus_used"].to_numpy(), where="post", alpha=0.6, label="GPUs in use")
        ax2.legend()
    ax2.set_xlabel("simulated time (s)")
    ax2.set_ylabel("GPUs")
    ax2.set_title("GPU share over time")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
