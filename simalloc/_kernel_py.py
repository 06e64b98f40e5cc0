"""The hot path in pure Python: the twin of the Cython kernel (``kernels/_kernel.pyx``).

Everything a single malloc or free touches in the common case lives here, over flat storage that
both kernels share byte for byte:

* the superslab header and slab meta records *inside the mappings* (see ``constants``);
* free lists threaded through the freed blocks themselves (u32 superslab offsets);
* per-heap numpy tables: superslab bases, the address registry (open addressing), the per-class
  front caches (handles ``index << 32 | offset``), the current slab of each class, counters.

When the hot path cannot proceed it calls the slow path (``simalloc.heap.Heap``), written in
ordinary Python: a class whose current slab is exhausted (``refill_slow``), a slab that
became empty or partial (``slab_empty`` / ``slab_partial`` -> the release policy), a large
request, a pointer that fails a check (``free_error`` diagnoses and raises), and the policy
clock (``tick``).  Set a breakpoint in any of those to watch a decision happen::

    SIMALLOC_KERNEL=python python -m pdb -c "b simalloc/policy.py:LeanPolicy.on_superslab_empty" ...

Names and behaviour here are the contract the Cython kernel follows; the parity test feeds both
the same operations and requires identical decisions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .constants import (
    ALLOC_TAG,
    BLOCK_HEADER,
    FREE_TAG,
    H_ACTIVE_SLABS,
    H_MAGIC,
    H_TOTAL_ACTIVE,
    M_CAPACITY,
    M_CARVED,
    M_CLASS,
    M_DATA,
    M_FREELIST,
    M_STATE,
    M_STRIDE,
    M_USED,
    NUM_CLASSES,
    OP_FREE,
    OP_MALLOC,
    SLAB_ACTIVE,
    SLAB_LG,
    SLAB_META_WORDS,
    SS_MAGIC,
    SS_META_OFFSET,
)
from .errors import TraceError

__all__ = ["KERNEL_NAME", "C_OPS", "C_LIVE", "C_REFILLS", "C_DRAINS", "C_SLOW", "C_NEXT_TICK", "Kernel",
           "TraceError"]  # TraceError is re-exported from simalloc.errors

KERNEL_NAME = "python"

# Counter slots (shared int64 array).
C_OPS = 0  # operations applied (malloc + free + realloc)
C_LIVE = 1  # live tiny blocks (handed to the user)
C_REFILLS = 2  # front-cache refills from the current slab
C_DRAINS = 3  # front-cache drains back to slabs
C_SLOW = 4  # calls into the slow path (refill_slow)
C_NEXT_TICK = 5  # operation count at which the next policy tick is due
N_COUNTERS = 8

_META0 = SS_META_OFFSET // 4  # word index of slab 0's meta record
_MASK32 = 0xFFFFFFFF


def _mv(arr: Any) -> memoryview:
    """A flat byte view of a numpy array's buffer (the caller casts it to its item type)."""
    return memoryview(arr).cast("B")


class Kernel:
    """Hot-path state and operations of one heap (the pure-Python twin).

    Constructed by the heap with its slow path ``slow`` and geometry; owns the flat tables."""

    name = KERNEL_NAME

    def __init__(self, slow: Any, lg: int, max_superslabs: int, front_cap: int,
                 refill_batch: int, drain_batch: int, lut: np.ndarray, strides: tuple[int, ...],
                 tick_interval: int) -> None:
        self.slow = slow
        self.lg = lg
        self.ss_mask = (1 << lg) - 1
        self.front_cap = front_cap
        self.refill_batch = refill_batch
        self.drain_batch = drain_batch
        self.tick_interval = tick_interval
        self.tiny_max = len(lut) - 1
        # --- shared numpy storage (the Cython kernel takes typed memoryviews of these)
        self.ss_base = np.zeros(max_superslabs, dtype=np.uint64)
        regsize = 1
        while regsize < 2 * max_superslabs:
            regsize <<= 1
        self.reg_mask = regsize - 1
        self.reg_key = np.zeros(regsize, dtype=np.uint64)  # 0 empty, 1 tombstone, else base
        self.reg_val = np.full(regsize, -1, dtype=np.int32)
        self.fc = np.zeros((NUM_CLASSES, max(front_cap, 1)), dtype=np.int64)
        self.fc_count = np.zeros(NUM_CLASSES, dtype=np.int32)
        self.cur_ss = np.full(NUM_CLASSES, -1, dtype=np.int32)
        self.cur_slab = np.full(NUM_CLASSES, -1, dtype=np.int32)
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)
        self.counters[C_NEXT_TICK] = tick_interval if tick_interval > 0 else 2**62
        self.lut = np.ascontiguousarray(lut, dtype=np.int8)
        self.strides = np.asarray(strides, dtype=np.int32)
        # --- Python-side fast views of the same storage (memoryview item access is cheap)
        self._base = _mv(self.ss_base).cast("Q")
        self._rk = _mv(self.reg_key).cast("Q")
        self._rv = _mv(self.reg_val).cast("i")
        self._fc = [_mv(self.fc[c]).cast("q") for c in range(NUM_CLASSES)]
        self._fcn = _mv(self.fc_count).cast("i")
        self._cs = _mv(self.cur_ss).cast("i")
        self._cl = _mv(self.cur_slab).cast("i")
        self._ctr = _mv(self.counters).cast("q")
        self._lut = self.lut.tolist()
        self._v8: list[Any] = [None] * max_superslabs
        self._v32: list[Any] = [None] * max_superslabs

    # ------------------------------------------------------------------ superslab binding
    def attach(self, idx: int, base: int, window: memoryview) -> None:
        """Make superslab ``idx`` (window at ``base``) visible to the hot path."""
        self._v8[idx] = window.cast("B")
        self._v32[idx] = window.cast("I")
        self._base[idx] = base

    def detach(self, idx: int) -> None:
        """Forget superslab ``idx`` (before it is unmapped)."""
        for views in (self._v8, self._v32):
            v = views[idx]
            if v is not None:
                v.release()
            views[idx] = None
        self._base[idx] = 0

    def release(self) -> None:
        """Drop every view (heap close)."""
        for idx in range(len(self._v8)):
            if self._v8[idx] is not None:
                self.detach(idx)

    # ------------------------------------------------------------------ registry
    def lookup(self, addr: int) -> int:
        """Superslab index holding ``addr`` (O(1): mask, then linear probing), or -1."""
        base = addr & ~self.ss_mask
        rk = self._rk
        mask = self.reg_mask
        k = (base >> self.lg) & mask
        while True:
            key = rk[k]
            if key == base:
                return self._rv[k]
            if key == 0:
                return -1
            k = (k + 1) & mask

    # ------------------------------------------------------------------ allocation
    def alloc_fast(self, cls: int) -> int:
        """Pop a block of class ``cls`` from its front cache (refilling it if empty); returns
        the user address."""
        n = self._fcn[cls]
        if n == 0:
            self.refill(cls)
            n = self._fcn[cls]
        n -= 1
        self._fcn[cls] = n
        h = self._fc[cls][n]
        idx = h >> 32
        off = h & _MASK32
        v8 = self._v8[idx]
        if v8[off] != FREE_TAG | cls:
            self._fcn[cls] = n + 1
            self.slow.corrupt_block(idx, off, "front cache")
        v8[off] = ALLOC_TAG | cls
        ctr = self._ctr
        ctr[C_LIVE] += 1
        ops = ctr[C_OPS] + 1
        ctr[C_OPS] = ops
        if ops >= ctr[C_NEXT_TICK]:
            self._tick()
        return self._base[idx] + off + BLOCK_HEADER

    def malloc(self, size: int) -> int:
        """Size -> class (LUT) -> :meth:`alloc_fast`; large sizes go to the slow path."""
        if 0 <= size <= self.tiny_max:
            return self.alloc_fast(self._lut[size])
        return self.slow.malloc_large(size)

    def refill(self, cls: int) -> None:
        """Move up to ``refill_batch`` blocks of the current slab (its free list first, then
        fresh carving) into the front cache; ask the slow path for a new current slab when the
        current one is exhausted."""
        fc = self._fc[cls]
        got = 0
        want = min(self.refill_batch, self.front_cap) or 1
        ctr = self._ctr
        ctr[C_REFILLS] += 1
        while got < want:
            idx = self._cs[cls]
            if idx < 0:
                if got:
                    break
                ctr[C_SLOW] += 1
                self.slow.refill_slow(cls)
                continue
            slab = self._cl[cls]
            v32 = self._v32[idx]
            v8 = self._v8[idx]
            m = _META0 + slab * SLAB_META_WORDS
            while got < want:
                head = v32[m + M_FREELIST]
                if head:
                    if head > self.ss_mask or v8[head] != FREE_TAG | cls:
                        self._fcn[cls] = got
                        self.slow.corrupt_block(idx, head, "free list")
                    v32[m + M_FREELIST] = v32[(head + 4) >> 2]
                    off = head
                else:
                    carved = v32[m + M_CARVED]
                    if carved >= v32[m + M_CAPACITY]:
                        break
                    off = v32[m + M_DATA] + carved * v32[m + M_STRIDE]
                    v32[m + M_CARVED] = carved + 1
                    v8[off] = FREE_TAG | cls
                used = v32[m + M_USED] + 1
                v32[m + M_USED] = used
                if used == 1:
                    v32[H_ACTIVE_SLABS] += 1
                v32[H_TOTAL_ACTIVE] += 1
                fc[got] = (idx << 32) | off
                got += 1
            if got < want:
                # exhausted: unbind; the next loop turn asks the slow path for a new slab
                self._cs[cls] = -1
                self._cl[cls] = -1
        self._fcn[cls] = got

    # ------------------------------------------------------------------ free
    def free_fast(self, addr: int) -> None:
        """Validate ``addr`` (registry, magic, slab state, block boundary, header byte) and push
        it on its class's front cache (draining the cache first if it is full)."""
        idx = self.lookup(addr)
        if idx < 0:
            self.slow.free_slow(addr)
            return
        v32 = self._v32[idx]
        v8 = self._v8[idx]
        off = (addr & self.ss_mask) - BLOCK_HEADER
        if v32[H_MAGIC] != SS_MAGIC or off < 0:
            self.slow.free_error(addr)
            return
        m = _META0 + (off >> SLAB_LG) * SLAB_META_WORDS
        rel = off - v32[m + M_DATA]
        stride = v32[m + M_STRIDE]
        cls = v32[m + M_CLASS]
        if (v32[m + M_STATE] != SLAB_ACTIVE or rel < 0 or rel & (stride - 1)
                or rel >= v32[m + M_CARVED] * stride or v8[off] != ALLOC_TAG | cls):
            self.slow.free_error(addr)
            return
        ctr = self._ctr
        ctr[C_OPS] += 1
        n = self._fcn[cls]
        if n >= self.front_cap:
            # drain first, while this block is still live: slow-path callbacks during the
            # drain (debug check(), policies) must not see it half freed
            self.drain(cls, self.drain_batch)
            n = self._fcn[cls]
        v8[off] = FREE_TAG | cls
        ctr[C_LIVE] -= 1
        if self.front_cap:
            self._fc[cls][n] = (idx << 32) | off
            self._fcn[cls] = n + 1
        else:
            self.return_block(cls, idx, off)
        if ctr[C_OPS] >= ctr[C_NEXT_TICK]:
            self._tick()

    def _tick(self) -> None:
        """Every ``tick_interval`` operations: let the slow path run the policy clock."""
        ctr = self._ctr
        ctr[C_NEXT_TICK] = ctr[C_OPS] + self.tick_interval
        self.slow.tick()

    def drain(self, cls: int, count: int) -> None:
        """Return the ``count`` oldest front-cache blocks of ``cls`` (the bottom of the stack)
        to their slabs and slide the rest down.  Draining the cold end means no block can sit
        in the cache forever, pinning its superslab against release."""
        fc = self._fc[cls]
        n = self._fcn[cls]
        count = min(count, n)
        self._ctr[C_DRAINS] += 1
        old = fc[0:count].tolist()
        fc[0:n - count] = fc[count:n]
        # the drained blocks go on top (oldest last) and leave one at a time, so the cache
        # holds every block not yet returned when a slow-path callback looks at it
        for i, h in enumerate(old):
            fc[n - 1 - i] = h
        for i, h in enumerate(old):
            self._fcn[cls] = n - 1 - i
            self.return_block(cls, h >> 32, h & _MASK32)

    def return_block(self, cls: int, idx: int, off: int) -> None:
        """Push a free block onto its slab's free list; report slab-partial (a quarter free) and
        slab-empty (``used == 0``) to the slow path."""
        v32 = self._v32[idx]
        slab = off >> SLAB_LG
        m = _META0 + slab * SLAB_META_WORDS
        v32[(off + 4) >> 2] = v32[m + M_FREELIST]
        v32[m + M_FREELIST] = off
        used = v32[m + M_USED] - 1
        v32[m + M_USED] = used
        v32[H_TOTAL_ACTIVE] -= 1
        if used == 0:
            v32[H_ACTIVE_SLABS] -= 1
            self.slow.slab_empty(idx, slab)
        else:
            cap = v32[m + M_CAPACITY]
            # a full, unbound slab becomes "partial" once a quarter of it is free again, so a
            # refill from it is worth the slow-path call (one event per slab per cycle)
            if used == cap - ((cap >> 2) or 1) and (self._cs[cls] != idx or self._cl[cls] != slab):
                self.slow.slab_partial(idx, slab)

    def flush(self) -> None:
        """Drain every front cache completely (used by ``Heap.trim()`` and ``close()``)."""
        for cls in range(NUM_CLASSES):
            if self._fcn[cls]:
                self.drain(cls, self._fcn[cls])

    # ------------------------------------------------------------------ memory access
    def write_byte(self, addr: int, value: int) -> None:
        """Store one byte at ``addr`` inside a registered superslab (replay's first-byte write)."""
        idx = self.lookup(addr)
        if idx < 0:
            self.slow.write_byte_slow(addr, value)
        else:
            self._v8[idx][addr & self.ss_mask] = value & 0xFF

    # ------------------------------------------------------------------ batch entry points
    def apply(self, ops: np.ndarray, slots: np.ndarray) -> None:
        """Replay an operation stream: ``ops`` is int64 ``(n, 3)`` rows ``(kind, slot, size)``;
        ``slots`` (uint64) holds the live address of each slot (0 = empty) and is updated in
        place.  A malloc writes the block's first byte (as bench_random_mixed does)."""
        sl = _mv(slots).cast("Q")
        nslots = len(sl)
        rows = ops.tolist()
        for kind, slot, size in rows:
            if not 0 <= slot < nslots:
                raise TraceError(f"slot {slot} out of range 0..{nslots - 1}")
            if kind == OP_MALLOC:
                if sl[slot]:
                    raise TraceError(f"malloc into occupied slot {slot}")
                p = self.malloc(size)
                self.write_byte(p, size)
                sl[slot] = p
            elif kind == OP_FREE:
                p = sl[slot]
                if not p:
                    raise TraceError(f"free of empty slot {slot}")
                self.free_fast(p)
                sl[slot] = 0
            else:
                sl[slot] = self.slow.apply_other(kind, sl[slot], size)

    def run_mixed(self, cycles: int, ws: int, seed: int, slots: np.ndarray) -> int:
        """bench_random_mixed's loop, exactly: xorshift32 (13/17/5); slot ``r % ws``; free it if
        occupied, else malloc ``16 + (r & 0x3FF)`` and write the first byte.  Returns the
        final xorshift state."""
        sl = _mv(slots).cast("Q")
        if ws <= 0 or ws > len(sl):
            raise TraceError(f"ws={ws} must be in 1..{len(sl)}")
        s = seed & _MASK32
        malloc = self.malloc
        free = self.free_fast
        write = self.write_byte
        for _ in range(cycles):
            s ^= (s << 13) & _MASK32
            s ^= s >> 17
            s ^= (s << 5) & _MASK32
            i = s % ws
            p = sl[i]
            if p:
                free(p)
                sl[i] = 0
            else:
                size = 16 + (s & 0x3FF)
                p = malloc(size)
                write(p, s)
                sl[i] = p
        return s

    def drain_slots(self, slots: np.ndarray) -> int:
        """Free every non-empty slot in index order (the benchmark's final drain)."""
        sl = _mv(slots).cast("Q")
        freed = 0
        for i in range(len(sl)):
            p = sl[i]
            if p:
                self.free_fast(p)
                sl[i] = 0
                freed += 1
        return freed
