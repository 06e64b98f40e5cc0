"""The workload base class and the seeded random streams every workload draws from.

A workload is a deterministic operation stream: int64 rows ``(kind, slot, size)`` with kinds
``OP_MALLOC`` (0), ``OP_FREE`` (1) and ``OP_REALLOC`` (2) (:mod:`simalloc.constants`), over a
table of ``nslots`` slots (a C-contiguous ``np.uint64`` array of live addresses, 0 = empty) that
the caller allocates.  It has an untimed part (:meth:`Workload.warmup`) and a timed part
(:meth:`Workload.run_chunks`) whose last chunk ends with the final drain (every slot still
occupied is freed, in slot order), so a finished workload leaves no live block behind.

Randomness comes only from xorshift32 (hakmem's ``bench_random_mixed`` generator, shifts 13 / 17 /
5 on a 32-bit state), so streams are identical across numpy versions and reproducible in C.
:func:`xorshift32_array` generates a long run of outputs with numpy: xorshift32 is linear over
GF(2), so the step ``T`` is a 32x32 bit matrix and ``T**(2**k)`` jumps ahead; the first 64
outputs come from the scalar step and each doubling maps the outputs so far forward by
``T**len`` (byte lookup tables, four gathers per doubling).

Subclasses implement :meth:`Workload._generate` (the timed stream in blocks of at most
``BLOCK_ROWS`` rows, the drain block flagged) and, if they have one, :meth:`Workload._warmup_rows`;
they may override :meth:`Workload._sizes` with a cheaper exact count.
The base class derives ``total_ops``, :meth:`run_chunks`, :meth:`op_stream` from them; memory
stays bounded because blocks are generated lazily and replayed one at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..constants import OP_FREE, OP_MALLOC

if TYPE_CHECKING:
    from ..heap import Heap

__all__ = ["BLOCK_ROWS", "Workload", "XorshiftStream", "free_rows", "malloc_rows",
           "toggle_kinds", "xorshift32", "xorshift32_array"]

#: Largest block of operation rows a workload materialises at once (~6 MiB of int64 rows).
BLOCK_ROWS = 1 << 18

_MASK32 = 0xFFFFFFFF


# ---------------------------------------------------------------------------- xorshift32
def xorshift32(state: int) -> int:
    """One xorshift32 step (``x ^= x << 13; x ^= x >> 17; x ^= x << 5``, all mod 2**32).

    The new state is also the output: ``bench_random_mixed`` does ``r = xorshift32(&seed)``."""
    x = state & _MASK32
    x ^= (x << 13) & _MASK32
    x ^= x >> 17
    x ^= (x << 5) & _MASK32
    return x


def _mat_apply(cols: tuple[int, ...], x: int) -> int:
    """Apply a GF(2) 32x32 matrix (given by the images of the 32 unit vectors) to ``x``."""
    y = 0
    j = 0
    while x:
        if x & 1:
            y ^= cols[j]
        x >>= 1
        j += 1
    return y


def _jump_powers(n: int) -> tuple[tuple[int, ...], ...]:
    """Columns of ``T**(2**k)`` for k = 0..n-1 (``T`` = one xorshift32 step)."""
    cols = tuple(xorshift32(1 << j) for j in range(32))
    out = [cols]
    for _ in range(n - 1):
        cols = tuple(_mat_apply(cols, c) for c in cols)  # M*M: columns are M(M e_j)
        out.append(cols)
    return tuple(out)


def _byte_tables(cols: tuple[int, ...]) -> np.ndarray:
    """(4, 256) uint32: ``tables[b][v]`` = matrix image of byte ``v`` placed at byte ``b``."""
    t = np.zeros((4, 256), dtype=np.uint32)
    v = np.arange(256)
    for b in range(4):
        for bit in range(8):
            t[b, (v >> bit) & 1 == 1] ^= np.uint32(cols[8 * b + bit])
    t.setflags(write=False)
    return t


_SEQ_HEAD = 64  # outputs produced by the scalar step before doubling starts (2**6)
_JUMP_LG = 24  # doublings up to 2**24 outputs per call (BLOCK_ROWS is far below)
#: Read-only byte tables of T**(2**k), k = 6.._JUMP_LG-1 (module constants, computed once).
_JUMP_TABLES: tuple[np.ndarray, ...] = tuple(
    _byte_tables(c) for c in _jump_powers(_JUMP_LG)[6:])


def _jump(k: int, x: np.ndarray) -> np.ndarray:
    """``T**(2**k)`` applied to every element of the uint32 array ``x``."""
    t = _JUMP_TABLES[k - 6]
    return t[0][x & 0xFF] ^ t[1][(x >> 8) & 0xFF] ^ t[2][(x >> 16) & 0xFF] ^ t[3][x >> 24]


def xorshift32_array(state: int, n: int) -> tuple[np.ndarray, int]:
    """The next ``n`` xorshift32 outputs after ``state`` (uint32 array) and the final state.

    ``out[0] == xorshift32(state)``; equal to ``n`` scalar steps, vectorised (see the module
    docstring).  ``n`` may be at most ``2**24`` per call."""
    if n < 0 or n > 1 << _JUMP_LG:
        raise ValueError(f"n={n} must be in 0..{1 << _JUMP_LG}")
    out = np.empty(n, dtype=np.uint32)
    s = state & _MASK32
    head = min(n, _SEQ_HEAD)
    for i in range(head):
        s = xorshift32(s)
        out[i] = s
    filled, k = head, 6
    while filled < n:
        take = min(filled, n - filled)
        out[filled:filled + take] = _jump(k, out[:take])
        filled += take
        k += 1
    return out, (int(out[-1]) if n else s)


class XorshiftStream:
    """A seeded xorshift32 stream with numpy draws (instance state only).

    The starting state is ``seed`` mixed with a per-use ``salt`` (so ``seed=0`` works and two
    streams of one workload differ); a zero state (a fixed point of xorshift) becomes 1."""

    def __init__(self, seed: int, salt: int = 0) -> None:
        s = (seed * 0x9E3779B1 + salt * 0x85EBCA6B + 0x6A09E667) & _MASK32
        self.state = s or 1

    def next(self, n: int) -> np.ndarray:
        """The next ``n`` raw outputs (uint32)."""
        parts = []
        while n > 0:
            take = min(n, 1 << 20)
            r, self.state = xorshift32_array(self.state, take)
            parts.append(r)
            n -= take
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def integers(self, n: int, lo: int, hi: int) -> np.ndarray:
        """``n`` int64 values uniform-ish in ``lo..hi`` inclusive (``lo + r % span``)."""
        span = hi - lo + 1
        if span <= 0:
            raise ValueError(f"empty range {lo}..{hi}")
        return lo + (self.next(n).astype(np.int64) % span)

    def random(self, n: int) -> np.ndarray:
        """``n`` floats in [0, 1) (``r / 2**32``)."""
        return self.next(n).astype(np.float64) * (1.0 / 4294967296.0)

    def permutation(self, n: int) -> np.ndarray:
        """A random permutation of ``0..n-1`` (stable argsort of random keys)."""
        return np.argsort(self.next(n), kind="stable")


# ---------------------------------------------------------------------------- row helpers
def malloc_rows(slots: np.ndarray, sizes: np.ndarray | int) -> np.ndarray:
    """``(OP_MALLOC, slot, size)`` rows."""
    rows = np.empty((len(slots), 3), dtype=np.int64)
    rows[:, 0] = OP_MALLOC
    rows[:, 1] = slots
    rows[:, 2] = sizes
    return rows


def free_rows(slots: np.ndarray) -> np.ndarray:
    """``(OP_FREE, slot, 0)`` rows."""
    rows = np.zeros((len(slots), 3), dtype=np.int64)
    rows[:, 0] = OP_FREE
    rows[:, 1] = slots
    return rows


def toggle_kinds(idx: np.ndarray, occ: np.ndarray) -> np.ndarray:
    """Kinds of a run of "toggle" operations (free the slot if occupied, else malloc into it).

    ``idx`` are slot numbers (int64), ``occ`` the occupancy before the run (bool, one per slot;
    updated in place to the occupancy after it).  Returns int64 kinds: ``OP_FREE`` (1) where
    the slot was occupied before that operation, ``OP_MALLOC`` (0) where it was empty.  Each hit
    flips its slot, so the state before the i-th hit of a slot is ``occ0 ^ (i & 1)``."""
    n = len(idx)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(idx, kind="stable")
    s = idx[order]
    pos = np.arange(n)
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    rank = pos - np.maximum.accumulate(np.where(first, pos, 0))
    kinds = np.empty(n, dtype=np.int64)
    kinds[order] = occ[s].astype(np.int64) ^ (rank & 1)
    toggle_parity(idx, occ)
    return kinds


def toggle_parity(idx: np.ndarray, occ: np.ndarray) -> None:
    """Update the occupancy ``occ`` after a run of toggle operations on ``idx`` (no kinds)."""
    occ ^= (np.bincount(idx, minlength=len(occ)) & 1).astype(bool)


def drain_rows(occ: np.ndarray, offset: int = 0) -> np.ndarray:
    """Free rows for every occupied slot (``offset + i`` for ``occ[i]``), in slot order."""
    return free_rows(np.flatnonzero(occ).astype(np.int64) + offset)


def _split(rows: np.ndarray) -> Iterator[np.ndarray]:
    for i in range(0, len(rows), BLOCK_ROWS):
        yield rows[i:i + BLOCK_ROWS]


# ---------------------------------------------------------------------------- Workload
class Workload:
    """A deterministic, seeded allocation workload (see the module docstring).

    Attributes: ``name``; ``nslots`` (length of the slots array the caller allocates);
    ``total_ops`` (operations of the timed part including the final drain frees); ``params``
    (every parameter, for reports).  Subclasses list their extra parameters and defaults in
    ``DEFAULTS`` and their one-line purpose in ``STRESSES``."""

    name: str = ""
    #: What the workload stresses (one line, for :meth:`describe`).
    STRESSES: str = ""
    #: Default working-set size (meaning per workload).
    DEFAULT_WS: int = 0
    #: Extra parameters and their defaults.
    DEFAULTS: Mapping[str, Any] = MappingProxyType({})

    nslots: int

    def __init__(self, *, ops: int, ws: int | None = None, seed: int = 1, **params: Any) -> None:
        unknown = set(params) - set(self.DEFAULTS)
        if unknown:
            known = ", ".join(sorted(self.DEFAULTS)) or "none"
            raise TypeError(f"workload {self.name!r}: unknown parameter(s) "
                            f"{', '.join(sorted(unknown))} (known: {known})")
        if int(ops) < 0:
            raise ValueError(f"ops={ops} must be >= 0")
        self.ops = int(ops)
        self.ws = int(self.DEFAULT_WS if ws is None else ws)
        if self.ws <= 0:
            raise ValueError(f"ws={self.ws} must be >= 1")
        self.seed = int(seed)
        merged = {**self.DEFAULTS, **params}
        self.params: dict[str, Any] = {"ops": self.ops, "ws": self.ws, "seed": self.seed, **merged}

    def _size_range(self, lo_key: str, hi_key: str, what: str = "sizes") -> tuple[int, int]:
        """The parameters ``lo_key``..``hi_key`` as a checked inclusive size range."""
        lo, hi = int(self.params[lo_key]), int(self.params[hi_key])
        if not 0 <= lo <= hi:
            raise ValueError(f"{what} {lo}..{hi}: need 0 <= min <= max")
        return lo, hi

    # ------------------------------------------------------------------ subclass hooks
    def _generate(self) -> Iterator[tuple[np.ndarray, bool]]:
        """The timed stream in blocks of at most ``BLOCK_ROWS`` rows, as ``(rows, is_drain)``;
        the drain rows (if any) come last, flagged True."""
        raise NotImplementedError

    def _warmup_rows(self) -> Iterator[np.ndarray]:
        """The untimed stream, in blocks (default: none)."""
        return iter(())

    # ------------------------------------------------------------------ derived sizes
    def _sizes(self) -> tuple[int, int]:
        """(main ops, drain ops); by default one counting pass over :meth:`_generate`
        (subclasses may compute it more cheaply)."""
        main = drain = 0
        for rows, is_drain in self._generate():
            if is_drain:
                drain += len(rows)
            else:
                main += len(rows)
        return main, drain

    @cached_property
    def _counts(self) -> tuple[int, int]:
        return self._sizes()

    @property
    def main_ops(self) -> int:
        """Timed operations before the final drain."""
        return self._counts[0]

    @property
    def drain_ops(self) -> int:
        """Frees of the final drain (part of the timed part and of the last chunk)."""
        return self._counts[1]

    @property
    def total_ops(self) -> int:
        """Operations of the timed part, final drain included."""
        return self.main_ops + self.drain_ops

    # ------------------------------------------------------------------ public API
    def describe(self) -> str:
        """One line: name, parameters and what the workload stresses."""
        ps = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name} [{ps}]: {self.STRESSES}"

    def new_slots(self) -> np.ndarray:
        """A fresh, empty slots array of the right length."""
        return np.zeros(self.nslots, dtype=np.uint64)

    def warmup(self, heap: Heap, slots: np.ndarray) -> int:
        """Run the untimed part on ``heap``; returns the operations applied (0 if none)."""
        self._check_slots(slots)
        n = 0
        for rows in self._warmup_rows():
            heap.replay(rows, slots)
            n += len(rows)
        return n

    def warmup_stream(self) -> np.ndarray:
        """The untimed part as int64 rows (empty if the workload has none)."""
        parts = list(self._warmup_rows())
        return np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)

    def run_chunks(self, heap: Heap, slots: np.ndarray, n_chunks: int) -> Iterator[int]:
        """Run the timed part in ``n_chunks`` roughly equal pieces, yielding after each the
        operations applied in it; the final drain belongs to the last piece."""
        self._check_slots(slots)
        if n_chunks < 1:
            raise ValueError(f"n_chunks={n_chunks} must be >= 1")
        main = self.main_ops
        bounds = [main * (i + 1) // n_chunks for i in range(n_chunks - 1)]
        chunk = 0  # index of the chunk being filled
        done = 0  # main ops applied so far
        in_chunk = 0
        for rows, is_drain in self._generate():
            if is_drain:
                while chunk < n_chunks - 1:  # the drain belongs to the last chunk
                    yield in_chunk
                    in_chunk = 0
                    chunk += 1
                heap.replay(rows, slots)
                in_chunk += len(rows)
                continue
            pos = 0
            while True:
                while chunk < n_chunks - 1 and done == bounds[chunk]:
                    yield in_chunk
                    in_chunk = 0
                    chunk += 1
                if pos >= len(rows):
                    break
                end = bounds[chunk] if chunk < n_chunks - 1 else main
                take = min(len(rows) - pos, end - done)
                heap.replay(rows[pos:pos + take], slots)
                pos += take
                done += take
                in_chunk += take
        while chunk < n_chunks - 1:  # only if the stream had no drain
            yield in_chunk
            in_chunk = 0
            chunk += 1
        yield in_chunk

    def op_stream(self, max_ops: int | None = None) -> np.ndarray:
        """The whole timed stream (final drain included) as int64 ``(n, 3)`` rows
        ``(kind, slot, size)``, or its first ``max_ops`` rows."""
        parts: list[np.ndarray] = []
        n = 0
        for rows, _drain in self._generate():
            if max_ops is not None and n + len(rows) >= max_ops:
                parts.append(rows[:max_ops - n])
                break
            parts.append(rows)
            n += len(rows)
        return np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)

    # ------------------------------------------------------------------ helpers
    def _check_slots(self, slots: np.ndarray) -> None:
        if not isinstance(slots, np.ndarray) or slots.dtype != np.uint64 or not slots.flags.c_contiguous:
            raise TypeError("slots must be a C-contiguous np.uint64 array")
        if len(slots) < self.nslots:
            raise ValueError(f"slots has {len(slots)} entries; workload {self.name!r} needs {self.nslots}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
