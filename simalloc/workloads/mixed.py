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
order), as hakmem times it.  ``total_ops = ops + drain frees``.

Stresses: the tiny hot path (front cache, free lists, carving) with a small, steady working set
across all classes C2..C7 -- and, for release policies, the case where no superslab ever
empties (Phase 54's ``lean_retire=0``).

The stream has exactly three implementations: :func:`mixed_ops` here (plain Python, the
reference), :class:`MixedGen` (``simalloc/workloads/_mixedgen_py.py``, compiled to C by
``setup.py`` when a compiler is present: rows in chunks, at a few ns per row) and the native
driver (``simalloc/native/driver.c``).  Execution: :func:`run_mixed` feeds :class:`MixedGen`'s
chunks to ``Heap.replay`` (the kernel's ``apply`` loop); :meth:`MixedWorkload.warmup` and
:meth:`MixedWorkload.run_chunks` use it (chained through the returned xorshift state, then
``Heap.drain_slots``); :meth:`MixedWorkload.op_stream` gives the same rows as one array.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..constants import OP_FREE, OP_MALLOC
from ..errors import HeapClosedError, TraceError
from .base import BLOCK_ROWS, Workload, drain_rows, xorshift32

try:  # the compiled generator (setup.py builds it from _mixedgen_py.py when it can)
    from ._mixedgen import MixedGen
except ImportError:  # no compiler at install time: the same code, as plain Python
    from ._mixedgen_py import MixedGen

if TYPE_CHECKING:
    from ..heap import Heap

__all__ = ["CHUNK_ROWS", "MAX_CYCLES", "PREFAULT_SEED_OFFSET", "MixedGen", "MixedWorkload", "mixed_ops",
           "run_mixed", "run_mixed_on"]

#: hakmem's prefault runs with ``seed + 0xDEADBEEF``.
PREFAULT_SEED_OFFSET = 0xDEADBEEF
#: Rows :func:`run_mixed` generates and replays at a time (768 KiB: stays in L2 between the
#: generator writing it and the kernel reading it; the per-chunk Python overhead, ~10 us for
#: ``fill`` + ``Heap.replay``, is then about 1% of the chunk's time).
CHUNK_ROWS = 32768
#: Most cycles one :func:`run_mixed` call accepts (the kernel's int64 operation counter).
MAX_CYCLES = 1 << 62
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


def run_mixed(heap: Heap, cycles: int, ws: int, seed: int, slots: np.ndarray) -> int:
    """Run ``cycles`` cycles of bench_random_mixed's loop on ``heap`` from xorshift32 state
    ``seed`` over ``slots[:ws]`` (uint64 live addresses, 0 = empty, updated in place; the
    occupancy is read from them, so calls chain: pass the returned state as the next ``seed``).
    Returns the final xorshift32 state.  The final drain is not included (``Heap.drain_slots``).
    ``cycles`` must be an int in 0..2**62 (TraceError otherwise).  If a chunk's replay raises,
    the slots still say which blocks are live (``Heap.replay``); the generator's state is lost.

    The stream comes from :class:`MixedGen` in chunks of :data:`CHUNK_ROWS` rows, each replayed
    with ``Heap.replay``.  A malloc writes ``size & 0xFF`` as the block's first byte (the
    replay rule) where the former in-kernel loop wrote ``r & 0xFF``: the decisions, addresses and
    counters are the same, only that byte's value differs."""
    if heap.closed:
        raise HeapClosedError("heap is closed")
    if (not isinstance(slots, np.ndarray) or slots.dtype != np.uint64 or slots.ndim != 1
            or not slots.flags.c_contiguous or not slots.flags.writeable):
        raise TraceError("slots must be a writable, C-contiguous, 1-D numpy uint64 array")
    for name, v in (("cycles", cycles), ("ws", ws), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TraceError(f"{name} must be an int, not {type(v).__name__}")
    ws, cycles = int(ws), int(cycles)
    if not 0 <= cycles <= MAX_CYCLES:
        raise TraceError(f"cycles={cycles} must be in 0..2**62")
    if ws <= 0 or ws > len(slots):
        raise TraceError(f"ws={ws} must be in 1..{len(slots)}")
    gen = MixedGen(ws, int(seed) & _MASK32, slots[:ws] != 0)
    rows = np.empty((max(min(cycles, CHUNK_ROWS), 0), 3), dtype=np.int64)
    left = cycles
    while left > 0:
        n = gen.fill(rows, min(left, CHUNK_ROWS))
        heap.replay(rows[:n], slots)
        left -= n
    return int(gen.state)


def _mixed_blocks(gen: MixedGen, cycles: int) -> Iterator[np.ndarray]:
    """``cycles`` cycles of ``gen`` as fresh row arrays of at most ``BLOCK_ROWS`` rows."""
    while cycles > 0:
        rows = np.empty((min(cycles, BLOCK_ROWS), 3), dtype=np.int64)
        gen.fill(rows, len(rows))
        yield rows
        cycles -= len(rows)


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
    def _timed_gen(self) -> MixedGen:
        """The generator at the start of the timed loop (occupancy left by the prefault)."""
        pre = MixedGen(self.ws, self.prefault_seed)
        pre.advance(self.prefault)
        return MixedGen(self.ws, self.timed_seed, pre.occ)

    def _sizes(self) -> tuple[int, int]:
        gen = self._timed_gen()
        gen.advance(self.cycles)
        return self.cycles, int(np.count_nonzero(gen.occ))

    def _warmup_rows(self) -> Iterator[np.ndarray]:
        yield from _mixed_blocks(MixedGen(self.ws, self.prefault_seed), self.prefault)

    def _generate(self) -> Iterator[tuple[np.ndarray, bool]]:
        gen = self._timed_gen()
        for rows in _mixed_blocks(gen, self.cycles):
            yield rows, False
        yield drain_rows(gen.occ), True

    # ------------------------------------------------------------------ fast execution
    def warmup(self, heap: Heap, slots: np.ndarray) -> int:
        """The prefault through :func:`run_mixed` (slots stay occupied)."""
        self._check_slots(slots)
        if self.prefault:
            run_mixed(heap, self.prefault, self.ws, self.prefault_seed, slots)
        return self.prefault

    def run_chunks(self, heap: Heap, slots: np.ndarray, n_chunks: int) -> Iterator[int]:
        """The timed cycles in ``n_chunks`` pieces through :func:`run_mixed` (the xorshift
        state carries over), the final ``Heap.drain_slots`` in the last piece."""
        self._check_slots(slots)
        if n_chunks < 1:
            raise ValueError(f"n_chunks={n_chunks} must be >= 1")
        state = self.timed_seed
        done = 0
        for i in range(n_chunks):
            end = self.cycles * (i + 1) // n_chunks
            if end > done:
                state = run_mixed(heap, end - done, self.ws, state, slots)
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
