"""Larson: a single-threaded larson-like server simulation (mimalloc-bench's larsonN).

A table of ``ws`` slots is filled (untimed warm-up); then each round replaces ``ws`` randomly
chosen slots: the victim's block is freed and a new block of a random size in
``min_size..max_size`` is allocated in its place.  Long-lived blocks of random age sit next to
short-lived ones, so slabs stay partially used and free lists get interleaved across slabs.
(The real larson frees objects in other threads -- "bleeding" -- which a single-threaded
simulator cannot show.)

Parameters:

* ``ops``: target timed operations; ``rounds = max(1, round((ops - ws) / (2 * ws)))`` unless
  ``rounds`` is given; ``total_ops = rounds * ws * 2 + ws`` (the final drain frees the table).
* ``ws``: table slots (default 5000, mimalloc-bench's ``chunks``).
* ``seed``: seeds sizes and victims.
* ``min_size`` (8), ``max_size`` (1000): size range (mimalloc-bench's ``larson 5 8 1000 ...``).
* ``rounds`` (None).

Stresses: free-list reuse and fragmentation in a steady, full working set (the partial-slab
refill stage), superslabs that never empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import numpy as np

from ..constants import OP_FREE, OP_MALLOC
from .base import BLOCK_ROWS, Workload, XorshiftStream, free_rows, malloc_rows

__all__ = ["LarsonWorkload"]


class LarsonWorkload(Workload):
    """Random replacement in a full table (see the module docstring)."""

    name = "larson"
    STRESSES = "free-list reuse and fragmentation: random replacement in a full table of blocks"
    DEFAULT_WS = 5000
    DEFAULTS = MappingProxyType({"min_size": 8, "max_size": 1000, "rounds": None})

    def __init__(self, *, ops: int, ws: int | None = None, seed: int = 1, **params: Any) -> None:
        super().__init__(ops=ops, ws=ws, seed=seed, **params)
        p = self.params
        self.min_size, self.max_size = self._size_range("min_size", "max_size")
        if p["rounds"] is None:
            self.rounds = max(1, round((self.ops - self.ws) / (2 * self.ws)))
        else:
            self.rounds = int(p["rounds"])
            if self.rounds < 0:
                raise ValueError(f"rounds={self.rounds} must be >= 0")
        p["rounds"] = self.rounds
        self.nslots = self.ws

    def _warmup_rows(self) -> Iterator[np.ndarray]:
        rng = XorshiftStream(self.seed, 1)
        slots = np.arange(self.ws, dtype=np.int64)
        sizes = rng.integers(self.ws, self.min_size, self.max_size)
        for i in range(0, self.ws, BLOCK_ROWS):
            yield malloc_rows(slots[i:i + BLOCK_ROWS], sizes[i:i + BLOCK_ROWS])

    def _generate(self) -> Iterator[tuple[np.ndarray, bool]]:
        rng = XorshiftStream(self.seed, 2)
        per_block = max(1, BLOCK_ROWS // 2)
        left = self.rounds * self.ws
        while left > 0:
            n = min(left, per_block)
            victims = rng.integers(n, 0, self.ws - 1)
            sizes = rng.integers(n, self.min_size, self.max_size)
            rows = np.empty((2 * n, 3), dtype=np.int64)
            rows[0::2, 0] = OP_FREE
            rows[0::2, 1] = victims
            rows[0::2, 2] = 0
            rows[1::2, 0] = OP_MALLOC
            rows[1::2, 1] = victims
            rows[1::2, 2] = sizes
            yield rows, False
            left -= n
        yield free_rows(np.arange(self.ws, dtype=np.int64)), True
