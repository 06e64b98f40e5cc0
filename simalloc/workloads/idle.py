"""Idle: bursts of work, each followed by an idle gap -- the program that "keeps its RSS while idle".

The most common complaint in real allocators' issue trackers is memory that stays resident
while a program sits idle after a burst (jemalloc #1940, gperftools #1382, mimalloc #537).  This
workload has that shape, with idle gaps as ``OP_IDLE`` rows (:mod:`simalloc.constants`: the
size column holds the gap in nanoseconds; ``Heap.replay`` advances the heap's virtual clock and
ticks background policies at their wake-ups; the native driver sleeps).  Each round::

    live bytes  ^      ___
                |     /   \\            ___
                |    /     \\          /   \\
                |___/       \\________/     \\_______ ...
                |  grow  work shrink  idle   grow ...
                '--------------------------------------> time (ops, then idle_s of nothing)

1. **grow**: allocate ``f x burst_blocks`` blocks of ``burst_min..burst_max`` bytes, ``f`` drawn
   per round in ``[min_fraction, 1]`` (so rounds differ in height; ``burst_blocks`` = about
   ``burst_mb`` MiB at the mean size);
2. **work**: ``work_ratio`` x (blocks allocated) toggle operations on the steady set (slot
   ``r % ws``: free it if occupied, else malloc ``steady_min..steady_max`` bytes);
3. **shrink**: free the burst in random order (what the policy may give back now);
4. **idle**: one ``OP_IDLE`` row of ``idle_s`` seconds.

The default sizes of the burst and of the steady set overlap (16..1039 bytes, Mixed's range), so
steady blocks land in burst superslabs and keep them live: what the burst leaves behind is
mostly EMPTY slabs inside live superslabs, the pages the release rules (jemalloc's decay,
mimalloc's purge delay, tcmalloc's background release) act on -- or, for activity-driven and
free-driven rules, do not act on while idle.

Parameters:

* ``ops``: target timed operations; sets the number of rounds (``max(1, round(ops /
  mean round ops))``) unless ``rounds`` is given.  ``total_ops`` is exact and counts the idle
  rows (one per round) as rows, not as operations (the heap's op counter does not move).
* ``ws``: steady-set slots (default 400; ~50% occupied after the untimed warm-up).
* ``seed``: seeds every draw.
* ``burst_mb`` (8), ``burst_min`` (16), ``burst_max`` (1039): the largest burst and its sizes.
* ``min_fraction`` (0.25): the smallest burst, as a fraction of the largest.
* ``steady_min`` (16), ``steady_max`` (1039): steady-set sizes.
* ``work_ratio`` (1.0): steady toggles per burst block.
* ``idle_s`` (1.0): seconds of each idle gap (virtual in the simulator, real in the native
  driver).
* ``rounds`` (None): a fixed number of rounds.

Warm-up (untimed): ``2 * ws`` toggles fill the steady set to ~50%, not drained.  Slots:
``0..ws-1`` steady, then the burst.  Final drain: the steady set's occupied slots in index
order (after the last idle gap).

Stresses: release while idle -- background versus activity-driven clocks, decay and purge
delays measured in time rather than operations.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import numpy as np

from ..constants import OP_IDLE
from .base import BLOCK_ROWS, XorshiftStream, drain_rows, free_rows, malloc_rows
from .churn import SteadySetWarmup, derive_rounds, steady_rows

__all__ = ["IdleWorkload", "idle_row"]

_MAX_IDLE_S = 1e6


def idle_row(seconds: float) -> np.ndarray:
    """One ``(OP_IDLE, 0, ns)`` row: ``seconds`` of idle time."""
    return np.array([[OP_IDLE, 0, int(round(seconds * 1e9))]], dtype=np.int64)


class IdleWorkload(SteadySetWarmup):
    """Bursts of work, each followed by an idle gap (see the module docstring)."""

    name = "idle"
    STRESSES = ("release while idle: bursts grow and shrink the heap, then idle gaps of idle_s "
                "seconds (OP_IDLE rows) in which only background policies act")
    DEFAULT_WS = 400
    DEFAULTS = MappingProxyType({"burst_mb": 8.0, "burst_min": 16, "burst_max": 1039,
                                 "min_fraction": 0.25, "steady_min": 16, "steady_max": 1039,
                                 "work_ratio": 1.0, "idle_s": 1.0, "rounds": None})

    def __init__(self, *, ops: int, ws: int | None = None, seed: int = 1, **params: Any) -> None:
        super().__init__(ops=ops, ws=ws, seed=seed, **params)
        p = self.params
        self.burst_min, self.burst_max = self._size_range("burst_min", "burst_max", "burst sizes")
        self.steady_min, self.steady_max = self._size_range("steady_min", "steady_max", "steady sizes")
        self.idle_s = float(p["idle_s"])
        self.min_fraction = float(p["min_fraction"])
        self.work_ratio = float(p["work_ratio"])
        if float(p["burst_mb"]) <= 0 or not 0 < self.min_fraction <= 1 or self.work_ratio < 0:
            raise ValueError("burst_mb must be > 0, min_fraction in (0, 1], work_ratio >= 0")
        if not 0 <= self.idle_s <= _MAX_IDLE_S:
            raise ValueError(f"idle_s={self.idle_s} must be in 0..{_MAX_IDLE_S:g} seconds")
        mean = (self.burst_min + self.burst_max) / 2
        self.burst_blocks = max(1, int(float(p["burst_mb"]) * (1 << 20) / max(mean, 1.0)))
        mean_blocks = self.burst_blocks * (1 + self.min_fraction) / 2
        round_ops = (2 + self.work_ratio) * mean_blocks + 1
        self.rounds = derive_rounds(p, self.ops, round_ops)
        self.nslots = self.ws + self.burst_blocks

    def round_blocks(self) -> list[int]:
        """Blocks allocated by each round's burst."""
        u = XorshiftStream(self.seed, 4).random(self.rounds)
        f = self.min_fraction + (1 - self.min_fraction) * u
        return [max(1, int(x * self.burst_blocks)) for x in f]

    def _generate(self) -> Iterator[tuple[np.ndarray, bool]]:
        occ = self._steady_after_warmup()
        rng = XorshiftStream(self.seed, 2)  # burst sizes and free order
        work = XorshiftStream(self.seed, 3)  # steady toggles
        for nb in self.round_blocks():
            slots = np.arange(self.ws, self.ws + nb, dtype=np.int64)
            sizes = rng.integers(nb, self.burst_min, self.burst_max)
            for i in range(0, nb, BLOCK_ROWS):
                yield malloc_rows(slots[i:i + BLOCK_ROWS], sizes[i:i + BLOCK_ROWS]), False
            for rows in steady_rows(work, int(round(self.work_ratio * nb)), self.ws, occ,
                                    self.steady_min, self.steady_max):
                yield rows, False
            order = slots[rng.permutation(nb)]
            for i in range(0, nb, BLOCK_ROWS):
                yield free_rows(order[i:i + BLOCK_ROWS]), False
            yield idle_row(self.idle_s), False
        yield drain_rows(occ), True

    def idle_seconds(self) -> float:
        """Idle time in the timed part (``rounds x idle_s``)."""
        return self.rounds * self.idle_s
