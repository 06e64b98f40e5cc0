"""Mstress: mimalloc-bench's mstress, single-threaded: phases in which most objects die and
some survive.

Slots form ``lifetime`` buffers of ``ws`` slots each.  Phase ``p`` uses buffer ``p % lifetime``:

1. free the blocks still there (the survivors of phase ``p - lifetime``, in slot order);
2. allocate ``ws`` blocks: ``8 * k`` bytes with ``k`` uniform in 1..128 (8..1024 bytes, as
   mstress's ``alloc_items``), except a ``large_fraction`` of them that take
   ``1025..large_max`` bytes (mstress's 1% "large objects");
3. free all but a ``keep`` fraction of them, in random order.

The survivors stay alive, scattered across the phase's slabs, for ``lifetime - 1`` more
phases, so superslabs seldom become fully empty although most of their bytes are free.

Parameters:

* ``ops``: target timed operations; ``phases = max(1, round(ops / (2 * ws)))`` unless
  ``phases`` is given.  Every block is freed once, so ``total_ops = 2 * ws * phases``; the
  final drain (survivors still alive, in slot order) belongs to the last chunk.
* ``ws``: blocks allocated per phase (default 10000).
* ``seed``: seeds sizes, survivors and free order.
* ``keep`` (0.1): fraction of a phase's blocks that survive it.
* ``lifetime`` (4): phases a survivor lives (its buffer is reused after that).
* ``large_fraction`` (0.01), ``large_max`` (2047): share and top size of large blocks (above
  2047 they take the direct-mmap path, which is slow: one mapping per block).
* ``phases`` (None).

Stresses: release under fragmentation -- emptied slabs inside superslabs pinned by survivors
(the slab-purge case), and the burst-then-shrink pattern of a phase.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import numpy as np

from .base import BLOCK_ROWS, Workload, XorshiftStream, free_rows, malloc_rows

__all__ = ["MstressWorkload"]


class MstressWorkload(Workload):
    """Allocate-many / free-most phases with survivors (see the module docstring)."""

    name = "mstress"
    STRESSES = ("release under fragmentation: phases allocate many blocks and free most, "
                "survivors pin their slabs for a few phases")
    DEFAULT_WS = 10000
    DEFAULTS = MappingProxyType({"keep": 0.1, "lifetime": 4, "large_fraction": 0.01,
                                 "large_max": 2047, "phases": None})

    def __init__(self, *, ops: int, ws: int | None = None, seed: int = 1, **params: Any) -> None:
        super().__init__(ops=ops, ws=ws, seed=seed, **params)
        p = self.params
        self.keep = float(p["keep"])
        self.lifetime = int(p["lifetime"])
        self.large_fraction = float(p["large_fraction"])
        self.large_max = int(p["large_max"])
        if not 0.0 <= self.keep <= 1.0 or not 0.0 <= self.large_fraction <= 1.0:
            raise ValueError("keep and large_fraction must be in [0, 1]")
        if self.lifetime < 1:
            raise ValueError(f"lifetime={self.lifetime} must be >= 1")
        if self.large_max < 1025:
            raise ValueError(f"large_max={self.large_max} must be >= 1025")
        if p["phases"] is None:
            self.phases = max(1, round(self.ops / (2 * self.ws)))
        else:
            self.phases = int(p["phases"])
            if self.phases < 0:
                raise ValueError(f"phases={self.phases} must be >= 0")
        p["phases"] = self.phases
        self.nslots = self.ws * self.lifetime

    def _generate(self) -> Iterator[tuple[np.ndarray, bool]]:
        rng = XorshiftStream(self.seed, 3)
        ws = self.ws
        occ = np.zeros(self.nslots, dtype=bool)
        for phase in range(self.phases):
            base = (phase % self.lifetime) * ws
            buf = occ[base:base + ws]
            old = np.flatnonzero(buf).astype(np.int64) + base
            if len(old):
                yield free_rows(old), False
            sizes = 8 * rng.integers(ws, 1, 128)
            large = rng.random(ws) < self.large_fraction
            n_large = int(large.sum())
            if n_large:
                sizes[large] = rng.integers(n_large, 1025, self.large_max)
            slots = np.arange(base, base + ws, dtype=np.int64)
            for i in range(0, ws, BLOCK_ROWS):
                yield malloc_rows(slots[i:i + BLOCK_ROWS], sizes[i:i + BLOCK_ROWS]), False
            survive = rng.random(ws) < self.keep
            buf[:] = survive
            dying = slots[~survive]
            dying = dying[rng.permutation(len(dying))]
            for i in range(0, len(dying), BLOCK_ROWS):
                yield free_rows(dying[i:i + BLOCK_ROWS]), False
        yield free_rows(np.flatnonzero(occ).astype(np.int64)), True
