"""hasim: a discrete-event simulator of serverless GPU inference with fine-grained
(spatio-temporal) GPU sharing.

``hasim.run(["workload.rate=20", "seed=1"])`` runs one simulation and returns a
``Result`` with ``.summary`` (dict) and ``.requests`` (DataFrame).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hasim.sim.runner import Result


def run(overrides: list[str] | None = None) -> Result:
    """Run one simulation from Hydra overrides (see ``hasim run --help``)."""
    from hasim.sim.runner import run as _run

    return _run(overrides)


__all__ = ["run", "__version__"]
