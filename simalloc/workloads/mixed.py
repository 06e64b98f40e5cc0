"""Mixed: hakmem's ``bench_random_mixed``, operation for operation (hakmem-design.md s7).

Each cycle: ``r = xorshift32(state)``; ``idx = r % ws``; if ``slots[idx]`` is occupied it is
freed, else ``16 + (r & 0x3FF)`` bytes (16..1039) are allocated there and the first byte is
written.  Every cycle is exactly one malloc or one free; occupancy settles near 50% (about 200
live blocks, ~100 KB, at ws=400) and the size and the slot come from the same ``r``.

Parameters:

* ``ops``: cycles of the timed loop (the benchmark's ``cycles`` argument).
* ``ws``: slots (default 400, the scorecard's; 4000 is the other named case, "Mixed WS=4000").
* ``seed``: the timed loop's xorshift32 seed (hakmem's scorecard uses 1).  Seeds that are 0
  mod 2**32, or whose prefault seed is, are rejected (0 is xorshift's fixed point).
* ``prefault`` (default None = ``ops // 10``): untimed cycles run first with seed
  ``seed + 0xDEADBEEF`` (mod 2**32); the slots are NOT drained, so the timed loop starts warm.

Timed part = the ``ops`` cycles, then the final drain (free every occupied slot in index
order), as hakmem times it.  ``total_ops = ops + drain frees``; the number of drain frees is
computed exactly (vectorised xorshift32 and a per-slot parity count: each hit flips a slot).

Stresses: the tiny hot path (front cache, free lists, carving) with a small, steady working set
across all classes C2..C7 -- and, for release policies, the case where no superslab ever
empties (Phase 54's ``lean_retire=0``).

Execution: :meth:`MixedWorkload.warmup` and :meth:`MixedWorkload.run_chunks` use the kernel's
own loop (``Heap.run_mixed``, chained through the returned xorshift state, then
``Heap.drain_slots``); :meth:`MixedWorkload.op_stream` is the identical sequence as rows
(free rows carry size 0) for ``Heap.replay``, parity tests and the native driver.
:func:`mixed_ops` is a plain-Python reference generator of the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..constants import OP_FREE, OP_MALLOC
from .base import (
    BLOCK_ROWS,
    Workload,
    drain_rows,
    toggle_kinds,
    toggle_parity,
    xorshift32,
    xorshift32_array,
)

if TYPE_CHECKING:
    from ..heap import Heap

__all__ = ["PREFAULT_SEED_OFFSET", "MixedWorkload", "mixed_ops", "run_mixed_on"]

#: hakmem's prefault runs with ``seed + 0xDEADBEEF``.
PREFAULT_SEED_OFFSET = 0xDEADBEEF
_MASK32 = 0xFFFFFFFF


def _seeds(seed: int) -> tuple[int, int]:
    timed = seed & _MASK32
    warm = (seed + PREFAULT_SEED_OFFSET) & _MASK32
    if timed == 0 or warm == 0:
        raise ValueError(f"seed={seed}: xorshift32 state 0 (timed or prefault seed) never changes; "
                         "pick another seed")
    return timed, warm


def mixed_ops(cycles: int, ws: int = 400, seed: int = 1, *, prefault: int | None = None,
              drain: bool = True) -> Iterator[tuple[int, int, int]]:
    """Reference generator (plain Python) of the Mixed timed stream: ``(kind, slot, size)``.

    The prefault (``cycles // 10`` cycles by default, seed ``seed + 0xDEADBEEF``) only sets the
    starting occupancy and is not yielded; ``prefault=0`` starts from empty slots.  With
    ``drain`` the final drain's frees follow the ``cycles`` loop rows."""
    s, warm = _seeds(seed)
    occ = bytearray(ws)
    n_pre = cycles // 10 if prefault is None else prefault
    for _ in range(n_pre):
        warm = xorshift32(warm)
        occ[warm % ws] ^= 1
    for _ in range(cycles):
        s = xorshift32(s)
        i = s % ws
        if occ[i]:
            occ[i] = 0
            yield OP_FREE, i, 0
        else:
            occ[i] = 1
            yield OP_MALLOC, i, 16 + (s & 0x3FF)
    if drain:
        for i in range(ws):
            if occ[i]:
                yield OP_FREE, i, 0


def _mixed_rows(state: int, cycles: int, ws: int, occ: np.ndarray) -> Iterator[np.ndarray]:
    """Rows of ``cycles`` Mixed cycles after ``state``, in blocks; updates ``occ``."""
    left = cycles
    while left > 0:
        n = min(left, BLOCK_ROWS)
        r, state = xorshift32_array(state, n)
        idx = (r % np.uint32(ws)).astype(np.int64)
        kinds = toggle_kinds(idx, occ)
        rows = np.empty((n, 3), dtype=np.int64)
        rows[:, 0] = kinds
        rows[:, 1] = idx
        rows[:, 2] = np.where(kinds == OP_MALLOC, 16 + (r & np.uint32(0x3FF)).astype(np.int64), 0)
        yield rows
        left -= n


class MixedWorkload(Workload):
    """bench_random_mixed (see the module docstring)."""

    name = "mixed"
    STRESSES = ("hot path with a steady ~50%-full working set of 16..1039-byte blocks; "
                "no superslab ever empties")
    DEFAULT_WS = 400
    DEFAULTS = MappingProxyType({"prefault": None})

    def __init__(self, *, ops: int, ws: int | None = None, seed: int = 1, **params: Any) -> None:
        super().__init__(ops=ops, ws=ws, seed=seed, **params)
        self.cycles = self.ops
        pre = self.params["prefault"]
        self.prefault = self.cycles // 10 if pre is None else int(pre)
        if self.prefault < 0:
            raise ValueError(f"prefault={pre} must be >= 0")
        self.params["prefault"] = self.prefault
        self.timed_seed, self.prefault_seed = _seeds(self.seed)
        self.nslots = self.ws

    # ------------------------------------------------------------------ streams
    def _occupancy_after(self, state: int, cycles: int, occ: np.ndarray) -> None:
        """Advance the occupancy ``occ`` over ``cycles`` cycles from ``state`` (parity only)."""
        while cycles > 0:
            n = min(cycles, BLOCK_ROWS)
            r, state = xorshift32_array(state, n)
            toggle_parity((r % np.uint32(self.ws)).astype(np.int64), occ)
            cycles -= n

    def _prefault_occupancy(self) -> np.ndarray:
        occ = np.zeros(self.ws, dtype=bool)
        self._occupancy_after(self.prefault_seed, self.prefault, occ)
        return occ

    def _sizes(self) -> tuple[int, int]:
        occ = self._prefault_occupancy()
        self._occupancy_after(self.timed_seed, self.cycles, occ)
        return self.cycles, int(occ.sum())

    def _warmup_rows(self) -> Iterator[np.ndarray]:
        occ = np.zeros(self.ws, dtype=bool)
        yield from _mixed_rows(self.prefault_seed, self.prefault, self.ws, occ)

    def _generate(self) -> Iterator[tuple[np.ndarray, bool]]:
        occ = self._prefault_occupancy()
        for rows in _mixed_rows(self.timed_seed, self.cycles, self.ws, occ):
            yield rows, False
        yield drain_rows(occ), True

    # ------------------------------------------------------------------ fast execution
    def warmup(self, heap: Heap, slots: np.ndarray) -> int:
        """The prefault, in the kernel's loop (slots stay occupied)."""
        self._check_slots(slots)
        if self.prefault:
            heap.run_mixed(self.prefault, self.ws, self.prefault_seed, slots)
        return self.prefault

    def run_chunks(self, heap: Heap, slots: np.ndarray, n_chunks: int) -> Iterator[int]:
        """The timed cycles in ``n_chunks`` pieces through ``Heap.run_mixed`` (the xorshift
        state carries over), the final ``Heap.drain_slots`` in the last piece."""
        self._check_slots(slots)
        if n_chunks < 1:
            raise ValueError(f"n_chunks={n_chunks} must be >= 1")
        state = self.timed_seed
        done = 0
        for i in range(n_chunks):
            end = self.cycles * (i + 1) // n_chunks
            if end > done:
                state = heap.run_mixed(end - done, self.ws, state, slots)
            n = end - done
            done = end
            if i == n_chunks - 1:
                n += heap.drain_slots(slots[:self.ws])
            yield n


def run_mixed_on(heap: Heap, cycles: int, ws: int = 400, seed: int = 1) -> dict[str, Any]:
    """The whole benchmark on ``heap`` as hakmem runs it: prefault (untimed, undrained), then
    the timed loop and final drain.  Returns ``cycles``, ``drain``, ``ops`` (cycles + drain),
    ``seconds`` and ``ops_per_s`` (= ops / seconds) and hakmem's ``cycles_per_s``."""
    w = MixedWorkload(ops=cycles, ws=ws, seed=seed)
    slots = w.new_slots()
    w.warmup(heap, slots)
    t0 = time.perf_counter()
    ops = sum(w.run_chunks(heap, slots, 1))
    dt = time.perf_counter() - t0
    return {"cycles": cycles, "drain": ops - cycles, "ops": ops, "seconds": dt,
            "ops_per_s": ops / dt if dt > 0 else float("inf"),
            "cycles_per_s": cycles / dt if dt > 0 else float("inf")}
