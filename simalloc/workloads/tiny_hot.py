"""Tiny-hot: hakmem's ``bench_tiny_hot`` (hakmem-design.md s7).

Each cycle allocates a batch of same-size blocks (slots ``0..batch-1``) and then frees them in
LIFO order (``batch-1..0``); ``ops = cycles * batch * 2``.  Nothing survives a cycle, so there is
no warm-up and no final drain (``drain_ops == 0``).

Parameters:

* ``ops``: target timed operations; ``cycles = max(1, ops // (2 * batch))`` and
  ``total_ops = cycles * batch * 2`` exactly.
* ``ws``: the batch (default 100, hakmem's).
* ``size`` (64): bytes per block (one class: C4, stride 128, with the 1-byte header).
* ``seed``: accepted for a uniform interface; the stream has no randomness (every seed gives
  the same stream).

Stresses: the front cache's push/pop fast path on a single class (refill/drain batches every
cycle once ``batch`` exceeds the cache), with essentially no slow-path work.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import numpy as np

from .base import BLOCK_ROWS, Workload, free_rows, malloc_rows

__all__ = ["TinyHotWorkload"]


class TinyHotWorkload(Workload):
    """bench_tiny_hot (see the module docstring)."""

    name = "tiny-hot"
    STRESSES = "front-cache fast path: batches of one size allocated then freed LIFO"
    DEFAULT_WS = 100
    DEFAULTS = MappingProxyType({"size": 64})

    def __init__(self, *, ops: int, ws: int | None = None, seed: int = 1, **params: Any) -> None:
        super().__init__(ops=ops, ws=ws, seed=seed, **params)
        self.batch = self.ws
        self.size = int(self.params["size"])
        if self.size < 0:
            raise ValueError(f"size={self.size} must be >= 0")
        self.cycles = max(1, self.ops // (2 * self.batch))
        self.params["cycles"] = self.cycles
        self.nslots = self.batch

    def _generate(self) -> Iterator[tuple[np.ndarray, bool]]:
        slots = np.arange(self.batch, dtype=np.int64)
        cycle = np.concatenate([malloc_rows(slots, self.size), free_rows(slots[::-1])])
        per_block = max(1, BLOCK_ROWS // len(cycle))
        left = self.cycles
        while left > 0:
            n = min(left, per_block)
            yield np.tile(cycle, (n, 1)), False
            left -= n
