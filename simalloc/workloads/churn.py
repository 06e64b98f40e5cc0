"""Churn: "heavy churn" (no published definition in hakmem; this is simalloc's).

Whole superslabs empty and refill: a steady working set of long-lived blocks plus repeated
bursts.  Each round:

1. **burst**: allocate ``burst_blocks`` blocks of ``burst_min..burst_max`` bytes -- about
   ``burst_mb`` MiB requested, converted to a block count with the mean size.  The default 48 MiB
   of 511..2047-byte blocks (all class C7, 2 KiB strides) is ~39k blocks on ~38 superslabs;
2. **release**: free the whole burst (``free_order``: ``fifo`` = allocation order, ``lifo``, or
   ``random``), so the burst's superslabs become fully empty and meet the release policy;
3. **idle**: ``idle_ratio`` x (burst ops) toggle operations on the steady set (slot
   ``r % ws``: free it if occupied, else malloc ``steady_min..steady_max`` bytes), the long
   quiet phase in which only what the policy kept stays resident.

Under FAST every burst superslab goes to the LRU cache committed (512 MiB limit), so the
resident set stays at the burst's peak (~77 MiB) all run; under LEAN only ``TARGET_MB`` of
committed superslabs are kept and the rest are decommitted, so resident drops after every
burst.  The idle phase is ~86% of the ops (``idle_ratio`` 6), so a mean over evenly spaced
samples is dominated by the post-burst state.

The steady set's sizes (16..255: C2..C5) and the burst's (C7) are in disjoint classes on
purpose: a class's front cache parks freed blocks (and its bottom entries are never drained
while the cache oscillates), which keeps their superslabs from ever becoming empty; steady-set
blocks of the burst's classes would scatter into burst superslabs and pin more of them each
round (measured with a 16..1039-byte steady set and 256..2047-byte bursts: the superslabs
still active after a burst grew from 3 to 14 over 11 rounds).
Set ``steady_max=1039`` to study exactly that.

Parameters:

* ``ops``: target timed operations; sets the number of rounds (``rounds = max(1,
  round(ops / round_ops))``, ~551k ops per round at the defaults, so small ``ops`` still run
  one whole round) unless ``rounds`` is given.  ``total_ops`` is exact.
* ``ws``: steady-set slots (default 400; ~50% occupied after the untimed warm-up).
* ``seed``: seeds every draw (sizes, slots, free order).
* ``burst_mb`` (48), ``burst_min`` (511), ``burst_max`` (2047): burst volume and size range.
* ``steady_min`` (16), ``steady_max`` (255): steady-set size range.
* ``idle_ratio`` (6.0): idle ops per burst op (a burst is ``2 * burst_blocks`` ops).
* ``free_order`` ("fifo"): order the burst is freed in.
* ``rounds`` (None): fixed number of rounds instead of deriving it from ``ops``.

Warm-up (untimed): ``2 * ws`` toggle operations fill the steady set to ~50%, not drained.
Slots: ``0..ws-1`` steady set, ``ws..ws+burst_blocks-1`` the burst.  Final drain: the steady
set's occupied slots, in index order.

Stresses: superslab release and reacquisition -- the LRU cache, LEAN's budget, decommit and
refault costs -- the case Mixed never reaches.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import numpy as np

from ..constants import OP_MALLOC
from .base import (
    BLOCK_ROWS,
    Workload,
    XorshiftStream,
    drain_rows,
    free_rows,
    malloc_rows,
    toggle_kinds,
    toggle_parity,
)

__all__ = ["ChurnWorkload", "SteadySetWarmup", "derive_rounds", "steady_rows"]

_FREE_ORDERS = ("fifo", "lifo", "random")


def steady_rows(rng: XorshiftStream, n: int, ws: int, occ: np.ndarray, lo: int = 16,
                hi: int = 255) -> Iterator[np.ndarray]:
    """``n`` toggle operations on slots ``0..ws-1`` (occupancy ``occ``, updated): slot
    ``r % ws`` is freed if occupied, else gets ``lo + (r >> 16) % (hi - lo + 1)`` bytes.
    Blocks of at most ``BLOCK_ROWS`` rows."""
    while n > 0:
        take = min(n, BLOCK_ROWS)
        r = rng.next(take)
        idx = (r % np.uint32(ws)).astype(np.int64)
        kinds = toggle_kinds(idx, occ)
        sizes = lo + ((r >> np.uint32(16)) % np.uint32(hi - lo + 1)).astype(np.int64)
        rows = np.empty((take, 3), dtype=np.int64)
        rows[:, 0] = kinds
        rows[:, 1] = idx
        rows[:, 2] = np.where(kinds == OP_MALLOC, sizes, 0)
        yield rows
        n -= take


def derive_rounds(p: dict[str, Any], ops: int, round_ops: float) -> int:
    """Rounds of a burst workload: ``p["rounds"]`` if given (>= 0), else about ``ops /
    round_ops`` (at least one); written back into ``p`` so ``describe()`` shows it."""
    if p["rounds"] is None:
        rounds = max(1, round(ops / round_ops))
    else:
        rounds = int(p["rounds"])
        if rounds < 0:
            raise ValueError(f"rounds={rounds} must be >= 0")
    p["rounds"] = rounds
    return rounds


class SteadySetWarmup(Workload):
    """A steady set of ``ws`` slots toggled ``2 ws`` times before the timed part (churn, idle):
    the warm-up rows and the occupancy they leave."""

    steady_min: int
    steady_max: int

    def _warmup_rows(self) -> Iterator[np.ndarray]:
        occ = np.zeros(self.ws, dtype=bool)
        yield from steady_rows(XorshiftStream(self.seed, 1), 2 * self.ws, self.ws, occ,
                               self.steady_min, self.steady_max)

    def _steady_after_warmup(self) -> np.ndarray:
        occ = np.zeros(self.ws, dtype=bool)
        toggle_parity((XorshiftStream(self.seed, 1).next(2 * self.ws) % np.uint32(self.ws))
                      .astype(np.int64), occ)
        return occ


class ChurnWorkload(SteadySetWarmup):
    """Bursts that fill and empty whole superslabs over a steady working set."""

    name = "churn"
    STRESSES = ("superslab release/reuse: bursts fill ~burst_mb MiB of superslabs and free "
                "them, then a long idle phase on a small steady set")
    DEFAULT_WS = 400
    DEFAULTS = MappingProxyType({"burst_mb": 48.0, "burst_min": 511, "burst_max": 2047,
                                 "steady_min": 16, "steady_max": 255, "idle_ratio": 6.0,
                                 "free_order": "fifo", "rounds": None})

    def __init__(self, *, ops: int, ws: int | None = None, seed: int = 1, **params: Any) -> None:
        super().__init__(ops=ops, ws=ws, seed=seed, **params)
        p = self.params
        self.burst_min, self.burst_max = self._size_range("burst_min", "burst_max", "burst sizes")
        self.steady_min, self.steady_max = self._size_range("steady_min", "steady_max", "steady sizes")
        if p["free_order"] not in _FREE_ORDERS:
            raise ValueError(f"free_order={p['free_order']!r}: expected one of {_FREE_ORDERS}")
        if float(p["burst_mb"]) <= 0 or float(p["idle_ratio"]) < 0:
            raise ValueError("burst_mb must be > 0 and idle_ratio >= 0")
        mean = (self.burst_min + self.burst_max) / 2
        self.burst_blocks = max(1, int(float(p["burst_mb"]) * (1 << 20) / max(mean, 1.0)))
        self.idle_ops = int(round(float(p["idle_ratio"]) * 2 * self.burst_blocks))
        round_ops = 2 * self.burst_blocks + self.idle_ops
        self.rounds = derive_rounds(p, self.ops, round_ops)
        self.nslots = self.ws + self.burst_blocks

    def _sizes(self) -> tuple[int, int]:
        occ = self._steady_after_warmup()
        idle = XorshiftStream(self.seed, 3)
        left = self.rounds * self.idle_ops
        while left > 0:
            n = min(left, BLOCK_ROWS)
            toggle_parity((idle.next(n) % np.uint32(self.ws)).astype(np.int64), occ)
            left -= n
        return self.rounds * (2 * self.burst_blocks + self.idle_ops), int(occ.sum())

    def _generate(self) -> Iterator[tuple[np.ndarray, bool]]:
        occ = self._steady_after_warmup()
        rng = XorshiftStream(self.seed, 2)  # burst sizes and free order
        idle = XorshiftStream(self.seed, 3)  # idle toggles
        nb = self.burst_blocks
        burst_slots = np.arange(self.ws, self.ws + nb, dtype=np.int64)
        order = self.params["free_order"]
        for _ in range(self.rounds):
            sizes = rng.integers(nb, self.burst_min, self.burst_max)
            for i in range(0, nb, BLOCK_ROWS):
                yield malloc_rows(burst_slots[i:i + BLOCK_ROWS], sizes[i:i + BLOCK_ROWS]), False
            if order == "fifo":
                fslots = burst_slots
            elif order == "lifo":
                fslots = burst_slots[::-1]
            else:
                fslots = burst_slots[rng.permutation(nb)]
            for i in range(0, nb, BLOCK_ROWS):
                yield free_rows(fslots[i:i + BLOCK_ROWS]), False
            for rows in steady_rows(idle, self.idle_ops, self.ws, occ, self.steady_min,
                                    self.steady_max):
                yield rows, False
        yield drain_rows(occ), True
