"""Named random streams spawned from one seed.

Each stream is keyed by a name and optional extra keys (e.g. a function name), so
adding a component or a function never shifts another stream's samples.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key(part: str | int) -> int:
    return part if isinstance(part, int) else zlib.crc32(str(part).encode())


class Streams:
    """``streams.get("arrivals")`` or ``streams.get("service", "fn0")`` -> a Generator."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def get(self, name: str, *keys: str | int) -> np.random.Generator:
        ss = np.random.SeedSequence(self.seed, spawn_key=tuple(_key(k) for k in (name, *keys)))
        return np.random.Generator(np.random.PCG64(ss))
